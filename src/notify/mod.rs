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
//! When the store cannot record an outcome (a full disk, a locked or read-only database),
//! the outcome is kept in memory and written again on each pass until it sticks: a row the
//! receiver accepted is not sent again, a failed one keeps its backoff. Meanwhile the
//! failure is logged, counted ([`Deliveries::store_errors`], `keycanary_store_errors_total`)
//! and makes `/readyz` unready ([`Deliveries::unrecorded`]).
//!
//! Not here: deciding what to send (the alert state machine did that, and the round
//! committed it to the outbox together with the state), or talking SQL (the store does).

pub mod channel;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::model::Timestamp;
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
/// The shortest it sleeps while outcomes wait in memory for the store: rows it holds back
/// stay due in the store, and must not make it spin.
const MIN_IDLE_UNRECORDED: Duration = Duration::from_secs(1);
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

/// Send attempts since the process started, by channel and result ([`RESULTS`]), and how
/// the notifier's writes to the store went: the notifier adds, `/metrics` and `/readyz`
/// read (`keycanary_notifications_total`, `keycanary_store_errors_total`). Shared through
/// the daemon's snapshot, so it survives reloads.
#[derive(Debug, Default)]
pub struct Deliveries(Mutex<DeliveryCounts>);

#[derive(Debug, Default)]
struct DeliveryCounts {
    sends: BTreeMap<(String, &'static str), u64>,
    store_errors: u64,
    unrecorded: usize,
    last_store_error: Option<String>,
}

impl Deliveries {
    fn lock(&self) -> std::sync::MutexGuard<'_, DeliveryCounts> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, channel: &str, result: &'static str) {
        *self
            .lock()
            .sends
            .entry((channel.to_owned(), result))
            .or_default() += 1;
    }

    /// Every count so far.
    pub fn counts(&self) -> BTreeMap<(String, &'static str), u64> {
        self.lock().sends.clone()
    }

    /// Writes of send outcomes to the store that failed since the process started.
    pub fn store_errors(&self) -> u64 {
        self.lock().store_errors
    }

    /// How many send outcomes wait in memory because the store could not record them,
    /// with the latest store error; `(0, None)` once every outcome is recorded.
    pub fn unrecorded(&self) -> (usize, Option<String>) {
        let c = self.lock();
        (c.unrecorded, c.last_store_error.clone())
    }

    /// A write of an outcome failed (the notifier calls this).
    pub fn store_failed(&self, error: &StoreError) {
        let mut c = self.lock();
        c.store_errors += 1;
        c.last_store_error = Some(error.to_string());
    }

    /// How many outcomes wait in memory now (the notifier calls this).
    pub fn set_unrecorded(&self, n: usize) {
        let mut c = self.lock();
        c.unrecorded = n;
        if n == 0 {
            c.last_store_error = None;
        }
    }
}

/// An outcome the store has not recorded yet (see the module doc).
#[derive(Debug, Clone, PartialEq)]
enum Unrecorded {
    /// The receiver accepted the row: never send it again.
    Delivered,
    /// The send failed: not before `next`; `attempts` failures so far.
    Retry {
        error: String,
        next: Timestamp,
        attempts: u32,
    },
    /// The receiver refused the row for good.
    Dead { error: String, at: Timestamp },
}

impl Unrecorded {
    /// Whether a row with this outcome pending may be sent at `now`.
    fn sendable(&self, now: Timestamp) -> bool {
        matches!(self, Unrecorded::Retry { next, .. } if *next <= now)
    }

    fn write(&self, s: &mut store::Store, id: &str) -> Result<(), StoreError> {
        match self {
            Unrecorded::Delivered => s.delivered(id),
            Unrecorded::Retry { error, next, .. } => s.retry_later(id, error, *next),
            Unrecorded::Dead { error, at } => s.dead_letter(id, error, *at),
        }
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
    /// Outcomes waiting for the store, by row id.
    unrecorded: Mutex<BTreeMap<String, Unrecorded>>,
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
            unrecorded: Mutex::default(),
        }
    }

    /// Counts every outcome into `deliveries`.
    pub fn with_deliveries(mut self, deliveries: Arc<Deliveries>) -> Notifier {
        self.deliveries = deliveries;
        self
    }

    /// Sends every row due now (at most [`BATCH`], concurrently) and records each outcome.
    /// Outcomes the store could not record before are written first; rows whose outcome
    /// is still only in memory are not sent again (unless their backoff has passed).
    pub async fn deliver_due(self: &Arc<Self>) -> Result<Pass, StoreError> {
        self.record_pending().await;
        let now = self.clock.now();
        let held = self.held();
        let limit = BATCH + held.len();
        let rows = store::blocking(&self.store, move |s| s.due(now, limit)).await?;
        let mut set = JoinSet::new();
        for row in rows {
            let (sendable, attempts) = match held.get(&row.id) {
                None => (true, row.attempts),
                Some(u) => match u {
                    Unrecorded::Retry { attempts, .. } => {
                        (u.sendable(now), (*attempts).max(row.attempts))
                    }
                    _ => (false, row.attempts),
                },
            };
            if !sendable || set.len() >= BATCH {
                continue;
            }
            let this = self.clone();
            set.spawn(async move { this.deliver(OutboxRow { attempts, ..row }).await });
        }
        let mut pass = Pass::default();
        while let Some(joined) = set.join_next().await {
            match joined.expect("a delivery task panicked") {
                Outcome::Delivered => pass.delivered += 1,
                Outcome::Retrying => pass.retrying += 1,
                Outcome::Dead => pass.dead += 1,
            }
        }
        Ok(pass)
    }

    /// The outcomes waiting for the store.
    fn held(&self) -> BTreeMap<String, Unrecorded> {
        self.unrecorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes the outcomes waiting in memory, oldest id first, until one fails.
    async fn record_pending(&self) {
        let held = self.held();
        if held.is_empty() {
            return;
        }
        let written = store::blocking(&self.store, move |s| {
            let mut written = Vec::new();
            for (id, u) in held {
                if let Err(e) = u.write(s, &id) {
                    return (written, Some(e));
                }
                written.push(id);
            }
            (written, None)
        })
        .await;
        let (written, error) = written;
        let left = {
            let mut map = self.unrecorded.lock().unwrap_or_else(|e| e.into_inner());
            for id in &written {
                map.remove(id);
            }
            map.len()
        };
        if let Some(e) = &error {
            self.deliveries.store_failed(e);
            warn!(error = %e, waiting = left, "the state store still cannot record notification outcomes; they are kept in memory and not sent again meanwhile");
        } else {
            info!(
                recorded = written.len(),
                "notification outcomes kept in memory are recorded in the state store again"
            );
        }
        self.deliveries.set_unrecorded(left);
    }

    /// Records `outcome` of row `id`; when the store fails, keeps it in memory instead
    /// (see the module doc) and says so.
    async fn record(&self, id: &str, outcome: Unrecorded) {
        let (key, u) = (id.to_owned(), outcome.clone());
        let result = store::blocking(&self.store, move |s| u.write(s, &key)).await;
        if let Err(e) = result {
            self.deliveries.store_failed(&e);
            let left = {
                let mut map = self.unrecorded.lock().unwrap_or_else(|e| e.into_inner());
                map.insert(id.to_owned(), outcome);
                map.len()
            };
            self.deliveries.set_unrecorded(left);
            error!(notification = %id, error = %e, "cannot record a notification outcome in the state store; it is kept in memory (the row is not sent again meanwhile) and written again on the next pass");
        }
    }

    async fn deliver(&self, row: OutboxRow) -> Outcome {
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
        let attempts = row.attempts.saturating_add(1);
        match result {
            Ok(()) => {
                self.record(&row.id, Unrecorded::Delivered).await;
                self.deliveries.add(&row.channel, RESULTS[0]);
                info!(channel = %row.channel, notification = %row.id, attempts, "notification delivered");
                Outcome::Delivered
            }
            Err(SendError::Retryable(e)) => {
                let delay = self.backoff.delay(attempts, fastrand::f64());
                let next = now.plus(delay);
                let outcome = Unrecorded::Retry {
                    error: e.clone(),
                    next,
                    attempts,
                };
                self.record(&row.id, outcome).await;
                self.deliveries.add(&row.channel, RESULTS[1]);
                warn!(channel = %row.channel, notification = %row.id, attempts, retry_in = ?delay, error = %e, "notification not delivered, will retry");
                Outcome::Retrying
            }
            Err(SendError::Permanent(e)) => {
                let outcome = Unrecorded::Dead {
                    error: e.clone(),
                    at: now,
                };
                self.record(&row.id, outcome).await;
                self.deliveries.add(&row.channel, RESULTS[2]);
                error!(channel = %row.channel, notification = %row.id, attempts, error = %e,
                    "NOTIFICATION DEAD-LETTERED: the receiver refused it for good and it will not be retried; fix the channel and see `keycanary status`");
                Outcome::Dead
            }
        }
    }

    /// How long to sleep before the next pass: until the earliest due row, at most
    /// [`MAX_IDLE`].
    async fn idle(&self) -> Duration {
        let next = store::blocking(&self.store, |s| s.next_due()).await;
        let now = self.clock.now();
        let idle = match next {
            Ok(Some(at)) => at.since(now).min(MAX_IDLE),
            Ok(None) => MAX_IDLE,
            Err(e) => {
                error!(error = %e, "cannot read the outbox");
                MAX_IDLE
            }
        };
        let holding = !self
            .unrecorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if holding {
            idle.max(MIN_IDLE_UNRECORDED)
        } else {
            idle
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

    /// A receiver answering every POST with `status`, counting them.
    async fn counting_receiver(status: u16) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { axum::http::StatusCode::from_u16(status).unwrap() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, hits)
    }

    /// Regression: with a state store that cannot be written, a receiver answering 200 got
    /// the same notification thousands of times (the row could not be deleted, so it was
    /// due again at once). Now the outcome waits in memory, the row is not sent again,
    /// the failure is counted and reported, and it is recorded once the store recovers.
    #[tokio::test]
    async fn an_unwritable_store_never_makes_a_resend_storm() {
        use std::sync::atomic::Ordering;
        let (ok_url, ok_hits) = counting_receiver(200).await;
        let (busy_url, busy_hits) = counting_receiver(503).await;
        let config = config_with(|toml| {
            format!(
                "{toml}\n[alerting]\n[[alerting.channel]]\nname = \"ok\"\ntype = \"webhook\"\nurl = \"{ok_url}\"\n[[alerting.channel]]\nname = \"busy\"\ntype = \"webhook\"\nurl = \"{busy_url}\"\n"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let n = fixtures::firing();
        let rows = vec![("ok".to_owned(), n.clone()), ("busy".to_owned(), n)];
        let t0 = Timestamp(1_000_000);
        store
            .commit_round(t0, None, &AlertState::default(), None, &rows, Timestamp(0))
            .unwrap();
        store.refuse_writes(true).unwrap();
        let store: SharedStore = Arc::new(Mutex::new(store));
        let clock = ManualClock::new(t0);
        let deliveries = Arc::new(Deliveries::default());
        let notifier = Arc::new(
            Notifier::new(
                &config,
                store.clone(),
                Arc::new(clock.clone()),
                Backoff::default(),
            )
            .with_deliveries(deliveries.clone()),
        );

        // The run loop, as the daemon runs it, for a while on a store refusing writes.
        let shutdown = CancellationToken::new();
        let wake = Arc::new(Notify::new());
        let running = tokio::spawn(notifier.clone().run(wake.clone(), shutdown.clone()));
        for _ in 0..30 {
            wake.notify_one();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shutdown.cancel();
        running.await.unwrap();
        assert_eq!(
            ok_hits.load(Ordering::SeqCst),
            1,
            "accepted once, never sent again"
        );
        assert_eq!(
            busy_hits.load(Ordering::SeqCst),
            1,
            "the backoff holds in memory"
        );
        let (waiting, error) = deliveries.unrecorded();
        assert_eq!(waiting, 2);
        assert!(
            error.unwrap().contains("readonly"),
            "the store's error is kept"
        );
        assert!(deliveries.store_errors() >= 2);
        assert_eq!(store.lock().unwrap().outbox().unwrap().len(), 2);

        // Past the backoff the failing row is tried again (once); the delivered one is not.
        clock.advance(Duration::from_secs(6));
        let pass = notifier.deliver_due().await.unwrap();
        assert_eq!((pass.delivered, pass.retrying), (0, 1));
        assert_eq!(ok_hits.load(Ordering::SeqCst), 1);
        assert_eq!(busy_hits.load(Ordering::SeqCst), 2);

        // The store recovers: the outcomes are written, nothing is sent again.
        store.lock().unwrap().refuse_writes(false).unwrap();
        let pass = notifier.deliver_due().await.unwrap();
        assert_eq!(pass, Pass::default());
        assert_eq!(deliveries.unrecorded(), (0, None));
        let left = store.lock().unwrap().outbox().unwrap();
        assert_eq!(left.len(), 1, "the delivered row is deleted: {left:?}");
        assert_eq!(left[0].channel, "busy");
        assert!(
            left[0].next_attempt_at > crate::clock::Clock::now(&clock),
            "its backoff is stored"
        );
        assert_eq!(ok_hits.load(Ordering::SeqCst), 1);
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
