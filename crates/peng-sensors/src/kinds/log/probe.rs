//! One log run: the count, through the [`LogCounter`] the server provides, of the sensor's own
//! team's messages since `window` ago. The probe itself reads no logs.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use peng_core::{now_ns, TeamName};

use super::Log;
use crate::{Failed, Observation, Run};

/// Counts log messages for log sensors. The server implements it over the log store; the
/// probe only asks for a number.
pub trait LogCounter: Send + Sync + 'static {
    /// How many of `team`'s messages match `query` with a timestamp at or after `since_ns`
    /// (nanoseconds since the epoch). Only `team`'s messages are ever counted, whatever the
    /// query says. Err(message) when the query is wrong or the store cannot answer.
    fn count(
        &self,
        team: &TeamName,
        query: &str,
        since_ns: i64,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>>;
}

/// The message of a log run when the server gave the monitor no counter.
pub const NO_COUNTER: &str = "no log counter";

pub(super) async fn probe(
    log: &Log,
    counter: Option<&dyn LogCounter>,
    run: &Run<'_>,
) -> Result<Observation, Failed> {
    let Some(counter) = counter else {
        return Err(Failed::new(Duration::ZERO, NO_COUNTER));
    };
    let started = Instant::now();
    let since_ns = now_ns().saturating_sub(log.window.as_nanos_i64());
    // The sensor's own team, from the service it belongs to: never one a query names.
    match counter.count(&run.service.team, &log.query, since_ns).await {
        Ok(count) => Ok(Observation {
            value: Some(count as f64),
            ..Observation::answered(started.elapsed())
        }),
        Err(why) => Err(Failed::new(started.elapsed(), why)),
    }
}

#[cfg(test)]
mod tests {
    use peng_core::{ServiceId, ServiceName, StageName};

    use super::*;

    #[tokio::test]
    async fn without_a_counter_a_run_says_so() {
        let service = ServiceId::new(
            TeamName::parse("books").unwrap(),
            ServiceName::parse("shelf").unwrap(),
        );
        let stage = StageName::parse("production").unwrap();
        let run = Run {
            service: &service,
            stage: &stage,
            instance: None,
            timeout: Duration::from_secs(5),
            want_body: false,
        };
        let log = Log {
            query: "level:3".into(),
            window: peng_core::Duration::from_secs(300),
        };
        let failed = probe(&log, None, &run).await.unwrap_err();
        assert_eq!(failed, Failed::new(Duration::ZERO, NO_COUNTER));
    }
}
