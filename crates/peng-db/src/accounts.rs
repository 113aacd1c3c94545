//! A service's schema, its users and their grants, kept as the spec says by difference.
//!
//! `check` reads what the server holds for the spec's accounts (from `information_schema` and
//! the `mysql` tables, never by parsing `SHOW GRANTS`) and lists every difference as [`Drift`];
//! `ensure` makes the same comparison and repairs each difference with the smallest statement:
//! it grants what is missing and revokes what is extra, and never revokes everything to grant it
//! again, so an application never sees a window without access.
//!
//! Identifiers cannot be bound as parameters, so every name from a spec is checked against a
//! strict pattern before any SQL is built, and every identifier or string literal that reaches a
//! statement goes through [`ident`] or [`literal`]. Passwords live in [`Secret`], which never
//! prints its content.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rand::seq::SliceRandom;
use rand::Rng;
use sqlx::MySqlPool;

use crate::DbError;

/// A password or another value that must never appear in logs. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that has to send it somewhere.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Length of the passwords peng generates.
pub const PASSWORD_LEN: usize = 32;

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";
const SPECIAL: &[u8] = b"-_.~";

/// A random password of [`PASSWORD_LEN`] characters from `[A-Za-z0-9]` and `-_.~` (safe in URLs,
/// shells and option files), with at least one upper-case letter, lower-case letter, digit and
/// special character, as MariaDB's `simple_password_check` asks by default.
pub fn generate_password() -> Secret {
    let mut rng = rand::rng();
    let all: Vec<u8> = [UPPER, LOWER, DIGITS, SPECIAL].concat();
    let mut chars: Vec<u8> = [UPPER, LOWER, DIGITS, SPECIAL]
        .iter()
        .map(|class| class[rng.random_range(0..class.len())])
        .collect();
    while chars.len() < PASSWORD_LEN {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    Secret(chars.into_iter().map(char::from).collect())
}

/// What a user may do in its service's schema.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// The application: reads and writes data, changes its own schema, nothing beyond it.
    App,
    /// Reports and people: reads data and view definitions.
    ReadOnly,
}

/// The privileges a role holds on its own schema (`db.*`), in MariaDB's spelling. Nothing is
/// granted globally (only `USAGE`) and never `WITH GRANT OPTION`.
pub fn privileges(role: Role) -> &'static [&'static str] {
    match role {
        Role::App => &[
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "CREATE",
            "ALTER",
            "DROP",
            "INDEX",
            "REFERENCES",
            "CREATE TEMPORARY TABLES",
            "LOCK TABLES",
            "CREATE VIEW",
            "SHOW VIEW",
            "TRIGGER",
            "EXECUTE",
            "CREATE ROUTINE",
            "ALTER ROUTINE",
            "EVENT",
        ],
        Role::ReadOnly => &["SELECT", "SHOW VIEW"],
    }
}

/// One user of a schema, with one account per host.
#[derive(Clone, Debug)]
pub struct UserSpec {
    pub name: String,
    pub hosts: Vec<String>,
    pub password: Secret,
    pub role: Role,
    /// `MAX_USER_CONNECTIONS`; 0 means the server's limit.
    pub max_connections: u32,
    pub locked: bool,
    pub require_tls: bool,
}

/// A service's schema and the users that may use it.
#[derive(Clone, Debug)]
pub struct SchemaSpec {
    pub database: String,
    pub users: Vec<UserSpec>,
    /// Further databases the same users get with the same roles (scratch restores, for example).
    pub extra_databases: Vec<String>,
    /// Whether the users' hosts may be `%` patterns (a shared server whose platform entry says
    /// `allow_any_host`); refused otherwise.
    pub host_patterns: HostPatterns,
}

impl SchemaSpec {
    /// The main database, then the extra ones.
    pub fn databases(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.database.as_str())
            .chain(self.extra_databases.iter().map(String::as_str))
    }
}

/// One difference between what the spec asks for and what the server holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// What differs, e.g. `user books_app@127.0.0.1` or ``database `books` ``.
    pub object: String,
    /// What is wrong, followed by what was done about it when repaired (`missing; created`).
    pub problem: String,
    pub repaired: bool,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.problem)
    }
}

/// The character set and collation of every schema peng creates.
pub const CHARSET: &str = "utf8mb4";
pub const COLLATION: &str = "utf8mb4_unicode_ci";

/// Creates what is missing and changes what differs: the databases, the accounts (password,
/// `REQUIRE SSL`, `MAX_USER_CONNECTIONS`, lock), missing grants on the schema, and revokes every
/// privilege the spec does not give, wherever it was granted. Returns each change made.
pub async fn ensure(admin: &MySqlPool, spec: &SchemaSpec) -> Result<Vec<Drift>, DbError> {
    validate_spec(spec)?;
    let changes = plan(admin, spec).await?;
    apply(admin, changes).await
}

/// The comparison `ensure` makes, without changing anything.
pub async fn check(admin: &MySqlPool, spec: &SchemaSpec) -> Result<Vec<Drift>, DbError> {
    validate_spec(spec)?;
    Ok(plan(admin, spec)
        .await?
        .into_iter()
        .map(Change::unrepaired)
        .collect())
}

/// Accounts outside the spec that hold privileges on the spec's databases: globally (a
/// privilege that applies to schemas), on the schema (also through a wildcard such as
/// `` `books%`.* ``), on a table, a column or a routine. `root`, `mariadb.sys` and the users named
/// in `allowed` (any host) are not reported, nor are the spec's own accounts (`check` covers
/// them).
pub async fn foreign_access(
    admin: &MySqlPool,
    spec: &SchemaSpec,
    allowed: &[&str],
) -> Result<Vec<Drift>, DbError> {
    validate_spec(spec)?;
    Ok(plan_foreign(admin, spec, allowed)
        .await?
        .into_iter()
        .map(Change::unrepaired)
        .collect())
}

/// What [`foreign_access`] finds, revoked.
pub async fn revoke_foreign_access(
    admin: &MySqlPool,
    spec: &SchemaSpec,
    allowed: &[&str],
) -> Result<Vec<Drift>, DbError> {
    validate_spec(spec)?;
    let changes = plan_foreign(admin, spec, allowed).await?;
    apply(admin, changes).await
}

/// Drops the spec's accounts and, when `drop_database`, its databases. Idempotent.
pub async fn drop(
    admin: &MySqlPool,
    spec: &SchemaSpec,
    drop_database: bool,
) -> Result<(), DbError> {
    validate_spec(spec)?;
    for user in &spec.users {
        for host in &user.hosts {
            let account = account(&user.name, host);
            execute(admin, &format!("DROP USER IF EXISTS {account}"), || {
                format!("drop user {}@{host}", user.name)
            })
            .await?;
        }
    }
    if drop_database {
        for db in spec.databases() {
            execute(
                admin,
                &format!("DROP DATABASE IF EXISTS {}", ident(db)),
                || format!("drop database `{db}`"),
            )
            .await?;
        }
    }
    Ok(())
}

/// Changes the password of `user` on each of `hosts`, and nothing else.
pub async fn set_password(
    admin: &MySqlPool,
    user: &str,
    hosts: &[String],
    password: &Secret,
) -> Result<(), DbError> {
    let mut problems = Vec::new();
    problems.extend(validate_user(user).err());
    for host in hosts {
        problems.extend(validate_host(host, HostPatterns::Refused).err());
    }
    problems.extend(validate_password(password).err());
    if !problems.is_empty() {
        return Err(DbError::Invalid(join_problems(problems)));
    }
    for host in hosts {
        let sql = format!(
            "ALTER USER {} IDENTIFIED BY {}",
            account(user, host),
            literal(password.expose())
        );
        execute(admin, &sql, || format!("set the password of {user}@{host}")).await?;
    }
    Ok(())
}

/// Whether a host may be a pattern with `%`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HostPatterns {
    Refused,
    Allowed,
}

/// A database name peng creates: `[a-z0-9_]{1,64}`.
pub fn validate_database(name: &str) -> Result<(), DbError> {
    validate_name(name, 64, "database")
}

/// A user name peng creates: `[a-z0-9_]{1,80}`.
pub fn validate_user(name: &str) -> Result<(), DbError> {
    validate_name(name, 80, "user")
}

/// An account's host: an IPv4 or IPv6 literal, `localhost`, or (only when `patterns` allows it)
/// a pattern such as `10.1.%` made of digits, hex letters, `.`, `:` and `%`.
pub fn validate_host(host: &str, patterns: HostPatterns) -> Result<(), DbError> {
    if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let pattern_chars = |c: char| c.is_ascii_digit() || matches!(c, 'a'..='f' | '.' | ':' | '%');
    if patterns == HostPatterns::Allowed
        && host.contains('%')
        && host.len() <= 60
        && host.chars().all(pattern_chars)
    {
        return Ok(());
    }
    let why = if host.contains('%') && patterns == HostPatterns::Refused {
        "host patterns with '%' are not allowed here"
    } else {
        "want an IP address or localhost"
    };
    Err(DbError::Invalid(format!("invalid host {:?}: {why}", host)))
}

/// Quotes an identifier with backticks, doubling any backtick inside. Names from a spec are
/// validated before they get here; names read from the server may hold anything.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string literal for a statement that cannot take a bound parameter (`IDENTIFIED BY`,
/// account names). Backslashes are doubled and quotes written as `''`, which is safe with and
/// without `NO_BACKSLASH_ESCAPES`.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// `'user'@'host'`, or the bare `'name'` of a role (whose host is empty).
fn account(user: &str, host: &str) -> String {
    if host.is_empty() {
        literal(user)
    } else {
        format!("{}@{}", literal(user), literal(host))
    }
}

/// The schema pattern that names exactly `db` in a grant: `_` is a wildcard in database-level
/// grants, so `books_app`.* would also cover `booksxapp`.
pub fn schema_pattern(db: &str) -> String {
    db.replace('\\', "\\\\")
        .replace('_', "\\_")
        .replace('%', "\\%")
}

fn validate_name(name: &str, max: usize, what: &str) -> Result<(), DbError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "invalid {what} name {name:?}: want 1 to {max} characters from a-z, 0-9 and _"
        )))
    }
}

fn validate_password(password: &Secret) -> Result<(), DbError> {
    if password.expose().is_empty() {
        return Err(DbError::Invalid("empty password".into()));
    }
    if password.expose().chars().any(|c| c.is_control()) {
        return Err(DbError::Invalid("password holds control characters".into()));
    }
    Ok(())
}

fn join_problems(problems: Vec<DbError>) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every problem of a spec at once, before any SQL.
pub fn validate_spec(spec: &SchemaSpec) -> Result<(), DbError> {
    let mut problems = Vec::new();
    for db in spec.databases() {
        problems.extend(validate_database(db).err());
    }
    let mut seen = BTreeSet::new();
    for user in &spec.users {
        problems.extend(validate_user(&user.name).err());
        if !seen.insert(user.name.as_str()) {
            problems.push(DbError::Invalid(format!(
                "user {:?} appears twice",
                user.name
            )));
        }
        if user.hosts.is_empty() {
            problems.push(DbError::Invalid(format!(
                "user {:?} has no host",
                user.name
            )));
        }
        for host in &user.hosts {
            problems.extend(validate_host(host, spec.host_patterns).err());
        }
        problems.extend(validate_password(&user.password).err());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DbError::Invalid(join_problems(problems)))
    }
}

/// A difference found and the statements that repair it.
struct Change {
    object: String,
    problem: String,
    /// What the repair does, appended to the problem once done (`created`, `revoked`, …).
    action: &'static str,
    statements: Vec<String>,
}

impl Change {
    fn new(object: &str, problem: String, action: &'static str, statement: String) -> Change {
        Change {
            object: object.to_string(),
            problem,
            action,
            statements: vec![statement],
        }
    }

    fn unrepaired(self) -> Drift {
        Drift {
            object: self.object,
            problem: self.problem,
            repaired: false,
        }
    }
}

async fn apply(admin: &MySqlPool, changes: Vec<Change>) -> Result<Vec<Drift>, DbError> {
    let mut done = Vec::with_capacity(changes.len());
    for change in changes {
        for sql in &change.statements {
            execute(admin, sql, || {
                format!("repair {} ({})", change.object, change.problem)
            })
            .await?;
        }
        tracing::info!(object = %change.object, problem = %change.problem, action = change.action, "database account or grant changed");
        done.push(Drift {
            object: change.object,
            problem: format!("{}; {}", change.problem, change.action),
            repaired: true,
        });
    }
    Ok(done)
}

/// Runs one statement over the text protocol (account statements cannot take parameters). The
/// statement itself never reaches an error message: it may hold a password.
async fn execute(
    admin: &MySqlPool,
    sql: &str,
    context: impl FnOnce() -> String,
) -> Result<(), DbError> {
    sqlx::raw_sql(sql)
        .execute(admin)
        .await
        .map(|_| ())
        .map_err(|e| DbError::sql(context())(e))
}

/// A privilege name as the server spells it, checked before it is written into a statement.
fn privilege_sql(name: &str) -> Result<&str, DbError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b' ') {
        Ok(name)
    } else {
        Err(DbError::Invalid(format!(
            "unexpected privilege name {name:?}"
        )))
    }
}

/// What the server holds for one account.
#[derive(Default, Debug)]
struct Held {
    exists: bool,
    plugin: String,
    auth: String,
    other_auth: bool,
    ssl_type: i64,
    max_connections: i64,
    locked: bool,
    /// Global privileges other than `USAGE`, and whether the account has the grant option.
    global: BTreeSet<String>,
    global_grant_option: bool,
    /// Schema pattern (as stored) → privileges, and the grant option per schema.
    schemas: BTreeMap<String, BTreeSet<String>>,
    schema_grant_option: BTreeSet<String>,
    /// (db, table) → privileges; a grant option shows as `GRANT OPTION`.
    tables: BTreeMap<(String, String), BTreeSet<String>>,
    /// (db, table, column) → privileges.
    columns: BTreeMap<(String, String, String), BTreeSet<String>>,
    /// (db, routine, kind) → privileges.
    routines: BTreeMap<(String, String, String), BTreeSet<String>>,
    roles: BTreeSet<String>,
    /// Accounts this one may proxy as.
    proxies: BTreeSet<(String, String)>,
}

async fn plan(admin: &MySqlPool, spec: &SchemaSpec) -> Result<Vec<Change>, DbError> {
    let mut changes = Vec::new();
    for db in spec.databases() {
        changes.extend(plan_database(admin, db).await?);
    }
    let dbs: Vec<&str> = spec.databases().collect();
    for user in &spec.users {
        let hash: String = sqlx::query_scalar("SELECT CAST(PASSWORD(?) AS CHAR)")
            .bind(user.password.expose())
            .fetch_one(admin)
            .await
            .map_err(DbError::sql(format!("hash the password of {}", user.name)))?;
        for host in &user.hosts {
            let held = read_account(admin, &user.name, host).await?;
            changes.extend(plan_account(user, host, &dbs, &held, &hash)?);
        }
    }
    Ok(changes)
}

async fn plan_database(admin: &MySqlPool, db: &str) -> Result<Vec<Change>, DbError> {
    let object = format!("database `{db}`");
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT CAST(DEFAULT_CHARACTER_SET_NAME AS CHAR), CAST(DEFAULT_COLLATION_NAME AS CHAR) \
         FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(db)
    .fetch_optional(admin)
    .await
    .map_err(DbError::sql(format!("read {object}")))?;
    let charset = format!("CHARACTER SET {CHARSET} COLLATE {COLLATION}");
    Ok(match row {
        None => vec![Change::new(
            &object,
            "missing".into(),
            "created",
            format!("CREATE DATABASE IF NOT EXISTS {} {charset}", ident(db)),
        )],
        Some((cs, coll)) if cs != CHARSET || coll != COLLATION => vec![Change::new(
            &object,
            format!("has character set {cs} and collation {coll}, want {CHARSET} and {COLLATION}"),
            "changed",
            format!("ALTER DATABASE {} {charset}", ident(db)),
        )],
        Some(_) => vec![],
    })
}

/// plugin, authentication string, other methods, ssl_type, max_user_connections, account_locked.
type AccountRow = (
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn read_account(admin: &MySqlPool, user: &str, host: &str) -> Result<Held, DbError> {
    let context = || format!("read account {user}@{host}");
    let mut held = Held::default();
    let row: Option<AccountRow> = sqlx::query_as(
        "SELECT CAST(JSON_VALUE(Priv, '$.plugin') AS CHAR), CAST(JSON_VALUE(Priv, '$.authentication_string') AS CHAR), \
             JSON_EXISTS(Priv, '$.auth_or'), CAST(JSON_VALUE(Priv, '$.ssl_type') AS CHAR), \
             CAST(JSON_VALUE(Priv, '$.max_user_connections') AS CHAR), CAST(JSON_VALUE(Priv, '$.account_locked') AS CHAR) \
             FROM mysql.global_priv WHERE User = ? AND Host = ?",
    )
    .bind(user)
    .bind(host)
    .fetch_optional(admin)
    .await
    .map_err(|e| DbError::sql(context())(e))?;
    let Some((plugin, auth, auth_or, ssl_type, max_connections, locked)) = row else {
        return Ok(held);
    };
    held.exists = true;
    held.plugin = plugin.unwrap_or_default();
    held.auth = auth.unwrap_or_default();
    held.other_auth = auth_or != 0;
    held.ssl_type = ssl_type.and_then(|s| s.parse().ok()).unwrap_or(0);
    held.max_connections = max_connections.and_then(|s| s.parse().ok()).unwrap_or(0);
    held.locked = matches!(locked.as_deref(), Some("1") | Some("true"));

    let grantee = format!("'{user}'@'{host}'");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(PRIVILEGE_TYPE AS CHAR), CAST(IS_GRANTABLE AS CHAR) \
         FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
    )
    .bind(&grantee)
    .fetch_all(admin)
    .await
    .map_err(|e| DbError::sql(context())(e))?;
    for (privilege, grantable) in rows {
        held.global_grant_option |= grantable == "YES";
        if privilege != "USAGE" {
            held.global.insert(privilege);
        }
    }

    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(PRIVILEGE_TYPE AS CHAR), CAST(IS_GRANTABLE AS CHAR) \
         FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
    )
    .bind(&grantee)
    .fetch_all(admin)
    .await
    .map_err(|e| DbError::sql(context())(e))?;
    for (schema, privilege, grantable) in rows {
        if grantable == "YES" {
            held.schema_grant_option.insert(schema.clone());
        }
        held.schemas.entry(schema).or_default().insert(privilege);
    }

    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR), CAST(PRIVILEGE_TYPE AS CHAR), \
         CAST(IS_GRANTABLE AS CHAR) FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = ?",
    )
    .bind(&grantee)
    .fetch_all(admin)
    .await
    .map_err(|e| DbError::sql(context())(e))?;
    for (db, table, privilege, grantable) in rows {
        let entry = held.tables.entry((db, table)).or_default();
        entry.insert(privilege);
        if grantable == "YES" {
            entry.insert("GRANT OPTION".into());
        }
    }

    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR), \
         CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.COLUMN_PRIVILEGES WHERE GRANTEE = ?",
    )
    .bind(&grantee)
    .fetch_all(admin)
    .await
    .map_err(|e| DbError::sql(context())(e))?;
    for (db, table, column, privilege) in rows {
        held.columns
            .entry((db, table, column))
            .or_default()
            .insert(privilege);
    }

    held.routines = read_routines(admin, Routines::Account(user, host))
        .await?
        .into_iter()
        .map(|(_, _, key, privileges)| (key, privileges))
        .collect();

    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(Role AS CHAR) FROM mysql.roles_mapping WHERE User = ? AND Host = ?",
    )
    .bind(user)
    .bind(host)
    .fetch_all(admin)
    .await
    .map_err(|e| DbError::sql(context())(e))?;
    held.roles = rows.into_iter().collect();

    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(Proxied_user AS CHAR), CAST(Proxied_host AS CHAR) FROM mysql.proxies_priv \
         WHERE User = ? AND Host = ?",
    )
    .bind(user)
    .bind(host)
    .fetch_all(admin)
    .await
    .map_err(|e| DbError::sql(context())(e))?;
    held.proxies = rows.into_iter().collect();
    Ok(held)
}

type RoutineRow = (String, String, (String, String, String), BTreeSet<String>);

/// Whose routine-level grants to read.
enum Routines<'a> {
    Account(&'a str, &'a str),
    Database(&'a str),
}

/// Routine-level grants from `mysql.procs_priv` (information_schema has no view of them).
async fn read_routines(admin: &MySqlPool, which: Routines<'_>) -> Result<Vec<RoutineRow>, DbError> {
    const SELECT: &str = "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), CAST(Db AS CHAR), \
        CAST(Routine_name AS CHAR), CAST(Routine_type AS CHAR), CAST(Proc_priv AS CHAR) \
        FROM mysql.procs_priv";
    let rows: Vec<(String, String, String, String, String, String)> = match which {
        Routines::Account(user, host) => {
            sqlx::query_as(&format!("{SELECT} WHERE User = ? AND Host = ?"))
                .bind(user)
                .bind(host)
                .fetch_all(admin)
                .await
        }
        Routines::Database(db) => {
            sqlx::query_as(&format!("{SELECT} WHERE Db = ?"))
                .bind(db)
                .fetch_all(admin)
                .await
        }
    }
    .map_err(DbError::sql("read routine grants"))?;
    Ok(rows
        .into_iter()
        .map(|(user, host, db, name, kind, privs)| {
            (user, host, (db, name, kind), set_privileges(&privs))
        })
        .filter(|row| !row.3.is_empty())
        .collect())
}

fn list(privileges: &BTreeSet<String>) -> String {
    privileges.iter().cloned().collect::<Vec<_>>().join(", ")
}

fn privilege_list(privileges: &BTreeSet<String>) -> Result<String, DbError> {
    Ok(privileges
        .iter()
        .map(|p| privilege_sql(p))
        .collect::<Result<Vec<_>, _>>()?
        .join(", "))
}

/// The changes that bring one account to its spec, aspect by aspect: the account itself (made
/// when missing; else its password, TLS, connection limit and lock), then its grants (global,
/// on its schemas, and on anything else). Pure: reads only `held`.
fn plan_account(
    user: &UserSpec,
    host: &str,
    dbs: &[&str],
    held: &Held,
    password_hash: &str,
) -> Result<Vec<Change>, DbError> {
    let who = Grantee {
        object: format!("user {}@{host}", user.name),
        account: account(&user.name, host),
    };
    let mut changes = Vec::new();
    if held.exists {
        changes.extend(password(user, held, password_hash, &who));
        changes.extend(tls(user, held, &who));
        changes.extend(connection_limit(user, held, &who));
        changes.extend(lock(user, held, &who));
    } else {
        changes.push(create(user, &who));
    }
    changes.extend(global_grants(held, &who)?);
    changes.extend(schema_grants(user, dbs, held, &who)?);
    changes.extend(other_grants(held, &who)?);
    Ok(changes)
}

/// An account as a change names it (`user NAME@HOST`) and as a statement does.
struct Grantee {
    object: String,
    account: String,
}

impl Grantee {
    fn change(&self, problem: String, action: &'static str, statement: String) -> Change {
        Change::new(&self.object, problem, action, statement)
    }
}

fn tls_clause(user: &UserSpec) -> &'static str {
    if user.require_tls {
        "REQUIRE SSL"
    } else {
        "REQUIRE NONE"
    }
}

fn lock_clause(user: &UserSpec) -> &'static str {
    if user.locked {
        "ACCOUNT LOCK"
    } else {
        "ACCOUNT UNLOCK"
    }
}

/// A missing account, made with everything the spec says of it at once.
fn create(user: &UserSpec, who: &Grantee) -> Change {
    who.change(
        "missing".into(),
        "created",
        format!(
            "CREATE USER {} IDENTIFIED BY {} {} WITH MAX_USER_CONNECTIONS {} {}",
            who.account,
            literal(user.password.expose()),
            tls_clause(user),
            user.max_connections,
            lock_clause(user)
        ),
    )
}

/// The password peng set, and nothing else to authenticate with.
fn password(user: &UserSpec, held: &Held, password_hash: &str, who: &Grantee) -> Option<Change> {
    let native = held.plugin == "mysql_native_password" && !held.other_auth;
    if native && held.auth.eq_ignore_ascii_case(password_hash) {
        return None;
    }
    let problem = if native {
        "password differs from the one peng set".to_string()
    } else {
        format!(
            "authenticates with {} instead of the password peng set",
            describe_plugin(held)
        )
    };
    Some(who.change(
        problem,
        "password set",
        format!(
            "ALTER USER {} IDENTIFIED BY {}",
            who.account,
            literal(user.password.expose())
        ),
    ))
}

fn tls(user: &UserSpec, held: &Held, who: &Grantee) -> Option<Change> {
    let want_ssl_type = if user.require_tls { 1 } else { 0 };
    if held.ssl_type == want_ssl_type {
        return None;
    }
    let problem = match (user.require_tls, held.ssl_type) {
        (true, 0) => "does not require TLS",
        (false, _) => "requires TLS, which the spec does not ask for",
        (true, _) => "requires a client certificate instead of plain TLS",
    };
    Some(who.change(
        problem.into(),
        "changed",
        format!("ALTER USER {} {}", who.account, tls_clause(user)),
    ))
}

fn connection_limit(user: &UserSpec, held: &Held, who: &Grantee) -> Option<Change> {
    if held.max_connections == i64::from(user.max_connections) {
        return None;
    }
    Some(who.change(
        format!(
            "max_user_connections is {}, want {}",
            held.max_connections, user.max_connections
        ),
        "changed",
        format!(
            "ALTER USER {} WITH MAX_USER_CONNECTIONS {}",
            who.account, user.max_connections
        ),
    ))
}

fn lock(user: &UserSpec, held: &Held, who: &Grantee) -> Option<Change> {
    if held.locked == user.locked {
        return None;
    }
    let (problem, action) = if held.locked {
        ("is locked, want unlocked", "unlocked")
    } else {
        ("is unlocked, want locked", "locked")
    };
    Some(who.change(
        problem.into(),
        action,
        format!("ALTER USER {} {}", who.account, lock_clause(user)),
    ))
}

/// Global privileges: nothing but USAGE.
fn global_grants(held: &Held, who: &Grantee) -> Result<Vec<Change>, DbError> {
    let mut changes = Vec::new();
    if !held.global.is_empty() {
        changes.push(who.change(
            format!("has {} on *.* which peng did not grant", list(&held.global)),
            "revoked",
            revoke(&held.global, On::Global, &who.account)?,
        ));
    }
    if held.global_grant_option {
        changes.push(who.change(
            "has GRANT OPTION on *.*".into(),
            "revoked",
            format!("REVOKE GRANT OPTION ON *.* FROM {}", who.account),
        ));
    }
    Ok(changes)
}

/// Schemas: exactly the role's privileges on each of our databases, nothing elsewhere.
fn schema_grants(
    user: &UserSpec,
    dbs: &[&str],
    held: &Held,
    who: &Grantee,
) -> Result<Vec<Change>, DbError> {
    let mut changes = Vec::new();
    let want: BTreeSet<String> = privileges(user.role)
        .iter()
        .map(|p| p.to_string())
        .collect();
    let ours: BTreeMap<String, &str> = dbs.iter().map(|db| (schema_pattern(db), *db)).collect();
    for (pattern, db) in &ours {
        let empty = BTreeSet::new();
        let have = held.schemas.get(pattern).unwrap_or(&empty);
        let missing: BTreeSet<String> = want.difference(have).cloned().collect();
        if !missing.is_empty() {
            let problem = if have.is_empty() {
                format!("has no privileges on `{db}`.*")
            } else {
                format!("lacks {} on `{db}`.*", list(&missing))
            };
            changes.push(who.change(
                problem,
                "granted",
                format!(
                    "GRANT {} ON {}.* TO {}",
                    privilege_list(&missing)?,
                    ident(pattern),
                    who.account
                ),
            ));
        }
    }
    for (pattern, have) in &held.schemas {
        let extra: BTreeSet<String> = if ours.contains_key(pattern) {
            have.difference(&want).cloned().collect()
        } else {
            have.clone()
        };
        if !extra.is_empty() {
            changes.push(who.change(
                format!(
                    "has {} on `{pattern}`.* which peng did not grant",
                    list(&extra)
                ),
                "revoked",
                revoke(&extra, On::Schema(pattern), &who.account)?,
            ));
        }
    }
    for pattern in &held.schema_grant_option {
        changes.push(who.change(
            format!("has GRANT OPTION on `{pattern}`.*"),
            "revoked",
            format!(
                "REVOKE GRANT OPTION ON {}.* FROM {}",
                ident(pattern),
                who.account
            ),
        ));
    }
    Ok(changes)
}

/// Tables, columns, routines, roles and proxies: peng grants none of them.
fn other_grants(held: &Held, who: &Grantee) -> Result<Vec<Change>, DbError> {
    let mut changes = Vec::new();
    for ((db, table), have) in &held.tables {
        changes.push(who.change(
            format!(
                "has {} on table `{db}`.`{table}` which peng did not grant",
                list(have)
            ),
            "revoked",
            revoke(have, On::Table(db, table), &who.account)?,
        ));
    }
    for ((db, table, column), have) in &held.columns {
        changes.push(who.change(
            format!(
                "has {} on column `{db}`.`{table}`.`{column}` which peng did not grant",
                list(have)
            ),
            "revoked",
            revoke(have, On::Column(db, table, column), &who.account)?,
        ));
    }
    for ((db, name, kind), have) in &held.routines {
        changes.push(who.change(
            format!(
                "has {} on {} `{db}`.`{name}` which peng did not grant",
                list(have),
                kind.to_ascii_lowercase()
            ),
            "revoked",
            revoke(have, On::Routine(kind, db, name), &who.account)?,
        ));
    }
    for role in &held.roles {
        changes.push(who.change(
            format!("has role `{role}` which peng did not grant"),
            "revoked",
            format!("REVOKE {} FROM {}", ident(role), who.account),
        ));
    }
    for (proxied_user, proxied_host) in &held.proxies {
        changes.push(who.change(
            format!("may proxy as {proxied_user}@{proxied_host}, which peng did not grant"),
            "revoked",
            format!(
                "REVOKE PROXY ON {} FROM {}",
                account(proxied_user, proxied_host),
                who.account
            ),
        ));
    }
    Ok(changes)
}

/// What a privilege is held on.
enum On<'a> {
    Global,
    /// A schema pattern, as stored.
    Schema(&'a str),
    /// Database and table.
    Table(&'a str, &'a str),
    /// Database, table and column.
    Column(&'a str, &'a str, &'a str),
    /// Routine kind (`PROCEDURE`, `FUNCTION`), database and name.
    Routine(&'a str, &'a str, &'a str),
}

/// `REVOKE privileges ON … FROM account`, every privilege name checked and every identifier
/// quoted; shared by the accounts of a spec and the others that reach its databases.
fn revoke(privileges: &BTreeSet<String>, on: On<'_>, from: &str) -> Result<String, DbError> {
    Ok(match on {
        On::Global => format!("REVOKE {} ON *.* FROM {from}", privilege_list(privileges)?),
        On::Schema(pattern) => format!(
            "REVOKE {} ON {}.* FROM {from}",
            privilege_list(privileges)?,
            ident(pattern)
        ),
        On::Table(db, table) => format!(
            "REVOKE {} ON {}.{} FROM {from}",
            privilege_list(privileges)?,
            ident(db),
            ident(table)
        ),
        On::Column(db, table, column) => {
            let privileges = privileges
                .iter()
                .map(|p| Ok(format!("{} ({})", privilege_sql(p)?, ident(column))))
                .collect::<Result<Vec<_>, DbError>>()?
                .join(", ");
            format!(
                "REVOKE {privileges} ON {}.{} FROM {from}",
                ident(db),
                ident(table)
            )
        }
        On::Routine(kind, db, name) => format!(
            "REVOKE {} ON {} {}.{} FROM {from}",
            privilege_list(privileges)?,
            privilege_sql(kind)?,
            ident(db),
            ident(name)
        ),
    })
}

fn describe_plugin(held: &Held) -> String {
    if held.other_auth {
        format!("{} and further methods", held.plugin)
    } else if held.plugin.is_empty() {
        "no password".to_string()
    } else {
        held.plugin.clone()
    }
}

/// Accounts built into MariaDB that may always hold privileges.
const BUILT_IN: &[&str] = &["root", "mariadb.sys"];

/// The global privilege columns of `mysql.user` that also apply to a schema's objects.
const SCHEMA_LEVEL_GLOBALS: &[(&str, &str)] = &[
    ("Select_priv", "SELECT"),
    ("Insert_priv", "INSERT"),
    ("Update_priv", "UPDATE"),
    ("Delete_priv", "DELETE"),
    ("Create_priv", "CREATE"),
    ("Drop_priv", "DROP"),
    ("References_priv", "REFERENCES"),
    ("Index_priv", "INDEX"),
    ("Alter_priv", "ALTER"),
    ("Create_tmp_table_priv", "CREATE TEMPORARY TABLES"),
    ("Lock_tables_priv", "LOCK TABLES"),
    ("Execute_priv", "EXECUTE"),
    ("Create_view_priv", "CREATE VIEW"),
    ("Show_view_priv", "SHOW VIEW"),
    ("Create_routine_priv", "CREATE ROUTINE"),
    ("Alter_routine_priv", "ALTER ROUTINE"),
    ("Event_priv", "EVENT"),
    ("Trigger_priv", "TRIGGER"),
    ("Delete_history_priv", "DELETE HISTORY"),
];

async fn plan_foreign(
    admin: &MySqlPool,
    spec: &SchemaSpec,
    allowed: &[&str],
) -> Result<Vec<Change>, DbError> {
    let ours: BTreeSet<(String, String)> = spec
        .users
        .iter()
        .flat_map(|u| u.hosts.iter().map(|h| (u.name.clone(), h.clone())))
        .collect();
    let skip = |user: &str, host: &str| {
        BUILT_IN.contains(&user)
            || allowed.contains(&user)
            || ours.contains(&(user.to_string(), host.to_string()))
    };
    let object = |user: &str, host: &str| {
        if host.is_empty() {
            format!("role {user}")
        } else {
            format!("user {user}@{host}")
        }
    };
    let mut changes = Vec::new();

    // Global privileges that reach every schema, ours included.
    let columns = SCHEMA_LEVEL_GLOBALS
        .iter()
        .map(|(column, _)| format!("CAST({column} AS CHAR)"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), CONCAT_WS(',', {columns}) FROM mysql.user"
    );
    let rows: Vec<(String, String, String)> = sqlx::query_as(&sql)
        .fetch_all(admin)
        .await
        .map_err(DbError::sql("read global privileges"))?;
    for (user, host, flags) in rows {
        if skip(&user, &host) {
            continue;
        }
        let held: BTreeSet<String> = flags
            .split(',')
            .zip(SCHEMA_LEVEL_GLOBALS)
            .filter(|(flag, _)| *flag == "Y")
            .map(|(_, (_, privilege))| privilege.to_string())
            .collect();
        if !held.is_empty() {
            changes.push(Change::new(
                &object(&user, &host),
                format!(
                    "has {} on *.*, which reaches `{}`",
                    list(&held),
                    spec.database
                ),
                "revoked",
                revoke(&held, On::Global, &account(&user, &host))?,
            ));
        }
    }

    for db in spec.databases() {
        // Schema grants, also through wildcard patterns that cover our name.
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), CAST(Db AS CHAR) FROM mysql.db WHERE ? LIKE Db",
        )
        .bind(db)
        .fetch_all(admin)
        .await
        .map_err(DbError::sql(format!("read schema grants on `{db}`")))?;
        for (user, host, pattern) in rows {
            if skip(&user, &host) {
                continue;
            }
            let grantee = format!("'{user}'@'{host}'");
            let privs: Vec<(String, String)> = sqlx::query_as(
                "SELECT CAST(PRIVILEGE_TYPE AS CHAR), CAST(IS_GRANTABLE AS CHAR) \
                 FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND TABLE_SCHEMA = ?",
            )
            .bind(&grantee)
            .bind(&pattern)
            .fetch_all(admin)
            .await
            .map_err(DbError::sql(format!("read schema grants on `{db}`")))?;
            let mut held: BTreeSet<String> = privs.iter().map(|(p, _)| p.clone()).collect();
            if privs.iter().any(|(_, g)| g == "YES") {
                held.insert("GRANT OPTION".into());
            }
            if held.is_empty() {
                // A name information_schema spells differently: revoke everything at this level.
                held.insert("ALL PRIVILEGES".into());
                held.insert("GRANT OPTION".into());
            }
            changes.push(Change::new(
                &object(&user, &host),
                if pattern == schema_pattern(db) || pattern == db {
                    format!("has {} on `{db}`.*", list(&held))
                } else {
                    format!("has {} on `{pattern}`.*, which covers `{db}`", list(&held))
                },
                "revoked",
                revoke(&held, On::Schema(&pattern), &account(&user, &host))?,
            ));
        }

        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), CAST(Table_name AS CHAR), \
             CAST(Table_priv AS CHAR) FROM mysql.tables_priv WHERE Db = ? AND Table_priv <> ''",
        )
        .bind(db)
        .fetch_all(admin)
        .await
        .map_err(DbError::sql(format!("read table grants on `{db}`")))?;
        for (user, host, table, privs) in rows {
            if skip(&user, &host) {
                continue;
            }
            let held = set_privileges(&privs);
            changes.push(Change::new(
                &object(&user, &host),
                format!("has {} on table `{db}`.`{table}`", list(&held)),
                "revoked",
                revoke(&held, On::Table(db, &table), &account(&user, &host))?,
            ));
        }

        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), CAST(Table_name AS CHAR), \
             CAST(Column_name AS CHAR), CAST(Column_priv AS CHAR) FROM mysql.columns_priv \
             WHERE Db = ? AND Column_priv <> ''",
        )
        .bind(db)
        .fetch_all(admin)
        .await
        .map_err(DbError::sql(format!("read column grants on `{db}`")))?;
        for (user, host, table, column, privs) in rows {
            if skip(&user, &host) {
                continue;
            }
            let held = set_privileges(&privs);
            changes.push(Change::new(
                &object(&user, &host),
                format!("has {} on column `{db}`.`{table}`.`{column}`", list(&held)),
                "revoked",
                revoke(
                    &held,
                    On::Column(db, &table, &column),
                    &account(&user, &host),
                )?,
            ));
        }

        for (user, host, (db, name, kind), held) in
            read_routines(admin, Routines::Database(db)).await?
        {
            if skip(&user, &host) {
                continue;
            }
            changes.push(Change::new(
                &object(&user, &host),
                format!(
                    "has {} on {} `{db}`.`{name}`",
                    list(&held),
                    kind.to_ascii_lowercase()
                ),
                "revoked",
                revoke(
                    &held,
                    On::Routine(&kind, &db, &name),
                    &account(&user, &host),
                )?,
            ));
        }
    }
    Ok(changes)
}

/// A `SET` column of the grant tables (`Select,Insert,Grant`) as privilege names.
fn set_privileges(value: &str) -> BTreeSet<String> {
    value
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p {
            "Grant" => "GRANT OPTION".to_string(),
            other => other.to_ascii_uppercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> UserSpec {
        UserSpec {
            name: "books_app".into(),
            hosts: vec!["127.0.0.1".into()],
            password: Secret::new("Pw-0123456789abcdefXYZ"),
            role,
            max_connections: 10,
            locked: false,
            require_tls: true,
        }
    }

    fn matching(role: Role) -> Held {
        Held {
            exists: true,
            plugin: "mysql_native_password".into(),
            auth: "*HASH".into(),
            ssl_type: 1,
            max_connections: 10,
            schemas: [(
                "books".to_string(),
                privileges(role).iter().map(|p| p.to_string()).collect(),
            )]
            .into(),
            ..Held::default()
        }
    }

    #[test]
    fn passwords_have_every_class_and_only_safe_characters() {
        for _ in 0..200 {
            let p = generate_password();
            let s = p.expose();
            assert_eq!(s.len(), PASSWORD_LEN);
            assert!(s.bytes().any(|b| b.is_ascii_uppercase()));
            assert!(s.bytes().any(|b| b.is_ascii_lowercase()));
            assert!(s.bytes().any(|b| b.is_ascii_digit()));
            assert!(s.bytes().any(|b| SPECIAL.contains(&b)));
            assert!(s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || SPECIAL.contains(&b)));
        }
        assert_ne!(generate_password(), generate_password());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-Hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        let u = user(Role::App);
        assert!(!format!("{u:?}").contains("Pw-0123"));
    }

    #[test]
    fn names_are_strict() {
        assert!(validate_database("books_2").is_ok());
        for bad in ["", "Books", "a-b", "a`b", "a'b", "a b", &"x".repeat(65)] {
            assert!(validate_database(bad).is_err(), "{bad:?}");
        }
        assert!(validate_user(&"u".repeat(80)).is_ok());
        assert!(validate_user(&"u".repeat(81)).is_err());
        for good in ["127.0.0.1", "::1", "localhost", "fd00::12"] {
            assert!(validate_host(good, HostPatterns::Refused).is_ok(), "{good}");
        }
        for bad in ["%", "10.0.%", "example.com", "1.2.3.4'", ""] {
            assert!(validate_host(bad, HostPatterns::Refused).is_err(), "{bad}");
        }
        assert!(validate_host("10.0.%", HostPatterns::Allowed).is_ok());
        assert!(validate_host("%", HostPatterns::Allowed).is_ok());
        assert!(validate_host("evil'%", HostPatterns::Allowed).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(literal(r"it's a \ test"), r"'it''s a \\ test'");
        assert_eq!(account("u", "127.0.0.1"), "'u'@'127.0.0.1'");
        assert_eq!(account("role", ""), "'role'");
        assert_eq!(schema_pattern("books_app"), r"books\_app");
    }

    #[test]
    fn spec_problems_are_reported_together() {
        let mut u = user(Role::App);
        u.name = "bad`name".into();
        u.hosts = vec!["%".into()];
        let spec = SchemaSpec {
            database: "x'y".into(),
            users: vec![u],
            extra_databases: vec![],
            host_patterns: HostPatterns::Refused,
        };
        let err = validate_spec(&spec).unwrap_err().to_string();
        assert!(err.contains("database name"), "{err}");
        assert!(err.contains("user name"), "{err}");
        assert!(err.contains("host"), "{err}");
    }

    #[test]
    fn a_host_pattern_needs_the_spec_to_allow_it() {
        let mut u = user(Role::App);
        u.hosts = vec!["%".into(), "10.1.%".into()];
        let mut spec = SchemaSpec {
            database: "books".into(),
            users: vec![u],
            extra_databases: vec![],
            host_patterns: HostPatterns::Refused,
        };
        assert!(validate_spec(&spec).is_err());
        spec.host_patterns = HostPatterns::Allowed;
        validate_spec(&spec).unwrap();
        spec.users[0].hosts = vec!["10.1.%' OR '".into()];
        assert!(validate_spec(&spec).is_err(), "a quote is never a host");
    }

    #[test]
    fn a_matching_account_needs_nothing() {
        let held = matching(Role::App);
        // `books` has no underscore, so its pattern is itself.
        let changes =
            plan_account(&user(Role::App), "127.0.0.1", &["books"], &held, "*hash").unwrap();
        assert!(
            changes.is_empty(),
            "{:?}",
            changes.iter().map(|c| &c.problem).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_missing_account_is_created_then_granted() {
        let changes = plan_account(
            &user(Role::ReadOnly),
            "127.0.0.1",
            &["books_x"],
            &Held::default(),
            "*H",
        )
        .unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].problem, "missing");
        assert!(changes[0].statements[0].starts_with(
            "CREATE USER 'books_app'@'127.0.0.1' IDENTIFIED BY 'Pw-0123456789abcdefXYZ' REQUIRE SSL WITH MAX_USER_CONNECTIONS 10 ACCOUNT UNLOCK"
        ));
        assert_eq!(
            changes[1].statements[0],
            r"GRANT SELECT, SHOW VIEW ON `books\_x`.* TO 'books_app'@'127.0.0.1'"
        );
    }

    #[test]
    fn extras_are_revoked_one_by_one() {
        let mut held = matching(Role::ReadOnly);
        held.auth = "*OTHER".into();
        held.ssl_type = 0;
        held.locked = true;
        held.global.insert("PROCESS".into());
        held.global_grant_option = true;
        held.schemas.get_mut("books").unwrap().insert("DROP".into());
        held.schemas
            .insert("other".into(), ["SELECT".to_string()].into());
        held.tables
            .insert(("books".into(), "t".into()), ["UPDATE".to_string()].into());
        held.columns.insert(
            ("books".into(), "t".into(), "c".into()),
            ["SELECT".to_string()].into(),
        );
        held.roles.insert("admin".into());
        held.proxies.insert(("root".into(), "localhost".into()));
        let changes = plan_account(
            &user(Role::ReadOnly),
            "127.0.0.1",
            &["books"],
            &held,
            "*hash",
        )
        .unwrap();
        let sql: Vec<&str> = changes.iter().map(|c| c.statements[0].as_str()).collect();
        let expected = [
            "ALTER USER 'books_app'@'127.0.0.1' IDENTIFIED BY 'Pw-0123456789abcdefXYZ'",
            "ALTER USER 'books_app'@'127.0.0.1' REQUIRE SSL",
            "ALTER USER 'books_app'@'127.0.0.1' ACCOUNT UNLOCK",
            "REVOKE PROCESS ON *.* FROM 'books_app'@'127.0.0.1'",
            "REVOKE GRANT OPTION ON *.* FROM 'books_app'@'127.0.0.1'",
            "REVOKE DROP ON `books`.* FROM 'books_app'@'127.0.0.1'",
            "REVOKE SELECT ON `other`.* FROM 'books_app'@'127.0.0.1'",
            "REVOKE UPDATE ON `books`.`t` FROM 'books_app'@'127.0.0.1'",
            "REVOKE SELECT (`c`) ON `books`.`t` FROM 'books_app'@'127.0.0.1'",
            "REVOKE `admin` FROM 'books_app'@'127.0.0.1'",
            "REVOKE PROXY ON 'root'@'localhost' FROM 'books_app'@'127.0.0.1'",
        ];
        assert_eq!(sql, expected);
        assert_eq!(
            changes[6].problem,
            "has SELECT on `other`.* which peng did not grant"
        );
    }

    #[test]
    fn revokes_name_each_level_quoted() {
        let privileges: BTreeSet<String> = ["EXECUTE".to_string(), "SELECT".to_string()].into();
        let from = account("u", "::1");
        let statements = [
            revoke(&privileges, On::Global, &from),
            revoke(&privileges, On::Schema(r"books\_x"), &from),
            revoke(&privileges, On::Table("books", "t`1"), &from),
            revoke(&privileges, On::Column("books", "t", "c"), &from),
            revoke(&privileges, On::Routine("PROCEDURE", "books", "p"), &from),
        ];
        let statements: Vec<String> = statements.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            statements,
            [
                "REVOKE EXECUTE, SELECT ON *.* FROM 'u'@'::1'",
                r"REVOKE EXECUTE, SELECT ON `books\_x`.* FROM 'u'@'::1'",
                "REVOKE EXECUTE, SELECT ON `books`.`t``1` FROM 'u'@'::1'",
                "REVOKE EXECUTE (`c`), SELECT (`c`) ON `books`.`t` FROM 'u'@'::1'",
                "REVOKE EXECUTE, SELECT ON PROCEDURE `books`.`p` FROM 'u'@'::1'",
            ]
        );
        assert!(revoke(&privileges, On::Routine("PROC; DROP", "b", "p"), &from).is_err());
    }

    #[test]
    fn odd_privilege_names_never_reach_sql() {
        let mut held = matching(Role::App);
        held.global.insert("SELECT; DROP".into());
        assert!(plan_account(&user(Role::App), "127.0.0.1", &["books"], &held, "*hash").is_err());
    }
}
