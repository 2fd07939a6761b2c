//! The grid file: raw TOML as written, then a validated [`Grid`].
//!
//! Parsing happens in two phases, like ripgrep's low/high-level arguments: serde reads the file
//! into loose structures that remember where every value sits, then [`Grid::parse`] checks
//! them and reports each problem with its file, line, column and key (`parse`; the checks of
//! single values and ranges are in `values`). This file has the validated grid and what it
//! answers.

mod parse;
mod values;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::GridError;
use crate::template::CommandTemplate;
use crate::value::{params_to_json, ParamValue, Params, ValueKey};

/// Largest grid expanded unless `[sweep] max_trials` says otherwise.
pub const DEFAULT_MAX_TRIALS: u64 = 10_000_000;

/// One factor of the grid's product: a single axis, or axes that vary together.
#[derive(Debug, Clone, PartialEq)]
pub enum Axis {
    /// A `[grid]` entry: every value is crossed with every other factor.
    Single {
        /// Parameter name.
        name: String,
        /// Values in file order.
        values: Vec<ParamValue>,
    },
    /// A `[[zip]]` table: row `i` takes the `i`-th value of every axis in it.
    Zip {
        /// Parameter names in file order.
        names: Vec<String>,
        /// One row of values (in `names` order) per step of the zip.
        rows: Vec<Vec<ParamValue>>,
    },
}

impl Axis {
    /// How many distinct steps this factor contributes to the product.
    pub fn len(&self) -> usize {
        match self {
            Axis::Single { values, .. } => values.len(),
            Axis::Zip { rows, .. } => rows.len(),
        }
    }

    /// Whether the factor has no values (never true for a validated grid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parameter names this factor sets.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Axis::Single { name, .. } => vec![name.as_str()],
            Axis::Zip { names, .. } => names.iter().map(String::as_str).collect(),
        }
    }
}

/// A validated grid: everything needed to expand trials and run them.
#[derive(Debug, Clone)]
pub struct Grid {
    /// The file it came from (for messages and for `sweep resume`).
    pub path: PathBuf,
    /// The file's text, stored with the sweep so it can be resumed without the file.
    pub source: String,
    /// The sweep's name, unique within a database.
    pub name: String,
    /// The argv template of a user-command trial; `None` runs the built-in trainer.
    pub command: Option<CommandTemplate>,
    /// The command as written, for storage and change detection (empty for the built-in
    /// trainer).
    pub command_args: Vec<String>,
    /// Trials run at once on this machine (GPUs may cap it further).
    pub parallel: usize,
    /// GPUs leased to each trial; 0 runs on CPU.
    pub gpus_per_trial: usize,
    /// Failed attempts allowed per trial before it is recorded as failed.
    pub max_attempts: u32,
    /// Wall-clock limit of one attempt.
    pub timeout: Option<Duration>,
    /// Time a trial gets between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Wait before the first retry of a failed trial; doubles with each failure (up to 10 min).
    pub backoff: Duration,
    /// Largest number of grid points expanded.
    pub max_trials: u64,
    /// The factors of the product, in file order (the last varies fastest).
    pub axes: Vec<Axis>,
    /// `[[exclude]]` rules: a point matching every key of one rule is dropped.
    pub excludes: Vec<BTreeMap<String, Vec<ParamValue>>>,
    /// `[fixed]` parameters passed to every trial.
    pub fixed: Params,
    /// The `[trainer]` table (settings of the built-in trainer), checked by the trainer.
    pub trainer: Option<TrainerTable>,
    /// The top-level tables core does not read, by name, with their 1-based lines: the
    /// executors' settings (`[slurm]`). Each executor reads its own table from `source`, so
    /// that its complaints name their lines too; the scheduler refuses a table no executor
    /// claims (a misspelt `[slrum]`).
    pub other_tables: BTreeMap<String, usize>,
}

/// The `[trainer]` table as written, with where it starts so the trainer's complaints can
/// point at it (the line of each of its keys: [`Grid::trainer_key_line`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerTable {
    /// The table as JSON (what the trial receives in `SWEEP_TRAINER`).
    pub settings: serde_json::Value,
    /// 1-based line of the table in the grid file.
    pub line: usize,
}

impl Grid {
    /// The 1-based line where parameter `name` is given: its axis in `[grid]` or a `[[zip]]`,
    /// or its key in `[fixed]`. For messages about a parameter's values.
    pub fn param_line(&self, name: &str) -> Option<usize> {
        let root = toml::de::DeTable::parse(&self.source).ok()?;
        ["grid", "zip", "fixed"]
            .into_iter()
            .find_map(|table| key_offset(root.get_ref(), &[table, name]))
            .map(|offset| crate::error::line_column(&self.source, offset).0)
    }

    /// The 1-based line of the `[trainer]` key `dotted` (`judge`, `model.hf`), or of the
    /// nearest table above it that was written, or of `[trainer]` itself. For messages about
    /// the key's value.
    pub fn trainer_key_line(&self, dotted: &str) -> usize {
        let header = self.trainer.as_ref().map_or(1, |t| t.line);
        let Ok(root) = toml::de::DeTable::parse(&self.source) else {
            return header;
        };
        let mut path: Vec<&str> = std::iter::once("trainer")
            .chain(dotted.split('.'))
            .collect();
        while path.len() > 1 {
            if let Some(offset) = key_offset(root.get_ref(), &path) {
                return crate::error::line_column(&self.source, offset).0;
            }
            path.pop();
        }
        header
    }
}

/// Where the key at `path` (table names, then the key) is written below `table`, as a byte
/// offset: under a table header, in an inline table or as a dotted key alike, since the
/// parser gives them one tree. An array of tables (`[[zip]]`) is searched table by table.
fn key_offset(table: &toml::de::DeTable<'_>, path: &[&str]) -> Option<usize> {
    use toml::de::DeValue;
    let (first, rest) = path.split_first()?;
    let (key, value) = table.iter().find(|(key, _)| &**key.get_ref() == *first)?;
    if rest.is_empty() {
        return Some(key.span().start);
    }
    match value.get_ref() {
        DeValue::Table(inner) => key_offset(inner, rest),
        DeValue::Array(items) => items.iter().find_map(|item| match item.get_ref() {
            DeValue::Table(inner) => key_offset(inner, rest),
            _ => None,
        }),
        _ => None,
    }
}

impl Grid {
    /// Reads and validates a grid file.
    pub fn load(path: &Path) -> Result<Grid, GridError> {
        let bytes = std::fs::read(path).map_err(|e| GridError {
            path: path.to_path_buf(),
            position: None,
            key: String::new(),
            message: format!("cannot read the grid file: {e}"),
            help: Some("check the path; `sweep run` takes the path of a grid TOML file".into()),
        })?;
        let source = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let bad = e.as_bytes()[at];
            let text = String::from_utf8_lossy(&e.as_bytes()[..at]);
            GridError::at(
                path,
                &text,
                Some(at..at),
                "",
                format!("byte 0x{bad:02x} is not UTF-8 text"),
            )
            .help("TOML files are UTF-8: save the grid as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")
        })?;
        Grid::parse(path, &source)
    }

    /// Number of points in the product, before exclusions and duplicates.
    pub fn size(&self) -> u64 {
        self.axes.iter().map(|a| a.len() as u64).product()
    }

    /// Names of all swept parameters, in factor order.
    pub fn swept_names(&self) -> Vec<&str> {
        self.axes.iter().flat_map(|a| a.names()).collect()
    }

    /// Names of the parameters swept in `[[zip]]` tables: the only parameters whose values
    /// change what [`Grid::axis_values_beside`] gives.
    pub fn zipped_names(&self) -> impl Iterator<Item = &str> {
        self.axes
            .iter()
            .flat_map(|axis| match axis {
                Axis::Single { .. } => [].iter(),
                Axis::Zip { names, .. } => names.iter(),
            })
            .map(String::as_str)
    }

    /// Every value each swept parameter takes, in file order without repeats.
    pub fn axis_values(&self) -> BTreeMap<String, Vec<ParamValue>> {
        self.axis_values_beside(&Params::new())
    }

    /// Every value each swept parameter takes beside `params`' values of the parameters
    /// zipped with it (all of an unzipped axis's values), in file order without repeats: what a
    /// trial that can compute neighbouring grid points in one run (evaluations at several step
    /// counts) is given as `SWEEP_AXES`. With `batch_size` zipped to `steps`, the batch-16
    /// trial is given only the batch-16 step count, so its run does not train to the longest.
    /// A parameter missing from `params` does not restrict its partners.
    pub fn axis_values_beside<'a>(&'a self, params: &Params) -> BTreeMap<String, Vec<ParamValue>> {
        let mut out: BTreeMap<String, Vec<ParamValue>> = BTreeMap::new();
        // A set beside each list: an axis can hold 10^5 values.
        let mut seen: HashSet<(&str, ValueKey)> = HashSet::new();
        let mut add = |name: &'a str, value: &'a ParamValue| {
            if seen.insert((name, value.key())) {
                out.entry(name.to_string()).or_default().push(value.clone());
            }
        };
        for axis in &self.axes {
            match axis {
                Axis::Single { name, values } => values.iter().for_each(|v| add(name, v)),
                Axis::Zip { names, rows } => {
                    for (i, name) in names.iter().enumerate() {
                        let paired = |row: &&Vec<ParamValue>| {
                            names.iter().zip(row.iter()).enumerate().all(|(j, (n, v))| {
                                j == i || params.get(n).is_none_or(|own| own.matches(v))
                            })
                        };
                        rows.iter()
                            .filter(paired)
                            .for_each(|row| add(name, &row[i]));
                    }
                }
            }
        }
        out
    }

    /// The parts of the grid that change what a trial computes for the same parameters:
    /// the command, `[fixed]` and `[trainer]`. Stored with the sweep so an edit is reported,
    /// not mixed in.
    pub fn config_json(&self) -> String {
        let mut config = serde_json::json!({
            "command": self.command_args,
            "fixed": serde_json::from_str::<serde_json::Value>(&params_to_json(&self.fixed)).unwrap_or_default(),
        });
        // Only present when given, so sweeps stored before [trainer] existed still match.
        if let Some(trainer) = &self.trainer {
            config["trainer"] = trainer.settings.clone();
        }
        config.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Grid, GridError> {
        Grid::parse(Path::new("g.toml"), text)
    }

    const HEAD: &str = "[sweep]\nname = \"t\"\ncommand = [\"echo\", \"{lr}\"]\n";

    #[test]
    fn parses_ranges_with_tidy_values() {
        let g = parse(&format!(
            "{HEAD}[grid]\nlr = {{ log = [1e-4, 1e-1], num = 4 }}\nwarmup = {{ lin = [0, 100], num = 3 }}\nx = {{ lin = [0.0, 1.0], num = 3 }}\n"
        ))
        .unwrap();
        let Axis::Single { values, .. } = &g.axes[0] else {
            panic!()
        };
        assert_eq!(values, &[1e-4, 1e-3, 1e-2, 1e-1].map(ParamValue::Float));
        let Axis::Single { values, .. } = &g.axes[1] else {
            panic!()
        };
        assert_eq!(values, &[0, 50, 100].map(ParamValue::Int));
        let Axis::Single { values, .. } = &g.axes[2] else {
            panic!()
        };
        assert_eq!(values, &[0.0, 0.5, 1.0].map(ParamValue::Float));
    }

    #[test]
    fn ranges_near_the_ends_of_the_number_line_do_not_wrap() {
        let g = parse(&format!(
            "{HEAD}[grid]\nlr = {{ lin = [-5000000000000000000, 5000000000000000000], num = 3 }}\nx = {{ lin = [-9223372036854775808, 9223372036854775807], num = 2 }}\ny = {{ lin = [-1.7e308, 1.7e308], num = 3 }}\n"
        ))
        .unwrap();
        let values = g.axis_values();
        assert_eq!(
            values["lr"],
            [-5_000_000_000_000_000_000, 0, 5_000_000_000_000_000_000].map(ParamValue::Int)
        );
        assert_eq!(values["x"], [i64::MIN, i64::MAX].map(ParamValue::Int));
        assert_eq!(values["y"], [-1.7e308, 0.0, 1.7e308].map(ParamValue::Float));
    }

    /// A trial is given the values of a zipped axis that pair with its own values of the
    /// axes zipped with it; unzipped axes give all their values, excluded or not.
    #[test]
    fn a_trial_sees_the_values_its_zipped_partners_allow() {
        let g = parse(&format!(
            "{HEAD}[grid]\nlr = [1, 2]\n[[zip]]\nbatch_size = [4, 16, 64]\nsteps = [400, 100, 25]\n\
             [[zip]]\nseed = [0, 1, 1]\nbase_seed = [0, 1, 2]\n"
        ))
        .unwrap();
        let params: Params = [
            ("lr", ParamValue::Int(2)),
            ("batch_size", ParamValue::Int(16)),
            ("steps", ParamValue::Int(100)),
            ("seed", ParamValue::Int(1)),
            ("base_seed", ParamValue::Int(2)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let beside = g.axis_values_beside(&params);
        assert_eq!(beside["lr"], [1, 2].map(ParamValue::Int));
        assert_eq!(beside["steps"], [100].map(ParamValue::Int));
        assert_eq!(beside["batch_size"], [16].map(ParamValue::Int));
        assert_eq!(beside["seed"], [1].map(ParamValue::Int));
        assert_eq!(beside["base_seed"], [1, 2].map(ParamValue::Int));
        // Only the zipped parameters' values count, so a runner can work `SWEEP_AXES` out
        // once for each combination of them.
        assert_eq!(
            g.zipped_names().collect::<Vec<_>>(),
            ["batch_size", "steps", "seed", "base_seed"]
        );
        let zipped: Params = params
            .iter()
            .filter(|(name, _)| g.zipped_names().any(|z| z == *name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        assert_eq!(g.axis_values_beside(&zipped), beside);
        assert_eq!(
            g.axis_values()["steps"],
            [400, 100, 25].map(ParamValue::Int)
        );
    }

    #[test]
    fn defaults_are_sensible() {
        let g = parse(&format!("{HEAD}[grid]\nlr = [1]\n")).unwrap();
        assert_eq!((g.parallel, g.gpus_per_trial, g.max_attempts), (1, 0, 2));
        assert_eq!(g.timeout, None);
        assert_eq!(g.grace, Duration::from_secs(10));
    }

    #[test]
    fn errors_point_at_the_line() {
        let e = parse(&format!("{HEAD}[grid]\nlr = []\n")).unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(5));
        assert_eq!(e.key, "grid.lr");
    }
}

#[cfg(test)]
mod trainer_key_tests {
    use super::*;

    #[test]
    fn trainer_keys_know_their_lines_however_they_are_written() {
        let text = "[sweep]\nname = \"t\"\n[grid]\nlr = [1]\n[trainer]\njudge = [\"j\"]\nalign = { steps = 3 }\n\n[trainer.model]\nhf = \"m\"\nmax_seq = 64\n";
        let grid = Grid::parse(Path::new("g.toml"), text).unwrap();
        assert_eq!(grid.trainer.as_ref().unwrap().line, 5);
        assert_eq!(grid.trainer_key_line("judge"), 6);
        assert_eq!(grid.trainer_key_line("align.steps"), 7);
        assert_eq!(grid.trainer_key_line("model.hf"), 10);
        assert_eq!(grid.trainer_key_line("model.max_seq"), 11);
        // A key not written falls back to its table, then to [trainer].
        assert_eq!(grid.trainer_key_line("model.d_model"), 9);
        assert_eq!(grid.trainer_key_line("eval_task"), 5);
    }

    #[test]
    fn parameters_know_their_lines() {
        let text = "[sweep]\nname = \"t\"\ncommand = [\"echo\"]\n[grid]\nlr = [1]\n[[zip]]\nbs = [1]\nacc = [2]\n[fixed]\nsteps = 3\n";
        let grid = Grid::parse(Path::new("g.toml"), text).unwrap();
        assert_eq!(grid.param_line("lr"), Some(5));
        assert_eq!(grid.param_line("acc"), Some(8));
        assert_eq!(grid.param_line("steps"), Some(10));
        assert_eq!(grid.param_line("seed"), None);
    }
}
