//! What a trial process tells the scheduler: JSON lines on stdout.
//!
//! ```text
//! {"event":"metric","step":100,"name":"train_loss","value":1.25}
//! {"event":"checkpoint","step":100}
//! {"event":"result","metrics":{"unsafe_rate":0.05,"utility":0.71}}
//! {"event":"result","params":{"steps":50},"metrics":{"unsafe_rate":0.02}}
//! ```
//!
//! Several curves at one step may share a line, as `wandb.log` takes them:
//!
//! ```text
//! {"event":"metric","step":100,"metrics":{"train_loss":1.25,"lr":0.0003}}
//! ```
//!
//! A value in a `result` or such a `metric` line that is not a number (`"note": "ok"`) is
//! left out with a note in the trial's log; the numbers beside it are kept.
//!
//! Any other line is ordinary output and goes to the trial's log. A `result` with `params`
//! reports the metrics of another point of the same sweep (this trial's parameters with those
//! overridden), so one training run can fill in several grid points. Python's `NaN` and
//! `Infinity`, and numbers beyond an `f64` (`1e400`), are accepted and recorded as missing
//! values, as they are not finite.

use std::collections::BTreeMap;

/// The files a trial leaves in its directory for the reports to read, named once for the
/// trainer that writes them and the reports (`sweep compare`, the dashboard) that read them.
pub mod files {
    /// Every answer its evaluations scored, a JSON line each, with the grid point it is at
    /// (`steps`, `ema_decay`, `interpolation`), its `set`, `prompt`, `response`, `label`
    /// and verdicts.
    pub const RESPONSES: &str = "responses.jsonl";
    /// Every benchmark item's log-likelihoods and verdicts, per evaluated point.
    pub const BENCHMARKS: &str = "benchmarks.jsonl";
}

/// The environment a trial process is started with: the names, written once for the
/// scheduler that sets them and the trials (built-in, `sweep eval`) that read them. Their
/// meanings are in docs/protocol.md.
pub mod env {
    /// The sweep's name.
    pub const SWEEP: &str = "SWEEP_SWEEP";
    /// The trial's id.
    pub const TRIAL_ID: &str = "SWEEP_TRIAL_ID";
    /// The trial's directory (checkpoints, logs, answers), kept across attempts.
    pub const TRIAL_DIR: &str = "SWEEP_TRIAL_DIR";
    /// Every parameter, swept and fixed, as a JSON object.
    pub const PARAMS: &str = "SWEEP_PARAMS";
    /// The attempt's number, from 1.
    pub const ATTEMPT: &str = "SWEEP_ATTEMPT";
    /// `1` when an earlier attempt started (a checkpoint may exist).
    pub const RESUME: &str = "SWEEP_RESUME";
    /// Every value of every swept parameter this trial could report, as JSON.
    pub const AXES: &str = "SWEEP_AXES";
    /// A file holding what `SWEEP_AXES` would, given instead of it where the text is too long
    /// for the environment (an axis of thousands of values; Linux refuses any one variable
    /// over 128 KiB).
    pub const AXES_FILE: &str = "SWEEP_AXES_FILE";
    /// The grid's `[trainer]` table as JSON.
    pub const TRAINER: &str = "SWEEP_TRAINER";
    /// The `sweep` binary running the sweep.
    pub const BIN: &str = "SWEEP_BIN";
    /// The orchestrator (runner) that started the attempt.
    pub const RUNNER: &str = "SWEEP_RUNNER";
    /// How many parts to split each micro-batch into after out-of-memory attempts.
    pub const MICRO_BATCH_SPLIT: &str = "SWEEP_MICRO_BATCH_SPLIT";
}

use serde::{Deserialize, Serialize};

use crate::value::Params;

/// One message from a trial. Its serde form is the protocol: trials in Rust (the built-in
/// one) print [`Event::to_line`], and the scheduler reads lines back with [`parse_line`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A point of a curve, such as the training loss at a step.
    Metric {
        /// Optimizer step (or any monotone counter) the value belongs to.
        step: u64,
        /// Curve name.
        name: String,
        /// The value; `None` if it was not finite.
        value: Option<f64>,
    },
    /// Final metrics, recorded when the trial exits with status 0.
    Result {
        /// Metric name to value; `None` if it was not finite.
        metrics: BTreeMap<String, Option<f64>>,
        /// Parameters overriding this trial's own, to report another grid point.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        params: Params,
    },
    /// A resumable checkpoint now exists in `SWEEP_TRIAL_DIR`.
    Checkpoint {
        /// The step it was taken at.
        step: u64,
    },
}

impl Event {
    /// The event as one protocol line (no newline). Values that are not finite are written as
    /// `null`, which reads back as missing.
    pub fn to_line(&self) -> String {
        // Serializing plain maps, strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// How one stdout line was understood.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseOutcome {
    /// A protocol event.
    Event(Event),
    /// Ordinary output.
    Output,
    /// Events read from a line in one of the forgiving forms (several curves on one
    /// `metric` line, or values that are not numbers left out), with a note for each value
    /// left out.
    Lenient {
        /// The events, in the line's order.
        events: Vec<Event>,
        /// What was left out, for the trial's log.
        notes: Vec<String>,
    },
    /// A line that looks like an event but is not a valid one, with the reason.
    Invalid(String),
}

/// Classifies one line of trial stdout.
pub fn parse_line(line: &str) -> ParseOutcome {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') || !trimmed.contains("\"event\"") {
        return ParseOutcome::Output;
    }
    let first = match serde_json::from_str::<Event>(trimmed) {
        Ok(event) => return ParseOutcome::Event(event),
        Err(e) => e,
    };
    let patched = replace_non_finite(trimmed);
    let text = patched.as_deref().unwrap_or(trimmed);
    let error = match patched.as_deref().map(serde_json::from_str::<Event>) {
        Some(Ok(event)) => return ParseOutcome::Event(event),
        Some(Err(e)) => e,
        None => first,
    };
    match lenient(text) {
        Some((events, notes)) => ParseOutcome::Lenient { events, notes },
        None => ParseOutcome::Invalid(error.to_string()),
    }
}

/// The forgiving forms: a `metric` line with a `metrics` object (one curve point each), and a
/// `result` or such a `metric` line whose values are not all numbers (those left out, with a
/// note). `None` for anything else, which stays invalid.
fn lenient(text: &str) -> Option<(Vec<Event>, Vec<String>)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let object = value.as_object()?;
    let kind = object.get("event")?.as_str()?;
    let allowed: &[&str] = match kind {
        "metric" => &["event", "step", "metrics"],
        "result" => &["event", "metrics", "params"],
        _ => return None,
    };
    if object.keys().any(|k| !allowed.contains(&k.as_str())) {
        return None;
    }
    let mut notes = Vec::new();
    let mut numbers = BTreeMap::new();
    for (name, v) in object.get("metrics")?.as_object()? {
        match v {
            serde_json::Value::Null => {
                numbers.insert(name.clone(), None);
            }
            serde_json::Value::Number(n) => {
                numbers.insert(name.clone(), n.as_f64().filter(|x| x.is_finite()));
            }
            other => notes.push(format!(
                "{kind}: `{name}` is {other}, not a number; left out, the other values kept"
            )),
        }
    }
    let events = match kind {
        "metric" => {
            let step = object.get("step")?.as_u64()?;
            numbers
                .into_iter()
                .map(|(name, value)| Event::Metric { step, name, value })
                .collect()
        }
        _ => {
            let params: Params = match object.get("params") {
                None => Params::new(),
                Some(p) => serde_json::from_value(p.clone()).ok()?,
            };
            vec![Event::Result {
                metrics: numbers,
                params,
            }]
        }
    };
    Some((events, notes))
}

/// Replaces what JSON cannot carry as a finite `f64` outside strings by `null`: the bare
/// tokens `NaN`, `Infinity` and `-Infinity` (Python's `json.dumps` writes them), and numbers
/// too large for an `f64` (`1e400`), which serde_json refuses. `None` when there are none.
fn replace_non_finite(line: &str) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut changed = false;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(token) = token {
                out.push_str("null");
                rest = &rest[token.len()..];
                changed = true;
                continue;
            }
            if c == '-' || c.is_ascii_digit() {
                let len = rest
                    .find(|c: char| {
                        !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
                    })
                    .unwrap_or(rest.len());
                let number = &rest[..len];
                let overflows = number.parse::<f64>().is_ok_and(|v| v.is_infinite());
                out.push_str(if overflows { "null" } else { number });
                changed |= overflows;
                rest = &rest[len..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ParamValue;

    #[test]
    fn numbers_beyond_an_f64_are_missing_values_not_a_lost_result() {
        assert_eq!(
            parse_line(
                r#"{"event":"result","metrics":{"big":1e400,"small":-1E+400,"ok":2.5e3,"tiny":1e-400}}"#
            ),
            ParseOutcome::Event(Event::Result {
                metrics: BTreeMap::from([
                    ("big".to_string(), None),
                    ("small".to_string(), None),
                    ("ok".to_string(), Some(2500.0)),
                    ("tiny".to_string(), Some(0.0)),
                ]),
                params: Params::new(),
            })
        );
        // Inside a string it is text, and stays as it is.
        assert!(matches!(
            parse_line(r#"{"event":"metric","step":1,"name":"x1e400","value":1e400}"#),
            ParseOutcome::Event(Event::Metric { ref name, value: None, .. }) if name == "x1e400"
        ));
    }

    #[test]
    fn parses_each_event() {
        assert_eq!(
            parse_line(r#"{"event":"metric","step":3,"name":"loss","value":1.5}"#),
            ParseOutcome::Event(Event::Metric {
                step: 3,
                name: "loss".into(),
                value: Some(1.5)
            })
        );
        assert_eq!(
            parse_line(r#" {"event":"checkpoint","step":7} "#),
            ParseOutcome::Event(Event::Checkpoint { step: 7 })
        );
        let ParseOutcome::Event(Event::Result { metrics, params }) =
            parse_line(r#"{"event":"result","metrics":{"u":0.5},"params":{"steps":50}}"#)
        else {
            panic!()
        };
        assert_eq!(metrics["u"], Some(0.5));
        assert_eq!(params["steps"], ParamValue::Int(50));
    }

    #[test]
    fn every_event_reads_back_as_it_was_written() {
        let events = [
            Event::Metric {
                step: 3,
                name: "train_loss".into(),
                value: Some(1.25),
            },
            Event::Metric {
                step: 4,
                name: "x\"y".into(),
                value: None,
            },
            Event::Checkpoint { step: 100 },
            Event::Result {
                metrics: [
                    ("unsafe_rate".to_string(), Some(0.05)),
                    ("nan".to_string(), None),
                ]
                .into(),
                params: Params::new(),
            },
            Event::Result {
                metrics: [("u".to_string(), Some(0.5))].into(),
                params: [
                    ("steps".to_string(), ParamValue::Int(50)),
                    ("ema_decay".to_string(), ParamValue::Float(0.99)),
                ]
                .into(),
            },
        ];
        for event in events {
            let line = event.to_line();
            assert_eq!(parse_line(&line), ParseOutcome::Event(event), "{line}");
        }
        // Own results carry no `params` key, as the protocol documents them.
        let own = Event::Result {
            metrics: [("m".to_string(), Some(1.0))].into(),
            params: Params::new(),
        };
        assert_eq!(own.to_line(), r#"{"event":"result","metrics":{"m":1.0}}"#);
        let nan = Event::Metric {
            step: 1,
            name: "l".into(),
            value: Some(f64::NAN),
        };
        assert_eq!(
            parse_line(&nan.to_line()),
            ParseOutcome::Event(Event::Metric {
                step: 1,
                name: "l".into(),
                value: None
            })
        );
    }

    #[test]
    fn ordinary_output_is_not_an_event() {
        assert_eq!(parse_line("epoch 1 loss 0.3"), ParseOutcome::Output);
        assert_eq!(parse_line(r#"{"loss": 1}"#), ParseOutcome::Output);
    }

    #[test]
    fn malformed_events_are_reported() {
        assert!(matches!(
            parse_line(r#"{"event":"metric","step":1}"#),
            ParseOutcome::Invalid(_)
        ));
        assert!(matches!(
            parse_line(r#"{"event":"bogus"}"#),
            ParseOutcome::Invalid(_)
        ));
    }

    #[test]
    fn several_curves_share_a_metric_line() {
        let line =
            r#"{"event":"metric","step":7,"metrics":{"train_loss":1.5,"lr":NaN,"note":"warm"}}"#;
        let ParseOutcome::Lenient { events, notes } = parse_line(line) else {
            panic!("{:?}", parse_line(line))
        };
        assert_eq!(
            events,
            vec![
                Event::Metric {
                    step: 7,
                    name: "lr".into(),
                    value: None
                },
                Event::Metric {
                    step: 7,
                    name: "train_loss".into(),
                    value: Some(1.5)
                },
            ]
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("`note`"), "{notes:?}");
    }

    #[test]
    fn a_value_that_is_no_number_leaves_the_rest_of_a_result() {
        let line = r#"{"event":"result","metrics":{"unsafe_rate":0.25,"note":"ok","flag":true},"params":{"steps":50}}"#;
        let ParseOutcome::Lenient { events, notes } = parse_line(line) else {
            panic!("{:?}", parse_line(line))
        };
        let [Event::Result { metrics, params }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics["unsafe_rate"], Some(0.25));
        assert_eq!(params["steps"], ParamValue::Int(50));
        assert_eq!(notes.len(), 2, "{notes:?}");
        // Still invalid: an unknown key, a metric line without its step, params that are no
        // parameters.
        for bad in [
            r#"{"event":"result","metrics":{"a":"x"},"extra":1}"#,
            r#"{"event":"metric","metrics":{"a":1}}"#,
            r#"{"event":"result","metrics":{"a":"x"},"params":{"s":[1]}}"#,
        ] {
            assert!(matches!(parse_line(bad), ParseOutcome::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn python_non_finite_numbers_become_missing() {
        let line = r#"{"event":"result","metrics":{"a":NaN,"b":-Infinity,"c":1,"NaN":Infinity}}"#;
        let ParseOutcome::Event(Event::Result { metrics, .. }) = parse_line(line) else {
            panic!()
        };
        assert_eq!(metrics["a"], None);
        assert_eq!(metrics["b"], None);
        assert_eq!(metrics["c"], Some(1.0));
        assert_eq!(metrics["NaN"], None);
    }
}
