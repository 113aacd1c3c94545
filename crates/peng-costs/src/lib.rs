//! The capacity guard and the cost report, both from the platform file, and instances' recorded
//! usage ([`usage`]), which the report charges where it exceeds what is reserved.
//!
//! Pure but for `usage::read`, which reads the metrics store: no network, no state, no HTTP.
//!
//! A service reserves, per stage: its instances' `resources` (cpu, memory) times the instance
//! count, and for a dedicated database its plan's memory and disk (twice with a replica).
//! Databases on a shared server reserve nothing of this machine. An apply whose reservation
//! would take the platform past its capacity is refused while planning, before anything is
//! made; an apply that does not grow the reservation is never refused, even on a platform
//! that is over capacity already (e.g. after the platform file was shrunk).
//!
//! Costs follow OpenCost's model: what is allocated times its price per hour or month, per team.
//! A service's instances are charged, per resource, the larger of what they reserve and what
//! they used on average over the report's window (measured outside and passed in as [`Usage`]);
//! databases by their plans; backups and logs by the bytes they hold on disk (a team's share of
//! the log index is its share of the records); and what is neither reserved nor used is the
//! platform's own line, `unused capacity`. A month is 730 hours.

pub mod usage;

use std::collections::BTreeMap;

use peng_core::{ServiceId, TeamName};
use peng_spec::{DbMode, Platform, ServiceSpec};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const HOURS_PER_MONTH: f64 = 730.0;
const DAYS_PER_MONTH: f64 = HOURS_PER_MONTH / 24.0;

/// What something reserves of the platform's capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reservation {
    pub cpu: f64,
    pub memory: u64,
    pub disk: u64,
}

impl std::ops::Add for Reservation {
    type Output = Reservation;
    fn add(self, o: Reservation) -> Reservation {
        // Sizes come from files: saturate rather than wrap, so a huge ask stays huge.
        Reservation {
            cpu: self.cpu + o.cpu,
            memory: self.memory.saturating_add(o.memory),
            disk: self.disk.saturating_add(o.disk),
        }
    }
}

/// Instances and databases of one service, split so costs can price them apart.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServiceReservation {
    pub instances: Reservation,
    pub instance_count: u32,
    /// Dedicated database servers (primaries and replicas).
    pub databases: Reservation,
    pub database_servers: u32,
    /// Sum of the plans' monthly prices, dedicated and shared.
    pub database_price_month: f64,
}

impl ServiceReservation {
    pub fn total(&self) -> Reservation {
        self.instances + self.databases
    }
}

pub fn reservation(spec: &ServiceSpec, platform: &Platform) -> ServiceReservation {
    let mut r = ServiceReservation::default();
    let res = &spec.run.resources;
    for stage in spec.stages.values() {
        r.instance_count += stage.instances;
        r.instances.cpu += res.cpu * f64::from(stage.instances);
        r.instances.memory = r.instances.memory.saturating_add(
            res.memory
                .bytes()
                .saturating_mul(u64::from(stage.instances)),
        );
    }
    if let Some(db) = &spec.database {
        let plan = platform.databases.plans.get(&db.plan);
        let nodes: u32 = if db.replica { 2 } else { 1 };
        for _ in spec.stages.keys() {
            if let Some(plan) = plan {
                r.database_price_month += plan.price_month * f64::from(nodes);
                if db.mode == DbMode::Dedicated {
                    r.database_servers += nodes;
                    r.databases.memory = r
                        .databases
                        .memory
                        .saturating_add(plan.memory.bytes().saturating_mul(u64::from(nodes)));
                    r.databases.disk = r
                        .databases
                        .disk
                        .saturating_add(plan.disk.bytes().saturating_mul(u64::from(nodes)));
                }
            }
        }
    }
    r
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / GIB)
}

/// Refuses a change that grows the reservation past capacity. `others` is everything else
/// reserved now; `current` what the service reserves now; `desired` what it would reserve.
pub fn check_capacity(
    platform: &Platform,
    others: Reservation,
    current: Reservation,
    desired: Reservation,
) -> Result<(), Vec<String>> {
    let cap = &platform.capacity;
    let mut problems = Vec::new();
    if desired.cpu > current.cpu + 1e-9 && others.cpu + desired.cpu > cap.cpu + 1e-9 {
        problems.push(format!(
            "cpu: this file reserves {:.2}, {:.2} of {:.2} are free",
            desired.cpu,
            (cap.cpu - others.cpu).max(0.0),
            cap.cpu
        ));
    }
    let check = |name: &str, cap: u64, others: u64, cur: u64, want: u64| {
        if want > cur && others.saturating_add(want) > cap {
            Some(format!(
                "{name}: this file reserves {}, {} of {} are free",
                gib(want),
                gib(cap.saturating_sub(others)),
                gib(cap)
            ))
        } else {
            None
        }
    };
    problems.extend(check(
        "memory",
        cap.memory.bytes(),
        others.memory,
        current.memory,
        desired.memory,
    ));
    problems.extend(check(
        "disk",
        cap.disk.bytes(),
        others.disk,
        current.disk,
        desired.disk,
    ));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The cost report: one line per team and item (`instances`, `databases`, `backups`, `logs`),
/// and for admins the platform's unused capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct CostReport {
    pub currency: String,
    pub total_day: f64,
    pub total_month: f64,
    pub lines: Vec<CostLine>,
    /// What the platform may hand out (`disk` included).
    pub capacity: Reservation,
    /// What live services reserve of it.
    pub reserved: Reservation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CostLine {
    /// The team, or `platform` for unused capacity.
    pub team: String,
    pub item: String,
    pub detail: String,
    pub per_day: f64,
    pub per_month: f64,
}

/// What a service's instances used on average over the report's window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Used {
    /// Cores.
    pub cpu: f64,
    pub memory: u64,
}

/// What is used besides reservations: each service's instances (a service without an entry
/// used nothing), and each team's backup and log bytes on disk.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub instances: BTreeMap<ServiceId, Used>,
    pub backup_bytes: BTreeMap<TeamName, u64>,
    pub log_bytes: BTreeMap<TeamName, u64>,
}

/// One team's instances: what they reserve, what they used, and what is charged (per service
/// and resource, the larger of the two).
#[derive(Debug, Clone, Copy, Default)]
struct Instances {
    count: u32,
    reserved: Reservation,
    used: Used,
    charged: Reservation,
}

/// The cost report for `specs` (every live service); with `team`, only that team's lines (and
/// no platform line).
pub fn report(
    platform: &Platform,
    specs: &[ServiceSpec],
    usage: &Usage,
    team: Option<&TeamName>,
) -> CostReport {
    let p = &platform.prices;
    let mut per_team: BTreeMap<TeamName, (Instances, ServiceReservation)> = BTreeMap::new();
    let mut reserved = Reservation::default();
    // What no one else may use: reservations, and instances' use beyond them.
    let mut allocated = Reservation::default();
    for spec in specs {
        let r = reservation(spec, platform);
        let used = usage.instances.get(&spec.id()).copied().unwrap_or_default();
        let charged = Reservation {
            cpu: r.instances.cpu.max(used.cpu),
            memory: r.instances.memory.max(used.memory),
            disk: 0,
        };
        reserved = reserved + r.total();
        allocated = allocated + charged + r.databases;
        let (i, t) = per_team.entry(spec.team.clone()).or_default();
        i.count += r.instance_count;
        i.reserved = i.reserved + r.instances;
        i.used.cpu += used.cpu;
        i.used.memory = i.used.memory.saturating_add(used.memory);
        i.charged = i.charged + charged;
        t.databases = t.databases + r.databases;
        t.database_servers += r.database_servers;
        t.database_price_month += r.database_price_month;
    }
    let mut teams: Vec<TeamName> = per_team.keys().cloned().collect();
    for t in usage.backup_bytes.keys().chain(usage.log_bytes.keys()) {
        if !teams.contains(t) {
            teams.push(t.clone());
        }
    }
    teams.sort();
    let mut lines = Vec::new();
    let mut line = |team: &str, item: &str, detail: String, per_month: f64| {
        lines.push(CostLine {
            team: team.to_string(),
            item: item.to_string(),
            detail,
            per_day: per_month / DAYS_PER_MONTH,
            per_month,
        });
    };
    for t in teams.iter().filter(|t| team.is_none_or(|want| want == *t)) {
        let (i, r) = per_team.get(t).copied().unwrap_or_default();
        if i.count > 0 || i.charged != Reservation::default() {
            let month = (i.charged.cpu * p.cpu_hour
                + i.charged.memory as f64 / GIB * p.memory_gib_hour)
                * HOURS_PER_MONTH;
            line(
                t.as_str(),
                "instances",
                format!(
                    "{} instances: {:.2} cpu reserved, {:.2} used; {} reserved, {:.2} used",
                    i.count,
                    i.reserved.cpu,
                    i.used.cpu,
                    gib(i.reserved.memory),
                    i.used.memory as f64 / GIB
                ),
                month,
            );
        }
        if r.database_price_month > 0.0 {
            line(
                t.as_str(),
                "databases",
                format!(
                    "plans {:.2}/month; {} dedicated servers reserving {} memory, {} disk",
                    r.database_price_month,
                    r.database_servers,
                    gib(r.databases.memory),
                    gib(r.databases.disk)
                ),
                r.database_price_month,
            );
        }
        if let Some(&bytes) = usage.backup_bytes.get(t) {
            line(
                t.as_str(),
                "backups",
                format!("{} of backups", gib(bytes)),
                bytes as f64 / GIB * p.backup_gib_month,
            );
        }
        if let Some(&bytes) = usage.log_bytes.get(t) {
            line(
                t.as_str(),
                "logs",
                format!("{} of log index", gib(bytes)),
                bytes as f64 / GIB * p.log_gib_month,
            );
        }
    }
    let cap = &platform.capacity;
    if team.is_none() {
        let free_cpu = (cap.cpu - allocated.cpu).max(0.0);
        let free_mem = cap.memory.bytes().saturating_sub(allocated.memory);
        let free_disk = cap.disk.bytes().saturating_sub(allocated.disk);
        let month = (free_cpu * p.cpu_hour + free_mem as f64 / GIB * p.memory_gib_hour)
            * HOURS_PER_MONTH
            + free_disk as f64 / GIB * p.disk_gib_month;
        line(
            "platform",
            "unused capacity",
            format!(
                "{free_cpu:.2} cpu, {} memory, {} disk neither reserved nor used",
                gib(free_mem),
                gib(free_disk)
            ),
            month,
        );
    }
    let total_month: f64 = lines.iter().map(|l| l.per_month).sum();
    CostReport {
        currency: p.currency.clone(),
        total_day: total_month / DAYS_PER_MONTH,
        total_month,
        lines,
        capacity: Reservation {
            cpu: cap.cpu,
            memory: cap.memory.bytes(),
            disk: cap.disk.bytes(),
        },
        reserved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(team: &str, instances: u32, db: &str) -> ServiceSpec {
        let yaml = format!(
            "apiVersion: peng/v1\nservice: s{instances}\nteam: {team}\nstages:\n  production: {{ instances: {instances} }}\nrun:\n  command: [\"true\"]\n  resources: {{ cpu: 0.5, memory: 1Gi }}\n{db}"
        );
        peng_spec::parse_service("peng.yaml", &yaml).unwrap()
    }

    #[test]
    fn reservations_count_instances_and_dedicated_plans_twice_with_a_replica() {
        let platform = Platform::builtin();
        let small = &platform.databases.plans["small"];
        let r = reservation(
            &spec(
                "books",
                2,
                "database: { engine: mariadb, version: \"10.11\", replica: true }\n",
            ),
            &platform,
        );
        assert_eq!(r.instance_count, 2);
        assert!((r.instances.cpu - 1.0).abs() < 1e-9);
        assert_eq!(r.instances.memory, 2 * GIB as u64);
        assert_eq!(r.database_servers, 2);
        assert_eq!(r.databases.memory, 2 * small.memory.bytes());
        assert_eq!(r.databases.disk, 2 * small.disk.bytes());
    }

    #[test]
    fn growing_past_capacity_is_refused_with_what_is_free_and_shrinking_never_is() {
        let platform = Platform::builtin();
        let cap = &platform.capacity;
        let others = Reservation {
            cpu: cap.cpu - 0.5,
            memory: 0,
            disk: 0,
        };
        let want = Reservation {
            cpu: 1.0,
            memory: 0,
            disk: 0,
        };
        let err = check_capacity(&platform, others, Reservation::default(), want).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].starts_with("cpu: this file reserves 1.00, 0.50 of"),
            "{err:?}"
        );
        // The same reservation as now is fine even when the platform is full.
        assert!(check_capacity(&platform, others, want, want).is_ok());
        let mem = Reservation {
            cpu: 0.0,
            memory: cap.memory.bytes() + 1,
            disk: 0,
        };
        let err = check_capacity(
            &platform,
            Reservation::default(),
            Reservation::default(),
            mem,
        )
        .unwrap_err();
        assert!(err[0].starts_with("memory: "), "{err:?}");
    }

    #[test]
    fn the_report_prices_each_team_and_the_unused_capacity() {
        let platform = Platform::builtin();
        let specs = vec![
            spec(
                "books",
                2,
                "database: { engine: mariadb, version: \"10.11\" }\n",
            ),
            spec("search", 1, ""),
        ];
        let mut usage = Usage::default();
        usage
            .log_bytes
            .insert(TeamName::parse("books").unwrap(), 2 * GIB as u64);
        let all = report(&platform, &specs, &usage, None);
        let items: Vec<(String, String)> = all
            .lines
            .iter()
            .map(|l| (l.team.clone(), l.item.clone()))
            .collect();
        assert_eq!(
            items,
            vec![
                ("books".into(), "instances".into()),
                ("books".into(), "databases".into()),
                ("books".into(), "logs".into()),
                ("search".into(), "instances".into()),
                ("platform".into(), "unused capacity".into()),
            ]
        );
        let p = &platform.prices;
        let books_instances = &all.lines[0];
        let expect = (1.0 * p.cpu_hour + 2.0 * p.memory_gib_hour) * HOURS_PER_MONTH;
        assert!((books_instances.per_month - expect).abs() < 1e-9);
        assert!((books_instances.per_day * DAYS_PER_MONTH - expect).abs() < 1e-9);
        assert!(
            (all.lines[1].per_month - platform.databases.plans["small"].price_month).abs() < 1e-9
        );
        assert!((all.lines[2].per_month - 2.0 * p.log_gib_month).abs() < 1e-9);
        let sum: f64 = all.lines.iter().map(|l| l.per_month).sum();
        assert!((all.total_month - sum).abs() < 1e-9);
        let books = report(
            &platform,
            &specs,
            &usage,
            Some(&TeamName::parse("books").unwrap()),
        );
        assert!(books.lines.iter().all(|l| l.team == "books"));
    }

    fn used(specs: &[ServiceSpec], service: &str, cpu: f64, memory_gib: f64) -> (ServiceId, Used) {
        let id = specs
            .iter()
            .map(ServiceSpec::id)
            .find(|id| id.service.as_str() == service)
            .expect("service");
        let memory = (memory_gib * GIB) as u64;
        (id, Used { cpu, memory })
    }

    #[test]
    fn instances_are_charged_their_cpu_used_where_it_exceeds_the_reservation() {
        let platform = Platform::builtin();
        let p = &platform.prices;
        // s2 reserves 1 cpu and 2 GiB, s1 0.5 cpu and 1 GiB.
        let specs = vec![spec("books", 2, ""), spec("books", 1, "")];
        let usage = Usage {
            instances: BTreeMap::from([
                used(&specs, "s2", 1.5, 0.5),
                used(&specs, "s1", 0.1, 0.25),
            ]),
            ..Default::default()
        };
        let r = report(&platform, &specs, &usage, None);
        let line = &r.lines[0];
        assert_eq!(line.item, "instances");
        assert_eq!(
            line.detail,
            "3 instances: 1.50 cpu reserved, 1.60 used; 3.00 GiB reserved, 0.75 used"
        );
        // Per service: s2's 1.5 cores used and s1's 0.5 reserved; memory as reserved.
        let expect = (2.0 * p.cpu_hour + 3.0 * p.memory_gib_hour) * HOURS_PER_MONTH;
        assert!((line.per_month - expect).abs() < 1e-9, "{line:?}");
        // What is used beyond reservations is no longer unused capacity; the reservations (and
        // so the capacity guard's view) do not change.
        let unused = r.lines.last().expect("unused capacity");
        let cap = &platform.capacity;
        assert!(
            unused
                .detail
                .starts_with(&format!("{:.2} cpu, ", cap.cpu - 2.0)),
            "{unused:?}"
        );
        assert!((r.reserved.cpu - 1.5).abs() < 1e-9);
        assert_eq!(r.reserved.memory, 3 * GIB as u64);
    }

    #[test]
    fn instances_are_charged_their_memory_used_where_it_exceeds_the_reservation() {
        let platform = Platform::builtin();
        let p = &platform.prices;
        let specs = vec![spec("books", 2, ""), spec("search", 1, "")];
        let usage = Usage {
            instances: BTreeMap::from([used(&specs, "s2", 0.2, 3.5)]),
            ..Default::default()
        };
        let r = report(&platform, &specs, &usage, None);
        let books = &r.lines[0];
        assert_eq!(
            books.detail,
            "2 instances: 1.00 cpu reserved, 0.20 used; 2.00 GiB reserved, 3.50 used"
        );
        let expect = (1.0 * p.cpu_hour + 3.5 * p.memory_gib_hour) * HOURS_PER_MONTH;
        assert!((books.per_month - expect).abs() < 1e-9, "{books:?}");
        // A service without usage points is charged its reservation.
        let search = &r.lines[1];
        assert_eq!(
            search.detail,
            "1 instances: 0.50 cpu reserved, 0.00 used; 1.00 GiB reserved, 0.00 used"
        );
        let expect = (0.5 * p.cpu_hour + 1.0 * p.memory_gib_hour) * HOURS_PER_MONTH;
        assert!((search.per_month - expect).abs() < 1e-9, "{search:?}");
        let unused = r.lines.last().expect("unused capacity");
        let free = platform.capacity.memory.bytes() as f64 / GIB - 4.5;
        assert!(
            unused.detail.contains(&format!(", {free:.2} GiB memory, ")),
            "{unused:?}"
        );
    }
}
