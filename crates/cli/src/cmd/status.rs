//! `sweep status [NAME]`.

use std::io::Write;

use clap::Args;
use sweep_report::status_table;
use sweep_store::Store;

use crate::exit_codes;

/// `sweep status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show one sweep (default: every sweep in the database).
    name: Option<String>,
    /// Only the counts, no per-trial table.
    #[arg(long)]
    summary: bool,
}

pub async fn run(db: &str, args: StatusArgs) -> anyhow::Result<i32> {
    let store = Store::open_read_only(db).await?;
    let mut out = std::io::stdout().lock();
    let sweeps = match &args.name {
        Some(name) => vec![store.sweep(name).await?],
        None => store.sweeps().await?,
    };
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
            let rows = store.trial_rows(Some(sweep.id)).await?;
            writeln!(out, "{}", status_table(&rows, sweep_store::now_ms()))?;
        }
    }
    store.close().await;
    Ok(exit_codes::OK)
}
