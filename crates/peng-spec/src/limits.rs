//! The limits of a service file and of the platform file. They keep a hostile or broken file cheap to refuse: every
//! one is checked before or while the file is read, and each breach is a diagnostic like any
//! other, never a panic.
//!
//! | what | limit |
//! |---|---|
//! | file size | 256 KiB ([`MAX_FILE_BYTES`]) |
//! | one string (key or value) | 4 KiB ([`MAX_STRING_BYTES`]) |
//! | nesting of lists and mappings | 16 levels ([`MAX_DEPTH`]) |
//! | YAML anchors, aliases, tags, several documents | refused |
//! | stages | 20 ([`MAX_STAGES`]), each with 0 to 100 instances ([`MAX_INSTANCES`]) |
//! | environment variables | 200 ([`MAX_ENV`]) |
//! | writable directories of an instance | 16 ([`MAX_WRITABLE`]) |
//! | processes and threads of an instance | 65536 ([`MAX_PIDS`]) |
//! | sensors | 200 ([`MAX_SENSORS`]), each with at most 20 conditions ([`MAX_CONDITIONS`]) |
//! | alerts | 200 ([`MAX_ALERTS`]) |
//! | action plans | 50 ([`MAX_ACTION_PLANS`]), each notifying at most 20 targets ([`MAX_NOTIFY`]) |
//! | log retention | 365 days ([`MAX_RETENTION`]) |
//! | an sql sensor's query | 4096 bytes, one statement ([`MAX_SQL_QUERY_BYTES`]) |
//! | a log sensor's query and window | 1024 bytes ([`MAX_LOG_QUERY_BYTES`]); 1m to 24h |
//! | database backups | every 1m or more ([`MIN_BACKUP_EVERY`]), kept at most 3650 days ([`MAX_BACKUP_RETENTION`]) |
//! | names of database plans and shared servers | 32 characters ([`MAX_OFFERING_NAME`]) |
//! | platform file: plans, shared servers, versions, settings per list; isolation's directories per list and teams | 100 each ([`MAX_OFFERINGS`]) |

use peng_core::Duration;

pub use peng_sensors::log::MAX_LOG_QUERY_BYTES;
pub use peng_sensors::sql::MAX_SQL_QUERY_BYTES;
pub use peng_yaml::limits::{MAX_DEPTH, MAX_FILE_BYTES, MAX_STRING_BYTES};

pub const MAX_STAGES: usize = 20;
pub const MAX_INSTANCES: u32 = 100;
pub const MAX_ENV: usize = 200;
pub const MAX_WRITABLE: usize = 16;
pub const MAX_PIDS: u32 = 65_536;
pub const MAX_SENSORS: usize = 200;
pub const MAX_CONDITIONS: usize = 20;
pub const MAX_ALERTS: usize = 200;
pub const MAX_ACTION_PLANS: usize = 50;
pub const MAX_NOTIFY: usize = 20;
pub const MAX_RETENTION: Duration = Duration::from_secs(365 * 86_400);
pub const MIN_BACKUP_EVERY: Duration = Duration::from_secs(60);
pub const MAX_BACKUP_RETENTION: Duration = Duration::from_secs(3650 * 86_400);
pub const MAX_OFFERING_NAME: usize = 32;
pub const MAX_OFFERINGS: usize = 100;
