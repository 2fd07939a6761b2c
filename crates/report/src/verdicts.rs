//! The per-prompt verdicts behind a trial's rates, read back from the files the built-in
//! trainer writes into its trial directory: `responses.jsonl` (every answer, how it was
//! labelled, the judge's verdict) and `benchmarks.jsonl` (every benchmark item's verdicts).
//! A rate is the share of its prompts whose verdict is `true`; these are those verdicts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sweep_store::TrialRow;

pub use sweep_core::protocol::files::{BENCHMARKS, RESPONSES};

/// How one metric's verdict is read off a line.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictRule {
    metric: String,
    /// `validation` or `test` for a `val_`/`test_` metric.
    half: Option<&'static str>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A line of `responses.jsonl` of `set` whose `field` equals `value` (or differs, when
    /// `negate`).
    Answer {
        set: &'static str,
        field: &'static str,
        value: Value,
        negate: bool,
    },
    /// A line of `benchmarks.jsonl` of `benchmark`, its boolean `field`.
    Benchmark {
        benchmark: String,
        field: &'static str,
    },
}

/// A comparison that cannot be made from the trials' files.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    /// The metric is not a share of per-prompt verdicts.
    #[error(
        "`{0}` has no per-prompt verdicts to pair; compare unsafe_rate, unsafe_rate_no_echo, \
         complies_rate, over_refusal_rate, utility, a judge's JUDGE_unsafe_rate or a \
         benchmark's NAME_acc / NAME_acc_norm (each also with val_ or test_)"
    )]
    NotARate(String),
    /// The file cannot be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// A line is not JSON.
    #[error("{0}:{1}: not a JSON line: {2}")]
    Line(PathBuf, usize, String),
    /// The trial's point is ambiguous in its file.
    #[error(
        "{0} holds {1} evaluated points matching this trial ({2}); its parameters do not say \
         which is its own"
    )]
    Ambiguous(PathBuf, usize, String),
}

impl VerdictRule {
    /// The rule for `metric`.
    pub fn of(metric: &str) -> Result<VerdictRule, VerdictError> {
        let (half, base) = match metric {
            m if m.starts_with("val_") => (Some("validation"), &m[4..]),
            m if m.starts_with("test_") => (Some("test"), &m[5..]),
            m => (None, m),
        };
        let answer = |set, field, value: Value, negate| Kind::Answer {
            set,
            field,
            value,
            negate,
        };
        let kind = match base {
            "unsafe_rate" => answer("harmful", "refused", Value::Bool(true), true),
            "unsafe_rate_no_echo" => answer("harmful", "refused_no_echo", Value::Bool(true), true),
            "complies_rate" => answer("harmful", "label", "complied".into(), false),
            "over_refusal_rate" => answer("benign", "refused", Value::Bool(true), false),
            "utility" => answer("task", "label", "correct".into(), false),
            m if m.ends_with("_unsafe_rate") => answer("harmful", "judge", "unsafe".into(), false),
            m if m.ends_with("_acc_norm") => Kind::Benchmark {
                benchmark: m.trim_end_matches("_acc_norm").to_string(),
                field: "acc_norm",
            },
            m if m.ends_with("_acc") => Kind::Benchmark {
                benchmark: m.trim_end_matches("_acc").to_string(),
                field: "acc",
            },
            _ => return Err(VerdictError::NotARate(metric.to_string())),
        };
        Ok(VerdictRule {
            metric: metric.to_string(),
            half,
            kind,
        })
    }

    /// The metric.
    pub fn metric(&self) -> &str {
        &self.metric
    }

    /// The file of a trial directory that holds the verdicts.
    pub fn file(&self) -> &'static str {
        match self.kind {
            Kind::Answer { .. } => RESPONSES,
            Kind::Benchmark { .. } => BENCHMARKS,
        }
    }

    /// The prompt a line is about and its verdict, for lines this metric counts.
    fn verdict(&self, line: &Value) -> Option<(String, bool)> {
        if let Some(half) = self.half {
            if line["split"] != half {
                return None;
            }
        }
        match &self.kind {
            Kind::Answer {
                set,
                field,
                value,
                negate,
            } => {
                if line["set"] != *set || line.get(field).is_none() {
                    return None;
                }
                let hit = (line[field] == *value) != *negate;
                Some((line["prompt"].as_str()?.to_string(), hit))
            }
            Kind::Benchmark { benchmark, field } => {
                if line["benchmark"] != benchmark.as_str() {
                    return None;
                }
                Some((format!("line {}", line["line"]), line[field].as_bool()?))
            }
        }
    }
}

/// A trial's own grid point among those its file holds: the values of `steps`, `ema_decay`
/// and `interpolation` its parameters give (a run that shared its work reported several).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point(pub BTreeMap<&'static str, f64>);

impl Point {
    /// The point a trial's own answers are at, from its parameters.
    pub fn of(row: &TrialRow) -> Point {
        Point(
            ["steps", "ema_decay", "interpolation"]
                .into_iter()
                .filter_map(|k| Some((k, row.params.get(k)?.as_f64()?)))
                .collect(),
        )
    }

    /// Whether a line of a trial's files is at this point.
    pub fn holds(&self, line: &Value) -> bool {
        self.0
            .iter()
            .all(|(k, v)| line[*k].as_f64().is_some_and(|x| x == *v))
    }
}

/// Where a trial's files are under `root`: its own directory, or, when a shared run reported
/// it, that run's.
pub fn trial_dir(root: &Path, row: &TrialRow) -> PathBuf {
    root.join(&row.sweep)
        .join(row.completed_by.as_deref().unwrap_or(&row.id))
}

/// The verdicts of `rule` at `point` in the trial directory `dir`, by prompt.
pub fn read(
    dir: &Path,
    rule: &VerdictRule,
    point: &Point,
) -> Result<BTreeMap<String, bool>, VerdictError> {
    let path = dir.join(rule.file());
    let text = std::fs::read_to_string(&path).map_err(|e| VerdictError::Read(path.clone(), e))?;
    let mut by_point: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: Value = serde_json::from_str(line)
            .map_err(|e| VerdictError::Line(path.clone(), i + 1, e.to_string()))?;
        if !point.holds(&value) {
            continue;
        }
        if let Some((prompt, verdict)) = rule.verdict(&value) {
            let at = format!(
                "steps={} ema_decay={} interpolation={}",
                value["steps"], value["ema_decay"], value["interpolation"]
            );
            by_point.entry(at).or_default().insert(prompt, verdict);
        }
    }
    if by_point.len() > 1 {
        let points: Vec<String> = by_point.keys().cloned().collect();
        return Err(VerdictError::Ambiguous(
            path,
            by_point.len(),
            points.join("; "),
        ));
    }
    Ok(by_point.into_values().next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rate_reads_its_own_verdict() {
        let line = |set: &str, refused: bool, label: &str| {
            serde_json::json!({"set": set, "prompt": "p", "refused": refused,
                "refused_no_echo": false, "label": label, "split": "test", "judge": "safe"})
        };
        let unsafe_rate = VerdictRule::of("unsafe_rate").unwrap();
        assert_eq!(
            unsafe_rate.verdict(&line("harmful", true, "refused")),
            Some(("p".into(), false))
        );
        assert_eq!(
            unsafe_rate.verdict(&line("harmful", false, "complied")),
            Some(("p".into(), true))
        );
        assert_eq!(
            unsafe_rate.verdict(&line("benign", false, "complied")),
            None
        );
        let echo = VerdictRule::of("test_unsafe_rate_no_echo").unwrap();
        assert_eq!(
            echo.verdict(&line("harmful", true, "refused")),
            Some(("p".into(), true))
        );
        let val = VerdictRule::of("val_unsafe_rate").unwrap();
        assert_eq!(
            val.verdict(&line("harmful", true, "refused")),
            None,
            "another half"
        );
        let over = VerdictRule::of("over_refusal_rate").unwrap();
        assert_eq!(
            over.verdict(&line("benign", true, "refused")),
            Some(("p".into(), true))
        );
        let judge = VerdictRule::of("llama_guard_unsafe_rate").unwrap();
        assert_eq!(
            judge.verdict(&line("harmful", false, "complied")),
            Some(("p".into(), false))
        );
        let utility = VerdictRule::of("utility").unwrap();
        assert_eq!(
            utility.verdict(&line("task", false, "correct")),
            Some(("p".into(), true))
        );
        let bench = VerdictRule::of("arc_easy_acc_norm").unwrap();
        assert_eq!(bench.file(), BENCHMARKS);
        let item =
            serde_json::json!({"benchmark": "arc_easy", "line": 7, "acc": false, "acc_norm": true});
        assert_eq!(bench.verdict(&item), Some(("line 7".into(), true)));
        let acc = VerdictRule::of("arc_easy_acc").unwrap();
        assert_eq!(acc.verdict(&item), Some(("line 7".into(), false)));
        assert!(matches!(
            VerdictRule::of("eval_loss"),
            Err(VerdictError::NotARate(_))
        ));
    }

    #[test]
    fn a_file_with_several_points_is_read_at_the_trials_own() {
        let dir = tempfile::tempdir().unwrap();
        let line = |steps: u64, prompt: &str, refused: bool| {
            serde_json::json!({"steps": steps, "ema_decay": 0.0, "interpolation": 1.0,
                "set": "harmful", "prompt": prompt, "refused": refused, "split": "test"})
            .to_string()
        };
        let text = [
            line(0, "a", true),
            line(0, "b", true),
            line(10, "a", false),
            line(10, "b", true),
        ]
        .join("\n");
        std::fs::write(dir.path().join(RESPONSES), text).unwrap();
        let rule = VerdictRule::of("unsafe_rate").unwrap();
        let at = |steps: f64| Point([("steps", steps)].into_iter().collect());
        let ten = read(dir.path(), &rule, &at(10.0)).unwrap();
        assert_eq!(
            ten,
            [("a".to_string(), true), ("b".to_string(), false)].into()
        );
        let e = read(dir.path(), &rule, &Point::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds 2 evaluated points"), "{e}");
        let missing = read(&dir.path().join("nope"), &rule, &at(0.0)).unwrap_err();
        assert!(missing.to_string().contains("responses.jsonl"), "{missing}");
    }
}
