//! What keycanary tells operators about itself and what it sees: Prometheus metrics
//! rendered from the daemon's snapshot (`metrics`). Log setup lives in `main.rs` for now.

pub mod metrics;

#[cfg(test)]
pub(crate) mod fixtures;
