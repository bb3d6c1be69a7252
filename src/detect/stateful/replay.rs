//! Timeline replays: recorded sequences of observations (`tests/fixtures/timelines/*.json`,
//! a list of [`Observation`]s as serde writes them, one per round of tenant `acme` of the
//! round fixtures) fed through [`crate::detect::assess`] one round at a time, asserting
//! the findings of each step.
//!
//! Each replay asserts the exact findings of the codes its story is about; codes judged by
//! other rules (client profiles, staleness budget) are left to their own tests.

use super::fixtures::*;
use crate::model::*;

const KEY_REMOVED_EARLY: &str =
    include_str!("../../../tests/fixtures/timelines/key_removed_early.json");
const KID_REUSED: &str = include_str!("../../../tests/fixtures/timelines/kid_reused.json");

/// Replays `json` and compares, step by step, the findings with a code in `codes` (as
/// `code subject`) with `want`.
fn replay_json(json: &str, codes: &[Code], want: &[&[&str]]) {
    let steps: Vec<Observation> = serde_json::from_str(json).expect("timeline fixture parses");
    assert_eq!(steps.len(), want.len(), "one expectation per step");
    let (_, found) = replay(&config_with(str::to_owned), &steps);
    for (i, (findings, want)) in found.iter().zip(want).enumerate() {
        let got: Vec<String> = findings
            .iter()
            .filter(|f| codes.contains(&f.code))
            .map(|f| format!("{} {}", f.code, short(&f.subject)))
            .collect();
        assert_eq!(
            got, *want,
            "step {i} at {}: {findings:#?}",
            steps[i].finished_at
        );
    }
}

/// Key rotation where the old key leaves too early: k2 is published everywhere (step 1),
/// signs from step 2, the origins drop k1 at step 3 while a token k1 signed at step 1 is
/// valid until step 11 (+60 s skew); the edges follow at step 4. Step 5 comes after that
/// token's expiry.
#[test]
fn key_removed_while_its_token_is_valid() {
    let codes = [
        Code::KidMissing,
        Code::SignatureInvalid,
        Code::StaleEdge,
        Code::KidReused,
        Code::KeyRemovedEarly,
        Code::SigningKeyInconsistent,
        Code::ProbeStale,
        Code::CrossTenantKey,
    ];
    replay_json(
        KEY_REMOVED_EARLY,
        &codes,
        &[
            &[],
            &[],
            &[],
            &[
                "key_removed_early app/origin#k1",
                "key_removed_early io/origin#k1",
                "stale_edge app/cdn",
                "stale_edge io/cdn",
            ],
            &[
                "key_removed_early app/cdn#k1",
                "key_removed_early app/origin#k1",
                "key_removed_early io/cdn#k1",
                "key_removed_early io/origin#k1",
            ],
            &[],
        ],
    );
}

/// The IdP regenerates key material under kid k1: app's origin serves it first (step 1,
/// app's token fails on the stale edge), every view serves it at step 2 (the reuse stays
/// open), the operator moves to a fresh kid k2 at step 3 (reuse resolved, but k1's last
/// token is still valid: removed early) and step 4 comes after that token's expiry.
#[test]
fn kid_reused_until_the_kid_is_retired() {
    let codes = [
        Code::KidMissing,
        Code::SignatureInvalid,
        Code::StaleEdge,
        Code::JwksDrift,
        Code::KidReused,
        Code::KeyRemovedEarly,
        Code::SigningKeyInconsistent,
        Code::ProbeStale,
    ];
    replay_json(
        KID_REUSED,
        &codes,
        &[
            &[],
            &[
                "signature_invalid app/cdn#k1",
                "kid_reused app/origin#k1",
                "stale_edge app/cdn",
                "jwks_drift io",
            ],
            &["kid_reused app/origin#k1"],
            &[
                "key_removed_early app/cdn#k1",
                "key_removed_early app/origin#k1",
                "key_removed_early io/cdn#k1",
                "key_removed_early io/origin#k1",
            ],
            &[],
        ],
    );
}
