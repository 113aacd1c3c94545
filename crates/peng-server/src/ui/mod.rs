//! The web UI: server-rendered HTML (maud), no JavaScript and no front-end build step.
//!
//! Pages: the service list, a service page (instances, charts of their recent usage, databases,
//! sensors with charts of recent runs, alerts, recent log lines), log search, and costs. Login
//! takes an API token and keeps it in an HttpOnly, SameSite=Strict cookie; every page is rendered
//! with the same team checks as the API, by calling the same functions.

mod chart;
mod costs;
mod databases;
mod format;
mod usage;

use axum::extract::{Form, Path, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use peng_core::{now_ns, ErrorKind};
use peng_provision::driver::process::InstanceState;
use serde::Deserialize;

use crate::auth::{token_from_parts, COOKIE};
use crate::ops::logs::Search;
use crate::ops::{Caller, Error, Ops};
use crate::status::status_of;
use format::{ago, clip, level_class, level_name, ms, time, when};

pub fn router() -> Router<Ops> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login))
        .route("/logout", get(logout))
        .route("/services/{team}/{service}", get(service_page))
        .route("/logs", get(logs_page))
        .route("/costs", get(costs_page))
        .route("/platform", get(platform_page))
}

/// The caller of a page; sends the browser to the login page when there is no valid token.
struct Viewer(Caller);

impl axum::extract::FromRequestParts<Ops> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ops: &Ops) -> Result<Self, Self::Rejection> {
        let Some(token) = token_from_parts(parts) else {
            return Err(Redirect::to("/login").into_response());
        };
        match ops.authenticate(&token).await {
            Ok(Some(caller)) => Ok(Viewer(caller)),
            Ok(None) => Err(Redirect::to("/login?bad=1").into_response()),
            Err(e) => Err(error_page(None, e)),
        }
    }
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9;line-height:1.4}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center;flex-wrap:wrap}
header a{color:#c9d1e0;text-decoration:none}header a:hover{color:#fff}
header a.here{color:#fff;border-bottom:2px solid #60a5fa}
header .brand{color:#fff;font-weight:700}header .me{margin-left:auto;color:#c9d1e0}
main{padding:1rem 1.2rem 3rem;max-width:1200px}
h1{font-size:1.6rem;margin:.4rem 0 .3rem}h2{font-size:1.15rem;margin:1.8rem 0 .5rem}
a{color:#1d4ed8}
.scroll{overflow-x:auto;margin-bottom:1rem}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e3e6eb}
th,td{padding:.35rem .6rem;border-bottom:1px solid #e3e6eb;text-align:left;font-size:.9rem;vertical-align:top}
th{background:#eef0f4;font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.nowrap{white-space:nowrap}
.ok{color:#17803d;font-weight:600}.fail{color:#c0262d;font-weight:600}.warn{color:#b45309;font-weight:600}
.muted{color:#6b7280}.empty{background:#fff;border:1px dashed #c3c8d1;padding:.8rem 1rem}
code{background:#eef0f4;padding:.05rem .3rem;border-radius:.2rem}
.log{font-family:ui-monospace,monospace;font-size:.82rem;white-space:pre-wrap;overflow-wrap:anywhere;min-width:20rem}
.fields{margin-top:.2rem}.fields span{display:inline-block;margin:.1rem .4rem 0 0;padding:0 .3rem;border-radius:.2rem;background:#eef0f4;color:#4b5563;font-size:.75rem}
details summary{cursor:pointer;color:#6b7280;font-size:.8rem}
.lvl{font-size:.8rem}.lvl-err{color:#c0262d;font-weight:600}.lvl-warn{color:#b45309;font-weight:600}
input,select,button{font:inherit;font-size:.9rem}
input[type=text],input[type=password],select{padding:.35rem .45rem;border:1px solid #c3c8d1;border-radius:.25rem;background:#fff}
button{padding:.35rem .9rem;border:0;border-radius:.25rem;background:#1d4ed8;color:#fff;cursor:pointer}
form.search{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin:.6rem 0 1rem}
form.search label{display:flex;flex-direction:column;font-size:.8rem;color:#4b5563;gap:.15rem}
form.search .q{flex:1 1 22rem}form.search .q input{width:100%}
.card{background:#fff;border:1px solid #e3e6eb;border-radius:.4rem;padding:1rem 1.2rem}
.login{max-width:26rem;margin:3rem auto}.login input{width:100%;margin:.3rem 0 .8rem}
.alert-box{background:#fdecec;border:1px solid #f3b4b4;color:#8f1d22;border-radius:.3rem;padding:.5rem .8rem;margin:.6rem 0}
.badge{padding:.05rem .45rem;border-radius:.3rem;background:#e3e6eb;font-size:.8rem;font-weight:600;white-space:nowrap}
.badge.firing{background:#c0262d;color:#fff}.badge.pending{background:#d97706;color:#fff}
.badge.ok,.badge.resolved{background:#dcf3e3;color:#17803d}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(30rem,1fr));gap:1rem;margin-top:1rem}
.charts figure{margin:0;background:#fff;border:1px solid #e3e6eb;border-radius:.4rem;padding:.6rem .8rem}
.charts figcaption{font-size:.9rem}.charts figcaption .muted{font-size:.8rem}
svg.chart{display:block;width:100%;height:auto;margin-top:.3rem}
svg.chart .axis{font-size:10px;fill:#6b7280;font-family:system-ui,sans-serif}
h3{font-size:1rem;margin:0 0 .5rem}
.dbs{display:grid;grid-template-columns:repeat(auto-fill,minmax(30rem,1fr));gap:1rem;align-items:start;margin-bottom:.6rem}
.dbs section{background:#fff;border:1px solid #e3e6eb;border-radius:.4rem;padding:.8rem 1rem}
.dbs section.drifted{border-color:#f5c77e;box-shadow:inset 4px 0 0 #d97706}
table.kv{border:0}table.kv th{background:none;width:7.5rem;color:#4b5563;font-weight:500}
table.kv td .log{min-width:0;margin-top:.2rem}
.drift{background:#fff7e6;border:1px solid #f5c77e;border-radius:.3rem;padding:.5rem .7rem;margin-top:.7rem}
.drift p{margin:0 0 .4rem}.drift table th{background:#fdebc8}
tr.platform td{background:#f6f7f9;font-style:italic}
tr.total td{font-weight:700;border-top:2px solid #c3c8d1}
meter{width:8rem;vertical-align:middle}
"#;

/// Where a page sits in the header's navigation.
#[derive(PartialEq, Clone, Copy)]
enum Nav {
    Services,
    Logs,
    Costs,
    Platform,
    None,
}

fn page(title: &str, viewer: Option<&Caller>, nav: Nav, body: Markup) -> Markup {
    let here = |n: Nav| if n == nav { "here" } else { "" };
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
                    a class="brand" href="/" { "peng" }
                    @if let Some(v) = viewer {
                        a class=(here(Nav::Services)) href="/" { "Services" }
                        a class=(here(Nav::Logs)) href="/logs" { "Logs" }
                        a class=(here(Nav::Costs)) href="/costs" { "Costs" }
                        @if v.is_admin() {
                            a class=(here(Nav::Platform)) href="/platform" { "Platform" }
                        }
                        span class="me" { "signed in as " (v.actor()) " · " a href="/logout" { "log out" } }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error as a page of the UI, with the status the API would answer.
fn error_page(viewer: Option<&Caller>, e: Error) -> Response {
    if matches!(e.kind, ErrorKind::Internal | ErrorKind::Unavailable) {
        tracing::error!(error = %e.message, "page failed");
    }
    let status = status_of(e.kind);
    let title = match e.kind {
        ErrorKind::NotFound => "Not found",
        ErrorKind::Forbidden => "Not allowed",
        ErrorKind::Invalid => "Bad request",
        _ => "Something went wrong",
    };
    let body = page(
        title,
        viewer,
        Nav::None,
        html! {
            h1 { (title) }
            p class="alert-box" { (e.message) }
            @for d in &e.details { p class="log" { (d) } }
            p { a href="/" { "Back to the services" } }
        },
    );
    (status, body).into_response()
}

/// Wraps the tables so that a narrow window scrolls them instead of the page.
fn scroll(table: Markup) -> Markup {
    html! { div class="scroll" { (table) } }
}

#[derive(Deserialize)]
struct LoginQuery {
    bad: Option<String>,
}

async fn login_page(Query(q): Query<LoginQuery>) -> Markup {
    page(
        "Log in",
        None,
        Nav::None,
        html! {
            div class="card login" {
                h1 { "Log in" }
                @if q.bad.is_some() { p class="alert-box" role="alert" { "That token is not valid." } }
                form method="post" action="/login" {
                    label for="token" { "API token" }
                    input id="token" type="password" name="token" autocomplete="off" autofocus required placeholder="peng_…";
                    button type="submit" { "Log in" }
                }
                p class="muted" { "Team tokens come from " code { "peng team create" } "; the admin token is in the data directory (" code { "admin.token" } ")." }
            }
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(ops): State<Ops>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    match ops.authenticate(token).await {
        Ok(Some(_)) if !token.contains(';') => {
            let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            ([(SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Ok(_) => Redirect::to("/login?bad=1").into_response(),
        Err(e) => error_page(None, e),
    }
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

async fn index(State(ops): State<Ops>, Viewer(auth): Viewer) -> Result<Markup, Response> {
    let services = ops
        .summaries(&auth)
        .await
        .map_err(|e| error_page(Some(&auth), e))?;
    let now = now_ns();
    Ok(page(
        "Services",
        Some(&auth),
        Nav::Services,
        html! {
            h1 { "Services" }
            @if services.is_empty() {
                div class="empty" {
                    p { "No services yet." }
                    p class="muted" { "Describe a service in a " code { "peng.yaml" } " and apply it: " code { "peng apply -f peng.yaml" } }
                }
            } @else {
                (scroll(html! { table {
                    tr { th { "Service" } th { "Instances running" } th { "Sensors" } th { "Alerts" } th { "Applied" } }
                    @for s in &services {
                        tr {
                            td { a href={ "/services/" (s.id.team) "/" (s.id.service) } { (s.id) } }
                            td class=(if s.instances_running == s.instances_desired { "ok" } else { "fail" }) {
                                (s.instances_running) " / " (s.instances_desired)
                            }
                            td {
                                @if s.sensors_ok + s.sensors_failing == 0 { span class="muted" { "none run yet" } }
                                @else {
                                    span class="ok" { (s.sensors_ok) " ok" }
                                    @if s.sensors_failing > 0 { ", " span class="fail" { (s.sensors_failing) " failing" } }
                                }
                            }
                            td { @if s.alerts_firing > 0 { span class="badge firing" { (s.alerts_firing) " firing" } } @else { span class="muted" { "none firing" } } }
                            td class="nowrap" title={ "generation " (s.generation) } { (ago(s.applied_at_ns, now)) span class="muted" { " · gen " (s.generation) } }
                        }
                    }
                } }))
            }
        },
    ))
}

/// How far back the service page charts instances' usage.
const USAGE_SHOWN: std::time::Duration = std::time::Duration::from_secs(3600);

async fn service_page(
    State(ops): State<Ops>,
    Viewer(auth): Viewer,
    Path((team, service)): Path<(String, String)>,
) -> Result<Markup, Response> {
    let fail = |e: Error| error_page(Some(&auth), e);
    let id = peng_core::ServiceId::parse(&format!("{team}/{service}"))
        .map_err(|_| fail(Error::not_found("service not found")))?;
    let st = ops.status(&auth, &id).await.map_err(fail)?;
    let hour_ago = now_ns() - 3_600_000_000_000;
    let mut charts = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in &st.sensors {
        if seen.insert((s.sensor.clone(), s.stage.clone())) {
            let points = ops
                .sensor_history(&auth, &id, &s.sensor, &s.stage, hour_ago)
                .await
                .map_err(fail)?;
            charts.push((s.sensor.clone(), s.stage.clone(), points));
        }
    }
    let usage = ops
        .usage(&auth, &id, now_ns() - USAGE_SHOWN.as_nanos() as i64)
        .await
        .map_err(fail)?;
    let logs = ops
        .search_logs(
            &auth,
            Search {
                service: Some(id.service.to_string()),
                since: Some("1h".into()),
                limit: Some(30),
                ..Default::default()
            },
        )
        .await
        .map_err(fail)?;
    let now = now_ns();
    let instances: usize = st.stages.iter().map(|s| s.instances.len()).sum();
    Ok(page(
        &st.id.to_string(),
        Some(&auth),
        Nav::Services,
        html! {
            h1 { (st.id) }
            p class="muted" { "generation " (st.generation) ", applied " (when(st.applied_at_ns, now)) " by " (st.applied_by) " · logs kept " (st.retention) }
            p class="isolation" {
                "isolation: " span class=(if st.isolation.starts_with("on") { "ok" } else { "fail" }) { (st.isolation) }
                " · limits: " span class=(if st.limits.starts_with("off") { "fail" } else { "ok" }) { (st.limits) }
            }
            h2 { "Instances" }
            @if instances == 0 { p class="empty muted" { "No instances: every stage is scaled to 0." } }
            @else {
                (scroll(html! { table {
                    tr { th { "Stage" } th class="num" { "#" } th class="num" { "PID" } th class="num" { "Port" } th { "State" } th { "Since" } th class="num" { "Restarts" } th class="num" { "CPU" } th class="num" { "Memory" } th { "Last exit" } }
                    @for stage in &st.stages {
                        @for v in &stage.instances {
                            @let i = &v.status;
                            tr {
                                td { (stage.name) } td class="num" { (i.index) }
                                td class="num" { (i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())) }
                                td class="num" { (i.port) }
                                td class=(match i.state { InstanceState::Running => "ok", InstanceState::Starting => "warn", _ => "fail" }) { (i.state.as_str()) }
                                td class="nowrap" title={ (format::date_time(i.since_ns)) " UTC" } { (ago(i.since_ns, now)) }
                                td class={ "num" @if i.restarts > 0 { " warn" } } { (i.restarts) }
                                td class="num nowrap" { (v.cpu_seconds.map(|c| format!("{c:.1} s")).unwrap_or_else(|| "-".into())) }
                                td class="num nowrap" { (v.memory_bytes.map(|m| format!("{:.1} MiB", m as f64 / 1048576.0)).unwrap_or_else(|| "-".into())) }
                                td class={ @if i.last_exit.as_deref().is_some_and(|e| e.contains("out of memory")) { "fail" } @else { "muted" } } { (i.last_exit.clone().unwrap_or_default()) }
                            }
                        }
                    }
                } }))
            }
            h2 { "Usage" }
            (usage::section(&usage))
            h2 { "Databases" }
            (databases::section(&st.id.to_string(), &st.databases, now))
            h2 { "Alerts" }
            @if st.alerts.is_empty() { p class="empty muted" { "No alert rule has been evaluated yet." } }
            @else {
                (scroll(html! { table {
                    tr { th { "Alert" } th { "Stage" } th { "State" } th { "Severity" } th { "Since" } th { "Message" } }
                    @for a in &st.alerts {
                        tr {
                            td { (a.alert) } td { (a.stage) }
                            td class="nowrap" { span class={ "badge " (a.state) } { (a.state) } @if a.escalated { " " span class="badge firing" { "escalated" } } }
                            td class=(alert_class(a.state, a.severity)) { (a.severity) }
                            td class="nowrap" {
                                @let t = a.started_at_ns.unwrap_or(a.since_ns);
                                span title={ (format::date_time(t)) " UTC" } { (ago(t, now)) }
                            }
                            td class="muted" { (a.last_message) }
                        }
                    }
                } }))
            }
            h2 { "Sensors" }
            @if st.sensors.is_empty() { p class="empty muted" { "No sensors." } }
            @else {
                (scroll(html! { table {
                    tr { th { "Sensor" } th { "Stage" } th class="num" { "Instance" } th { "State" } th class="num" { "Latency" } th { "Last run" } th { "Message" } }
                    @for s in &st.sensors {
                        tr {
                            td { (s.sensor) } td { (s.stage) }
                            td class="num" { (s.instance.map(|i| i.to_string()).unwrap_or_else(|| "-".into())) }
                            @if s.last.ok { td class="ok" { "ok" } }
                            @else { td class="fail" { "failing" @if s.consecutive_failures > 1 { span class="muted" { " ×" (s.consecutive_failures) } } } }
                            td class="num nowrap" { (ms(s.last.latency_ms)) }
                            td class="nowrap" { span title={ (format::date_time(s.last.at_ns)) " UTC" } { (ago(s.last.at_ns, now)) } }
                            td class="muted" { (s.last.message) }
                        }
                    }
                } }))
                div class="charts" {
                    @for (sensor, stage, points) in &charts {
                        figure {
                            figcaption {
                                strong { (sensor) " · " (stage) } " "
                                span class="muted" { "latency, last hour: " (chart::summary(points)) }
                            }
                            (chart::latency(points))
                        }
                    }
                }
            }
            h2 { "Recent log lines" }
            p { a href={ "/logs?since=1h&service=" (st.id.service) } { "Search this service's logs" } }
            (log_table(&auth, &logs.hits, "No log lines in the last hour."))
        },
    ))
}

/// The class of an alert's severity cell: red for a critical one that fires or is about to.
fn alert_class(state: peng_core::AlertState, severity: peng_core::Severity) -> &'static str {
    use peng_core::{AlertState, Severity};
    match (state, severity) {
        (AlertState::Firing | AlertState::Pending, Severity::Critical) => "fail",
        (AlertState::Firing | AlertState::Pending, _) => "warn",
        _ => "",
    }
}

/// An additional field's value as the table shows it (long strings cut).
fn field_text(v: &peng_logs::FieldValue) -> String {
    match v {
        peng_logs::FieldValue::Str(s) => clip(s, 200).0.to_string(),
        peng_logs::FieldValue::I64(i) => i.to_string(),
        peng_logs::FieldValue::F64(f) => f.to_string(),
        peng_logs::FieldValue::Bool(b) => b.to_string(),
    }
}

/// Longer messages are cut in the table; the full text stays searchable.
const MESSAGE_CHARS: usize = 2000;

fn log_table(auth: &Caller, hits: &[peng_logs::LogRecord], empty: &str) -> Markup {
    let admin = auth.is_admin();
    html! {
        @if hits.is_empty() { p class="empty muted" { (empty) } }
        @else {
            (scroll(html! { table {
                tr { th { "Time (UTC)" } th { "Where" } th { "Source" } th { "Level" } th { "Message" } }
                @for h in hits {
                    tr {
                        td class="nowrap muted" { (time(h.timestamp_ns)) }
                        td class="nowrap" {
                            @if admin { (h.team) "/" }
                            (h.service) @if !h.stage.is_empty() { " · " (h.stage) } @if !h.instance.is_empty() { " #" (h.instance) }
                        }
                        td class="nowrap muted" { (h.source.as_str()) }
                        td class=(level_class(h.level)) title={ "level " (h.level) } { (level_name(h.level)) }
                        td class="log" {
                            @let (shown, cut) = clip(&h.message, MESSAGE_CHARS);
                            (shown)
                            @if cut > 0 { span class="muted" { " … " (cut) " more characters" } }
                            @if let Some(full) = h.full_message.as_deref().filter(|f| !f.is_empty() && *f != h.message) {
                                @let (shown, cut) = clip(full, MESSAGE_CHARS * 4);
                                details { summary { "full message" } (shown) @if cut > 0 { span class="muted" { " … " (cut) " more characters" } } }
                            }
                            @if !h.fields.is_empty() {
                                div class="fields" {
                                    @for (k, v) in &h.fields {
                                        span { (k) "=" (field_text(v)) }
                                    }
                                }
                            }
                        }
                    }
                }
            } }))
        }
    }
}

/// What the viewer's team costs (for the admin: every team, and the capacity no team reserves).
async fn costs_page(State(ops): State<Ops>, Viewer(auth): Viewer) -> Result<Markup, Response> {
    let report = ops
        .costs(&auth, None)
        .await
        .map_err(|e| error_page(Some(&auth), e))?;
    Ok(page(
        "Costs",
        Some(&auth),
        Nav::Costs,
        html! {
            h1 { "Costs" }
            p class="muted" {
                @match auth.team_scope() {
                    Some(team) => { "What team " strong { (team.as_str()) } " reserves, uses and keeps, " }
                    None => { "What every team reserves, uses and keeps, and the capacity no one takes, " }
                }
                "at the platform file's prices in " (report.currency) "; a month is 730 hours. "
                "Each service's instances are charged, for cpu and for memory, the larger of what they reserve and what they used on average over the last 24 hours."
            }
            (costs::report(&report))
        },
    ))
}

/// Admins only: every component's counters (what `/metrics` serves) and the GELF messages
/// that were refused, so that drops are seen where people look.
async fn platform_page(Viewer(auth): Viewer, State(ops): State<Ops>) -> Response {
    let overview = match ops.platform(&auth) {
        Ok(o) => o,
        Err(e) => return error_page(Some(&auth), e),
    };
    let (samples, rejections, isolation, limits) = (
        overview.counters,
        overview.rejections,
        overview.isolation,
        overview.limits,
    );
    let now = peng_core::now_ns();
    page(
        "Platform",
        Some(&auth),
        Nav::Platform,
        html! {
            h1 { "Platform" }
            h2 { "Isolation" }
            p {
                "Instances: " span class=(if isolation.starts_with("on") { "ok" } else { "fail" }) { (isolation) }
                br;
                "Limits: " span class=(if limits.starts_with("off") { "fail" } else { "ok" }) { (limits) }
            }
            h2 { "Counters" }
            p class="muted" { "The same numbers as " code { "/metrics" } ": what each component received, processed, discarded (with the reason) and failed at." }
            (scroll(html! {
                table {
                    tr { th { "Counter" } th { "Labels" } th class="num" { "Value" } }
                    @for c in &samples {
                        tr {
                            td { code { (c.name) } }
                            td { div class="fields" { @for (k, v) in &c.labels { span { (k) "=" (v) } } } }
                            td class=(if c.name.contains("discarded") || c.name.contains("errors") { if c.value > 0 { "num fail" } else { "num" } } else { "num" }) { (c.value) }
                        }
                    }
                }
            }))
            h2 { "Refused GELF messages" }
            @if rejections.is_empty() {
                p class="muted" { "None since the server started." }
            } @else {
                p class="muted" { "The newest " (rejections.len()) " (at most 1,000); payloads may hold ingest tokens, so only admins see this." }
                (scroll(html! {
                    table {
                        tr { th { "When" } th { "Source" } th { "Peer" } th { "Reason" } th { "Payload (first bytes)" } }
                        @for r in &rejections {
                            tr {
                                td { (format::when(r.time_ns, now)) }
                                td { (r.source.as_str()) }
                                td { (r.peer.map(|p| p.to_string()).unwrap_or_default()) }
                                td { (r.reason) ": " (r.detail) }
                                td class="log" { (String::from_utf8_lossy(&r.payload)) }
                            }
                        }
                    }
                }))
            }
        },
    )
    .into_response()
}

/// The log page's form.
#[derive(Deserialize, Default)]
struct SearchForm {
    #[serde(default)]
    q: String,
    since: Option<String>,
    service: Option<String>,
    limit: Option<usize>,
}

async fn logs_page(
    State(ops): State<Ops>,
    Viewer(auth): Viewer,
    Query(mut q): Query<SearchForm>,
) -> Result<Markup, Response> {
    if q.since.as_deref().is_none_or(str::is_empty) {
        q.since = Some("15m".into());
    }
    q.limit = Some(q.limit.unwrap_or(200).min(1000));
    let (query, since, service) = (
        q.q.clone(),
        q.since.clone().unwrap_or_default(),
        q.service.clone().unwrap_or_default(),
    );
    // The services to pick from: the viewer's own (an admin's: every team's).
    let mut names: Vec<String> = ops
        .summaries(&auth)
        .await
        .map_err(|e| error_page(Some(&auth), e))?
        .into_iter()
        .map(|s| s.id.service.to_string())
        .collect();
    if !service.is_empty() {
        names.push(service.clone());
    }
    names.sort();
    names.dedup();
    let result = ops
        .search_logs(
            &auth,
            Search {
                q: q.q,
                since: q.since,
                service: q.service,
                limit: q.limit,
                ..Default::default()
            },
        )
        .await;
    Ok(page(
        "Logs",
        Some(&auth),
        Nav::Logs,
        html! {
            h1 { "Logs" }
            form class="search" method="get" action="/logs" {
                label class="q" { "Query"
                    input type="text" name="q" value=(query) placeholder="words, \"phrases\", field:value, AND/OR/NOT" autofocus; }
                label { "Since"
                    input type="text" name="since" value=(since) size="8" title="a duration ago (15m, 2h, 7d) or a time (2026-01-01T10:00:00Z)"; }
                label { "Service"
                    select name="service" {
                        option value="" { "all services" }
                        @for n in &names { option value=(n) selected[*n == service] { (n) } }
                    }
                }
                button type="submit" { "Search" }
            }
            @match &result {
                Ok(r) => {
                    p class="muted" {
                        @if r.total == 0 { "No matching messages" }
                        @else if r.hits.len() < r.total { "The newest " (r.hits.len()) " of " (r.total) " matching messages" }
                        @else { (r.total) " matching message" @if r.total != 1 { "s" } }
                        " since " (since) "."
                    }
                    @if !r.hits.is_empty() { (log_table(&auth, &r.hits, "")) }
                },
                Err(e) => { p class="alert-box" role="alert" { (e.message) } },
            }
        },
    ))
}
