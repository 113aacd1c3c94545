//! How the CLI prints things for people.

use std::path::Path;
use std::process::ExitCode;

use peng_api as wire;

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
    for stage in &s.stages {
        println!(
            "\nstage {} ({} instance(s) declared)",
            stage.name, stage.desired_instances
        );
        println!(
            "  {:<4} {:>8} {:>6} {:<11} {:>8}  LAST EXIT",
            "#", "PID", "PORT", "STATE", "RESTARTS"
        );
        for i in &stage.instances {
            println!(
                "  {:<4} {:>8} {:>6} {:<11} {:>8}  {}",
                i.index,
                i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                i.port,
                i.state,
                i.restarts,
                i.last_exit.as_deref().unwrap_or("")
            );
        }
    }
    println!();
    sensor_table(&s.sensors);
    let firing: Vec<_> = s
        .alerts
        .iter()
        .filter(|a| a.state == "firing" || a.state == "pending")
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
