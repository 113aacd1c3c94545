//! Databases end to end, against real `mariadbd` servers: dedicated (with a replica) and shared,
//! reached with the real `mariadb` client over TLS; least privilege, replication and promote,
//! backups that restore, drift repaired, the capacity guard, protection, costs, and a crash of
//! `peng serve` in the middle of an apply or of a promote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use peng_db::accounts::generate_password;
use peng_db::server::{free_port as db_port, DedicatedConfig, DedicatedServer};
use peng_db::tls::Ca;
use peng_db::tools::Tools;
use serde_json::Value;

use crate::harness::{eventually, free_port, no_process_with, peng, processes_with, Peng};
use crate::{example_copy_with_database, instances, LONG};

/// A MariaDB server standing in for one the platform team registered: started from the same
/// MariaDB tools, TLS with its own CA, an admin account with a password.
struct SharedServer {
    server: Option<DedicatedServer>,
    ca: PathBuf,
    admin_user: String,
    password_file: PathBuf,
}

impl SharedServer {
    async fn start(dir: &Path) -> SharedServer {
        let tools = Tools::discover().expect("MariaDB tools");
        let ca = Ca::load_or_create(&dir.join("ca")).expect("ca");
        let server = DedicatedServer::start(
            &tools,
            &ca,
            DedicatedConfig {
                name: "shared test server".into(),
                dir: dir.join("server"),
                port: db_port().expect("port"),
                server_id: 7,
                settings: [("innodb_buffer_pool_size".to_string(), "32M".to_string())]
                    .into_iter()
                    .collect(),
                read_only: false,
            },
        )
        .await
        .expect("start shared server");
        let password = generate_password();
        let admin_user = "platform_admin".to_string();
        sqlx::raw_sql(&format!(
            "CREATE USER '{admin_user}'@'127.0.0.1' IDENTIFIED BY '{}' REQUIRE SSL; \
             GRANT ALL PRIVILEGES ON *.* TO '{admin_user}'@'127.0.0.1' WITH GRANT OPTION",
            password.expose()
        ))
        .execute(server.admin())
        .await
        .expect("create the platform's admin account");
        let password_file = dir.join("admin.password");
        std::fs::write(&password_file, password.expose()).expect("password file");
        SharedServer {
            ca: ca.pem_path().to_path_buf(),
            server: Some(server),
            admin_user,
            password_file,
        }
    }

    fn port(&self) -> u16 {
        self.server.as_ref().map(|s| s.port()).unwrap_or(0)
    }

    fn admin(&self) -> &sqlx::MySqlPool {
        self.server.as_ref().expect("running").admin()
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.expect("stop shared server");
        }
    }
}

fn platform_file(dir: &Path, shared: &SharedServer, memory: &str) -> PathBuf {
    let text = format!(
        r#"apiVersion: peng/v1
kind: platform
capacity: {{ cpu: 8, memory: {memory}, disk: 40Gi }}
databases:
  versions: ["10.11"]
  plans:
    small: {{ memory: 256Mi, disk: 1Gi, max_connections: 50, settings: {{ innodb_buffer_pool_size: 32M }}, price_month: 15 }}
    huge: {{ memory: 64Gi, disk: 500Gi, max_connections: 2000, settings: {{ innodb_buffer_pool_size: 32M }}, price_month: 900 }}
  shared_servers:
    shared-1:
      host: 127.0.0.1
      port: {port}
      admin_user: {user}
      admin_password_file: {pw}
      ca: {ca}
      version: "10.11"
      capacity: {{ databases: 2 }}
    shared-any:
      host: 127.0.0.1
      port: {port}
      admin_user: {user}
      admin_password_file: {pw}
      ca: {ca}
      version: "10.11"
      app_hosts: ["%"]
      allow_any_host: true
  default_shared_server: shared-1
prices: {{ currency: EUR, cpu_hour: 0.0316, memory_gib_hour: 0.0042, disk_gib_month: 0.04, backup_gib_month: 0.02, log_gib_month: 0.10 }}
"#,
        port = shared.port(),
        user = shared.admin_user,
        pw = shared.password_file.display(),
        ca = shared.ca.display(),
    );
    let path = dir.join("platform.yaml");
    std::fs::write(&path, text).expect("platform file");
    path
}

/// Runs SQL with the real `mariadb` client over TCP; `tls` false tries without TLS.
async fn mariadb(
    creds: &Value,
    port: u16,
    user: &str,
    password: &str,
    sql: &str,
    tls: bool,
) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new("mariadb");
    cmd.arg("--no-defaults")
        .arg("-h127.0.0.1")
        .arg(format!("-P{port}"))
        .arg(format!("-u{user}"))
        .arg(format!("-p{password}"))
        .arg("-N")
        .arg("-B");
    // Outside the sandbox a client has the CA from the credentials, not the instances' path.
    let ca_file = tempfile::NamedTempFile::new().expect("ca file");
    if tls {
        let pem = creds["ca_pem"].as_str().expect("ca pem");
        std::fs::write(ca_file.path(), pem).expect("write ca");
        cmd.arg(format!("--ssl-ca={}", ca_file.path().display()))
            .arg("--ssl-verify-server-cert");
    } else {
        cmd.arg("--skip-ssl");
    }
    let out = cmd
        .arg(format!("-D{}", creds["database"].as_str().expect("db")))
        .arg("-e")
        .arg(sql)
        .output()
        .await
        .expect("run mariadb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

async fn app_sql(creds: &Value, sql: &str) -> String {
    let port = creds["port"].as_u64().expect("port") as u16;
    let (code, out, err) = mariadb(
        creds,
        port,
        creds["user"].as_str().expect("user"),
        creds["password"].as_str().expect("password"),
        sql,
        true,
    )
    .await;
    assert_eq!(code, 0, "{sql}: {err}");
    out
}

async fn credentials(url: &str, token: &str, service: &str, stage: &str) -> Value {
    match ready_credentials(url, token, service, stage).await {
        Some(c) => c,
        None => panic!("no credentials for {service} {stage}"),
    }
}

async fn status(url: &str, token: &str, service: &str) -> Value {
    let out = peng(url, token, &["status", service, "--json"]).await;
    assert_eq!(out.code, 0, "status: {out:?}");
    serde_json::from_str(&out.stdout).expect("status json")
}

fn database<'a>(status: &'a Value, stage: &str) -> &'a Value {
    status["databases"]
        .as_array()
        .and_then(|dbs| dbs.iter().find(|d| d["stage"] == stage))
        .unwrap_or_else(|| panic!("no database on {stage}: {status}"))
}

/// A service file of team books in `dir/services/` (never next to peng's data directory: a
/// service's directory must not hold it).
fn service_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let dir = dir.join("services");
    std::fs::create_dir_all(&dir).expect("mkdir services");
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: peng/v1\nservice: {name}\nteam: books\nstages:\n  integration: {{ instances: 0 }}\nrun:\n  command: [\"sleep\", \"3600\"]\n{body}"
        ),
    )
    .expect("write service file");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn databases_from_the_file_to_promote_restore_drift_and_destroy() {
    let tmp = crate::harness::open_tempdir();
    let shared = SharedServer::start(&tmp.path().join("shared")).await;
    let platform = platform_file(tmp.path(), &shared, "6Gi");
    let data = tmp.path().join("data");
    let server = Peng::start_with(
        &data,
        free_port(),
        free_port(),
        &[
            "--platform",
            platform.to_str().expect("utf8"),
            "--db-reconcile-every",
            "2s",
            "--db-sample-every",
            "2s",
        ],
    )
    .await;
    let url = server.url();
    let admin = server.admin_token();
    let team = peng(&url, &admin, &["team", "create", "books", "--json"]).await;
    let team: Value = serde_json::from_str(&team.stdout).expect("team json");
    let token = team["token"].as_str().expect("token").to_string();
    let databases_dir = data.join("databases");

    // Over capacity: refused in the plan, nothing made.
    let huge = service_file(
        tmp.path(),
        "warehouse",
        "database: { engine: mariadb, version: \"10.11\", plan: huge }\n",
    );
    let out = peng(&url, &token, &["apply", "-f", huge.to_str().expect("utf8")]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("over the platform's capacity"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("memory: this file reserves 64.00 GiB"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("free"), "{}", out.stderr);
    assert_eq!(
        peng(&url, &token, &["status", "books/warehouse"])
            .await
            .code,
        1
    );
    assert!(processes_with(databases_dir.to_str().expect("utf8")).is_empty());
    let costs_before = peng(&url, &admin, &["costs", "--json"]).await;
    assert_eq!(costs_before.code, 0, "{costs_before:?}");

    // The example with its database, and a replica on production.
    let dir = example_copy_with_database(tmp.path(), "http://127.0.0.1:9");
    let file = dir.join("peng.yaml");
    let yaml = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        yaml.replace("plan: small\n", "plan: small\n  replica: true\n"),
    )
    .expect("write");
    let f = file.to_str().expect("utf8");
    let started = std::time::Instant::now();
    let applied = peng(&url, &token, &["apply", "-f", f]).await;
    assert_eq!(applied.code, 0, "{applied:?}\n{}", server.server_log());
    eprintln!(
        "apply with 2 dedicated databases and a replica took {:?}",
        started.elapsed()
    );
    assert!(
        applied.stdout.contains("+ database integration"),
        "{}",
        applied.stdout
    );
    let s = status(&url, &token, "books/bookshelf").await;
    assert_eq!(database(&s, "integration")["state"], "ready", "{s}");
    assert_eq!(database(&s, "production")["protected"], true);
    assert_eq!(database(&s, "integration")["protected"], false);

    // The application's own account, over TLS verified against peng's CA: the app made and
    // seeded its table.
    let int = credentials(&url, &token, "books/bookshelf", "integration").await;
    // Another team sees neither the credentials nor that the database exists.
    let other = peng(&url, &admin, &["team", "create", "search", "--json"]).await;
    let other: Value = serde_json::from_str(&other.stdout).expect("team json");
    let other_token = other["token"].as_str().expect("token").to_string();
    for args in [
        &[
            "db",
            "credentials",
            "books/bookshelf",
            "--stage",
            "integration",
        ][..],
        &["db", "backup", "books/bookshelf", "--stage", "integration"][..],
        &["db", "promote", "books/bookshelf", "--stage", "production"][..],
    ] {
        let out = peng(&url, &other_token, args).await;
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(out.stderr.contains("not found"), "{args:?}: {}", out.stderr);
    }
    let theirs = peng(&url, &other_token, &["costs", "--json"]).await;
    assert!(!theirs.stdout.contains("\"books\""), "{}", theirs.stdout);
    assert!(int["password"].as_str().expect("pw").len() >= 24);
    for key in [
        "DATABASE_URL",
        "DB_HOST",
        "DB_PORT",
        "DB_NAME",
        "DB_USER",
        "DB_PASSWORD",
    ] {
        assert!(int["env"][key].is_string(), "{key} missing: {int}");
    }
    eventually("the app's books table", LONG, || async {
        let port = int["port"].as_u64()? as u16;
        let (code, out, _) = mariadb(
            &int,
            port,
            int["user"].as_str()?,
            int["password"].as_str()?,
            "SELECT COUNT(*) FROM books",
            true,
        )
        .await;
        (code == 0 && out == "4").then_some(())
    })
    .await;
    let cipher = app_sql(&int, "SHOW STATUS LIKE 'Ssl_cipher'").await;
    assert!(
        cipher
            .split_whitespace()
            .nth(1)
            .is_some_and(|c| !c.is_empty()),
        "no TLS: {cipher}"
    );
    // The instance adds a book through its database.
    let st = status(&url, &token, "books/bookshelf").await;
    let port = instances(&st)
        .iter()
        .find(|i| i["stage"] == "integration")
        .and_then(|i| i["port"].as_u64())
        .expect("integration instance");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let added = client
        .post(format!("http://127.0.0.1:{port}/books?title=Neuromancer"))
        .send()
        .await
        .expect("post book");
    assert_eq!(added.status().as_u16(), 201);
    assert_eq!(app_sql(&int, "SELECT COUNT(*) FROM books").await, "5");
    let listed = client
        .get(format!("http://127.0.0.1:{port}/books"))
        .send()
        .await
        .expect("get books")
        .text()
        .await
        .expect("body");
    assert!(listed.contains("Neuromancer"), "{listed}");

    // Least privilege on the dedicated server: no TLS, no grant, no other schema.
    let iport = int["port"].as_u64().expect("port") as u16;
    let (code, _, err) = mariadb(
        &int,
        iport,
        int["user"].as_str().expect("u"),
        int["password"].as_str().expect("p"),
        "SELECT 1",
        false,
    )
    .await;
    assert_ne!(code, 0, "connected without TLS");
    assert!(
        err.contains("Access denied") || err.contains("secure transport"),
        "{err}"
    );
    let (code, _, err) = mariadb(
        &int,
        iport,
        int["user"].as_str().expect("u"),
        int["password"].as_str().expect("p"),
        &format!(
            "GRANT SELECT ON {}.* TO 'someone'@'%'",
            int["database"].as_str().expect("db")
        ),
        true,
    )
    .await;
    assert_ne!(code, 0, "the app account could grant");
    assert!(err.contains("denied"), "{err}");
    let (code, _, err) = mariadb(
        &int,
        iport,
        int["user"].as_str().expect("u"),
        int["password"].as_str().expect("p"),
        "SELECT COUNT(*) FROM mysql.user",
        true,
    )
    .await;
    assert_ne!(code, 0, "the app account read mysql.user");
    assert!(err.contains("denied"), "{err}");

    // The sql sensor of the file runs as the read-only account.
    eventually("books-in-stock sensor ok", LONG, || async {
        let s = status(&url, &token, "books/bookshelf").await;
        s["sensors"].as_array()?.iter().find(|x| {
            x["sensor"] == "books-in-stock"
                && x["stage"] == "integration"
                && x["ok"] == true
                && x["value"].as_f64().is_some_and(|v| v >= 5.0)
        })?;
        Some(())
    })
    .await;
    // And the database sensors peng runs itself.
    eventually("db.up and db.connections sensors", LONG, || async {
        let s = status(&url, &token, "books/bookshelf").await;
        let sensors = s["sensors"].as_array()?;
        let has = |name: &str| {
            sensors
                .iter()
                .any(|x| x["sensor"] == name && x["stage"] == "production" && x["ok"] == true)
        };
        (has("db.up") && has("db.connections") && has("db.replica")).then_some(())
    })
    .await;

    // Replica: follows writes, is promoted, and the instances move to the new primary.
    let prod = credentials(&url, &token, "books/bookshelf", "production").await;
    let s = status(&url, &token, "books/bookshelf").await;
    let replica_port = database(&s, "production")["replica"]["port"]
        .as_u64()
        .expect("replica port") as u16;
    let primary_port = prod["port"].as_u64().expect("port") as u16;
    app_sql(&prod, "INSERT INTO books (title) VALUES ('Solaris')").await;
    let ro_user = prod["read_only_user"].as_str().expect("ro").to_string();
    let ro_pw = prod["read_only_password"]
        .as_str()
        .expect("ro pw")
        .to_string();
    eventually("the replica has the new row", LONG, || async {
        let (code, out, _) = mariadb(
            &prod,
            replica_port,
            &ro_user,
            &ro_pw,
            "SELECT COUNT(*) FROM books WHERE title = 'Solaris'",
            true,
        )
        .await;
        (code == 0 && out == "1").then_some(())
    })
    .await;
    let (code, _, err) = mariadb(
        &prod,
        primary_port,
        &ro_user,
        &ro_pw,
        "INSERT INTO books (title) VALUES ('x')",
        true,
    )
    .await;
    assert_ne!(code, 0, "the read-only account wrote");
    assert!(err.contains("denied"), "{err}");
    let old_pids: Vec<u64> = instances(&s)
        .iter()
        .filter(|i| i["stage"] == "production")
        .filter_map(|i| i["pid"].as_u64())
        .collect();
    let promoted = peng(
        &url,
        &token,
        &["db", "promote", "books/bookshelf", "--stage", "production"],
    )
    .await;
    assert_eq!(promoted.code, 0, "{promoted:?}\n{}", server.server_log());
    assert!(
        promoted.stdout.contains("is the primary"),
        "{}",
        promoted.stdout
    );
    let prod2 = credentials(&url, &token, "books/bookshelf", "production").await;
    assert_eq!(
        prod2["port"].as_u64(),
        Some(u64::from(replica_port)),
        "{prod2}"
    );
    assert_eq!(prod2["env"]["DB_PORT"], replica_port.to_string());
    app_sql(&prod2, "INSERT INTO books (title) VALUES ('Stalker')").await;
    eventually("the old primary follows the new one", LONG, || async {
        let (code, out, _) = mariadb(
            &prod2,
            primary_port,
            &ro_user,
            &ro_pw,
            "SELECT COUNT(*) FROM books WHERE title = 'Stalker'",
            true,
        )
        .await;
        (code == 0 && out == "1").then_some(())
    })
    .await;
    eventually(
        "production instances replaced with the new address",
        LONG,
        || async {
            let s = status(&url, &token, "books/bookshelf").await;
            let running: Vec<u64> = instances(&s)
                .iter()
                .filter(|i| i["stage"] == "production" && i["state"] == "running")
                .filter_map(|i| i["pid"].as_u64())
                .collect();
            (running.len() == 2 && running.iter().all(|p| !old_pids.contains(p))).then_some(())
        },
    )
    .await;

    // Backups: taken, verified by a restore elsewhere, and restored after a loss.
    let out = peng(
        &url,
        &token,
        &[
            "db",
            "backup",
            "books/bookshelf",
            "--stage",
            "integration",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let b: Value = serde_json::from_str(&out.stdout).expect("backup json");
    assert_eq!(b["backup"]["verified"], true, "{b}");
    assert_eq!(b["backup"]["tables"]["books"], 5, "{b}");
    assert!(b["backup"]["restore_ms"].as_i64().is_some());
    let listed = peng(
        &url,
        &token,
        &["db", "backups", "books/bookshelf", "--stage", "integration"],
    )
    .await;
    assert!(
        listed.stdout.contains("verified") && listed.stdout.contains("books=5"),
        "{}",
        listed.stdout
    );
    // A mistyped stage is an error, not an empty list.
    let typo = peng(
        &url,
        &token,
        &["db", "backups", "books/bookshelf", "--stage", "integratio"],
    )
    .await;
    assert_eq!(typo.code, 1, "{typo:?}");
    assert!(
        typo.stderr.contains("no database on stage 'integratio'"),
        "{typo:?}"
    );
    app_sql(&int, "DELETE FROM books WHERE title <> 'Dune'").await;
    assert_eq!(app_sql(&int, "SELECT COUNT(*) FROM books").await, "1");
    let restored = peng(
        &url,
        &token,
        &["db", "restore", "books/bookshelf", "--stage", "integration"],
    )
    .await;
    assert_eq!(restored.code, 0, "{restored:?}");
    assert_eq!(app_sql(&int, "SELECT COUNT(*) FROM books").await, "5");
    let scratch = peng(
        &url,
        &token,
        &[
            "db",
            "restore",
            "books/bookshelf",
            "--stage",
            "integration",
            "--into",
            "scratch",
        ],
    )
    .await;
    assert_eq!(scratch.code, 0, "{scratch:?}");
    let scratch_db = format!(
        "{}_r{}",
        int["database"].as_str().expect("db"),
        b["backup"]["id"]
    );
    assert_eq!(
        app_sql(&int, &format!("SELECT COUNT(*) FROM {scratch_db}.books")).await,
        "5"
    );

    // Rotation: the other application account gets a new password, the instances move to it,
    // the old account is locked; the service keeps answering from its database.
    let rotated = peng(
        &url,
        &token,
        &["db", "rotate", "books/bookshelf", "--stage", "integration"],
    )
    .await;
    assert_eq!(rotated.code, 0, "{rotated:?}\n{}", server.server_log());
    assert!(rotated.stdout.contains("locked"), "{}", rotated.stdout);
    let int2 = credentials(&url, &token, "books/bookshelf", "integration").await;
    assert_ne!(int2["user"], int["user"]);
    assert_ne!(int2["password"], int["password"]);
    assert_eq!(app_sql(&int2, "SELECT COUNT(*) FROM books").await, "5");
    let (code, _, err) = mariadb(
        &int,
        iport,
        int["user"].as_str().expect("u"),
        int["password"].as_str().expect("p"),
        "SELECT 1",
        true,
    )
    .await;
    assert_ne!(code, 0, "the old account still connects");
    assert!(err.contains("locked") || err.contains("denied"), "{err}");
    eventually(
        "the replaced instance serves books from its database",
        LONG,
        || async {
            let s = status(&url, &token, "books/bookshelf").await;
            let port = instances(&s)
                .iter()
                .find(|i| i["stage"] == "integration" && i["state"] == "running")
                .and_then(|i| i["port"].as_u64())?;
            let body = client
                .get(format!("http://127.0.0.1:{port}/books"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            body.contains("Neuromancer").then_some(())
        },
    )
    .await;

    // Shared mode: two services' databases on the registered server, each out of the other's reach.
    let ledger = service_file(
        tmp.path(),
        "ledger",
        "database: { engine: mariadb, version: \"10.11\", mode: shared }\n",
    );
    let wishlist = service_file(
        tmp.path(),
        "wishlist",
        "database: { engine: mariadb, version: \"10.11\", mode: shared, server: shared-1 }\n",
    );
    for f in [&ledger, &wishlist] {
        let out = peng(&url, &token, &["apply", "-f", f.to_str().expect("utf8")]).await;
        assert_eq!(out.code, 0, "{out:?}\n{}", server.server_log());
    }
    let third = service_file(
        tmp.path(),
        "giftcards",
        "database: { engine: mariadb, version: \"10.11\", mode: shared }\n",
    );
    let out = peng(
        &url,
        &token,
        &["apply", "-f", third.to_str().expect("utf8")],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("shared server shared-1: this file asks for 1 databases, 0 of 2 are free"),
        "{}",
        out.stderr
    );
    let led = credentials(&url, &token, "books/ledger", "integration").await;
    let wish = credentials(&url, &token, "books/wishlist", "integration").await;
    assert_eq!(led["port"].as_u64(), Some(u64::from(shared.port())));
    app_sql(
        &wish,
        "CREATE TABLE wishes (id INT PRIMARY KEY, title TEXT)",
    )
    .await;
    app_sql(&wish, "INSERT INTO wishes VALUES (1, 'Ulysses')").await;
    app_sql(&led, "CREATE TABLE entries (id INT PRIMARY KEY)").await;
    let (code, _, err) = mariadb(
        &led,
        shared.port(),
        led["user"].as_str().expect("u"),
        led["password"].as_str().expect("p"),
        &format!(
            "SELECT * FROM {}.wishes",
            wish["database"].as_str().expect("db")
        ),
        true,
    )
    .await;
    assert_ne!(code, 0, "ledger read wishlist's schema");
    assert!(err.contains("denied"), "{err}");

    // A shared server whose platform entry allows any host gets `%` accounts.
    let anyhost = service_file(
        tmp.path(),
        "coupons",
        "database: { engine: mariadb, version: \"10.11\", mode: shared, server: shared-any }\n",
    );
    let out = peng(
        &url,
        &token,
        &["apply", "-f", anyhost.to_str().expect("utf8")],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}\n{}", server.server_log());
    let coupons = credentials(&url, &token, "books/coupons", "integration").await;
    let host: String =
        sqlx::query_scalar("SELECT CONVERT(Host USING utf8mb4) FROM mysql.user WHERE User = ?")
            .bind(coupons["user"].as_str().expect("user"))
            .fetch_one(shared.admin())
            .await
            .expect("the account");
    assert_eq!(host, "%");
    assert_eq!(app_sql(&coupons, "SELECT 1").await, "1");

    // Drift by hand on the shared server: an extra grant and a dropped user, found and repaired.
    let led_user = led["user"].as_str().expect("u").to_string();
    let led_ro = led["read_only_user"].as_str().expect("ro").to_string();
    let wish_db = wish["database"].as_str().expect("db").to_string();
    sqlx::raw_sql(&format!("GRANT SELECT ON `{wish_db}`.* TO '{led_user}'@'127.0.0.1'; DROP USER '{led_ro}'@'127.0.0.1'"))
        .execute(shared.admin())
        .await
        .expect("make drift");
    eventually("drift repaired and shown", LONG, || async {
        let s = status(&url, &token, "books/ledger").await;
        let drift = database(&s, "integration")["drift"].as_array()?.clone();
        let text = serde_json::to_string(&drift).ok()?;
        (text.contains(&wish_db)
            && text.contains(&led_ro)
            && drift.iter().all(|d| d["repaired"] == true))
        .then_some(())
    })
    .await;
    let (code, _, _) = mariadb(
        &led,
        shared.port(),
        &led_user,
        led["password"].as_str().expect("p"),
        &format!("SELECT * FROM `{wish_db}`.wishes"),
        true,
    )
    .await;
    assert_ne!(code, 0, "the extra grant is still there");
    let (code, out, err) = mariadb(
        &led,
        shared.port(),
        &led_ro,
        led["read_only_password"].as_str().expect("p"),
        "SELECT COUNT(*) FROM entries",
        true,
    )
    .await;
    assert_eq!(
        (code, out.as_str()),
        (0, "0"),
        "the dropped user is back: {err}"
    );
    let audit = peng(&url, &token, &["audit"]).await;
    assert!(
        audit.stdout.contains("database.drift_repaired"),
        "{}",
        audit.stdout
    );

    // Costs: per team and the platform's unused capacity.
    let costs = peng(&url, &admin, &["costs", "--json"]).await;
    let costs: Value = serde_json::from_str(&costs.stdout).expect("costs json");
    let lines = costs["lines"].as_array().expect("lines");
    assert!(
        lines
            .iter()
            .any(|l| l["team"] == "books" && l["item"] == "databases"),
        "{costs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["team"] == "books" && l["item"] == "backups"),
        "{costs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["team"] == "platform" && l["item"] == "unused capacity"),
        "{costs}"
    );
    // Instances say what they reserve and what they used (the larger is charged).
    let instances = lines
        .iter()
        .find(|l| l["team"] == "books" && l["item"] == "instances")
        .and_then(|l| l["detail"].as_str())
        .unwrap_or_else(|| panic!("no instances line of books: {costs}"));
    assert!(
        instances.contains(" cpu reserved, ") && instances.contains(" GiB reserved, "),
        "{instances}"
    );
    let text = peng(&url, &token, &["costs"]).await;
    assert!(
        text.stdout.contains("EUR/MONTH") && !text.stdout.contains("unused capacity"),
        "{}",
        text.stdout
    );

    // Protection: removing production's database is refused without --force; destroy with
    // --force takes a final backup and removes every server.
    let plain = std::fs::read_to_string(&file).expect("read");
    let mut no_db = String::new();
    let mut skipping = false;
    for line in plain.lines() {
        if line.starts_with("database:") {
            skipping = true;
            continue;
        }
        if skipping && line.starts_with(' ') {
            continue;
        }
        skipping = false;
        if line.contains("books-in-stock") {
            break;
        }
        no_db.push_str(line);
        no_db.push('\n');
    }
    no_db.push_str("alerts: []\n");
    let nodb_file = dir.join("nodb.yaml");
    std::fs::write(&nodb_file, &no_db).expect("write");
    let out = peng(
        &url,
        &token,
        &["apply", "-f", nodb_file.to_str().expect("utf8")],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("protected") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    let out = peng(
        &url,
        &token,
        &["plan", "-f", nodb_file.to_str().expect("utf8")],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    let out = peng(&url, &token, &["destroy", "books/bookshelf"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("protected"), "{}", out.stderr);
    assert_eq!(
        app_sql(&prod2, "SELECT COUNT(*) FROM books WHERE title = 'Stalker'").await,
        "1"
    );
    let out = peng(&url, &token, &["destroy", "books/bookshelf", "--force"]).await;
    assert_eq!(out.code, 0, "{out:?}\n{}", server.server_log());
    assert!(out.stdout.contains("final backup"), "{}", out.stdout);
    let node_dir = databases_dir.join("books").join("bookshelf");
    eventually("no mariadbd of bookshelf left", LONG, || async {
        processes_with(node_dir.to_str()?).is_empty().then_some(())
    })
    .await;
    assert!(!node_dir.join("production").join("a").exists());

    server.stop().await;
    shared.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_in_the_middle_of_an_apply_leaves_nothing_half_made() {
    let tmp = crate::harness::open_tempdir();
    let data = tmp.path().join("data");
    let (http_port, gelf_port) = (free_port(), free_port());
    let server =
        Peng::start_with(&data, http_port, gelf_port, &["--db-reconcile-every", "2s"]).await;
    let url = server.url();
    let team = server.create_team("books").await;
    let token = team["token"].as_str().expect("token").to_string();
    let file = service_file(
        tmp.path(),
        "orders",
        "database: { engine: mariadb, version: \"10.11\" }\n",
    );
    let f = file.to_str().expect("utf8").to_string();
    // The apply runs while peng is killed partway through making the database.
    let (u, t) = (url.clone(), token.clone());
    let apply = tokio::spawn(async move { peng(&u, &t, &["apply", "-f", &f]).await });
    let node = data
        .join("databases")
        .join("books")
        .join("orders")
        .join("integration")
        .join("a");
    eventually("the database's making to begin", LONG, || async {
        node.exists().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.crash().await;
    let interrupted = apply.await.expect("apply task");
    assert_ne!(
        interrupted.code, 0,
        "the apply finished before the crash: {interrupted:?}"
    );
    // Nothing of the crashed peng keeps running.
    let needle = node.to_str().expect("utf8");
    no_process_with("no mariadbd left after the crash", needle, LONG).await;
    let server =
        Peng::start_with(&data, http_port, gelf_port, &["--db-reconcile-every", "2s"]).await;
    let creds = eventually("the database made whole after the restart", LONG, || {
        ready_credentials(&url, &token, "books/orders", "integration")
    })
    .await;
    app_sql(&creds, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    assert_eq!(app_sql(&creds, "SELECT COUNT(*) FROM t").await, "0");
    assert_eq!(
        processes_with(node.to_str().expect("utf8")).len(),
        1,
        "exactly one mariadbd for the database"
    );
    let s = status(&url, &token, "books/orders").await;
    assert_eq!(database(&s, "integration")["state"], "ready", "{s}");
    server.stop().await;
    eventually("the database stops with peng", LONG, || async {
        processes_with(node.to_str()?).is_empty().then_some(())
    })
    .await;
}

/// The database's credentials, when `peng db credentials` gives them.
async fn ready_credentials(url: &str, token: &str, service: &str, stage: &str) -> Option<Value> {
    let out = peng(
        url,
        token,
        &["db", "credentials", service, "--stage", stage, "--json"],
    )
    .await;
    (out.code == 0)
        .then(|| serde_json::from_str::<Value>(&out.stdout).ok())
        .flatten()
}

/// Marks the database's row as a promote would just before switching the servers, as if peng
/// died at that moment (the servers were not touched).
async fn cut_promote_short(data: &Path, team: &str, service: &str, stage: &str) {
    let db = data.join("state.db");
    crate::harness::python(&format!(
        "import sqlite3\n\
         c = sqlite3.connect({db:?})\n\
         n = c.execute(\"UPDATE databases SET status = 'promoting' WHERE team = ? AND service = ? AND stage = ?\", ({team:?}, {service:?}, {stage:?})).rowcount\n\
         assert n == 1, n\n\
         c.commit()\n",
        db = db.display().to_string(),
    ))
    .await;
}

fn primary_port(s: &Value, stage: &str) -> u64 {
    database(s, stage)["port"].as_u64().expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promote_cut_short_is_undone_or_finished_with_nothing_lost() {
    let tmp = crate::harness::open_tempdir();
    let data = tmp.path().join("data");
    let (http_port, gelf_port) = (free_port(), free_port());
    let args = ["--db-reconcile-every", "2s"];
    let server = Peng::start_with(&data, http_port, gelf_port, &args).await;
    let url = server.url();
    let team = server.create_team("books").await;
    let token = team["token"].as_str().expect("token").to_string();
    let file = service_file(
        tmp.path(),
        "orders",
        "database: { engine: mariadb, version: \"10.11\", replica: true }\n",
    );
    let f = file.to_str().expect("utf8").to_string();
    let out = peng(&url, &token, &["apply", "-f", &f]).await;
    assert_eq!(out.code, 0, "{out:?}\n{}", server.server_log());
    let credentials = || ready_credentials(&url, &token, "books/orders", "integration");
    let creds = eventually("the database", LONG, credentials).await;
    app_sql(&creds, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    app_sql(&creds, "INSERT INTO t VALUES (1)").await;
    let before = primary_port(&status(&url, &token, "books/orders").await, "integration");

    // Cut short before the switch, the old primary still there: undone, it stays the primary.
    server.crash().await;
    cut_promote_short(&data, "books", "orders", "integration").await;
    let server = Peng::start_with(&data, http_port, gelf_port, &args).await;
    let s = status(&url, &token, "books/orders").await;
    assert_eq!(database(&s, "integration")["state"], "ready", "{s}");
    assert_eq!(primary_port(&s, "integration"), before, "{s}");
    let creds = eventually("the database after the restart", LONG, credentials).await;
    app_sql(&creds, "INSERT INTO t VALUES (2)").await;
    let audit = peng(&url, &token, &["audit"]).await;
    assert!(audit.stdout.contains("undone"), "{audit:?}");
    // ...and a promote then works as ever.
    let out = peng(
        &url,
        &token,
        &["db", "promote", "books/orders", "--stage", "integration"],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}\n{}", server.server_log());
    let s = status(&url, &token, "books/orders").await;
    let promoted = primary_port(&s, "integration");
    assert_ne!(promoted, before, "{s}");
    let creds = eventually("the promoted database", LONG, credentials).await;
    app_sql(&creds, "INSERT INTO t VALUES (3)").await;
    let following = |s: &Value| {
        let r = &database(s, "integration")["replica"];
        (r["io_running"] == true && r["sql_running"] == true).then_some(())
    };
    eventually("the replica following", LONG, || async {
        following(&status(&url, &token, "books/orders").await)
    })
    .await;

    // Cut short and the old primary's data is gone: finished, the other node is the primary
    // with every row, and the old one comes back as its replica.
    server.crash().await;
    cut_promote_short(&data, "books", "orders", "integration").await;
    let nodes = data.join("databases/books/orders/integration");
    let old = ["a", "b"]
        .into_iter()
        .map(|n| nodes.join(n))
        .find(|dir| {
            std::fs::read_to_string(dir.join("my.cnf"))
                .is_ok_and(|c| c.contains(&format!("\nport={promoted}\n")))
        })
        .expect("the primary's node directory");
    std::fs::remove_dir_all(&old).expect("remove the old primary");
    let server = Peng::start_with(&data, http_port, gelf_port, &args).await;
    let s = status(&url, &token, "books/orders").await;
    assert_eq!(database(&s, "integration")["state"], "ready", "{s}");
    assert_eq!(primary_port(&s, "integration"), before, "{s}");
    let creds = eventually("the database after the fail-over", LONG, credentials).await;
    assert_eq!(app_sql(&creds, "SELECT COUNT(*) FROM t").await, "3");
    eventually("the rebuilt replica following", LONG, || async {
        following(&status(&url, &token, "books/orders").await)
    })
    .await;
    let audit = peng(&url, &token, &["audit"]).await;
    assert!(audit.stdout.contains("finished"), "{audit:?}");
    server.stop().await;
}
