//! Traces over OTLP/gRPC: builds the span exporter and batch tracer provider from
//! `[telemetry.otlp]`, the `tracing` layer that feeds it, and the W3C `traceparent`
//! injection used by outgoing probe requests.
//!
//! Export runs on the SDK's own batch thread: an unreachable collector costs dropped
//! spans, never a blocked probe. Spans are named and filled in `probe/`; this file does
//! not decide what is recorded, and nothing here ever sees a token or a secret value
//! except the configured export headers, which go only to the collector.

use crate::config::OtlpConfig;
use anyhow::Context as _;
use opentelemetry::propagation::Injector;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// How long exit waits for the last batch to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// A running trace pipeline; call [`Traces::shutdown`] before the runtime stops.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Builds the exporter and provider and installs the W3C trace-context propagator.
    /// Must be called inside a Tokio runtime (the gRPC channel connects lazily on it).
    pub fn start(otlp: &OtlpConfig, location: &str) -> anyhow::Result<Traces> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(otlp.endpoint.as_str().trim_end_matches('/'))
            .with_timeout(super::EXPORT_TIMEOUT)
            .with_metadata(super::otlp_metadata(otlp)?)
            .build()
            .context("cannot build the OTLP span exporter")?;
        let resource = super::otlp_resource(otlp, location);
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Traces { provider })
    }

    /// The `tracing` layer exporting keycanary's own spans (INFO and above; never the
    /// HTTP and gRPC libraries' spans, which would also trace the exporter itself).
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("keycanary"))
            .with_filter(Targets::new().with_target("keycanary", tracing::Level::INFO))
    }

    /// Flushes what is queued (bounded by a timeout) and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "traces: could not flush the last spans to the collector");
        }
    }
}

/// Adds `traceparent` (and `tracestate`) for the current span to `headers`. Does nothing
/// unless [`Traces::start`] installed the propagator.
pub fn inject_trace_context(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn injects_a_w3c_traceparent_for_the_current_span() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let traces = Traces {
            provider: SdkTracerProvider::builder().build(),
        };
        let subscriber = tracing_subscriber::registry().with(traces.layer());
        let mut headers = HeaderMap::new();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("probe.jwks");
            let _entered = span.enter();
            inject_trace_context(&mut headers);
        });
        let tp = headers["traceparent"].to_str().unwrap();
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len()),
            ("00", 32, 16),
            "{tp}"
        );
        // Outside any span there is nothing to propagate.
        let mut none = HeaderMap::new();
        inject_trace_context(&mut none);
        assert!(none.is_empty());
    }
}
