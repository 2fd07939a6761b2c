//! The checks of single values: names, whole numbers, durations, scalars, and the values
//! of an axis (a list, or a range written as `{ start, stop, step }`, `{ log = [a, b], num }`).

use std::collections::BTreeMap;
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;

use super::parse::Checker;
use super::Axis;
use crate::error::GridError;
use crate::template::BUILTIN_PLACEHOLDERS;
use crate::value::ParamValue;

pub(super) fn check_name(c: &Checker<'_>, name: &Spanned<String>) -> Result<String, GridError> {
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

pub(super) fn claim_name(
    c: &Checker<'_>,
    seen: &mut BTreeMap<String, String>,
    name: &str,
    key: &str,
    span: Range<usize>,
) -> Result<(), GridError> {
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
pub(super) fn whole(
    c: &Checker<'_>,
    value: Option<Spanned<i64>>,
    key: &str,
    default: i64,
    range: RangeInclusive<i64>,
) -> Result<i64, GridError> {
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

pub(super) fn duration(
    c: &Checker<'_>,
    text: Spanned<String>,
    key: &str,
    zero_ok: bool,
) -> Result<Duration, GridError> {
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

pub(super) fn scalar(
    c: &Checker<'_>,
    key: &str,
    span: Range<usize>,
    value: toml::Value,
) -> Result<ParamValue, GridError> {
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

pub(super) fn number(
    c: &Checker<'_>,
    key: &str,
    span: Range<usize>,
    value: &toml::Value,
) -> Result<f64, GridError> {
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
pub(super) fn tidy(x: f64) -> f64 {
    format!("{x:.11e}").parse().unwrap_or(x)
}

pub(super) fn axis_values(
    c: &Checker<'_>,
    key: &str,
    value: Spanned<toml::Value>,
) -> Result<Vec<ParamValue>, GridError> {
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

pub(super) fn range_values(
    c: &Checker<'_>,
    key: &str,
    span: Range<usize>,
    table: &toml::Table,
) -> Result<Vec<ParamValue>, GridError> {
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

pub(super) fn axis_values_of(axis: &Axis, name: &str) -> Vec<ParamValue> {
    match axis {
        Axis::Single { values, .. } => values.clone(),
        Axis::Zip { names, rows } => {
            let col = names.iter().position(|n| n == name).unwrap_or(0);
            rows.iter().map(|r| r[col].clone()).collect()
        }
    }
}

pub(super) fn join_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    let v: Vec<String> = names.into_iter().map(|s| s.as_ref().to_string()).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}
