//! `sweep report [NAME] --pareto`, and `--best` with `--subject-to`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use sweep_report::html::html_page;
use sweep_report::pareto::Objective;
use sweep_report::plot::plot_svg;
use sweep_report::{
    render, render_selection, select, Condition, Constraint, Format, FrontRead, FrontReport,
    Halves, Shares, Stored,
};
use sweep_store::Store;

use crate::exit_codes;
use crate::output::say;

/// `--format` of `report` and `compare`.
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
    #[command(flatten)]
    replicate: super::ReplicateArgs,
    /// Rank single trials instead of configurations averaged over replicates.
    #[arg(long)]
    per_trial: bool,
    /// Also count each configuration's trials that are on their own replicate's (seed's)
    /// front: the `on front` column. Reads every trial, where the report otherwise reads the
    /// store's per-configuration summaries.
    #[arg(long, conflicts_with = "per_trial")]
    seed_fronts: bool,
    /// Hypervolume reference point, one value per objective (default: the worst observed).
    #[arg(long = "ref", value_delimiter = ',', value_name = "X,Y,...")]
    reference: Option<Vec<f64>>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Keep only trials matching NAME OP VALUE (a parameter or metric; OP one of = != < <= > >=);
    /// repeat to combine.
    #[arg(long = "where", value_name = "FILTER")]
    filters: Vec<Condition>,
    /// Also draw the configurations and the front to this SVG file (two objectives).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Colour points in the plot by this parameter.
    #[arg(long, value_name = "PARAM")]
    color_by: Option<String>,
    /// Also write one self-contained HTML page with the plot and a sortable table.
    #[arg(long, value_name = "FILE.html")]
    html: Option<PathBuf>,
    /// Instead of the front: the best configuration of each sweep by METRIC:min|max, chosen
    /// on the validation half of the prompts (`val_METRIC`) and reported on the test half
    /// (`test_METRIC`), with 95 % intervals over seeds.
    #[arg(long, value_name = "METRIC:DIR")]
    best: Option<Objective>,
    /// With --best: only configurations whose mean METRIC meets the bound (on the validation
    /// half), e.g. 'utility>=0.8' or 'utility>=0.9*best' (90 % of the sweep's best); repeat
    /// to combine.
    #[arg(long = "subject-to", value_name = "CONSTRAINT", requires = "best")]
    subject_to: Vec<Constraint>,
    /// With --best: choose and report on the same prompts (for trials that report no
    /// validation/test halves), accepting the winner's curse that brings.
    #[arg(long, requires = "best")]
    same_prompts: bool,
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
    let store = Store::open_read_only(db).await?;
    let stored = Stored::open(&store, args.name.as_deref(), &args.filters).await?;
    let metrics = stored.metrics();
    let replicate = (!args.per_trial).then_some(args.replicate.names.as_slice());
    if let Some(objective) = &args.best {
        let configurations = stored.aggregate(replicate).await?;
        store.close().await;
        let halves = if args.same_prompts {
            Halves::SAME
        } else {
            Halves::SPLIT
        };
        let selection = select(&configurations, objective, &args.subject_to, halves)?;
        let mut out = std::io::stdout().lock();
        render_selection(&selection, args.format, &mut out).context("cannot write the report")?;
        out.flush()?;
        let none = selection.choices.iter().all(|c| c.config.is_none());
        return Ok(if none {
            exit_codes::ERROR
        } else {
            exit_codes::OK
        });
    }
    for objective in &args.objectives {
        if !metrics.is_empty() && !metrics.contains(&objective.metric) {
            bail!(
                "objective {objective}: no trial reports `{}` (the metrics are: {}); \
                 pick others with --objective METRIC:min|max",
                objective.metric,
                metrics.join(", ")
            );
        }
    }
    let how = FrontRead {
        shares: if args.seed_fronts {
            Shares::Always
        } else {
            Shares::Never
        },
        // Only the front is printed, and no plot draws the rest.
        front_only: args.pareto && args.plot.is_none() && args.html.is_none(),
    };
    let (report, _) = FrontReport::read(
        &stored,
        &args.objectives,
        replicate,
        args.reference.as_deref(),
        how,
    )
    .await?;
    store.close().await;
    if report.ranked.is_empty() {
        let why: Vec<String> = report
            .excluded
            .iter()
            .map(|(w, n)| format!("{n} {w}"))
            .collect();
        say!(
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
        say!("hint: pick metrics the trials report with --objective METRIC:min|max");
        return Ok(exit_codes::ERROR);
    }
    write_front(&args, &report)?;
    Ok(exit_codes::OK)
}

/// The front in the chosen format, and the plot and page if asked for.
fn write_front(args: &ReportArgs, report: &FrontReport) -> anyhow::Result<()> {
    let format = args.format;
    if let Some(param) = &args.color_by {
        if !report
            .ranked
            .iter()
            .any(|r| r.config.params.contains_key(param))
        {
            let mut known: Vec<&str> = report
                .ranked
                .iter()
                .flat_map(|r| r.config.params.keys().map(String::as_str))
                .collect();
            known.sort();
            known.dedup();
            bail!(
                "--color-by {param}: no configuration has that parameter (the parameters are: {})",
                known.join(", ")
            );
        }
    }
    if args.plot.is_some() || args.html.is_some() {
        let svg = plot_svg(report, args.color_by.as_deref())?;
        if let Some(path) = &args.plot {
            std::fs::write(path, &svg)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if let Some(path) = &args.html {
            let title = format!(
                "sweep report: {}",
                args.name.as_deref().unwrap_or("all sweeps")
            );
            std::fs::write(path, html_page(report, &svg, &title))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let mut out = std::io::stdout().lock();
    render(report, format, args.pareto, &mut out).context("cannot write the report")?;
    out.flush()?;
    Ok(())
}
