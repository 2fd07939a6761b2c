//! `sweep run GRID` and `sweep resume NAME`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use sweep_core::{expand, Grid};
use sweep_scheduler::{preflight, run_sweep, ExecutorKind, GpuRequest, RunConfig, Stop};
use sweep_store::{Store, TrialStatus};
use tokio::sync::watch;

use crate::exit_codes;
use crate::location::default_trials_root;
use crate::output::say;
use crate::progress;

/// Options shared by `run` and `resume`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Trials at once (default: the grid's `parallel`); with `--executor slurm`, jobs
    /// queued or running at once.
    #[arg(long, value_parser = parse_parallel)]
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
    /// How long an orchestrator may go without a heartbeat before another presumes it dead
    /// and takes its trials back (on one host, a dead process is noticed at once).
    #[arg(long, default_value = "30s", value_parser = parse_lease)]
    lease: Duration,
    /// Where trials run: child processes here, or one SLURM job per attempt (submitted with
    /// the grid's [slurm] table; docs/cluster.md).
    #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
    executor: ExecutorKind,
}

impl ExecArgs {
    /// Where trial directories go.
    pub(crate) fn trials_root(&self, db: &str) -> PathBuf {
        self.trials_dir
            .clone()
            .unwrap_or_else(|| default_trials_root(db))
    }
}

/// At least one trial at a time, or nothing would ever run.
fn parse_parallel(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least 1 trial must run at a time".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number of trials")),
    }
}

/// A lease is whole seconds to a day: shorter than the 2 s heartbeat cannot be kept.
fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease =
        humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 30s or 5m)"))?;
    if lease < Duration::from_secs(2) || lease > Duration::from_secs(86_400) {
        return Err("a lease is from 2s to 24h".into());
    }
    Ok(lease)
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
            // A misspelt table explains the complaints that follow from it: name it instead.
            let e = std::fs::read_to_string(&args.grid)
                .ok()
                .and_then(|text| sweep_scheduler::check_table_names(&args.grid, &text).err())
                .unwrap_or(e);
            say!("error: {e}");
            return Ok(exit_codes::ERROR);
        }
    };
    let workdir = std::env::current_dir().context("cannot read the current directory")?;
    execute(db, grid, workdir, args.exec).await
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

/// Runs (or resumes) `grid` from `workdir`: what `run`, `resume` and `confirm` share.
pub(crate) async fn execute(
    db: &str,
    grid: Grid,
    workdir: PathBuf,
    exec: ExecArgs,
) -> anyhow::Result<i32> {
    if !workdir.is_dir() {
        bail!(
            "the sweep's working directory {} no longer exists\nhelp: recreate it, or run the grid again from another directory",
            workdir.display()
        );
    }
    if let Err(e) = sweep_scheduler::check_tables(&grid) {
        say!("error: {e}");
        return Ok(exit_codes::ERROR);
    }
    let expansion = expand(&grid);
    if grid.command.is_none() {
        if let Err(e) = sweep_trainer::grid::check_grid(&grid, &expansion, &workdir) {
            say!("error: {e}");
            return Ok(exit_codes::ERROR);
        }
    }
    // Everything that can refuse the run is checked before the database is touched, so a
    // refused run stores nothing (not even the sweep's name).
    let trials_root = absolute(&exec.trials_root(db))?;
    let mut config = RunConfig::new(workdir.clone(), trials_root.clone());
    config.lease = exec.lease;
    config.executor = exec.executor;
    // An executor elsewhere (SLURM) gives each job its GPUs and tracks its processes itself.
    if exec.executor.runs_here() {
        config.gpus = resolve_gpus(&grid, &exec.gpus)?;
        // This binary's `guard` watches the attempts, so a trial dies with the orchestrator.
        config.guard = Some(config.builtin_trial.clone());
    }
    config.heartbeat = config.heartbeat.min(exec.lease / 4);
    config.parallel = exec.parallel.unwrap_or(grid.parallel);
    preflight(&grid, &config).await?;

    let store = Store::open(db).await?;
    std::fs::create_dir_all(&trials_root).with_context(|| {
        format!(
            "--trials-dir {}: cannot create the directory for trial files",
            trials_root.display()
        )
    })?;
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

    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    tokio::spawn(forward_signals(stop_tx));
    let mut reporter = progress::reporter();
    let summary = run_sweep(&store, &grid, &sweep, &config, stop_rx, reporter.as_mut()).await?;
    drop(reporter);

    let counts = store.counts(sweep.id).await?;
    store.close().await;
    say!("sweep {}: {counts}", sweep.name);
    if summary.stopped {
        say!("stopped; run the same command again to resume");
        return Ok(exit_codes::INTERRUPTED);
    }
    if counts.get(TrialStatus::Failed) > 0 {
        say!(
            "some trials failed: `sweep status {}` shows why; `--retry-failed` runs them again",
            sweep.name
        );
        return Ok(exit_codes::TRIALS_FAILED);
    }
    Ok(exit_codes::OK)
}

fn resolve_gpus(grid: &Grid, flag: &str) -> anyhow::Result<Vec<String>> {
    let request = GpuRequest::parse(flag).map_err(anyhow::Error::msg)?;
    // A CPU grid needs no GPU, and no `nvidia-smi` run to find none.
    if grid.gpus_per_trial == 0 {
        return Ok(Vec::new());
    }
    let (ids, why_none) = request.resolve();
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
        // Act first, then say so: the message may go nowhere (a closed terminal or pipe).
        let _ = stop.send(level);
        if level == Stop::Graceful {
            say!("stopping: no new trials; running ones get SIGTERM and their grace period (press Ctrl-C again to kill them now)");
        }
    }
}
