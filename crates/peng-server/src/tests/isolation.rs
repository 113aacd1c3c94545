//! The isolation matrix: every route of [`routes`], generated from that list, so that a new
//! route is in it the moment it exists.
//!
//! One in-process server (port 0, a temporary data directory, no binary) with a victim team
//! that has a service and logs, an intruder team, and for each route a team of its own that
//! owns the things the route's probe names. For every route:
//! - its probe is a request for that very route (same path pattern, same method);
//! - without a token, only a public route answers (anything else: 401);
//! - a team token on an admin route: 403;
//! - the intruder's token on the victim's things: 403 or 404, and an answer about the
//!   intruder's own things carries nothing of the victim's;
//! - the owner's token on its own things, and the admin token on an admin route, pass the
//!   checks (so the refusals above are the isolation, not a broken probe).
//!
//! Afterwards the victim's token, ingest token and service are as they were.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use peng_core::{ServiceId, ServiceName, TeamName};
use tower::ServiceExt;

use super::Fixture;
use crate::api::{routes, Access, Route};
use crate::ops::Caller;

const VICTIM: &str = "victim";
const VICTIM_SERVICE: &str = "vault";
/// In every piece of the victim's data; no answer to the intruder may contain it.
const MARKER: &str = "victim";
const INTRUDER: &str = "intruder";
const SERVICE: &str = "svc";
const STAGE: &str = "dev";
const SENSOR: &str = "up";

fn spec(team: &str, service: &str) -> String {
    format!(
        "apiVersion: peng/v1\nservice: {service}\nteam: {team}\nstages:\n  {STAGE}: {{ instances: 0 }}\nrun:\n  command: [\"true\"]\n"
    )
}

struct Names<'a> {
    team: &'a str,
    service: &'a str,
    /// Where the teams' service directories are (`DIR/TEAM`).
    dir: &'a str,
}

fn fill(text: &str, n: &Names<'_>) -> String {
    text.replace("{dir}", &format!("{}/{}", n.dir, n.team))
        .replace("{team}", n.team)
        .replace("{service}", n.service)
        .replace("{stage}", STAGE)
        .replace("{sensor}", SENSOR)
}

struct Answer {
    status: StatusCode,
    body: String,
}

async fn send(router: &Router, route: &Route, names: &Names<'_>, token: Option<&str>) -> Answer {
    let uri = fill(route.probe.path, names);
    let mut req = Request::builder().method(route.method.clone()).uri(&uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match route.probe.body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(fill(b, names))
        }
        None => Body::empty(),
    };
    answer(router, req.body(body).expect("request")).await
}

async fn get(router: &Router, uri: &str, token: &str) -> Answer {
    let req = Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    answer(router, req).await
}

async fn answer(router: &Router, mut req: Request<Body>) -> Answer {
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    req.extensions_mut().insert(ConnectInfo(peer));
    let res = router.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 16 << 20)
        .await
        .expect("body");
    Answer {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Team, API token and ingest token, with one service on stage `dev`.
async fn team_with_service(f: &Fixture, team: &str, service: &str) -> (String, String) {
    let made = f.team(team).await;
    f.apply(&made, &spec(team, service)).await.expect("apply");
    (made.token, made.ingest_token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_keeps_teams_apart() {
    let f = Fixture::start().await;
    let admin = f.admin.clone();
    let ops = f.ops.clone();
    let router = crate::api::router(ops.clone(), crate::ui::router());
    let services = f.service_dir("");
    let services = services.to_str().expect("utf-8 path").trim_end_matches('/');

    let victim = Names {
        team: VICTIM,
        service: VICTIM_SERVICE,
        dir: services,
    };
    let (victim_token, victim_ingest) = team_with_service(&f, VICTIM, VICTIM_SERVICE).await;
    let (intruder_token, _) = team_with_service(&f, INTRUDER, SERVICE).await;
    let intruder = Names {
        team: INTRUDER,
        service: SERVICE,
        dir: services,
    };
    // The victim's logs, searchable before the matrix runs, so a leak would show.
    let gelf = format!(
        r#"{{"version":"1.1","host":"h","short_message":"{MARKER} secret line","_service":"{VICTIM_SERVICE}"}}"#
    );
    let req = Request::post(format!("/gelf?token={victim_ingest}"))
        .body(Body::from(gelf))
        .expect("request");
    let a = answer(&router, req).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "victim's gelf: {}", a.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = get(
            &router,
            "/api/v1/logs/search?q=secret&since=1h",
            &victim_token,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "victim's search: {}", a.body);
        if a.body.contains(MARKER) {
            break;
        }
        assert!(Instant::now() < deadline, "victim's log never searchable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The victim's own database, so that a leak through the InfluxDB routes would show.
    for (uri, body, want) in [
        (
            "/query?q=CREATE%20DATABASE%20victim_metrics",
            "",
            StatusCode::OK,
        ),
        (
            "/write?db=victim_metrics",
            "m,who=victim v=1",
            StatusCode::NO_CONTENT,
        ),
    ] {
        let req = Request::post(uri)
            .header("authorization", format!("Bearer {victim_token}"))
            .body(Body::from(body))
            .expect("request");
        let a = answer(&router, req).await;
        assert_eq!(a.status, want, "victim's {uri}: {}", a.body);
    }

    let all = routes();
    assert!(!all.is_empty());
    let mut failures = Vec::new();
    for (i, route) in all.iter().enumerate() {
        let what = format!("{} {}", route.method, route.path);
        let probe_path = route.probe.path.split('?').next().unwrap_or_default();
        if probe_path != route.path {
            failures.push(format!("{what}: probe is for {probe_path}"));
            continue;
        }
        let owner_team = format!("owner{i}");
        let (owner_token, _) = team_with_service(&f, &owner_team, SERVICE).await;
        let owner = Names {
            team: &owner_team,
            service: SERVICE,
            dir: services,
        };

        let a = send(&router, route, &owner, None).await;
        match route.access {
            Access::Public if a.status.is_server_error() || a.status == StatusCode::FORBIDDEN => {
                failures.push(format!("{what}: public, yet {} without a token", a.status))
            }
            Access::Public => {}
            _ if a.status != StatusCode::UNAUTHORIZED => {
                failures.push(format!("{what}: {} without a token", a.status))
            }
            _ => {}
        }

        match route.access {
            Access::Admin => {
                let a = send(&router, route, &owner, Some(&owner_token)).await;
                if a.status != StatusCode::FORBIDDEN {
                    failures.push(format!("{what}: {} with a team token", a.status));
                }
                let a = send(&router, route, &owner, Some(&admin)).await;
                if !a.status.is_success() {
                    failures.push(format!("{what}: {} with the admin token", a.status));
                }
            }
            Access::Team => {
                let names_a_team = route.probe.path.contains("{team}")
                    || route.probe.body.is_some_and(|b| b.contains("{team}"));
                let a = send(&router, route, &victim, Some(&intruder_token)).await;
                if names_a_team {
                    if a.status != StatusCode::FORBIDDEN && a.status != StatusCode::NOT_FOUND {
                        failures.push(format!(
                            "{what}: {} for another team's things: {}",
                            a.status, a.body
                        ));
                    }
                } else {
                    let a = send(&router, route, &intruder, Some(&intruder_token)).await;
                    if !a.status.is_success() {
                        failures.push(format!("{what}: {} for the intruder", a.status));
                    }
                    if a.body.contains(MARKER) {
                        failures.push(format!("{what}: another team's data: {}", a.body));
                    }
                }
                let a = send(&router, route, &owner, Some(&owner_token)).await;
                if a.status == StatusCode::UNAUTHORIZED
                    || a.status == StatusCode::FORBIDDEN
                    || a.status.is_server_error()
                {
                    failures.push(format!("{what}: {} for the owner: {}", a.status, a.body));
                }
            }
            Access::Public => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing the intruder sent changed the victim's things.
    assert_eq!(
        ops.authenticate(&victim_token).await.expect("auth"),
        Some(Caller::Team(TeamName::parse(VICTIM).expect("name"))),
        "the victim's token still works"
    );
    let (_, ingest_now) = ops
        .ingest_token(&Caller::Admin, VICTIM)
        .await
        .expect("ingest token");
    assert_eq!(ingest_now, victim_ingest, "the victim's ingest token");
    let id = ServiceId {
        team: TeamName::parse(VICTIM).expect("team"),
        service: ServiceName::parse(VICTIM_SERVICE).expect("service"),
    };
    ops.status(&Caller::Admin, &id)
        .await
        .expect("the victim's service is still there");

    f.stop().await;
}

/// A route added to the list but left out of the router, or the other way round, cannot be:
/// the router is made from the list. This checks the list itself: one entry per method and
/// path, and every path the router would serve.
#[test]
fn routes_are_unique_and_well_formed() {
    let all = routes();
    let mut seen = std::collections::BTreeSet::new();
    for r in &all {
        assert!(
            seen.insert((r.method.to_string(), r.path)),
            "{} {} declared twice",
            r.method,
            r.path
        );
        assert!(r.path.starts_with('/'), "{}", r.path);
        if r.path.starts_with("/api/") {
            // `/api/v2/write` is InfluxDB's, for its v2 clients.
            assert!(
                r.path.starts_with("/api/v1/") || r.path == "/api/v2/write",
                "{}",
                r.path
            );
        }
    }
}
