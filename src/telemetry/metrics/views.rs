//! Families about each JWKS view in the latest round: up, which watched kids it serves,
//! its Age, the cache lifetime an edge had left and its staleness budget S as the rotation
//! gate computes it.
//!
//! Label sets are bounded here: at most [`MAX_KIDS_PER_DOMAIN`] kids per domain, each cut
//! to [`MAX_LABEL_LEN`] bytes. Not here: logins and token checks (`login`).

use super::{Family, MAX_KIDS_PER_DOMAIN, MAX_LABEL_LEN};
use crate::config::Config;
use crate::detect::freshness::view_freshness;
use crate::detect::gate::view_budget;
use crate::detect::profiles::Budget;
use crate::model::{DomainObservation, FetchOutcome, Observation, ViewKind, ViewObservation};
use crate::snapshot::Snapshot;
use crate::snapshot::durations::view_labels;
use std::collections::BTreeSet;

/// Up, kid presence and Age of every view in the latest round.
pub(super) fn view_families(observations: &[&Observation]) -> Vec<Family> {
    let mut up = Family::gauge(
        "keycanary_view_up",
        "1 when the JWKS view answered 2xx with at least one key in the latest round, else 0.",
    );
    let mut kid_present = Family::gauge(
        "keycanary_view_kid_present",
        "1 when the view serves the kid, else 0; kids are the signer's and the origin view's (bounded).",
    );
    let mut age = Family::gauge(
        "keycanary_view_age_seconds",
        "Age response header of the view in the latest round (absent when not sent).",
    );
    for obs in observations {
        for d in &obs.domains {
            let kids = watched_kids(d);
            for v in &d.views {
                let labels = view_labels(obs, d, v);
                up.push(&labels, if view_up(v) { 1.0 } else { 0.0 });
                if let FetchOutcome::Response(r) = &v.fetch.outcome
                    && let Some(a) = r.headers.age
                {
                    age.push(&labels, a as f64);
                }
                let served: BTreeSet<String> = v
                    .keys()
                    .iter()
                    .filter_map(|k| k.kid.as_deref())
                    .map(cut)
                    .collect();
                for kid in kids.iter().map(|k| cut(k)) {
                    let mut with_kid = labels.to_vec();
                    with_kid.push(("kid", kid.as_str()));
                    let present = served.contains(&kid);
                    kid_present.push(&with_kid, if present { 1.0 } else { 0.0 });
                }
            }
        }
    }
    vec![up, kid_present, age]
}

/// Cache lifetime left on edge views, and each view's staleness budget S exactly as the
/// rotation gate computes it (from the history's latest answer and the tenant's client
/// profiles). A view whose S is unbounded gets an `_unbounded` sample instead.
pub(super) fn freshness_families(
    s: &Snapshot,
    config: &Config,
    tenant: Option<&str>,
) -> Vec<Family> {
    let mut remaining = Family::gauge(
        "keycanary_view_edge_ttl_remaining_seconds",
        "Cache lifetime the edge view's latest answer had left when served (edge views with a declared lifetime only).",
    );
    let mut budget = Family::gauge(
        "keycanary_view_staleness_budget_seconds",
        "Staleness budget S of the view as the rotation gate computes it (absent when unbounded).",
    );
    let mut unbounded = Family::gauge(
        "keycanary_view_staleness_budget_unbounded",
        "1 when the view's staleness budget is unbounded because of the named client profile.",
    );
    if let Some(obs) = tenant.and_then(|t| s.observation(t)) {
        let tenant = config.tenant(&obs.tenant);
        let profiles = tenant.map(|t| config.tenant_profiles(t));
        let history = s.history(&obs.tenant);
        for d in &obs.domains {
            for v in &d.views {
                let labels = view_labels(obs, d, v);
                if v.kind == ViewKind::Edge
                    && let Some(left) = view_freshness(v).and_then(|f| f.remaining)
                {
                    remaining.push(&labels, left.as_secs_f64());
                }
                let (Some(h), Some(profiles)) = (history, &profiles) else {
                    continue;
                };
                match view_budget(h, &d.domain, &v.id, profiles) {
                    Budget::Bounded(b) => budget.push(&labels, b.as_secs_f64()),
                    Budget::Unbounded { profile } => {
                        let mut with_profile = labels.to_vec();
                        with_profile.push(("profile", profile.as_str()));
                        unbounded.push(&with_profile, 1.0);
                    }
                }
            }
        }
    }
    vec![remaining, budget, unbounded]
}

/// The kids exported for one domain: the signer's (from this round's tokens) first, then
/// those the origin view serves; deduplicated by their label (cut to [`MAX_LABEL_LEN`]),
/// capped; whole, so they can be looked up (cut them for a label).
pub(super) fn watched_kids(d: &DomainObservation) -> Vec<String> {
    let signer = d.tokens().iter().filter_map(|t| t.header.kid.as_deref());
    let origin = d
        .views
        .iter()
        .filter(|v| v.kind == ViewKind::Origin)
        .flat_map(|v| v.keys())
        .filter_map(|k| k.kid.as_deref());
    let mut seen = BTreeSet::new();
    signer
        .chain(origin)
        .filter(|k| seen.insert(cut(k)))
        .map(str::to_owned)
        .take(MAX_KIDS_PER_DOMAIN)
        .collect()
}

/// `s` cut to at most [`MAX_LABEL_LEN`] bytes, on a character boundary.
pub(super) fn cut(s: &str) -> String {
    if s.len() <= MAX_LABEL_LEN {
        return s.to_owned();
    }
    let mut end = MAX_LABEL_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Answered 2xx with at least one key.
fn view_up(v: &ViewObservation) -> bool {
    let ok_status = v
        .fetch
        .response()
        .is_some_and(|r| (200..300).contains(&r.status));
    ok_status && !v.keys().is_empty()
}
