//! keycanary: watches OAuth / OpenID Connect signing keys as clients see them.
//!
//! See ARCHITECTURE.md for the data flow and the invariants between these modules.

pub mod alert;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod judge;
pub mod lab;
pub mod model;
pub mod notify;
pub mod probe;
pub mod prometheus;
pub mod report;
pub mod snapshot;
pub mod store;
pub mod telemetry;

#[cfg(test)]
mod hostile;

#[cfg(test)]
mod contract;
