//! The web UI: server-rendered HTML (maud), no JavaScript and no front-end build step.
//!
//! Pages: the service list, a service page (instances, sensors with charts of recent runs,
//! alerts, recent log lines), and log search. Login takes an API token and keeps it in an
//! HttpOnly, SameSite=Strict cookie; every page is rendered with the same team checks as the
//! API, by calling the same functions.

mod chart;

use axum::extract::{Form, Path, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use peng_core::StageName;
use serde::Deserialize;

use crate::api::logs::{run_search, SearchQuery};
use crate::app::App;
use crate::auth::{token_from_parts, Auth, COOKIE};
use crate::error::ApiError;

pub fn router() -> Router<App> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login))
        .route("/logout", get(logout))
        .route("/services/{team}/{service}", get(service_page))
        .route("/logs", get(logs_page))
}

/// The caller of a page; sends the browser to the login page when there is no valid token.
struct Viewer(Auth);

impl axum::extract::FromRequestParts<App> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(token) = token_from_parts(parts) else {
            return Err(Redirect::to("/login").into_response());
        };
        match app.state.authenticate(&token).await {
            Ok(Some(p)) => Ok(Viewer(Auth(p))),
            Ok(None) => Err(Redirect::to("/login?bad=1").into_response()),
            Err(e) => Err(ApiError::from(e).into_response()),
        }
    }
}

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#fff;text-decoration:none}header .me{margin-left:auto;opacity:.8}
main{padding:1rem 1.2rem;max-width:1200px}
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:1rem}
th,td{padding:.35rem .6rem;border-bottom:1px solid #e3e6eb;text-align:left;font-size:.9rem;vertical-align:top}
th{background:#eef0f4}.ok{color:#17803d;font-weight:600}.fail{color:#c0262d;font-weight:600}
.muted{color:#6b7280}.log{font-family:ui-monospace,monospace;font-size:.82rem;white-space:pre-wrap}
input[type=text],input[type=password]{padding:.4rem;width:22rem}button{padding:.4rem .9rem}
h2{margin-top:1.6rem}.badge{padding:.1rem .45rem;border-radius:.3rem;background:#e3e6eb}
.firing{background:#c0262d;color:#fff}.pending{background:#d97706;color:#fff}
"#;

fn page(title: &str, viewer: Option<&Auth>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · peng" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "peng" }
                    @if let Some(v) = viewer {
                        a href="/" { "Services" }
                        a href="/logs" { "Logs" }
                        span class="me" { (v.0.actor()) " · " a href="/logout" { "log out" } }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn ts(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[derive(Deserialize)]
struct LoginQuery {
    bad: Option<String>,
}

async fn login_page(Query(q): Query<LoginQuery>) -> Markup {
    page(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            @if q.bad.is_some() { p class="fail" { "That token is not valid." } }
            form method="post" action="/login" {
                p { label { "API token " input type="password" name="token" autocomplete="off" required; } }
                button type="submit" { "Log in" }
            }
            p class="muted" { "Team tokens come from " code { "peng team create" } "; the admin token is in the data directory." }
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(app): State<App>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    match app.state.authenticate(token).await {
        Ok(Some(_)) if !token.contains(';') => {
            let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            ([(SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Ok(_) => Redirect::to("/login?bad=1").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

async fn index(State(app): State<App>, Viewer(auth): Viewer) -> Result<Markup, ApiError> {
    let services = crate::services::summaries(&app, &auth).await?;
    Ok(page(
        "Services",
        Some(&auth),
        html! {
            h1 { "Services" }
            @if services.is_empty() {
                p { "No services yet. Apply a service file: " code { "peng apply -f peng.yaml" } }
            } @else {
                table {
                    tr { th { "Service" } th { "Generation" } th { "Instances running" } th { "Sensors" } th { "Firing alerts" } }
                    @for s in &services {
                        tr {
                            td { a href={ "/services/" (s.team) "/" (s.service) } { (s.id) } }
                            td { (s.generation) }
                            td class=(if s.instances_running == s.instances_desired { "ok" } else { "fail" }) {
                                (s.instances_running) " / " (s.instances_desired)
                            }
                            td { span class="ok" { (s.sensors_ok) " ok" } @if s.sensors_failing > 0 { ", " span class="fail" { (s.sensors_failing) " failing" } } }
                            td { @if s.alerts_firing > 0 { span class="badge firing" { (s.alerts_firing) } } @else { "0" } }
                        }
                    }
                }
            }
        },
    ))
}

async fn service_page(
    State(app): State<App>,
    Viewer(auth): Viewer,
    Path((team, service)): Path<(String, String)>,
) -> Result<Markup, ApiError> {
    let id = crate::api::services::service_id(&team, &service)?;
    let st = crate::services::status(&app, &auth, &id).await?;
    let mut charts = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in &st.sensors {
        if seen.insert((s.sensor.clone(), s.stage.clone())) {
            let stage =
                StageName::parse(&s.stage).map_err(|e| ApiError::internal(e.to_string()))?;
            let h =
                crate::api::services::sensor_history(&app, &id, &s.sensor, &stage, "1h").await?;
            charts.push(h);
        }
    }
    let logs = run_search(
        &app,
        &auth,
        SearchQuery {
            service: Some(id.service.to_string()),
            since: Some("1h".into()),
            limit: Some(50),
            ..Default::default()
        },
    )
    .await?;
    Ok(page(
        &st.id,
        Some(&auth),
        html! {
            h1 { (st.id) }
            p class="muted" { "generation " (st.generation) ", applied " (ts(st.applied_at_ns)) " by " (st.applied_by) ", logs kept " (st.retention) }
            h2 { "Instances" }
            table {
                tr { th { "Stage" } th { "#" } th { "PID" } th { "Port" } th { "State" } th { "Restarts" } th { "Last exit" } }
                @for stage in &st.stages {
                    @for i in &stage.instances {
                        tr {
                            td { (stage.name) } td { (i.index) }
                            td { (i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())) }
                            td { (i.port) }
                            td class=(if i.state == "running" { "ok" } else { "fail" }) { (i.state) }
                            td { (i.restarts) } td class="muted" { (i.last_exit.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
            h2 { "Alerts" }
            @if st.alerts.is_empty() { p class="muted" { "No alert has been pending or firing." } }
            @else {
                table {
                    tr { th { "Alert" } th { "Stage" } th { "State" } th { "Severity" } th { "Since" } th { "Message" } }
                    @for a in &st.alerts {
                        tr {
                            td { (a.alert) } td { (a.stage) }
                            td { span class={ "badge " (a.state) } { (a.state) } @if a.escalated { " escalated" } }
                            td { (a.severity) }
                            td { (a.started_at_ns.or(a.since_ns).map(ts).unwrap_or_default()) }
                            td { (a.message) }
                        }
                    }
                }
            }
            h2 { "Sensors" }
            table {
                tr { th { "Sensor" } th { "Stage" } th { "Instance" } th { "State" } th { "Latency" } th { "Message" } }
                @for s in &st.sensors {
                    tr {
                        td { (s.sensor) } td { (s.stage) }
                        td { (s.instance.map(|i| i.to_string()).unwrap_or_else(|| "-".into())) }
                        @match s.ok { Some(true) => td class="ok" { "ok" }, Some(false) => td class="fail" { "failing" }, None => td class="muted" { "not run yet" } }
                        td { (s.latency_ms.map(|l| format!("{l:.1} ms")).unwrap_or_default()) }
                        td class="muted" { (s.message) }
                    }
                }
            }
            @for h in &charts {
                div { strong { (h.sensor) " · " (h.stage) } " " span class="muted" { "latency over the last hour; red marks are failed runs" } }
                (chart::latency(&h.points))
            }
            h2 { "Recent log lines" }
            p { a href={ "/logs?service=" (st.service) } { "search this service's logs" } }
            (log_table(&logs.hits))
        },
    ))
}

fn log_table(hits: &[peng_api::LogHit]) -> Markup {
    html! {
        @if hits.is_empty() { p class="muted" { "No log lines." } }
        @else {
            table {
                tr { th { "Time" } th { "Source" } th { "Service" } th { "Level" } th { "Message" } }
                @for h in hits {
                    tr {
                        td class="muted" { (ts(h.timestamp_ns)) }
                        td { (h.source) }
                        td { (h.service) @if !h.stage.is_empty() { "/" (h.stage) } @if !h.instance.is_empty() { "#" (h.instance) } }
                        td { (h.level) }
                        td class="log" { (h.message) }
                    }
                }
            }
        }
    }
}

async fn logs_page(
    State(app): State<App>,
    Viewer(auth): Viewer,
    Query(mut q): Query<SearchQuery>,
) -> Result<Markup, ApiError> {
    if q.since.as_deref().is_none_or(str::is_empty) {
        q.since = Some("15m".into());
    }
    q.limit = Some(q.limit.unwrap_or(200).min(1000));
    let (query, since, service) = (
        q.q.clone(),
        q.since.clone().unwrap_or_default(),
        q.service.clone().unwrap_or_default(),
    );
    let result = run_search(&app, &auth, q).await;
    Ok(page(
        "Logs",
        Some(&auth),
        html! {
            h1 { "Logs" }
            form method="get" action="/logs" {
                input type="text" name="q" value=(query) placeholder="words, \"phrases\", field:value, AND/OR/NOT";
                " since " input type="text" name="since" value=(since) style="width:5rem";
                " service " input type="text" name="service" value=(service) style="width:10rem";
                " " button type="submit" { "Search" }
            }
            @match &result {
                Ok(r) => { p class="muted" { (r.hits.len()) " of " (r.total) " matching messages" } (log_table(&r.hits)) },
                Err(e) => { p class="fail" { (e.message) } },
            }
        },
    ))
}
