//! Plan, apply, destroy and restore: the path from a service file to running instances,
//! sensors and a log retention.
//!
//! The order of an apply is what makes it safe to crash: the desired state is committed to the
//! state store (with its audit entry) first, then the drivers converge on it. A crash after the
//! commit is finished by `restore_all` at the next start; a crash before it leaves nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use peng_api as wire;
use peng_core::{now_ns, ErrorKind, ServiceId, StageName};
use peng_spec::{ServiceSpec, StageSpec};
use peng_state::{NewAudit, ServiceRow};

use crate::app::App;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::ingest::ingest_token;

/// The spec a stored row stands for: its file, with the instance counts as applied.
pub fn effective_spec(row: &ServiceRow) -> Result<ServiceSpec, ApiError> {
    let mut spec = peng_spec::parse_service(&row.file_name, &row.spec_yaml).map_err(|d| {
        ApiError::internal(format!(
            "stored service file of {} no longer parses: {d}",
            row.id
        ))
    })?;
    let stages: BTreeMap<String, u32> = serde_json::from_str(&row.stages_json)
        .map_err(|e| ApiError::internal(format!("stored stages of {}: {e}", row.id)))?;
    let mut applied = BTreeMap::new();
    for (name, instances) in stages {
        let stage = StageName::parse(&name).map_err(|e| ApiError::internal(e.to_string()))?;
        applied.insert(stage, StageSpec { instances });
    }
    spec.stages = applied;
    Ok(spec)
}

fn stages_json(spec: &ServiceSpec) -> String {
    let m: BTreeMap<&str, u32> = spec
        .stages
        .iter()
        .map(|(k, v)| (k.as_str(), v.instances))
        .collect();
    serde_json::to_string(&m).unwrap_or_else(|_| "{}".to_string())
}

/// The current (applied, not destroyed) spec of a service.
async fn current(app: &App, id: &ServiceId) -> ApiResult<Option<(ServiceRow, ServiceSpec)>> {
    match app.state.service(id).await? {
        Some(row) if row.destroyed_at.is_none() => {
            let spec = effective_spec(&row)?;
            Ok(Some((row, spec)))
        }
        _ => Ok(None),
    }
}

struct Planned {
    desired: ServiceSpec,
    current: Option<(ServiceRow, ServiceSpec)>,
    plan: peng_provision::Plan,
    /// Stages whose database this apply removes, and whether each is protected.
    removed_databases: Vec<(StageName, bool)>,
    /// The service's directory as checked (symbolic links resolved).
    base_dir: PathBuf,
}

/// Stages whose database `current` has and `desired` does not (gone, or moved to another
/// mode, which makes a new, empty database), with their protection.
fn removed_databases(
    current: Option<&ServiceSpec>,
    desired: Option<&ServiceSpec>,
) -> Vec<(StageName, bool)> {
    let Some(cur) = current else {
        return Vec::new();
    };
    let Some(cur_db) = &cur.database else {
        return Vec::new();
    };
    cur.stages
        .keys()
        .filter(|stage| match desired {
            None => true,
            Some(d) => match &d.database {
                None => true,
                Some(db) => {
                    db.mode != cur_db.mode
                        || db.server != cur_db.server
                        || !d.stages.contains_key(*stage)
                }
            },
        })
        .map(|stage| (stage.clone(), cur_db.protected(stage)))
        .collect()
}

/// Takes the final backups of the protected databases an apply or destroy removes, before the
/// removal is committed. Each must be verified (a restore of it gave the same row counts), or
/// nothing changes. A database that was never completed has nothing to back up.
async fn final_backups(
    app: &App,
    id: &ServiceId,
    removed: &[(StageName, bool)],
    actor: &str,
) -> ApiResult<(Vec<String>, Vec<StageName>)> {
    let mut events = Vec::new();
    let mut done = Vec::new();
    for (stage, protected) in removed {
        if !*protected {
            continue;
        }
        match app.state.database(id, stage).await? {
            Some(row) if row.status != "creating" => {}
            _ => continue,
        }
        let b = app
            .databases
            .backup(&app.state, id, stage, "final", None, actor)
            .await?;
        if b.verified != Some(true) {
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                format!(
                    "the final backup {} of the protected database of {id} on {stage} did not verify ({}); nothing was destroyed",
                    b.id,
                    b.error.as_deref().unwrap_or("no verification")
                ),
            ));
        }
        events.push(format!(
            "database {stage}: final backup {} ({} bytes, verified)",
            b.id, b.bytes
        ));
        done.push(stage.clone());
    }
    Ok((events, done))
}

/// Refuses to remove a protected database without `force`.
fn check_protection(
    file: &str,
    id: &ServiceId,
    removed: &[(StageName, bool)],
    force: bool,
) -> ApiResult<()> {
    let protected: Vec<String> = removed
        .iter()
        .filter(|(_, p)| *p)
        .map(|(s, _)| s.to_string())
        .collect();
    if protected.is_empty() || force {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::Conflict,
        format!(
            "{file}: this would destroy the protected database of {id} on {}; nothing was changed. Run it again with --force to destroy it (a final backup is taken first)",
            protected.join(", ")
        ),
    ))
}

/// What a shared server registered with a capacity cannot take: its number of databases and
/// the disk their plans reserve, counting every other service's databases on it.
async fn shared_capacity_problems(
    app: &App,
    id: &ServiceId,
    desired: &ServiceSpec,
) -> ApiResult<Vec<String>> {
    let platform = app.databases.platform();
    let Some(db) = &desired.database else {
        return Ok(Vec::new());
    };
    if db.mode != peng_spec::DbMode::Shared {
        return Ok(Vec::new());
    }
    let Some((name, server)) = platform.shared_server(db.server.as_deref()) else {
        return Ok(Vec::new());
    };
    let plan_disk = |plan: &str| {
        platform
            .databases
            .plans
            .get(plan)
            .map(|p| p.disk.bytes())
            .unwrap_or(0)
    };
    let others: Vec<_> = app
        .state
        .databases(None)
        .await?
        .into_iter()
        .filter(|r| r.mode == "shared" && r.server == name && &r.service != id)
        .collect();
    let wanted = desired.stages.len() as u64;
    let mut problems = Vec::new();
    if let Some(max) = server.capacity.databases {
        if others.len() as u64 + wanted > u64::from(max) {
            problems.push(format!(
                "shared server {name}: this file asks for {wanted} databases, {} of {max} are free",
                u64::from(max).saturating_sub(others.len() as u64)
            ));
        }
    }
    if let Some(disk) = server.capacity.disk {
        let used = others
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(plan_disk(&r.plan)));
        let asked = plan_disk(&db.plan).saturating_mul(wanted);
        if used.saturating_add(asked) > disk.bytes() {
            let gib = |b: u64| b as f64 / (1024.0 * 1024.0 * 1024.0);
            problems.push(format!(
                "shared server {name}: disk: this file reserves {:.2} GiB, {:.2} GiB of {:.2} GiB are free",
                gib(asked),
                gib(disk.bytes().saturating_sub(used)),
                gib(disk.bytes())
            ));
        }
    }
    Ok(problems)
}

/// Refuses a file that would take the platform past its capacity.
async fn check_capacity(
    app: &App,
    file: &str,
    id: &ServiceId,
    current: Option<&ServiceSpec>,
    desired: &ServiceSpec,
) -> ApiResult<()> {
    let platform = app.databases.platform();
    let mut others = crate::costs::Reservation::default();
    for row in app.state.services(None).await? {
        if row.destroyed_at.is_some() || &row.id == id {
            continue;
        }
        if let Ok(spec) = effective_spec(&row) {
            others = others + crate::costs::reservation(&spec, platform).total();
        }
    }
    let cur = current
        .map(|c| crate::costs::reservation(c, platform).total())
        .unwrap_or_default();
    let want = crate::costs::reservation(desired, platform).total();
    let mut problems = crate::costs::check_capacity(platform, others, cur, want)
        .err()
        .unwrap_or_default();
    problems.extend(shared_capacity_problems(app, id, desired).await?);
    if problems.is_empty() {
        return Ok(());
    }
    let mut e = ApiError::new(
        ErrorKind::Conflict,
        format!("{file}: over the platform's capacity; nothing was changed"),
    );
    e.details = problems;
    Err(e)
}

async fn plan_request(app: &App, auth: &Auth, req: &wire::SpecRequest) -> ApiResult<Planned> {
    let mut desired = peng_spec::parse_service(&req.file_name, &req.spec_yaml)?;
    app.databases.check_spec(&req.file_name, &desired)?;
    let id = desired.id();
    if !auth.0.may_access(&id.team) {
        return Err(ApiError::forbidden(format!(
            "the service file belongs to team '{}', which is not yours",
            id.team
        )));
    }
    if app.state.team(&id.team).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "team '{}' does not exist; an admin creates it with 'peng team create {}'",
            id.team, id.team
        )));
    }
    let base_dir =
        crate::isolation::check_service_dir(app, &req.file_name, &desired, &req.base_dir).await?;
    let current = current(app, &id).await?;
    let stage = match &req.stage {
        Some(s) => Some(StageName::parse(s).map_err(|e| ApiError::invalid(e.to_string()))?),
        None => None,
    };
    if let Some(stage) = &stage {
        // Only this stage's instances follow the file; other stages stay as applied. A `run`
        // change would then hold for some stages and not others, which one stored file cannot
        // say; such a change is applied to all stages at once.
        if let Some((_, cur)) = &current {
            let others_run = cur
                .stages
                .iter()
                .any(|(name, s)| name != stage && s.instances > 0);
            if others_run && cur.run != desired.run {
                return Err(ApiError::invalid(format!(
                    "{} changes 'run', which reaches every stage's instances; apply it without --stage",
                    req.file_name
                )));
            }
        }
        desired = peng_provision::merge_stage(current.as_ref().map(|(_, c)| c), &desired, stage);
    }
    let plan = peng_provision::plan(
        current.as_ref().map(|(_, s)| s),
        Some(&desired),
        stage.as_ref(),
    )?;
    let removed_databases = removed_databases(current.as_ref().map(|(_, s)| s), Some(&desired));
    check_protection(&req.file_name, &id, &removed_databases, req.force)?;
    check_capacity(
        app,
        &req.file_name,
        &id,
        current.as_ref().map(|(_, s)| s),
        &desired,
    )
    .await?;
    Ok(Planned {
        desired,
        current,
        plan,
        removed_databases,
        base_dir,
    })
}

fn action_name(a: peng_provision::Action) -> &'static str {
    match a {
        peng_provision::Action::Create => "create",
        peng_provision::Action::Update => "update",
        peng_provision::Action::Replace => "replace",
        peng_provision::Action::Destroy => "destroy",
    }
}

pub fn wire_plan(plan: &peng_provision::Plan) -> wire::Plan {
    let (add, change, destroy) = plan.summary();
    wire::Plan {
        service: plan.service.to_string(),
        changes: plan
            .changes
            .iter()
            .map(|c| wire::Change {
                action: action_name(c.action).to_string(),
                address: c.address.clone(),
                details: c.details.clone(),
            })
            .collect(),
        add,
        change,
        destroy,
        text: plan.to_string(),
    }
}

pub async fn plan(app: &App, auth: &Auth, req: wire::SpecRequest) -> ApiResult<wire::Plan> {
    Ok(wire_plan(&plan_request(app, auth, &req).await?.plan))
}

pub async fn apply(
    app: &App,
    auth: &Auth,
    req: wire::SpecRequest,
) -> ApiResult<wire::ApplyResponse> {
    let _guard = app.apply_lock.lock().await;
    let Planned {
        desired,
        current,
        plan,
        removed_databases,
        base_dir,
    } = plan_request(app, auth, &req).await?;
    let base_dir = base_dir.display().to_string();
    let wire_plan = wire_plan(&plan);
    let same_dir = current
        .as_ref()
        .is_none_or(|(row, _)| row.base_dir == base_dir);
    if let (Some((row, spec)), true) = (&current, plan.is_empty() && same_dir) {
        // Nothing to store. Converging anyway finishes an earlier apply whose drivers failed
        // after its state was committed; for a service that runs as declared it touches nothing.
        let events = converge(app, row, spec).await?;
        return Ok(wire::ApplyResponse {
            plan: wire_plan,
            events,
            generation: row.generation,
        });
    }
    let id = desired.id();
    let generation = current.as_ref().map(|(row, _)| row.generation).unwrap_or(0) + 1;
    let row = ServiceRow {
        id: id.clone(),
        file_name: req.file_name.clone(),
        spec_yaml: req.spec_yaml.clone(),
        base_dir,
        stages_json: stages_json(&desired),
        retention_ns: desired.logging.retention.as_nanos_i64(),
        generation,
        applied_at: now_ns(),
        applied_by: auth.0.actor(),
        destroyed_at: None,
    };
    let (add, change, destroy) = plan.summary();
    let audit = NewAudit {
        actor: auth.0.actor(),
        team: Some(id.team.to_string()),
        action: "service.apply".to_string(),
        target: id.to_string(),
        detail: format!(
            "generation {generation}: {add} to add, {change} to change, {destroy} to destroy"
        ),
    };
    // A protected database is backed up before the decision to remove it is committed: when
    // the backup fails, nothing changes.
    let (mut events, _) = final_backups(app, &id, &removed_databases, &auth.0.actor()).await?;
    app.state.put_service(&row, audit).await?;
    events.extend(converge(app, &row, &desired).await?);
    Ok(wire::ApplyResponse {
        plan: wire_plan,
        events,
        generation,
    })
}

/// Brings instances and sensors in line with a stored service.
async fn converge(app: &App, row: &ServiceRow, spec: &ServiceSpec) -> ApiResult<Vec<String>> {
    let team = app
        .state
        .team(&row.id.team)
        .await?
        .ok_or_else(|| ApiError::internal(format!("team of {} vanished", row.id)))?;
    let mut env = BTreeMap::new();
    env.insert(
        "PENG_GELF_HTTP".to_string(),
        format!("http://{}/gelf", app.addrs.http),
    );
    env.insert("PENG_GELF_UDP".to_string(), app.addrs.gelf_udp.to_string());
    env.insert("PENG_GELF_TCP".to_string(), app.addrs.gelf_tcp.to_string());
    env.insert(
        "PENG_INGEST_TOKEN".to_string(),
        ingest_token(&app.secret, &team.name, team.ingest_generation),
    );
    let mut events = Vec::new();
    // Databases no longer declared go first (a mode change makes a new one), then the declared
    // ones are made, so instances start with the address of the database they are to use.
    for db in app.state.databases(Some(&row.id)).await? {
        // A file that names no shared server keeps the one its database is on: a new default
        // in the platform file never moves (or removes) an existing database.
        let declared = spec.database.as_ref().is_some_and(|d| {
            spec.stages.contains_key(&db.stage)
                && db.mode == mode_name(d.mode)
                && d.server.as_ref().is_none_or(|s| s == &db.server)
        });
        if !declared {
            let recent_final = app
                .state
                .backups(Some(&row.id), Some(&db.stage), false)
                .await?
                .first()
                .is_some_and(|b| b.kind == "final" && now_ns() - b.started_at < 600_000_000_000);
            events.extend(
                app.databases
                    .remove(
                        &app.state,
                        &row.id,
                        &db.stage,
                        !recent_final,
                        &row.applied_by,
                    )
                    .await?,
            );
        }
    }
    let (db_env, db_events) = app
        .databases
        .converge(&app.state, spec, &row.applied_by)
        .await?;
    events.extend(db_events);
    let base = PathBuf::from(&row.base_dir);
    let platform = app.databases.platform();
    let user = crate::isolation::team_user(app, &row.id.team).await?;
    let mut instances = peng_provision::instance_specs(spec, &base, &env, platform.isolation.pids);
    for instance in &mut instances {
        instance.user = user.clone();
        if let Some(extra) = db_env.get(&instance.stage) {
            let mut extra = extra.clone();
            // The CA goes to the instance as a file: a path in the sandbox, not peng's own.
            if let Some(ca) = extra.remove("DB_SSL_CA").filter(|ca| !ca.is_empty()) {
                instance.files.insert("DB_SSL_CA".into(), PathBuf::from(ca));
            }
            instance.env.extend(extra);
        }
    }
    let driver_events = app.driver.reconcile(&row.id, instances).await?;
    app.monitor
        .apply_with_builtin(spec, crate::databases::builtin_alerts(spec));
    events.extend(driver_events.iter().map(|e| e.to_string()));
    Ok(events)
}

fn mode_name(mode: peng_spec::DbMode) -> &'static str {
    match mode {
        peng_spec::DbMode::Dedicated => "dedicated",
        peng_spec::DbMode::Shared => "shared",
    }
}

/// Converges one live service again (its instances' database address or account changed).
pub async fn converge_service(app: &App, id: &ServiceId) -> ApiResult<Vec<String>> {
    match current(app, id).await? {
        Some((row, spec)) => converge(app, &row, &spec).await,
        None => Err(ApiError::not_found(format!("service {id} not found"))),
    }
}

pub async fn destroy(
    app: &App,
    auth: &Auth,
    id: &ServiceId,
    force: bool,
) -> ApiResult<wire::ApplyResponse> {
    let _guard = app.apply_lock.lock().await;
    auth.check_team(&id.team, "service")?;
    let Some((row, spec)) = current(app, id).await? else {
        return Err(ApiError::not_found(format!("service {id} not found")));
    };
    let plan = peng_provision::plan(Some(&spec), None, None)?;
    let removed = removed_databases(Some(&spec), None);
    check_protection(&row.file_name, id, &removed, force)?;
    let (mut events, backed_up) = final_backups(app, id, &removed, &auth.0.actor()).await?;
    // The decision is committed first, as for apply: a crash afterwards is finished at the next
    // start, which brings back only services that are not destroyed.
    let audit = NewAudit {
        actor: auth.0.actor(),
        team: Some(id.team.to_string()),
        action: "service.destroy".to_string(),
        target: id.to_string(),
        detail: format!(
            "generation {}; logs kept for {}",
            row.generation, spec.logging.retention
        ),
    };
    app.state.destroy_service(id, audit).await?;
    app.monitor.remove(id);
    app.driver.stop_service(id).await?;
    events.push(format!(
        "stopped all instances of {id}; logs are kept for {}",
        spec.logging.retention
    ));
    for db in app.state.databases(Some(id)).await? {
        let take_final = !backed_up.contains(&db.stage);
        events.extend(
            app.databases
                .remove(&app.state, id, &db.stage, take_final, &auth.0.actor())
                .await?,
        );
    }
    Ok(wire::ApplyResponse {
        plan: wire_plan(&plan),
        events,
        generation: row.generation,
    })
}

/// Converges every live service of a team again, e.g. after its ingest token changed. The
/// caller holds the apply lock.
pub async fn converge_team(app: &App, team: &peng_core::TeamName) -> ApiResult<()> {
    for row in app.state.services(Some(team)).await? {
        if row.destroyed_at.is_none() {
            let spec = effective_spec(&row)?;
            converge(app, &row, &spec).await?;
        }
    }
    Ok(())
}

/// At start: every declared service comes back (instances, sensors). A service that cannot be
/// restored is logged and skipped, so one broken service does not keep the platform down.
pub async fn restore_all(app: &App) -> anyhow::Result<()> {
    for row in app.state.services(None).await? {
        if row.destroyed_at.is_some() {
            // A destroy that crashed before its databases were removed is finished here.
            for db in app.state.databases(Some(&row.id)).await? {
                if let Err(e) = app
                    .databases
                    .remove(&app.state, &row.id, &db.stage, true, "peng")
                    .await
                {
                    tracing::error!(service = %row.id, stage = %db.stage, error = %e.message, "cannot remove the database of a destroyed service");
                }
            }
            continue;
        }
        let restored = match effective_spec(&row) {
            Ok(spec) => converge(app, &row, &spec).await.map(|events| events.len()),
            Err(e) => Err(e),
        };
        match restored {
            Ok(n) => {
                tracing::info!(service = %row.id, generation = row.generation, actions = n, "restored service")
            }
            Err(error) => {
                tracing::error!(service = %row.id, error = %error.message, "cannot restore service")
            }
        }
    }
    Ok(())
}

pub async fn status(app: &App, auth: &Auth, id: &ServiceId) -> ApiResult<wire::ServiceStatus> {
    auth.check_team(&id.team, "service")?;
    let Some((row, spec)) = current(app, id).await? else {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("service {id} not found"),
        ));
    };
    let instances = app.driver.instances(Some(id));
    let driver = app.driver.clone();
    let owned = id.clone();
    let usage = tokio::task::spawn_blocking(move || driver.usage(Some(&owned)))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let stages = spec
        .stages
        .iter()
        .map(|(name, s)| wire::Stage {
            name: name.to_string(),
            desired_instances: s.instances,
            instances: instances
                .iter()
                .filter(|i| &i.stage == name)
                .map(|i| {
                    let mut w = wire_instance(i);
                    if let Some(u) = usage
                        .iter()
                        .find(|u| u.stage == i.stage && u.index == i.index)
                    {
                        w.cpu_seconds = Some(u.cpu_seconds);
                        w.memory_bytes = Some(u.memory_bytes);
                    }
                    w
                })
                .collect(),
        })
        .collect();
    Ok(wire::ServiceStatus {
        id: id.to_string(),
        team: id.team.to_string(),
        service: id.service.to_string(),
        generation: row.generation,
        applied_at_ns: row.applied_at,
        applied_by: row.applied_by.clone(),
        retention: spec.logging.retention.to_string(),
        stages,
        sensors: app
            .monitor
            .latest(id)
            .into_iter()
            .map(wire_sensor)
            .collect(),
        alerts: app
            .monitor
            .alerts(Some(id))
            .into_iter()
            .map(|a| wire_alert(&a))
            .collect(),
        databases: app.databases.status(&app.state, &spec).await?,
        isolation: crate::isolation::describe_for(app, id).await?,
        limits: app.limits.clone(),
    })
}

pub async fn summaries(app: &App, auth: &Auth) -> ApiResult<Vec<wire::ServiceSummary>> {
    let rows = app.state.services(auth.team_scope().as_ref()).await?;
    let mut out = Vec::new();
    for row in rows.into_iter().filter(|r| r.destroyed_at.is_none()) {
        let Ok(spec) = effective_spec(&row) else {
            continue;
        };
        let instances = app.driver.instances(Some(&row.id));
        let sensors = app.monitor.latest(&row.id);
        let alerts = app.monitor.alerts(Some(&row.id));
        out.push(wire::ServiceSummary {
            id: row.id.to_string(),
            team: row.id.team.to_string(),
            service: row.id.service.to_string(),
            generation: row.generation,
            applied_at_ns: row.applied_at,
            instances_desired: spec.stages.values().map(|s| s.instances).sum(),
            instances_running: instances
                .iter()
                .filter(|i| i.state == peng_provision::driver::process::InstanceState::Running)
                .count() as u32,
            sensors_ok: sensors.iter().filter(|s| s.last.ok).count() as u32,
            sensors_failing: sensors.iter().filter(|s| !s.last.ok).count() as u32,
            alerts_firing: alerts
                .iter()
                .filter(|a| a.state == peng_monitor::AlertState::Firing)
                .count() as u32,
        });
    }
    Ok(out)
}

pub fn wire_instance(i: &peng_provision::driver::process::InstanceStatus) -> wire::Instance {
    wire::Instance {
        stage: i.stage.to_string(),
        index: i.index,
        pid: i.pid,
        port: i.port,
        state: i.state.as_str().to_string(),
        restarts: i.restarts,
        since_ns: i.since_ns,
        last_exit: i.last_exit.clone(),
        cpu_seconds: None,
        memory_bytes: None,
    }
}

pub fn wire_sensor(s: peng_monitor::SensorState) -> wire::SensorState {
    wire::SensorState {
        sensor: s.sensor.clone(),
        stage: s.stage.to_string(),
        instance: s.instance,
        ok: Some(s.last.ok),
        latency_ms: Some(s.last.latency_ms),
        value: s.last.value,
        message: s.last.message.clone(),
        at_ns: Some(s.last.at_ns),
        since_ns: Some(s.since_ns),
        consecutive_failures: s.consecutive_failures,
    }
}

pub fn wire_alert(a: &peng_monitor::AlertRecord) -> wire::Alert {
    wire::Alert {
        alert: a.alert.clone(),
        stage: a.stage.to_string(),
        state: a.state.as_str().to_string(),
        severity: a.severity.as_str().to_string(),
        since_ns: Some(a.since_ns),
        started_at_ns: a.started_at_ns,
        value: a.value,
        escalated: a.escalated,
        message: a.last_message.clone(),
    }
}

/// What a live service's instances used since `since_ns`, as recorded every `USAGE_EVERY`,
/// with what each instance reserves.
pub async fn usage(
    app: &App,
    auth: &Auth,
    id: &ServiceId,
    since_ns: i64,
) -> ApiResult<crate::usage::ServiceUsage> {
    auth.check_team(&id.team, "service")?;
    let Some((_, spec)) = current(app, id).await? else {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("service {id} not found"),
        ));
    };
    let tsdb = app.tsdb.clone();
    let tags = BTreeMap::from([
        ("team".to_string(), id.team.to_string()),
        ("service".to_string(), id.service.to_string()),
    ]);
    let end = now_ns().saturating_add(1);
    let recorded =
        tokio::task::spawn_blocking(move || crate::usage::read(&tsdb, tags, since_ns, end))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(crate::usage::ServiceUsage {
        cpu_reserved: spec.run.resources.cpu,
        memory_limit: spec.run.resources.memory.bytes(),
        instances: recorded.into_values().flatten().collect(),
    })
}

/// The `database:` section of a live service, if it has one.
pub async fn database_spec(
    app: &App,
    id: &ServiceId,
) -> ApiResult<Option<peng_spec::DatabaseSpec>> {
    Ok(current(app, id).await?.and_then(|(_, spec)| spec.database))
}

/// Every live service's effective spec.
pub async fn live_specs(app: &App) -> ApiResult<Vec<ServiceSpec>> {
    let mut out = Vec::new();
    for row in app.state.services(None).await? {
        if row.destroyed_at.is_none() {
            if let Ok(spec) = effective_spec(&row) {
                out.push(spec);
            }
        }
    }
    Ok(out)
}

/// How far back the cost report looks for what instances used.
const COST_WINDOW: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The cost report: reservations of every live service, what its instances used on average
/// over the last `COST_WINDOW` (or since their first point), backup bytes and each team's
/// share of the log index.
pub async fn costs(app: &App, team: Option<&peng_core::TeamName>) -> ApiResult<wire::CostReport> {
    let specs = live_specs(app).await?;
    let mut usage = crate::costs::Usage::default();
    let tsdb = app.tsdb.clone();
    let now = now_ns();
    let start = now - COST_WINDOW.as_nanos() as i64;
    // A team's report needs only its own services' usage.
    let tags: BTreeMap<String, String> = team
        .map(|t| ("team".to_string(), t.to_string()))
        .into_iter()
        .collect();
    let recorded = tokio::task::spawn_blocking(move || {
        crate::usage::read(&tsdb, tags, start, now.saturating_add(1))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    for spec in &specs {
        let id = spec.id();
        let key = (id.team.to_string(), id.service.to_string());
        if let Some(used) = recorded
            .get(&key)
            .and_then(|i| crate::usage::average(i, start, now))
        {
            usage.instances.insert(id, used);
        }
    }
    for b in app.state.backups(None, None, false).await? {
        *usage
            .backup_bytes
            .entry(b.service.team.clone())
            .or_default() += b.bytes.max(0) as u64;
    }
    let logs = app.logs.clone();
    let teams: Vec<peng_core::TeamName> = app
        .state
        .teams()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let log_bytes = tokio::task::spawn_blocking(move || {
        let total_docs = logs.count().max(1) as f64;
        let disk = logs.disk_bytes() as f64;
        teams
            .into_iter()
            .filter_map(|t| {
                let n = logs.count_team(&t).ok()?;
                (n > 0).then(|| (t, (disk * n as f64 / total_docs) as u64))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    usage.log_bytes.extend(log_bytes);
    Ok(crate::costs::report(
        app.databases.platform(),
        &specs,
        &usage,
        team,
    ))
}
