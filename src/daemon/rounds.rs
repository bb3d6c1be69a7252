//! What the run loop does with a finished tenant round ([`on_round`]: judge, commit,
//! publish) and on every interval tick ([`on_tick`]: tenants that have not delivered a
//! round for a while are judged on their last findings plus `probe_stale`; tenants no
//! longer configured are retired: their incidents end at once, the resolve saying why).
//!
//! Not here: the judgement (`crate::judge`, pure), SQL (`crate::store`).

use super::commit::{api_silences, commit, forget_tenant};
use super::live::{Live, Memory, Silent, TenantRound, alerts_of};
use super::publish::{Judged, publish};
use super::scheduler::Plumbing;
use crate::config::Config;
use crate::detect::stateful::STALE_INTERVALS;
use crate::judge::{Verdict, judge, judge_removed};
use crate::model::{Code, Finding, Timestamp};
use crate::snapshot::SharedSnapshot;
use crate::store::RoundRecord;
use crate::telemetry::traces;
use std::collections::BTreeSet;
use std::sync::Arc;
use tracing::warn;

/// Judges and commits one tenant's round; publishes the snapshot.
#[allow(clippy::too_many_arguments)]
pub(super) async fn on_round(
    config: &Config,
    plumbing: &Plumbing,
    snapshot: &SharedSnapshot,
    live: &mut Live,
    mut memory: Memory,
    round: TenantRound,
    now: Timestamp,
) -> Memory {
    let store = &plumbing.store;
    let tenant = round.observation.tenant.clone();
    // keycanary's own lag for this round: waiting for a permit, then for the judge.
    let waited = round.started.since(round.due) + now.since(round.finished);
    live.lagged(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX));
    let silences = api_silences(store, now).await;
    let span = round.trace.assess_span(&tenant);
    let verdict = span.in_scope(|| {
        judge(
            config,
            &mut memory.history,
            alerts_of(&memory.alerts, &tenant),
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
    let judged = Judged {
        tenant: &tenant,
        observation: Some(Arc::new(round.observation)),
        findings: Vec::new(),
        started: round.started,
        queued: 0,
    };
    settle(
        config, plumbing, snapshot, live, memory, verdict, record, judged, now,
    )
    .await
}

/// Every interval: tenants whose round has been probing for [`STALE_INTERVALS`]
/// intervals without finishing are judged without an observation (their last findings
/// carried, plus `probe_stale`), and tenants no longer configured are retired
/// ([`judge_removed`]): their incidents end at once, the resolve saying why they went. A tenant whose round is only waiting for
/// keycanary (a concurrency permit) is keycanary's lag, counted and logged, never a
/// finding about the identity provider; nor is a round waiting for the judge, since
/// silence is measured from when probing finished.
pub(super) async fn on_tick(
    config: &Config,
    plumbing: &Plumbing,
    snapshot: &SharedSnapshot,
    live: &mut Live,
    mut memory: Memory,
    now: Timestamp,
) -> Memory {
    let store = &plumbing.store;
    let limit =
        i64::try_from((config.settings.interval * STALE_INTERVALS).as_millis()).unwrap_or(i64::MAX);
    let mut stale: Vec<String> = Vec::new();
    let mut waiting: Vec<(String, u64)> = Vec::new();
    {
        let progress = plumbing.progress.lock().unwrap_or_else(|e| e.into_inner());
        for (tenant, since) in &live.last_seen {
            let p = progress.get(tenant).copied().unwrap_or_default();
            match p.silent(*since, now, limit) {
                Some(Silent::Probing) => stale.push(tenant.clone()),
                Some(Silent::Waiting) => {
                    let late = now.since(p.due.unwrap_or(*since));
                    waiting.push((
                        tenant.clone(),
                        u64::try_from(late.as_millis()).unwrap_or(u64::MAX),
                    ));
                }
                None => {}
            }
        }
    }
    if let Some(worst) = waiting.iter().map(|(_, ms)| *ms).max() {
        live.lagged(worst);
        warn!(
            tenants = waiting.len(),
            lag_ms = worst,
            "keycanary is behind: rounds are waiting for a concurrency permit (raise max_concurrency or the interval, or shard the tenants); not a finding"
        );
        snapshot.write().unwrap_or_else(|e| e.into_inner()).lag =
            std::time::Duration::from_millis(live.lag_ms());
    }
    let removed: BTreeSet<String> = memory
        .alerts
        .keys()
        .filter(|t| config.tenant(t).is_none())
        .cloned()
        .collect();
    if stale.is_empty() && removed.is_empty() {
        return memory;
    }
    let silences = api_silences(store, now).await;
    for tenant in &removed {
        // Gone for good: its incidents end now, saying why.
        let reason = live
            .gone
            .get(tenant)
            .map_or("tenant no longer configured", String::as_str)
            .to_owned();
        let verdict = judge_removed(
            config,
            &mut memory.history,
            alerts_of(&memory.alerts, tenant),
            tenant,
            &reason,
            now,
        );
        let judged = Judged::unobserved(tenant, now);
        memory = settle(
            config, plumbing, snapshot, live, memory, verdict, None, judged, now,
        )
        .await;
        if !memory.alerts.contains_key(tenant) {
            // Its incidents have ended: the tenant's row goes.
            forget_tenant(store, tenant).await;
            live.gone.remove(tenant);
        }
    }
    for tenant in &stale {
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
        warn!(tenant = %tenant, "no finished round for {STALE_INTERVALS} intervals: judging on its last findings plus probe_stale");
        let verdict = judge(
            config,
            &mut memory.history,
            alerts_of(&memory.alerts, tenant),
            &silences,
            tenant,
            None,
            &carried,
            now,
        );
        let judged = Judged::unobserved(tenant, now);
        memory = settle(
            config, plumbing, snapshot, live, memory, verdict, None, judged, now,
        )
        .await;
    }
    memory
}

/// What every judgement ends with: commit the verdict (and a completed full round's
/// record), wake the notifier when rows were queued, remember the tenant's findings (they
/// are carried if it goes silent) and publish. `judged` names the tenant and its round;
/// its findings and queued count are filled in here.
#[allow(clippy::too_many_arguments)]
async fn settle(
    config: &Config,
    plumbing: &Plumbing,
    snapshot: &SharedSnapshot,
    live: &mut Live,
    memory: Memory,
    verdict: Verdict,
    record: Option<RoundRecord>,
    mut judged: Judged<'_>,
    now: Timestamp,
) -> Memory {
    let tenant = judged.tenant;
    let findings = verdict.findings.clone();
    let (memory, queued) = commit(
        config,
        &plumbing.store,
        memory,
        tenant,
        verdict,
        record,
        now,
        &mut live.store,
    )
    .await;
    if queued > 0 {
        plumbing.wake.notify_one();
    }
    if judged.observation.is_some() || live.latest.contains_key(tenant) {
        live.latest.insert(tenant.to_owned(), findings.clone());
    }
    judged.findings = findings;
    judged.queued = queued;
    publish(config, snapshot, live, &memory.history, judged, now);
    memory
}
