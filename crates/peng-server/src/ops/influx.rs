//! Team databases spoken to in InfluxDB 1.x's dialect (`peng-influx`): what `/write`,
//! `/api/v2/write` and `/query` do once the API has read the request.
//!
//! Databases belong to teams: the team is the caller's, never a name in the request, so a
//! team reaches only its own databases whatever it writes in `db=` or `ON`. The admin token
//! has no databases of its own here and is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use peng_core::TeamName;
use peng_influx::influxql::parse_query;
use peng_influx::{Catalog, CatalogError, Precision, QueryResponse};

use super::{Caller, Error, Ops, Result};

/// Turns at something costly: at most `total` at once over all teams and `per_team` for one.
/// A team's own turn is taken first, so a team that sends more than its share waits behind
/// itself, holding none of the shared turns, and the other teams keep theirs.
pub(crate) struct Turns {
    total: tokio::sync::Semaphore,
    per_team: usize,
    teams: Mutex<HashMap<TeamName, Arc<tokio::sync::Semaphore>>>,
}

/// A turn; given back when dropped.
pub(crate) struct Turn<'a> {
    _team: tokio::sync::OwnedSemaphorePermit,
    _total: tokio::sync::SemaphorePermit<'a>,
}

impl Turns {
    pub(crate) fn new(total: usize, per_team: usize) -> Turns {
        Turns {
            total: tokio::sync::Semaphore::new(total),
            per_team,
            teams: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn take(&self, team: &TeamName) -> Result<Turn<'_>> {
        let stopping = |_: tokio::sync::AcquireError| {
            Error::new(peng_core::ErrorKind::Unavailable, "peng is stopping")
        };
        let own = {
            let mut teams = self.teams.lock().unwrap_or_else(|p| p.into_inner());
            teams
                .entry(team.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_team)))
                .clone()
        };
        let team_turn = own.acquire_owned().await.map_err(stopping)?;
        let total = self.total.acquire().await.map_err(stopping)?;
        Ok(Turn {
            _team: team_turn,
            _total: total,
        })
    }
}

/// A write, its body already decompressed.
pub struct InfluxWrite {
    pub db: String,
    /// `autogen` (or none); `rollup_5m` is read-only.
    pub rp: Option<String>,
    pub precision: Option<String>,
    pub body: String,
}

pub struct InfluxQuery {
    pub q: String,
    pub db: Option<String>,
    pub epoch: Option<String>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn team_of(caller: &Caller) -> Result<TeamName> {
    match caller {
        Caller::Team(t) => Ok(t.clone()),
        Caller::Admin | Caller::System => Err(Error::forbidden(
            "databases belong to teams: use the team's API token as the password",
        )),
    }
}

impl From<CatalogError> for Error {
    fn from(e: CatalogError) -> Self {
        match &e {
            CatalogError::NotFound(_) => Error::not_found(e.to_string()),
            CatalogError::BadName { .. } => Error::invalid(e.to_string()),
            CatalogError::TooMany => Error::new(peng_core::ErrorKind::Conflict, e.to_string()),
            CatalogError::ReadOnly => Error::forbidden(e.to_string()),
            CatalogError::Tsdb(t) => Error::new(t.kind(), e.to_string()),
            CatalogError::Io { .. } => Error::new(peng_core::ErrorKind::Unavailable, e.to_string()),
        }
    }
}

fn precision(name: &str, value: Option<&str>) -> Result<Option<Precision>> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => Precision::parse(v).map(Some).ok_or_else(|| {
            Error::invalid(format!("invalid {name} '{v}': use ns, u, ms, s, m or h"))
        }),
    }
}

impl Ops {
    fn influx(&self) -> Arc<Catalog> {
        self.p().influx.clone()
    }

    /// Stores a write whole, or nothing of it.
    pub async fn influx_write(&self, caller: &Caller, w: InfluxWrite) -> Result<()> {
        let team = team_of(caller)?;
        match w.rp.as_deref().unwrap_or_default() {
            "" | peng_influx::database::RAW_POLICY => {}
            peng_influx::database::ROLLUP_POLICY => {
                return Err(Error::invalid(
                    "retention policy rollup_5m is computed by peng from autogen: write to autogen",
                ))
            }
            rp => {
                return Err(Error::not_found(format!(
                    "retention policy not found: {rp}"
                )))
            }
        }
        let precision = precision("precision", w.precision.as_deref())?.unwrap_or_default();
        // Parsing makes a copy of the batch in memory: a few at a time.
        let _turn = self.0.influx_writes.take(&team).await?;
        let catalog = self.influx();
        tokio::task::spawn_blocking(move || {
            let database = catalog.require(&team, &w.db)?;
            let stored = peng_influx::line::parse(&w.body, precision, now_ns())
                .map_err(|e| Error::invalid(e.to_string()))
                .and_then(|points| {
                    database.write(&points)?;
                    Ok(points.iter().map(|p| p.fields.len() as u64).sum::<u64>())
                });
            database.count_write(stored.as_ref().ok().copied(), w.body.len() as u64);
            stored.map(drop)
        })
        .await
        .map_err(|e| Error::task("write", e))?
    }

    /// Runs the statements of `q`; a statement that fails is an answer, a query that does not
    /// parse is an error.
    pub async fn influx_query(&self, caller: &Caller, q: InfluxQuery) -> Result<QueryResponse> {
        let team = team_of(caller)?;
        let epoch = precision("epoch", q.epoch.as_deref())?;
        let statements =
            parse_query(&q.q).map_err(|e| Error::invalid(format!("error parsing query: {e}")))?;
        let _turn = self.0.influx_queries.take(&team).await?;
        let catalog = self.influx();
        tokio::task::spawn_blocking(move || {
            let cx = peng_influx::Context {
                team: &team,
                db: q.db.as_deref().filter(|d| !d.is_empty()),
                epoch,
                now_ns: now_ns(),
            };
            peng_influx::execute(&catalog, &statements, &cx)
        })
        .await
        .map_err(|e| Error::task("query", e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_team_over_its_share_waits_behind_itself_and_others_still_get_turns() {
        let turns = Turns::new(4, 2);
        let (a, b): (TeamName, TeamName) = ("flood".parse().unwrap(), "quiet".parse().unwrap());
        let a1 = turns.take(&a).await.unwrap();
        let _a2 = turns.take(&a).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(100), turns.take(&a)).await;
        assert!(third.is_err(), "a third turn for the same team waits");
        for _ in 0..3 {
            let b1 = tokio::time::timeout(Duration::from_millis(100), turns.take(&b)).await;
            let b2 = tokio::time::timeout(Duration::from_millis(100), turns.take(&b)).await;
            assert!(
                b1.is_ok() && b2.is_ok(),
                "another team gets its turns at once"
            );
        }
        drop(a1);
        let again = tokio::time::timeout(Duration::from_millis(100), turns.take(&a)).await;
        assert!(again.is_ok(), "a turn given back is taken again");
    }
}
