//! One probe round: for each domain of a tenant, fetch discovery, log in, fetch every JWKS
//! view (each path, each pinned edge, and the origin view), and verify every fresh token
//! against every view. The result is an [`Observation`]: plain data, failures included.
//!
//! This module never decides whether something is a problem (that is `detect`), never
//! raises on a bad answer from the IdP, and never records a token or a secret.

pub mod http;
pub mod jwks;
pub mod refresh;
pub mod token;

use crate::clock::SharedClock;
use crate::config::{ClientAuth, Config, Domain, Grant, Login, Origin, Tenant};
use crate::model::{
    DiscoveryDoc, DiscoveryObservation, DiscoveryResult, DomainObservation, Fetch, FetchErrorKind,
    FetchOutcome, KeySetParse, LoginObservation, LoginResult, Observation, TokenKind, ViewId,
    ViewKind, ViewObservation,
};
use crate::telemetry::traces::RoundTrace;
use futures_util::future::join_all;
use http::{Clients, Request, fetch};
use secrecy::ExposeSecret;
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
    /// The newest refresh token of each domain whose IdP rotates them.
    refresh_tokens: refresh::RefreshTokens,
}

impl Prober {
    pub fn new(config: &Config, clock: SharedClock) -> anyhow::Result<Prober> {
        Ok(Prober {
            clients: Clients::new(&config.settings)?,
            clock,
            location: config.settings.location.clone(),
            max_body: config.settings.max_body_bytes,
            refresh_tokens: refresh::RefreshTokens::in_dir(&config.settings.state_dir),
        })
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
                        Some(self.login(&key, login, doc).await)
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
                    let entry = parsed
                        .entry(r.body_sha256.clone())
                        .or_insert_with(|| jwks::parse(&body));
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
            obs
        });
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

    /// Logs in and returns the observation plus the raw tokens (kept only for this round).
    /// The span carries the grant, status and outcome: never the form, secret or tokens.
    #[instrument(name = "probe.login", skip_all, fields(grant = login.grant.as_str(), client_id = %login.client_id, http.status = field::Empty, result = field::Empty, error.kind = field::Empty))]
    async fn login(
        &self,
        refresh_key: &str,
        login: &Login,
        doc: Option<&DiscoveryDoc>,
    ) -> (LoginObservation, Vec<(TokenKind, String)>) {
        let grant = login.grant.as_str().to_owned();
        let token_url = match (&login.token_url, doc.and_then(|d| d.token_endpoint.as_deref())) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(s)) => Url::parse(s).map_err(|e| format!("discovery's token_endpoint `{s}` is not a URL ({e})")),
            (None, None) => Err("no token URL: discovery failed or has no token_endpoint, and login.token_url is not set".to_owned()),
        };
        let token_url = match token_url {
            Ok(u) => u,
            Err(reason) => {
                Span::current().record("result", "failed");
                return (
                    LoginObservation {
                        grant,
                        fetch: None,
                        result: LoginResult::Failed { reason },
                    },
                    Vec::new(),
                );
            }
        };
        let mut form: Vec<(&'static str, String)> = vec![("grant_type", grant.clone())];
        // When the IdP rotated the refresh token, the newest one (see `refresh`).
        let mut rotated_at = None;
        match &login.grant {
            Grant::ClientCredentials => {}
            Grant::Password { username, password } => {
                form.push(("username", username.clone()));
                form.push(("password", password.expose_secret().to_owned()));
            }
            Grant::RefreshToken { refresh_token } => {
                let current = self.refresh_tokens.current(refresh_key, refresh_token);
                rotated_at = current.rotated_at;
                form.push(("refresh_token", current.token.expose_secret().to_owned()))
            }
        }
        for (name, value) in [
            ("resource", &login.resource),
            ("audience", &login.audience),
            ("scope", &login.scope),
        ] {
            if let Some(v) = value {
                form.push((name, v.clone()));
            }
        }
        let secret = login
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned());
        let mut basic_auth = None;
        match login.auth {
            ClientAuth::ClientSecretBasic => {
                basic_auth = Some((
                    form_encode(&login.client_id),
                    form_encode(secret.as_deref().unwrap_or("")),
                ));
            }
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", login.client_id.clone()));
                if let Some(s) = secret {
                    form.push(("client_secret", s));
                }
            }
        }
        let client = self.clients.plain();
        let mut req = Request::get(client, &token_url).header("accept", "application/json");
        req.method = reqwest::Method::POST;
        req.form = Some(form);
        req.basic_auth = basic_auth;
        let (fetch, body) = fetch(req, &self.clock, self.max_body).await;
        let (result, tokens) = match (fetch.response(), body) {
            (Some(r), Some(body)) if (200..300).contains(&r.status) => {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => {
                        let mut tokens = Vec::new();
                        for (kind, name) in [
                            (TokenKind::AccessToken, "access_token"),
                            (TokenKind::IdToken, "id_token"),
                        ] {
                            if let Some(t) = v.get(name).and_then(Value::as_str) {
                                tokens.push((kind, t.to_owned()));
                            }
                        }
                        if let Grant::RefreshToken { refresh_token } = &login.grant
                            && let Some(new) = v.get("refresh_token").and_then(Value::as_str)
                            && new
                                != self
                                    .refresh_tokens
                                    .current(refresh_key, refresh_token)
                                    .token
                                    .expose_secret()
                            && let Err(e) = self.refresh_tokens.rotated(
                                refresh_key,
                                refresh_token,
                                new,
                                self.clock.now(),
                            )
                        {
                            tracing::error!(login = refresh_key, error = %e, "cannot store the rotated refresh token in the state directory; it is used until keycanary stops, then the configured one is presented again");
                        }
                        if tokens.is_empty() {
                            (
                                LoginResult::Failed {
                                    reason: "the token response has no access_token or id_token"
                                        .into(),
                                },
                                tokens,
                            )
                        } else {
                            (LoginResult::Tokens { tokens: Vec::new() }, tokens)
                        }
                    }
                    Err(_) => (
                        LoginResult::Failed {
                            reason: "the token response is not JSON".into(),
                        },
                        Vec::new(),
                    ),
                }
            }
            (Some(r), body) => {
                let detail = body.as_deref().map(oauth_error).unwrap_or_default();
                let rotated = rotated_at.map(|at| format!(" (to the rotated refresh token stored at {at} in the state directory; if the IdP revoked it, set a new refresh_token in probes.toml)")).unwrap_or_default();
                (
                    LoginResult::Failed {
                        reason: format!(
                            "the token endpoint answered HTTP {}{detail}{rotated}",
                            r.status
                        ),
                    },
                    Vec::new(),
                )
            }
            (None, _) => (
                LoginResult::Failed {
                    reason: format!("the token request failed: {}", fetch_error(&fetch)),
                },
                Vec::new(),
            ),
        };
        record_fetch(&fetch);
        Span::current().record(
            "result",
            match &result {
                LoginResult::Tokens { .. } => "tokens",
                LoginResult::Failed { .. } => "failed",
            },
        );
        (
            LoginObservation {
                grant,
                fetch: Some(fetch),
                result,
            },
            tokens,
        )
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

/// RFC 6749 2.3.1: client id and secret are form-encoded before HTTP Basic.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `: error_code (description)` from an OAuth error body, bounded; empty if none.
fn oauth_error(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let code = v.get("error").and_then(Value::as_str).unwrap_or_default();
    let desc = v
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out = String::new();
    if !code.is_empty() {
        out = format!(": {}", truncate(code, 64));
        if !desc.is_empty() {
            out.push_str(&format!(" ({})", truncate(desc, 160)));
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).collect::<String>() + "…"
    }
}

fn fetch_error(fetch: &Fetch) -> String {
    match &fetch.outcome {
        FetchOutcome::Error { message, .. } => message.clone(),
        FetchOutcome::Response(r) => format!("HTTP {}", r.status),
    }
}

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
    let s = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
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
                    .map(str::to_owned)
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
