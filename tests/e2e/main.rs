//! End-to-end tests: the real `sweep` binary against real SQLite files in temp directories.
//! Trials are small POSIX `sh` scripts speaking the JSON-lines protocol.

mod checkpoint;
mod dashboard;
mod faults;
mod findings;
mod lora;
mod malformed;
mod orchestration;
mod postgres;
mod protocol;
mod report;
mod slurm;
mod support;
mod terminal;
mod trainer;
