//! From the application layer's types to the wire's (`peng-api`): the only place where they
//! meet. A wire type is a contract: its spellings are the vocabularies' `as_str`.

use peng_api as wire;
use peng_costs::CostReport;
use peng_databases::{Credentials, DatabaseStatus, Finding, ReplicaStatus};
use peng_logs::ingest::Rejection;
use peng_logs::{FieldValue, LogRecord};
use peng_monitor::{AlertRecord, SensorState};
use peng_provision::{Action, Plan};
use peng_state::{AuditEntry, BackupRow};

use crate::ops::services::{Applied, InstanceView, ServiceStatus, ServiceSummary};

pub fn plan(plan: &Plan) -> wire::Plan {
    let (add, change, destroy) = plan.summary();
    wire::Plan {
        service: plan.service.to_string(),
        changes: plan
            .changes
            .iter()
            .map(|c| wire::Change {
                action: action_name(c.action).to_string(),
                address: c.address.clone(),
                details: c.details.clone(),
            })
            .collect(),
        add,
        change,
        destroy,
        text: plan.to_string(),
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace => "replace",
        Action::Destroy => "destroy",
    }
}

pub fn applied(a: &Applied) -> wire::ApplyResponse {
    wire::ApplyResponse {
        plan: plan(&a.plan),
        events: a.events.clone(),
        generation: a.generation,
    }
}

pub fn status(s: &ServiceStatus) -> wire::ServiceStatus {
    wire::ServiceStatus {
        id: s.id.to_string(),
        team: s.id.team.to_string(),
        service: s.id.service.to_string(),
        generation: s.generation,
        applied_at_ns: s.applied_at_ns,
        applied_by: s.applied_by.clone(),
        retention: s.retention.to_string(),
        stages: s
            .stages
            .iter()
            .map(|st| wire::Stage {
                name: st.name.to_string(),
                desired_instances: st.desired_instances,
                instances: st.instances.iter().map(instance).collect(),
            })
            .collect(),
        sensors: s.sensors.iter().map(sensor).collect(),
        alerts: s.alerts.iter().map(alert).collect(),
        databases: s.databases.iter().map(database).collect(),
        isolation: s.isolation.clone(),
        limits: s.limits.clone(),
    }
}

fn instance(v: &InstanceView) -> wire::Instance {
    let i = &v.status;
    wire::Instance {
        stage: i.stage.to_string(),
        index: i.index,
        pid: i.pid,
        port: i.port,
        state: i.state.as_str().to_string(),
        restarts: i.restarts,
        since_ns: i.since_ns,
        last_exit: i.last_exit.clone(),
        cpu_seconds: v.cpu_seconds,
        memory_bytes: v.memory_bytes,
    }
}

pub fn sensor(s: &SensorState) -> wire::SensorState {
    wire::SensorState {
        sensor: s.sensor.clone(),
        stage: s.stage.to_string(),
        instance: s.instance,
        ok: Some(s.last.ok),
        latency_ms: Some(s.last.latency_ms),
        value: s.last.value,
        message: s.last.message.clone(),
        at_ns: Some(s.last.at_ns),
        since_ns: Some(s.since_ns),
        consecutive_failures: s.consecutive_failures,
    }
}

fn alert(a: &AlertRecord) -> wire::Alert {
    wire::Alert {
        alert: a.alert.clone(),
        stage: a.stage.to_string(),
        state: a.state.as_str().to_string(),
        severity: a.severity.as_str().to_string(),
        since_ns: Some(a.since_ns),
        started_at_ns: a.started_at_ns,
        value: a.value,
        escalated: a.escalated,
        message: a.last_message.clone(),
    }
}

fn database(d: &DatabaseStatus) -> wire::DatabaseStatus {
    wire::DatabaseStatus {
        stage: d.stage.to_string(),
        mode: d.mode.as_str().to_string(),
        server: d.server.clone(),
        version: d.version.clone(),
        plan: d.plan.clone(),
        database: d.database.clone(),
        state: match &d.failing {
            Some(why) => format!("failing: {why}"),
            None => d.status.as_str().to_string(),
        },
        host: d.host.clone(),
        port: d.port,
        replica: d.replica.as_ref().map(replica),
        protected: d.protected,
        last_backup: d.last_backup.as_ref().map(backup),
        drift: d.drift.iter().map(drift).collect(),
    }
}

fn replica(r: &ReplicaStatus) -> wire::ReplicaState {
    wire::ReplicaState {
        host: r.host.clone(),
        port: r.port,
        io_running: r.io_running,
        sql_running: r.sql_running,
        lag_seconds: r.lag_seconds,
        last_error: r.last_error.clone(),
    }
}

fn drift(f: &Finding) -> wire::Drift {
    wire::Drift {
        object: f.object.clone(),
        problem: f.problem.clone(),
        repaired: f.repaired,
        at_ns: f.at_ns,
    }
}

pub fn backup(b: &BackupRow) -> wire::Backup {
    wire::Backup {
        id: b.id,
        service: b.service.to_string(),
        stage: b.stage.to_string(),
        kind: b.kind.as_str().to_string(),
        started_at_ns: b.started_at,
        bytes: b.bytes,
        took_ms: b.took_ms,
        tables: serde_json::from_str(&b.tables_json).unwrap_or_default(),
        verified: b.verified,
        restore_ms: b.restore_ms,
        error: b.error.clone(),
    }
}

pub fn credentials(
    id: &peng_core::ServiceId,
    stage: &peng_core::StageName,
    c: Credentials,
) -> wire::DbCredentials {
    wire::DbCredentials {
        service: id.to_string(),
        stage: stage.to_string(),
        host: c.host,
        port: c.port,
        database: c.database,
        user: c.user,
        password: c.password,
        read_only_user: c.read_only_user,
        read_only_password: c.read_only_password,
        ca_pem: c.ca_pem,
        env: c.env,
    }
}

pub fn summary(s: &ServiceSummary) -> wire::ServiceSummary {
    wire::ServiceSummary {
        id: s.id.to_string(),
        team: s.id.team.to_string(),
        service: s.id.service.to_string(),
        generation: s.generation,
        applied_at_ns: s.applied_at_ns,
        instances_desired: s.instances_desired,
        instances_running: s.instances_running,
        sensors_ok: s.sensors_ok,
        sensors_failing: s.sensors_failing,
        alerts_firing: s.alerts_firing,
    }
}

pub fn hit(r: LogRecord) -> wire::LogHit {
    wire::LogHit {
        timestamp_ns: r.timestamp_ns,
        team: r.team.to_string(),
        service: r.service,
        stage: r.stage,
        instance: r.instance,
        source: r.source.as_str().to_string(),
        host: r.host,
        level: r.level,
        message: r.message,
        full_message: r.full_message,
        fields: r
            .fields
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    FieldValue::Str(s) => serde_json::Value::String(s),
                    FieldValue::I64(i) => serde_json::Value::from(i),
                    FieldValue::F64(f) => serde_json::Value::from(f),
                    FieldValue::Bool(b) => serde_json::Value::Bool(b),
                };
                (k, v)
            })
            .collect(),
    }
}

pub fn rejection(r: Rejection) -> wire::Rejection {
    wire::Rejection {
        at_ns: r.time_ns,
        source: r.source.as_str().to_string(),
        peer: r.peer.map(|p| p.to_string()).unwrap_or_default(),
        reason: format!("{}: {}", r.reason, r.detail),
        excerpt: String::from_utf8_lossy(&r.payload).into_owned(),
    }
}

pub fn audit(a: AuditEntry) -> wire::AuditEntry {
    wire::AuditEntry {
        id: a.id,
        at_ns: a.at,
        actor: a.entry.actor,
        team: a.entry.team,
        action: a.entry.action.as_str().to_string(),
        target: a.entry.target,
        detail: a.entry.detail,
    }
}

pub fn costs(r: CostReport) -> wire::CostReport {
    let capacity = |c: peng_costs::Reservation| wire::Capacity {
        cpu: c.cpu,
        memory_bytes: c.memory,
        disk_bytes: c.disk,
    };
    wire::CostReport {
        currency: r.currency,
        lines: r
            .lines
            .into_iter()
            .map(|l| wire::CostLine {
                team: l.team,
                item: l.item,
                detail: l.detail,
                per_day: l.per_day,
                per_month: l.per_month,
            })
            .collect(),
        total_day: r.total_day,
        total_month: r.total_month,
        capacity: capacity(r.capacity),
        reserved: capacity(r.reserved),
    }
}
