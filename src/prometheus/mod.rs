//! Asking Prometheus for the rotation gate over every location: one instant query
//! (`GET /api/v1/query`, see `detect::gate::global::query`) whose samples
//! `detect::gate::global::rotation` judges. This room only fetches and reads the answer;
//! the rules are `detect`'s.
//!
//! Prometheus' answer is read as hostile: at most [`MAX_RESPONSE_BYTES`] of body and
//! [`MAX_SAMPLES`] samples, no redirect followed, a time bound on the whole request, and
//! anything but a `success` instant vector is an error. An error is never an answer: the
//! caller reports it (the API answers 503 with the reason, the CLI exits 2), so an
//! unreachable or confused Prometheus can never read as "safe".

mod vector;

pub use vector::parse_vector;

use crate::detect::gate::GateAnswer;
use crate::detect::gate::global::{self, Sample, Scope};
use std::time::Duration;
use url::Url;

/// Most bytes of a query's answer read; a larger one is an error.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Most samples of an answer read; more is an error.
pub const MAX_SAMPLES: usize = 100_000;
/// How long one query may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why Prometheus gave no usable answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("cannot reach Prometheus at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus at {url} answered HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("Prometheus' answer is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("Prometheus' answer is not an instant vector: {0}")]
    Garbage(String),
    #[error("not a tenant name: use letters, digits, `_`, `-` or `.`")]
    NotATenant,
}

/// The rotation gate for `scope` over every location, from the Prometheus at `base`.
/// A tenant name that could not be a configured one is refused before any query.
pub async fn rotation(base: &Url, scope: &Scope<'_>) -> Result<GateAnswer, QueryError> {
    if !global::is_tenant_name(scope.tenant) {
        return Err(QueryError::NotATenant);
    }
    let samples = instant_query(base, &global::query(scope.tenant)).await?;
    Ok(global::rotation(&samples, scope))
}

/// The retirement gate for `scope` over every location, from the Prometheus at `base`,
/// with what this daemon's history says (`signing`, `local`: see `global::retirement`).
pub async fn retirement(
    base: &Url,
    scope: &Scope<'_>,
    signing: Option<global::Signing<'_>>,
    local: &GateAnswer,
) -> Result<GateAnswer, QueryError> {
    if !global::is_tenant_name(scope.tenant) {
        return Err(QueryError::NotATenant);
    }
    let samples = instant_query(base, &global::query(scope.tenant)).await?;
    Ok(global::retirement(&samples, scope, signing, local))
}

/// `GET {base}/api/v1/query?query=…`: the samples of an instant vector.
pub async fn instant_query(base: &Url, query: &str) -> Result<Vec<Sample>, QueryError> {
    let mut url = base.clone();
    let path = format!("{}/api/v1/query", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url.query_pairs_mut().clear().append_pair("query", query);
    let shown = format!("{}{}", base.origin().ascii_serialization(), url.path());
    let unreachable = |e: reqwest::Error| QueryError::Unreachable {
        url: shown.clone(),
        reason: error_chain(&e),
    };
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(unreachable)?;
    let mut resp = client.get(url).send().await.map_err(unreachable)?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(QueryError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    // Prometheus answers errors as JSON too (400, 422, 503): say what it said.
    if status != 200 {
        let detail = vector::error_of(&body)
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(QueryError::Status {
            url: shown,
            status,
            detail,
        });
    }
    parse_vector(&body)
}

/// An error and its causes on one line (reqwest's own message hides the cause), bounded.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let chain = crate::model::wire::error_chain(e);
    crate::model::wire::text(&chain, crate::model::wire::TEXT_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on 127.0.0.1:0 answering every request with `response`.
    async fn serve(response: Vec<u8>) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&response).await;
                let _ = s.shutdown().await;
            }
        });
        Url::parse(&format!("http://{addr}/prom/")).unwrap()
    }

    fn http(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn what_a_prometheus_may_answer() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"tenant":"acme"},"value":[1,"2"]}]}}"#;
        let base = serve(http("200 OK", "", ok)).await;
        let samples = instant_query(&base, "up").await.unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].value, 2.0);

        let big = vec![b' '; MAX_RESPONSE_BYTES + 1];
        let base = serve(http("200 OK", "", &big)).await;
        assert_eq!(instant_query(&base, "up").await, Err(QueryError::TooLarge));

        let base = serve(http("302 Found", "location: http://127.0.0.1:1/\r\n", b"")).await;
        let e = instant_query(&base, "up").await.unwrap_err();
        assert!(matches!(e, QueryError::Status { status: 302, .. }), "{e}");

        let body = br#"{"status":"error","errorType":"unavailable","error":"TSDB not ready"}"#;
        let base = serve(http("503 Service Unavailable", "", body)).await;
        let e = instant_query(&base, "up").await.unwrap_err().to_string();
        assert!(e.ends_with("answered HTTP 503: TSDB not ready"), "{e}");
        assert!(e.contains("/prom/api/v1/query"), "{e}");

        let base = serve(http("200 OK", "", b"<html>hello</html>")).await;
        let e = instant_query(&base, "up").await.unwrap_err();
        assert!(matches!(e, QueryError::Garbage(_)), "{e}");

        // Nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = instant_query(&base, "up").await.unwrap_err();
        assert!(matches!(e, QueryError::Unreachable { .. }), "{e}");
    }
}
