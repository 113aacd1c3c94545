//! The InfluxDB 1.x API with its real clients, against the real binary:
//!
//! - **Telegraf's exact requests** (from its `outputs.influxdb` source): `POST /query` with the
//!   form `q=CREATE DATABASE "telegraf"` and Basic auth, then `POST /write?db=telegraf` with a
//!   gzip body of unknown length (chunked), `Content-Type: text/plain; charset=utf-8`.
//! - **A differential run** against InfluxDB 1.6 from Debian (`influxd` on a temporary
//!   directory and free ports): the same points written to both, then the `influx` CLI from
//!   Debian runs Grafana's exact query strings (template variables, a CPU panel, a counter
//!   panel with `non_negative_derivative`) and more against each; its printed output must be
//!   the same, byte for byte.
//! - **The Python `influxdb` client** (PyPI): create, list, write, query.
//! - Teams apart, bad input refused whole, the admin token refused.
//!
//! scripts/test.sh installs `influxdb`, `influxdb-client` and the Python client; without them
//! this test fails, naming what to install.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::harness::{eventually, free_port, open_tempdir, python, Peng};

const INFLUXD: &str = "/usr/bin/influxd";
const INFLUX: &str = "/usr/bin/influx";
/// 2023-07-22T04:26:40Z, in seconds: the data's first point.
const T0: i64 = 1_690_000_000;
/// Points every 10 s for this many steps (30 minutes).
const STEPS: i64 = 180;

/// Three hosts' cpu (floats, exact in binary so sums agree to the bit), and a counter
/// (integers) that resets once; web-3 misses a stretch, so fills have gaps to fill.
fn dataset() -> String {
    let mut out = String::new();
    for i in 0..STEPS {
        let t = (T0 + i * 10) * 1_000_000_000;
        for (h, host) in ["web-1", "web-2", "web-3"].iter().enumerate() {
            if *host == "web-3" && (40..70).contains(&i) {
                continue;
            }
            let user = ((i * 7 + h as i64 * 13) % 80) as f64 * 0.25;
            let system = ((i * 3 + h as i64) % 20) as f64 * 0.5;
            out.push_str(&format!(
                "cpu,cpu=cpu-total,host={host} usage_user={user},usage_system={system} {t}\n"
            ));
            let counter = if i < 120 {
                i * 1500 + h as i64
            } else {
                (i - 120) * 700
            };
            out.push_str(&format!(
                "net,host={host},interface=eth0 bytes_recv={counter}i,up=true {t}\n"
            ));
        }
    }
    out
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: this test needs Debian's {package} (apt-get install {package}), as scripts/test.sh installs it"
    );
}

/// InfluxDB 1.6 on a temporary directory, its HTTP and RPC ports free; killed when dropped.
struct Influxd {
    port: u16,
    _child: Child,
}

impl Influxd {
    async fn start(dir: &Path) -> Influxd {
        require(INFLUXD, "influxdb");
        let port = free_port();
        let rpc = free_port();
        let log = std::fs::File::create(dir.join("influxd.log")).expect("log");
        let child = Command::new(INFLUXD)
            .env("INFLUXDB_META_DIR", dir.join("meta"))
            .env("INFLUXDB_DATA_DIR", dir.join("data"))
            .env("INFLUXDB_DATA_WAL_DIR", dir.join("wal"))
            .env("INFLUXDB_HTTP_BIND_ADDRESS", format!("127.0.0.1:{port}"))
            .env("INFLUXDB_BIND_ADDRESS", format!("127.0.0.1:{rpc}"))
            .env("INFLUXDB_REPORTING_DISABLED", "true")
            .env("INFLUXDB_DATA_QUERY_LOG_ENABLED", "false")
            .env("INFLUXDB_HTTP_LOG_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start influxd");
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/ping");
        eventually("influxd answers /ping", Duration::from_secs(60), || {
            let c = client.clone();
            let url = url.clone();
            async move {
                c.get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().as_u16() == 204)
            }
        })
        .await;
        Influxd {
            port,
            _child: child,
        }
    }
}

/// `influx ARGS` as a person types it: what it printed and its exit status.
async fn influx_cli(port: u16, auth: Option<(&str, &str)>, db: &str, args: &[&str]) -> String {
    require(INFLUX, "influxdb-client");
    let mut cmd = Command::new(INFLUX);
    cmd.args(["-host", "127.0.0.1", "-port", &port.to_string()]);
    if let Some((u, p)) = auth {
        cmd.args(["-username", u, "-password", p]);
    }
    if !db.is_empty() {
        cmd.args(["-database", db]);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run influx");
    format!(
        "{}{}(exit {})",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code().unwrap_or(-1)
    )
}

fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).expect("gzip");
    e.finish().expect("gzip")
}

/// Telegraf's two requests: the form `CREATE DATABASE`, then the gzip batch streamed (no
/// Content-Length), both with Basic auth and Telegraf's user agent.
async fn telegraf_writes(base: &str, user: &str, password: &str, body: &str) {
    let client = reqwest::Client::new();
    let form = format!("q={}", "CREATE%20DATABASE%20%22telegraf%22");
    let r = client
        .post(format!("{base}/query"))
        .basic_auth(user, Some(password))
        .header("User-Agent", "Telegraf/1.28.5")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("create database");
    assert_eq!(r.status().as_u16(), 200, "{base}: create database");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v, serde_json::json!({"results":[{"statement_id":0}]}));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        gzip(body).chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let r = client
        .post(format!("{base}/write?db=telegraf"))
        .basic_auth(user, Some(password))
        .header("User-Agent", "Telegraf/1.28.5")
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Content-Encoding", "gzip")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("write");
    let status = r.status().as_u16();
    assert_eq!(
        status,
        204,
        "{base}: write: {}",
        r.text().await.unwrap_or_default()
    );
}

/// Grafana's exact strings (InfluxQL data source: template variables and panels), and more.
fn queries() -> Vec<String> {
    let from = T0 * 1000;
    let to = (T0 + STEPS * 10) * 1000 - 1;
    let range = format!("time >= {from}ms and time <= {to}ms");
    vec![
        "SHOW DATABASES".into(),
        "SHOW MEASUREMENTS LIMIT 100".into(),
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)cp/ LIMIT 100".into(),
        r#"SHOW TAG KEYS FROM "cpu""#.into(),
        r#"SHOW TAG VALUES FROM "cpu" WITH KEY = "host""#.into(),
        r#"SHOW FIELD KEYS FROM "net""#.into(),
        "SHOW SERIES FROM cpu".into(),
        format!(
            r#"SELECT mean("usage_user") FROM "cpu" WHERE ("host" = 'web-1') AND {range} GROUP BY time(1m), "host" fill(null)"#
        ),
        format!(
            r#"SELECT mean("usage_user") FROM "cpu" WHERE ("host" =~ /^web-(1|3)$/) AND {range} GROUP BY time(2m), "host" fill(null)"#
        ),
        format!(
            r#"SELECT non_negative_derivative(mean("bytes_recv"), 1s) FROM "net" WHERE ("host" = 'web-2') AND {range} GROUP BY time(1m) fill(null)"#
        ),
        format!(
            r#"SELECT max("usage_user"), min("usage_user"), count("usage_user"), sum("usage_system"), spread("usage_user"), median("usage_user"), percentile("usage_user", 95), first("usage_user"), last("usage_user") FROM "cpu" WHERE {range} GROUP BY time(5m), "host" fill(none)"#
        ),
        format!(
            r#"SELECT mean("usage_user") FROM "cpu" WHERE "host" = 'web-3' AND {range} GROUP BY time(1m) fill(previous)"#
        ),
        format!(
            r#"SELECT mean("usage_user") FROM "cpu" WHERE "host" = 'web-3' AND {range} GROUP BY time(1m) fill(linear)"#
        ),
        format!(
            r#"SELECT mean("usage_user") FROM "cpu" WHERE "host" = 'web-3' AND {range} GROUP BY time(1m) fill(0)"#
        ),
        format!(
            r#"SELECT mean("usage_system") FROM "cpu" WHERE "host" != 'web-2' AND {range} GROUP BY time(10m, 3m), * fill(null)"#
        ),
        format!(
            r#"SELECT * FROM "cpu" WHERE "host" = 'web-2' AND {range} ORDER BY time DESC LIMIT 5"#
        ),
        format!(
            r#"SELECT "bytes_recv", "up" FROM "net" WHERE "host" = 'web-1' AND {range} LIMIT 3"#
        ),
        format!(
            r#"SELECT derivative("bytes_recv", 10s) FROM "net" WHERE "host" = 'web-1' AND {range} LIMIT 3"#
        ),
        format!(r#"SELECT mean("usage_user") FROM "cpu" WHERE {range} GROUP BY time(5m) SLIMIT 1"#),
        format!(r#"SELECT max("usage_user") FROM "cpu" WHERE "host" = 'web-1' AND {range}"#),
        format!(r#"SELECT last("usage_user") FROM "cpu" WHERE {range} GROUP BY "host""#),
        format!(r#"SELECT mean("usage_user"), max("usage_user") FROM "cpu" WHERE {range}"#),
        r#"SELECT count("usage_user") FROM "cpu""#.into(),
        format!(
            r#"SELECT mean("d") FROM (SELECT non_negative_derivative("bytes_recv", 1s) AS d FROM "net" WHERE {range} GROUP BY "host") WHERE {range} GROUP BY time(5m) fill(null)"#
        ),
        format!(
            r#"SELECT max("m") FROM (SELECT mean("usage_user") AS m FROM "cpu" WHERE {range} GROUP BY time(1m), "host") WHERE {range} GROUP BY time(10m), "host""#
        ),
        format!(
            r#"SELECT sum("last") FROM (SELECT last("bytes_recv") FROM "net" GROUP BY "host") WHERE {range}"#
        ),
        r#"SELECT mean("usage_user"), "usage_user" FROM "cpu""#.into(),
        r#"SELECT nope("usage_user") FROM "cpu""#.into(),
        "SHOW DATABASE".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegraf_the_influx_cli_and_grafana_queries_answer_as_influxdb_does() {
    let tmp = open_tempdir();
    let influxd_dir = tmp.path().join("influxd");
    std::fs::create_dir_all(&influxd_dir).expect("mkdir");
    let influxd = Influxd::start(&influxd_dir).await;
    let peng = Peng::start(&tmp.path().join("data"), free_port(), free_port()).await;
    let team = peng.create_team("books").await;
    let token = team["token"].as_str().expect("token").to_string();
    let data = dataset();
    // Every team also has peng's read-only `peng` database; InfluxDB gets one too, made
    // first, so that `SHOW DATABASES` lists the same names in the same order.
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/query", influxd.port))
        .form(&[("q", "CREATE DATABASE peng")])
        .send()
        .await
        .expect("create peng on influxd");
    assert_eq!(r.status().as_u16(), 200);
    telegraf_writes(&peng.url(), "books", &token, &data).await;
    telegraf_writes(&format!("http://127.0.0.1:{}", influxd.port), "", "", &data).await;

    let mut differences = Vec::new();
    for q in queries() {
        for args in [
            vec!["-execute", q.as_str()],
            vec!["-precision", "rfc3339", "-execute", q.as_str()],
        ] {
            let theirs = influx_cli(influxd.port, None, "telegraf", &args).await;
            let ours =
                influx_cli(peng.http.port(), Some(("books", &token)), "telegraf", &args).await;
            if theirs != ours {
                differences.push(format!(
                    "{args:?}\n--- InfluxDB 1.6:\n{theirs}\n--- peng:\n{ours}"
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );

    // Retention as InfluxDB sets and shows it; peng lists its rollups as one more policy.
    for q in [
        r#"CREATE DATABASE "short" WITH DURATION 2h REPLICATION 1"#,
        r#"SHOW RETENTION POLICIES ON "short""#,
        r#"ALTER RETENTION POLICY "autogen" ON "short" DURATION 3d DEFAULT"#,
        r#"SHOW RETENTION POLICIES ON "short""#,
        r#"SHOW RETENTION POLICIES ON "telegraf""#,
    ] {
        let theirs = influx_cli(influxd.port, None, "telegraf", &["-execute", q]).await;
        let ours = influx_cli(
            peng.http.port(),
            Some(("books", &token)),
            "telegraf",
            &["-execute", q],
        )
        .await;
        // The columns are aligned to the longest name, which the extra line changes.
        let words = |text: &str, skip_rollups: bool| -> Vec<String> {
            text.lines()
                .filter(|l| !(skip_rollups && l.starts_with("rollup_5m ")))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect()
        };
        assert_eq!(
            words(&ours, true),
            words(&theirs, false),
            "{q}\n--- InfluxDB 1.6:\n{theirs}\n--- peng:\n{ours}"
        );
        if q.starts_with("SHOW") {
            assert!(
                ours.lines()
                    .any(|l| l.starts_with("rollup_5m ") && l.contains(" 0s ")),
                "{q}: {ours}"
            );
        }
    }
    // The rollups are read-only.
    let r = reqwest::Client::new()
        .post(format!("{}/write?db=telegraf&rp=rollup_5m", peng.url()))
        .basic_auth("books", Some(&token))
        .body("cpu,host=x usage_user=1 1690000000000000000")
        .send()
        .await
        .expect("write to rollups");
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap_or_default().contains("rollup_5m"));

    // The CLI's own write path (INSERT) lands where a query finds it.
    influx_cli(
        peng.http.port(),
        Some(("books", &token)),
        "telegraf",
        &[
            "-execute",
            "INSERT deploys,service=shop count=1i 1690000000000000000",
        ],
    )
    .await;
    let out = influx_cli(
        peng.http.port(),
        Some(("books", &token)),
        "telegraf",
        &["-format", "json", "-execute", "SELECT count FROM deploys"],
    )
    .await;
    assert!(out.contains(r#"[1690000000000000000,1]"#), "{out}");
    peng.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_bad_input_and_the_python_client() {
    let tmp = open_tempdir();
    let peng = Peng::start(&tmp.path().join("data"), free_port(), free_port()).await;
    let books = peng.create_team("books").await["token"]
        .as_str()
        .expect("token")
        .to_string();
    let other = peng.create_team("other").await["token"]
        .as_str()
        .expect("token")
        .to_string();
    let base = peng.url();
    let client = reqwest::Client::new();
    let query = |token: &str, q: &str| {
        client
            .post(format!("{base}/query"))
            .query(&[("q", q), ("db", "shop"), ("u", "books"), ("p", token)])
            .send()
    };
    let write = |token: &str, body: Vec<u8>, gz: bool| {
        let mut r = client
            .post(format!("{base}/write?db=shop&precision=s"))
            .header("Authorization", format!("Token books:{token}"))
            .body(body);
        if gz {
            r = r.header("Content-Encoding", "gzip");
        }
        r.send()
    };
    let r = query(&books, "CREATE DATABASE shop").await.expect("create");
    assert_eq!(r.status().as_u16(), 200);
    let r = write(
        &books,
        b"orders,region=eu total=3i 1690000000".to_vec(),
        false,
    )
    .await
    .expect("write");
    assert_eq!(r.status().as_u16(), 204);
    assert!(r.headers().contains_key("x-influxdb-version"));

    // A bad line refuses the whole batch, naming the line; nothing of it is stored.
    let r = write(
        &books,
        b"orders,region=us total=5i 1690000010\norders,region=us total= 1690000020\n".to_vec(),
        false,
    )
    .await
    .expect("write");
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.expect("json");
    let e = v["error"].as_str().expect("error");
    assert!(e.contains("unable to parse") && e.contains("line 2"), "{e}");
    // A field type conflict: 400, as InfluxDB answers it.
    let r = write(
        &books,
        b"orders,region=eu total=\"x\" 1690000030".to_vec(),
        false,
    )
    .await
    .expect("write");
    assert_eq!(r.status().as_u16(), 400);
    // A gzip bomb: refused once past the limit, not inflated whole.
    let bomb = gzip(&"a".repeat(9 << 20));
    let r = write(&books, bomb, true).await.expect("write");
    assert_eq!(r.status().as_u16(), 413);
    let r = query(&books, "SELECT count(total) FROM orders")
        .await
        .expect("query");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["results"][0]["series"][0]["values"][0][1], 1, "{v}");

    // Another team: no such database, whatever it asks; a wrong password is 401.
    let r = query(&other, "SHOW DATABASES").await.expect("query");
    let v: Value = r.json().await.expect("json");
    assert!(!v.to_string().contains("shop"), "{v}");
    let r = client
        .post(format!("{base}/write?db=shop"))
        .basic_auth("other", Some(&other))
        .body("orders total=1i")
        .send()
        .await
        .expect("write");
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"], "database not found: \"shop\"");
    let r = query("wrong", "SHOW DATABASES").await.expect("query");
    assert_eq!(r.status().as_u16(), 401);
    // The user name, when given, must be the token's team.
    let r = client
        .get(format!("{base}/query"))
        .query(&[
            ("q", "SHOW DATABASES"),
            ("u", "other"),
            ("p", books.as_str()),
        ])
        .send()
        .await
        .expect("query");
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .get(format!("{base}/query?q=SHOW%20DATABASES"))
        .bearer_auth(peng.admin_token())
        .send()
        .await
        .expect("query");
    assert_eq!(r.status().as_u16(), 403);
    // peng's own record of the team: listed, readable, never writable.
    let r = query(&books, "SHOW DATABASES").await.expect("query");
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["results"][0]["series"][0]["values"],
        serde_json::json!([["peng"], ["shop"]])
    );
    let r = client
        .post(format!("{base}/write?db=peng"))
        .basic_auth("books", Some(&books))
        .body("sensor,team=books ok=true")
        .send()
        .await
        .expect("write");
    assert_eq!(r.status().as_u16(), 403);
    let r = client
        .head(format!("{base}/ping"))
        .send()
        .await
        .expect("ping");
    assert_eq!(r.status().as_u16(), 204);

    // The Python client, as a team's script uses it.
    python(&format!(
        r#"
from influxdb import InfluxDBClient
c = InfluxDBClient("127.0.0.1", {port}, "books", "{books}", "py")
assert c.ping()
c.create_database("py")
assert {{"name": "py"}} in c.get_list_database(), c.get_list_database()
c.write_points([
    {{"measurement": "cpu", "tags": {{"host": "a"}}, "time": 1690000000000, "fields": {{"usage_user": 1.5}}}},
    {{"measurement": "cpu", "tags": {{"host": "a"}}, "time": 1690000010000, "fields": {{"usage_user": 2.5}}}},
], time_precision="ms")
r = c.query('SELECT mean("usage_user") FROM "cpu" WHERE time >= 1690000000000ms and time <= 1690000019999ms GROUP BY time(10s), "host" fill(null)')
points = list(r.get_points(tags={{"host": "a"}}))
assert points == [{{"time": "2023-07-22T04:26:40Z", "mean": 1.5}}, {{"time": "2023-07-22T04:26:50Z", "mean": 2.5}}], points
assert c.get_list_measurements() == [{{"name": "cpu"}}]
try:
    c.query("SELECT nonsense(")
    raise SystemExit("a bad query was answered")
except Exception as e:
    assert "error parsing query" in str(e), e
"#,
        port = peng.http.port(),
    ))
    .await;

    // What the team wrote is counted in its `peng` database (sampled every 10 s): the batch
    // stored and the two refused; the gzip bomb never reached the database.
    let counted = r#"SELECT sum("batches"), sum("values"), sum("refused") FROM "peng".."metrics_volume" WHERE "database" = 'shop'"#;
    let mut answer = Value::Null;
    for _ in 0..60 {
        let r = query(&books, counted).await.expect("query");
        answer = r.json().await.expect("json");
        if answer["results"][0]["series"][0]["values"].is_array() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(
        answer["results"][0]["series"][0]["values"][0],
        serde_json::json!(["1970-01-01T00:00:00Z", 1, 1, 2]),
        "{answer}"
    );
    let r = query(&other, counted).await.expect("query");
    let v: Value = r.json().await.expect("json");
    assert!(
        v["results"][0]["series"].is_null(),
        "another team sees none of it: {v}"
    );
    peng.stop().await;
}
