//! Secret hygiene, end to end: a marker secret in every secret field of probes.toml (the
//! client secret, the password, the refresh token, the webhook HMAC key, the Slack URL,
//! the PagerDuty routing key, the SMTP password, the API bearer token, an OTLP header),
//! the real binary at debug level against a hostile IdP that echoes back everything it is
//! sent (in `error_description`, its discovery document, its keys' kids, a redirect's
//! `Location`),
//! and then every output is searched for the markers: stdout, stderr, every file of the
//! state directory (the database and its WAL), every API route, `/metrics`, and every
//! notification received (webhook, Slack, PagerDuty, email). Zero hits, but for the
//! PagerDuty routing key in the `routing_key` member of what PagerDuty receives (where
//! the Events API requires it).

use crate::check::repo;
use crate::peers::{free_port, signal, wait_until};
use crate::receivers::{Hook, mail_sink};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(120);

/// (environment variable, marker): every secret of the config, each unique.
const MARKERS: &[(&str, &str)] = &[
    ("KC_CLIENT_SECRET", "kcmark-client-secret-3b9f"),
    ("KC_PASSWORD", "kcmark-password-a41c"),
    ("KC_REFRESH_TOKEN", "kcmark-refresh-token-77d0"),
    ("KC_HMAC_KEY", "kcmark-hmac-key-e5a2"),
    ("KC_PAGERDUTY_KEY", "kcmark-pagerduty-key-19c4"),
    ("KC_SMTP_PASSWORD", "kcmark-smtp-password-c06b"),
    ("KC_API_TOKEN", "kcmark-bearer-token-58fe"),
    ("KC_OTLP_KEY", "kcmark-otlp-header-2d17"),
];
/// The Slack URL's secret part (the whole URL is the secret; it points at a receiver).
const SLACK_MARK: &str = "kcmark-slack-path-9a3e";

/// What the hostile IdP has been sent so far (forms and decoded Basic credentials).
#[derive(Clone, Default)]
struct Idp {
    heard: Arc<Mutex<String>>,
    /// What the private_key_jwt tenant sent (its client assertion), kept apart: echoed
    /// in its own error, not into the kids and issuers every tenant gets.
    jwt_heard: Arc<Mutex<String>>,
    /// Where the redirecting tenant's token endpoint sends clients.
    elsewhere: String,
    base: Arc<Mutex<String>>,
}

impl Idp {
    fn hear(&self, headers: &HeaderMap, body: &str) -> String {
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let text = format!("form {body} basic {basic}");
        self.heard.lock().unwrap().push_str(&text);
        text
    }
}

async fn discovery(State(idp): State<Idp>, UrlPath(t): UrlPath<String>) -> Response {
    let base = idp.base.lock().unwrap().clone();
    let heard = idp.heard.lock().unwrap().clone();
    // Echo what it heard in the issuer (a drift finding quotes it) and in a field.
    axum::Json(json!({
        "issuer": format!("{base}/{t}?heard={heard}"),
        "jwks_uri": format!("{base}/{t}/jwks"),
        "token_endpoint": format!("{base}/{t}/token"),
        "authorization_endpoint": format!("{base}/{t}/auth"),
        "id_token_signing_alg_values_supported": [format!("RS256{heard}")],
    }))
    .into_response()
}

/// One (weak) key whose kid and alg are what the IdP heard: findings quote kids.
async fn jwks(State(idp): State<Idp>) -> Response {
    let heard = idp.heard.lock().unwrap().clone();
    axum::Json(json!({"keys": [
        {"kty": "RSA", "kid": format!("kid-{heard}"), "alg": format!("RS256 {heard}"), "n": "AQAB", "e": "AQAB"}
    ]}))
    .into_response()
}

async fn token(
    State(idp): State<Idp>,
    UrlPath(t): UrlPath<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if t == "jwt" {
        idp.jwt_heard.lock().unwrap().push_str(&body);
        // The assertion first, so that the description's cut falls inside it.
        let from = body.find("client_assertion=").unwrap_or(0);
        let description = format!("you sent {} {body}", &body[from..]);
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_client", "error_description": description})),
        )
            .into_response();
    }
    let heard = idp.hear(&headers, &body);
    if t == "redirect" {
        let location = format!("{}/steal?{heard}", idp.elsewhere).replace(' ', "+");
        let mut h = HeaderMap::new();
        h.insert(header::LOCATION, location.parse().unwrap());
        return (StatusCode::TEMPORARY_REDIRECT, h).into_response();
    }
    let description = format!("you sent {heard} \u{1b}[31m and that is wrong");
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": "invalid_client", "error_description": description})),
    )
        .into_response()
}

/// The sign-in page: its title echoes what the IdP heard.
async fn sign_in_page(State(idp): State<Idp>, UrlPath(t): UrlPath<String>) -> Response {
    let heard = idp.heard.lock().unwrap().clone();
    axum::response::Html(format!(
        "<html><head><title>hello {heard}</title></head><body><form method=\"post\" action=\"/{t}/signin\"><input name=\"user\"><input type=\"password\" name=\"pw\"><button>Sign in</button></form></body></html>"
    ))
    .into_response()
}

/// The sign-in form's target: sends the browser back with an error that echoes the form.
async fn sign_in(State(idp): State<Idp>, headers: HeaderMap, body: String) -> Response {
    let heard = idp.hear(&headers, &format!("signin {body}"));
    let mut back = url::Url::parse("http://127.0.0.1:9/cb").unwrap();
    back.query_pairs_mut()
        .append_pair("error", &format!("denied {heard}"))
        .append_pair("error_description", &format!("you sent {heard}"))
        .append_pair("state", "x");
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, back.as_str().parse().unwrap());
    (StatusCode::FOUND, h).into_response()
}

async fn start_idp(elsewhere: String) -> (String, Idp) {
    let idp = Idp {
        elsewhere,
        ..Default::default()
    };
    let app = Router::new()
        .route("/{t}/.well-known/openid-configuration", get(discovery))
        .route("/{t}/jwks", get(jwks))
        .route("/{t}/token", post(token))
        .route("/{t}/auth", get(sign_in_page))
        .route("/{t}/signin", post(sign_in))
        .with_state(idp.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *idp.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, idp)
}

fn domain(idp: &str, tenant: &str, login: &str) -> String {
    format!(
        "[[tenant]]\nname = \"{tenant}\"\nclient_profiles = [\"jose\"]\n[[tenant.domain]]\nname = \"d\"\nissuer = \"{idp}/{tenant}\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n[tenant.domain.login]\nclient_id = \"keycanary\"\nclient_secret = {{ env = \"KC_CLIENT_SECRET\" }}\n{login}\n"
    )
}

/// Every occurrence of a marker in `text`, named by where it was found.
fn hits(place: &str, text: &str, slack_url: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (_, marker) in MARKERS {
        if text.contains(marker) {
            found.push(format!("{place}: {marker}"));
        }
    }
    for m in [SLACK_MARK, slack_url] {
        if text.contains(m) {
            found.push(format!("{place}: the Slack URL"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_any_output() {
    let dir = tempfile::tempdir().unwrap();
    // Where the redirect points: must never be asked anything.
    let stolen = Arc::new(AtomicUsize::new(0));
    let counted = stolen.clone();
    let thief = Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { "thanks" }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, thief).await });
    let (idp, heard) = start_idp(elsewhere).await;

    let webhook = Hook::start(0).await;
    let slack = Hook::start(0).await;
    let pagerduty = Hook::start(0).await;
    let mail = mail_sink(dir.path(), 0).await;
    let slack_url = format!("{}?{SLACK_MARK}", slack.url());
    let api_port = free_port();
    let otlp_port = free_port(); // nothing listens: exports fail, and are logged
    let mut text = format!(
        "interval = \"2s\"\ntimeout = \"2s\"\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\nbearer_token = {{ env = \"KC_API_TOKEN\" }}\n\n[telemetry.otlp]\nendpoint = \"http://127.0.0.1:{otlp_port}\"\nheaders = {{ \"x-api-key\" = {{ env = \"KC_OTLP_KEY\" }} }}\n\n"
    );
    text.push_str(&domain(&idp, "echo", "grant = \"client_credentials\""));
    text.push_str(&domain(
        &idp,
        "redirect",
        "grant = \"password\"\nauth = \"client_secret_post\"\nusername = \"probe\"\npassword = { env = \"KC_PASSWORD\" }",
    ));
    text.push_str(&domain(
        &idp,
        "signin",
        "grant = \"authorization_code\"\nusername = \"probe\"\npassword = { env = \"KC_PASSWORD\" }\nredirect_uri = \"http://127.0.0.1:9/cb\"",
    ));
    // The client key: a real key (it must parse), searched for by its PEM lines.
    let client_key = {
        let der = rcgen::KeyPair::generate().unwrap().serialize_der();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<String> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        lines
    };
    let client_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        client_key.join("\n")
    );
    text.push_str(&format!(
        "[[tenant]]\nname = \"jwt\"\nclient_profiles = [\"jose\"]\n[[tenant.domain]]\nname = \"d\"\nissuer = \"{idp}/jwt\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n[tenant.domain.login]\nclient_id = \"keycanary\"\nauth = \"private_key_jwt\"\nclient_key = {{ env = \"KC_CLIENT_KEY\" }}\nclient_key_id = \"ck-1\"\nclient_key_alg = \"ES256\"\n"
    ));
    text.push_str(&domain(
        &idp,
        "refresh",
        "grant = \"refresh_token\"\nauth = \"client_secret_post\"\nrefresh_token = { env = \"KC_REFRESH_TOKEN\" }",
    ));
    text.push_str(&format!(
        r#"
[alerting]
failure_threshold = 1
[[alerting.channel]]
name = "hook"
type = "webhook"
url = "{webhook}"
hmac_key = {{ env = "KC_HMAC_KEY" }}
[[alerting.channel]]
name = "slack"
type = "slack"
url = {{ env = "KC_SLACK_URL" }}
[[alerting.channel]]
name = "pd"
type = "pagerduty"
url = "{pagerduty}"
routing_key = {{ env = "KC_PAGERDUTY_KEY" }}
[[alerting.channel]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp}
tls = "none"
from = "keycanary@example.com"
to = ["sre@example.com"]
[[alerting.channel]]
name = "mail-auth"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp}
tls = "none"
username = "keycanary"
password = {{ env = "KC_SMTP_PASSWORD" }}
from = "keycanary@example.com"
to = ["sre@example.com"]
[[alerting.route]]
channels = ["hook", "slack", "pd", "mail", "mail-auth"]
"#,
        webhook = webhook.url(),
        pagerduty = pagerduty.url(),
        smtp = mail.port,
    ));
    let path = dir.path().join("probes.toml");
    std::fs::write(&path, &text).unwrap();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keycanary"));
    cmd.args(["run", "--config"])
        .arg(&path)
        .current_dir(repo())
        .env("RUST_LOG", "debug")
        .env("KC_SLACK_URL", &slack_url)
        .env("KC_CLIENT_KEY", &client_pem)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .kill_on_drop(true);
    for (var, marker) in MARKERS {
        cmd.env(var, marker);
    }
    let mut child = cmd.spawn().unwrap();

    // Every channel has been notified, and the IdP has heard every login secret.
    wait_until(
        "a notification on every HTTP channel and by mail",
        BOUND,
        || async {
            !webhook.bodies().is_empty()
                && !slack.bodies().is_empty()
                && !pagerduty.bodies().is_empty()
                && !mail.mails().is_empty()
        },
    )
    .await;
    let told = heard.heard.lock().unwrap().clone();
    for marker in [
        "kcmark-client-secret",
        "kcmark-password",
        "kcmark-refresh-token",
    ] {
        assert!(
            told.contains(marker),
            "the IdP never heard {marker}: {told}"
        );
    }

    // Two more full rounds, so that what the IdP heard is in its discovery and keys too.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let rounds = || async {
        let r = http
            .get(format!("http://127.0.0.1:{api_port}/readyz"))
            .send()
            .await;
        match r {
            Ok(r) => r.json::<serde_json::Value>().await.unwrap_or_default()["rounds"]
                .as_u64()
                .unwrap_or(0),
            Err(_) => 0,
        }
    };
    let seen = rounds().await;
    wait_until("two more rounds", BOUND, || async {
        rounds().await >= seen + 2
    })
    .await;
    // The sign-in form got the password (and its page then echoed it back in its title
    // and in the error it sent the browser back with).
    let told = heard.heard.lock().unwrap().clone();
    assert!(
        told.contains("form signin user=probe&pw=kcmark-password-a41c"),
        "the sign-in form never got the password: {told}"
    );

    // Every route, with the token.
    let token = MARKERS
        .iter()
        .find(|(v, _)| *v == "KC_API_TOKEN")
        .unwrap()
        .1;
    let mut outputs: Vec<(String, String)> = Vec::new();
    for route in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/status",
        "/v1/findings",
        "/v1/gate/rotation?tenant=echo",
        "/v1/gate/retirement?tenant=echo&kid=k",
        "/v1/silences",
        "/openapi.json",
        "/",
    ] {
        let resp = http
            .get(format!("http://127.0.0.1:{api_port}{route}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_ne!(resp.status(), 401, "{route}");
        outputs.push((format!("GET {route}"), resp.text().await.unwrap()));
    }
    let findings = &outputs
        .iter()
        .find(|(r, _)| r == "GET /v1/findings")
        .unwrap()
        .1;
    for tenant in ["echo", "redirect", "signin", "jwt", "refresh"] {
        assert!(
            findings.contains(&format!("\"tenant\":\"{tenant}\""))
                && findings.contains("login_failed"),
            "no login_failed for {tenant}: {findings}"
        );
    }
    assert!(
        findings.contains("<redacted>"),
        "the echo was not scrubbed: {findings}"
    );
    assert!(findings.contains("a redirect to"), "{findings}");
    let parsed: serde_json::Value = serde_json::from_str(findings).unwrap();
    let echoed_kid = parsed["findings"].as_array().unwrap().iter().any(|f| {
        f["code"] == "weak_key"
            && f["subject"]["kid"]
                .as_str()
                .unwrap_or("")
                .contains("<redacted>")
    });
    assert!(
        echoed_kid,
        "no weak_key about a kid that echoed a secret: {findings}"
    );

    signal(&child, "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stopped within 30 s")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    assert_eq!(
        stolen.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );

    // PagerDuty's Events API takes the routing key in the body: there, and only there.
    let pd_key = MARKERS
        .iter()
        .find(|(v, _)| *v == "KC_PAGERDUTY_KEY")
        .unwrap()
        .1;
    let pd_bodies: Vec<serde_json::Value> = pagerduty
        .bodies()
        .into_iter()
        .map(|mut b| {
            assert_eq!(b["routing_key"], pd_key, "{b}");
            b.as_object_mut().unwrap().remove("routing_key");
            b
        })
        .collect();
    for (name, bodies) in [
        ("webhook", webhook.bodies()),
        ("slack", slack.bodies()),
        ("pagerduty", pd_bodies),
        ("mail", mail.mails()),
    ] {
        for b in bodies {
            outputs.push((format!("{name} notification"), b.to_string()));
        }
    }
    for entry in std::fs::read_dir(dir.path().join("mail")).unwrap() {
        let p = entry.unwrap().path();
        outputs.push((
            p.display().to_string(),
            String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned(),
        ));
    }
    for entry in std::fs::read_dir(dir.path().join(".state")).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        outputs.push((
            p.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(log.contains("DEBUG"), "stderr is not at debug level");
    outputs.push(("stdout".into(), std::fs::read_to_string(&stdout).unwrap()));
    outputs.push(("stderr".into(), log));
    assert!(
        outputs.iter().any(|(p, _)| p.ends_with("state.db")),
        "no database in the state directory"
    );

    // The client assertion the jwt tenant sent (a credential while it lives), as the IdP
    // heard it.
    // Each one's first 80 characters: its header and the start of its claims, so that a
    // prefix left by a cut is found too.
    let told = heard.jwt_heard.lock().unwrap().clone();
    let assertions: Vec<String> = told
        .split("client_assertion=")
        .skip(1)
        .filter_map(|r| r.split('&').next())
        .map(|a| a.chars().take(80).collect())
        .collect();
    assert!(
        !assertions.is_empty() && assertions.iter().all(|a| a.len() == 80),
        "{told}"
    );
    let mut found: Vec<String> = outputs
        .iter()
        .flat_map(|(place, text)| hits(place, text, &slack_url))
        .collect();
    for (place, text) in &outputs {
        // Whole 64-character lines (the last, shorter one could match by chance).
        let whole = client_key.iter().filter(|line| line.len() == 64);
        if whole.clone().any(|line| text.contains(line.as_str())) {
            found.push(format!("{place}: the client key"));
        }
        if assertions.iter().any(|a| text.contains(a.as_str())) {
            found.push(format!("{place}: the client assertion"));
        }
    }
    assert!(found.is_empty(), "secrets found:\n{}", found.join("\n"));
}
