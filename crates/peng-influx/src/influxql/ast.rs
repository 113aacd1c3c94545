//! The statements peng understands, as the parser leaves them.

use regex::Regex;

#[derive(Debug, Clone)]
pub enum Statement {
    CreateDatabase {
        name: String,
        /// `WITH DURATION d` (0 for `INF`): the raw values' retention.
        duration: Option<i64>,
    },
    /// `ALTER RETENTION POLICY rp ON db DURATION d [DEFAULT]`.
    AlterRetentionPolicy {
        policy: String,
        on: String,
        duration: Option<i64>,
        default: bool,
    },
    DropDatabase {
        name: String,
    },
    ShowDatabases,
    ShowRetentionPolicies {
        on: Option<String>,
    },
    ShowMeasurements {
        on: Option<String>,
        with: Option<NameMatch>,
        limit: Option<u64>,
        offset: u64,
    },
    ShowTagKeys {
        on: Option<String>,
        from: Option<String>,
        limit: Option<u64>,
        offset: u64,
    },
    ShowTagValues {
        on: Option<String>,
        from: Option<String>,
        keys: NameMatch,
        condition: Option<Cond>,
        limit: Option<u64>,
        offset: u64,
    },
    ShowFieldKeys {
        on: Option<String>,
        from: Option<String>,
    },
    ShowSeries {
        on: Option<String>,
        from: Option<String>,
        condition: Option<Cond>,
        limit: Option<u64>,
        offset: u64,
    },
    Select(Box<Select>),
}

impl PartialEq for Statement {
    /// For tests: statements compare by their debug form (regexes by pattern).
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

/// How a name (measurement, tag key) is picked.
#[derive(Debug, Clone)]
pub enum NameMatch {
    Eq(String),
    Ne(String),
    Regex(Regex),
    NotRegex(Regex),
    In(Vec<String>),
}

impl NameMatch {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NameMatch::Eq(n) => n == name,
            NameMatch::Ne(n) => n != name,
            NameMatch::Regex(r) => r.is_match(name),
            NameMatch::NotRegex(r) => !r.is_match(name),
            NameMatch::In(v) => v.iter().any(|n| n == name),
        }
    }
}

/// `db.rp.measurement`; only the measurement is required.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurementRef {
    pub db: Option<String>,
    pub rp: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone)]
pub enum Source {
    Measurement(MeasurementRef),
    Subquery(Box<Select>),
}

#[derive(Debug, Clone)]
pub struct Select {
    pub fields: Vec<SelectField>,
    pub from: Source,
    pub condition: Option<Cond>,
    pub interval: Option<Interval>,
    pub group_tags: GroupTags,
    pub fill: Fill,
    pub descending: bool,
    pub limit: Option<u64>,
    pub offset: u64,
    pub slimit: Option<u64>,
    pub soffset: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SelectField {
    pub expr: Expr,
    pub alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Field(String),
    Wildcard,
    Number(f64),
    Duration(i64),
    Call { name: String, args: Vec<Expr> },
}

/// `GROUP BY time(every, offset)`, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub every: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GroupTags {
    None,
    List(Vec<String>),
    All,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    Null,
    None,
    Previous,
    Linear,
    Value(f64),
}

#[derive(Debug, Clone)]
pub enum Cond {
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Tag {
        key: String,
        negate: bool,
        matcher: Matcher,
    },
    Time {
        op: &'static str,
        at: TimeExpr,
    },
}

#[derive(Debug, Clone)]
pub enum Matcher {
    Eq(String),
    Regex(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeExpr {
    pub base: TimeBase,
    /// Added to the base, in nanoseconds.
    pub shift: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeBase {
    Now,
    Absolute(i64),
}

impl TimeExpr {
    pub fn resolve(&self, now_ns: i64) -> i64 {
        let base = match self.base {
            TimeBase::Now => now_ns,
            TimeBase::Absolute(t) => t,
        };
        base.saturating_add(self.shift)
    }
}
