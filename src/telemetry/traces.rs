//! Traces over OTLP (gRPC or HTTP/protobuf): builds the span exporter and batch tracer provider from
//! `[telemetry.otlp]`, the `tracing` layer that feeds it, the W3C `traceparent`
//! injection used by outgoing probe requests, and the `detect.assess` span that puts a
//! round's finding codes into the round's trace ([`RoundTrace`]).
//!
//! Export runs on the SDK's own batch thread: an unreachable collector costs dropped
//! spans, never a blocked probe. Probe spans are named and filled in `probe/`; nothing
//! here ever sees a token or a secret value except the configured export headers, which
//! go only to the collector. Findings go on spans as codes and a count, never messages.

use crate::config::OtlpConfig;
use crate::model::Finding;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::Injector;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::BTreeSet;
use std::time::Duration;
use tracing::{Span, Subscriber, field};
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
    /// `Ok(None)` when only metrics are exported.
    pub fn start(otlp: &OtlpConfig, location: &str) -> anyhow::Result<Option<Traces>> {
        let Some(export) = &otlp.traces else {
            return Ok(None);
        };
        let exporter = super::span_exporter(export)?;
        let resource = super::otlp_resource(otlp, location);
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Some(Traces { provider }))
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

/// The trace a tenant's probe round was recorded in: the `probe.round` span's context,
/// kept after that span ended so that detection, which runs after the round, joins the
/// same trace. Empty (detection spans become no-ops or roots) when traces are off.
#[derive(Debug, Clone, Default)]
pub struct RoundTrace(opentelemetry::Context);

impl RoundTrace {
    /// The trace of the current span (call it inside `probe.round`).
    pub fn current() -> RoundTrace {
        RoundTrace(Span::current().context())
    }

    /// A `detect.assess` span for `tenant`, a child of the round's `probe.round` span.
    /// Run the judgement in it, then [`record_findings`] before dropping it.
    pub fn assess_span(&self, tenant: &str) -> Span {
        let span = tracing::info_span!(
            parent: None,
            "detect.assess",
            tenant,
            finding.codes = field::Empty,
            finding.count = field::Empty,
        );
        // Fails only without the OpenTelemetry layer (traces off): nothing to join then.
        let _ = span.set_parent(self.0.clone());
        span
    }
}

/// Records on a `detect.assess` span what the judgement found: `finding.codes`, the
/// sorted and deduplicated codes joined by commas (empty when none), and
/// `finding.count`, the number of findings. Never a message or any other text.
pub fn record_findings(span: &Span, findings: &[Finding]) {
    let codes: BTreeSet<&str> = findings.iter().map(|f| f.code.as_str()).collect();
    let codes: Vec<&str> = codes.into_iter().collect();
    span.record("finding.codes", codes.join(",").as_str());
    span.record("finding.count", findings.len() as u64);
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
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};
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

    /// Keeps every span the provider ends.
    #[derive(Debug, Clone, Default)]
    struct Collect(std::sync::Arc<std::sync::Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    fn attr(span: &SpanData, key: &str) -> String {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
            .unwrap_or_else(|| panic!("no {key} on {}: {:?}", span.name, span.attributes))
    }

    #[test]
    fn assess_span_joins_the_round_trace_with_its_finding_codes() {
        use crate::model::{Code, Finding, Subject};
        let collected = Collect::default();
        let traces = Traces {
            provider: SdkTracerProvider::builder()
                .with_simple_exporter(collected.clone())
                .build(),
        };
        let subscriber = tracing_subscriber::registry().with(traces.layer());
        let finding = |code| Finding::new(code, Subject::tenant("acme"), "a message");
        tracing::subscriber::with_default(subscriber, || {
            // The round's span has ended before detection starts, as in the daemon.
            let trace = {
                let round = tracing::info_span!(parent: None, "probe.round", tenant = "acme");
                round.in_scope(RoundTrace::current)
            };
            let span = trace.assess_span("acme");
            let findings = [
                finding(Code::StaleEdge),
                finding(Code::KidMissing),
                finding(Code::StaleEdge),
            ];
            span.in_scope(|| record_findings(&span, &findings));
            let clean = trace.assess_span("acme");
            record_findings(&clean, &[]);
        });
        let spans = collected.0.lock().unwrap();
        let round = spans.iter().find(|s| s.name == "probe.round").unwrap();
        let assess: Vec<&SpanData> = spans.iter().filter(|s| s.name == "detect.assess").collect();
        assert_eq!(assess.len(), 2, "{spans:#?}");
        for a in &assess {
            assert_eq!(a.span_context.trace_id(), round.span_context.trace_id());
            assert_eq!(a.parent_span_id, round.span_context.span_id());
            assert_eq!(attr(a, "tenant"), "acme");
        }
        let codes: Vec<(String, String)> = assess
            .iter()
            .map(|a| (attr(a, "finding.codes"), attr(a, "finding.count")))
            .collect();
        assert!(
            codes.contains(&("kid_missing,stale_edge".to_owned(), "3".to_owned())),
            "sorted, deduplicated; the count is of findings: {codes:?}"
        );
        assert!(
            codes.contains(&(String::new(), "0".to_owned())),
            "{codes:?}"
        );
        for a in &assess {
            assert!(
                !a.attributes
                    .iter()
                    .any(|kv| kv.value.to_string().contains("message"))
            );
        }
    }

    /// Traces off (no OpenTelemetry layer): the assess span takes its fields and carries no
    /// trace, so nothing is propagated from inside it, even with a propagator installed.
    #[test]
    fn without_traces_the_assess_span_propagates_nothing() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let span = RoundTrace::default().assess_span("acme");
        record_findings(&span, &[]);
        let mut headers = HeaderMap::new();
        span.in_scope(|| inject_trace_context(&mut headers));
        assert!(headers.is_empty(), "{headers:?}");
    }
}
