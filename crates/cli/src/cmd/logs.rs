//! `sweep logs TRIAL`: what a trial's attempt wrote, from its directory, without digging;
//! with `--follow`, as it writes it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use sweep_report::{conditions, Filter};
use sweep_store::{Store, TrialRow, TrialStatus};

use crate::exit_codes;
use crate::location::default_trials_root;

/// `sweep logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The trial's id, or enough of its start to name one trial; or its point's parameters,
    /// NAME=VALUE joined by commas (`learning_rate=1e-3,seed=0`), naming one trial.
    trial: String,
    /// With parameters: the sweep to look in (default: every sweep).
    #[arg(long)]
    sweep: Option<String>,
    /// Keep printing what the trial writes, attempt after attempt, until it is no longer
    /// running or pending (Ctrl-C stops following).
    #[arg(long, short)]
    follow: bool,
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
    let row = find_trial(&store, &args).await?;
    let root = args
        .trials_dir
        .clone()
        .unwrap_or_else(|| default_trials_root(db));
    // A trial that a shared run completed has no process of its own: show that run's.
    let ran = row.completed_by.clone().unwrap_or_else(|| row.id.clone());
    let logs = root.join(&row.sweep).join(&ran).join("logs");
    let streams: &[&str] = match args.stream {
        Stream::Stdout => &["stdout"],
        Stream::Stderr => &["stderr"],
        Stream::Both => &["stdout", "stderr"],
    };
    let mut out = std::io::stdout().lock();
    if ran != row.id {
        writeln!(out, "# trial {} was reported by trial {ran}'s run", row.id)?;
    }
    if args.follow {
        follow(&store, &row.id, &logs, streams, args.tail, &mut out).await?;
        store.close().await;
        return Ok(exit_codes::OK);
    }
    store.close().await;
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
    let marker = logs.join(format!("attempt-{attempt}.stdout.log"));
    if !marker.exists() {
        bail!(
            "trial {}: attempt {attempt} left no logs in {} (its attempts so far: 1 to {})",
            row.id,
            logs.display(),
            last_attempt(&logs).unwrap_or(0)
        );
    }
    for stream in streams {
        let path = logs.join(format!("attempt-{attempt}.{stream}.log"));
        writeln!(out, "# {}", path.display())?;
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            // A stderr log is made only once the attempt writes to stderr.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                writeln!(out, "# (nothing written)")?;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        write_tail(&String::from_utf8_lossy(&text), args.tail, &mut out)?;
    }
    Ok(exit_codes::OK)
}

/// The one trial `args.trial` names: by id prefix, or by its parameters.
async fn find_trial(store: &Store, args: &LogsArgs) -> anyhow::Result<TrialRow> {
    let sweep_id = match &args.sweep {
        Some(name) => Some(store.sweep(name).await?.id),
        None => None,
    };
    let by_params = args.trial.contains(['=', '<', '>']);
    let filter = if by_params {
        let wanted = conditions(&args.trial)
            .with_context(|| format!("trial parameters {:?}", args.trial))?;
        let params = store.param_names(sweep_id).await?;
        Some(Filter::new(&wanted, &params, &[])?)
    } else {
        None
    };
    let mut matches = Vec::new();
    store
        .for_each_trial(sweep_id, |row| {
            let hit = match &filter {
                Some(f) => f.keep(&row),
                None => row.id.starts_with(&args.trial),
            };
            if hit {
                matches.push(row);
            }
            matches.len() <= 20
        })
        .await?;
    let what = if by_params {
        "trial has these parameters"
    } else {
        "trial's id starts with this"
    };
    match matches.len() {
        0 => bail!(
            "no {what}: {:?} (`sweep status` lists the trials)",
            args.trial
        ),
        1 => Ok(matches.remove(0)),
        n => {
            let shown: Vec<String> = matches
                .iter()
                .take(5)
                .map(|r| format!("{} {}", r.id, sweep_core::value::params_to_json(&r.params)))
                .collect();
            bail!(
                "{:?} names {}{n} trials; give more of it:\n  {}",
                args.trial,
                if n > 20 { "over " } else { "" },
                shown.join("\n  ")
            )
        }
    }
}

/// How often `--follow` looks for new output, and for the trial's state.
const POLL: Duration = Duration::from_millis(250);

/// Prints each attempt's logs as they grow, moving on to the next attempt when one starts,
/// until the trial is neither running nor pending and everything written has been shown.
async fn follow(
    store: &Store,
    trial_id: &str,
    logs: &Path,
    streams: &[&str],
    tail: Option<usize>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut attempt = last_attempt(logs).unwrap_or(1);
    let mut offsets = vec![0u64; streams.len()];
    let mut first = true;
    loop {
        // The state is read before the files, so output written before the trial ended
        // is always shown before following stops.
        let status = store.trial_status(trial_id).await?;
        for (stream, offset) in streams.iter().zip(offsets.iter_mut()) {
            let path = logs.join(format!("attempt-{attempt}.{stream}.log"));
            let Some(text) = read_from(&path, offset)? else {
                continue;
            };
            if text.is_empty() {
                continue;
            }
            let prefix = if streams.len() > 1 && *stream == "stderr" {
                "stderr| "
            } else {
                ""
            };
            let text = String::from_utf8_lossy(&text);
            let lines: Vec<&str> = text.lines().collect();
            let from = match (first, tail) {
                (true, Some(n)) => lines.len().saturating_sub(n),
                _ => 0,
            };
            for line in &lines[from..] {
                writeln!(out, "{prefix}{line}")?;
            }
        }
        out.flush()?;
        first = false;
        if let Some(next) = last_attempt(logs).filter(|n| *n > attempt) {
            attempt = next;
            offsets.iter_mut().for_each(|o| *o = 0);
            writeln!(out, "# attempt {attempt}")?;
            continue;
        }
        if !matches!(status, Some(TrialStatus::Running | TrialStatus::Pending)) {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The bytes of `path` after `offset` that end in a newline (a line still being written is
/// left for the next read), advancing `offset`; `None` if the file does not exist yet.
fn read_from(path: &Path, offset: &mut u64) -> anyhow::Result<Option<Vec<u8>>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    file.seek(SeekFrom::Start(*offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(whole);
    *offset += whole as u64;
    Ok(Some(bytes))
}

/// Writes the last `tail` lines of `text` (all of them without a limit).
fn write_tail(text: &str, tail: Option<usize>, out: &mut impl Write) -> std::io::Result<()> {
    let lines: Vec<&str> = text.lines().collect();
    let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
    for line in &lines[from..] {
        writeln!(out, "{line}")?;
    }
    Ok(())
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
