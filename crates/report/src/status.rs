//! The per-trial table of `sweep status`.

use std::fmt::Write;

use sweep_core::value::format_float;
use sweep_store::TrialRow;

/// A plain-text table: trial, state, attempts (and how many ran out of GPU memory), duration,
/// GPU, the cluster job and node (for sweeps run through SLURM), parameters, metrics, and the
/// last error of trials that have one.
pub fn status_table(rows: &[TrialRow]) -> String {
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
            let mut row = vec![
                r.id.clone(),
                r.status.as_str().to_string(),
                match r.out_of_memory {
                    0 => r.attempts.to_string(),
                    oom => format!("{} ({oom} OOM)", r.attempts),
                },
                r.duration_s()
                    .map(|d| format!("{d:.1}s"))
                    .unwrap_or_else(|| "-".into()),
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
