//! Families the rotation gate over every location reads back through Prometheus
//! (`detect::gate::global`): since when each view serves each watched kid as the gate
//! counts it, the view's open state (stale edge, cached error, fetch failing), when an
//! edge's cached copy turns over, and when the tenant's latest round finished. With
//! `keycanary_view_up` and the staleness budget families they are everything a gate at
//! another location needs to judge this instance's views by the same rule.
//!
//! Bounded like the other view families: the watched kids (at most
//! [`MAX_KIDS_PER_DOMAIN`] per domain, cut to [`MAX_LABEL_LEN`] bytes), three states, and
//! only what is true (a healthy view has no state or turnover series).

use super::Family;
use super::views::{cut, watched_kids};
use crate::detect::gate::facts::{KidSeen, local_kid_seen};
use crate::detect::gate::global::{
    EDGE_TURNOVER, KID_SINCE, STATE_ERROR_CACHED, STATE_FETCH_FAILING, STATE_STALE_EDGE,
    TENANT_ROUND, VIEW_STATE,
};
use crate::detect::gate::view_turnover;
use crate::model::{Code, ViewKind};
use crate::snapshot::Snapshot;
use crate::snapshot::durations::view_labels;

/// The gate facts of `tenant`'s views (none for `None`: the families' names and help).
pub(super) fn gate_fact_families(s: &Snapshot, tenant: Option<&str>) -> Vec<Family> {
    let mut since = Family::gauge(
        KID_SINCE,
        "Unix time since when the view has served the kid continuously, as the rotation gate counts it (never before keycanary first saw the view; 0: already signing then, no wait counted); no sample while the view lacks it.",
    );
    let mut state = Family::gauge(
        VIEW_STATE,
        "1 while the view is in the state: stale_edge (differs from its origin), error_cached (an edge serves a cached error), fetch_failing; no sample otherwise.",
    );
    let mut turnover = Family::gauge(
        EDGE_TURNOVER,
        "Unix time the edge view's cached copy expires (declared lifetime plus stale-* windows), while the view is stale, serves a cached error or lacks a watched kid.",
    );
    let mut round = Family::gauge(
        TENANT_ROUND,
        "Unix time the tenant's latest round finished at this location.",
    );
    let Some(obs) = tenant.and_then(|t| s.observation(t)) else {
        return vec![since, state, turnover, round];
    };
    round.push(
        &[
            ("tenant", obs.tenant.as_str()),
            ("location", obs.location.as_str()),
        ],
        obs.finished_at.0 as f64 / 1000.0,
    );
    let open = s.tenants.get(&obs.tenant).map_or(&[][..], |t| &t.findings);
    let history = s.history(&obs.tenant);
    for d in &obs.domains {
        let kids = watched_kids(d);
        for v in &d.views {
            let labels = view_labels(obs, d, v);
            let has = |code: Code| {
                open.iter()
                    .any(|f| f.code == code && f.subject.is_view(&obs.tenant, &d.domain, &v.id))
            };
            let states = [
                (STATE_STALE_EDGE, has(Code::StaleEdge)),
                (STATE_ERROR_CACHED, has(Code::ErrorCached)),
                (STATE_FETCH_FAILING, has(Code::JwksFetchFailed)),
            ];
            for (name, on) in states {
                if on {
                    let mut with_state = labels.to_vec();
                    with_state.push(("state", name));
                    state.push(&with_state, 1.0);
                }
            }
            let Some(h) = history else { continue };
            let mut lacks_a_kid = false;
            for kid in &kids {
                let value = match local_kid_seen(h, &d.domain, &v.id, kid) {
                    KidSeen::Missing { .. } => {
                        lacks_a_kid = true;
                        continue;
                    }
                    KidSeen::FoundSigning => 0.0,
                    KidSeen::Since(t) => t.0 as f64 / 1000.0,
                };
                let label = cut(kid);
                let mut with_kid = labels.to_vec();
                with_kid.push(("kid", label.as_str()));
                since.push(&with_kid, value);
            }
            let unsettled = states[0].1 || states[1].1 || lacks_a_kid;
            if v.kind == ViewKind::Edge
                && unsettled
                && let Some(at) = view_turnover(h, &d.domain, &v.id)
            {
                turnover.push(&labels, at.0 as f64 / 1000.0);
            }
        }
    }
    vec![since, state, turnover, round]
}
