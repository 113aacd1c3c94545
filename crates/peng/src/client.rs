//! The client commands: each is one or a few calls to the v1 API, printed for people (or as
//! JSON with `--json`). Exit codes: 0 success, 1 error, 2 `plan` found changes.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use peng_api as wire;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::output;
use crate::Conn;

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    json: bool,
}

/// An error answered by the server, printed with its details.
#[derive(Debug)]
pub struct ServerError {
    pub status: StatusCode,
    pub body: wire::ErrorBody,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.body.error, self.status.as_u16())?;
        for d in &self.body.details {
            write!(f, "\n{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

fn default_token() -> Option<String> {
    let dir = std::env::var("PENG_DATA_DIR").unwrap_or_else(|_| "./peng-data".to_string());
    std::fs::read_to_string(Path::new(&dir).join("admin.token"))
        .ok()
        .map(|t| t.trim().to_string())
}

impl Api {
    fn new(conn: &Conn) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Api {
            http,
            base: conn.url.trim_end_matches('/').to_string(),
            token: conn.token.clone().or_else(default_token),
            json: conn.json,
        })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<(T, String)> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach peng at {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            let body = serde_json::from_str::<wire::ErrorBody>(&text).unwrap_or(wire::ErrorBody {
                code: "unknown".into(),
                error: text.trim().to_string(),
                details: vec![],
            });
            return Err(ServerError { status, body }.into());
        }
        let value = serde_json::from_str(&text)
            .with_context(|| format!("unexpected answer from {path}"))?;
        Ok((value, text))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<(T, String)> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    fn print_json(&self, raw: &str) -> bool {
        if self.json {
            println!("{raw}");
        }
        self.json
    }
}

fn spec_request(
    file: &Path,
    stage: Option<String>,
    force: bool,
) -> anyhow::Result<wire::SpecRequest> {
    let spec_yaml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let abs = std::fs::canonicalize(file)
        .with_context(|| format!("cannot resolve {}", file.display()))?;
    let base_dir = abs
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", abs.display()))?;
    Ok(wire::SpecRequest {
        file_name: file.display().to_string(),
        spec_yaml,
        base_dir: base_dir.display().to_string(),
        stage,
        force,
    })
}

pub async fn plan(conn: &Conn, file: &Path, stage: Option<String>) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let req = spec_request(file, stage, false)?;
    let (plan, raw): (wire::Plan, _) = api.call(Method::POST, "/api/v1/plan", Some(&req)).await?;
    if !api.print_json(&raw) {
        print!("{}", plan.text);
    }
    Ok(if plan.changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

pub async fn apply(
    conn: &Conn,
    file: &Path,
    stage: Option<String>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let req = spec_request(file, stage, force)?;
    let (plan, _): (wire::Plan, _) = api.call(Method::POST, "/api/v1/plan", Some(&req)).await?;
    if !api.json {
        print!("{}", plan.text);
        if plan.changes.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        println!("\napplying {} ...", plan.service);
    }
    let (applied, raw): (wire::ApplyResponse, _) =
        api.call(Method::POST, "/api/v1/apply", Some(&req)).await?;
    if !api.print_json(&raw) {
        for e in &applied.events {
            println!("  {e}");
        }
        if applied.plan.changes.is_empty() {
            println!("No changes: nothing was touched.");
        } else {
            println!(
                "Applied {} (generation {}): {} added, {} changed, {} destroyed.",
                applied.plan.service,
                applied.generation,
                applied.plan.add,
                applied.plan.change,
                applied.plan.destroy
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn split_id(id: &str) -> anyhow::Result<(&str, &str)> {
    id.split_once('/')
        .ok_or_else(|| anyhow!("'{id}' is not TEAM/SERVICE"))
}

pub async fn destroy(conn: &Conn, id: &str, force: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let (team, service) = split_id(id)?;
    let (resp, raw): (wire::ApplyResponse, _) = api
        .call::<(), _>(
            Method::DELETE,
            &format!("/api/v1/services/{team}/{service}?force={force}"),
            None,
        )
        .await?;
    if !api.print_json(&raw) {
        print!("{}", resp.plan.text);
        for e in &resp.events {
            println!("  {e}");
        }
        println!("Destroyed {id}.");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(conn: &Conn, id: Option<&str>) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    match id {
        Some(id) => {
            let (team, service) = split_id(id)?;
            let (s, raw): (wire::ServiceStatus, _) = api
                .get(&format!("/api/v1/services/{team}/{service}"))
                .await?;
            if !api.print_json(&raw) {
                output::service_status(&s);
            }
        }
        None => {
            let (list, raw): (Vec<wire::ServiceSummary>, _) = api.get("/api/v1/services").await?;
            if !api.print_json(&raw) {
                output::service_list(&list);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn sensors(conn: &Conn, id: &str, since: &str) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let (team, service) = split_id(id)?;
    let (states, raw): (Vec<wire::SensorState>, _) = api
        .get(&format!("/api/v1/services/{team}/{service}/sensors"))
        .await?;
    if api.print_json(&raw) {
        return Ok(ExitCode::SUCCESS);
    }
    output::sensor_table(&states);
    let mut seen = std::collections::BTreeSet::new();
    for s in &states {
        if !seen.insert((s.sensor.clone(), s.stage.clone())) {
            continue;
        }
        let path = api_path(
            &format!(
                "/api/v1/services/{team}/{service}/sensors/{}/history",
                s.sensor
            ),
            &[("stage", s.stage.clone()), ("since", since.to_string())],
        );
        let (h, _): (wire::SensorHistory, _) = api.get(&path).await?;
        output::sensor_history(&h);
    }
    Ok(ExitCode::SUCCESS)
}

/// `quiet`: print only the API token (for `export PENG_TOKEN=$(peng team create NAME --quiet)`).
pub async fn team_create(conn: &Conn, name: &str, quiet: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let req = wire::CreateTeamRequest {
        name: name.to_string(),
    };
    let (resp, raw): (wire::CreateTeamResponse, _) =
        api.call(Method::POST, "/api/v1/teams", Some(&req)).await?;
    if quiet {
        println!("{}", resp.token);
    } else if !api.print_json(&raw) {
        println!("created team {}", resp.team);
        println!("api token (shown once, keep it safe): {}", resp.token);
        println!(
            "ingest token (for GELF senders, field _ingest_token): {}",
            resp.ingest_token
        );
        match &resp.unix_user {
            Some(user) => println!("instances run as {user}"),
            None => println!("instances run unsandboxed, as peng's own user"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn team_list(conn: &Conn) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let (teams, raw): (Vec<wire::Team>, _) = api.get("/api/v1/teams").await?;
    if !api.print_json(&raw) {
        println!("{:<24} {:>8}  CREATED", "TEAM", "SERVICES");
        for t in teams {
            println!(
                "{:<24} {:>8}  {}",
                t.name,
                t.services,
                output::time(t.created_at_ns)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn ingest_token(conn: &Conn, name: &str) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let (t, raw): (wire::IngestToken, _) = api
        .get(&format!("/api/v1/teams/{name}/ingest-token"))
        .await?;
    if !api.print_json(&raw) {
        println!("{}", t.ingest_token);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn rotate_token(conn: &Conn, name: &str) -> anyhow::Result<ExitCode> {
    rotate::<wire::RotatedToken>(conn, &format!("/api/v1/teams/{name}/token/rotate"), |t| {
        format!(
            "new api token for {} (shown once; every earlier one is revoked): {}",
            t.team, t.token
        )
    })
    .await
}

pub async fn rotate_ingest_token(conn: &Conn, name: &str) -> anyhow::Result<ExitCode> {
    rotate::<wire::IngestToken>(
        conn,
        &format!("/api/v1/teams/{name}/ingest-token/rotate"),
        |t| {
            format!(
                "new ingest token for {} (the earlier one is revoked): {}",
                t.team, t.ingest_token
            )
        },
    )
    .await
}

/// POSTs a rotation and prints its answer.
async fn rotate<T: DeserializeOwned>(
    conn: &Conn,
    path: &str,
    say: impl Fn(&T) -> String,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let (answer, raw): (T, _) = api.call::<(), _>(Method::POST, path, None).await?;
    if !api.print_json(&raw) {
        println!("{}", say(&answer));
    }
    Ok(ExitCode::SUCCESS)
}

fn search_path(
    query: &str,
    since: &str,
    until: Option<&str>,
    service: Option<&str>,
    stage: Option<&str>,
    limit: usize,
) -> String {
    let mut params = vec![
        ("q", query.to_string()),
        ("since", since.to_string()),
        ("limit", limit.to_string()),
    ];
    if let Some(u) = until {
        params.push(("until", u.to_string()));
    }
    push_scope(&mut params, service, stage);
    api_path("/api/v1/logs/search", &params)
}

/// The `service` and `stage` filters of log searches and tails.
fn push_scope(params: &mut Vec<(&str, String)>, service: Option<&str>, stage: Option<&str>) {
    if let Some(s) = service {
        params.push(("service", s.to_string()));
    }
    if let Some(s) = stage {
        params.push(("stage", s.to_string()));
    }
}

/// `path?query` with the parameters URL-encoded.
fn api_path(path: &str, params: &[(&str, String)]) -> String {
    // Only the path and query are used; the base is a placeholder for the URL encoder.
    match reqwest::Url::parse_with_params(&format!("http://peng{path}"), params) {
        Ok(url) => format!("{}?{}", url.path(), url.query().unwrap_or_default()),
        Err(_) => path.to_string(),
    }
}

pub async fn logs_search(
    conn: &Conn,
    query: &str,
    since: &str,
    until: Option<&str>,
    service: Option<&str>,
    stage: Option<&str>,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let (res, raw): (wire::LogSearchResponse, _) = api
        .get(&search_path(query, since, until, service, stage, limit))
        .await?;
    if !api.print_json(&raw) {
        for hit in res.hits.iter().rev() {
            println!("{}", output::log_line(hit));
        }
        eprintln!("{} of {} matching messages", res.hits.len(), res.total);
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows the log: asks for what was written after the last cursor, once a second, so no
/// message is skipped or shown twice, whatever its timestamp. Ctrl-C ends it with status 130
/// between two lines, also where SIGINT was ignored when it started (a shell running it
/// in the background, a script's coprocess), where the default action would never come.
pub async fn logs_tail(
    conn: &Conn,
    query: &str,
    service: Option<&str>,
    stage: Option<&str>,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::from(130)),
        followed = follow_log(conn, query, service, stage) => followed,
    }
}

async fn follow_log(
    conn: &Conn,
    query: &str,
    service: Option<&str>,
    stage: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let mut cursor: Option<u64> = None;
    loop {
        let mut params = vec![("q", query.to_string()), ("limit", "1000".to_string())];
        push_scope(&mut params, service, stage);
        if let Some(c) = cursor {
            params.push(("after", c.to_string()));
        }
        let (res, _): (wire::LogTailResponse, _) =
            api.get(&api_path("/api/v1/logs/tail", &params)).await?;
        for hit in &res.hits {
            if api.json {
                println!("{}", serde_json::to_string(hit)?);
            } else {
                println!("{}", output::log_line(hit));
            }
        }
        let caught_up = res.hits.len() < 1000;
        cursor = Some(res.cursor);
        if caught_up {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The service's Grafana dashboard, once the server confirms the service is the caller's.
pub async fn dashboard_export(conn: &Conn, id: &str) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let (team, service) = split_id(id)?;
    let _: (wire::ServiceStatus, _) = api
        .get(&format!("/api/v1/services/{team}/{service}"))
        .await?;
    let dashboard = peng_influx::dashboard::service_dashboard(team, service);
    println!("{}", serde_json::to_string_pretty(&dashboard)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(conn: &Conn, limit: i64) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let (entries, raw): (Vec<wire::AuditEntry>, _) =
        api.get(&format!("/api/v1/audit?limit={limit}")).await?;
    if !api.print_json(&raw) {
        for a in entries.iter().rev() {
            println!(
                "{}  {:<14} {:<18} {}  {}",
                output::time(a.at_ns),
                a.actor,
                a.action,
                a.target,
                a.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn db_credentials(conn: &Conn, id: &str, stage: &str) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let (team, service) = split_id(id)?;
    let (c, raw): (wire::DbCredentials, _) = api
        .get(&format!(
            "/api/v1/services/{team}/{service}/db/credentials?stage={stage}"
        ))
        .await?;
    if !api.print_json(&raw) {
        output::db_credentials(&c);
    }
    Ok(ExitCode::SUCCESS)
}

fn db_request(stage: &str) -> wire::DbRequest {
    wire::DbRequest {
        stage: stage.to_string(),
        ..Default::default()
    }
}

async fn db_post(
    api: &Api,
    id: &str,
    action: &str,
    req: &wire::DbRequest,
) -> anyhow::Result<ExitCode> {
    let (team, service) = split_id(id)?;
    let (resp, raw): (wire::DbActionResponse, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/services/{team}/{service}/db/{action}"),
            Some(req),
        )
        .await?;
    if !api.print_json(&raw) {
        for e in &resp.events {
            println!("{e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn db_backup(conn: &Conn, id: &str, stage: &str) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    db_post(&api, id, "backup", &db_request(stage)).await
}

pub async fn db_action(
    conn: &Conn,
    id: &str,
    stage: &str,
    action: &str,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    db_post(&api, id, action, &db_request(stage)).await
}

pub async fn db_restore(
    conn: &Conn,
    id: &str,
    stage: &str,
    backup_id: Option<i64>,
    into: &str,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let req = wire::DbRequest {
        stage: stage.to_string(),
        backup_id,
        into: Some(into.to_string()),
    };
    db_post(&api, id, "restore", &req).await
}

pub async fn db_backups(conn: &Conn, id: &str, stage: &str) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let (team, service) = split_id(id)?;
    let (list, raw): (Vec<wire::Backup>, _) = api
        .get(&format!(
            "/api/v1/services/{team}/{service}/db/backups?stage={stage}"
        ))
        .await?;
    if !api.print_json(&raw) {
        output::backups(&list);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn costs(conn: &Conn, team: Option<&str>) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let path = match team {
        Some(t) => format!("/api/v1/costs?team={t}"),
        None => "/api/v1/costs".to_string(),
    };
    let (report, raw): (wire::CostReport, _) = api.get(&path).await?;
    if !api.print_json(&raw) {
        output::costs(&report);
    }
    Ok(ExitCode::SUCCESS)
}
