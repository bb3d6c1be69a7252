//! The lab's simulated identity provider (the origin): each tenant's published keys and
//! their lifecycle (`next` → `active` → `previous`), and the three endpoints per tenant
//! and domain — discovery, JWKS and the OAuth 2.0 token endpoint.
//!
//! Origin responses for discovery and JWKS carry `Content-Type`, the domain's
//! `Cache-Control`, an `ETag` (quoted SHA-256 prefix of the body), and `Date` /
//! `Last-Modified` from the injected clock (`Last-Modified` of a JWKS is when its key set
//! last changed). Injected failures ([`super::OriginFailure`]) turn JWKS responses into HTML
//! error pages (with the same `Cache-Control`).
//!
//! Token endpoint: grants `client_credentials`, `password` (also returns a refresh token
//! and an ID token) and `refresh_token` (rotating the token when the admin API says so:
//! the presented one is used up, the answer carries a new one); client authentication `client_secret_basic` or
//! `client_secret_post`. Access tokens are `at+jwt` JWTs signed by the tenant's signer,
//! issued by the issuer of the domain the request came through, `aud` = the `resource` or
//! `audience` parameter or `api://default`, `scope` = the `scope` parameter or `api`.
//!
//! Deliberately not here: caching (that is `cdn`), user consent, PKCE, the authorization
//! endpoint, percent-decoding of Basic credentials (the lab's credentials need none), and
//! token revocation or introspection.

use super::keys::{KeyAlg, KeyMaterial};
use super::{AppState, LabError, LabState, Reply, error_reply};
use crate::model::Timestamp;
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Lifetime of issued access and ID tokens.
pub const TOKEN_LIFETIME_SECS: i64 = 300;
pub const CLIENT_ID: &str = "keycanary";
pub const CLIENT_SECRET: &str = "lab-secret";
pub const USERNAME: &str = "probe";
pub const PASSWORD: &str = "lab-password";
/// A refresh token the lab always accepts, besides the ones it issued.
pub const REFRESH_TOKEN: &str = "lab-refresh-token";
pub const DEFAULT_AUDIENCE: &str = "api://default";
pub const DEFAULT_SCOPE: &str = "api";

/// Where a published key is in its lifecycle. `raw` keys came from `publish-raw` and never
/// sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Published, not signing yet (staged).
    Next,
    /// The signer.
    Active,
    /// Published, no longer signing.
    Previous,
    /// Published verbatim from the admin API.
    Raw,
}

#[derive(Debug, Clone)]
enum KeyBody {
    Generated(KeyMaterial),
    Raw(Value),
}

#[derive(Debug, Clone)]
struct PublishedKey {
    kid: Option<String>,
    status: KeyStatus,
    body: KeyBody,
}

impl PublishedKey {
    fn jwk(&self) -> Value {
        match &self.body {
            KeyBody::Generated(m) => m.jwk(self.kid.as_deref().unwrap_or_default()),
            KeyBody::Raw(v) => v.clone(),
        }
    }

    fn alg(&self) -> Option<String> {
        match &self.body {
            KeyBody::Generated(m) => Some(m.alg().as_str().to_owned()),
            KeyBody::Raw(v) => v.get("alg").and_then(Value::as_str).map(str::to_owned),
        }
    }
}

/// One key as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub status: KeyStatus,
}

/// One tenant of the lab: its algorithm and published keys, in publication order. Exactly
/// one generated key is `active` at any time.
#[derive(Debug)]
pub struct Tenant {
    name: String,
    alg: KeyAlg,
    keys: Vec<PublishedKey>,
    next_seq: u32,
    keys_changed_at: Timestamp,
}

impl Tenant {
    /// A tenant whose first key `{name}-k1` is the signer.
    pub fn new(name: &str, first: KeyMaterial, now: Timestamp) -> Self {
        let mut tenant = Tenant {
            name: name.to_owned(),
            alg: first.alg(),
            keys: Vec::new(),
            next_seq: 1,
            keys_changed_at: now,
        };
        let kid = tenant.next_kid();
        tenant.keys.push(PublishedKey {
            kid: Some(kid),
            status: KeyStatus::Active,
            body: KeyBody::Generated(first),
        });
        tenant
    }

    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    fn next_kid(&mut self) -> String {
        let kid = format!("{}-k{}", self.name, self.next_seq);
        self.next_seq += 1;
        kid
    }

    fn signer(&self) -> Option<(&str, &KeyMaterial)> {
        self.keys.iter().find_map(|k| match (&k.status, &k.body) {
            (KeyStatus::Active, KeyBody::Generated(m)) => Some((k.kid.as_deref()?, m)),
            _ => None,
        })
    }

    pub fn signer_kid(&self) -> &str {
        self.signer().map_or("", |(kid, _)| kid)
    }

    /// Publishes `material` as a new `next` key. Returns its kid.
    pub fn stage(&mut self, material: KeyMaterial, now: Timestamp) -> String {
        let kid = self.next_kid();
        self.keys.push(PublishedKey {
            kid: Some(kid.clone()),
            status: KeyStatus::Next,
            body: KeyBody::Generated(material),
        });
        self.keys_changed_at = now;
        kid
    }

    /// The newest `next` key becomes `active`; the old signer becomes `previous`.
    pub fn promote(&mut self, now: Timestamp) -> Result<String, LabError> {
        let newest = self
            .keys
            .iter()
            .rposition(|k| k.status == KeyStatus::Next)
            .ok_or_else(|| LabError::NothingStaged(self.name.clone()))?;
        for key in &mut self.keys {
            if key.status == KeyStatus::Active {
                key.status = KeyStatus::Previous;
            }
        }
        let key = &mut self.keys[newest];
        key.status = KeyStatus::Active;
        self.keys_changed_at = now;
        Ok(key.kid.clone().unwrap_or_default())
    }

    /// Unpublishes every key but the signer. Returns the kids removed (`""` for a raw key
    /// without a string kid).
    pub fn retire(&mut self, now: Timestamp) -> Vec<String> {
        let (keep, removed): (Vec<_>, Vec<_>) = std::mem::take(&mut self.keys)
            .into_iter()
            .partition(|k| k.status == KeyStatus::Active);
        self.keys = keep;
        if !removed.is_empty() {
            self.keys_changed_at = now;
        }
        removed
            .into_iter()
            .map(|k| k.kid.unwrap_or_default())
            .collect()
    }

    /// The signer keeps its kid but signs with `material` from now on. Returns the kid.
    pub fn replace_signer_material(&mut self, material: KeyMaterial, now: Timestamp) -> String {
        self.keys_changed_at = now;
        match self.keys.iter_mut().find(|k| k.status == KeyStatus::Active) {
            Some(key) => {
                key.body = KeyBody::Generated(material);
                key.kid.clone().unwrap_or_default()
            }
            None => {
                // Unreachable while a tenant always has a signer; recover by making one.
                let kid = self.next_kid();
                self.keys.push(PublishedKey {
                    kid: Some(kid.clone()),
                    status: KeyStatus::Active,
                    body: KeyBody::Generated(material),
                });
                kid
            }
        }
    }

    /// Publishes `jwk` verbatim. It must be a JSON object; anything else in it goes.
    pub fn publish_raw(&mut self, jwk: Value, now: Timestamp) -> Result<Option<String>, LabError> {
        if !jwk.is_object() {
            return Err(LabError::BadRequest(
                "publish-raw takes one JWK as a JSON object".into(),
            ));
        }
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        self.keys.push(PublishedKey {
            kid: kid.clone(),
            status: KeyStatus::Raw,
            body: KeyBody::Raw(jwk),
        });
        self.keys_changed_at = now;
        Ok(kid)
    }

    /// The JWKS document: every published key, in publication order.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(PublishedKey::jwk).collect::<Vec<_>>() })
    }

    pub fn key_views(&self) -> Vec<KeyView> {
        self.keys
            .iter()
            .map(|k| KeyView {
                kid: k.kid.clone(),
                alg: k.alg(),
                status: k.status,
            })
            .collect()
    }
}

/// The discovery document of the tenant whose issuer is `issuer`.
pub fn discovery(issuer: &str, alg: KeyAlg) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "grant_types_supported": ["client_credentials", "password", "refresh_token"],
        "scopes_supported": ["openid", DEFAULT_SCOPE],
        "id_token_signing_alg_values_supported": [alg.as_str()],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": [alg.as_str()],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"],
    })
}

/// The origin's answer to a GET of `rest` (`{tenant}/jwks`, …) on `domain`. Consumes an
/// injected failure when one matches.
pub(super) fn origin_get(state: &mut LabState, domain: &str, rest: &str, now: Timestamp) -> Reply {
    let Some((tenant_name, resource)) = rest.split_once('/') else {
        return error_reply(404, "not_found", &format!("no such lab resource: {rest}"));
    };
    let Some(alg) = state.tenants.get(tenant_name).map(Tenant::alg) else {
        return LabError::UnknownTenant(tenant_name.to_owned()).reply();
    };
    let cache_control = state
        .domains
        .get(domain)
        .and_then(|d| d.policy.origin_cache_control.clone());
    let (body, content_type, last_modified) = match resource {
        ".well-known/openid-configuration" => {
            let doc = discovery(&state.issuer(domain, tenant_name), alg);
            (doc, "application/json", state.started_at)
        }
        "jwks" => {
            if let Some(status) = take_failure(state, tenant_name, domain) {
                let page = html_error(status, now);
                return match cache_control {
                    Some(cc) => page.with_header("cache-control", cc),
                    None => page,
                };
            }
            let Some(tenant) = state.tenants.get(tenant_name) else {
                return LabError::UnknownTenant(tenant_name.to_owned()).reply();
            };
            (
                tenant.jwks(),
                "application/jwk-set+json",
                tenant.keys_changed_at,
            )
        }
        "token" => {
            return error_reply(405, "method_not_allowed", "the token endpoint takes POST");
        }
        _ => return error_reply(404, "not_found", &format!("no such lab resource: {rest}")),
    };
    let body = body.to_string().into_bytes();
    let tag = etag(&body);
    let mut reply = Reply::new(200, body)
        .with_header("content-type", content_type)
        .with_header("date", http_date(now))
        .with_header("last-modified", http_date(last_modified));
    reply = reply.with_header("etag", tag);
    if let Some(cc) = cache_control {
        reply = reply.with_header("cache-control", cc);
    }
    reply
}

/// Decrements the first failure rule matching the tenant and domain; its status if any.
fn take_failure(state: &mut LabState, tenant: &str, domain: &str) -> Option<u16> {
    let i = state.failures.iter().position(|f| {
        f.count > 0 && f.tenant == tenant && f.domain.as_deref().is_none_or(|d| d == domain)
    })?;
    let rule = &mut state.failures[i];
    rule.count -= 1;
    let status = rule.status;
    if rule.count == 0 {
        state.failures.remove(i);
    }
    Some(status)
}

fn html_error(status: u16, now: Timestamp) -> Reply {
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = format!(
        "<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1>\
         <p>lab: injected origin failure</p></body></html>\n"
    );
    Reply::new(status, body.into_bytes())
        .with_header("content-type", "text/html; charset=utf-8")
        .with_header("date", http_date(now))
}

/// A strong validator: the quoted first 16 bytes of the body's SHA-256, in hex.
fn etag(body: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, body);
    format!("\"{}\"", crate::model::hex(&d.as_ref()[..16]))
}

/// IMF-fixdate (RFC 9110), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(ts: Timestamp) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ts.as_secs();
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    let reply = Reply::json(
        status,
        &json!({ "error": error, "error_description": description }),
    )
    .with_header("cache-control", "no-store");
    if status == 401 {
        reply.with_header("www-authenticate", "Basic realm=\"lab\"")
    } else {
        reply
    }
}

#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    scope: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    iat: i64,
    auth_time: i64,
    exp: i64,
}

/// The token endpoint of `tenant` reached through `domain`.
pub(super) fn token(
    app: &AppState,
    domain: &str,
    tenant: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Reply {
    if let Err(e) = app.lock().tenant(tenant) {
        return e.reply();
    }
    let form_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return oauth_error(
            400,
            "invalid_request",
            "send the token request as application/x-www-form-urlencoded",
        );
    }
    let mut form = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body).into_owned() {
        if form.insert(name.clone(), value).is_some() {
            return oauth_error(
                400,
                "invalid_request",
                &format!("parameter `{name}` repeated"),
            );
        }
    }
    let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());

    if let Err(reply) = authenticate_client(headers, &param) {
        return reply;
    }

    let sub = match param("grant_type") {
        Some("client_credentials") => CLIENT_ID,
        Some("password") => {
            if param("username") != Some(USERNAME) || param("password") != Some(PASSWORD) {
                return oauth_error(400, "invalid_grant", "wrong username or password");
            }
            USERNAME
        }
        Some("refresh_token") => {
            let presented = param("refresh_token").unwrap_or_default();
            let mut state = app.lock();
            if state.used_refresh_tokens.contains(presented) {
                return oauth_error(400, "invalid_grant", "refresh token already used");
            }
            if presented != REFRESH_TOKEN && !state.refresh_tokens.contains(presented) {
                return oauth_error(400, "invalid_grant", "unknown refresh token");
            }
            if state.rotate_refresh_tokens {
                state.refresh_tokens.remove(presented);
                state.used_refresh_tokens.insert(presented.to_owned());
            }
            USERNAME
        }
        Some(other) => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                &format!(
                    "grant `{other}` not supported: use client_credentials, password or refresh_token"
                ),
            );
        }
        None => return oauth_error(400, "invalid_request", "grant_type missing"),
    };
    let password_grant = param("grant_type") == Some("password");
    let issues_refresh = password_grant
        || (param("grant_type") == Some("refresh_token") && app.lock().rotate_refresh_tokens);
    let aud = param("resource")
        .or_else(|| param("audience"))
        .unwrap_or(DEFAULT_AUDIENCE);
    let scope = param("scope").unwrap_or(DEFAULT_SCOPE);

    let now = app.now().as_secs();
    let (issuer, kid, material, refresh_token) = {
        let mut state = app.lock();
        let issuer = state.issuer(domain, tenant);
        let Some((kid, material)) = state
            .tenants
            .get(tenant)
            .and_then(|t| t.signer())
            .map(|(k, m)| (k.to_owned(), m.clone()))
        else {
            return oauth_error(500, "server_error", "tenant has no signing key");
        };
        let refresh_token = issues_refresh.then(|| format!("lab-rt-{}", random_id()));
        if let Some(rt) = &refresh_token {
            state.refresh_tokens.insert(rt.clone());
        }
        (issuer, kid, material, refresh_token)
    };

    let claims = AccessClaims {
        iss: &issuer,
        sub,
        aud,
        client_id: CLIENT_ID,
        scope,
        iat: now,
        nbf: now,
        exp: now + TOKEN_LIFETIME_SECS,
        jti: random_id(),
    };
    let access_token = match material.sign(&kid, "at+jwt", &claims) {
        Ok(t) => t,
        Err(e) => return oauth_error(500, "server_error", &e.to_string()),
    };
    let mut response = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
        "scope": scope,
    });
    if let Some(rt) = refresh_token {
        response["refresh_token"] = rt.into();
        let id_claims = IdClaims {
            iss: &issuer,
            sub,
            aud: CLIENT_ID,
            azp: CLIENT_ID,
            iat: now,
            auth_time: now,
            exp: now + TOKEN_LIFETIME_SECS,
        };
        match material.sign(&kid, "JWT", &id_claims) {
            Ok(t) => response["id_token"] = t.into(),
            Err(e) => return oauth_error(500, "server_error", &e.to_string()),
        }
    }
    Reply::json(200, &response)
        .with_header("cache-control", "no-store")
        .with_header("pragma", "no-cache")
}

/// `client_secret_basic` or `client_secret_post`, not both; the error reply otherwise.
fn authenticate_client<'a>(
    headers: &axum::http::HeaderMap,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<(), Reply> {
    let basic = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, creds) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(creds)
        });
    let (id, secret) = match (basic, param("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(oauth_error(
                400,
                "invalid_request",
                "use one client authentication method, not Basic and client_secret both",
            ));
        }
        (Some(creds), None) => {
            let decoded = STANDARD
                .decode(creds.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((id, secret)) = decoded.as_deref().and_then(|s| s.split_once(':')) else {
                return Err(oauth_error(
                    401,
                    "invalid_client",
                    "malformed Basic credentials",
                ));
            };
            (id.to_owned(), secret.to_owned())
        }
        (None, Some(secret)) => (
            param("client_id").unwrap_or_default().to_owned(),
            secret.to_owned(),
        ),
        (None, None) => {
            return Err(oauth_error(
                401,
                "invalid_client",
                "client authentication missing",
            ));
        }
    };
    if id == CLIENT_ID && secret == CLIENT_SECRET {
        Ok(())
    } else {
        Err(oauth_error(
            401,
            "invalid_client",
            "unknown client or wrong secret",
        ))
    }
}

/// 16 random bytes, base64url. Falls back to a counter if the system RNG fails.
fn random_id() -> String {
    static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let n = FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&n.to_be_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::keys;

    #[test]
    fn http_date_formats_imf_fixdate() {
        let check = |secs: i64, want: &str| assert_eq!(http_date(Timestamp::from_secs(secs)), want);
        check(0, "Thu, 01 Jan 1970 00:00:00 GMT");
        check(784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT");
        check(951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT");
        check(1_795_656_659, "Thu, 26 Nov 2026 01:30:59 GMT");
    }

    #[test]
    fn key_lifecycle() {
        let now = Timestamp::from_secs(1_000);
        let new_key = || keys::generate(KeyAlg::ES256).expect("generate");
        let mut t = Tenant::new("globex", new_key(), now);
        let statuses = |t: &Tenant| {
            t.key_views()
                .into_iter()
                .map(|k| (k.kid.unwrap_or_default(), k.status))
                .collect::<Vec<_>>()
        };
        assert_eq!(t.signer_kid(), "globex-k1");
        assert!(matches!(t.promote(now), Err(LabError::NothingStaged(_))));

        assert_eq!(t.stage(new_key(), now), "globex-k2");
        assert_eq!(t.signer_kid(), "globex-k1");
        assert_eq!(t.promote(now).expect("promote"), "globex-k2");
        assert_eq!(
            statuses(&t),
            [
                ("globex-k1".to_owned(), KeyStatus::Previous),
                ("globex-k2".to_owned(), KeyStatus::Active),
            ]
        );
        t.publish_raw(
            json!({"kty": "OKP", "crv": "Ed448", "kid": "odd", "x": "AA"}),
            now,
        )
        .expect("raw");
        assert!(t.publish_raw(json!(["not", "an", "object"]), now).is_err());
        assert_eq!(t.jwks()["keys"].as_array().map(Vec::len), Some(3));
        assert_eq!(t.retire(now), ["globex-k1", "odd"]);
        assert_eq!(statuses(&t), [("globex-k2".to_owned(), KeyStatus::Active)]);

        let before = t.jwks();
        assert_eq!(t.replace_signer_material(new_key(), now), "globex-k2");
        assert_ne!(t.jwks(), before);
        assert_eq!(t.jwks()["keys"][0]["kid"], "globex-k2");
    }
}
