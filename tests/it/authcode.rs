//! The authorization-code grant on real sign-in pages: `keycanary check` signs in on
//! npm oidc-provider's own interaction pages (a login form, then a consent form) on both
//! domains of the seed's stage (nginx in front), exchanges the code with PKCE and verifies
//! the ID token and the JWT access token against every view. A client whose redirect_uri
//! the IdP does not know fails at the step that says so. A client registered with
//! `private_key_jwt` authenticates with its key (RS256, ES256, EdDSA) in every grant.
//! The browser driver (headless Debian Chromium) signs in on the same pages, both domains
//! at once in one browser, and its tokens are verified the same way.

use crate::peers::{
    OidcProviderOpts, Stage, StageOpts, generate_client_key, start_oidc_provider, start_stage,
};
use serde_json::Value;

const RESOURCE: &str = "https://api.example.test/";
/// Registered for the client by peers/node/oidc-provider.mjs; nobody serves it.
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// probes.toml for the stage, both domains signing in with `redirect_uri`.
fn config(stage: &Stage, dir: &std::path::Path, redirect_uri: &str) -> std::path::PathBuf {
    config_with(stage, dir, redirect_uri, "")
}

/// [`config`] with `driver` lines added to each login.
fn config_with(
    stage: &Stage,
    dir: &std::path::Path,
    redirect_uri: &str,
    driver: &str,
) -> std::path::PathBuf {
    std::fs::write(dir.join("client-secret"), &stage.idp.client_secret).unwrap();
    std::fs::write(dir.join("password"), "any-password-will-do").unwrap();
    let mut text = String::from(
        "timeout = \"10s\"\nallowed_algs = [\"RS256\"]\n\n[[tenant]]\nname = \"example\"\n",
    );
    for (name, domain) in [("app", stage.app()), ("io", stage.io())] {
        text.push_str(&format!(
            r#"
[[tenant.domain]]
name = "{name}"
issuer = "{issuer}"
[tenant.domain.login]
grant = "authorization_code"
client_id = "{client}"
client_secret = {{ file = "client-secret" }}
username = "probe"
password = {{ file = "password" }}
redirect_uri = "{redirect_uri}"
scope = "openid api"
resource = "{RESOURCE}"
{driver}
[[tenant.domain.jwks]]
name = "cdn"
"#,
            issuer = domain.issuer,
            client = stage.idp.client_id,
        ));
    }
    if !driver.is_empty() {
        // Room for Chromium's start on a loaded machine: the sign-in includes it.
        text = text.replace("timeout = \"10s\"", "timeout = \"30s\"");
    }
    let path = dir.join("probes.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn check(config: &std::path::Path, format: &str) -> crate::check::Run {
    let config = config.to_str().unwrap();
    crate::check::keycanary(
        &[
            "check",
            "--config",
            config,
            "--format",
            format,
            "--fail-on",
            "critical",
        ],
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn check_signs_in_on_oidc_provider_pages_and_verifies_both_tokens_on_every_view() {
    let stage = start_stage(StageOpts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(&stage, dir.path(), REDIRECT);

    let run = check(&path, "json").await;
    assert_eq!(
        run.code,
        0,
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        stage.idp.logs()
    );
    both_tokens_verified_on_every_view(&run.json());

    // The text report says the same, a line per domain.
    let text = check(&path, "text").await;
    assert_eq!(text.code, 0, "{}\n{}", text.stdout, text.stderr);
    for domain in ["app", "io"] {
        let line = text
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("login {domain} ")))
            .unwrap_or_else(|| panic!("no login line for {domain}:\n{}", text.stdout));
        assert!(
            line.contains("(authorization_code): ")
                && line.contains("id_token key-1 (RS256) verified on 2/2 views")
                && line.contains("access_token key-1 (RS256) verified on 2/2 views"),
            "{line}"
        );
    }
    assert!(!text.stdout.contains("any-password-will-do"));
    assert!(!text.stderr.contains("any-password-will-do"));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_signs_in_with_the_browser_driver_and_verifies_both_tokens_on_every_view() {
    let stage = start_stage(StageOpts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // oidc-provider's login form, then its consent form: the consent's button is the
    // one submit button of the page that follows the password's.
    let path = config_with(
        &stage,
        dir.path(),
        REDIRECT,
        "driver = \"browser\"\nconsent_selector = \"button[type=submit]\"",
    );
    let run = check(&path, "json").await;
    assert_eq!(
        run.code,
        0,
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        stage.idp.logs()
    );
    both_tokens_verified_on_every_view(&run.json());
    assert!(!run.stdout.contains("any-password-will-do"));
    assert!(!run.stderr.contains("any-password-will-do"));
}

/// Each domain signed in with the authorization code, and its ID token and JWT access
/// token verified on the CDN view and the origin; no finding but the stage's drift.
fn both_tokens_verified_on_every_view(report: &Value) {
    let codes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.iter().all(|c| *c == "cache_policy_drift"),
        "only the stage's caching drift: {report:#}"
    );
    let logins = report["logins"].as_array().unwrap();
    assert_eq!(logins.len(), 2, "{report:#}");
    for (login, domain) in logins.iter().zip(["app", "io"]) {
        assert_eq!(login["domain"], domain, "{login:#}");
        assert_eq!(login["grant"], "authorization_code", "{login:#}");
        assert_eq!(login["result"], "tokens", "{login:#}");
        let mut kinds: Vec<&str> = login["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].as_str().unwrap())
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["access_token", "id_token"], "{login:#}");
        for token in login["tokens"].as_array().unwrap() {
            assert_eq!(token["kid"], "key-1", "{token:#}");
            let checks: Vec<(&str, &str)> = token["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c["view"].as_str().unwrap(), c["result"].as_str().unwrap()))
                .collect();
            assert_eq!(
                checks,
                [("cdn", "verified"), ("origin", "verified")],
                "{token:#}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_redirect_uri_fails_at_the_first_step_and_says_so() {
    let stage = start_stage(StageOpts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(&stage, dir.path(), "http://127.0.0.1:9/elsewhere");
    let run = check(&path, "json").await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let failed: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "login_failed")
        .collect();
    assert_eq!(failed.len(), 2, "{report:#}");
    for f in failed {
        let message = f["message"].as_str().unwrap();
        // oidc-provider answers the authorization request with its error page.
        assert!(
            message.starts_with("authorization_code login failed: step 1 (GET /auth): HTTP 400"),
            "{message}"
        );
    }
    for login in report["logins"].as_array().unwrap() {
        assert_eq!(login["result"], "failed", "{login:#}");
        assert!(login["tokens"].as_array().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_authenticates_the_client_in_every_grant() {
    let mut public = Vec::new();
    let mut pems = Vec::new();
    for (alg, kid) in [("RS256", "ck-rsa"), ("ES256", "ck-ec"), ("EdDSA", "ck-ed")] {
        let (pem, jwk) = generate_client_key(alg, kid).await;
        public.push(jwk);
        pems.push((alg, kid, pem));
    }
    let idp = start_oidc_provider(OidcProviderOpts {
        jwt_client_keys: public,
        ..OidcProviderOpts::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "any-password-will-do").unwrap();
    let issuer = idp.base_url();
    let mut text = String::from("timeout = \"10s\"\n\n[[tenant]]\nname = \"jwt\"\n");
    // Each key with client_credentials, and the EC key with the sign-in as well; one
    // more with a kid the IdP does not know.
    let mut logins: Vec<(String, String)> = Vec::new();
    for (alg, kid, pem) in &pems {
        let file = format!("{kid}.pem");
        std::fs::write(dir.path().join(&file), pem).unwrap();
        let key = format!(
            "auth = \"private_key_jwt\"\nclient_key = {{ file = \"{file}\" }}\nclient_key_id = \"{kid}\"\nclient_key_alg = \"{alg}\"\n"
        );
        logins.push((
            format!("cc-{kid}"),
            format!("resource = \"{RESOURCE}\"\n{key}"),
        ));
        if *alg == "ES256" {
            logins.push((
                "signin".into(),
                format!(
                    "grant = \"authorization_code\"\nusername = \"probe\"\npassword = {{ file = \"password\" }}\nredirect_uri = \"{REDIRECT}\"\nscope = \"openid api\"\nresource = \"{RESOURCE}\"\n{key}"
                ),
            ));
            logins.push((
                "unknown-kid".into(),
                format!(
                    "resource = \"{RESOURCE}\"\n{}",
                    key.replace("ck-ec\"", "ck-nobody\"")
                ),
            ));
        }
    }
    for (name, login) in &logins {
        text.push_str(&format!(
            "\n[[tenant.domain]]\nname = \"{name}\"\nissuer = \"{issuer}\"\n[tenant.domain.login]\nclient_id = \"keycanary-jwt\"\n{login}[[tenant.domain.jwks]]\nname = \"jwks\"\n"
        ));
    }
    let path = dir.path().join("probes.toml");
    std::fs::write(&path, &text).unwrap();
    let run = check(&path, "json").await;
    let report = run.json();
    let logins = report["logins"].as_array().unwrap();
    let result = |domain: &str| {
        logins
            .iter()
            .find(|l| l["domain"] == domain)
            .unwrap_or_else(|| panic!("no login {domain}: {report:#}"))
    };
    for domain in ["cc-ck-rsa", "cc-ck-ec", "cc-ck-ed", "signin"] {
        let login = result(domain);
        assert_eq!(login["result"], "tokens", "{login:#}\n{}", idp.logs());
        for token in login["tokens"].as_array().unwrap() {
            assert!(
                token["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c["result"] == "verified"),
                "{token:#}"
            );
        }
    }
    assert_eq!(result("signin")["grant"], "authorization_code");
    assert_eq!(result("signin")["tokens"].as_array().unwrap().len(), 2);
    // A kid the IdP does not know: the token endpoint refuses the client.
    let refused = result("unknown-kid");
    assert_eq!(refused["result"], "failed", "{refused:#}");
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("HTTP 401: invalid_client"), "{reason}");
    for (_, _, pem) in &pems {
        let body = pem.lines().nth(1).unwrap();
        assert!(!run.stdout.contains(body) && !run.stderr.contains(body));
    }
}
