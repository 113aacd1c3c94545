//! The platform file, v1: what the platform team offers and what it costs. YAML text →
//! [`Platform`] or every problem at once, with the same diagnostics as the service file.
//!
//! Every key is optional except `apiVersion` and `kind`; a key that is absent takes its value
//! from [`BUILTIN_PLATFORM_YAML`], and a key that is written replaces that value as a whole
//! (a `plans` mapping replaces the built-in plans, it does not add to them). Without a platform
//! file peng uses [`Platform::builtin`]: one machine, two database plans, no shared servers.
//!
//! The rules that need only this file are checked here: a plan may not set a mandatory
//! setting, nor one peng sets for each server itself; `default_shared_server` names a shared
//! server; a shared server runs an offered version; `%` (any host) is refused in `app_hosts`
//! unless the server says `allow_any_host: true`; the isolation's ids stay clear of the
//! system's, and its directories are absolute, without `..`, with `{team}` as their only
//! placeholder. Paths are kept as written; the server resolves relative ones against the
//! directory of the file. Whether a version is installed, and whether peng can sandbox its
//! instances here, are the server's to check when it starts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use peng_core::{ByteSize, TeamName};
use peng_yaml::tree::{Entry, Node, Pos};
use peng_yaml::{
    boolean, bounded_list, bounded_map, fields, integer, non_empty_string, parse_file, section,
    shown, string, suggest, Cx, Diagnostics, Fields,
};

use crate::limits::{MAX_OFFERINGS, MAX_PIDS, MAX_STRING_BYTES};
use crate::model::API_VERSION;
use crate::parse::{db_version, offering_name_problem};

/// The `kind` of a platform file.
pub const PLATFORM_KIND: &str = "platform";

/// The platform peng uses without a platform file, and the defaults of every key of one.
pub const BUILTIN_PLATFORM_YAML: &str = r#"# The built-in platform: one machine, two database plans, no shared servers, instances
# sandboxed when peng can.
apiVersion: peng/v1
kind: platform
capacity: { cpu: 4, memory: 8Gi, disk: 50Gi }
databases:
  versions: ["10.11"]
  plans:
    small:  { memory: 512Mi, disk: 2Gi, max_connections: 100, settings: { innodb_buffer_pool_size: 128M }, price_month: 15 }
    medium: { memory: 2Gi, disk: 20Gi, max_connections: 300, settings: { innodb_buffer_pool_size: 1G }, price_month: 60 }
  mandatory_settings:
    require_secure_transport: "ON"
    tls_version: "TLSv1.2,TLSv1.3"
    local_infile: "OFF"
    skip_name_resolve: "ON"
    symbolic_links: "OFF"
    automatic_sp_privileges: "OFF"
    plugin_load_add: simple_password_check
    simple_password_check_minimal_length: "14"
  shared_servers: {}
prices:
  currency: USD
  cpu_hour: 0.0316
  memory_gib_hour: 0.0042
  disk_gib_month: 0.04
  backup_gib_month: 0.02
  log_gib_month: 0.10
isolation:
  mode: auto
  uids: 70000-79999
  pids: 512
  system_dirs: [/usr, /bin, /sbin, /lib, /lib32, /lib64, /libx32, /etc, /opt]
  service_dirs:
    "*": ["/"]
"#;

/// Server settings peng writes for each server itself (addresses, files, certificates, the
/// plan's connection limit); neither a plan nor `mandatory_settings` may set them.
pub const RESERVED_SETTINGS: &[&str] = &[
    "basedir",
    "bind_address",
    "datadir",
    "log_error",
    "max_connections",
    "pid_file",
    "port",
    "socket",
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
    "tmpdir",
    "user",
];

/// One platform file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Platform {
    /// What peng may hand out on this machine.
    pub capacity: Capacity,
    pub databases: DbOfferings,
    pub prices: Prices,
    pub isolation: Isolation,
}

/// How instances are kept apart: from each other, from other teams and from peng.
#[derive(Debug, Clone, PartialEq)]
pub struct Isolation {
    /// Default [`IsolationMode::Auto`].
    pub mode: IsolationMode,
    /// The uids, and the gids with the same numbers, of the Unix users peng creates, one per
    /// team. Default 70000-79999; never below 1000 (the system's ids) nor above 4294967294.
    pub uids: RangeInclusive<u32>,
    /// The most processes and threads an instance may have when its service file sets no
    /// `resources.pids`. Default 512, 1 to [`MAX_PIDS`].
    pub pids: u32,
    /// Directories every sandbox sees read-only, those of them that exist. Absolute, without
    /// `..`. Default `/usr`, `/bin`, `/sbin`, `/lib`, `/lib32`, `/lib64`, `/libx32`, `/etc`,
    /// `/opt`.
    pub system_dirs: Vec<PathBuf>,
    /// Team name, or [`ANY_TEAM`] for the teams not listed → the directories the team's service
    /// files may be in, absolute, without `..`, with [`TEAM_PLACEHOLDER`] for the team's name.
    /// Default `"*": ["/"]`: anywhere. Read it through [`Isolation::service_dirs_for`].
    pub service_dirs: BTreeMap<String, Vec<String>>,
}

/// The key of [`Isolation::service_dirs`] for every team without an entry of its own.
pub const ANY_TEAM: &str = "*";

/// Written in [`Isolation::service_dirs`], it stands for the team's name.
pub const TEAM_PLACEHOLDER: &str = "{team}";

/// Whether peng sandboxes instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsolationMode {
    /// Sandbox instances when peng can (it runs as root and bubblewrap is installed); run them
    /// as peng's own processes otherwise.
    Auto,
    /// Refuse to start unless instances can be sandboxed.
    Required,
    /// Never sandbox.
    Off,
}

impl IsolationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IsolationMode::Auto => "auto",
            IsolationMode::Required => "required",
            IsolationMode::Off => "off",
        }
    }
}

impl Isolation {
    /// The directories `team`'s service files may be in: its own entry, else the entry for
    /// every other team, else none; with `{team}` replaced by its name.
    pub fn service_dirs_for(&self, team: &TeamName) -> Vec<PathBuf> {
        let dirs = self
            .service_dirs
            .get(team.as_str())
            .or_else(|| self.service_dirs.get(ANY_TEAM));
        dirs.into_iter()
            .flatten()
            .map(|dir| PathBuf::from(dir.replace(TEAM_PLACEHOLDER, team.as_str())))
            .collect()
    }
}

/// What peng may reserve in total: instances' resources plus databases' plans.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// CPUs. Default 4.
    pub cpu: f64,
    /// Default 8Gi.
    pub memory: ByteSize,
    /// Default 50Gi.
    pub disk: ByteSize,
}

/// The database offerings.
#[derive(Debug, Clone, PartialEq)]
pub struct DbOfferings {
    /// Allowed MariaDB versions, `MAJOR.MINOR`, as written. Default `["10.11"]`.
    pub versions: Vec<String>,
    /// Plan name → sizes, limits and price. Default `small` and `medium`.
    pub plans: BTreeMap<String, DbPlan>,
    /// Setting name → value, written into every server peng runs; plans cannot override them.
    pub mandatory_settings: BTreeMap<String, String>,
    /// Registered servers that hold the databases of services with `mode: shared`.
    pub shared_servers: BTreeMap<String, SharedServer>,
    /// As written; see [`Platform::shared_server`] for the one used when a service names none.
    pub default_shared_server: Option<String>,
}

/// One database plan.
#[derive(Debug, Clone, PartialEq)]
pub struct DbPlan {
    /// Memory reserved for the server (and again for its replica).
    pub memory: ByteSize,
    /// Disk reserved for the data (and again for the replica).
    pub disk: ByteSize,
    pub max_connections: u32,
    /// Setting name → value for servers of this plan, after the mandatory ones.
    pub settings: BTreeMap<String, String>,
    /// Price per month of one server of this plan (a replica costs the same again).
    pub price_month: f64,
}

/// A MariaDB server the platform team runs and registers; peng creates databases and users
/// on it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedServer {
    pub host: String,
    /// Default 3306.
    pub port: u16,
    /// A user allowed to create databases and users, and to grant on them.
    pub admin_user: String,
    /// As written; relative paths are resolved against the directory of the platform file.
    pub admin_password_file: String,
    /// CA certificate to verify the server's TLS certificate, as written.
    pub ca: Option<String>,
    /// `MAJOR.MINOR`; one of [`DbOfferings::versions`].
    pub version: String,
    /// Where the services' users may connect from: IP addresses, `localhost`, or `%` (any
    /// host, only with `allow_any_host`). Default `["127.0.0.1"]`.
    pub app_hosts: Vec<String>,
    /// Whether `%` (any host) may appear in `app_hosts`. Default false.
    pub allow_any_host: bool,
    pub capacity: SharedCapacity,
}

/// What a shared server may hold; `None` means no limit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SharedCapacity {
    pub disk: Option<ByteSize>,
    pub databases: Option<u32>,
}

/// What things cost, in `currency`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    /// Three capital letters, like USD or EUR. Default USD.
    pub currency: String,
    /// Per CPU reserved per hour. Default 0.0316.
    pub cpu_hour: f64,
    /// Per GiB of memory reserved per hour. Default 0.0042.
    pub memory_gib_hour: f64,
    /// Per GiB of disk reserved per month. Default 0.04.
    pub disk_gib_month: f64,
    /// Per GiB of backups kept per month. Default 0.02.
    pub backup_gib_month: f64,
    /// Per GiB of logs kept per month. Default 0.10.
    pub log_gib_month: f64,
}

impl Platform {
    /// The platform described by [`BUILTIN_PLATFORM_YAML`].
    pub fn builtin() -> Platform {
        match parse_platform("builtin platform", BUILTIN_PLATFORM_YAML) {
            Ok(platform) => platform,
            // The built-in text is a constant, proven valid by a test.
            Err(diagnostics) => unreachable!("the built-in platform is invalid: {diagnostics}"),
        }
    }

    /// The shared server called `name`, or with `None` the default one: the one named by
    /// `default_shared_server`, else the only shared server when there is exactly one.
    pub fn shared_server(&self, name: Option<&str>) -> Option<(&str, &SharedServer)> {
        let servers = &self.databases.shared_servers;
        let name = match name.or(self.databases.default_shared_server.as_deref()) {
            Some(name) => name,
            None if servers.len() == 1 => servers.keys().next()?.as_str(),
            None => return None,
        };
        servers.get_key_value(name).map(|(k, v)| (k.as_str(), v))
    }
}

/// Parses and validates one platform file. `file_name` is only used in diagnostics.
pub fn parse_platform(file_name: &str, text: &str) -> Result<Platform, Diagnostics> {
    parse_file(
        file_name,
        text,
        "the file is empty; a platform file needs at least 'apiVersion: peng/v1' and 'kind: platform'",
        platform,
    )
}

// The keys of each section.
pub(crate) const TOP_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "capacity",
    "databases",
    "prices",
    "isolation",
];
pub(crate) const CAPACITY_KEYS: &[&str] = &["cpu", "memory", "disk"];
pub(crate) const DATABASES_KEYS: &[&str] = &[
    "versions",
    "plans",
    "mandatory_settings",
    "shared_servers",
    "default_shared_server",
];
pub(crate) const PLAN_KEYS: &[&str] = &[
    "memory",
    "disk",
    "max_connections",
    "settings",
    "price_month",
];
pub(crate) const SERVER_KEYS: &[&str] = &[
    "host",
    "port",
    "admin_user",
    "admin_password_file",
    "ca",
    "version",
    "app_hosts",
    "allow_any_host",
    "capacity",
];
pub(crate) const SERVER_CAPACITY_KEYS: &[&str] = &["disk", "databases"];
pub(crate) const PRICES_KEYS: &[&str] = &[
    "currency",
    "cpu_hour",
    "memory_gib_hour",
    "disk_gib_month",
    "backup_gib_month",
    "log_gib_month",
];
pub(crate) const ISOLATION_KEYS: &[&str] = &["mode", "uids", "pids", "system_dirs", "service_dirs"];

const DEFAULT_APP_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 3306;
const MAX_CONNECTIONS: u64 = 100_000;
const ANY_HOST: &str = "%";
/// Ids below this are the system's own users and groups.
const FIRST_UID: u32 = 1000;
/// `(uid_t) -1` means "no change" to the calls that take ids; the largest id is one less.
const LAST_UID: u32 = u32::MAX - 1;

/// The defaults of every key: the values of [`BUILTIN_PLATFORM_YAML`], which a test keeps
/// equal to this.
fn defaults() -> Platform {
    let settings = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    Platform {
        capacity: Capacity {
            cpu: 4.0,
            memory: ByteSize(8 << 30),
            disk: ByteSize(50 << 30),
        },
        databases: DbOfferings {
            versions: vec!["10.11".to_string()],
            plans: BTreeMap::from([
                (
                    "small".to_string(),
                    DbPlan {
                        memory: ByteSize(512 << 20),
                        disk: ByteSize(2 << 30),
                        max_connections: 100,
                        settings: settings(&[("innodb_buffer_pool_size", "128M")]),
                        price_month: 15.0,
                    },
                ),
                (
                    "medium".to_string(),
                    DbPlan {
                        memory: ByteSize(2 << 30),
                        disk: ByteSize(20 << 30),
                        max_connections: 300,
                        settings: settings(&[("innodb_buffer_pool_size", "1G")]),
                        price_month: 60.0,
                    },
                ),
            ]),
            mandatory_settings: settings(&[
                ("require_secure_transport", "ON"),
                ("tls_version", "TLSv1.2,TLSv1.3"),
                ("local_infile", "OFF"),
                ("skip_name_resolve", "ON"),
                ("symbolic_links", "OFF"),
                ("automatic_sp_privileges", "OFF"),
                ("plugin_load_add", "simple_password_check"),
                ("simple_password_check_minimal_length", "14"),
            ]),
            shared_servers: BTreeMap::new(),
            default_shared_server: None,
        },
        prices: Prices {
            currency: "USD".to_string(),
            cpu_hour: 0.0316,
            memory_gib_hour: 0.0042,
            disk_gib_month: 0.04,
            backup_gib_month: 0.02,
            log_gib_month: 0.10,
        },
        isolation: Isolation {
            mode: IsolationMode::Auto,
            uids: 70_000..=79_999,
            pids: 512,
            system_dirs: [
                "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            service_dirs: BTreeMap::from([(ANY_TEAM.to_string(), vec!["/".to_string()])]),
        },
    }
}

fn platform(cx: &mut Cx, root: &Node) -> Option<Platform> {
    let top = fields(cx, root, Pos::START, "the platform file", TOP_KEYS, &[])?;
    match top.get("apiVersion") {
        None => cx.err(
            Pos::START,
            format!("missing key 'apiVersion'; this peng reads '{API_VERSION}'"),
        ),
        Some(Node::Scalar(s)) if s.value == API_VERSION => {}
        Some(other) => cx.err(
            other.pos(),
            format!(
                "unsupported apiVersion {}; this peng reads '{API_VERSION}'",
                other.describe()
            ),
        ),
    }
    match top.get("kind") {
        None => cx.err(
            Pos::START,
            format!("missing key 'kind'; a platform file says 'kind: {PLATFORM_KIND}'"),
        ),
        Some(Node::Scalar(s)) if s.value == PLATFORM_KIND => {}
        Some(other) => cx.err(
            other.pos(),
            format!(
                "kind {} is not a platform file; write 'kind: {PLATFORM_KIND}'",
                other.describe()
            ),
        ),
    }
    let defaults = defaults();
    let capacity = match top.entry("capacity").filter(|e| !e.value.is_null()) {
        Some(e) => capacity(cx, e, &defaults.capacity),
        None => Some(defaults.capacity),
    };
    let databases = match top.entry("databases").filter(|e| !e.value.is_null()) {
        Some(e) => databases(cx, e, defaults.databases),
        None => Some(defaults.databases),
    };
    let prices = match top.entry("prices").filter(|e| !e.value.is_null()) {
        Some(e) => prices(cx, e, defaults.prices),
        None => Some(defaults.prices),
    };
    let isolation = match top.entry("isolation").filter(|e| !e.value.is_null()) {
        Some(e) => isolation(cx, e, defaults.isolation),
        None => Some(defaults.isolation),
    };
    Some(Platform {
        capacity: capacity?,
        databases: databases?,
        prices: prices?,
        isolation: isolation?,
    })
}

fn isolation(cx: &mut Cx, entry: &Entry, defaults: Isolation) -> Option<Isolation> {
    let f = section(cx, entry, "isolation", ISOLATION_KEYS)?;
    let mode = match f.get("mode") {
        Some(node) => isolation_mode(cx, node, &f.label("mode")),
        None => Some(defaults.mode),
    };
    let uids = match f.get("uids") {
        Some(node) => uid_range(cx, node, &f.label("uids")),
        None => Some(defaults.uids),
    };
    let pids = match f.get("pids") {
        Some(node) => integer(cx, node, &f.label("pids"), 1, u64::from(MAX_PIDS))
            .map(|pids| u32::try_from(pids).unwrap_or(MAX_PIDS)),
        None => Some(defaults.pids),
    };
    let system_dirs = match f.get("system_dirs") {
        Some(node) => absolute_dirs(cx, node, &f.label("system_dirs"), false)
            .map(|dirs| dirs.into_iter().map(PathBuf::from).collect()),
        None => Some(defaults.system_dirs),
    };
    let service_dirs = match f.entry("service_dirs") {
        Some(e) => service_dirs(cx, e),
        None => Some(defaults.service_dirs),
    };
    Some(Isolation {
        mode: mode?,
        uids: uids?,
        pids: pids?,
        system_dirs: system_dirs?,
        service_dirs: service_dirs?,
    })
}

fn isolation_mode(cx: &mut Cx, node: &Node, label: &str) -> Option<IsolationMode> {
    const MODES: [IsolationMode; 3] = [
        IsolationMode::Auto,
        IsolationMode::Required,
        IsolationMode::Off,
    ];
    let s = string(cx, node, label, "auto, required or off")?;
    if let Some(mode) = MODES.into_iter().find(|m| m.as_str() == s.value) {
        return Some(mode);
    }
    let mut message = format!("{label}: unknown mode '{}'", shown(&s.value));
    match suggest(&s.value, MODES.iter().map(|m| m.as_str())) {
        Some(close) => message.push_str(&format!("; did you mean '{close}'?")),
        None => message.push_str("; use auto, required or off"),
    }
    cx.err(s.pos, message);
    None
}

/// `FIRST-LAST`, both ids of users peng may create.
fn uid_range(cx: &mut Cx, node: &Node, label: &str) -> Option<RangeInclusive<u32>> {
    let s = string(cx, node, label, "a range of ids like 70000-79999")?;
    // `None`: not a number; `Some(None)`: a number too large for an id.
    let id = |text: &str| -> Option<Option<u32>> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(text.parse::<u32>().ok().filter(|id| *id <= LAST_UID))
    };
    let Some((Some(first), Some(last))) = s
        .value
        .split_once('-')
        .and_then(|(first, last)| Some((id(first)?, id(last)?)))
    else {
        let message = match s.value.split_once('-').map(|(a, b)| (id(a), id(b))) {
            Some((Some(_), Some(_))) => format!(
                "{label}: '{}' goes past the largest id, {LAST_UID}",
                s.value
            ),
            _ => format!(
                "{label}: expected FIRST-LAST like 70000-79999, found '{}'",
                shown(&s.value)
            ),
        };
        cx.err(s.pos, message);
        return None;
    };
    if first < FIRST_UID {
        cx.err(
            s.pos,
            format!(
                "{label}: {first} is among the system's ids (below {FIRST_UID}); start at {FIRST_UID} or above"
            ),
        );
        return None;
    }
    if first > last {
        cx.err(
            s.pos,
            format!("{label}: {first} comes after {last}; write the first id, '-', then the last"),
        );
        return None;
    }
    Some(first..=last)
}

/// A list of absolute directories without `..` or NUL bytes, as written. With `templates`,
/// `{team}` may appear in them and no other `{` or `}`.
fn absolute_dirs(cx: &mut Cx, node: &Node, label: &str, templates: bool) -> Option<Vec<String>> {
    let seq = bounded_list(
        cx,
        node,
        label,
        "a list of directories like [/usr, /opt]",
        "directories",
        MAX_OFFERINGS,
        None,
    )?;
    let mut out = Vec::with_capacity(seq.items.len());
    let mut ok = true;
    for item in &seq.items {
        let Some(s) = non_empty_string(cx, item, label, "an absolute directory") else {
            ok = false;
            continue;
        };
        let value = s.value.as_str();
        let problem = if value.contains('\0') {
            Some(format!(
                "'{}' contains a NUL byte, which no path can hold",
                shown(value)
            ))
        } else if !value.starts_with('/') {
            Some(format!(
                "'{value}' must be an absolute path, starting with '/'"
            ))
        } else if value.split('/').any(|part| part == "..") {
            Some(format!(
                "'{value}' must not contain '..'; write the directory it leads to"
            ))
        } else if templates && value.replace(TEAM_PLACEHOLDER, "").contains(['{', '}']) {
            Some(format!(
                "'{value}' has a '{{' or '}}' that is not part of {TEAM_PLACEHOLDER}, the only placeholder"
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => {
                cx.err(s.pos, format!("{label}: {problem}"));
                ok = false;
            }
            None => out.push(value.to_string()),
        }
    }
    ok.then_some(out)
}

/// Team name or `*` → directories, `{team}` allowed in them.
fn service_dirs(cx: &mut Cx, entry: &Entry) -> Option<BTreeMap<String, Vec<String>>> {
    let what = "isolation.service_dirs";
    let map = limited_map(
        cx,
        entry,
        &format!("'{what}'"),
        "team name (or \"*\" for every other team) to directories",
        "teams",
        false,
    )?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for team in map {
        let key = team.key.as_str();
        let key_ok = key == ANY_TEAM || TeamName::parse(key).is_ok();
        if !key_ok {
            let why = match TeamName::parse(key) {
                Err(e) => shown(&e.to_string()),
                Ok(_) => String::new(),
            };
            cx.err(
                team.key_pos,
                format!("{what}: {why}; or write \"*\" for every team not listed"),
            );
        }
        let label = format!("'{}' in {what}", shown(key));
        match absolute_dirs(cx, &team.value, &label, true) {
            Some(dirs) if key_ok => {
                out.insert(key.to_string(), dirs);
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn capacity(cx: &mut Cx, entry: &Entry, defaults: &Capacity) -> Option<Capacity> {
    let f = section(cx, entry, "capacity", CAPACITY_KEYS)?;
    let cpu = match f.get("cpu") {
        Some(node) => number(cx, node, &f.label("cpu"), "a number of CPUs greater than 0")
            .and_then(|cpu| positive(cx, node, &f.label("cpu"), cpu)),
        None => Some(defaults.cpu),
    };
    let memory = optional_size(cx, &f, "memory", defaults.memory);
    let disk = optional_size(cx, &f, "disk", defaults.disk);
    Some(Capacity {
        cpu: cpu?,
        memory: memory?,
        disk: disk?,
    })
}

fn databases(cx: &mut Cx, entry: &Entry, defaults: DbOfferings) -> Option<DbOfferings> {
    let f = section(cx, entry, "databases", DATABASES_KEYS)?;
    let versions = match f.entry("versions") {
        Some(e) => versions(cx, e),
        None => Some(defaults.versions),
    };
    let mandatory = match f.entry("mandatory_settings") {
        Some(e) => settings(cx, e, "databases.mandatory_settings", &BTreeSet::new()),
        None => Some(defaults.mandatory_settings.clone()),
    };
    // The names plans may not set, as written even when a value of the section is broken, so
    // that an override is reported whatever else is wrong.
    let mandatory_names: BTreeSet<&str> = match f.entry("mandatory_settings") {
        Some(Entry {
            value: Node::Map(map),
            ..
        }) => map.entries.iter().map(|e| e.key.as_str()).collect(),
        Some(_) => BTreeSet::new(),
        None => defaults
            .mandatory_settings
            .keys()
            .map(String::as_str)
            .collect(),
    };
    let plans = match f.entry("plans") {
        Some(e) => plans(cx, e, &mandatory_names),
        None => {
            // The built-in plans must not clash with mandatory settings written in the file.
            let clash = defaults
                .plans
                .values()
                .flat_map(|p| p.settings.keys())
                .find(|k| mandatory_names.contains(k.as_str()));
            match clash {
                Some(name) => {
                    cx.err(
                        f.at,
                        format!(
                            "mandatory setting '{name}' is also set by a built-in plan; write 'plans' too"
                        ),
                    );
                    None
                }
                None => Some(defaults.plans.clone()),
            }
        }
    };
    let servers = match f.entry("shared_servers").filter(|e| !e.value.is_null()) {
        Some(e) => shared_servers(cx, e, versions.as_deref()),
        None => Some(defaults.shared_servers),
    };
    let default_server = match f.get("default_shared_server") {
        Some(node) => {
            let s = string(
                cx,
                node,
                &f.label("default_shared_server"),
                "a shared server name",
            )?;
            match &servers {
                Some(servers) if !servers.contains_key(&s.value) => {
                    let mut message = format!(
                        "{}: there is no shared server '{}'",
                        f.label("default_shared_server"),
                        s.value
                    );
                    if servers.is_empty() {
                        message.push_str("; declare it under databases.shared_servers");
                    } else {
                        let names: Vec<&str> = servers.keys().map(String::as_str).collect();
                        message.push_str(&format!("; the shared servers are {}", names.join(", ")));
                    }
                    cx.err(s.pos, message);
                    None
                }
                _ => Some(Some(s.value.clone())),
            }
        }
        None => Some(None),
    };
    Some(DbOfferings {
        versions: versions?,
        plans: plans?,
        mandatory_settings: mandatory?,
        shared_servers: servers?,
        default_shared_server: default_server?,
    })
}

fn versions(cx: &mut Cx, entry: &Entry) -> Option<Vec<String>> {
    let label = "'versions' in databases";
    let seq = bounded_list(
        cx,
        &entry.value,
        label,
        "a list of versions like [\"10.11\"]",
        "versions",
        MAX_OFFERINGS,
        None,
    )?;
    let mut out: Vec<String> = Vec::with_capacity(seq.items.len());
    let mut ok = true;
    for item in &seq.items {
        match db_version(cx, item, label) {
            Some(v) if out.contains(&v) => {
                cx.err(item.pos(), format!("{label}: '{v}' is listed twice"));
                ok = false;
            }
            Some(v) => out.push(v),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A mapping of server setting name → value. Names in `mandatory` are refused (a plan cannot
/// override a mandatory setting).
fn settings(
    cx: &mut Cx,
    entry: &Entry,
    what: &str,
    mandatory: &BTreeSet<&str>,
) -> Option<BTreeMap<String, String>> {
    let map = limited_map(cx, entry, what, "setting name to value", "settings", true)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for setting in map {
        let name = setting.key.as_str();
        let well_formed = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !well_formed {
            let hint = if name.contains('-') {
                format!("; write it '{}'", name.replace('-', "_"))
            } else {
                String::new()
            };
            cx.err(
                setting.key_pos,
                format!("{what}: setting name '{name}' may contain only a-z, 0-9 and '_'{hint}"),
            );
            ok = false;
            continue;
        }
        if RESERVED_SETTINGS.contains(&name) {
            let why = if name == "max_connections" {
                "it is the plan's 'max_connections'"
            } else {
                "peng sets it for each server"
            };
            cx.err(
                setting.key_pos,
                format!("{what}: '{name}' cannot be set here; {why}"),
            );
            ok = false;
            continue;
        }
        if mandatory.contains(name) {
            cx.err(
                setting.key_pos,
                format!(
                    "{what}: '{name}' is a mandatory setting of the platform; a plan cannot override it"
                ),
            );
            ok = false;
            continue;
        }
        match setting_value(cx, &setting.value, &format!("setting '{name}' in {what}")) {
            Some(value) => {
                out.insert(name.to_string(), value);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A setting's value: a string, or a number or word kept as written. One line, no control
/// characters, since it is written into a server's option file.
fn setting_value(cx: &mut Cx, node: &Node, label: &str) -> Option<String> {
    let s = match node {
        Node::Scalar(s) => s,
        other => {
            cx.err(
                other.pos(),
                format!("{label}: expected a value, found {}", other.describe()),
            );
            return None;
        }
    };
    // `name: ""` is a value (an empty one); `name:` alone is not.
    if s.is_null() {
        cx.err(
            s.pos,
            format!("{label}: expected a value, found nothing; write \"\" for an empty one"),
        );
        return None;
    }
    if s.value.chars().any(char::is_control) {
        cx.err(
            s.pos,
            format!("{label}: the value must be one line without control characters"),
        );
        return None;
    }
    Some(s.value.clone())
}

fn plans(
    cx: &mut Cx,
    entry: &Entry,
    mandatory: &BTreeSet<&str>,
) -> Option<BTreeMap<String, DbPlan>> {
    named_entries(cx, entry, "databases.plans", "plan", |cx, e| {
        plan(cx, e, mandatory)
    })
}

/// A map of named offerings: every name checked, every entry parsed by `parse`; `None` when any
/// name or entry had an error (all of them reported).
fn named_entries<T>(
    cx: &mut Cx,
    entry: &Entry,
    path: &str,
    what: &str,
    mut parse: impl FnMut(&mut Cx, &Entry) -> Option<T>,
) -> Option<BTreeMap<String, T>> {
    let map = limited_map(
        cx,
        entry,
        &format!("'{path}'"),
        &format!("{what} name to {what}"),
        &format!("{what}s"),
        true,
    )?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for item in &map {
        let name = item.key.as_str();
        let name_ok = match offering_name_problem(&format!("{what} name"), name) {
            Some(problem) => {
                cx.err(item.key_pos, problem);
                false
            }
            None => true,
        };
        match parse(cx, item) {
            Some(value) if name_ok => {
                out.insert(name.to_string(), value);
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn plan(cx: &mut Cx, entry: &Entry, mandatory: &BTreeSet<&str>) -> Option<DbPlan> {
    let what = format!("plan '{}'", entry.key);
    let f = section(cx, entry, &what, PLAN_KEYS)?;
    let memory = f
        .require(cx, "memory")
        .and_then(|node| size(cx, node, &f.label("memory")));
    let disk = f
        .require(cx, "disk")
        .and_then(|node| size(cx, node, &f.label("disk")));
    let max_connections = f.require(cx, "max_connections").and_then(|node| {
        integer(cx, node, &f.label("max_connections"), 1, MAX_CONNECTIONS)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    });
    let settings = match f.entry("settings") {
        Some(e) => settings(cx, e, &format!("'settings' of {what}"), mandatory),
        None => Some(BTreeMap::new()),
    };
    let price_month = f.require(cx, "price_month").and_then(|node| {
        number(
            cx,
            node,
            &f.label("price_month"),
            "a price like 15 or 15.50",
        )
        .and_then(|p| not_negative(cx, node, &f.label("price_month"), p))
    });
    Some(DbPlan {
        memory: memory?,
        disk: disk?,
        max_connections: max_connections?,
        settings: settings?,
        price_month: price_month?,
    })
}

fn shared_servers(
    cx: &mut Cx,
    entry: &Entry,
    versions: Option<&[String]>,
) -> Option<BTreeMap<String, SharedServer>> {
    named_entries(
        cx,
        entry,
        "databases.shared_servers",
        "shared server",
        |cx, e| shared_server(cx, e, versions),
    )
}

fn shared_server(cx: &mut Cx, entry: &Entry, versions: Option<&[String]>) -> Option<SharedServer> {
    let what = format!("shared server '{}'", entry.key);
    let f = section(cx, entry, &what, SERVER_KEYS)?;
    let host = f
        .require(cx, "host")
        .and_then(|node| host(cx, node, &f.label("host")));
    let port = match f.get("port") {
        Some(node) => integer(cx, node, &f.label("port"), 1, 65535)
            .map(|p| u16::try_from(p).unwrap_or(DEFAULT_PORT)),
        None => Some(DEFAULT_PORT),
    };
    let admin_user = f.require(cx, "admin_user").and_then(|node| {
        let s = non_empty_string(cx, node, &f.label("admin_user"), "a user name")?;
        let ok = s.value.len() <= 80
            && s.value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            cx.err(
                s.pos,
                format!(
                    "{}: '{}' must be at most 80 characters of a-z, A-Z, 0-9, '_', '-' and '.'",
                    f.label("admin_user"),
                    s.value
                ),
            );
            return None;
        }
        Some(s.value.clone())
    });
    let password_file = f.require(cx, "admin_password_file").and_then(|node| {
        non_empty_string(cx, node, &f.label("admin_password_file"), "a file path")
            .map(|s| s.value.clone())
    });
    let ca = match f.get("ca") {
        Some(node) => {
            non_empty_string(cx, node, &f.label("ca"), "a file path").map(|s| Some(s.value.clone()))
        }
        None => Some(None),
    };
    let version = f.require(cx, "version").and_then(|node| {
        let version = db_version(cx, node, &f.label("version"))?;
        match versions {
            Some(offered) if !offered.contains(&version) => {
                cx.err(
                    node.pos(),
                    format!(
                        "{what} runs {version}, which is not among databases.versions ({})",
                        offered.join(", ")
                    ),
                );
                None
            }
            _ => Some(version),
        }
    });
    let allow_any_host = match f.get("allow_any_host") {
        Some(node) => match boolean(node) {
            Some(b) => Some(b),
            None => {
                cx.err(
                    node.pos(),
                    format!(
                        "{}: expected true or false, found {}",
                        f.label("allow_any_host"),
                        node.describe()
                    ),
                );
                None
            }
        },
        None => Some(false),
    };
    let app_hosts = match f.get("app_hosts") {
        Some(node) => app_hosts(cx, node, &f, allow_any_host.unwrap_or(true)),
        None => Some(vec![DEFAULT_APP_HOST.to_string()]),
    };
    let capacity = match f.entry("capacity").filter(|e| !e.value.is_null()) {
        Some(e) => {
            let capacity_what = format!("'capacity' of {what}");
            section(cx, e, &capacity_what, SERVER_CAPACITY_KEYS).and_then(|g| {
                let disk = match g.get("disk") {
                    Some(node) => size(cx, node, &g.label("disk")).map(Some),
                    None => Some(None),
                };
                let databases = match g.get("databases") {
                    Some(node) => integer(cx, node, &g.label("databases"), 1, 1_000_000)
                        .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX))),
                    None => Some(None),
                };
                Some(SharedCapacity {
                    disk: disk?,
                    databases: databases?,
                })
            })
        }
        None => Some(SharedCapacity::default()),
    };
    Some(SharedServer {
        host: host?,
        port: port?,
        admin_user: admin_user?,
        admin_password_file: password_file?,
        ca: ca?,
        version: version?,
        app_hosts: app_hosts?,
        allow_any_host: allow_any_host?,
        capacity: capacity?,
    })
}

fn app_hosts(
    cx: &mut Cx,
    node: &Node,
    f: &Fields<'_>,
    allow_any_host: bool,
) -> Option<Vec<String>> {
    let label = f.label("app_hosts");
    let Node::Seq(seq) = node else {
        cx.err(
            node.pos(),
            format!(
                "{label}: expected a list of hosts like [\"127.0.0.1\"], found {}",
                node.describe()
            ),
        );
        return None;
    };
    if seq.items.is_empty() || seq.items.len() > MAX_OFFERINGS {
        cx.err(seq.pos, format!("{label}: name 1 to {MAX_OFFERINGS} hosts"));
        return None;
    }
    let mut out = Vec::with_capacity(seq.items.len());
    let mut ok = true;
    for item in &seq.items {
        let Some(s) = non_empty_string(cx, item, &label, "an IP address") else {
            ok = false;
            continue;
        };
        let host = s.value.as_str();
        if host == ANY_HOST && !allow_any_host {
            cx.err(
                s.pos,
                format!(
                    "{label}: '%' lets the services' users connect from any host; write the addresses they connect from, or set 'allow_any_host: true' in {}",
                    f.what
                ),
            );
            ok = false;
        } else if host != ANY_HOST && host != "localhost" && host.parse::<IpAddr>().is_err() {
            cx.err(
                s.pos,
                format!(
                    "{label}: '{host}' is not an IP address; write addresses like 127.0.0.1 or ::1, 'localhost', or '%' for any host"
                ),
            );
            ok = false;
        } else {
            out.push(host.to_string());
        }
    }
    ok.then_some(out)
}

/// A host name or address to connect to.
fn host(cx: &mut Cx, node: &Node, label: &str) -> Option<String> {
    let s = non_empty_string(cx, node, label, "a host name or address")?;
    let ok = s.value.len() <= 255
        && s.value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    if !ok {
        cx.err(
            s.pos,
            format!(
                "{label}: '{}' may contain only letters, digits, '.', '-', ':' and '_'",
                s.value
            ),
        );
        return None;
    }
    Some(s.value.clone())
}

fn prices(cx: &mut Cx, entry: &Entry, defaults: Prices) -> Option<Prices> {
    let f = section(cx, entry, "prices", PRICES_KEYS)?;
    let currency = match f.get("currency") {
        Some(node) => string(cx, node, &f.label("currency"), "a currency code like EUR").and_then(
            |s| {
                if s.value.len() == 3 && s.value.bytes().all(|b| b.is_ascii_uppercase()) {
                    Some(s.value.clone())
                } else {
                    cx.err(
                        s.pos,
                        format!(
                            "{}: '{}' is not a currency code; write three capital letters like EUR or USD",
                            f.label("currency"),
                            s.value
                        ),
                    );
                    None
                }
            },
        ),
        None => Some(defaults.currency),
    };
    let mut price = |key: &str, default: f64| match f.get(key) {
        Some(node) => number(cx, node, &f.label(key), "a price like 0.04")
            .and_then(|p| not_negative(cx, node, &f.label(key), p)),
        None => Some(default),
    };
    let cpu_hour = price("cpu_hour", defaults.cpu_hour);
    let memory_gib_hour = price("memory_gib_hour", defaults.memory_gib_hour);
    let disk_gib_month = price("disk_gib_month", defaults.disk_gib_month);
    let backup_gib_month = price("backup_gib_month", defaults.backup_gib_month);
    let log_gib_month = price("log_gib_month", defaults.log_gib_month);
    Some(Prices {
        currency: currency?,
        cpu_hour: cpu_hour?,
        memory_gib_hour: memory_gib_hour?,
        disk_gib_month: disk_gib_month?,
        backup_gib_month: backup_gib_month?,
        log_gib_month: log_gib_month?,
    })
}

/// A mapping (of `expected`, as the error says) with at most `MAX_OFFERINGS` entries, called
/// `items` in the count's error; `what` names it in errors as it is. A null value is an empty mapping when `null_is_empty`, else an
/// error (where an emptied section must not quietly mean a default).
fn limited_map<'a>(
    cx: &mut Cx,
    entry: &'a Entry,
    what: &str,
    expected: &str,
    items: &str,
    null_is_empty: bool,
) -> Option<Vec<&'a Entry>> {
    if null_is_empty && entry.value.is_null() {
        return Some(Vec::new());
    }
    let map = bounded_map(
        cx,
        entry,
        what,
        &format!("a mapping of {expected}"),
        &format!("{items} declared in {what}"),
        MAX_OFFERINGS,
    )?;
    Some(map.entries.iter().collect())
}

/// A number written without quotes.
fn number(cx: &mut Cx, node: &Node, label: &str, expected: &str) -> Option<f64> {
    let parsed = match node {
        Node::Scalar(s) if !s.quoted && s.value.len() < MAX_STRING_BYTES => {
            s.value.parse::<f64>().ok().filter(|v| v.is_finite())
        }
        _ => None,
    };
    if parsed.is_none() {
        cx.err(
            node.pos(),
            format!("{label}: expected {expected}, found {}", node.describe()),
        );
    }
    parsed
}

fn positive(cx: &mut Cx, node: &Node, label: &str, value: f64) -> Option<f64> {
    if value > 0.0 {
        return Some(value);
    }
    cx.err(node.pos(), format!("{label}: must be more than 0"));
    None
}

fn not_negative(cx: &mut Cx, node: &Node, label: &str, value: f64) -> Option<f64> {
    if value >= 0.0 {
        return Some(value);
    }
    cx.err(node.pos(), format!("{label}: must not be negative"));
    None
}

/// A size like 512Mi, more than 0.
fn size(cx: &mut Cx, node: &Node, label: &str) -> Option<ByteSize> {
    let s = string(cx, node, label, "a size like 512Mi")?;
    match ByteSize::parse(&s.value) {
        Ok(size) if size.bytes() > 0 => Some(size),
        Ok(_) => {
            cx.err(s.pos, format!("{label}: must be more than 0"));
            None
        }
        Err(e) => {
            cx.err(s.pos, format!("{label}: {e}"));
            None
        }
    }
}

fn optional_size(cx: &mut Cx, f: &Fields<'_>, key: &str, default: ByteSize) -> Option<ByteSize> {
    match f.get(key) {
        Some(node) => size(cx, node, &f.label(key)),
        None => Some(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: peng/v1\nkind: platform\n";

    fn messages(text: &str) -> Vec<String> {
        match parse_platform("platform.yaml", text) {
            Ok(p) => panic!("expected errors, got {p:?}"),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_builtin_parses_and_equals_the_defaults() {
        let builtin = parse_platform("builtin", BUILTIN_PLATFORM_YAML).expect("builtin is valid");
        assert_eq!(builtin, defaults());
        assert_eq!(Platform::builtin(), builtin);
        assert_eq!(parse_platform("platform.yaml", HEAD), Ok(builtin));
    }

    #[test]
    fn builtin_settings_are_neither_reserved_nor_overridden() {
        let builtin = Platform::builtin();
        let mandatory = &builtin.databases.mandatory_settings;
        for name in mandatory.keys() {
            assert!(!RESERVED_SETTINGS.contains(&name.as_str()), "{name}");
        }
        for plan in builtin.databases.plans.values() {
            assert!(plan.settings.keys().all(|k| !mandatory.contains_key(k)));
        }
    }

    #[test]
    fn the_default_shared_server_is_the_named_or_the_only_one() {
        let one = format!(
            "{HEAD}databases:\n  shared_servers:\n    shared-1: {{ host: db1.internal, admin_user: peng_admin, admin_password_file: p1, version: '10.11' }}\n"
        );
        let p = parse_platform("platform.yaml", &one).unwrap();
        assert_eq!(p.shared_server(None).map(|(n, _)| n), Some("shared-1"));
        assert_eq!(p.shared_server(Some("shared-1")).unwrap().1.port, 3306);
        assert!(p.shared_server(Some("other")).is_none());

        let two = format!(
            "{one}    shared-2: {{ host: db2.internal, admin_user: peng_admin, admin_password_file: p2, version: '10.11' }}\n"
        );
        let p = parse_platform("platform.yaml", &two).unwrap();
        assert!(p.shared_server(None).is_none());
        let named = format!("{two}  default_shared_server: shared-2\n");
        let p = parse_platform("platform.yaml", &named).unwrap();
        assert_eq!(p.shared_server(None).map(|(n, _)| n), Some("shared-2"));
        assert!(Platform::builtin().shared_server(None).is_none());
    }

    #[test]
    fn kind_and_api_version_are_required() {
        assert_eq!(
            messages("capacity: { cpu: 2 }\n"),
            vec![
                "platform.yaml:1:1: missing key 'apiVersion'; this peng reads 'peng/v1'",
                "platform.yaml:1:1: missing key 'kind'; a platform file says 'kind: platform'",
            ]
        );
        assert_eq!(
            messages("apiVersion: peng/v1\nkind: service\n"),
            vec![
                "platform.yaml:2:7: kind 'service' is not a platform file; write 'kind: platform'"
            ]
        );
    }

    #[test]
    fn a_written_key_replaces_only_its_default() {
        let text = format!("{HEAD}capacity: {{ cpu: 16 }}\nprices: {{ currency: EUR }}\n");
        let p = parse_platform("platform.yaml", &text).unwrap();
        assert_eq!(p.capacity.cpu, 16.0);
        assert_eq!(p.capacity.memory, ByteSize(8 << 30));
        assert_eq!(p.prices.currency, "EUR");
        assert_eq!(p.prices.cpu_hour, 0.0316);
    }

    #[test]
    fn service_dirs_are_the_teams_own_or_the_default() {
        let text = format!(
            "{HEAD}isolation:\n  service_dirs:\n    \"*\": [\"/srv/peng/{{team}}\", /srv/all]\n    books: [\"/home/{{team}}/{{team}}-svc\"]\n    quiet: []\n"
        );
        let isolation = parse_platform("platform.yaml", &text).unwrap().isolation;
        let team = |name: &str| TeamName::parse(name).unwrap();
        assert_eq!(
            isolation.service_dirs_for(&team("books")),
            [PathBuf::from("/home/books/books-svc")]
        );
        assert_eq!(
            isolation.service_dirs_for(&team("web")),
            [PathBuf::from("/srv/peng/web"), PathBuf::from("/srv/all")]
        );
        assert!(isolation.service_dirs_for(&team("quiet")).is_empty());
        let text = format!("{HEAD}isolation: {{ service_dirs: {{ books: [/srv/books] }} }}\n");
        let isolation = parse_platform("platform.yaml", &text).unwrap().isolation;
        assert!(isolation.service_dirs_for(&team("web")).is_empty());
        assert_eq!(
            Platform::builtin().isolation.service_dirs_for(&team("web")),
            [PathBuf::from("/")]
        );
    }

    #[test]
    fn uids_stay_between_the_system_and_the_largest_id() {
        let uids = |range: &str| {
            let text = format!("{HEAD}isolation: {{ uids: '{range}' }}\n");
            parse_platform("platform.yaml", &text).map(|p| p.isolation.uids)
        };
        assert_eq!(uids("1000-4294967294"), Ok(1000..=4_294_967_294));
        assert_eq!(uids("5000-5000"), Ok(5000..=5000));
        assert_eq!(uids(" 70000 - 70009 "), Ok(70_000..=70_009));
        for bad in [
            "999-2000",
            "2000-4294967295",
            "70000",
            "-",
            "a-b",
            "+1000-2000",
            "1000-99999999999999999999",
        ] {
            assert!(uids(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mode_and_pids() {
        for mode in [
            IsolationMode::Auto,
            IsolationMode::Required,
            IsolationMode::Off,
        ] {
            let text = format!("{HEAD}isolation: {{ mode: {}, pids: 1 }}\n", mode.as_str());
            let isolation = parse_platform("platform.yaml", &text).unwrap().isolation;
            assert_eq!((isolation.mode, isolation.pids), (mode, 1));
        }
    }

    #[test]
    fn settings_values_are_kept_as_written() {
        let text = format!(
            "{HEAD}databases:\n  mandatory_settings: {{ long_query_time: 2.50, local_infile: OFF, secure_file_priv: \"\" }}\n"
        );
        let p = parse_platform("platform.yaml", &text).unwrap();
        let m = &p.databases.mandatory_settings;
        assert_eq!(m["long_query_time"], "2.50");
        assert_eq!(m["local_infile"], "OFF");
        assert_eq!(m["secure_file_priv"], "");
    }
}
