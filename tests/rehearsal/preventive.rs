//! Scenario 2, the preventive flow: both domains cache the JWKS alike (10 s here, the
//! incident's lesson applied). Stage key-2 (published, not signing) → the rotation gate
//! refuses while io's edge still serves the old set, naming that view and a `ready_at` →
//! purge → the gate still refuses until the staleness budget S has passed → safe →
//! promote → no finding, no page.

use std::time::Duration;

use serde_json::Value;

use crate::peers::Caching;
use crate::rig::{BOUND, Rig, RigOpts, about, codes, now_ms, until_some};

const EDGE_TTL: Duration = Duration::from_secs(10);

fn blockers(answer: &Value) -> Vec<&Value> {
    answer["blocking"].as_array().unwrap().iter().collect()
}

fn names_view(b: &Value, domain: &str) -> bool {
    b["subject"]["domain"] == domain && b["subject"]["path"] == "cdn"
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_wait_for_the_gate_then_promote_pages_nobody() {
    let mut rig = Rig::start(RigOpts {
        app: Caching::for_(EDGE_TTL),
        io: Caching::for_(EDGE_TTL),
        alg: "ES256",
        ..RigOpts::default()
    })
    .await;
    rig.wait_more_rounds(2).await;
    assert_eq!(codes(&rig.findings("example").await), Vec::<String>::new());

    // Stage key-2 right after both edges took a fresh copy of the old set, then refresh
    // app's edge only (a per-domain purge): io keeps serving the old set for EDGE_TTL.
    rig.stage.cdn.purge();
    for d in rig.stage.domains() {
        rig.http.get(&d.jwks_url).send().await.unwrap();
    }
    rig.set_keys(&["key-1", "key-2"]).await;
    let refreshed = rig
        .http
        .get(rig.stage.app().jwks_url)
        .header("X-Refresh", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.headers()["x-cache-status"], "BYPASS");
    let staged_at = rig.rounds().await;

    // The gate refuses, naming io's edge (not serving key-2) with a ready_at.
    let refusal = until_some("the gate naming io's stale edge", || async {
        let (status, answer) = rig.gate("rotation", "example", "key-2").await;
        let named = blockers(&answer)
            .iter()
            .any(|b| names_view(b, "io") && b["ready_at"].is_i64());
        (status == 409 && named && rig.rounds().await > staged_at).then_some(answer)
    })
    .await;
    assert_eq!(refusal["safe"], false);
    let findings = rig.findings("example").await;
    assert_eq!(
        about(&findings, "stale_edge"),
        [("io".to_owned(), "cdn".to_owned())],
        "{findings:#?}"
    );

    // Purge. key-2 is then everywhere, but the gate still refuses until S has passed.
    rig.stage.cdn.purge();
    let purged_at = now_ms();
    let mut last_refusal = Value::Null;
    let mut refusals_after_purge = 0;
    let deadline = tokio::time::Instant::now() + BOUND;
    let safe_at = loop {
        let (status, answer) = rig.gate("rotation", "example", "key-2").await;
        if status == 200 {
            assert_eq!(answer["safe"], true, "{answer:#}");
            break now_ms();
        }
        assert_eq!(status, 409, "{answer:#}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "gate still refusing: {answer:#}"
        );
        let io_served = rig.findings("example").await.is_empty();
        if io_served {
            refusals_after_purge += 1;
            last_refusal = answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        refusals_after_purge > 0,
        "the gate never refused once the edges served key-2"
    );
    let ready_at = last_refusal["ready_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("a refusal without ready_at: {last_refusal:#}"));
    assert!(
        safe_at >= ready_at,
        "safe at {safe_at} before the ready_at {ready_at} it gave"
    );
    assert!(
        safe_at - purged_at >= EDGE_TTL.as_millis() as i64,
        "safe {} ms after the purge, before the edge TTL could pass",
        safe_at - purged_at
    );

    // Promote: key-2 signs. No finding, no page, no ticket about it.
    let tickets_before = rig.tickets().len();
    rig.set_keys(&["key-2", "key-1"]).await;
    let promoted_at = rig.rounds().await;
    for _ in 0..4 {
        rig.wait_more_rounds(1).await;
        let findings = rig.findings("example").await;
        assert!(findings.is_empty(), "after the promotion: {findings:#?}");
    }
    assert!(rig.rounds().await >= promoted_at + 4);
    assert!(rig.mail.mails().is_empty(), "{:?}", rig.mail.subjects());
    assert!(
        rig.am.alerts().await.is_empty(),
        "{:#?}",
        rig.am.alerts().await
    );
    let tickets = rig.tickets();
    assert!(
        tickets[tickets_before..]
            .iter()
            .all(|(status, _)| status == "resolved"),
        "{tickets:?}"
    );
    // The signer really changed: the gate's "current signer" is key-2 now.
    let (_, now) = rig.get("/v1/gate/rotation?tenant=example").await;
    assert_eq!(now["kid"], "key-2", "{now:#}");
}
