//! Who asks: a team (its API token), an admin (the admin token), or peng itself (start-up,
//! background work). Every operation of the application layer takes one and checks it first.

use peng_core::TeamName;
use peng_state::Principal;

use super::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Team(TeamName),
    /// peng itself: restoring services at start, background loops.
    System,
}

impl From<Principal> for Caller {
    fn from(p: Principal) -> Self {
        match p {
            Principal::Admin => Caller::Admin,
            Principal::Team(t) => Caller::Team(t),
        }
    }
}

impl Caller {
    /// The name written into the audit log.
    pub fn actor(&self) -> String {
        match self {
            Caller::Admin => "admin".to_string(),
            Caller::Team(t) => format!("team:{t}"),
            Caller::System => "peng".to_string(),
        }
    }

    /// Whether the caller may see and change things of `team`.
    pub fn may_access(&self, team: &TeamName) -> bool {
        match self {
            Caller::Admin | Caller::System => true,
            Caller::Team(t) => t == team,
        }
    }

    /// Refuses unless the caller may act for `team`. A team that is not the caller's is
    /// reported as not found, so that names of other teams' things do not leak.
    pub fn check_team(&self, team: &TeamName, what: &str) -> Result<()> {
        if self.may_access(team) {
            Ok(())
        } else {
            Err(Error::not_found(format!("{what} not found")))
        }
    }

    pub fn require_admin(&self) -> Result<()> {
        match self {
            Caller::Admin | Caller::System => Ok(()),
            Caller::Team(_) => Err(Error::forbidden("this needs the admin token")),
        }
    }

    /// The team whose things the caller sees; `None` for the admin and peng (all teams).
    pub fn team_scope(&self) -> Option<TeamName> {
        match self {
            Caller::Team(t) => Some(t.clone()),
            Caller::Admin | Caller::System => None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.team_scope().is_none()
    }
}
