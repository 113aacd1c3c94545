//! Dedicated servers: start, TLS, the baseline, supervision, recovery from a crashed peng.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peng_db::server::{DedicatedServer, ServerState};
use peng_db::tls::Ca;
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::{ConnectOptions, Connection};

use crate::common::{alive, eventually, mode, run, scalar, Site};

fn tcp(port: u16, user: &str, password: &str) -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username(user)
        .password(password)
        .disable_statement_logging()
}

const PROBE_PASSWORD: &str = "Probe-Password-2024";

#[tokio::test]
async fn a_started_server_serves_root_on_its_socket_and_only_tls_on_tcp() {
    let site = Site::new();
    assert!(site.tools.version.major >= 10, "{:?}", site.tools.version);
    let cfg = site.config("primary", 1, false);
    let dir = cfg.dir.clone();
    let server = site.start(cfg).await;
    assert!(matches!(server.state(), ServerState::Running { .. }));
    assert_eq!(server.restarts(), 0);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("my.cnf")), 0o600);
    assert_eq!(mode(&dir.join("tls/server-key.pem")), 0o600);
    assert!(dir.join("initialized").exists());

    let admin = server.admin();
    // the OS user peng runs as, over the socket: root in production, anyone in a test
    assert_eq!(
        scalar(admin, "SELECT CURRENT_USER()").await,
        Some(format!("{}@localhost", crate::fixture::os_user()))
    );
    assert_eq!(
        scalar(admin, "SELECT @@SESSION.sql_log_bin")
            .await
            .as_deref(),
        Some("0")
    );

    // baseline as installed
    assert_eq!(
        scalar(admin, "SELECT COUNT(*) FROM mysql.user WHERE User = ''")
            .await
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        scalar(
            admin,
            "SELECT GROUP_CONCAT(Host) FROM mysql.user WHERE User = 'root'"
        )
        .await
        .as_deref(),
        Some("localhost")
    );
    assert_eq!(
        scalar(
            admin,
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test'"
        )
        .await
        .as_deref(),
        Some("0")
    );
    assert!(server.check_baseline(false).await.unwrap().is_empty());

    // the password check refuses weak passwords
    for weak in ["short", "alllowercaseandlong", "NoDigitsOrSymbolsHere"] {
        let err = sqlx::raw_sql(&format!(
            "CREATE USER weak@'127.0.0.1' IDENTIFIED BY '{weak}'"
        ))
        .execute(admin)
        .await
        .expect_err(weak);
        assert!(err.to_string().contains("password"), "{weak}: {err}");
    }

    run(
        admin,
        &[
            &format!("CREATE USER probe@'127.0.0.1' IDENTIFIED BY '{PROBE_PASSWORD}' REQUIRE SSL"),
            // an account that does not itself require TLS: the server-wide rule still does
            &format!("CREATE USER plain@'127.0.0.1' IDENTIFIED BY '{PROBE_PASSWORD}'"),
        ],
    )
    .await;

    // TCP without TLS is refused by the server
    let plain = tcp(server.port(), "plain", PROBE_PASSWORD).ssl_mode(MySqlSslMode::Disabled);
    let err = sqlx::MySqlConnection::connect_with(&plain)
        .await
        .expect_err("a plain TCP connection is refused");
    eprintln!("plain TCP with require_secure_transport=ON: {err}");
    // it is the server-wide rule that refused it: without the rule the same login works
    run(admin, &["SET GLOBAL require_secure_transport = OFF"]).await;
    sqlx::MySqlConnection::connect_with(&plain)
        .await
        .expect("plain TCP once the rule is off")
        .close()
        .await
        .unwrap();
    run(admin, &["SET GLOBAL require_secure_transport = ON"]).await;
    let tls = tcp(server.port(), "plain", PROBE_PASSWORD)
        .ssl_mode(MySqlSslMode::VerifyCa)
        .ssl_ca(server.ca_pem());
    sqlx::MySqlConnection::connect_with(&tls)
        .await
        .expect("the same account over TLS")
        .close()
        .await
        .unwrap();

    // TLS verified against peng's CA
    let verified = tcp(server.port(), "probe", PROBE_PASSWORD)
        .ssl_mode(MySqlSslMode::VerifyCa)
        .ssl_ca(server.ca_pem());
    let mut conn = sqlx::MySqlConnection::connect_with(&verified)
        .await
        .expect("TLS with peng's CA");
    let (_, cipher): (String, String) = sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!cipher.is_empty());
    conn.close().await.unwrap();

    // and a client trusting another CA does not get in
    let other = Ca::load_or_create(&site.dir.path().join("other-ca")).unwrap();
    let wrong = tcp(server.port(), "probe", PROBE_PASSWORD)
        .ssl_mode(MySqlSslMode::VerifyCa)
        .ssl_ca(other.pem_path());
    assert!(sqlx::MySqlConnection::connect_with(&wrong).await.is_err());

    let started = Instant::now();
    server.stop().await;
    eprintln!("timing: clean stop: {:?}", started.elapsed());
    assert!(!dir.join("mariadbd.sock").exists());
}

#[tokio::test]
async fn a_killed_server_is_started_again_with_its_data() {
    let site = Site::new();
    let server = site.start(site.config("crash", 1, false)).await;
    run(
        server.admin(),
        &[
            "CREATE DATABASE shelf",
            "CREATE TABLE shelf.books (id INT PRIMARY KEY, title TEXT) ENGINE=InnoDB",
            "INSERT INTO shelf.books VALUES (1, 'Dune'), (2, 'Emma')",
        ],
    )
    .await;
    let pid = server.pid().expect("pid");
    let killed = Instant::now();
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let new_pid = eventually("the server runs again", Duration::from_secs(60), || async {
        match server.state() {
            ServerState::Running { pid: new, .. } if new != pid => Some(new),
            _ => None,
        }
    })
    .await;
    let count = eventually(
        "the server answers again",
        Duration::from_secs(60),
        || async { scalar(server.admin(), "SELECT COUNT(*) FROM shelf.books").await },
    )
    .await;
    eprintln!("timing: restart after SIGKILL: {:?}", killed.elapsed());
    assert_eq!(count, "2");
    assert_eq!(server.restarts(), 1);
    assert!(!alive(pid));
    assert!(alive(new_pid));
    assert!(server.error_log_tail(200).contains("ready for connections"));
    server.stop().await;
    assert!(!alive(new_pid));
}

#[tokio::test]
async fn an_incomplete_directory_is_initialised_again() {
    let site = Site::new();
    let cfg = site.config("half", 1, false);
    // what a crash during initialisation leaves: a data directory, no marker
    fs::create_dir_all(cfg.dir.join("data/mysql")).unwrap();
    fs::write(cfg.dir.join("data/mysql/garbage.frm"), b"half written").unwrap();
    let dir = cfg.dir.clone();
    let started = Instant::now();
    let server = site.start(cfg.clone()).await;
    eprintln!("timing: init + start: {:?}", started.elapsed());
    assert!(!dir.join("data/mysql/garbage.frm").exists());
    assert!(dir.join("initialized").exists());
    run(server.admin(), &["CREATE DATABASE kept"]).await;
    server.stop().await;

    // a complete directory is kept as it is
    let started = Instant::now();
    let server = site.start(cfg).await;
    eprintln!(
        "timing: start of an initialised directory: {:?}",
        started.elapsed()
    );
    assert_eq!(
        scalar(
            server.admin(),
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'kept'"
        )
        .await
        .as_deref(),
        Some("kept")
    );
    server.take().destroy().await.unwrap();
    assert!(!dir.exists());
}

#[tokio::test]
async fn an_orphan_of_an_earlier_peng_is_stopped_and_nothing_else() {
    let site = Site::new();
    let cfg = site.config("orphaned", 1, false);
    let dir = cfg.dir.clone();
    site.start(cfg.clone()).await.stop().await;
    let neighbour = site.start(site.config("neighbour", 2, false)).await;

    // a crashed peng's server: mariadbd on the same my.cnf, not supervised by anyone
    let mut orphan = Command::new(&site.tools.mariadbd)
        .arg(format!("--defaults-file={}", dir.join("my.cnf").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let orphan_pid = orphan.id();
    eventually("the orphan listens", Duration::from_secs(30), || async {
        dir.join("mariadbd.sock").exists().then_some(())
    })
    .await;
    // an unrelated process, whose pid even ends up in the pid file
    let mut bystander = Command::new("sleep").arg("600").spawn().unwrap();
    fs::write(dir.join("mariadbd.pid"), format!("{}\n", bystander.id())).unwrap();

    let server = site.start(cfg).await;
    assert_eq!(
        orphan.wait().unwrap().code(),
        Some(0),
        "the orphan shut down cleanly"
    );
    assert!(alive(bystander.id()));
    assert_ne!(server.pid(), Some(orphan_pid));
    assert_eq!(
        scalar(neighbour.admin(), "SELECT 1").await.as_deref(),
        Some("1")
    );
    assert_eq!(
        scalar(server.admin(), "SELECT 1").await.as_deref(),
        Some("1")
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    server.stop().await;
    neighbour.stop().await;
}

#[tokio::test]
async fn baseline_drift_is_found_and_repaired() {
    let site = Site::new();
    let server = site.start(site.config("drift", 1, false)).await;
    let admin = server.admin();
    run(
        admin,
        &[
            // what old installations shipped; CREATE USER refuses an account without password
            "INSERT INTO mysql.global_priv (Host, User, Priv) VALUES ('localhost', '', '{}')",
            "CREATE USER root@'%' IDENTIFIED BY 'Remote-Root-Password-1'",
            "CREATE DATABASE test",
            r"INSERT INTO mysql.db (Host, Db, User, Select_priv) VALUES ('%', 'test\\_%', '', 'Y')",
            "FLUSH PRIVILEGES",
            "SET GLOBAL local_infile = ON",
            "SET GLOBAL require_secure_transport = OFF",
        ],
    )
    .await;

    let found = server.check_baseline(false).await.unwrap();
    for d in &found {
        eprintln!("drift: {d}");
    }
    let objects: Vec<&str> = found.iter().map(|d| d.object.as_str()).collect();
    for object in [
        "user ''@'localhost'",
        "user 'root'@'%'",
        "database `test`",
        r"grant on `test\_%` to ''@'%'",
        "variable local_infile",
        "variable require_secure_transport",
    ] {
        assert!(objects.contains(&object), "{object} not in {objects:?}");
    }
    assert!(found.iter().all(|d| !d.repaired));
    assert_eq!(found.len(), 6, "{objects:?}");

    let repaired = server.check_baseline(true).await.unwrap();
    assert_eq!(repaired.len(), 6);
    assert!(repaired.iter().all(|d| d.repaired), "{repaired:?}");
    assert!(server.check_baseline(false).await.unwrap().is_empty());
    assert_eq!(
        scalar(admin, "SELECT @@GLOBAL.local_infile")
            .await
            .as_deref(),
        Some("0")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_server_that_cannot_start_reports_its_error_log() {
    let site = Site::new();
    let mut cfg = site.config("broken", 1, false);
    cfg.settings
        .insert("innodb_log_file_size".into(), "not-a-size".into());
    cfg.settings.insert("no_such_option".into(), "1".into());
    let err = DedicatedServer::start(&site.tools, &site.ca, cfg)
        .await
        .err()
        .expect("an unknown option stops mariadbd");
    let text = err.to_string();
    assert!(text.contains("no_such_option"), "{text}");
}
