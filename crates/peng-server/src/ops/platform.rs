//! The platform as its operators see it (admins only): whether instances are sandboxed and
//! limited, every component's counters, and the GELF messages that were refused.

use peng_core::metrics::Sample;
use peng_logs::ingest::Rejection;

use super::{Caller, Ops, Result};

#[derive(Debug, Clone)]
pub struct Overview {
    /// `on (...)` or `off (why)`.
    pub isolation: String,
    /// `cgroup v1 (...)` or `off (why)`.
    pub limits: String,
    pub counters: Vec<Sample>,
    /// Newest first.
    pub rejections: Vec<Rejection>,
}

impl Ops {
    pub fn platform(&self, caller: &Caller) -> Result<Overview> {
        caller.require_admin()?;
        Ok(Overview {
            isolation: self.p().driver.isolation().describe(),
            limits: self.p().limits.clone(),
            counters: peng_core::metrics::snapshot(),
            rejections: self.p().ingest_ctx.rejections.list(),
        })
    }

    /// Every counter in Prometheus' text format (admins).
    pub fn metrics(&self, caller: &Caller) -> Result<String> {
        caller.require_admin()?;
        Ok(peng_core::metrics::render_prometheus())
    }
}
