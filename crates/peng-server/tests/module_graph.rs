//! The shape of peng-server, checked on its source so that it stays the shape the crate docs
//! describe:
//! - the modules of `src/` (and the files inside `ops/`, `api/` and `ui/`) import each other
//!   without a cycle;
//! - `api`, `ui` and `workers` never import each other; `ops` imports none of the front ends
//!   nor the wiring;
//! - no module outside `ops` takes a lock.
//!
//! An import is any `crate::NAME` (or `super::NAME` between sibling files) outside comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as (path relative to `src/`, code without comments).
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read file");
                let rel = path
                    .strip_prefix(src())
                    .expect("under src")
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, strip_comments(&text)));
            }
        }
    }
    out.sort();
    out
}

/// The code of each line without its `//` comment (a `//` inside a string literal, such as
/// in a URL, cuts the rest of that line too; that only hides text, it never invents imports).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The names right after every `PREFIX` (`crate::`, `super::`), with `PREFIX{a, b::c}` read as
/// `a` and `b`.
fn imports(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `my_crate::`, not `crate::`
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        let name = ident(&group[j..]);
                        if !name.is_empty() {
                            out.insert(name.to_string());
                        }
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // depth-first search with colours; returns the first cycle found, as a path
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut done, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// The top-level module a file belongs to: `api/teams.rs` → `api`, `start.rs` → `start`.
fn top(file: &str) -> String {
    let first = file.split('/').next().unwrap_or(file);
    first.trim_end_matches(".rs").to_string()
}

/// The crate's modules and who imports whom (`lib` is the crate root).
fn top_graph() -> BTreeMap<String, BTreeSet<String>> {
    let all = files(&src());
    let modules: BTreeSet<String> = all.iter().map(|(f, _)| top(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, code) in &all {
        let from = top(file);
        let entry = graph.entry(from.clone()).or_default();
        for to in imports(code, "crate::") {
            if to != from && modules.contains(&to) {
                entry.insert(to);
            }
        }
    }
    graph
}

/// The files of `dir` (a module folder) and which sibling each imports.
fn folder_graph(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let all = files(&src().join(dir));
    let siblings: BTreeSet<String> = all
        .iter()
        .filter_map(|(f, _)| {
            let name = f.strip_prefix(&format!("{dir}/"))?.split('/').next()?;
            let name = name.trim_end_matches(".rs");
            (name != "mod").then(|| name.to_string())
        })
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, code) in &all {
        let Some(name) = file
            .strip_prefix(&format!("{dir}/"))
            .and_then(|f| f.split('/').next())
            .map(|n| n.trim_end_matches(".rs").to_string())
        else {
            continue;
        };
        if name == "mod" {
            continue; // the folder's root declares its files; that is not an import
        }
        let mut used = imports(code, "super::");
        for (i, _) in code.match_indices(&format!("crate::{dir}::")) {
            let rest = &code[i + "crate::".len() + dir.len() + 2..];
            used.insert(ident(rest).to_string());
        }
        let entry = graph.entry(name.clone()).or_default();
        for to in used {
            if to != name && siblings.contains(&to) {
                entry.insert(to);
            }
        }
    }
    graph
}

#[test]
fn the_modules_import_each_other_without_a_cycle() {
    let graph = top_graph();
    assert!(
        graph.contains_key("ops") && graph.contains_key("api"),
        "{graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in peng-server: {}", cycle.join(" -> "));
    }
    for dir in ["ops", "api", "ui"] {
        let g = folder_graph(dir);
        assert!(g.len() > 1, "{dir}/ has files: {g:?}");
        if let Some(cycle) = find_cycle(&g) {
            panic!("import cycle in {dir}/: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn front_ends_never_import_each_other_and_ops_imports_none() {
    let graph = top_graph();
    let mut wrong = Vec::new();
    let rules: &[(&str, &[&str])] = &[
        ("api", &["ui", "workers", "start"]),
        ("ui", &["api", "workers", "start"]),
        ("workers", &["api", "ui", "start"]),
        ("ops", &["api", "ui", "workers", "start", "http"]),
    ];
    for (from, never) in rules {
        for to in graph.get(*from).into_iter().flatten() {
            if never.contains(&to.as_str()) {
                wrong.push(format!("{from} imports {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn only_the_application_layer_takes_locks() {
    let mut wrong = Vec::new();
    for (file, code) in files(&src()) {
        if file.starts_with("ops/") {
            continue;
        }
        for pat in [
            "Mutex",
            "RwLock",
            ".lock()",
            ".read().await",
            ".write().await",
        ] {
            if code.contains(pat) {
                wrong.push(format!("{file}: {pat}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_import_reader_reads_what_rust_writes() {
    let code =
        "use crate::{ops::{Caller, Ops}, api};\nlet x = crate::status::of(e);\nuse my_crate::nope;";
    let got = imports(code, "crate::");
    let want: BTreeSet<String> = ["ops", "api", "status"].map(String::from).into();
    assert_eq!(got, want);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
