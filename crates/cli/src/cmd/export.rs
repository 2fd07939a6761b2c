//! `sweep export`: trials, configurations or curves as CSV or JSON.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use sweep_report::{
    aggregate_table, curves_table, trial_cells, trial_columns, Condition, Stored, TableFormat,
    TableWriter,
};
use sweep_store::Store;

use crate::exit_codes;

/// `sweep export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Export one sweep (default: every sweep).
    name: Option<String>,
    /// Write CSV to this file, or `-` for stdout (shorthand for --format csv --output FILE).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["output", "format"])]
    csv: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    format: TableFormat,
    /// Where to write, or `-` for stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// One row per configuration: metrics averaged over replicates (`metric_<name>_mean`,
    /// `_std`, `_n`, `_ci95`).
    #[arg(long, conflicts_with = "curves")]
    aggregate: bool,
    #[command(flatten)]
    replicate: super::ReplicateArgs,
    /// Per-step metrics in long form: trial_id, sweep, the trial's parameters, step, name,
    /// value.
    #[arg(long)]
    curves: bool,
    /// Keep only trials matching NAME OP VALUE (a parameter or metric); repeat to combine.
    #[arg(long = "where", value_name = "FILTER")]
    filters: Vec<Condition>,
}

pub async fn run(db: &str, args: ExportArgs) -> anyhow::Result<i32> {
    let (format, path) = match (&args.csv, &args.output) {
        (Some(path), _) => (TableFormat::Csv, path.clone()),
        (None, Some(path)) => (args.format, path.clone()),
        (None, None) => bail!("say where to write: --csv FILE, or --output FILE (`-` for stdout)"),
    };
    let store = Store::open_read_only(db).await?;
    // `[fixed]` values are parameters of every trial too: exported beside the swept ones.
    let stored = Stored::open(&store, args.name.as_deref(), &args.filters).await?;
    let (sweep_id, params) = (stored.sweep_id(), stored.params());
    let out: Box<dyn Write> = if path.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(File::create(&path).with_context(|| format!("cannot create {}", path.display()))?)
    };
    let out = BufWriter::new(out);
    if args.curves {
        let mut kept = HashMap::new();
        stored
            .for_each(|mut row| {
                row.metrics.clear();
                kept.insert(row.id.clone(), row);
                true
            })
            .await?;
        let points = store.curves(sweep_id).await?;
        curves_table(&points, params, &kept).write(format, out)?;
    } else if args.aggregate {
        let configurations = stored.aggregate(Some(&args.replicate.names)).await?;
        aggregate_table(&configurations).write(format, out)?;
    } else {
        // Streamed: one trial in memory at a time.
        let metrics = stored.metrics();
        let mut writer = TableWriter::new(format, trial_columns(params, metrics), out)?;
        let mut failure = None;
        stored
            .for_each(
                |row| match writer.row(&trial_cells(&row, params, metrics)) {
                    Ok(()) => true,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                },
            )
            .await?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        writer.finish()?;
    }
    store.close().await;
    Ok(exit_codes::OK)
}
