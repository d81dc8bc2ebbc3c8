//! Typed errors for the library. Every error about a file a user wrote names the file, the line
//! and the column, and says what was expected, so it can be fixed without reading our code.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A position in a text file, 1-based, as editors show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (or a pseudo-path such as `<builtin>/sshd.toml`).
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl Location {
    /// Converts a byte offset in `text` into a line/column location.
    pub fn from_offset(path: &Path, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            path: path.to_path_buf(),
            line,
            column,
        }
    }

    /// Location of the start of a byte span, or of the file start when there is no span.
    pub fn from_span(path: &Path, text: &str, span: Option<Range<usize>>) -> Location {
        Location::from_offset(path, text, span.map_or(0, |s| s.start))
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// A problem found in a config or detector file, tied to where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Errors of the sentinela library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more problems in a config or detector file.
    #[error("{}", join_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn join_diagnostics(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// Builds an `Invalid` error with a single diagnostic.
    pub fn invalid(location: Location, message: impl Into<String>) -> Error {
        Error::Invalid(vec![Diagnostic {
            location,
            message: message.into(),
        }])
    }

    /// Turns a `toml` parse or type error into a located diagnostic.
    pub fn from_toml(path: &Path, text: &str, err: &toml::de::Error) -> Error {
        Error::invalid(
            Location::from_span(path, text, err.span()),
            err.message().trim().to_string(),
        )
    }

    /// Builds an I/O error for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_line_and_column() {
        let text = "a = 1\nbé = 2\n";
        let p = Path::new("f.toml");
        let check = |off, line, col| {
            let l = Location::from_offset(p, text, off);
            assert_eq!((l.line, l.column), (line, col), "offset {off}");
        };
        check(0, 1, 1);
        check(4, 1, 5);
        check(6, 2, 1);
        check(9, 2, 3); // after the two-byte 'é'
        check(999, 3, 1);
    }
}
