//! One probe round: for each domain of a tenant, fetch discovery, log in, fetch every JWKS
//! view (each path, each pinned edge, and the origin view), and verify every fresh token
//! against every view. The result is an [`Observation`]: plain data, failures included.
//!
//! This module never decides whether something is a problem (that is `detect`), never
//! raises on a bad answer from the IdP, and never records a token or a secret.

pub mod assertion;
pub mod authcode;
pub mod http;
pub mod inventory;
pub mod jwks;
pub mod login;
pub mod refresh;
pub mod token;

use crate::clock::SharedClock;
use crate::config::{Config, Domain, Origin, Tenant};
use crate::model::wire;
use crate::model::{
    DiscoveryDoc, DiscoveryObservation, DiscoveryResult, DomainObservation, Fetch, FetchErrorKind,
    FetchOutcome, KeySetParse, LoginResult, Observation, TokenKind, ViewId, ViewKind,
    ViewObservation,
};
use crate::telemetry::traces::RoundTrace;
use futures_util::future::join_all;
use http::{Clients, Request, fetch};
use serde_json::Value;
use std::collections::HashMap;
use tracing::{Instrument, Span, debug, field, info_span, instrument};
use url::Url;

/// What a round needs from outside: clients, the clock, and the settings.
pub struct Prober {
    clients: Clients,
    clock: SharedClock,
    location: String,
    max_body: u64,
    /// Every secret value of the config, taken out of what the IdP sends back.
    secrets: Vec<String>,
    /// The newest refresh token of each domain whose IdP rotates them.
    refresh_tokens: refresh::RefreshTokens,
    /// The headless Chromium of `driver = "browser"` sign-ins, started on the first one.
    chromium: authcode::browser::Chromium,
}

impl Prober {
    pub fn new(config: &Config, clock: SharedClock) -> anyhow::Result<Prober> {
        Ok(Prober {
            clients: Clients::new(&config.settings)?,
            clock,
            location: config.settings.location.clone(),
            max_body: config.settings.max_body_bytes,
            secrets: config.secret_values(),
            refresh_tokens: refresh::RefreshTokens::in_dir(&config.settings.state_dir),
            chromium: authcode::browser::Chromium::default(),
        })
    }

    /// `s` without any secret value keycanary knows ([`wire::scrub`]).
    fn scrub(&self, s: &str) -> String {
        wire::scrub(s, &self.secrets)
    }

    /// `v` with every string in it (keys included) scrubbed: for what an IdP may fill
    /// with what it was sent (a login's reasons and claims, discovery's fields).
    fn scrubbed<T: serde::Serialize + serde::de::DeserializeOwned>(&self, v: T) -> T {
        if self.secrets.is_empty() {
            return v;
        }
        let Ok(mut json) = serde_json::to_value(&v) else {
            return v;
        };
        if !scrub_json(&mut json, &self.secrets) {
            return v;
        }
        serde_json::from_value(json).unwrap_or(v)
    }

    /// Probes every tenant concurrently.
    pub async fn round(&self, config: &Config) -> Vec<Observation> {
        let traced = self.round_traced(config).await;
        traced.into_iter().map(|(o, _)| o).collect()
    }

    /// [`Prober::round`], each tenant's observation with its round's trace.
    pub async fn round_traced(&self, config: &Config) -> Vec<(Observation, RoundTrace)> {
        join_all(config.tenants.iter().map(|t| self.tenant_traced(t))).await
    }

    /// One round of one tenant, with its trace: its span `probe.round` is the root of that
    /// round's trace, which the round's judgement joins (`detect.assess`).
    #[instrument(name = "probe.round", parent = None, skip_all, fields(tenant = %tenant.name, location = %self.location))]
    pub async fn tenant_traced(&self, tenant: &Tenant) -> (Observation, RoundTrace) {
        let started_at = self.clock.now();
        let domains = join_all(tenant.domains.iter().map(|d| self.domain(&tenant.name, d))).await;
        let observation = Observation {
            tenant: tenant.name.clone(),
            location: self.location.clone(),
            started_at,
            finished_at: self.clock.now(),
            domains,
        };
        (observation, RoundTrace::current())
    }

    #[instrument(name = "probe.domain", skip_all, fields(domain = %domain.name))]
    async fn domain(&self, tenant: &str, domain: &Domain) -> DomainObservation {
        let discovery = if domain.discovery {
            Some(self.discovery(domain).await)
        } else {
            None
        };
        let doc = discovery.as_ref().and_then(DiscoveryObservation::doc);
        let targets = view_targets(domain, doc);
        let spans: Vec<Span> = targets.iter().map(|t| jwks_span(domain, t)).collect();
        let (login, fetched) = tokio::join!(
            async {
                match &domain.login {
                    Some(login) => {
                        let key = format!("{tenant}/{}", domain.name);
                        Some(self.login(&key, login, &domain.issuer, doc).await)
                    }
                    None => None,
                }
            },
            join_all(
                targets
                    .iter()
                    .zip(&spans)
                    .map(|(t, span)| self.view(t).instrument(span.clone()))
            )
        );
        // Parse each distinct body once.
        let mut parsed: HashMap<String, (KeySetParse, Vec<Value>)> = HashMap::new();
        let mut views = Vec::with_capacity(fetched.len());
        for ((target, (fetch, body)), span) in targets.iter().zip(fetched).zip(&spans) {
            let key_set = match (fetch.response(), body) {
                (Some(r), Some(body)) if (200..300).contains(&r.status) => {
                    let entry = parsed.entry(r.body_sha256.clone()).or_insert_with(|| {
                        // Kids and members are the IdP's text too: scrubbed once per body.
                        let (keys, raw) = jwks::parse(&body);
                        (self.scrubbed(keys), raw)
                    });
                    Some(entry.0.clone())
                }
                _ => None,
            };
            if let Some(k) = &key_set {
                span.record("jwks.kids", k.keys().len());
                span.record("jwks.parse", parse_code(k));
            }
            views.push(ViewObservation {
                id: target.id.clone(),
                kind: target.kind,
                fetch,
                key_set,
            });
        }
        let login = login.map(|(mut obs, raw_tokens)| {
            let view_keys: Vec<token::ViewKeys<'_>> = views
                .iter()
                .map(|v| token::ViewKeys {
                    view: v.id.clone(),
                    keys: match (&v.key_set, v.fetch.response()) {
                        (Some(KeySetParse::Parsed { .. }), Some(r)) => {
                            parsed.get(&r.body_sha256).map(|(_, raw)| raw.as_slice())
                        }
                        _ => None,
                    },
                })
                .collect();
            let mut tokens = Vec::new();
            let mut failure = None;
            for (kind, raw) in &raw_tokens {
                match token::decode(*kind, raw) {
                    Ok(jwt) => tokens.push(jwt.check_against(&view_keys)),
                    Err(reason) if *kind == TokenKind::AccessToken && raw_tokens.len() > 1 => {
                        debug!(%reason, "access token is not a JWT; checking the id_token only");
                    }
                    Err(reason) => failure = Some(reason),
                }
            }
            if let Some(reason) = failure.filter(|_| tokens.is_empty()) {
                obs.result = LoginResult::Failed { reason };
            } else if let LoginResult::Tokens { tokens: t } = &mut obs.result {
                *t = tokens;
            }
            self.scrubbed(obs)
        });
        let discovery = discovery.map(|d| self.scrubbed(d));
        DomainObservation {
            domain: domain.name.clone(),
            issuer: domain.issuer.to_string(),
            discovery,
            login,
            views,
        }
    }

    #[instrument(name = "probe.discovery", skip_all, fields(domain = %domain.name, http.status = field::Empty, result = field::Empty, body.sha256 = field::Empty, cache.status = field::Empty, age = field::Empty, error.kind = field::Empty))]
    async fn discovery(&self, domain: &Domain) -> DiscoveryObservation {
        let url = domain.discovery_url();
        let req = Request::get(self.clients.plain(), &url).header("accept", "application/json");
        let (fetch, body) = fetch(req, &self.clock, self.max_body).await;
        let result = match (fetch.response(), body) {
            (Some(r), Some(body)) if r.status == 200 => parse_discovery(&body),
            (Some(r), _) => DiscoveryResult::Invalid {
                reason: format!("discovery answered HTTP {}", r.status),
            },
            (None, _) => DiscoveryResult::Invalid {
                reason: format!("discovery fetch failed: {}", fetch_error(&fetch)),
            },
        };
        record_fetch(&fetch);
        Span::current().record(
            "result",
            match &result {
                DiscoveryResult::Parsed { .. } => "parsed",
                DiscoveryResult::Invalid { .. } => "invalid",
            },
        );
        DiscoveryObservation { fetch, result }
    }

    async fn view(&self, target: &ViewTarget) -> (Fetch, Option<Vec<u8>>) {
        // A fetch that could not be sent at all.
        let unsent = |url: String, message: String| {
            let fetch = Fetch {
                url,
                started_at: self.clock.now(),
                duration_ms: 0,
                outcome: FetchOutcome::Error {
                    kind: FetchErrorKind::Other,
                    message,
                },
            };
            (fetch, None)
        };
        let Some(url) = &target.url else {
            let message = "no URL: discovery gave no jwks_uri and the path has no url";
            return unsent(String::new(), message.into());
        };
        let client = match self.clients.for_url(url, target.edge) {
            Ok(c) => c,
            Err(message) => return unsent(url.to_string(), message),
        };
        let mut req = Request::get(client, url)
            .header("accept", "application/jwk-set+json, application/json");
        if target.kind == ViewKind::Origin {
            req = req
                .header("cache-control", "no-cache")
                .header("pragma", "no-cache");
        }
        let (fetch, body) = fetch(req, &self.clock, self.max_body).await;
        record_fetch(&fetch);
        (fetch, body)
    }
}

/// The `probe.jwks` span of one view; fetch facts are recorded on it as they arrive.
fn jwks_span(domain: &Domain, t: &ViewTarget) -> Span {
    info_span!(
        "probe.jwks",
        domain = %domain.name,
        view = %t.id.path,
        view.kind = match t.kind {
            ViewKind::Edge => "edge",
            ViewKind::Origin => "origin",
        },
        edge = t.edge.map(|e| e.to_string()),
        http.status = field::Empty,
        cache.status = field::Empty,
        age = field::Empty,
        body.sha256 = field::Empty,
        jwks.kids = field::Empty,
        jwks.parse = field::Empty,
        error.kind = field::Empty,
    )
}

/// Records a fetch's status and caching evidence (or its error kind) on the current span.
/// Fields the span did not declare are ignored by `tracing`.
fn record_fetch(fetch: &Fetch) {
    let span = Span::current();
    match &fetch.outcome {
        FetchOutcome::Response(r) => {
            span.record("http.status", r.status);
            span.record("body.sha256", r.body_sha256.as_str());
            if let Some(c) = &r.headers.cache_status {
                span.record("cache.status", c.as_str());
            }
            if let Some(age) = r.headers.age {
                span.record("age", age);
            }
        }
        FetchOutcome::Error { kind, .. } => {
            span.record("error.kind", field::debug(kind));
        }
    }
}

fn parse_code(k: &KeySetParse) -> &'static str {
    match k {
        KeySetParse::Parsed { .. } => "parsed",
        KeySetParse::Invalid { .. } => "invalid",
    }
}

/// Scrubs every string (and object key) in `v`; whether anything changed.
fn scrub_json(v: &mut Value, secrets: &[String]) -> bool {
    match v {
        Value::String(s) => {
            let clean = wire::scrub(s, secrets);
            let changed = clean != *s;
            *s = clean;
            changed
        }
        Value::Array(a) => a
            .iter_mut()
            .fold(false, |acc, x| scrub_json(x, secrets) | acc),
        Value::Object(o) => {
            let old = std::mem::take(o);
            let mut changed = false;
            for (k, mut x) in old {
                let key = wire::scrub(&k, secrets);
                changed |= key != k;
                changed |= scrub_json(&mut x, secrets);
                o.insert(key, x);
            }
            changed
        }
        _ => false,
    }
}

fn fetch_error(fetch: &Fetch) -> String {
    match &fetch.outcome {
        FetchOutcome::Error { message, .. } => message.clone(),
        FetchOutcome::Response(r) => format!("HTTP {}", r.status),
    }
}

/// Longest URL kept from a discovery document.
const URL_MAX: usize = 2048;

pub fn parse_discovery(body: &[u8]) -> DiscoveryResult {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if jwks::looks_like_html(body) => {
            return DiscoveryResult::Invalid {
                reason: "discovery is an HTML page, not JSON".into(),
            };
        }
        Err(_) => {
            return DiscoveryResult::Invalid {
                reason: "discovery is not JSON".into(),
            };
        }
    };
    // URLs are kept whole up to a generous bound; identifiers through `wire::ident`.
    let s = |name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .map(|s| wire::text(s, URL_MAX))
    };
    let (Some(issuer), Some(jwks_uri)) = (s("issuer"), s("jwks_uri")) else {
        let missing: Vec<&str> = ["issuer", "jwks_uri"]
            .into_iter()
            .filter(|n| s(n).is_none())
            .collect();
        return DiscoveryResult::Invalid {
            reason: format!("discovery lacks {}", missing.join(" and ")),
        };
    };
    let list = |name: &str| -> Vec<String> {
        v.get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(wire::ident)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut other = Vec::new();
    if let Some(obj) = v.as_object() {
        for (name, _) in obj.iter().filter(|(n, _)| {
            n.ends_with("_signing_alg_values_supported")
                && *n != "id_token_signing_alg_values_supported"
        }) {
            for alg in list(name) {
                if !other.contains(&alg) {
                    other.push(alg);
                }
            }
        }
    }
    DiscoveryResult::Parsed {
        doc: DiscoveryDoc {
            issuer,
            jwks_uri,
            token_endpoint: s("token_endpoint"),
            authorization_endpoint: s("authorization_endpoint"),
            id_token_signing_alg_values_supported: list("id_token_signing_alg_values_supported"),
            other_signing_alg_values_supported: other,
        },
    }
}

/// A view to fetch: resolved URL (if any), kind, pin.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewTarget {
    pub id: ViewId,
    pub kind: ViewKind,
    pub url: Option<Url>,
    pub edge: Option<std::net::IpAddr>,
}

/// Every view of a domain: each path (once per pinned edge, or once unpinned), then the
/// origin view.
pub fn view_targets(domain: &Domain, doc: Option<&DiscoveryDoc>) -> Vec<ViewTarget> {
    let discovered = doc.and_then(|d| Url::parse(&d.jwks_uri).ok());
    let mut out: Vec<ViewTarget> = Vec::new();
    for view in domain.views() {
        let target = match view.path {
            Some(path) => ViewTarget {
                id: view.id,
                kind: ViewKind::Edge,
                url: path.url.clone().or_else(|| discovered.clone()),
                edge: view.edge,
            },
            None => ViewTarget {
                id: view.id,
                kind: ViewKind::Origin,
                url: match &domain.origin {
                    Origin::Url(u) => Some(u.clone()),
                    Origin::Bust { param } => {
                        out.first().and_then(|t| t.url.clone()).map(|mut u| {
                            u.query_pairs_mut().append_pair(param, &nonce());
                            u
                        })
                    }
                },
                edge: None,
            },
        };
        out.push(target);
    }
    out
}

fn nonce() -> String {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    crate::model::hex(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_parsing() {
        let ok = br#"{"issuer":"https://i","jwks_uri":"https://i/jwks","token_endpoint":"https://i/token",
            "id_token_signing_alg_values_supported":["RS256"],"userinfo_signing_alg_values_supported":["ES256","RS256"]}"#;
        match parse_discovery(ok) {
            DiscoveryResult::Parsed { doc } => {
                assert_eq!(doc.token_endpoint.as_deref(), Some("https://i/token"));
                assert_eq!(doc.other_signing_alg_values_supported, ["ES256", "RS256"]);
            }
            other => panic!("{other:?}"),
        }
        let check = |body: &[u8], fragment: &str| match parse_discovery(body) {
            DiscoveryResult::Invalid { reason } => assert!(reason.contains(fragment), "{reason}"),
            other => panic!("{other:?}"),
        };
        check(b"<html>login</html>", "HTML");
        check(b"nope", "not JSON");
        check(br#"{"issuer":"x"}"#, "lacks jwks_uri");
        check(br#"{}"#, "lacks issuer and jwks_uri");
    }

    #[test]
    fn origin_view_busts_the_first_path() {
        let text = r#"
[[tenant]]
name = "t"
[[tenant.domain]]
name = "d"
issuer = "https://idp.example/t"
[[tenant.domain.jwks]]
name = "cdn"
[[tenant.domain.jwks]]
name = "pinned"
url = "https://cdn.example/t/jwks?x=1"
edges = ["192.0.2.1", "192.0.2.2"]
"#;
        let env = |_: &str| None;
        let cfg = Config::from_toml_str(
            text,
            "t",
            &crate::config::SecretSource {
                base_dir: std::path::Path::new("."),
                env: &env,
            },
        )
        .unwrap();
        let d = &cfg.tenants[0].domains[0];
        let doc = DiscoveryDoc {
            issuer: "https://idp.example/t".into(),
            jwks_uri: "https://idp.example/t/keys".into(),
            ..Default::default()
        };
        let t = view_targets(d, Some(&doc));
        let ids: Vec<String> = t.iter().map(|t| t.id.to_string()).collect();
        assert_eq!(
            ids,
            ["cdn", "pinned@192.0.2.1", "pinned@192.0.2.2", "origin"]
        );
        assert_eq!(
            t[0].url.as_ref().unwrap().as_str(),
            "https://idp.example/t/keys"
        );
        let origin = t[3].url.as_ref().unwrap();
        assert!(
            origin
                .as_str()
                .starts_with("https://idp.example/t/keys?keycanary_nocache="),
            "{origin}"
        );
        assert_eq!(t[3].kind, ViewKind::Origin);
        // Without discovery, the unresolved path has no URL; the origin then has none either.
        let t = view_targets(d, None);
        assert!(t[0].url.is_none() && t[3].url.is_none());
    }
}
