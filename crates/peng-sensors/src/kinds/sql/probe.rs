//! One sql run: the query, through the [`SqlRunner`] the server provides; the value is the
//! first column of the first row. The probe itself speaks no SQL and holds no credentials.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use peng_core::{ServiceId, StageName};

use super::Sql;
use crate::{Failed, Observation, Run};

/// Runs the queries of sql sensors. The server implements it over the services' databases;
/// the probe only asks for a number.
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

pub(super) async fn probe(
    sql: &Sql,
    runner: Option<&dyn SqlRunner>,
    run: &Run<'_>,
) -> Result<Observation, Failed> {
    let Some(runner) = runner else {
        return Err(Failed::new(Duration::ZERO, NO_RUNNER));
    };
    let started = Instant::now();
    match runner
        .query_value(run.service, run.stage, &sql.query, run.timeout)
        .await
    {
        Ok(value) if value.is_finite() => Ok(Observation {
            value: Some(value),
            ..Observation::answered(started.elapsed())
        }),
        Ok(value) => Err(Failed::new(
            started.elapsed(),
            format!("the query returned {value}, not a finite number"),
        )),
        Err(why) => Err(Failed::new(started.elapsed(), why)),
    }
}
