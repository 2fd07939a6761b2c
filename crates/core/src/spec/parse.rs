//! [`Grid::parse`]: the file's loose structures as serde reads them (every value with its
//! span), then each table checked in turn, every problem reported with its line and key.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::values::{
    axis_values, axis_values_of, check_name, claim_name, duration, join_names, scalar, whole,
};
use super::{Axis, Grid, TrainerTable, DEFAULT_MAX_TRIALS};
use crate::error::GridError;
use crate::template::{CommandTemplate, BUILTIN_PLACEHOLDERS};
use crate::value::{ParamValue, Params};

/// A table of axes as written: name to value, in file order, each with its span.
type RawAxes = IndexMap<String, Spanned<toml::Value>>;

/// The tables `Grid::parse` reads; any other top-level table is an executor's
/// ([`Grid::other_tables`]).
const TABLES: [&str; 6] = ["sweep", "grid", "zip", "exclude", "fixed", "trainer"];

/// Unknown top-level keys are not refused here (serde skips them): [`other_tables`] keeps the
/// tables among them for the executors and refuses the rest.
#[derive(Deserialize)]
struct RawGrid {
    sweep: Spanned<RawSweep>,
    #[serde(default)]
    grid: Option<Spanned<RawAxes>>,
    #[serde(default)]
    zip: Vec<Spanned<RawAxes>>,
    #[serde(default)]
    exclude: Vec<Spanned<RawAxes>>,
    #[serde(default)]
    fixed: RawAxes,
    #[serde(default)]
    trainer: Option<Spanned<toml::Table>>,
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
pub(super) struct Checker<'a> {
    pub path: &'a Path,
    pub source: &'a str,
}

impl Checker<'_> {
    pub(super) fn err(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> GridError {
        GridError::at(self.path, self.source, Some(span), key, message)
    }
}

/// The `[sweep]` table's limits and timings, checked.
struct Limits {
    parallel: usize,
    gpus_per_trial: usize,
    max_attempts: u32,
    max_trials: u64,
    timeout: Option<Duration>,
    grace: Duration,
    backoff: Duration,
}

/// `[sweep] command`, parsed: its template (none for the built-in trainer), its words, and
/// where it is written.
type Command = (Option<CommandTemplate>, Vec<String>, Range<usize>);

impl Grid {
    /// Validates grid text; `path` is only used to locate errors.
    pub fn parse(path: &Path, source: &str) -> Result<Grid, GridError> {
        let c = Checker { path, source };
        let raw: RawGrid =
            toml::from_str(source).map_err(|e| GridError::syntax(path, source, &e))?;
        let sweep_span = raw.sweep.span();
        let sweep = raw.sweep.into_inner();
        let name = check_name(&c, &sweep.name)?;
        let (template, command_args, command_span) =
            command(&c, sweep.command.clone(), sweep_span.clone())?;
        let limits = limits(&c, &sweep)?;

        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let grid_span = raw.grid.as_ref().map_or(sweep_span, |g| g.span());
        let axes = axes(&c, raw.grid, raw.zip, &mut seen)?;
        let fixed = fixed(&c, raw.fixed, &mut seen)?;
        let excludes = excludes(&c, raw.exclude, &axes)?;
        check_placeholders(&c, template.as_ref(), &axes, &fixed, command_span)?;
        check_size(&c, &axes, limits.max_trials, grid_span)?;
        let trainer = trainer(&c, raw.trainer, template.is_some())?;
        let other_tables = other_tables(&c)?;

        Ok(Grid {
            other_tables,
            path: path.to_path_buf(),
            source: source.to_string(),
            name,
            command: template,
            command_args,
            parallel: limits.parallel,
            gpus_per_trial: limits.gpus_per_trial,
            max_attempts: limits.max_attempts,
            timeout: limits.timeout,
            grace: limits.grace,
            backoff: limits.backoff,
            max_trials: limits.max_trials,
            axes,
            excludes,
            fixed,
            trainer,
        })
    }
}

impl Grid {
    /// The top-level tables of a grid file besides core's own, with their lines (what
    /// [`Grid::other_tables`] holds once the file parses): read alone, so that a misspelt
    /// table can be named before the complaints it causes (a `[grids]` leaves `{lr}` naming
    /// no parameter).
    pub fn top_level_tables(
        path: &Path,
        source: &str,
    ) -> Result<BTreeMap<String, usize>, GridError> {
        other_tables(&Checker { path, source })
    }
}

/// The top-level tables other than [`TABLES`], with their lines; any other top-level key
/// (a value outside every table) is refused, as it belongs to nobody.
fn other_tables(c: &Checker<'_>) -> Result<BTreeMap<String, usize>, GridError> {
    let root =
        toml::de::DeTable::parse(c.source).map_err(|e| GridError::syntax(c.path, c.source, &e))?;
    let mut tables = BTreeMap::new();
    for (key, value) in root.get_ref() {
        let name = &**key.get_ref();
        if TABLES.contains(&name) {
            continue;
        }
        if !matches!(value.get_ref(), toml::de::DeValue::Table(_)) {
            return Err(c
                .err(
                    key.span(),
                    name,
                    format!("unknown key `{name}` outside every table"),
                )
                .help(format!(
                    "settings belong in a table: {}",
                    TABLES.map(|t| format!("[{t}]")).join(", ")
                )));
        }
        let line = crate::error::line_column(c.source, key.span().start).0;
        tables.insert(name.to_string(), line);
    }
    Ok(tables)
}

/// `[sweep] command`: not empty, and a template whose braces parse.
fn command(
    c: &Checker<'_>,
    command: Option<Spanned<Vec<String>>>,
    sweep_span: Range<usize>,
) -> Result<Command, GridError> {
    let Some(command) = command else {
        return Ok((None, Vec::new(), sweep_span));
    };
    let command_span = command.span();
    let command_args = command.into_inner();
    if command_args.is_empty() || command_args[0].trim().is_empty() {
        return Err(c
            .err(command_span, "sweep.command", "the command is empty")
            .help("give the program and its arguments, e.g. [\"python3\", \"train.py\"], or remove `command` to use the built-in trainer"));
    }
    let template = CommandTemplate::parse(&command_args).map_err(|e| {
        c.err(command_span.clone(), "sweep.command", e.to_string())
            .help("placeholders are {parameter_name}; write {{ and }} for literal braces")
    })?;
    Ok((Some(template), command_args, command_span))
}

/// `[sweep]`'s numbers and durations, within their ranges.
fn limits(c: &Checker<'_>, sweep: &RawSweep) -> Result<Limits, GridError> {
    let max_trials = whole(
        c,
        sweep.max_trials.clone(),
        "sweep.max_trials",
        DEFAULT_MAX_TRIALS as i64,
        1..=1_000_000_000,
    )? as u64;
    Ok(Limits {
        parallel: whole(c, sweep.parallel.clone(), "sweep.parallel", 1, 1..=100_000)? as usize,
        gpus_per_trial: whole(
            c,
            sweep.gpus_per_trial.clone(),
            "sweep.gpus_per_trial",
            0,
            0..=1024,
        )? as usize,
        max_attempts: whole(
            c,
            sweep.max_attempts.clone(),
            "sweep.max_attempts",
            2,
            1..=1000,
        )? as u32,
        max_trials,
        timeout: sweep
            .timeout
            .clone()
            .map(|t| duration(c, t, "sweep.timeout", false))
            .transpose()?,
        grace: sweep
            .grace
            .clone()
            .map(|t| duration(c, t, "sweep.grace", true))
            .transpose()?
            .unwrap_or(Duration::from_secs(10)),
        backoff: sweep
            .backoff
            .clone()
            .map(|t| duration(c, t, "sweep.backoff", true))
            .transpose()?
            .unwrap_or(Duration::from_secs(5)),
    })
}

/// The swept axes: `[grid]`'s, then each `[[zip]]`'s (whose axes vary together, so they
/// must have as many values each). A name may be swept in one place only.
fn axes(
    c: &Checker<'_>,
    grid: Option<Spanned<RawAxes>>,
    zips: Vec<Spanned<RawAxes>>,
    seen: &mut BTreeMap<String, String>,
) -> Result<Vec<Axis>, GridError> {
    let mut axes = Vec::new();
    for (axis, value) in grid.map(Spanned::into_inner).unwrap_or_default() {
        let key = format!("grid.{axis}");
        claim_name(c, seen, &axis, &key, value.span())?;
        let values = axis_values(c, &key, value)?;
        axes.push(Axis::Single { name: axis, values });
    }
    for (i, zip) in zips.into_iter().enumerate() {
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
            claim_name(c, seen, &axis, &key, value.span())?;
            columns.push((key.clone(), axis_values(c, &key, value)?));
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
    Ok(axes)
}

/// `[fixed]`: one value per key, none of them swept.
fn fixed(
    c: &Checker<'_>,
    table: RawAxes,
    seen: &mut BTreeMap<String, String>,
) -> Result<Params, GridError> {
    let mut fixed = Params::new();
    for (key_name, value) in table {
        let key = format!("fixed.{key_name}");
        claim_name(c, seen, &key_name, &key, value.span())?;
        let span = value.span();
        let list = value.get_ref().is_array();
        let v = scalar(c, &key, span.clone(), value.into_inner()).map_err(|e| {
            if list {
                e.help("[fixed] holds one value per key; to sweep several, move the key to [grid]")
            } else {
                e
            }
        })?;
        fixed.insert(key_name, v);
    }
    Ok(fixed)
}

/// The axes by name, for the checks that name one.
fn swept(axes: &[Axis]) -> BTreeMap<&str, &Axis> {
    axes.iter()
        .flat_map(|a| a.names().into_iter().map(move |n| (n, a)))
        .collect()
}

/// Each `[[exclude]]` rule: swept axes only, and values those axes take (a rule that could
/// drop nothing is a typo).
fn excludes(
    c: &Checker<'_>,
    rules: Vec<Spanned<RawAxes>>,
    axes: &[Axis],
) -> Result<Vec<BTreeMap<String, Vec<ParamValue>>>, GridError> {
    let swept = swept(axes);
    let mut excludes = Vec::new();
    for (i, rule) in rules.into_iter().enumerate() {
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
                    .map(|v| scalar(c, &key, span.clone(), v))
                    .collect::<Result<Vec<_>, _>>()?,
                other => vec![scalar(c, &key, span.clone(), other)?],
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
                        format!("{v} is not a value of axis `{axis}`, so this rule drops nothing"),
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
    Ok(excludes)
}

/// Every `{placeholder}` of the command names a parameter (swept or fixed) or a built-in one.
fn check_placeholders(
    c: &Checker<'_>,
    template: Option<&CommandTemplate>,
    axes: &[Axis],
    fixed: &Params,
    command_span: Range<usize>,
) -> Result<(), GridError> {
    let known: Vec<&str> = swept(axes)
        .keys()
        .copied()
        .chain(fixed.keys().map(String::as_str))
        .collect();
    for name in template.iter().flat_map(|t| t.placeholders()) {
        if !known.contains(&name) && !BUILTIN_PLACEHOLDERS.contains(&name) {
            return Err(c
                .err(
                    command_span,
                    "sweep.command",
                    format!("placeholder `{{{name}}}` names no parameter"),
                )
                .help(format!(
                    "use one of: {}",
                    join_names(known.iter().copied().chain(BUILTIN_PLACEHOLDERS))
                )));
        }
    }
    Ok(())
}

/// The product of the axes is within `max_trials` (and within a `u64`).
fn check_size(
    c: &Checker<'_>,
    axes: &[Axis],
    max_trials: u64,
    grid_span: Range<usize>,
) -> Result<(), GridError> {
    let size = axes
        .iter()
        .try_fold(1u64, |acc, a| acc.checked_mul(a.len() as u64));
    match size {
        Some(n) if n <= max_trials => Ok(()),
        _ => {
            let shown = size.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
            Err(c
                .err(grid_span, "grid", format!("the grid has {shown} points, over the cap of {max_trials}"))
                .help("split the sweep, use [[zip]] for axes that vary together, or raise [sweep] max_trials"))
        }
    }
}

/// `[trainer]`, for the built-in trainer only, kept as JSON with the line it starts on.
fn trainer(
    c: &Checker<'_>,
    table: Option<Spanned<toml::Table>>,
    has_command: bool,
) -> Result<Option<TrainerTable>, GridError> {
    let Some(table) = table else {
        return Ok(None);
    };
    let span = table.span();
    if has_command {
        return Err(c
            .err(span, "trainer", "[trainer] configures the built-in trainer, but [sweep] gives a `command`")
            .help("remove `command` to use the built-in trainer, or remove [trainer] and pass settings to your command"));
    }
    let line = c.source[..span.start].matches('\n').count() + 1;
    let settings = serde_json::to_value(table.into_inner()).map_err(|e| {
        c.err(
            span,
            "trainer",
            format!("cannot be passed to the trainer: {e}"),
        )
    })?;
    Ok(Some(TrainerTable { settings, line }))
}
