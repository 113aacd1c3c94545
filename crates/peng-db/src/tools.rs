//! The MariaDB programs peng runs: the server, the tool that initialises a data directory, the
//! dump tool and the command-line client, found once and named by absolute path so that every
//! later call runs the same binaries whatever happens to `PATH`.
//!
//! `PENG_MARIADB_BIN_DIR` names one directory holding all four (a MariaDB tarball's `bin/`);
//! without it they are looked up in `PATH`, then in `/usr/sbin`, `/usr/local/sbin`, `/usr/bin`
//! and `/usr/local/bin`, where distribution packages put them.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::DbError;

/// The environment variable naming the directory of the MariaDB programs.
pub const BIN_DIR_ENV: &str = "PENG_MARIADB_BIN_DIR";

/// Absolute paths of the MariaDB programs and the server's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tools {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
    pub dump: PathBuf,
    pub client: PathBuf,
    pub version: Version,
}

/// A MariaDB server version, `10.11.19` from `10.11.19-MariaDB-0+deb12u1-log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Tools {
    /// Finds the programs in `PENG_MARIADB_BIN_DIR` when it is set, else in `PATH` and the
    /// usual system directories, and asks the server for its version.
    pub fn discover() -> Result<Tools, DbError> {
        match std::env::var_os(BIN_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Tools::from_dir(Path::new(&dir)),
            _ => {
                let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
                    .map(|path| std::env::split_paths(&path).collect())
                    .unwrap_or_default();
                dirs.extend(SYSTEM_DIRS.iter().map(PathBuf::from));
                Tools::from_dirs(&dirs, "PATH, /usr/sbin, /usr/local/sbin")
            }
        }
    }

    /// Takes the four programs from `dir` only.
    pub fn from_dir(dir: &Path) -> Result<Tools, DbError> {
        Tools::from_dirs(&[dir.to_path_buf()], &dir.display().to_string())
    }

    fn from_dirs(dirs: &[PathBuf], searched: &str) -> Result<Tools, DbError> {
        let names = [MARIADBD, INSTALL_DB, DUMP, CLIENT];
        let [Some(mariadbd), Some(install_db), Some(dump), Some(client)] =
            names.map(|name| find(dirs, name))
        else {
            let missing: Vec<&str> = names
                .into_iter()
                .filter(|name| find(dirs, name).is_none())
                .collect();
            return Err(DbError::Tools(format!(
                "MariaDB programs not found: {} (searched {searched}); \
                 `apt-get install mariadb-server` provides them, or set {BIN_DIR_ENV} to the \
                 directory that holds them",
                missing.join(", ")
            )));
        };
        let version = server_version(&mariadbd)?;
        Ok(Tools {
            mariadbd,
            install_db,
            dump,
            client,
            version,
        })
    }
}

impl Version {
    /// Reads the version out of `mariadbd --version`:
    /// `/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1-log for debian-linux-gnu on x86_64`.
    pub fn parse(text: &str) -> Option<Version> {
        let rest = &text[text.find("Ver ")? + 4..];
        let token = rest.split_whitespace().next()?;
        let numbers = token.split('-').next()?;
        let mut parts = numbers.split('.').map(|part| part.parse::<u32>().ok());
        let version = Version {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        Some(version)
    }

    /// The release series, `10.11`: what a plan names and what decides compatibility.
    pub fn series(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

const MARIADBD: &str = "mariadbd";
const INSTALL_DB: &str = "mariadb-install-db";
const DUMP: &str = "mariadb-dump";
const CLIENT: &str = "mariadb";
const SYSTEM_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"];

fn find(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn server_version(mariadbd: &Path) -> Result<Version, DbError> {
    let output = Command::new(mariadbd)
        .arg("--version")
        .output()
        .map_err(DbError::io(format!(
            "running {} --version",
            mariadbd.display()
        )))?;
    let text = String::from_utf8_lossy(&output.stdout);
    Version::parse(&text).ok_or_else(|| {
        DbError::Tools(format!(
            "{} --version printed no version: {:?}",
            mariadbd.display(),
            text.trim()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distribution_versions() {
        let v = Version::parse(
            "/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1-log for debian-linux-gnu on x86_64 (Debian 12)\n",
        )
        .unwrap();
        assert_eq!(
            v,
            Version {
                major: 10,
                minor: 11,
                patch: 19
            }
        );
        assert_eq!(v.series(), "10.11");
        assert_eq!(v.to_string(), "10.11.19");
        let v = Version::parse("mariadbd  Ver 11.4.2-MariaDB for Linux on x86_64 (MariaDB Server)");
        assert_eq!(v.map(|v| v.series()), Some("11.4".to_string()));
    }

    #[test]
    fn refuses_text_without_a_version() {
        assert_eq!(Version::parse("mariadbd: unknown option"), None);
        assert_eq!(Version::parse("Ver x.y.z"), None);
        assert_eq!(Version::parse("Ver 10.11"), None);
    }

    #[test]
    fn names_every_missing_program() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tools::from_dir(dir.path()).unwrap_err().to_string();
        for name in [MARIADBD, INSTALL_DB, DUMP, CLIENT] {
            assert!(err.contains(name), "{err}");
        }
        assert!(err.contains("apt-get install mariadb-server"), "{err}");
    }
}
