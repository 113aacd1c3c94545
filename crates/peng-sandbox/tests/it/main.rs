//! The sandbox for real: the probe on this machine, a team user made with useradd, and a
//! program inside bubblewrap trying what a hostile instance would. As root (CI) every check
//! runs; as another user the probe must say isolation is off and why.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use peng_sandbox::{probe, users, Isolation, Jail};

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn system_dirs() -> Vec<PathBuf> {
    [
        "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

#[test]
fn without_root_the_probe_says_isolation_is_off_and_why() {
    if is_root() {
        // as root: the same probe, run as an unprivileged user, must refuse (from a copy the
        // user can reach: the build directory may be under root's home)
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let bin = tmp.path().join("probe-isolation");
        std::fs::copy(env!("CARGO_BIN_EXE_probe-isolation"), &bin).expect("copy");
        let out = Command::new(&bin)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run probe as nobody");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("off (peng is not running as root"),
            "{text}"
        );
    } else {
        let iso = probe(&system_dirs(), Vec::new());
        assert!(
            iso.describe()
                .starts_with("off (peng is not running as root"),
            "{}",
            iso.describe()
        );
    }
}

/// A directory tree only root may enter, like peng's data directory.
fn private_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("peng-data");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("admin.token"), "secret").expect("write");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

#[test]
fn a_sandboxed_program_sees_its_own_files_and_processes_only() {
    if !is_root() {
        return; // covered by the test above
    }
    let iso = probe(&system_dirs(), Vec::new());
    let Isolation::On(sandbox) = iso else {
        panic!(
            "as root with bubblewrap installed, isolation must be on: {}",
            iso.describe()
        );
    };
    let user = users::ensure("sandbox-test", &(70000..=79999), None).expect("team user");
    assert_eq!(user.name, "peng-sandbox-test");
    // a second call finds the same user
    assert_eq!(
        users::ensure("sandbox-test", &(70000..=79999), None).expect("again"),
        user
    );

    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = private_dir(tmp.path());
    let service = tmp.path().join("service");
    let cache = service.join("cache");
    std::fs::create_dir_all(&cache).expect("mkdir");
    std::fs::set_permissions(&service, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    assert!(users::can_access(&user, &service, false).expect("access"));
    assert!(!users::can_access(&user, &service, true).expect("access"));
    assert!(users::can_access(&user, &cache, true).expect("access"));
    assert!(!users::can_access(&user, &data, false).expect("access"));

    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, "CERTIFICATE").expect("write");
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let ca_file = std::fs::File::open(&ca).expect("open");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&ca_file);
    let files = [("DB_SSL_CA".to_string(), fd)];
    let writable = [cache.clone()];
    let jail = Jail {
        user: &user,
        service_dir: &service,
        writable: &writable,
        workdir: &service,
        files: &files,
        tmp_bytes: 16 << 20,
    };
    let script = format!(
        r#"
        echo "uid=$(id -u)"
        cat {data}/admin.token >/dev/null 2>&1 && echo "read-token=yes" || echo "read-token=no"
        ls {data} >/dev/null 2>&1 && echo "list-data=yes" || echo "list-data=no"
        echo "ca=$(cat /run/peng/DB_SSL_CA)"
        touch {service}/x 2>/dev/null && echo "write-service=yes" || echo "write-service=no"
        touch {cache}/x 2>/dev/null && echo "write-cache=yes" || echo "write-cache=no"
        touch /tmp/x && echo "write-tmp=yes"
        touch /usr/x 2>/dev/null && echo "write-usr=yes" || echo "write-usr=no"
        echo "procs=$(ls /proc | grep -c '^[0-9]')"
        kill -0 {parent} 2>/dev/null && echo "signal-parent=yes" || echo "signal-parent=no"
        grep -q '^CapEff:\s*0000000000000000' /proc/self/status && echo "caps=none"
        grep -q '^NoNewPrivs:\s*1' /proc/self/status && echo "no-new-privs=yes"
        unshare -U true 2>/dev/null && echo "userns=yes" || echo "userns=no"
        "#,
        data = data.display(),
        service = service.display(),
        cache = cache.display(),
        parent = std::process::id(),
    );
    let (program, args) = sandbox.command(&jail, &["sh".into(), "-c".into(), script]);
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().env("PATH", "/usr/bin:/bin");
    unsafe {
        cmd.pre_exec(peng_sandbox::enter(&user, vec![fd]));
    }
    let out = cmd.output().expect("run sandbox");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        format!("uid={}", user.uid),
        "read-token=no".into(),
        "list-data=no".into(),
        "ca=CERTIFICATE".into(),
        "write-service=no".into(),
        "write-cache=yes".into(),
        "write-tmp=yes".into(),
        "write-usr=no".into(),
        "signal-parent=no".into(),
        "caps=none".into(),
        "no-new-privs=yes".into(),
        "userns=no".into(),
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "missing {expected} in:\n{text}"
        );
    }
    // bwrap as pid 1, the shell, its children: a handful, never the host's
    let procs: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.parse().ok())
        .expect("procs line");
    assert!(procs <= 5, "the sandbox sees {procs} processes:\n{text}");
    // what the instance wrote is the team's, on the host
    let meta = std::fs::metadata(cache.join("x")).expect("written file");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), user.uid);
}

#[test]
fn hidden_paths_under_bound_directories_are_covered() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let service = tmp.path().join("service");
    std::fs::create_dir(&service).expect("mkdir");
    std::fs::set_permissions(&service, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // a world-readable data directory inside the service's directory: still invisible
    let data = service.join("peng-data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("state.db"), "state").expect("write");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let Isolation::On(sandbox) = probe(&system_dirs(), vec![data.clone()]) else {
        panic!("isolation must be on as root");
    };
    let user = users::ensure("sandbox-test", &(70000..=79999), None).expect("team user");
    let jail = Jail {
        user: &user,
        service_dir: &service,
        writable: &[],
        workdir: &service,
        files: &[],
        tmp_bytes: 1 << 20,
    };
    let script = format!("ls -A {}; echo end", data.display());
    let (program, args) = sandbox.command(&jail, &["sh".into(), "-c".into(), script]);
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().env("PATH", "/usr/bin:/bin");
    unsafe {
        cmd.pre_exec(peng_sandbox::enter(&user, Vec::new()));
    }
    let out = cmd.output().expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "end\n");
}
