//! What keycanary tells operators about itself and what it sees: Prometheus metrics
//! rendered from the daemon's snapshot (`metrics`), the same families over OTLP
//! (`otlp_metrics`) and OTLP traces of probe rounds (`traces`). Log setup lives in
//! `main.rs` for now.

pub mod metrics;
pub mod otlp_metrics;
pub mod traces;

#[cfg(test)]
pub(crate) mod fixtures;
