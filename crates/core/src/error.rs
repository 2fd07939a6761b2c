//! Errors in a grid file, located by file, line, column and key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A grid file that cannot be used, with where the problem is and how to fix it.
///
/// Displayed as `FILE:LINE:COLUMN: KEY: MESSAGE` followed by a `help:` line, so editors and
/// terminals can jump to the spot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridError {
    /// The grid file.
    pub path: PathBuf,
    /// 1-based line and column of the offending text, when known.
    pub position: Option<(usize, usize)>,
    /// The dotted key path, such as `grid.learning_rate`; empty for syntax errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl GridError {
    /// An error at a byte span of `source`, which is resolved to a line and column.
    pub fn at(
        path: &Path,
        source: &str,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        GridError {
            path: path.to_path_buf(),
            position: span.map(|s| line_column(source, s.start)),
            key: key.into(),
            message: message.into(),
            help: None,
        }
    }

    /// The error of a file that `toml` (or serde, reading it) refused: an unknown or
    /// missing key, a duplicate, bad syntax; located where `toml` says.
    pub fn syntax(path: &Path, source: &str, e: &toml::de::Error) -> Self {
        let message = e.message().trim().to_string();
        let help = if message.contains("unknown field") {
            "check the spelling; the message lists the keys allowed here"
        } else if message.contains("missing field `sweep`") {
            "start the file with a [sweep] table giving `name` and `command`"
        } else if message.contains("missing field") {
            "add the missing key"
        } else if message.contains("duplicate key") {
            "each key may appear once per table; an axis is swept in one place only"
        } else {
            "see sweeps/example.toml for the grid format"
        };
        // toml says "duplicate key" and points at it: name it.
        let key = e
            .span()
            .and_then(|span| source.get(span))
            .map(|k| k.trim().trim_matches('"').to_string())
            .filter(|k| message.contains("duplicate key") && !k.is_empty() && !k.contains('\n'));
        let message = match key {
            Some(key) => format!("{message} `{key}`"),
            None => message,
        };
        GridError::at(path, source, e.span(), "", message).help(help)
    }

    /// Adds advice on how to fix the file.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for GridError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GridError {}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let s = "ab\ncd\nef";
        assert_eq!(line_column(s, 0), (1, 1));
        assert_eq!(line_column(s, 4), (2, 2));
        assert_eq!(line_column(s, 6), (3, 1));
    }

    #[test]
    fn display_names_file_position_key_and_help() {
        let e = GridError::at(
            Path::new("g.toml"),
            "x = 1\ny = 2",
            Some(6..7),
            "grid.y",
            "bad",
        )
        .help("fix it");
        assert_eq!(e.to_string(), "g.toml:2:1: grid.y: bad\n  help: fix it");
    }
}
