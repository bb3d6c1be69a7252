//! The lab over real HTTP: discovery, tokens and JWKS of every tenant verify with the keys
//! the lab publishes; the CDN caches by the injected clock; and the seed incident (a
//! rotation behind a CDN that overrides the origin's TTL) reproduces and is fixed by a
//! purge.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keycanary::clock::ManualClock;
use keycanary::lab::{
    self, CachePolicyUpdate, KeyStatus, Lab, LabOptions, LabStateView, OriginFailure,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const TENANTS: [(&str, Algorithm); 3] = [
    ("acme", Algorithm::RS256),
    ("globex", Algorithm::ES256),
    ("initech", Algorithm::EdDSA),
];

/// A lab on 127.0.0.1:0 with a manual clock starting at the wall-clock time (so tokens
/// pass jsonwebtoken's `exp` check).
async fn start_lab() -> (Lab, ManualClock) {
    let clock = ManualClock::starting_now();
    let lab = lab::start(LabOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        clock: Arc::new(clock.clone()),
    })
    .await
    .expect("lab starts");
    (lab, clock)
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// One fetched document with the CDN headers the tests look at.
#[derive(Debug)]
struct Fetched {
    status: u16,
    cache_status: Option<String>,
    age: Option<u64>,
    body: String,
}

impl Fetched {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn kids(&self) -> Vec<String> {
        kids(&self.json())
    }
}

async fn fetch(url: &str) -> Fetched {
    let resp = http().get(url).send().await.expect("GET");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cache_status = header("x-cache-status");
    let age = header("age").map(|a| a.parse().expect("numeric Age"));
    Fetched {
        status: resp.status().as_u16(),
        cache_status,
        age,
        body: resp.text().await.expect("body"),
    }
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

/// A client_credentials token from `token_url`, authenticated with HTTP Basic.
async fn client_credentials(token_url: &str) -> String {
    let resp = http()
        .post(token_url)
        .basic_auth("keycanary", Some("lab-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("token JSON");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn token_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("token header")
        .kid
        .expect("kid")
}

/// Verifies `token` with the key of its kid in `jwks`; returns the claims.
fn verify(token: &str, jwks: &Value, alg: Algorithm, issuer: &str, aud: &str) -> Value {
    let kid = token_kid(token);
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"));
    let jwk: Jwk = serde_json::from_value(key.clone()).expect("JWK parses");
    let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key from JWK");
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[aud]);
    jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .expect("token verifies")
        .claims
}

#[tokio::test]
async fn every_tenant_issues_tokens_that_verify_with_its_published_jwks() {
    let (lab, _clock) = start_lab().await;
    let b = lab.base_url().to_owned();
    for (tenant, alg) in TENANTS {
        for domain in ["app", "io"] {
            let issuer = format!("{b}/{domain}/{tenant}");
            let discovery = fetch(&format!("{issuer}/.well-known/openid-configuration")).await;
            assert_eq!(discovery.status, 200);
            let doc = discovery.json();
            assert_eq!(doc["issuer"], issuer.as_str());
            assert_eq!(doc["jwks_uri"], format!("{issuer}/jwks"));
            assert_eq!(doc["token_endpoint"], format!("{issuer}/token"));
            let alg_name = serde_json::to_value(alg).expect("alg");
            assert!(
                doc["id_token_signing_alg_values_supported"]
                    .as_array()
                    .is_some_and(|a| a.contains(&alg_name)),
                "{doc}"
            );
            let token_url = doc["token_endpoint"].as_str().expect("token_endpoint");
            let token = client_credentials(token_url).await;

            let header = jsonwebtoken::decode_header(&token).expect("header");
            assert_eq!(header.alg, alg);
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid, lab.signer_kid(tenant));
            assert_eq!(header.kid.as_deref(), Some(format!("{tenant}-k1").as_str()));

            let jwks = fetch(doc["jwks_uri"].as_str().expect("jwks_uri")).await;
            assert_eq!(jwks.status, 200);
            let claims = verify(&token, &jwks.json(), alg, &issuer, "api://default");
            assert_eq!(claims["client_id"], "keycanary");
            assert_eq!(claims["sub"], "keycanary");
            assert_eq!(
                claims["exp"].as_i64(),
                claims["iat"].as_i64().map(|i| i + 300)
            );
            assert!(claims["jti"].is_string());
        }
    }

    // Through the origin route the issuer is still the domain's.
    let token = client_credentials(&format!("{b}/origin/io/acme/token")).await;
    let jwks = fetch(&format!("{b}/origin/io/acme/jwks")).await;
    verify(
        &token,
        &jwks.json(),
        Algorithm::RS256,
        &format!("{b}/io/acme"),
        "api://default",
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn password_and_refresh_token_grants() {
    let (lab, _clock) = start_lab().await;
    let b = lab.base_url().to_owned();
    let token_url = format!("{b}/app/globex/token");
    let post = |form: Vec<(&'static str, String)>| {
        let url = token_url.clone();
        async move {
            let resp = http().post(url).form(&form).send().await.expect("POST");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("JSON"))
        }
    };
    let creds = || {
        vec![
            ("client_id", "keycanary".to_owned()),
            ("client_secret", "lab-secret".to_owned()),
        ]
    };

    let mut form = creds();
    form.extend([
        ("grant_type", "password".to_owned()),
        ("username", "probe".to_owned()),
        ("password", "lab-password".to_owned()),
        ("audience", "api://orders".to_owned()),
        ("scope", "openid orders".to_owned()),
    ]);
    let (status, body) = post(form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid orders");
    let jwks = fetch(&format!("{b}/app/globex/jwks")).await.json();
    let issuer = format!("{b}/app/globex");
    let access = body["access_token"].as_str().expect("access_token");
    let claims = verify(access, &jwks, Algorithm::ES256, &issuer, "api://orders");
    assert_eq!(claims["sub"], "probe");
    let id_token = body["id_token"].as_str().expect("id_token");
    verify(id_token, &jwks, Algorithm::ES256, &issuer, "keycanary");
    let refresh = body["refresh_token"].as_str().expect("refresh_token");

    for refresh in [refresh, "lab-refresh-token"] {
        let mut form = creds();
        form.extend([
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh.to_owned()),
        ]);
        let (status, body) = post(form).await;
        assert_eq!(status, 200, "{body}");
        let access = body["access_token"].as_str().expect("access_token");
        verify(access, &jwks, Algorithm::ES256, &issuer, "api://default");
    }

    let cases = [
        (
            vec![("grant_type", "refresh_token"), ("refresh_token", "forged")],
            400,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("username", "probe"),
                ("password", "wrong"),
            ],
            400,
            "invalid_grant",
        ),
        (
            vec![("grant_type", "authorization_code")],
            400,
            "unsupported_grant_type",
        ),
        (vec![], 400, "invalid_request"),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_secret", "wrong"),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_secret", "lab-secret"),
                ("client_id", "keycanary"),
                ("client_id", "keycanary"),
            ],
            400,
            "invalid_request",
        ),
    ];
    for (extra, want_status, want_error) in cases {
        let mut form: Vec<(&str, String)> = Vec::new();
        if !extra.iter().any(|(k, _)| *k == "client_secret") {
            form = creds();
        }
        form.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let (status, body) = post(form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (want_status, Some(want_error)),
            "{extra:?}: {body}"
        );
    }

    // No client authentication at all, and a JSON body instead of a form.
    let resp = http()
        .post(&token_url)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let resp = http()
        .post(&token_url)
        .basic_auth("keycanary", Some("lab-secret"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 400);
    lab.shutdown().await;
}

#[tokio::test]
async fn cdn_serves_miss_then_hit_with_growing_age_then_expired() {
    let (lab, clock) = start_lab().await;
    let b = lab.base_url().to_owned();
    let url = format!("{b}/app/acme/jwks");

    let resp = http().get(&url).send().await.expect("GET");
    let h = resp.headers().clone();
    assert_eq!(h["x-cache-status"], "MISS");
    assert_eq!(h["cache-control"], "public, max-age=60");
    assert_eq!(h["content-type"], "application/jwk-set+json");
    assert!(h["etag"].to_str().is_ok_and(|e| e.starts_with('"')));
    assert!(h.contains_key("last-modified") && h.contains_key("date"));
    assert!(!h.contains_key("age"));

    let f = fetch(&url).await;
    assert_eq!((f.cache_status.as_deref(), f.age), (Some("HIT"), Some(0)));
    clock.advance(Duration::from_secs(25));
    let f = fetch(&url).await;
    assert_eq!((f.cache_status.as_deref(), f.age), (Some("HIT"), Some(25)));
    clock.advance(Duration::from_secs(34));
    let f = fetch(&url).await;
    assert_eq!((f.cache_status.as_deref(), f.age), (Some("HIT"), Some(59)));
    clock.advance(Duration::from_secs(1));
    let f = fetch(&url).await;
    assert_eq!((f.cache_status.as_deref(), f.age), (Some("EXPIRED"), None));
    let f = fetch(&url).await;
    assert_eq!((f.cache_status.as_deref(), f.age), (Some("HIT"), Some(0)));

    // X-Refresh bypasses; a cache-busting query is another key; the origin is uncached.
    let resp = http()
        .get(&url)
        .header("x-refresh", "1")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.headers()["x-cache-status"], "BYPASS");
    let f = fetch(&format!("{url}?cb=1")).await;
    assert_eq!(f.cache_status.as_deref(), Some("MISS"));
    let f = fetch(&format!("{b}/origin/app/acme/jwks")).await;
    assert_eq!((f.status, f.cache_status), (200, None));

    // Discovery is cached the same way; unknown tenants and domains are JSON 404s.
    let disc = format!("{b}/io/globex/.well-known/openid-configuration");
    assert_eq!(fetch(&disc).await.cache_status.as_deref(), Some("MISS"));
    assert_eq!(fetch(&disc).await.cache_status.as_deref(), Some("HIT"));
    for missing in [
        format!("{b}/app/umbrella/jwks"),
        format!("{b}/nowhere/acme/jwks"),
        format!("{b}/origin/app/umbrella/jwks"),
    ] {
        let f = fetch(&missing).await;
        assert_eq!(
            (f.status, f.json()["error"].as_str()),
            (404, Some("not_found"))
        );
    }
    lab.shutdown().await;
}

/// The seed incident: `io`'s CDN ignores the origin's 60 s and keeps JWKS for 600 s; a
/// rotation makes new tokens unverifiable through `io` until the purge.
#[tokio::test]
async fn seed_incident_rotation_behind_overriding_cdn_until_purge() {
    let (lab, clock) = start_lab().await;
    let b = lab.base_url().to_owned();
    lab.set_cache(
        "io",
        CachePolicyUpdate {
            override_ttl_secs: Some(Some(600)),
            ..Default::default()
        },
    )
    .expect("set io cache");
    let (app_jwks, io_jwks, io_origin) = (
        format!("{b}/app/acme/jwks"),
        format!("{b}/io/acme/jwks"),
        format!("{b}/origin/io/acme/jwks"),
    );
    assert_eq!(fetch(&app_jwks).await.cache_status.as_deref(), Some("MISS"));
    assert_eq!(fetch(&io_jwks).await.cache_status.as_deref(), Some("MISS"));

    let new_kid = lab.rotate("acme").expect("rotate");
    assert_eq!(new_kid, "acme-k2");
    assert_eq!(lab.signer_kid("acme").as_deref(), Some("acme-k2"));
    let token = client_credentials(&format!("{b}/io/acme/token")).await;
    assert_eq!(token_kid(&token), new_kid);

    // Past app's 60 s: app refetched, io still serves the set from before the rotation.
    clock.advance(Duration::from_secs(61));
    let app = fetch(&app_jwks).await;
    assert_eq!(app.cache_status.as_deref(), Some("EXPIRED"));
    assert!(app.kids().contains(&new_kid));
    let io = fetch(&io_jwks).await;
    assert_eq!(
        (io.cache_status.as_deref(), io.age),
        (Some("HIT"), Some(61))
    );
    assert_eq!(io.kids(), ["acme-k1"]);
    let origin = fetch(&io_origin).await;
    assert_eq!(origin.kids(), ["acme-k1", "acme-k2"]);

    lab.purge("io").expect("purge");
    let io = fetch(&io_jwks).await;
    assert_eq!(io.cache_status.as_deref(), Some("MISS"));
    verify(
        &token,
        &io.json(),
        Algorithm::RS256,
        &format!("{b}/io/acme"),
        "api://default",
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn cached_origin_error_is_served_as_hit_with_age() {
    let (lab, clock) = start_lab().await;
    let b = lab.base_url().to_owned();
    let c = http();
    let r = c
        .post(format!("{b}/admin/domains/app/cache"))
        .json(&json!({"cache_errors": true}))
        .send()
        .await
        .expect("POST cache");
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{b}/admin/origin/fail"))
        .json(&json!({"tenant": "acme", "domain": "app", "status": 503, "count": 1}))
        .send()
        .await
        .expect("POST fail");
    assert_eq!(r.status(), 200);

    let url = format!("{b}/app/acme/jwks");
    let resp = c.get(&url).send().await.expect("GET");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["x-cache-status"], "MISS");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    assert!(resp.text().await.expect("body").contains("<html>"));

    clock.advance(Duration::from_secs(7));
    let f = fetch(&url).await;
    assert_eq!(
        (f.status, f.cache_status.as_deref(), f.age),
        (503, Some("HIT"), Some(7))
    );
    // The failure was used up: the origin is healthy while the edge still serves the error.
    assert_eq!(
        fetch(&format!("{b}/origin/app/acme/jwks")).await.status,
        200
    );

    clock.advance(Duration::from_secs(3));
    let f = fetch(&url).await;
    assert_eq!(
        (f.status, f.cache_status.as_deref()),
        (200, Some("EXPIRED"))
    );

    // A "soft error": an HTML page with 200, cached like a JWKS (60 s) on any domain.
    lab.fail_origin(OriginFailure {
        tenant: "globex".into(),
        domain: None,
        status: 200,
        count: 1,
    })
    .expect("fail origin");
    let url = format!("{b}/io/globex/jwks");
    let f = fetch(&url).await;
    assert_eq!((f.status, f.cache_status.as_deref()), (200, Some("MISS")));
    assert!(f.body.starts_with("<html>"), "{}", f.body);
    clock.advance(Duration::from_secs(30));
    let f = fetch(&url).await;
    assert_eq!((f.cache_status.as_deref(), f.age), (Some("HIT"), Some(30)));
    assert!(f.body.starts_with("<html>"), "{}", f.body);
    assert_eq!(
        fetch(&format!("{b}/origin/io/globex/jwks")).await.kids(),
        ["globex-k1"]
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn admin_api_drives_key_lifecycle_and_reports_state() {
    let (lab, _clock) = start_lab().await;
    let b = lab.base_url().to_owned();
    let c = http();
    let post = |path: &str, body: Option<Value>| {
        let req = c.post(format!("{b}/admin/{path}"));
        let req = match body {
            Some(v) => req.json(&v),
            None => req,
        };
        async move {
            let resp = req.send().await.expect("POST");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("JSON"))
        }
    };
    let jwks_kids = || async { fetch(&format!("{b}/origin/app/initech/jwks")).await.kids() };

    assert_eq!(
        post("tenants/initech/promote", None).await.0,
        409,
        "nothing staged"
    );
    let (status, body) = post("tenants/initech/stage", None).await;
    assert_eq!((status, body["kid"].as_str()), (200, Some("initech-k2")));
    assert_eq!(jwks_kids().await, ["initech-k1", "initech-k2"]);
    assert_eq!(lab.signer_kid("initech").as_deref(), Some("initech-k1"));

    let (_, body) = post("tenants/initech/promote", None).await;
    assert_eq!(body["kid"], "initech-k2");
    let state: LabStateView = c
        .get(format!("{b}/admin/state"))
        .send()
        .await
        .expect("GET state")
        .json()
        .await
        .expect("state JSON");
    assert_eq!(state.base_url, b);
    let initech = state
        .tenants
        .iter()
        .find(|t| t.name == "initech")
        .expect("initech");
    assert_eq!(initech.signer_kid, "initech-k2");
    let statuses: Vec<_> = initech.keys.iter().map(|k| k.status).collect();
    assert_eq!(statuses, [KeyStatus::Previous, KeyStatus::Active]);
    assert_eq!(state.domains.len(), 2);
    assert_eq!(state, lab.state());

    let raw = json!({"kty": "OKP", "crv": "Ed448", "kid": "initech-ed448", "x": "AAAA"});
    let (status, body) = post("tenants/initech/publish-raw", Some(raw.clone())).await;
    assert_eq!((status, body["kid"].as_str()), (200, Some("initech-ed448")));
    let jwks = fetch(&format!("{b}/origin/app/initech/jwks")).await.json();
    assert_eq!(jwks["keys"][2], raw);

    let (_, body) = post("tenants/initech/retire", None).await;
    assert_eq!(body["removed"], json!(["initech-k1", "initech-ed448"]));
    assert_eq!(jwks_kids().await, ["initech-k2"]);

    // New material under the same kid: old tokens no longer verify with the published key.
    let before = client_credentials(&format!("{b}/app/initech/token")).await;
    let (_, body) = post("tenants/initech/replace-key-material", None).await;
    assert_eq!(body["kid"], "initech-k2");
    let jwks = fetch(&format!("{b}/origin/app/initech/jwks")).await.json();
    let jwk: Jwk = serde_json::from_value(jwks["keys"][0].clone()).expect("JWK");
    let key = DecodingKey::from_jwk(&jwk).expect("key");
    let validation = {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&["api://default"]);
        v
    };
    assert!(jsonwebtoken::decode::<Value>(&before, &key, &validation).is_err());
    let after = client_credentials(&format!("{b}/app/initech/token")).await;
    assert!(jsonwebtoken::decode::<Value>(&after, &key, &validation).is_ok());

    let (status, body) = post("tenants/initech/rotate", None).await;
    assert_eq!((status, body["kid"].as_str()), (200, Some("initech-k3")));

    // Errors are JSON with a 4xx status.
    let cases = [
        ("tenants/umbrella/stage", None, 404),
        ("domains/nowhere/purge", None, 404),
        ("domains/app/cache", Some(json!({"ttl": 5})), 400),
        ("tenants/acme/publish-raw", Some(json!([1, 2])), 400),
        (
            "origin/fail",
            Some(json!({"tenant": "acme", "status": 101})),
            400,
        ),
        (
            "origin/fail",
            Some(json!({"tenant": "umbrella", "status": 503})),
            404,
        ),
    ];
    for (path, body, want) in cases {
        let (status, body) = post(path, body).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let resp = c
        .get(format!("{b}/admin/tenants/acme/stage"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 405);

    let (status, body) = post(
        "domains/io/cache",
        Some(json!({"override_ttl_secs": 600, "origin_cache_control": null})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["policy"],
        json!({"origin_cache_control": null, "override_ttl_secs": 600, "cache_errors": false})
    );
    let resp = c
        .get(format!("{b}/io/acme/jwks"))
        .send()
        .await
        .expect("GET");
    assert!(!resp.headers().contains_key("cache-control"));
    assert_eq!(resp.headers()["x-cache-status"], "MISS");
    let (_, body) = post("domains/io/purge", None).await;
    assert_eq!(body["purged"], 1);
    lab.shutdown().await;
}
