//! The HTTP client side of a probe: building clients (optionally pinned to an edge
//! address), one capped and timed fetch, and reading caching evidence from headers.
//!
//! Failures are returned as data ([`FetchOutcome::Error`]), never raised. This file knows
//! nothing about JWKS or tokens.

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::model::{CacheHeaders, Fetch, FetchErrorKind, FetchOutcome, HttpResponse};
use crate::probe::jwks::sha256_hex;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

const USER_AGENT: &str = concat!("keycanary/", env!("CARGO_PKG_VERSION"));

/// Clients reused across rounds so connection and TLS set-up are not re-done: one plain
/// client, and one client per pinned edge address (shared by every host pinned to it, so
/// a fleet of thousands of tenants behind a few edges builds a few clients, not one per
/// tenant).
pub struct Clients {
    settings: Settings,
    pinned: Mutex<HashMap<IpAddr, (Arc<EdgeResolver>, reqwest::Client)>>,
    plain: reqwest::Client,
    /// For requests that carry credentials (token requests): never follows a redirect.
    no_redirects: reqwest::Client,
}

/// Name resolution of an edge's client: the hosts pinned to the edge resolve to its
/// address (the URL's port is kept), any other host (a redirect elsewhere) through the
/// system resolver as an unpinned client would.
#[derive(Debug)]
struct EdgeResolver {
    edge: IpAddr,
    hosts: RwLock<HashSet<String>>,
}

impl Resolve for EdgeResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let pinned = self
            .hosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&host);
        let edge = self.edge;
        Box::pin(async move {
            if pinned {
                // reqwest uses the URL's port whatever port is given here.
                let addrs: Addrs = Box::new(std::iter::once(SocketAddr::new(edge, 0)));
                return Ok(addrs);
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

impl Clients {
    pub fn new(settings: &Settings) -> anyhow::Result<Clients> {
        Ok(Clients {
            settings: settings.clone(),
            pinned: Mutex::new(HashMap::new()),
            plain: builder(settings).build()?,
            no_redirects: builder(settings)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    /// The client for requests that are not pinned to an edge.
    pub fn plain(&self) -> reqwest::Client {
        self.plain.clone()
    }

    /// The client for requests that carry a credential: a redirect is answered as it
    /// came (the 3xx and its [`HttpResponse::redirect_to`]), never followed, so a secret
    /// is only ever sent to the URL it was configured for.
    pub fn no_redirects(&self) -> reqwest::Client {
        self.no_redirects.clone()
    }

    /// The client for `url`, pinned to `edge` when given (Host and SNI stay the URL's, and
    /// so does the port).
    pub fn for_url(&self, url: &url::Url, edge: Option<IpAddr>) -> Result<reqwest::Client, String> {
        let Some(ip) = edge else {
            return Ok(self.plain.clone());
        };
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        let (resolver, client) = match pinned.get(&ip) {
            Some(found) => found.clone(),
            None => {
                let resolver = Arc::new(EdgeResolver {
                    edge: ip,
                    hosts: RwLock::new(HashSet::new()),
                });
                let client = builder(&self.settings)
                    .dns_resolver(resolver.clone())
                    .build()
                    .map_err(|e| e.to_string())?;
                pinned.insert(ip, (resolver.clone(), client.clone()));
                (resolver, client)
            }
        };
        drop(pinned);
        resolver
            .hosts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host);
        Ok(client)
    }

    /// The probe timeout (`timeout`): one request's bound, and a whole sign-in's.
    pub fn timeout(&self) -> std::time::Duration {
        self.settings.timeout
    }

    pub fn max_body_bytes(&self) -> u64 {
        self.settings.max_body_bytes
    }
}

fn builder(settings: &Settings) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::limited(settings.max_redirects))
        .tls_info(true)
        .no_proxy()
}

/// What to send.
pub struct Request<'a> {
    pub client: reqwest::Client,
    pub method: reqwest::Method,
    pub url: &'a url::Url,
    pub headers: HeaderMap,
    /// A form body (token requests). Never logged or recorded.
    pub form: Option<Vec<(&'static str, String)>>,
    pub basic_auth: Option<(String, String)>,
}

impl<'a> Request<'a> {
    pub fn get(client: reqwest::Client, url: &'a url::Url) -> Self {
        Request {
            client,
            method: reqwest::Method::GET,
            url,
            headers: HeaderMap::new(),
            form: None,
            basic_auth: None,
        }
    }
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(HeaderName::from_static(name), v);
        }
        self
    }
}

/// Sends one request and records it. The body is returned for parsing when a response came.
pub async fn fetch(
    req: Request<'_>,
    clock: &SharedClock,
    max_body: u64,
) -> (Fetch, Option<Vec<u8>>) {
    let started_at = clock.now();
    let start = crate::clock::monotonic();
    let mut builder = req.builder();
    let mut trace_headers = HeaderMap::new();
    crate::telemetry::traces::inject_trace_context(&mut trace_headers);
    if !trace_headers.is_empty() {
        builder = builder.headers(trace_headers);
    }
    let (outcome, body) = send(builder, max_body).await;
    let duration_ms = start.elapsed().as_millis() as u64;
    (
        Fetch {
            url: req.url.to_string(),
            started_at,
            duration_ms,
            outcome,
        },
        body,
    )
}

impl Request<'_> {
    fn builder(&self) -> reqwest::RequestBuilder {
        let mut b = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some((user, pass)) = &self.basic_auth {
            b = b.basic_auth(user, Some(pass));
        }
        if let Some(form) = &self.form {
            b = b.form(form);
        }
        b
    }
}

async fn send(builder: reqwest::RequestBuilder, max_body: u64) -> (FetchOutcome, Option<Vec<u8>>) {
    let mut resp = match builder.send().await {
        Ok(r) => r,
        Err(e) => return (error_outcome(&e), None),
    };
    let status = resp.status().as_u16();
    let redirect_to = redirect_origin(status, resp.url(), resp.headers());
    let headers = cache_headers(resp.headers());
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let leaf = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate());
    let tls_leaf_sha256 = leaf.map(sha256_hex);
    let tls_leaf_not_after = leaf.and_then(not_after);
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > max_body {
                    let message = format!(
                        "body larger than {max_body} bytes (raise max_body_bytes if this is expected)"
                    );
                    return (
                        FetchOutcome::Error {
                            kind: FetchErrorKind::BodyTooLarge,
                            message,
                        },
                        None,
                    );
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return (error_outcome(&e), None),
        }
    }
    let response = HttpResponse {
        status,
        content_type,
        headers,
        body_sha256: sha256_hex(&body),
        body_len: body.len() as u64,
        tls_leaf_sha256,
        tls_leaf_not_after,
        redirect_to,
    };
    (FetchOutcome::Response(Box::new(response)), Some(body))
}

/// The origin a 3xx answer's `Location` points to (resolved against `base`); only the
/// origin, since the path and query may echo what was sent. `None` for other statuses.
fn redirect_origin(status: u16, base: &url::Url, h: &HeaderMap) -> Option<String> {
    if !(300..400).contains(&status) {
        return None;
    }
    let location = h.get("location").and_then(|v| v.to_str().ok());
    let origin = match location.map(|l| base.join(l)) {
        Some(Ok(u)) => u.origin().ascii_serialization(),
        Some(Err(_)) => "an address that is not a URL".to_owned(),
        None => "nowhere (no Location header)".to_owned(),
    };
    Some(crate::model::wire::text(
        &origin,
        crate::model::wire::TEXT_MAX,
    ))
}

/// `notAfter` (Unix seconds) of a DER certificate; `None` when it does not parse.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

pub(super) fn error_outcome(e: &reqwest::Error) -> FetchOutcome {
    let chain = error_chain(e);
    let kind = if e.is_timeout() {
        FetchErrorKind::Timeout
    } else if e.is_redirect() {
        FetchErrorKind::Redirect
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake")
    {
        FetchErrorKind::Tls
    } else if e.is_connect() {
        FetchErrorKind::Connect
    } else {
        FetchErrorKind::Other
    };
    FetchOutcome::Error {
        kind,
        // Error texts may quote what a server sent (a certificate's names).
        message: crate::model::wire::text(&chain, 2 * crate::model::wire::TEXT_MAX),
    }
}

/// The error and its sources on one line, without the URL (the Fetch records it apart).
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = vec![e.without_url_ref()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let s = self.to_string();
        match self.url() {
            Some(u) => s
                .replace(&format!(" ({u})"), "")
                .replace(&format!(" for url ({u})"), ""),
            None => s,
        }
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = h
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .collect();
    if values.is_empty() {
        return None;
    }
    // `to_str` let only visible ASCII (and tabs) through; the length is the server's.
    let joined = values.join(", ");
    Some(if joined.len() > HEADER_MAX {
        crate::model::wire::text(&joined, HEADER_MAX)
    } else {
        joined
    })
}

/// Longest header value kept (longer ones are cut, with `…`).
const HEADER_MAX: usize = 1024;

/// Reads the caching evidence of a response.
pub fn cache_headers(h: &HeaderMap) -> CacheHeaders {
    let status_headers = [
        "x-cache-status",
        "x-cache",
        "cf-cache-status",
        "cache-status",
    ];
    let found = status_headers.iter().find_map(|n| {
        header(h, n)
            .filter(|v| !v.is_empty())
            .map(|v| (n.to_string(), v))
    });
    CacheHeaders {
        cache_control: header(h, "cache-control"),
        cdn_cache_control: header(h, "cdn-cache-control"),
        surrogate_control: header(h, "surrogate-control"),
        age: header(h, "age").and_then(|a| a.split(',').next().and_then(|a| a.trim().parse().ok())),
        etag: header(h, "etag"),
        last_modified: header(h, "last-modified"),
        expires: header(h, "expires"),
        date: header(h, "date"),
        pragma: header(h, "pragma"),
        cache_status_header: found.as_ref().map(|(n, _)| n.clone()),
        cache_status: found.map(|(_, v)| v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cache_evidence() {
        let mut h = HeaderMap::new();
        h.insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=60"),
        );
        h.insert("age", HeaderValue::from_static("17"));
        h.insert("x-cache", HeaderValue::from_static("Hit from cloudfront"));
        h.insert("x-cache-status", HeaderValue::from_static(""));
        let c = cache_headers(&h);
        assert_eq!(c.cache_control.as_deref(), Some("public, max-age=60"));
        assert_eq!(c.age, Some(17));
        assert_eq!(c.cache_status.as_deref(), Some("Hit from cloudfront"));
        assert_eq!(c.cache_status_header.as_deref(), Some("x-cache"));
        assert_eq!(c.served_from_cache(), Some(true));
        assert_eq!(cache_headers(&HeaderMap::new()), CacheHeaders::default());
    }

    #[test]
    fn reads_tls_leaf_expiry() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["cdn.example".to_owned()]).unwrap();
        p.not_after = rcgen::date_time_ymd(2031, 6, 1);
        let der = p.self_signed(&pair).unwrap().der().to_vec();
        assert_eq!(not_after(&der), Some(1_938_038_400));
        assert_eq!(not_after(b"not a certificate"), None);
    }
}
