//! What keycanary tells operators about itself and what it sees: Prometheus metrics
//! rendered from the daemon's snapshot (`metrics`, in the text format of `exposition`;
//! the duration histograms they render are accumulated in `crate::snapshot::durations`),
//! the same families over OTLP (`otlp_metrics`) and OTLP traces of probe rounds (`traces`).
//! Log set-up lives in `crate::cli`.

pub mod exposition;
pub mod metrics;
pub mod otlp_metrics;
pub mod traces;

#[cfg(test)]
pub(crate) mod fixtures;

use crate::config::OtlpConfig;
use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_sdk::Resource;
use secrecy::ExposeSecret;
use std::time::Duration;

/// How long one OTLP export may take before it is dropped (never blocks probing).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The configured OTLP headers as gRPC metadata (values may be secrets; exposed only here).
fn otlp_metadata(otlp: &OtlpConfig) -> anyhow::Result<MetadataMap> {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &otlp.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("`{name}` is not a valid header name"))?;
        let value = http::HeaderValue::from_str(value.expose_secret())
            .with_context(|| format!("the value of header `{name}` is not valid"))?;
        headers.insert(name, value);
    }
    Ok(MetadataMap::from_headers(headers))
}

/// The resource both exporters describe keycanary with.
fn otlp_resource(otlp: &OtlpConfig, location: &str) -> Resource {
    Resource::builder()
        .with_service_name(otlp.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("keycanary.location", location.to_owned()),
        ])
        .build()
}
