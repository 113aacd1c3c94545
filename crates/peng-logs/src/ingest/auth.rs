//! Ingest tokens to teams.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use peng_core::TeamName;

/// The shared token → team map; the server sets it from its state and keeps it current.
/// Cloning shares the map.
#[derive(Clone, Default)]
pub struct IngestAuth(Arc<RwLock<HashMap<String, TeamName>>>);

impl std::fmt::Debug for IngestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: never printed.
        f.debug_struct("IngestAuth").finish_non_exhaustive()
    }
}

impl IngestAuth {
    /// Makes `token` ingest for `team` (a team may have several tokens).
    pub fn set(&self, token: &str, team: TeamName) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), team);
    }

    /// Forgets every token of `team`.
    pub fn remove_team(&self, team: &TeamName) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, t| t != team);
    }

    /// Forgets one token.
    pub fn remove_token(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }

    pub fn resolve(&self, token: &str) -> Option<TeamName> {
        if token.is_empty() {
            return None;
        }
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }
}
