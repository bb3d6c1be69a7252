//! The daemon's side of the store: committing a verdict (alert state and outbox rows, with
//! a full round also its record and the history) in one transaction, saving the history at
//! shutdown, and reading the API's silences. A failed commit keeps the old alert state, so
//! the next round decides again and nothing is lost.
//!
//! Not here: SQL (`crate::store`), deciding (`crate::judge`).

use super::live::Memory;
use crate::alert::Silence;
use crate::config::Config;
use crate::judge::Verdict;
use crate::model::Timestamp;
use crate::snapshot::StoreHealth;
use crate::store::{self, RoundRecord, SharedStore, TenantCommit};
use tracing::{error, info, warn};

/// Commits `tenant`'s verdict in one transaction: its part of the alert state, its
/// history, the outbox rows (and a completed full round's record). Only that tenant's
/// row is written, so a commit costs the tenant's size, not the fleet's. Returns the
/// memory to carry on with and how many rows were queued. When the commit fails the
/// tenant's alert state stays as it was, so the next round decides again and no
/// notification is lost (it is made again, a round later). `health` records the outcome
/// and, after a successful commit, the outbox counts.
#[allow(clippy::too_many_arguments)]
pub(super) async fn commit(
    config: &Config,
    store: &SharedStore,
    memory: Memory,
    tenant: &str,
    verdict: Verdict,
    record: Option<RoundRecord>,
    now: Timestamp,
    health: &mut StoreHealth,
) -> (Memory, usize) {
    let forget_dead_before = Timestamp(
        now.0
            .saturating_sub(config.settings.retention.as_millis() as i64),
    );
    let name = tenant.to_owned();
    let (mut memory, verdict, result) = store::blocking(store, move |s| {
        let result = s.commit_tenant(
            now,
            &TenantCommit {
                tenant: &name,
                alerts: &verdict.alerts,
                history: memory.history.tenant(&name),
                first_recorded: memory.history.first_recorded(),
                outbox: &verdict.outbox,
                round: record,
            },
            forget_dead_before,
        );
        let counts = result.is_ok().then(|| s.outbox_counts());
        (memory, verdict, result.map(|q| (q, counts)))
    })
    .await;
    match result {
        Ok((queued, counts)) => {
            health.last_commit = Some(now);
            health.commit_error = None;
            match counts {
                Some(Ok((pending, dead))) => {
                    health.outbox_depth = Some(pending);
                    health.dead_letters = Some(dead);
                }
                Some(Err(e)) => warn!(error = %e, "cannot count the outbox"),
                None => {}
            }
            for n in &verdict.notifications {
                let channels: Vec<&str> = verdict
                    .outbox
                    .iter()
                    .filter(|(_, o)| o.id == n.id)
                    .map(|(c, _)| c.as_str())
                    .collect();
                if channels.is_empty() && config.alerting.channels.is_empty() {
                    // No channels at all: said once at start; findings are only logged.
                } else if channels.is_empty() {
                    warn!(notification = %n.id, status = n.status.as_str(), "no route matches this notification: it is not sent anywhere");
                } else {
                    info!(notification = %n.id, status = n.status.as_str(), severity = %n.severity, channels = %channels.join(","), "notification queued");
                }
            }
            if verdict.alerts.is_empty() {
                memory.alerts.remove(tenant);
            } else {
                memory.alerts.insert(tenant.to_owned(), verdict.alerts);
            }
            (memory, queued)
        }
        Err(e) => {
            error!(error = %e, "cannot commit to the state directory; this round's notifications will be decided again");
            health.commit_error = Some(e.to_string());
            health.commit_errors += 1;
            (memory, 0)
        }
    }
}

/// Deletes the stored state of a tenant no longer configured (logged when it cannot).
pub(super) async fn forget_tenant(store: &SharedStore, tenant: &str) {
    let name = tenant.to_owned();
    if let Err(e) = store::blocking(store, move |s| s.remove_tenant(&name)).await {
        warn!(tenant, error = %e, "cannot delete the state of a removed tenant; it stays in the state directory");
    }
}

pub(super) async fn api_silences(store: &SharedStore, now: Timestamp) -> Vec<Silence> {
    store::blocking(store, move |s| s.silences(now))
        .await
        .unwrap_or_else(|e| {
            error!(error = %e, "cannot read silences from the state directory; using those of probes.toml only");
            Vec::new()
        })
}
