//! What a team does with its database besides the file: credentials, backups, restores,
//! password rotation, promote. Every operation checks the team first: another team's database
//! is not found, like one that does not exist. Rotation and promote replace instances, so they
//! hold the apply lock; the database's own operation lock is `peng-databases`'.

use peng_core::{ServiceId, StageName};
use peng_databases::Credentials;
use peng_state::{AuditAction, BackupKind, BackupRow, NewAudit};

use super::services::converge_service;
use super::{Caller, Error, Ops, Parts, Result};

impl Ops {
    /// How the service's instances connect: shown to the owning team only, and audited. The
    /// environment is the instances' own: the CA's path where they find it (in their sandbox)
    /// and `${DB_SSL_CA}` expanded.
    pub async fn db_credentials(
        &self,
        caller: &Caller,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<Credentials> {
        let p = self.p();
        owned(p, caller, id).await?;
        let mut creds = p.databases.credentials(&p.state, id, stage).await?;
        if p.driver.isolation().sandbox().is_some()
            && creds.env.get("DB_SSL_CA").is_some_and(|ca| !ca.is_empty())
        {
            creds.env.insert(
                "DB_SSL_CA".into(),
                format!("{}/DB_SSL_CA", peng_sandbox::FILES_DIR),
            );
        }
        let vars = creds.env.clone();
        for value in creds.env.values_mut() {
            *value = peng_provision::instance::expand(value, &vars);
        }
        p.state
            .audit(NewAudit {
                actor: caller.actor(),
                team: Some(id.team.to_string()),
                action: AuditAction::DatabaseCredentials,
                target: format!("{id} {stage}"),
                detail: "credentials shown".to_string(),
            })
            .await?;
        Ok(creds)
    }

    /// A backup now, verified by restoring it elsewhere; pruned by the file's retention.
    pub async fn db_backup(
        &self,
        caller: &Caller,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<BackupRow> {
        let p = self.p();
        owned(p, caller, id).await?;
        let retention = super::services::database_spec(p, id)
            .await?
            .map(|d| d.backup.retention.as_std());
        Ok(p.databases
            .backup(
                &p.state,
                id,
                stage,
                BackupKind::Manual,
                retention,
                &caller.actor(),
            )
            .await?)
    }

    /// The stage's backups, newest first. A stage without a database is an error, not an
    /// empty list (a mistyped stage must not look like "no backups yet").
    pub async fn db_backups(
        &self,
        caller: &Caller,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<Vec<BackupRow>> {
        let p = self.p();
        owned(p, caller, id).await?;
        let rows = p.state.backups(Some(id), Some(stage), false).await?;
        if rows.is_empty() && p.state.database(id, stage).await?.is_none() {
            return Err(Error::not_found(format!(
                "{id} has no database on stage '{stage}'"
            )));
        }
        Ok(rows)
    }

    /// Restores a backup (default the newest verified one) into the service's database or,
    /// with `into` `scratch`, into a new one next to it.
    pub async fn db_restore(
        &self,
        caller: &Caller,
        id: &ServiceId,
        stage: &StageName,
        backup_id: Option<i64>,
        into: &str,
    ) -> Result<Vec<String>> {
        let p = self.p();
        owned(p, caller, id).await?;
        Ok(p.databases
            .restore(&p.state, id, stage, backup_id, into, &caller.actor())
            .await?)
    }

    /// A new password without downtime: the account not in use gets it, instances are
    /// replaced onto it, then the old account is locked.
    pub async fn db_rotate(
        &self,
        caller: &Caller,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<Vec<String>> {
        let p = self.p();
        owned(p, caller, id).await?;
        let lock = self.0.apply_lock.lock().await;
        p.databases.rotate_begin(&p.state, id, stage).await?;
        let mut events = converge_service(p, &lock, id).await?;
        events.extend(
            p.databases
                .rotate_finish(&p.state, id, stage, &caller.actor())
                .await?,
        );
        Ok(events)
    }

    /// The replica becomes the primary; instances are replaced with its address, and the old
    /// primary comes back as the replica.
    pub async fn db_promote(
        &self,
        caller: &Caller,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<Vec<String>> {
        let p = self.p();
        owned(p, caller, id).await?;
        let lock = self.0.apply_lock.lock().await;
        let mut events = p
            .databases
            .promote(&p.state, id, stage, &caller.actor())
            .await?;
        events.extend(converge_service(p, &lock, id).await?);
        Ok(events)
    }
}

/// The service, checked to belong to the caller's team and to be live.
async fn owned(p: &Parts, caller: &Caller, id: &ServiceId) -> Result<()> {
    caller.check_team(&id.team, "service")?;
    match p.state.service(id).await? {
        Some(row) if row.destroyed_at.is_none() => Ok(()),
        _ => Err(Error::not_found(format!("service {id} not found"))),
    }
}
