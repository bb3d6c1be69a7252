//! An OTLP exporter whose failures are logged: the first failed export after a success
//! (or after start) as a warning with the cause, the first success after failures as
//! information, nothing in between, so a collector that is down for an hour costs two
//! log lines, not one per export. Wraps both exporters; for HTTP/protobuf the client logs
//! the same way itself (`otlp_http`), where the cause is still at hand (the exporter
//! turns it into "network error"), and the wrapper stays quiet.
//!
//! The cause is the exporter's error text, which may quote the collector's answer: it is
//! cleaned of control characters and cut short (`model::wire::text`) before it is logged.

use crate::model::wire;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How much of an error's text is logged.
const MAX_CAUSE_CHARS: usize = 300;

/// What one export's outcome changes in the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Exports started failing: log a warning.
    Failing,
    /// Exports go through again: log it.
    Recovered,
}

/// Records an export's outcome in `failing` and says what to log, if anything.
pub(crate) fn change(failing: &AtomicBool, ok: bool) -> Option<Change> {
    let was_failing = failing.swap(!ok, Ordering::Relaxed);
    match (was_failing, ok) {
        (false, false) => Some(Change::Failing),
        (true, true) => Some(Change::Recovered),
        _ => None,
    }
}

/// Logs `change` for `signal` sent to `collector` (an origin, never a path or query).
pub(crate) fn log(change: Option<Change>, signal: &str, collector: &str, cause: &str) {
    match change {
        Some(Change::Failing) => tracing::warn!(
            signal,
            collector = %collector,
            "OTLP: export failed: {}; retried at the next export (probing goes on)",
            wire::text(cause, MAX_CAUSE_CHARS)
        ),
        Some(Change::Recovered) => {
            tracing::info!(signal, collector = %collector, "OTLP: exports go through again")
        }
        None => {}
    }
}

/// `inner`, with its outcomes logged (unless `collector` is `None`: the exporter's client
/// logs them itself).
#[derive(Debug)]
pub(crate) struct Logged<E> {
    inner: E,
    signal: &'static str,
    collector: Option<String>,
    failing: AtomicBool,
}

impl<E> Logged<E> {
    pub(crate) fn new(inner: E, signal: &'static str, collector: Option<String>) -> Logged<E> {
        Logged {
            inner,
            signal,
            collector,
            failing: AtomicBool::new(false),
        }
    }

    fn outcome(&self, result: &OTelSdkResult) {
        let Some(collector) = &self.collector else {
            return;
        };
        let cause = match result {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        };
        log(
            change(&self.failing, result.is_ok()),
            self.signal,
            collector,
            &cause,
        );
    }
}

impl<E: SpanExporter> SpanExporter for Logged<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.outcome(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Logged<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.outcome(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_recoveries_are_logged_once_each() {
        let failing = AtomicBool::new(false);
        // Outcomes in order and what each changes.
        let steps = [
            (true, None),
            (false, Some(Change::Failing)),
            (false, None),
            (false, None),
            (true, Some(Change::Recovered)),
            (true, None),
            (false, Some(Change::Failing)),
        ];
        for (i, (ok, want)) in steps.into_iter().enumerate() {
            assert_eq!(change(&failing, ok), want, "step {i}");
        }
    }
}
