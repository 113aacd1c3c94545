//! A small YAML tree that remembers where every key and value was written, so that every
//! diagnostic can point at `line:column`.
//!
//! It is built from the parser's event stream with an explicit stack (no recursion), and it
//! refuses, as problems with a position, what a peng file never needs and what would make
//! a small file expensive: anchors and aliases (no "billion laughs"), tags, several documents,
//! nesting deeper than [`MAX_DEPTH`](crate::limits::MAX_DEPTH), strings longer than
//! [`MAX_STRING_BYTES`](crate::limits::MAX_STRING_BYTES), duplicate keys, and NUL bytes
//! written as such (the reader would take one for the end of the text; `"\0"` written as an
//! escape is a character of a string like any other, refused where a value cannot hold it).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::limits::{MAX_DEPTH, MAX_STRING_BYTES};

/// A 1-based position in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    fn from_marker(mark: &Marker) -> Pos {
        // The parser counts lines from 1 and columns from 0.
        Pos {
            line: mark.line().max(1),
            column: mark.col().saturating_add(1),
        }
    }
}

/// A problem found while reading the YAML itself, before any rule of the format is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub pos: Pos,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Scalar(Scalar),
    Seq(Seq),
    Map(Map),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub value: String,
    /// Written in quotes or as a block: always a string, never a number, bool or null.
    pub quoted: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Seq {
    pub items: Vec<Node>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    /// In file order; keys are unique (duplicates are reported and dropped).
    pub entries: Vec<Entry>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar(s) => s.pos,
            Node::Seq(s) => s.pos,
            Node::Map(m) => m.pos,
        }
    }

    /// `key:` with nothing after it, `~` or `null`.
    pub fn is_null(&self) -> bool {
        match self {
            Node::Scalar(s) => s.is_null(),
            _ => false,
        }
    }

    /// What the node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Node::Scalar(s) if s.is_null() => "nothing".to_string(),
            Node::Scalar(s) => {
                let shown: String = s.value.chars().take(40).collect();
                if shown.len() < s.value.len() {
                    format!("'{shown}…'")
                } else {
                    format!("'{shown}'")
                }
            }
            Node::Seq(_) => "a list".to_string(),
            Node::Map(_) => "a mapping".to_string(),
        }
    }
}

impl Scalar {
    pub fn is_null(&self) -> bool {
        !self.quoted && matches!(self.value.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

impl Map {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// Reads one YAML document. Returns the root (`None` for an empty file or when the YAML could
/// not be read at all) and every problem found on the way.
pub fn load(text: &str) -> (Option<Node>, Vec<Problem>) {
    // The YAML reader takes a NUL byte for the end of the text and would quietly read only
    // what comes before it; a file holding one is refused as a whole, at the first one.
    if let Some(problem) = nul_byte(text) {
        return (None, vec![problem]);
    }
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(error) => {
                builder.problem(
                    Pos::from_marker(error.marker()),
                    format!("invalid YAML: {}", error.info()),
                );
                return (None, builder.problems);
            }
        };
        let pos = Pos::from_marker(&mark);
        match builder.on_event(event, pos) {
            Flow::Continue => {}
            Flow::Done => return (builder.root, builder.problems),
            Flow::Abort => return (None, builder.problems),
        }
    }
}

/// Where the first NUL byte of `text` is, if it holds one.
fn nul_byte(text: &str) -> Option<Problem> {
    let at = text.find('\0')?;
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let pos = Pos {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    };
    let more = text[at + 1..].matches('\0').count();
    let mut message = "the file holds a NUL byte".to_string();
    if more > 0 {
        message.push_str(&format!(" (and {more} more)"));
    }
    message.push_str("; a peng file is text without NUL bytes");
    Some(Problem { pos, message })
}

enum Flow {
    Continue,
    Done,
    Abort,
}

enum Frame {
    Seq(Seq),
    Map {
        map: Map,
        key: KeySlot,
        /// Key → where it was written; keeps duplicate detection linear in large mappings.
        seen: HashMap<String, Pos>,
    },
}

enum KeySlot {
    /// The next node is a key.
    Empty,
    /// The next node is the value of this key.
    Key(String, Pos),
    /// The next node is the value of a key that was refused; drop it.
    Refused,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
    problems: Vec<Problem>,
}

impl Builder {
    fn problem(&mut self, pos: Pos, message: String) {
        self.problems.push(Problem { pos, message });
    }

    fn on_event(&mut self, event: Event, pos: Pos) -> Flow {
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Flow::Done,
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.problem(
                        pos,
                        "the file holds one YAML document; remove the second '---'".to_string(),
                    );
                    return Flow::Done;
                }
            }
            Event::Alias(_) => {
                self.problem(pos, "YAML aliases (*name) are not supported".to_string());
                self.push(Node::Scalar(Scalar {
                    value: String::new(),
                    quoted: false,
                    pos,
                }));
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.check_anchor_and_tag(pos, anchor, tag.is_some());
                if value.len() > MAX_STRING_BYTES {
                    self.problem(
                        pos,
                        format!(
                            "string of {} bytes is too long; at most {MAX_STRING_BYTES} bytes are allowed",
                            value.len()
                        ),
                    );
                }
                let quoted = style != TScalarStyle::Plain;
                self.push(Node::Scalar(Scalar { value, quoted, pos }));
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_anchor_and_tag(pos, anchor, tag.is_some());
                if !self.enter(pos) {
                    return Flow::Abort;
                }
                self.stack.push(Frame::Seq(Seq {
                    items: Vec::new(),
                    pos,
                }));
            }
            Event::MappingStart(anchor, tag) => {
                self.check_anchor_and_tag(pos, anchor, tag.is_some());
                if !self.enter(pos) {
                    return Flow::Abort;
                }
                self.stack.push(Frame::Map {
                    map: Map {
                        entries: Vec::new(),
                        pos,
                    },
                    key: KeySlot::Empty,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(seq)) => self.push(Node::Seq(seq)),
                Some(Frame::Map { map, .. }) => self.push(Node::Map(map)),
                // The parser balances start and end events; an unbalanced end is ignored.
                None => {}
            },
        }
        Flow::Continue
    }

    fn check_anchor_and_tag(&mut self, pos: Pos, anchor: usize, tagged: bool) {
        // The parser numbers anchors from 1; 0 means "no anchor".
        if anchor != 0 {
            self.problem(pos, "YAML anchors (&name) are not supported".to_string());
        }
        if tagged {
            self.problem(pos, "YAML tags (!tag) are not supported".to_string());
        }
    }

    /// Checks the depth before a sequence or mapping is opened.
    fn enter(&mut self, pos: Pos) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            self.problem(pos, format!("nesting is deeper than {MAX_DEPTH} levels"));
            return false;
        }
        true
    }

    fn push(&mut self, node: Node) {
        let Some(top) = self.stack.last_mut() else {
            if self.root.is_none() {
                self.root = Some(node);
            }
            return;
        };
        match top {
            Frame::Seq(seq) => seq.items.push(node),
            Frame::Map { map, key, seen } => match std::mem::replace(key, KeySlot::Empty) {
                KeySlot::Empty => {
                    let (slot, problem) = match node {
                        Node::Scalar(s) => match seen.get(&s.value) {
                            Some(first) => (
                                KeySlot::Refused,
                                Some(Problem {
                                    pos: s.pos,
                                    message: format!(
                                        "duplicate key '{}'; first written at line {} column {}",
                                        s.value, first.line, first.column
                                    ),
                                }),
                            ),
                            None => {
                                seen.insert(s.value.clone(), s.pos);
                                (KeySlot::Key(s.value, s.pos), None)
                            }
                        },
                        other => (
                            KeySlot::Refused,
                            Some(Problem {
                                pos: other.pos(),
                                message: format!(
                                    "a key must be a plain string, found {}",
                                    other.describe()
                                ),
                            }),
                        ),
                    };
                    *key = slot;
                    if let Some(problem) = problem {
                        self.problems.push(problem);
                    }
                }
                KeySlot::Key(name, key_pos) => {
                    // `key:` with nothing after it: the parser places the empty value at the
                    // next token, possibly lines below; the key is where the reader looks.
                    let value = match node {
                        Node::Scalar(s) if !s.quoted && s.value.is_empty() => {
                            Node::Scalar(Scalar { pos: key_pos, ..s })
                        }
                        other => other,
                    };
                    map.entries.push(Entry {
                        key: name,
                        key_pos,
                        value,
                    })
                }
                KeySlot::Refused => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        let (root, problems) = load(text);
        assert!(problems.is_empty(), "{problems:?}");
        root.expect("a root node")
    }

    #[test]
    fn positions_point_at_keys_and_values() {
        let node = root("a: 1\nb:\n  c: 'x'\nd: [1, {e: f}]\n");
        let Node::Map(map) = node else { panic!() };
        let b = map.get("b").unwrap();
        assert_eq!(b.key_pos, Pos { line: 2, column: 1 });
        let Node::Map(inner) = &b.value else { panic!() };
        let c = inner.get("c").unwrap();
        assert_eq!(c.key_pos, Pos { line: 3, column: 3 });
        assert_eq!(c.value.pos(), Pos { line: 3, column: 6 });
        let Node::Scalar(s) = &c.value else { panic!() };
        assert!(s.quoted);
        let d = map.get("d").unwrap();
        let Node::Seq(seq) = &d.value else { panic!() };
        assert_eq!(seq.items[1].pos(), Pos { line: 4, column: 8 });
    }

    #[test]
    fn refuses_duplicates_anchors_and_documents() {
        let (_, problems) = load("a: 1\na: 2\n");
        assert_eq!(problems[0].pos, Pos { line: 2, column: 1 });
        assert!(problems[0].message.contains("duplicate key 'a'"));

        let (_, problems) = load("a: &x [1]\nb: *x\n");
        assert_eq!(problems.len(), 2);

        let (_, problems) = load("a: 1\n---\nb: 2\n");
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let text = "[".repeat(100_000);
        let (root, problems) = load(&text);
        assert!(root.is_none());
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (root, problems) = load("a: b: c\n");
        assert!(root.is_none());
        assert_eq!(problems[0].pos.line, 1);
        assert!(problems[0].message.starts_with("invalid YAML: "));
    }

    #[test]
    fn nul_bytes_are_refused_where_they_are() {
        for (text, pos) in [
            ("a: x\0y\nb: 1\n", Pos { line: 1, column: 5 }),
            ("a: 1\nbé: 'x\0'\0\n", Pos { line: 2, column: 7 }),
            ("\0", Pos::START),
        ] {
            let (root, problems) = load(text);
            assert!(root.is_none(), "{text:?}");
            assert_eq!(problems.len(), 1, "{text:?}");
            assert_eq!(problems[0].pos, pos, "{text:?}");
            assert!(problems[0].message.contains("NUL byte"), "{problems:?}");
        }
        let (_, problems) = load("a: 1\nb: 'x\0'\0\n");
        assert!(problems[0].message.contains("(and 1 more)"), "{problems:?}");
    }

    #[test]
    fn empty_text_has_no_root() {
        assert_eq!(load(""), (None, vec![]));
        assert_eq!(load("# only a comment\n"), (None, vec![]));
    }
}
