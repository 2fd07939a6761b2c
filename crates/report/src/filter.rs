//! `--where` filters such as `learning_rate<=5e-5`, `optimizer=adamw` or `utility>0.5`.
//!
//! Parsed here, never pasted into SQL. A name refers to a parameter if any trial has that
//! parameter, else to a metric; a trial without the name does not match.

use std::fmt;
use std::str::FromStr;

use sweep_core::ParamValue;
use sweep_store::TrialRow;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=` or `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// One `NAME OP VALUE` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Parameter or metric name.
    pub name: String,
    /// Operator.
    pub op: Op,
    /// The value as written.
    pub value: String,
}

/// A filter that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The text is not `NAME OP VALUE`.
    #[error("cannot read filter {0:?}: write NAME OP VALUE with OP one of = != < <= > >=, e.g. 'learning_rate<=5e-5'")]
    Syntax(String),
    /// No trial has that parameter or metric.
    #[error("filter {filter:?}: no parameter or metric named `{name}` (known: {known})")]
    UnknownName {
        /// The filter text.
        filter: String,
        /// The name.
        name: String,
        /// Names that exist.
        known: String,
    },
    /// An ordering comparison against text.
    #[error("filter {0:?}: <, <=, > and >= need a number on the right")]
    NotANumber(String),
}

/// A configuration named by conditions joined by commas (`learning_rate=1e-5,ema_decay=0`),
/// as `sweep compare` and `sweep confirm --baseline` take one.
pub fn conditions(text: &str) -> Result<Vec<Condition>, FilterError> {
    text.split(',').map(|c| c.trim().parse()).collect()
}

impl FromStr for Condition {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const OPS: [(&str, Op); 7] = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("!=", Op::Ne),
            ("==", Op::Eq),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let (at, token, op) = OPS
            .iter()
            .filter_map(|(t, op)| text.find(t).map(|i| (i, *t, *op)))
            .min_by_key(|(i, t, _)| (*i, std::cmp::Reverse(t.len())))
            .ok_or_else(|| FilterError::Syntax(text.to_string()))?;
        let name = text[..at].trim();
        let value = text[at + token.len()..].trim();
        let valid_name =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name || value.is_empty() {
            return Err(FilterError::Syntax(text.to_string()));
        }
        if !matches!(op, Op::Eq | Op::Ne) && value.parse::<f64>().is_err() {
            return Err(FilterError::NotANumber(text.to_string()));
        }
        Ok(Condition {
            name: name.to_string(),
            op,
            value: value.to_string(),
        })
    }
}

impl Op {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.symbol(), self.value)
    }
}

impl Condition {
    fn holds(&self, row: &TrialRow, is_param: bool) -> bool {
        let number = self.value.parse::<f64>().ok();
        let found: Option<Result<f64, &str>> = if is_param {
            row.params.get(&self.name).map(|v| match v {
                ParamValue::Str(s) => Err(s.as_str()),
                ParamValue::Bool(true) => Err("true"),
                ParamValue::Bool(false) => Err("false"),
                other => Ok(other.as_f64().unwrap_or(f64::NAN)),
            })
        } else {
            row.metrics
                .get(&self.name)
                .map(|v| Ok(v.unwrap_or(f64::NAN)))
        };
        match (found, number) {
            (None, _) => false,
            (Some(Ok(x)), Some(y)) => match self.op {
                Op::Eq => ParamValue::Float(x).matches(&ParamValue::Float(y)),
                Op::Ne => !ParamValue::Float(x).matches(&ParamValue::Float(y)),
                Op::Lt => x < y,
                Op::Le => x <= y,
                Op::Gt => x > y,
                Op::Ge => x >= y,
            },
            (Some(Err(s)), _) => match self.op {
                Op::Eq => s == self.value,
                Op::Ne => s != self.value,
                _ => false,
            },
            (Some(Ok(_)), None) => self.op == Op::Ne,
        }
    }
}

/// Conditions checked against the names a store holds, ready to test trials one at a time.
#[derive(Debug, Clone)]
pub struct Filter {
    conditions: Vec<(Condition, bool)>,
}

impl Filter {
    /// Resolves each condition's name to a parameter (preferred) or a metric.
    pub fn new(
        conditions: &[Condition],
        params: &[String],
        metrics: &[String],
    ) -> Result<Filter, FilterError> {
        let mut resolved = Vec::with_capacity(conditions.len());
        for c in conditions {
            let is_param = params.contains(&c.name);
            if !is_param && !metrics.contains(&c.name) {
                let mut known: Vec<&str> =
                    params.iter().chain(metrics).map(String::as_str).collect();
                known.sort();
                known.dedup();
                return Err(FilterError::UnknownName {
                    filter: c.to_string(),
                    name: c.name.clone(),
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
            resolved.push((c.clone(), is_param));
        }
        Ok(Filter {
            conditions: resolved,
        })
    }

    /// Whether this filter keeps every trial (no conditions): what lets a report answer from
    /// the store's summaries.
    pub fn keeps_all(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether a trial satisfies every condition.
    pub fn keep(&self, row: &TrialRow) -> bool {
        self.conditions
            .iter()
            .all(|(c, is_param)| c.holds(row, *is_param))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operators() {
        let c: Condition = "learning_rate<=5e-5".parse().unwrap();
        assert_eq!(
            (c.name.as_str(), c.op, c.value.as_str()),
            ("learning_rate", Op::Le, "5e-5")
        );
        assert_eq!("a != b".parse::<Condition>().unwrap().op, Op::Ne);
        assert_eq!("a==1".parse::<Condition>().unwrap().op, Op::Eq);
        assert_eq!("a>1".parse::<Condition>().unwrap().op, Op::Gt);
        assert!("a<adamw".parse::<Condition>().is_err());
        assert!("1; DROP TABLE trials".parse::<Condition>().is_err());
        assert!("a=".parse::<Condition>().is_err());
    }
}
