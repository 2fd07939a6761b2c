//! Trial command lines with `{name}` placeholders.
//!
//! A trial is started from an argv list, never through a shell, so a parameter value can never
//! inject a command; placeholders are filled in per argument. `{{` and `}}` stand for literal
//! braces.

use std::fmt;

/// Placeholders that every trial can use besides its parameters.
pub const BUILTIN_PLACEHOLDERS: [&str; 3] = ["trial_id", "trial_dir", "attempt"];

/// A parsed command line: each argument a sequence of literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    args: Vec<Vec<Piece>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Placeholder(String),
}

/// A command argument whose braces do not pair up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Index of the argument in the command list.
    pub arg: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "argument {}: {}", self.arg + 1, self.message)
    }
}

impl CommandTemplate {
    /// Parses every argument; an unmatched `{` or `}` is an error.
    pub fn parse(args: &[String]) -> Result<Self, TemplateError> {
        let args = args
            .iter()
            .enumerate()
            .map(|(i, a)| parse_arg(a).map_err(|message| TemplateError { arg: i, message }))
            .collect::<Result<_, _>>()?;
        Ok(CommandTemplate { args })
    }

    /// Every placeholder name used, in order of appearance.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.args.iter().flatten().filter_map(|p| match p {
            Piece::Placeholder(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Fills in the placeholders. `lookup` must know every name (the grid checked that).
    pub fn render(&self, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
        self.args
            .iter()
            .map(|pieces| {
                pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Text(t) => t.clone(),
                        Piece::Placeholder(name) => lookup(name).unwrap_or_default(),
                    })
                    .collect()
            })
            .collect()
    }
}

fn parse_arg(arg: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(format!(
                                "`{{{name}` is not closed; write `{{{name}}}`, or `{{{{` for a literal brace"
                            ))
                        }
                    }
                }
                let name = name.trim().to_string();
                if name.is_empty() {
                    return Err("empty placeholder `{}`; write `{name}` or `{{}}`".into());
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Placeholder(name));
            }
            '}' => return Err("unmatched `}`; write `}}` for a literal brace".into()),
            c => text.push(c),
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renders_placeholders_and_escapes() {
        let t =
            CommandTemplate::parse(&args(&["run", "--lr={lr}", "{{x}}", "{ bs }", ""])).unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["lr", "bs"]);
        let out = t.render(|n| Some(format!("<{n}>")));
        assert_eq!(out, ["run", "--lr=<lr>", "{x}", "<bs>", ""]);
    }

    #[test]
    fn rejects_unbalanced_braces() {
        assert!(CommandTemplate::parse(&args(&["{lr"])).is_err());
        assert!(CommandTemplate::parse(&args(&["lr}"])).is_err());
        assert!(CommandTemplate::parse(&args(&["{}"])).is_err());
        let e = CommandTemplate::parse(&args(&["ok", "{lr"])).unwrap_err();
        assert_eq!(e.arg, 1);
    }
}
