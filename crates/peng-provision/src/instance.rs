//! What one instance runs: the part of a service file that reaches a process, per stage and
//! index. Drivers compare `InstanceSpec`s to decide what to leave alone, replace, start or stop,
//! so two specs are equal exactly when the processes they describe would be the same.
//!
//! Environment of an instance, later entries winning: `run.env` of the file, then `extra_env`
//! (what the platform injects), then the variables the driver sets itself: `PORT`,
//! `PENG_TEAM`, `PENG_SERVICE` (`team/service`), `PENG_STAGE`, `PENG_INSTANCE` (the index),
//! `PENG_MEMORY_LIMIT` (bytes) and `PENG_CPU_LIMIT` (cores) from `resources`.
//! `${VAR}` in command arguments and env values is expanded from that instance environment
//! (one pass, no recursion). An unknown `${X}` is left as written, so a `sh -c` command can
//! still refer to the shell's own variables.
//!
//! Files handed to an instance (`files`: the database CA, …) are named by the variable that
//! carries their path: without a sandbox it is the host path (absolute, because the data
//! directory is made absolute at start); in a sandbox the file is copied in and the variable
//! names `/run/peng/VAR`. Other values may refer to it as `${VAR}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use peng_core::{ServiceId, StageName};
use peng_sandbox::TeamUser;
use peng_spec::{Resources, ServiceSpec};

/// One instance as a driver runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    pub service: ServiceId,
    pub stage: StageName,
    /// 0-based within the stage.
    pub index: u32,
    /// argv, not yet expanded.
    pub command: Vec<String>,
    /// `run.env` merged with the platform's extra variables, not yet expanded.
    pub env: BTreeMap<String, String>,
    /// The service file's directory (absolute): what a sandbox shows of the team's files.
    pub service_dir: PathBuf,
    /// Inside `service_dir`.
    pub workdir: PathBuf,
    /// Directories inside `service_dir` the instance may write to (absolute).
    pub writable: Vec<PathBuf>,
    /// Variable → host file handed to the instance (see the module docs).
    pub files: BTreeMap<String, PathBuf>,
    /// Limits when the driver can enforce them; capacity and cost use them in any case.
    pub resources: Resources,
    /// The process limit: `resources.pids` or the platform's default.
    pub pids: u32,
    /// The team's user, when instances run sandboxed.
    pub user: Option<TeamUser>,
}

/// Every instance of every stage of `spec`, stages in name order, indices ascending.
/// `base_dir` is the directory of the service file: `run.workdir` and `run.writable` are
/// resolved against it (`peng-spec` has made sure they stay inside). `default_pids` applies
/// when the file sets no `resources.pids`. Files and the user are the caller's to add.
pub fn instance_specs(
    spec: &ServiceSpec,
    base_dir: &Path,
    extra_env: &BTreeMap<String, String>,
    default_pids: u32,
) -> Vec<InstanceSpec> {
    let workdir = match &spec.run.workdir {
        Some(dir) => base_dir.join(dir),
        None => base_dir.to_path_buf(),
    };
    let writable: Vec<PathBuf> = spec
        .run
        .writable
        .iter()
        .map(|w| {
            if w == "." {
                base_dir.to_path_buf()
            } else {
                base_dir.join(w)
            }
        })
        .collect();
    let mut env = spec.run.env.clone();
    env.extend(extra_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let service = spec.id();
    spec.stages
        .iter()
        .flat_map(|(stage, s)| (0..s.instances).map(move |index| (stage, index)))
        .map(|(stage, index)| InstanceSpec {
            service: service.clone(),
            stage: stage.clone(),
            index,
            command: spec.run.command.clone(),
            env: env.clone(),
            service_dir: base_dir.to_path_buf(),
            workdir: workdir.clone(),
            writable: writable.clone(),
            files: BTreeMap::new(),
            resources: spec.run.resources.clone(),
            pids: spec.run.resources.pids.unwrap_or(default_pids),
            user: None,
        })
        .collect()
}

impl InstanceSpec {
    /// The full environment the process gets on top of peng's own (see the module docs),
    /// expanded. `sandboxed`: whether handed files are at `/run/peng/VAR` rather than where
    /// they are on the host.
    pub fn process_env(&self, port: u16, sandboxed: bool) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        for (var, host) in &self.files {
            let path = if sandboxed {
                format!("{}/{var}", peng_sandbox::FILES_DIR)
            } else {
                host.display().to_string()
            };
            env.insert(var.clone(), path);
        }
        env.insert("PORT".into(), port.to_string());
        env.insert("PENG_TEAM".into(), self.service.team.to_string());
        env.insert("PENG_SERVICE".into(), self.service.to_string());
        env.insert("PENG_STAGE".into(), self.stage.to_string());
        env.insert("PENG_INSTANCE".into(), self.index.to_string());
        // What the instance is held to, for runtimes that size themselves from the machine
        // otherwise (a JVM's heap: `-XX:MaxRAM=${PENG_MEMORY_LIMIT}`).
        env.insert(
            "PENG_MEMORY_LIMIT".into(),
            self.resources.memory.0.to_string(),
        );
        env.insert("PENG_CPU_LIMIT".into(), self.resources.cpu.to_string());
        env.iter()
            .map(|(k, v)| (k.clone(), expand(v, &env)))
            .collect()
    }

    /// The argv with `${VAR}` expanded from `env` (the result of `process_env`).
    pub fn process_command(&self, env: &BTreeMap<String, String>) -> Vec<String> {
        self.command.iter().map(|arg| expand(arg, env)).collect()
    }

    /// `stage/index`, as plans and progress output name an instance.
    pub fn address(&self) -> String {
        format!("{}/{}", self.stage, self.index)
    }
}

/// Replaces `${NAME}` by its value in `vars`; unknown names and unclosed `${` stay as written.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match vars.get(name) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("PORT".to_string(), "4000".to_string()),
            ("A".to_string(), "x".to_string()),
        ])
    }

    #[test]
    fn expands_known_variables_and_keeps_the_rest() {
        let v = vars();
        assert_eq!(expand("--port=${PORT}", &v), "--port=4000");
        assert_eq!(expand("${A}${A}-${PORT}", &v), "xx-4000");
        assert_eq!(expand("${HOME}/x", &v), "${HOME}/x");
        assert_eq!(expand("$PORT ${", &v), "$PORT ${");
        assert_eq!(expand("${}", &v), "${}");
        assert_eq!(expand("ü${A}ü", &v), "üxü");
    }

    #[test]
    fn process_env_sets_the_peng_variables_and_expands_values() {
        let spec = InstanceSpec {
            service: ServiceId::parse("books/shelf").expect("id"),
            stage: StageName::parse("production").expect("stage"),
            index: 1,
            command: vec!["serve".into(), "--port".into(), "${PORT}".into()],
            env: BTreeMap::from([
                ("URL".into(), "http://127.0.0.1:${PORT}/".into()),
                ("PORT".into(), "overridden".into()),
            ]),
            service_dir: PathBuf::from("/tmp"),
            workdir: PathBuf::from("/tmp"),
            writable: Vec::new(),
            files: BTreeMap::from([("DB_SSL_CA".into(), PathBuf::from("/data/ca.pem"))]),
            resources: Resources {
                cpu: 0.25,
                memory: peng_core::ByteSize(1 << 28),
                pids: None,
            },
            pids: 512,
            user: None,
        };
        let env = spec.process_env(4321, false);
        assert_eq!(env["DB_SSL_CA"], "/data/ca.pem");
        assert_eq!(
            spec.process_env(4321, true)["DB_SSL_CA"],
            "/run/peng/DB_SSL_CA"
        );
        assert_eq!(env["PORT"], "4321");
        assert_eq!(env["URL"], "http://127.0.0.1:4321/");
        assert_eq!(env["PENG_SERVICE"], "books/shelf");
        assert_eq!(env["PENG_TEAM"], "books");
        assert_eq!(env["PENG_STAGE"], "production");
        assert_eq!(env["PENG_INSTANCE"], "1");
        assert_eq!(env["PENG_MEMORY_LIMIT"], "268435456");
        assert_eq!(env["PENG_CPU_LIMIT"], "0.25");
        assert_eq!(spec.process_command(&env), ["serve", "--port", "4321"]);
    }
}
