//! The `sql` sensor kind: one query against the service's database on the stage, through the
//! [`SqlRunner`] the server provides; the value is the first column of the first row. The
//! monitor itself speaks no SQL and holds no credentials.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use peng_core::{ServiceId, StageName};
use peng_spec::{SensorKind, SensorSpec};

use super::{Observation, Outcome};

/// Runs the queries of sql sensors. The server implements it over the services' databases;
/// the monitor only asks for a number.
pub trait SqlRunner: Send + Sync + 'static {
    /// Runs `query` as the read-only user of the service's database on `stage`; the first column
    /// of the first row as a number. Err(message) when there is no database, it is unreachable, the
    /// query fails or does not return a number.
    fn query_value(
        &self,
        service: &ServiceId,
        stage: &StageName,
        query: &str,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<f64, String>> + Send + '_>>;
}

/// The message of an sql run when the server gave the monitor no runner.
pub const NO_RUNNER: &str = "no database runner";

pub(super) async fn run(
    runner: Option<&dyn SqlRunner>,
    service: &ServiceId,
    stage: &StageName,
    sensor: &SensorSpec,
) -> Outcome {
    let SensorKind::Sql { query } = &sensor.kind else {
        return Outcome::failed(Duration::ZERO, "not an sql sensor");
    };
    let Some(runner) = runner else {
        return Outcome::failed(Duration::ZERO, NO_RUNNER);
    };
    let started = Instant::now();
    match runner
        .query_value(service, stage, query, sensor.timeout.as_std())
        .await
    {
        Ok(value) if value.is_finite() => Outcome::judge(
            &sensor.expect,
            &Observation {
                status: None,
                latency: started.elapsed(),
                body: None,
                value: Some(value),
            },
        ),
        Ok(value) => Outcome::failed(
            started.elapsed(),
            format!("the query returned {value}, not a finite number"),
        ),
        Err(why) => Outcome::failed(started.elapsed(), why),
    }
}
