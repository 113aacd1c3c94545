//! How teams' instances are kept apart, as this server runs them: the team's Unix user, and the
//! checks on the directory a service file says it runs from. (Whether peng can sandbox and
//! limit at all is decided at start, in `start.rs`.)
//!
//! The sandbox itself is `peng-sandbox`'s, the limits `peng-cgroup`'s. This module only wires
//! them to the platform file (`isolation:`), the state (which user a team has) and the API's
//! errors. A service's directory is checked when it is planned: it must exist, lie under a
//! directory the platform file lets the team run services from, stay clear of peng's data
//! directory and of every other team's services, and, sandboxed, be readable by the team's
//! user (its `writable` directories writable). What is stored is the directory with its
//! symbolic links resolved, so what was checked is what runs.

use std::path::{Path, PathBuf};

use peng_core::{ErrorKind, ServiceId, TeamName};
use peng_sandbox::TeamUser;
use peng_spec::ServiceSpec;
use peng_state::{AuditAction, NewAudit};

use super::{Caller, Error, Parts, Result};

/// The user `team`'s instances run as: `None` when isolation is off. Made on first use and
/// recorded (with an audit entry); afterwards looked up, and made again with the recorded id
/// when someone removed it.
pub(super) async fn team_user(p: &Parts, team: &TeamName) -> Result<Option<TeamUser>> {
    if p.driver.isolation().sandbox().is_none() {
        return Ok(None);
    }
    let recorded = p.state.team_user(team).await?;
    let uids = p.databases.platform().isolation.uids.clone();
    let prefer = recorded.as_ref().map(|r| r.uid);
    let name = team.to_string();
    let user =
        tokio::task::spawn_blocking(move || peng_sandbox::users::ensure(&name, &uids, prefer))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("cannot make the Unix user of team {team}: {e}"),
                )
            })?;
    let same = recorded
        .as_ref()
        .is_some_and(|r| r.user_name == user.name && r.uid == user.uid && r.gid == user.gid);
    if !same {
        let audit = NewAudit {
            actor: Caller::System.actor(),
            team: Some(team.to_string()),
            action: AuditAction::TeamUser,
            target: team.to_string(),
            detail: format!(
                "instances of team {team} run as {} (uid {}, gid {})",
                user.name, user.uid, user.gid
            ),
        };
        p.state
            .put_team_user(team, &user.name, user.uid, user.gid, audit)
            .await?;
    }
    Ok(Some(user))
}

/// Checks the directory a service file is run from (see the module docs) and returns it with
/// its symbolic links resolved.
pub(super) async fn check_service_dir(
    p: &Parts,
    file: &str,
    spec: &ServiceSpec,
    base_dir: &str,
) -> Result<PathBuf> {
    let id = spec.id();
    let invalid = |message: String| Error::invalid(format!("{file}: {message}"));
    let given = Path::new(base_dir);
    if !given.is_absolute() {
        return Err(invalid(format!(
            "base_dir '{base_dir}' must be an absolute path"
        )));
    }
    let base = std::fs::canonicalize(given)
        .map_err(|e| invalid(format!("the service's directory {base_dir}: {e}")))?;
    if !base.is_dir() {
        return Err(invalid(format!(
            "the service's directory {} is not a directory",
            base.display()
        )));
    }
    let data = &p.data_dir;
    if base.starts_with(data) || data.starts_with(&base) {
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!(
                "{file}: services cannot run from {}: it {} peng's data directory",
                base.display(),
                if base.starts_with(data) {
                    "is inside"
                } else {
                    "holds"
                }
            ),
        ));
    }
    let allowed = p.databases.platform().isolation.service_dirs_for(&id.team);
    let under = |root: &PathBuf| {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
        base.starts_with(root)
    };
    if !allowed.iter().any(under) {
        let list: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!(
                "{file}: team {} may not run services from {}; the platform file allows {}",
                id.team,
                base.display(),
                if list.is_empty() {
                    "no directory (isolation.service_dirs)".to_string()
                } else {
                    list.join(", ")
                }
            ),
        ));
    }
    for row in p.state.services(None).await? {
        if row.destroyed_at.is_some() || row.id.team == id.team {
            continue;
        }
        let other = Path::new(&row.base_dir);
        if base.starts_with(other) || other.starts_with(&base) {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "{file}: {} is the directory of another team's service; a team runs services from its own directories only",
                    base.display()
                ),
            ));
        }
    }
    let inside = |label: &str, rel: &str| -> Result<PathBuf> {
        let path = base.join(rel);
        let real = std::fs::canonicalize(&path)
            .map_err(|e| invalid(format!("run.{label} '{rel}': {}: {e}", path.display())))?;
        if !real.starts_with(&base) {
            return Err(invalid(format!(
                "run.{label} '{rel}' leads out of the service's directory (to {})",
                real.display()
            )));
        }
        if !real.is_dir() {
            return Err(invalid(format!(
                "run.{label} '{rel}': {} is not a directory",
                real.display()
            )));
        }
        Ok(real)
    };
    let workdir = match &spec.run.workdir {
        Some(w) => inside("workdir", w)?,
        None => base.clone(),
    };
    let writable: Vec<PathBuf> = spec
        .run
        .writable
        .iter()
        .map(|w| inside("writable", w))
        .collect::<Result<_>>()?;
    if let Some(user) = team_user(p, &id.team).await? {
        let mut checks = vec![(base.clone(), false, "the service's directory")];
        checks.push((workdir, false, "run.workdir"));
        checks.extend(writable.into_iter().map(|w| (w, true, "run.writable")));
        let who = user.clone();
        let failed = tokio::task::spawn_blocking(move || {
            for (dir, write, what) in checks {
                match peng_sandbox::users::can_access(&who, &dir, write) {
                    Ok(true) => {}
                    Ok(false) => return Ok(Some((dir, write, what))),
                    Err(e) => return Err(e),
                }
            }
            Ok(None)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(|e| Error::new(e.kind(), e.to_string()))?;
        if let Some((dir, write, what)) = failed {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "{file}: {what} {} is not {} by {user}, the user team {}'s instances run as; {}",
                    dir.display(),
                    if write { "writable" } else { "readable" },
                    id.team,
                    if write {
                        format!("give that user write access to it (e.g. chown {} it)", user.name)
                    } else {
                        "make it and every directory above it readable and enterable by that user (e.g. chmod o+rx)".to_string()
                    }
                ),
            ));
        }
    }
    Ok(base)
}

/// `on (bubblewrap 0.8.0, a user per team; user peng-books (uid 70001))` for a team's view.
pub(super) async fn describe_for(p: &Parts, id: &ServiceId) -> Result<String> {
    let base = p.driver.isolation().describe();
    if p.driver.isolation().sandbox().is_none() {
        return Ok(base);
    }
    Ok(match p.state.team_user(&id.team).await? {
        Some(u) => format!("{base}; runs as {} (uid {})", u.user_name, u.uid),
        None => base,
    })
}
