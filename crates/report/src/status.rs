//! The per-trial table of `sweep status`.

use std::collections::BTreeMap;
use std::fmt::Write;

use sweep_core::value::{format_float, params_to_value};
use sweep_store::{CurveRow, TrialRow, TrialStatus};

/// A plain-text table: trial, state, attempts (and how many ran out of GPU memory), duration,
/// GPU, the cluster job and node (for sweeps run through SLURM), parameters, metrics, and the
/// last error of trials that have one. `now_ms` (Unix ms) dates the running trials, so a
/// trial that has run for an hour says so instead of showing nothing until it ends.
pub fn status_table(
    rows: &[TrialRow],
    latest: &BTreeMap<String, Vec<CurveRow>>,
    now_ms: i64,
) -> String {
    let jobs = rows.iter().any(|r| r.job_id.is_some());
    let mut header = vec!["TRIAL", "STATE", "ATT", "DURATION", "GPU"];
    if jobs {
        header.push("JOB");
    }
    header.extend(["PARAMS", "METRICS"]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let params = r
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            let mut metrics = r
                .metrics
                .iter()
                .map(|(k, v)| format!("{k}={}", v.map_or("NaN".to_string(), short)))
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(error) = r.error.as_deref().filter(|_| r.metrics.is_empty()) {
                metrics = error.lines().next().unwrap_or_default().to_string();
            }
            // A running trial without results says where it has got to.
            if let Some(points) = latest.get(&r.id).filter(|_| r.metrics.is_empty()) {
                let values: Vec<String> = points
                    .iter()
                    .map(|p| format!("{}={}", p.name, p.value.map_or("NaN".to_string(), short)))
                    .collect();
                metrics = format!("step {}: {}", points[0].step, values.join(" "));
            }
            let mut row = vec![
                r.id.clone(),
                r.status.as_str().to_string(),
                match r.out_of_memory {
                    0 => r.attempts.to_string(),
                    oom => format!("{} ({oom} OOM)", r.attempts),
                },
                duration_cell(r, now_ms),
                r.gpu.clone().unwrap_or_else(|| "-".into()),
            ];
            if jobs {
                row.push(match (&r.job_id, &r.node) {
                    (Some(job), Some(node)) => format!("{job}@{node}"),
                    (Some(job), None) => job.clone(),
                    _ => "-".into(),
                });
            }
            row.extend([params, metrics]);
            row
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[&str]| {
        let mut text = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                text.push_str(c);
            } else {
                let _ = write!(text, "{c:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &header);
    for row in &cells {
        line(
            &mut out,
            &row.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    out
}

/// The last attempt's length, or for a running trial how long it has run so far.
fn duration_cell(r: &TrialRow, now_ms: i64) -> String {
    match (r.duration_s(), r.status, r.started_at) {
        (Some(d), _, _) => format!("{d:.1}s"),
        (None, TrialStatus::Running, Some(start)) => {
            format!("{}s so far", (now_ms - start).max(0) / 1000)
        }
        _ => "-".into(),
    }
}

fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        format!("{v:.3e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            format_float(v)
        } else {
            s.to_string()
        }
    }
}

/// Each trial as one JSON object (`pandas.read_json` reads the array): its state, attempts,
/// times, placement, the last failure's reason, and its parameters and metrics as objects.
pub fn status_json(rows: &[TrialRow]) -> serde_json::Value {
    let time = |t: Option<i64>| t.map(crate::export::rfc3339);
    serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "trial_id": r.id,
                    "sweep": r.sweep,
                    "status": r.status.as_str(),
                    "attempts": r.attempts,
                    "out_of_memory": r.out_of_memory,
                    "started_at": time(r.started_at),
                    "finished_at": time(r.finished_at),
                    "duration_s": r.duration_s(),
                    "gpu": r.gpu,
                    "job_id": r.job_id,
                    "node": r.node,
                    "completed_by": r.completed_by,
                    "error": r.error,
                    "params": params_to_value(&r.params),
                    "metrics": r.metrics,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: TrialStatus, started_at: Option<i64>, finished_at: Option<i64>) -> TrialRow {
        TrialRow {
            id: "t".into(),
            sweep: "s".into(),
            ordinal: 0,
            params: Default::default(),
            status,
            attempts: 1,
            out_of_memory: 0,
            started_at,
            finished_at,
            gpu: None,
            error: None,
            completed_by: None,
            job_id: None,
            node: None,
            metrics: Default::default(),
        }
    }

    #[test]
    fn a_running_trial_shows_how_long_it_has_run() {
        let now = 10_000_000;
        let cell = |r: TrialRow| {
            status_table(&[r], &BTreeMap::new(), now)
                .lines()
                .nth(1)
                .unwrap()
                .to_string()
        };
        let running = cell(row(TrialStatus::Running, Some(now - 2_160_400), None));
        assert!(running.contains("  2160s so far  "), "{running}");
        let done = cell(row(TrialStatus::Completed, Some(1_000), Some(5_500)));
        assert!(done.contains("  4.5s  "), "{done}");
        let waiting = cell(row(TrialStatus::Pending, None, None));
        assert!(waiting.contains("  -  "), "{waiting}");
        // An interrupted attempt has a start and no end: it is not running, so no clock.
        let stopped = cell(row(TrialStatus::Interrupted, Some(1_000), None));
        assert!(!stopped.contains("so far"), "{stopped}");
    }
}
