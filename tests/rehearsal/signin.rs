//! Scenario 6, the seed incident through the sign-in pages: tenant `example` signs in with
//! the authorization-code grant on oidc-provider's login and consent pages (io cached at
//! nginx for 10 minutes, app not). Before the rotation both tokens of both domains verify
//! on every view; after it, `kid_missing` for io's ID token on io's cached view, and app's
//! tokens still verify.

use crate::rig::{BOUND, Rig, RigOpts, about, codes};

/// `keycanary_token_verifications` of tenant example with `result`, as `(domain, path,
/// count)`.
async fn verifications(rig: &Rig, result: &str) -> Vec<(String, String, f64)> {
    let metrics = rig
        .http
        .get(format!("{}/metrics", rig.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_owned()
    };
    let mut out: Vec<(String, String, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with("keycanary_token_verifications{"))
        .filter(|l| l.contains("tenant=\"example\"") && l.contains(&format!("result=\"{result}\"")))
        .map(|l| {
            let value = l.rsplit(' ').next().unwrap().parse().unwrap();
            (label(l, "domain"), label(l, "path"), value)
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_through_the_pages_shows_the_incident_on_the_cached_domains_id_token() {
    let mut rig = Rig::start(RigOpts {
        signin: true,
        ..RigOpts::default()
    })
    .await;
    rig.wait_more_rounds(2).await;
    let before = rig.findings("example").await;
    assert_eq!(codes(&before), ["cache_policy_drift"], "{before:#?}");
    // Two fresh tokens (the ID token and the JWT access token) verified on each view.
    let two = |d: &str, p: &str| (d.to_owned(), p.to_owned(), 2.0);
    assert_eq!(
        verifications(&rig, "verified").await,
        [
            two("app", "cdn"),
            two("app", "origin"),
            two("io", "cdn"),
            two("io", "origin")
        ]
    );

    // The rotation: key-2 signs, key-1 still published; io's CDN keeps the old set.
    rig.set_keys(&["key-2", "key-1"]).await;
    let deadline = tokio::time::Instant::now() + BOUND;
    let during = loop {
        let found = rig.findings("example").await;
        if found.iter().any(|f| f.code == "kid_missing") {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no kid_missing: {found:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let io_cdn = vec![("io".to_owned(), "cdn".to_owned())];
    assert_eq!(about(&during, "kid_missing"), io_cdn, "{during:#?}");
    assert!(
        during.iter().any(|f| f.code == "kid_missing"
            && f.kid == "key-2"
            && f.message
                .contains("id_token kid key-2 is not in this view's key set")),
        "the ID token's kid is named: {during:#?}"
    );
    assert!(
        during.iter().all(|f| f.code != "login_failed"),
        "{during:#?}"
    );
    // app's tokens, signed by key-2, still verify on both of app's views.
    rig.wait_more_rounds(1).await;
    let verified = verifications(&rig, "verified").await;
    assert!(
        verified.contains(&("app".into(), "cdn".into(), 2.0))
            && verified.contains(&("app".into(), "origin".into(), 2.0))
            && verified.contains(&("io".into(), "origin".into(), 2.0)),
        "{verified:?}"
    );
    assert_eq!(
        verifications(&rig, "kid_missing").await,
        [("io".to_owned(), "cdn".to_owned(), 2.0)]
    );
}
