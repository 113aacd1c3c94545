//! The application layer's error: a kind (which only the API turns into an HTTP status, and
//! the UI into a page), a message that says what and where, and details (one problem a line).

peng_core::kinded_error! {
    pub struct Error;
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A task on the blocking pool that did not finish (it panicked or was cancelled).
    pub fn task(what: &str, e: tokio::task::JoinError) -> Self {
        Self::internal(format!("{what} task failed: {e}"))
    }
}

macro_rules! from_kinded {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::new(e.kind(), e.to_string())
            }
        }
    )*};
}

from_kinded!(
    peng_state::StateError,
    peng_provision::ProvisionError,
    peng_logs::LogError,
    peng_monitor::MonitorError,
    peng_tsdb::TsdbError,
    peng_logs::gelf::GelfError,
    peng_sandbox::SandboxError,
);

impl From<peng_databases::Error> for Error {
    fn from(e: peng_databases::Error) -> Self {
        Error {
            kind: e.kind,
            message: e.message,
            details: e.details,
        }
    }
}

impl From<peng_spec::Diagnostics> for Error {
    fn from(d: peng_spec::Diagnostics) -> Self {
        let details: Vec<String> = d.0.iter().map(|x| x.to_string()).collect();
        let n = details.len();
        Error::invalid(format!(
            "the service file has {n} error{}",
            if n == 1 { "" } else { "s" }
        ))
        .with_details(details)
    }
}
