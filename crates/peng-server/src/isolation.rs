//! How teams' instances are kept apart, as this server runs them: deciding at start whether it
//! can sandbox and limit (and saying so), the team's Unix user, and the checks on the
//! directory a service file says it runs from.
//!
//! The sandbox itself is `peng-sandbox`'s, the limits `peng-cgroup`'s. This module only wires
//! them to the platform file (`isolation:`), the state (which user a team has) and the API's
//! errors. A service's directory is checked when it is planned: it must exist, lie under a
//! directory the platform file lets the team run services from, stay clear of peng's data
//! directory and of every other team's services, and, sandboxed, be readable by the team's
//! user (its `writable` directories writable). What is stored is the directory with its
//! symbolic links resolved, so what was checked is what runs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use peng_core::{ErrorKind, ServiceId, TeamName};
use peng_sandbox::{Isolation, TeamUser};
use peng_spec::{IsolationMode, Platform, ServiceSpec};
use peng_state::NewAudit;

use crate::app::App;
use crate::error::{ApiError, ApiResult};

/// What start-up decided.
pub struct Setup {
    pub isolation: Isolation,
    pub cgroups: Option<peng_cgroup::Cgroups>,
    /// `cgroup v1 (memory, cpu, cpuacct, pids)` or `off (why)`.
    pub limits: String,
}

/// Probes the machine and applies the platform's `isolation.mode`: `off` never sandboxes,
/// `auto` sandboxes when it can, `required` refuses to start when it cannot sandbox or limit.
/// Whatever is off is said at start, with why.
pub async fn setup(platform: &Platform, data_dir: &Path) -> anyhow::Result<Setup> {
    let settings = platform.isolation.clone();
    let hidden = vec![data_dir.to_path_buf()];
    let parent = cgroup_parent(data_dir);
    let (isolation, cgroups) = tokio::task::spawn_blocking(move || {
        let isolation = match settings.mode {
            IsolationMode::Off => Isolation::Off {
                reason: "isolation.mode is off in the platform file".into(),
            },
            IsolationMode::Auto | IsolationMode::Required => {
                peng_sandbox::probe(&settings.system_dirs, hidden)
            }
        };
        (isolation, peng_cgroup::Cgroups::detect(&parent))
    })
    .await
    .context("the isolation probe failed")?;
    let (cgroups, limits) = match cgroups {
        Ok(c) => {
            let text = c.describe();
            (Some(c), text)
        }
        Err(e) => (None, format!("off ({e})")),
    };
    if platform.isolation.mode == IsolationMode::Required {
        if let Isolation::Off { reason } = &isolation {
            anyhow::bail!("isolation.mode is required in the platform file, but instances cannot be sandboxed: {reason}");
        }
        if cgroups.is_none() {
            anyhow::bail!("isolation.mode is required in the platform file, but instances cannot be limited: {limits}");
        }
    }
    match &isolation {
        Isolation::On(_) => {
            tracing::info!(isolation = %isolation.describe(), %limits, "instances run sandboxed")
        }
        Isolation::Off { .. } => {
            tracing::warn!(isolation = %isolation.describe(), %limits, "instances run unsandboxed, as peng's own user");
            eprintln!(
                "peng: isolation {}: instances run as peng's own user and can read what it can",
                isolation.describe()
            );
        }
    }
    if cgroups.is_none() {
        eprintln!("peng: limits {limits}: instances are not held to their resources");
    }
    Ok(Setup {
        isolation,
        cgroups,
        limits,
    })
}

/// One parent group per data directory, so that two pengs on one machine (tests run many)
/// never clean up each other's instances.
fn cgroup_parent(data_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    format!("peng-{}", hex::encode(&hash[..4]))
}

/// The user `team`'s instances run as: `None` when isolation is off. Made on first use and
/// recorded (with an audit entry); afterwards looked up, and made again with the recorded id
/// when someone removed it.
pub async fn team_user(app: &App, team: &TeamName) -> ApiResult<Option<TeamUser>> {
    if app.driver.isolation().sandbox().is_none() {
        return Ok(None);
    }
    let recorded = app.state.team_user(team).await?;
    let uids = app.databases.platform().isolation.uids.clone();
    let prefer = recorded.as_ref().map(|r| r.uid);
    let name = team.to_string();
    let user =
        tokio::task::spawn_blocking(move || peng_sandbox::users::ensure(&name, &uids, prefer))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| {
                ApiError::new(
                    e.kind(),
                    format!("cannot make the Unix user of team {team}: {e}"),
                )
            })?;
    let same = recorded
        .as_ref()
        .is_some_and(|r| r.user_name == user.name && r.uid == user.uid && r.gid == user.gid);
    if !same {
        let audit = NewAudit {
            actor: "peng".into(),
            team: Some(team.to_string()),
            action: "team.user".into(),
            target: team.to_string(),
            detail: format!(
                "instances of team {team} run as {} (uid {}, gid {})",
                user.name, user.uid, user.gid
            ),
        };
        app.state
            .put_team_user(team, &user.name, user.uid, user.gid, audit)
            .await?;
    }
    Ok(Some(user))
}

/// Checks the directory a service file is run from (see the module docs) and returns it with
/// its symbolic links resolved.
pub async fn check_service_dir(
    app: &App,
    file: &str,
    spec: &ServiceSpec,
    base_dir: &str,
) -> ApiResult<PathBuf> {
    let id = spec.id();
    let invalid = |message: String| ApiError::invalid(format!("{file}: {message}"));
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
    let data = &app.data_dir;
    if base.starts_with(data) || data.starts_with(&base) {
        return Err(ApiError::new(
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
    let allowed = app
        .databases
        .platform()
        .isolation
        .service_dirs_for(&id.team);
    let under = |root: &PathBuf| {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
        base.starts_with(root)
    };
    if !allowed.iter().any(under) {
        let list: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
        return Err(ApiError::new(
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
    for row in app.state.services(None).await? {
        if row.destroyed_at.is_some() || row.id.team == id.team {
            continue;
        }
        let other = Path::new(&row.base_dir);
        if base.starts_with(other) || other.starts_with(&base) {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                format!(
                    "{file}: {} is the directory of another team's service; a team runs services from its own directories only",
                    base.display()
                ),
            ));
        }
    }
    let inside = |label: &str, rel: &str| -> ApiResult<PathBuf> {
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
        .collect::<ApiResult<_>>()?;
    if let Some(user) = team_user(app, &id.team).await? {
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
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::new(e.kind(), e.to_string()))?;
        if let Some((dir, write, what)) = failed {
            return Err(ApiError::new(
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
pub async fn describe_for(app: &App, id: &ServiceId) -> ApiResult<String> {
    let base = app.driver.isolation().describe();
    if app.driver.isolation().sandbox().is_none() {
        return Ok(base);
    }
    Ok(match app.state.team_user(&id.team).await? {
        Some(u) => format!("{base}; runs as {} (uid {})", u.user_name, u.uid),
        None => base,
    })
}
