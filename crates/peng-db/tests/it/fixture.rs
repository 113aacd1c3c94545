//! A private `mariadbd` for a test: its own data directory, a throwaway CA and server
//! certificate, a free port, TLS required on TCP, the password check plugin, and (by default) a
//! binary log. The process is killed when the value is dropped, also when the test panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use peng_db::accounts::Secret;
use peng_db::backup::DumpTarget;
use peng_db::tools::Tools;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlSslMode};
use sqlx::MySqlPool;
use tempfile::TempDir;

/// The MariaDB programs on this machine, found once per test.
pub fn programs() -> Tools {
    Tools::discover().expect("MariaDB programs")
}

pub struct TestServer {
    // Dropped in this order: the process is killed before its directory goes.
    admin: MySqlPool,
    _process: Process,
    dir: TempDir,
    pub port: u16,
}

/// Kills the server when dropped, also while a test unwinds.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl TestServer {
    /// A server with a binary log.
    pub async fn start() -> TestServer {
        TestServer::start_with(true).await
    }

    pub async fn start_with(binlog: bool) -> TestServer {
        let programs = programs();
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let data = root.join("data");
        // Temporary tables in a directory of this server's own: bootstraps running at the same
        // time clash in a shared /tmp.
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        run(Command::new(&programs.install_db)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--user={}", os_user()))
            .arg("--auth-root-authentication-method=socket")
            .arg("--skip-test-db")
            .arg(format!("--tmpdir={}", tmp.display())));
        make_certificates(root);

        let port = free_port();
        let mut config = format!(
            "[mariadbd]\ndatadir={data}\nsocket={root}/mariadb.sock\nport={port}\n\
             bind-address=127.0.0.1\nskip-name-resolve\nuser={user}\n\
             ssl-ca={root}/ca.pem\nssl-cert={root}/server.pem\nssl-key={root}/server-key.pem\n\
             require_secure_transport=ON\nplugin-load-add=simple_password_check\n\
             simple_password_check_minimal_length=14\nserver_id=1\n\
             innodb_buffer_pool_size=64M\npid-file={root}/mariadbd.pid\nlog-error={root}/error.log\n\
             tmpdir={root}/tmp\n",
            data = data.display(),
            root = root.display(),
            user = os_user(),
        );
        if binlog {
            config.push_str(&format!("log_bin={}/binlog\n", root.display()));
        }
        let config_path = root.join("my.cnf");
        std::fs::write(&config_path, config).expect("write my.cnf");
        let mut process = Process(
            Command::new(&programs.mariadbd)
                .arg(format!("--defaults-file={}", config_path.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mariadbd"),
        );
        let admin = wait_ready(&mut process, root).await;
        TestServer {
            admin,
            _process: process,
            dir,
            port,
        }
    }

    pub fn admin(&self) -> &MySqlPool {
        &self.admin
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mariadb.sock")
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The OS user the tests run as, over the unix socket, for the command-line tools.
    pub fn socket_target(&self) -> DumpTarget {
        DumpTarget {
            socket: Some(self.socket()),
            host: "localhost".into(),
            port: self.port,
            user: os_user(),
            password: None,
            ca: None,
        }
    }

    /// A user over TCP with TLS, the server's certificate checked against the test CA.
    pub fn tcp_target(&self, user: &str, password: &Secret) -> DumpTarget {
        DumpTarget {
            socket: None,
            host: "127.0.0.1".into(),
            port: self.port,
            user: user.into(),
            password: Some(password.clone()),
            ca: Some(self.ca()),
        }
    }

    /// Runs the `mariadb` client as `user` over TCP with TLS verified against the test CA; with
    /// `tls: false` it connects without TLS.
    pub fn cli(&self, user: &str, password: &Secret, tls: bool, sql: &str) -> Output {
        let mut command = Command::new(programs().client);
        command
            .arg("--no-defaults")
            .arg("--protocol=TCP")
            .arg("--host=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={user}"))
            .arg("--batch")
            .arg("--skip-column-names")
            .env("MYSQL_PWD", password.expose());
        if tls {
            command
                .arg("--ssl")
                .arg(format!("--ssl-ca={}", self.ca().display()))
                .arg("--ssl-verify-server-cert");
        } else {
            command.arg("--skip-ssl");
        }
        command.arg("-e").arg(sql);
        command.output().expect("run mariadb client")
    }

    /// A pool for `user` over TCP, TLS verified against the test CA.
    pub async fn connect(&self, user: &str, password: &Secret) -> Result<MySqlPool, sqlx::Error> {
        let options = MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(user)
            .password(password.expose())
            .ssl_mode(MySqlSslMode::VerifyIdentity)
            .ssl_ca(self.ca());
        MySqlPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
    }
}

/// The name of the OS user the tests run as: the server's administrator over its socket
/// (`mariadb-install-db --user` gives that user socket authentication), as peng's own servers do.
pub fn os_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls the socket until the OS user can log in; panics with the error log if the server
/// exits or takes too long.
async fn wait_ready(process: &mut Process, root: &Path) -> MySqlPool {
    let socket = root.join("mariadb.sock");
    let log = || std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let options = MySqlConnectOptions::new()
        .socket(&socket)
        .username(&os_user());
    loop {
        if let Some(status) = process.0.try_wait().expect("poll mariadbd") {
            panic!("mariadbd exited with {status}: {}", log());
        }
        if socket.exists() {
            if let Ok(pool) = MySqlPoolOptions::new()
                .max_connections(4)
                .connect_with(options.clone())
                .await
            {
                return pool;
            }
        }
        assert!(Instant::now() < deadline, "mariadbd not ready: {}", log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The standard output of a successful client run; panics with its stderr otherwise.
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The standard error of a failed client run; panics if it succeeded.
pub fn refused(output: Output) -> String {
    assert!(
        !output.status.success(),
        "client succeeded but should not: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn run(command: &mut Command) {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A throwaway CA and a server certificate for 127.0.0.1 and localhost, with the openssl CLI.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=peng test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server-key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext.cnf");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}
