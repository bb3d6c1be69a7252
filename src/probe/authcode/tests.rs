//! The form driver over real HTTP on loopback, against a small sign-in site (a session
//! cookie, a login page, a consent page, PKCE checked at its token endpoint), each test
//! with one twist: what goes right, and where a credential must not go.

use crate::clock;
use crate::config::{self, Config, MemorySecrets};
use crate::model::{LoginObservation, LoginResult, TokenKind};
use crate::probe::Prober;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const PASSWORD: &str = "password-marker-5e1d";
const SECRET: &str = "client-secret-marker-0b7c";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// A sign-in page that is only a script: it builds the login form (with its hidden
/// field) once the page has loaded; a client without JavaScript sees no form.
const SCRIPT_ONLY: &str = r#"<html><head><title>Loading</title></head><body><div id="app"></div>
<script>
function render() {
  document.title = "Sign in";
  const f = document.createElement("form");
  f.method = "post";
  f.action = "/login";
  f.innerHTML = '<input type="hidden" name="csrf" value="c-' + (3 * 3) + '">'
    + '<input type="email" name="user"><input type="password" name="pw">'
    + '<button>Sign in</button>';
  document.getElementById("app").appendChild(f);
}
setTimeout(render, 50);
</script></body></html>"#;

/// What the site does differently.
#[derive(Clone, Copy, PartialEq)]
enum Twist {
    None,
    WrongPassword,
    /// The authorization endpoint redirects to the other server.
    RedirectElsewhere,
    /// The login form posts to the other server.
    FormElsewhere,
    WrongState,
    WrongNonce,
    /// The sign-in page is a script that builds the form: no form without JavaScript.
    ScriptOnly,
}

#[derive(Clone)]
struct Site {
    twist: Twist,
    elsewhere: String,
    /// The authorization request's parameters.
    asked: Arc<Mutex<HashMap<String, String>>>,
    /// Every form body and request line the site got, for the assertions.
    heard: Arc<Mutex<Vec<String>>>,
}

fn redirect(to: &str, cookie: Option<&str>) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, to.parse().unwrap());
    if let Some(c) = cookie {
        h.insert(header::SET_COOKIE, c.parse().unwrap());
    }
    (StatusCode::FOUND, h).into_response()
}

async fn authorize(State(s): State<Site>, Query(q): Query<HashMap<String, String>>) -> Response {
    *s.asked.lock().unwrap() = q;
    if s.twist == Twist::RedirectElsewhere {
        return redirect(&format!("{}/login", s.elsewhere), None);
    }
    redirect(
        "/login?flow=abcdefabcdefabcdef",
        Some("sid=s-1; Path=/; HttpOnly"),
    )
}

fn login_page(s: &Site) -> Response {
    if s.twist == Twist::ScriptOnly {
        return Html(SCRIPT_ONLY).into_response();
    }
    let action = match s.twist {
        Twist::FormElsewhere => format!("{}/login", s.elsewhere),
        _ => "/login".to_owned(),
    };
    Html(format!(
        r#"<html><head><title>Sign in</title></head><body><form method="post" action="{action}">
<input type="hidden" name="csrf" value="c-9"><input type="email" name="user">
<input type="password" name="pw"><button>Sign in</button></form></body></html>"#
    ))
    .into_response()
}

fn has_session(headers: &HeaderMap) -> bool {
    headers.get(header::COOKIE).and_then(|v| v.to_str().ok()) == Some("sid=s-1")
}

async fn login_get(State(s): State<Site>, headers: HeaderMap) -> Response {
    if !has_session(&headers) {
        return (StatusCode::BAD_REQUEST, "no session").into_response();
    }
    login_page(&s)
}

async fn login(
    State(s): State<Site>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !has_session(&headers) {
        return (StatusCode::BAD_REQUEST, "no session").into_response();
    }
    s.heard.lock().unwrap().push(format!("login {f:?}"));
    let ok = f.get("csrf").map(String::as_str) == Some("c-9")
        && f.get("user").map(String::as_str) == Some("probe@example.test")
        && f.get("pw").map(String::as_str) == Some(PASSWORD)
        && s.twist != Twist::WrongPassword;
    if !ok {
        return login_page(&s);
    }
    redirect("/consent", None)
}

async fn consent_get() -> Response {
    Html(
        r#"<form method="post" action="/consent"><button name="d" value="no">Deny</button>
<button name="d" value="yes">Allow</button></form>"#,
    )
    .into_response()
}

async fn consent(State(s): State<Site>, Form(f): Form<HashMap<String, String>>) -> Response {
    if f.get("d").map(String::as_str) != Some("yes") {
        return (StatusCode::FORBIDDEN, "denied").into_response();
    }
    let asked = s.asked.lock().unwrap().clone();
    let state = match s.twist {
        Twist::WrongState => "forged".to_owned(),
        _ => asked["state"].clone(),
    };
    redirect(
        &format!("{}?code=code-77&state={state}", asked["redirect_uri"]),
        None,
    )
}

async fn token(State(s): State<Site>, Form(f): Form<HashMap<String, String>>) -> Response {
    s.heard.lock().unwrap().push(format!("token {f:?}"));
    let asked = s.asked.lock().unwrap().clone();
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    let pkce = super::checks::code_challenge(&verifier) == asked["code_challenge"];
    if f.get("code").map(String::as_str) != Some("code-77") || !pkce {
        let body = serde_json::json!({"error": "invalid_grant"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let nonce = match s.twist {
        Twist::WrongNonce => "other".to_owned(),
        _ => asked["nonce"].clone(),
    };
    let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    let id_token = format!(
        "{}.{}.c2ln",
        enc(serde_json::json!({"alg": "RS256", "kid": "k1"})),
        enc(serde_json::json!({"iss": "x", "aud": "web", "nonce": nonce}))
    );
    axum::Json(serde_json::json!({"access_token": "opaque", "id_token": id_token})).into_response()
}

/// The other server: counts what reaches it.
async fn elsewhere() -> (String, Arc<Mutex<Vec<String>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let app = Router::new().fallback(any(move |body: String| {
        let h = h.clone();
        async move {
            h.lock().unwrap().push(body);
            "hello"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, heard)
}

struct Run {
    obs: LoginObservation,
    tokens: Vec<(TokenKind, String)>,
    site: Vec<String>,
    elsewhere: Vec<String>,
}

async fn run(twist: Twist) -> Run {
    run_with(twist, Drive::Form).await
}

/// Which driver signs in.
#[derive(Clone, Copy, PartialEq)]
enum Drive {
    Form,
    Browser,
}

async fn run_with(twist: Twist, drive: Drive) -> Run {
    let (other, other_heard) = elsewhere().await;
    let site = Site {
        twist,
        elsewhere: other,
        asked: Arc::default(),
        heard: Arc::default(),
    };
    let app = Router::new()
        .route("/authorize", get(authorize))
        .route("/login", get(login_get).post(login))
        .route("/consent", get(consent_get).post(consent))
        .route("/token", axum::routing::post(token))
        .with_state(site.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let cfg = config(&base, drive);
    let prober = Prober::new(&cfg, clock::system()).unwrap();
    let domain = &cfg.tenants[0].domains[0];
    let login = domain.login.as_ref().unwrap();
    let (obs, tokens) = prober.login("t/d", login, &domain.issuer, None).await;
    let site = site.heard.lock().unwrap().clone();
    let elsewhere = other_heard.lock().unwrap().clone();
    Run {
        obs,
        tokens,
        site,
        elsewhere,
    }
}

fn config(base: &str, drive: Drive) -> Config {
    let driver = match drive {
        Drive::Form => "submit_button = \"Allow\"",
        Drive::Browser => "driver = \"browser\"\nconsent_selector = \"button[value=yes]\"",
    };
    // Room for Chromium's start on a loaded machine: the sign-in includes it.
    let text = format!(
        r#"
timeout = "30s"
[[tenant]]
name = "t"
[[tenant.domain]]
name = "d"
issuer = "{base}"
discovery = false
[[tenant.domain.jwks]]
name = "cdn"
url = "{base}/jwks"
[tenant.domain.login]
grant = "authorization_code"
authorization_url = "{base}/authorize"
token_url = "{base}/token"
redirect_uri = "{REDIRECT}"
client_id = "web"
client_secret = {{ env = "SECRET" }}
username = "probe@example.test"
password = {{ env = "PASSWORD" }}
{driver}
"#
    );
    let secrets = MemorySecrets::new()
        .with_env("SECRET", SECRET)
        .with_env("PASSWORD", PASSWORD);
    config::parse(&text, "test", std::path::Path::new("."), &secrets)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn reason(r: &Run) -> &str {
    match &r.obs.result {
        LoginResult::Failed { reason } => {
            assert!(
                !reason.contains(PASSWORD) && !reason.contains(SECRET),
                "{reason}"
            );
            assert!(!reason.contains("code-77"), "{reason}");
            reason
        }
        other => panic!("expected a failed login, got {other:?}"),
    }
}

#[tokio::test]
async fn signs_in_through_login_and_consent_and_exchanges_the_code_with_pkce() {
    let r = run(Twist::None).await;
    assert!(
        matches!(r.obs.result, LoginResult::Tokens { .. }),
        "{:?}",
        r.obs
    );
    let kinds: Vec<TokenKind> = r.tokens.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [TokenKind::AccessToken, TokenKind::IdToken]);
    assert_eq!(r.obs.grant, "authorization_code");
    // The password went once, to the login form; the token request carried the code and
    // the verifier the site checked against the challenge, and no password.
    assert_eq!(r.site.iter().filter(|h| h.contains(PASSWORD)).count(), 1);
    assert!(r.site[0].starts_with("login "), "{:?}", r.site);
    let token = r.site.last().unwrap();
    assert!(
        token.starts_with("token ") && token.contains("code_verifier"),
        "{token}"
    );
    assert!(!token.contains(PASSWORD), "{token}");
    assert!(r.elsewhere.is_empty(), "{:?}", r.elsewhere);
}

#[tokio::test]
async fn a_refused_password_names_the_step() {
    let r = run(Twist::WrongPassword).await;
    let reason = reason(&r);
    assert!(
        reason.starts_with(
            "step 3 (POST /login): the sign-in page came back after the password was submitted"
        ),
        "{reason}"
    );
    assert!(reason.contains("(page title: Sign in)"), "{reason}");
}

#[tokio::test]
async fn no_credential_leaves_the_issuers_origin() {
    for twist in [Twist::RedirectElsewhere, Twist::FormElsewhere] {
        let r = run(twist).await;
        let reason = reason(&r);
        assert!(reason.contains("is not the issuer's origin"), "{reason}");
        assert!(r.elsewhere.is_empty(), "{:?}", r.elsewhere);
        assert!(r.site.iter().all(|h| !h.contains(PASSWORD)), "{:?}", r.site);
    }
    let r = run(Twist::FormElsewhere).await;
    assert!(
        reason(&r).starts_with("step 2 (GET /login): the password form posts elsewhere"),
        "{}",
        reason(&r)
    );
}

#[tokio::test]
async fn the_answer_must_belong_to_this_sign_in() {
    let r = run(Twist::WrongState).await;
    assert!(
        reason(&r).starts_with("step 5 (POST /consent): the state in the redirect"),
        "{}",
        reason(&r)
    );
    assert!(
        r.site.iter().all(|h| !h.starts_with("token")),
        "the code was exchanged"
    );
    let r = run(Twist::WrongNonce).await;
    assert!(
        reason(&r).contains("nonce is not the one keycanary sent"),
        "{}",
        reason(&r)
    );
    assert!(r.tokens.is_empty());
}

#[tokio::test]
async fn a_page_without_a_form_is_described() {
    let r = run(Twist::ScriptOnly).await;
    assert_eq!(
        reason(&r),
        "step 2 (GET /login): no form on the page (a page that needs JavaScript cannot be driven by the form driver) (page title: Loading)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_browser_driver_signs_in_on_a_page_that_needs_javascript() {
    let r = run_with(Twist::ScriptOnly, Drive::Browser).await;
    assert!(
        matches!(r.obs.result, LoginResult::Tokens { .. }),
        "{:?}",
        r.obs
    );
    let kinds: Vec<TokenKind> = r.tokens.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [TokenKind::AccessToken, TokenKind::IdToken]);
    // The script's form was posted by the browser with what keycanary typed (the site
    // checks the hidden field, the user and the password), the consent was clicked, and
    // the code from the intercepted redirect was exchanged with the PKCE verifier.
    assert_eq!(r.site.iter().filter(|h| h.contains(PASSWORD)).count(), 1);
    assert!(r.site[0].starts_with("login "), "{:?}", r.site);
    let token = r.site.last().unwrap();
    assert!(
        token.starts_with("token ") && token.contains("code_verifier"),
        "{token}"
    );
    assert!(r.elsewhere.is_empty(), "{:?}", r.elsewhere);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_browser_driver_keeps_the_password_on_the_issuers_origin() {
    let r = run_with(Twist::FormElsewhere, Drive::Browser).await;
    let reason = reason(&r);
    assert!(reason.contains("is not the issuer's origin"), "{reason}");
    assert!(reason.starts_with("step "), "{reason}");
    assert!(r.elsewhere.is_empty(), "{:?}", r.elsewhere);
    assert!(r.site.iter().all(|h| !h.contains(PASSWORD)), "{:?}", r.site);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_browser_driver_checks_the_answer_as_the_form_driver_does() {
    let r = run_with(Twist::WrongState, Drive::Browser).await;
    assert!(
        reason(&r).contains("the state in the redirect"),
        "{}",
        reason(&r)
    );
    assert!(
        r.site.iter().all(|h| !h.starts_with("token")),
        "the code was exchanged"
    );
}

/// Every span's name and fields (as text), recorded on this thread while a sign-in runs.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(String, String)>>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut text = format!("#{} ", id.into_u64());
        attrs.record(&mut Fields(&mut text));
        let name = attrs.metadata().name().to_owned();
        self.0.lock().unwrap().push((name, text));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut spans = self.0.lock().unwrap();
        let key = format!("#{} ", id.into_u64());
        if let Some((_, text)) = spans.iter_mut().rev().find(|(_, t)| t.starts_with(&key)) {
            values.record(&mut Fields(text));
        }
    }
}

#[test]
fn each_request_is_a_step_span_without_a_value() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = tracing::subscriber::with_default(subscriber, || runtime.block_on(run(Twist::None)));
    assert!(
        matches!(r.obs.result, LoginResult::Tokens { .. }),
        "{:?}",
        r.obs
    );
    let spans = spans.0.lock().unwrap().clone();
    let steps: Vec<String> = spans
        .iter()
        .filter(|(name, _)| name == "probe.login.step")
        .map(|(_, text)| text.split_once(' ').unwrap().1.trim().to_owned())
        .collect();
    assert_eq!(
        steps,
        [
            "step=1 http.method=\"GET\" url.path=/authorize form=\"authorize\" http.status=302",
            "step=2 http.method=\"GET\" url.path=/login form=\"redirect\" http.status=200",
            "step=3 http.method=\"POST\" url.path=/login form=\"password\" http.status=302",
            "step=4 http.method=\"GET\" url.path=/consent form=\"redirect\" http.status=200",
            "step=5 http.method=\"POST\" url.path=/consent form=\"consent\" http.status=302",
        ]
    );
    let all = format!("{spans:?}");
    for secret in [
        PASSWORD,
        SECRET,
        "probe@example.test",
        "code-77",
        "c-9",
        "sid=s-1",
    ] {
        assert!(!all.contains(secret), "`{secret}` in a span: {all}");
    }
    assert!(spans.iter().any(|(name, _)| name == "probe.login"), "{all}");
}

#[test]
fn each_browser_action_is_a_step_span_without_a_value() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(run_with(Twist::ScriptOnly, Drive::Browser))
    });
    assert!(
        matches!(r.obs.result, LoginResult::Tokens { .. }),
        "{:?}",
        r.obs
    );
    let spans = spans.0.lock().unwrap().clone();
    let steps: Vec<(String, String)> = spans
        .iter()
        .filter(|(name, _)| name == "probe.login.step")
        .map(|(_, text)| {
            let step = text.split(' ').nth(1).unwrap().to_owned();
            let action = text.split_once("action=").unwrap().1.trim().to_owned();
            (step, action)
        })
        .collect();
    let expected = [
        ("step=1", "open the authorization endpoint"),
        (
            "step=2",
            "type username into input[type=email], input[type=text], input:not([type])",
        ),
        ("step=3", "type password into input[type=password]"),
        ("step=4", "click [type=submit], form button:not([type])"),
        ("step=5", "click button[value=yes]"),
        ("step=6", "wait for the redirect to redirect_uri"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(s, a)| (s.to_string(), a.to_string()))
        .collect();
    assert_eq!(steps, expected);
    assert!(
        spans
            .iter()
            .any(|(n, t)| n == "probe.login.step" && t.contains("url.path=/login")),
        "{spans:?}"
    );
    let all = format!("{spans:?}");
    for secret in [PASSWORD, SECRET, "probe@example.test", "code-77", "c-9"] {
        assert!(!all.contains(secret), "`{secret}` in a span: {all}");
    }
}
