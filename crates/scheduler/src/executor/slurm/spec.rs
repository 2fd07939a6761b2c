//! The grid's `[slurm]` table: how each trial is submitted when it runs as a SLURM job
//! (`sweep run --executor slurm`). Core leaves the table to this executor
//! ([`Grid::other_tables`]); it is read from the grid's text, so every complaint names its
//! line like core's do.
//!
//! It is not part of a sweep's identity: moving a sweep to another partition, or giving it
//! more time, changes where trials run, not what they compute, so it never makes a stored
//! sweep "changed".

use std::time::Duration;

use serde::Deserialize;
use sweep_core::{Grid, GridError};
use toml::Spanned;

/// The grid table this executor reads.
pub(crate) const TABLE: &str = "slurm";

/// Submission settings for SLURM jobs, checked where the grid is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmSpec {
    /// `--partition`; the cluster's default partition when absent.
    pub partition: Option<String>,
    /// `--account` to charge.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// `--time`, in SLURM's own format (`MM`, `HH:MM:SS`, `D-HH`, ...). When absent, the
    /// trial's `timeout` plus its `grace`, rounded up to a minute, or the partition's default.
    pub time: Option<String>,
    /// `--gres` of each trial, such as `gpu:1` or `gpu:a100:2`. When absent, `gpu:N` for
    /// `gpus_per_trial = N > 0`, else none.
    pub gres: Option<String>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--mem` (per node), such as `32G`.
    pub mem: Option<String>,
    /// Further `sbatch` options, passed as written (`["--constraint=a100", "--exclusive"]`).
    pub extra: Vec<String>,
    /// Shell lines the job runs before the trial (`module load cuda`, `. venv/bin/activate`),
    /// in order, after the trial's environment is exported; the first that fails ends the job.
    pub setup: Vec<String>,
    /// How often the orchestrator asks `squeue` about its jobs (one call for all of them).
    pub poll: Duration,
}

/// [`SlurmSpec::poll`] unless the grid says otherwise: a trial's end is noticed within a few
/// seconds, at one `squeue` call per orchestrator per tick.
pub const DEFAULT_POLL: Duration = Duration::from_secs(3);

impl Default for SlurmSpec {
    fn default() -> SlurmSpec {
        SlurmSpec {
            partition: None,
            account: None,
            qos: None,
            time: None,
            gres: None,
            cpus_per_task: None,
            mem: None,
            extra: Vec::new(),
            setup: Vec::new(),
            poll: DEFAULT_POLL,
        }
    }
}

/// The grid file as this executor reads it: only its table (serde skips the others).
#[derive(Deserialize)]
struct Tables {
    slurm: Option<RawSlurm>,
}

impl SlurmSpec {
    /// The grid's `[slurm]` table, checked; the defaults where it has none.
    pub(crate) fn from_grid(grid: &Grid) -> Result<SlurmSpec, GridError> {
        let tables: Tables = toml::from_str(&grid.source)
            .map_err(|e| GridError::syntax(&grid.path, &grid.source, &e))?;
        match tables.slurm {
            None => Ok(SlurmSpec::default()),
            Some(raw) => raw.check(|span, key, message| {
                GridError::at(&grid.path, &grid.source, Some(span), key, message)
                    .help("docs/cluster.md lists the [slurm] table's keys and values")
            }),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlurm {
    partition: Option<Spanned<String>>,
    account: Option<Spanned<String>>,
    qos: Option<Spanned<String>>,
    time: Option<Spanned<String>>,
    gres: Option<Spanned<String>>,
    cpus_per_task: Option<Spanned<i64>>,
    mem: Option<Spanned<String>>,
    #[serde(default)]
    extra: Vec<Spanned<String>>,
    #[serde(default)]
    setup: Vec<Spanned<String>>,
    poll: Option<Spanned<String>>,
}

impl RawSlurm {
    /// Checks each value; `err(span, key, message)` locates a complaint in the grid file.
    fn check<E>(
        self,
        err: impl Fn(std::ops::Range<usize>, &str, String) -> E,
    ) -> Result<SlurmSpec, E> {
        let word = |value: Option<Spanned<String>>, key: &str| -> Result<Option<String>, E> {
            let Some(value) = value else { return Ok(None) };
            let span = value.span();
            let text = value.into_inner();
            if text.trim().is_empty() || text.chars().any(char::is_whitespace) {
                return Err(err(
                    span,
                    &format!("slurm.{key}"),
                    format!(
                        "{text:?} is not a single word; SLURM takes --{} as one value",
                        key.replace('_', "-")
                    ),
                ));
            }
            Ok(Some(text))
        };
        let cpus_per_task = match self.cpus_per_task {
            None => None,
            Some(n) => {
                let span = n.span();
                let n = *n.get_ref();
                if !(1..=4096).contains(&n) {
                    return Err(err(
                        span,
                        "slurm.cpus_per_task",
                        format!("{n} CPUs per task is out of range; give a whole number from 1"),
                    ));
                }
                Some(n as u32)
            }
        };
        let mut extra = Vec::new();
        for option in self.extra {
            let span = option.span();
            let option = option.into_inner();
            if !option.starts_with('-') {
                return Err(err(
                    span,
                    "slurm.extra",
                    format!("{option:?} is not an sbatch option; write each as `--name=value`"),
                ));
            }
            extra.push(option);
        }
        let mut setup = Vec::new();
        for line in self.setup {
            let span = line.span();
            let line = line.into_inner();
            if line.trim().is_empty() || line.contains('\n') {
                return Err(err(
                    span,
                    "slurm.setup",
                    format!("{line:?}: give one shell line per entry, e.g. \"module load cuda\""),
                ));
            }
            setup.push(line);
        }
        let poll = match self.poll {
            None => DEFAULT_POLL,
            Some(text) => {
                let span = text.span();
                let text = text.into_inner();
                match humantime::parse_duration(&text) {
                    Ok(d)
                        if (Duration::from_millis(100)..=Duration::from_secs(600)).contains(&d) =>
                    {
                        d
                    }
                    Ok(_) => {
                        return Err(err(
                            span,
                            "slurm.poll",
                            format!("{text:?} is out of range; poll from every 100ms to every 10m"),
                        ))
                    }
                    Err(e) => {
                        return Err(err(
                            span,
                            "slurm.poll",
                            format!("{text:?} is not a duration ({e}); write e.g. \"3s\""),
                        ))
                    }
                }
            }
        };
        Ok(SlurmSpec {
            poll,
            partition: word(self.partition, "partition")?,
            account: word(self.account, "account")?,
            qos: word(self.qos, "qos")?,
            time: word(self.time, "time")?,
            gres: word(self.gres, "gres")?,
            cpus_per_task,
            mem: word(self.mem, "mem")?,
            extra,
            setup,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sweep_core::Grid;

    use super::SlurmSpec;

    fn parse(slurm: &str) -> Result<SlurmSpec, String> {
        let text = format!(
            "[sweep]\nname = \"s\"\ncommand = [\"true\"]\n[grid]\nx = [1]\n[slurm]\n{slurm}"
        );
        let grid = Grid::parse(Path::new("g.toml"), &text).map_err(|e| e.to_string())?;
        SlurmSpec::from_grid(&grid).map_err(|e| e.to_string())
    }

    #[test]
    fn every_setting_is_read() {
        let s = parse(
            "partition = \"gpu\"\naccount = \"lab\"\nqos = \"high\"\ntime = \"02:00:00\"\n\
             gres = \"gpu:a100:1\"\ncpus_per_task = 8\nmem = \"32G\"\nextra = [\"--exclusive\"]\n",
        )
        .unwrap();
        assert_eq!(s.partition.as_deref(), Some("gpu"));
        assert_eq!(s.account.as_deref(), Some("lab"));
        assert_eq!(s.qos.as_deref(), Some("high"));
        assert_eq!(s.time.as_deref(), Some("02:00:00"));
        assert_eq!(s.gres.as_deref(), Some("gpu:a100:1"));
        assert_eq!(s.cpus_per_task, Some(8));
        assert_eq!(s.mem.as_deref(), Some("32G"));
        assert_eq!(s.extra, ["--exclusive"]);
        assert_eq!(s.poll, super::DEFAULT_POLL);
        assert_eq!(parse("poll = \"500ms\"").unwrap().poll.as_millis(), 500);
    }

    #[test]
    fn bad_values_name_their_key_and_line() {
        let e = parse("partition = \"gpu debug\"\n").unwrap_err();
        assert!(
            e.contains("slurm.partition") && e.contains("g.toml:7"),
            "{e}"
        );
        let e = parse("cpus_per_task = 0\n").unwrap_err();
        assert!(e.contains("slurm.cpus_per_task"), "{e}");
        let e = parse("extra = [\"exclusive\"]\n").unwrap_err();
        assert!(e.contains("slurm.extra"), "{e}");
        let e = parse("poll = \"1ms\"\n").unwrap_err();
        assert!(e.contains("slurm.poll"), "{e}");
        let e = parse("poll = \"often\"\n").unwrap_err();
        assert!(e.contains("slurm.poll"), "{e}");
        let e = parse("partitions = \"gpu\"\n").unwrap_err();
        assert!(e.contains("partitions"), "{e}");
        let e = parse("setup = [\"module load cuda\\nrm -rf x\"]\n").unwrap_err();
        assert!(
            e.contains("slurm.setup") && e.contains("one shell line"),
            "{e}"
        );
        let s = parse("setup = [\"module load cuda\", \". venv/bin/activate\"]\n").unwrap();
        assert_eq!(s.setup.len(), 2);
    }
}
