//! What keycanary tells operators about itself and what it sees: Prometheus metrics
//! rendered from the daemon's snapshot (`metrics`) and OTLP traces of probe rounds
//! (`traces`). Log setup lives in `main.rs` for now.

pub mod metrics;
pub mod traces;

#[cfg(test)]
pub(crate) mod fixtures;
