//! Scenario 3, retirement: right after key-2 took over, the retirement gate refuses to
//! let key-1 go (tokens it signed are still valid); removing it anyway is
//! `key_removed_early`.

use std::time::Duration;

use crate::peers::{Caching, wait_until};
use crate::rig::{BOUND, Rig, RigOpts, about, now_ms, until_some};

#[tokio::test(flavor = "multi_thread")]
async fn retiring_the_old_key_too_early_is_refused_and_then_seen() {
    let mut rig = Rig::start(RigOpts {
        // No CDN in the way: this scenario is about token lifetimes.
        app: Caching::OFF,
        io: Caching::OFF,
        token_ttl: Duration::from_secs(120),
        ..RigOpts::default()
    })
    .await;
    // key-2 published from the first round, key-1 signing.
    rig.set_keys(&["key-1", "key-2"]).await;
    wait_until("the rotation gate to allow key-2", BOUND, || async {
        rig.gate("rotation", "example", "key-2").await.0 == 200
    })
    .await;
    rig.set_keys(&["key-2", "key-1"]).await;
    rig.wait_more_rounds(2).await;
    assert_eq!(rig.findings("example").await, []);

    // key-1 signed a token moments ago that is valid for two minutes: refused, with the
    // condition and when it will be met.
    let (status, answer) = rig.gate("retirement", "example", "key-1").await;
    assert_eq!(status, 409, "{answer:#}");
    let blocking = answer["blocking"].as_array().unwrap();
    let token_rule = blocking
        .iter()
        .find(|b| b["code"] == "key_removed_early")
        .unwrap_or_else(|| panic!("no key_removed_early blocker: {answer:#}"));
    let ready_at = token_rule["ready_at"].as_i64().expect("ready_at");
    let now = now_ms();
    assert!(
        ready_at > now + 60_000,
        "ready_at {ready_at} should be about two minutes away (now {now})"
    );

    // Retired anyway: key_removed_early on every view that dropped it.
    rig.set_keys(&["key-2"]).await;
    let seen = until_some("key_removed_early", || async {
        let seen = rig.findings("example").await;
        seen.iter()
            .any(|f| f.code == "key_removed_early")
            .then_some(seen)
    })
    .await;
    assert!(
        seen.iter()
            .filter(|f| f.code == "key_removed_early")
            .all(|f| f.kid == "key-1"),
        "{seen:#?}"
    );
    let domains: Vec<String> = about(&seen, "key_removed_early")
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert!(
        domains.contains(&"app".to_owned()) && domains.contains(&"io".to_owned()),
        "{seen:#?}"
    );
    // It is critical: a ticket is filed once it has lasted the failure threshold.
    wait_until("the key_removed_early ticket", BOUND, || async {
        rig.tickets()
            .iter()
            .any(|(s, c)| s == "firing" && c.iter().any(|c| c == "key_removed_early"))
    })
    .await;
}
