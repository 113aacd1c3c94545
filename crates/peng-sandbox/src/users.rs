//! One Unix user and group per team, made by peng with the system's own tools.
//!
//! A team's instances run as its user, so the kernel keeps them from peng's files (mode 0700,
//! owned by peng) and from other teams' processes. Users are made with `groupadd` and
//! `useradd` (locking `/etc/passwd` as the system does), named `peng-TEAM` (shortened with a
//! hash past 32 characters), with the first free id of the platform's range as uid and gid, no
//! home, no login shell, and the comment `peng team TEAM`: that comment is how peng knows a
//! user it finds is its own. Lookups go through NSS (`getpwnam_r`), so ids taken in LDAP are
//! skipped too. Two pengs making the same team's user at once (tests do) agree: the loser of
//! `useradd`'s lock finds the winner's user and adopts it.

use std::ffi::{CStr, CString};
use std::ops::RangeInclusive;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::SandboxError;

/// The Unix identity a team's instances run as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TeamUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl std::fmt::Display for TeamUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (uid {})", self.name, self.uid)
    }
}

/// The longest user name `useradd` takes by default.
const MAX_NAME: usize = 32;

/// `peng-TEAM`, or `peng-` + the first 17 characters + `-` + 8 hex digits of the name's hash
/// when that would be longer than 32.
pub fn user_name(team: &str) -> String {
    let name = format!("peng-{team}");
    if name.len() <= MAX_NAME {
        return name;
    }
    let hash = hex::encode(&Sha256::digest(team.as_bytes())[..4]);
    let head: String = team.chars().take(17).collect();
    format!("peng-{}-{hash}", head.trim_end_matches('-'))
}

/// The comment (GECOS) of a user peng made for `team`.
pub fn comment(team: &str) -> String {
    format!("peng team {team}")
}

/// What the user database says of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub comment: String,
}

/// Makes sure `team` has its user and group, and returns them. Blocking: it may run `groupadd`
/// and `useradd`.
///
/// - A user of the name that peng made for this team (its comment says so) is used as it is,
///   wherever its id lies (a narrowed range does not orphan existing users).
/// - A user of that name made by someone else is an error: peng never takes over a user.
/// - Otherwise a new one gets the first id of `uids` (after `prefer`, the id recorded for the
///   team before, when given) that is neither a uid nor a gid on this system.
pub fn ensure(
    team: &str,
    uids: &RangeInclusive<u32>,
    prefer: Option<u32>,
) -> Result<TeamUser, SandboxError> {
    let name = user_name(team);
    for _attempt in 0..8 {
        if let Some(existing) = user_by_name(&name)? {
            return adopt(team, existing);
        }
        let Some(id) = free_id(uids, prefer)? else {
            return Err(SandboxError::NoFreeId {
                range: format!("{}-{}", uids.start(), uids.end()),
            });
        };
        let gid = match group_by_name(&name)? {
            Some(gid) => gid,
            None => {
                let out = run_tool(
                    "groupadd",
                    &["--gid", &id.to_string(), &name],
                    &[GROUPADD_GID_IN_USE, GROUPADD_NAME_IN_USE],
                )?;
                if out.is_err() {
                    // another peng got there first, with this id or this name: look again
                    continue;
                }
                id
            }
        };
        let out = run_tool(
            "useradd",
            &[
                "--uid",
                &id.to_string(),
                "--gid",
                &gid.to_string(),
                "--no-user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                &comment(team),
                &name,
            ],
            &[USERADD_UID_IN_USE, USERADD_NAME_IN_USE],
        )?;
        if out.is_ok() {
            tracing::info!(team, user = %name, uid = id, gid, "made the team's user");
            return Ok(TeamUser { name, uid: id, gid });
        }
    }
    Err(SandboxError::Tool {
        tool: "useradd".into(),
        message: format!("could not make user {name}: its id kept being taken"),
    })
}

fn adopt(team: &str, existing: Passwd) -> Result<TeamUser, SandboxError> {
    if existing.comment != comment(team) {
        return Err(SandboxError::ForeignUser {
            name: existing.name,
            uid: existing.uid,
            comment: existing.comment,
        });
    }
    Ok(TeamUser {
        name: existing.name,
        uid: existing.uid,
        gid: existing.gid,
    })
}

/// The first id of `range` (from `prefer` on, wrapping) that no user and no group has.
fn free_id(range: &RangeInclusive<u32>, prefer: Option<u32>) -> Result<Option<u32>, SandboxError> {
    let start = prefer
        .filter(|p| range.contains(p))
        .unwrap_or(*range.start());
    let after = (start..=*range.end()).chain(*range.start()..start);
    for id in after {
        if user_by_uid(id)?.is_none() && group_by_gid(id)?.is_none() {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

// Exit codes of shadow's tools (useradd(8), groupadd(8)) that mean "taken, try another".
const USERADD_UID_IN_USE: i32 = 4;
const USERADD_NAME_IN_USE: i32 = 9;
const GROUPADD_GID_IN_USE: i32 = 4;
const GROUPADD_NAME_IN_USE: i32 = 9;

/// Runs a shadow tool by absolute path. `Ok(Err(code))` for an exit code in `retry`.
fn run_tool(tool: &str, args: &[&str], retry: &[i32]) -> Result<Result<(), i32>, SandboxError> {
    let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| SandboxError::Tool {
            tool: tool.into(),
            message: "not installed (Debian's package passwd has it)".into(),
        })?;
    let out = Command::new(&path)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .map_err(|e| SandboxError::Tool {
            tool: tool.into(),
            message: e.to_string(),
        })?;
    match out.status.code() {
        Some(0) => Ok(Ok(())),
        Some(code) if retry.contains(&code) => Ok(Err(code)),
        _ => Err(SandboxError::Tool {
            tool: tool.into(),
            message: format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ),
        }),
    }
}

/// Whether `user` may read and enter the directory `dir` (every parent included), and, with
/// `write`, create files in it: asked of the kernel by running `test` as that user. Blocking.
pub fn can_access(user: &TeamUser, dir: &Path, write: bool) -> Result<bool, SandboxError> {
    use std::os::unix::process::CommandExt;
    let test = ["/usr/bin/test", "/bin/test"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| SandboxError::Tool {
            tool: "test".into(),
            message: "not installed (Debian's package coreutils has it)".into(),
        })?;
    let mut cmd = Command::new(test);
    cmd.arg("-d")
        .arg(dir)
        .args(["-a", "-r"])
        .arg(dir)
        .args(["-a", "-x"])
        .arg(dir);
    if write {
        cmd.args(["-a", "-w"]).arg(dir);
    }
    // std drops every supplementary group when a root parent sets the uid
    let status = cmd
        .uid(user.uid)
        .gid(user.gid)
        .env_clear()
        .status()
        .map_err(|e| SandboxError::Tool {
            tool: "test".into(),
            message: e.to_string(),
        })?;
    Ok(status.success())
}

/// A user by name, through NSS.
pub fn user_by_name(name: &str) -> Result<Option<Passwd>, SandboxError> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    lookup(
        |pwd, buf, len, result| {
            // SAFETY: every pointer is valid for the call; the buffer outlives it.
            unsafe { libc::getpwnam_r(cname.as_ptr(), pwd, buf, len, result) }
        },
        passwd,
    )
}

/// A user by uid, through NSS.
pub fn user_by_uid(uid: u32) -> Result<Option<Passwd>, SandboxError> {
    lookup(
        |pwd, buf, len, result| {
            // SAFETY: every pointer is valid for the call; the buffer outlives it.
            unsafe { libc::getpwuid_r(uid, pwd, buf, len, result) }
        },
        passwd,
    )
}

/// A group's gid by name, through NSS.
pub fn group_by_name(name: &str) -> Result<Option<u32>, SandboxError> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    lookup(
        |grp, buf, len, result| {
            // SAFETY: every pointer is valid for the call; the buffer outlives it.
            unsafe { libc::getgrnam_r(cname.as_ptr(), grp, buf, len, result) }
        },
        |g: &libc::group| g.gr_gid,
    )
}

/// Whether a group has `gid`; its gid when it does.
pub fn group_by_gid(gid: u32) -> Result<Option<u32>, SandboxError> {
    lookup(
        |grp, buf, len, result| {
            // SAFETY: every pointer is valid for the call; the buffer outlives it.
            unsafe { libc::getgrgid_r(gid, grp, buf, len, result) }
        },
        |g: &libc::group| g.gr_gid,
    )
}

fn passwd(pwd: &libc::passwd) -> Passwd {
    let text = |p: *const libc::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: called while the lookup's buffer is alive; NSS strings are NUL-terminated.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    Passwd {
        name: text(pwd.pw_name),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        comment: text(pwd.pw_gecos),
    }
}

/// One `get*_r` call of NSS (a C struct `T`, filled with pointers into a buffer), with the
/// buffer grown while the call says it is too small; `read` turns the filled struct into what
/// the caller keeps while the buffer is alive.
fn lookup<T, R>(
    mut call: impl FnMut(*mut T, *mut libc::c_char, libc::size_t, *mut *mut T) -> libc::c_int,
    read: impl Fn(&T) -> R,
) -> Result<Option<R>, SandboxError> {
    let mut len = 4096;
    loop {
        let mut buf = vec![0 as libc::c_char; len];
        // SAFETY: the C structs looked up here (passwd, group) are valid all-zero (null
        // pointers and zeros).
        let mut entry: T = unsafe { std::mem::zeroed() };
        let mut result: *mut T = std::ptr::null_mut();
        let rc = call(&mut entry, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == libc::ERANGE && len < (1 << 22) {
            len *= 4;
            continue;
        }
        if rc != 0 && rc != libc::ENOENT && rc != libc::ESRCH {
            return Err(SandboxError::UserDatabase(
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        if result.is_null() {
            return Ok(None);
        }
        return Ok(Some(read(&entry)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_useradd_and_stay_apart() {
        assert_eq!(user_name("books"), "peng-books");
        let long = "a-very-long-team-name-that-goes-on-and-on";
        let name = user_name(long);
        assert!(name.len() <= MAX_NAME, "{name}");
        assert!(name.starts_with("peng-a-very-long-team"), "{name}");
        assert_ne!(
            name,
            user_name("a-very-long-team-name-that-goes-on-and-off")
        );
        // exactly 32 stays readable
        let team = "x".repeat(27);
        assert_eq!(user_name(&team), format!("peng-{team}"));
    }

    #[test]
    fn root_is_found_and_a_missing_user_is_none() {
        let root = user_by_uid(0).expect("lookup").expect("root exists");
        assert_eq!(root.name, "root");
        assert_eq!(
            user_by_name("root").expect("lookup").map(|p| p.uid),
            Some(0)
        );
        assert_eq!(
            user_by_name("no-such-user-peng-test").expect("lookup"),
            None
        );
        assert_eq!(user_by_name("bad\0name").expect("lookup"), None);
        assert!(group_by_gid(0).expect("lookup").is_some());
    }

    #[test]
    fn a_user_made_by_someone_else_is_never_taken_over() {
        let root = user_by_uid(0).expect("lookup").expect("root");
        let e = adopt("books", root).expect_err("foreign");
        assert!(e.to_string().contains("not made by peng"), "{e}");
    }
}
