//! Each `tests/cases/NAME.yaml` is parsed as `peng.yaml`, and each
//! `tests/platform-cases/NAME.yaml` as `platform.yaml`; the outcome (the diagnostics, or the
//! validated value) must equal `NAME.expected`. Run with `UPDATE_EXPECT=1` to rewrite the
//! expectations, then review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use peng_spec::{parse_platform, parse_service};

fn render_service(text: &str) -> String {
    match parse_service("peng.yaml", text) {
        Ok(spec) => format!("ok\n{spec:#?}\n"),
        Err(diagnostics) => format!("{diagnostics}\n"),
    }
}

fn render_platform(text: &str) -> String {
    match parse_platform("platform.yaml", text) {
        Ok(platform) => format!("ok\n{platform:#?}\n"),
        Err(diagnostics) => format!("{diagnostics}\n"),
    }
}

fn case_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("the cases directory exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn cases_match_their_expectations() {
    check_cases("cases", render_service);
}

#[test]
fn platform_cases_match_their_expectations() {
    check_cases("platform-cases", render_platform);
}

fn check_cases(dir: &str, render: fn(&str) -> String) {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let files = case_files(dir);
    assert!(files.len() >= 5, "cases are missing: {files:?}");
    let mut failures = Vec::new();
    for path in files {
        let text = fs::read_to_string(&path).expect("case is UTF-8");
        let actual = render(&text);
        let expected_path = path.with_extension("expected");
        if update {
            fs::write(&expected_path, &actual).expect("expectation written");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "--- {}\n+++ actual\n{actual}",
                expected_path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ (UPDATE_EXPECT=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_example_parses() {
    let spec = parse_service("peng.yaml", crate::EXAMPLE).expect("the example is valid");
    assert_eq!(spec.id().to_string(), "books/bookshelf");
    assert_eq!(spec.stages.len(), 2);
    assert_eq!(spec.sensors[0].name, "books-page");
    assert_eq!(spec.alerts[0].sensor, "health");
    assert_eq!(spec.action_plans.len(), 2);
}

#[test]
fn the_platform_example_parses() {
    let text = include_str!("../../../../examples/platform.yaml");
    let platform = parse_platform("platform.yaml", text).expect("the example is valid");
    assert_eq!(platform.prices.currency, "EUR");
    assert!(platform.databases.plans.contains_key("large"));
    assert!(platform.shared_server(None).is_none());
    assert_eq!(platform.isolation.mode, peng_spec::IsolationMode::Required);
    let books = peng_core::TeamName::parse("books").expect("a team name");
    assert_eq!(
        platform.isolation.service_dirs_for(&books),
        [std::path::PathBuf::from("/srv/peng/books")]
    );
}
