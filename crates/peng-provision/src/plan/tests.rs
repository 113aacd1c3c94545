//! Plans rendered as text and compared with the expected output.

use std::collections::BTreeMap;

use peng_core::{ByteSize, Duration, ServiceName, StageName, TeamName};
use peng_spec::*;

use super::*;

fn stage(name: &str) -> StageName {
    StageName::parse(name).expect("test stage name")
}

fn spec() -> ServiceSpec {
    ServiceSpec {
        service: ServiceName::parse("bookshelf").expect("name"),
        team: TeamName::parse("books").expect("name"),
        stages: BTreeMap::from([
            (stage("integration"), StageSpec { instances: 1 }),
            (stage("production"), StageSpec { instances: 2 }),
        ]),
        run: RunSpec {
            command: vec!["./bookshelf".into(), "--port".into(), "${PORT}".into()],
            env: BTreeMap::from([("JAVA_OPTS".into(), "-Xmx256m".into())]),
            workdir: None,
            writable: Vec::new(),
            health: HealthCheck {
                probe: HealthProbe::Http {
                    path: "/health".into(),
                },
                every: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
            },
            resources: Resources {
                cpu: 0.5,
                memory: ByteSize(512 << 20),
                pids: None,
            },
        },
        logging: LoggingSpec {
            retention: Duration::from_secs(7 * 86400),
        },
        database: None,
        sensors: vec![SensorSpec {
            name: "books-page".into(),
            kind: SensorKind::Http(sensors::http::Http {
                target: HttpTarget::Path("/books".into()),
                method: "GET".into(),
            }),
            every: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
            expect: vec![Condition::Status {
                op: CmpOp::Eq,
                value: 200,
            }],
        }],
        alerts: vec![AlertSpec {
            name: "books-down".into(),
            sensor: "books-page".into(),
            when: AlertCondition::Failing {
                for_: Duration::from_secs(120),
            },
            severity: Severity::Critical,
            plan: "page-oncall".into(),
        }],
        action_plans: BTreeMap::from([(
            "page-oncall".into(),
            ActionPlan {
                runbook: Some("https://wiki.example/books".into()),
                notify: vec![NotifyTarget::Webhook {
                    url: "https://hooks.example/oncall".into(),
                }],
                escalate: None,
            },
        )]),
    }
}

fn check(plan: Result<Plan, ProvisionError>, expected: &str) {
    let text = plan.expect("plan").to_string();
    assert_eq!(text, expected, "\n--- got ---\n{text}");
}

#[test]
fn new_service_creates_everything() {
    let desired = spec();
    check(
        plan(None, Some(&desired), None),
        r#"  + service books/bookshelf
  + instance integration/0
  + instance production/0
  + instance production/1
  + health
  + logging
  + sensor books-page
  + alert books-down
  + action_plan page-oncall

Plan: 9 to add, 0 to change, 0 to destroy.
"#,
    );
}

#[test]
fn unchanged_file_plans_nothing() {
    let s = spec();
    let p = plan(Some(&s), Some(&s), None).expect("plan");
    assert!(p.is_empty());
    assert_eq!(p.summary(), (0, 0, 0));
    assert_eq!(
        p.to_string(),
        "No changes. books/bookshelf matches the file.\n"
    );
}

#[test]
fn process_changes_replace_instances() {
    let current = spec();
    let mut desired = spec();
    desired.run.command = vec!["./bookshelf".into(), "--fast".into()];
    desired.run.env.insert("MODE".into(), "x".into());
    desired.run.env.remove("JAVA_OPTS");
    desired.run.workdir = Some("app".into());
    desired.run.resources.memory = ByteSize(1 << 30);
    check(
        plan(Some(&current), Some(&desired), None),
        r#"-/+ instance integration/0
      run.command: ["./bookshelf", "--port", "${PORT}"] -> ["./bookshelf", "--fast"]
      run.env.JAVA_OPTS: removed
      run.env.MODE: added
      run.workdir: (none) -> "app"
      run.resources.memory: 512Mi -> 1Gi
-/+ instance production/0
      run.command: ["./bookshelf", "--port", "${PORT}"] -> ["./bookshelf", "--fast"]
      run.env.JAVA_OPTS: removed
      run.env.MODE: added
      run.workdir: (none) -> "app"
      run.resources.memory: 512Mi -> 1Gi
-/+ instance production/1
      run.command: ["./bookshelf", "--port", "${PORT}"] -> ["./bookshelf", "--fast"]
      run.env.JAVA_OPTS: removed
      run.env.MODE: added
      run.workdir: (none) -> "app"
      run.resources.memory: 512Mi -> 1Gi

Plan: 3 to add, 0 to change, 3 to destroy.
"#,
    );
}

#[test]
fn scaling_adds_or_removes_only_the_difference() {
    let current = spec();
    let mut desired = spec();
    desired
        .stages
        .insert(stage("production"), StageSpec { instances: 4 });
    desired
        .stages
        .insert(stage("integration"), StageSpec { instances: 0 });
    check(
        plan(Some(&current), Some(&desired), None),
        r#"  - instance integration/0
  + instance production/2
  + instance production/3

Plan: 2 to add, 0 to change, 1 to destroy.
"#,
    );
    let mut down = spec();
    down.stages
        .insert(stage("production"), StageSpec { instances: 0 });
    let mut up = spec();
    up.stages
        .insert(stage("production"), StageSpec { instances: 3 });
    check(
        plan(Some(&up), Some(&down), None),
        r#"  - instance production/2
  - instance production/1
  - instance production/0

Plan: 0 to add, 0 to change, 3 to destroy.
"#,
    );
}

#[test]
fn scaling_with_a_process_change_replaces_the_kept_ones() {
    let current = spec();
    let mut desired = spec();
    desired.run.env.insert("JAVA_OPTS".into(), "-Xmx1g".into());
    desired
        .stages
        .insert(stage("production"), StageSpec { instances: 1 });
    desired.stages.remove(&stage("integration"));
    check(
        plan(Some(&current), Some(&desired), None),
        r#"  ~ service books/bookshelf
      stages: ["integration", "production"] -> ["production"]
  - instance integration/0
-/+ instance production/0
      run.env.JAVA_OPTS: changed
  - instance production/1

Plan: 1 to add, 1 to change, 3 to destroy.
"#,
    );
}

#[test]
fn named_objects_are_updated_in_place() {
    let current = spec();
    let mut desired = spec();
    desired.sensors[0].every = Duration::from_secs(10);
    desired.sensors[0].expect.push(Condition::BodyContains {
        text: "Bücher".into(),
        negated: false,
    });
    desired.sensors.push(SensorSpec {
        name: "db-port".into(),
        kind: SensorKind::Tcp(sensors::tcp::Tcp {
            host: None,
            port: Some(3306),
        }),
        every: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        expect: vec![],
    });
    desired.alerts[0].when = AlertCondition::Value {
        op: CmpOp::Lt,
        threshold: 5.0,
        for_: Duration::from_secs(600),
    };
    desired.alerts[0].severity = Severity::Warning;
    desired.run.health.probe = HealthProbe::Tcp;
    desired.logging.retention = Duration::from_secs(14 * 86400);
    let oncall = desired
        .action_plans
        .remove("page-oncall")
        .expect("plan in spec");
    desired.action_plans.insert(
        "tell-team".into(),
        ActionPlan {
            runbook: None,
            ..oncall
        },
    );
    desired.alerts[0].plan = "tell-team".into();
    check(
        plan(Some(&current), Some(&desired), None),
        r#"  ~ health
      probe: http /health -> tcp
  ~ logging
      retention: 7d -> 14d
  ~ sensor books-page
      every: 30s -> 10s
      expect: ["status == 200"] -> ["status == 200", "body contains 'Bücher'"]
  + sensor db-port
  ~ alert books-down
      when: failing for 2m -> value < 5 for 10m
      severity: critical -> warning
      plan: page-oncall -> tell-team
  - action_plan page-oncall
  + action_plan tell-team

Plan: 2 to add, 4 to change, 1 to destroy.
"#,
    );
}

#[test]
fn destroy_removes_everything() {
    let current = spec();
    let p = plan(Some(&current), None, None).expect("plan");
    assert_eq!(p.summary(), (0, 0, 9));
    check(
        Ok(p),
        r#"  - service books/bookshelf
  - instance integration/0
  - instance production/1
  - instance production/0
  - health
  - logging
  - sensor books-page
  - alert books-down
  - action_plan page-oncall

Plan: 0 to add, 0 to change, 9 to destroy.
"#,
    );
}

#[test]
fn a_stage_limits_instance_changes_to_that_stage() {
    let current = spec();
    let mut desired = spec();
    desired.run.command = vec!["./bookshelf-v2".into()];
    desired
        .stages
        .insert(stage("integration"), StageSpec { instances: 2 });
    desired
        .stages
        .insert(stage("production"), StageSpec { instances: 5 });
    desired.logging.retention = Duration::from_secs(86400);
    check(
        plan(Some(&current), Some(&desired), Some(&stage("integration"))),
        r#"-/+ instance integration/0
      run.command: ["./bookshelf", "--port", "${PORT}"] -> ["./bookshelf-v2"]
  + instance integration/1
  ~ logging
      retention: 7d -> 1d

Plan: 2 to add, 1 to change, 1 to destroy.
"#,
    );
    let merged = merge_stage(Some(&current), &desired, &stage("integration"));
    assert_eq!(merged.stages[&stage("integration")].instances, 2);
    assert_eq!(merged.stages[&stage("production")].instances, 2);
    assert_eq!(merged.run, desired.run);
}

#[test]
fn a_new_service_on_one_stage_only_creates_that_stage() {
    let desired = spec();
    check(
        plan(None, Some(&desired), Some(&stage("production"))),
        r#"  + service books/bookshelf
  + instance production/0
  + instance production/1
  + health
  + logging
  + sensor books-page
  + alert books-down
  + action_plan page-oncall

Plan: 8 to add, 0 to change, 0 to destroy.
"#,
    );
}

#[test]
fn a_stage_dropped_from_the_file_is_destroyed_with_that_stage() {
    let current = spec();
    let mut desired = spec();
    desired.stages.remove(&stage("integration"));
    check(
        plan(Some(&current), Some(&desired), Some(&stage("integration"))),
        r#"  ~ service books/bookshelf
      stages: ["integration", "production"] -> ["production"]
  - instance integration/0

Plan: 0 to add, 1 to change, 1 to destroy.
"#,
    );
}

fn database() -> DatabaseSpec {
    DatabaseSpec {
        engine: DbEngine::MariaDb,
        version: "10.11".into(),
        plan: "small".into(),
        mode: DbMode::Dedicated,
        server: None,
        replica: false,
        backup: BackupSpec {
            every: Duration::from_secs(86400),
            retention: Duration::from_secs(7 * 86400),
        },
        protect: None,
    }
}

fn with_database() -> ServiceSpec {
    ServiceSpec {
        database: Some(database()),
        ..spec()
    }
}

#[test]
fn a_database_is_created_per_stage_after_the_instances() {
    check(
        plan(Some(&spec()), Some(&with_database()), None),
        r#"  + database integration
  + database production

Plan: 2 to add, 0 to change, 0 to destroy.
"#,
    );
    let new = plan(None, Some(&with_database()), None).expect("plan");
    let addresses: Vec<&str> = new.changes.iter().map(|c| c.address.as_str()).collect();
    assert_eq!(
        addresses[..6],
        [
            "service books/bookshelf",
            "instance integration/0",
            "instance production/0",
            "instance production/1",
            "database integration",
            "database production",
        ]
    );
}

#[test]
fn database_changes_are_updated_in_place() {
    let current = with_database();
    let mut desired = with_database();
    let db = desired.database.as_mut().expect("database");
    db.plan = "medium".into();
    db.replica = true;
    db.version = "11.4".into();
    db.backup.every = Duration::from_secs(6 * 3600);
    check(
        plan(Some(&current), Some(&desired), None),
        r#"  ~ database integration
      version: 10.11 -> 11.4
      plan: small -> medium
      replica: false -> true
      backup.every: 1d -> 6h
  ~ database production
      version: 10.11 -> 11.4
      plan: small -> medium
      replica: false -> true
      backup.every: 1d -> 6h

Plan: 0 to add, 2 to change, 0 to destroy.
"#,
    );
}

#[test]
fn a_new_mode_replaces_the_database_with_an_empty_one() {
    let current = with_database();
    let mut desired = with_database();
    let db = desired.database.as_mut().expect("database");
    db.mode = DbMode::Shared;
    check(
        plan(Some(&current), Some(&desired), Some(&stage("production"))),
        r#"-/+ database production
      mode: dedicated -> shared (a new, empty database; back up and restore to move data)
      protected: destroying needs --force and takes a final backup first

Plan: 1 to add, 0 to change, 1 to destroy.
"#,
    );
    let mut moved = desired.clone();
    moved.database.as_mut().expect("database").server = Some("shared-2".into());
    check(
        plan(Some(&desired), Some(&moved), Some(&stage("integration"))),
        r#"-/+ database integration
      server: (default) -> shared-2 (a new, empty database; back up and restore to move data)

Plan: 1 to add, 0 to change, 1 to destroy.
"#,
    );
}

#[test]
fn removing_the_database_destroys_it_and_names_the_protection() {
    let current = with_database();
    check(
        plan(Some(&current), Some(&spec()), None),
        r#"  - database integration
  - database production
      protected: destroying needs --force and takes a final backup first

Plan: 0 to add, 0 to change, 2 to destroy.
"#,
    );
    let mut unprotected = with_database();
    unprotected.database.as_mut().expect("database").protect = Some(false);
    check(
        plan(Some(&current), Some(&unprotected), None),
        r#"  ~ database production
      protect: true -> false

Plan: 0 to add, 1 to change, 0 to destroy.
"#,
    );
    let p = plan(Some(&unprotected), None, None).expect("plan");
    let db = p
        .changes
        .iter()
        .find(|c| c.address == "database production")
        .expect("production database destroyed");
    assert_eq!((db.action, db.details.len()), (Action::Destroy, 0));
}

#[test]
fn a_stage_plans_only_that_stages_database() {
    let current = with_database();
    let mut desired = with_database();
    desired.stages.remove(&stage("production"));
    desired.database.as_mut().expect("database").plan = "medium".into();
    check(
        plan(Some(&current), Some(&desired), Some(&stage("production"))),
        r#"  ~ service books/bookshelf
      stages: ["integration", "production"] -> ["integration"]
  - instance production/1
  - instance production/0
  - database production
      protected: destroying needs --force and takes a final backup first

Plan: 0 to add, 1 to change, 3 to destroy.
"#,
    );
    check(
        plan(Some(&current), None, Some(&stage("integration"))),
        r#"  ~ service books/bookshelf
      stages: ["integration", "production"] -> ["production"]
  - instance integration/0
  - database integration

Plan: 0 to add, 1 to change, 2 to destroy.
"#,
    );
}

#[test]
fn bad_calls_are_errors() {
    let s = spec();
    assert!(matches!(
        plan(None, None, None),
        Err(ProvisionError::NothingToPlan)
    ));
    let err = plan(Some(&s), Some(&s), Some(&stage("canary"))).expect_err("unknown stage");
    assert_eq!(
        err.to_string(),
        "stage 'canary' is not declared by books/bookshelf"
    );
    assert_eq!(err.kind(), peng_core::ErrorKind::Invalid);
    let mut other = spec();
    other.service = ServiceName::parse("other").expect("name");
    assert!(matches!(
        plan(Some(&s), Some(&other), None),
        Err(ProvisionError::ServiceMismatch { .. })
    ));
}

#[test]
fn a_sensor_of_another_kind_shows_both_as_the_kinds_say() {
    let current = spec();
    let mut desired = spec();
    desired.sensors[0].kind = SensorKind::Tcp(sensors::tcp::Tcp {
        host: None,
        port: Some(3306),
    });
    check(
        plan(Some(&current), Some(&desired), None),
        r#"  ~ sensor books-page
      kind: http GET /books -> tcp 127.0.0.1:3306

Plan: 0 to add, 1 to change, 0 to destroy.
"#,
    );
    // The default host written out reads the same: nothing to change.
    let mut explicit = spec();
    explicit.sensors[0].kind = SensorKind::Tcp(sensors::tcp::Tcp {
        host: Some("127.0.0.1".into()),
        port: Some(3306),
    });
    let p = plan(Some(&desired), Some(&explicit), None).expect("plan");
    assert!(p.changes.is_empty(), "{p}");
}
