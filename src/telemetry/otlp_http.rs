//! The HTTP client OTLP/HTTP exports go through: the project's reqwest client (rustls on
//! aws-lc-rs), implementing `opentelemetry_http::HttpClient` for the exporters.
//!
//! The SDK's batch span processor and periodic metric reader run on their own threads and
//! poll the exporter's future there, outside any Tokio runtime; reqwest's async client
//! needs the runtime's reactor (the "no reactor running" panic of the exporter's own
//! async client). So each request is spawned onto the runtime the client was built in and
//! only its result is awaited, which works from any thread. Redirects are never followed
//! (the headers may carry an API key), the response body is bounded, and the configured
//! headers are set last, over anything the exporter added.

use crate::config::OtlpExport;
use crate::config::Protocol;
use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry_http::{HttpClient, HttpError};
use secrecy::ExposeSecret;
use std::sync::atomic::AtomicBool;

/// The most of a collector's answer that is read (an export's answer is a few bytes).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Sends OTLP/HTTP exports for one signal.
#[derive(Debug)]
pub(crate) struct OtlpHttpClient {
    http: reqwest::Client,
    /// The configured headers, marked sensitive (never shown in `Debug`).
    headers: HeaderMap,
    runtime: tokio::runtime::Handle,
    signal: &'static str,
    /// The collector's origin, for logs (never its path or query).
    origin: String,
    /// Whether the last export failed: failures and recoveries are logged once each.
    failing: AtomicBool,
}

impl OtlpHttpClient {
    /// Builds the client; must be called inside the Tokio runtime requests will run on.
    pub(crate) fn new(export: &OtlpExport, signal: &'static str) -> anyhow::Result<OtlpHttpClient> {
        Ok(OtlpHttpClient {
            http: client(export)?,
            headers: header_map(&export.headers)?,
            runtime: tokio::runtime::Handle::try_current()
                .context("the OTLP/HTTP exporter needs the async runtime")?,
            signal,
            origin: export.endpoint.origin().ascii_serialization(),
            failing: AtomicBool::new(false),
        })
    }
}

/// One GET to the collector's endpoint with `export`'s TLS settings: `Ok` on any HTTP
/// answer (the connection and the TLS handshake worked).
pub(crate) async fn reach(export: &OtlpExport) -> anyhow::Result<()> {
    let mut client = client_builder(export)?;
    if export.protocol == Protocol::Grpc && export.endpoint.scheme() == "http" {
        client = client.http2_prior_knowledge();
    }
    let client = client.build().context("cannot build an HTTP client")?;
    client
        .get(export.endpoint.as_str())
        .send()
        .await
        .map(drop)
        .map_err(|e| {
            anyhow::Error::new(e.without_url()).context(format!(
                "GET {}",
                export.endpoint.origin().ascii_serialization()
            ))
        })
}

/// The client for `export`: its timeout and TLS settings, no redirects.
fn client(export: &OtlpExport) -> anyhow::Result<reqwest::Client> {
    client_builder(export)?
        .build()
        .context("cannot build the OTLP/HTTP client")
}

fn client_builder(export: &OtlpExport) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(export.timeout)
        .user_agent(concat!("keycanary/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &export.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .context("ca_file holds no usable PEM certificate")?;
        // Like the gRPC exporter: the given CA replaces the system roots.
        builder = builder.tls_certs_only(certs);
    }
    if let Some(id) = &export.client_identity {
        let pem = format!(
            "{}\n{}",
            id.certificate.expose_secret(),
            id.key.expose_secret()
        );
        let identity = reqwest::Identity::from_pem(pem.as_bytes())
            .context("the client certificate and key are not a usable PEM pair")?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}

/// `headers` as a header map, values marked sensitive.
pub(crate) fn header_map(headers: &[(String, secrecy::SecretString)]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("`{name}` is not a valid header name"))?;
        let mut value = HeaderValue::from_str(value.expose_secret())
            .with_context(|| format!("the value of header `{name}` is not valid"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .headers(self.headers.clone())
            .body(body);
        let sent = self.runtime.spawn(async move {
            // Without the URL: errors are logged, and a URL may carry more than the host.
            let mut response = request.send().await.map_err(reqwest::Error::without_url)?;
            let status = response.status();
            let headers = response.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(reqwest::Error::without_url)?
            {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(HttpError::from(format!(
                        "the collector's answer is over {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, headers, body))
        });
        let (status, headers, body) = match sent.await.map_err(HttpError::from).and_then(|r| r) {
            Ok(answer) => answer,
            Err(e) => {
                self.outcome(Some(crate::model::wire::error_chain(&*e)));
                return Err(e);
            }
        };
        let failed = (!status.is_success()).then(|| format!("the collector answered {status}"));
        self.outcome(failed);
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

impl OtlpHttpClient {
    /// Logs the first failure after a success and the first success after failures.
    fn outcome(&self, failure: Option<String>) {
        let change = super::logged::change(&self.failing, failure.is_none());
        let cause = failure.unwrap_or_default();
        super::logged::log(change, self.signal, &self.origin, &cause);
    }
}
