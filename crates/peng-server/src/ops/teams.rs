//! Teams and their credentials: making a team (with its Unix user), its API tokens and its
//! ingest token, and the audit log it may read.

use peng_core::TeamName;
use peng_state::{AuditAction, AuditEntry, NewAudit};

use super::{Caller, Error, Ops, Result};
use crate::ingest::ingest_token;

/// A team just made: its API token and ingest token are shown this once.
#[derive(Debug, Clone)]
pub struct TeamCreated {
    pub team: TeamName,
    pub token: String,
    pub ingest_token: String,
    /// `peng-books (uid 70001)`; `None` when instances are not sandboxed.
    pub unix_user: Option<String>,
}

/// A team as listed.
#[derive(Debug, Clone)]
pub struct TeamView {
    pub name: TeamName,
    pub created_at_ns: i64,
    /// Live services.
    pub services: usize,
}

impl Ops {
    /// Makes a team (admin only): its API token, its ingest token and, when instances are
    /// sandboxed, its Unix user, so its checkouts can be given to that user.
    pub async fn create_team(&self, caller: &Caller, name: &str) -> Result<TeamCreated> {
        caller.require_admin()?;
        let name = TeamName::parse(name).map_err(|e| Error::invalid(e.to_string()))?;
        let p = self.p();
        let audit = NewAudit {
            actor: caller.actor(),
            team: Some(name.to_string()),
            action: AuditAction::TeamCreate,
            target: name.to_string(),
            detail: String::new(),
        };
        let token = p.state.create_team(&name, audit).await?;
        let ingest = ingest_token(&p.secret, &name, 1);
        p.ingest.set(&ingest, name.clone());
        let unix_user = super::isolation::team_user(p, &name)
            .await?
            .map(|u| u.to_string());
        Ok(TeamCreated {
            team: name,
            token,
            ingest_token: ingest,
            unix_user,
        })
    }

    /// The teams the caller may see, with their live services.
    pub async fn teams(&self, caller: &Caller) -> Result<Vec<TeamView>> {
        let p = self.p();
        let services = p.state.services(None).await?;
        Ok(p.state
            .teams()
            .await?
            .into_iter()
            .filter(|t| caller.may_access(&t.name))
            .map(|t| TeamView {
                services: services
                    .iter()
                    .filter(|s| s.id.team == t.name && s.destroyed_at.is_none())
                    .count(),
                name: t.name,
                created_at_ns: t.created_at,
            })
            .collect())
    }

    /// The team's current ingest token.
    pub async fn ingest_token(&self, caller: &Caller, team: &str) -> Result<(TeamName, String)> {
        let name = self.team_of(caller, team)?;
        let row = self
            .p()
            .state
            .team(&name)
            .await?
            .ok_or_else(|| Error::not_found("team not found"))?;
        let token = ingest_token(&self.p().secret, &name, row.ingest_generation);
        Ok((name, token))
    }

    /// Replaces every API token of the team with a new one.
    pub async fn rotate_token(&self, caller: &Caller, team: &str) -> Result<(TeamName, String)> {
        let name = self.team_of(caller, team)?;
        let audit = NewAudit {
            actor: caller.actor(),
            team: Some(name.to_string()),
            action: AuditAction::TeamTokenRotate,
            target: name.to_string(),
            detail: "every earlier api token of the team was revoked".to_string(),
        };
        let token = self.p().state.rotate_team_token(&name, audit).await?;
        Ok((name, token))
    }

    /// A new ingest token: the old one stops working at once, and the team's instances are
    /// replaced so that they get the new one.
    pub async fn rotate_ingest_token(
        &self,
        caller: &Caller,
        team: &str,
    ) -> Result<(TeamName, String)> {
        let name = self.team_of(caller, team)?;
        let lock = self.0.apply_lock.lock().await;
        let p = self.p();
        let row = p
            .state
            .team(&name)
            .await?
            .ok_or_else(|| Error::not_found("team not found"))?;
        let audit = NewAudit {
            actor: caller.actor(),
            team: Some(name.to_string()),
            action: AuditAction::TeamIngestRotate,
            target: name.to_string(),
            detail: "the earlier ingest token was revoked; instances replaced to get the new one"
                .to_string(),
        };
        let generation = p.state.bump_ingest_generation(&name, audit).await?;
        p.ingest
            .remove_token(&ingest_token(&p.secret, &name, row.ingest_generation));
        let token = ingest_token(&p.secret, &name, generation);
        p.ingest.set(&token, name.clone());
        super::services::converge_team(p, &lock, &name).await?;
        Ok((name, token))
    }

    /// The audit log, newest first: a team's own entries, or everything for an admin.
    pub async fn audit(&self, caller: &Caller, limit: i64) -> Result<Vec<AuditEntry>> {
        let limit = limit.clamp(1, 10_000);
        Ok(self
            .p()
            .state
            .audit_log(caller.team_scope().as_ref(), limit)
            .await?)
    }

    /// A team named in a path, checked to be the caller's (another team's is not found).
    fn team_of(&self, caller: &Caller, team: &str) -> Result<TeamName> {
        let name = TeamName::parse(team).map_err(|_| Error::not_found("team not found"))?;
        caller.check_team(&name, "team")?;
        Ok(name)
    }
}
