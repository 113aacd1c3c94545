//! One task per instance: spawn the process, forward its output, notice its exit, restart it
//! with backoff, and stop it on request.
//!
//! Children are spawned by one dedicated, long-lived thread (`peng-spawner`). Each child sets
//! `PR_SET_PDEATHSIG = SIGKILL` before `exec`, and Linux sends that signal when the *thread*
//! that forked the child exits, not the process: spawning from tokio's blocking pool would
//! kill children when an idle pool thread retires. The spawner thread lives as long as any
//! driver handle or supervisor task does, so children die with peng, even on SIGKILL.
//!
//! Sandboxed (when peng runs as root with bubblewrap), the child joins the instance's cgroup,
//! drops to the team's user and execs bubblewrap, all before anything of the team's runs (see
//! `peng_sandbox`). The process peng supervises is then bwrap; the instance's program is the
//! child of bwrap's own pid 1 inside a PID namespace of its own. Stopping sends SIGTERM to the
//! program and whatever else of its process group, never to the two bwrap processes (which
//! would end the namespace, and with it the program, at once), waits the grace period, then
//! kills bwrap; the kernel kills what is left in the namespace.
//!
//! An instance with a cgroup that ends while the cgroup's OOM-kill count went up ended for
//! memory: its last exit reads `killed: out of memory (limit 512Mi)` and a notice goes out.
//!
//! Backoff: the n-th consecutive failure waits `backoff_initial * 2^(n-1)`, at most
//! `backoff_max`; a process that ran `backoff_reset` resets the count. When
//! `crash_loop_restarts` restarts fall within `crash_loop_window` the instance shows
//! `CrashLoop` and keeps being retried at `backoff_max` until a run lasts `backoff_reset`.

use std::collections::VecDeque;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peng_core::metrics::{self, Counter};
use peng_process::{backoff, describe, Spawner};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use super::records::{self, Record};
use super::{InstanceOutput, InstanceState, Notice, OutputStream, ProcessDriverConfig};
use crate::InstanceSpec;

/// Longest line forwarded; longer lines are split into pieces of this size.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// What the handle and the supervisor task share about one instance.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub since_ns: i64,
    pub last_exit: Option<String>,
    /// The cgroup of the current process, while one runs.
    pub cgroup: Option<peng_cgroup::Group>,
}

impl Status {
    pub fn new() -> Self {
        Status {
            state: InstanceState::Starting,
            pid: None,
            restarts: 0,
            since_ns: peng_core::now_ns(),
            last_exit: None,
            cgroup: None,
        }
    }
}

/// Shared by every supervisor of one driver.
pub(crate) struct Ctx {
    pub cfg: ProcessDriverConfig,
    pub spawner: Spawner,
    pub discarded: Counter,
    pub notices_dropped: Counter,
}

/// Variables of peng's own environment that instances inherit.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

/// The `PATH` of a sandboxed instance: the system's, not peng's (whose entries may point into
/// root's home).
const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables of peng's environment a sandboxed instance inherits; `PATH`, `HOME`, `USER`,
/// `LOGNAME` and `TMPDIR` are its own.
const SANDBOX_INHERITED_ENV: &[&str] = &["LANG", "LC_ALL", "TZ"];

/// The command of one spawn, and the files it hands over (kept open until the fork).
fn command(
    ctx: &Ctx,
    spec: &InstanceSpec,
    port: u16,
    group: Option<&peng_cgroup::Group>,
) -> io::Result<(Command, Vec<std::fs::File>)> {
    let sandbox = match (&spec.user, ctx.cfg.isolation.sandbox()) {
        (Some(user), Some(sandbox)) => Some((user, sandbox)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(io::Error::other(
                "the instance has a team user but isolation is off",
            ))
        }
        (None, Some(_)) => {
            return Err(io::Error::other(
                "isolation is on but the instance has no team user",
            ))
        }
    };
    let env = spec.process_env(port, sandbox.is_some());
    let argv = spec.process_command(&env);
    if argv.first().is_none_or(|p| p.is_empty()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    }
    let mut files = Vec::new();
    let mut cmd = match sandbox {
        Some((user, sandbox)) => {
            let mut handed = Vec::new();
            for (var, host) in &spec.files {
                let file = std::fs::File::open(host).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot hand {}: {e}", host.display()))
                })?;
                handed.push((var.clone(), std::os::fd::AsRawFd::as_raw_fd(&file)));
                files.push(file);
            }
            let tmp_bytes = spec.resources.memory.0;
            let jail = peng_sandbox::Jail {
                user,
                service_dir: &spec.service_dir,
                writable: &spec.writable,
                workdir: &spec.workdir,
                files: &handed,
                tmp_bytes,
            };
            let (program, args) = sandbox.command(&jail, &argv);
            let mut cmd = Command::new(program);
            cmd.env_clear();
            for key in SANDBOX_INHERITED_ENV {
                if let Some(value) = std::env::var_os(key) {
                    cmd.env(key, value);
                }
            }
            cmd.env("PATH", SANDBOX_PATH)
                .env("HOME", "/tmp")
                .env("TMPDIR", "/tmp")
                .env("USER", &user.name)
                .env("LOGNAME", &user.name)
                .args(args)
                .envs(&env)
                // bwrap changes into the workdir inside; it starts where every user may be
                .current_dir("/");
            if let Some(group) = group {
                // SAFETY: the closure only writes to cgroup files it prepared, without allocating.
                unsafe {
                    cmd.pre_exec(group.attach_self());
                }
            }
            let inherit = handed.iter().map(|(_, fd)| *fd).collect();
            // SAFETY: `enter` makes only async-signal-safe system calls, without allocating.
            unsafe {
                cmd.pre_exec(peng_sandbox::enter(user, inherit));
            }
            cmd
        }
        None => {
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
            let mut cmd = Command::new(program);
            // Instances get their own environment, not peng's (which may hold its token): a
            // short list of what programs expect from any login, then the instance's own.
            cmd.env_clear();
            for key in INHERITED_ENV {
                if let Some(value) = std::env::var_os(key) {
                    cmd.env(key, value);
                }
            }
            cmd.args(args).envs(&env).current_dir(&spec.workdir);
            if let Some(group) = group {
                // SAFETY: the closure only writes to cgroup files it prepared, without allocating.
                unsafe {
                    cmd.pre_exec(group.attach_self());
                }
            }
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // a safety net if a supervisor is dropped without stopping its child
        .kill_on_drop(true);
    // SIGKILL: an instance has nothing to finish once peng is gone. Registered last: changing
    // the user clears the death signal.
    peng_process::die_with_parent(&mut cmd, libc::SIGKILL);
    Ok((cmd, files))
}

/// The instance's cgroup, made (or emptied and reused) before each spawn. `None` when limits
/// are off.
fn cgroup(ctx: &Ctx, spec: &InstanceSpec) -> io::Result<Option<peng_cgroup::Group>> {
    let Some(cgroups) = &ctx.cfg.cgroups else {
        return Ok(None);
    };
    let limits = peng_cgroup::Limits {
        memory_bytes: spec.resources.memory.0,
        cpu: spec.resources.cpu,
        pids: u64::from(spec.pids),
    };
    let name = super::group_name(&spec.service, &spec.stage, spec.index);
    if let Some(old) = cgroups.open(&name) {
        // what an earlier run left (a crash of peng, a lost child): never shared with the new one
        old.kill_all();
    }
    cgroups
        .create(&name, &limits)
        .map(Some)
        .map_err(|e| io::Error::other(format!("cannot limit the instance: {e}")))
}

/// Runs one instance until `stop` fires (or its sender is dropped). `first` gets the pid of
/// the first spawn attempt (`None` when it failed).
pub(crate) async fn supervise(
    ctx: Arc<Ctx>,
    spec: InstanceSpec,
    port: u16,
    status: Arc<Mutex<Status>>,
    mut stop: oneshot::Receiver<()>,
    first: oneshot::Sender<Option<u32>>,
) {
    let cfg = &ctx.cfg;
    let record_path = records::record_path(&cfg.state_dir, &spec.service, &spec.stage, spec.index);
    let service = spec.service.to_string();
    let restarts_total = metrics::counter(
        "peng_instance_restarts_total",
        &[("service", &service), ("stage", spec.stage.as_str())],
    );
    let set = |f: &dyn Fn(&mut Status)| {
        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
    };
    let mut first = Some(first);
    let mut failures: u32 = 0;
    let mut recent: VecDeque<Instant> = VecDeque::new();
    let mut crash_loop = false;

    loop {
        set(&|s| {
            s.state = InstanceState::Starting;
            s.since_ns = peng_core::now_ns();
        });
        // Limits that cannot be set are a failure to start, never an unlimited instance.
        let group = cgroup(&ctx, &spec);
        let oom_before = group
            .as_ref()
            .ok()
            .and_then(|g| g.as_ref().map(|g| g.usage().oom_kills));
        let spawned = match &group {
            Ok(group) => match command(&ctx, &spec, port, group.as_ref()) {
                Ok((cmd, files)) => {
                    let child = ctx.spawner.spawn(cmd).await;
                    drop(files);
                    child
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let group = group.ok().flatten();
        let last_exit = match spawned {
            Err(error) => {
                tracing::warn!(%service, stage = %spec.stage, index = spec.index, %error, "cannot start instance");
                if let Some(f) = first.take() {
                    let _ = f.send(None);
                }
                format!("failed to start: {error}")
            }
            Ok(mut child) => {
                let pid = child.id();
                if let Some(pid) = pid {
                    write_record(&record_path, &spec, &service, pid);
                }
                let running = if crash_loop {
                    InstanceState::CrashLoop
                } else {
                    InstanceState::Running
                };
                set(&|s| {
                    s.state = running;
                    s.pid = pid;
                    s.since_ns = peng_core::now_ns();
                    s.cgroup = group.clone();
                });
                // after the status, so that `reconcile`'s caller sees the process
                if let Some(f) = first.take() {
                    let _ = f.send(pid);
                }
                forward_output(&ctx, &spec, &mut child);
                let started = tokio::time::sleep(cfg.backoff_reset);
                tokio::pin!(started);
                let mut settled = false;
                let exit = loop {
                    tokio::select! {
                        exit = child.wait() => break Some(exit),
                        _ = &mut stop => break None,
                        _ = &mut started, if !settled => {
                            settled = true;
                            failures = 0;
                            recent.clear();
                            crash_loop = false;
                            set(&|s| {
                                s.state = InstanceState::Running;
                                s.since_ns = peng_core::now_ns();
                            });
                        }
                    }
                };
                let sandboxed = spec.user.is_some();
                let Some(exit) = exit else {
                    let exit = stop_child(&mut child, pid, cfg.stop_grace, sandboxed).await;
                    remove_cgroup(group.as_ref());
                    records::remove(&record_path);
                    set(&|s| {
                        s.state = InstanceState::Stopped;
                        s.pid = None;
                        s.since_ns = peng_core::now_ns();
                        s.last_exit = exit.clone();
                        s.cgroup = None;
                    });
                    return;
                };
                // the leader is gone; whatever it left in its group goes with it
                if let Some(pid) = pid {
                    signal_group(pid, libc::SIGKILL);
                }
                let oom = match (&group, oom_before) {
                    (Some(g), Some(before)) => g.usage().oom_kills > before,
                    _ => false,
                };
                if let Some(g) = &group {
                    g.kill_all();
                }
                records::remove(&record_path);
                set(&|s| s.cgroup = None);
                if oom {
                    notify(&ctx, &spec);
                    format!("killed: out of memory (limit {})", spec.resources.memory)
                } else {
                    match exit {
                        Ok(status) => describe(status),
                        Err(error) => format!("lost track of the process: {error}"),
                    }
                }
            }
        };

        failures = failures.saturating_add(1);
        let now = Instant::now();
        recent.push_back(now);
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > cfg.crash_loop_window)
        {
            recent.pop_front();
        }
        crash_loop = crash_loop || recent.len() >= cfg.crash_loop_restarts as usize;
        let delay = if crash_loop {
            cfg.backoff_max
        } else {
            backoff(cfg.backoff_initial, cfg.backoff_max, failures)
        };
        let waiting = if crash_loop {
            InstanceState::CrashLoop
        } else {
            InstanceState::Backoff
        };
        tracing::info!(%service, stage = %spec.stage, index = spec.index, exit = %last_exit, ?delay, "instance exited, restarting");
        set(&|s| {
            s.state = waiting;
            s.pid = None;
            s.since_ns = peng_core::now_ns();
            s.last_exit = Some(last_exit.clone());
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stop => {
                remove_cgroup(group.as_ref());
                set(&|s| {
                    s.state = InstanceState::Stopped;
                    s.since_ns = peng_core::now_ns();
                });
                return;
            }
        }
        restarts_total.inc();
        set(&|s| s.restarts = s.restarts.saturating_add(1));
    }
}

fn write_record(path: &std::path::Path, spec: &InstanceSpec, service: &str, pid: u32) {
    let Some(stat) = records::proc_stat(pid) else {
        return;
    };
    let record = Record {
        pid,
        start_time: stat.start_time,
        service: service.to_string(),
        stage: spec.stage.to_string(),
        index: spec.index,
    };
    if let Err(error) = records::write(path, &record) {
        tracing::warn!(path = %path.display(), %error, "cannot write instance record");
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

fn remove_cgroup(group: Option<&peng_cgroup::Group>) {
    if let Some(g) = group {
        if let Err(error) = g.remove() {
            tracing::warn!(group = g.name(), %error, "cannot remove the instance's cgroup");
        }
    }
}

fn notify(ctx: &Ctx, spec: &InstanceSpec) {
    let Some(tx) = &ctx.cfg.notices else {
        return;
    };
    let notice = Notice::OutOfMemory {
        service: spec.service.clone(),
        stage: spec.stage.clone(),
        index: spec.index,
        limit: spec.resources.memory,
        at_ns: peng_core::now_ns(),
    };
    if tx.try_send(notice).is_err() {
        ctx.notices_dropped.inc();
    }
}

/// SIGTERM to every process of a sandboxed instance's group but bwrap's two (`pgid`, and its
/// child, pid 1 of the namespace): killing those would end the namespace at once.
fn signal_tenants(pgid: u32, signal: i32) {
    for (pid, ppid) in records::group_members(pgid) {
        if pid != pgid && ppid != i64::from(pgid) {
            let Ok(pid) = libc::pid_t::try_from(pid) else {
                continue;
            };
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }
}

/// SIGTERM to the group (sandboxed: to the program's processes), the grace period, SIGKILL,
/// then reap. Returns how it ended.
async fn stop_child(
    child: &mut Child,
    pid: Option<u32>,
    grace: Duration,
    sandboxed: bool,
) -> Option<String> {
    let Some(pid) = pid else {
        // already reaped
        return None;
    };
    if sandboxed {
        signal_tenants(pid, libc::SIGTERM);
    } else {
        signal_group(pid, libc::SIGTERM);
    }
    let exit = match tokio::time::timeout(grace, child.wait()).await {
        Ok(exit) => exit,
        Err(_) => {
            signal_group(pid, libc::SIGKILL);
            child.wait().await
        }
    };
    // members that outlived the leader
    signal_group(pid, libc::SIGKILL);
    exit.ok().map(describe)
}

fn forward_output(ctx: &Arc<Ctx>, spec: &InstanceSpec, child: &mut Child) {
    let streams: [(Option<Box<dyn AsyncRead + Send + Unpin>>, OutputStream); 2] = [
        (
            child.stdout.take().map(|r| Box::new(r) as Box<_>),
            OutputStream::Stdout,
        ),
        (
            child.stderr.take().map(|r| Box::new(r) as Box<_>),
            OutputStream::Stderr,
        ),
    ];
    for (reader, stream) in streams {
        let Some(reader) = reader else { continue };
        let tx = ctx.cfg.output.clone();
        let discarded = ctx.discarded.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            read_lines(reader, |line| {
                let out = InstanceOutput {
                    service: spec.service.clone(),
                    stage: spec.stage.clone(),
                    index: spec.index,
                    stream,
                    line,
                    ts_ns: peng_core::now_ns(),
                };
                match tx.try_send(out) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => discarded.inc(),
                    // nobody listens any more: keep draining so the child never blocks
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            })
            .await;
        });
    }
}

/// Reads `reader` to its end and calls `emit` for every line, without the `\n` (and a `\r`
/// before it); a line longer than `MAX_LINE` bytes comes in pieces of `MAX_LINE`. Invalid
/// UTF-8 is replaced.
pub(crate) async fn read_lines<R: AsyncRead + Unpin>(reader: R, mut emit: impl FnMut(String)) {
    let mut reader = BufReader::with_capacity(MAX_LINE, reader);
    let mut line: Vec<u8> = Vec::new();
    let mut just_cut = false;
    let mut flush = |line: &mut Vec<u8>| {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        emit(String::from_utf8_lossy(line).into_owned());
        line.clear();
    };
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if buf.is_empty() {
            break;
        }
        let room = MAX_LINE - line.len();
        let window = &buf[..buf.len().min(room)];
        match window.iter().position(|b| *b == b'\n') {
            // the end of a line that was just cut at the cap: not a line of its own
            Some(0) if just_cut => {
                reader.consume(1);
                just_cut = false;
            }
            Some(i) => {
                line.extend_from_slice(&window[..i]);
                reader.consume(i + 1);
                flush(&mut line);
                just_cut = false;
            }
            None => {
                let n = window.len();
                line.extend_from_slice(window);
                reader.consume(n);
                just_cut = false;
                if line.len() >= MAX_LINE {
                    flush(&mut line);
                    just_cut = true;
                }
            }
        }
    }
    if !line.is_empty() {
        flush(&mut line);
    }
}
