//! The state store against a real SQLite file in a temporary directory.

use peng_core::{AlertState, DbMode, Severity, StageName};
use peng_core::{ServiceId, TeamName};
use peng_state::{
    AlertRow, AuditAction, BackupKind, DbNode, DbStatus, NewAudit, Principal, ServiceRow, State,
};

fn audit(action: &str, team: &str) -> NewAudit {
    NewAudit {
        actor: "admin".into(),
        team: Some(team.into()),
        action: AuditAction::parse(action).unwrap_or(AuditAction::TeamCreate),
        target: team.into(),
        detail: String::new(),
    }
}

#[tokio::test]
async fn tokens_teams_services_audit_and_alerts_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let team = TeamName::parse("books").unwrap();
    let id = ServiceId::parse("books/bookshelf").unwrap();
    let (admin, team_token) = {
        let state = State::open(&path).await.unwrap();
        let admin = state
            .ensure_admin_token()
            .await
            .unwrap()
            .expect("first start creates a token");
        assert!(
            state.ensure_admin_token().await.unwrap().is_none(),
            "only one admin token is made"
        );
        let token = state
            .create_team(&team, audit("team.create", "books"))
            .await
            .unwrap();
        let again = state
            .create_team(&team, audit("team.create", "books"))
            .await;
        assert_eq!(again.unwrap_err().kind(), peng_core::ErrorKind::Conflict);
        let row = ServiceRow {
            id: id.clone(),
            file_name: "peng.yaml".into(),
            spec_yaml: "service: bookshelf".into(),
            base_dir: "/srv".into(),
            stages_json: "{}".into(),
            retention_ns: 7,
            generation: 1,
            applied_at: 1,
            applied_by: "team:books".into(),
            destroyed_at: None,
        };
        state
            .put_service(&row, audit("service.apply", "books"))
            .await
            .unwrap();
        state
            .put_alert(&AlertRow {
                service: id.clone(),
                stage: StageName::parse("production").unwrap(),
                alert: "down".into(),
                state: AlertState::Firing,
                since_ns: Some(1),
                started_at_ns: Some(2),
                value: Some(0.5),
                severity: Severity::Critical,
                escalated: false,
                message: "failing".into(),
            })
            .await
            .unwrap();
        state.close().await;
        (admin, token)
    };

    let state = State::open(&path).await.unwrap();
    assert_eq!(
        state.authenticate(&admin).await.unwrap(),
        Some(Principal::Admin)
    );
    assert_eq!(
        state.authenticate(&team_token).await.unwrap(),
        Some(Principal::Team(team.clone()))
    );
    assert_eq!(state.authenticate("peng_wrong").await.unwrap(), None);
    let services = state.services(Some(&team)).await.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].spec_yaml, "service: bookshelf");
    assert!(state
        .services(Some(&TeamName::parse("other").unwrap()))
        .await
        .unwrap()
        .is_empty());
    let log = state.audit_log(Some(&team), 10).await.unwrap();
    assert_eq!(
        log.iter()
            .map(|a| a.entry.action.as_str())
            .collect::<Vec<_>>(),
        ["service.apply", "team.create"]
    );
    let alerts = state.alerts().await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].state, AlertState::Firing);

    state
        .destroy_service(&id, audit("service.destroy", "books"))
        .await
        .unwrap();
    let row = state.service(&id).await.unwrap().unwrap();
    assert!(
        row.destroyed_at.is_some(),
        "destroyed services keep their row for log retention"
    );
    assert!(state.alerts().await.unwrap().is_empty());

    let rotated = state
        .rotate_team_token(&team, audit("team.token.rotate", "books"))
        .await
        .unwrap();
    assert_eq!(
        state.authenticate(&team_token).await.unwrap(),
        None,
        "the old token stops working"
    );
    assert_eq!(
        state.authenticate(&rotated).await.unwrap(),
        Some(Principal::Team(team.clone()))
    );
    let generation = state
        .bump_ingest_generation(&team, audit("team.ingest.rotate", "books"))
        .await
        .unwrap();
    assert_eq!(generation, 2);
    let nobody = TeamName::parse("nobody").unwrap();
    assert_eq!(
        state
            .rotate_team_token(&nobody, audit("team.token.rotate", "nobody"))
            .await
            .unwrap_err()
            .kind(),
        peng_core::ErrorKind::NotFound
    );
}

#[tokio::test]
async fn databases_secrets_and_backups_survive_reopen() {
    use peng_core::StageName;
    use peng_state::{DatabaseRow, SealedSecret};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let id = ServiceId::parse("books/bookshelf").unwrap();
    let stage = StageName::parse("production").unwrap();
    let row = DatabaseRow {
        service: id.clone(),
        stage: stage.clone(),
        mode: DbMode::Dedicated,
        server: String::new(),
        version: "10.11".into(),
        plan: "small".into(),
        db_name: "books_bookshelf_production".into(),
        replica: true,
        port_a: Some(40001),
        port_b: Some(40002),
        primary_node: DbNode::A,
        app_slot: DbNode::A,
        status: DbStatus::Creating,
        created_at: 1,
        updated_at: 1,
    };
    let sealed = SealedSecret {
        nonce: vec![1; 12],
        ciphertext: vec![2; 48],
    };
    let backup_id = {
        let state = State::open(&path).await.unwrap();
        state
            .put_database(
                &row,
                &[("app_a".into(), sealed.clone())],
                Some(audit("database.create", "books")),
            )
            .await
            .unwrap();
        let mut ready = row.clone();
        ready.status = DbStatus::Ready;
        ready.primary_node = DbNode::B;
        state.put_database(&ready, &[], None).await.unwrap();
        let id_b = state
            .start_backup(&id, &stage, BackupKind::Manual, "/x/1.sql.gz")
            .await
            .unwrap();
        let mut b = state.backup(id_b).await.unwrap().unwrap();
        assert_eq!(b.verified, None);
        b.bytes = 1234;
        b.verified = Some(true);
        b.restore_ms = Some(321);
        b.tables_json = r#"{"books":3}"#.into();
        state.finish_backup(&b).await.unwrap();
        state.close().await;
        id_b
    };
    let state = State::open(&path).await.unwrap();
    let got = state.database(&id, &stage).await.unwrap().unwrap();
    assert_eq!(got.status, DbStatus::Ready);
    assert_eq!(got.primary_node, DbNode::B);
    assert_eq!(got.port_b, Some(40002));
    assert!(got.replica);
    assert_eq!(state.databases(Some(&id)).await.unwrap().len(), 1);
    assert_eq!(
        state.db_secrets(&id, &stage).await.unwrap(),
        vec![("app_a".to_string(), sealed)]
    );
    let backups = state.backups(Some(&id), Some(&stage), false).await.unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].id, backup_id);
    assert_eq!(backups[0].verified, Some(true));
    assert_eq!(backups[0].restore_ms, Some(321));
    assert_eq!(backups[0].bytes, 1234);
    state
        .delete_database(&id, &stage, audit("database.destroy", "books"))
        .await
        .unwrap();
    assert!(state.database(&id, &stage).await.unwrap().is_none());
    assert!(state.db_secrets(&id, &stage).await.unwrap().is_empty());
    assert_eq!(
        state.backups(Some(&id), None, false).await.unwrap().len(),
        1,
        "backup history outlives the database"
    );
    let actions: Vec<String> = state
        .audit_log(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.entry.action.to_string())
        .collect();
    assert!(
        actions.contains(&"database.create".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"database.destroy".to_string()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_teams_user_is_recorded_corrected_and_kept_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let team = TeamName::parse("books").unwrap();
    {
        let state = State::open(&path).await.unwrap();
        assert_eq!(state.team_user(&team).await.unwrap(), None);
        state
            .put_team_user(
                &team,
                "peng-books",
                70000,
                70000,
                audit("team.user", "books"),
            )
            .await
            .unwrap();
        state
            .put_team_user(
                &team,
                "peng-books",
                70004,
                70005,
                audit("team.user", "books"),
            )
            .await
            .unwrap();
        state.close().await;
    }
    let state = State::open(&path).await.unwrap();
    let row = state.team_user(&team).await.unwrap().expect("recorded");
    assert_eq!(
        (row.user_name.as_str(), row.uid, row.gid),
        ("peng-books", 70004, 70005)
    );
    let log = state.audit_log(None, 10).await.unwrap();
    assert_eq!(
        log.iter()
            .filter(|a| a.entry.action == AuditAction::TeamUser)
            .count(),
        2
    );
}

#[tokio::test]
async fn an_unknown_word_in_the_state_is_an_error_never_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let id = ServiceId::parse("books/bookshelf").unwrap();
    let state = State::open(&path).await.unwrap();
    let alert = AlertRow {
        service: id,
        stage: StageName::parse("production").unwrap(),
        alert: "down".into(),
        state: AlertState::Firing,
        since_ns: Some(1),
        started_at_ns: Some(1),
        value: None,
        severity: Severity::Critical,
        escalated: false,
        message: "failing".into(),
    };
    state.put_alert(&alert).await.unwrap();
    assert_eq!(state.alerts().await.unwrap(), vec![alert]);
    state.close().await;
    // What a newer peng, or a hand, could leave behind.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE alerts SET severity = 'urgent'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let state = State::open(&path).await.unwrap();
    let e = state.alerts().await.expect_err("an unknown severity");
    assert_eq!(e.kind(), peng_core::ErrorKind::Internal, "{e}");
    assert!(e.to_string().contains("'urgent' is not a severity"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_refused_at_once_though_it_was_just_used_from_every_handle() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state.db")).await.unwrap();
    let team = TeamName::parse("books").unwrap();
    let mut token = state
        .create_team(&team, audit("team.create", "books"))
        .await
        .unwrap();
    let other = state.clone();
    for round in 0..20 {
        // the token is in use, from two handles, while it is rotated
        assert_eq!(
            other.authenticate(&token).await.unwrap(),
            Some(Principal::Team(team.clone()))
        );
        let user = {
            let other = other.clone();
            let token = token.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    let _ = other.authenticate(&token).await;
                }
            })
        };
        let rotated = state
            .rotate_team_token(&team, audit("team.token.rotate", "books"))
            .await
            .unwrap();
        for handle in [&state, &other] {
            assert_eq!(
                handle.authenticate(&token).await.unwrap(),
                None,
                "round {round}: the old token stops working when the rotation returns"
            );
        }
        user.await.unwrap();
        assert_eq!(
            other.authenticate(&token).await.unwrap(),
            None,
            "round {round}"
        );
        token = rotated;
    }
}
