//! The stage's components on their own (tests/support/peers.rs): nginx caches per domain
//! as configured, oidc-provider issues JWT access tokens and changes keys in place,
//! oauth2-mock-server does the password and refresh_token grants.

use std::time::Duration;

use serde_json::Value;

use crate::peers::{
    Caching, CdnConf, OidcProviderOpts, StageOpts, free_port, generate_key, start_mock_oauth2,
    start_nginx, start_oidc_provider, start_stage,
};

#[tokio::test]
async fn nginx_caches_jwks_on_the_io_port_only() {
    // Any origin does for the template; the mock is the quickest to start.
    let origin = start_mock_oauth2().await;
    let cdn = start_nginx(&CdnConf {
        app_port: free_port(),
        app_upstream: origin.port,
        app: Caching::OFF,
        io_port: free_port(),
        io_upstream: origin.port,
        io: Caching::for_(Duration::from_secs(600)),
    })
    .await;
    let http = reqwest::Client::new();
    let cache_status = async |port: u16, path: &str| {
        let response = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .expect("request through nginx");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let status = response.headers().get("x-cache-status");
        status.map(|v| v.to_str().expect("ascii").to_owned())
    };
    let io = cdn.io_port;
    assert_eq!(cache_status(io, "/jwks").await.as_deref(), Some("MISS"));
    assert_eq!(cache_status(io, "/jwks").await.as_deref(), Some("HIT"));
    assert_eq!(
        cache_status(io, "/.well-known/openid-configuration")
            .await
            .as_deref(),
        Some("MISS")
    );
    assert_eq!(
        cache_status(io, "/.well-known/openid-configuration")
            .await
            .as_deref(),
        Some("HIT")
    );
    assert_eq!(cache_status(io, "/userinfo").await, None);
    assert_eq!(cache_status(cdn.app_port, "/jwks").await, None);
    cdn.purge();
    assert_eq!(cache_status(io, "/jwks").await.as_deref(), Some("MISS"));
}

/// The stage's two knobs beyond nginx: a key change without a restart (no request
/// refused meanwhile), and an injected origin error that only a domain caching errors
/// keeps.
#[tokio::test]
async fn stage_reloads_keys_in_place_and_io_keeps_an_injected_503() {
    let mut stage = start_stage(StageOpts {
        io: Caching {
            ttl: Some(Duration::from_secs(600)),
            error_ttl: Some(Duration::from_secs(600)),
            told_max_age: None,
        },
        ..StageOpts::default()
    })
    .await;
    let http = reqwest::Client::new();
    let get = async |url: &str| {
        let r = http.get(url).send().await.expect("request through nginx");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        let (cache, cc) = (header("x-cache-status"), header("cache-control"));
        (
            r.status().as_u16(),
            cache,
            cc,
            r.text().await.unwrap_or_default(),
        )
    };
    let (app, io) = (stage.app(), stage.io());
    assert!(!app.cached && io.cached);
    let (status, cache, cc, _) = get(&io.jwks_url).await;
    assert_eq!((status, cache.as_deref()), (200, Some("MISS")));
    assert_eq!(cc.as_deref(), Some("public, max-age=600"));
    assert_eq!(
        get(&app.jwks_url).await.2,
        None,
        "app says nothing about caching"
    );

    let staged = generate_key("RS256", "key-2").await;
    let keys = vec![stage.idp.keys()[0].clone(), staged];
    stage.idp.set_keys(keys).await;
    let (_, _, _, body) = get(&app.jwks_url).await;
    assert!(
        body.contains("\"key-2\""),
        "app serves the new set at once: {body}"
    );
    let (_, cache, _, body) = get(&io.jwks_url).await;
    assert_eq!(cache.as_deref(), Some("HIT"));
    assert!(
        !body.contains("\"key-2\""),
        "io still serves its copy: {body}"
    );

    stage.idp.fail_next(1, "/jwks", 503, 1).await;
    stage.cdn.purge();
    let (status, cache, _, _) = get(&io.jwks_url).await;
    assert_eq!((status, cache.as_deref()), (503, Some("MISS")));
    let (status, cache, _, _) = get(&io.jwks_url).await;
    assert_eq!(
        (status, cache.as_deref()),
        (503, Some("HIT")),
        "the 503 is kept"
    );
    // The failure was io's, and once: app's origin answers.
    assert_eq!(get(&app.jwks_url).await.0, 200);
}

#[tokio::test]
async fn oidc_provider_alone_issues_jwt_access_tokens_signed_by_its_first_key() {
    let idp = start_oidc_provider(OidcProviderOpts::default()).await;
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}/token", idp.base_url()))
        .basic_auth(&idp.client_id, Some(&idp.client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", "https://api.example.test/"),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token json");
    let access_token = token["access_token"].as_str().expect("access_token");
    let header = jsonwebtoken::decode_header(access_token).expect("a JWT");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), idp.keys()[0]["kid"].as_str());
    assert_eq!(idp.issuers, [idp.base_url()]);
}

#[tokio::test]
async fn mock_oauth2_password_and_refresh_grants_issue_jwts_it_publishes_keys_for() {
    let mock = start_mock_oauth2().await;
    let http = reqwest::Client::new();
    let jwks: jsonwebtoken::jwk::JwkSet = http
        .get(mock.jwks_url())
        .send()
        .await
        .expect("jwks request")
        .json()
        .await
        .expect("jwks json");
    for form in [
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "x"),
        ][..],
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "anything"),
        ][..],
    ] {
        let token: Value = http
            .post(mock.token_url())
            .basic_auth("any-client", Some("any-secret"))
            .form(form)
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token json");
        let access_token = token["access_token"].as_str().expect("access_token");
        let kid = jsonwebtoken::decode_header(access_token)
            .expect("a JWT")
            .kid
            .expect("kid");
        let jwk = jwks.find(&kid).expect("signing key published");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        validation.set_issuer(&[&mock.issuer]);
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("usable JWK");
        jsonwebtoken::decode::<Value>(access_token, &key, &validation).expect("valid token");
        assert_eq!(mock.issuer, format!("http://127.0.0.1:{}", mock.port));
    }
}
