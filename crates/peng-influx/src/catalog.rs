//! Team databases: `ROOT/TEAM/DB/`, each a [`Database`]: a peng-tsdb store of raw values with
//! one of 5-minute rollups inside it.
//!
//! A database is named by the team that owns it and its name, so two teams may both have a
//! `telegraf` database and neither can name the other's: the team always comes from the
//! caller's token, never from the request. Stores are opened on first use and stay open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use peng_core::TeamName;
use peng_tsdb::{Tsdb, TsdbError};

use crate::database::Database;

/// The read-only database every team sees: peng's own series about it (sensor results,
/// instance usage), from the platform's store, only those tagged with the team.
pub const OWN_DATABASE: &str = "peng";

/// Most databases one team may have.
pub const MAX_DATABASES_PER_TEAM: usize = 64;
/// Longest database name.
pub const MAX_DATABASE_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("database not found: \"{0}\"")]
    NotFound(String),
    #[error("invalid database name \"{name}\": {why}")]
    BadName { name: String, why: &'static str },
    #[error("a team may have at most {MAX_DATABASES_PER_TEAM} databases")]
    TooMany,
    #[error("database \"{OWN_DATABASE}\" is peng's record of the team: read-only")]
    ReadOnly,
    #[error(transparent)]
    Tsdb(#[from] TsdbError),
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Every team's databases.
pub struct Catalog {
    root: PathBuf,
    open: Mutex<HashMap<(TeamName, String), Arc<Database>>>,
    /// The platform's store, seen by each team as [`OWN_DATABASE`].
    own: Option<Arc<Tsdb>>,
}

/// Checks a database name: it becomes a directory name.
pub fn check_name(name: &str) -> Result<(), CatalogError> {
    let bad = |why| {
        Err(CatalogError::BadName {
            name: name.chars().take(80).collect(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_DATABASE_NAME {
        return bad("longer than 64 bytes");
    }
    if name.starts_with('.') {
        return bad("starts with a dot");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return bad("only letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

impl Catalog {
    pub fn new(root: &Path) -> Catalog {
        Catalog {
            root: root.to_path_buf(),
            open: Mutex::new(HashMap::new()),
            own: None,
        }
    }

    /// With the platform's own store, which every team reads as [`OWN_DATABASE`].
    pub fn with_own(root: &Path, own: Arc<Tsdb>) -> Catalog {
        Catalog {
            own: Some(own),
            ..Catalog::new(root)
        }
    }

    /// The platform's store, when this catalog shows it (reads must filter on the team).
    pub fn own(&self) -> Option<&Arc<Tsdb>> {
        self.own.as_ref()
    }

    fn dir(&self, team: &TeamName, db: &str) -> PathBuf {
        self.root.join(team.as_str()).join(db)
    }

    /// The team's databases, sorted.
    pub fn list(&self, team: &TeamName) -> Result<Vec<String>, CatalogError> {
        let dir = self.root.join(team.as_str());
        let own = self.own.is_some().then(|| OWN_DATABASE.to_string());
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(own.into_iter().collect())
            }
            Err(source) => {
                return Err(CatalogError::Io {
                    context: "listing",
                    path: dir,
                    source,
                })
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| check_name(n).is_ok())
            .chain(own)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Creates the database if it does not exist (as InfluxDB does, without error).
    pub fn create(&self, team: &TeamName, db: &str) -> Result<Arc<Database>, CatalogError> {
        check_name(db)?;
        if db == OWN_DATABASE {
            return Err(CatalogError::ReadOnly);
        }
        if let Some(t) = self.get(team, db)? {
            return Ok(t);
        }
        if self.list(team)?.len() >= MAX_DATABASES_PER_TEAM {
            return Err(CatalogError::TooMany);
        }
        let dir = self.dir(team, db);
        std::fs::create_dir_all(&dir).map_err(|source| CatalogError::Io {
            context: "creating",
            path: dir.clone(),
            source,
        })?;
        self.open_at(team, db, &dir)
    }

    /// The team's own database (never [`OWN_DATABASE`]), or `None` if it has none of that name.
    pub fn get(&self, team: &TeamName, db: &str) -> Result<Option<Arc<Database>>, CatalogError> {
        if check_name(db).is_err() {
            return Ok(None);
        }
        if db == OWN_DATABASE {
            return Err(CatalogError::ReadOnly);
        }
        let key = (team.clone(), db.to_string());
        if let Some(t) = self.lock().get(&key) {
            return Ok(Some(Arc::clone(t)));
        }
        let dir = self.dir(team, db);
        if !dir.is_dir() {
            return Ok(None);
        }
        self.open_at(team, db, &dir).map(Some)
    }

    /// The database, or `NotFound`.
    pub fn require(&self, team: &TeamName, db: &str) -> Result<Arc<Database>, CatalogError> {
        self.get(team, db)?
            .ok_or_else(|| CatalogError::NotFound(db.chars().take(80).collect()))
    }

    /// Removes the database and its data; nothing if it does not exist.
    pub fn drop_database(&self, team: &TeamName, db: &str) -> Result<(), CatalogError> {
        check_name(db)?;
        if db == OWN_DATABASE {
            return Err(CatalogError::ReadOnly);
        }
        let key = (team.clone(), db.to_string());
        // Closing the store (its lock) before removing its files.
        self.lock().remove(&key);
        let dir = self.dir(team, db);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CatalogError::Io {
                context: "removing",
                path: dir,
                source,
            }),
        }
    }

    /// The write counts of every open database since they were last taken (databases not
    /// open were not written to), those with something to count.
    pub fn take_counts(&self) -> Vec<(TeamName, String, crate::database::WriteCounts)> {
        let open: Vec<_> = self
            .lock()
            .iter()
            .map(|((team, db), d)| (team.clone(), db.clone(), Arc::clone(d)))
            .collect();
        open.into_iter()
            .map(|(team, db, d)| (team, db, d.take_counts()))
            .filter(|(_, _, c)| !c.is_empty())
            .collect()
    }

    /// Every database of every team, opened (for the upkeep: retention, rollups, flushes).
    /// A database that cannot be opened is reported and skipped, so that one broken
    /// directory does not stop the others' upkeep.
    pub fn all(&self) -> Result<Vec<(TeamName, String, Arc<Database>)>, CatalogError> {
        let teams = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CatalogError::Io {
                    context: "listing",
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for entry in teams.filter_map(Result::ok) {
            let Some(team) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<TeamName>().ok())
            else {
                continue;
            };
            for db in self.list(&team)? {
                if db == OWN_DATABASE {
                    continue;
                }
                match self.get(&team, &db) {
                    Ok(Some(d)) => out.push((team.clone(), db, d)),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%team, database = %db, %error, "cannot open database")
                    }
                }
            }
        }
        Ok(out)
    }

    fn open_at(
        &self,
        team: &TeamName,
        db: &str,
        dir: &Path,
    ) -> Result<Arc<Database>, CatalogError> {
        let mut open = self.lock();
        let key = (team.clone(), db.to_string());
        if let Some(t) = open.get(&key) {
            return Ok(Arc::clone(t));
        }
        let database = Arc::new(Database::open(dir)?);
        open.insert(key, Arc::clone(&database));
        Ok(database)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(TeamName, String), Arc<Database>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}
