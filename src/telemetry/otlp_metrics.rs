//! Metrics over OTLP (gRPC or HTTP/protobuf): the same families `/metrics` serves (see [`super::metrics`]),
//! exported as OTLP gauges, cumulative sums and cumulative histograms when
//! `[telemetry.otlp]` is configured.
//!
//! Every gauge and counter family becomes one observable instrument whose callback reads
//! the latest families from `source` (the daemon's snapshot), so both outputs share names,
//! labels and values. OpenTelemetry has no observable histogram, so the duration
//! histograms are synchronous instruments with the same name, help and buckets, fed by
//! the daemon through a [`DurationRecorder`] with each tenant round it also adds to the
//! snapshot's histograms (same labels, from [`durations::round_durations`]). The SDK's
//! periodic reader collects and exports on its own thread every `interval`: an
//! unreachable collector costs dropped exports, never a blocked round.

use super::exposition::{Family, Labels, MetricType};
use crate::config::OtlpConfig;
use crate::model::Observation;
use crate::snapshot::durations::{self, DurationKind};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long exit waits for the last export to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Produces the current families (called from the SDK's reader thread).
pub type Source = Arc<dyn Fn() -> Vec<Family> + Send + Sync>;

/// A running metric pipeline; call [`OtlpMetrics::shutdown`] off the async runtime's
/// worker threads (e.g. in `spawn_blocking`), before the runtime stops.
pub struct OtlpMetrics {
    provider: SdkMeterProvider,
    durations: DurationRecorder,
}

/// Records each tenant round's fetch and login durations into the OTLP histograms
/// (cumulative, like `/metrics`). Cheap to clone; recording never blocks.
#[derive(Debug, Clone)]
pub struct DurationRecorder {
    fetch: Histogram<f64>,
    login: Histogram<f64>,
}

impl DurationRecorder {
    /// Adds one tenant round, labelled as `/metrics` labels it.
    pub fn record(&self, observation: &Observation, per_view: bool) {
        for (kind, labels, value) in durations::round_durations(observation, per_view) {
            let attrs = attributes(labels);
            match kind {
                DurationKind::Fetch => self.fetch.record(value, &attrs),
                DurationKind::Login => self.login.record(value, &attrs),
            }
        }
    }
}

impl OtlpMetrics {
    /// Registers one instrument per family `source` yields now (families are emitted even
    /// without samples, so the set is complete from the start) and exports every
    /// `interval`. Must be called inside a Tokio runtime. `Ok(None)` when only traces are
    /// exported.
    pub fn start(
        otlp: &OtlpConfig,
        location: &str,
        interval: Duration,
        source: Source,
    ) -> anyhow::Result<Option<OtlpMetrics>> {
        let Some(export) = &otlp.metrics else {
            return Ok(None);
        };
        let exporter = super::metric_exporter(export)?;
        let resource = super::otlp_resource(otlp, location);
        let reader = PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        let durations = register(&provider, &source);
        Ok(Some(OtlpMetrics {
            provider,
            durations,
        }))
    }

    /// What the daemon records each tenant round's durations with.
    pub fn durations(&self) -> DurationRecorder {
        self.durations.clone()
    }

    /// Exports once more (bounded by a timeout) and stops the reader thread.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "metrics: could not flush the last export to the collector");
        }
    }
}

/// Registers an observable instrument per gauge and counter family, and returns the
/// duration histograms (synchronous: OpenTelemetry has no observable histogram).
fn register(provider: &SdkMeterProvider, source: &Source) -> DurationRecorder {
    let meter = provider.meter("keycanary");
    let families = source();
    let collection = Arc::new(Collection {
        source: source.clone(),
        latest: Mutex::new(None),
    });
    for family in &families {
        let name = family.name;
        let collection = collection.clone();
        let observe = move |o: &dyn AsyncInstrument<f64>| observe(&collection, name, o);
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
            MetricType::Histogram => {}
        }
    }
    let histogram = |name: &'static str| {
        let help = families
            .iter()
            .find(|f| f.name == name)
            .map_or("", |f| f.help);
        meter
            .f64_histogram(name)
            .with_description(help)
            .with_boundaries(durations::DURATION_BUCKETS.to_vec())
            .build()
    };
    DurationRecorder {
        fetch: histogram(durations::FETCH_DURATION),
        login: histogram(durations::LOGIN_DURATION),
    }
}

fn attributes(labels: Labels) -> Vec<KeyValue> {
    labels
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect()
}

/// The SDK calls every instrument's callback in turn on each collection; they share one
/// run of the source per collection (one snapshot, one gate evaluation) rather than one
/// each. Collections are at least a second apart (the interval), so a result younger than
/// [`Collection::FRESH`] is this collection's.
struct Collection {
    source: Source,
    latest: Mutex<Option<(Instant, Arc<Vec<Family>>)>>,
}

impl Collection {
    const FRESH: Duration = Duration::from_millis(500);

    fn families(&self) -> Arc<Vec<Family>> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, families)) = &*latest
            && at.elapsed() < Self::FRESH
        {
            return families.clone();
        }
        let families = Arc::new((self.source)());
        *latest = Some((crate::clock::monotonic(), families.clone()));
        families
    }
}

fn observe(collection: &Collection, name: &str, o: &dyn AsyncInstrument<f64>) {
    for family in collection.families().iter().filter(|f| f.name == name) {
        for s in &family.samples {
            o.observe(s.value, &attributes(s.labels.clone()));
        }
    }
}
