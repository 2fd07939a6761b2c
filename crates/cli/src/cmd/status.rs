//! `sweep status [NAME]`.

use std::io::Write;

use clap::Args;
use sweep_report::{status_json, status_table};
use sweep_store::{Store, TrialStatus};

use crate::exit_codes;

/// `sweep status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show one sweep (default: every sweep in the database).
    name: Option<String>,
    /// Only the counts, no per-trial table.
    #[arg(long, conflicts_with = "json")]
    summary: bool,
    /// Only trials in these states (pending, running, completed, failed, interrupted);
    /// repeat or join with commas.
    #[arg(long, value_delimiter = ',', value_parser = parse_state)]
    state: Vec<TrialStatus>,
    /// Every trial as a JSON array (state, attempts, times, last error, params, metrics),
    /// for scripts and `pandas.read_json`.
    #[arg(long)]
    json: bool,
}

fn parse_state(text: &str) -> Result<TrialStatus, String> {
    TrialStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| {
            let all: Vec<&str> = TrialStatus::ALL.iter().map(|s| s.as_str()).collect();
            format!("{text:?} is no state; one of {}", all.join(", "))
        })
}

pub async fn run(db: &str, args: StatusArgs) -> anyhow::Result<i32> {
    let store = Store::open_read_only(db).await?;
    let mut out = std::io::stdout().lock();
    let sweeps = match &args.name {
        Some(name) => vec![store.sweep(name).await?],
        None => store.sweeps().await?,
    };
    let keep =
        |row: &sweep_store::TrialRow| args.state.is_empty() || args.state.contains(&row.status);
    if args.json {
        let mut rows = Vec::new();
        for sweep in &sweeps {
            rows.extend(
                store
                    .trial_rows(Some(sweep.id))
                    .await?
                    .into_iter()
                    .filter(keep),
            );
        }
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&status_json(&rows))?
        )?;
        store.close().await;
        return Ok(exit_codes::OK);
    }
    if sweeps.is_empty() {
        writeln!(out, "no sweeps in {}", sweep_store::redact(db))?;
    }
    for sweep in sweeps {
        let counts = store.counts(sweep.id).await?;
        writeln!(
            out,
            "sweep {} ({} trials): {counts}",
            sweep.name,
            counts.total()
        )?;
        if !args.summary {
            let rows: Vec<_> = store
                .trial_rows(Some(sweep.id))
                .await?
                .into_iter()
                .filter(keep)
                .collect();
            let latest = store.latest_points(sweep.id).await?;
            writeln!(
                out,
                "{}",
                status_table(&rows, &latest, sweep_store::now_ms())
            )?;
        }
    }
    store.close().await;
    Ok(exit_codes::OK)
}
