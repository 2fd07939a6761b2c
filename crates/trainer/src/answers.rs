//! A trial's answer files: every evaluated prompt's answer and how it was scored
//! (`responses.jsonl`), every benchmark item's scores (`benchmarks.jsonl`), per grid point,
//! each point's lines written once however often an attempt is retried.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::benchmark::ItemScore;
use crate::setup::Transcript;

pub use sweep_core::protocol::files::{BENCHMARKS, RESPONSES};

/// An answer file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct AnswersError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

/// The grid point an evaluation belongs to, as `responses.jsonl` names it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct Point {
    pub(crate) steps: usize,
    pub(crate) ema_decay: f64,
    pub(crate) interpolation: f64,
}

impl Point {
    /// The model as loaded: no step, no EMA, no interpolation (`sweep eval`'s point, and a
    /// `steps = 0` trial's).
    pub(crate) const AS_LOADED: Point = Point {
        steps: 0,
        ema_decay: 0.0,
        interpolation: 1.0,
    };
}

/// One line of `responses.jsonl`.
#[derive(serde::Serialize)]
struct AnswerLine<'a> {
    #[serde(flatten)]
    point: Point,
    #[serde(flatten)]
    answer: &'a Transcript,
    #[serde(skip_serializing_if = "Option::is_none")]
    judge: Option<&'static str>,
}

/// Writes the answers of `point` into the trial's responses file, replacing any that an
/// interrupted attempt wrote for the same point, so the file holds each point's answers once.
/// `verdicts`, if any, are the judge's for the harmful answers in order.
pub(crate) fn record_answers(
    dir: &Path,
    point: Point,
    answers: &[Transcript],
    verdicts: &[bool],
) -> Result<(), AnswersError> {
    let mut verdicts = verdicts.iter();
    let lines = answers.iter().map(|answer| {
        let judge = if answer.set == "harmful" {
            verdicts.next().map(|&v| if v { "unsafe" } else { "safe" })
        } else {
            None
        };
        serde_json::to_string(&AnswerLine {
            point,
            answer,
            judge,
        })
        .expect("serializable")
    });
    replace_point(&dir.join(RESPONSES), point, lines)
}

/// One line of `benchmarks.jsonl`.
#[derive(serde::Serialize)]
struct BenchmarkLine<'a> {
    #[serde(flatten)]
    point: Point,
    #[serde(flatten)]
    item: &'a ItemScore,
}

/// Writes every benchmark item's scores at `point` into the trial's benchmarks file (none
/// when the grid names no benchmark), once per point as [`record_answers`] does.
pub(crate) fn record_benchmarks(
    dir: &Path,
    point: Point,
    scores: &[ItemScore],
) -> Result<(), AnswersError> {
    if scores.is_empty() {
        return Ok(());
    }
    let lines = scores
        .iter()
        .map(|item| serde_json::to_string(&BenchmarkLine { point, item }).expect("serializable"));
    replace_point(&dir.join(BENCHMARKS), point, lines)
}

/// Replaces the lines of `point` in the JSON Lines file at `path` with `lines`, atomically.
fn replace_point(
    path: &Path,
    point: Point,
    lines: impl Iterator<Item = String>,
) -> Result<(), AnswersError> {
    let err = |source| AnswersError {
        path: path.to_path_buf(),
        source,
    };
    let same_point = |line: &str| {
        serde_json::from_str::<Value>(line).is_ok_and(|v| {
            v["steps"].as_u64() == Some(point.steps as u64)
                && v["ema_decay"].as_f64() == Some(point.ema_decay)
                && v["interpolation"].as_f64() == Some(point.interpolation)
        })
    };
    let mut text: String = match std::fs::read_to_string(path) {
        Ok(old) => old
            .lines()
            .filter(|l| !l.trim().is_empty() && !same_point(l))
            .map(|l| format!("{l}\n"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(err(e)),
    };
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("jsonl.partial");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Removes the answers and benchmark scores an earlier attempt wrote, when this one evaluates
/// every point again: they may belong to grid points the trial no longer has.
pub(crate) fn forget_answers(dir: &Path) -> Result<(), AnswersError> {
    for path in [dir.join(RESPONSES), dir.join(BENCHMARKS)] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(AnswersError { path, source: e })
            }
            _ => {}
        }
    }
    Ok(())
}
