//! What a trial tells the outside world as it runs. The binary turns these into the
//! JSON-lines trial protocol; tests collect them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One thing a running trial reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialReport {
    /// A curve point.
    Metric {
        /// Optimizer step.
        step: usize,
        /// Curve name.
        name: &'static str,
        /// Value.
        value: f64,
    },
    /// A progress note for the trial's log.
    Note(String),
    /// Final metrics of a grid point: this trial's own (`params` empty) or a neighbouring
    /// point the same run computed (`params` holds the swept values that differ).
    Result {
        /// Overridden swept parameters.
        params: Map<String, Value>,
        /// Metric values.
        metrics: BTreeMap<String, f64>,
    },
    /// A resumable checkpoint now exists.
    Checkpoint {
        /// The step it holds.
        step: usize,
    },
}
