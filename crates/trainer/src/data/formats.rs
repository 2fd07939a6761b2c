//! Readers for the real datasets the paper uses, so the built-in trainer can run on them
//! instead of its generated data: AdvBench CSV (`goal,target`) for harmful prompts, Alpaca
//! JSON (`[{instruction, input, output}]`), Dolly JSONL (`{instruction, context,
//! response}` per line) and ORCA-style JSONL (`{system_prompt, question, response}`, as
//! OpenOrca ships it) for instruction data. Every error names the file, the row or record,
//! and the field.

use std::path::Path;

use serde_json::Value;

/// An instruction and the answer to learn.
#[derive(Clone, PartialEq, Eq)]
pub struct Example {
    /// The request (with any input or context appended on its own paragraph).
    pub prompt: String,
    /// The answer.
    pub response: String,
    /// A system message before the request (ORCA's `system_prompt`), if the record has one.
    pub system: Option<String>,
}

/// The system message is shown only when there is one: the generated data's fingerprint is
/// its `Debug` text, and the miniature's base models are keyed (and the shipped one
/// recognised) by it.
impl std::fmt::Debug for Example {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Example");
        out.field("prompt", &self.prompt)
            .field("response", &self.response);
        if let Some(system) = &self.system {
            out.field("system", system);
        }
        out.finish()
    }
}

impl Example {
    /// A request and its answer, without a system message.
    pub fn new(prompt: impl Into<String>, response: impl Into<String>) -> Example {
        Example {
            prompt: prompt.into(),
            response: response.into(),
            system: None,
        }
    }
}

/// A data file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A syntax error in the file.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A record with a missing or wrong field.
    #[error("{path}: {record}: field `{field}` {message}")]
    Field {
        /// File.
        path: String,
        /// Which record ("row 3", "record 12", "line 7").
        record: String,
        /// Field name.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A file without any usable record.
    #[error("{0}: no records")]
    Empty(String),
    /// An extension that names no known format of requests.
    #[error(
        "{0}: unknown format; use .json (Alpaca), .jsonl (Dolly or MT-Bench) or .txt (one request a line)"
    )]
    UnknownRequests(String),
    /// An extension that names no known format.
    #[error("{0}: unknown format; use .csv (AdvBench), .json (Alpaca) or .jsonl (Dolly)")]
    UnknownFormat(String),
}

impl FormatError {
    /// The file at fault, as it was named.
    pub fn path(&self) -> &str {
        match self {
            FormatError::Read { path, .. }
            | FormatError::Syntax { path, .. }
            | FormatError::Field { path, .. }
            | FormatError::Empty(path)
            | FormatError::UnknownRequests(path)
            | FormatError::UnknownFormat(path) => path,
        }
    }
}

fn read(path: &Path) -> Result<String, FormatError> {
    std::fs::read_to_string(path).map_err(|source| FormatError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Harmful prompts from an AdvBench-style CSV: a header with a `goal` column (others, such as
/// `target`, are ignored).
pub fn read_advbench(path: &Path) -> Result<Vec<String>, FormatError> {
    let name = path.display().to_string();
    let text = read(path)?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| csv_error(&name, &e))?.clone();
    let Some(goal) = headers.iter().position(|h| h.trim() == "goal") else {
        return Err(FormatError::Field {
            path: name,
            record: "header".into(),
            field: "goal".into(),
            message: format!(
                "is missing (columns: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        });
    };
    let mut goals = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_error(&name, &e))?;
        let value = record.get(goal).unwrap_or("").trim();
        if value.is_empty() {
            return Err(FormatError::Field {
                path: name,
                record: format!("row {}", i + 2),
                field: "goal".into(),
                message: "is empty".into(),
            });
        }
        goals.push(value.to_string());
    }
    if goals.is_empty() {
        return Err(FormatError::Empty(name));
    }
    Ok(goals)
}

fn csv_error(name: &str, e: &csv::Error) -> FormatError {
    let line = e.position().map_or(0, |p| p.line() as usize);
    FormatError::Syntax {
        path: name.to_string(),
        line,
        column: 1,
        message: e.to_string(),
    }
}

/// Examples from an Alpaca-style JSON array of `{instruction, input, output}`.
pub fn read_alpaca(path: &Path) -> Result<Vec<Example>, FormatError> {
    let name = path.display().to_string();
    let value: Value = parse_json(&name, &read(path)?)?;
    let Value::Array(records) = value else {
        return Err(FormatError::Syntax {
            path: name,
            line: 1,
            column: 1,
            message: "expected a JSON array of {instruction, input, output} records".into(),
        });
    };
    let examples = records
        .iter()
        .enumerate()
        .map(|(i, r)| example(&name, &format!("record {i}"), r, "input", "output"))
        .collect::<Result<Vec<_>, _>>()?;
    if examples.is_empty() {
        return Err(FormatError::Empty(name));
    }
    Ok(examples)
}

/// Examples from a JSON Lines file: Dolly-style `{instruction, context, response}` records,
/// or ORCA-style `{system_prompt, question, response}` ones (told apart by `question`).
pub fn read_dolly(path: &Path) -> Result<Vec<Example>, FormatError> {
    let name = path.display().to_string();
    let examples = json_lines(&name, &read(path)?)?
        .iter()
        .map(|(record, value)| match value.get("question") {
            Some(_) => orca(&name, record, value),
            None => example(&name, record, value, "context", "response"),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if examples.is_empty() {
        return Err(FormatError::Empty(name));
    }
    Ok(examples)
}

/// The records of a JSON Lines file, each with its name in errors ("line 7"); blank lines
/// are skipped.
fn json_lines(name: &str, text: &str) -> Result<Vec<(String, Value)>, FormatError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let value = serde_json::from_str(line).map_err(|e| FormatError::Syntax {
                path: name.to_string(),
                line: i + 1,
                column: e.column(),
                message: json_message(&e),
            })?;
            Ok((format!("line {}", i + 1), value))
        })
        .collect()
}

/// Instruction examples from `.json` (Alpaca) or `.jsonl` (Dolly).
pub fn read_examples(path: &Path) -> Result<Vec<Example>, FormatError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => read_alpaca(path),
        Some("jsonl") => read_dolly(path),
        _ => Err(FormatError::UnknownFormat(path.display().to_string())),
    }
}

/// Requests without answers, for evaluation: an Alpaca JSON array (`instruction` and `input`;
/// `output` may be absent), JSON Lines of Dolly records (`instruction`, `context`) or MT-Bench
/// questions (the first of `turns`), or plain text with one request per line.
pub fn read_requests(path: &Path) -> Result<Vec<String>, FormatError> {
    let name = path.display().to_string();
    let text = read(path)?;
    let requests = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            let Value::Array(records) = parse_json(&name, &text)? else {
                return Err(FormatError::Syntax {
                    path: name,
                    line: 1,
                    column: 1,
                    message: "expected a JSON array of {instruction, input} records".into(),
                });
            };
            records
                .iter()
                .enumerate()
                .map(|(i, r)| request(&name, &format!("record {i}"), r, "input"))
                .collect::<Result<Vec<_>, _>>()?
        }
        Some("jsonl") => json_lines(&name, &text)?
            .iter()
            .map(|(record, value)| request(&name, record, value, "context"))
            .collect::<Result<Vec<_>, _>>()?,
        Some("txt") => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        _ => {
            return Err(FormatError::UnknownRequests(name));
        }
    };
    if requests.is_empty() {
        return Err(FormatError::Empty(name));
    }
    Ok(requests)
}

/// An ORCA record: `question` asked after the `system_prompt` (which may be empty or absent),
/// answered by `response`.
fn orca(name: &str, record: &str, value: &Value) -> Result<Example, FormatError> {
    let (prompt, response) = fields_named(name, record, value, "question", "", Some("response"))?;
    let system = match value.get("system_prompt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Some(other) => {
            return Err(FormatError::Field {
                path: name.to_string(),
                record: record.to_string(),
                field: "system_prompt".into(),
                message: format!("must be a string, found {other}"),
            })
        }
    };
    Ok(Example {
        prompt,
        response,
        system,
    })
}

/// The request of one record: an MT-Bench question's first turn, an ORCA `question`, or an
/// instruction with any `extra` field (Alpaca's `input`, Dolly's `context`) on its own
/// paragraph.
fn request(name: &str, record: &str, value: &Value, extra: &str) -> Result<String, FormatError> {
    if value.get("question").is_some() {
        return Ok(fields_named(name, record, value, "question", "", None)?.0);
    }
    if let Some(turns) = value.get("turns") {
        return match turns.get(0) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => Err(FormatError::Field {
                path: name.to_string(),
                record: record.to_string(),
                field: "turns".into(),
                message: "must be a list whose first turn is a non-empty string".into(),
            }),
        };
    }
    Ok(fields(name, record, value, extra, None)?.0)
}

/// serde_json's message without its own "at line L column C" (the error already says where,
/// in terms of the file rather than the string that was parsed).
pub(crate) fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn parse_json(name: &str, text: &str) -> Result<Value, FormatError> {
    serde_json::from_str(text).map_err(|e| FormatError::Syntax {
        path: name.to_string(),
        line: e.line(),
        column: e.column(),
        message: json_message(&e),
    })
}

fn example(
    name: &str,
    record: &str,
    value: &Value,
    extra: &str,
    answer: &str,
) -> Result<Example, FormatError> {
    let (prompt, response) = fields(name, record, value, extra, Some(answer))?;
    Ok(Example::new(prompt, response))
}

/// A record's request (its `instruction`, with any `extra` field on its own paragraph) and,
/// when `answer` names a field, its non-empty answer.
fn fields(
    name: &str,
    record: &str,
    value: &Value,
    extra: &str,
    answer: Option<&str>,
) -> Result<(String, String), FormatError> {
    fields_named(name, record, value, "instruction", extra, answer)
}

/// [`fields`] with the request in field `request` (`instruction`, ORCA's `question`); an
/// empty `extra` names no field.
fn fields_named(
    name: &str,
    record: &str,
    value: &Value,
    request: &str,
    extra: &str,
    answer: Option<&str>,
) -> Result<(String, String), FormatError> {
    let field_error = |field: &str, message: &str| FormatError::Field {
        path: name.to_string(),
        record: record.to_string(),
        field: field.to_string(),
        message: message.to_string(),
    };
    let Value::Object(map) = value else {
        return Err(field_error(
            request,
            "cannot be read: the record is not a JSON object",
        ));
    };
    let text = |field: &str, required: bool| -> Result<String, FormatError> {
        match map.get(field) {
            Some(Value::String(s)) if !required || !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(Value::String(_)) => Err(field_error(field, "is empty")),
            Some(Value::Null) | None if !required => Ok(String::new()),
            None | Some(Value::Null) => Err(field_error(field, "is missing")),
            Some(other) => Err(field_error(
                field,
                &format!("must be a string, found {other}"),
            )),
        }
    };
    let instruction = text(request, true)?;
    let extra = if extra.is_empty() {
        String::new()
    } else {
        text(extra, false)?
    };
    let response = match answer {
        Some(field) => text(field, true)?,
        None => String::new(),
    };
    let prompt = if extra.is_empty() {
        instruction
    } else {
        format!("{instruction}\n\n{extra}")
    };
    Ok((prompt, response))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn reads_the_real_formats() {
        let goals = read_advbench(&fixture("advbench_head.csv")).unwrap();
        assert_eq!(goals.len(), 10);
        assert!(goals[0].starts_with("Write a script that can exploit vulnerabilities"));
        let alpaca = read_examples(&fixture("alpaca_sample.json")).unwrap();
        assert_eq!(alpaca.len(), 3);
        assert_eq!(alpaca[1].prompt, "Translate to French.\n\nGood morning");
        let dolly = read_examples(&fixture("dolly_sample.jsonl")).unwrap();
        assert_eq!(dolly.len(), 2);
        assert!(dolly[0].prompt.ends_with("\n\nThe Nile flows north."));
        assert_eq!(dolly[0].system, None);
        let orca = read_examples(&fixture("orca_sample.jsonl")).unwrap();
        assert_eq!(orca.len(), 3);
        assert_eq!(
            orca[0].system.as_deref(),
            Some("You are an AI assistant. You will be given a task. You must generate a detailed and long answer.")
        );
        assert!(orca[0]
            .prompt
            .starts_with("Generate a sentence about this data"));
        assert!(orca[0].response.starts_with("The Blue Door Cafe"));
        assert_eq!(orca[2].system, None, "an empty system prompt is none");
        assert_eq!(
            read_requests(&fixture("orca_sample.jsonl")).unwrap()[1],
            orca[1].prompt
        );
    }

    #[test]
    fn reads_requests_without_answers() {
        let alpaca = read_requests(&fixture("alpaca_sample.json")).unwrap();
        assert_eq!(alpaca[1], "Translate to French.\n\nGood morning");
        let dolly = read_requests(&fixture("dolly_sample.jsonl")).unwrap();
        assert!(dolly[0].ends_with("\n\nThe Nile flows north."));
        let mt = temp(
            "mt.jsonl",
            "{\"question_id\": 81, \"turns\": [\"Write a poem.\", \"Shorter.\"]}\n\n{\"turns\": [\" Plan a trip. \"]}\n",
        );
        assert_eq!(
            read_requests(&mt).unwrap(),
            ["Write a poem.", "Plan a trip."]
        );
        let unanswered = temp("u.json", "[{\"instruction\": \"Name a colour.\"}]");
        assert_eq!(read_requests(&unanswered).unwrap(), ["Name a colour."]);
        let text = temp("t.txt", "Sort these numbers.\n\n  Write a haiku.  \n");
        assert_eq!(
            read_requests(&text).unwrap(),
            ["Sort these numbers.", "Write a haiku."]
        );
        for (path, expected) in [
            (
                temp("v.jsonl", "{\"turns\": []}\n"),
                "line 1: field `turns` must be a list",
            ),
            (
                temp("w.json", "[{\"input\": \"x\"}]"),
                "record 0: field `instruction` is missing",
            ),
            (temp("x.txt", "\n \n"), "no records"),
            (
                temp("y.csv", "goal\nx\n"),
                "use .json (Alpaca), .jsonl (Dolly or MT-Bench) or .txt",
            ),
        ] {
            let err = read_requests(&path).unwrap_err().to_string();
            assert!(err.contains(expected), "{}: {err}", path.display());
        }
    }

    fn temp(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sweep-formats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn malformed_files_name_file_record_and_field() {
        let cases: Vec<(std::path::PathBuf, &str)> = vec![
            (temp("a.csv", "prompt,target\nx,y\n"), "header: field `goal` is missing (columns: prompt, target)"),
            (temp("b.csv", "goal,target\nok,y\n,z\n"), "row 3: field `goal` is empty"),
            (temp("c.csv", "goal,target\n"), "no records"),
            (temp("d.csv", "goal,target\n\"unterminated,y\n"), "d.csv:"),
            (temp("e.json", "{\"instruction\": \"x\"}"), "expected a JSON array"),
            (temp("f.json", "[{\"instruction\": \"x\", \"output\": \"y\"}, {\"instruction\": \"x\"}]"), "record 1: field `output` is missing"),
            (temp("g.json", "[{\"instruction\": 3, \"output\": \"y\"}]"), "record 0: field `instruction` must be a string, found 3"),
            (temp("h.json", "[{\"instruction\": \"x\",\n \"output\": }]"), "h.json:2:"),
            (temp("i.jsonl", "{\"instruction\": \"a\", \"response\": \"b\"}\n{\"instruction\": \"\", \"response\": \"b\"}\n"), "line 2: field `instruction` is empty"),
            (temp("j.jsonl", "{\"instruction\": \"a\", \"response\": \"b\"}\nnot json\n"), "j.jsonl:2:"),
            (temp("k.txt", "x"), "unknown format"),
            (temp("l.jsonl", "{\"system_prompt\": \"Be brief.\", \"question\": \"Hi?\"}\n"), "line 1: field `response` is missing"),
            (temp("m.jsonl", "{\"system_prompt\": 4, \"question\": \"Hi?\", \"response\": \"Hi.\"}\n"), "line 1: field `system_prompt` must be a string, found 4"),
        ];
        for (path, expected) in cases {
            let err = match path.extension().and_then(|e| e.to_str()) {
                Some("csv") => read_advbench(&path).map(|_| ()),
                _ => read_examples(&path).map(|_| ()),
            }
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{}: {err}", path.display());
            assert!(
                err.contains(path.file_name().unwrap().to_str().unwrap()),
                "{err}"
            );
        }
        let missing = read_advbench(Path::new("/no/such/file.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("cannot read /no/such/file.csv"),
            "{missing}"
        );
    }
}
