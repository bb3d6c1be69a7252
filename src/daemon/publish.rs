//! Publishing into the shared snapshot after a judgement (and the running config after a
//! (re)load), logging each finding when it opens and when it resolves.
//!
//! Not here: the snapshot's shape (`crate::snapshot`), rendering it (`api`, `telemetry`).

use super::live::Live;
use crate::config::Config;
use crate::detect::history::History;
use crate::model::{Finding, Observation, Severity, Timestamp};
use crate::snapshot::{SharedSnapshot, Snapshot, advance};
use std::sync::Arc;
use tracing::{error, info, warn};

/// Publishes the config the daemon runs with (at start and after a reload), so the API
/// reads the current tenants (and their gates) without waiting for a round.
pub(super) fn publish_config(snapshot: &SharedSnapshot, config: &Arc<Config>, now: Timestamp) {
    let mut s = snapshot.write().unwrap_or_else(|e| e.into_inner());
    s.config = Some(config.clone());
    s.refresh_gates(config, config.tenants.iter().map(|t| t.name.as_str()), now);
}

/// Replaces the shared snapshot after `tenant`'s judgement and logs what opened and
/// resolved. With `observed`, the judgement was of a new round (its latest observation in
/// `live`), whose durations are added to the histograms.
#[allow(clippy::too_many_arguments)]
pub(super) fn publish(
    config: &Config,
    snapshot: &SharedSnapshot,
    live: &Live,
    history: Arc<History>,
    started: Timestamp,
    now: Timestamp,
    tenant: &str,
    observed: bool,
    queued: usize,
) {
    let observations: Vec<Observation> = config
        .tenants
        .iter()
        .filter_map(|t| live.latest.get(&t.name).map(|(o, _)| o.clone()))
        .collect();
    let mut findings: Vec<Finding> = live
        .latest
        .values()
        .flat_map(|(_, f)| f.iter().cloned())
        .collect();
    findings.sort_by(|a, b| a.rank().cmp(&b.rank()));
    // The judge is the snapshot's only writer: the next one is built from the current one
    // under the write lock, without copying it first.
    let mut current = snapshot.write().unwrap_or_else(|e| e.into_inner());
    let mut next = advance(&current, observations, findings, started, now);
    next.rounds = live.rounds;
    next.history = history;
    next.last_round_started = live.last_round.map(|r| r.0);
    next.last_round_finished = live.last_round.map(|r| r.1);
    next.store = live.store.clone();
    if observed && let Some((o, _)) = live.latest.get(tenant) {
        next.durations.observe(o);
    }
    next.refresh_gates(config, [tenant], now);
    log_changes(&current, &next);
    *current = next;
    drop(current);
    let views: usize = live
        .latest
        .get(tenant)
        .map_or(0, |(o, _)| o.domains.iter().map(|d| d.views.len()).sum());
    let open = live.latest.get(tenant).map_or(0, |(_, f)| f.len());
    info!(
        tenant,
        views,
        open_findings = open,
        queued,
        full_rounds = live.rounds,
        "round done"
    );
}

pub(super) fn log_changes(previous: &Snapshot, next: &Snapshot) {
    for f in &next.findings {
        if previous.since.contains_key(&(f.code, f.subject.clone())) {
            continue;
        }
        if f.severity.at_least(Severity::High) {
            error!(code = %f.code, severity = %f.severity, subject = %f.subject, "{}", f.message);
        } else {
            warn!(code = %f.code, severity = %f.severity, subject = %f.subject, "{}", f.message);
        }
    }
    for (code, subject) in previous
        .since
        .keys()
        .filter(|k| !next.since.contains_key(*k))
    {
        info!(code = %code, subject = %subject, "resolved");
    }
}
