//! What services use and cost: their instances' recorded usage (for the service page) and the
//! cost report, which charges each service the larger of what it reserves and what it used.
//! The computations are `peng-costs`'; this gathers their inputs.

use std::collections::BTreeMap;

use peng_core::{now_ns, ServiceId, TeamName};
use peng_costs::usage::ServiceUsage;
use peng_costs::CostReport;

use super::services::{effective_spec, live_specs};
use super::{blocking, Caller, Error, Ops, Result};

/// How far back the cost report looks for what instances used.
const COST_WINDOW: std::time::Duration = std::time::Duration::from_secs(86_400);

impl Ops {
    /// A service's instances' usage since `since_ns`, with what each instance reserves.
    pub async fn usage(
        &self,
        caller: &Caller,
        id: &ServiceId,
        since_ns: i64,
    ) -> Result<ServiceUsage> {
        caller.check_team(&id.team, "service")?;
        let p = self.p();
        let spec = match p.state.service(id).await? {
            Some(row) if row.destroyed_at.is_none() => effective_spec(&row)?,
            _ => return Err(Error::not_found(format!("service {id} not found"))),
        };
        let tsdb = p.tsdb.clone();
        let tags = BTreeMap::from([
            ("team".to_string(), id.team.to_string()),
            ("service".to_string(), id.service.to_string()),
        ]);
        let end = now_ns().saturating_add(1);
        let recorded = blocking("usage", move || {
            peng_costs::usage::read(&tsdb, tags, since_ns, end)
        })
        .await??;
        Ok(ServiceUsage {
            cpu_reserved: spec.run.resources.cpu,
            memory_limit: spec.run.resources.memory.bytes(),
            instances: recorded.into_values().flatten().collect(),
        })
    }

    /// The cost report: a team sees its own lines (`team` may only name its own); an admin
    /// every team's, or one team's, and the platform's unused capacity.
    pub async fn costs(&self, caller: &Caller, team: Option<&str>) -> Result<CostReport> {
        let team = match (team, caller.team_scope()) {
            (Some(t), _) => {
                let t = TeamName::parse(t).map_err(|e| Error::invalid(e.to_string()))?;
                caller.check_team(&t, "team")?;
                Some(t)
            }
            (None, scope) => scope,
        };
        costs(self, team.as_ref()).await
    }
}

/// Reservations of every live service, what its instances used on average over the last
/// `COST_WINDOW` (or since their first point), backup bytes and each team's share of the log
/// index.
async fn costs(ops: &Ops, team: Option<&TeamName>) -> Result<CostReport> {
    let p = ops.p();
    let specs = live_specs(p).await?;
    let mut usage = peng_costs::Usage::default();
    let tsdb = p.tsdb.clone();
    let now = now_ns();
    let start = now - COST_WINDOW.as_nanos() as i64;
    // A team's report needs only its own services' usage.
    let tags: BTreeMap<String, String> = team
        .map(|t| ("team".to_string(), t.to_string()))
        .into_iter()
        .collect();
    let recorded = blocking("usage", move || {
        peng_costs::usage::read(&tsdb, tags, start, now.saturating_add(1))
    })
    .await??;
    for spec in &specs {
        let id = spec.id();
        let key = (id.team.to_string(), id.service.to_string());
        if let Some(used) = recorded
            .get(&key)
            .and_then(|i| peng_costs::usage::average(i, start, now))
        {
            usage.instances.insert(id, used);
        }
    }
    for b in p.state.backups(None, None, false).await? {
        *usage
            .backup_bytes
            .entry(b.service.team.clone())
            .or_default() += b.bytes.max(0) as u64;
    }
    let logs = p.logs.clone();
    let teams: Vec<TeamName> = p.state.teams().await?.into_iter().map(|t| t.name).collect();
    let log_bytes = blocking("log sizes", move || {
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
    .await?;
    usage.log_bytes.extend(log_bytes);
    Ok(peng_costs::report(
        p.databases.platform(),
        &specs,
        &usage,
        team,
    ))
}
