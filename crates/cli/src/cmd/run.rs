//! `sweep run GRID` and `sweep resume NAME`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use sweep_core::value::params_to_json;
use sweep_core::{expand, Expansion, Grid};
use sweep_scheduler::{run_sweep, GpuRequest, RunConfig, Stop};
use sweep_store::{Store, TrialStatus};
use sweep_trainer::config::TrainerConfig;
use sweep_trainer::setup::Setup;
use sweep_trainer::spec::TrialSpec;
use tokio::sync::watch;

use crate::exit_codes;
use crate::location::default_trials_root;
use crate::progress;

/// Options shared by `run` and `resume`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Trials at once (default: the grid's `parallel`).
    #[arg(long)]
    parallel: Option<usize>,
    /// GPUs trials may use: auto (CUDA_VISIBLE_DEVICES, else nvidia-smi), none, or ids like 0,1.
    #[arg(long, default_value = "auto")]
    gpus: String,
    /// Give trials that failed for good a fresh attempt budget.
    #[arg(long)]
    retry_failed: bool,
    /// Where trial directories go (default: sweep-trials/ beside the database).
    #[arg(long)]
    trials_dir: Option<PathBuf>,
}

/// `sweep run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The grid file (TOML).
    grid: PathBuf,
    #[command(flatten)]
    exec: ExecArgs,
}

/// `sweep resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The sweep's name.
    name: String,
    #[command(flatten)]
    exec: ExecArgs,
}

pub async fn run(db: &str, args: RunArgs) -> anyhow::Result<i32> {
    let grid = match Grid::load(&args.grid) {
        Ok(grid) => grid,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit_codes::ERROR);
        }
    };
    let workdir = std::env::current_dir().context("cannot read the current directory")?;
    execute(db, grid, workdir, args.exec).await
}

/// The built-in trainer checks its settings, data files and every trial's parameters before
/// anything is stored or run, so a typo fails now and not in each trial.
fn check_builtin(grid: &Grid, expansion: &Expansion, workdir: &Path) -> anyhow::Result<()> {
    let path = grid.path.display();
    let names = grid
        .swept_names()
        .into_iter()
        .chain(grid.fixed.keys().map(String::as_str));
    if let Err(e) = sweep_trainer::spec::check_names(names) {
        bail!("{path}: {e}");
    }
    if let Some(table) = &grid.trainer {
        let line = table.line;
        let config = TrainerConfig::from_json(&table.settings.to_string())
            .map_err(|e| anyhow!("{path}:{line}: {e}"))?;
        // Trials run in the sweep's working directory: read the files from there.
        Setup::new(config.relative_to(workdir)).map_err(|e| {
            anyhow!(
                "{path}:{line}: {e}\nhelp: relative paths are read from {}",
                workdir.display()
            )
        })?;
    }
    for trial in &expansion.trials {
        let mut all = trial.params.clone();
        all.extend(grid.fixed.clone());
        let json: serde_json::Map<String, serde_json::Value> =
            all.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        if let Err(e) = TrialSpec::from_params(&json) {
            bail!(
                "{path}: {e} (in the point {})",
                params_to_json(&trial.params)
            );
        }
    }
    Ok(())
}

pub async fn resume(db: &str, args: ResumeArgs) -> anyhow::Result<i32> {
    let store = Store::open_existing(db).await?;
    let record = store.sweep(&args.name).await?;
    store.close().await;
    let path = PathBuf::from(&record.grid_path);
    let grid = Grid::parse(&path, &record.grid_toml).with_context(|| {
        format!(
            "the grid stored for sweep `{}` no longer parses",
            record.name
        )
    })?;
    execute(db, grid, PathBuf::from(&record.workdir), args.exec).await
}

async fn execute(db: &str, grid: Grid, workdir: PathBuf, exec: ExecArgs) -> anyhow::Result<i32> {
    let expansion = expand(&grid);
    if grid.command.is_none() {
        check_builtin(&grid, &expansion, &workdir)?;
    }
    let store = Store::open(db)
        .await
        .with_context(|| format!("cannot use the database {db}"))?;
    let sweep = store
        .register_sweep(&grid, &workdir.display().to_string())
        .await?;
    let registered = store.register_trials(&sweep, &expansion.trials).await?;
    tracing::info!(
        "sweep {}: {} trials ({} new, {} already stored; {} excluded, {} duplicates) in {}",
        grid.name,
        expansion.trials.len(),
        registered.added,
        registered.existing,
        expansion.excluded,
        expansion.duplicates,
        db
    );
    if exec.retry_failed {
        let n = store.reset_failed(sweep.id).await?;
        tracing::info!("gave {n} failed trial(s) a fresh attempt budget");
    }
    let gpus = resolve_gpus(&grid, &exec.gpus)?;
    let trials_root = exec.trials_dir.unwrap_or_else(|| default_trials_root(db));
    let trials_root = absolute(&trials_root)?;
    let mut config = RunConfig::new(workdir, trials_root);
    config.parallel = exec.parallel.unwrap_or(grid.parallel);
    if config.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    config.gpus = gpus;

    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    tokio::spawn(forward_signals(stop_tx));
    let mut reporter = progress::reporter();
    let summary = run_sweep(&store, &grid, &sweep, &config, stop_rx, reporter.as_mut()).await?;
    drop(reporter);

    let counts = store.counts(sweep.id).await?;
    store.close().await;
    eprintln!("sweep {}: {counts}", sweep.name);
    if summary.stopped {
        eprintln!("stopped; run the same command again to resume");
        return Ok(exit_codes::INTERRUPTED);
    }
    if counts.get(TrialStatus::Failed) > 0 {
        eprintln!(
            "some trials failed: `sweep status {}` shows why; `--retry-failed` runs them again",
            sweep.name
        );
        return Ok(exit_codes::TRIALS_FAILED);
    }
    Ok(exit_codes::OK)
}

fn resolve_gpus(grid: &Grid, flag: &str) -> anyhow::Result<Vec<String>> {
    let request = GpuRequest::parse(flag).map_err(anyhow::Error::msg)?;
    let (ids, why_none) = request.resolve();
    if grid.gpus_per_trial == 0 {
        return Ok(Vec::new());
    }
    if ids.is_empty() {
        if request == GpuRequest::Auto {
            bail!(
                "the grid asks for {} GPU(s) per trial but none were found ({}); pass --gpus none to run the trials on CPU, or --gpus 0,1 to name them",
                grid.gpus_per_trial,
                why_none.unwrap_or_default()
            );
        }
        tracing::warn!("--gpus none: running trials on CPU although the grid asks for GPUs");
    }
    Ok(ids)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path))
}

/// First Ctrl-C or SIGTERM: stop gracefully. Second: kill now.
async fn forward_signals(stop: watch::Sender<Stop>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers; Ctrl-C will kill trials without grace");
        return;
    };
    for level in [Stop::Graceful, Stop::Now] {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if level == Stop::Graceful {
            eprintln!("stopping: no new trials; running ones get SIGTERM and their grace period (press Ctrl-C again to kill them now)");
        }
        let _ = stop.send(level);
    }
}
