//! Rules over the key ledger: `kid_reused` (one kid, several key materials, across views
//! or over time), `key_removed_early` (a kid gone from a view while a token it signed is
//! still valid) and `cross_tenant_key` (two tenants serve the same kid or key), judged
//! per tenant from the history's key index.

use super::{Ctx, human, short_tp};
use crate::config::Config;
use crate::detect::history::{History, ok_keys};
use crate::model::{Code, DomainObservation, Finding, Subject, Timestamp, ViewObservation};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn kid_reused(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    // kid → (domain, view, thumbprint) of every ok view serving it this round.
    type Serving<'a> = Vec<(&'a DomainObservation, &'a ViewObservation, Option<&'a str>)>;
    let mut serving: BTreeMap<&str, Serving<'_>> = BTreeMap::new();
    for d in &cx.obs.domains {
        for v in &d.views {
            for k in ok_keys(v).unwrap_or_default() {
                if let Some(kid) = &k.kid {
                    serving
                        .entry(kid)
                        .or_default()
                        .push((d, v, k.thumbprint.as_deref()));
                }
            }
        }
    }
    let tenant = &cx.obs.tenant;
    for (kid, views) in serving {
        let Some(ledger) = cx.history.kid(kid) else {
            continue;
        };
        let [first, newer @ ..] = ledger.thumbprints() else {
            continue;
        };
        for m in newer {
            let here = views
                .iter()
                .find(|(_, _, tp)| *tp == Some(m.thumbprint.as_str()));
            // The subject is where the newer material was first seen: stable across rounds,
            // so the finding does not resolve and reopen as the material spreads.
            let subject = Subject::view(tenant, &m.first_seen_in.domain, &m.first_seen_in.view);
            let serving_now = match here {
                Some((d, v, _)) => format!("served in {}/{} now", d.domain, v.id),
                None => "not served this round".to_owned(),
            };
            let message = format!(
                "kid {kid} maps to key {}… ({serving_now}, first seen {}) but was key {}… (first seen at {} {}, last seen {}): a client that cached one under this kid rejects tokens signed with the other",
                short_tp(&m.thumbprint),
                m.first_seen,
                short_tp(&first.thumbprint),
                first.first_seen_in,
                first.first_seen,
                first.last_seen,
            );
            out.push(Finding::new(
                Code::KidReused,
                subject.with_kid(Some(kid)),
                message,
            ));
        }
    }
}

pub(super) fn key_removed_early(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let skew = cx.config.settings.max_clock_skew.as_secs() as i64;
    for d in &cx.obs.domains {
        for v in &d.views {
            let Some(keys) = ok_keys(v) else { continue };
            let has: BTreeSet<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
            for (kid, ledger) in cx.history.kids() {
                if has.contains(kid) {
                    continue;
                }
                let (Some(p), Some(exp)) =
                    (ledger.presence_in(&d.domain, &v.id), ledger.latest_exp())
                else {
                    continue;
                };
                let valid_until = Timestamp::from_secs(exp.saturating_add(skew));
                if valid_until <= cx.now {
                    continue;
                }
                let message = format!(
                    "kid {kid} is gone from this view (last seen {}) while a token it signed is valid until {} (+{skew} s skew, {} left): clients reading this view reject it",
                    p.last_seen,
                    Timestamp::from_secs(exp),
                    human(valid_until.0.saturating_sub(cx.now.0) / 1000),
                );
                let subject = Subject::view(&cx.obs.tenant, &d.domain, &v.id).with_kid(Some(kid));
                out.push(Finding::new(Code::KeyRemovedEarly, subject, message));
            }
        }
    }
}

/// `cross_tenant_key` about one configured `tenant`: each kid or key (thumbprint) it serves
/// that another configured tenant serves too. What a tenant serves is the union of its
/// views' latest ok answers, for the views its latest round tried (the history's
/// [`KeyIndex`](crate::detect::history::KeyIndex)). One finding per shared pair (subject:
/// `tenant` + its kid) names the other tenant; the other side gets its own finding when
/// that tenant is judged. Raw, in config order of the other tenants, then key order; merge
/// with `round::finish`. Costs `tenant`'s keys times the matches, not the fleet.
pub fn cross_tenant_key_for(history: &History, config: &Config, tenant: &str) -> Vec<Finding> {
    if config.tenant(tenant).is_none() {
        return Vec::new();
    }
    let index = history.key_index();
    let mine: Vec<(Option<&str>, Option<&str>)> = index.served(tenant).collect();
    // Every other configured tenant sharing a kid or a key, in config order.
    let mut others: BTreeMap<usize, &str> = BTreeMap::new();
    for &(kid, tp) in &mine {
        let by_kid = kid.into_iter().flat_map(|k| index.tenants_with_kid(k));
        let by_tp = tp
            .into_iter()
            .flat_map(|t| index.tenants_with_thumbprint(t));
        for other in by_kid.chain(by_tp).filter(|o| *o != tenant) {
            if let Some(pos) = config.tenant_position(other) {
                others.insert(pos, other);
            }
        }
    }
    let mut out = Vec::new();
    for other in others.into_values() {
        for (kid, tp) in &mine {
            for (other_kid, other_tp) in index.matching(other, *kid, *tp) {
                out.extend(shared_key(
                    tenant,
                    other,
                    (*kid, *tp),
                    (other_kid, other_tp),
                ));
            }
        }
    }
    out
}

/// The `cross_tenant_key` finding about `a` serving `(kid, tp)` while `b` serves
/// `(other_kid, other_tp)`, when they share the kid or the key.
fn shared_key(
    a: &str,
    b: &str,
    (kid, tp): (Option<&str>, Option<&str>),
    (other_kid, other_tp): (Option<&str>, Option<&str>),
) -> Option<Finding> {
    let same_kid = kid.is_some() && kid == other_kid;
    let same_key = tp.is_some() && tp == other_tp;
    let what = match (same_kid, same_key) {
        (true, true) => "the same kid and key".to_owned(),
        (true, false) => "the same kid with other key material".to_owned(),
        (false, true) => format!(
            "the same key ({}…) under kid {}",
            short_tp(tp.unwrap_or_default()),
            other_kid.unwrap_or("(none)")
        ),
        (false, false) => return None,
    };
    let message = format!(
        "tenant {b} serves {what}: a cache keyed without the Host may serve one tenant's keys to the other's clients"
    );
    Some(Finding::new(
        Code::CrossTenantKey,
        Subject::tenant(a).with_kid(kid),
        message,
    ))
}

#[cfg(test)]
mod tests;
