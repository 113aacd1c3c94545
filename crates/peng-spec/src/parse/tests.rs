use peng_core::{ByteSize, Duration, StageName};

use super::database::is_db_version;
use super::*;
use crate::model::{DatabaseSpec, HealthProbe};

fn messages(text: &str) -> Vec<String> {
    match parse_service("peng.yaml", text) {
        Ok(spec) => panic!("expected errors, got {spec:?}"),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

const MINIMAL: &str = "apiVersion: peng/v1\nservice: shop\nteam: books\nstages: { production: { instances: 1 } }\nrun: { command: ./shop }\n";

#[test]
fn minimal_file_gets_defaults() {
    let spec = parse_service("peng.yaml", MINIMAL).unwrap();
    assert_eq!(spec.run.command, vec!["./shop"]);
    assert_eq!(spec.run.health.probe, HealthProbe::Tcp);
    assert_eq!(spec.run.health.every, Duration::from_secs(10));
    assert_eq!(spec.run.health.timeout, Duration::from_secs(2));
    assert_eq!(spec.run.resources.cpu, 0.25);
    assert_eq!(spec.run.resources.memory, ByteSize(256 << 20));
    assert_eq!(spec.logging.retention, Duration::from_secs(7 * 86_400));
    assert!(spec.sensors.is_empty() && spec.alerts.is_empty() && spec.action_plans.is_empty());
}

#[test]
fn unknown_key_suggests_the_close_one() {
    let text = format!(
        "{MINIMAL}sensors:\n  - name: checkout-page\n    http: {{ path: /checkout }}\n    every_s: 30s\n"
    );
    assert_eq!(
        messages(&text),
        vec![
            "peng.yaml:9:5: unknown key 'every_s' in sensor 'checkout-page'; did you mean 'every'?"
        ]
    );
}

#[test]
fn short_every_shortens_the_default_timeout() {
    let text = format!("{MINIMAL}sensors:\n  - {{ name: a, tcp: {{}}, every: 2s }}\n");
    let spec = parse_service("peng.yaml", &text).unwrap();
    assert_eq!(spec.sensors[0].timeout, Duration::from_secs(1));
}

#[test]
fn missing_keys_name_the_parent() {
    let text = "apiVersion: peng/v1\nservice: shop\nteam: books\nstages: { production: {} }\nrun:\n  env: {}\n";
    assert_eq!(
        messages(text),
        vec![
            "peng.yaml:4:11: missing key 'instances' in stage 'production'",
            "peng.yaml:5:1: missing key 'command' in run",
        ]
    );
}

#[test]
fn database_protection_defaults_to_production() {
    let text = format!("{MINIMAL}database: {{ version: '10.11' }}\n");
    let database = parse_service("peng.yaml", &text).unwrap().database.unwrap();
    let (production, integration) = (
        StageName::parse("production").unwrap(),
        StageName::parse("integration").unwrap(),
    );
    assert!(database.protected(&production));
    assert!(!database.protected(&integration));
    let off = DatabaseSpec {
        protect: Some(false),
        ..database.clone()
    };
    assert!(!off.protected(&production));
    let on = DatabaseSpec {
        protect: Some(true),
        ..database
    };
    assert!(on.protected(&integration));
}

#[test]
fn versions_are_major_dot_minor() {
    for good in ["10.11", "10.10", "11.4", "8.0"] {
        assert!(is_db_version(good), "{good}");
    }
    for bad in ["10", "10.", ".11", "10.11.2", "v10.11", "10.1a", ""] {
        assert!(!is_db_version(bad), "{bad}");
    }
}

fn run_with(lines: &str) -> String {
    MINIMAL.replace("run: { command: ./shop }\n", &format!("run:\n{lines}"))
}

#[test]
fn directories_are_normalized_inside_the_service_directory() {
    for (written, workdir) in [
        (".", None),
        ("./", None),
        ("a/..", None),
        ("./a/../b", Some("b")),
        ("a/./b//c/", Some("a/b/c")),
        ("~/x", Some("~/x")),
    ] {
        let text = run_with(&format!("  command: ./shop\n  workdir: '{written}'\n"));
        let spec = parse_service("peng.yaml", &text).expect(written);
        assert_eq!(spec.run.workdir.as_deref(), workdir, "{written}");
    }
    let text = run_with("  command: ./shop\n  writable: [., data, ./data/, a/../data, logs]\n");
    let spec = parse_service("peng.yaml", &text).unwrap();
    assert_eq!(spec.run.writable, [".", "data", "logs"]);
    let text = run_with("  command: ./shop\n  writable:\n");
    assert!(parse_service("peng.yaml", &text)
        .unwrap()
        .run
        .writable
        .is_empty());
}

#[test]
fn an_absolute_workdir_is_refused_at_its_value() {
    let text = run_with("  command: ./shop\n  workdir: /var/lib/peng\n");
    assert_eq!(
        messages(&text),
        vec!["peng.yaml:7:12: run.workdir '/var/lib/peng' must be relative to the service file's directory"]
    );
}

#[test]
fn an_empty_program_is_refused_where_it_is_written() {
    let text = run_with("  command: [\"\", --port, '${PORT}']\n");
    assert_eq!(
        messages(&text),
        vec!["peng.yaml:6:13: 'command' in run: the program to start is empty"]
    );
    // Later arguments may be empty.
    let text = run_with("  command: [./shop, \"\"]\n");
    assert_eq!(
        parse_service("peng.yaml", &text).unwrap().run.command,
        ["./shop", ""]
    );
}

#[test]
fn nul_bytes_are_refused_however_they_are_written() {
    for escape in ["\\0", "\\x00", "\\u0000", "\\U00000000"] {
        let text = run_with(&format!("  command: \"./shop {escape}x\"\n"));
        let all = messages(&text);
        assert_eq!(all.len(), 1, "{escape}: {all:?}");
        assert!(
            all[0].starts_with(
                "peng.yaml:6:12: 'command' in run: argument 1 '\\0x' contains a NUL byte"
            ),
            "{all:?}"
        );
    }
    // Written as such, the byte would end the text for the YAML reader: the whole file is
    // refused, at the byte.
    let text = run_with("  command: ./shop\n  env: { A: \"x\0\" }\n");
    assert_eq!(
        messages(&text),
        vec!["peng.yaml:7:15: the file holds a NUL byte; a peng file is text without NUL bytes"]
    );
}

#[test]
fn pids_are_optional() {
    let spec = parse_service("peng.yaml", MINIMAL).unwrap();
    assert_eq!(spec.run.resources.pids, None);
    let text = run_with("  command: ./shop\n  resources: { pids: 65536 }\n");
    let spec = parse_service("peng.yaml", &text).unwrap();
    assert_eq!(spec.run.resources.pids, Some(65536));
    let text = run_with("  command: ./shop\n  resources: { pids: '12' }\n");
    assert_eq!(
        messages(&text),
        vec!["peng.yaml:7:22: 'pids' in run.resources: expected a whole number from 1 to 65536, found '12'"]
    );
}

#[test]
fn escalation_cycles_are_refused() {
    let text = format!(
        "{MINIMAL}action_plans:\n  a: {{ notify: [{{ webhook: 'http://x/a' }}], escalate: {{ after: 1m, to: b }} }}\n  b: {{ notify: [{{ webhook: 'http://x/b' }}], escalate: {{ after: 1m, to: a }} }}\n"
    );
    let all = messages(&text);
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].contains("escalation cycle: a → b → a"), "{all:?}");
}
