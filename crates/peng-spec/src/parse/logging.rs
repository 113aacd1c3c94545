//! `logging`: how long the service's log messages are kept.

use peng_core::Duration;
use peng_yaml::tree::Entry;
use peng_yaml::{duration, section, Cx};

use crate::limits::MAX_RETENTION;
use crate::model::LoggingSpec;

pub(crate) const LOGGING_KEYS: &[&str] = &["retention"];

pub(super) const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

pub(super) fn logging(cx: &mut Cx, entry: &Entry) -> Option<LoggingSpec> {
    let f = section(cx, entry, "logging", LOGGING_KEYS)?;
    let retention = match f.get("retention") {
        Some(node) => {
            let retention = duration(cx, node, &f.label("retention"))?;
            if retention.as_std().is_zero() || retention > MAX_RETENTION {
                cx.err(
                    node.pos(),
                    format!(
                        "{}: {retention} is out of range; keep logs for more than 0s and at most 365d",
                        f.label("retention")
                    ),
                );
                return None;
            }
            retention
        }
        None => DEFAULT_RETENTION,
    };
    Some(LoggingSpec { retention })
}
