//! The numbers behind the database sensors, sampled from a server's status counters.
//!
//! A sample holds cumulative counters as the server reports them; [`Rates`] turns two samples
//! into per-second rates and gives none across a restart (the counters start over).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::MySqlPool;

use crate::replica::{replica_status, ReplicaStatus};
use crate::server::text_rows;
use crate::DbError;

/// One sample of a server.
#[derive(Clone, Debug)]
pub struct DbStats {
    /// When the sample was taken.
    pub at: Instant,
    pub threads_connected: u64,
    pub max_connections: u64,
    /// Statements sent by clients since the server started.
    pub questions: u64,
    /// Statements slower than `long_query_time` since the server started.
    pub slow_queries: u64,
    pub uptime_s: u64,
    /// Data and indexes of every table outside the system schemas.
    pub data_bytes: u64,
    /// Replication, when the server follows a primary.
    pub replica: Option<ReplicaStatus>,
}

impl DbStats {
    /// Connections in use, as a percentage of `max_connections`.
    pub fn used_percent(&self) -> f64 {
        if self.max_connections == 0 {
            return 0.0;
        }
        self.threads_connected as f64 * 100.0 / self.max_connections as f64
    }
}

/// Per-second rates between two samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    pub queries_per_s: f64,
    pub slow_queries_per_s: f64,
}

impl Rates {
    /// The rates from `earlier` to `later`; `None` when the server restarted in between (its
    /// counters went back) or the samples are not apart in time.
    pub fn between(earlier: &DbStats, later: &DbStats) -> Option<Rates> {
        let elapsed = later.at.checked_duration_since(earlier.at)?;
        if elapsed < Duration::from_millis(1)
            || later.uptime_s < earlier.uptime_s
            || later.questions < earlier.questions
            || later.slow_queries < earlier.slow_queries
        {
            return None;
        }
        let per_s = |a: u64, b: u64| (b - a) as f64 / elapsed.as_secs_f64();
        Some(Rates {
            queries_per_s: per_s(earlier.questions, later.questions),
            slow_queries_per_s: per_s(earlier.slow_queries, later.slow_queries),
        })
    }
}

/// Samples the server behind `admin`.
pub async fn sample(admin: &MySqlPool) -> Result<DbStats, DbError> {
    let at = Instant::now();
    let status: BTreeMap<String, String> = text_rows(
        admin,
        "SHOW GLOBAL STATUS WHERE Variable_name IN \
         ('Threads_connected', 'Questions', 'Slow_queries', 'Uptime')",
        "reading the status counters",
    )
    .await?
    .iter()
    .map(|row| (row.at(0).to_ascii_lowercase(), row.at(1)))
    .collect();
    let number = |name: &str| {
        status
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| DbError::Unavailable(format!("the server reported no {name}")))
    };
    let rows = text_rows(
        admin,
        "SELECT @@GLOBAL.max_connections, \
         (SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES \
          WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys'))",
        "reading max_connections and data size",
    )
    .await?;
    let row = rows.first().cloned().unwrap_or_default();
    Ok(DbStats {
        at,
        threads_connected: number("threads_connected")?,
        max_connections: row.at(0).parse().unwrap_or(0),
        questions: number("questions")?,
        slow_queries: number("slow_queries")?,
        uptime_s: number("uptime")?,
        data_bytes: row.at(1).parse().unwrap_or(0),
        replica: replica_status(admin).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(at: Instant, uptime_s: u64, questions: u64, slow_queries: u64) -> DbStats {
        DbStats {
            at,
            threads_connected: 5,
            max_connections: 20,
            questions,
            slow_queries,
            uptime_s,
            data_bytes: 0,
            replica: None,
        }
    }

    #[test]
    fn rates_are_per_second() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(10);
        let rates = Rates::between(&stats(t0, 100, 1000, 4), &stats(t1, 110, 1500, 6)).unwrap();
        assert_eq!(rates.queries_per_s, 50.0);
        assert_eq!(rates.slow_queries_per_s, 0.2);
        assert_eq!(stats(t0, 1, 1, 1).used_percent(), 25.0);
    }

    #[test]
    fn no_rates_across_a_restart_or_without_time() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(
            Rates::between(&stats(t0, 100, 1000, 4), &stats(t1, 5, 20, 0)),
            None
        );
        assert_eq!(
            Rates::between(&stats(t0, 100, 1000, 4), &stats(t0, 100, 1000, 4)),
            None
        );
        assert_eq!(
            Rates::between(&stats(t1, 100, 1000, 4), &stats(t0, 110, 1100, 4)),
            None
        );
    }
}
