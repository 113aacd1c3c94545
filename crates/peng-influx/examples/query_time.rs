//! Times one InfluxQL query against a directory of team databases, in process (no HTTP):
//! the best of N runs of executing it and of writing its JSON answer.
//!
//! `cargo run --release -p peng-influx --example query_time -- DIR TEAM DB 'QUERY' [RUNS]`,
//! where DIR is a data directory's `influx/` (the team databases are `DIR/TEAM/DB/`).

use std::time::{Duration, Instant};

use peng_influx::{execute, influxql::parse_query, Catalog, Context, Precision};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, team, db, query, rest @ ..] = args.as_slice() else {
        eprintln!("usage: query_time DIR TEAM DB QUERY [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = rest.first().and_then(|r| r.parse().ok()).unwrap_or(20);
    let catalog = Catalog::new(std::path::Path::new(dir));
    let team = team.parse().expect("a team name");
    let statements = parse_query(query).expect("a query");
    let cx = Context {
        team: &team,
        db: Some(db),
        epoch: Some(Precision::Milliseconds),
        now_ns: i64::MAX / 2,
    };
    let (mut exec, mut json) = (Duration::MAX, Duration::MAX);
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let answer = execute(&catalog, &statements, &cx);
        exec = exec.min(t.elapsed());
        let t = Instant::now();
        let body = serde_json::to_vec(&answer).expect("json");
        json = json.min(t.elapsed());
        size = body.len();
        if let Some(e) = answer.results.iter().find_map(|r| r.error.as_ref()) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "best of {runs}: execute {:.2} ms, JSON {:.2} ms ({size} bytes)",
        exec.as_secs_f64() * 1e3,
        json.as_secs_f64() * 1e3
    );
}
