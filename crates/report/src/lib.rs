//! Views of stored sweeps. Everything here reads rows the store already holds; nothing is
//! computed that the trials did not report.

pub mod aggregate;
pub mod export;
pub mod filter;
pub mod front;
pub mod html;
pub mod pareto;
pub mod plot;
pub mod render;
pub mod status;
pub mod table;

pub use export::{aggregate_table, curves_table, trials_table, ExportError};
pub use filter::{filter_rows, Condition};
pub use front::{front_report, FrontReport};
pub use render::{render, Format};
pub use status::status_table;
pub use table::{Table, TableFormat};
