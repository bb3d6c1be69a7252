//! Delivery: the notifier drains the store's outbox through [`channel`] (one file per
//! receiver: a pure `render`, then a short `send` — the only code in keycanary that talks
//! SMTP or HTTP to receivers), with exponential backoff and jitter, in its own task so a
//! slow or dead receiver never holds up probing.
//!
//! Delivery is **at least once**: a row is deleted only after the receiver accepted it,
//! so a crash between "accepted" and "deleted" sends it again on the next start. Every
//! notification carries a stable id and its incident's dedup key (PagerDuty `dedup_key`,
//! webhook `id`, Alertmanager's labels), so a repeat folds into the same alert. A
//! retryable failure ([`SendError::Retryable`]) delays the row; a permanent one
//! ([`SendError::Permanent`]) turns it into a dead letter, logged at error level and listed
//! by `keycanary status`, never silently dropped.
//!
//! Not here: deciding what to send (the alert state machine did that, and the round
//! committed it to the outbox together with the state), or talking SQL (the store does).

pub mod channel;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::store::{self, OutboxRow, SharedStore, StoreError};
use channel::{Channel, RenderContext, SendError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Rows sent concurrently in one pass (each to its own receiver).
const BATCH: usize = 16;
/// The longest the notifier sleeps without looking at the outbox.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// How long sends in flight may finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// When a failed send is tried again.
///
/// Hand-rolled rather than `backon`: the schedule must survive restarts, so it is a pure
/// function of the stored attempt count that yields the next attempt's time, not a retry
/// loop around a future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub first: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 5 s, 10 s, 20 s, … up to 5 min.
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay after `failures` failed sends (at least 1): `first · 2^(failures-1)`,
    /// capped at `max`, with "equal jitter": half of it fixed, half scaled by `jitter`
    /// (in `[0, 1)`), so many rows failing together do not retry in lockstep and none
    /// retries sooner than half its nominal delay.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let nominal = self.first.saturating_mul(1 << exp).min(self.max);
        let half = nominal / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// What one pass over the outbox did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub delivered: usize,
    pub retrying: usize,
    pub dead: usize,
}

enum Outcome {
    Delivered,
    Retrying,
    Dead,
}

/// The `result` label of each outcome in [`Deliveries`].
pub const RESULTS: [&str; 3] = ["sent", "retried", "dead"];

/// Send attempts since the process started, by channel and result ([`RESULTS`]): the
/// notifier adds, `/metrics` reads (`keycanary_notifications_total`). Shared through the
/// daemon's snapshot, so it survives reloads.
#[derive(Debug, Default)]
pub struct Deliveries(Mutex<BTreeMap<(String, &'static str), u64>>);

impl Deliveries {
    pub fn add(&self, channel: &str, result: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((channel.to_owned(), result)).or_default() += 1;
    }

    /// Every count so far.
    pub fn counts(&self) -> BTreeMap<(String, &'static str), u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Sends outbox rows to their channels.
#[derive(Debug)]
pub struct Notifier {
    store: SharedStore,
    channels: Vec<Channel>,
    ctx: RenderContext,
    clock: SharedClock,
    http: reqwest::Client,
    backoff: Backoff,
    deliveries: Arc<Deliveries>,
}

impl Notifier {
    pub fn new(
        config: &Config,
        store: SharedStore,
        clock: SharedClock,
        backoff: Backoff,
    ) -> Notifier {
        Notifier {
            store,
            channels: config.alerting.channels.clone(),
            ctx: render_context(config),
            clock,
            http: channel::http_client(),
            backoff,
            deliveries: Arc::default(),
        }
    }

    /// Counts every outcome into `deliveries`.
    pub fn with_deliveries(mut self, deliveries: Arc<Deliveries>) -> Notifier {
        self.deliveries = deliveries;
        self
    }

    /// Sends every row due now (at most [`BATCH`], concurrently) and records each outcome.
    pub async fn deliver_due(self: &Arc<Self>) -> Result<Pass, StoreError> {
        let now = self.clock.now();
        let rows = store::blocking(&self.store, move |s| s.due(now, BATCH)).await?;
        let mut set = JoinSet::new();
        for row in rows {
            let this = self.clone();
            set.spawn(async move { this.deliver(row).await });
        }
        let mut pass = Pass::default();
        while let Some(joined) = set.join_next().await {
            match joined.expect("a delivery task panicked")? {
                Outcome::Delivered => pass.delivered += 1,
                Outcome::Retrying => pass.retrying += 1,
                Outcome::Dead => pass.dead += 1,
            }
        }
        Ok(pass)
    }

    async fn deliver(&self, row: OutboxRow) -> Result<Outcome, StoreError> {
        let result = match (
            self.channels.iter().find(|c| c.name == row.channel),
            row.notification(),
        ) {
            (None, _) => Err(SendError::Permanent(format!(
                "channel `{}` is not configured any more",
                row.channel
            ))),
            (_, Err(e)) => Err(SendError::Permanent(e.to_string())),
            (Some(ch), Ok(n)) => {
                let msg = channel::render(&n, &ch.config, &self.ctx);
                channel::send(&msg, &ch.config, &self.http).await
            }
        };
        let now = self.clock.now();
        let id = row.id.clone();
        let attempts = row.attempts + 1;
        match result {
            Ok(()) => {
                store::blocking(&self.store, move |s| s.delivered(&id)).await?;
                self.deliveries.add(&row.channel, RESULTS[0]);
                info!(channel = %row.channel, notification = %row.id, attempts, "notification delivered");
                Ok(Outcome::Delivered)
            }
            Err(SendError::Retryable(e)) => {
                let delay = self.backoff.delay(attempts, fastrand::f64());
                let next = now.plus(delay);
                let err = e.clone();
                store::blocking(&self.store, move |s| s.retry_later(&id, &err, next)).await?;
                self.deliveries.add(&row.channel, RESULTS[1]);
                warn!(channel = %row.channel, notification = %row.id, attempts, retry_in = ?delay, error = %e, "notification not delivered, will retry");
                Ok(Outcome::Retrying)
            }
            Err(SendError::Permanent(e)) => {
                let err = e.clone();
                store::blocking(&self.store, move |s| s.dead_letter(&id, &err, now)).await?;
                self.deliveries.add(&row.channel, RESULTS[2]);
                error!(channel = %row.channel, notification = %row.id, attempts, error = %e,
                    "NOTIFICATION DEAD-LETTERED: the receiver refused it for good and it will not be retried; fix the channel and see `keycanary status`");
                Ok(Outcome::Dead)
            }
        }
    }

    /// How long to sleep before the next pass: until the earliest due row, at most
    /// [`MAX_IDLE`].
    async fn idle(&self) -> Duration {
        let next = store::blocking(&self.store, |s| s.next_due()).await;
        let now = self.clock.now();
        match next {
            Ok(Some(at)) => at.since(now).min(MAX_IDLE),
            Ok(None) => MAX_IDLE,
            Err(e) => {
                error!(error = %e, "cannot read the outbox");
                MAX_IDLE
            }
        }
    }

    /// Drains the outbox until `shutdown`: a pass whenever rows are due or `wake` is
    /// notified (a round queued something). Sends in flight at shutdown get
    /// [`SHUTDOWN_GRACE`] to finish; the rest stay queued for the next start.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            let pass = self.deliver_due();
            tokio::pin!(pass);
            let grace = async {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            };
            let full = tokio::select! {
                result = &mut pass => match result {
                    Ok(p) => p.delivered + p.retrying + p.dead >= BATCH,
                    Err(e) => {
                        error!(error = %e, "cannot work the outbox; trying again shortly");
                        false
                    }
                },
                _ = grace => {
                    warn!("shutdown: sends still in flight were cancelled; they stay queued and go out on the next start");
                    return;
                }
            };
            if shutdown.is_cancelled() {
                return;
            }
            if full {
                continue;
            }
            let idle = self.idle().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
    }
}

/// What every rendered message says about this keycanary.
pub fn render_context(config: &Config) -> RenderContext {
    RenderContext {
        location: config.settings.location.clone(),
        status_page_url: config
            .alerting
            .status_page_url
            .as_ref()
            .map(|u| u.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertState;
    use crate::clock::ManualClock;
    use crate::detect::stateful::fixtures::config_with;
    use crate::model::Timestamp;
    use crate::notify::channel::fixtures;
    use crate::store::Store;
    use std::sync::Mutex;

    /// A receiver answering every POST with `status`.
    async fn receiver(status: u16) -> String {
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || async move {
                axum::http::StatusCode::from_u16(status).unwrap()
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn outcomes_go_to_the_outbox() {
        let (ok, busy, gone) = (
            receiver(204).await,
            receiver(503).await,
            receiver(404).await,
        );
        let config = config_with(|toml| {
            let mut t = format!("{toml}\n[alerting]\n");
            for (name, url) in [("ok", &ok), ("busy", &busy), ("gone", &gone)] {
                t.push_str(&format!(
                    "[[alerting.channel]]\nname = \"{name}\"\ntype = \"webhook\"\nurl = \"{url}\"\n"
                ));
            }
            t
        });
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let n = fixtures::firing();
        let rows: Vec<(String, _)> = ["ok", "busy", "gone", "removed"]
            .iter()
            .map(|c| (c.to_string(), n.clone()))
            .collect();
        let t0 = Timestamp(1_000_000);
        store
            .commit_round(t0, None, &AlertState::default(), None, &rows, Timestamp(0))
            .unwrap();
        let store: SharedStore = Arc::new(Mutex::new(store));
        let clock = ManualClock::new(t0);
        let backoff = Backoff::default();
        let deliveries = Arc::new(Deliveries::default());
        let notifier = Arc::new(
            Notifier::new(&config, store.clone(), Arc::new(clock.clone()), backoff)
                .with_deliveries(deliveries.clone()),
        );

        let pass = notifier.deliver_due().await.unwrap();
        assert_eq!(
            pass,
            Pass {
                delivered: 1,
                retrying: 1,
                dead: 2
            }
        );
        let left = store.lock().unwrap().outbox().unwrap();
        let by_channel = |c: &str| left.iter().find(|r| r.channel == c).cloned();
        assert!(by_channel("ok").is_none(), "delivered rows go");
        let busy_row = by_channel("busy").unwrap();
        assert_eq!((busy_row.attempts, busy_row.dead_at), (1, None));
        assert!(busy_row.last_error.as_deref().unwrap().contains("503"));
        let wait = busy_row.next_attempt_at.0 - t0.0;
        assert!(
            (2_500..=5_000).contains(&wait),
            "first retry in 2.5–5 s: {wait} ms"
        );
        let gone_row = by_channel("gone").unwrap();
        assert_eq!(gone_row.dead_at, Some(t0));
        assert!(gone_row.last_error.as_deref().unwrap().contains("404"));
        let removed = by_channel("removed").unwrap();
        assert!(
            removed
                .last_error
                .as_deref()
                .unwrap()
                .contains("not configured any more")
        );

        // Nothing is due until the backoff has passed; then the busy row is tried again.
        assert_eq!(notifier.deliver_due().await.unwrap(), Pass::default());
        clock.advance(Duration::from_millis(wait as u64));
        let pass = notifier.deliver_due().await.unwrap();
        assert_eq!(
            pass,
            Pass {
                delivered: 0,
                retrying: 1,
                dead: 0
            }
        );
        let busy_row = store
            .lock()
            .unwrap()
            .outbox()
            .unwrap()
            .into_iter()
            .find(|r| r.channel == "busy")
            .unwrap();
        assert_eq!(busy_row.attempts, 2);
        let counts = deliveries.counts();
        let count = |c: &str, r: &'static str| counts.get(&(c.to_owned(), r)).copied();
        assert_eq!(count("ok", "sent"), Some(1));
        assert_eq!(count("busy", "retried"), Some(2));
        assert_eq!(count("gone", "dead"), Some(1));
        assert_eq!(count("removed", "dead"), Some(1));
        assert_eq!(counts.len(), 4, "{counts:?}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_equal_jitter() {
        let b = Backoff {
            first: Duration::from_secs(4),
            max: Duration::from_secs(60),
        };
        let check = |failures: u32, jitter: f64, want_secs: f64| {
            assert_eq!(
                b.delay(failures, jitter).as_secs_f64(),
                want_secs,
                "{failures} {jitter}"
            );
        };
        check(1, 0.0, 2.0);
        check(1, 0.5, 3.0);
        check(2, 0.0, 4.0);
        check(3, 0.0, 8.0);
        check(4, 0.0, 16.0);
        check(4, 0.5, 24.0);
        check(5, 0.0, 30.0);
        check(6, 0.0, 30.0);
        check(40, 1.0, 60.0);
        check(u32::MAX, 0.0, 30.0);
        check(0, 0.0, 2.0);
    }
}
