//! InfluxQL text to statements: a lexer and a recursive-descent parser for the statements
//! Grafana, Telegraf and people send. What is not in the grammar below is refused with
//! InfluxDB's parse error shape, naming what was found and where; never guessed at.

use regex::Regex;

use super::ast::*;

/// A query that cannot be read (`400 {"error":"error parsing query: ..."}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line 1, char {position}")]
pub struct ParseError {
    pub message: String,
    /// 1-based character position.
    pub position: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// Double-quoted identifier: never a keyword.
    Quoted(String),
    Str(String),
    Number(f64, String),
    Duration(i64),
    Regex(String),
    Sym(&'static str),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Quoted(s) => format!("\"{s}\""),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Number(_, raw) => raw.clone(),
            Tok::Duration(ns) => format!("{ns}ns"),
            Tok::Regex(r) => format!("/{r}/"),
            Tok::Sym(s) => (*s).to_string(),
            Tok::Eof => "EOF".to_string(),
        }
    }
}

const SYMS: [&str; 18] = [
    "::", "=~", "!~", "!=", "<>", "<=", ">=", "=", "<", ">", ",", "(", ")", ";", "*", "+", "-", ".",
];

/// Durations: `10s`, `1h`, `100ms`, `5u`, `2w`.
fn duration_unit(unit: &str) -> Option<i64> {
    Some(match unit {
        "ns" => 1,
        "u" | "µ" | "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        _ => return None,
    })
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |message: String, at: usize| ParseError {
        message,
        position: at + 1,
    };
    // A `/` starts a regex only where a value is expected (after =~ or !~).
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(format!("unterminated {c}"), start)),
                    Some('\\') => {
                        if let Some(&n) = chars.get(i + 1) {
                            s.push(n);
                        }
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&o) => {
                        s.push(o);
                        i += 1;
                    }
                }
            }
            out.push((
                if c == '"' {
                    Tok::Quoted(s)
                } else {
                    Tok::Str(s)
                },
                start,
            ));
            continue;
        }
        if c == '/'
            && matches!(
                out.last(),
                Some((Tok::Sym("=~"), _)) | Some((Tok::Sym("!~"), _))
            )
        {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err("unterminated regex".into(), start)),
                    Some('\\') if chars.get(i + 1) == Some(&'/') => {
                        s.push('/');
                        i += 2;
                    }
                    Some('/') => {
                        i += 1;
                        break;
                    }
                    Some(&o) => {
                        s.push(o);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Regex(s), start));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '-' || chars[j] == '+') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let num: String = chars[start..i].iter().collect();
            let unit_start = i;
            while i < chars.len() && (chars[i].is_alphabetic()) {
                i += 1;
            }
            let unit: String = chars[unit_start..i].iter().collect();
            if unit.is_empty() {
                let v: f64 = num
                    .parse()
                    .map_err(|_| err(format!("bad number {num}"), start))?;
                out.push((Tok::Number(v, num), start));
            } else {
                let n: i64 = num
                    .parse()
                    .map_err(|_| err(format!("invalid duration {num}{unit}"), start))?;
                let per = duration_unit(&unit)
                    .ok_or_else(|| err(format!("invalid duration {num}{unit}"), start))?;
                let ns = n
                    .checked_mul(per)
                    .ok_or_else(|| err(format!("duration {num}{unit} out of range"), start))?;
                out.push((Tok::Duration(ns), start));
            }
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match SYMS.iter().find(|s| rest.starts_with(**s)) {
            Some(s) => {
                i += s.chars().count();
                out.push((Tok::Sym(s), start));
            }
            None => return Err(err(format!("found {c}, expected a statement"), start)),
        }
    }
    out.push((Tok::Eof, chars.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

/// Parses one or more statements separated by `;`.
pub fn parse_query(text: &str) -> Result<Vec<Statement>, ParseError> {
    let mut p = Parser {
        toks: lex(text)?,
        at: 0,
    };
    let mut out = Vec::new();
    loop {
        while p.eat_sym(";") {}
        if p.peek() == &Tok::Eof {
            break;
        }
        out.push(p.statement()?);
        if !p.eat_sym(";") && p.peek() != &Tok::Eof {
            return Err(p.unexpected("; or EOF"));
        }
    }
    if out.is_empty() {
        return Err(ParseError {
            message: "found EOF, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL".into(),
            position: 1,
        });
    }
    Ok(out)
}

#[derive(Default)]
struct PolicySettings {
    duration: Option<i64>,
    default: bool,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].0
    }

    /// The current token, moving past it (also past the end, so that a step back after
    /// reading EOF lands on EOF again).
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        self.at += 1;
        t
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        let (tok, pos) = &self.toks[self.at.min(self.toks.len() - 1)];
        ParseError {
            message: format!("found {}, expected {expected}", tok.describe()),
            position: pos + 1,
        }
    }

    fn unsupported(&self, what: &str) -> ParseError {
        let pos = self.toks[self.at.min(self.toks.len() - 1)].1;
        ParseError {
            message: format!("{what} is not supported by peng"),
            position: pos + 1,
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.next();
            true
        } else {
            false
        }
    }

    fn kw(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(kw))
        }
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Tok::Sym(x) if *x == s) {
            self.next();
            true
        } else {
            false
        }
    }

    fn sym(&mut self, s: &str) -> Result<(), ParseError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.unexpected(s))
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Ident(s) | Tok::Quoted(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected("identifier")),
        }
    }

    fn integer(&mut self) -> Result<u64, ParseError> {
        match self.peek().clone() {
            Tok::Number(v, _) if v >= 0.0 && v.fract() == 0.0 && v < 1e15 => {
                self.next();
                Ok(v as u64)
            }
            _ => Err(self.unexpected("integer")),
        }
    }

    fn statement(&mut self) -> Result<Statement, ParseError> {
        if self.eat_kw("SELECT") {
            return Ok(Statement::Select(Box::new(self.select_body()?)));
        }
        if self.eat_kw("CREATE") {
            if self.eat_kw("RETENTION") {
                return Err(self.unsupported(
                    "CREATE RETENTION POLICY (every database has autogen and rollup_5m; ALTER their DURATION)",
                ));
            }
            self.kw("DATABASE")?;
            let name = self.ident()?;
            let mut duration = None;
            if self.eat_kw("WITH") {
                let settings = self.policy_settings(true)?;
                if settings.default {
                    return Err(self.unexpected("DURATION, REPLICATION, SHARD or NAME"));
                }
                duration = settings.duration;
            }
            return Ok(Statement::CreateDatabase { name, duration });
        }
        if self.eat_kw("ALTER") {
            self.kw("RETENTION")?;
            self.kw("POLICY")?;
            let policy = self.ident()?;
            self.kw("ON")?;
            let on = self.ident()?;
            let settings = self.policy_settings(false)?;
            if settings.duration.is_none() && !settings.default {
                return Err(self.unexpected("DURATION, REPLICATION, SHARD or DEFAULT"));
            }
            return Ok(Statement::AlterRetentionPolicy {
                policy,
                on,
                duration: settings.duration,
                default: settings.default,
            });
        }
        if self.eat_kw("DROP") {
            if self.is_kw("RETENTION") {
                return Err(self.unsupported(
                    "DROP RETENTION POLICY (every database has autogen and rollup_5m)",
                ));
            }
            self.kw("DATABASE")?;
            return Ok(Statement::DropDatabase {
                name: self.ident()?,
            });
        }
        if self.eat_kw("SHOW") {
            return self.show();
        }
        match self.peek() {
            Tok::Ident(s)
                if ["DELETE", "EXPLAIN", "GRANT", "REVOKE", "SET", "KILL"]
                    .iter()
                    .any(|k| s.eq_ignore_ascii_case(k)) =>
            {
                let s = s.to_ascii_uppercase();
                Err(self.unsupported(&s))
            }
            _ => Err(self.unexpected(
                "SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL",
            )),
        }
    }

    /// The settings of `CREATE DATABASE … WITH` (`NAME` allowed) or `ALTER RETENTION POLICY`
    /// (`DEFAULT` allowed). Replication is 1; shard durations are InfluxDB's storage layout,
    /// which peng does not have.
    fn policy_settings(&mut self, create: bool) -> Result<PolicySettings, ParseError> {
        let mut out = PolicySettings::default();
        loop {
            if self.eat_kw("DURATION") {
                out.duration = Some(if self.eat_kw("INF") {
                    0
                } else {
                    self.duration()?
                });
            } else if self.eat_kw("REPLICATION") {
                if self.integer()? != 1 {
                    return Err(self.unsupported("a replication factor other than 1"));
                }
            } else if self.is_kw("SHARD") {
                return Err(self.unsupported("SHARD DURATION"));
            } else if create && self.eat_kw("NAME") {
                let name = self.ident()?;
                if name != "autogen" {
                    return Err(self.unsupported("a retention policy name other than autogen"));
                }
            } else if !create && self.eat_kw("DEFAULT") {
                out.default = true;
            } else {
                return Ok(out);
            }
        }
    }

    fn on_db(&mut self) -> Result<Option<String>, ParseError> {
        if self.eat_kw("ON") {
            Ok(Some(self.ident()?))
        } else {
            Ok(None)
        }
    }

    fn optional_from(&mut self) -> Result<Option<String>, ParseError> {
        if self.eat_kw("FROM") {
            let m = self.measurement_name()?;
            Ok(Some(m.name))
        } else {
            Ok(None)
        }
    }

    /// `m`, `rp.m`, `db.rp.m` or `db..m`.
    fn measurement_name(&mut self) -> Result<MeasurementRef, ParseError> {
        if matches!(self.peek(), Tok::Regex(_)) {
            return Err(self.unsupported("a regular expression as measurement"));
        }
        let mut parts = vec![Some(self.ident()?)];
        while self.eat_sym(".") {
            if self.eat_sym(".") {
                parts.push(None);
            }
            parts.push(Some(self.ident()?));
        }
        let name = parts.pop().flatten().unwrap_or_default();
        let rp = parts.pop().flatten();
        let db = parts.pop().flatten();
        Ok(MeasurementRef { db, rp, name })
    }

    fn limit_offset(&mut self) -> Result<(Option<u64>, u64), ParseError> {
        let mut limit = None;
        let mut offset = 0;
        if self.eat_kw("LIMIT") {
            limit = Some(self.integer()?);
        }
        if self.eat_kw("OFFSET") {
            offset = self.integer()?;
        }
        Ok((limit, offset))
    }

    fn show(&mut self) -> Result<Statement, ParseError> {
        if self.eat_kw("DATABASES") {
            return Ok(Statement::ShowDatabases);
        }
        if self.eat_kw("RETENTION") {
            self.kw("POLICIES")?;
            return Ok(Statement::ShowRetentionPolicies { on: self.on_db()? });
        }
        if self.eat_kw("MEASUREMENTS") {
            let on = self.on_db()?;
            let mut with = None;
            if self.eat_kw("WITH") {
                self.kw("MEASUREMENT")?;
                with = Some(self.name_match()?);
            }
            if self.is_kw("WHERE") {
                return Err(self.unsupported("SHOW MEASUREMENTS ... WHERE"));
            }
            let (limit, offset) = self.limit_offset()?;
            return Ok(Statement::ShowMeasurements {
                on,
                with,
                limit,
                offset,
            });
        }
        if self.eat_kw("TAG") {
            if self.eat_kw("KEYS") {
                let on = self.on_db()?;
                let from = self.optional_from()?;
                let (limit, offset) = self.limit_offset()?;
                return Ok(Statement::ShowTagKeys {
                    on,
                    from,
                    limit,
                    offset,
                });
            }
            self.kw("VALUES")?;
            let on = self.on_db()?;
            let from = self.optional_from()?;
            self.kw("WITH")?;
            self.kw("KEY")?;
            let keys = if self.eat_kw("IN") {
                self.sym("(")?;
                let mut keys = vec![self.ident()?];
                while self.eat_sym(",") {
                    keys.push(self.ident()?);
                }
                self.sym(")")?;
                NameMatch::In(keys)
            } else {
                self.name_match()?
            };
            let condition = if self.eat_kw("WHERE") {
                Some(self.condition()?)
            } else {
                None
            };
            let (limit, offset) = self.limit_offset()?;
            return Ok(Statement::ShowTagValues {
                on,
                from,
                keys,
                condition,
                limit,
                offset,
            });
        }
        if self.eat_kw("FIELD") {
            self.kw("KEYS")?;
            let on = self.on_db()?;
            let from = self.optional_from()?;
            return Ok(Statement::ShowFieldKeys { on, from });
        }
        if self.eat_kw("SERIES") {
            let on = self.on_db()?;
            let from = self.optional_from()?;
            let condition = if self.eat_kw("WHERE") {
                Some(self.condition()?)
            } else {
                None
            };
            let (limit, offset) = self.limit_offset()?;
            return Ok(Statement::ShowSeries {
                on,
                from,
                condition,
                limit,
                offset,
            });
        }
        // What InfluxDB 1.x can show; peng shows the statements above.
        const INFLUX_SHOWS: &str = "CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, MEASUREMENTS, QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, USERS";
        if let Tok::Ident(s) = self.peek() {
            let word = s.to_ascii_uppercase();
            if INFLUX_SHOWS.split(", ").any(|w| w == word) {
                return Err(self.unsupported(&format!("SHOW {word}")));
            }
        }
        Err(self.unexpected(INFLUX_SHOWS))
    }

    fn name_match(&mut self) -> Result<NameMatch, ParseError> {
        let op = self.next();
        match op {
            Tok::Sym("=") => Ok(NameMatch::Eq(self.ident()?)),
            Tok::Sym("!=") | Tok::Sym("<>") => Ok(NameMatch::Ne(self.ident()?)),
            Tok::Sym("=~") | Tok::Sym("!~") => {
                let re = self.regex()?;
                Ok(if op == Tok::Sym("=~") {
                    NameMatch::Regex(re)
                } else {
                    NameMatch::NotRegex(re)
                })
            }
            _ => {
                self.at -= 1;
                Err(self.unexpected("=, !=, =~ or !~"))
            }
        }
    }

    fn regex(&mut self) -> Result<Regex, ParseError> {
        match self.peek().clone() {
            Tok::Regex(r) => {
                let at = self.toks[self.at].1;
                self.next();
                Regex::new(&r).map_err(|e| ParseError {
                    message: format!("invalid regular expression /{r}/: {e}"),
                    position: at + 1,
                })
            }
            _ => Err(self.unexpected("regex")),
        }
    }

    fn select_body(&mut self) -> Result<Select, ParseError> {
        let mut fields = vec![self.select_field()?];
        while self.eat_sym(",") {
            fields.push(self.select_field()?);
        }
        if self.is_kw("INTO") {
            return Err(self.unsupported("SELECT ... INTO"));
        }
        self.kw("FROM")?;
        let from = if self.eat_sym("(") {
            self.kw("SELECT")?;
            let inner = self.select_body()?;
            self.sym(")")?;
            Source::Subquery(Box::new(inner))
        } else {
            let m = self.measurement_name()?;
            if self.eat_sym(",") {
                return Err(self.unsupported("SELECT from several measurements"));
            }
            Source::Measurement(m)
        };
        let condition = if self.eat_kw("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let mut s = Select {
            fields,
            from,
            condition,
            interval: None,
            group_tags: GroupTags::None,
            fill: Fill::Null,
            descending: false,
            limit: None,
            offset: 0,
            slimit: None,
            soffset: 0,
        };
        if self.eat_kw("GROUP") {
            self.kw("BY")?;
            loop {
                if self.eat_kw("time") {
                    self.sym("(")?;
                    let every = self.duration()?;
                    let mut offset = 0;
                    if self.eat_sym(",") {
                        let neg = self.eat_sym("-");
                        offset = self.duration()?;
                        if neg {
                            offset = -offset;
                        }
                    }
                    self.sym(")")?;
                    if every <= 0 {
                        return Err(self.unexpected("a positive interval"));
                    }
                    s.interval = Some(Interval { every, offset });
                } else if self.eat_sym("*") {
                    s.group_tags = GroupTags::All;
                } else if matches!(self.peek(), Tok::Sym("/")) {
                    return Err(self.unsupported("GROUP BY a regular expression"));
                } else {
                    let tag = self.ident()?;
                    match &mut s.group_tags {
                        GroupTags::List(v) => v.push(tag),
                        GroupTags::All => {}
                        g @ GroupTags::None => *g = GroupTags::List(vec![tag]),
                    }
                }
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        if self.eat_kw("fill") {
            self.sym("(")?;
            s.fill = match self.next() {
                Tok::Ident(f) if f.eq_ignore_ascii_case("null") => Fill::Null,
                Tok::Ident(f) if f.eq_ignore_ascii_case("none") => Fill::None,
                Tok::Ident(f) if f.eq_ignore_ascii_case("previous") => Fill::Previous,
                Tok::Ident(f) if f.eq_ignore_ascii_case("linear") => Fill::Linear,
                Tok::Number(v, _) => Fill::Value(v),
                Tok::Sym("-") => match self.next() {
                    Tok::Number(v, _) => Fill::Value(-v),
                    _ => {
                        self.at -= 1;
                        return Err(self.unexpected("number"));
                    }
                },
                _ => {
                    self.at -= 1;
                    return Err(self.unexpected("null, none, previous, linear or a number"));
                }
            };
            self.sym(")")?;
        }
        if self.eat_kw("ORDER") {
            self.kw("BY")?;
            self.kw("time")?;
            if self.eat_kw("DESC") {
                s.descending = true;
            } else {
                self.eat_kw("ASC");
            }
        }
        let (limit, offset) = self.limit_offset()?;
        s.limit = limit;
        s.offset = offset;
        if self.eat_kw("SLIMIT") {
            s.slimit = Some(self.integer()?);
        }
        if self.eat_kw("SOFFSET") {
            s.soffset = self.integer()?;
        }
        if self.eat_kw("tz") {
            return Err(self.unsupported("tz()"));
        }
        Ok(s)
    }

    fn duration(&mut self) -> Result<i64, ParseError> {
        match self.peek().clone() {
            Tok::Duration(ns) => {
                self.next();
                Ok(ns)
            }
            _ => Err(self.unexpected("duration")),
        }
    }

    fn select_field(&mut self) -> Result<SelectField, ParseError> {
        let expr = self.expr()?;
        let alias = if self.eat_kw("AS") {
            Some(self.ident()?)
        } else {
            None
        };
        Ok(SelectField { expr, alias })
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let e = self.operand()?;
        if let Tok::Sym(op @ ("+" | "-" | "*" | "/")) = self.peek() {
            let op = *op;
            return Err(self.unsupported(&format!("arithmetic ({op}) in a SELECT")));
        }
        Ok(e)
    }

    fn operand(&mut self) -> Result<Expr, ParseError> {
        if self.eat_sym("*") {
            return Ok(Expr::Wildcard);
        }
        match self.peek().clone() {
            Tok::Number(v, _) => {
                self.next();
                Ok(Expr::Number(v))
            }
            Tok::Duration(ns) => {
                self.next();
                Ok(Expr::Duration(ns))
            }
            Tok::Quoted(name) => {
                self.next();
                self.field_type_cast()?;
                Ok(Expr::Field(name))
            }
            Tok::Ident(name) => {
                self.next();
                if self.eat_sym("(") {
                    let mut args = Vec::new();
                    if !self.eat_sym(")") {
                        args.push(self.expr()?);
                        while self.eat_sym(",") {
                            args.push(self.expr()?);
                        }
                        self.sym(")")?;
                    }
                    return Ok(Expr::Call {
                        name: name.to_ascii_lowercase(),
                        args,
                    });
                }
                self.field_type_cast()?;
                Ok(Expr::Field(name))
            }
            Tok::Regex(_) => Err(self.unsupported("a regular expression as field")),
            _ => Err(self.unexpected("field or function")),
        }
    }

    /// `"value"::field`, `::float` and friends: read and ignored (a field has one type here).
    fn field_type_cast(&mut self) -> Result<(), ParseError> {
        if self.eat_sym("::") {
            self.ident()?;
        }
        Ok(())
    }

    /// OR of ANDs of comparisons, with parentheses.
    fn condition(&mut self) -> Result<Cond, ParseError> {
        let mut left = self.and_cond()?;
        while self.eat_kw("OR") {
            let right = self.and_cond()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_cond(&mut self) -> Result<Cond, ParseError> {
        let mut left = self.atom_cond()?;
        while self.eat_kw("AND") {
            let right = self.atom_cond()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn atom_cond(&mut self) -> Result<Cond, ParseError> {
        if self.eat_sym("(") {
            let c = self.condition()?;
            self.sym(")")?;
            return Ok(c);
        }
        if self.eat_kw("time") {
            let op = match self.next() {
                Tok::Sym(s @ ("=" | ">" | ">=" | "<" | "<=")) => s,
                _ => {
                    self.at -= 1;
                    return Err(self.unexpected("=, >, >=, < or <= after time"));
                }
            };
            let at = self.time_expr()?;
            return Ok(Cond::Time { op, at });
        }
        let key = self.ident()?;
        let op = self.next();
        match op {
            Tok::Sym(s @ ("=" | "!=" | "<>")) => match self.next() {
                Tok::Str(v) => Ok(Cond::Tag {
                    key,
                    negate: s != "=",
                    matcher: Matcher::Eq(v),
                }),
                Tok::Number(..) | Tok::Ident(_) => Err(self.unsupported(&format!(
                    "a condition on field '{key}' (only tags and time can be compared)"
                ))),
                _ => {
                    self.at -= 1;
                    Err(self.unexpected("string"))
                }
            },
            Tok::Sym(s @ ("=~" | "!~")) => {
                let re = self.regex()?;
                Ok(Cond::Tag {
                    key,
                    negate: s == "!~",
                    matcher: Matcher::Regex(re),
                })
            }
            Tok::Sym("<" | "<=" | ">" | ">=") => Err(self.unsupported(&format!(
                "a condition on field '{key}' (only tags and time can be compared)"
            ))),
            _ => {
                self.at -= 1;
                Err(self.unexpected("=, !=, =~ or !~"))
            }
        }
    }

    /// `now()`, `now() - 1h`, `1690000000000ms`, a number of nanoseconds, or an RFC 3339
    /// string, optionally plus or minus durations.
    fn time_expr(&mut self) -> Result<TimeExpr, ParseError> {
        let base = match self.next() {
            Tok::Ident(n) if n.eq_ignore_ascii_case("now") => {
                self.sym("(")?;
                self.sym(")")?;
                TimeBase::Now
            }
            Tok::Duration(ns) => TimeBase::Absolute(ns),
            Tok::Number(v, raw) if v.fract() == 0.0 => raw
                .parse::<i64>()
                .map(TimeBase::Absolute)
                .map_err(|_| self.unexpected("time"))?,
            Tok::Str(s) => {
                let pos = self.toks[self.at.saturating_sub(1)].1;
                TimeBase::Absolute(parse_rfc3339(&s).ok_or(ParseError {
                    message: format!("invalid time '{s}': expected RFC 3339"),
                    position: pos + 1,
                })?)
            }
            _ => {
                self.at -= 1;
                return Err(self.unexpected("now(), a time or a duration"));
            }
        };
        let mut shift: i64 = 0;
        loop {
            let sign = if self.eat_sym("+") {
                1
            } else if self.eat_sym("-") {
                -1
            } else {
                break;
            };
            shift = shift.saturating_add(sign * self.duration()?);
        }
        Ok(TimeExpr { base, shift })
    }
}

/// `2023-07-22T04:26:40Z`, `2023-07-22T04:26:40.5+02:00` or `2023-07-22` (UTC midnight).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = match s.find(['T', ' ']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let days = peng_core::calendar::days_from_civil(y, m, day);
    let mut ns = days.checked_mul(86_400_000_000_000)?;
    if rest.is_empty() {
        return Some(ns);
    }
    let (clock, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return None,
    };
    let mut c = clock.split(':');
    let h: i64 = c.next()?.parse().ok()?;
    let mi: i64 = c.next()?.parse().ok()?;
    let sec_text = c.next()?;
    let (whole, frac) = sec_text.split_once('.').unwrap_or((sec_text, ""));
    let sec: i64 = whole.parse().ok()?;
    if h > 23 || mi > 59 || sec > 60 || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac_ns: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    ns = ns.checked_add((h * 3600 + mi * 60 + sec) * 1_000_000_000 + frac_ns)?;
    if zone.eq_ignore_ascii_case("z") {
        return Some(ns);
    }
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let (zh, zm) = zone[1..].split_once(':')?;
    let off = (zh.parse::<i64>().ok()? * 60 + zm.parse::<i64>().ok()?) * 60_000_000_000;
    ns.checked_sub(sign * off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(q: &str) -> Statement {
        let mut v = parse_query(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn grafana_and_telegraf_statements() {
        assert_eq!(
            one(r#"CREATE DATABASE "telegraf""#),
            Statement::CreateDatabase {
                name: "telegraf".into(),
                duration: None,
            }
        );
        assert_eq!(
            one(r#"CREATE DATABASE db WITH DURATION 30d REPLICATION 1 NAME "autogen""#),
            Statement::CreateDatabase {
                name: "db".into(),
                duration: Some(30 * 86_400_000_000_000),
            }
        );
        assert_eq!(
            one(r#"ALTER RETENTION POLICY "rollup_5m" ON "db" DURATION INF"#),
            Statement::AlterRetentionPolicy {
                policy: "rollup_5m".into(),
                on: "db".into(),
                duration: Some(0),
                default: false,
            }
        );
        assert_eq!(
            one("alter retention policy autogen on db duration 2h default"),
            Statement::AlterRetentionPolicy {
                policy: "autogen".into(),
                on: "db".into(),
                duration: Some(7_200_000_000_000),
                default: true,
            }
        );
        assert!(matches!(one("SHOW DATABASES"), Statement::ShowDatabases));
        assert!(matches!(
            one(r#"SHOW RETENTION POLICIES on "telegraf""#),
            Statement::ShowRetentionPolicies { on: Some(db) } if db == "telegraf"
        ));
        assert!(matches!(
            one("SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)cp/ LIMIT 100"),
            Statement::ShowMeasurements {
                with: Some(NameMatch::Regex(_)),
                limit: Some(100),
                ..
            }
        ));
        assert!(matches!(
            one(r#"SHOW TAG VALUES FROM "cpu" WITH KEY = "host""#),
            Statement::ShowTagValues { from: Some(m), keys: NameMatch::Eq(k), .. } if m == "cpu" && k == "host"
        ));
        let Statement::Select(s) = one(
            r#"SELECT mean("usage_user") FROM "cpu" WHERE ("host" = 'a') AND time >= 1690000000000ms and time <= 1690003600000ms GROUP BY time(10s), "host" fill(null)"#,
        ) else {
            panic!("not a select")
        };
        assert_eq!(
            s.interval,
            Some(Interval {
                every: 10_000_000_000,
                offset: 0
            })
        );
        assert!(matches!(&s.group_tags, GroupTags::List(t) if t == &["host".to_string()]));
        assert!(
            matches!(&s.fields[0].expr, Expr::Call { name, args } if name == "mean" && args == &[Expr::Field("usage_user".into())])
        );
        let Statement::Select(s) = one(
            r#"SELECT non_negative_derivative(mean("bytes_recv"), 1s) FROM "net" WHERE time > now() - 1h GROUP BY time(1m, 30s) fill(previous) ORDER BY time DESC LIMIT 10"#,
        ) else {
            panic!("not a select")
        };
        assert_eq!(s.fill, Fill::Previous);
        assert!(s.descending);
        assert_eq!(s.limit, Some(10));
        assert_eq!(s.interval.map(|i| i.offset), Some(30_000_000_000));
        let v = parse_query("SHOW DATABASES; SHOW MEASUREMENTS ON db").unwrap();
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn refusals_name_what_is_not_supported() {
        for (q, want) in [
            ("SELECT a + b FROM m", "arithmetic"),
            ("SELECT mean(a) INTO x FROM m", "INTO"),
            ("SHOW USERS", "SHOW USERS is not supported"),
            ("SELECT a FROM m WHERE a > 5", "condition on field 'a'"),
            ("DELETE FROM m", "DELETE is not supported"),
            ("CREATE DATABASE d WITH SHARD DURATION 1d", "SHARD DURATION"),
            ("CREATE DATABASE d WITH REPLICATION 3", "replication factor"),
            (
                "CREATE RETENTION POLICY r ON d DURATION 1d REPLICATION 1",
                "CREATE RETENTION POLICY",
            ),
            ("DROP RETENTION POLICY r ON d", "DROP RETENTION POLICY"),
            (
                "ALTER RETENTION POLICY r ON d",
                "found EOF, expected DURATION",
            ),
            ("SELEKT a FROM m", "found SELEKT"),
            ("SELECT a FROM", "found EOF, expected identifier"),
            (
                "SELECT a FROM m WHERE host =~ /(/",
                "invalid regular expression",
            ),
            ("", "found EOF"),
        ] {
            let e = parse_query(q).expect_err(q);
            assert!(e.message.contains(want), "{q}: {e}");
        }
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_rfc3339("1970-01-01T02:00:00+02:00"), Some(0));
        assert_eq!(
            parse_rfc3339("2023-07-22T04:26:40Z"),
            Some(1_690_000_000_000_000_000)
        );
        assert_eq!(parse_rfc3339("nonsense"), None);
    }

    proptest! {
        #[test]
        fn never_panics(q in "[ -~]{0,120}") {
            let _ = parse_query(&q);
        }

        #[test]
        fn never_panics_on_near_misses(q in "(SELECT|SHOW|FROM|WHERE|GROUP BY|time|now\\(\\)|fill\\(|mean\\(|\"a\"|'b'|=~|/x/|[0-9]+ms|[-+*,;()=<>]| ){0,30}") {
            let _ = parse_query(&q);
        }
    }
}
