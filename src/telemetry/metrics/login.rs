//! Families about each domain's login in the latest round: whether it returned tokens,
//! how its fresh tokens verified against every view (by result), and the signing kid.
//!
//! Not here: the login duration histogram (`process`, from the snapshot's durations).

use super::Family;
use super::MAX_KIDS_PER_DOMAIN;
use super::views::cut;
use crate::model::{LoginResult, Observation, TokenCheckResult};
use std::collections::{BTreeMap, BTreeSet};

/// Login up, token verifications by view and result, and the signing kid, per domain.
pub(super) fn login_families(observations: &[&Observation]) -> Vec<Family> {
    let mut up = Family::gauge(
        "keycanary_login_up",
        "1 when the latest login on the domain returned tokens, else 0 (absent without a login).",
    );
    let mut verifications = Family::gauge(
        "keycanary_token_verifications",
        "Fresh tokens verified against the view in the latest round, by result.",
    );
    let mut signing = Family::gauge(
        "keycanary_signing_kid_info",
        "The kid that signed the domain's tokens in the latest round; the value is always 1.",
    );
    for obs in observations {
        for d in &obs.domains {
            let td = [
                ("tenant", obs.tenant.as_str()),
                ("domain", d.domain.as_str()),
            ];
            let Some(login) = &d.login else { continue };
            let ok = matches!(login.result, LoginResult::Tokens { .. });
            up.push(&td, if ok { 1.0 } else { 0.0 });
            // Once a token was issued, every view has a `verified` series (zero included);
            // the failure results appear only when they counted something, so a healthy
            // view costs one series here instead of five.
            let mut counts: BTreeMap<(String, String, &str), u32> = BTreeMap::new();
            if !d.tokens().is_empty() {
                for v in &d.views {
                    let edge = v.id.edge.clone().unwrap_or_default();
                    counts.insert((v.id.path.clone(), edge, RESULTS[0]), 0);
                }
            }
            let mut signers = BTreeSet::new();
            for t in d.tokens() {
                if let Some(kid) = &t.header.kid {
                    signers.insert(cut(kid));
                }
                for c in &t.checks {
                    let edge = c.view.edge.clone().unwrap_or_default();
                    *counts
                        .entry((c.view.path.clone(), edge, result_str(&c.result)))
                        .or_default() += 1;
                }
            }
            for ((path, edge, result), n) in &counts {
                let labels = [
                    td[0],
                    td[1],
                    ("path", path),
                    ("edge", edge),
                    ("result", result),
                ];
                verifications.push(&labels, f64::from(*n));
            }
            for kid in signers.iter().take(MAX_KIDS_PER_DOMAIN) {
                signing.push(&[td[0], td[1], ("kid", kid)], 1.0);
            }
        }
    }
    vec![up, verifications, signing]
}

/// Every token check result, as its `result` label.
const RESULTS: [&str; 5] = TokenCheckResult::CODES;

fn result_str(r: &TokenCheckResult) -> &'static str {
    r.code()
}
