//! Diagnostics: what is wrong with a file, and where, written like a compiler writes them
//! (`peng.yaml:14:7: unknown key 'every_s' in sensor 'checkout-page'; did you mean 'every'?`).
//! A file is refused with all of its problems at once, sorted by position.

use std::fmt;

use peng_core::ErrorKind;

/// One problem, at a 1-based line and column of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Every problem of one file, sorted by position; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// A refused file is always the caller's input being invalid.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    /// One diagnostic per line, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_one_per_line() {
        let d = |line, message: &str| Diagnostic {
            file: "peng.yaml".to_string(),
            line,
            column: 3,
            message: message.to_string(),
        };
        let all = Diagnostics(vec![d(1, "first"), d(14, "second")]);
        assert_eq!(
            all.to_string(),
            "peng.yaml:1:3: first\npeng.yaml:14:3: second"
        );
        assert_eq!(all.kind(), ErrorKind::Invalid);
    }
}
