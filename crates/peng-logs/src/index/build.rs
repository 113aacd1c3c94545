//! A parsed query ([`Node`]) to a tantivy query over the log schema.
//!
//! Column names map to their columns; any other name is a path in the additional-fields JSON
//! column. Words on `message`/`full_message` (and bare words, which search both) go through
//! the same tokenizer as indexing; additional-field strings match whole values,
//! case-insensitively.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery, RegexQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::Term;

use super::schema::Fields;
use crate::query::{wildcard_to_regex, Node};
use crate::LogError;

pub(crate) struct Builder<'a> {
    pub fields: &'a Fields,
    pub text: TextAnalyzer,
    pub keyword: TextAnalyzer,
}

enum Target {
    Text(Field),
    Raw(Field),
    Level,
    Timestamp,
    Json(String),
}

fn qerr(position: usize, message: String) -> LogError {
    LogError::Query { position, message }
}

impl Builder<'_> {
    pub fn build(&mut self, node: &Node) -> Result<Box<dyn Query>, LogError> {
        match node {
            Node::All => Ok(Box::new(AllQuery)),
            Node::Term { field, text, pos } => {
                self.per_field(field, *pos, |b, t| b.term(t, text, *pos))
            }
            Node::Phrase { field, text, pos } => {
                self.per_field(field, *pos, |b, t| b.term(t, text, *pos))
            }
            Node::Wildcard {
                field,
                pattern,
                pos,
            } => self.per_field(field, *pos, |b, t| b.wildcard(t, pattern, *pos)),
            Node::Range {
                field,
                lower,
                upper,
                pos,
            } => {
                let target = self.target(field, *pos)?;
                self.range(target, field, lower, upper, *pos)
            }
            Node::Exists { field, pos } => self.exists(field, *pos),
            Node::And(items) => {
                let mut clauses = Vec::new();
                for item in items {
                    clauses.push(self.clause(item, Occur::Must)?);
                }
                Ok(boolean(clauses))
            }
            Node::Or(items) => {
                let mut clauses = Vec::new();
                for item in items {
                    clauses.push(self.clause(item, Occur::Should)?);
                }
                Ok(boolean(clauses))
            }
            Node::Not(inner) => Ok(boolean(vec![(Occur::MustNot, self.build(inner)?)])),
            Node::Required(inner) => self.build(inner),
        }
    }

    /// A child of AND/OR with its occurrence; `NOT x` and `+x` set their own.
    fn clause(&mut self, node: &Node, occur: Occur) -> Result<(Occur, Box<dyn Query>), LogError> {
        Ok(match node {
            Node::Not(inner) => (Occur::MustNot, self.build(inner)?),
            Node::Required(inner) => (Occur::Must, self.build(inner)?),
            other => (occur, self.build(other)?),
        })
    }

    fn per_field(
        &mut self,
        field: &Option<String>,
        pos: usize,
        mut f: impl FnMut(&mut Self, Target) -> Result<Box<dyn Query>, LogError>,
    ) -> Result<Box<dyn Query>, LogError> {
        match field {
            Some(name) => {
                let t = self.target(name, pos)?;
                f(self, t)
            }
            None => {
                let m = f(self, Target::Text(self.fields.message))?;
                let fm = f(self, Target::Text(self.fields.full_message))?;
                Ok(Box::new(BooleanQuery::new(vec![
                    (Occur::Should, m),
                    (Occur::Should, fm),
                ])))
            }
        }
    }

    fn target(&self, name: &str, pos: usize) -> Result<Target, LogError> {
        let f = self.fields;
        Ok(match name {
            "message" | "short_message" => Target::Text(f.message),
            "full_message" => Target::Text(f.full_message),
            "level" => Target::Level,
            "timestamp" => Target::Timestamp,
            "team" => Target::Raw(f.team),
            "service" => Target::Raw(f.service),
            "stage" => Target::Raw(f.stage),
            "instance" => Target::Raw(f.instance),
            "source" => Target::Raw(f.source),
            "host" => Target::Raw(f.host),
            other if crate::query::valid_field_name(other) => Target::Json(other.to_string()),
            other => return Err(qerr(pos, format!("invalid field name '{other}'"))),
        })
    }

    fn term(&mut self, target: Target, text: &str, pos: usize) -> Result<Box<dyn Query>, LogError> {
        match target {
            Target::Text(field) => Ok(text_query(&mut self.text, field, text)),
            Target::Raw(field) => Ok(term_query(Term::from_field_text(field, text))),
            Target::Level => {
                let level = parse_level(text, pos)?;
                Ok(term_query(Term::from_field_u64(self.fields.level, level)))
            }
            Target::Timestamp => {
                // a fast column, not indexed (layout 2): an exact time is a range of one
                let ns = parse_i64(text, "timestamp", pos)?;
                let t = || Term::from_field_i64(self.fields.timestamp, ns);
                Ok(Box::new(RangeQuery::new(
                    Bound::Included(t()),
                    Bound::Included(t()),
                )))
            }
            Target::Json(path) => Ok(self.json_term(&path, text)),
        }
    }

    fn wildcard(
        &mut self,
        target: Target,
        pattern: &str,
        pos: usize,
    ) -> Result<Box<dyn Query>, LogError> {
        let (field, regex) = match target {
            Target::Text(field) => (field, wildcard_to_regex(&pattern.to_lowercase())),
            Target::Raw(field) => (field, wildcard_to_regex(pattern)),
            Target::Json(path) => {
                // Additional-field terms are stored as `path \0 s value` in the JSON column's
                // dictionary; the regex matches that layout for this one path.
                let mut regex = String::new();
                for (i, segment) in split_path(&path).iter().enumerate() {
                    if i > 0 {
                        regex.push_str("\\x01");
                    }
                    // Field names hold no `*`, `?` or backslash: this only escapes.
                    regex.push_str(&wildcard_to_regex(segment));
                }
                regex.push_str("\\x00s");
                regex.push_str(&wildcard_to_regex(&pattern.to_lowercase()));
                (self.fields.fields, regex)
            }
            Target::Level | Target::Timestamp => {
                return Err(qerr(pos, "wildcards work on text fields only".into()))
            }
        };
        let q = RegexQuery::from_pattern(&regex, field)
            .map_err(|e| qerr(pos, format!("invalid wildcard '{pattern}': {e}")))?;
        Ok(Box::new(q))
    }

    fn range(
        &mut self,
        target: Target,
        name: &str,
        lower: &Bound<String>,
        upper: &Bound<String>,
        pos: usize,
    ) -> Result<Box<dyn Query>, LogError> {
        if matches!((lower, upper), (Bound::Unbounded, Bound::Unbounded)) {
            return self.exists(name, pos);
        }
        let make =
            |f: &dyn Fn(&str) -> Result<Term, LogError>| -> Result<Box<dyn Query>, LogError> {
                let map = |b: &Bound<String>| -> Result<Bound<Term>, LogError> {
                    Ok(match b {
                        Bound::Included(v) => Bound::Included(f(v)?),
                        Bound::Excluded(v) => Bound::Excluded(f(v)?),
                        Bound::Unbounded => Bound::Unbounded,
                    })
                };
                Ok(Box::new(RangeQuery::new(map(lower)?, map(upper)?)))
            };
        match target {
            Target::Level => {
                let field = self.fields.level;
                make(&|v| Ok(Term::from_field_u64(field, parse_level(v, pos)?)))
            }
            Target::Timestamp => {
                let field = self.fields.timestamp;
                make(&|v| Ok(Term::from_field_i64(field, parse_i64(v, "timestamp", pos)?)))
            }
            Target::Raw(field) => make(&|v| Ok(Term::from_field_text(field, v))),
            Target::Text(field) => make(&|v| Ok(Term::from_field_text(field, &v.to_lowercase()))),
            Target::Json(path) => {
                // layout 2 keeps numbers for ranges in a fast column of their own
                let field = self.fields.nums.unwrap_or(self.fields.fields);
                let bounds = [lower, upper];
                let all_int = bounds.iter().all(|b| match b {
                    Bound::Included(v) | Bound::Excluded(v) => v.parse::<i64>().is_ok(),
                    Bound::Unbounded => true,
                });
                make(&|v| {
                    let mut term = Term::from_field_json_path(field, &path, true);
                    if all_int {
                        if let Ok(i) = v.parse::<i64>() {
                            term.append_type_and_fast_value(i);
                            return Ok(term);
                        }
                    }
                    match v.parse::<f64>() {
                        Ok(x) if x.is_finite() => {
                            term.append_type_and_fast_value(x);
                            Ok(term)
                        }
                        _ => Err(qerr(
                            pos,
                            format!("range on '{name}' needs numbers, not '{v}'"),
                        )),
                    }
                })
            }
        }
    }

    fn exists(&mut self, name: &str, pos: usize) -> Result<Box<dyn Query>, LogError> {
        Ok(match name {
            "message" | "short_message" | "level" | "timestamp" | "team" | "source" => {
                Box::new(AllQuery)
            }
            other if crate::query::valid_field_name(other) => {
                term_query(Term::from_field_text(self.fields.present, other))
            }
            other => return Err(qerr(pos, format!("invalid field name '{other}'"))),
        })
    }

    fn json_term(&mut self, path: &str, text: &str) -> Box<dyn Query> {
        let field = self.fields.fields;
        let base = || Term::from_field_json_path(field, path, true);
        let mut terms: Vec<Term> = Vec::new();
        if let Ok(i) = text.parse::<i64>() {
            let mut t = base();
            t.append_type_and_fast_value(i);
            terms.push(t);
            let mut t = base();
            t.append_type_and_fast_value(i as f64);
            terms.push(t);
        } else if let Ok(x) = text.parse::<f64>() {
            if x.is_finite() {
                let mut t = base();
                t.append_type_and_fast_value(x);
                terms.push(t);
            }
        }
        match text {
            "true" | "false" => {
                let mut t = base();
                t.append_type_and_fast_value(text == "true");
                terms.push(t);
            }
            _ => {}
        }
        let mut stream = self.keyword.token_stream(text);
        while let Some(token) = stream.next() {
            let mut t = base();
            t.append_type_and_str(&token.text);
            terms.push(t);
        }
        boolean(
            terms
                .into_iter()
                .map(|t| (Occur::Should, term_query(t)))
                .collect(),
        )
    }
}

/// Splits a dotted path as the JSON column does (`\.` keeps a dot inside a segment).
fn split_path(path: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if let Some(last) = out.last_mut() {
                        last.push(n);
                    }
                }
            }
            '.' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// Words through the text analyzer: none → matches nothing, one → a term, several → a phrase.
fn text_query(analyzer: &mut TextAnalyzer, field: Field, text: &str) -> Box<dyn Query> {
    let mut terms: Vec<(usize, Term)> = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(token) = stream.next() {
        terms.push((token.position, Term::from_field_text(field, &token.text)));
    }
    match terms.len() {
        0 => Box::new(EmptyQuery),
        1 => term_query(terms.remove(0).1),
        _ => Box::new(PhraseQuery::new_with_offset(terms)),
    }
}

/// A boolean query; one that only excludes gets "everything" to exclude from.
fn boolean(mut clauses: Vec<(Occur, Box<dyn Query>)>) -> Box<dyn Query> {
    if clauses.is_empty() {
        return Box::new(EmptyQuery);
    }
    if clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
        clauses.push((Occur::Must, Box::new(AllQuery)));
    }
    if clauses.len() == 1 && clauses[0].0 != Occur::MustNot {
        return clauses.remove(0).1;
    }
    Box::new(BooleanQuery::new(clauses))
}

fn parse_level(text: &str, pos: usize) -> Result<u64, LogError> {
    match text.parse::<u64>() {
        Ok(v) if v <= 7 => Ok(v),
        _ => Err(qerr(
            pos,
            format!("level must be a number 0-7, not '{text}'"),
        )),
    }
}

fn parse_i64(text: &str, what: &str, pos: usize) -> Result<i64, LogError> {
    text.parse::<i64>().map_err(|_| {
        qerr(
            pos,
            format!("{what} must be nanoseconds since the epoch, not '{text}'"),
        )
    })
}
