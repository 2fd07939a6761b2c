//! `sweep logs TRIAL`: what a trial's attempt wrote, from its directory, without digging.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use sweep_store::Store;

use crate::exit_codes;
use crate::location::default_trials_root;

/// `sweep logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The trial's id, or enough of its start to name one trial.
    trial: String,
    /// Which attempt (default: the last one that left logs).
    #[arg(long)]
    attempt: Option<u32>,
    /// Which stream.
    #[arg(long, value_enum, default_value = "both")]
    stream: Stream,
    /// Only the last N lines of each.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Where the trial directories are (default: sweep-trials/ beside the database).
    #[arg(long)]
    trials_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stream {
    Stdout,
    Stderr,
    Both,
}

pub async fn run(db: &str, args: LogsArgs) -> anyhow::Result<i32> {
    let store = Store::open_read_only(db).await?;
    let mut matches = Vec::new();
    store
        .for_each_trial(None, |row| {
            if row.id.starts_with(&args.trial) {
                matches.push(row);
            }
            true
        })
        .await?;
    store.close().await;
    let row = match matches.as_slice() {
        [] => bail!(
            "no trial's id starts with {:?} (`sweep status` lists them)",
            args.trial
        ),
        [one] => one,
        many => bail!(
            "{:?} starts {} trials' ids ({}, ...); give more of it",
            args.trial,
            many.len(),
            many[0].id
        ),
    };
    let root = args.trials_dir.unwrap_or_else(|| default_trials_root(db));
    // A trial that a shared run completed has no process of its own: show that run's.
    let ran = row.completed_by.as_deref().unwrap_or(&row.id);
    let logs = root.join(&row.sweep).join(ran).join("logs");
    let attempt = match args.attempt {
        Some(n) => n,
        None => last_attempt(&logs).with_context(|| {
            format!(
                "trial {}: no attempt logs in {} (not started yet, or --trials-dir is elsewhere)",
                row.id,
                logs.display()
            )
        })?,
    };
    let mut out = std::io::stdout().lock();
    if ran != row.id {
        writeln!(out, "# trial {} was reported by trial {ran}'s run", row.id)?;
    }
    let streams: &[&str] = match args.stream {
        Stream::Stdout => &["stdout"],
        Stream::Stderr => &["stderr"],
        Stream::Both => &["stdout", "stderr"],
    };
    for stream in streams {
        let path = logs.join(format!("attempt-{attempt}.{stream}.log"));
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        let from = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
        writeln!(out, "# {}", path.display())?;
        for line in &lines[from..] {
            writeln!(out, "{line}")?;
        }
    }
    Ok(exit_codes::OK)
}

/// The highest attempt number with a log file in `logs`.
fn last_attempt(logs: &std::path::Path) -> Option<u32> {
    std::fs::read_dir(logs)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("attempt-")?
                .split('.')
                .next()?
                .parse()
                .ok()
        })
        .max()
}
