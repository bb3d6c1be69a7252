//! The daemon's own health in its log: every few minutes an error while dead letters
//! exist, a warning while the outbox has a backlog, else one info line.
//!
//! Not here: `/readyz` (the API reads the snapshot's store health).

use super::live::Live;
use crate::model::Timestamp;
use crate::store::{self, SharedStore};
use std::time::Duration;
use tracing::{error, info, warn};

/// How often the daemon logs its own health (outbox backlog, dead letters).
pub(super) const SELF_CHECK_EVERY: Duration = Duration::from_secs(300);
/// A queued notification older than this is a backlog worth a warning.
const BACKLOG_AGE: Duration = Duration::from_secs(300);

/// Self-monitoring in the logs: an error while dead letters exist, a warning while the
/// outbox has a backlog, else one info line.
pub(super) async fn log_health(store: &SharedStore, live: &Live, now: Timestamp) {
    let report = match store::blocking(store, |s| s.status()).await {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "self-check: cannot read the state directory");
            return;
        }
    };
    let oldest = report.oldest_pending.map(|t| now.since(t));
    let full_rounds = live.rounds;
    if !report.dead.is_empty() {
        error!(
            dead_letters = report.dead.len(),
            pending = report.pending,
            full_rounds,
            "self-check: notifications were refused for good; `keycanary status` lists them"
        );
    } else if oldest.is_some_and(|o| o > BACKLOG_AGE) {
        warn!(pending = report.pending, failing = report.retrying, oldest = ?oldest, full_rounds,
            "self-check: notifications are waiting for a receiver");
    } else {
        info!(
            pending = report.pending,
            open_incidents = report.alert_state.incidents.len(),
            full_rounds,
            "self-check: ok"
        );
    }
}
