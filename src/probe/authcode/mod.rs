//! Signing in the way people do (`grant = "authorization_code"`): from
//! the authorization endpoint through the IdP's own sign-in pages, with a cookie jar of
//! this sign-in alone, to the redirect back to `redirect_uri`, whose `Location` holds the
//! code. That URL is read, never fetched.
//!
//! Every request is a step, and a span `probe.login.step` (the step number, method, URL
//! path, HTTP status and which form was submitted; never a field value, a cookie or a
//! query). Redirects are followed by hand, at most [`MAX_STEPS`] requests in all, within
//! the probe timeout, and only to the issuer's origin or an origin of `page_origins`
//! (https, or http on a loopback address, unless listed): the cookies and the password go
//! nowhere else. Pages are bounded by `max_body_bytes`.
//!
//! That walk is `driver = "form"`; `driver = "browser"` drives headless Chromium instead
//! (`browser`) and ends at the same redirect back, checked the same way.
//!
//! Not here: the token request that exchanges the code (`login`), reading forms
//! (`form`), the checks of the answer and the ID token (`checks`).

pub mod browser;
pub mod checks;
pub mod form;

use super::Prober;
use crate::config::{AuthCode, Driver, Login};
use crate::model::{DiscoveryDoc, wire};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{ACCEPT, COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use secrecy::ExposeSecret;
use tracing::{Instrument, field, info_span};
use url::Url;

/// Most requests one sign-in makes: pages, form posts and redirects together.
pub const MAX_STEPS: usize = 16;

/// A finished sign-in: the code and what the token request and the ID token check need.
pub struct Authorized {
    pub code: String,
    pub verifier: String,
    pub nonce: String,
    state: String,
}

impl Authorized {
    /// This sign-in's values that no message may show (scrubbed out of reasons).
    pub fn secrets(&self) -> Vec<String> {
        vec![
            self.code.clone(),
            self.verifier.clone(),
            self.nonce.clone(),
            self.state.clone(),
        ]
    }
}

/// One request of the sign-in.
struct Hop {
    method: Method,
    url: Url,
    form: Option<Vec<(String, String)>>,
    /// What the span says the request is: `authorize`, `redirect` or the submitted form.
    label: &'static str,
}

/// What came back: enough to follow a redirect or read a page.
struct Answer {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

impl Prober {
    /// Signs in on the IdP's pages and returns the code; otherwise which step failed and
    /// why (not yet scrubbed: the caller scrubs every reason).
    pub(super) async fn sign_in(
        &self,
        login: &Login,
        ac: &AuthCode,
        issuer: &Url,
        doc: Option<&DiscoveryDoc>,
    ) -> Result<Authorized, String> {
        let allowed = Allowed {
            issuer: issuer.origin(),
            listed: ac.page_origins.clone(),
        };
        let start = match &ac.authorization_url {
            Some(u) => u.clone(),
            None => {
                let Some(s) = doc.and_then(|d| d.authorization_endpoint.as_deref()) else {
                    return Err("no authorization endpoint: discovery failed or has no authorization_endpoint, and login.authorization_url is not set".to_owned());
                };
                let url = Url::parse(s).map_err(|e| {
                    format!(
                        "discovery's authorization_endpoint `{}` is not a URL ({e})",
                        wire::text(s, wire::TEXT_MAX)
                    )
                })?;
                allowed
                    .check(&url)
                    .map_err(|why| format!("discovery's authorization_endpoint: {why}"))?;
                url
            }
        };
        let (verifier, state, nonce) = (random(32), random(16), random(16));
        let url = checks::authorize_url(
            &start,
            &checks::Request {
                client_id: &login.client_id,
                redirect_uri: &ac.redirect_uri,
                scope: login.scope.as_deref().unwrap_or("openid"),
                state: &state,
                nonce: &nonce,
                verifier: &verifier,
                resource: login.resource.as_deref(),
                audience: login.audience.as_deref(),
            },
        );
        if ac.driver == Driver::Browser {
            let back = self.drive_browser(url, ac, &allowed).await?;
            let scrub = |s: &str| self.scrub(s);
            let code = checks::authorization_response(&back, &state, issuer.as_str(), &scrub)
                .map_err(|why| format!("the redirect back to redirect_uri: {why}"))?;
            return Ok(Authorized {
                code,
                verifier,
                nonce,
                state,
            });
        }
        let first = Hop {
            method: Method::GET,
            url,
            form: None,
            label: "authorize",
        };
        let walk = self.walk(first, ac, &allowed, (issuer, &state));
        let code = match tokio::time::timeout(self.clients.timeout(), walk).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(format!(
                    "the sign-in did not reach redirect_uri within the probe timeout ({} s)",
                    self.clients.timeout().as_secs()
                ));
            }
        };
        Ok(Authorized {
            code,
            verifier,
            nonce,
            state,
        })
    }

    /// Follows redirects and submits forms until the redirect to `redirect_uri`, and
    /// returns the code it carries once its `state` (and `iss`) are checked.
    async fn walk(
        &self,
        mut hop: Hop,
        ac: &AuthCode,
        allowed: &Allowed,
        (issuer, state): (&Url, &str),
    ) -> Result<String, String> {
        let jar = Jar::default();
        let mut stage = form::Stage::SigningIn;
        let mut submitted = [0usize; 3];
        for step in 1..=MAX_STEPS {
            let span = info_span!(
                "probe.login.step",
                step,
                http.method = hop.method.as_str(),
                url.path = %checks::shown_path(&hop.url),
                form = hop.label,
                http.status = field::Empty,
            );
            let answer = self.hop(&jar, &hop).instrument(span.clone()).await;
            let fail = |why: &str| checks::step_error(step, hop.method.as_str(), &hop.url, why);
            let answer = answer.map_err(|e| fail(&e))?;
            span.record("http.status", answer.status);
            if (300..400).contains(&answer.status) {
                let Some(location) = answer.location else {
                    return Err(fail(&format!("HTTP {} without a Location", answer.status)));
                };
                let Ok(next) = hop.url.join(&location) else {
                    return Err(fail("the redirect's Location is not a URL"));
                };
                if checks::is_redirect_uri(&next, &ac.redirect_uri) {
                    let scrub = |s: &str| self.scrub(s);
                    return checks::authorization_response(&next, state, issuer.as_str(), &scrub)
                        .map_err(|why| fail(&why));
                }
                allowed
                    .check(&next)
                    .map_err(|why| fail(&format!("redirected: {why}")))?;
                let keep = matches!(answer.status, 307 | 308);
                hop = Hop {
                    method: if keep { hop.method } else { Method::GET },
                    url: next,
                    form: if keep { hop.form } else { None },
                    label: "redirect",
                };
                continue;
            }
            let html = String::from_utf8_lossy(&answer.body);
            let titled = |why: String| match form::title(&html, &|s: &str| self.scrub(s)) {
                Some(t) => fail(&format!("{why} (page title: {t})")),
                None => fail(&why),
            };
            if answer.status != 200 {
                return Err(titled(format!("HTTP {}", answer.status)));
            }
            let sub = form::pick(&html, &ac.form, stage).map_err(|e| titled(e.why(&ac.form)))?;
            let seen = &mut submitted[sub.kind as usize];
            *seen += 1;
            let again = match sub.kind {
                form::Kind::Password | form::Kind::Identifier => *seen > 1,
                form::Kind::Consent => *seen > 3,
            };
            if again {
                return Err(titled(match sub.kind {
                    form::Kind::Password => "the sign-in page came back after the password was submitted: the username or password was refused".to_owned(),
                    kind => format!("the {} page came back after it was submitted", kind.as_str()),
                }));
            }
            if sub.kind == form::Kind::Password {
                stage = form::Stage::SignedIn;
                if !sub.post {
                    return Err(fail(
                        "the password form uses method=get: keycanary does not put a password in a URL",
                    ));
                }
            }
            let action = if sub.action.is_empty() {
                Ok(hop.url.clone())
            } else {
                hop.url.join(&sub.action)
            };
            let Ok(mut action) = action else {
                return Err(fail("the form's action is not a URL"));
            };
            allowed.check(&action).map_err(|why| {
                fail(&format!(
                    "the {} form posts elsewhere: {why}",
                    sub.kind.as_str()
                ))
            })?;
            let fields: Vec<(String, String)> = sub
                .fields
                .into_iter()
                .map(|(name, value)| {
                    let value = match value {
                        form::Value::Page(v) => v,
                        form::Value::Username => ac.username.clone(),
                        form::Value::Password => ac.password.expose_secret().to_owned(),
                    };
                    (name, value)
                })
                .collect();
            hop = if sub.post {
                Hop {
                    method: Method::POST,
                    url: action,
                    form: Some(fields),
                    label: sub.kind.as_str(),
                }
            } else {
                action.set_query(None);
                action.query_pairs_mut().extend_pairs(&fields);
                Hop {
                    method: Method::GET,
                    url: action,
                    form: None,
                    label: sub.kind.as_str(),
                }
            };
        }
        Err(format!(
            "no redirect to redirect_uri after {MAX_STEPS} requests (check login.redirect_uri against the client's registration)"
        ))
    }

    /// One request with this sign-in's cookies, never following a redirect; the body is
    /// bounded by `max_body_bytes`.
    async fn hop(&self, jar: &Jar, hop: &Hop) -> Result<Answer, String> {
        let mut b = self
            .clients
            .no_redirects()
            .request(hop.method.clone(), hop.url.clone())
            .header(ACCEPT, "text/html,application/xhtml+xml");
        if let Some(c) = jar.cookies(&hop.url) {
            b = b.header(COOKIE, c);
        }
        if let Some(f) = &hop.form {
            b = b.form(f);
        }
        let mut trace = HeaderMap::new();
        crate::telemetry::traces::inject_trace_context(&mut trace);
        let mut resp =
            b.headers(trace)
                .send()
                .await
                .map_err(|e| match super::http::error_outcome(&e) {
                    crate::model::FetchOutcome::Error { message, .. } => message,
                    crate::model::FetchOutcome::Response(_) => "the request failed".to_owned(),
                })?;
        jar.set_cookies(&mut resp.headers().get_all(SET_COOKIE).iter(), &hop.url);
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let max = self.max_body;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() as u64 + chunk.len() as u64 > max {
                return Err(format!(
                    "the page is larger than {max} bytes (raise max_body_bytes if this is expected)"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            location,
            body,
        })
    }
}

/// Where the sign-in may go: the issuer's origin over https (or http on a loopback
/// address), or an origin listed in `page_origins` (which is also the opt-in for plain
/// http elsewhere).
#[derive(Clone)]
pub struct Allowed {
    issuer: url::Origin,
    listed: Vec<url::Origin>,
}

impl Allowed {
    fn check(&self, url: &Url) -> Result<(), String> {
        let origin = url.origin();
        if self.listed.contains(&origin) {
            return Ok(());
        }
        let shown = wire::text(&origin.ascii_serialization(), wire::TEXT_MAX);
        if origin != self.issuer {
            return Err(format!(
                "{shown} is not the issuer's origin: keycanary signs in only there and on login.page_origins; if that origin is the IdP's, add it there"
            ));
        }
        if url.scheme() != "https" && !wire::is_loopback(url) {
            return Err(format!(
                "{shown} is plain http: the password would cross the network unencrypted; serve it over https, or list it in login.page_origins"
            ));
        }
        Ok(())
    }
}

/// `n` random bytes, base64url: a PKCE verifier (32 bytes: 43 characters), a state, a nonce.
pub(super) fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = aws_lc_rs::rand::fill(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests;
