//! Tests of the whole server in-process: one `Server` on port 0 with a temporary data
//! directory and the real SQLite state, log store and process driver (no binary, no network
//! beyond 127.0.0.1), driven through the application layer or the router.

mod isolation;
mod log_sensors;
mod metrics;
mod workflows;

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::ops::services::{Applied, FileRequest};
use crate::ops::teams::TeamCreated;
use crate::ops::{Caller, Ops};
use crate::start::{Server, ServerConfig};

/// Longest wait of [`eventually`].
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Polls `what` every 50 ms until it gives a value, at most [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited {WAIT:?} for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A running server whose instances are not sandboxed (these tests are about workflows and
/// tokens, not OS users), and a directory of service directories, one per team.
pub struct Fixture {
    server: Server,
    pub ops: Ops,
    pub admin: String,
    services: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn start() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let platform = dir.path().join("platform.yaml");
        std::fs::write(
            &platform,
            "apiVersion: peng/v1\nkind: platform\nisolation: { mode: off }\n",
        )
        .expect("platform file");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut cfg = ServerConfig::new(dir.path().join("data"), any, any, any);
        cfg.platform = Some(platform);
        let server = Server::start(cfg).await.expect("the server starts");
        let admin = std::fs::read_to_string(&server.admin_token_file)
            .expect("admin token")
            .trim()
            .to_string();
        let services = dir.path().join("services");
        std::fs::create_dir(&services).expect("services dir");
        Fixture {
            ops: server.ops().clone(),
            server,
            admin,
            services,
            _dir: dir,
        }
    }

    /// The directory a team's services run from.
    pub fn service_dir(&self, team: &str) -> PathBuf {
        self.services.join(team)
    }

    /// A new team (and its service directory).
    pub async fn team(&self, name: &str) -> TeamCreated {
        std::fs::create_dir(self.service_dir(name)).expect("service dir");
        self.ops
            .create_team(&Caller::Admin, name)
            .await
            .expect("create team")
    }

    /// Applies `yaml` as the team's `peng.yaml`, from the team's directory.
    pub async fn apply(&self, team: &TeamCreated, yaml: &str) -> crate::ops::Result<Applied> {
        let dir = self.service_dir(team.team.as_str());
        self.ops
            .apply(
                &Caller::Team(team.team.clone()),
                FileRequest {
                    file_name: "peng.yaml".to_string(),
                    spec_yaml: yaml.to_string(),
                    base_dir: dir.to_str().expect("utf-8 path").to_string(),
                    stage: None,
                    force: false,
                },
            )
            .await
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}
