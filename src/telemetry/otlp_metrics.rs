//! Metrics over OTLP/gRPC: the same families `/metrics` serves (see [`super::metrics`]),
//! exported as OTLP gauges and cumulative sums when `[telemetry.otlp]` is configured.
//!
//! Every family becomes one observable instrument whose callback reads the latest
//! families from `source` (the daemon's snapshot), so both outputs share names, labels
//! and values. The SDK's periodic reader collects and exports on its own thread every
//! `interval`: an unreachable collector costs dropped exports, never a blocked round.

use super::metrics::{Family, MetricType};
use crate::config::OtlpConfig;
use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, MeterProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use std::sync::Arc;
use std::time::Duration;

/// How long exit waits for the last export to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Produces the current families (called from the SDK's reader thread).
pub type Source = Arc<dyn Fn() -> Vec<Family> + Send + Sync>;

/// A running metric pipeline; call [`OtlpMetrics::shutdown`] off the async runtime's
/// worker threads (e.g. in `spawn_blocking`), before the runtime stops.
pub struct OtlpMetrics {
    provider: SdkMeterProvider,
}

impl OtlpMetrics {
    /// Registers one instrument per family `source` yields now (families are emitted even
    /// without samples, so the set is complete from the start) and exports every
    /// `interval`. Must be called inside a Tokio runtime.
    pub fn start(
        otlp: &OtlpConfig,
        location: &str,
        interval: Duration,
        source: Source,
    ) -> anyhow::Result<OtlpMetrics> {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(otlp.endpoint.as_str().trim_end_matches('/'))
            .with_timeout(super::EXPORT_TIMEOUT)
            .with_metadata(super::otlp_metadata(otlp)?)
            .build()
            .context("cannot build the OTLP metric exporter")?;
        let resource = super::otlp_resource(otlp, location);
        let reader = PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        register(&provider, &source);
        Ok(OtlpMetrics { provider })
    }

    /// Exports once more (bounded by a timeout) and stops the reader thread.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "metrics: could not flush the last export to the collector");
        }
    }
}

fn register(provider: &SdkMeterProvider, source: &Source) {
    let meter = provider.meter("keycanary");
    for family in source() {
        let name = family.name;
        let src = source.clone();
        let observe = move |o: &dyn AsyncInstrument<f64>| observe(&src, name, o);
        // The instruments live as long as the provider: the SDK keeps their callbacks.
        match family.kind {
            MetricType::Gauge => {
                meter
                    .f64_observable_gauge(name)
                    .with_description(family.help)
                    .with_callback(observe)
                    .build();
            }
            MetricType::Counter => {
                meter
                    .f64_observable_counter(name)
                    .with_description(family.help)
                    .with_callback(observe)
                    .build();
            }
        }
    }
}

fn observe(source: &Source, name: &str, o: &dyn AsyncInstrument<f64>) {
    for family in source().into_iter().filter(|f| f.name == name) {
        for s in family.samples {
            let attrs: Vec<KeyValue> = s
                .labels
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, v))
                .collect();
            o.observe(s.value, &attrs);
        }
    }
}
