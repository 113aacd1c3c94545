//! The application layer: every workflow of the server, once.
//!
//! The JSON API (`api/`), the web UI (`ui/`) and the background loops (`workers`) are front
//! ends of this layer and never call each other. Each operation takes a [`Caller`] (a team, an
//! admin, or peng itself), checks it before anything else, takes the locks it needs itself (the
//! apply lock that keeps applies, destroys, rotations and promotes one at a time; the databases
//! take their own per-database lock), and returns domain types or an [`Error`] with a kind. It
//! never sees axum, HTTP statuses, wire types or HTML: only the API converts to wire types and
//! statuses, only the UI renders.
//!
//! [`Parts`] is every part of the running server; `start.rs` makes them and hands them over.
//! Nothing outside this module reaches a part: the front ends hold an [`Ops`].

mod caller;
pub mod databases;
mod error;
pub mod influx;
pub mod isolation;
pub mod logs;
pub mod maintenance;
pub mod platform;
pub mod services;
pub mod teams;
pub mod usage;

pub use caller::Caller;
pub use error::{Error, Result};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use peng_logs::index::LogStore;
use peng_logs::ingest::{IngestAuth, IngestContext};
use peng_logs::pipeline::PipelineHandle;
use peng_monitor::Monitor;
use peng_provision::driver::process::ProcessDriver;
use peng_state::State;
use peng_tsdb::Tsdb;

/// Addresses actually bound (a configured port 0 is resolved here).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub http: SocketAddr,
    pub gelf_udp: SocketAddr,
    pub gelf_tcp: SocketAddr,
}

/// Every part of a running server.
pub struct Parts {
    pub state: State,
    pub logs: Arc<LogStore>,
    pub pipeline: PipelineHandle,
    pub ingest: IngestAuth,
    /// The GELF listeners' shared context (attribution, dead letters, pipeline).
    pub ingest_ctx: IngestContext,
    pub tsdb: Arc<Tsdb>,
    /// The teams' own databases (`/write`, `/query`).
    pub influx: Arc<peng_influx::Catalog>,
    pub monitor: Monitor,
    pub driver: ProcessDriver,
    pub databases: Arc<peng_databases::Databases>,
    pub secret: Vec<u8>,
    pub addrs: Addrs,
    /// Absolute, symbolic links resolved: every path derived from it and handed to an
    /// instance is absolute too.
    pub data_dir: PathBuf,
    /// Whether instances are held to their resources: `cgroup v1 (...)` or `off (why)`.
    pub limits: String,
}

/// The application layer's handle; cheap to clone.
#[derive(Clone)]
pub struct Ops(Arc<Inner>);

struct Inner {
    parts: Parts,
    /// Applies, destroys, rotations and promotes run one at a time, so that a plan is applied
    /// to the state it was computed from and instances are converged by one writer.
    apply_lock: tokio::sync::Mutex<()>,
    /// Writes to team databases being parsed and stored at once (each holds its batch twice).
    influx_writes: influx::Turns,
    /// InfluxQL queries running at once: the rest wait, so that a burst of heavy queries
    /// cannot take every blocking thread.
    influx_queries: influx::Turns,
}

impl Ops {
    pub fn new(parts: Parts) -> Ops {
        Ops(Arc::new(Inner {
            parts,
            apply_lock: tokio::sync::Mutex::new(()),
            influx_writes: influx::Turns::new(4, 2),
            influx_queries: influx::Turns::new(4, 2),
        }))
    }

    fn p(&self) -> &Parts {
        &self.0.parts
    }

    /// The caller a token belongs to; `None` for an unknown token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Caller>> {
        Ok(self.p().state.authenticate(token).await?.map(Caller::from))
    }

    /// The GELF listeners' context, for the UDP and TCP inputs started with the server.
    pub fn ingest_context(&self) -> IngestContext {
        self.p().ingest_ctx.clone()
    }

    /// The first steps of a shutdown, in the order that loses nothing: sensors (handing over
    /// their last alert transitions), then instances (their last output lines).
    pub async fn stop_instances(&self) {
        self.p().monitor.shutdown().await;
        self.p().driver.shutdown().await;
    }

    /// Databases stop after the instances that use them.
    pub async fn stop_databases(&self) {
        self.p().databases.shutdown().await;
    }

    /// The last steps, once the listeners stopped and the carriers drained: the log pipeline's
    /// last commit, the metrics store's flush, the state.
    pub async fn finish(&self) {
        if let Err(error) = self.p().pipeline.shutdown().await {
            tracing::error!(%error, "log pipeline did not shut down cleanly");
        }
        if let Err(error) = self.p().tsdb.flush() {
            tracing::error!(%error, "metrics store flush failed");
        }
        self.p().state.close().await;
    }
}

/// Runs `f` on the blocking pool; a panic or cancellation there is an internal error.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::task(what, e))
}
