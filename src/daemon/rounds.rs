//! What the run loop does with a finished tenant round ([`on_round`]: judge, commit,
//! publish) and on every interval tick ([`on_tick`]: tenants that have not delivered a
//! round for a while are judged on their last findings plus `probe_stale`; tenants no
//! longer configured are judged with none, so their incidents resolve).
//!
//! Not here: the judgement (`crate::judge`, pure), SQL (`crate::store`).

use super::commit::{api_silences, commit};
use super::live::{Live, Memory, TenantRound};
use super::publish::{Judged, publish};
use crate::config::Config;
use crate::detect::stateful::STALE_INTERVALS;
use crate::judge::judge;
use crate::model::{Code, Finding, Timestamp};
use crate::snapshot::SharedSnapshot;
use crate::store::{RoundRecord, SharedStore};
use crate::telemetry::traces;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::warn;

/// Judges and commits one tenant's round; publishes the snapshot.
#[allow(clippy::too_many_arguments)]
pub(super) async fn on_round(
    config: &Config,
    store: &SharedStore,
    snapshot: &SharedSnapshot,
    live: &mut Live,
    mut memory: Memory,
    round: TenantRound,
    now: Timestamp,
    wake: &Notify,
) -> Memory {
    let tenant = round.observation.tenant.clone();
    let silences = api_silences(store, now).await;
    let span = round.trace.assess_span(&tenant);
    let verdict = span.in_scope(|| {
        judge(
            config,
            &mut memory.history,
            &memory.alerts,
            &silences,
            &tenant,
            Some(&round.observation),
            &[],
            now,
        )
    });
    traces::record_findings(&span, &verdict.findings);
    drop(span);
    let full = live.finished(&tenant, round.started, now);
    let record = full.map(|(started, finished)| {
        memory.rounds += 1;
        RoundRecord {
            number: memory.rounds,
            started_at: started,
            finished_at: finished,
        }
    });
    let findings = verdict.findings.clone();
    let (memory, queued) =
        commit(config, store, memory, verdict, record, now, &mut live.store).await;
    if queued > 0 {
        wake.notify_one();
    }
    live.latest.insert(tenant.clone(), findings.clone());
    let judged = Judged {
        tenant: &tenant,
        observation: Some(Arc::new(round.observation)),
        findings,
        started: round.started,
        queued,
    };
    publish(config, snapshot, live, &memory.history, judged, now);
    memory
}

/// Every interval: tenants whose task has not delivered a round for
/// [`STALE_INTERVALS`] intervals are judged without an observation (their last findings
/// carried, plus `probe_stale`), and tenants no longer configured are judged with no
/// findings, so their incidents resolve.
pub(super) async fn on_tick(
    config: &Config,
    store: &SharedStore,
    snapshot: &SharedSnapshot,
    live: &mut Live,
    mut memory: Memory,
    now: Timestamp,
    wake: &Notify,
) -> Memory {
    let limit = (config.settings.interval * STALE_INTERVALS).as_millis() as i64;
    let stale: Vec<String> = live
        .last_seen
        .iter()
        .filter(|(_, at)| now.0 - at.0 > limit)
        .map(|(t, _)| t.clone())
        .collect();
    let configured: BTreeSet<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
    let removed: BTreeSet<String> = memory
        .alerts
        .episodes
        .iter()
        .map(|e| e.finding.subject.tenant.clone())
        .chain(
            memory
                .alerts
                .incidents
                .iter()
                .map(|i| i.group.tenant.clone()),
        )
        .filter(|t| !configured.contains(t.as_str()))
        .collect();
    if stale.is_empty() && removed.is_empty() {
        return memory;
    }
    let silences = api_silences(store, now).await;
    for tenant in stale.iter().chain(&removed) {
        let carried: Vec<Finding> = live
            .latest
            .get(tenant)
            .map(|f| {
                f.iter()
                    .filter(|f| f.code != Code::ProbeStale)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if stale.contains(tenant) {
            warn!(tenant = %tenant, "no finished round for {STALE_INTERVALS} intervals: judging on its last findings plus probe_stale");
        }
        let verdict = judge(
            config,
            &mut memory.history,
            &memory.alerts,
            &silences,
            tenant,
            None,
            &carried,
            now,
        );
        let findings = verdict.findings.clone();
        let queued;
        (memory, queued) = commit(config, store, memory, verdict, None, now, &mut live.store).await;
        if queued > 0 {
            wake.notify_one();
        }
        if let Some(f) = live.latest.get_mut(tenant) {
            *f = findings.clone();
        }
        let judged = Judged {
            tenant,
            observation: None,
            findings,
            started: now,
            queued,
        };
        publish(config, snapshot, live, &memory.history, judged, now);
    }
    memory
}
