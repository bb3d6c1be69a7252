//! Scenario 1, the seed incident: io's CDN caches the JWKS for 10 minutes, app's does not;
//! the IdP rotates (new signer first, old key still published). keycanary raises the
//! caching drift before the rotation; after it, `kid_missing` + `stale_edge` +
//! `client_would_fail` on io only, one page (email + Alertmanager) within the default
//! thresholds, Prometheus' KeycanaryKidMissing fires; the purge resolves it.

use crate::peers::wait_until;
use crate::rig::{BOUND, FAILURE_THRESHOLD, Rig, RigOpts, about, codes};

#[tokio::test(flavor = "multi_thread")]
async fn the_incident_raises_drift_first_then_pages_once_for_io_and_resolves_after_purge() {
    let mut rig = Rig::start(RigOpts {
        prometheus: true,
        ..RigOpts::default()
    })
    .await;
    let io_cached = rig.stage.io();
    assert!(io_cached.cached && !rig.stage.app().cached);

    // Before the rotation: the drift is raised (a finding, and a ticket once it has lasted
    // the failure threshold); tokens verify everywhere; nobody is paged.
    rig.wait_more_rounds(FAILURE_THRESHOLD + 1).await;
    let before = rig.findings("example").await;
    assert_eq!(
        codes(&before),
        ["cache_policy_drift"],
        "only the drift before the rotation: {before:#?}"
    );
    wait_until("the drift ticket", BOUND, || async {
        rig.tickets()
            .iter()
            .any(|(status, codes)| status == "firing" && codes == &["cache_policy_drift"])
    })
    .await;
    assert!(rig.mail.mails().is_empty(), "{:?}", rig.mail.subjects());

    // The rotation: key-2 signs, key-1 still published.
    rig.set_keys(&["key-2", "key-1"]).await;
    let rotated_at = rig.rounds().await;

    // The page: its incident fires within the failure threshold, counted in rounds (one
    // more for the round the rotation fell into).
    let fired_round = {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let report = rig.committed();
            let fired = report.as_ref().and_then(|r| {
                let incident = r.alert_state.incidents.iter().any(|i| {
                    i.members
                        .iter()
                        .any(|m| m.finding.code.as_str() == "kid_missing")
                });
                incident.then(|| r.last_round.as_ref().map_or(0, |l| l.number))
            });
            if let Some(round) = fired {
                break round;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no kid_missing incident; findings: {:#?}",
                rig.findings("example").await
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    assert!(
        fired_round <= rotated_at + FAILURE_THRESHOLD + 1,
        "rotated after round {rotated_at}, paged at round {fired_round}"
    );

    // io only: the three findings of the incident, none on app.
    let during = rig.findings("example").await;
    let io_cdn = vec![("io".to_owned(), "cdn".to_owned())];
    assert_eq!(about(&during, "kid_missing"), io_cdn, "{during:#?}");
    assert_eq!(about(&during, "stale_edge"), io_cdn, "{during:#?}");
    assert_eq!(about(&during, "client_would_fail"), io_cdn, "{during:#?}");
    assert!(
        during
            .iter()
            .filter(|f| f.code == "kid_missing")
            .all(|f| f.kid == "key-2"),
        "{during:#?}"
    );
    // The rotation itself was the unsafe move: key-2 signed before every view served it.
    assert!(
        during
            .iter()
            .any(|f| f.code == "key_activated_early" && f.kid == "key-2"),
        "{during:#?}"
    );

    // One page: one email, and the alert in Alertmanager, whose receiver gets it.
    wait_until("the page email", BOUND, || async {
        !rig.mail.mails().is_empty()
    })
    .await;
    wait_until("kid_missing at Alertmanager's receiver", BOUND, || async {
        rig.am.hook_saw("firing", "kid_missing")
    })
    .await;
    let held = rig.am.alerts().await;
    let kid_missing: Vec<_> = held
        .iter()
        .filter(|a| a["labels"]["alertname"] == "kid_missing")
        .collect();
    assert_eq!(kid_missing.len(), 1, "{held:#?}");
    assert_eq!(kid_missing[0]["labels"]["tenant"], "example");
    assert_eq!(kid_missing[0]["labels"]["domain"], "io");
    assert_eq!(kid_missing[0]["labels"]["view"], "cdn");
    assert_eq!(kid_missing[0]["labels"]["severity"], "critical");

    // Prometheus, scraping keycanary with the shipped rules (for: 1m), fires too.
    let prom = rig.prom.as_ref().unwrap();
    wait_until(
        "KeycanaryKidMissing firing in Prometheus",
        BOUND,
        || async {
            prom.alerts().await.iter().any(|a| {
                a["labels"]["alertname"] == "KeycanaryKidMissing"
                    && a["labels"]["tenant"] == "example"
                    && a["state"] == "firing"
            })
        },
    )
    .await;
    let present = prom
        .api(
            "/api/v1/query",
            &[(
                "query",
                r#"keycanary_view_kid_present{tenant="example",kind="edge",kid="key-2"}"#,
            )],
        )
        .await;
    let by_domain: std::collections::BTreeMap<String, String> = present["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["domain"].as_str().unwrap().to_owned(),
                r["value"][1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        by_domain,
        [
            ("app".to_owned(), "1".to_owned()),
            ("io".to_owned(), "0".to_owned())
        ]
        .into(),
        "{present:#}"
    );
    // Still exactly one page after all this time, counted as its receivers got it: one
    // email, one firing notification from Alertmanager (whose store above merges repeats).
    let subjects = rig.mail.subjects();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert!(
        subjects[0].contains("FIRING") && subjects[0].contains("kid_missing"),
        "{subjects:?}"
    );
    assert_eq!(
        rig.am.hook_count("firing", "kid_missing"),
        1,
        "{:#?}",
        rig.am.hook.bodies()
    );
    assert_eq!(rig.am.hook_count("resolved", "kid_missing"), 0);

    // The tickets (severity high and above, one per tenant and code): one for each code of
    // the incident, each once, and the drift's still the one from before the rotation.
    let incident_codes = [
        "kid_missing",
        "stale_edge",
        "client_would_fail",
        "key_activated_early",
    ];
    wait_until("a ticket for each code of the incident", BOUND, || async {
        incident_codes
            .iter()
            .all(|code| rig.tickets_for("firing", code) > 0)
    })
    .await;
    for code in incident_codes.iter().chain(&["cache_policy_drift"]) {
        assert_eq!(
            (
                rig.tickets_for("firing", code),
                rig.tickets_for("resolved", code)
            ),
            (1, 0),
            "{code}: {:#?}",
            rig.tickets()
        );
    }

    // The purge ends it: a resolved email, the alert resolved at Alertmanager's receiver,
    // the findings gone (the drift stays: io still caches).
    rig.stage.cdn.purge();
    wait_until("the resolved email", BOUND, || async {
        rig.mail.subjects().iter().any(|s| s.contains("RESOLVED"))
    })
    .await;
    wait_until(
        "kid_missing resolved at Alertmanager's receiver",
        BOUND,
        || async { rig.am.hook_saw("resolved", "kid_missing") },
    )
    .await;
    // key-2 signed before io served it: that stays on record until key-2 has been visible
    // everywhere for the staleness budget (io's 10 minutes), as a reminder for next time.
    let after = rig.findings("example").await;
    assert_eq!(
        codes(&after),
        ["cache_policy_drift", "key_activated_early"],
        "{after:#?}"
    );
    let subjects = rig.mail.subjects();
    assert_eq!(subjects.len(), 2, "one page, one resolve: {subjects:?}");
    assert_eq!(
        (
            rig.am.hook_count("firing", "kid_missing"),
            rig.am.hook_count("resolved", "kid_missing")
        ),
        (1, 1),
        "{:#?}",
        rig.am.hook.bodies()
    );
    // The tickets of what the purge ended resolve, each once; the drift and the early
    // activation are still open, so theirs do not.
    wait_until("the purged codes' tickets resolved", BOUND, || async {
        ["kid_missing", "stale_edge", "client_would_fail"]
            .iter()
            .all(|code| rig.tickets_for("resolved", code) > 0)
    })
    .await;
    for (code, resolved) in [
        ("kid_missing", 1),
        ("stale_edge", 1),
        ("client_would_fail", 1),
        ("key_activated_early", 0),
        ("cache_policy_drift", 0),
    ] {
        assert_eq!(
            (
                rig.tickets_for("firing", code),
                rig.tickets_for("resolved", code)
            ),
            (1, resolved),
            "{code}: {:#?}",
            rig.tickets()
        );
    }
    wait_until(
        "KeycanaryKidMissing gone from Prometheus",
        BOUND,
        || async {
            !prom
                .alerts()
                .await
                .iter()
                .any(|a| a["labels"]["alertname"] == "KeycanaryKidMissing")
        },
    )
    .await;
}
