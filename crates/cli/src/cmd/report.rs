//! `sweep report [NAME] --pareto`.

use std::io::Write;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use sweep_report::pareto::Objective;
use sweep_report::{front_report, render, Format};
use sweep_store::Store;

use crate::exit_codes;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Table,
    Csv,
    Json,
    Markdown,
}

/// `sweep report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Report one sweep (default: every sweep).
    name: Option<String>,
    /// Show only the Pareto front (rank 1); without it every configuration is listed by rank.
    #[arg(long)]
    pareto: bool,
    /// An objective as METRIC:min or METRIC:max; repeat for more.
    #[arg(long = "objective", value_name = "METRIC:DIR", default_values_t = [
        "unsafe_rate:min".parse::<Objective>().expect("valid"),
        "utility:max".parse::<Objective>().expect("valid"),
    ])]
    objectives: Vec<Objective>,
    /// The parameter whose values are replicates, averaged into one configuration.
    #[arg(long, default_value = "seed")]
    replicate: String,
    /// Rank single trials instead of configurations averaged over replicates.
    #[arg(long)]
    per_trial: bool,
    /// Hypervolume reference point, one value per objective (default: the worst observed).
    #[arg(long = "ref", value_delimiter = ',', value_name = "X,Y,...")]
    reference: Option<Vec<f64>>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: FormatArg,
}

pub async fn run(db: &str, args: ReportArgs) -> anyhow::Result<i32> {
    if let Some(r) = &args.reference {
        if r.len() != args.objectives.len() {
            bail!(
                "--ref has {} values but there are {} objectives",
                r.len(),
                args.objectives.len()
            );
        }
    }
    let store = Store::open_existing(db).await?;
    let sweep_id = match &args.name {
        Some(name) => Some(store.sweep(name).await?.id),
        None => None,
    };
    let rows = store.trial_rows(sweep_id).await?;
    store.close().await;
    let replicate = (!args.per_trial).then_some(args.replicate.as_str());
    let report = front_report(
        &rows,
        &args.objectives,
        replicate,
        args.reference.as_deref(),
    );
    if report.ranked.is_empty() {
        let why: Vec<String> = report
            .excluded
            .iter()
            .map(|(w, n)| format!("{n} {w}"))
            .collect();
        eprintln!(
            "nothing to rank for {}: {}",
            args.objectives
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if why.is_empty() {
                "no trials".to_string()
            } else {
                why.join("; ")
            }
        );
        eprintln!("hint: pick metrics the trials report with --objective METRIC:min|max");
        return Ok(exit_codes::ERROR);
    }
    let format = match args.format {
        FormatArg::Table => Format::Table,
        FormatArg::Csv => Format::Csv,
        FormatArg::Json => Format::Json,
        FormatArg::Markdown => Format::Markdown,
    };
    let mut out = std::io::stdout().lock();
    render(&report, format, args.pareto, &mut out).context("cannot write the report")?;
    out.flush()?;
    Ok(exit_codes::OK)
}
