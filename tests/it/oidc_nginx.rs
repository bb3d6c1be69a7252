//! The seed incident on real components: oidc-provider rotates its signing key while
//! nginx still serves the old JWKS on one of its two domains.
//!
//! The first tests prove the stage (peers.rs) behaves like the incident; the last runs
//! `keycanary check` on it and asserts the findings, on the cached domain only.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Client;
use serde_json::Value;

use crate::peers::{Domain, Stage, StageOpts, generate_key, start_stage};

const RESOURCE: &str = "https://api.example.test/";

/// A JWKS as served, with nginx's verdict (`X-Cache-Status`, empty when not cached).
struct Fetched {
    cache_status: String,
    jwks: JwkSet,
}

async fn fetch_jwks(http: &Client, domain: &Domain, refresh: bool) -> Fetched {
    let mut request = http.get(&domain.jwks_url);
    if refresh {
        request = request.header("X-Refresh", "1");
    }
    let response = request.send().await.expect("jwks request");
    assert!(
        response.status().is_success(),
        "{}: {}",
        domain.jwks_url,
        response.status()
    );
    let cache_status = response
        .headers()
        .get("x-cache-status")
        .map(|v| v.to_str().expect("ascii header").to_owned())
        .unwrap_or_default();
    let jwks = response.json().await.expect("jwks json");
    Fetched { cache_status, jwks }
}

async fn access_token(http: &Client, stage: &Stage, domain: &Domain) -> String {
    let response: Value = http
        .post(&domain.token_url)
        .basic_auth(&stage.idp.client_id, Some(&stage.idp.client_secret))
        .form(&[("grant_type", "client_credentials"), ("resource", RESOURCE)])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token json");
    let token = response["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {response}"));
    let header = jsonwebtoken::decode_header(token).expect("a JWT access token");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    token.to_owned()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT")
        .kid
        .expect("kid in header")
}

/// Verifies `token` (issued by `issuer`) against `jwks`; `Err` says why not.
fn verify(token: &str, jwks: &JwkSet, issuer: &str) -> Result<(), String> {
    let kid = kid(token);
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} not in JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[RESOURCE]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn discovery_on_each_domain_points_at_that_domain() {
    let stage = start_stage(StageOpts::default()).await;
    let http = Client::new();
    for domain in stage.domains() {
        let discovery: Value = http
            .get(&domain.discovery_url)
            .send()
            .await
            .expect("discovery request")
            .json()
            .await
            .expect("discovery json");
        let urls = ["issuer", "jwks_uri", "token_endpoint"].map(|k| discovery[k].as_str());
        let expected = [&domain.issuer, &domain.jwks_url, &domain.token_url].map(|u| Some(&**u));
        assert_eq!(urls, expected, "{}", domain.name);
    }
}

#[tokio::test]
async fn rotation_behind_a_caching_cdn_leaves_the_new_kid_out_of_the_cached_jwks() {
    let mut stage = start_stage(StageOpts::default()).await;
    let (app, io) = (stage.app(), stage.io());
    assert!(!app.cached && io.cached);
    let http = Client::new();

    // Before the rotation both domains publish the signer, and io's CDN caches it.
    let old = access_token(&http, &stage, &io).await;
    let first = fetch_jwks(&http, &io, false).await;
    assert_eq!(first.cache_status, "MISS");
    let cached = fetch_jwks(&http, &io, false).await;
    assert_eq!(cached.cache_status, "HIT");
    verify(&old, &cached.jwks, &io.issuer).expect("old token against io's JWKS");
    let direct = fetch_jwks(&http, &app, false).await;
    assert_eq!(direct.cache_status, "");
    verify(&old, &direct.jwks, &io.issuer).expect("old token against app's JWKS");

    // Rotate: a new signer first, the old key still published.
    let old_kid = kid(&old);
    stage
        .idp
        .rotate_to(generate_key("RS256", "key-2").await)
        .await;

    // New tokens on io are signed by the new key, which io's CDN does not know yet.
    let new = access_token(&http, &stage, &io).await;
    assert_eq!(kid(&new), "key-2");
    let stale = fetch_jwks(&http, &io, false).await;
    assert_eq!(stale.cache_status, "HIT");
    assert!(stale.jwks.find(&old_kid).is_some());
    let err = verify(&new, &stale.jwks, &io.issuer).expect_err("stale JWKS verifies new token");
    assert_eq!(err, "kid key-2 not in JWKS");

    // The uncached domain is fine: both keys, and its own tokens verify.
    let fresh = fetch_jwks(&http, &app, false).await;
    assert!(fresh.jwks.find(&old_kid).is_some() && fresh.jwks.find("key-2").is_some());
    let new_app = access_token(&http, &stage, &app).await;
    verify(&new_app, &fresh.jwks, &app.issuer).expect("app token against app's JWKS");

    // Purging the CDN ends the incident.
    stage.cdn.purge();
    let purged = fetch_jwks(&http, &io, false).await;
    assert_eq!(purged.cache_status, "MISS");
    verify(&new, &purged.jwks, &io.issuer).expect("new token after purge");
    assert_eq!(fetch_jwks(&http, &io, false).await.cache_status, "HIT");
}

#[tokio::test]
async fn refresh_header_refetches_and_overwrites_the_cached_jwks() {
    let mut stage = start_stage(StageOpts::default()).await;
    let io = stage.io();
    let http = Client::new();
    assert_eq!(fetch_jwks(&http, &io, false).await.cache_status, "MISS");
    stage
        .idp
        .rotate_to(generate_key("ES256", "key-ec").await)
        .await;
    assert!(
        fetch_jwks(&http, &io, false)
            .await
            .jwks
            .find("key-ec")
            .is_none()
    );

    let refreshed = fetch_jwks(&http, &io, true).await;
    assert_eq!(refreshed.cache_status, "BYPASS");
    assert!(refreshed.jwks.find("key-ec").is_some());
    let after = fetch_jwks(&http, &io, false).await;
    assert_eq!(after.cache_status, "HIT");
    assert!(after.jwks.find("key-ec").is_some());
}

/// A probes.toml for the stage: one tenant, both nginx domains, client_credentials with a
/// resource indicator, the discovery-advertised JWKS through the CDN, and the default
/// cache-busting origin view.
fn stage_config(stage: &Stage, dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::write(dir.join("client-secret"), &stage.idp.client_secret).unwrap();
    let mut text = String::from(
        "timeout = \"5s\"\nallowed_algs = [\"RS256\", \"ES256\"]\n\n[[tenant]]\nname = \"example\"\n",
    );
    for (name, domain) in [("app", stage.app()), ("io", stage.io())] {
        text.push_str(&format!(
            "\n[[tenant.domain]]\nname = \"{name}\"\nissuer = \"{}\"\n[tenant.domain.login]\nclient_id = \"{}\"\nclient_secret = {{ file = \"client-secret\" }}\nresource = \"{RESOURCE}\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n",
            domain.issuer, stage.idp.client_id
        ));
    }
    let path = dir.join("probes.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `(code, domain, path, kid)` of every finding in a `check --format json` report.
fn findings(report: &Value) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| {
            (
                s(&f["code"]),
                s(&f["subject"]["domain"]),
                s(&f["subject"]["path"]),
                s(&f["subject"]["kid"]),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn keycanary_check_sees_the_incident_on_nginx_and_oidc_provider() {
    let mut stage = start_stage(StageOpts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = stage_config(&stage, dir.path());
    let config = config.to_str().unwrap();
    let check = |fail_on: &'static str| {
        let config = config.to_owned();
        async move {
            crate::check::keycanary(
                &[
                    "check",
                    "--config",
                    &config,
                    "--format",
                    "json",
                    "--fail-on",
                    fail_on,
                ],
                &[],
            )
            .await
        }
    };

    // Before the rotation: tokens verify everywhere. The caching difference between the
    // two domains is already visible as cache_policy_drift, the seed's configuration drift.
    let before = check("critical").await;
    assert_eq!(before.code, 0, "{}\n{}", before.stdout, before.stderr);
    let found = findings(&before.json());
    assert!(
        found.iter().all(|f| f.0 == "cache_policy_drift"),
        "{found:?}"
    );
    assert!(
        found.iter().any(|f| f.0 == "cache_policy_drift"),
        "the app/io caching drift should show: {found:?}"
    );
    let old_kid = kid(&access_token(&Client::new(), &stage, &stage.app()).await);
    // Second round: io's JWKS is now a HIT.
    let warm = check("critical").await;
    assert_eq!(warm.code, 0, "{}", warm.stdout);

    stage
        .idp
        .rotate_to(generate_key("RS256", "key-2").await)
        .await;
    let after = check("high").await;
    assert_eq!(after.code, 1, "{}\n{}", after.stdout, after.stderr);
    let report = after.json();
    let found = findings(&report);
    let about = |code: &str| {
        found
            .iter()
            .filter(|f| f.0 == code)
            .map(|f| (f.1.as_str(), f.2.as_str(), f.3.as_str()))
            .collect::<Vec<_>>()
    };
    assert_eq!(about("kid_missing"), [("io", "cdn", "key-2")], "{report:#}");
    assert_eq!(about("stale_edge"), [("io", "cdn", "")], "{report:#}");
    let view = |domain: &str| {
        report["views"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["domain"] == domain && v["path"] == "cdn")
            .unwrap()
            .clone()
    };
    let io_cdn = view("io");
    assert_eq!(io_cdn["cache_status"], "HIT");
    assert_eq!(io_cdn["kids"], serde_json::json!([old_kid]));
    let app_cdn = view("app");
    assert_eq!(app_cdn["verdict"], "ok", "{app_cdn:#}");

    stage.cdn.purge();
    let purged = check("critical").await;
    assert_eq!(purged.code, 0, "{}", purged.stdout);
    assert!(
        findings(&purged.json())
            .iter()
            .all(|f| f.0 != "kid_missing" && f.0 != "stale_edge")
    );
}
