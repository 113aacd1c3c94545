//! What Linux tells about a process and the machine: memory, per-thread CPU time, UDP drops,
//! directory sizes. Everything here reads `/proc` or walks a directory; nothing is sampled
//! from inside peng.

use std::collections::BTreeMap;
use std::path::Path;

/// `nproc`, the CPU model and the UDP receive buffer defaults.
#[derive(Debug, Clone, Default)]
pub struct MachineInfo {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_kib: u64,
    pub kernel: String,
    pub rmem_default: u64,
    pub rmem_max: u64,
    /// `/proc/loadavg` (1, 5, 15 minutes) when read.
    pub loadavg: String,
}

impl MachineInfo {
    pub fn read() -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let read_u64 = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        MachineInfo {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            mem_total_kib: status_kib(&meminfo, "MemTotal:").unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            rmem_default: read_u64("/proc/sys/net/core/rmem_default"),
            rmem_max: read_u64("/proc/sys/net/core/rmem_max"),
            loadavg: loadavg(),
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `kB` line of `/proc/*/status` or `/proc/meminfo`.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Resident memory of a process, KiB: now (`VmRSS`), its peak so far (`VmHWM`), and of it now
/// what is anonymous (`RssAnon`: the heap and stacks, not pages of mapped files, which the
/// kernel can drop and read again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub anon_kib: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_kib: status_kib(&text, "VmRSS:")?,
        hwm_kib: status_kib(&text, "VmHWM:")?,
        anon_kib: status_kib(&text, "RssAnon:").unwrap_or(0),
    })
}

/// Samples a process's memory every 100 ms from a thread of its own, keeping the peaks.
pub struct PeakSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Memory>,
}

impl PeakSampler {
    pub fn start(pid: u32) -> std::io::Result<PeakSampler> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("peak-sampler".into())
            .spawn(move || {
                let mut peak = Memory::default();
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(m) = memory(pid) {
                        peak.rss_kib = peak.rss_kib.max(m.rss_kib);
                        peak.hwm_kib = peak.hwm_kib.max(m.hwm_kib);
                        peak.anon_kib = peak.anon_kib.max(m.anon_kib);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                peak
            })?;
        Ok(PeakSampler { stop, handle })
    }

    /// Stops sampling; the peaks seen.
    pub fn finish(self) -> Memory {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Clock ticks per second of the CPU times in `/proc/*/stat`.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// `(comm, utime + stime in ticks)` from a `/proc/*/stat` line. The name is in parentheses
/// and may itself hold spaces or parentheses, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU ticks used by each thread of a process so far, by thread id.
pub fn thread_ticks(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            out.insert(tid, stat);
        }
    }
    out
}

/// CPU ticks of a whole process (all its threads, living and exited).
pub fn process_ticks(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .as_deref()
        .and_then(parse_stat)
        .map(|(_, t)| t)
}

/// Per-thread CPU between two snapshots, grouped by thread name: `(name, threads, seconds)`,
/// busiest first.
pub fn thread_cpu_delta(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
) -> Vec<(String, usize, f64)> {
    let hz = clock_ticks();
    let mut by_name: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for (tid, (name, ticks)) in after {
        let base = before.get(tid).map_or(0, |(_, t)| *t);
        let e = by_name.entry(name.clone()).or_default();
        e.0 += 1;
        e.1 += ticks.saturating_sub(base);
    }
    let mut v: Vec<(String, usize, f64)> = by_name
        .into_iter()
        .map(|(n, (c, t))| (n, c, t as f64 / hz))
        .collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v
}

/// The `Udp:` counters of `/proc/net/snmp` (this network namespace).
pub fn udp_snmp() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    let mut out = BTreeMap::new();
    if let [names, values, ..] = lines.as_slice() {
        for (k, v) in names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            if let Ok(v) = v.parse() {
                out.insert(k.to_string(), v);
            }
        }
    }
    out
}

/// Datagrams the kernel dropped for the UDP socket bound to `port` on 127.0.0.1 (the last
/// column of `/proc/net/udp`), because its receive buffer was full.
pub fn udp_socket_drops(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{port:04X}");
    text.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.get(1) == Some(&local.as_str()))
            .then(|| cols.last().and_then(|d| d.parse().ok()))
            .flatten()
    })
}

/// Total size of the regular files under `dir`, in bytes (apparent size).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > 1_000_000 {
                return total;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "1234 (tokio (w) 1) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 37 0 0 20 0 9 0 100 1000 10";
        assert_eq!(parse_stat(line), Some(("tokio (w) 1".to_string(), 287)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        let m = memory(pid).unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
        assert!(!thread_ticks(pid).is_empty());
        assert!(process_ticks(pid).is_some());
    }

    #[test]
    fn cpu_delta_groups_by_name() {
        let mut a = BTreeMap::new();
        a.insert(1, ("w".to_string(), 10));
        let mut b = a.clone();
        b.insert(1, ("w".to_string(), 10 + clock_ticks() as u64));
        b.insert(2, ("w".to_string(), clock_ticks() as u64));
        let d = thread_cpu_delta(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].1, 2);
        assert!((d[0].2 - 2.0).abs() < 1e-9);
    }
}
