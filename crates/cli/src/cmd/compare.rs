//! `sweep compare NAME A B --metric METRIC`: two configurations, prompt by prompt.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sweep_report::compare::{pair, render_comparison, sides};
use sweep_report::{conditions, Condition, Filter, Stored};
use sweep_store::{Store, TrialRow};

use crate::exit_codes;
use crate::location::default_trials_root;

/// `sweep compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The sweep; or several, joined by commas, read as one (a design whose seeds were run
    /// as separate sweeps: `smollm2-lora,smollm2-lora-seed1`).
    name: String,
    /// Configuration A: conditions NAME OP VALUE joined by commas, e.g.
    /// 'learning_rate=1e-5,ema_decay=0.99'.
    #[arg(value_name = "A")]
    a: String,
    /// Configuration B, the same way.
    #[arg(value_name = "B")]
    b: String,
    /// Read configuration B in this sweep instead: two sweeps that evaluated the same
    /// prompts, e.g. a LoRA sweep against the full fine-tuning of another from the same
    /// base; several joined by commas are read as one. Trials pair by their replicate
    /// values, `[fixed]` ones included.
    #[arg(long, value_name = "SWEEP")]
    b_sweep: Option<String>,
    /// The rate compared: unsafe_rate, unsafe_rate_no_echo, complies_rate,
    /// over_refusal_rate, utility, JUDGE_unsafe_rate or a benchmark's NAME_acc /
    /// NAME_acc_norm, each also as val_ or test_ (one half of the prompts).
    #[arg(long, default_value = "unsafe_rate")]
    metric: String,
    #[command(flatten)]
    replicate: super::ReplicateArgs,
    /// Bootstrap resamples for the interval.
    #[arg(long, default_value_t = 10_000)]
    resamples: usize,
    /// Where the trial directories are (default: sweep-trials/ beside the database).
    #[arg(long)]
    trials_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: sweep_report::Format,
}

pub async fn run(db: &str, args: CompareArgs) -> anyhow::Result<i32> {
    let a = conditions(&args.a).with_context(|| format!("configuration A ({:?})", args.a))?;
    let b = conditions(&args.b).with_context(|| format!("configuration B ({:?})", args.b))?;
    let store = Store::open_read_only(db).await?;
    let (rows_a, filter_a) = matching(&store, &args.name, &a)
        .await
        .context("configuration A")?;
    let (b_name, b_label) = match &args.b_sweep {
        Some(other) => (other.as_str(), format!("{other}: {}", args.b)),
        None => (args.name.as_str(), args.b.clone()),
    };
    let (rows_b, filter_b) = matching(&store, b_name, &b)
        .await
        .context("configuration B")?;
    store.close().await;
    let replicate = &args.replicate.names;
    let (side_a, side_b) = sides(
        &rows_a,
        &rows_b,
        (&args.a, &filter_a),
        (&b_label, &filter_b),
        replicate,
    )?;
    let trials_root = args.trials_dir.unwrap_or_else(|| default_trials_root(db));
    let report = pair(
        &trials_root,
        side_a,
        side_b,
        &args.metric,
        replicate,
        args.resamples,
    )?;
    let mut out = std::io::stdout().lock();
    render_comparison(&report, args.format, &mut out).context("cannot write the comparison")?;
    out.flush()?;
    Ok(exit_codes::OK)
}

/// The trials of the sweeps `names` (joined by commas) that `conditions` select, each with
/// its sweep's `[fixed]` values among its parameters (so replicates pair across sweeps that
/// fix a seed and sweeps that sweep it), and the filter the first was read with.
async fn matching(
    store: &Store,
    names: &str,
    conditions: &[Condition],
) -> anyhow::Result<(Vec<TrialRow>, Filter)> {
    let mut rows = Vec::new();
    let mut filter = None;
    for name in names.split(',').map(str::trim) {
        let stored = Stored::open(store, Some(name), conditions).await?;
        stored
            .for_each(|row| {
                rows.push(row);
                true
            })
            .await?;
        filter.get_or_insert_with(|| stored.filter().clone());
    }
    Ok((rows, filter.expect("split yields at least one name")))
}
