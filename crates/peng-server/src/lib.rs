//! The peng server: one process that holds every part of the platform together.
//!
//! It owns the wiring, not the logic: the HTTP router (`api/` for the JSON API, `ui/` for the
//! server-rendered pages), the GELF listeners, the background workers that carry data between
//! the parts (instance output → log pipeline, alert transitions → state and audit, retention),
//! and an orderly shutdown that stops instances with the server. Domain rules live in the
//! domain crates; this crate turns their errors into HTTP statuses in one place (`error.rs`)
//! and checks, on every route, that a team sees and changes only its own things.

mod api;
mod app;
mod auth;
mod costs;
mod databases;
mod error;
mod http;
mod ingest;
mod isolation;
mod services;
mod ui;
mod usage;
mod workers;

pub use app::{Server, ServerConfig};
