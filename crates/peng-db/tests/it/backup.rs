use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use peng_db::accounts::{self, generate_password, Role, SchemaSpec, UserSpec};
use peng_db::backup::{
    backup_file_name, dump, parse_backup_file_name, prune, restore, verify, BackupInfo,
};
use peng_db::DbError;

use crate::fixture::{programs, TestServer};

/// Values that break naive parsing of a dump: quotes, parentheses, backslashes, newlines,
/// statement separators, and text that looks like the next tuple.
const TRICKY: &[&str] = &[
    "it's",
    "a \"quoted\" word",
    "(open",
    "close)",
    "back\\slash",
    "ends with a backslash\\",
    "new\nline\r\nand\ttab",
    "semi;colon",
    "'), (999, 'fake",
    "\\'",
    "unicode ☃ ü 日本",
    "",
];

const ITEMS: usize = 12_000;
const LOG: usize = 3_000;

async fn exec(server: &TestServer, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(server.admin())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A schema `db` with tricky strings, binary blobs and NULLs in `items`, a larger `log`, an
/// empty table, a view, a trigger and a procedure whose body holds an INSERT.
async fn fill(server: &TestServer, db: &str, items: usize) {
    exec(
        server,
        &format!(
            "CREATE DATABASE {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; USE {db}; \
             CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(255) NOT NULL, note TEXT NULL, \
               data BLOB NULL, price DECIMAL(10,2) NOT NULL); \
             CREATE TABLE log (id BIGINT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(100)); \
             CREATE TABLE empty_table (x INT); \
             CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10; \
             CREATE TRIGGER items_bu BEFORE UPDATE ON items FOR EACH ROW SET NEW.name = NEW.name"
        ),
    )
    .await;
    exec(
        server,
        &format!(
            "CREATE PROCEDURE {db}.add_log(m VARCHAR(100))\nBEGIN\nINSERT INTO `log` (msg) VALUES (m);\nEND"
        ),
    )
    .await;
    exec(
        server,
        &format!(
            "INSERT INTO {db}.log (msg) SELECT CONCAT('event (', seq, ');') FROM {db}.seq_1_to_{LOG}"
        ),
    )
    .await;
    for start in (0..items).step_by(500) {
        let end = (start + 500).min(items);
        let values = vec!["(?, ?, ?, ?, ?)"; end - start].join(", ");
        let sql = format!("INSERT INTO {db}.items VALUES {values}");
        let mut query = sqlx::query(&sql);
        for i in start..end {
            let name = format!("{}-{i}", TRICKY[i % TRICKY.len()]);
            let note = (i % 7 != 0).then(|| TRICKY[(i / 3) % TRICKY.len()].repeat(i % 5));
            let data = (i % 11 != 0).then(|| {
                (0..i % 97)
                    .map(|k| ((i * 31 + k * 7) % 256) as u8)
                    .collect::<Vec<u8>>()
            });
            let price = format!("{}.{:02}", i % 50, i % 100);
            query = query
                .bind(i as i64)
                .bind(name)
                .bind(note)
                .bind(data)
                .bind(price);
        }
        query.execute(server.admin()).await.unwrap();
    }
}

async fn counts(server: &TestServer, db: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for table in ["items", "log", "empty_table"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {db}.{table}"))
            .fetch_one(server.admin())
            .await
            .unwrap();
        counts.insert(table.to_string(), n as u64);
    }
    counts
}

/// A digest of every value in `items`, to compare a restored copy with its source.
async fn digest(server: &TestServer, db: &str) -> String {
    sqlx::query_scalar(&format!(
        "SELECT CAST(SUM(CRC32(CONCAT_WS('|', id, HEX(name), IFNULL(HEX(note), 'N'), \
         IFNULL(HEX(data), 'N'), price))) AS CHAR) FROM {db}.items"
    ))
    .fetch_one(server.admin())
    .await
    .unwrap()
}

async fn schema_exists(server: &TestServer, db: &str) -> bool {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(db)
    .fetch_one(server.admin())
    .await
    .unwrap();
    n > 0
}

fn backup_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(backup_file_name(SystemTime::now(), id).unwrap())
}

fn partials(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect()
}

#[tokio::test]
async fn a_dump_holds_every_row_and_restores_on_another_server() {
    let tools = programs();
    let (source, scratch) = tokio::join!(TestServer::start(), TestServer::start_with(false));
    fill(&source, "shop", ITEMS).await;
    let expected = counts(&source, "shop").await;
    let source_digest = digest(&source, "shop").await;
    let backups = tempfile::tempdir().unwrap();

    let out = backup_path(backups.path(), "shop");
    let info = dump(&tools.dump, &source.socket_target(), "shop", &out)
        .await
        .unwrap();
    eprintln!(
        "dump of {} rows: {} bytes gzip in {:?}, gtid {:?}, tables {:?}",
        expected.values().sum::<u64>(),
        info.bytes,
        info.took,
        info.gtid,
        info.tables
    );
    assert_eq!(info.tables, expected);
    assert_eq!(info.file, out);
    assert_eq!(info.bytes, std::fs::metadata(&out).unwrap().len());
    assert!(
        info.gtid.as_deref().is_some_and(|g| g.starts_with("0-1-")),
        "{:?}",
        info.gtid
    );
    assert!(partials(backups.path()).is_empty());
    assert!(parse_backup_file_name(out.file_name().unwrap().to_str().unwrap()).is_some());

    // Verified on a second server: restored, counted, and the scratch database dropped again.
    let started = std::time::Instant::now();
    let verification = verify(
        &tools.client,
        scratch.admin(),
        &scratch.socket_target(),
        &info,
        "scratch_verify",
    )
    .await
    .unwrap();
    eprintln!(
        "verify: {:?} in all, restore {:?}, ok {}, tables {:?}",
        started.elapsed(),
        verification.restore_took,
        verification.ok,
        verification.tables
    );
    assert!(verification.ok, "{verification:?}");
    assert_eq!(verification.tables.len(), 3);
    assert!(!schema_exists(&scratch, "scratch_verify").await);

    // Into another name on a server without a binary log, then dumped from there: same rows,
    // same values, and no GTID.
    exec(&scratch, "CREATE DATABASE shop_copy").await;
    restore(
        &tools.client,
        &scratch.socket_target(),
        "shop_copy",
        &info.file,
    )
    .await
    .unwrap();
    assert_eq!(digest(&scratch, "shop_copy").await, source_digest);
    let copy = dump(
        &tools.dump,
        &scratch.socket_target(),
        "shop_copy",
        &backup_path(backups.path(), "shop-copy"),
    )
    .await
    .unwrap();
    assert_eq!(copy.tables, expected);
    assert_eq!(copy.gtid, None);
    let proc: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'shop_copy'",
    )
    .fetch_one(scratch.admin())
    .await
    .unwrap();
    assert_eq!(proc, 1, "the procedure comes along");

    // Restored into the original after a table was lost.
    exec(&source, "DROP TABLE shop.items").await;
    let took = restore(&tools.client, &source.socket_target(), "shop", &info.file)
        .await
        .unwrap();
    eprintln!("restore into the original took {took:?}");
    assert_eq!(counts(&source, "shop").await, expected);
    assert_eq!(digest(&source, "shop").await, source_digest);
}

#[tokio::test]
async fn an_application_user_dumps_over_tls() {
    let tools = programs();
    let server = TestServer::start().await;
    let spec = SchemaSpec {
        database: "shop".into(),
        users: vec![UserSpec {
            name: "shop_app".into(),
            hosts: vec!["127.0.0.1".into()],
            password: generate_password(),
            role: Role::App,
            max_connections: 5,
            locked: false,
            require_tls: true,
        }],
        extra_databases: vec![],
        host_patterns: peng_db::accounts::HostPatterns::Refused,
    };
    accounts::ensure(server.admin(), &spec).await.unwrap();
    exec(
        &server,
        "CREATE TABLE shop.t (id INT PRIMARY KEY, s TEXT); \
         INSERT INTO shop.t SELECT seq, CONCAT('row ''', seq, '''') FROM shop.seq_1_to_250",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let target = server.tcp_target("shop_app", &spec.users[0].password);
    let info = dump(
        &tools.dump,
        &target,
        "shop",
        &backup_path(dir.path(), "tls"),
    )
    .await
    .unwrap();
    assert_eq!(info.tables, BTreeMap::from([("t".to_string(), 250)]));

    exec(&server, "DELETE FROM shop.t WHERE id > 10").await;
    restore(&tools.client, &target, "shop", &info.file)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shop.t")
        .fetch_one(server.admin())
        .await
        .unwrap();
    assert_eq!(n, 250);
}

#[tokio::test]
async fn a_damaged_backup_fails_verification_and_is_never_restored() {
    let tools = programs();
    let server = TestServer::start().await;
    fill(&server, "shop", 2_000).await;
    let expected = counts(&server, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let info = dump(
        &tools.dump,
        &server.socket_target(),
        "shop",
        &backup_path(dir.path(), "shop"),
    )
    .await
    .unwrap();

    // Cut in half: the gzip stream ends early.
    let bytes = std::fs::read(&info.file).unwrap();
    let truncated = BackupInfo {
        file: dir.path().join("truncated.sql.gz"),
        ..info.clone()
    };
    std::fs::write(&truncated.file, &bytes[..bytes.len() / 2]).unwrap();
    let err = verify(
        &tools.client,
        server.admin(),
        &server.socket_target(),
        &truncated,
        "scratch",
    )
    .await
    .unwrap_err();
    eprintln!("truncated: {err}");
    assert!(matches!(err, DbError::Verification(_)), "{err}");
    assert!(err.to_string().contains("is damaged"), "{err}");
    assert!(!schema_exists(&server, "scratch").await);

    // Whole gzip, but the dump inside stops in the middle.
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(bytes.as_slice()),
        &mut plain,
    )
    .unwrap();
    let cut = BackupInfo {
        file: dir.path().join("cut.sql.gz"),
        ..info.clone()
    };
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&cut.file).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(&plain[..plain.len() * 2 / 3]).unwrap();
    encoder.finish().unwrap();
    let err = verify(
        &tools.client,
        server.admin(),
        &server.socket_target(),
        &cut,
        "scratch",
    )
    .await
    .unwrap_err();
    eprintln!("cut: {err}");
    assert!(err.to_string().contains("is incomplete"), "{err}");

    // Neither touches a live database.
    for file in [&truncated.file, &cut.file] {
        let err = restore(&tools.client, &server.socket_target(), "shop", file)
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::Verification(_)), "{err}");
    }
    assert_eq!(counts(&server, "shop").await, expected);

    // A scratch name that is someone's database is refused, and the database kept.
    let err = verify(
        &tools.client,
        server.admin(),
        &server.socket_target(),
        &info,
        "shop",
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("is not a scratch database"),
        "{err}"
    );
    assert_eq!(counts(&server, "shop").await, expected);
    // One left behind by an interrupted verification is replaced.
    exec(
        &server,
        "CREATE DATABASE stale COMMENT 'peng backup verification scratch'",
    )
    .await;
    let verification = verify(
        &tools.client,
        server.admin(),
        &server.socket_target(),
        &info,
        "stale",
    )
    .await
    .unwrap();
    assert!(verification.ok);
    assert!(!schema_exists(&server, "stale").await);

    // Counts that differ make a verification that is not ok.
    let mut wrong = info.clone();
    wrong.tables.insert("items".into(), 1);
    wrong.tables.insert("ghost".into(), 0);
    let verification = verify(
        &tools.client,
        server.admin(),
        &server.socket_target(),
        &wrong,
        "scratch",
    )
    .await
    .unwrap();
    assert!(!verification.ok);
    let bad: Vec<&str> = verification
        .tables
        .iter()
        .filter(|t| !t.ok())
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(bad, ["ghost", "items"]);
}

#[tokio::test]
async fn a_failed_dump_leaves_nothing_behind() {
    let tools = programs();
    let server = TestServer::start().await;
    exec(&server, "CREATE DATABASE shop; CREATE TABLE shop.t (x INT)").await;

    // /sys takes no files, not even from root.
    let out = Path::new("/sys/peng-backup-test.sql.gz");
    let err = dump(&tools.dump, &server.socket_target(), "shop", out)
        .await
        .unwrap_err();
    eprintln!("unwritable: {err}");
    assert!(
        err.to_string()
            .contains("create backup file /sys/peng-backup-test.sql.gz.partial"),
        "{err}"
    );
    assert!(!Path::new("/sys/peng-backup-test.sql.gz.partial").exists());

    let dir = tempfile::tempdir().unwrap();
    let out = backup_path(dir.path(), "nosuch");
    let err = dump(&tools.dump, &server.socket_target(), "nosuch", &out)
        .await
        .unwrap_err();
    eprintln!("unknown database: {err}");
    assert!(matches!(err, DbError::Tools(_)), "{err}");
    assert!(err.to_string().contains("exit status: 2"), "{err}");
    assert!(
        err.to_string().contains("Unknown database 'nosuch'"),
        "{err}"
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    let err = dump(&tools.dump, &server.socket_target(), "bad name", &out)
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Invalid(_)), "{err}");
}

#[test]
fn prune_keeps_recent_backups_and_the_newest_verified() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let day = Duration::from_secs(86_400);
    let file = |age_days: u32, id: &str| {
        let name = backup_file_name(now - day * age_days, id).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, b"x").unwrap();
        path
    };
    let d1 = file(1, "shop");
    let d3 = file(3, "shop");
    let d10 = file(10, "shop");
    let d20 = file(20, "shop");
    let d30 = file(30, "shop");
    let stale = dir.path().join(format!(
        "{}.partial",
        backup_file_name(now - day * 9, "shop").unwrap()
    ));
    std::fs::write(&stale, b"x").unwrap();
    let fresh_partial = dir.path().join(format!(
        "{}.partial",
        backup_file_name(now - Duration::from_secs(60), "shop").unwrap()
    ));
    std::fs::write(&fresh_partial, b"x").unwrap();
    let unrelated = dir.path().join("notes.txt");
    std::fs::write(&unrelated, b"x").unwrap();

    // Only the 20- and 30-day-old backups were verified: the 20-day one stays.
    let verified = |p: &Path| p == d20 || p == d30;
    let removed = prune(dir.path(), day * 7, now, &verified).unwrap();
    let mut expected = vec![d10.clone(), d30.clone(), stale.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    for kept in [&d1, &d3, &d20, &fresh_partial, &unrelated] {
        assert!(kept.exists(), "{}", kept.display());
    }

    // Once a recent backup is verified, the old one goes too; running again changes nothing.
    let verified = |p: &Path| p == d1;
    assert_eq!(
        prune(dir.path(), day * 7, now, &verified).unwrap(),
        vec![d20.clone()]
    );
    assert_eq!(
        prune(dir.path(), day * 7, now, &verified).unwrap(),
        Vec::<PathBuf>::new()
    );
}
