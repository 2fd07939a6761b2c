//! `sweep confirm NAME --best METRIC:DIR`: the configuration `report --best` chooses, and a
//! baseline, run again on new seeds as a sweep of their own, and reported on those seeds only.

use std::io::Write;

use anyhow::{bail, Context};
use clap::Args;
use sweep_core::confirm::confirmation_grid;
use sweep_core::{Grid, ParamValue};
use sweep_report::compare::{configuration, pair, ComparisonReport};
use sweep_report::confirm::{confirmed, ConfirmReport, Confirmed};
use sweep_report::pareto::Objective;
use sweep_report::render::render_confirmation;
use sweep_report::{conditions, select, Aggregator, Constraint, Filter, Halves};
use sweep_store::{Store, SweepRecord, TrialRow};

use crate::exit_codes;
use crate::output::say;

/// `sweep confirm`.
#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// The sweep whose choice is confirmed.
    name: String,
    /// METRIC:min|max: chosen as `report --best` chooses (on the validation half).
    #[arg(long, value_name = "METRIC:DIR")]
    best: Objective,
    /// Bounds the choice must meet, as in `report --best`; repeat to combine.
    #[arg(long = "subject-to", value_name = "CONSTRAINT")]
    subject_to: Vec<Constraint>,
    /// The configuration to measure beside it on the same new seeds: conditions NAME OP
    /// VALUE joined by commas, e.g. 'learning_rate=1e-4,ema_decay=0'.
    #[arg(long, value_name = "CONDITIONS")]
    baseline: Option<String>,
    /// New seeds for each configuration.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    seeds: u32,
    /// The confirmation sweep's name (default: NAME-confirm).
    #[arg(long = "as", value_name = "SWEEP")]
    as_name: Option<String>,
    #[command(flatten)]
    replicate: super::ReplicateArgs,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value = "table")]
    format: sweep_report::Format,
    #[command(flatten)]
    exec: super::run::ExecArgs,
}

pub async fn run(db: &str, args: ConfirmArgs) -> anyhow::Result<i32> {
    let replicate = args.replicate.names.clone();
    let Some(seed_name) = replicate.first().cloned() else {
        bail!("--replicate names no parameter to take the new seeds");
    };
    let (record, rows, configs) = choose(db, &args, &replicate).await?;

    // Seeds no trial of the sweep used.
    let used = rows
        .iter()
        .filter_map(|r| match r.params.get(&seed_name) {
            Some(ParamValue::Int(s)) => Some(*s),
            _ => None,
        })
        .max();
    let first = used.map_or(1, |m| m + 1);
    let seeds: Vec<i64> = (first..first + i64::from(args.seeds)).collect();
    let name = args
        .as_name
        .clone()
        .unwrap_or_else(|| format!("{}-confirm", args.name));
    let trials_root = args.exec.trials_root(db);
    std::fs::create_dir_all(&trials_root)
        .with_context(|| format!("cannot create {}", trials_root.display()))?;
    let path = trials_root.join(format!("{name}.toml"));
    let all: Vec<_> = configs.iter().map(|(_, p)| p.clone()).collect();
    let text = confirmation_grid(&record.grid_toml, &name, &all, &seed_name, &seeds)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("sweep {}", args.name))?;
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let grid = Grid::parse(&path, &text)?;
    say!(
        "confirming {} on seeds {:?} as sweep {name} ({})",
        sweep_core::value::params_to_json(&configs[0].1),
        seeds,
        path.display()
    );
    let workdir = std::path::PathBuf::from(&record.workdir);
    let code = super::run::execute(db, grid, workdir, args.exec).await?;
    if code != exit_codes::OK {
        return Ok(code);
    }

    // The report, on the new seeds only.
    let (metric, confirmed, paired) =
        on_new_seeds(db, &name, &args.best, &configs, &replicate, &trials_root).await?;
    let report = ConfirmReport {
        original: args.name,
        sweep: name,
        metric,
        seeds,
        configs: confirmed,
        paired,
    };
    let mut out = std::io::stdout().lock();
    render_confirmation(&report, args.format, &mut out).context("cannot write the report")?;
    out.flush()?;
    Ok(exit_codes::OK)
}

/// A configuration to confirm: what it is called in the report, and its parameters.
type Named = (&'static str, sweep_core::Params);

/// The choice, exactly as `report --best` makes it, and the baseline beside it; with the
/// sweep and its trials.
async fn choose(
    db: &str,
    args: &ConfirmArgs,
    replicate: &[String],
) -> anyhow::Result<(SweepRecord, Vec<TrialRow>, Vec<Named>)> {
    let store = Store::open_read_only(db).await?;
    let record = store.sweep(&args.name).await?;
    let params = store.param_names(Some(record.id)).await?;
    let metrics = store.metric_names(Some(record.id)).await?;
    let mut rows: Vec<TrialRow> = Vec::new();
    store
        .for_each_trial(Some(record.id), |row| {
            rows.push(row);
            true
        })
        .await?;
    store.close().await;

    let mut aggregator = Aggregator::new(Some(replicate));
    for row in &rows {
        aggregator.add(row);
    }
    let selection = select(
        &aggregator.finish(),
        &args.best,
        &args.subject_to,
        Halves::SPLIT,
    )?;
    let Some(chosen) = selection.choices.into_iter().find_map(|c| c.config) else {
        bail!(
            "sweep {}: no configuration meets the constraints; `sweep report {} --best {}` shows the bounds",
            args.name,
            args.name,
            args.best
        );
    };
    let mut configs = vec![("chosen", chosen.params.clone())];
    if let Some(text) = &args.baseline {
        let conditions = conditions(text).context("--baseline")?;
        let filter = Filter::new(&conditions, &params, &metrics).context("--baseline")?;
        let baseline = configuration(&rows, "the baseline", (text, &filter), replicate)?;
        if baseline.params == chosen.params {
            bail!("--baseline {text}: that is the chosen configuration itself; name another");
        }
        configs.push(("baseline", baseline.params));
    }

    Ok((record, rows, configs))
}

/// The confirmation sweep's configurations on its new seeds, and the chosen one paired with
/// the baseline prompt by prompt (when there is one and the answers were kept).
async fn on_new_seeds(
    db: &str,
    name: &str,
    best: &Objective,
    configs: &[Named],
    replicate: &[String],
    trials_root: &std::path::Path,
) -> anyhow::Result<(String, Vec<Confirmed>, Option<ComparisonReport>)> {
    let store = Store::open_read_only(db).await?;
    let sweep = store.sweep(name).await?;
    let mut new_rows: Vec<TrialRow> = Vec::new();
    store
        .for_each_trial(Some(sweep.id), |row| {
            new_rows.push(row);
            true
        })
        .await?;
    store.close().await;
    let reported = format!("{}{}", Halves::SPLIT.report, best.metric);
    let metric = if new_rows.iter().any(|r| r.metrics.contains_key(&reported)) {
        reported
    } else {
        best.metric.clone()
    };
    let confirmed = confirmed(&new_rows, configs, replicate, &metric);
    let paired = match confirmed.as_slice() {
        [chosen, baseline] => {
            match pair(
                trials_root,
                chosen.side(),
                baseline.side(),
                &metric,
                replicate,
                10_000,
            ) {
                Ok(report) => Some(report),
                Err(e) => {
                    say!("no prompt-level comparison: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    Ok((metric, confirmed, paired))
}
