//! The peng server: one process that holds every part of the platform together.
//!
//! Its rooms:
//! - `ops/`: the application layer. Every workflow (apply, destroy, rotate, promote, search,
//!   costs, the background steps), taking a caller and the locks it needs, returning domain
//!   types or an error with a kind. It never sees HTTP or HTML.
//! - `api/`: the JSON API and `POST /gelf`: extract, call `ops`, answer wire types; the route
//!   list the isolation tests walk.
//! - `ui/`: the web UI's pages: call `ops`, render HTML.
//! - `workers`: the background loops, which call `ops` on their ticks.
//! - `start`: the one module that knows every part; it makes them, wires them and stops them.
//! - `http` (the accept loop), `auth` (where a token is), `status` (`ErrorKind` → HTTP status),
//!   `ingest` (ingest tokens).
//!
//! `api/`, `ui/` and `workers` never import each other, and `ops` imports none of them; the
//! test `module_graph` keeps it so. Domain rules live in the domain crates.

mod api;
mod auth;
mod http;
mod ingest;
mod ops;
mod start;
mod status;
#[cfg(test)]
mod tests;
mod ui;
mod workers;

pub use start::{Server, ServerConfig};
