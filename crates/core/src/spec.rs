//! The grid file: raw TOML as written, then a validated [`Grid`].
//!
//! Parsing happens in two phases, like ripgrep's low/high-level arguments: serde reads the file
//! into loose structures that remember where every value sits, then [`Grid::parse`] checks
//! them and reports each problem with its file, line, column and key.

use std::collections::BTreeMap;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::error::SpecError;
use crate::slurm::{RawSlurm, SlurmSpec};
use crate::template::{CommandTemplate, BUILTIN_PLACEHOLDERS};
use crate::value::{params_to_json, ParamValue, Params};

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
    /// The `[slurm]` table: how trials are submitted with `--executor slurm`.
    pub slurm: SlurmSpec,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrid {
    sweep: Spanned<RawSweep>,
    #[serde(default)]
    grid: Option<Spanned<IndexMap<String, Spanned<toml::Value>>>>,
    #[serde(default)]
    zip: Vec<Spanned<IndexMap<String, Spanned<toml::Value>>>>,
    #[serde(default)]
    exclude: Vec<Spanned<IndexMap<String, Spanned<toml::Value>>>>,
    #[serde(default)]
    fixed: IndexMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    trainer: Option<Spanned<toml::Table>>,
    #[serde(default)]
    slurm: Option<RawSlurm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    name: Spanned<String>,
    command: Option<Spanned<Vec<String>>>,
    parallel: Option<Spanned<i64>>,
    gpus_per_trial: Option<Spanned<i64>>,
    max_attempts: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
    grace: Option<Spanned<String>>,
    backoff: Option<Spanned<String>>,
    max_trials: Option<Spanned<i64>>,
}

/// Carries the file and text so that every check can locate its error.
struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> SpecError {
        SpecError::at(self.path, self.source, Some(span), key, message)
    }
}

impl Grid {
    /// Reads and validates a grid file.
    pub fn load(path: &Path) -> Result<Grid, SpecError> {
        let bytes = std::fs::read(path).map_err(|e| SpecError {
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
            SpecError::at(
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

    /// Validates grid text; `path` is only used to locate errors.
    pub fn parse(path: &Path, source: &str) -> Result<Grid, SpecError> {
        let c = Checker { path, source };
        let raw: RawGrid = toml::from_str(source).map_err(|e| syntax_error(&c, &e))?;
        let sweep_span = raw.sweep.span();
        let sweep = raw.sweep.into_inner();

        let name = check_name(&c, &sweep.name)?;
        let (template, command_args, command_span) = match sweep.command {
            None => (None, Vec::new(), sweep_span.clone()),
            Some(command) => {
                let command_span = command.span();
                let command_args = command.into_inner();
                if command_args.is_empty() || command_args[0].trim().is_empty() {
                    return Err(c
                        .err(command_span, "sweep.command", "the command is empty")
                        .help("give the program and its arguments, e.g. [\"python3\", \"train.py\"], or remove `command` to use the built-in trainer"));
                }
                let template = CommandTemplate::parse(&command_args).map_err(|e| {
                    c.err(command_span.clone(), "sweep.command", e.to_string())
                        .help(
                            "placeholders are {parameter_name}; write {{ and }} for literal braces",
                        )
                })?;
                (Some(template), command_args, command_span)
            }
        };

        let parallel = whole(&c, sweep.parallel, "sweep.parallel", 1, 1..=100_000)? as usize;
        let gpus_per_trial = whole(
            &c,
            sweep.gpus_per_trial,
            "sweep.gpus_per_trial",
            0,
            0..=1024,
        )? as usize;
        let max_attempts = whole(&c, sweep.max_attempts, "sweep.max_attempts", 2, 1..=1000)? as u32;
        let max_trials = whole(
            &c,
            sweep.max_trials,
            "sweep.max_trials",
            DEFAULT_MAX_TRIALS as i64,
            1..=1_000_000_000,
        )? as u64;
        let timeout = sweep
            .timeout
            .map(|t| duration(&c, t, "sweep.timeout", false))
            .transpose()?;
        let grace = sweep
            .grace
            .map(|t| duration(&c, t, "sweep.grace", true))
            .transpose()?
            .unwrap_or(Duration::from_secs(10));
        let backoff = sweep
            .backoff
            .map(|t| duration(&c, t, "sweep.backoff", true))
            .transpose()?
            .unwrap_or(Duration::from_secs(5));

        let mut axes = Vec::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let grid_span = raw
            .grid
            .as_ref()
            .map(|g| g.span())
            .unwrap_or(sweep_span.clone());
        for (axis, value) in raw.grid.map(Spanned::into_inner).unwrap_or_default() {
            let key = format!("grid.{axis}");
            claim_name(&c, &mut seen, &axis, &key, value.span())?;
            let values = axis_values(&c, &key, value)?;
            axes.push(Axis::Single { name: axis, values });
        }
        for (i, zip) in raw.zip.into_iter().enumerate() {
            let zip_span = zip.span();
            let table = zip.into_inner();
            if table.is_empty() {
                return Err(c
                    .err(
                        zip_span,
                        &format!("zip[{i}]"),
                        "this [[zip]] table has no axes",
                    )
                    .help("list at least one axis, e.g. batch_size = [8, 16]"));
            }
            let mut names = Vec::new();
            let mut columns = Vec::new();
            for (axis, value) in table {
                let key = format!("zip[{i}].{axis}");
                claim_name(&c, &mut seen, &axis, &key, value.span())?;
                columns.push((key.clone(), axis_values(&c, &key, value)?));
                names.push(axis);
            }
            let len = columns[0].1.len();
            if let Some((key, col)) = columns.iter().find(|(_, col)| col.len() != len) {
                let lengths: Vec<String> = columns
                    .iter()
                    .map(|(k, col)| format!("{k} has {}", col.len()))
                    .collect();
                return Err(c
                    .err(zip_span, key, format!("zipped axes differ in length: {}", lengths.join(", ")))
                    .help(format!(
                        "axes in one [[zip]] vary together, so each needs the same number of values ({len} like the first, or change that one); {} has {}",
                        key,
                        col.len()
                    )));
            }
            let rows = (0..len)
                .map(|r| columns.iter().map(|(_, col)| col[r].clone()).collect())
                .collect();
            axes.push(Axis::Zip { names, rows });
        }

        let mut fixed = Params::new();
        for (key_name, value) in raw.fixed {
            let key = format!("fixed.{key_name}");
            claim_name(&c, &mut seen, &key_name, &key, value.span())?;
            let span = value.span();
            let list = value.get_ref().is_array();
            let v = scalar(&c, &key, span.clone(), value.into_inner()).map_err(|e| {
                if list {
                    e.help(
                        "[fixed] holds one value per key; to sweep several, move the key to [grid]",
                    )
                } else {
                    e
                }
            })?;
            fixed.insert(key_name, v);
        }

        let swept: BTreeMap<&str, &Axis> = axes
            .iter()
            .flat_map(|a| a.names().into_iter().map(move |n| (n, a)))
            .collect();
        let mut excludes = Vec::new();
        for (i, rule) in raw.exclude.into_iter().enumerate() {
            let rule_span = rule.span();
            let table = rule.into_inner();
            if table.is_empty() {
                return Err(c
                    .err(
                        rule_span,
                        &format!("exclude[{i}]"),
                        "an empty [[exclude]] would drop every trial",
                    )
                    .help("name at least one swept axis and the value(s) to drop"));
            }
            let mut parsed = BTreeMap::new();
            for (axis, value) in table {
                let key = format!("exclude[{i}].{axis}");
                let span = value.span();
                let Some(factor) = swept.get(axis.as_str()) else {
                    return Err(c
                        .err(span, &key, format!("`{axis}` is not a swept axis"))
                        .help(format!(
                            "exclude rules can name: {}",
                            join_names(swept.keys().copied())
                        )));
                };
                let values = match value.into_inner() {
                    toml::Value::Array(items) => items
                        .into_iter()
                        .map(|v| scalar(&c, &key, span.clone(), v))
                        .collect::<Result<Vec<_>, _>>()?,
                    other => vec![scalar(&c, &key, span.clone(), other)?],
                };
                let axis_values = axis_values_of(factor, &axis);
                if let Some(v) = values
                    .iter()
                    .find(|v| !axis_values.iter().any(|a| a.matches(v)))
                {
                    return Err(c
                        .err(
                            span,
                            &key,
                            format!(
                                "{v} is not a value of axis `{axis}`, so this rule drops nothing"
                            ),
                        )
                        .help(format!(
                            "the axis has: {}",
                            join_names(axis_values.iter().map(|v| v.to_string()))
                        )));
                }
                parsed.insert(axis, values);
            }
            excludes.push(parsed);
        }

        let known: Vec<&str> = swept
            .keys()
            .copied()
            .chain(fixed.keys().map(String::as_str))
            .collect();
        for name in template.iter().flat_map(|t| t.placeholders()) {
            if !known.contains(&name) && !BUILTIN_PLACEHOLDERS.contains(&name) {
                return Err(c
                    .err(
                        command_span.clone(),
                        "sweep.command",
                        format!("placeholder `{{{name}}}` names no parameter"),
                    )
                    .help(format!(
                        "use one of: {}",
                        join_names(known.iter().copied().chain(BUILTIN_PLACEHOLDERS))
                    )));
            }
        }

        let size = axes
            .iter()
            .try_fold(1u64, |acc, a| acc.checked_mul(a.len() as u64));
        match size {
            Some(n) if n <= max_trials => {}
            _ => {
                let shown = size.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
                return Err(c
                    .err(grid_span, "grid", format!("the grid has {shown} points, over the cap of {max_trials}"))
                    .help("split the sweep, use [[zip]] for axes that vary together, or raise [sweep] max_trials"));
            }
        }

        let trainer = match raw.trainer {
            None => None,
            Some(table) => {
                let span = table.span();
                if template.is_some() {
                    return Err(c
                        .err(span, "trainer", "[trainer] configures the built-in trainer, but [sweep] gives a `command`")
                        .help("remove `command` to use the built-in trainer, or remove [trainer] and pass settings to your command"));
                }
                let line = source[..span.start].matches('\n').count() + 1;
                let settings = serde_json::to_value(table.into_inner()).map_err(|e| {
                    c.err(
                        span,
                        "trainer",
                        format!("cannot be passed to the trainer: {e}"),
                    )
                })?;
                Some(TrainerTable { settings, line })
            }
        };

        let slurm = match raw.slurm {
            None => SlurmSpec::default(),
            Some(raw) => raw.check(|span, key, message| c.err(span, key, message))?,
        };

        Ok(Grid {
            slurm,
            path: path.to_path_buf(),
            source: source.to_string(),
            name,
            command: template,
            command_args,
            parallel,
            gpus_per_trial,
            max_attempts,
            timeout,
            grace,
            backoff,
            max_trials,
            axes,
            excludes,
            fixed,
            trainer,
        })
    }

    /// Number of points in the product, before exclusions and duplicates.
    pub fn size(&self) -> u64 {
        self.axes.iter().map(|a| a.len() as u64).product()
    }

    /// Names of all swept parameters, in factor order.
    pub fn swept_names(&self) -> Vec<&str> {
        self.axes.iter().flat_map(|a| a.names()).collect()
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
    pub fn axis_values_beside(&self, params: &Params) -> BTreeMap<String, Vec<ParamValue>> {
        let mut out: BTreeMap<String, Vec<ParamValue>> = BTreeMap::new();
        let mut add = |name: &str, value: &ParamValue| {
            let values = out.entry(name.to_string()).or_default();
            if !values.contains(value) {
                values.push(value.clone());
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

fn syntax_error(c: &Checker<'_>, e: &toml::de::Error) -> SpecError {
    let message = e.message().trim().to_string();
    let help = if message.contains("unknown field") {
        "check the spelling; the message lists the keys allowed here"
    } else if message.contains("missing field `sweep`") {
        "start the file with a [sweep] table giving `name` and `command`"
    } else if message.contains("missing field") {
        "add the missing key"
    } else if message.contains("duplicate key") {
        "each key may appear once per table; an axis is swept in one place only"
    } else {
        "see sweeps/example.toml for the grid format"
    };
    // toml says "duplicate key" and points at it: name it.
    let key = e
        .span()
        .and_then(|span| c.source.get(span))
        .map(|k| k.trim().trim_matches('"').to_string())
        .filter(|k| message.contains("duplicate key") && !k.is_empty() && !k.contains('\n'));
    let message = match key {
        Some(key) => format!("{message} `{key}`"),
        None => message,
    };
    SpecError::at(c.path, c.source, e.span(), "", message).help(help)
}

fn check_name(c: &Checker<'_>, name: &Spanned<String>) -> Result<String, SpecError> {
    let text = name.get_ref();
    let ok = !text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        && !text.starts_with('.')
        && !text.starts_with('-');
    if !ok {
        return Err(c
            .err(name.span(), "sweep.name", format!("invalid sweep name {text:?}"))
            .help("use letters, digits, '-', '_' and '.', starting with a letter or digit (it names a directory and is given on command lines), e.g. \"lr-ema-2026\""));
    }
    Ok(text.clone())
}

fn claim_name(
    c: &Checker<'_>,
    seen: &mut BTreeMap<String, String>,
    name: &str,
    key: &str,
    span: Range<usize>,
) -> Result<(), SpecError> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if !valid {
        return Err(c
            .err(span, key, format!("invalid parameter name {name:?}"))
            .help("parameter names are identifiers (letters, digits, '_'); they become placeholders and CSV columns"));
    }
    if BUILTIN_PLACEHOLDERS.contains(&name) {
        return Err(c
            .err(
                span,
                key,
                format!("`{name}` is reserved for sweep's own placeholder"),
            )
            .help("rename the parameter"));
    }
    if let Some(first) = seen.get(name) {
        return Err(c
            .err(span, key, format!("`{name}` is already set by {first}"))
            .help(
                "a parameter is swept in [grid], in one [[zip]], or fixed in [fixed]; keep one",
            ));
    }
    seen.insert(name.to_string(), key.to_string());
    Ok(())
}

/// A whole number in `range` (`default` when absent). The bounds keep every later
/// conversion (to `u32`, to a `Duration`) exact.
fn whole(
    c: &Checker<'_>,
    value: Option<Spanned<i64>>,
    key: &str,
    default: i64,
    range: RangeInclusive<i64>,
) -> Result<i64, SpecError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
        Some(v) => {
            let (min, max) = (range.start(), range.end());
            let why = if v.get_ref() < min {
                format!("must be at least {min}, got {}", v.get_ref())
            } else {
                format!("must be at most {max}, got {}", v.get_ref())
            };
            Err(c
                .err(v.span(), key, why)
                .help(format!("set {key} to a whole number from {min} to {max}")))
        }
    }
}

/// The longest duration a grid may give: longer ones are surely typos, and would overflow
/// the clock arithmetic of deadlines.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

fn duration(
    c: &Checker<'_>,
    text: Spanned<String>,
    key: &str,
    zero_ok: bool,
) -> Result<Duration, SpecError> {
    let help = "write a duration such as \"90s\", \"30m\" or \"2h 30m\" (at most a year)";
    let parsed = humantime::parse_duration(text.get_ref()).map_err(|e| {
        c.err(
            text.span(),
            key,
            format!("invalid duration {:?}: {e}", text.get_ref()),
        )
        .help(help)
    })?;
    if parsed > MAX_DURATION {
        return Err(c
            .err(
                text.span(),
                key,
                format!("duration {:?} is longer than a year", text.get_ref()),
            )
            .help(help));
    }
    if parsed.is_zero() && !zero_ok {
        return Err(c
            .err(
                text.span(),
                key,
                format!("duration {:?} is zero: no trial could run", text.get_ref()),
            )
            .help("leave the key out for no limit, or write a duration such as \"2h\""));
    }
    Ok(parsed)
}

/// Longest string a parameter may be: trials get every value on their command line and in
/// `SWEEP_PARAMS`, and Linux takes at most 128 KiB in one argument or variable.
const MAX_STRING: usize = 64 << 10;

fn scalar(
    c: &Checker<'_>,
    key: &str,
    span: Range<usize>,
    value: toml::Value,
) -> Result<ParamValue, SpecError> {
    match value {
        toml::Value::Integer(i) => Ok(ParamValue::Int(i)),
        toml::Value::Float(f) if f.is_finite() => Ok(ParamValue::Float(f)),
        toml::Value::Float(f) => Err(c
            .err(span, key, format!("{f} is not a finite number"))
            .help("use a finite number; a value that must be unbounded is better passed as a string")),
        toml::Value::Boolean(b) => Ok(ParamValue::Bool(b)),
        toml::Value::String(s) if s.contains('\0') => Err(c
            .err(span, key, "contains a NUL byte, which no command line or environment can carry")
            .help("remove the \\u0000 from the value")),
        toml::Value::String(s) if s.len() > MAX_STRING => Err(c
            .err(span, key, format!("is {} bytes long, over the {} KiB a parameter may be", s.len(), MAX_STRING >> 10))
            .help("values reach trials on their command line and in SWEEP_PARAMS, which the system caps at 128 KiB a string: put long text in a file and pass its path")),
        toml::Value::String(s) => Ok(ParamValue::Str(s)),
        other => Err(c
            .err(span, key, format!("expected a number, string or boolean, found {}", other.type_str()))
            .help("parameter values are scalars, e.g. lr = [1e-4, 3e-4] or optimizer = [\"adamw\", \"sgd\"]")),
    }
}

fn number(
    c: &Checker<'_>,
    key: &str,
    span: Range<usize>,
    value: &toml::Value,
) -> Result<f64, SpecError> {
    match value {
        toml::Value::Integer(i) => Ok(*i as f64),
        toml::Value::Float(f) if f.is_finite() => Ok(*f),
        other => Err(c
            .err(
                span,
                key,
                format!("range bounds must be finite numbers, found {other}"),
            )
            .help("write e.g. { log = [1e-5, 1e-3], num = 3 }")),
    }
}

/// Rounds to 12 significant digits so computed points read as written (`0.001`, not
/// `0.0009999999999999998`).
fn tidy(x: f64) -> f64 {
    format!("{x:.11e}").parse().unwrap_or(x)
}

fn axis_values(
    c: &Checker<'_>,
    key: &str,
    value: Spanned<toml::Value>,
) -> Result<Vec<ParamValue>, SpecError> {
    let span = value.span();
    match value.into_inner() {
        toml::Value::Array(items) => {
            if items.is_empty() {
                return Err(c
                    .err(span, key, "the axis has no values")
                    .help("give at least one value, or remove the axis"));
            }
            items
                .into_iter()
                .map(|v| scalar(c, key, span.clone(), v))
                .collect()
        }
        toml::Value::Table(table) => range_values(c, key, span, &table),
        other => Err(c
            .err(
                span,
                key,
                format!(
                    "an axis is a list of values, found {} {other}",
                    other.type_str()
                ),
            )
            .help(format!(
                "write `{} = [{other}]` to sweep it, or move it to [fixed] to pass it unchanged",
                key.rsplit('.').next().unwrap_or(key)
            ))),
    }
}

fn range_values(
    c: &Checker<'_>,
    key: &str,
    span: Range<usize>,
    table: &toml::Table,
) -> Result<Vec<ParamValue>, SpecError> {
    let help = "write { lin = [START, END], num = N } or { log = [START, END], num = N }";
    if let Some(unknown) = table
        .keys()
        .find(|k| !["lin", "log", "num"].contains(&k.as_str()))
    {
        return Err(c
            .err(span, key, format!("unknown range key `{unknown}`"))
            .help(help));
    }
    let (kind, bounds) = match (table.get("lin"), table.get("log")) {
        (Some(b), None) => ("lin", b),
        (None, Some(b)) => ("log", b),
        _ => {
            return Err(c
                .err(span, key, "a range needs exactly one of `lin` or `log`")
                .help(help))
        }
    };
    let toml::Value::Array(ends) = bounds else {
        return Err(c
            .err(
                span,
                key,
                format!("`{kind}` needs [START, END], found {bounds}"),
            )
            .help(help));
    };
    if ends.len() != 2 {
        return Err(c
            .err(
                span,
                key,
                format!("`{kind}` needs [START, END], got {} values", ends.len()),
            )
            .help(help));
    }
    let num = match table.get("num") {
        Some(toml::Value::Integer(n)) if *n >= 2 && *n <= 1_000_000 => *n as usize,
        Some(other) => {
            return Err(c
                .err(
                    span,
                    key,
                    format!("`num` must be a whole number from 2 to 1000000, got {other}"),
                )
                .help(help))
        }
        None => {
            return Err(c
                .err(span, key, "a range needs `num`, the number of points")
                .help(help))
        }
    };
    let (a, b) = (
        number(c, key, span.clone(), &ends[0])?,
        number(c, key, span.clone(), &ends[1])?,
    );
    if kind == "log" {
        if a <= 0.0 || b <= 0.0 {
            return Err(c
                .err(
                    span,
                    key,
                    format!("log-spaced bounds must be positive, got [{a}, {b}]"),
                )
                .help("use `lin` for ranges that include zero or negative numbers"));
        }
        let (la, lb) = (a.ln(), b.ln());
        let step = (lb - la) / (num - 1) as f64;
        return Ok((0..num)
            .map(|i| match i {
                0 => a,
                i if i == num - 1 => b,
                i => tidy((la + i as f64 * step).exp()),
            })
            .map(ParamValue::Float)
            .collect());
    }
    let both_int = matches!(
        (&ends[0], &ends[1]),
        (toml::Value::Integer(_), toml::Value::Integer(_))
    );
    if let (true, toml::Value::Integer(ia), toml::Value::Integer(ib)) =
        (both_int, &ends[0], &ends[1])
    {
        // In i128: the span of two i64 bounds may not fit an i64; each value does.
        let span_len = *ib as i128 - *ia as i128;
        let gaps = num as i128 - 1;
        if span_len % gaps == 0 {
            let step = span_len / gaps;
            return Ok((0..num as i128)
                .map(|i| ParamValue::Int((*ia as i128 + i * step) as i64))
                .collect());
        }
    }
    // (b - a) overflows to infinity for bounds near ±f64::MAX; the difference of the
    // quotients does not.
    let step = b / (num - 1) as f64 - a / (num - 1) as f64;
    Ok((0..num)
        .map(|i| {
            if i == num - 1 {
                b
            } else {
                tidy(a + i as f64 * step)
            }
        })
        .map(ParamValue::Float)
        .collect())
}

fn axis_values_of(axis: &Axis, name: &str) -> Vec<ParamValue> {
    match axis {
        Axis::Single { values, .. } => values.clone(),
        Axis::Zip { names, rows } => {
            let col = names.iter().position(|n| n == name).unwrap_or(0);
            rows.iter().map(|r| r[col].clone()).collect()
        }
    }
}

fn join_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    let v: Vec<String> = names.into_iter().map(|s| s.as_ref().to_string()).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Grid, SpecError> {
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
