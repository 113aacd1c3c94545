//! How the CLI prints things for people.

use std::path::Path;
use std::process::ExitCode;

use peng_api as wire;
use peng_core::AlertState;

pub fn time(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `peng validate FILE`: offline, every problem at once, exit 1 when invalid.
pub fn validate(file: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("peng: cannot read {}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    match peng_spec::parse_service(&file.display().to_string(), &text) {
        Ok(spec) => {
            println!(
                "{}: ok ({}, {} stage(s), {} sensor(s), {} alert(s))",
                file.display(),
                spec.id(),
                spec.stages.len(),
                spec.sensors.len(),
                spec.alerts.len()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprintln!("{diags}");
            ExitCode::from(1)
        }
    }
}

pub fn service_list(list: &[wire::ServiceSummary]) {
    if list.is_empty() {
        println!("no services");
        return;
    }
    println!(
        "{:<32} {:>5} {:>10} {:>8} {:>8}",
        "SERVICE", "GEN", "INSTANCES", "SENSORS", "FIRING"
    );
    for s in list {
        println!(
            "{:<32} {:>5} {:>10} {:>8} {:>8}",
            s.id,
            s.generation,
            format!("{}/{}", s.instances_running, s.instances_desired),
            format!("{}/{}", s.sensors_ok, s.sensors_ok + s.sensors_failing),
            s.alerts_firing
        );
    }
}

pub fn service_status(s: &wire::ServiceStatus) {
    println!(
        "{}  generation {}  applied {} by {}  logs kept {}",
        s.id,
        s.generation,
        time(s.applied_at_ns),
        s.applied_by,
        s.retention
    );
    println!("isolation: {}", s.isolation);
    println!("limits: {}", s.limits);
    for stage in &s.stages {
        println!(
            "\nstage {} ({} instance(s) declared)",
            stage.name, stage.desired_instances
        );
        println!(
            "  {:<4} {:>8} {:>6} {:<11} {:>8} {:>8} {:>9}  LAST EXIT",
            "#", "PID", "PORT", "STATE", "RESTARTS", "CPU", "MEMORY"
        );
        for i in &stage.instances {
            println!(
                "  {:<4} {:>8} {:>6} {:<11} {:>8} {:>8} {:>9}  {}",
                i.index,
                i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                i.port,
                i.state,
                i.restarts,
                i.cpu_seconds
                    .map(|c| format!("{c:.1}s"))
                    .unwrap_or_else(|| "-".into()),
                i.memory_bytes
                    .map(|m| format!("{:.1}Mi", m as f64 / 1048576.0))
                    .unwrap_or_else(|| "-".into()),
                i.last_exit.as_deref().unwrap_or("")
            );
        }
    }
    for db in &s.databases {
        database_status(db);
    }
    println!();
    sensor_table(&s.sensors);
    let firing: Vec<_> = s
        .alerts
        .iter()
        .filter(|a| {
            matches!(
                AlertState::parse(&a.state),
                Ok(AlertState::Firing | AlertState::Pending)
            )
        })
        .collect();
    if firing.is_empty() {
        println!("\nno firing alerts");
    } else {
        println!("\nALERT                      STAGE          STATE     SEVERITY  SINCE");
        for a in firing {
            println!(
                "{:<26} {:<14} {:<9} {:<9} {}  {}",
                a.alert,
                a.stage,
                a.state,
                a.severity,
                a.started_at_ns.or(a.since_ns).map(time).unwrap_or_default(),
                a.message
            );
        }
    }
}

pub fn sensor_table(sensors: &[wire::SensorState]) {
    println!(
        "{:<22} {:<14} {:>4} {:<5} {:>10}  MESSAGE",
        "SENSOR", "STAGE", "INST", "OK", "LATENCY"
    );
    for s in sensors {
        println!(
            "{:<22} {:<14} {:>4} {:<5} {:>10}  {}",
            s.sensor,
            s.stage,
            s.instance
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            match s.ok {
                Some(true) => "ok",
                Some(false) => "FAIL",
                None => "-",
            },
            s.latency_ms
                .map(|l| format!("{l:.1}ms"))
                .unwrap_or_default(),
            s.message
        );
    }
}

pub fn sensor_history(h: &wire::SensorHistory) {
    let runs = h.points.len();
    let failed = h.points.iter().filter(|p| !p.ok).count();
    let bar: String = h
        .points
        .iter()
        .rev()
        .take(60)
        .rev()
        .map(|p| if p.ok { '▁' } else { '█' })
        .collect();
    let avg = if runs > 0 {
        h.points.iter().map(|p| p.latency_ms).sum::<f64>() / runs as f64
    } else {
        0.0
    };
    println!(
        "{:<22} {:<14} {runs} runs, {failed} failed, avg {avg:.1}ms  {bar}",
        h.sensor, h.stage
    );
}

pub fn log_line(h: &wire::LogHit) -> String {
    let mut where_ = h.service.clone();
    if !h.stage.is_empty() {
        where_.push_str(&format!("/{}", h.stage));
    }
    if !h.instance.is_empty() {
        where_.push_str(&format!("#{}", h.instance));
    }
    format!(
        "{} {:<9} {} [{}] {}",
        time(h.timestamp_ns),
        h.source,
        where_,
        h.level,
        h.message
    )
}

fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    if n >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", n / (1024.0 * 1024.0 * 1024.0))
    } else if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn verified(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "verified",
        Some(false) => "FAILED",
        None => "unverified",
    }
}

pub fn database_status(db: &wire::DatabaseStatus) {
    println!(
        "
database {} ({} mariadb {}, plan {}{}): {}  {}:{}/{}  {}",
        db.stage,
        db.mode,
        db.version,
        db.plan,
        if db.server.is_empty() {
            String::new()
        } else {
            format!(" on {}", db.server)
        },
        db.state,
        db.host,
        db.port,
        db.database,
        if db.protected {
            "protected"
        } else {
            "not protected"
        }
    );
    if let Some(r) = &db.replica {
        println!(
            "  replica {}:{}  io {}  sql {}  lag {}{}",
            r.host,
            r.port,
            if r.io_running { "running" } else { "STOPPED" },
            if r.sql_running { "running" } else { "STOPPED" },
            r.lag_seconds
                .map(|l| format!("{l}s"))
                .unwrap_or_else(|| "-".into()),
            r.last_error
                .as_deref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        );
    }
    match &db.last_backup {
        Some(b) => println!(
            "  last backup {} at {}: {}, {}{}",
            b.id,
            time(b.started_at_ns),
            bytes(b.bytes),
            verified(b.verified),
            b.restore_ms
                .map(|ms| format!(" (restore took {:.1}s)", ms as f64 / 1000.0))
                .unwrap_or_default()
        ),
        None => println!("  no backup yet"),
    }
    for d in &db.drift {
        println!(
            "  drift at {}: {}: {}{}",
            time(d.at_ns),
            d.object,
            d.problem,
            if d.repaired { " (repaired)" } else { "" }
        );
    }
}

pub fn db_credentials(c: &wire::DbCredentials) {
    println!("service   {} ({})", c.service, c.stage);
    println!("host      {}:{}", c.host, c.port);
    println!("database  {}", c.database);
    println!("user      {}", c.user);
    println!("password  {}", c.password);
    println!("read-only {} / {}", c.read_only_user, c.read_only_password);
    println!("\nthe instances' environment:");
    for (k, v) in &c.env {
        println!("  {k}={v}");
    }
    println!(
        "\nTLS is required; the server's certificate is signed by this CA:\n{}",
        c.ca_pem.trim_end()
    );
}

pub fn backups(list: &[wire::Backup]) {
    println!(
        "{:>5}  {:<9} {:<20} {:>10} {:>8}  {:<10} {:>9}  TABLES",
        "ID", "KIND", "STARTED", "SIZE", "DUMP", "CHECK", "RESTORE"
    );
    for b in list {
        println!(
            "{:>5}  {:<9} {:<20} {:>10} {:>7.1}s  {:<10} {:>9}  {}{}",
            b.id,
            b.kind,
            time(b.started_at_ns),
            bytes(b.bytes),
            b.took_ms as f64 / 1000.0,
            verified(b.verified),
            b.restore_ms
                .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into()),
            b.tables
                .iter()
                .map(|(t, n)| format!("{t}={n}"))
                .collect::<Vec<_>>()
                .join(" "),
            b.error
                .as_deref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        );
    }
}

pub fn costs(r: &wire::CostReport) {
    println!(
        "{:<14} {:<16} {:>12} {:>12}  DETAIL",
        "TEAM",
        "ITEM",
        format!("{}/DAY", r.currency),
        format!("{}/MONTH", r.currency)
    );
    for l in &r.lines {
        println!(
            "{:<14} {:<16} {:>12.2} {:>12.2}  {}",
            l.team, l.item, l.per_day, l.per_month, l.detail
        );
    }
    println!(
        "{:<14} {:<16} {:>12.2} {:>12.2}",
        "total", "", r.total_day, r.total_month
    );
    let gib = |b: u64| b as f64 / (1024.0 * 1024.0 * 1024.0);
    println!(
        "\ninstances: each service pays, for cpu and for memory, the larger of what it reserves \
         and what it used on average over the last 24h"
    );
    println!(
        "capacity: {:.2} of {:.2} cpu, {:.2} of {:.2} GiB memory, {:.2} of {:.2} GiB disk reserved",
        r.reserved.cpu,
        r.capacity.cpu,
        gib(r.reserved.memory_bytes),
        gib(r.capacity.memory_bytes),
        gib(r.reserved.disk_bytes),
        gib(r.capacity.disk_bytes)
    );
}
