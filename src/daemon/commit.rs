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
use crate::store::{self, RoundRecord, SharedStore};
use tracing::{error, info, warn};

/// Commits a verdict (alert state, outbox rows; with a full round also its record and
/// the history) in one transaction. Returns the memory to carry on with and how many rows
/// were queued. When the commit fails the alert state stays as it was, so the next round
/// decides again and no notification is lost (it is made again, a round later). `health`
/// records the outcome and, after a successful commit, the outbox counts.
pub(super) async fn commit(
    config: &Config,
    store: &SharedStore,
    memory: Memory,
    verdict: Verdict,
    record: Option<RoundRecord>,
    now: Timestamp,
    health: &mut StoreHealth,
) -> (Memory, usize) {
    let forget_dead_before = Timestamp(
        now.0
            .saturating_sub(config.settings.retention.as_millis() as i64),
    );
    let (mut memory, verdict, result) = store::blocking(store, move |s| {
        let result = s.commit_round(
            now,
            record,
            &verdict.alerts,
            record.is_some().then_some(&memory.history),
            &verdict.outbox,
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
            memory.alerts = verdict.alerts;
            (memory, queued)
        }
        Err(e) => {
            error!(error = %e, "cannot commit to the state directory; this round's notifications will be decided again");
            health.commit_error = Some(e.to_string());
            (memory, 0)
        }
    }
}

/// Writes the history (at shutdown: rounds since the last full one are not stored yet).
pub(super) async fn save_history(store: &SharedStore, memory: &Memory, now: Timestamp) -> bool {
    let alerts = memory.alerts.clone();
    let history = memory.history.clone();
    let result = store::blocking(store, move |s| {
        s.commit_round(now, None, &alerts, Some(&history), &[], Timestamp(i64::MIN))
    })
    .await;
    match result {
        Ok(_) => true,
        Err(e) => {
            error!(error = %e, "cannot save the history at shutdown");
            false
        }
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
