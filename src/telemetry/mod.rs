//! What keycanary tells operators about itself and what it sees: Prometheus metrics
//! rendered from the daemon's snapshot (`metrics`, in the text format of `exposition`;
//! the duration histograms they render are accumulated in `crate::snapshot::durations`),
//! the same families over OTLP (`otlp_metrics`) and OTLP traces of probe rounds (`traces`),
//! over gRPC (tonic) or HTTP/protobuf (`otlp_http`: the project's reqwest client), with
//! TLS on aws-lc-rs. Log set-up lives in `crate::cli`.

pub mod exposition;
mod logged;
pub mod metrics;
mod otlp_http;
pub mod otlp_metrics;
pub mod traces;

#[cfg(test)]
pub(crate) mod fixtures;

use crate::config::{OtlpConfig, OtlpExport, Protocol};
use anyhow::Context as _;
use logged::Logged;
use opentelemetry::KeyValue;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use secrecy::ExposeSecret;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

/// Configures a gRPC exporter builder for `export`: endpoint, timeout, TLS for `https`
/// (the system roots, or only `ca_file`'s CA when one is given; a client certificate
/// when configured) and the headers as metadata.
fn grpc<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    export: &OtlpExport,
) -> anyhow::Result<B> {
    let mut builder = builder
        .with_endpoint(export.endpoint.as_str().trim_end_matches('/'))
        .with_timeout(export.timeout)
        .with_interceptor(SetMetadata::of(export)?);
    if export.endpoint.scheme() == "https" {
        let mut tls = ClientTlsConfig::new();
        tls = match &export.ca_pem {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            None => tls.with_native_roots(),
        };
        if let Some(id) = &export.client_identity {
            tls = tls.identity(Identity::from_pem(
                id.certificate.expose_secret(),
                id.key.expose_secret(),
            ));
        }
        builder = builder.with_tls_config(tls);
    }
    Ok(builder)
}

/// Configures an HTTP/protobuf exporter builder for `export` (the full signal URL, the
/// timeout) with keycanary's own client ([`otlp_http`]).
fn http<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    export: &OtlpExport,
    signal: &'static str,
) -> anyhow::Result<B> {
    Ok(builder
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(export.endpoint.as_str())
        .with_timeout(export.timeout)
        .with_http_client(otlp_http::OtlpHttpClient::new(export, signal)?))
}

/// The span exporter for `export`, its failures logged. Must be called inside a Tokio
/// runtime.
fn span_exporter(export: &OtlpExport) -> anyhow::Result<Logged<opentelemetry_otlp::SpanExporter>> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let (exporter, logs_itself) = match export.protocol {
        Protocol::Grpc => (grpc(builder.with_tonic(), export)?.build(), false),
        Protocol::HttpProtobuf => (http(builder.with_http(), export, "traces")?.build(), true),
    };
    let exporter = exporter.context("cannot build the OTLP span exporter")?;
    Ok(Logged::new(
        exporter,
        "traces",
        collector(export, logs_itself),
    ))
}

/// The metric exporter for `export`, its failures logged. Must be called inside a Tokio
/// runtime.
fn metric_exporter(
    export: &OtlpExport,
) -> anyhow::Result<Logged<opentelemetry_otlp::MetricExporter>> {
    let builder = opentelemetry_otlp::MetricExporter::builder();
    let (exporter, logs_itself) = match export.protocol {
        Protocol::Grpc => (grpc(builder.with_tonic(), export)?.build(), false),
        Protocol::HttpProtobuf => (http(builder.with_http(), export, "metrics")?.build(), true),
    };
    let exporter = exporter.context("cannot build the OTLP metric exporter")?;
    Ok(Logged::new(
        exporter,
        "metrics",
        collector(export, logs_itself),
    ))
}

/// The collector's origin for [`Logged`]; `None` when the HTTP client already logs with
/// the cause the exporter would lose.
fn collector(export: &OtlpExport, logs_itself: bool) -> Option<String> {
    (!logs_itself).then(|| export.endpoint.origin().ascii_serialization())
}

/// Sets the configured headers on every gRPC export, over whatever the exporter put
/// there (it also reads `OTEL_EXPORTER_OTLP_HEADERS`, which the config already merged
/// under `probes.toml`'s own).
#[derive(Clone)]
struct SetMetadata(Vec<(AsciiMetadataKey, AsciiMetadataValue)>);

impl SetMetadata {
    fn of(export: &OtlpExport) -> anyhow::Result<SetMetadata> {
        let mut out = Vec::new();
        for (name, value) in &export.headers {
            let key = AsciiMetadataKey::from_bytes(name.as_bytes())
                .with_context(|| format!("`{name}` is not a valid gRPC metadata name"))?;
            let value = AsciiMetadataValue::try_from(value.expose_secret()).with_context(|| {
                format!("the value of header `{name}` is not valid gRPC metadata")
            })?;
            out.push((key, value));
        }
        Ok(SetMetadata(out))
    }
}

impl tonic::service::Interceptor for SetMetadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        for (key, value) in &self.0 {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

/// The resource both exporters describe keycanary with: `service.name`, the attributes of
/// `OTEL_RESOURCE_ATTRIBUTES`, then keycanary's own (`service.version`,
/// `keycanary.location`), which win.
fn otlp_resource(otlp: &OtlpConfig, location: &str) -> Resource {
    let own = ["service.version", "keycanary.location"];
    let attributes = otlp
        .resource_attributes
        .iter()
        .filter(|(k, _)| !own.contains(&k.as_str()))
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()));
    Resource::builder()
        .with_service_name(otlp.service_name.clone())
        .with_attributes(attributes)
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("keycanary.location", location.to_owned()),
        ])
        .build()
}

/// Tries each configured collector once (connection, TLS handshake with the configured
/// CA and client certificate, any HTTP answer) and logs an error naming the signal, the
/// collector and the cause when that fails, e.g. a certificate from another CA. Spawn
/// it: it never holds up probing, and exports keep being attempted either way.
pub async fn check_collectors(otlp: OtlpConfig) {
    let mut seen = Vec::new();
    for (signal, export) in [("traces", &otlp.traces), ("metrics", &otlp.metrics)] {
        let Some(export) = export else { continue };
        let origin = export.endpoint.origin().ascii_serialization();
        if seen.contains(&origin) {
            continue;
        }
        seen.push(origin.clone());
        match otlp_http::reach(export).await {
            Ok(()) => {
                tracing::info!(signal, collector = %origin, protocol = export.protocol.as_str(), "OTLP: the collector answers")
            }
            Err(e) => tracing::error!(
                signal,
                collector = %origin,
                "OTLP: cannot reach the collector: {e:#}; exports fail until this is fixed (probing goes on)"
            ),
        }
    }
}
