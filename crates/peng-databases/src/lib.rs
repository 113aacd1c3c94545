//! Databases of services: what a `database:` section turns into, kept that way.
//!
//! For each stage of a service with a `database:` section there is one database row in the
//! state (mode, plan, ports, which node is primary, which application account is active) and
//! its generated passwords, sealed ([`sealing`]). The order of making one is the order of an
//! apply: the row and its passwords are committed first (`status = creating`), then the
//! servers, schema and accounts are made, then the row turns `ready`. Every step is idempotent,
//! so a crash anywhere is finished by the next converge (at start, or the next apply), never
//! left half-made: a dedicated server's data directory counts only once its initialisation
//! and baseline completed, and accounts and grants are made by difference.
//!
//! Names: the schema is `team_service_stage` (non-alphanumerics as `_`; shortened with a hash
//! when longer than 64), its accounts `<schema>_app_a`, `<schema>_app_b` (two, so a password
//! rotation never leaves running instances without a working account) and `<schema>_ro`.
//!
//! Dedicated servers live under `<data>/databases/<team>/<service>/<stage>/{a,b}`; node `a`
//! is the first primary, `b` its replica when asked. Backups go to
//! `<data>/backups/<team>/<service>/<stage>/`. Backups are verified on a scratch server of
//! peng's own (`<data>/databases/_scratch`), started on first use.

mod error;
mod ops;
pub mod sealing;

pub use error::{Error, Result};
pub use ops::{Credentials, DatabaseStatus, ReplicaStatus};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use peng_core::{now_ns, ErrorKind, ServiceId, StageName};
use peng_db::accounts::{self, Role, SchemaSpec, Secret, UserSpec};
use peng_db::replica;
use peng_db::server::{DedicatedConfig, DedicatedServer};
use peng_db::stats::DbStats;
use peng_db::tls::Ca;
use peng_db::tools::Tools;
use peng_db::DbError;
use peng_spec::{DatabaseSpec, DbMode, Platform, ServiceSpec};
use peng_state::{AuditAction, DatabaseRow, DbNode, DbStatus, NewAudit, State};
use sha2::{Digest, Sha256};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlSslMode};
use sqlx::{ConnectOptions, MySqlPool};

use sealing::Sealer;

/// Accounts of a database, by the name their password is stored under.
pub const APP_A: &str = "app_a";
pub const APP_B: &str = "app_b";
pub const READ_ONLY: &str = "ro";
pub const REPLICATION: &str = "repl";

/// Drift findings kept per database for status and the UI (the audit log keeps them all).
const MAX_FINDINGS: usize = 20;

/// The replication account; never reported as foreign access (nor is the admin account peng
/// connects with).
const REPLICATION_ACCOUNT: &str = "peng_repl";

type DbKey = (ServiceId, StageName);
type NodeKey = (ServiceId, StageName, DbNode);

/// The databases of every service, and the servers behind them.
pub struct Databases {
    tools: Result<Tools, String>,
    ca: Option<Ca>,
    platform: Arc<Platform>,
    /// Relative paths in the platform file resolve against this.
    platform_dir: PathBuf,
    sealer: Sealer,
    dir: PathBuf,
    backup_dir: PathBuf,
    /// Running dedicated servers by (service, stage, node). Locked only to look up, insert or
    /// remove, never across an await: a caller clones the server's `Arc` and lets go, so a long
    /// operation on one database (a replica attach, a promote) never stalls the others.
    nodes: Mutex<HashMap<NodeKey, Arc<DedicatedServer>>>,
    shared: tokio::sync::Mutex<HashMap<String, MySqlPool>>,
    scratch: tokio::sync::Mutex<Option<DedicatedServer>>,
    /// What the latest reconciles of each database found, newest last.
    findings: Mutex<HashMap<DbKey, Vec<Finding>>>,
    /// Why a database is not ready, when it is not.
    failures: Mutex<HashMap<DbKey, String>>,
    read_only_pools: Mutex<HashMap<DbKey, MySqlPool>>,
    last_stats: Mutex<HashMap<(DbKey, String), (DbStats, Instant)>>,
    /// One database operation at a time per database (backup, restore, rotate, promote).
    op_locks: Mutex<HashMap<DbKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// What a reconcile found different from what peng declared, and whether it was repaired.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub object: String,
    pub problem: String,
    pub repaired: bool,
    pub at_ns: i64,
}

/// The environment one stage's instances get for their database.
pub type StageEnv = BTreeMap<StageName, BTreeMap<String, String>>;

/// `team_service_stage` with every other character as `_`, cut to 44 characters, then `_` and 8
/// hex digits of a hash of `team/service/stage`: names may contain `-`, so the readable part
/// alone could be the same for two services (`a-b/c` and `a/b-c`); the hash keeps every
/// service's schema, accounts and scratch restores (`<schema>_rN`) apart. At most 53
/// characters, so `<schema>_app_a` and `<schema>_rN` stay within MariaDB's limits.
pub fn schema_name(id: &ServiceId, stage: &StageName) -> String {
    let raw = format!("{}/{}/{}", id.team, id.service, stage);
    let clean: String = format!("{}_{}_{}", id.team, id.service, stage)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(44)
        .collect();
    let hash = hex::encode(&Sha256::digest(raw.as_bytes())[..4]);
    format!("{clean}_{hash}")
}

fn user_name(schema: &str, account: &str) -> String {
    format!("{schema}_{account}")
}

fn owner(id: &ServiceId, stage: &StageName, name: &str) -> String {
    format!("{id}/{stage}/{name}")
}

fn db_err(e: DbError) -> Error {
    Error::new(e.kind(), e.to_string())
}

impl Databases {
    pub fn open(
        data_dir: &Path,
        platform: Arc<Platform>,
        platform_dir: PathBuf,
    ) -> Result<Databases> {
        let dir = data_dir.join("databases");
        let io = |what: &str, path: &Path, e: std::io::Error| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot {what} {}: {e}", path.display()),
            )
        };
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let tools = Tools::discover().map_err(|e| e.to_string());
        let ca = match &tools {
            Ok(_) => Some(Ca::load_or_create(&dir.join("ca"))?),
            Err(reason) => {
                tracing::warn!(%reason, "dedicated databases are not available");
                None
            }
        };
        Ok(Databases {
            tools,
            ca,
            platform,
            platform_dir,
            sealer: Sealer::load_or_create(&data_dir.join("db.key"))
                .map_err(|e| io("read the database key", &data_dir.join("db.key"), e))?,
            dir,
            backup_dir: data_dir.join("backups"),
            nodes: Default::default(),
            shared: Default::default(),
            scratch: Default::default(),
            findings: Default::default(),
            failures: Default::default(),
            read_only_pools: Default::default(),
            last_stats: Default::default(),
            op_locks: Default::default(),
        })
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    fn tools(&self) -> Result<&Tools> {
        self.tools
            .as_ref()
            .map_err(|reason| Error::new(ErrorKind::Unavailable, reason.clone()))
    }

    fn ca(&self) -> Result<&Ca> {
        self.ca.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "dedicated databases are not available: the MariaDB server is not installed",
            )
        })
    }

    /// Waits for the database's turn: one operation at a time per database.
    async fn op_lock(&self, key: &DbKey) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.op_locks.lock().unwrap_or_else(PoisonError::into_inner);
            locks.entry(key.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Checks a file's `database:` against the platform before anything is planned: the
    /// version is offered (and, for dedicated, installed here), the plan exists, the shared
    /// server is registered. The messages name the file's value and what would be accepted.
    pub fn check_spec(&self, file_name: &str, spec: &ServiceSpec) -> Result<()> {
        let Some(db) = &spec.database else {
            return Ok(());
        };
        let offers = &self.platform.databases;
        let mut problems = Vec::new();
        if !offers.versions.iter().any(|v| v == &db.version) {
            problems.push(format!(
                "database.version {} is not offered by the platform (offered: {})",
                db.version,
                offers.versions.join(", ")
            ));
        }
        if !offers.plans.contains_key(&db.plan) {
            problems.push(format!(
                "database.plan '{}' is not a plan of the platform (plans: {})",
                db.plan,
                offers.plans.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        match db.mode {
            DbMode::Dedicated => match &self.tools {
                Ok(tools) if tools.version.series() != db.version => problems.push(format!(
                    "database.version {} is not installed on this machine (installed: MariaDB {})",
                    db.version,
                    tools.version.series()
                )),
                Ok(_) => {}
                Err(reason) => problems.push(format!("database: {reason}")),
            },
            DbMode::Shared => match self.platform.shared_server(db.server.as_deref()) {
                None => problems.push(match &db.server {
                    Some(name) => format!(
                        "database.server '{name}' is not a shared server of the platform (servers: {})",
                        offers.shared_servers.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    None => "database.mode shared: the platform has no default shared server"
                        .to_string(),
                }),
                Some((name, server)) if server.version != db.version => problems.push(format!(
                    "database.version {} differs from shared server '{name}' (MariaDB {})",
                    db.version, server.version
                )),
                Some(_) => {}
            },
        }
        if problems.is_empty() {
            Ok(())
        } else {
            let mut err = Error::invalid(format!(
                "{file_name}: the database section does not fit the platform"
            ));
            err.details = problems;
            Err(err)
        }
    }

    /// Makes every stage's database of `spec` exist as declared, and returns the environment
    /// each stage's instances get. Stages whose database is no longer declared are not touched
    /// here (see [`Databases::remove`]).
    pub async fn converge(
        &self,
        state: &State,
        spec: &ServiceSpec,
        actor: &str,
    ) -> Result<(StageEnv, Vec<String>)> {
        let mut env = StageEnv::new();
        let mut events = Vec::new();
        let Some(db) = &spec.database else {
            return Ok((env, events));
        };
        let id = spec.id();
        for stage in spec.stages.keys() {
            let key = (id.clone(), stage.clone());
            let _guard = self.op_lock(&key).await;
            match self.ensure(state, &id, stage, db, actor).await {
                Ok((stage_env, mut made)) => {
                    self.failures
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key);
                    env.insert(stage.clone(), stage_env);
                    events.append(&mut made);
                }
                Err(e) => {
                    self.failures
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, e.message.clone());
                    return Err(e);
                }
            }
        }
        Ok((env, events))
    }

    /// The row of a database, created (with fresh passwords, committed before anything is
    /// made) when there is none.
    async fn row(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
        db: &DatabaseSpec,
        actor: &str,
    ) -> Result<DatabaseRow> {
        if let Some(mut row) = state.database(id, stage).await? {
            // Plan, replica and version follow the file; mode changes are a replace, done by
            // remove + create in the caller.
            if row.plan != db.plan || row.replica != db.replica || row.version != db.version {
                row.plan = db.plan.clone();
                row.replica = db.replica;
                row.version = db.version.clone();
                if db.replica && row.port_b.is_none() {
                    row.port_b = Some(free_port()?);
                }
                state.put_database(&row, &[], None).await?;
            }
            return Ok(row);
        }
        let dedicated = db.mode == DbMode::Dedicated;
        let server = match db.mode {
            DbMode::Dedicated => String::new(),
            DbMode::Shared => self
                .platform
                .shared_server(db.server.as_deref())
                .map(|(name, _)| name.to_string())
                .ok_or_else(|| Error::invalid("no shared server for this database"))?,
        };
        let row = DatabaseRow {
            service: id.clone(),
            stage: stage.clone(),
            mode: db.mode,
            server,
            version: db.version.clone(),
            plan: db.plan.clone(),
            db_name: schema_name(id, stage),
            replica: db.replica,
            port_a: if dedicated { Some(free_port()?) } else { None },
            port_b: if dedicated && db.replica {
                Some(free_port()?)
            } else {
                None
            },
            primary_node: DbNode::A,
            app_slot: DbNode::A,
            status: DbStatus::Creating,
            created_at: now_ns(),
            updated_at: now_ns(),
        };
        let secrets: Vec<_> = [APP_A, APP_B, READ_ONLY, REPLICATION]
            .into_iter()
            .map(|name| {
                let password = accounts::generate_password();
                (
                    name.to_string(),
                    self.sealer.seal(&owner(id, stage, name), password.expose()),
                )
            })
            .collect();
        let audit = NewAudit {
            actor: actor.to_string(),
            team: Some(id.team.to_string()),
            action: AuditAction::DatabaseCreate,
            target: format!("{id} {stage}"),
            detail: format!(
                "{} mariadb {} plan {}{}",
                row.mode,
                row.version,
                row.plan,
                if row.replica { " with replica" } else { "" }
            ),
        };
        state.put_database(&row, &secrets, Some(audit)).await?;
        Ok(row)
    }

    async fn secrets(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
    ) -> Result<BTreeMap<String, Secret>> {
        let mut out = BTreeMap::new();
        for (name, sealed) in state.db_secrets(id, stage).await? {
            let plain = self
                .sealer
                .open(&owner(id, stage, &name), &sealed)
                .map_err(Error::internal)?;
            out.insert(name, Secret::new(plain));
        }
        Ok(out)
    }

    fn secret<'a>(secrets: &'a BTreeMap<String, Secret>, name: &str) -> Result<&'a Secret> {
        secrets
            .get(name)
            .ok_or_else(|| Error::internal(format!("the {name} password is missing")))
    }

    /// The schema and accounts peng declares for a database.
    fn schema_spec(
        &self,
        row: &DatabaseRow,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<SchemaSpec> {
        let hosts = self.app_hosts(row);
        let rotating = row.status == DbStatus::Rotating;
        let max = self
            .platform
            .databases
            .plans
            .get(&row.plan)
            .map(|p| p.max_connections)
            .unwrap_or(100);
        let user = |account: &str, role: Role, locked: bool, max_connections: u32| {
            Ok::<_, Error>(UserSpec {
                name: user_name(&row.db_name, account),
                hosts: hosts.clone(),
                password: Self::secret(secrets, account)?.clone(),
                role,
                max_connections,
                locked,
                require_tls: true,
            })
        };
        Ok(SchemaSpec {
            database: row.db_name.clone(),
            users: vec![
                // While a rotation moves the instances over, both accounts stay open.
                user(
                    APP_A,
                    Role::App,
                    !rotating && row.app_slot != DbNode::A,
                    max,
                )?,
                user(
                    APP_B,
                    Role::App,
                    !rotating && row.app_slot != DbNode::B,
                    max,
                )?,
                user(READ_ONLY, Role::ReadOnly, false, (max / 10).max(5))?,
            ],
            extra_databases: Vec::new(),
            host_patterns: self.host_patterns(row),
        })
    }

    /// `%` hosts only where the platform file allows them for a shared server.
    fn host_patterns(&self, row: &DatabaseRow) -> accounts::HostPatterns {
        let allowed = row.mode == DbMode::Shared
            && self
                .platform
                .shared_server(Some(&row.server))
                .is_some_and(|(_, s)| s.allow_any_host);
        if allowed {
            accounts::HostPatterns::Allowed
        } else {
            accounts::HostPatterns::Refused
        }
    }

    fn app_hosts(&self, row: &DatabaseRow) -> Vec<String> {
        if row.mode == DbMode::Shared {
            if let Some((_, server)) = self.platform.shared_server(Some(&row.server)) {
                return server.app_hosts.clone();
            }
        }
        vec!["127.0.0.1".to_string()]
    }

    fn nodes_map(&self) -> std::sync::MutexGuard<'_, HashMap<NodeKey, Arc<DedicatedServer>>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running server of one node, if it runs; the map is let go at once.
    fn running(
        &self,
        id: &ServiceId,
        stage: &StageName,
        node: DbNode,
    ) -> Option<Arc<DedicatedServer>> {
        self.nodes_map()
            .get(&(id.clone(), stage.clone(), node))
            .cloned()
    }

    /// Takes one node's server out of the map (to stop or destroy it).
    fn take_node(
        &self,
        id: &ServiceId,
        stage: &StageName,
        node: DbNode,
    ) -> Option<Arc<DedicatedServer>> {
        self.nodes_map().remove(&(id.clone(), stage.clone(), node))
    }

    fn node_dir(&self, id: &ServiceId, stage: &StageName, node: DbNode) -> PathBuf {
        self.dir
            .join(id.team.as_str())
            .join(id.service.as_str())
            .join(stage.as_str())
            .join(node.as_str())
    }

    fn server_settings(&self, plan: &str) -> BTreeMap<String, String> {
        let offers = &self.platform.databases;
        let mut settings = BTreeMap::new();
        if let Some(plan) = offers.plans.get(plan) {
            settings.extend(plan.settings.clone());
            settings.insert(
                "max_connections".to_string(),
                plan.max_connections.to_string(),
            );
        }
        // The mandatory settings peng's servers always have with their secure values (TLS
        // only, no LOAD DATA LOCAL, ...) are written by the server itself; the rest go to my.cnf.
        settings.extend(
            offers
                .mandatory_settings
                .iter()
                .filter(|(k, _)| {
                    let key = k.to_ascii_lowercase().replace('-', "_");
                    !peng_db::server::OWNED_OPTIONS.contains(&key.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        settings
    }

    /// Starts (initialising when needed) one dedicated node, or returns the admin pool of the
    /// running one.
    async fn node(
        &self,
        row: &DatabaseRow,
        node: DbNode,
        events: &mut Vec<String>,
    ) -> Result<MySqlPool> {
        let key = (row.service.clone(), row.stage.clone(), node);
        if let Some(server) = self.running(&row.service, &row.stage, node) {
            return Ok(server.admin().clone());
        }
        // Every caller holds this database's operation lock, so nobody else starts this node
        // meanwhile; the map of servers is not held while it starts, so other databases'
        // status, statistics and reconciles do not wait for it.
        let port = if node == DbNode::A {
            row.port_a
        } else {
            row.port_b
        }
        .ok_or_else(|| Error::internal(format!("node {node} of {} has no port", row.db_name)))?;
        let read_only = row.replica && row.primary_node != node;
        let cfg = DedicatedConfig {
            name: format!("{} {} node {node}", row.service, row.stage),
            dir: self.node_dir(&row.service, &row.stage, node),
            port,
            server_id: if node == DbNode::A { 1 } else { 2 },
            settings: self.server_settings(&row.plan),
            read_only,
        };
        let started = Instant::now();
        let server = DedicatedServer::start(self.tools()?, self.ca()?, cfg)
            .await
            .map_err(db_err)?;
        events.push(format!(
            "database {}: mariadbd node {node} ready on 127.0.0.1:{port} in {:.1}s",
            row.stage,
            started.elapsed().as_secs_f64()
        ));
        let pool = server.admin().clone();
        self.nodes_map().insert(key, Arc::new(server));
        Ok(pool)
    }

    async fn shared_pool(&self, name: &str) -> Result<MySqlPool> {
        let mut shared = self.shared.lock().await;
        if let Some(pool) = shared.get(name) {
            return Ok(pool.clone());
        }
        let (_, server) = self
            .platform
            .shared_server(Some(name))
            .ok_or_else(|| Error::invalid(format!("shared server '{name}' is not registered")))?;
        let password_file = self.platform_dir.join(&server.admin_password_file);
        let password = std::fs::read_to_string(&password_file).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "shared server '{name}': cannot read admin_password_file {}: {e}",
                    password_file.display()
                ),
            )
        })?;
        // Statements carry passwords (`IDENTIFIED BY`): never logged.
        let mut opts = MySqlConnectOptions::new()
            .host(&server.host)
            .port(server.port)
            .username(&server.admin_user)
            .password(password.trim_end_matches(['\n', '\r']))
            .disable_statement_logging();
        opts = match &server.ca {
            Some(ca) => opts
                .ssl_mode(MySqlSslMode::VerifyCa)
                .ssl_ca(self.platform_dir.join(ca)),
            None => opts.ssl_mode(MySqlSslMode::Required),
        };
        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(&mut *conn, "SET SESSION sql_log_bin = 0").await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "shared server '{name}' ({}:{}): {e}",
                        server.host, server.port
                    ),
                )
            })?;
        shared.insert(name.to_string(), pool.clone());
        Ok(pool)
    }

    /// The admin pool of the server that takes writes for `row`.
    async fn primary(&self, row: &DatabaseRow, events: &mut Vec<String>) -> Result<MySqlPool> {
        if row.mode == DbMode::Shared {
            self.shared_pool(&row.server).await
        } else {
            self.node(row, row.primary_node, events).await
        }
    }

    fn replica_node(row: &DatabaseRow) -> DbNode {
        row.primary_node.other()
    }

    async fn ensure(
        &self,
        state: &State,
        id: &ServiceId,
        stage: &StageName,
        db: &DatabaseSpec,
        actor: &str,
    ) -> Result<(BTreeMap<String, String>, Vec<String>)> {
        let mut events = Vec::new();
        let mut row = self.row(state, id, stage, db, actor).await?;
        if row.status == DbStatus::Promoting {
            row = self.settle_promote(state, row, actor, &mut events).await?;
        }
        let secrets = self.secrets(state, id, stage).await?;
        let primary = self.primary(&row, &mut events).await?;
        let schema = self.schema_with_scratch(&primary, &row, &secrets).await?;
        let made = accounts::ensure(&primary, &schema).await.map_err(db_err)?;
        if row.status == DbStatus::Creating {
            events.push(format!(
                "database {stage}: schema {} and accounts {}, {} ready",
                row.db_name,
                user_name(&row.db_name, APP_A),
                user_name(&row.db_name, READ_ONLY)
            ));
        } else if !made.is_empty() {
            self.record_drift(state, &row, &made, actor).await?;
        }
        if row.mode == DbMode::Dedicated && row.replica {
            let replica_node = Self::replica_node(&row);
            let fresh = self.running(id, stage, replica_node).is_none();
            let replica_admin = self.node(&row, replica_node, &mut events).await?;
            // The replica holds the same accounts (made there by peng, not replicated), so a
            // promote finds them in place.
            let schema = self
                .schema_with_scratch(&replica_admin, &row, &secrets)
                .await?;
            accounts::ensure(&replica_admin, &schema)
                .await
                .map_err(db_err)?;
            let status = match self.running(id, stage, replica_node) {
                Some(r) => replica::status(&r).await.ok(),
                None => None,
            };
            let following = status.is_some_and(|s| s.io_running && s.sql_running);
            if fresh && !following {
                let repl = Self::secret(&secrets, REPLICATION)?.expose().to_string();
                let (Some(p), Some(r)) = (
                    self.running(id, stage, row.primary_node),
                    self.running(id, stage, replica_node),
                ) else {
                    return Err(Error::internal("replica or primary vanished"));
                };
                let started = Instant::now();
                replica::attach(self.tools()?, &p, &r, &[row.db_name.clone()], &repl)
                    .await
                    .map_err(db_err)?;
                events.push(format!(
                    "database {stage}: replica node {replica_node} follows node {} ({:.1}s)",
                    row.primary_node,
                    started.elapsed().as_secs_f64()
                ));
            }
        } else if row.mode == DbMode::Dedicated && !row.replica {
            // A replica no longer asked for is stopped and removed.
            let replica_node = Self::replica_node(&row);
            if let Some(server) = self.take_node(id, stage, replica_node) {
                server.destroy().await.map_err(db_err)?;
                events.push(format!(
                    "database {stage}: replica node {replica_node} removed"
                ));
            }
        }
        if row.status == DbStatus::Creating {
            row.status = DbStatus::Ready;
            state.put_database(&row, &[], None).await?;
        }
        let env = self.instance_env(&row, &secrets)?;
        Ok((env, events))
    }

    fn host_port(&self, row: &DatabaseRow) -> (String, u16) {
        if row.mode == DbMode::Shared {
            if let Some((_, s)) = self.platform.shared_server(Some(&row.server)) {
                return (s.host.clone(), s.port);
            }
        }
        let port = if row.primary_node == DbNode::A {
            row.port_a
        } else {
            row.port_b
        };
        ("127.0.0.1".to_string(), port.unwrap_or(0))
    }

    fn ca_path(&self, row: &DatabaseRow) -> Option<PathBuf> {
        if row.mode == DbMode::Shared {
            self.platform
                .shared_server(Some(&row.server))
                .and_then(|(_, s)| s.ca.as_ref().map(|ca| self.platform_dir.join(ca)))
        } else {
            self.ca.as_ref().map(|ca| ca.pem_path().to_path_buf())
        }
    }

    /// `DATABASE_URL`, `DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_USER`, `DB_PASSWORD`, `DB_SSL_CA`,
    /// and the read-only account as `DB_READONLY_USER`/`DB_READONLY_PASSWORD`. `DB_SSL_CA` is
    /// the CA's path on this machine, which the caller hands to instances as a file (see
    /// `InstanceSpec::files`); `DATABASE_URL` refers to it as `${DB_SSL_CA}`.
    fn instance_env(
        &self,
        row: &DatabaseRow,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<BTreeMap<String, String>> {
        let (host, port) = self.host_port(row);
        let slot = if row.app_slot == DbNode::B {
            APP_B
        } else {
            APP_A
        };
        let user = user_name(&row.db_name, slot);
        let password = Self::secret(secrets, slot)?.expose().to_string();
        let ca = self
            .ca_path(row)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut env = BTreeMap::new();
        // Generated passwords use only URL-safe characters, so the URL needs no escaping.
        let mut url = format!(
            "mysql://{user}:{password}@{host}:{port}/{}?ssl-mode=VERIFY_CA",
            row.db_name
        );
        if !ca.is_empty() {
            // The CA is handed to instances as a file; where it lands depends on the sandbox,
            // so the URL names the variable (the driver expands it).
            url.push_str("&ssl-ca=${DB_SSL_CA}");
        }
        env.insert("DATABASE_URL".into(), url);
        env.insert("DB_HOST".into(), host);
        env.insert("DB_PORT".into(), port.to_string());
        env.insert("DB_NAME".into(), row.db_name.clone());
        env.insert("DB_USER".into(), user);
        env.insert("DB_PASSWORD".into(), password);
        env.insert("DB_SSL_CA".into(), ca);
        env.insert(
            "DB_READONLY_USER".into(),
            user_name(&row.db_name, READ_ONLY),
        );
        env.insert(
            "DB_READONLY_PASSWORD".into(),
            Self::secret(secrets, READ_ONLY)?.expose().to_string(),
        );
        Ok(env)
    }

    async fn record_drift(
        &self,
        state: &State,
        row: &DatabaseRow,
        found: &[accounts::Drift],
        actor: &str,
    ) -> Result<()> {
        let key = (row.service.clone(), row.stage.clone());
        let at = now_ns();
        let entries: Vec<Finding> = found
            .iter()
            .map(|d| Finding {
                object: d.object.clone(),
                problem: d.problem.clone(),
                repaired: d.repaired,
                at_ns: at,
            })
            .collect();
        if !entries.is_empty() {
            let repaired: Vec<String> = found
                .iter()
                .filter(|d| d.repaired)
                .map(|d| d.to_string())
                .collect();
            if !repaired.is_empty() {
                state
                    .audit(NewAudit {
                        actor: actor.to_string(),
                        team: Some(row.service.team.to_string()),
                        action: AuditAction::DatabaseDriftRepaired,
                        target: format!("{} {}", row.service, row.stage),
                        detail: repaired.join("; "),
                    })
                    .await?;
            }
            tracing::warn!(service = %row.service, stage = %row.stage, drift = ?repaired, "database drift repaired");
            // The most recent findings, newest last: drift made between two passes is not
            // hidden by the second one.
            let mut findings = self.findings.lock().unwrap_or_else(PoisonError::into_inner);
            let kept = findings.entry(key).or_default();
            kept.extend(entries);
            let excess = kept.len().saturating_sub(MAX_FINDINGS);
            kept.drain(..excess);
        }
        Ok(())
    }

    /// One reconcile pass over every database: the server baseline and the accounts, grants
    /// and foreign access compared with what peng declared, and repaired.
    pub async fn reconcile(&self, state: &State) -> Result<()> {
        for row in state.databases(None).await? {
            if row.status != DbStatus::Ready && row.status != DbStatus::Promoting {
                continue;
            }
            let key = (row.service.clone(), row.stage.clone());
            let _guard = self.op_lock(&key).await;
            let settled = match state.database(&row.service, &row.stage).await? {
                // a promote cut short in this process (one that crashed is settled at start)
                Some(now) if now.status == DbStatus::Promoting => {
                    let mut events = Vec::new();
                    self.settle_promote(state, now, "peng", &mut events).await
                }
                Some(now) => Ok(now),
                None => continue,
            };
            if let Err(e) = match settled {
                Ok(row) if row.status == DbStatus::Ready => self.reconcile_one(state, &row).await,
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            } {
                tracing::warn!(service = %row.service, stage = %row.stage, error = %e.message, "database reconcile failed");
                self.failures
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, e.message);
            }
        }
        Ok(())
    }

    async fn reconcile_one(&self, state: &State, row: &DatabaseRow) -> Result<()> {
        let secrets = self.secrets(state, &row.service, &row.stage).await?;
        let mut found = Vec::new();
        // Each server with the account peng administers it as, which is never foreign.
        let mut pools: Vec<(MySqlPool, String)> = Vec::new();
        if row.mode == DbMode::Dedicated {
            for node in DbNode::ALL.iter().copied() {
                if let Some(server) = self.running(&row.service, &row.stage, node) {
                    found.extend(server.check_baseline(true).await.map_err(db_err)?);
                    pools.push((server.admin().clone(), server.admin_user().to_string()));
                }
            }
        } else {
            let admin = self
                .platform
                .shared_server(Some(&row.server))
                .map(|(_, s)| s.admin_user.clone())
                .unwrap_or_default();
            pools.push((self.shared_pool(&row.server).await?, admin));
        }
        for (pool, admin) in pools {
            let schema = self.schema_with_scratch(&pool, row, &secrets).await?;
            found.extend(accounts::ensure(&pool, &schema).await.map_err(db_err)?);
            found.extend(
                accounts::revoke_foreign_access(
                    &pool,
                    &schema,
                    &[admin.as_str(), REPLICATION_ACCOUNT],
                )
                .await
                .map_err(db_err)?,
            );
        }
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(row.service.clone(), row.stage.clone()));
        self.record_drift(state, row, &found, "peng").await
    }
}

/// The alerts every database has without asking: connections past 90% of the server's
/// maximum for 2 minutes, and (with a replica) replication stopped for a minute. They notify
/// the file's first action plan; an alert of the file with the same name replaces them.
pub fn builtin_alerts(spec: &ServiceSpec) -> Vec<peng_spec::AlertSpec> {
    use peng_spec::{AlertCondition, AlertSpec, CmpOp, Severity};
    let Some(db) = &spec.database else {
        return Vec::new();
    };
    let plan = spec.action_plans.keys().next().cloned().unwrap_or_default();
    let mut alerts = vec![AlertSpec {
        name: "db-connections".to_string(),
        sensor: "db.connections".to_string(),
        when: AlertCondition::Value {
            op: CmpOp::Gt,
            threshold: 90.0,
            for_: peng_core::Duration::from(Duration::from_secs(120)),
        },
        severity: Severity::Warning,
        plan: plan.clone(),
    }];
    if db.replica {
        alerts.push(AlertSpec {
            name: "db-replica-stopped".to_string(),
            sensor: "db.replica".to_string(),
            when: AlertCondition::Failing {
                for_: peng_core::Duration::from(Duration::from_secs(60)),
            },
            severity: Severity::Critical,
            plan,
        });
    }
    alerts
}

/// A free TCP port on 127.0.0.1, for a new dedicated server.
fn free_port() -> Result<u16> {
    peng_db::server::free_port()
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("no free port: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_distinct_readable_and_within_limits() {
        let a = schema_name(
            &ServiceId::parse("a-b/c").unwrap(),
            &StageName::parse("prod").unwrap(),
        );
        let b = schema_name(
            &ServiceId::parse("a/b-c").unwrap(),
            &StageName::parse("prod").unwrap(),
        );
        assert_ne!(a, b);
        assert!(a.starts_with("a_b_c_prod_"), "{a}");
        let long = schema_name(
            &ServiceId::parse(&format!("{}/{}", "t".repeat(40), "s".repeat(40))).unwrap(),
            &StageName::parse("production").unwrap(),
        );
        assert!(long.len() <= 53, "{long}");
        for name in [&a, &b, &long] {
            accounts::validate_database(&format!("{name}_r123456789")).unwrap();
            accounts::validate_user(&user_name(name, APP_A)).unwrap();
        }
    }
}
