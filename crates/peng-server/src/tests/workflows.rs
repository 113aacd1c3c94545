//! The workflows of the application layer in the order they promise, with real instances
//! (processes) and, for databases, real `mariadbd` servers:
//! - apply starts what the file declares and records it before it acts; a re-apply touches
//!   nothing; a bad file changes nothing; destroy stops every process and is audited;
//! - a database exists before the instances that use it start, with its address in their
//!   environment; a rotation moves the instances to the new account before the old one is
//!   locked; a promote moves them to the new primary after it took over.

use std::path::Path;

use peng_core::{ServiceId, ServiceName, StageName};
use peng_provision::driver::process::InstanceState;
use peng_state::AuditAction;

use super::{eventually, Fixture};
use crate::ops::services::ServiceStatus;
use crate::ops::Caller;

fn running_pids(s: &ServiceStatus) -> Vec<u32> {
    s.stages
        .iter()
        .flat_map(|st| &st.instances)
        .filter(|i| i.status.state == InstanceState::Running)
        .filter_map(|i| i.status.pid)
        .collect()
}

fn alive(pid: u32) -> bool {
    // a zombie has been reaped by the time the driver reports it gone; its stat says Z
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
}

fn id(team: &str, service: &str) -> ServiceId {
    ServiceId {
        team: peng_core::TeamName::parse(team).expect("team"),
        service: ServiceName::parse(service).expect("service"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reapply_and_destroy_in_order() {
    let f = Fixture::start().await;
    let team = f.team("shop").await;
    let caller = Caller::Team(team.team.clone());
    let file = |instances: u32| {
        format!(
            "apiVersion: peng/v1\nservice: web\nteam: shop\nstages:\n  dev: {{ instances: {instances} }}\nrun:\n  command: [\"sleep\", \"3600\"]\n"
        )
    };
    let web = id("shop", "web");

    let applied = f.apply(&team, &file(2)).await.expect("apply");
    assert_eq!(applied.generation, 1);
    assert_eq!(
        applied
            .events
            .iter()
            .filter(|e| e.contains(" started on port "))
            .count(),
        2,
        "{:?}",
        applied.events
    );
    let pids = eventually("two running instances", || async {
        let s = f.ops.status(&caller, &web).await.ok()?;
        let pids = running_pids(&s);
        (pids.len() == 2).then_some(pids)
    })
    .await;
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");

    // The same file again: nothing planned, nothing done, the same processes.
    let again = f.apply(&team, &file(2)).await.expect("re-apply");
    assert!(again.plan.changes.is_empty(), "{:?}", again.plan);
    assert!(again.events.is_empty(), "{:?}", again.events);
    let s = f.ops.status(&caller, &web).await.expect("status");
    let mut now = running_pids(&s);
    now.sort_unstable();
    let mut before = pids.clone();
    before.sort_unstable();
    assert_eq!(now, before);

    // A file that does not parse changes nothing.
    let bad = f.apply(&team, "apiVersion: peng/v1\nservice: web\n").await;
    let e = bad.expect_err("a bad file is refused");
    assert_eq!(e.kind, peng_core::ErrorKind::Invalid, "{e:?}");
    assert_eq!(
        f.ops
            .status(&caller, &web)
            .await
            .expect("status")
            .generation,
        s.generation
    );

    // One instance fewer: the other keeps running.
    let shrunk = f.apply(&team, &file(1)).await.expect("shrink");
    assert!(
        shrunk.events.iter().any(|e| e.contains("dev/1 stopped")),
        "{:?}",
        shrunk.events
    );

    // Destroy: recorded, then every process stops; the service is gone.
    let destroyed = f.ops.destroy(&caller, &web, false).await.expect("destroy");
    assert!(
        destroyed
            .events
            .iter()
            .any(|e| e.starts_with("stopped all instances of shop/web")),
        "{:?}",
        destroyed.events
    );
    for pid in &pids {
        eventually("the instance's process to end", || async {
            (!alive(*pid)).then_some(())
        })
        .await;
    }
    let gone = f.ops.status(&caller, &web).await.expect_err("destroyed");
    assert_eq!(gone.kind, peng_core::ErrorKind::NotFound);

    let audit = f.ops.audit(&caller, 100).await.expect("audit");
    let actions: Vec<AuditAction> = audit.iter().rev().map(|a| a.entry.action).collect();
    let ours: Vec<AuditAction> = actions
        .into_iter()
        .filter(|a| matches!(a, AuditAction::ServiceApply | AuditAction::ServiceDestroy))
        .collect();
    // two applies that changed something (the re-apply and the bad file did not)
    assert_eq!(
        ours,
        [
            AuditAction::ServiceApply,
            AuditAction::ServiceApply,
            AuditAction::ServiceDestroy
        ],
        "{audit:?}"
    );
    f.stop().await;
}

/// What the instance saw when it started: `DB_PORT DB_USER`, written to `env-INDEX` in its
/// directory.
fn seen(dir: &Path) -> Option<(u16, String)> {
    let text = std::fs::read_to_string(dir.join("env-0")).ok()?;
    let (port, user) = text.trim().split_once(' ')?;
    Some((port.parse().ok()?, user.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_comes_first_and_rotate_and_promote_move_the_instances_in_order() {
    let f = Fixture::start().await;
    let team = f.team("books").await;
    let caller = Caller::Team(team.team.clone());
    let dir = f.service_dir("books");
    let file = "apiVersion: peng/v1\nservice: orders\nteam: books\nstages:\n  dev: { instances: 1 }\nrun:\n  command: [\"sh\", \"-c\", \"echo \\\"$DB_PORT $DB_USER\\\" > env-$PENG_INSTANCE.tmp && mv env-$PENG_INSTANCE.tmp env-$PENG_INSTANCE && exec sleep 3600\"]\ndatabase: { engine: mariadb, version: \"10.11\", replica: true }\n";
    let orders = id("books", "orders");
    let dev = StageName::parse("dev").expect("stage");

    let applied = f.apply(&team, file).await.expect("apply");
    let first_db = applied
        .events
        .iter()
        .position(|e| e.starts_with("database dev:"));
    let first_instance = applied
        .events
        .iter()
        .position(|e| e.starts_with("instance dev/0 started"));
    assert!(
        matches!((first_db, first_instance), (Some(d), Some(i)) if d < i),
        "the database is made before the instance starts: {:?}",
        applied.events
    );
    let db = |s: &ServiceStatus| s.databases.first().map(|d| (d.port, d.status));
    let s = f.ops.status(&caller, &orders).await.expect("status");
    let (port, _) = db(&s).expect("a database");
    let creds = f
        .ops
        .db_credentials(&caller, &orders, &dev)
        .await
        .expect("credentials");
    let (seen_port, seen_user) =
        eventually("the instance's environment", || async { seen(&dir) }).await;
    assert_eq!((seen_port, seen_user.as_str()), (port, creds.user.as_str()));

    // Rotate: the instance runs with the new account before the old one is locked.
    let rotated = f
        .ops
        .db_rotate(&caller, &orders, &dev)
        .await
        .expect("rotate");
    let replaced = rotated
        .iter()
        .position(|e| e.starts_with("instance dev/0 replaced"));
    let locked = rotated.iter().position(|e| e.contains("is locked"));
    assert!(
        matches!((replaced, locked), (Some(r), Some(l)) if r < l && l == rotated.len() - 1),
        "{rotated:?}"
    );
    let new_creds = f
        .ops
        .db_credentials(&caller, &orders, &dev)
        .await
        .expect("credentials");
    assert_ne!(new_creds.user, creds.user);
    eventually("the instance on the new account", || async {
        let (p, u) = seen(&dir)?;
        (p == port && u == new_creds.user).then_some(())
    })
    .await;

    // Promote: the replica takes over first, then the instance moves to it.
    let promoted = f
        .ops
        .db_promote(&caller, &orders, &dev)
        .await
        .expect("promote");
    let took_over = promoted.iter().position(|e| e.contains("is the primary"));
    let moved = promoted
        .iter()
        .position(|e| e.starts_with("instance dev/0 replaced"));
    assert!(
        matches!((took_over, moved), (Some(t), Some(m)) if t < m),
        "{promoted:?}"
    );
    let s = f.ops.status(&caller, &orders).await.expect("status");
    let (new_port, status) = db(&s).expect("a database");
    assert_ne!(new_port, port);
    assert_eq!(status, peng_state::DbStatus::Ready);
    eventually("the instance on the new primary", || async {
        let (p, u) = seen(&dir)?;
        (p == new_port && u == new_creds.user).then_some(())
    })
    .await;

    f.ops
        .destroy(&caller, &orders, false)
        .await
        .expect("destroy");
    f.stop().await;
}
