//! The pure parts of the authorization-code grant: PKCE (S256), the authorization request,
//! the redirect back to `redirect_uri` (`state`, `iss`, `error`, the code), the ID token's
//! `nonce`, `azp`, `at_hash` and `c_hash`, and how a failed step is worded.
//!
//! No I/O and no randomness here: the caller draws the verifier, `state` and `nonce`. No
//! message ever quotes a code, a verifier, a `state`, a `nonce` or a token.

use crate::model::wire;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use url::Url;

/// RFC 7636 S256: `BASE64URL(SHA256(verifier))`.
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// What the authorization request carries besides the client's settings.
pub struct Request<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a Url,
    pub scope: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub verifier: &'a str,
    pub resource: Option<&'a str>,
    pub audience: Option<&'a str>,
}

/// The authorization endpoint with the request's parameters appended (those already in
/// its query are kept).
pub fn authorize_url(endpoint: &Url, r: &Request<'_>) -> Url {
    let mut url = endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", r.client_id)
            .append_pair("redirect_uri", r.redirect_uri.as_str())
            .append_pair("scope", r.scope)
            .append_pair("state", r.state)
            .append_pair("nonce", r.nonce)
            .append_pair("code_challenge", &code_challenge(r.verifier))
            .append_pair("code_challenge_method", "S256");
        if let Some(v) = r.resource {
            q.append_pair("resource", v);
        }
        if let Some(v) = r.audience {
            q.append_pair("audience", v);
        }
    }
    url
}

/// Whether `location` is the way back to `redirect_uri`: same scheme, host, port and path
/// (the IdP adds the query).
pub fn is_redirect_uri(location: &Url, redirect_uri: &Url) -> bool {
    location.scheme() == redirect_uri.scheme()
        && location.host_str() == redirect_uri.host_str()
        && location.port_or_known_default() == redirect_uri.port_or_known_default()
        && location.path() == redirect_uri.path()
}

/// The code from the redirect to `redirect_uri`, after checking `state` (and `iss`, RFC
/// 9207, when the IdP sends it); otherwise why there is none. What the IdP wrote that a
/// message quotes passes `scrub` (every secret keycanary knows taken out) before it is cut.
pub fn authorization_response(
    location: &Url,
    state: &str,
    issuer: &str,
    scrub: &dyn Fn(&str) -> String,
) -> Result<String, String> {
    let param = |name: &str| {
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let quoted = |name: &str, max: usize| param(name).map(|v| wire::text(&scrub(&v), max));
    if let Some(error) = quoted("error", 64) {
        let description = quoted("error_description", 160)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return Err(format!(
            "the IdP sent the browser back with error `{error}`{description}"
        ));
    }
    match param("state") {
        None => return Err("the redirect to redirect_uri carries no state (keycanary sent one): the answer cannot be tied to this sign-in".to_owned()),
        Some(s) if s != state => return Err("the state in the redirect to redirect_uri is not the one keycanary sent (a mixed-up or forged answer)".to_owned()),
        Some(_) => {}
    }
    if let Some(iss) = param("iss")
        && iss.trim_end_matches('/') != issuer.trim_end_matches('/')
    {
        return Err(format!(
            "the redirect's iss {} is not the issuer {issuer} (RFC 9207: an answer from another IdP)",
            quoted("iss", wire::TEXT_MAX).unwrap_or_default()
        ));
    }
    match param("code") {
        Some(code) if !code.is_empty() => Ok(code),
        _ => Err(
            "the redirect to redirect_uri carries no code (keycanary asks for response_mode=query)"
                .to_owned(),
        ),
    }
}

/// What the ID token of this sign-in must say.
pub struct Expected<'a> {
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub code: &'a str,
    pub access_token: Option<&'a str>,
}

/// Checks the ID token's `nonce`, `azp` (RFC: required to be the client when there are
/// several audiences), `at_hash` and `c_hash` (when present). The signature and the other
/// claims are checked as every token's are (`token`, `detect`).
pub fn check_id_token(id_token: &str, e: &Expected<'_>) -> Result<(), String> {
    let mut parts = id_token.split('.');
    let (Some(h), Some(c)) = (parts.next(), parts.next()) else {
        return Err("the ID token is not a JWT".to_owned());
    };
    let part = |p: &str| -> Option<Value> {
        let bytes = URL_SAFE_NO_PAD.decode(p).ok()?;
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
    };
    let (Some(header), Some(claims)) = (part(h), part(c)) else {
        return Err("the ID token's header or payload is not base64url JSON".to_owned());
    };
    let claim = |name: &str| claims.get(name).and_then(Value::as_str);
    match claim("nonce") {
        None => {
            return Err(
                "the ID token has no nonce (keycanary sent one): it cannot be tied to this sign-in"
                    .to_owned(),
            );
        }
        Some(n) if n != e.nonce => {
            return Err(
                "the ID token's nonce is not the one keycanary sent (a replayed or mixed-up token)"
                    .to_owned(),
            );
        }
        Some(_) => {}
    }
    let several = matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1);
    match claim("azp") {
        Some(azp) if azp != e.client_id => {
            return Err(format!(
                "the ID token's azp {} is not the client {}",
                wire::ident(azp),
                e.client_id
            ));
        }
        None if several => {
            return Err(format!(
                "the ID token has several audiences and no azp naming the client {}",
                e.client_id
            ));
        }
        _ => {}
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    for (name, value, what) in [
        ("at_hash", e.access_token, "access token"),
        ("c_hash", Some(e.code), "code"),
    ] {
        let (Some(claimed), Some(value)) = (claim(name), value) else {
            continue;
        };
        let Some(expected) = left_half_hash(alg, value) else {
            return Err(format!(
                "the ID token's {name} cannot be checked for alg {}",
                wire::ident(alg)
            ));
        };
        if claimed != expected {
            return Err(format!(
                "the ID token's {name} does not match the {what} it came with"
            ));
        }
    }
    Ok(())
}

/// OIDC Core 3.1.3.6: base64url of the left half of the hash the JWS alg uses (SHA-512
/// for EdDSA with Ed25519).
pub fn left_half_hash(alg: &str, value: &str) -> Option<String> {
    let algorithm = match alg {
        "RS256" | "PS256" | "ES256" | "HS256" | "ES256K" => &digest::SHA256,
        "RS384" | "PS384" | "ES384" | "HS384" => &digest::SHA384,
        "RS512" | "PS512" | "ES512" | "HS512" | "EdDSA" | "Ed25519" => &digest::SHA512,
        _ => return None,
    };
    let d = digest::digest(algorithm, value.as_bytes());
    let bytes = d.as_ref();
    Some(URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2]))
}

/// A URL path as a step names it: bounded, with long opaque segments (interaction ids,
/// session handles) shown as `…`.
pub fn shown_path(url: &Url) -> String {
    let path: Vec<&str> = url
        .path()
        .split('/')
        .map(|seg| if seg.len() >= 16 { "…" } else { seg })
        .collect();
    wire::text(&path.join("/"), 120)
}

/// `step N (METHOD /path): why`, the wording of a failed step.
pub fn step_error(step: usize, method: &str, url: &Url, why: &str) -> String {
    format!("step {step} ({method} {}): {why}", shown_path(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: Value, claims: Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        format!("{}.{}.sig", enc(&header), enc(&claims))
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_authorization_request_carries_pkce_state_and_nonce() {
        let endpoint = Url::parse("https://idp.example/auth?tenant=t1").unwrap();
        let redirect = Url::parse("http://127.0.0.1:9/cb").unwrap();
        let check = |resource: Option<&str>, audience: Option<&str>, expected: &[(&str, &str)]| {
            let url = authorize_url(
                &endpoint,
                &Request {
                    client_id: "web",
                    redirect_uri: &redirect,
                    scope: "openid api",
                    state: "st",
                    nonce: "no",
                    verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                    resource,
                    audience,
                },
            );
            let got: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, expected);
        };
        let base = [
            ("tenant", "t1"),
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("scope", "openid api"),
            ("state", "st"),
            ("nonce", "no"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ];
        check(None, None, &base);
        let mut with = base.to_vec();
        with.push(("resource", "https://api/"));
        with.push(("audience", "api"));
        check(Some("https://api/"), Some("api"), &with);
    }

    #[test]
    fn the_way_back_is_recognised_by_origin_and_path() {
        let redirect = Url::parse("http://127.0.0.1:9/cb").unwrap();
        let check = |loc: &str, expected: bool| {
            assert_eq!(
                is_redirect_uri(&Url::parse(loc).unwrap(), &redirect),
                expected,
                "{loc}"
            );
        };
        check("http://127.0.0.1:9/cb?code=x&state=y", true);
        check("http://127.0.0.1:9/cb", true);
        check("http://127.0.0.1:9/cb/more?code=x", false);
        check("http://127.0.0.1:10/cb?code=x", false);
        check("https://127.0.0.1:9/cb?code=x", false);
        check("http://localhost:9/cb?code=x", false);
    }

    #[test]
    fn the_redirect_back_is_checked_before_its_code_is_used() {
        let check = |query: &str, expected: Result<&str, &str>| {
            let loc = Url::parse(&format!("http://127.0.0.1:9/cb?{query}")).unwrap();
            let scrub = |s: &str| s.replace("hunter2", "<redacted>");
            let got = authorization_response(&loc, "s1", "https://idp.example/", &scrub);
            match (got, expected) {
                (Ok(code), Ok(want)) => assert_eq!(code, want, "{query}"),
                (Err(why), Err(fragment)) => {
                    assert!(why.contains(fragment), "{query}: {why}");
                    assert!(!why.contains("s1") && !why.contains("c-123"), "{why}");
                    assert!(!why.chars().any(char::is_control), "{why:?}");
                }
                (got, want) => panic!("{query}: {got:?}, expected {want:?}"),
            }
        };
        check("code=c-123&state=s1", Ok("c-123"));
        check(
            "code=c-123&state=s1&iss=https%3A%2F%2Fidp.example",
            Ok("c-123"),
        );
        check("code=c-123", Err("carries no state"));
        check("code=c-123&state=s2", Err("not the one keycanary sent"));
        check(
            "code=c-123&state=s1&iss=https%3A%2F%2Fevil.example",
            Err("iss https://evil.example is not the issuer"),
        );
        check("state=s1", Err("carries no code"));
        check("state=s1&code=", Err("carries no code"));
        check(
            "error=access_denied&error_description=End-User+aborted&state=s1",
            Err("error `access_denied` (End-User aborted)"),
        );
        check("error=x%1b%5B31m&state=s1", Err("error `x"));
        // A secret echoed at the cut is taken out before the cut, so no prefix survives.
        let long = format!("error=e&error_description={}hunter2", "d".repeat(155));
        check(&long, Err("error `e`"));
        let loc = Url::parse(&format!("http://127.0.0.1:9/cb?{long}")).unwrap();
        let scrub = |s: &str| s.replace("hunter2", "");
        let why = authorization_response(&loc, "s1", "https://idp.example/", &scrub).unwrap_err();
        assert!(!why.contains("hun"), "{why}");
    }

    #[test]
    fn the_id_token_is_tied_to_this_sign_in() {
        let access = "an-access-token";
        let at_hash = left_half_hash("RS256", access).unwrap();
        let c_hash = left_half_hash("RS256", "the-code").unwrap();
        let e = Expected {
            client_id: "web",
            nonce: "n1",
            code: "the-code",
            access_token: Some(access),
        };
        let check = |header: Value, claims: Value, expected: Result<(), &str>| {
            let token = jwt(header, claims.clone());
            match (check_id_token(&token, &e), expected) {
                (Ok(()), Ok(())) => {}
                (Err(why), Err(fragment)) => {
                    assert!(why.contains(fragment), "{claims}: {why}");
                    assert!(!why.contains("n1") && !why.contains(access), "{why}");
                }
                (got, want) => panic!("{claims}: {got:?}, expected {want:?}"),
            }
        };
        let rs = serde_json::json!({"alg": "RS256"});
        check(
            rs.clone(),
            serde_json::json!({"nonce": "n1", "aud": "web"}),
            Ok(()),
        );
        check(
            rs.clone(),
            serde_json::json!({"nonce": "n1", "aud": "web", "azp": "web", "at_hash": at_hash, "c_hash": c_hash}),
            Ok(()),
        );
        check(
            rs.clone(),
            serde_json::json!({"aud": "web"}),
            Err("has no nonce"),
        );
        check(
            rs.clone(),
            serde_json::json!({"nonce": "n2", "aud": "web"}),
            Err("nonce is not the one"),
        );
        check(
            rs.clone(),
            serde_json::json!({"nonce": "n1", "aud": "web", "azp": "other"}),
            Err("azp other is not the client web"),
        );
        check(
            rs.clone(),
            serde_json::json!({"nonce": "n1", "aud": ["web", "api"]}),
            Err("several audiences and no azp"),
        );
        check(
            rs.clone(),
            serde_json::json!({"nonce": "n1", "aud": "web", "at_hash": c_hash}),
            Err("at_hash does not match the access token"),
        );
        check(
            rs.clone(),
            serde_json::json!({"nonce": "n1", "aud": "web", "c_hash": at_hash}),
            Err("c_hash does not match the code"),
        );
        check(
            serde_json::json!({"alg": "none"}),
            serde_json::json!({"nonce": "n1", "aud": "web", "c_hash": "x"}),
            Err("cannot be checked for alg none"),
        );
        assert!(
            check_id_token("not-a-jwt", &e)
                .unwrap_err()
                .contains("not a JWT")
        );
    }

    #[test]
    fn hash_halves_follow_the_alg() {
        // Computed apart with Python's hashlib: base64url(sha256(v)[:16]).
        assert_eq!(
            left_half_hash("RS256", "jHkWEdUXMU1BwAsC4vtUsZwnNgvG7ELCI5XnhoRbUzQ").as_deref(),
            Some("N72MRg7eQkyddd-A5ISjQQ")
        );
        let check = |alg: &str, len: Option<usize>| {
            assert_eq!(left_half_hash(alg, "x").map(|h| h.len()), len, "{alg}");
        };
        check("ES256", Some(22));
        check("ES384", Some(32));
        check("EdDSA", Some(43));
        check("none", None);
    }

    #[test]
    fn failed_steps_name_the_step_and_hide_opaque_ids() {
        let check = |url: &str, expected: &str| {
            let url = Url::parse(url).unwrap();
            assert_eq!(
                step_error(2, "POST", &url, "no password input on the page"),
                expected
            );
        };
        check(
            "http://127.0.0.1:1/interaction/Vx5kD2d0T8yQnJ3mLcWq1/login?x=secret",
            "step 2 (POST /interaction/…/login): no password input on the page",
        );
        check(
            "https://idp.example/u/login",
            "step 2 (POST /u/login): no password input on the page",
        );
    }
}
