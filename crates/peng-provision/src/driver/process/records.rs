//! Record files of running instances, and the cleanup of processes a previous peng left behind.
//!
//! Every running instance has one file `TEAM.SERVICE.STAGE.INDEX.instance` in the driver's state
//! directory, written right after the spawn and removed once the process is reaped. It holds
//! `key=value` lines: `pid` (also the process group id: each instance leads its own group),
//! `start_time` (field 22 of `/proc/PID/stat`, clock ticks since boot), `service`, `stage` and
//! `index`. The start time is what keeps a reused pid safe: a record is acted on only when the
//! process with that pid started at exactly that time.
//!
//! At driver start every record is checked. The group is killed (SIGTERM, the grace period,
//! then SIGKILL) when its leader is alive with the recorded start time, or when the leader is
//! gone but live processes of that process group remain that started no earlier than the
//! leader (children of a `sh -c` whose leader died with peng through `PR_SET_PDEATHSIG`).
//! While any member of a group lives Linux does not hand its id out as a new pid, so such
//! members belong to the recorded group. A live process with the pid but another start time
//! means the pid was reused: nothing is killed. The record is removed in every case.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peng_core::{ServiceId, StageName};

const EXTENSION: &str = "instance";

/// The content of one record file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub pid: u32,
    pub start_time: u64,
    pub service: String,
    pub stage: String,
    pub index: u32,
}

impl Record {
    pub fn render(&self) -> String {
        format!(
            "pid={}\nstart_time={}\nservice={}\nstage={}\nindex={}\n",
            self.pid, self.start_time, self.service, self.stage, self.index
        )
    }

    pub fn parse(text: &str) -> Option<Record> {
        let get = |key: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.trim())
        };
        Some(Record {
            pid: get("pid")?.parse().ok().filter(|p| *p > 1)?,
            start_time: get("start_time")?.parse().ok()?,
            service: get("service")?.to_string(),
            stage: get("stage")?.to_string(),
            index: get("index")?.parse().ok()?,
        })
    }
}

pub(crate) fn record_path(
    dir: &Path,
    service: &ServiceId,
    stage: &StageName,
    index: u32,
) -> PathBuf {
    dir.join(format!(
        "{}.{}.{}.{}.{EXTENSION}",
        service.team, service.service, stage, index
    ))
}

/// Writes a record atomically (temporary file, then rename).
pub(crate) fn write(path: &Path, record: &Record) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, record.render())?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn remove(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %error, "cannot remove instance record");
        }
    }
}

/// The fields of `/proc/PID/stat` the driver needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub state: char,
    pub ppid: i64,
    pub pgrp: i64,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub start_time: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

impl ProcStat {
    fn live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 of the man page.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        cpu_ticks: fields
            .get(11)?
            .parse::<u64>()
            .ok()?
            .saturating_add(fields.get(12)?.parse::<u64>().ok()?),
        start_time: fields.get(19)?.parse().ok()?,
        rss_pages: fields.get(21)?.parse().ok()?,
    })
}

pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| parse_stat(&t))
}

/// Live processes whose process group is `pgid` and that started at or after `since`.
fn live_group_members(pgid: u32, since: u64) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            proc_stat(*pid)
                .is_some_and(|s| s.live() && s.pgrp == i64::from(pgid) && s.start_time >= since)
        })
        .collect()
}

/// Live members of the process group `pgid`, with their parents.
pub(crate) fn group_members(pgid: u32) -> Vec<(u32, i64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            proc_stat(pid)
                .filter(|s| s.live() && s.pgrp == i64::from(pgid))
                .map(|s| (pid, s.ppid))
        })
        .collect()
}

/// CPU seconds and resident bytes of the live members of each process group in `pgids`, in
/// one pass over `/proc`.
pub(crate) fn group_usage(pgids: &[u32]) -> std::collections::HashMap<u32, (f64, u64)> {
    let mut out = std::collections::HashMap::new();
    if pgids.is_empty() {
        return out;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    // SAFETY: sysconf has no preconditions.
    let (hz, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
        )
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Some(stat) = proc_stat(pid) else { continue };
        let Ok(pgrp) = u32::try_from(stat.pgrp) else {
            continue;
        };
        if stat.live() && pgids.contains(&pgrp) {
            let entry: &mut (f64, u64) = out.entry(pgrp).or_default();
            entry.0 += stat.cpu_ticks as f64 / hz;
            entry.1 = entry.1.saturating_add(stat.rss_pages.saturating_mul(page));
        }
    }
    out
}

/// Whether the recorded group still has processes that are ours to kill.
fn group_is_ours(record: &Record) -> bool {
    match proc_stat(record.pid) {
        // the pid was reused (live or zombie): our group is gone
        Some(s) if s.start_time != record.start_time => false,
        Some(s) if s.live() => true,
        _ => !live_group_members(record.pid, record.start_time).is_empty(),
    }
}

fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; a negative pid addresses the group.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

fn wait_group_gone(record: &Record, deadline: Instant) -> bool {
    loop {
        if !group_is_ours(record) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills what every record in `dir` still describes and removes the records; returns how many
/// process groups were killed. Blocking: run it on a blocking thread.
pub(crate) fn kill_orphans(dir: &Path, grace: Duration) -> io::Result<usize> {
    let mut killed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
            continue;
        }
        let record = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| Record::parse(&t));
        let Some(record) = record else {
            tracing::warn!(path = %path.display(), "unreadable instance record, removing it");
            remove(&path);
            continue;
        };
        if group_is_ours(&record) {
            tracing::warn!(
                service = %record.service,
                stage = %record.stage,
                index = record.index,
                pid = record.pid,
                "killing instance left over by a previous run"
            );
            signal_group(record.pid, libc::SIGTERM);
            if !wait_group_gone(&record, Instant::now() + grace) {
                signal_group(record.pid, libc::SIGKILL);
                wait_group_gone(&record, Instant::now() + Duration::from_secs(2));
            }
            killed += 1;
        }
        remove(&path);
    }
    Ok(killed)
}
