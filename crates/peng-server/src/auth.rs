//! Who is calling: every API route takes an `Auth`, read from `Authorization: Bearer TOKEN`
//! (the CLI, CI pipelines) or from the `peng_token` cookie (the web UI). There is no anonymous
//! access except `/healthz`, `/ping`-style liveness and the GELF ingest, which carries its own
//! ingest token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use peng_core::{ErrorKind, TeamName};
use peng_state::Principal;

use crate::app::App;
use crate::error::ApiError;

pub const COOKIE: &str = "peng_token";

/// The authenticated caller.
pub struct Auth(pub Principal);

impl Auth {
    /// Refuses unless the caller may act for `team`. A team that is not the caller's is
    /// reported as not found, so that names of other teams' things do not leak.
    pub fn check_team(&self, team: &TeamName, what: &str) -> Result<(), ApiError> {
        if self.0.may_access(team) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("{what} not found")))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.0 {
            Principal::Admin => Ok(()),
            Principal::Team(_) => Err(ApiError::forbidden("this needs the admin token")),
        }
    }

    /// The team whose data the caller sees, `None` for the admin (all teams).
    pub fn team_scope(&self) -> Option<TeamName> {
        match &self.0 {
            Principal::Admin => None,
            Principal::Team(t) => Some(t.clone()),
        }
    }
}

pub fn token_from_parts(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    let cookies = parts
        .headers
        .get(axum::http::header::COOKIE)?
        .to_str()
        .ok()?;
    cookies.split(';').find_map(|c| {
        c.trim()
            .strip_prefix(&format!("{COOKIE}="))
            .map(str::to_string)
    })
}

impl FromRequestParts<App> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let token = token_from_parts(parts).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unauthorized,
                "missing token: send 'Authorization: Bearer TOKEN'",
            )
        })?;
        match app.state.authenticate(&token).await? {
            Some(p) => Ok(Auth(p)),
            None => Err(ApiError::new(ErrorKind::Unauthorized, "unknown token")),
        }
    }
}
