//! Scenario 4, an error cached: the origin answers 503 once while io's CDN keeps errors
//! (a `proxy_cache_valid any` as found in the wild) → `error_cached` on io's edge, and the
//! rotation gate refuses on it.

use std::time::Duration;

use crate::peers::Caching;
use crate::rig::{Rig, RigOpts, about, until_some};

#[tokio::test(flavor = "multi_thread")]
async fn one_origin_503_kept_by_io_is_error_cached() {
    let rig = Rig::start(RigOpts {
        app: Caching::OFF,
        io: Caching {
            ttl: Some(Duration::from_secs(600)),
            error_ttl: Some(Duration::from_secs(600)),
            told_max_age: None,
        },
        ..RigOpts::default()
    })
    .await;
    rig.wait_more_rounds(2).await;
    assert!(
        rig.findings("example")
            .await
            .iter()
            .all(|f| f.code == "cache_policy_drift")
    );

    // One 503 from io's origin for exactly /jwks (the edge's request, not keycanary's
    // cache-busting origin view), and the cache emptied so the edge asks.
    rig.stage.idp.fail_next(1, "/jwks", 503, 1).await;
    rig.stage.cdn.purge();

    let seen = until_some("error_cached", || async {
        let seen = rig.findings("example").await;
        seen.iter()
            .any(|f| f.code == "error_cached")
            .then_some(seen)
    })
    .await;
    assert_eq!(
        about(&seen, "error_cached"),
        [("io".to_owned(), "cdn".to_owned())],
        "{seen:#?}"
    );
    // The origin itself is fine: nothing wrong with io's origin view or with app.
    assert!(
        seen.iter()
            .all(|f| f.domain != "app" || f.code == "cache_policy_drift"),
        "{seen:#?}"
    );
    assert!(
        !seen.iter().any(|f| f.path == "origin"),
        "the origin view is fine: {seen:#?}"
    );

    let (status, answer) = rig.gate("rotation", "example", "key-1").await;
    assert_eq!(status, 409, "{answer:#}");
    assert!(
        answer["blocking"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["code"] == "error_cached" && b["subject"]["domain"] == "io"),
        "{answer:#}"
    );
}
