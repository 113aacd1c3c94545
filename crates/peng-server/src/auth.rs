//! Where a request's token is: `Authorization: Bearer TOKEN` (the CLI, CI pipelines) or the
//! `peng_token` cookie (the web UI). Both front ends read it here and ask the application
//! layer who it belongs to. There is no anonymous access except `/healthz` and the GELF
//! ingest, which carries its own ingest token.

use axum::http::request::Parts;

pub const COOKIE: &str = "peng_token";

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
