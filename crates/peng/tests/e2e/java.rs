//! log4j2's `GelfLayout`, the GELF client of the platform's Java services, against the real
//! binary: `java/GelfClient.java` compiled with `javac` and run with Debian's log4j2 jars and
//! `java/log4j2.xml`, sending over GELF TCP (null-delimited), UDP (gzip) and HTTP `POST /gelf`
//! (zlib, the token in a header). Each message must be stored for the team whose ingest token
//! it carries, with its level, its additional fields searchable as `field:value`, and its stack
//! trace whole in `full_message`; nothing may be refused.
//!
//! Java and log4j2 come from Debian (`default-jdk-headless`, `liblog4j2-java`), which
//! scripts/test.sh installs; without them this test fails, naming what to install.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::process::Command;

use crate::harness::{eventually, free_port, open_tempdir, peng, Peng};

/// `GelfClient.java` and `log4j2.xml`.
const SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/java");
/// Where Debian's `liblog4j2-java` puts log4j2.
const LOG4J2_JARS: [&str; 2] = [
    "/usr/share/java/log4j-api.jar",
    "/usr/share/java/log4j-core.jar",
];
/// How deep `GelfClient` throws: the stack trace has this many `charge` frames.
const CHARGE_FRAMES: usize = 41;
/// Longest time `javac` or the program may take (a loaded 2-core machine is slow to start a JVM).
const JAVA_TIMEOUT: Duration = Duration::from_secs(180);

/// Fails, naming the package, unless `javac`, `java` and the log4j2 jars are installed.
fn require_java_and_log4j2() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ["javac", "java"] {
        assert!(
            std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()),
            "`{tool}` is not on PATH: this test compiles and runs a Java program; install a JDK \
             (apt-get install default-jdk-headless), as scripts/test.sh does"
        );
    }
    for jar in LOG4J2_JARS {
        assert!(
            Path::new(jar).is_file(),
            "{jar} is missing: this test logs through log4j2; install Debian's log4j2 \
             (apt-get install liblog4j2-java), as scripts/test.sh does"
        );
    }
}

/// Runs a program to its end (killed if the test fails first or it outlives `JAVA_TIMEOUT`);
/// fails the test with its output unless it succeeds. Returns its stderr.
async fn run(what: &str, cmd: &mut Command) -> String {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let out = tokio::time::timeout(JAVA_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {JAVA_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stderr
}

/// The hits of a search as `team` sees them, newest first.
async fn hits(url: &str, token: &str, query: &str) -> Vec<Value> {
    let out = peng(
        url,
        token,
        &["--json", "logs", "search", query, "--since", "1h"],
    )
    .await;
    assert_eq!(out.code, 0, "logs search '{query}' failed: {out:?}");
    let v: Value = serde_json::from_str(&out.stdout).expect("search json");
    v["hits"].as_array().cloned().unwrap_or_default()
}

/// The one hit of `query`.
async fn one(url: &str, token: &str, query: &str) -> Value {
    let mut found = hits(url, token, query).await;
    assert_eq!(
        found.len(),
        1,
        "'{query}' should find one message: {found:#?}"
    );
    found.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log4j2_gelf_layout_over_tcp_udp_and_http_is_stored_searchable_with_fields_and_stack_traces(
) {
    require_java_and_log4j2();
    let tmp = open_tempdir();
    let (http_port, gelf_port) = (free_port(), free_port());
    let server = Peng::start(&tmp.path().join("data"), http_port, gelf_port).await;
    let url = server.url();
    let admin = server.admin_token();

    // The team, and its ingest token as the team itself reads it.
    let created = peng(&url, &admin, &["team", "create", "payments", "--json"]).await;
    assert_eq!(created.code, 0, "{created:?}");
    let created: Value = serde_json::from_str(&created.stdout).expect("json");
    let token = created["token"].as_str().expect("token").to_string();
    let ingest = peng(&url, &token, &["team", "ingest-token", "payments"]).await;
    assert_eq!(ingest.code, 0, "{ingest:?}");
    let ingest = ingest.stdout.trim().to_string();
    assert!(ingest.starts_with("pgi_"), "{ingest}");
    // Another team, which must see none of it.
    let other = peng(&url, &admin, &["team", "create", "music", "--json"]).await;
    assert_eq!(other.code, 0, "{other:?}");
    let other: Value = serde_json::from_str(&other.stdout).expect("json");
    let other = other["token"].as_str().expect("token").to_string();

    // Compile the client and run it once: three messages (info, warn, error with a stack
    // trace) over each of TCP, UDP and HTTP.
    let classes = tmp.path().join("classes");
    let classpath = LOG4J2_JARS.join(":");
    let started = Instant::now();
    run(
        "javac",
        Command::new("javac")
            .args(["-encoding", "UTF-8", "-cp", &classpath, "-d"])
            .arg(&classes)
            .arg(format!("{SOURCES}/GelfClient.java")),
    )
    .await;
    let marker = format!("log4j{}x{http_port}", std::process::id());
    let stderr = run(
        "the log4j2 client (java GelfClient)",
        Command::new("java")
            .arg("-cp")
            .arg(format!("{}:{classpath}", classes.display()))
            .arg(format!("-Dlog4j2.configurationFile={SOURCES}/log4j2.xml"))
            .arg("-Dgelf.host=127.0.0.1")
            .arg(format!("-Dgelf.tcp.port={gelf_port}"))
            .arg(format!("-Dgelf.udp.port={gelf_port}"))
            .arg(format!("-Dgelf.http.url={url}/gelf"))
            .args(["GelfClient", &marker])
            .env("PENG_INGEST_TOKEN", &ingest),
    )
    .await;
    // log4j2 reports its own failures on stderr (status="warn"); some of them, such as an
    // appender it could not build from the configuration, never reach the program.
    assert!(
        !stderr.contains("ERROR"),
        "log4j2 reported errors:\n{stderr}"
    );
    eprintln!("javac and java took {:?}", started.elapsed());

    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    for transport in ["tcp", "udp", "http"] {
        let sent = format!("{marker} AND transport:{transport}");
        let all = eventually(
            &format!("the three messages log4j2 sent over {transport}"),
            Duration::from_secs(30),
            || async {
                let found = hits(&url, &token, &sent).await;
                (found.len() >= 3).then_some(found)
            },
        )
        .await;
        assert_eq!(all.len(), 3, "{all:#?}");
        let mut levels: Vec<u64> = all
            .iter()
            .map(|h| h["level"].as_u64().expect("level"))
            .collect();
        levels.sort();
        assert_eq!(levels, [3, 4, 6], "error, warn, info: {all:#?}");
        for hit in &all {
            assert_eq!(hit["source"], format!("gelf-{transport}"), "{hit:#?}");
            assert_eq!(hit["team"], "payments", "{hit:#?}");
            // `_service` and `_stage` fill their columns.
            assert_eq!(hit["service"], "payments", "{hit:#?}");
            assert_eq!(hit["stage"], "integration", "{hit:#?}");
            assert_eq!(hit["host"], "payments-1", "{hit:#?}");
            // The KeyValuePair elements, the thread context and GelfLayout's own fields, as
            // log4j2 sends them (strings).
            let fields = &hit["fields"];
            assert_eq!(fields["transport"], transport, "{hit:#?}");
            assert_eq!(fields["order_id"], "4711", "{hit:#?}");
            assert_eq!(fields["customer"], "Zoë", "{hit:#?}");
            assert_eq!(fields["logger"], format!("gelf.{transport}"), "{hit:#?}");
            assert_eq!(fields["thread"], "main", "{hit:#?}");
            assert!(
                fields.get("ingest_token").is_none(),
                "token stored: {hit:#?}"
            );
            // The client's own time, in log4j2's milliseconds, not the time peng received it.
            let ts = hit["timestamp_ns"].as_i64().expect("timestamp");
            assert_eq!(ts % 1_000_000, 0, "not log4j2's millisecond time: {hit:#?}");
            assert!(
                (now_ns - ts).abs() < 600_000_000_000,
                "{ts} vs now {now_ns}"
            );
        }

        // Additional fields and columns as `field:value`.
        for query in [
            format!("order_id:4711 AND {sent}"),
            format!("customer:zoë AND {sent}"),
            format!("logger:gelf.{transport} AND {marker}"),
            format!("service:payments AND stage:integration AND host:payments-1 AND {sent}"),
        ] {
            assert_eq!(hits(&url, &token, &query).await.len(), 3, "{query}");
        }
        assert_eq!(
            hits(&url, &token, &format!("order_id:4712 AND {sent}"))
                .await
                .len(),
            0
        );

        // Each level.
        let info = one(&url, &token, &format!("level:6 AND {sent}")).await;
        assert_eq!(
            info["message"],
            format!("order {marker} placed over {transport} für Zoë")
        );
        assert!(info.get("full_message").is_none(), "{info:#?}");
        let warn = one(&url, &token, &format!("level:4 AND {sent}")).await;
        assert_eq!(
            warn["message"],
            format!("order {marker} slow over {transport}")
        );
        let error = one(&url, &token, &format!("level:3 AND {sent}")).await;
        assert_eq!(
            error["message"],
            format!("payment for order {marker} failed over {transport}")
        );

        // The stack trace, found by the exception's class name and its cause's message.
        let traced = one(
            &url,
            &token,
            &format!("PaymentDeclinedException AND transport:{transport}"),
        )
        .await;
        assert_eq!(traced, error, "the stack trace belongs to the error");
        let trace = traced["full_message"].as_str().expect("full_message");
        assert!(
            trace.starts_with(&format!(
                "GelfClient$PaymentDeclinedException: card declined for {marker}\n"
            )),
            "{trace}"
        );
        assert_eq!(
            trace
                .matches("\tat GelfClient.charge(GelfClient.java:")
                .count(),
            CHARGE_FRAMES,
            "the whole stack trace: {trace}"
        );
        assert!(
            trace.contains("\tat GelfClient.main(GelfClient.java:"),
            "{trace}"
        );
        assert!(
            trace.contains("Caused by: java.io.IOException: gateway timed out"),
            "{trace}"
        );
        let caused = one(
            &url,
            &token,
            &format!("\"gateway timed out\" AND transport:{transport}"),
        )
        .await;
        assert_eq!(caused, error);
    }

    // Nine messages, all of them the team's, none refused, the token stored nowhere.
    assert_eq!(hits(&url, &token, &marker).await.len(), 9);
    assert_eq!(hits(&url, &token, "_exists_:ingest_token").await.len(), 0);
    assert_eq!(hits(&url, &other, &marker).await.len(), 0, "another team's");
    let rejected: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("{url}/api/v1/logs/rejected"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("rejected")
        .json()
        .await
        .expect("json");
    assert_eq!(rejected, Value::Array(vec![]), "peng refused messages");

    let log = server.server_log();
    server.stop().await;
    assert!(!log.contains("panicked"), "peng serve panicked:\n{log}");
}
