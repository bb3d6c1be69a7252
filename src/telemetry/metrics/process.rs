//! Families about keycanary's own work: probe rounds completed and the latest round's
//! timing, the fetch and login duration histograms, and the outbox and notification
//! sends.
//!
//! Not here: what the probes saw (`views`, `login`) or what was judged (`verdicts`).

use super::{Durations, Family, Histogram, HistogramSample, Labels};
use crate::config::Config;
use crate::snapshot::Snapshot;
use crate::snapshot::durations::{FETCH_DURATION, LOGIN_DURATION};
use std::collections::BTreeMap;

/// A timestamp or span in milliseconds, in seconds.
fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Rounds completed since start, and the latest full round's duration and end.
pub(super) fn round_families(s: &Snapshot) -> Vec<Family> {
    let rounds = Family::counter(
        "keycanary_rounds_total",
        "Probe rounds completed since this process started.",
    )
    .with(&[], s.rounds as f64);
    let mut duration = Family::gauge(
        "keycanary_round_duration_seconds",
        "Wall-clock duration of the latest probe round.",
    );
    let mut last = Family::gauge(
        "keycanary_last_round_timestamp_seconds",
        "Unix time at which the latest probe round finished.",
    );
    if let (Some(start), Some(end)) = (s.last_round_started, s.last_round_finished) {
        duration.push(&[], secs(end.0 - start.0).max(0.0));
        last.push(&[], secs(end.0));
    }
    let lag = Family::gauge(
        "keycanary_scheduler_lag_seconds",
        "keycanary's own lag: the longest a tenant round waited for a concurrency permit plus for the judge, in the latest full round (or the current one when worse). Its own health, never a finding.",
    )
    .with(&[], s.lag.as_secs_f64());
    vec![rounds, duration, last, lag]
}

/// The outbox as the latest commit left it, and the notifier's sends since the process
/// started: every configured channel gets all three results (zeros included); channels
/// removed by a reload keep the counts they had.
pub(super) fn notification_families(s: &Snapshot, config: &Config) -> Vec<Family> {
    let mut depth = Family::gauge(
        "keycanary_outbox_depth",
        "Alert notifications waiting in the outbox to be sent (not dead), after the latest commit.",
    );
    let mut dead = Family::gauge(
        "keycanary_notifications_dead",
        "Dead letters in the outbox: notifications a receiver refused for good, after the latest commit.",
    );
    if let Some(n) = s.store.outbox_depth {
        depth.push(&[], n as f64);
    }
    if let Some(n) = s.store.dead_letters {
        dead.push(&[], n as f64);
    }
    let mut total = Family::counter(
        "keycanary_notifications_total",
        "Notification sends since this process started, by channel and result (sent, retried, dead).",
    );
    let mut counts: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for c in &config.alerting.channels {
        for r in crate::notify::RESULTS {
            counts.insert((c.name.clone(), r), 0);
        }
    }
    for ((channel, result), n) in s.deliveries.counts() {
        for r in crate::notify::RESULTS {
            counts.entry((channel.clone(), r)).or_default();
        }
        counts.insert((channel, result), n);
    }
    for ((channel, result), n) in &counts {
        total.push(&[("channel", channel), ("result", result)], *n as f64);
    }
    let mut store_errors = Family::counter(
        "keycanary_store_errors_total",
        "Writes to the state store that failed since this process started, by writer: commit (a round's alert state and outbox rows), notifier (a send's outcome).",
    );
    store_errors.push(&[("writer", "commit")], s.store.commit_errors as f64);
    store_errors.push(
        &[("writer", "notifier")],
        s.deliveries.store_errors() as f64,
    );
    vec![depth, dead, total, store_errors]
}

/// A histogram as the encoder writes it, with `labels`.
pub(super) fn sample(h: &Histogram, labels: Labels) -> HistogramSample {
    HistogramSample {
        labels,
        buckets: h.buckets(),
        sum: h.sum(),
        count: h.count(),
    }
}

/// The fetch and login duration histograms of `tenant` as accumulated in the snapshot
/// (no samples without a tenant).
pub(super) fn duration_families(d: &Durations, tenant: Option<&str>) -> Vec<Family> {
    let [fetch, login] = match tenant {
        Some(t) => d.of_tenant(t),
        None => [Vec::new(), Vec::new()],
    };
    let family = |name, help, series: Vec<(&Labels, &Histogram)>| {
        let mut f = Family::histogram(name, help);
        f.histograms = series
            .into_iter()
            .map(|(labels, h)| sample(h, labels.clone()))
            .collect();
        f
    };
    vec![
        family(
            FETCH_DURATION,
            "Duration of the view's JWKS fetches since this process started (failed ones included).",
            fetch,
        ),
        family(
            LOGIN_DURATION,
            "Duration of the domain's token requests since this process started (failed ones included).",
            login,
        ),
    ]
}
