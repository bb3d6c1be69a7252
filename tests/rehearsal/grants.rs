//! Scenario 5, the password and refresh_token grants against oauth2-mock-server: tokens
//! from both grants are verified against the JWKS, end to end, with no finding.

use crate::rig::{Rig, RigOpts};

/// `keycanary_token_verifications` samples (the latest round's count per view) of
/// `tenant` with `result`, as `(domain, count)`.
fn verifications(metrics: &str, tenant: &str, result: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|l| l.starts_with("keycanary_token_verifications{"))
        .filter(|l| l.contains(&format!("tenant=\"{tenant}\"")))
        .filter(|l| l.contains(&format!("result=\"{result}\"")))
        .map(|l| {
            let domain = l
                .split("domain=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_default()
                .to_owned();
            let value = l.rsplit(' ').next().unwrap().parse().unwrap();
            (domain, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn password_and_refresh_grants_verify_end_to_end() {
    let rig = Rig::start(RigOpts::default()).await;
    rig.wait_more_rounds(2).await;
    assert_eq!(rig.findings("grants").await, []);

    let (_, status) = rig.get("/v1/status").await;
    let rows: Vec<_> = status["views"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["tenant"] == "grants")
        .collect();
    assert_eq!(
        rows.len(),
        4,
        "password and refresh, jwks and origin each: {rows:#?}"
    );
    for row in &rows {
        assert_eq!(row["verdict"], "ok", "{row:#}");
        assert_eq!(row["status"], 200, "{row:#}");
        assert!(!row["kids"].as_array().unwrap().is_empty(), "{row:#}");
    }

    // The latest round verified the tokens of both grants against every view of the
    // tenant (each fresh token against each view: two per view), and nothing failed;
    // twice, two rounds apart.
    for _ in 0..2 {
        rig.wait_more_rounds(2).await;
        let metrics = rig
            .http
            .get(format!("{}/metrics", rig.api))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let verified = verifications(&metrics, "grants", "verified");
        for domain in ["password", "refresh"] {
            let views: Vec<f64> = verified
                .iter()
                .filter(|(d, _)| d == domain)
                .map(|(_, n)| *n)
                .collect();
            assert_eq!(views, [2.0, 2.0], "{domain}: {verified:?}");
        }
        let failed: Vec<(String, f64)> = [
            "kid_missing",
            "signature_invalid",
            "key_unusable",
            "view_unavailable",
        ]
        .iter()
        .flat_map(|r| verifications(&metrics, "grants", r))
        .filter(|(_, n)| *n != 0.0)
        .collect();
        assert_eq!(failed, [], "{verified:?}");
        assert_eq!(rig.findings("grants").await, []);
    }
}
