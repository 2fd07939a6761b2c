//! Parameter values and their one canonical text form.
//!
//! Trial keys, command-line substitution and the JSON handed to trials all go through the same
//! formatting, so `1e-5` written in a grid is `1e-5` everywhere and hashes the same every run.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The parameters of one trial, sorted by name so that iteration order is canonical.
pub type Params = BTreeMap<String, ParamValue>;

/// A scalar value a grid axis or `[fixed]` entry can take.
///
/// Integers and floats stay distinct (a batch size of `8` is not `8.0`), which keeps the value
/// a trial receives exactly what the grid file said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A boolean switch.
    Bool(bool),
    /// A whole number, such as a batch size or a seed.
    Int(i64),
    /// A real number, such as a learning rate.
    Float(f64),
    /// A free-form label, such as an optimizer name.
    Str(String),
}

impl ParamValue {
    /// The value as a number, for range filters and numeric matching; `None` for text and bools.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Int(i) => Some(*i as f64),
            ParamValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Whether two values name the same grid point. Numbers compare by value (with a relative
    /// tolerance of 1e-12, so a log-spaced `0.001` matches `1e-3`), everything else exactly.
    pub fn matches(&self, other: &ParamValue) -> bool {
        match (self.as_f64(), other.as_f64()) {
            (Some(a), Some(b)) => a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
            _ => self == other,
        }
    }

    /// The value as a JSON value (for `SWEEP_PARAMS` and exports).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ParamValue::Bool(b) => serde_json::Value::Bool(*b),
            ParamValue::Int(i) => serde_json::Value::from(*i),
            ParamValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            ParamValue::Str(s) => serde_json::Value::String(s.clone()),
        }
    }

    /// The value's identity under `==` as a hashable key, so a long axis drops its repeats
    /// in one pass instead of comparing every value with every other.
    pub(crate) fn key(&self) -> ValueKey<'_> {
        match self {
            ParamValue::Bool(b) => ValueKey::Bool(*b),
            ParamValue::Int(i) => ValueKey::Int(*i),
            // `-0.0 == 0.0`; grid values are finite, so no NaN is ever unequal to itself.
            ParamValue::Float(f) if *f == 0.0 => ValueKey::Float(0),
            ParamValue::Float(f) => ValueKey::Float(f.to_bits()),
            ParamValue::Str(s) => ValueKey::Str(s),
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamValue::Bool(_) => "a boolean",
            ParamValue::Int(_) => "an integer",
            ParamValue::Float(_) => "a float",
            ParamValue::Str(_) => "a string",
        }
    }
}

/// A [`ParamValue`] as [`ParamValue::key`] gives it: equal keys for equal values.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) enum ValueKey<'a> {
    Bool(bool),
    Int(i64),
    /// The float's bits, `0.0` for either zero.
    Float(u64),
    Str(&'a str),
}

/// A float in shortest round-trip form (`0.00001`, `1e-7`, `0.1`, `2.0`). Pinned to `ryu` rather than
/// left to a JSON library, because trial keys hash this text and must never change.
pub fn format_float(x: f64) -> String {
    if x.is_finite() {
        ryu::Buffer::new().format_finite(x).to_string()
    } else {
        "null".to_string()
    }
}

impl fmt::Display for ParamValue {
    /// The text substituted into a command line: the canonical form, strings unquoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => f.write_str(&format_float(*x)),
            ParamValue::Str(s) => f.write_str(s),
        }
    }
}

/// A parameter set as a JSON object, each value as the grid wrote it: what every JSON export
/// and the dashboard show.
pub fn params_to_value(params: &Params) -> serde_json::Value {
    serde_json::Value::Object(
        params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect(),
    )
}

/// Canonical JSON of a parameter set: keys sorted, floats in shortest round-trip form, no
/// spaces. Trial keys are hashes of this text.
pub fn params_to_json(params: &Params) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(k));
        out.push(':');
        match v {
            ParamValue::Str(s) => out.push_str(&json_string(s)),
            other => out.push_str(&other.to_string()),
        }
    }
    out.push('}');
    out
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Parses the JSON written by [`params_to_json`] back into parameters.
pub fn params_from_json(text: &str) -> Result<Params, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are equal exactly where the values are `==`, so deduplicating by key keeps what
    /// deduplicating by `==` kept.
    #[test]
    fn keys_are_equal_where_values_are() {
        let values = [
            ParamValue::Bool(true),
            ParamValue::Bool(false),
            ParamValue::Int(0),
            ParamValue::Int(1),
            ParamValue::Float(0.0),
            ParamValue::Float(-0.0),
            ParamValue::Float(1.0),
            ParamValue::Float(1e-5),
            ParamValue::Str("1".to_string()),
            ParamValue::Str("1.0".to_string()),
        ];
        for a in &values {
            for b in &values {
                assert_eq!(a.key() == b.key(), a == b, "{a:?} and {b:?}");
            }
        }
    }

    #[test]
    fn floats_use_shortest_round_trip_form() {
        assert_eq!(ParamValue::Float(1e-5).to_string(), "0.00001");
        assert_eq!(ParamValue::Float(1e-7).to_string(), "1e-7");
        assert_eq!(ParamValue::Float(0.1).to_string(), "0.1");
        assert_eq!(ParamValue::Float(2.0).to_string(), "2.0");
        assert_eq!(ParamValue::Int(8).to_string(), "8");
        assert_eq!(ParamValue::Str("adamw".into()).to_string(), "adamw");
    }

    #[test]
    fn json_round_trips_and_keeps_int_float_distinct() {
        let mut p = Params::new();
        p.insert("lr".into(), ParamValue::Float(3e-4));
        p.insert("bs".into(), ParamValue::Int(16));
        p.insert("opt".into(), ParamValue::Str("adamw".into()));
        p.insert("ema".into(), ParamValue::Bool(true));
        let text = params_to_json(&p);
        assert_eq!(text, r#"{"bs":16,"ema":true,"lr":0.0003,"opt":"adamw"}"#);
        assert_eq!(params_from_json(&text).unwrap(), p);
        p.insert("tiny".into(), ParamValue::Float(1e-5));
        assert!(params_to_json(&p).contains(r#""tiny":0.00001"#));
    }

    #[test]
    fn numeric_matching_tolerates_representation() {
        assert!(ParamValue::Int(8).matches(&ParamValue::Float(8.0)));
        assert!(ParamValue::Float(1e-3).matches(&ParamValue::Float(0.001)));
        assert!(!ParamValue::Float(1e-3).matches(&ParamValue::Float(1.1e-3)));
        assert!(!ParamValue::Str("8".into()).matches(&ParamValue::Int(8)));
    }
}
