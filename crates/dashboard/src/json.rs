//! The store's rows as the page reads them.

use serde_json::{json, Map, Value};
use sweep_core::value::params_to_value;
use sweep_store::{AttemptRow, Counts, TrialRow, TrialStatus};

/// Trials per state, every state present.
pub(crate) fn counts(counts: &Counts) -> Value {
    let mut out: Map<String, Value> = TrialStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(counts.get(*s))))
        .collect();
    out.insert("total".into(), json!(counts.total()));
    Value::Object(out)
}

/// A number, or `null` where it is not finite (JSON has no NaN).
pub(crate) fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// One trial, as the table and the trial page show it.
pub(crate) fn trial(row: &TrialRow) -> Value {
    json!({
        "id": row.id,
        "sweep": row.sweep,
        "ordinal": row.ordinal,
        "params": params_to_value(&row.params),
        "status": row.status.as_str(),
        "attempts": row.attempts,
        "out_of_memory": row.out_of_memory,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "duration_s": row.duration_s(),
        "gpu": row.gpu,
        "error": row.error,
        "completed_by": row.completed_by,
        "job_id": row.job_id,
        "node": row.node,
        "metrics": row.metrics.iter()
            .map(|(k, v)| (k.clone(), v.map_or(Value::Null, number)))
            .collect::<Map<_, _>>(),
    })
}

/// One attempt, with the stderr tail it left.
pub(crate) fn attempt(a: &AttemptRow) -> Value {
    json!({
        "attempt": a.attempt,
        "owner": a.owner,
        "outcome": a.outcome,
        "reason": a.reason,
        "started_at": a.started_at,
        "finished_at": a.finished_at,
        "exit_code": a.exit_code,
        "signal": a.signal,
        "stderr_tail": a.stderr_tail,
    })
}
