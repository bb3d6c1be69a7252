//! Token requests over real HTTP on loopback: a redirect is reported, never followed;
//! discovery's token_endpoint elsewhere is not used; what the IdP echoes is scrubbed.

use super::*;
use crate::clock;
use crate::config::{self, Config, MemorySecrets};
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const SECRET: &str = "client-secret-marker-7f3a";
const PASSWORD: &str = "password-marker-91c2";

/// A loopback server answering every POST with `answer`; counts the requests it got.
async fn server(
    answer: impl Fn(String) -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().fallback(post(move |body: String| {
        let answer = answer.clone();
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            answer(body)
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits)
}

/// A config whose one domain logs in with the password grant at `token_url` (or, when
/// `None`, at discovery's token_endpoint), its secrets being the markers above.
fn config(issuer: &str, token_url: Option<&str>, extra: &str) -> Config {
    let token_url = token_url.map_or(String::new(), |u| format!("token_url = \"{u}\"\n"));
    let text = format!(
        r#"
[[tenant]]
name = "t"
[[tenant.domain]]
name = "d"
issuer = "{issuer}"
[[tenant.domain.jwks]]
name = "cdn"
url = "{issuer}/jwks"
[tenant.domain.login]
grant = "password"
client_id = "keycanary"
client_secret = {{ env = "SECRET" }}
auth = "client_secret_post"
username = "probe"
password = {{ env = "PASSWORD" }}
{token_url}{extra}
"#
    );
    let secrets = MemorySecrets::new()
        .with_env("SECRET", SECRET)
        .with_env("PASSWORD", PASSWORD);
    config::parse(&text, "test", std::path::Path::new("."), &secrets)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn login_with(cfg: &Config, doc: Option<&DiscoveryDoc>) -> LoginObservation {
    let prober = Prober::new(cfg, clock::system()).unwrap();
    let domain = &cfg.tenants[0].domains[0];
    let login = domain.login.as_ref().unwrap();
    prober.login("t/d", login, &domain.issuer, doc).await.0
}

fn reason(obs: &LoginObservation) -> &str {
    match &obs.result {
        LoginResult::Failed { reason } => reason,
        other => panic!("expected a failed login, got {other:?}"),
    }
}

#[tokio::test]
async fn a_redirect_from_the_token_endpoint_is_reported_not_followed() {
    let (elsewhere, stolen) = server(|_| StatusCode::OK.into_response()).await;
    let location = format!("{elsewhere}/steal?echo={SECRET}");
    let (idp, asked) = server(move |_| {
        let mut h = HeaderMap::new();
        h.insert(header::LOCATION, location.parse().unwrap());
        (StatusCode::TEMPORARY_REDIRECT, h).into_response()
    })
    .await;
    let cfg = config(&idp, Some(&format!("{idp}/token")), "");
    let obs = login_with(&cfg, None).await;
    let reason = reason(&obs);
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert_eq!(
        stolen.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    assert!(reason.contains("HTTP 307"), "{reason}");
    assert!(
        reason.contains(&format!("a redirect to {elsewhere}:")),
        "{reason}"
    );
    assert!(reason.contains("never follow redirects"), "{reason}");
    assert!(
        !reason.contains(SECRET) && !reason.contains("steal"),
        "{reason}"
    );
}

#[tokio::test]
async fn what_the_idp_echoes_is_scrubbed_and_cleaned() {
    let (idp, _) = server(|body: String| {
        // Echo the form it got (secrets form-encoded), and the plain values, with an ESC.
        let description = format!("bad request {body} for {SECRET} / {PASSWORD} \u{1b}[2J");
        let body = serde_json::json!({"error": "invalid_grant", "error_description": description});
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    })
    .await;
    let cfg = config(&idp, Some(&format!("{idp}/token")), "");
    let obs = login_with(&cfg, None).await;
    let reason = reason(&obs);
    assert!(reason.contains("HTTP 400: invalid_grant"), "{reason}");
    assert!(reason.contains("<redacted>"), "{reason}");
    for leaked in [SECRET, PASSWORD, "client-secret-marker", "password-marker"] {
        assert!(!reason.contains(leaked), "`{leaked}` in {reason}");
    }
    assert!(!reason.chars().any(char::is_control), "{reason:?}");
}

#[tokio::test]
async fn a_token_endpoint_on_another_origin_gets_nothing_unless_configured() {
    let (elsewhere, asked) =
        server(|_| axum::Json(serde_json::json!({"error": "nope"})).into_response()).await;
    let issuer = "http://127.0.0.1:9/t";
    let doc = DiscoveryDoc {
        issuer: issuer.into(),
        jwks_uri: format!("{issuer}/jwks"),
        token_endpoint: Some(format!("{elsewhere}/token")),
        ..Default::default()
    };
    let obs = login_with(&config(issuer, None, ""), Some(&doc)).await;
    let reason = reason(&obs);
    assert!(obs.fetch.is_none(), "a request was sent");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    assert!(
        reason.contains(&format!(
            "token_endpoint is on {elsewhere}, not on the issuer's origin"
        )),
        "{reason}"
    );
    assert!(reason.contains("token_endpoint_origin"), "{reason}");
    // With the explicit opt-in the request goes there.
    let opted = config(
        issuer,
        None,
        &format!("token_endpoint_origin = \"{elsewhere}\""),
    );
    let obs = login_with(&opted, Some(&doc)).await;
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert!(obs.fetch.is_some());
    let answered = super::tests::reason(&obs);
    assert!(answered.contains("no access_token"), "{answered}");
}

#[test]
fn where_a_discovered_token_endpoint_may_be() {
    let url = |s: &str| Url::parse(s).unwrap();
    let check = |endpoint: &str, issuer: &str, allowed: Option<&str>, want: Result<(), &str>| {
        let allowed = allowed.map(|a| url(a).origin());
        let got = endpoint_allowed(&url(endpoint), &url(issuer), allowed.as_ref());
        match (got, want) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{endpoint}: {e}"),
            (got, want) => panic!("{endpoint} (issuer {issuer}): got {got:?}, want {want:?}"),
        }
    };
    let idp = "https://idp.example/realms/a";
    check("https://idp.example/token", idp, None, Ok(()));
    check("https://idp.example:443/token", idp, None, Ok(()));
    check(
        "https://idp.example:8443/token",
        idp,
        None,
        Err("not on the issuer's origin"),
    );
    check(
        "https://evil.example/token",
        idp,
        None,
        Err("not on the issuer's origin"),
    );
    check(
        "http://idp.example/token",
        idp,
        None,
        Err("not on the issuer's origin"),
    );
    check(
        "https://login.example/token",
        idp,
        Some("https://login.example"),
        Ok(()),
    );
    check(
        "https://login.example/token",
        idp,
        Some("https://other.example"),
        Err("issuer's origin"),
    );
    // Plain http on the issuer's own origin: only on loopback, or when opted in.
    check(
        "http://intra.example/token",
        "http://intra.example/",
        None,
        Err("plain http"),
    );
    check(
        "http://intra.example/token",
        "http://intra.example/",
        Some("http://intra.example"),
        Ok(()),
    );
    check(
        "http://127.0.0.1:8080/token",
        "http://127.0.0.1:8080/t",
        None,
        Ok(()),
    );
    check(
        "http://[::1]:8080/token",
        "http://[::1]:8080/t",
        None,
        Ok(()),
    );
    check(
        "http://localhost:8080/token",
        "http://localhost:8080/t",
        None,
        Ok(()),
    );
    check(
        "http://idp.localhost/token",
        "http://idp.localhost/t",
        None,
        Ok(()),
    );
}

#[test]
fn token_endpoint_origin_is_validated() {
    let bad = |value: &str| {
        let text = config_text_with(&format!("token_endpoint_origin = \"{value}\""));
        let err = config::parse(&text, "t", std::path::Path::new("."), &secrets()).unwrap_err();
        let problems = err.problems().to_vec();
        assert!(
            problems
                .iter()
                .any(|p| p.path == "tenant[0].domain[0].login.token_endpoint_origin"),
            "{value}: {problems:?}"
        );
    };
    bad("https://login.example/token");
    bad("login.example");
    bad("ftp://login.example");
    bad("https://login.example/?q=1");
    let ok = config_text_with("token_endpoint_origin = \"https://login.example:8443\"");
    let cfg = config::parse(&ok, "t", std::path::Path::new("."), &secrets()).unwrap();
    let login = cfg.tenants[0].domains[0].login.as_ref().unwrap();
    assert_eq!(
        login.token_endpoint_origin,
        Some(Url::parse("https://login.example:8443").unwrap().origin())
    );
}

fn secrets() -> MemorySecrets {
    MemorySecrets::new().with_env("SECRET", SECRET)
}

fn config_text_with(line: &str) -> String {
    format!(
        r#"
[[tenant]]
name = "t"
[[tenant.domain]]
name = "d"
issuer = "https://idp.example/t"
[[tenant.domain.jwks]]
name = "cdn"
[tenant.domain.login]
client_id = "keycanary"
client_secret = {{ env = "SECRET" }}
{line}
"#
    )
}

/// Every string of a login or discovery observation is scrubbed, nested ones and the
/// serde-flattened ones included, and the rest comes back unchanged.
#[test]
fn observations_are_scrubbed_whole() {
    use crate::model::{
        DiscoveryObservation, DiscoveryResult, Fetch, FetchErrorKind, FetchOutcome, TokenCheck,
        TokenCheckResult, TokenClaims, TokenHeader, TokenInfo, ViewId,
    };
    let cfg = config(
        "https://idp.example/t",
        Some("https://idp.example/t/token"),
        "",
    );
    let prober = Prober::new(&cfg, clock::system()).unwrap();
    let fetch = |url: String| Fetch {
        url,
        started_at: crate::model::Timestamp(1),
        duration_ms: 2,
        outcome: FetchOutcome::Error {
            kind: FetchErrorKind::Other,
            message: format!("echo {PASSWORD}"),
        },
    };
    let login = LoginObservation {
        grant: "password".into(),
        fetch: Some(fetch(format!("https://idp.example/t/token?s={SECRET}"))),
        result: LoginResult::Tokens {
            tokens: vec![TokenInfo {
                kind: TokenKind::AccessToken,
                header: TokenHeader {
                    alg: "RS256".into(),
                    kid: Some(format!("kid-{SECRET}")),
                    typ: None,
                },
                claims: TokenClaims {
                    iss: Some(format!("https://idp.example/{PASSWORD}")),
                    aud: vec![SECRET.into()],
                    exp: Some(5),
                    nbf: None,
                    iat: Some(1),
                },
                checks: vec![TokenCheck {
                    view: ViewId::origin(),
                    result: TokenCheckResult::SignatureInvalid {
                        reason: format!("bad {SECRET}"),
                    },
                }],
            }],
        },
    };
    let discovery = DiscoveryObservation {
        fetch: fetch("https://idp.example/t/.well-known/openid-configuration".into()),
        result: DiscoveryResult::Parsed {
            doc: DiscoveryDoc {
                issuer: format!("https://idp.example/t?{SECRET}"),
                jwks_uri: "https://idp.example/t/jwks".into(),
                token_endpoint: Some(format!("https://idp.example/t/token?{PASSWORD}")),
                authorization_endpoint: Some(format!("https://idp.example/t/auth?{PASSWORD}")),
                id_token_signing_alg_values_supported: vec![format!("RS256{SECRET}")],
                other_signing_alg_values_supported: Vec::new(),
            },
        },
    };
    for text in [
        serde_json::to_string(&prober.scrubbed(login.clone())).unwrap(),
        serde_json::to_string(&prober.scrubbed(discovery.clone())).unwrap(),
    ] {
        assert!(!text.contains(SECRET) && !text.contains(PASSWORD), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
    let scrubbed = prober.scrubbed(login.clone());
    assert_eq!(scrubbed.grant, login.grant);
    match scrubbed.result {
        LoginResult::Tokens { tokens } => {
            assert_eq!(tokens[0].claims.exp, Some(5));
            assert_eq!(tokens[0].header.kid.as_deref(), Some("kid-<redacted>"));
        }
        other => panic!("{other:?}"),
    }
    // Nothing to scrub: the same value back.
    let clean = LoginObservation {
        grant: "password".into(),
        fetch: None,
        result: LoginResult::Failed {
            reason: "nothing secret".into(),
        },
    };
    assert_eq!(prober.scrubbed(clean.clone()), clean);
}
