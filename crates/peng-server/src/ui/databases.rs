//! The service page's databases: one card per stage with what `peng status` tells (state,
//! address, protection, replica, last backup), and the drift the last reconcile found, which
//! stands out. Only what `ServiceStatus` already carries is shown, so the page asks nothing
//! more of the servers. Credentials are never shown: they stay with `peng db credentials`,
//! which is audited.

use maud::{html, Markup};
use peng_databases::{DatabaseStatus, Finding, ReplicaStatus};
use peng_state::{BackupRow, DbStatus};

use super::format::{ago, bytes, date_time, ms};

/// The cards of every stage's database, or a line saying there is none.
pub fn section(service_id: &str, dbs: &[DatabaseStatus], now_ns: i64) -> Markup {
    html! {
        @if dbs.is_empty() {
            p class="empty muted" { "No database: the service file has no " code { "database:" } " section." }
        } @else {
            div class="dbs" {
                @for db in dbs { (card(db, now_ns)) }
            }
            p class="muted" {
                "Credentials are not shown here: " code { "peng db credentials " (service_id) " --stage STAGE" }
                " prints them, and is audited."
            }
        }
    }
}

fn card(db: &DatabaseStatus, now_ns: i64) -> Markup {
    html! {
        section class={ "db" @if !db.drift.is_empty() { " drifted" } } {
            h3 { (db.stage) }
            table class="kv" {
                tr {
                    th scope="row" { "Server" }
                    td {
                        (db.mode.as_str()) " MariaDB " (db.version) ", plan " (db.plan)
                        @if !db.server.is_empty() { " on " code { (db.server) } }
                    }
                }
                tr { th scope="row" { "State" } td { (state(db.status, db.failing.as_deref())) } }
                tr {
                    th scope="row" { "Address" }
                    td { code { (db.host) ":" (db.port) "/" (db.database) } }
                }
                tr {
                    th scope="row" { "Protection" }
                    @if db.protected {
                        td class="ok" title="removing it from the service file needs --force, and takes a final backup first" { "protected" }
                    } @else {
                        td class="muted" { "not protected" }
                    }
                }
                tr {
                    th scope="row" { "Replica" }
                    td {
                        @match &db.replica {
                            Some(r) => (replica(r)),
                            None => span class="muted" { "none" },
                        }
                    }
                }
                tr {
                    th scope="row" { "Last backup" }
                    td {
                        @match &db.last_backup {
                            Some(b) => (backup(b, now_ns)),
                            None => span class="warn" { "none yet" },
                        }
                    }
                }
            }
            @if !db.drift.is_empty() { (drift(&db.drift, now_ns)) }
        }
    }
}

/// `ready`, `creating`, or `failing: why` with the reason in plain text after the word.
fn state(status: DbStatus, failing: Option<&str>) -> Markup {
    match (status, failing) {
        (_, Some(why)) => html! { span class="fail" { "failing" } ": " (why) },
        (DbStatus::Ready, None) => html! { span class="ok" { "ready" } },
        (other, None) => html! { span class="warn" { (other.as_str()) } },
    }
}

fn running(label: &str, yes: bool) -> Markup {
    html! {
        @if yes { (label) " " span class="ok" { "running" } }
        @else { (label) " " span class="fail" { "STOPPED" } }
    }
}

fn replica(r: &ReplicaStatus) -> Markup {
    html! {
        code { (r.host) ":" (r.port) }
        " · " (running("io", r.io_running)) " · " (running("sql", r.sql_running))
        " · lag "
        @match r.lag_seconds {
            Some(0) => span class="ok" { "0s" },
            Some(s) => span class=(if s >= 60 { "fail" } else { "warn" }) { (s) "s" },
            None => span class="muted" { "unknown" },
        }
        @if let Some(e) = r.last_error.as_deref().filter(|e| !e.is_empty()) {
            div class="fail log" { "last error: " (e) }
        }
    }
}

fn backup(b: &BackupRow, now_ns: i64) -> Markup {
    html! {
        "#" (b.id) " " span class="muted" { (b.kind.as_str()) } " · "
        span class="nowrap" title={ (date_time(b.started_at)) " UTC" } { (ago(b.started_at, now_ns)) }
        " · " (bytes(b.bytes.max(0) as u64)) " · "
        @match b.verified {
            Some(true) => span class="ok" { "verified" },
            Some(false) => span class="fail" { "FAILED" },
            None => span class="warn" { "not verified yet" },
        }
        @if let Some(r) = b.restore_ms { " · restore took " (ms(r as f64)) }
        @if let Some(e) = b.error.as_deref().filter(|e| !e.is_empty()) {
            div class="fail log" { (e) }
        }
    }
}

fn drift(found: &[Finding], now_ns: i64) -> Markup {
    let at = found.iter().map(|d| d.at_ns).max().unwrap_or_default();
    html! {
        div class="drift" role="status" {
            p {
                strong { "Drift found by the last reconcile" } " "
                span class="muted" title={ (date_time(at)) " UTC" } { "(" (ago(at, now_ns)) ")" }
            }
            table {
                tr { th { "Object" } th { "Problem" } th { "Repaired" } }
                @for d in found {
                    tr {
                        td { code { (d.object) } }
                        td { (d.problem) }
                        @if d.repaired { td class="ok nowrap" { "repaired" } } @else { td class="fail nowrap" { "NOT repaired" } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peng_core::DbMode;

    const NOW: i64 = 1_795_841_748_000_000_000;
    const MIN: i64 = 60_000_000_000;

    /// A dedicated database with a stopped replica, a failed backup and drift, as
    /// `Databases::status` reports one that is in trouble.
    fn troubled() -> DatabaseStatus {
        DatabaseStatus {
            stage: peng_core::StageName::parse("production").expect("stage"),
            mode: DbMode::Dedicated,
            server: String::new(),
            version: "11.4".into(),
            plan: "small".into(),
            database: "books_bookshelf".into(),
            status: DbStatus::Ready,
            failing: Some("replica: Slave_SQL_Running is No".into()),
            host: "127.0.0.1".into(),
            port: 40_123,
            replica: Some(ReplicaStatus {
                host: "127.0.0.1".into(),
                port: 40_124,
                io_running: true,
                sql_running: false,
                lag_seconds: None,
                last_error: Some("Error 'Duplicate entry '7' for key 'PRIMARY'' on query".into()),
            }),
            protected: true,
            last_backup: Some(BackupRow {
                id: 17,
                service: peng_core::ServiceId::parse("books/bookshelf").expect("id"),
                stage: peng_core::StageName::parse("production").expect("stage"),
                kind: peng_state::BackupKind::Scheduled,
                file: "/backups/17.sql.gz".into(),
                started_at: NOW - 5 * MIN,
                bytes: 3 << 20,
                took_ms: 840,
                tables_json: r#"{"books":12}"#.into(),
                verified: Some(false),
                restore_ms: Some(1_250),
                error: Some("row counts differ: books has 11 rows, want 12".into()),
                deleted_at: None,
            }),
            drift: vec![
                Finding {
                    object: "user 'books_bookshelf_a'@'%'".into(),
                    problem: "max_user_connections is 0, want 20; changed".into(),
                    repaired: true,
                    at_ns: NOW - 2 * MIN,
                },
                Finding {
                    object: "<script>alert(1)</script>".into(),
                    problem: "missing".into(),
                    repaired: false,
                    at_ns: NOW - 2 * MIN,
                },
            ],
        }
    }

    #[test]
    fn a_troubled_database_shows_its_replica_backup_and_drift() {
        let html = section("books/bookshelf", &[troubled()], NOW).into_string();
        for want in [
            "<h3>production</h3>",
            "dedicated MariaDB 11.4, plan small",
            r#"<span class="fail">failing</span>: replica: Slave_SQL_Running is No"#,
            "127.0.0.1:40123/books_bookshelf",
            "protected",
            "127.0.0.1:40124",
            r#"io <span class="ok">running</span>"#,
            r#"sql <span class="fail">STOPPED</span>"#,
            "last error: Error",
            "Duplicate entry",
            "#17",
            "5m ago",
            "3.0 MiB",
            r#"<span class="fail">FAILED</span>"#,
            "restore took 1.25 s",
            "row counts differ",
            r#"class="db drifted""#,
            "Drift found by the last reconcile",
            "max_user_connections is 0, want 20; changed",
            r#"<td class="ok nowrap">repaired</td>"#,
            r#"<td class="fail nowrap">NOT repaired</td>"#,
            "peng db credentials books/bookshelf --stage STAGE",
        ] {
            assert!(html.contains(want), "{want:?} missing in {html}");
        }
        assert!(!html.contains("<script>"), "escaped: {html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn a_healthy_shared_database_has_no_drift_block() {
        let mut db = troubled();
        db.mode = DbMode::Shared;
        db.server = "main".into();
        db.failing = None;
        db.replica = None;
        db.protected = false;
        db.drift.clear();
        if let Some(b) = db.last_backup.as_mut() {
            b.verified = Some(true);
            b.error = None;
        }
        let html = section("books/bookshelf", &[db], NOW).into_string();
        assert!(html.contains(r#"<span class="ok">ready</span>"#), "{html}");
        assert!(html.contains("on <code>main</code>"), "{html}");
        assert!(html.contains("not protected"), "{html}");
        assert!(
            html.contains(r#"<span class="ok">verified</span>"#),
            "{html}"
        );
        assert!(!html.contains("drift"), "{html}");
        assert!(!html.contains("STOPPED"), "{html}");
    }

    #[test]
    fn a_service_without_a_database_says_so() {
        let html = section("books/bookshelf", &[], NOW).into_string();
        assert!(html.contains("No database"), "{html}");
        assert!(!html.contains("credentials"), "{html}");
    }
}
