//! Plan, apply, destroy and restore: the path from a service file to running instances,
//! sensors and a log retention; and what a service looks like now.
//!
//! The order of an apply is what makes it safe to crash: the desired state is committed to the
//! state store (with its audit entry) first, then the drivers converge on it. A crash after the
//! commit is finished by `restore_all` at the next start; a crash before it leaves nothing.
//! Every function that converges instances takes the apply lock's guard ([`Applying`]): one
//! writer at a time, checked by the compiler.

use std::collections::BTreeMap;
use std::path::PathBuf;

use peng_core::{now_ns, ErrorKind, ServiceId, StageName, TeamName};
use peng_monitor::{AlertRecord, AlertState, SensorState};
use peng_provision::driver::process::{InstanceState, InstanceStatus};
use peng_provision::Plan;
use peng_spec::{ServiceSpec, StageSpec};
use peng_state::{AuditAction, BackupKind, NewAudit, ServiceRow};

use super::{Caller, Error, Ops, Parts, Result};
use crate::ingest::ingest_token;

/// A service file sent to be planned or applied.
#[derive(Debug, Clone)]
pub struct FileRequest {
    /// The file's name as the user gave it, for messages.
    pub file_name: String,
    pub spec_yaml: String,
    /// The absolute directory the file is in on this machine.
    pub base_dir: String,
    /// Only this stage's instances follow the file.
    pub stage: Option<String>,
    /// Allows destroying a protected database.
    pub force: bool,
}

/// What an apply or destroy planned and did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub plan: Plan,
    /// What was done, in order, one line each.
    pub events: Vec<String>,
    pub generation: i64,
}

/// A service as `peng status` and its page show it.
#[derive(Debug, Clone)]
pub struct ServiceStatus {
    pub id: ServiceId,
    pub generation: i64,
    pub applied_at_ns: i64,
    pub applied_by: String,
    pub retention: peng_core::Duration,
    pub stages: Vec<StageStatus>,
    pub sensors: Vec<SensorState>,
    pub alerts: Vec<AlertRecord>,
    pub databases: Vec<peng_databases::DatabaseStatus>,
    /// `on (...; runs as peng-books (uid 70001))` or `off (why)`.
    pub isolation: String,
    /// `cgroup v1 (...)` or `off (why)`.
    pub limits: String,
}

#[derive(Debug, Clone)]
pub struct StageStatus {
    pub name: StageName,
    pub desired_instances: u32,
    pub instances: Vec<InstanceView>,
}

/// One instance with what it uses now (while it runs).
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub status: InstanceStatus,
    pub cpu_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
}

/// One line of the service list.
#[derive(Debug, Clone)]
pub struct ServiceSummary {
    pub id: ServiceId,
    pub generation: i64,
    pub applied_at_ns: i64,
    pub instances_desired: u32,
    pub instances_running: u32,
    pub sensors_ok: u32,
    pub sensors_failing: u32,
    pub alerts_firing: u32,
}

/// One run of a sensor, as charts draw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensorPoint {
    pub at_ns: i64,
    pub ok: bool,
    pub latency_ms: f64,
    pub value: Option<f64>,
}

/// Proof that the apply lock is held: whatever converges instances takes it, so there is one
/// writer at a time.
pub(super) type Applying<'a> = tokio::sync::MutexGuard<'a, ()>;

impl Ops {
    /// What applying a file would change (Terraform style), after every check an apply makes.
    pub async fn plan(&self, caller: &Caller, req: FileRequest) -> Result<Plan> {
        Ok(plan_request(self.p(), caller, &req).await?.plan)
    }

    /// Plans and applies a file: the desired state is committed first, then the instances,
    /// databases and sensors converge on it.
    pub async fn apply(&self, caller: &Caller, req: FileRequest) -> Result<Applied> {
        let lock = self.0.apply_lock.lock().await;
        apply(self.p(), &lock, caller, req).await
    }

    /// Stops everything of a service and removes it (a protected database only with `force`,
    /// after a final backup); its logs stay for their retention.
    pub async fn destroy(&self, caller: &Caller, id: &ServiceId, force: bool) -> Result<Applied> {
        let lock = self.0.apply_lock.lock().await;
        destroy(self.p(), &lock, caller, id, force).await
    }

    /// At start: every declared service comes back (instances, sensors, databases); a destroy
    /// that crashed halfway is finished. One broken service does not keep the others down.
    pub async fn restore_all(&self) -> Result<()> {
        let lock = self.0.apply_lock.lock().await;
        restore_all(self.p(), &lock).await
    }

    pub async fn status(&self, caller: &Caller, id: &ServiceId) -> Result<ServiceStatus> {
        status(self.p(), caller, id).await
    }

    /// The caller's services (every service for an admin).
    pub async fn summaries(&self, caller: &Caller) -> Result<Vec<ServiceSummary>> {
        summaries(self.p(), caller).await
    }

    /// A sensor's runs on a stage since `since_ns`, oldest first.
    pub async fn sensor_history(
        &self,
        caller: &Caller,
        id: &ServiceId,
        sensor: &str,
        stage: &StageName,
        since_ns: i64,
    ) -> Result<Vec<SensorPoint>> {
        caller.check_team(&id.team, "service")?;
        Ok(self
            .p()
            .monitor
            .history(id, sensor, stage, since_ns)
            .await?
            .into_iter()
            .map(|(at_ns, ok, latency_ms, value)| SensorPoint {
                at_ns,
                ok,
                latency_ms,
                value,
            })
            .collect())
    }
}

/// The spec a stored row stands for: its file, with the instance counts as applied.
pub(super) fn effective_spec(row: &ServiceRow) -> Result<ServiceSpec, Error> {
    let mut spec = peng_spec::parse_service(&row.file_name, &row.spec_yaml).map_err(|d| {
        Error::internal(format!(
            "stored service file of {} no longer parses: {d}",
            row.id
        ))
    })?;
    let stages: BTreeMap<String, u32> = serde_json::from_str(&row.stages_json)
        .map_err(|e| Error::internal(format!("stored stages of {}: {e}", row.id)))?;
    let mut applied = BTreeMap::new();
    for (name, instances) in stages {
        let stage = StageName::parse(&name).map_err(|e| Error::internal(e.to_string()))?;
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
async fn current(p: &Parts, id: &ServiceId) -> Result<Option<(ServiceRow, ServiceSpec)>> {
    match p.state.service(id).await? {
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
    p: &Parts,
    id: &ServiceId,
    removed: &[(StageName, bool)],
    actor: &str,
) -> Result<(Vec<String>, Vec<StageName>)> {
    let mut events = Vec::new();
    let mut done = Vec::new();
    for (stage, protected) in removed {
        if !*protected {
            continue;
        }
        match p.state.database(id, stage).await? {
            Some(row) if row.status != peng_state::DbStatus::Creating => {}
            _ => continue,
        }
        let b = p
            .databases
            .backup(&p.state, id, stage, BackupKind::Final, None, actor)
            .await?;
        if b.verified != Some(true) {
            return Err(Error::new(
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
) -> Result<()> {
    let protected: Vec<String> = removed
        .iter()
        .filter(|(_, p)| *p)
        .map(|(s, _)| s.to_string())
        .collect();
    if protected.is_empty() || force {
        return Ok(());
    }
    Err(Error::new(
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
    p: &Parts,
    id: &ServiceId,
    desired: &ServiceSpec,
) -> Result<Vec<String>> {
    let platform = p.databases.platform();
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
    let others: Vec<_> = p
        .state
        .databases(None)
        .await?
        .into_iter()
        .filter(|r| r.mode == peng_core::DbMode::Shared && r.server == name && &r.service != id)
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
    p: &Parts,
    file: &str,
    id: &ServiceId,
    current: Option<&ServiceSpec>,
    desired: &ServiceSpec,
) -> Result<()> {
    let platform = p.databases.platform();
    let mut others = peng_costs::Reservation::default();
    for row in p.state.services(None).await? {
        if row.destroyed_at.is_some() || &row.id == id {
            continue;
        }
        if let Ok(spec) = effective_spec(&row) {
            others = others + peng_costs::reservation(&spec, platform).total();
        }
    }
    let cur = current
        .map(|c| peng_costs::reservation(c, platform).total())
        .unwrap_or_default();
    let want = peng_costs::reservation(desired, platform).total();
    let mut problems = peng_costs::check_capacity(platform, others, cur, want)
        .err()
        .unwrap_or_default();
    problems.extend(shared_capacity_problems(p, id, desired).await?);
    if problems.is_empty() {
        return Ok(());
    }
    let mut e = Error::new(
        ErrorKind::Conflict,
        format!("{file}: over the platform's capacity; nothing was changed"),
    );
    e.details = problems;
    Err(e)
}

async fn plan_request(p: &Parts, caller: &Caller, req: &FileRequest) -> Result<Planned> {
    let mut desired = peng_spec::parse_service(&req.file_name, &req.spec_yaml)?;
    p.databases.check_spec(&req.file_name, &desired)?;
    let id = desired.id();
    if !caller.may_access(&id.team) {
        return Err(Error::forbidden(format!(
            "the service file belongs to team '{}', which is not yours",
            id.team
        )));
    }
    if p.state.team(&id.team).await?.is_none() {
        return Err(Error::not_found(format!(
            "team '{}' does not exist; an admin creates it with 'peng team create {}'",
            id.team, id.team
        )));
    }
    super::logs::check_log_sensors(&req.file_name, &desired)?;
    let base_dir =
        super::isolation::check_service_dir(p, &req.file_name, &desired, &req.base_dir).await?;
    let current = current(p, &id).await?;
    let stage = match &req.stage {
        Some(s) => Some(StageName::parse(s).map_err(|e| Error::invalid(e.to_string()))?),
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
                return Err(Error::invalid(format!(
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
        p,
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

async fn apply(
    p: &Parts,
    lock: &Applying<'_>,
    caller: &Caller,
    req: FileRequest,
) -> Result<Applied> {
    let Planned {
        desired,
        current,
        plan,
        removed_databases,
        base_dir,
    } = plan_request(p, caller, &req).await?;
    let base_dir = base_dir.display().to_string();
    let same_dir = current
        .as_ref()
        .is_none_or(|(row, _)| row.base_dir == base_dir);
    if let (Some((row, spec)), true) = (&current, plan.is_empty() && same_dir) {
        // Nothing to store. Converging anyway finishes an earlier apply whose drivers failed
        // after its state was committed; for a service that runs as declared it touches nothing.
        let events = converge(p, lock, row, spec).await?;
        return Ok(Applied {
            plan,
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
        applied_by: caller.actor(),
        destroyed_at: None,
    };
    let (add, change, destroy) = plan.summary();
    let audit = NewAudit {
        actor: caller.actor(),
        team: Some(id.team.to_string()),
        action: AuditAction::ServiceApply,
        target: id.to_string(),
        detail: format!(
            "generation {generation}: {add} to add, {change} to change, {destroy} to destroy"
        ),
    };
    // A protected database is backed up before the decision to remove it is committed: when
    // the backup fails, nothing changes.
    let (mut events, _) = final_backups(p, &id, &removed_databases, &caller.actor()).await?;
    p.state.put_service(&row, audit).await?;
    events.extend(converge(p, lock, &row, &desired).await?);
    Ok(Applied {
        plan,
        events,
        generation,
    })
}

/// Brings instances and sensors in line with a stored service.
async fn converge(
    p: &Parts,
    _lock: &Applying<'_>,
    row: &ServiceRow,
    spec: &ServiceSpec,
) -> Result<Vec<String>> {
    let team = p
        .state
        .team(&row.id.team)
        .await?
        .ok_or_else(|| Error::internal(format!("team of {} vanished", row.id)))?;
    let mut env = BTreeMap::new();
    env.insert(
        "PENG_GELF_HTTP".to_string(),
        format!("http://{}/gelf", p.addrs.http),
    );
    env.insert("PENG_GELF_UDP".to_string(), p.addrs.gelf_udp.to_string());
    env.insert("PENG_GELF_TCP".to_string(), p.addrs.gelf_tcp.to_string());
    env.insert(
        "PENG_INGEST_TOKEN".to_string(),
        ingest_token(&p.secret, &team.name, team.ingest_generation),
    );
    let mut events = Vec::new();
    // Databases no longer declared go first (a mode change makes a new one), then the declared
    // ones are made, so instances start with the address of the database they are to use.
    for db in p.state.databases(Some(&row.id)).await? {
        // A file that names no shared server keeps the one its database is on: a new default
        // in the platform file never moves (or removes) an existing database.
        let declared = spec.database.as_ref().is_some_and(|d| {
            spec.stages.contains_key(&db.stage)
                && db.mode == d.mode
                && d.server.as_ref().is_none_or(|s| s == &db.server)
        });
        if !declared {
            let recent_final = p
                .state
                .backups(Some(&row.id), Some(&db.stage), false)
                .await?
                .first()
                .is_some_and(|b| {
                    b.kind == BackupKind::Final && now_ns() - b.started_at < 600_000_000_000
                });
            events.extend(
                p.databases
                    .remove(&p.state, &row.id, &db.stage, !recent_final, &row.applied_by)
                    .await?,
            );
        }
    }
    let (db_env, db_events) = p
        .databases
        .converge(&p.state, spec, &row.applied_by)
        .await?;
    events.extend(db_events);
    let base = PathBuf::from(&row.base_dir);
    let platform = p.databases.platform();
    let user = super::isolation::team_user(p, &row.id.team).await?;
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
    let driver_events = p.driver.reconcile(&row.id, instances).await?;
    p.monitor
        .apply_with_builtin(spec, peng_databases::builtin_alerts(spec));
    events.extend(driver_events.iter().map(|e| e.to_string()));
    Ok(events)
}

/// Converges one live service again (its instances' database address or account changed).
pub(super) async fn converge_service(
    p: &Parts,
    lock: &Applying<'_>,
    id: &ServiceId,
) -> Result<Vec<String>> {
    match current(p, id).await? {
        Some((row, spec)) => converge(p, lock, &row, &spec).await,
        None => Err(Error::not_found(format!("service {id} not found"))),
    }
}

/// Converges every live service of a team again, e.g. after its ingest token changed.
pub(super) async fn converge_team(p: &Parts, lock: &Applying<'_>, team: &TeamName) -> Result<()> {
    for row in p.state.services(Some(team)).await? {
        if row.destroyed_at.is_none() {
            let spec = effective_spec(&row)?;
            converge(p, lock, &row, &spec).await?;
        }
    }
    Ok(())
}

async fn destroy(
    p: &Parts,
    _lock: &Applying<'_>,
    caller: &Caller,
    id: &ServiceId,
    force: bool,
) -> Result<Applied> {
    caller.check_team(&id.team, "service")?;
    let Some((row, spec)) = current(p, id).await? else {
        return Err(Error::not_found(format!("service {id} not found")));
    };
    let plan = peng_provision::plan(Some(&spec), None, None)?;
    let removed = removed_databases(Some(&spec), None);
    check_protection(&row.file_name, id, &removed, force)?;
    let (mut events, backed_up) = final_backups(p, id, &removed, &caller.actor()).await?;
    // The decision is committed first, as for apply: a crash afterwards is finished at the next
    // start, which brings back only services that are not destroyed.
    let audit = NewAudit {
        actor: caller.actor(),
        team: Some(id.team.to_string()),
        action: AuditAction::ServiceDestroy,
        target: id.to_string(),
        detail: format!(
            "generation {}; logs kept for {}",
            row.generation, spec.logging.retention
        ),
    };
    p.state.destroy_service(id, audit).await?;
    p.monitor.remove(id);
    p.driver.stop_service(id).await?;
    events.push(format!(
        "stopped all instances of {id}; logs are kept for {}",
        spec.logging.retention
    ));
    for db in p.state.databases(Some(id)).await? {
        let take_final = !backed_up.contains(&db.stage);
        events.extend(
            p.databases
                .remove(&p.state, id, &db.stage, take_final, &caller.actor())
                .await?,
        );
    }
    Ok(Applied {
        plan,
        events,
        generation: row.generation,
    })
}

/// At start: every declared service comes back (instances, sensors). A service that cannot be
/// restored is logged and skipped, so one broken service does not keep the platform down.
async fn restore_all(p: &Parts, lock: &Applying<'_>) -> Result<()> {
    for row in p.state.services(None).await? {
        if row.destroyed_at.is_some() {
            // A destroy that crashed before its databases were removed is finished here.
            for db in p.state.databases(Some(&row.id)).await? {
                if let Err(e) = p
                    .databases
                    .remove(&p.state, &row.id, &db.stage, true, &Caller::System.actor())
                    .await
                {
                    tracing::error!(service = %row.id, stage = %db.stage, error = %e.message, "cannot remove the database of a destroyed service");
                }
            }
            continue;
        }
        let restored = match effective_spec(&row) {
            Ok(spec) => converge(p, lock, &row, &spec)
                .await
                .map(|events| events.len()),
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

async fn status(p: &Parts, caller: &Caller, id: &ServiceId) -> Result<ServiceStatus> {
    caller.check_team(&id.team, "service")?;
    let Some((row, spec)) = current(p, id).await? else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("service {id} not found"),
        ));
    };
    let instances = p.driver.instances(Some(id));
    let driver = p.driver.clone();
    let owned = id.clone();
    let usage = super::blocking("usage", move || driver.usage(Some(&owned))).await?;
    let stages = spec
        .stages
        .iter()
        .map(|(name, s)| StageStatus {
            name: name.clone(),
            desired_instances: s.instances,
            instances: instances
                .iter()
                .filter(|i| &i.stage == name)
                .map(|i| {
                    let used = usage
                        .iter()
                        .find(|u| u.stage == i.stage && u.index == i.index);
                    InstanceView {
                        status: i.clone(),
                        cpu_seconds: used.map(|u| u.cpu_seconds),
                        memory_bytes: used.map(|u| u.memory_bytes),
                    }
                })
                .collect(),
        })
        .collect();
    Ok(ServiceStatus {
        id: id.clone(),
        generation: row.generation,
        applied_at_ns: row.applied_at,
        applied_by: row.applied_by.clone(),
        retention: spec.logging.retention,
        stages,
        sensors: p.monitor.latest(id),
        alerts: p.monitor.alerts(Some(id)),
        databases: p.databases.status(&p.state, &spec).await?,
        isolation: super::isolation::describe_for(p, id).await?,
        limits: p.limits.clone(),
    })
}

async fn summaries(p: &Parts, caller: &Caller) -> Result<Vec<ServiceSummary>> {
    let rows = p.state.services(caller.team_scope().as_ref()).await?;
    let mut out = Vec::new();
    for row in rows.into_iter().filter(|r| r.destroyed_at.is_none()) {
        let Ok(spec) = effective_spec(&row) else {
            continue;
        };
        let instances = p.driver.instances(Some(&row.id));
        let sensors = p.monitor.latest(&row.id);
        let alerts = p.monitor.alerts(Some(&row.id));
        out.push(ServiceSummary {
            id: row.id.clone(),
            generation: row.generation,
            applied_at_ns: row.applied_at,
            instances_desired: spec.stages.values().map(|s| s.instances).sum(),
            instances_running: instances
                .iter()
                .filter(|i| i.state == InstanceState::Running)
                .count() as u32,
            sensors_ok: sensors.iter().filter(|s| s.last.ok).count() as u32,
            sensors_failing: sensors.iter().filter(|s| !s.last.ok).count() as u32,
            alerts_firing: alerts
                .iter()
                .filter(|a| a.state == AlertState::Firing)
                .count() as u32,
        });
    }
    Ok(out)
}

/// The `database:` section of a live service, if it has one.
pub(super) async fn database_spec(
    p: &Parts,
    id: &ServiceId,
) -> Result<Option<peng_spec::DatabaseSpec>> {
    Ok(current(p, id).await?.and_then(|(_, spec)| spec.database))
}

/// Every live service's effective spec.
pub(super) async fn live_specs(p: &Parts) -> Result<Vec<ServiceSpec>> {
    let mut out = Vec::new();
    for row in p.state.services(None).await? {
        if row.destroyed_at.is_none() {
            if let Ok(spec) = effective_spec(&row) {
                out.push(spec);
            }
        }
    }
    Ok(out)
}
