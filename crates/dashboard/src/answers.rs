//! A trial's answers beside the unchanged base model's answers to the same prompts, read from
//! the `responses.jsonl` files the built-in trainer writes (any trainer may write them).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};
use sweep_core::protocol::files::RESPONSES;
use sweep_report::verdicts::{trial_dir, Point};
use sweep_store::{Store, StoreError, TrialRow};

/// The most answers one trial page lists.
const MAX_ANSWERS: usize = 5_000;

/// A trial's answers at its own point, in file order, each keyed by its set and prompt; and
/// the lines that could not be read, by file and line.
struct Answers {
    lines: Vec<(String, Value)>,
    problems: Vec<String>,
}

/// The lines of `responses.jsonl` at the trial's own point. `None` when the file is not there.
fn read_answers(root: &Path, row: &TrialRow) -> Option<Answers> {
    let path = trial_dir(root, row).join(RESPONSES);
    let text = std::fs::read_to_string(&path).ok()?;
    let point = Point::of(row);
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if point.holds(&v) => {
                let key = format!(
                    "{}\0{}",
                    v["set"].as_str().unwrap_or(""),
                    v["prompt"].as_str().unwrap_or("")
                );
                lines.push((key, v));
            }
            Ok(_) => {}
            Err(e) => problems.push(format!(
                "{}:{}: not a JSON line: {e}",
                path.display(),
                i + 1
            )),
        }
    }
    Some(Answers { lines, problems })
}

/// The unchanged base beside `row`: a completed `steps = 0` trial of its sweep, the one with
/// its seed where there are several; `row` itself when it is one.
async fn base_of(store: &Store, row: &TrialRow) -> Result<Option<TrialRow>, StoreError> {
    let steps = row.params.get("steps").and_then(|v| v.as_f64());
    if steps == Some(0.0) {
        return Ok(Some(row.clone()));
    }
    let sweep = store.sweep(&row.sweep).await?;
    let bases = store.completed_with(sweep.id, "steps", 0.0, 100).await?;
    let same_seed =
        bases
            .iter()
            .position(|b| match (b.params.get("seed"), row.params.get("seed")) {
                (Some(a), Some(b)) => a.matches(b),
                _ => false,
            });
    Ok(match same_seed {
        Some(i) => bases.into_iter().nth(i),
        None => bases.into_iter().next(),
    })
}

/// The page's answers table for `row`.
pub(crate) async fn answers(
    store: &Store,
    root: &Path,
    row: &TrialRow,
) -> Result<Value, StoreError> {
    let Some(Answers {
        lines: own,
        mut problems,
    }) = read_answers(root, row)
    else {
        return Ok(json!({
            "rows": [],
            "note": format!(
                "no {RESPONSES} in {}: the trial has not been evaluated yet, or its trainer \
                 writes no answers",
                trial_dir(root, row).display()
            ),
        }));
    };
    let base = base_of(store, row).await?;
    let mut by_prompt: HashMap<String, Value> = HashMap::new();
    let mut note = None;
    match &base {
        Some(b) if b.id == row.id => {
            note = Some("this trial is the unchanged base (steps = 0)".to_string())
        }
        Some(b) => match read_answers(root, b) {
            Some(theirs) => {
                problems.extend(theirs.problems);
                by_prompt.extend(theirs.lines);
            }
            None => note = Some(format!("the base trial {} left no {RESPONSES}", b.id)),
        },
        None => {
            note = Some(
                "no completed steps = 0 trial in this sweep: add `steps = [0, …]` to the grid to \
                 see the base model's answers beside these"
                    .to_string(),
            )
        }
    }
    let total = own.len();
    let rows: Vec<Value> = own
        .into_iter()
        .take(MAX_ANSWERS)
        .map(|(key, v)| {
            let b = by_prompt.get(&key);
            json!({
                "set": v["set"],
                "split": v["split"],
                "prompt": v["prompt"],
                "response": v["response"],
                "label": v["label"],
                "base_response": b.map(|b| b["response"].clone()),
                "base_label": b.map(|b| b["label"].clone()),
            })
        })
        .collect();
    Ok(json!({
        "base": base.filter(|b| b.id != row.id).map(|b| b.id),
        "rows": rows,
        "total": total,
        "note": note,
        "problems": problems,
    }))
}
