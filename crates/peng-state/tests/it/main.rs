//! The state store against a real SQLite file in a temporary directory.

use peng_core::{ServiceId, TeamName};
use peng_state::{AlertRow, NewAudit, Principal, ServiceRow, State};

fn audit(action: &str, team: &str) -> NewAudit {
    NewAudit {
        actor: "admin".into(),
        team: Some(team.into()),
        action: action.into(),
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
                stage: "production".into(),
                alert: "down".into(),
                state: "firing".into(),
                since_ns: Some(1),
                started_at_ns: Some(2),
                value: Some(0.5),
                severity: "critical".into(),
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
    assert_eq!(alerts[0].state, "firing");

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
            .rotate_team_token(&nobody, audit("x", "nobody"))
            .await
            .unwrap_err()
            .kind(),
        peng_core::ErrorKind::NotFound
    );
}
