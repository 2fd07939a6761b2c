//! Views of stored sweeps. Everything here reads rows the store already holds; nothing is
//! computed that the trials did not report.

pub mod export;
pub mod pareto;
pub mod status;

pub use export::{write_csv, ExportError};
pub use status::status_table;
