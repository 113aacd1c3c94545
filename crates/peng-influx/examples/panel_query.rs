//! In-process time of the benchmark's Grafana panel (`mean("usage_user")`, 1 m buckets, by
//! host) over Telegraf-like cpu data, without HTTP: `cargo run --release -p peng-influx
//! --example panel_query [HOSTS [HOURS [RUNS]]]` prints the median of RUNS and where the time
//! goes (reading the store, answering, writing the JSON).

use std::time::{Duration, Instant};

use peng_core::TeamName;
use peng_influx::influxql::parse_query;
use peng_influx::line::{self, Precision};
use peng_influx::{execute, Catalog, Context};

fn arg(i: usize, default: i64) -> i64 {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (hosts, hours, runs) = (arg(1, 100), arg(2, 8), arg(3, 20));
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::new(dir.path());
    let team: TeamName = "shop".parse().expect("team");
    let db = catalog.create(&team, "telegraf").expect("database");
    let t0: i64 = 1_690_000_000;
    let steps = hours * 360;
    let mut body = String::new();
    let mut lines = 0;
    for step in 0..steps {
        let t = t0 + step * 10;
        for host in 0..hosts {
            let v = |f: i64| ((step * 7 + host * 13 + f * 3) % 1000) as f64 / 10.0;
            body.push_str(&format!(
                "cpu,cpu=cpu-total,host=host-{host:03} usage_user={},usage_system={},usage_idle={} {t}\n",
                v(0),
                v(1),
                v(2)
            ));
            lines += 1;
            if lines == 5000 {
                db.write(&line::parse(&body, Precision::Seconds, 0).expect("parse"))
                    .expect("write");
                body.clear();
                lines = 0;
            }
        }
    }
    if !body.is_empty() {
        db.write(&line::parse(&body, Precision::Seconds, 0).expect("parse"))
            .expect("write");
    }
    db.raw().compact().expect("compact");
    let q = format!(
        r#"SELECT mean("usage_user") FROM "cpu" WHERE time >= {}ms and time <= {}ms GROUP BY time(1m), "host" fill(null)"#,
        t0 * 1000,
        (t0 + steps * 10) * 1000 - 1
    );
    let statements = parse_query(&q).expect("query");
    let cx = Context {
        team: &team,
        db: Some("telegraf"),
        epoch: Some(Precision::Milliseconds),
        now_ns: (t0 + steps * 10) * 1_000_000_000,
    };
    let mut answer = Vec::new();
    let mut json = Vec::new();
    let mut rows = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let r = execute(&catalog, &statements, &cx);
        let answered = start.elapsed();
        let body = serde_json::to_vec(&r).expect("json");
        json.push(start.elapsed() - answered);
        answer.push(answered);
        rows = body.len();
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "{hosts} hosts × {hours} h ({} values read): answer {:.2} ms, JSON {:.2} ms ({rows} bytes), median of {runs}",
        hosts * steps,
        median(&mut answer).as_secs_f64() * 1e3,
        median(&mut json).as_secs_f64() * 1e3,
    );
}
