use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use peng_core::{now_ns, AlertState, ServiceId, Severity, StageName, TeamName};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::vocab::AuditAction;
use crate::StateError;

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Team(TeamName),
}

impl Principal {
    /// The name written into the audit log.
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin => "admin".to_string(),
            Principal::Team(t) => format!("team:{t}"),
        }
    }

    /// Whether this principal may see and change things of `team`.
    pub fn may_access(&self, team: &TeamName) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Team(t) => t == team,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TeamRow {
    pub name: TeamName,
    pub created_at: i64,
    pub ingest_generation: i64,
}

/// An applied service file and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    pub id: ServiceId,
    pub file_name: String,
    pub spec_yaml: String,
    /// Directory the file was applied from; relative `run.workdir` resolves against it.
    pub base_dir: String,
    /// Instances per stage as applied, a JSON object `{"stage": n}`; it differs from the
    /// file's `stages` after an apply limited to one stage.
    pub stages_json: String,
    pub retention_ns: i64,
    /// Incremented by every apply that changed something.
    pub generation: i64,
    pub applied_at: i64,
    pub applied_by: String,
    pub destroyed_at: Option<i64>,
}

/// A written audit entry: what was recorded, with the id and time the store gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub entry: NewAudit,
}

/// An audit entry to write; `id` and `at` are given by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub actor: String,
    pub team: Option<String>,
    pub action: AuditAction,
    pub target: String,
    pub detail: String,
}

/// The persisted state of one alert on one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub service: ServiceId,
    pub stage: StageName,
    pub alert: String,
    pub state: AlertState,
    pub since_ns: Option<i64>,
    pub started_at_ns: Option<i64>,
    pub value: Option<f64>,
    pub severity: Severity,
    pub escalated: bool,
    pub message: String,
}

/// Handle on the state database; cheap to clone.
#[derive(Debug, Clone)]
pub struct State {
    pub(crate) pool: SqlitePool,
    tokens: Arc<Mutex<TokenCache>>,
}

/// The principals of tokens found valid, by hash, so that a request does not wait for SQLite
/// to learn who sent it (a query took about 0.13 ms of a 0.8 ms search through the API).
///
/// Only valid tokens are kept, and a token is only ever revoked by [`State::rotate_team_token`],
/// which empties the cache after its commit and moves `generation` on. A lookup that read the
/// database before that commit may finish after it: it keeps its answer only when the
/// generation it started with is still current, so no revoked token survives the rotation.
#[derive(Debug, Default)]
struct TokenCache {
    generation: u64,
    by_hash: HashMap<String, Principal>,
}

/// Tokens held in the cache at most; past it, the cache starts over.
const TOKEN_CACHE_MAX: usize = 10_000;

/// A new random token: `peng_` and 32 random bytes in URL-safe base64.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A stored word of one of the vocabularies (`peng_core::states`, `crate::vocab`); an unknown
/// one is corruption, never a default.
pub(crate) fn word<T>(row: &sqlx::sqlite::SqliteRow, col: &str) -> Result<T, StateError>
where
    T: FromStr<Err = peng_core::UnknownValue>,
{
    let text: String = row.try_get(col)?;
    text.parse()
        .map_err(|e: peng_core::UnknownValue| StateError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn stage_of(row: &sqlx::sqlite::SqliteRow) -> Result<StageName, StateError> {
    let s: String = row.try_get("stage")?;
    StageName::parse(&s).map_err(|e| StateError::Corrupt(e.to_string()))
}

fn team_of(row: &sqlx::sqlite::SqliteRow, col: &str) -> Result<TeamName, StateError> {
    let name: String = row.try_get(col)?;
    TeamName::parse(&name).map_err(|e| StateError::Corrupt(e.to_string()))
}

fn service_of(row: &sqlx::sqlite::SqliteRow) -> Result<ServiceId, StateError> {
    let team: String = row.try_get("team")?;
    let service: String = row.try_get("service")?;
    ServiceId::parse(&format!("{team}/{service}")).map_err(|e| StateError::Corrupt(e.to_string()))
}

impl State {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub async fn open(path: &Path) -> Result<State, StateError> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(State {
            pool,
            tokens: Arc::default(),
        })
    }

    /// Creates the admin token if none exists and returns it; `None` when one exists already.
    pub async fn ensure_admin_token(&self) -> Result<Option<String>, StateError> {
        let mut tx = self.pool.begin().await?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE team IS NULL")
            .fetch_one(&mut *tx)
            .await?;
        if existing > 0 {
            return Ok(None);
        }
        let token = new_token("peng_admin_");
        sqlx::query("INSERT INTO tokens (hash, team, created_at) VALUES (?, NULL, ?)")
            .bind(hash_token(&token))
            .bind(now_ns())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(token))
    }

    /// Who holds this token, if anyone.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StateError> {
        let hash = hash_token(token);
        let generation = {
            let cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = cache.by_hash.get(&hash) {
                return Ok(Some(p.clone()));
            }
            cache.generation
        };
        let row = sqlx::query("SELECT team FROM tokens WHERE hash = ?")
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let team: Option<String> = row.try_get("team")?;
        let principal = match team {
            None => Principal::Admin,
            Some(t) => Principal::Team(
                TeamName::parse(&t).map_err(|e| StateError::Corrupt(e.to_string()))?,
            ),
        };
        let mut cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if cache.generation == generation {
            if cache.by_hash.len() >= TOKEN_CACHE_MAX {
                cache.by_hash.clear();
            }
            cache.by_hash.insert(hash, principal.clone());
        }
        Ok(Some(principal))
    }

    /// Forgets every cached token (after a revocation is committed).
    fn forget_tokens(&self) {
        let mut cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        cache.generation += 1;
        cache.by_hash.clear();
    }

    /// Creates a team and its first API token, which is returned in plaintext this once.
    pub async fn create_team(
        &self,
        name: &TeamName,
        audit: NewAudit,
    ) -> Result<String, StateError> {
        let mut tx = self.pool.begin().await?;
        // The primary key decides between concurrent creates; a read first would race.
        let inserted = sqlx::query("INSERT INTO teams (name, created_at) VALUES (?, ?)")
            .bind(name.as_str())
            .bind(now_ns())
            .execute(&mut *tx)
            .await;
        if let Err(sqlx::Error::Database(db)) = &inserted {
            if db.is_unique_violation() {
                return Err(StateError::TeamExists(name.to_string()));
            }
        }
        inserted?;
        let token = insert_team_token(&mut tx, name).await?;
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Replaces every API token of a team with one new token, returned in plaintext this once.
    pub async fn rotate_team_token(
        &self,
        name: &TeamName,
        audit: NewAudit,
    ) -> Result<String, StateError> {
        let mut tx = self.pool.begin().await?;
        let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM teams WHERE name = ?")
            .bind(name.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if known == 0 {
            return Err(StateError::NoSuchTeam(name.to_string()));
        }
        sqlx::query("DELETE FROM tokens WHERE team = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        let token = insert_team_token(&mut tx, name).await?;
        insert_audit(&mut tx, &audit).await?;
        let committed = tx.commit().await;
        // also when the commit failed: whether it took effect is then unknown
        self.forget_tokens();
        committed?;
        Ok(token)
    }

    /// Moves a team to its next ingest token generation (the old token stops working) and
    /// returns the new generation.
    pub async fn bump_ingest_generation(
        &self,
        name: &TeamName,
        audit: NewAudit,
    ) -> Result<i64, StateError> {
        let mut tx = self.pool.begin().await?;
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE teams SET ingest_generation = ingest_generation + 1 WHERE name = ? RETURNING ingest_generation",
        )
        .bind(name.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(generation) = generation else {
            return Err(StateError::NoSuchTeam(name.to_string()));
        };
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(generation)
    }

    pub async fn teams(&self) -> Result<Vec<TeamRow>, StateError> {
        let rows =
            sqlx::query("SELECT name, created_at, ingest_generation FROM teams ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(TeamRow {
                    name: team_of(r, "name")?,
                    created_at: r.try_get("created_at")?,
                    ingest_generation: r.try_get("ingest_generation")?,
                })
            })
            .collect()
    }

    pub async fn team(&self, name: &TeamName) -> Result<Option<TeamRow>, StateError> {
        Ok(self.teams().await?.into_iter().find(|t| &t.name == name))
    }

    /// Stores an applied service file together with its audit entry, in one transaction.
    pub async fn put_service(&self, row: &ServiceRow, audit: NewAudit) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO services (team, service, file_name, spec_yaml, base_dir, stages_json, \
             retention_ns, generation, applied_at, applied_by, destroyed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (team, service) DO UPDATE SET file_name = excluded.file_name, \
             spec_yaml = excluded.spec_yaml, base_dir = excluded.base_dir, \
             stages_json = excluded.stages_json, \
             retention_ns = excluded.retention_ns, generation = excluded.generation, \
             applied_at = excluded.applied_at, applied_by = excluded.applied_by, \
             destroyed_at = excluded.destroyed_at",
        )
        .bind(row.id.team.as_str())
        .bind(row.id.service.as_str())
        .bind(&row.file_name)
        .bind(&row.spec_yaml)
        .bind(&row.base_dir)
        .bind(&row.stages_json)
        .bind(row.retention_ns)
        .bind(row.generation)
        .bind(row.applied_at)
        .bind(&row.applied_by)
        .bind(row.destroyed_at)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a service destroyed (its row stays for log retention) and drops its alert state.
    pub async fn destroy_service(&self, id: &ServiceId, audit: NewAudit) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE services SET destroyed_at = ? WHERE team = ? AND service = ?")
            .bind(now_ns())
            .bind(id.team.as_str())
            .bind(id.service.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM alerts WHERE team = ? AND service = ?")
            .bind(id.team.as_str())
            .bind(id.service.as_str())
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One service, destroyed or not.
    pub async fn service(&self, id: &ServiceId) -> Result<Option<ServiceRow>, StateError> {
        let row = sqlx::query("SELECT * FROM services WHERE team = ? AND service = ?")
            .bind(id.team.as_str())
            .bind(id.service.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(service_row).transpose()
    }

    /// All services (of one team, or of all), destroyed ones included, ordered by id.
    pub async fn services(&self, team: Option<&TeamName>) -> Result<Vec<ServiceRow>, StateError> {
        let rows = match team {
            Some(t) => {
                sqlx::query("SELECT * FROM services WHERE team = ? ORDER BY team, service")
                    .bind(t.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM services ORDER BY team, service")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(service_row).collect()
    }

    pub async fn audit(&self, entry: NewAudit) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` audit entries, of one team or of all, newest first.
    pub async fn audit_log(
        &self,
        team: Option<&TeamName>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StateError> {
        let rows = match team {
            Some(t) => {
                sqlx::query("SELECT * FROM audit WHERE team = ? ORDER BY id DESC LIMIT ?")
                    .bind(t.as_str())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit ORDER BY id DESC LIMIT ?")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    entry: NewAudit {
                        actor: r.try_get("actor")?,
                        team: r.try_get("team")?,
                        action: word(r, "action")?,
                        target: r.try_get("target")?,
                        detail: r.try_get("detail")?,
                    },
                })
            })
            .collect()
    }

    pub async fn put_alert(&self, a: &AlertRow) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO alerts (team, service, stage, alert, state, since_ns, started_at_ns, value, \
             severity, escalated, message, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (team, service, stage, alert) DO UPDATE SET state = excluded.state, \
             since_ns = excluded.since_ns, started_at_ns = excluded.started_at_ns, \
             value = excluded.value, severity = excluded.severity, escalated = excluded.escalated, \
             message = excluded.message, updated_at = excluded.updated_at",
        )
        .bind(a.service.team.as_str())
        .bind(a.service.service.as_str())
        .bind(a.stage.as_str())
        .bind(&a.alert)
        .bind(a.state.as_str())
        .bind(a.since_ns)
        .bind(a.started_at_ns)
        .bind(a.value)
        .bind(a.severity.as_str())
        .bind(a.escalated)
        .bind(&a.message)
        .bind(now_ns())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn alerts(&self) -> Result<Vec<AlertRow>, StateError> {
        let rows = sqlx::query("SELECT * FROM alerts ORDER BY team, service, stage, alert")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AlertRow {
                    service: service_of(r)?,
                    stage: stage_of(r)?,
                    alert: r.try_get("alert")?,
                    state: word(r, "state")?,
                    since_ns: r.try_get("since_ns")?,
                    started_at_ns: r.try_get("started_at_ns")?,
                    value: r.try_get("value")?,
                    severity: word(r, "severity")?,
                    escalated: r.try_get("escalated")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn service_row(r: &sqlx::sqlite::SqliteRow) -> Result<ServiceRow, StateError> {
    Ok(ServiceRow {
        id: service_of(r)?,
        file_name: r.try_get("file_name")?,
        spec_yaml: r.try_get("spec_yaml")?,
        base_dir: r.try_get("base_dir")?,
        stages_json: r.try_get("stages_json")?,
        retention_ns: r.try_get("retention_ns")?,
        generation: r.try_get("generation")?,
        applied_at: r.try_get("applied_at")?,
        applied_by: r.try_get("applied_by")?,
        destroyed_at: r.try_get("destroyed_at")?,
    })
}

/// A new API token of `team`, stored as its hash; the plaintext is returned this once.
async fn insert_team_token(
    tx: &mut sqlx::SqliteConnection,
    team: &TeamName,
) -> Result<String, StateError> {
    let token = new_token("peng_");
    sqlx::query("INSERT INTO tokens (hash, team, created_at) VALUES (?, ?, ?)")
        .bind(hash_token(&token))
        .bind(team.as_str())
        .bind(now_ns())
        .execute(tx)
        .await?;
    Ok(token)
}

pub(crate) async fn insert_audit(
    tx: &mut sqlx::SqliteConnection,
    a: &NewAudit,
) -> Result<(), StateError> {
    sqlx::query(
        "INSERT INTO audit (at, actor, team, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(now_ns())
    .bind(&a.actor)
    .bind(&a.team)
    .bind(a.action.as_str())
    .bind(&a.target)
    .bind(&a.detail)
    .execute(tx)
    .await?;
    Ok(())
}
