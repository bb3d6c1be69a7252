//! Logging in: one token request per domain, and where a credential may be sent.
//!
//! A token request carries the client secret (and the password or refresh token), so it
//! goes only where the config says: the configured `token_url`, or discovery's
//! `token_endpoint` when that is on the issuer's own origin (over https, or on a loopback
//! address) or on the origin named by `token_endpoint_origin`. It never follows a
//! redirect: a 3xx is a failed login naming the origin it pointed to. What the IdP says
//! back (`error`, `error_description`) is scrubbed of every secret keycanary knows and
//! cleaned of control characters before it enters the observation.
//!
//! Not here: decoding and verifying the tokens (`token`), judging the login (`detect`).

use super::http::{Request, fetch};
use super::{Prober, assertion, authcode, fetch_error, record_fetch, refresh};
use crate::config::{ClientAuth, Grant, Login};
use crate::model::wire;
use crate::model::{DiscoveryDoc, LoginObservation, LoginResult, TokenKind};
use secrecy::ExposeSecret;
use serde_json::Value;
use tracing::{Span, field, instrument};
use url::Url;

impl Prober {
    /// Logs in and returns the observation plus the raw tokens (kept only for this round).
    /// The span carries the grant, status and outcome: never the form, secret or tokens.
    #[instrument(name = "probe.login", skip_all, fields(grant = login.grant.as_str(), client_id = %login.client_id, http.status = field::Empty, result = field::Empty, error.kind = field::Empty))]
    pub(super) async fn login(
        &self,
        refresh_key: &str,
        login: &Login,
        issuer: &Url,
        doc: Option<&DiscoveryDoc>,
    ) -> (LoginObservation, Vec<(TokenKind, String)>) {
        let grant = login.grant.as_str().to_owned();
        let token_url = match token_url(login, issuer, doc) {
            Ok(u) => u,
            Err(reason) => {
                Span::current().record("result", "failed");
                let reason = self.scrub(&reason);
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
        // The authorization-code grant signs in on the IdP's pages first (`authcode`).
        let authorized = match &login.grant {
            Grant::AuthorizationCode(ac) => match self.sign_in(login, ac, issuer, doc).await {
                Ok(a) => Some(a),
                Err(reason) => {
                    Span::current().record("result", "failed");
                    return (
                        LoginObservation {
                            grant,
                            fetch: None,
                            result: LoginResult::Failed {
                                reason: self.scrub(&reason),
                            },
                        },
                        Vec::new(),
                    );
                }
            },
            _ => None,
        };
        // When the IdP rotated the refresh token, the newest one (see `refresh`).
        let current = match &login.grant {
            Grant::RefreshToken { refresh_token } => {
                Some(self.refresh_tokens.current(refresh_key, refresh_token))
            }
            _ => None,
        };
        // private_key_jwt: a fresh assertion for this request (see `assertion`).
        let assertion = match &login.client_key {
            Some(key) if login.auth == ClientAuth::PrivateKeyJwt => {
                let now = self.clock.now().0 / 1000;
                let jti = authcode::random(16);
                match assertion::client_assertion(
                    key,
                    &login.client_id,
                    token_url.as_str(),
                    now,
                    &jti,
                ) {
                    Ok(a) => Some(a),
                    Err(reason) => {
                        Span::current().record("result", "failed");
                        let result = LoginResult::Failed { reason };
                        return (
                            LoginObservation {
                                grant,
                                fetch: None,
                                result,
                            },
                            Vec::new(),
                        );
                    }
                }
            }
            _ => None,
        };
        let (form, basic_auth) = form(
            login,
            current.as_ref().map(|c| &c.token),
            authorized.as_ref(),
            assertion.as_deref(),
        );
        // A rotated refresh token is a secret the config does not list: scrubbed too
        // (before any cut, so no prefix survives). So are this sign-in's code, verifier, state and nonce, and the client assertion.
        let presented: Vec<String> = current
            .iter()
            .map(|c| c.token.expose_secret().to_owned())
            .chain(authorized.iter().flat_map(authcode::Authorized::secrets))
            .chain(assertion.iter().cloned())
            .collect();
        let mut req = Request::get(self.clients.no_redirects(), &token_url)
            .header("accept", "application/json");
        req.method = reqwest::Method::POST;
        req.form = Some(form);
        req.basic_auth = basic_auth;
        let (fetch, body) = fetch(req, &self.clock, self.max_body).await;
        let (result, tokens) = match (fetch.response(), body) {
            (Some(r), _) if (300..400).contains(&r.status) => (
                LoginResult::Failed {
                    reason: redirected(r.status, r.redirect_to.as_deref()),
                },
                Vec::new(),
            ),
            (Some(r), Some(body)) if (200..300).contains(&r.status) => {
                self.keep_rotated(refresh_key, login, current.as_ref(), &body);
                let (result, tokens) = tokens_of(&body);
                match (&authorized, &result) {
                    (Some(a), LoginResult::Tokens { .. }) => tied(login, a, result, tokens),
                    _ => (result, tokens),
                }
            }
            (Some(r), body) => {
                let detail = body.as_deref().map(|b| self.oauth_error(b, &presented));
                let detail = detail.unwrap_or_default();
                let rotated = current.as_ref().and_then(|c| c.rotated_at).map(|at| format!(" (to the rotated refresh token stored at {at} in the state directory; if the IdP revoked it, set a new refresh_token in probes.toml)")).unwrap_or_default();
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
        let result = match result {
            LoginResult::Failed { reason } => LoginResult::Failed {
                reason: wire::scrub(&self.scrub(&reason), &presented),
            },
            ok => ok,
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

    /// Keeps the refresh token a 2xx answer to a refresh_token grant carries when it is not
    /// the one presented (the IdP rotated it; see `refresh`).
    fn keep_rotated(
        &self,
        key: &str,
        login: &Login,
        presented: Option<&refresh::Current>,
        body: &[u8],
    ) {
        let (Grant::RefreshToken { refresh_token }, Some(presented)) = (&login.grant, presented)
        else {
            return;
        };
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let Some(new) = v.get("refresh_token").and_then(Value::as_str) else {
            return;
        };
        if new == presented.token.expose_secret() {
            return;
        }
        if let Err(e) = self
            .refresh_tokens
            .rotated(key, refresh_token, new, self.clock.now())
        {
            tracing::error!(login = key, error = %e, "cannot store the rotated refresh token in the state directory; it is used until keycanary stops, then the configured one is presented again");
        }
    }

    /// `: error_code (description)` from an OAuth error body, scrubbed of every secret
    /// (the config's and `presented`, this request's own),
    /// cleaned and bounded; empty if none. Scrubbed before it is cut, so no prefix of a
    /// secret survives the cut.
    fn oauth_error(&self, body: &[u8], presented: &[String]) -> String {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return String::new();
        };
        let field = |name: &str| {
            let text = self.scrub(v.get(name).and_then(Value::as_str).unwrap_or(""));
            wire::scrub(&text, presented)
        };
        let (code, desc) = (field("error"), field("error_description"));
        let mut out = String::new();
        if !code.is_empty() {
            out = format!(": {}", wire::text(&code, 64));
            if !desc.is_empty() {
                out.push_str(&format!(" ({})", wire::text(&desc, 160)));
            }
        }
        out
    }
}

/// The token request's form and HTTP Basic credentials.
type Form = (Vec<(&'static str, String)>, Option<(String, String)>);

/// The tokens of an authorization-code sign-in when its ID token is this sign-in's
/// (`authcode::checks::check_id_token`); otherwise a failed login saying why.
fn tied(
    login: &Login,
    a: &authcode::Authorized,
    result: LoginResult,
    tokens: Vec<(TokenKind, String)>,
) -> (LoginResult, Vec<(TokenKind, String)>) {
    let raw = |kind: TokenKind| {
        tokens
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, t)| t.as_str())
    };
    let Some(id_token) = raw(TokenKind::IdToken) else {
        let reason = "the token response has no id_token (scope openid was asked for)".into();
        return (LoginResult::Failed { reason }, Vec::new());
    };
    let expected = authcode::checks::Expected {
        client_id: &login.client_id,
        nonce: &a.nonce,
        code: &a.code,
        access_token: raw(TokenKind::AccessToken),
    };
    match authcode::checks::check_id_token(id_token, &expected) {
        Ok(()) => (result, tokens),
        Err(reason) => (LoginResult::Failed { reason }, Vec::new()),
    }
}

/// `refresh_token`: the token to present instead of the configured one (a rotated one);
/// `authorized`: the code of an authorization-code sign-in, with its PKCE verifier.
fn form(
    login: &Login,
    refresh_token: Option<&secrecy::SecretString>,
    authorized: Option<&authcode::Authorized>,
    assertion: Option<&str>,
) -> Form {
    let mut form: Vec<(&'static str, String)> = vec![("grant_type", login.grant.as_str().into())];
    match &login.grant {
        Grant::ClientCredentials => {}
        Grant::Password { username, password } => {
            form.push(("username", username.clone()));
            form.push(("password", password.expose_secret().to_owned()));
        }
        Grant::RefreshToken {
            refresh_token: configured,
        } => {
            let token = refresh_token.unwrap_or(configured);
            form.push(("refresh_token", token.expose_secret().to_owned()))
        }
        Grant::AuthorizationCode(ac) => {
            if let Some(a) = authorized {
                form.push(("code", a.code.clone()));
                form.push(("code_verifier", a.verifier.clone()));
            }
            form.push(("redirect_uri", ac.redirect_uri.to_string()));
        }
    }
    // The scope of an authorization code was asked for at the authorization endpoint.
    let scope = match login.grant {
        Grant::AuthorizationCode(_) => &None,
        _ => &login.scope,
    };
    for (name, value) in [
        ("resource", &login.resource),
        ("audience", &login.audience),
        ("scope", scope),
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
        ClientAuth::PrivateKeyJwt => {
            form.push(("client_id", login.client_id.clone()));
            form.push((
                "client_assertion_type",
                assertion::ASSERTION_TYPE.to_owned(),
            ));
            form.push(("client_assertion", assertion.unwrap_or_default().to_owned()));
        }
    }
    (form, basic_auth)
}

/// The tokens of a 2xx token response, or why there are none.
fn tokens_of(body: &[u8]) -> (LoginResult, Vec<(TokenKind, String)>) {
    let failed = |reason: &str| {
        let reason = reason.to_owned();
        (LoginResult::Failed { reason }, Vec::new())
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return failed("the token response is not JSON");
    };
    let mut tokens = Vec::new();
    for (kind, name) in [
        (TokenKind::AccessToken, "access_token"),
        (TokenKind::IdToken, "id_token"),
    ] {
        if let Some(t) = v.get(name).and_then(Value::as_str) {
            tokens.push((kind, t.to_owned()));
        }
    }
    if tokens.is_empty() {
        return failed("the token response has no access_token or id_token");
    }
    (LoginResult::Tokens { tokens: Vec::new() }, tokens)
}

/// Why a redirect from the token endpoint is a failed login.
fn redirected(status: u16, to: Option<&str>) -> String {
    format!(
        "the token endpoint answered HTTP {status}, a redirect to {}: token requests never follow redirects (they carry the client secret); set login.token_url to the address that answers",
        to.unwrap_or("an unknown place")
    )
}

/// Where the token request goes: `token_url` when configured, else discovery's
/// `token_endpoint` if [`endpoint_allowed`]; otherwise why there is no token request.
pub fn token_url(login: &Login, issuer: &Url, doc: Option<&DiscoveryDoc>) -> Result<Url, String> {
    if let Some(u) = &login.token_url {
        return Ok(u.clone());
    }
    let Some(s) = doc.and_then(|d| d.token_endpoint.as_deref()) else {
        return Err("no token URL: discovery failed or has no token_endpoint, and login.token_url is not set".to_owned());
    };
    let url = Url::parse(s).map_err(|e| {
        format!(
            "discovery's token_endpoint `{}` is not a URL ({e})",
            wire::text(s, wire::TEXT_MAX)
        )
    })?;
    endpoint_allowed(&url, issuer, login.token_endpoint_origin.as_ref())?;
    Ok(url)
}

/// Whether discovery's `token_endpoint` may receive the credentials: on the issuer's
/// origin over https (or plain http on a loopback address), or on the configured
/// `token_endpoint_origin` (which is also the opt-in for plain http elsewhere).
pub fn endpoint_allowed(
    endpoint: &Url,
    issuer: &Url,
    allowed: Option<&url::Origin>,
) -> Result<(), String> {
    let origin = endpoint.origin();
    if allowed == Some(&origin) {
        return Ok(());
    }
    let shown = wire::text(&origin.ascii_serialization(), wire::TEXT_MAX);
    if origin != issuer.origin() {
        return Err(format!(
            "discovery's token_endpoint is on {shown}, not on the issuer's origin {}: keycanary sends credentials only where it is configured to; if that origin is right, set login.token_endpoint_origin = \"{shown}\" (or login.token_url)",
            issuer.origin().ascii_serialization()
        ));
    }
    if endpoint.scheme() != "https" && !wire::is_loopback(endpoint) {
        return Err(format!(
            "discovery's token_endpoint is plain {} on {shown}: the credentials would cross the network unencrypted; serve it over https, or accept it with login.token_endpoint_origin = \"{shown}\"",
            endpoint.scheme()
        ));
    }
    Ok(())
}

/// RFC 6749 2.3.1: client id and secret are form-encoded before HTTP Basic.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests;
