//! The vocabulary every other sweep crate speaks: what a grid file says ([`spec`]), which trials
//! it expands to ([`expand`]), how a trial is named stably across runs ([`key`]), how a trial's
//! command line is filled in ([`template`]) and what a trial process tells the scheduler
//! ([`protocol`]). Nothing here does I/O beyond reading the grid file, so it is cheap to test.

pub mod confirm;
pub mod error;
pub mod expand;
pub mod key;
pub mod protocol;
pub mod spec;
pub mod template;
pub mod value;

pub use error::GridError;
pub use expand::{expand, Expansion, Trial};
pub use key::{trial_id, TrialKey};
pub use protocol::{Event, ParseOutcome};
pub use spec::{Axis, Grid};
pub use template::CommandTemplate;
pub use value::{ParamValue, Params};
