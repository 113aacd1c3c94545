//! Databases as declared, their encrypted secrets and their backups.
//!
//! Secrets arrive here already encrypted: this crate stores nonce and ciphertext and never sees
//! a password.

use peng_core::{now_ns, DbMode, ServiceId, StageName};
use sqlx::Row;

use crate::store::{insert_audit, stage_of, word};
use crate::vocab::{BackupKind, DbNode, DbStatus};
use crate::{NewAudit, State, StateError};

/// One database of one service on one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseRow {
    pub service: ServiceId,
    pub stage: StageName,
    pub mode: DbMode,
    /// The shared server's name; empty for dedicated.
    pub server: String,
    pub version: String,
    pub plan: String,
    pub db_name: String,
    pub replica: bool,
    pub port_a: Option<u16>,
    pub port_b: Option<u16>,
    /// The node that takes writes.
    pub primary_node: DbNode,
    /// The application account instances use now.
    pub app_slot: DbNode,
    pub status: DbStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An encrypted secret as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedSecret {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// One backup of a database, verified or not.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupRow {
    pub id: i64,
    pub service: ServiceId,
    pub stage: StageName,
    pub kind: BackupKind,
    pub file: String,
    pub started_at: i64,
    pub bytes: i64,
    pub took_ms: i64,
    /// Rows per table as the backup holds them, a JSON object.
    pub tables_json: String,
    pub verified: Option<bool>,
    pub restore_ms: Option<i64>,
    pub error: Option<String>,
    pub deleted_at: Option<i64>,
}

fn service_of(row: &sqlx::sqlite::SqliteRow) -> Result<ServiceId, StateError> {
    let team: String = row.try_get("team")?;
    let service: String = row.try_get("service")?;
    ServiceId::parse(&format!("{team}/{service}")).map_err(|e| StateError::Corrupt(e.to_string()))
}

fn port(row: &sqlx::sqlite::SqliteRow, col: &str) -> Result<Option<u16>, StateError> {
    let p: Option<i64> = row.try_get(col)?;
    p.map(|p| u16::try_from(p).map_err(|_| StateError::Corrupt(format!("{col} {p} is not a port"))))
        .transpose()
}

fn database_row(row: &sqlx::sqlite::SqliteRow) -> Result<DatabaseRow, StateError> {
    Ok(DatabaseRow {
        service: service_of(row)?,
        stage: stage_of(row)?,
        mode: word(row, "mode")?,
        server: row.try_get("server")?,
        version: row.try_get("version")?,
        plan: row.try_get("plan")?,
        db_name: row.try_get("db_name")?,
        replica: row.try_get::<i64, _>("replica")? != 0,
        port_a: port(row, "port_a")?,
        port_b: port(row, "port_b")?,
        primary_node: word(row, "primary_node")?,
        app_slot: word(row, "app_slot")?,
        status: word(row, "status")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn backup_row(row: &sqlx::sqlite::SqliteRow) -> Result<BackupRow, StateError> {
    Ok(BackupRow {
        id: row.try_get("id")?,
        service: service_of(row)?,
        stage: stage_of(row)?,
        kind: word(row, "kind")?,
        file: row.try_get("file")?,
        started_at: row.try_get("started_at")?,
        bytes: row.try_get("bytes")?,
        took_ms: row.try_get("took_ms")?,
        tables_json: row.try_get("tables_json")?,
        verified: row.try_get::<Option<i64>, _>("verified")?.map(|v| v != 0),
        restore_ms: row.try_get("restore_ms")?,
        error: row.try_get("error")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}

impl State {
    /// Inserts or replaces a database row, with its secrets and an audit entry, in one
    /// transaction: a database is never recorded without the passwords it was made with.
    pub async fn put_database(
        &self,
        db: &DatabaseRow,
        secrets: &[(String, SealedSecret)],
        audit: Option<NewAudit>,
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO databases (team, service, stage, mode, server, version, plan, db_name, \
             replica, port_a, port_b, primary_node, app_slot, status, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (team, service, stage) DO UPDATE SET mode = excluded.mode, \
             server = excluded.server, version = excluded.version, plan = excluded.plan, \
             db_name = excluded.db_name, replica = excluded.replica, port_a = excluded.port_a, \
             port_b = excluded.port_b, primary_node = excluded.primary_node, \
             app_slot = excluded.app_slot, status = excluded.status, \
             updated_at = excluded.updated_at",
        )
        .bind(db.service.team.as_str())
        .bind(db.service.service.as_str())
        .bind(db.stage.as_str())
        .bind(db.mode.as_str())
        .bind(&db.server)
        .bind(&db.version)
        .bind(&db.plan)
        .bind(&db.db_name)
        .bind(db.replica as i64)
        .bind(db.port_a.map(i64::from))
        .bind(db.port_b.map(i64::from))
        .bind(db.primary_node.as_str())
        .bind(db.app_slot.as_str())
        .bind(db.status.as_str())
        .bind(db.created_at)
        .bind(now_ns())
        .execute(&mut *tx)
        .await?;
        for (name, secret) in secrets {
            sqlx::query(
                "INSERT INTO db_secrets (team, service, stage, name, nonce, ciphertext, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (team, service, stage, name) DO UPDATE \
                 SET nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
                 updated_at = excluded.updated_at",
            )
            .bind(db.service.team.as_str())
            .bind(db.service.service.as_str())
            .bind(db.stage.as_str())
            .bind(name)
            .bind(&secret.nonce)
            .bind(&secret.ciphertext)
            .bind(now_ns())
            .execute(&mut *tx)
            .await?;
        }
        if let Some(audit) = audit {
            insert_audit(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn database(
        &self,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<Option<DatabaseRow>, StateError> {
        let row =
            sqlx::query("SELECT * FROM databases WHERE team = ? AND service = ? AND stage = ?")
                .bind(id.team.as_str())
                .bind(id.service.as_str())
                .bind(stage.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(database_row).transpose()
    }

    /// Every database, or those of one service.
    pub async fn databases(&self, id: Option<&ServiceId>) -> Result<Vec<DatabaseRow>, StateError> {
        let rows = match id {
            Some(id) => {
                sqlx::query("SELECT * FROM databases WHERE team = ? AND service = ? ORDER BY stage")
                    .bind(id.team.as_str())
                    .bind(id.service.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM databases ORDER BY team, service, stage")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(database_row).collect()
    }

    /// Forgets a database and its secrets (its backups' rows stay, as history).
    pub async fn delete_database(
        &self,
        id: &ServiceId,
        stage: &StageName,
        audit: NewAudit,
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        for table in ["databases", "db_secrets"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE team = ? AND service = ? AND stage = ?"
            ))
            .bind(id.team.as_str())
            .bind(id.service.as_str())
            .bind(stage.as_str())
            .execute(&mut *tx)
            .await?;
        }
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The encrypted secrets of one database, by name.
    pub async fn db_secrets(
        &self,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<Vec<(String, SealedSecret)>, StateError> {
        let rows = sqlx::query(
            "SELECT name, nonce, ciphertext FROM db_secrets WHERE team = ? AND service = ? \
             AND stage = ? ORDER BY name",
        )
        .bind(id.team.as_str())
        .bind(id.service.as_str())
        .bind(stage.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name")?,
                    SealedSecret {
                        nonce: r.try_get("nonce")?,
                        ciphertext: r.try_get("ciphertext")?,
                    },
                ))
            })
            .collect()
    }

    /// Records a backup that is starting; returns its id.
    pub async fn start_backup(
        &self,
        id: &ServiceId,
        stage: &StageName,
        kind: BackupKind,
        file: &str,
    ) -> Result<i64, StateError> {
        let row = sqlx::query(
            "INSERT INTO db_backups (team, service, stage, kind, file, started_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(id.team.as_str())
        .bind(id.service.as_str())
        .bind(stage.as_str())
        .bind(kind.as_str())
        .bind(file)
        .bind(now_ns())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Records how a backup ended: written (size, time, rows per table) and, once a restore
    /// of it was compared, whether it verified.
    pub async fn finish_backup(&self, b: &BackupRow) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE db_backups SET file = ?, bytes = ?, took_ms = ?, tables_json = ?, \
             verified = ?, restore_ms = ?, error = ?, deleted_at = ? WHERE id = ?",
        )
        .bind(&b.file)
        .bind(b.bytes)
        .bind(b.took_ms)
        .bind(&b.tables_json)
        .bind(b.verified.map(i64::from))
        .bind(b.restore_ms)
        .bind(&b.error)
        .bind(b.deleted_at)
        .bind(b.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Backups of one database (or all), newest first; deleted ones only when asked.
    pub async fn backups(
        &self,
        id: Option<&ServiceId>,
        stage: Option<&StageName>,
        include_deleted: bool,
    ) -> Result<Vec<BackupRow>, StateError> {
        let rows = sqlx::query(
            "SELECT * FROM db_backups WHERE (? IS NULL OR team = ?) AND (? IS NULL OR service = ?) \
             AND (? IS NULL OR stage = ?) AND (? OR deleted_at IS NULL) ORDER BY id DESC",
        )
        .bind(id.map(|i| i.team.as_str()))
        .bind(id.map(|i| i.team.as_str()))
        .bind(id.map(|i| i.service.as_str()))
        .bind(id.map(|i| i.service.as_str()))
        .bind(stage.map(|s| s.as_str()))
        .bind(stage.map(|s| s.as_str()))
        .bind(include_deleted)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(backup_row).collect()
    }

    pub async fn backup(&self, backup_id: i64) -> Result<Option<BackupRow>, StateError> {
        let row = sqlx::query("SELECT * FROM db_backups WHERE id = ?")
            .bind(backup_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(backup_row).transpose()
    }
}
