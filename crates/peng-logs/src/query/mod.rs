//! The search language: Graylog's Lucene-like syntax, parsed into a small [`Node`] tree that
//! `index` turns into a tantivy query.
//!
//! Owns the syntax only: words, `"phrases"`, `field:value`, `AND`/`OR`/`NOT` (upper-case),
//! `+`/`-` prefixes, parentheses (also `field:(a OR b)`), `*`/`?` wildcards inside words (never
//! leading), ranges `field:[a TO b]` / `{a TO b}` / `[* TO b]`, comparisons `field:>=3`,
//! `_exists_:field`, and `*` alone for "everything". Terms next to each other are OR-ed, as
//! in Graylog; `AND` binds tighter than `OR`. It must never panic on any input: every
//! mistake is a [`LogError::Query`] with the byte position and what was expected. It knows
//! nothing about teams; the store adds the team filter.

use std::ops::Bound;

use crate::LogError;

/// The longest query text accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// The deepest nesting of parentheses and prefixes accepted.
pub const MAX_DEPTH: usize = 32;

/// A parsed query. `field` is `None` for the default fields (message and full message).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Every record.
    All,
    Term {
        field: Option<String>,
        text: String,
        pos: usize,
    },
    Phrase {
        field: Option<String>,
        text: String,
        pos: usize,
    },
    /// A word with `*` or `?` in it.
    Wildcard {
        field: Option<String>,
        pattern: String,
        pos: usize,
    },
    Range {
        field: String,
        lower: Bound<String>,
        upper: Bound<String>,
        pos: usize,
    },
    Exists {
        field: String,
        pos: usize,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    /// `+x`: required, among OR-ed siblings.
    Required(Box<Node>),
}

/// Parses a query; an empty (or blank) text is [`Node::All`].
pub fn parse(text: &str) -> Result<Node, LogError> {
    if text.len() > MAX_QUERY_LEN {
        return Err(err(
            MAX_QUERY_LEN,
            format!("query longer than {MAX_QUERY_LEN} bytes"),
        ));
    }
    let mut p = Parser {
        s: text,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    if p.eof() {
        return Ok(Node::All);
    }
    let node = p.parse_or(None)?;
    p.skip_ws();
    if !p.eof() {
        return Err(err(p.pos, "unexpected ')'".to_string()));
    }
    Ok(node)
}

/// Whether `name` may be used as a field name: `^[\w.\-]+$`, at most 128 bytes.
pub fn valid_field_name(name: &str) -> bool {
    crate::gelf::valid_name(name)
}

fn err(position: usize, message: String) -> LogError {
    LogError::Query { position, message }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn eof(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.s[self.pos..].chars().nth(offset)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn enter(&mut self) -> Result<(), LogError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(
                self.pos,
                format!("query nested deeper than {MAX_DEPTH}"),
            ));
        }
        Ok(())
    }

    /// Whether the upper-case keyword `kw` stands here as a whole word.
    fn at_keyword(&self, kw: &str) -> bool {
        let rest = &self.s[self.pos..];
        rest.starts_with(kw)
            && rest[kw.len()..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == '(' || c == ')' || c == '"')
    }

    fn parse_or(&mut self, field: Option<&str>) -> Result<Node, LogError> {
        self.enter()?;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.eof() || self.peek() == Some(')') {
                break;
            }
            if self.at_keyword("OR") {
                if items.is_empty() {
                    return Err(err(self.pos, "'OR' needs a term on its left".into()));
                }
                self.pos += 2;
                self.skip_ws();
                if self.eof()
                    || self.peek() == Some(')')
                    || self.at_keyword("OR")
                    || self.at_keyword("AND")
                {
                    return Err(err(self.pos, "'OR' needs a term on its right".into()));
                }
                continue;
            }
            if self.at_keyword("AND") {
                return Err(err(self.pos, "'AND' needs a term on its left".into()));
            }
            items.push(self.parse_and(field)?);
        }
        self.depth -= 1;
        match items.len() {
            0 => Err(err(self.pos, "expected a term".into())),
            1 => Ok(items.remove(0)),
            _ => Ok(Node::Or(items)),
        }
    }

    fn parse_and(&mut self, field: Option<&str>) -> Result<Node, LogError> {
        let mut items = vec![self.parse_unary(field)?];
        loop {
            let save = self.pos;
            self.skip_ws();
            if !self.at_keyword("AND") {
                self.pos = save;
                break;
            }
            self.pos += 3;
            self.skip_ws();
            if self.eof()
                || self.peek() == Some(')')
                || self.at_keyword("AND")
                || self.at_keyword("OR")
            {
                return Err(err(self.pos, "'AND' needs a term on its right".into()));
            }
            items.push(self.parse_unary(field)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::And(items)
        })
    }

    fn parse_unary(&mut self, field: Option<&str>) -> Result<Node, LogError> {
        self.skip_ws();
        self.enter()?;
        let node = if self.at_keyword("NOT") {
            self.pos += 3;
            self.skip_ws();
            if self.eof() || self.peek() == Some(')') {
                return Err(err(self.pos, "'NOT' needs a term after it".into()));
            }
            Node::Not(Box::new(self.parse_unary(field)?))
        } else if matches!(self.peek(), Some('-' | '+'))
            && self
                .peek_at(1)
                .is_some_and(|c| !c.is_whitespace() && c != ')')
        {
            let required = self.bump() == Some('+');
            let inner = Box::new(self.parse_unary(field)?);
            if required {
                Node::Required(inner)
            } else {
                Node::Not(inner)
            }
        } else {
            self.parse_primary(field)?
        };
        self.depth -= 1;
        Ok(node)
    }

    fn parse_primary(&mut self, field: Option<&str>) -> Result<Node, LogError> {
        let start = self.pos;
        match self.peek() {
            None => Err(err(self.pos, "expected a term".into())),
            Some(')') => Err(err(self.pos, "unexpected ')'".into())),
            Some('(') => self.parse_group(field),
            Some('"') => {
                let text = self.parse_quoted()?;
                Ok(Node::Phrase {
                    field: field.map(str::to_string),
                    text,
                    pos: start,
                })
            }
            Some(_) => {
                if field.is_none() {
                    if let Some(name) = self.try_field_prefix() {
                        return self.parse_field_value(name, start);
                    }
                }
                let word = self.parse_word()?;
                word_node(field, word, start)
            }
        }
    }

    fn parse_group(&mut self, field: Option<&str>) -> Result<Node, LogError> {
        let open = self.pos;
        self.bump();
        self.skip_ws();
        if self.peek() == Some(')') {
            return Err(err(self.pos, "empty parentheses".into()));
        }
        let node = self.parse_or(field)?;
        self.skip_ws();
        if self.bump() != Some(')') {
            return Err(err(open, "'(' is never closed".into()));
        }
        Ok(node)
    }

    /// `name:` at the current position: consumes it and returns the name.
    fn try_field_prefix(&mut self) -> Option<String> {
        let rest = &self.s[self.pos..];
        let len = rest
            .char_indices()
            .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 || !rest[len..].starts_with(':') {
            return None;
        }
        let name = rest[..len].to_string();
        self.pos += len + 1;
        Some(name)
    }

    fn parse_field_value(&mut self, name: String, start: usize) -> Result<Node, LogError> {
        if !valid_field_name(&name) {
            return Err(err(start, format!("invalid field name '{name}'")));
        }
        let at = self.pos;
        if name == "_exists_" {
            let word = self.parse_word()?;
            if !valid_field_name(&word) {
                return Err(err(
                    at,
                    format!("'_exists_:' needs a field name, not '{word}'"),
                ));
            }
            return Ok(Node::Exists {
                field: word,
                pos: at,
            });
        }
        match self.peek() {
            None => Err(err(at, format!("expected a value after '{name}:'"))),
            Some(c) if c.is_whitespace() => {
                Err(err(at, format!("expected a value right after '{name}:'")))
            }
            Some('(') => self.parse_group(Some(&name)),
            Some('"') => {
                let text = self.parse_quoted()?;
                Ok(Node::Phrase {
                    field: Some(name),
                    text,
                    pos: start,
                })
            }
            Some('[' | '{') => self.parse_range(name, start),
            Some('>' | '<') => self.parse_comparison(name, start),
            Some(_) => {
                let word = self.parse_word()?;
                word_node(Some(&name), word, start)
            }
        }
    }

    fn parse_comparison(&mut self, field: String, start: usize) -> Result<Node, LogError> {
        let greater = self.bump() == Some('>');
        let inclusive = if self.peek() == Some('=') {
            self.bump();
            true
        } else {
            false
        };
        let at = self.pos;
        let value = self.parse_word()?;
        if value == "*" {
            return Err(err(at, "a comparison needs a value, not '*'".into()));
        }
        let bound = if inclusive {
            Bound::Included(value)
        } else {
            Bound::Excluded(value)
        };
        let (lower, upper) = if greater {
            (bound, Bound::Unbounded)
        } else {
            (Bound::Unbounded, bound)
        };
        Ok(Node::Range {
            field,
            lower,
            upper,
            pos: start,
        })
    }

    fn parse_range(&mut self, field: String, start: usize) -> Result<Node, LogError> {
        let lower_inclusive = self.bump() == Some('[');
        self.skip_ws();
        let lower = self.parse_bound()?;
        self.skip_ws();
        if !self.at_keyword("TO") {
            return Err(err(self.pos, "expected 'TO' in range".into()));
        }
        self.pos += 2;
        self.skip_ws();
        let upper = self.parse_bound()?;
        self.skip_ws();
        let upper_inclusive = match self.bump() {
            Some(']') => true,
            Some('}') => false,
            _ => return Err(err(start, "range is not closed with ']' or '}'".into())),
        };
        let wrap = |v: Option<String>, inclusive: bool| match v {
            None => Bound::Unbounded,
            Some(v) if inclusive => Bound::Included(v),
            Some(v) => Bound::Excluded(v),
        };
        Ok(Node::Range {
            field,
            lower: wrap(lower, lower_inclusive),
            upper: wrap(upper, upper_inclusive),
            pos: start,
        })
    }

    /// A range bound: a quoted string, `*` (open) or a word ending before `]`/`}`.
    fn parse_bound(&mut self) -> Result<Option<String>, LogError> {
        if self.peek() == Some('"') {
            return self.parse_quoted().map(Some);
        }
        let start = self.pos;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ']' || c == '}' {
                break;
            }
            self.bump();
            if c == '\\' {
                match self.bump() {
                    Some(e) => out.push(e),
                    None => return Err(err(self.pos, "'\\' at the end of the query".into())),
                }
            } else {
                out.push(c);
            }
        }
        if out.is_empty() {
            return Err(err(start, "expected a range bound".into()));
        }
        Ok(if out == "*" { None } else { Some(out) })
    }

    fn parse_quoted(&mut self) -> Result<String, LogError> {
        let open = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(err(open, "'\"' is never closed".into())),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => return Err(err(open, "'\"' is never closed".into())),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// A bare word: up to whitespace, a parenthesis or a quote; `\` escapes one character.
    /// Escaped `*` and `?` are kept as `\*` / `\?` so they are not wildcards.
    fn parse_word(&mut self) -> Result<String, LogError> {
        let start = self.pos;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == '(' || c == ')' || c == '"' {
                break;
            }
            self.bump();
            if c == '\\' {
                match self.bump() {
                    Some(e @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(e);
                    }
                    Some(e) => out.push(e),
                    None => return Err(err(self.pos, "'\\' at the end of the query".into())),
                }
            } else {
                out.push(c);
            }
        }
        if out.is_empty() {
            return Err(err(start, "expected a term".into()));
        }
        Ok(out)
    }
}

/// A word becomes a term, a wildcard, or (`*` alone) everything / existence.
fn word_node(field: Option<&str>, word: String, pos: usize) -> Result<Node, LogError> {
    if word == "*" {
        return Ok(match field {
            None => Node::All,
            Some(f) => Node::Exists {
                field: f.to_string(),
                pos,
            },
        });
    }
    let mut has_wildcard = false;
    let mut escaped = false;
    for (i, c) in word.chars().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '*' | '?' => {
                if i == 0 {
                    return Err(err(
                        pos,
                        format!("leading wildcard in '{word}' is not allowed"),
                    ));
                }
                has_wildcard = true;
            }
            _ => {}
        }
    }
    let field = field.map(str::to_string);
    if has_wildcard {
        Ok(Node::Wildcard {
            field,
            pattern: word,
            pos,
        })
    } else {
        Ok(Node::Term {
            field,
            text: unescape_wildcards(&word),
            pos,
        })
    }
}

/// Removes the `\` kept before `*`, `?` and `\` by the word parser.
pub(crate) fn unescape_wildcards(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A wildcard word as an anchored regex: `*` any run, `?` one character, the rest literal.
pub(crate) fn wildcard_to_regex(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '\\' => {
                if let Some(n) = chars.next() {
                    push_escaped(&mut out, n);
                }
            }
            c => push_escaped(&mut out, c),
        }
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    if c.is_alphanumeric() || c == '_' {
        out.push(c);
    } else {
        out.push_str(&format!("\\x{{{:x}}}", c as u32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(field: Option<&str>, text: &str, pos: usize) -> Node {
        Node::Term {
            field: field.map(str::to_string),
            text: text.to_string(),
            pos,
        }
    }

    fn position(q: &str) -> (usize, String) {
        match parse(q) {
            Err(LogError::Query { position, message }) => (position, message),
            other => panic!("expected an error for {q:?}, got {other:?}"),
        }
    }

    #[test]
    fn words_are_or_ed_and_and_binds_tighter() {
        assert_eq!(
            parse("a b").unwrap(),
            Node::Or(vec![term(None, "a", 0), term(None, "b", 2)])
        );
        assert_eq!(
            parse("a AND b OR c").unwrap(),
            Node::Or(vec![
                Node::And(vec![term(None, "a", 0), term(None, "b", 6)]),
                term(None, "c", 11)
            ])
        );
        assert_eq!(parse("  ").unwrap(), Node::All);
        assert_eq!(parse("*").unwrap(), Node::All);
        // Lower-case keywords are words.
        assert_eq!(
            parse("a and b").unwrap(),
            Node::Or(vec![
                term(None, "a", 0),
                term(None, "and", 2),
                term(None, "b", 6)
            ])
        );
    }

    #[test]
    fn fields_phrases_and_groups() {
        assert_eq!(parse("level:3").unwrap(), term(Some("level"), "3", 0));
        assert_eq!(
            parse("http.status:500").unwrap(),
            term(Some("http.status"), "500", 0)
        );
        assert_eq!(
            parse(r#"message:"disk full""#).unwrap(),
            Node::Phrase {
                field: Some("message".into()),
                text: "disk full".into(),
                pos: 0
            }
        );
        assert_eq!(
            parse("service:(a OR b)").unwrap(),
            Node::Or(vec![
                term(Some("service"), "a", 9),
                term(Some("service"), "b", 14)
            ])
        );
        assert_eq!(
            parse("NOT (a b)").unwrap(),
            Node::Not(Box::new(Node::Or(vec![
                term(None, "a", 5),
                term(None, "b", 7)
            ])))
        );
        assert_eq!(
            parse("-a +b").unwrap(),
            Node::Or(vec![
                Node::Not(Box::new(term(None, "a", 1))),
                Node::Required(Box::new(term(None, "b", 4)))
            ])
        );
        assert_eq!(
            parse("url:http://x").unwrap(),
            term(Some("url"), "http://x", 0)
        );
        assert_eq!(parse(r"a\:b").unwrap(), term(None, "a:b", 0));
    }

    #[test]
    fn ranges_exists_and_wildcards() {
        assert_eq!(
            parse("level:[3 TO 5}").unwrap(),
            Node::Range {
                field: "level".into(),
                lower: Bound::Included("3".into()),
                upper: Bound::Excluded("5".into()),
                pos: 0
            }
        );
        assert_eq!(
            parse("level:[* TO 5]").unwrap(),
            Node::Range {
                field: "level".into(),
                lower: Bound::Unbounded,
                upper: Bound::Included("5".into()),
                pos: 0
            }
        );
        assert_eq!(
            parse("took:>=250").unwrap(),
            Node::Range {
                field: "took".into(),
                lower: Bound::Included("250".into()),
                upper: Bound::Unbounded,
                pos: 0
            }
        );
        assert_eq!(
            parse("_exists_:user_id").unwrap(),
            Node::Exists {
                field: "user_id".into(),
                pos: 9
            }
        );
        assert_eq!(
            parse("user:*").unwrap(),
            Node::Exists {
                field: "user".into(),
                pos: 0
            }
        );
        assert_eq!(
            parse("tim?o*").unwrap(),
            Node::Wildcard {
                field: None,
                pattern: "tim?o*".into(),
                pos: 0
            }
        );
        assert_eq!(parse(r"a\*").unwrap(), term(None, "a*", 0));
        assert_eq!(wildcard_to_regex("a.b*c?"), r"a\x{2e}b.*c.");
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(position("a AND").0, 5);
        assert_eq!(position("OR a").0, 0);
        assert_eq!(position("(a b").0, 0);
        assert_eq!(position("a)").0, 1);
        assert_eq!(position("\"abc").0, 0);
        assert_eq!(
            position("*abc").1,
            "leading wildcard in '*abc' is not allowed"
        );
        assert_eq!(position("level:[1 5]").0, 9);
        assert_eq!(position("level:").0, 6);
        assert_eq!(position("()").0, 1);
        assert!(position(&"(".repeat(100)).1.contains("deeper"));
        assert!(position(&"a ".repeat(3000)).1.contains("longer"));
        assert_eq!(position("a\\").0, 2);
        assert_eq!(position("NOT").0, 3);
    }
}
