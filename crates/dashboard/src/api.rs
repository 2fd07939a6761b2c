//! The JSON API the page reads. Every answer comes from the store (or a trial's files) as it
//! is at the request: the page polls, the server keeps nothing but computed fronts.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sweep_report::pareto::Objective;
use sweep_report::verdicts::trial_dir;
use sweep_report::FixedParams;
use sweep_store::{Store, TrialRow, TrialStatus};

use crate::error::ApiError;
use crate::front::FrontQuery;
use crate::{answers, json, table, Shared};

type Answer = Result<Json<Value>, ApiError>;

/// The API's routes.
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/sweeps", get(sweeps))
        .route("/api/sweeps/{name}", get(sweep))
        .route("/api/sweeps/{name}/front", get(front))
        .route("/api/sweeps/{name}/trials", get(trials))
        .route("/api/trials/{id}", get(trial))
        .route("/api/trials/{id}/curves", get(curves))
        .route("/api/trials/{id}/answers", get(trial_answers))
        .route("/api/trials/{id}/logs/{file}", get(log_file))
        .with_state(shared)
}

async fn sweeps(State(s): State<Arc<Shared>>) -> Answer {
    let mut out = Vec::new();
    for record in s.store.sweeps().await? {
        let counts = s.store.counts(record.id).await?;
        out.push(json!({
            "name": record.name,
            "grid_path": record.grid_path,
            "created_at": record.created_at,
            "counts": json::counts(&counts),
        }));
    }
    Ok(Json(json!({ "sweeps": out })))
}

/// The objectives a sweep's front opens with: safety against utility where the trials report
/// both, else the first two metrics, smaller better.
fn default_objectives(metrics: &[String]) -> Vec<String> {
    let has = |m: &str| metrics.iter().any(|x| x == m);
    if has("unsafe_rate") && has("utility") {
        return vec!["unsafe_rate:min".into(), "utility:max".into()];
    }
    metrics.iter().take(2).map(|m| format!("{m}:min")).collect()
}

async fn sweep(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Answer {
    let record = s.store.sweep(&name).await?;
    let counts = s.store.counts(record.id).await?;
    let fixed = FixedParams::load(&s.store, Some(&name)).await?;
    let params = fixed.with_names(s.store.param_names(Some(record.id)).await?);
    let metrics = s.store.metric_names(Some(record.id)).await?;
    let left = counts.get(TrialStatus::Pending)
        + counts.get(TrialStatus::Running)
        + counts.get(TrialStatus::Interrupted);
    let eta_s = s
        .pace
        .time_to_finish(record.id, counts.get(TrialStatus::Completed), left);
    let running: Vec<Value> = s
        .store
        .latest_points(record.id)
        .await?
        .into_iter()
        .map(|(trial, points)| {
            let step = points.iter().map(|p| p.step).max();
            let values: serde_json::Map<String, Value> = points
                .iter()
                .map(|p| (p.name.clone(), p.value.map_or(Value::Null, json::number)))
                .collect();
            json!({ "trial": trial, "step": step, "metrics": values })
        })
        .collect();
    Ok(Json(json!({
        "name": record.name,
        "grid_path": record.grid_path,
        "grid_toml": record.grid_toml,
        "counts": json::counts(&counts),
        "eta_s": eta_s,
        "params": params,
        "metrics": metrics,
        "objectives": default_objectives(&metrics),
        "running": running,
    })))
}

#[derive(Debug, Deserialize)]
struct FrontArgs {
    /// `METRIC:min|max`, comma-separated.
    objectives: Option<String>,
    /// Every trial on its own instead of configurations averaged over seeds.
    #[serde(default)]
    per_trial: bool,
    /// The replicate parameters, comma-separated (default `seed`).
    replicate: Option<String>,
}

/// Computes each sweep's default front (safety against utility, averaged over seeds) ahead
/// of the first page that shows it. A failure is only logged: the page asks again.
pub(crate) async fn prewarm(shared: Arc<Shared>) {
    let sweeps = match shared.store.sweeps().await {
        Ok(s) => s,
        Err(e) => return tracing::debug!("dashboard: cannot list sweeps ahead: {e}"),
    };
    for record in sweeps {
        let warmed = async {
            let metrics = shared.store.metric_names(Some(record.id)).await?;
            let objectives = default_objectives(&metrics)
                .iter()
                .filter_map(|o| o.parse().ok())
                .collect::<Vec<Objective>>();
            if objectives.len() < 2 {
                return Ok(());
            }
            let query = FrontQuery {
                objectives,
                replicate: Some(vec!["seed".to_string()]),
            };
            let counts = shared.store.counts(record.id).await?;
            shared
                .fronts
                .get(&shared.store, &record, &query, &counts)
                .await
                .map(|_| ())
        };
        if let Err(e) = warmed.await {
            tracing::debug!(
                "dashboard: front of {} not computed ahead: {e}",
                record.name
            );
        }
    }
}

async fn front(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(args): Query<FrontArgs>,
) -> Result<impl IntoResponse, ApiError> {
    let record = s.store.sweep(&name).await?;
    let metrics = s.store.metric_names(Some(record.id)).await?;
    let objectives: Vec<String> = match &args.objectives {
        Some(text) => text.split(',').map(|o| o.trim().to_string()).collect(),
        None => default_objectives(&metrics),
    };
    let objectives = objectives
        .iter()
        .map(|o| {
            let objective: Objective = o.parse().map_err(ApiError::BadRequest)?;
            if !metrics.contains(&objective.metric) {
                return Err(ApiError::BadRequest(format!(
                    "no trial of {name} reports `{}` (the metrics are: {})",
                    objective.metric,
                    metrics.join(", ")
                )));
            }
            Ok(objective)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if objectives.len() < 2 {
        return Err(ApiError::BadRequest(format!(
            "a front needs two objectives; {name} has {} metric(s)",
            metrics.len()
        )));
    }
    let replicate = (!args.per_trial).then(|| {
        args.replicate
            .as_deref()
            .unwrap_or("seed")
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect()
    });
    let query = FrontQuery {
        objectives,
        replicate,
    };
    let counts = s.store.counts(record.id).await?;
    let body = s.fronts.get(&s.store, &record, &query, &counts).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

async fn trials(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(args): Query<table::TableArgs>,
) -> Answer {
    let record = s.store.sweep(&name).await?;
    let (rows, total) = table::page(&s.store, &record, &args).await?;
    Ok(Json(json!({
        "total": total,
        "offset": args.offset,
        "rows": rows.iter().map(json::trial).collect::<Vec<_>>(),
    })))
}

async fn trial_row(store: &Store, id: &str) -> Result<TrialRow, ApiError> {
    store
        .trial(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no trial {id}")))
}

/// The log files an attempt left, by name (`attempt-1.stderr.log`, …), newest attempt first.
fn log_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort_by(|a, b| b.cmp(a));
    names
}

/// A trial with its sweep's `[fixed]` values, and the attempts, logs and directory of the
/// process that ran it (for a trial a shared run reported, that run's, named in `run`).
async fn trial(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    let row = trial_row(&s.store, &id).await?;
    let row = FixedParams::load(&s.store, Some(&row.sweep))
        .await?
        .apply(row);
    let run = row.completed_by.clone().unwrap_or_else(|| row.id.clone());
    let attempts = s.store.attempts(&run).await?;
    let dir = trial_dir(&s.trials_root, &row);
    let mut value = json::trial(&row);
    value["run"] = json!(run);
    value["attempts_detail"] = attempts.iter().map(json::attempt).collect();
    value["dir"] = json!(dir.display().to_string());
    value["logs"] = json!(log_files(&dir.join("logs")));
    Ok(Json(value))
}

/// A trial's curves: those of the process that ran it, which for a trial a shared run reported
/// is that run's (one run, many grid points), named in `run`.
async fn curves(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    let row = trial_row(&s.store, &id).await?;
    let run = row.completed_by.unwrap_or(row.id);
    let mut by_name: serde_json::Map<String, Value> = serde_json::Map::new();
    for c in s.store.trial_curves(&run).await? {
        let points = by_name.entry(c.name).or_insert_with(|| json!([]));
        if let (Some(list), Some(v)) = (points.as_array_mut(), c.value) {
            list.push(json!([c.step, json::number(v)]));
        }
    }
    Ok(Json(json!({ "run": run, "curves": by_name })))
}

async fn trial_answers(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    let row = trial_row(&s.store, &id).await?;
    Ok(Json(
        answers::answers(&s.store, &s.trials_root, &row).await?,
    ))
}

/// At most this much of a log file's end is served.
const LOG_TAIL_BYTES: u64 = 256 * 1024;

async fn log_file(
    State(s): State<Arc<Shared>>,
    Path((id, file)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let row = trial_row(&s.store, &id).await?;
    // Only a file of the trial's own logs directory, by its bare name.
    let dir = trial_dir(&s.trials_root, &row).join("logs");
    if !log_files(&dir).contains(&file) {
        return Err(ApiError::NotFound(format!("trial {id} has no log {file}")));
    }
    let text = tail(&dir.join(&file), LOG_TAIL_BYTES)
        .map_err(|e| ApiError::NotFound(format!("cannot read {file}: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// The last `limit` bytes of a file (from a line start where it was cut), as text.
fn tail(path: &std::path::Path, limit: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(limit);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(match (start > 0, text.find('\n')) {
        (true, Some(i)) => format!("[… {start} bytes before]\n{}", &text[i + 1..]),
        _ => text,
    })
}
