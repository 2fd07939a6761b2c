//! Multiple-choice benchmark files in their public formats, turned into the (context,
//! choices, answer) items lm-evaluation-harness scores: the same prompt text, the same
//! preprocessing, character for character, so a score here is a score there.
//!
//! | format | fields of a JSON line | context |
//! |---|---|---|
//! | HellaSwag | `activity_label`, `ctx_a`, `ctx_b`, `endings`, `label` | `"{activity_label}: {ctx_a} {Ctx_b}"`, cleaned as lm-eval's `preprocess` |
//! | ARC | `question`, `choices` (`{text, label}` with `answerKey`, or a list with `gold`) | `"Question: {question}\nAnswer:"` |
//! | PIQA | `goal`, `sol1`, `sol2`, `label` | `"Question: {goal}\nAnswer:"` |
//! | MMLU | `question`, `choices` (4), `answer`, `subject` | the subject's description, the question and lettered choices, `"Answer:"`; the choices are `A`-`D` |

use std::path::Path;

use serde_json::Value;

use crate::data::FormatError;

/// One multiple-choice question as lm-evaluation-harness poses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The text the choices continue (lm-eval's context: description and `doc_to_text`).
    pub context: String,
    /// The choices, without the space lm-eval puts before each (its `target_delimiter`):
    /// `acc_norm` divides by their length in characters.
    pub choices: Vec<String>,
    /// The index of the right choice.
    pub gold: usize,
    /// The item's 1-based line in its file, to find it again.
    pub line: usize,
}

/// The public formats a benchmark file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// HellaSwag as Hugging Face's `Rowan/hellaswag` has it.
    HellaSwag,
    /// ARC (Easy or Challenge): `allenai/ai2_arc`'s fields, or `{question, choices, gold}`.
    Arc,
    /// PIQA: `{goal, sol1, sol2, label}`.
    Piqa,
    /// MMLU as `cais/mmlu` has it: `{question, subject, choices, answer}`.
    Mmlu,
}

/// The benchmark names sweep knows, with the format of each: the name says how a file is read.
pub const KNOWN: [(&str, Format); 5] = [
    ("hellaswag", Format::HellaSwag),
    ("arc_easy", Format::Arc),
    ("arc_challenge", Format::Arc),
    ("piqa", Format::Piqa),
    ("mmlu", Format::Mmlu),
];

impl Format {
    /// The format of the benchmark called `name`; `None` for a name sweep does not know.
    pub fn of(name: &str) -> Option<Format> {
        KNOWN.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The item a JSON record of this format poses; `Err` names the field and what is wrong.
    fn item(self, record: &Value, line: usize) -> Result<Item, (&'static str, String)> {
        let (context, choices, gold) = match self {
            Format::HellaSwag => {
                let activity = text(record, "activity_label")?;
                let ctx_a = text(record, "ctx_a")?;
                let ctx_b = capitalize(text(record, "ctx_b")?);
                let endings = texts(record, "endings")?;
                let context = preprocess(&format!("{activity}: {ctx_a} {ctx_b}"));
                let choices = endings.iter().map(|e| preprocess(e)).collect();
                (context, choices, index(record, "label")?)
            }
            Format::Arc => {
                let question = text(record, "question")?;
                let (choices, gold) = match record.get("choices") {
                    Some(Value::Object(_)) => {
                        let table = &record["choices"];
                        let choices = texts(table, "text").map_err(|(_, m)| ("choices.text", m))?;
                        let labels =
                            texts(table, "label").map_err(|(_, m)| ("choices.label", m))?;
                        let key = text(record, "answerKey")?;
                        let gold = labels.iter().position(|l| l == key).ok_or((
                            "answerKey",
                            format!("{key:?} is none of the labels {labels:?}"),
                        ))?;
                        (choices, gold)
                    }
                    _ => (texts(record, "choices")?, index(record, "gold")?),
                };
                (format!("Question: {question}\nAnswer:"), choices, gold)
            }
            Format::Piqa => {
                let goal = text(record, "goal")?;
                let choices = vec![
                    text(record, "sol1")?.to_string(),
                    text(record, "sol2")?.to_string(),
                ];
                (
                    format!("Question: {goal}\nAnswer:"),
                    choices,
                    index(record, "label")?,
                )
            }
            Format::Mmlu => {
                let question = text(record, "question")?;
                let options = texts(record, "choices")?;
                if options.len() != 4 {
                    return Err((
                        "choices",
                        format!("has {} choices; MMLU has 4", options.len()),
                    ));
                }
                // lm-eval's per-subject description: "… about high school biology.\n\n".
                let description = match record.get("subject").and_then(Value::as_str) {
                    Some(s) if !s.is_empty() => format!(
                        "The following are multiple choice questions (with answers) about {}.\n\n",
                        s.replace('_', " ")
                    ),
                    _ => String::new(),
                };
                let context = format!(
                    "{description}{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:",
                    question.trim(),
                    options[0],
                    options[1],
                    options[2],
                    options[3]
                );
                let letters = ["A", "B", "C", "D"].map(String::from).to_vec();
                (context, letters, index(record, "answer")?)
            }
        };
        if choices.len() < 2 {
            return Err((
                "choices",
                format!("has {} choices; give at least 2", choices.len()),
            ));
        }
        if gold >= choices.len() {
            return Err((
                "label",
                format!(
                    "{gold} is past the last of {} choices (0-based)",
                    choices.len()
                ),
            ));
        }
        Ok(Item {
            context,
            choices,
            gold,
            line,
        })
    }
}

/// Reads every item of a JSON Lines benchmark file in `format` (blank lines skipped).
pub fn read_items(path: &Path, format: Format) -> Result<Vec<Item>, FormatError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FormatError::Read {
        path: name.clone(),
        source,
    })?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Value = serde_json::from_str(line).map_err(|e| FormatError::Syntax {
            path: name.clone(),
            line: i + 1,
            column: e.column(),
            message: crate::data::formats::json_message(&e),
        })?;
        let item = format
            .item(&record, i + 1)
            .map_err(|(field, message)| FormatError::Field {
                path: name.clone(),
                record: format!("line {}", i + 1),
                field: field.into(),
                message,
            })?;
        items.push(item);
    }
    if items.is_empty() {
        return Err(FormatError::Empty(name));
    }
    Ok(items)
}

/// A string field.
fn text<'a>(record: &'a Value, field: &'static str) -> Result<&'a str, (&'static str, String)> {
    match record.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err((field, format!("should be a string, not {other}"))),
        None => Err((field, "is missing".into())),
    }
}

/// A field holding a list of strings.
fn texts(record: &Value, field: &'static str) -> Result<Vec<String>, (&'static str, String)> {
    let bad = || (field, "should be a list of strings".to_string());
    match record.get(field) {
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().map(String::from).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
        None => Err((field, "is missing".into())),
    }
}

/// A 0-based answer index, written as a number or as a string of digits (HellaSwag's `"2"`).
fn index(record: &Value, field: &'static str) -> Result<usize, (&'static str, String)> {
    let bad = |v: &Value| (field, format!("should be a 0-based choice index, not {v}"));
    match record.get(field) {
        Some(v @ Value::Number(n)) => n.as_u64().map(|n| n as usize).ok_or_else(|| bad(v)),
        Some(v @ Value::String(s)) => s.trim().parse().map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
        None => Err((field, "is missing".into())),
    }
}

/// Python's `str.capitalize`: the first character upper-cased, every other one lower-cased.
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => first
            .to_uppercase()
            .chain(chars.as_str().to_lowercase().chars())
            .collect(),
    }
}

/// lm-eval's HellaSwag `preprocess`: strip; `" [title]"` → `". "`; drop every `[…]` on one
/// line (WikiHow's artifacts, as the non-greedy `\[.*?\]` does); `"  "` → `" "` once.
fn preprocess(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find([']', '\n']) {
            Some(close) if after[close..].starts_with(']') => rest = &after[close + 1..],
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(format: Format, json: &str) -> Result<Item, (&'static str, String)> {
        format.item(&serde_json::from_str(json).unwrap(), 1)
    }

    #[test]
    fn hellaswag_is_preprocessed_as_lm_eval_does() {
        let it = item(
            Format::HellaSwag,
            r#"{"activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.",
                "ctx_b": "he IS", "endings": [" is using wrap [step] to wrap  a pair.", "b [title] c", "x", "y"],
                "label": "2"}"#,
        )
        .unwrap();
        assert_eq!(
            it.context,
            "Roof shingle removal: A man is sitting on a roof. He is"
        );
        assert_eq!(it.choices[0], "is using wrap to wrap a pair.");
        assert_eq!(it.choices[1], "b. c");
        assert_eq!(it.gold, 2);
    }

    #[test]
    fn brackets_are_dropped_within_a_line_only() {
        assert_eq!(preprocess("a [x] b [y"), "a b [y");
        assert_eq!(preprocess("a [x\n] b"), "a [x\n] b");
        assert_eq!(preprocess("[a [b] c]"), " c]");
        assert_eq!(preprocess("   "), "");
        // One pass of "  " -> " ", as str.replace does: three spaces become two.
        assert_eq!(preprocess("a   b"), "a  b");
    }

    #[test]
    fn capitalize_lowers_the_rest_as_python_does() {
        assert_eq!(capitalize("hELLO World"), "Hello world");
        assert_eq!(capitalize("éTÉ"), "Été");
        assert_eq!(capitalize(""), "");
    }

    #[test]
    fn arc_reads_both_the_hugging_face_and_the_flat_form() {
        let hf = item(
            Format::Arc,
            r#"{"question": "Which is a gas?", "choices": {"text": ["ice", "steam", "rock"],
                "label": ["1", "2", "3"]}, "answerKey": "2"}"#,
        )
        .unwrap();
        assert_eq!(hf.context, "Question: Which is a gas?\nAnswer:");
        assert_eq!((hf.choices.len(), hf.gold), (3, 1));
        let flat = item(
            Format::Arc,
            r#"{"question": "Which is a gas?", "choices": ["ice", "steam"], "gold": 1}"#,
        )
        .unwrap();
        assert_eq!(flat.gold, 1);
        let wrong = item(
            Format::Arc,
            r#"{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}"#,
        );
        assert_eq!(wrong.unwrap_err().0, "answerKey");
    }

    #[test]
    fn mmlu_has_the_subjects_description_and_letters() {
        let it = item(
            Format::Mmlu,
            r#"{"question": " What is 2+2? ", "subject": "elementary_mathematics",
                "choices": ["3", "4", "5", "6"], "answer": 1}"#,
        )
        .unwrap();
        assert_eq!(
            it.context,
            "The following are multiple choice questions (with answers) about elementary \
             mathematics.\n\nWhat is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
        );
        assert_eq!(it.choices, ["A", "B", "C", "D"]);
    }

    #[test]
    fn a_bad_record_names_its_field() {
        let missing = item(Format::Piqa, r#"{"goal": "g", "sol1": "a", "label": 0}"#);
        assert_eq!(missing.unwrap_err().0, "sol2");
        let past = item(
            Format::Piqa,
            r#"{"goal": "g", "sol1": "a", "sol2": "b", "label": 2}"#,
        );
        let (field, message) = past.unwrap_err();
        assert_eq!(field, "label");
        assert!(message.contains("past the last"), "{message}");
        let kind = item(
            Format::Piqa,
            r#"{"goal": 3, "sol1": "a", "sol2": "b", "label": 0}"#,
        );
        assert!(kind.unwrap_err().1.contains("string"));
    }

    #[test]
    fn a_file_error_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("piqa.jsonl");
        std::fs::write(
            &path,
            "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 1}\n\n{\"goal\": \"g\", \"sol1\"\n",
        )
        .unwrap();
        let e = read_items(&path, Format::Piqa).unwrap_err().to_string();
        assert!(e.contains("piqa.jsonl:3:"), "{e}");
        std::fs::write(
            &path,
            "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n",
        )
        .unwrap();
        let e = read_items(&path, Format::Piqa).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("`label`"), "{e}");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_items(&path, Format::Piqa),
            Err(FormatError::Empty(_))
        ));
    }
}
