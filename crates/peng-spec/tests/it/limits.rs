//! Each documented limit is enforced with a diagnostic that names it.

use peng_spec::limits::*;
use peng_spec::parse_service;

const HEAD: &str = "apiVersion: peng/v1\nservice: shop\nteam: books\nstages: { production: { instances: 1 } }\nrun: { command: ./shop }\n";

fn only_error(text: &str) -> String {
    let diagnostics = parse_service("peng.yaml", text).expect_err("the file is refused");
    assert_eq!(diagnostics.len(), 1, "{diagnostics}");
    diagnostics.to_string()
}

#[test]
fn file_size() {
    let padding = "#".repeat(MAX_FILE_BYTES);
    let error = only_error(&format!("{HEAD}{padding}\n"));
    assert!(error.starts_with("peng.yaml:1:1: the file is "), "{error}");
    assert!(error.contains("at most 262144 bytes"), "{error}");
}

#[test]
fn string_length() {
    let long = "x".repeat(MAX_STRING_BYTES + 1);
    let text = HEAD.replace(
        "run: { command: ./shop }",
        &format!("run:\n  command: ./shop\n  workdir: {long}"),
    );
    assert_eq!(
        only_error(&text),
        "peng.yaml:7:12: string of 4097 bytes is too long; at most 4096 bytes are allowed"
    );
}

#[test]
fn too_many_sensors() {
    let mut text = format!("{HEAD}sensors:\n");
    for i in 0..=MAX_SENSORS {
        text.push_str(&format!("  - {{ name: s{i}, tcp: {{}} }}\n"));
    }
    assert_eq!(
        only_error(&text),
        "peng.yaml:7:3: 201 sensors declared; at most 200 are allowed"
    );
}

#[test]
fn too_many_alerts() {
    let mut text = format!("{HEAD}alerts:\n");
    for i in 0..=MAX_ALERTS {
        text.push_str(&format!(
            "  - {{ name: a{i}, sensor: health, when: failing, severity: info, plan: p }}\n"
        ));
    }
    text.push_str("action_plans: { p: { notify: [{ webhook: 'http://x/' }] } }\n");
    assert_eq!(
        only_error(&text),
        "peng.yaml:7:3: 201 alerts declared; at most 200 are allowed"
    );
}

#[test]
fn too_many_action_plans() {
    let mut text = format!("{HEAD}action_plans:\n");
    for i in 0..=MAX_ACTION_PLANS {
        text.push_str(&format!(
            "  p{i}: {{ notify: [{{ webhook: 'http://x/' }}] }}\n"
        ));
    }
    assert_eq!(
        only_error(&text),
        "peng.yaml:6:1: 51 action plans declared; at most 50 are allowed"
    );
}

#[test]
fn too_many_stages() {
    let stages: Vec<String> = (0..=MAX_STAGES)
        .map(|i| format!("s{i}: {{ instances: 1 }}"))
        .collect();
    let text = format!(
        "apiVersion: peng/v1\nservice: shop\nteam: books\nstages: {{ {} }}\nrun: {{ command: ./shop }}\n",
        stages.join(", ")
    );
    assert_eq!(
        only_error(&text),
        "peng.yaml:4:1: 21 stages declared; at most 20 are allowed"
    );
}

#[test]
fn too_many_instances() {
    let text = HEAD.replace("instances: 1", "instances: 101");
    assert_eq!(
        only_error(&text),
        "peng.yaml:4:36: 'instances' in stage 'production': expected a whole number from 0 to 100, found '101'"
    );
}

#[test]
fn nesting_depth() {
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH * 4), "]".repeat(MAX_DEPTH * 4));
    let error = only_error(&format!("{HEAD}sensors: {deep}\n"));
    assert!(
        error.contains("nesting is deeper than 16 levels"),
        "{error}"
    );
}

#[test]
fn billion_laughs_is_refused_at_the_first_anchor() {
    let mut text = format!("{HEAD}logging: &a0 {{ retention: 7d }}\n");
    for i in 1..10 {
        let prev = i - 1;
        text.push_str(&format!(
            "x{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let diagnostics = parse_service("peng.yaml", &text).expect_err("refused");
    assert!(diagnostics
        .to_string()
        .contains("YAML anchors (&name) are not supported"));
    // One diagnostic per anchor, alias and unknown key: linear in the size of the file.
    assert!(diagnostics.len() < 100, "{diagnostics}");
}

/// Files just under the size limit, shaped to be expensive: many keys in one mapping (duplicate
/// detection), many list items, many unknown keys (one diagnostic each). They must be refused
/// quickly; a quadratic step would make this test take minutes.
#[test]
fn large_files_are_refused_in_linear_time() {
    let started = std::time::Instant::now();
    let mut many_keys = HEAD.to_string();
    let mut i = 0;
    while many_keys.len() < MAX_FILE_BYTES - 32 {
        many_keys.push_str(&format!("k{i}: 1\n"));
        i += 1;
    }
    let diagnostics = parse_service("peng.yaml", &many_keys).expect_err("unknown keys");
    assert_eq!(diagnostics.len(), i);

    let mut many_items = format!("{HEAD}sensors:\n");
    while many_items.len() < MAX_FILE_BYTES - 32 {
        many_items.push_str("- {}\n");
    }
    assert!(parse_service("peng.yaml", &many_items).is_err());

    let flow = format!("{HEAD}x: [{}]\n", "[], ".repeat((MAX_FILE_BYTES - 200) / 4));
    assert!(parse_service("peng.yaml", &flow).is_err());
    eprintln!("large files refused in {:?}", started.elapsed());
}

#[test]
fn writable_directories() {
    let dirs: Vec<String> = (0..=MAX_WRITABLE).map(|i| format!("d{i}")).collect();
    let text = HEAD.replace(
        "run: { command: ./shop }",
        &format!("run:\n  command: ./shop\n  writable: [{}]", dirs.join(", ")),
    );
    assert_eq!(
        only_error(&text),
        "peng.yaml:7:13: 'writable' in run: 17 directories; at most 16 are allowed"
    );
}

#[test]
fn processes_of_an_instance() {
    for (pids, ok) in [
        (0, false),
        (1, true),
        (MAX_PIDS, true),
        (MAX_PIDS + 1, false),
    ] {
        let text = HEAD.replace(
            "run: { command: ./shop }",
            &format!("run: {{ command: ./shop, resources: {{ pids: {pids} }} }}"),
        );
        assert_eq!(parse_service("peng.yaml", &text).is_ok(), ok, "{pids}");
    }
}
