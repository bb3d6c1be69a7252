//! Publishing into the shared snapshot after a judgement (and the running config after a
//! (re)load), logging each finding when it opens and when it resolves.
//!
//! Not here: the snapshot's shape (`crate::snapshot`), rendering it (`api`, `telemetry`).

use super::live::Live;
use crate::config::Config;
use crate::detect::history::History;
use crate::model::{Finding, Observation, Severity, Timestamp};
use crate::snapshot::{Changes, SharedSnapshot};
use crate::telemetry::metrics;
use std::sync::Arc;
use tracing::{error, info, warn};

/// Publishes the config the daemon runs with (at start and after a reload), so the API
/// reads the current tenants (and their gates) without waiting for a round.
pub(super) fn publish_config(
    snapshot: &SharedSnapshot,
    config: &Arc<Config>,
    history: &History,
    now: Timestamp,
) {
    let mut s = snapshot.write().unwrap_or_else(|e| e.into_inner());
    s.reconfigured(config, history, now);
}

/// One tenant's judgement, as published.
pub(super) struct Judged<'a> {
    pub tenant: &'a str,
    /// The round judged; `None` for a tenant judged without one (stale, or removed).
    pub observation: Option<Arc<Observation>>,
    pub findings: Vec<Finding>,
    /// When the round began (for a new finding's `since`).
    pub started: Timestamp,
    /// Outbox rows the judgement queued.
    pub queued: usize,
}

impl<'a> Judged<'a> {
    /// A tenant judged at `now` without a round (stale, or removed).
    pub fn unobserved(tenant: &'a str, now: Timestamp) -> Self {
        Judged {
            tenant,
            observation: None,
            findings: Vec::new(),
            started: now,
            queued: 0,
        }
    }
}

/// Replaces the judged tenant's entry in the shared snapshot (nothing of the other
/// tenants is touched or copied) and logs what opened and resolved. A new round's
/// durations are added to the histograms.
pub(super) fn publish(
    config: &Config,
    snapshot: &SharedSnapshot,
    live: &Live,
    history: &History,
    judged: Judged<'_>,
    now: Timestamp,
) {
    let Judged {
        tenant,
        observation,
        findings,
        started,
        queued,
    } = judged;
    let views: usize = observation
        .as_ref()
        .map_or(0, |o| o.domains.iter().map(|d| d.views.len()).sum());
    let open = findings.len();
    let mut s = snapshot.write().unwrap_or_else(|e| e.into_inner());
    if let Some(o) = &observation {
        s.durations.observe(o, config.telemetry.per_view_histograms);
    }
    let changes = s.judged(config, tenant, observation, findings, history, started, now);
    // The tenant's /metrics lines, rendered once here so scrapes only copy text.
    let exposition = metrics::render_tenant(&s, config, tenant);
    if let Some(entry) = s.tenants.get_mut(tenant) {
        entry.exposition = Some(Arc::new(exposition));
    }
    s.rounds = live.rounds;
    s.last_round_started = live.last_round.map(|r| r.0);
    s.last_round_finished = live.last_round.map(|r| r.1);
    s.store = live.store.clone();
    s.lag = std::time::Duration::from_millis(live.lag_ms());
    drop(s);
    log_changes(&changes);
    info!(
        tenant,
        views,
        open_findings = open,
        queued,
        full_rounds = live.rounds,
        "round done"
    );
}

pub(super) fn log_changes(changes: &Changes) {
    for f in &changes.opened {
        if f.severity.at_least(Severity::High) {
            error!(code = %f.code, severity = %f.severity, subject = %f.subject, "{}", f.message);
        } else {
            warn!(code = %f.code, severity = %f.severity, subject = %f.subject, "{}", f.message);
        }
    }
    for (code, subject) in &changes.resolved {
        info!(code = %code, subject = %subject, "resolved");
    }
}
