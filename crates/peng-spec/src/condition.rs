//! The small languages inside strings: a sensor's `expect` conditions (`status == 200`,
//! `latency < 500ms`, `body contains 'Dune'`, `value > 0`) and an alert's `when` (`failing for 2m`,
//! `value < 5 for 10m`). Errors are messages without a position; the caller knows where the
//! string was written.

use peng_core::Duration;
use peng_sensors::Subject;

use crate::model::{AlertCondition, CmpOp, Condition};

const CONDITION_FORMS: &str =
    "write it like 'status == 200', 'latency < 500ms', 'body contains \"text\"' or 'value > 0'";
const WHEN_FORMS: &str =
    "write it like 'failing', 'failing for 2m', 'value < 5' or 'value >= 0.9 for 10m'";
const OPERATORS: &str = "use one of == != < <= > >=";

impl Condition {
    /// What the condition checks; a sensor's kind says whether its runs observe it.
    pub fn subject(&self) -> Subject {
        match self {
            Condition::Status { .. } => Subject::Status,
            Condition::Latency { .. } => Subject::Latency,
            Condition::BodyContains { .. } => Subject::Body,
            Condition::Value { .. } => Subject::Value,
        }
    }
}

/// Parses one `expect` entry.
pub(crate) fn parse_condition(text: &str) -> Result<Condition, String> {
    let (subject, rest) = split_word(text.trim());
    match subject {
        "status" => {
            let (op, value) = split_op(text, rest)?;
            let value = value
                .parse::<u16>()
                .ok()
                .filter(|v| (100..=599).contains(v))
                .ok_or_else(|| {
                    format!("condition '{text}': '{value}' is not an HTTP status (100 to 599)")
                })?;
            Ok(Condition::Status { op, value })
        }
        "latency" => {
            let (op, value) = split_op(text, rest)?;
            let value = Duration::parse(value).map_err(|e| format!("condition '{text}': {e}"))?;
            Ok(Condition::Latency { op, value })
        }
        "value" => {
            let (op, value) = split_op(text, rest)?;
            let value = parse_number(value)
                .ok_or_else(|| format!("condition '{text}': '{value}' is not a number"))?;
            Ok(Condition::Value { op, value })
        }
        "body" => {
            let (word, rest) = split_word(rest);
            let (negated, rest) = match word {
                "not" => {
                    let (word, rest) = split_word(rest);
                    (true, (word, rest))
                }
                _ => (false, (word, rest)),
            };
            if rest.0 != "contains" {
                return Err(format!(
                    "condition '{text}': expected 'body contains \"text\"' or 'body not contains \"text\"'"
                ));
            }
            let quoted = rest.1.trim();
            let text_inside = unquote(quoted).ok_or_else(|| {
                format!(
                    "condition '{text}': the text after 'contains' must be in quotes, like 'body contains \"Dune\"'"
                )
            })?;
            if text_inside.is_empty() {
                return Err(format!("condition '{text}': the text to look for is empty"));
            }
            Ok(Condition::BodyContains {
                text: text_inside.to_string(),
                negated,
            })
        }
        _ => Err(format!("unknown condition '{text}'; {CONDITION_FORMS}")),
    }
}

/// Parses an alert's `when`.
pub(crate) fn parse_when(text: &str) -> Result<AlertCondition, String> {
    let trimmed = text.trim();
    let (subject, rest) = split_word(trimmed);
    match subject {
        "failing" => {
            let for_ = parse_for(text, rest)?;
            Ok(AlertCondition::Failing { for_ })
        }
        "value" => {
            let (op, rest) = split_op(text, rest)?;
            let (number, rest) = split_word(rest);
            let threshold = parse_number(number)
                .ok_or_else(|| format!("when '{text}': '{number}' is not a number"))?;
            let for_ = parse_for(text, rest)?;
            Ok(AlertCondition::Value {
                op,
                threshold,
                for_,
            })
        }
        _ => Err(format!("unknown alert condition '{text}'; {WHEN_FORMS}")),
    }
}

/// A finite number; `NaN` and `inf` are not numbers to compare with.
fn parse_number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The optional `for D` at the end of a `when`.
fn parse_for(text: &str, rest: &str) -> Result<Duration, String> {
    let (word, rest) = split_word(rest);
    match word {
        "" => Ok(Duration::default()),
        "for" => {
            let (duration, trailing) = split_word(rest);
            if !trailing.is_empty() {
                return Err(format!(
                    "when '{text}': unexpected '{trailing}' after the duration"
                ));
            }
            if duration.is_empty() {
                return Err(format!(
                    "when '{text}': 'for' needs a duration, like 'for 2m'"
                ));
            }
            Duration::parse(duration).map_err(|e| format!("when '{text}': {e}"))
        }
        other => Err(format!("when '{text}': unexpected '{other}'; {WHEN_FORMS}")),
    }
}

/// Splits a leading run of letters (or, if there are none, of non-space characters) from the
/// rest, which is returned without leading spaces.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = match text.find(|c: char| !c.is_ascii_alphabetic()) {
        Some(0) => text.find(char::is_whitespace).unwrap_or(text.len()),
        Some(end) => end,
        None => text.len(),
    };
    let (word, rest) = text.split_at(end);
    (word, rest.trim_start())
}

/// Splits a comparison operator from what follows it; `status==200` and `status == 200` both
/// work.
fn split_op<'a>(text: &str, rest: &'a str) -> Result<(CmpOp, &'a str), String> {
    let end = rest
        .find(|c: char| !matches!(c, '=' | '!' | '<' | '>'))
        .unwrap_or(rest.len());
    let (op, value) = rest.split_at(end);
    let op = match op {
        "==" => CmpOp::Eq,
        "!=" => CmpOp::Ne,
        "<" => CmpOp::Lt,
        "<=" => CmpOp::Le,
        ">" => CmpOp::Gt,
        ">=" => CmpOp::Ge,
        "" => return Err(format!("'{text}' has no comparison; {OPERATORS}")),
        other => {
            return Err(format!(
                "unknown operator '{other}' in '{text}'; {OPERATORS}"
            ))
        }
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("'{text}' has nothing to compare with"));
    }
    Ok((op, value))
}

/// `'text'` or `"text"` → `text`; no escapes, the text runs to the last quote.
fn unquote(text: &str) -> Option<&str> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = text.strip_prefix(quote)?.strip_suffix(quote)?;
    Some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse() {
        assert_eq!(
            parse_condition("status == 200"),
            Ok(Condition::Status {
                op: CmpOp::Eq,
                value: 200
            })
        );
        assert_eq!(
            parse_condition("status!=503"),
            Ok(Condition::Status {
                op: CmpOp::Ne,
                value: 503
            })
        );
        assert_eq!(
            parse_condition("latency < 500ms"),
            Ok(Condition::Latency {
                op: CmpOp::Lt,
                value: Duration::from_millis(500)
            })
        );
        assert_eq!(
            parse_condition("value >= 0.5"),
            Ok(Condition::Value {
                op: CmpOp::Ge,
                value: 0.5
            })
        );
        assert_eq!(
            parse_condition("body contains 'Bestellung'"),
            Ok(Condition::BodyContains {
                text: "Bestellung".to_string(),
                negated: false
            })
        );
        assert_eq!(
            parse_condition("body not contains \"it's down\""),
            Ok(Condition::BodyContains {
                text: "it's down".to_string(),
                negated: true
            })
        );
    }

    #[test]
    fn bad_conditions_say_why() {
        for (text, expected) in [
            ("status = 200", "unknown operator '='"),
            ("status == 42", "not an HTTP status"),
            ("status ==", "nothing to compare with"),
            ("latency < 5 parsecs", "is not a duration"),
            ("latency 5ms", "has no comparison"),
            ("body contains Dune", "must be in quotes"),
            ("body contains ''", "is empty"),
            ("body has 'x'", "expected 'body contains"),
            ("uptime > 3", "unknown condition"),
            ("value > lots", "is not a number"),
            ("value > inf", "is not a number"),
            ("value 3", "has no comparison"),
            ("", "unknown condition"),
            ("é", "unknown condition"),
        ] {
            let error = parse_condition(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn alert_conditions_parse() {
        assert_eq!(
            parse_when("failing for 2m"),
            Ok(AlertCondition::Failing {
                for_: Duration::from_secs(120)
            })
        );
        assert_eq!(
            parse_when("failing"),
            Ok(AlertCondition::Failing {
                for_: Duration::default()
            })
        );
        assert_eq!(
            parse_when("value < 5 for 10m"),
            Ok(AlertCondition::Value {
                op: CmpOp::Lt,
                threshold: 5.0,
                for_: Duration::from_secs(600)
            })
        );
        assert_eq!(
            parse_when("value >= 0.9"),
            Ok(AlertCondition::Value {
                op: CmpOp::Ge,
                threshold: 0.9,
                for_: Duration::default()
            })
        );
    }

    #[test]
    fn bad_alert_conditions_say_why() {
        for (text, expected) in [
            ("failing for", "needs a duration"),
            ("failing for 2", "is not a duration"),
            ("failing since 2m", "unexpected 'since'"),
            ("failing for 2m now", "unexpected 'now'"),
            ("value < five", "is not a number"),
            ("value < NaN", "is not a number"),
            ("value 5", "has no comparison"),
            ("down", "unknown alert condition"),
        ] {
            let error = parse_when(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
