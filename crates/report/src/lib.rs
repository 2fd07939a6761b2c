//! Views of stored sweeps. Everything here reads rows the store already holds; nothing is
//! computed that the trials did not report.

pub mod aggregate;
pub mod export;
pub mod front;
pub mod pareto;
pub mod render;
pub mod status;

pub use export::{write_csv, ExportError};
pub use front::{front_report, FrontReport};
pub use render::{render, Format};
pub use status::status_table;
