//! No input makes the parser panic: neither arbitrary text nor small mutations of a valid file
//! (the interesting inputs, since they get past the YAML reader).

use proptest::prelude::*;

use peng_spec::{parse_platform, parse_service};

/// Characters that matter to YAML and to the service file's small languages.
const ALPHABET: &[char] = &[
    ' ', '\n', '\t', ':', '-', '[', ']', '{', '}', ',', '#', '&', '*', '!', '|', '>', '\'', '"',
    '%', '@', '`', '?', '=', '<', '0', '9', 'a', 'z', 'é', '€', '\u{feff}', '\\', '.',
];

/// The same, with what matters to paths, escapes and process arguments.
const RUN_ALPHABET: &[char] = &[
    ' ', '\n', ':', '-', '[', ']', '{', '}', ',', '\'', '"', '\\', '.', '/', '~', '\0', '0', 'x',
    'u', 'U', '$', '=', '_', 'A', 'a', 'é',
];

/// A `run` section with every key, escapes included, as the seed of its mutations.
const RUN_SEED: &str = r#"apiVersion: peng/v1
service: shop
team: books
stages: { production: { instances: 1 } }
run:
  command: ["./bin/shop", "--port", "${PORT}", "--name=a\x41"]
  env: { A_1: "x", B: 'y\0', C: "\u00e9" }
  workdir: ./app/../app/.
  writable: [data, ./tmp/, data/../cache, .]
  health: { http: /health, every: 2s }
  resources: { cpu: 0.5, memory: 512Mi, pids: 128 }
"#;

#[test]
fn the_run_seed_is_valid() {
    let spec = parse_service("peng.yaml", RUN_SEED).expect("the seed is valid");
    assert_eq!(spec.run.workdir.as_deref(), Some("app"));
    assert_eq!(spec.run.writable, ["data", "tmp", "cache", "."]);
    assert_eq!(spec.run.env["B"], "y\\0");
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    /// Duplicates a line somewhere else, which makes duplicate keys and odd indentation.
    CopyLine(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    edit_with(ALPHABET)
}

fn edit_with(alphabet: &'static [char]) -> impl Strategy<Value = Edit> {
    let ch = prop::sample::select(alphabet);
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::CopyLine(a, b)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return text.to_string();
    }
    match *edit {
        Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
        Edit::Delete(i) => {
            chars.remove(i % chars.len());
        }
        Edit::Replace(i, c) => {
            let i = i % chars.len();
            chars[i] = c;
        }
        Edit::CopyLine(from, to) => {
            let lines: Vec<&str> = text.lines().collect();
            let line = lines[from % lines.len()];
            let mut out: Vec<&str> = lines.clone();
            out.insert(to % (lines.len() + 1), line);
            return out.join("\n");
        }
    }
    chars.into_iter().collect()
}

proptest! {
    // PROPTEST_CASES=100000 for a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = parse_service("peng.yaml", &text);
    }

    #[test]
    fn yaml_like_text_never_panics(chars in prop::collection::vec(prop::sample::select(ALPHABET), 0..300)) {
        let text: String = chars.into_iter().collect();
        let _ = parse_service("peng.yaml", &text);
    }

    #[test]
    fn mutated_example_never_panics(edits in prop::collection::vec(edit(), 1..8)) {
        let mut text = crate::EXAMPLE.to_string();
        for e in &edits {
            text = apply(&text, e);
        }
        match parse_service("peng.yaml", &text) {
            Ok(_) => {}
            Err(diagnostics) => {
                // A refusal always says where.
                prop_assert!(!diagnostics.is_empty());
                for d in &diagnostics {
                    prop_assert!(d.line >= 1 && d.column >= 1, "{}", d);
                }
            }
        }
    }

    #[test]
    fn mutated_database_file_never_panics(edits in prop::collection::vec(edit(), 1..8)) {
        let mut text = include_str!("../cases/database-full.yaml").to_string();
        for e in &edits {
            text = apply(&text, e);
        }
        if let Err(diagnostics) = parse_service("peng.yaml", &text) {
            prop_assert!(!diagnostics.is_empty());
        }
    }

    #[test]
    fn mutated_run_section_never_panics(edits in prop::collection::vec(edit_with(RUN_ALPHABET), 1..8)) {
        let mut text = RUN_SEED.to_string();
        for e in &edits {
            text = apply(&text, e);
        }
        match parse_service("peng.yaml", &text) {
            Ok(spec) => {
                // Whatever got through can start a process, inside the service's directory.
                let run = &spec.run;
                let nul = |s: &String| s.contains('\0');
                prop_assert!(!run.command.iter().any(nul));
                prop_assert!(!run.command[0].trim().is_empty());
                prop_assert!(!run.env.iter().any(|(k, v)| nul(k) || nul(v)));
                for dir in run.workdir.iter().chain(&run.writable) {
                    prop_assert!(!nul(dir) && !dir.starts_with('/'), "{}", dir);
                    prop_assert!(dir.split('/').all(|part| !part.is_empty() && part != ".."), "{}", dir);
                }
            }
            Err(diagnostics) => {
                prop_assert!(!diagnostics.is_empty());
                for d in &diagnostics {
                    prop_assert!(d.line >= 1 && d.column >= 1, "{}", d);
                }
            }
        }
    }

    #[test]
    fn mutated_platform_file_never_panics(edits in prop::collection::vec(edit(), 1..8)) {
        let mut text = include_str!("../../../../examples/platform.yaml").to_string();
        for e in &edits {
            text = apply(&text, e);
        }
        if let Err(diagnostics) = parse_platform("platform.yaml", &text) {
            prop_assert!(!diagnostics.is_empty());
            for d in &diagnostics {
                prop_assert!(d.line >= 1 && d.column >= 1, "{}", d);
            }
        }
    }
}
