//! What a team asks of its database besides the file: backups and restores, password
//! rotation, promote, credentials, status; and what peng runs on its own: scheduled backups,
//! statistics for the `db.*` sensors, removal with its final backup.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime};

use peng_core::DbMode;
use peng_core::{now_ns, ErrorKind, ServiceId, StageName};
use peng_db::accounts::{self, Secret};
use peng_db::backup::{self, BackupInfo, DumpTarget};
use peng_db::server::DedicatedServer;
use peng_db::{replica, stats};
use peng_spec::ServiceSpec;
use peng_state::{
    AuditAction, BackupKind, BackupRow, DatabaseRow, DbNode, DbStatus, NewAudit, State,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlSslMode};
use sqlx::{ConnectOptions, MySqlPool, Row};

use super::{db_err, owner, user_name, Databases, APP_A, APP_B, READ_ONLY, REPLICATION};
use crate::{Error, Result};

/// How a service connects to one stage's database: what `peng db credentials` shows the
/// owning team. `env` is the instances' environment as the database section gives it:
/// `DB_SSL_CA` is the CA's path on this machine and `DATABASE_URL` refers to it as
/// `${DB_SSL_CA}` (where an instance finds the file is the caller's to say).
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    pub read_only_user: String,
    pub read_only_password: String,
    pub ca_pem: String,
    pub env: BTreeMap<String, String>,
}

/// One stage's database as `peng status` and the UI show it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseStatus {
    pub stage: StageName,
    pub mode: DbMode,
    pub server: String,
    pub version: String,
    pub plan: String,
    pub database: String,
    pub status: DbStatus,
    /// Why the last converge or reconcile failed, while it does.
    pub failing: Option<String>,
    pub host: String,
    pub port: u16,
    pub replica: Option<ReplicaStatus>,
    pub protected: bool,
    pub last_backup: Option<BackupRow>,
    pub drift: Vec<crate::Finding>,
}

/// A dedicated database's replica, as its server reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    pub host: String,
    pub port: u16,
    pub io_running: bool,
    pub sql_running: bool,
    pub lag_seconds: Option<u64>,
    pub last_error: Option<String>,
}

impl Databases {
    async fn ready_row(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<DatabaseRow> {
        match state.database(id, stage).await? {
            Some(row) if row.status == DbStatus::Ready || row.status == DbStatus::Rotating => {
                Ok(row)
            }
            Some(row) if row.status == DbStatus::Promoting => Err(Error::new(
                ErrorKind::Conflict,
                format!("the database of {id} on {stage} is being promoted"),
            )),
            Some(_) => Err(Error::new(
                ErrorKind::Conflict,
                format!("the database of {id} on {stage} is still being created"),
            )),
            None => Err(Error::not_found(format!(
                "{id} has no database on stage {stage}"
            ))),
        }
    }

    /// How the MariaDB tools reach the primary of `row`.
    async fn dump_target(&self, row: &DatabaseRow) -> Result<DumpTarget> {
        if row.mode == DbMode::Shared {
            let (_, server) = self
                .platform
                .shared_server(Some(&row.server))
                .ok_or_else(|| Error::internal("shared server vanished"))?;
            let file = self.platform_dir.join(&server.admin_password_file);
            let password = std::fs::read_to_string(&file).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            return Ok(DumpTarget {
                socket: None,
                host: server.host.clone(),
                port: server.port,
                user: server.admin_user.clone(),
                password: Some(Secret::new(password.trim_end_matches(['\n', '\r']))),
                ca: server.ca.as_ref().map(|c| self.platform_dir.join(c)),
            });
        }
        let server = self
            .running(&row.service, &row.stage, row.primary_node)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the database server of {} {} is not running",
                        row.service, row.stage
                    ),
                )
            })?;
        Ok(DumpTarget {
            socket: Some(server.socket().to_path_buf()),
            host: "localhost".to_string(),
            port: server.port(),
            user: server.admin_user().to_string(),
            password: None,
            ca: None,
        })
    }

    /// peng's scratch server for verifying backups, started on first use.
    async fn scratch(&self) -> Result<(MySqlPool, DumpTarget)> {
        let mut scratch = self.scratch.lock().await;
        if scratch.is_none() {
            let cfg = peng_db::server::DedicatedConfig {
                name: "scratch server for backup verification".to_string(),
                dir: self.dir.join("_scratch"),
                port: super::free_port()?,
                server_id: 99,
                settings: self.server_settings("small"),
                read_only: false,
            };
            let server = peng_db::server::DedicatedServer::start(self.tools()?, self.ca()?, cfg)
                .await
                .map_err(db_err)?;
            *scratch = Some(server);
        }
        let server = scratch
            .as_ref()
            .ok_or_else(|| Error::internal("scratch server vanished"))?;
        Ok((
            server.admin().clone(),
            DumpTarget {
                socket: Some(server.socket().to_path_buf()),
                host: "localhost".to_string(),
                port: server.port(),
                user: server.admin_user().to_string(),
                password: None,
                ca: None,
            },
        ))
    }

    fn backup_dir_of(&self, id: &ServiceId, stage: &StageName) -> PathBuf {
        self.backup_dir
            .join(id.team.as_str())
            .join(id.service.as_str())
            .join(stage.as_str())
    }

    /// Takes a backup, verifies it by restoring it on the scratch server and comparing row
    /// counts, records both, and prunes backups beyond `retention`.
    pub async fn backup(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
        kind: BackupKind,
        retention: Option<Duration>,
        actor: &str,
    ) -> Result<BackupRow> {
        let key = (id.clone(), stage.clone());
        let _guard = self.op_lock(&key).await;
        self.backup_locked(state, id, stage, kind, retention, actor)
            .await
    }

    async fn backup_locked(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
        kind: BackupKind,
        retention: Option<Duration>,
        actor: &str,
    ) -> Result<BackupRow> {
        let row = self.ready_row(state, id, stage).await?;
        let tools = self.tools()?.clone();
        let dir = self.backup_dir_of(id, stage);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
        // Reachable first: a backup row is only started for a dump that can run.
        let target = self.dump_target(&row).await?;
        let backup_id = state.start_backup(id, stage, kind, "").await?;
        let name =
            backup::backup_file_name(SystemTime::now(), &backup_id.to_string()).map_err(db_err)?;
        let path = dir.join(name);
        let mut record = state
            .backup(backup_id)
            .await?
            .ok_or_else(|| Error::internal("backup row vanished"))?;
        record.file = path.display().to_string();
        let info = match backup::dump(&tools.dump, &target, &row.db_name, &path).await {
            Ok(info) => info,
            Err(e) => {
                record.error = Some(e.to_string());
                record.verified = Some(false);
                state.finish_backup(&record).await?;
                return Err(db_err(e));
            }
        };
        record.bytes = info.bytes as i64;
        record.took_ms = info.took.as_millis() as i64;
        record.tables_json = serde_json::to_string(&info.tables).unwrap_or_else(|_| "{}".into());
        state.finish_backup(&record).await?;
        match self.verify(&info, backup_id).await {
            Ok(v) => {
                record.verified = Some(v.ok);
                record.restore_ms = Some(v.restore_took.as_millis() as i64);
                if !v.ok {
                    let bad: Vec<String> = v
                        .tables
                        .iter()
                        .filter(|t| !t.ok())
                        .map(|t| {
                            format!(
                                "{}: {:?} in backup, {:?} restored",
                                t.name, t.expected, t.actual
                            )
                        })
                        .collect();
                    record.error = Some(format!("row counts differ: {}", bad.join("; ")));
                }
            }
            Err(e) => {
                record.verified = Some(false);
                record.error = Some(format!("verification failed: {}", e.message));
            }
        }
        state.finish_backup(&record).await?;
        state
            .audit(NewAudit {
                actor: actor.to_string(),
                team: Some(id.team.to_string()),
                action: AuditAction::DatabaseBackup,
                target: format!("{id} {stage}"),
                detail: format!(
                    "backup {backup_id} ({kind}): {} bytes, {} tables, verified: {}",
                    record.bytes,
                    info.tables.len(),
                    match record.verified {
                        Some(true) => "yes",
                        _ => "no",
                    }
                ),
            })
            .await?;
        if let Some(retention) = retention {
            self.prune(state, id, stage, retention).await?;
        }
        Ok(record)
    }

    async fn verify(
        &self,
        info: &BackupInfo,
        backup_id: i64,
    ) -> Result<peng_db::backup::Verification> {
        let tools = self.tools()?.clone();
        let (pool, target) = self.scratch().await?;
        backup::verify(
            &tools.client,
            &pool,
            &target,
            info,
            &format!("verify_{backup_id}"),
        )
        .await
        .map_err(db_err)
    }

    /// Deletes backup files beyond retention (always keeping the newest verified one) and marks
    /// their rows deleted.
    async fn prune(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
        retention: Duration,
    ) -> Result<()> {
        let rows = state.backups(Some(id), Some(stage), false).await?;
        let verified: Vec<PathBuf> = rows
            .iter()
            .filter(|b| b.verified == Some(true))
            .map(|b| PathBuf::from(&b.file))
            .collect();
        let removed = backup::prune(
            &self.backup_dir_of(id, stage),
            retention,
            SystemTime::now(),
            &|p| verified.iter().any(|v| v == p),
        )
        .map_err(db_err)?;
        for file in removed {
            if let Some(mut b) = rows
                .iter()
                .find(|b| std::path::Path::new(&b.file) == file)
                .cloned()
            {
                b.deleted_at = Some(now_ns());
                state.finish_backup(&b).await?;
            }
        }
        Ok(())
    }

    /// Backups due now: every ready database whose newest backup is older than its `every`.
    pub async fn scheduled_backups(&self, state: &State, specs: &[ServiceSpec]) {
        for spec in specs {
            let Some(db) = &spec.database else { continue };
            let id = spec.id();
            for stage in spec.stages.keys() {
                let Ok(Some(row)) = state.database(&id, stage).await else {
                    continue;
                };
                if row.status != DbStatus::Ready {
                    continue;
                }
                let last = state
                    .backups(Some(&id), Some(stage), false)
                    .await
                    .ok()
                    .and_then(|b| b.first().map(|b| b.started_at));
                let due = match last {
                    Some(at) => now_ns() - at >= db.backup.every.as_nanos_i64(),
                    None => true,
                };
                if !due {
                    continue;
                }
                if let Err(e) = self
                    .backup(
                        state,
                        &id,
                        stage,
                        BackupKind::Scheduled,
                        Some(db.backup.retention.as_std()),
                        "peng",
                    )
                    .await
                {
                    tracing::error!(service = %id, %stage, error = %e.message, "scheduled backup failed");
                }
            }
        }
    }

    /// Restores a backup into the service's database (`into = service`) or into a new
    /// database next to it that the service's accounts may use (`into = scratch`).
    pub async fn restore(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
        backup_id: Option<i64>,
        into: &str,
        actor: &str,
    ) -> Result<Vec<String>> {
        let key = (id.clone(), stage.clone());
        let _guard = self.op_lock(&key).await;
        let row = self.ready_row(state, id, stage).await?;
        let backups = state.backups(Some(id), Some(stage), false).await?;
        let chosen = match backup_id {
            Some(bid) => backups.iter().find(|b| b.id == bid).ok_or_else(|| {
                Error::not_found(format!("backup {bid} of {id} on {stage} not found"))
            })?,
            None => backups
                .iter()
                .find(|b| b.verified == Some(true))
                .ok_or_else(|| {
                    Error::not_found(format!("{id} has no verified backup on {stage}"))
                })?,
        };
        let target_db = match into {
            "service" => row.db_name.clone(),
            "scratch" => format!("{}_r{}", row.db_name, chosen.id),
            other => {
                return Err(Error::invalid(format!(
                    "restore into '{other}': expected 'service' or 'scratch'"
                )))
            }
        };
        let tools = self.tools()?.clone();
        let target = self.dump_target(&row).await?;
        let mut events = Vec::new();
        let primary = self.primary(&row, &mut events).await?;
        if into == "scratch" {
            // Made with the binary log on, so a replica gets it, as it gets the restored rows.
            sqlx::raw_sql(&format!(
                "SET SESSION sql_log_bin = 1; \
                 CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; \
                 SET SESSION sql_log_bin = 0",
                accounts::ident(&target_db)
            ))
            .execute(&primary)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "cannot create {target_db} (backup {} was restored into scratch before; drop that database first): {e}",
                        chosen.id
                    ),
                )
            })?;
        }
        let took = backup::restore(
            &tools.client,
            &target,
            &target_db,
            &PathBuf::from(&chosen.file),
        )
        .await
        .map_err(db_err)?;
        if into == "scratch" {
            self.ensure_accounts(state, &row).await?;
        }
        events.push(format!(
            "restored backup {} into database {target_db} in {:.1}s",
            chosen.id,
            took.as_secs_f64()
        ));
        state
            .audit(NewAudit {
                actor: actor.to_string(),
                team: Some(id.team.to_string()),
                action: AuditAction::DatabaseRestore,
                target: format!("{id} {stage}"),
                detail: format!("backup {} into {target_db}", chosen.id),
            })
            .await?;
        Ok(events)
    }

    /// The declared schema plus the scratch restores (`<schema>_rN`) that exist on the server.
    /// The schema name ends in a hash of its service, so no other service's database has this
    /// form.
    pub(super) async fn schema_with_scratch(
        &self,
        pool: &MySqlPool,
        row: &DatabaseRow,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<accounts::SchemaSpec> {
        let mut schema = self.schema_spec(row, secrets)?;
        let prefix = format!("{}_r", row.db_name);
        let rows = sqlx::query(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, ?) = ?",
        )
        .bind(prefix.len() as u64)
        .bind(&prefix)
        .fetch_all(pool)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("list scratch databases: {e}"),
            )
        })?;
        for r in rows {
            let name: String = r.try_get(0).unwrap_or_default();
            let is_scratch = name
                .strip_prefix(&prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_scratch {
                schema.extra_databases.push(name);
            }
        }
        Ok(schema)
    }

    /// Step one of a rotation: a new password for the account not in use, both accounts
    /// usable. Returns the slot instances are to switch to.
    pub async fn rotate_begin(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<()> {
        let key = (id.clone(), stage.clone());
        let _guard = self.op_lock(&key).await;
        let mut row = self.ready_row(state, id, stage).await?;
        if row.status != DbStatus::Rotating {
            // The new password and the switch are one commit, marked as rotating: until the
            // rotation finishes both accounts stay open (also for converges and reconciles in
            // between), and a rotation cut short by a crash is finished by running it again.
            let new_slot = row.app_slot.other();
            let new_name = if new_slot == DbNode::A { APP_A } else { APP_B };
            let password = accounts::generate_password();
            let sealed = self
                .sealer
                .seal(&owner(id, stage, new_name), password.expose());
            row.app_slot = new_slot;
            row.status = DbStatus::Rotating;
            state
                .put_database(&row, &[(new_name.to_string(), sealed)], None)
                .await?;
        }
        self.ensure_accounts(state, &row).await
    }

    /// Step two, once the instances run with the new account: the old one is locked (its
    /// open sessions end with their instances; no new ones are accepted).
    pub async fn rotate_finish(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
        actor: &str,
    ) -> Result<Vec<String>> {
        let key = (id.clone(), stage.clone());
        let _guard = self.op_lock(&key).await;
        let mut row = self.ready_row(state, id, stage).await?;
        row.status = DbStatus::Ready;
        self.ensure_accounts(state, &row).await?;
        state.put_database(&row, &[], None).await?;
        let slot = if row.app_slot == DbNode::B {
            APP_B
        } else {
            APP_A
        };
        let old = if row.app_slot == DbNode::B {
            APP_A
        } else {
            APP_B
        };
        state
            .audit(NewAudit {
                actor: actor.to_string(),
                team: Some(id.team.to_string()),
                action: AuditAction::DatabaseRotate,
                target: format!("{id} {stage}"),
                detail: format!(
                    "instances use {} now; {} locked",
                    user_name(&row.db_name, slot),
                    user_name(&row.db_name, old)
                ),
            })
            .await?;
        self.read_only_pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        Ok(vec![format!(
            "database {stage}: new password for {}; {} is locked",
            user_name(&row.db_name, slot),
            user_name(&row.db_name, old)
        )])
    }

    /// Makes the accounts of `row` (as its status and active slot say) on every server that
    /// holds them, scratch restores included.
    async fn ensure_accounts(&self, state: &State, row: &DatabaseRow) -> Result<()> {
        let secrets = self.secrets(state, &row.service, &row.stage).await?;
        for pool in self.pools(row).await? {
            let schema = self.schema_with_scratch(&pool, row, &secrets).await?;
            accounts::ensure(&pool, &schema).await.map_err(db_err)?;
        }
        Ok(())
    }

    /// Admin pools of every server holding the database's accounts.
    async fn pools(&self, row: &DatabaseRow) -> Result<Vec<MySqlPool>> {
        if row.mode == DbMode::Shared {
            return Ok(vec![self.shared_pool(&row.server).await?]);
        }
        Ok(DbNode::ALL
            .iter()
            .filter_map(|n| {
                self.running(&row.service, &row.stage, *n)
                    .map(|s| s.admin().clone())
            })
            .collect())
    }

    /// Turns the replica into the primary (switch-over when the primary answers, fail-over
    /// when it does not). The caller converges the instances onto the new address.
    pub async fn promote(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
        actor: &str,
    ) -> Result<Vec<String>> {
        let key = (id.clone(), stage.clone());
        let _guard = self.op_lock(&key).await;
        let mut events = Vec::new();
        let mut row = match state.database(id, stage).await? {
            Some(row) if row.status == DbStatus::Promoting => {
                self.settle_promote(state, row, actor, &mut events).await?
            }
            _ => self.ready_row(state, id, stage).await?,
        };
        if row.mode != DbMode::Dedicated || !row.replica {
            return Err(Error::invalid(format!(
                "the database of {id} on {stage} has no replica to promote (replica: true in the file)"
            )));
        }
        let secrets = self.secrets(state, id, stage).await?;
        let repl = Self::secret(&secrets, REPLICATION)?.expose().to_string();
        let old = row.primary_node;
        let new = Self::replica_node(&row);
        let started = Instant::now();
        let primary = self.running(id, stage, old);
        let replica = self
            .running(id, stage, new)
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "the replica is not running"))?;
        // Recorded before the servers switch: a promote cut short (a crash, an error half-way)
        // is found as `promoting` and settled before anything else touches the database.
        row.status = DbStatus::Promoting;
        state.put_database(&row, &[], None).await?;
        let promotion = match replica::promote(
            primary.as_deref(),
            &replica,
            &repl,
            Duration::from_secs(30),
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                let mut ignored = Vec::new();
                if let Err(s) = self.settle_promote(state, row, actor, &mut ignored).await {
                    tracing::error!(service = %id, stage = %stage, error = %s.message, "cannot settle the failed promote; the next reconcile tries again");
                }
                return Err(db_err(e));
            }
        };
        row.primary_node = new;
        let how = if promotion.switched_over {
            "switch-over"
        } else {
            "fail-over"
        };
        self.promoted(
            state,
            &mut row,
            actor,
            format!("node {new} is primary now ({how})"),
        )
        .await?;
        events.push(format!(
            "database {stage}: node {new} is the primary ({} in {:.1}s)",
            if promotion.switched_over {
                "switch-over; the old primary follows it"
            } else {
                "fail-over"
            },
            started.elapsed().as_secs_f64()
        ));
        if promotion.old_primary_rebuild_needed {
            if let Some(server) = self.take_node(id, stage, old) {
                server.destroy().await.map_err(db_err)?;
            } else {
                let _ = std::fs::remove_dir_all(self.node_dir(id, stage, old));
            }
            events.push(format!(
                "database {stage}: node {old} did not answer; it is rebuilt as the new replica"
            ));
        }
        Ok(events)
    }

    /// Settles a promote that was cut short (its row says `promoting`): the row is the truth.
    /// Until a promote records the new primary, the instances only ever wrote to the old one,
    /// so when the old primary runs it stays the primary, writable again, and the other node is
    /// made a fresh replica (by the next converge) unless it still follows. When the old primary
    /// does not start any more, the promote is finished: the other node, which has everything
    /// it received, becomes the primary and the old one is rebuilt as its replica. The caller
    /// holds the database's operation lock.
    pub(crate) async fn settle_promote(
        &self,
        state: &State,
        mut row: DatabaseRow,
        actor: &str,
        events: &mut Vec<String>,
    ) -> Result<DatabaseRow> {
        let (id, stage) = (row.service.clone(), row.stage.clone());
        let old = row.primary_node;
        let new = old.other();
        // A primary whose data is gone would start empty: that is one that does not start.
        let started = if DedicatedServer::initialised(&self.node_dir(&id, &stage, old)) {
            self.node(&row, old, events).await
        } else {
            Err(Error::internal(format!("node {old} has no data directory")))
        };
        let detail = match started {
            Ok(_) => {
                let primary = self
                    .running(&id, &stage, old)
                    .ok_or_else(|| Error::internal("the primary vanished"))?;
                primary.set_read_only(false).await.map_err(db_err)?;
                let following = match self.running(&id, &stage, new) {
                    Some(replica) => replica::replica_status(replica.admin())
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|s| s.io_running && s.sql_running),
                    None => false,
                };
                if !following {
                    if let Some(server) = self.take_node(&id, &stage, new) {
                        server.destroy().await.map_err(db_err)?;
                    } else {
                        let _ = std::fs::remove_dir_all(self.node_dir(&id, &stage, new));
                    }
                }
                let rebuilt = if following {
                    String::new()
                } else {
                    format!(" and node {new} is rebuilt as its replica")
                };
                events.push(format!(
                    "database {stage}: a promote was cut short; it is undone, node {old} stays the primary{rebuilt}"
                ));
                format!("promote cut short, undone: node {old} stays primary")
            }
            Err(e) => {
                self.node(&row, new, events).await?;
                let replica = self
                    .running(&id, &stage, new)
                    .ok_or_else(|| Error::internal("the replica vanished"))?;
                let secrets = self.secrets(state, &id, &stage).await?;
                let repl = Self::secret(&secrets, REPLICATION)?.expose().to_string();
                replica::promote(None, &replica, &repl, Duration::from_secs(30))
                    .await
                    .map_err(db_err)?;
                let _ = std::fs::remove_dir_all(self.node_dir(&id, &stage, old));
                row.primary_node = new;
                events.push(format!(
                    "database {stage}: a promote was cut short and node {old} does not start ({}); it is finished, node {new} is the primary and node {old} is rebuilt as its replica",
                    e.message
                ));
                format!("promote cut short, finished: node {new} is primary now (fail-over)")
            }
        };
        self.promoted(state, &mut row, actor, detail).await?;
        Ok(row)
    }

    /// Records the end of a promote (done, finished or undone): ready again, with the primary
    /// `row` names, audited; read-only connections are made afresh.
    async fn promoted(
        &self,
        state: &State,
        row: &mut DatabaseRow,
        actor: &str,
        detail: String,
    ) -> Result<()> {
        row.status = DbStatus::Ready;
        state
            .put_database(
                row,
                &[],
                Some(NewAudit {
                    actor: actor.to_string(),
                    team: Some(row.service.team.to_string()),
                    action: AuditAction::DatabasePromote,
                    target: format!("{} {}", row.service, row.stage),
                    detail,
                }),
            )
            .await?;
        self.read_only_pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(row.service.clone(), row.stage.clone()));
        Ok(())
    }

    /// The credentials of a database, as its instances get them (see [`Credentials`]).
    pub async fn credentials(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<Credentials> {
        let row = self.ready_row(state, id, stage).await?;
        let secrets = self.secrets(state, id, stage).await?;
        let env = self.instance_env(&row, &secrets)?;
        let get = |k: &str| env.get(k).cloned().unwrap_or_default();
        let ca_pem = match self.ca_path(&row) {
            Some(p) => std::fs::read_to_string(&p).unwrap_or_default(),
            None => String::new(),
        };
        Ok(Credentials {
            host: get("DB_HOST"),
            port: get("DB_PORT").parse().unwrap_or(0),
            database: get("DB_NAME"),
            user: get("DB_USER"),
            password: get("DB_PASSWORD"),
            read_only_user: get("DB_READONLY_USER"),
            read_only_password: get("DB_READONLY_PASSWORD"),
            ca_pem,
            env,
        })
    }

    /// Removes the database of a stage: with `take_final`, a final backup first (best effort:
    /// a protected database's final backup is taken, and must succeed, before its removal is
    /// decided), then the servers or the schema and accounts, then the row.
    pub async fn remove(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
        take_final: bool,
        actor: &str,
    ) -> Result<Vec<String>> {
        let Some(row) = state.database(id, stage).await? else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        if take_final && row.status != DbStatus::Creating {
            match self
                .backup(state, id, stage, BackupKind::Final, None, actor)
                .await
            {
                Ok(b) => events.push(format!(
                    "database {stage}: final backup {} ({} bytes, verified: {})",
                    b.id,
                    b.bytes,
                    b.verified == Some(true)
                )),
                Err(e) => events.push(format!("database {stage}: no final backup: {}", e.message)),
            }
        }
        let key = (id.clone(), stage.clone());
        let _guard = self.op_lock(&key).await;
        if row.mode == DbMode::Dedicated {
            for node in DbNode::ALL.iter().copied() {
                match self.take_node(id, stage, node) {
                    Some(server) => server.destroy().await.map_err(db_err)?,
                    None => {
                        let dir = self.node_dir(id, stage, node);
                        if dir.exists() {
                            std::fs::remove_dir_all(&dir).map_err(|e| {
                                Error::internal(format!("cannot remove {}: {e}", dir.display()))
                            })?;
                        }
                    }
                }
            }
        } else {
            let secrets = self.secrets(state, id, stage).await?;
            let pool = self.shared_pool(&row.server).await?;
            let schema = self.schema_with_scratch(&pool, &row, &secrets).await?;
            accounts::drop(&pool, &schema, true).await.map_err(db_err)?;
        }
        state
            .delete_database(
                id,
                stage,
                NewAudit {
                    actor: actor.to_string(),
                    team: Some(id.team.to_string()),
                    action: AuditAction::DatabaseDestroy,
                    target: format!("{id} {stage}"),
                    detail: format!("{} {}", row.mode, row.db_name),
                },
            )
            .await?;
        self.findings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        self.read_only_pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        events.push(format!("database {stage}: {} destroyed", row.db_name));
        Ok(events)
    }

    /// Status of every database of a service, for `peng status` and the UI.
    pub async fn status(&self, state: &State, spec: &ServiceSpec) -> Result<Vec<DatabaseStatus>> {
        let id = spec.id();
        let mut out = Vec::new();
        for row in state.databases(Some(&id)).await? {
            let key = (id.clone(), row.stage.clone());
            let (host, port) = self.host_port(&row);
            let failure = self
                .failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .cloned();
            let mut replica_state = None;
            if row.mode == DbMode::Dedicated && row.replica {
                let node = Self::replica_node(&row);
                let port = if node == DbNode::A {
                    row.port_a
                } else {
                    row.port_b
                };
                let status = match self.running(&id, &row.stage, node) {
                    Some(server) => replica::status(&server).await.ok(),
                    None => None,
                };
                replica_state = Some(ReplicaStatus {
                    host: "127.0.0.1".to_string(),
                    port: port.unwrap_or(0),
                    io_running: status.as_ref().is_some_and(|s| s.io_running),
                    sql_running: status.as_ref().is_some_and(|s| s.sql_running),
                    lag_seconds: status.as_ref().and_then(|s| s.seconds_behind),
                    last_error: status.and_then(|s| s.last_error),
                });
            }
            let last_backup = state
                .backups(Some(&id), Some(&row.stage), false)
                .await?
                .first()
                .cloned();
            out.push(DatabaseStatus {
                stage: row.stage.clone(),
                mode: row.mode,
                server: row.server.clone(),
                version: row.version.clone(),
                plan: row.plan.clone(),
                database: row.db_name.clone(),
                status: row.status,
                failing: failure,
                host,
                port,
                replica: replica_state,
                protected: spec
                    .database
                    .as_ref()
                    .is_some_and(|d| d.protected(&row.stage)),
                last_backup,
                drift: self
                    .findings
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&key)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Samples every database's statistics and hands them to the monitor as the `db.*`
    /// sensors.
    pub async fn sample(&self, state: &State, monitor: &peng_monitor::Monitor) {
        let Ok(rows) = state.databases(None).await else {
            return;
        };
        for row in rows.into_iter().filter(|r| r.status != DbStatus::Creating) {
            let key = (row.service.clone(), row.stage.clone());
            let primary = if row.mode == DbMode::Shared {
                self.shared_pool(&row.server).await.ok()
            } else {
                self.running(&row.service, &row.stage, row.primary_node)
                    .map(|s| s.admin().clone())
            };
            let sample = match primary {
                Some(pool) => stats::sample(&pool).await.map_err(|e| e.to_string()),
                None => Err("the server is not running".to_string()),
            };
            let (svc, stage) = (&row.service, &row.stage);
            match sample {
                Err(why) => {
                    monitor.record_external(
                        svc,
                        stage,
                        "db.up",
                        false,
                        &[("value", 0.0)],
                        Some(why),
                    );
                }
                Ok(s) => {
                    monitor.record_external(svc, stage, "db.up", true, &[("value", 1.0)], None);
                    let pct = s.used_percent();
                    monitor.record_external(
                        svc,
                        stage,
                        "db.connections",
                        pct < 90.0,
                        &[
                            ("value", pct),
                            ("used", s.threads_connected as f64),
                            ("max", s.max_connections as f64),
                        ],
                        None,
                    );
                    if row.mode == DbMode::Dedicated {
                        // Server-wide counters mean something only on a server of its own.
                        let prev = self
                            .last_stats
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(
                                (key.clone(), "primary".to_string()),
                                (s.clone(), Instant::now()),
                            );
                        if let Some((p, at)) = prev {
                            let secs = at.elapsed().as_secs_f64().max(0.001);
                            let qps = s.questions.saturating_sub(p.questions) as f64 / secs;
                            let slow = s.slow_queries.saturating_sub(p.slow_queries) as f64 / secs;
                            monitor.record_external(
                                svc,
                                stage,
                                "db.queries",
                                true,
                                &[("value", qps)],
                                None,
                            );
                            monitor.record_external(
                                svc,
                                stage,
                                "db.slow_queries",
                                true,
                                &[("value", slow)],
                                None,
                            );
                        }
                    }
                    let size = self.schema_size(&row).await.unwrap_or(0);
                    monitor.record_external(
                        svc,
                        stage,
                        "db.size",
                        true,
                        &[("value", size as f64)],
                        None,
                    );
                }
            }
            if row.mode == DbMode::Dedicated && row.replica {
                let node = Self::replica_node(&row);
                let status = match self.running(&row.service, &row.stage, node) {
                    Some(server) => replica::status(&server).await.map_err(|e| e.to_string()),
                    None => Err("the replica is not running".to_string()),
                };
                match status {
                    Ok(st) => {
                        let ok = st.io_running && st.sql_running;
                        let lag = st.seconds_behind.map(|l| l as f64).unwrap_or(-1.0);
                        let message = if ok {
                            None
                        } else {
                            Some(
                                st.last_error
                                    .unwrap_or_else(|| "replication stopped".into()),
                            )
                        };
                        monitor.record_external(
                            svc,
                            stage,
                            "db.replica",
                            ok,
                            &[("value", lag)],
                            message,
                        );
                    }
                    Err(why) => {
                        monitor.record_external(
                            svc,
                            stage,
                            "db.replica",
                            false,
                            &[("value", -1.0)],
                            Some(why),
                        );
                    }
                }
            }
        }
    }

    /// Never starts a server: sampling only looks at what runs.
    async fn schema_size(&self, row: &DatabaseRow) -> Option<u64> {
        let pool = if row.mode == DbMode::Shared {
            self.shared_pool(&row.server).await.ok()?
        } else {
            self.running(&row.service, &row.stage, row.primary_node)?
                .admin()
                .clone()
        };
        let r = sqlx::query(
            "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS UNSIGNED) FROM information_schema.TABLES WHERE table_schema = ?",
        )
        .bind(&row.db_name)
        .fetch_one(&pool)
        .await
        .ok()?;
        r.try_get::<u64, _>(0).ok()
    }

    /// Runs an `sql` sensor's query as the read-only account of the database of `stage`.
    pub async fn query_value(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
        query: &str,
    ) -> Result<f64, String> {
        let key = (id.clone(), stage.clone());
        let cached = self
            .read_only_pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        let pool = match cached {
            Some(pool) => pool,
            None => {
                let row = self
                    .ready_row(state, id, stage)
                    .await
                    .map_err(|e| e.message)?;
                let secrets = self
                    .secrets(state, id, stage)
                    .await
                    .map_err(|e| e.message)?;
                let (host, port) = self.host_port(&row);
                let password = Self::secret(&secrets, READ_ONLY).map_err(|e| e.message)?;
                let mut opts = MySqlConnectOptions::new()
                    .host(&host)
                    .port(port)
                    .username(&user_name(&row.db_name, READ_ONLY))
                    .password(password.expose())
                    .database(&row.db_name)
                    .disable_statement_logging();
                opts = match self.ca_path(&row) {
                    Some(ca) => opts.ssl_mode(MySqlSslMode::VerifyCa).ssl_ca(ca),
                    None => opts.ssl_mode(MySqlSslMode::Required),
                };
                let pool = MySqlPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with(opts);
                self.read_only_pools
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, pool.clone());
                pool
            }
        };
        let row = sqlx::query(query)
            .fetch_optional(&pool)
            .await
            .map_err(|e| format!("query failed: {e}"))?
            .ok_or_else(|| "the query returned no row".to_string())?;
        if let Ok(v) = row.try_get::<i64, _>(0) {
            return Ok(v as f64);
        }
        if let Ok(v) = row.try_get::<u64, _>(0) {
            return Ok(v as f64);
        }
        if let Ok(v) = row.try_get::<f64, _>(0) {
            return Ok(v);
        }
        if let Ok(v) = row.try_get::<String, _>(0) {
            return v
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("the first column is '{v}', not a number"));
        }
        Err("the first column of the first row is not a number".to_string())
    }

    /// Stops every dedicated server cleanly, at shutdown.
    pub async fn shutdown(&self) {
        let nodes: Vec<_> = self.nodes_map().drain().collect();
        for (key, server) in nodes {
            if let Err(e) = server.stop().await {
                tracing::warn!(service = %key.0, stage = %key.1, error = %e, "database server did not stop cleanly");
            }
        }
        if let Some(server) = self.scratch.lock().await.take() {
            let _ = server.stop().await;
        }
    }
}
