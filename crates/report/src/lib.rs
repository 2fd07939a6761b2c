//! Views of stored sweeps. Everything here reads rows the store already holds; nothing is
//! computed that the trials did not report.

pub mod aggregate;
pub mod compare;
pub mod confirm;
pub mod export;
pub mod filter;
pub mod front;
pub mod html;
pub mod paired;
pub mod pareto;
pub mod plot;
pub mod render;
pub mod select;
pub mod status;
pub mod stored;
pub mod table;
pub mod verdicts;

pub use aggregate::Aggregator;
pub use export::{aggregate_table, curves_table, trial_cells, trial_columns, ExportError};
pub use filter::{conditions, Condition, Filter};
pub use front::{FrontBuilder, FrontRead, FrontReport, Shares};
pub use render::{render, render_selection, Format};
pub use select::{select, Constraint, Halves, Selection};
pub use status::{status_json, status_table};
pub use stored::{FixedParams, OpenError, Stored};
pub use table::{Table, TableFormat, TableWriter};
