use peng_db::accounts::{
    self, check, ensure, foreign_access, generate_password, revoke_foreign_access, set_password,
    Drift, Role, SchemaSpec, Secret, UserSpec,
};
use peng_db::DbError;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};

use crate::fixture::{ok, refused, TestServer};

const HOST: &str = "127.0.0.1";

fn user(name: &str, role: Role) -> UserSpec {
    UserSpec {
        name: name.into(),
        hosts: vec![HOST.into()],
        password: generate_password(),
        role,
        max_connections: 20,
        locked: false,
        require_tls: true,
    }
}

/// A service's schema with an application user and a read-only user. The underscore in the
/// name matters: it is a wildcard in grants unless escaped.
fn spec(db: &str) -> SchemaSpec {
    SchemaSpec {
        database: db.into(),
        users: vec![
            user(&format!("{db}_app"), Role::App),
            user(&format!("{db}_ro"), Role::ReadOnly),
        ],
        extra_databases: vec![],
        host_patterns: peng_db::accounts::HostPatterns::Refused,
    }
}

fn problems(drift: &[Drift]) -> Vec<String> {
    drift.iter().map(ToString::to_string).collect()
}

fn has(drift: &[Drift], object: &str, problem: &str) -> bool {
    drift
        .iter()
        .any(|d| d.object == object && d.problem.contains(problem))
}

async fn exec(server: &TestServer, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(server.admin())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn ensure_creates_a_schema_its_users_get_and_nothing_more() {
    let server = TestServer::start().await;
    let books = spec("books_shelf");
    let films = spec("films");
    let drift = ensure(server.admin(), &books).await.unwrap();
    eprintln!("first ensure: {:#?}", problems(&drift));
    assert!(drift.iter().all(|d| d.repaired));
    assert!(has(&drift, "database `books_shelf`", "missing; created"));
    assert!(has(
        &drift,
        "user books_shelf_app@127.0.0.1",
        "missing; created"
    ));
    assert!(has(
        &drift,
        "user books_shelf_ro@127.0.0.1",
        "missing; created"
    ));
    ensure(server.admin(), &films).await.unwrap();
    // A schema whose name the unescaped grant pattern `books_shelf` would also match.
    exec(&server, "CREATE DATABASE booksxshelf").await;

    let (app, ro) = (&books.users[0], &books.users[1]);
    ok(server.cli(
        &app.name,
        &app.password,
        true,
        "CREATE TABLE books_shelf.t (id INT PRIMARY KEY, s TEXT); \
         INSERT INTO books_shelf.t VALUES (1, 'one'), (2, 'two')",
    ));
    let rows = ok(server.cli(
        &app.name,
        &app.password,
        true,
        "SELECT COUNT(*) FROM books_shelf.t",
    ));
    assert_eq!(rows.trim(), "2");
    ok(server.cli(
        &films.users[0].name,
        &films.users[0].password,
        true,
        "CREATE TABLE films.f (x INT)",
    ));

    let err = refused(server.cli(&app.name, &app.password, true, "SELECT * FROM films.f"));
    assert!(err.contains("denied"), "{err}");
    let err = refused(server.cli(
        &app.name,
        &app.password,
        true,
        "CREATE TABLE booksxshelf.t (x INT)",
    ));
    assert!(err.contains("denied"), "{err}");
    let err = refused(server.cli(
        &app.name,
        &app.password,
        true,
        "GRANT SELECT ON books_shelf.* TO 'books_shelf_ro'@'127.0.0.1'",
    ));
    assert!(err.contains("denied"), "{err}");
    let err = refused(server.cli(&app.name, &app.password, false, "SELECT 1"));
    eprintln!("without TLS: {}", err.trim());

    let rows = ok(server.cli(
        &ro.name,
        &ro.password,
        true,
        "SELECT s FROM books_shelf.t ORDER BY id",
    ));
    assert_eq!(rows, "one\ntwo\n");
    let err = refused(server.cli(
        &ro.name,
        &ro.password,
        true,
        "INSERT INTO books_shelf.t VALUES (3, 'x')",
    ));
    assert!(err.contains("denied"), "{err}");

    // Also through sqlx with TLS verified against the CA.
    let pool = server.connect(&app.name, &app.password).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM books_shelf.t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
    pool.close().await;

    assert_eq!(ensure(server.admin(), &books).await.unwrap(), vec![]);
    assert_eq!(check(server.admin(), &books).await.unwrap(), vec![]);
    assert_eq!(check(server.admin(), &films).await.unwrap(), vec![]);
}

#[tokio::test]
async fn drift_by_hand_is_found_then_repaired_by_difference() {
    let server = TestServer::start().await;
    let books = spec("books");
    ensure(server.admin(), &books).await.unwrap();
    exec(
        &server,
        "CREATE DATABASE other; CREATE TABLE books.t (x INT, y INT); CREATE ROLE helper",
    )
    .await;
    exec(
        &server,
        "GRANT SELECT ON other.* TO 'books_app'@'127.0.0.1'; \
         GRANT ALL ON books.* TO 'books_app'@'127.0.0.1' WITH GRANT OPTION; \
         GRANT PROCESS ON *.* TO 'books_app'@'127.0.0.1'; \
         GRANT UPDATE ON books.t TO 'books_ro'@'127.0.0.1'; \
         GRANT INSERT (y) ON books.t TO 'books_ro'@'127.0.0.1'; \
         GRANT helper TO 'books_ro'@'127.0.0.1'; \
         GRANT PROXY ON 'root'@'localhost' TO 'books_ro'@'127.0.0.1'; \
         ALTER USER 'books_ro'@'127.0.0.1' IDENTIFIED BY 'Changed-By-Hand-42' REQUIRE NONE \
             WITH MAX_USER_CONNECTIONS 99",
    )
    .await;

    let found = check(server.admin(), &books).await.unwrap();
    eprintln!("check: {:#?}", problems(&found));
    assert!(found.iter().all(|d| !d.repaired));
    let app = "user books_app@127.0.0.1";
    let ro = "user books_ro@127.0.0.1";
    assert!(has(
        &found,
        app,
        "has SELECT on `other`.* which peng did not grant"
    ));
    assert!(has(&found, app, "has PROCESS on *.*"));
    assert!(has(&found, app, "has GRANT OPTION on `books`.*"));
    assert!(
        has(&found, app, "DELETE HISTORY"),
        "ALL has more than the app role"
    );
    assert!(has(&found, ro, "password differs"));
    assert!(has(&found, ro, "does not require TLS"));
    assert!(has(&found, ro, "max_user_connections is 99, want 20"));
    assert!(has(&found, ro, "has UPDATE on table `books`.`t`"));
    assert!(has(&found, ro, "has INSERT on column `books`.`t`.`y`"));
    assert!(has(&found, ro, "has role `helper`"));
    assert!(has(&found, ro, "may proxy as root@localhost"));

    let repaired = ensure(server.admin(), &books).await.unwrap();
    assert_eq!(repaired.len(), found.len(), "{:#?}", problems(&repaired));
    assert!(repaired.iter().all(|d| d.repaired));
    assert!(has(
        &repaired,
        ro,
        "password differs from the one peng set; password set"
    ));
    assert_eq!(check(server.admin(), &books).await.unwrap(), vec![]);
    // The application kept its access throughout, and the read-only user has its password back.
    ok(server.cli(
        "books_app",
        &books.users[0].password,
        true,
        "SELECT COUNT(*) FROM books.t",
    ));
    ok(server.cli(
        "books_ro",
        &books.users[1].password,
        true,
        "SELECT COUNT(*) FROM books.t",
    ));

    // A dropped user is missing, and comes back.
    exec(&server, "DROP USER 'books_ro'@'127.0.0.1'").await;
    let found = check(server.admin(), &books).await.unwrap();
    assert!(has(&found, ro, "missing"));
    assert!(has(&found, ro, "has no privileges on `books`.*"));
    let repaired = ensure(server.admin(), &books).await.unwrap();
    assert!(has(&repaired, ro, "missing; created"));
    ok(server.cli(
        "books_ro",
        &books.users[1].password,
        true,
        "SELECT COUNT(*) FROM books.t",
    ));

    // A password changed on purpose through peng.
    let new = generate_password();
    set_password(server.admin(), "books_app", &[HOST.to_string()], &new)
        .await
        .unwrap();
    ok(server.cli("books_app", &new, true, "SELECT 1"));
    refused(server.cli("books_app", &books.users[0].password, true, "SELECT 1"));
    let found = check(server.admin(), &books).await.unwrap();
    assert_eq!(
        problems(&found),
        ["user books_app@127.0.0.1: password differs from the one peng set"]
    );

    accounts::drop(server.admin(), &books, true).await.unwrap();
    accounts::drop(server.admin(), &books, true).await.unwrap();
    let users: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mysql.global_priv WHERE User LIKE 'books%'")
            .fetch_one(server.admin())
            .await
            .unwrap();
    assert_eq!(users, 0);
}

#[tokio::test]
async fn foreign_access_to_a_schema_is_found_and_revoked() {
    let server = TestServer::start().await;
    let books = spec("books");
    let films = spec("films");
    ensure(server.admin(), &books).await.unwrap();
    ensure(server.admin(), &films).await.unwrap();
    exec(
        &server,
        "CREATE TABLE books.t (x INT); \
         CREATE USER 'intruder'@'%' IDENTIFIED BY 'Intruder-Pass-1234'; \
         GRANT SELECT ON books.* TO 'intruder'@'%'; \
         GRANT INSERT ON `b%`.* TO 'intruder'@'%'; \
         GRANT DELETE ON books.t TO 'films_app'@'127.0.0.1'; \
         CREATE USER 'snoop'@'10.0.0.1' IDENTIFIED BY 'Snoop-Pass-123456'; \
         GRANT SELECT ON *.* TO 'snoop'@'10.0.0.1'; \
         CREATE USER 'peng_monitor'@'127.0.0.1' IDENTIFIED BY 'Monitor-Pass-1234'; \
         GRANT SELECT, PROCESS ON *.* TO 'peng_monitor'@'127.0.0.1'; \
         CREATE ROLE reader; GRANT SELECT ON books.* TO reader",
    )
    .await;

    // the administrator peng connects as is allowed, as the server allows it
    let admin = crate::fixture::os_user();
    let allowed = ["peng_monitor", admin.as_str()];
    let found = foreign_access(server.admin(), &books, &allowed)
        .await
        .unwrap();
    eprintln!("foreign access: {:#?}", problems(&found));
    assert!(has(&found, "user intruder@%", "has SELECT on `books`.*"));
    assert!(has(
        &found,
        "user intruder@%",
        "has INSERT on `b%`.*, which covers `books`"
    ));
    assert!(has(
        &found,
        "user films_app@127.0.0.1",
        "has DELETE on table `books`.`t`"
    ));
    assert!(has(&found, "user snoop@10.0.0.1", "has SELECT on *.*"));
    assert!(has(&found, "role reader", "has SELECT on `books`.*"));
    assert_eq!(found.len(), 5, "{:#?}", problems(&found));
    assert!(!found
        .iter()
        .any(|d| d.object.contains("peng_monitor") || d.object.contains("books_")));

    let repaired = revoke_foreign_access(server.admin(), &books, &allowed)
        .await
        .unwrap();
    assert_eq!(repaired.len(), 5);
    assert!(repaired
        .iter()
        .all(|d| d.repaired && d.problem.ends_with("; revoked")));
    assert_eq!(
        foreign_access(server.admin(), &books, &allowed)
            .await
            .unwrap(),
        vec![]
    );
    // The other service and peng's monitor keep what they had.
    assert_eq!(check(server.admin(), &films).await.unwrap(), vec![]);
    let monitor: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.USER_PRIVILEGES \
         WHERE GRANTEE = '''peng_monitor''@''127.0.0.1''' ORDER BY 1",
    )
    .fetch_all(server.admin())
    .await
    .unwrap();
    assert_eq!(monitor, ["PROCESS", "SELECT"]);
}

#[tokio::test]
async fn locked_accounts_cannot_log_in_until_unlocked() {
    let server = TestServer::start().await;
    let mut books = spec("books");
    books.users[0].locked = true;
    ensure(server.admin(), &books).await.unwrap();
    let err = refused(server.cli("books_app", &books.users[0].password, true, "SELECT 1"));
    assert!(err.contains("locked"), "{err}");

    books.users[0].locked = false;
    let drift = ensure(server.admin(), &books).await.unwrap();
    assert_eq!(
        problems(&drift),
        ["user books_app@127.0.0.1: is locked, want unlocked; unlocked"]
    );
    ok(server.cli("books_app", &books.users[0].password, true, "SELECT 1"));

    books.users[0].locked = true;
    let drift = check(server.admin(), &books).await.unwrap();
    assert_eq!(
        problems(&drift),
        ["user books_app@127.0.0.1: is unlocked, want locked"]
    );
}

#[tokio::test]
async fn bad_names_are_refused_before_any_sql() {
    // A pool that cannot connect: any statement would fail with a connection error, not Invalid.
    let nowhere = MySqlPoolOptions::new().connect_lazy_with(
        MySqlConnectOptions::new()
            .socket("/nonexistent/mariadb.sock")
            .username("root"),
    );
    let mut bad = spec("books");
    bad.database = "books`; DROP DATABASE mysql; --".into();
    bad.users[0].name = "app'@'%".into();
    bad.users[1].hosts = vec!["%".into()];
    for result in [
        ensure(&nowhere, &bad).await,
        check(&nowhere, &bad).await,
        foreign_access(&nowhere, &bad, &[]).await,
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, DbError::Invalid(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains("invalid database name"), "{message}");
        assert!(message.contains("invalid user name"), "{message}");
        assert!(message.contains("invalid host \"%\""), "{message}");
    }
    let err = accounts::drop(&nowhere, &bad, true).await.unwrap_err();
    assert!(matches!(err, DbError::Invalid(_)), "{err}");
    let err = set_password(
        &nowhere,
        "x`y",
        &[HOST.into()],
        &Secret::new("Pass-word-12345"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DbError::Invalid(_)), "{err}");
    // A good spec does reach the server, and fails there.
    let err = check(&nowhere, &spec("books")).await.unwrap_err();
    assert!(!matches!(err, DbError::Invalid(_)), "{err}");
}
