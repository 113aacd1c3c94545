//! `sql`: one query against the service's database on the stage, as its read-only user; it
//! observes the number in the first column of the first row, and the latency. Only in a file
//! with a `database` section.
//!
//! ```yaml
//! sql: "SELECT COUNT(*) FROM orders WHERE created_at > NOW() - INTERVAL 1 HOUR"
//! ```

#[cfg(feature = "probe")]
mod probe;

use std::fmt;

use peng_yaml::tree::Entry;
use peng_yaml::{non_empty_string, Cx};
use serde_json::{json, Value};

use crate::{Context, Kind, Subject};

#[cfg(feature = "probe")]
pub use probe::{SqlRunner, NO_RUNNER};

/// The longest query, in bytes, without the trailing `;`.
pub const MAX_SQL_QUERY_BYTES: usize = 4096;

/// `sql: "SELECT COUNT(*) FROM orders"` against the service's database on each stage, as
/// its read-only user; the value is the first column of the first row. One statement,
/// without the trailing `;`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    pub query: String,
}

impl Kind for Sql {
    const KEY: &'static str = "sql";
    const KEYS: &'static [&'static str] = &[];
    const A_SENSOR: &'static str = "an sql sensor";
    const CHECKS: &'static str = "an sql sensor checks value and latency";
    const OBSERVES: &'static [Subject] = &[Subject::Value, Subject::Latency];

    fn parse(cx: &mut Cx, entry: &Entry, sensor: &str, file: &Context) -> Option<Sql> {
        let label = format!("'sql' in {sensor}");
        let s = non_empty_string(
            cx,
            &entry.value,
            &label,
            "an SQL query like \"SELECT COUNT(*) FROM orders\"",
        )?;
        if !file.has_database {
            cx.err(
                entry.key_pos,
                format!("{sensor} runs an sql query, but this file has no 'database' section"),
            );
            return None;
        }
        let query = s.value.trim();
        let query = query.strip_suffix(';').unwrap_or(query).trim_end();
        if query.len() > MAX_SQL_QUERY_BYTES {
            cx.err(
                s.pos,
                format!(
                    "{label}: the query is {} bytes; at most {MAX_SQL_QUERY_BYTES} are allowed",
                    query.len()
                ),
            );
            return None;
        }
        if query.is_empty() {
            cx.err(s.pos, format!("{label}: the query is empty"));
            return None;
        }
        if has_statement_separator(query) {
            cx.err(
                s.pos,
                format!("{label}: one statement only; ';' may only end the query"),
            );
            return None;
        }
        Some(Sql {
            query: query.to_string(),
        })
    }

    fn schema() -> Value {
        json!({
            "description": "One SQL statement run as the read-only user of the service's database; its value is the first column of the first row. Needs a database section.",
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_SQL_QUERY_BYTES
        })
    }

    fn needs_instance(&self) -> bool {
        false
    }

    #[cfg(feature = "probe")]
    fn probe(
        &self,
        clients: &crate::Clients,
        run: &crate::Run<'_>,
    ) -> impl std::future::Future<Output = Result<crate::Observation, crate::Failed>> + Send {
        probe::probe(self, clients.sql.as_deref(), run)
    }
}

impl fmt::Display for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sql {:?}", self.query)
    }
}

/// Whether `query` holds a `;` outside quoted text and comments, i.e. more than one statement.
fn has_statement_separator(query: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' && q != '`' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                ';' => return true,
                // `-- ` and `#` comments run to the end of the line, `/* */` to its end.
                '-' if chars.peek() == Some(&'-') => {
                    chars.by_ref().take_while(|c| *c != '\n').for_each(drop);
                }
                '#' => chars.by_ref().take_while(|c| *c != '\n').for_each(drop),
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    let mut last = ' ';
                    for c in chars.by_ref() {
                        if last == '*' && c == '/' {
                            break;
                        }
                        last = c;
                    }
                }
                _ => {}
            },
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::read;

    #[test]
    fn one_query_without_its_semicolon() {
        let with_database = Context { has_database: true };
        let kind = read("sql: ' SELECT COUNT(*) FROM orders; '", with_database).unwrap();
        assert_eq!(kind.to_string(), "sql \"SELECT COUNT(*) FROM orders\"");
        assert!(!kind.needs_instance());
        assert_eq!(
            read("sql: SELECT 1", Context::default()).unwrap_err(),
            ["peng.yaml:1:1: sensor 'x' runs an sql query, but this file has no 'database' section"]
        );
        assert_eq!(
            read("sql: ';'", with_database).unwrap_err(),
            ["peng.yaml:1:6: 'sql' in sensor 'x': the query is empty"]
        );
    }

    #[test]
    fn one_sql_statement_with_quotes_and_comments() {
        for one in [
            "SELECT 1",
            "SELECT ';' FROM t",
            "SELECT \"a;b\", `c;d` FROM t WHERE x = 'it\\'s; fine'",
            "SELECT 1 -- no; more\nFROM t",
            "SELECT 1 # no; more\nFROM t",
            "SELECT /* a; b */ 1",
        ] {
            assert!(!has_statement_separator(one), "{one}");
        }
        for two in [
            "SELECT 1; SELECT 2",
            "SELECT 'a'; DROP TABLE t",
            "SELECT 1 /* x */; 2",
        ] {
            assert!(has_statement_separator(two), "{two}");
        }
    }
}
