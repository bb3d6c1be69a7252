//! `keycanary run`: every tenant is probed by its own task at the configured interval
//! (jittered, at most `max_concurrency` at once, so a slow or dead IdP delays nobody
//! else), and each tenant's round is judged as it arrives — detection over the
//! remembered history, then the alert state machine — and committed to the store
//! together with its notifications in one transaction. The notifier (`crate::notify`, its
//! own task) delivers them. The latest state is published in a shared [`Snapshot`] for
//! the HTTP API (with the config it runs with, so the API follows a reload), and each
//! finding is logged when it opens and when it resolves. Each tenant round's fetch and
//! login durations are added to the snapshot's histograms (and, with OTLP, recorded
//! through [`Options::durations`]); its judgement is traced as `detect.assess` in the
//! round's trace, with the finding codes.
//!
//! A **full round** is complete when every tenant has been probed once since the last
//! one; `Snapshot::rounds`, `last_round_*` and the store's `last_round` count full
//! rounds, and the history is written to the store once per full round (the alert state
//! and the outbox with every tenant's round).
//!
//! Lifecycle: the state directory is locked for the life of the process and a restart
//! resumes from it (history, alert state, outbox). Shutdown cancels rounds in flight
//! (nothing of a cancelled round is recorded), judges and commits rounds that had
//! finished, and gives sends in flight a few seconds. With [`Options::config_path`],
//! SIGHUP re-reads the config: a file with problems is refused (each problem logged) and
//! the running config stays; a good one replaces the tenant tasks, the prober and the
//! notifier's channels.
//!
//! Not here: the judgement itself (`detect`, `alert` — pure), SQL (`store`), talking to
//! receivers (`alert::channel`, driven by `notify`).

use crate::alert::{self, AlertState, Notification, Silence};
use crate::clock::SharedClock;
use crate::config::{self, Config, Tenant};
use crate::detect::{self, history::History, stateful::STALE_INTERVALS};
use crate::model::{Code, Finding, Observation, Severity, Subject, Timestamp};
use crate::notify::{Backoff, Deliveries, Notifier};
use crate::probe::Prober;
use crate::store::{self, RoundRecord, SharedStore, StateLock, Store};
use crate::telemetry::metrics::Durations;
use crate::telemetry::otlp_metrics::DurationRecorder;
use crate::telemetry::traces::{self, RoundTrace};
use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// What the daemon knows now. Replaced as a whole after every tenant's round.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The latest observation of each tenant.
    pub observations: Vec<Observation>,
    /// Findings open after the latest round, sorted by severity.
    pub findings: Vec<Finding>,
    /// When each open finding (code + subject) was first seen in its current streak.
    pub since: BTreeMap<(Code, Subject), Timestamp>,
    /// The latest full round (every tenant probed once).
    pub last_round_started: Option<Timestamp>,
    pub last_round_finished: Option<Timestamp>,
    /// Full rounds finished since the process started.
    pub rounds: u64,
    /// Detection's history as of the latest round (the gates read it).
    pub history: Arc<History>,
    /// The state store as the latest commit left it (`/readyz`, `/metrics`).
    pub store: StoreHealth,
    /// Notification sends by channel and result; the notifier counts into it.
    pub deliveries: Arc<Deliveries>,
    /// Fetch and login durations of every tenant round since the process started.
    pub durations: Durations,
    /// The config the daemon runs with, published at start and replaced by each SIGHUP
    /// reload; `None` until the daemon starts. The API reads tenants from it.
    pub config: Option<Arc<Config>>,
}

/// The state store as the daemon's latest commit found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// When the latest successful commit happened.
    pub last_commit: Option<Timestamp>,
    /// Why the latest commit failed; `None` once one succeeds again.
    pub commit_error: Option<String>,
    /// Outbox rows waiting to be sent, and dead letters, read after the latest commit.
    pub outbox_depth: Option<u64>,
    pub dead_letters: Option<u64>,
}

pub type SharedSnapshot = Arc<RwLock<Snapshot>>;

pub fn new_snapshot() -> SharedSnapshot {
    Arc::new(RwLock::new(Snapshot::default()))
}

/// Knobs of the daemon that are not in probes.toml.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// When failed sends are retried.
    pub backoff: Backoff,
    /// Re-read the config from this file on SIGHUP (the binary sets it).
    pub config_path: Option<PathBuf>,
    /// Also record each tenant round's durations here (OTLP metrics, when configured).
    pub durations: Option<DurationRecorder>,
}

/// A tenant round's start is delayed by up to this fraction of the interval, so tenants
/// drift apart instead of hitting shared CDNs and receivers in lockstep.
const JITTER: f64 = 0.1;
/// How often the daemon logs its own health (outbox backlog, dead letters).
const SELF_CHECK_EVERY: Duration = Duration::from_secs(300);
/// A queued notification older than this is a backlog worth a warning.
const BACKLOG_AGE: Duration = Duration::from_secs(300);

/// The daemon, publishing into `snapshot` so other tasks (the API) can read it.
pub async fn run_with(
    config: Config,
    clock: SharedClock,
    snapshot: SharedSnapshot,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with_options(config, clock, snapshot, shutdown, Options::default()).await
}

/// What the daemon carries from one round to the next; the store persists it.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub history: History,
    pub alerts: AlertState,
    /// Full rounds committed since the state directory was created.
    pub rounds: u64,
}

/// One tenant's finished probe round, sent by its task to the judge.
#[derive(Debug)]
struct TenantRound {
    observation: Observation,
    started: Timestamp,
    /// The round's trace, which its judgement joins.
    trace: RoundTrace,
}

/// The judge's view of each tenant (not persisted).
#[derive(Debug, Default)]
struct Live {
    /// Latest observation and findings per tenant.
    latest: BTreeMap<String, (Observation, Vec<Finding>)>,
    /// When each tenant's latest round finished (or the daemon started).
    last_seen: BTreeMap<String, Timestamp>,
    /// Tenants not yet probed in the current full round, and when it began.
    pending: BTreeSet<String>,
    round_started: Option<Timestamp>,
    /// The latest full round.
    last_round: Option<(Timestamp, Timestamp)>,
    /// Full rounds since the process started.
    rounds: u64,
    /// What the latest commit found.
    store: StoreHealth,
}

impl Live {
    fn new(config: &Config, now: Timestamp) -> Live {
        let mut live = Live::default();
        live.reset(config, now);
        live
    }

    /// After a (re)load: forget removed tenants, start a new full round.
    fn reset(&mut self, config: &Config, now: Timestamp) {
        let names: BTreeSet<String> = config.tenants.iter().map(|t| t.name.clone()).collect();
        self.latest.retain(|t, _| names.contains(t));
        self.last_seen.retain(|t, _| names.contains(t));
        for t in &names {
            self.last_seen.entry(t.clone()).or_insert(now);
        }
        self.pending = names;
        self.round_started = None;
    }

    /// Records `tenant`'s round; returns the full round it completes, if it does.
    fn finished(
        &mut self,
        tenant: &str,
        started: Timestamp,
        now: Timestamp,
    ) -> Option<(Timestamp, Timestamp)> {
        self.last_seen.insert(tenant.to_owned(), now);
        self.round_started.get_or_insert(started);
        self.pending.remove(tenant);
        if !self.pending.is_empty() {
            return None;
        }
        let round = (self.round_started.take().unwrap_or(started), now);
        self.last_round = Some(round);
        self.rounds += 1;
        self.pending = self.last_seen.keys().cloned().collect();
        Some(round)
    }
}

/// The running parts that a reload replaces.
struct Workers {
    config: Arc<Config>,
    tenants: CancellationToken,
    tenant_tasks: Vec<JoinHandle<()>>,
    notifier_stop: CancellationToken,
    notifier: Option<JoinHandle<()>>,
}

impl Workers {
    #[allow(clippy::too_many_arguments)]
    fn start(
        config: Arc<Config>,
        prober: Arc<Prober>,
        store: &SharedStore,
        clock: &SharedClock,
        backoff: Backoff,
        wake: &Arc<Notify>,
        rounds: &mpsc::Sender<TenantRound>,
        deliveries: &Arc<Deliveries>,
    ) -> Workers {
        let notifier_stop = CancellationToken::new();
        let notifier = Arc::new(
            Notifier::new(&config, store.clone(), clock.clone(), backoff)
                .with_deliveries(deliveries.clone()),
        );
        let notifier = tokio::spawn(notifier.run(wake.clone(), notifier_stop.clone()));
        let tenants = CancellationToken::new();
        let permits = Arc::new(Semaphore::new(config.settings.max_concurrency));
        let tenant_tasks = config
            .tenants
            .iter()
            .map(|t| {
                tokio::spawn(tenant_loop(
                    t.clone(),
                    config.settings.interval,
                    prober.clone(),
                    permits.clone(),
                    clock.clone(),
                    rounds.clone(),
                    tenants.clone(),
                ))
            })
            .collect();
        Workers {
            config,
            tenants,
            tenant_tasks,
            notifier_stop,
            notifier: Some(notifier),
        }
    }

    /// Cancels the tenant tasks (rounds in flight are dropped, nothing of them recorded)
    /// and waits for them.
    async fn stop_tenants(&mut self) {
        self.tenants.cancel();
        for t in self.tenant_tasks.drain(..) {
            if t.await.is_err() {
                error!("a tenant task panicked");
            }
        }
    }

    /// Stops the notifier (sends in flight get their grace) and waits for it.
    async fn stop_notifier(&mut self) {
        self.notifier_stop.cancel();
        if let Some(task) = self.notifier.take()
            && task.await.is_err()
        {
            error!("the notifier task panicked");
        }
    }
}

/// One tenant, probed every `interval` (plus jitter) while a permit is free, until `stop`.
async fn tenant_loop(
    tenant: Tenant,
    interval: Duration,
    prober: Arc<Prober>,
    permits: Arc<Semaphore>,
    clock: SharedClock,
    rounds: mpsc::Sender<TenantRound>,
    stop: CancellationToken,
) {
    loop {
        let begin = tokio::time::Instant::now();
        let round = async {
            let _permit = permits
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let started = clock.now();
            let (observation, trace) = prober.tenant_traced(&tenant).await;
            TenantRound {
                observation,
                started,
                trace,
            }
        };
        let round = tokio::select! {
            r = round => r,
            _ = stop.cancelled() => return,
        };
        if rounds.send(round).await.is_err() {
            return;
        }
        let next = begin + interval + interval.mul_f64(JITTER * fastrand::f64());
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Resolves on SIGHUP; never, without a config path (or off Unix).
struct Hangups(Option<tokio::signal::unix::Signal>);

impl Hangups {
    fn new(enabled: bool) -> anyhow::Result<Hangups> {
        if !enabled {
            return Ok(Hangups(None));
        }
        let s = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        Ok(Hangups(Some(s)))
    }

    async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// [`run_with`] with [`Options`].
pub async fn run_with_options(
    config: Config,
    clock: SharedClock,
    snapshot: SharedSnapshot,
    shutdown: impl Future<Output = ()>,
    options: Options,
) -> anyhow::Result<()> {
    let dir = config.settings.state_dir.clone();
    let lock = StateLock::acquire(&dir)?;
    let mut store = Store::open(&dir)?;
    let persisted = store
        .load()
        .context("cannot resume from the state directory")?;
    let requeued = store.retry_all_now(clock.now())?;
    let store: SharedStore = Arc::new(Mutex::new(store));
    let mut memory = Memory {
        history: persisted.history,
        alerts: persisted.alert_state,
        rounds: persisted.last_round.map_or(0, |r| r.number),
    };
    let prober = Arc::new(Prober::new(&config, clock.clone())?);
    info!(
        state_dir = %dir.display(),
        rounds = memory.rounds,
        open_incidents = memory.alerts.incidents.len(),
        requeued,
        "state loaded"
    );
    let mut hangups = Hangups::new(options.config_path.is_some())?;

    let wake = Arc::new(Notify::new());
    let deliveries = snapshot
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .deliveries
        .clone();
    let (round_tx, mut round_rx) = mpsc::channel::<TenantRound>(64);
    let config = Arc::new(config);
    publish_config(&snapshot, &config);
    let record_durations = |r: &TenantRound| {
        if let Some(recorder) = &options.durations {
            recorder.record(&r.observation);
        }
    };
    let mut live = Live::new(&config, clock.now());
    let mut workers = Workers::start(
        config.clone(),
        prober,
        &store,
        &clock,
        options.backoff,
        &wake,
        &round_tx,
        &deliveries,
    );
    let mut tick = tokio::time::interval(config.settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; nothing can be stale yet
    let mut self_check = tokio::time::interval(SELF_CHECK_EVERY);
    self_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    self_check.tick().await;
    tokio::pin!(shutdown);
    info!(tenants = config.tenants.len(), interval = ?config.settings.interval,
        max_concurrency = config.settings.max_concurrency, "keycanary running");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(r) = round_rx.recv() => {
                record_durations(&r);
                memory = on_round(&workers.config, &store, &snapshot, &mut live, memory, r, clock.now(), &wake).await;
            }
            _ = tick.tick() => {
                memory = on_tick(&workers.config, &store, &snapshot, &mut live, memory, clock.now(), &wake).await;
            }
            _ = self_check.tick() => log_health(&store, &live, clock.now()).await,
            _ = hangups.recv() => {
                let path = options.config_path.as_deref().expect("SIGHUP only with a config path");
                if let Some((new, prober)) = reload(path, &workers.config, &clock) {
                    workers.stop_tenants().await;
                    while round_rx.try_recv().is_ok() {} // rounds judged by the old config
                    // The old notifier stops before the new one starts: never two senders.
                    workers.stop_notifier().await;
                    workers = Workers::start(
                        Arc::new(new), prober, &store, &clock, options.backoff, &wake, &round_tx,
                        &deliveries,
                    );
                    live.reset(&workers.config, clock.now());
                    publish_config(&snapshot, &workers.config);
                    tick = tokio::time::interval(workers.config.settings.interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tick.tick().await;
                    info!(tenants = workers.config.tenants.len(), "config reloaded");
                }
            }
        }
    }
    info!("shutting down: cancelling rounds in flight");
    workers.stop_tenants().await;
    while let Ok(r) = round_rx.try_recv() {
        record_durations(&r);
        memory = on_round(
            &workers.config,
            &store,
            &snapshot,
            &mut live,
            memory,
            r,
            clock.now(),
            &wake,
        )
        .await;
    }
    // Rounds since the last full one have recorded history that is not stored yet.
    let history_saved = save_history(&store, &memory, clock.now()).await;
    workers.stop_notifier().await;
    drop(lock);
    info!(history_saved, "stopped");
    Ok(())
}

/// Loads the config at `path` for a reload. `None` (and every problem logged) when it is
/// refused: the running config stays.
fn reload(
    path: &std::path::Path,
    running: &Config,
    clock: &SharedClock,
) -> Option<(Config, Arc<Prober>)> {
    info!(path = %path.display(), "SIGHUP: reloading the config");
    let new = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!("config reload refused, the running config stays: {e}");
            return None;
        }
    };
    if new.settings.state_dir != running.settings.state_dir {
        warn!(running = %running.settings.state_dir.display(), "state_dir changed: it takes effect at the next start");
    }
    if new.api.listen != running.api.listen || new.lab.is_some() != running.lab.is_some() {
        warn!("[api] and [lab] changes take effect at the next start");
    }
    match Prober::new(&new, clock.clone()) {
        Ok(p) => Some((new, Arc::new(p))),
        Err(e) => {
            error!("config reload refused, the running config stays: {e:#}");
            None
        }
    }
}

/// Judges and commits one tenant's round; publishes the snapshot.
#[allow(clippy::too_many_arguments)]
async fn on_round(
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
    live.latest
        .insert(tenant.clone(), (round.observation, findings));
    let history = Arc::new(memory.history.clone());
    publish(
        config,
        snapshot,
        live,
        history,
        round.started,
        now,
        &tenant,
        true,
        queued,
    );
    memory
}

/// Every interval: tenants whose task has not delivered a round for
/// [`STALE_INTERVALS`] intervals are judged without an observation (their last findings
/// carried, plus `probe_stale`), and tenants no longer configured are judged with no
/// findings, so their incidents resolve.
async fn on_tick(
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
            .map(|(_, f)| {
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
        if let Some((_, f)) = live.latest.get_mut(tenant) {
            *f = findings;
        }
        let history = Arc::new(memory.history.clone());
        publish(
            config, snapshot, live, history, now, now, tenant, false, queued,
        );
    }
    memory
}

/// Self-monitoring in the logs: an error while dead letters exist, a warning while the
/// outbox has a backlog, else one info line.
async fn log_health(store: &SharedStore, live: &Live, now: Timestamp) {
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

async fn api_silences(store: &SharedStore, now: Timestamp) -> Vec<Silence> {
    store::blocking(store, move |s| s.silences(now))
        .await
        .unwrap_or_else(|e| {
            error!(error = %e, "cannot read silences from the state directory; using those of probes.toml only");
            Vec::new()
        })
}

/// One tenant's judgement.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The tenant's open findings, sorted by (severity, code, subject).
    pub findings: Vec<Finding>,
    /// The whole alert state after this judgement (other tenants' parts unchanged).
    pub alerts: AlertState,
    pub notifications: Vec<Notification>,
    /// `(channel, notification)` for every route that matches each notification.
    pub outbox: Vec<(String, Notification)>,
}

/// Judges one tenant at `now`, purely. With an observation: records it into `history`
/// (pruned to the configured retention) and runs detection. Without one (the tenant is
/// stale, or no longer configured): `carried` findings plus whatever detection says of
/// an unobserved tenant (`probe_stale`). Then steps the tenant's part of the alert state
/// (episodes and incidents are per tenant, so the parts are independent) and routes its
/// notifications. `silences` are the API's; the config's are added here.
#[allow(clippy::too_many_arguments)]
pub fn judge(
    config: &Config,
    history: &mut History,
    alerts: &AlertState,
    silences: &[Silence],
    tenant: &str,
    observation: Option<&Observation>,
    carried: &[Finding],
    now: Timestamp,
) -> Verdict {
    let mut findings: Vec<Finding> =
        detect::assess_tenant(config, history, tenant, observation, now)
            .into_iter()
            .filter(|f| observation.is_some() || f.code == Code::ProbeStale)
            .collect();
    if observation.is_none() {
        findings.extend(carried.iter().cloned());
        findings.sort_by(|a, b| a.rank().cmp(&b.rank()));
    }
    history.prune(now, config.settings.retention);
    let all_silences: Vec<Silence> = config
        .alerting
        .silences
        .iter()
        .chain(silences)
        .cloned()
        .collect();
    let (notifications, part) = alert::step(
        &part_of(alerts, tenant),
        &findings,
        &config.alerting.policy,
        &all_silences,
        now,
    );
    let outbox = notifications
        .iter()
        .flat_map(|n| {
            alert::route(n, &config.alerting.routes)
                .into_iter()
                .map(move |channel| (channel, n.clone()))
        })
        .collect();
    Verdict {
        findings,
        alerts: with_part(alerts, tenant, part),
        notifications,
        outbox,
    }
}

/// The episodes and incidents of `tenant`.
fn part_of(state: &AlertState, tenant: &str) -> AlertState {
    AlertState {
        episodes: state
            .episodes
            .iter()
            .filter(|e| e.finding.subject.tenant == tenant)
            .cloned()
            .collect(),
        incidents: state
            .incidents
            .iter()
            .filter(|i| i.group.tenant == tenant)
            .cloned()
            .collect(),
    }
}

/// `state` with `tenant`'s part replaced by `part`, lists kept sorted by their keys.
fn with_part(state: &AlertState, tenant: &str, part: AlertState) -> AlertState {
    let mut episodes: Vec<_> = state
        .episodes
        .iter()
        .filter(|e| e.finding.subject.tenant != tenant)
        .cloned()
        .chain(part.episodes)
        .collect();
    episodes.sort_by(|a, b| {
        (a.finding.code, &a.finding.subject).cmp(&(b.finding.code, &b.finding.subject))
    });
    let mut incidents: Vec<_> = state
        .incidents
        .iter()
        .filter(|i| i.group.tenant != tenant)
        .cloned()
        .chain(part.incidents)
        .collect();
    incidents.sort_by(|a, b| a.group.cmp(&b.group));
    AlertState {
        episodes,
        incidents,
    }
}

/// Commits a verdict (alert state, outbox rows; with a full round also its record and
/// the history) in one transaction. Returns the memory to carry on with and how many rows
/// were queued. When the commit fails the alert state stays as it was, so the next round
/// decides again and no notification is lost (it is made again, a round later). `health`
/// records the outcome and, after a successful commit, the outbox counts.
async fn commit(
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
                if channels.is_empty() {
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
async fn save_history(store: &SharedStore, memory: &Memory, now: Timestamp) -> bool {
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

/// Publishes the config the daemon runs with (at start and after a reload), so the API
/// reads the current tenants without waiting for a round.
fn publish_config(snapshot: &SharedSnapshot, config: &Arc<Config>) {
    snapshot.write().unwrap_or_else(|e| e.into_inner()).config = Some(config.clone());
}

/// Replaces the shared snapshot after `tenant`'s judgement and logs what opened and
/// resolved. With `observed`, the judgement was of a new round (its latest observation in
/// `live`), whose durations are added to the histograms.
#[allow(clippy::too_many_arguments)]
fn publish(
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

/// The snapshot after a round: pure.
pub fn advance(
    previous: &Snapshot,
    observations: Vec<Observation>,
    findings: Vec<Finding>,
    started: Timestamp,
    finished: Timestamp,
) -> Snapshot {
    let since = findings
        .iter()
        .map(|f| {
            let key = (f.code, f.subject.clone());
            let at = previous.since.get(&key).copied().unwrap_or(started);
            (key, at)
        })
        .collect();
    Snapshot {
        observations,
        findings,
        since,
        last_round_started: Some(started),
        last_round_finished: Some(finished),
        rounds: previous.rounds + 1,
        history: previous.history.clone(),
        store: previous.store.clone(),
        deliveries: previous.deliveries.clone(),
        durations: previous.durations.clone(),
        config: previous.config.clone(),
    }
}

fn log_changes(previous: &Snapshot, next: &Snapshot) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Status;
    use crate::detect::stateful::fixtures as fx;

    /// The detect fixture (tenant acme, 30 s rounds) with a webhook for everything and an
    /// email for failed logins only, simulating one client profile that refetches at
    /// once (so clients recover as soon as the edge does).
    fn alerting_config() -> Config {
        fx::config_with(|toml| {
            format!(
                r#"client_profiles = ["eager"]
{toml}
[[profile]]
name = "eager"
ttl = "1s"
refetch_on_unknown_kid = true
cooldown = "0s"

[alerting]
[[alerting.channel]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[alerting.channel]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
tls = "none"
from = "k@example.com"
to = ["sre@example.com"]
[[alerting.route]]
channels = ["hook"]
[[alerting.route]]
channels = ["mail"]
codes = ["login_failed"]
"#
            )
        })
    }

    /// Round `i`; with `stale`, io's cdn edge serves an old key set (`k0`).
    fn round(i: i64, stale: bool) -> Observation {
        let mut o = fx::round(i);
        if stale {
            fx::keys(&mut o, 1, 1, vec![fx::key("k0")]);
        }
        o
    }

    #[test]
    fn judge_pages_once_per_incident_routes_it_and_resolves() {
        let config = alerting_config();
        let mut history = History::default();
        let mut alerts = AlertState::default();
        let mut sent: Vec<(i64, Status, Vec<String>)> = Vec::new();
        for (i, stale) in [
            (0, false),
            (1, true),
            (2, true),
            (3, true),
            (4, false),
            (5, false),
            (6, false),
        ] {
            let v = judge(
                &config,
                &mut history,
                &alerts,
                &[],
                "acme",
                Some(&round(i, stale)),
                &[],
                fx::at(i),
            );
            assert_eq!(v.findings.is_empty(), !stale, "round {i}: {:?}", v.findings);
            for n in &v.notifications {
                let channels = v
                    .outbox
                    .iter()
                    .filter(|(_, o)| o.id == n.id)
                    .map(|(c, _)| c.clone())
                    .collect();
                sent.push((i, n.status, channels));
            }
            alerts = v.alerts;
        }
        assert_eq!(
            sent,
            [
                (2, Status::Firing, vec!["hook".to_owned()]),
                (5, Status::Resolved, vec!["hook".to_owned()]),
            ],
            "fires on the 2nd bad round, resolves after 2 good ones; no login failed, so no email"
        );
        assert!(alerts.incidents.is_empty() && alerts.episodes.is_empty());
        assert!(history.tenant("acme").is_some(), "the rounds were recorded");
    }

    /// acme's state after `bad` bad rounds from step 1 on (firing from the 2nd).
    fn firing_acme(config: &Config, history: &mut History, bad: i64) -> (AlertState, Vec<Finding>) {
        let mut alerts = AlertState::default();
        let mut findings = Vec::new();
        for i in 0..=bad {
            let v = judge(
                config,
                history,
                &alerts,
                &[],
                "acme",
                Some(&round(i, i > 0)),
                &[],
                fx::at(i),
            );
            alerts = v.alerts;
            findings = v.findings;
        }
        (alerts, findings)
    }

    #[test]
    fn a_stale_tenant_keeps_its_incident_and_a_removed_one_resolves() {
        let config = alerting_config();
        let mut history = History::default();
        let (alerts, findings) = firing_acme(&config, &mut history, 3);
        assert_eq!(alerts.incidents.len(), 1);

        // No round arrives: its last findings are carried, so nothing resolves (and
        // probe_stale joins once the views have had no good fetch for 3 intervals).
        let mut stale = alerts.clone();
        for i in 4..8 {
            let v = judge(
                &config,
                &mut history,
                &stale,
                &[],
                "acme",
                None,
                &findings,
                fx::at(i),
            );
            assert!(
                v.notifications.iter().all(|n| n.status != Status::Resolved),
                "tick {i}: {:?}",
                v.notifications
            );
            stale = v.alerts;
        }
        assert_eq!(stale.incidents.len(), 1);

        // The same incident under a tenant no longer configured: it resolves.
        let mut gone = alerts.clone();
        for e in &mut gone.episodes {
            e.finding.subject.tenant = "gone".into();
        }
        for i in &mut gone.incidents {
            i.group.tenant = "gone".into();
            for m in &mut i.members {
                m.finding.subject.tenant = "gone".into();
            }
        }
        let mut statuses = Vec::new();
        for i in 4..7 {
            let v = judge(
                &config,
                &mut history,
                &gone,
                &[],
                "gone",
                None,
                &[],
                fx::at(i),
            );
            statuses.extend(v.notifications.iter().map(|n| (i, n.status)));
            gone = v.alerts;
        }
        assert_eq!(statuses, [(5, Status::Resolved)]);
        assert!(gone.incidents.is_empty() && gone.episodes.is_empty());
    }

    #[test]
    fn judging_one_tenant_leaves_the_others_alone() {
        let config = alerting_config();
        let mut history = History::default();
        let (alerts, _) = firing_acme(&config, &mut history, 2);
        let mut other = alerts.clone();
        for e in &mut other.episodes {
            e.finding.subject.tenant = "zeta".into();
        }
        for i in &mut other.incidents {
            i.group.tenant = "zeta".into();
        }
        let both = with_part(&alerts, "zeta", other.clone());
        assert_eq!(part_of(&both, "zeta"), other);
        assert_eq!(part_of(&both, "acme"), alerts);
        // A clean acme round moves acme's episodes only.
        let v = judge(
            &config,
            &mut history,
            &both,
            &[],
            "acme",
            Some(&round(3, false)),
            &[],
            fx::at(3),
        );
        assert_eq!(part_of(&v.alerts, "zeta"), other);
        assert_ne!(part_of(&v.alerts, "acme"), alerts);
    }

    #[test]
    fn a_full_round_is_every_tenant_once() {
        let config = fx::two_tenants();
        let mut live = Live::new(&config, Timestamp(0));
        assert_eq!(live.finished("acme", Timestamp(10), Timestamp(20)), None);
        assert_eq!(
            live.finished("acme", Timestamp(30), Timestamp(40)),
            None,
            "acme again"
        );
        assert_eq!(
            live.finished("globex", Timestamp(15), Timestamp(50)),
            Some((Timestamp(10), Timestamp(50)))
        );
        assert_eq!(live.rounds, 1);
        assert_eq!(live.finished("globex", Timestamp(60), Timestamp(70)), None);
        assert_eq!(
            live.finished("acme", Timestamp(65), Timestamp(80)),
            Some((Timestamp(60), Timestamp(80)))
        );
        assert_eq!(live.rounds, 2);
    }

    #[test]
    fn judge_applies_silences_from_the_api() {
        let config = alerting_config();
        let mut history = History::default();
        let mut alerts = AlertState::default();
        let silence = Silence {
            id: "api-1".into(),
            tenant: Some("acme".into()),
            code: None,
            severity: None,
            subject: None,
            starts: fx::at(0),
            ends: fx::at(100),
            created_by: "test".into(),
            comment: String::new(),
        };
        for i in 0..4 {
            let v = judge(
                &config,
                &mut history,
                &alerts,
                std::slice::from_ref(&silence),
                "acme",
                Some(&round(i, i > 0)),
                &[],
                fx::at(i),
            );
            assert!(
                v.notifications.is_empty(),
                "round {i}: {:?}",
                v.notifications
            );
            alerts = v.alerts;
        }
    }

    #[test]
    fn since_survives_while_a_finding_stays_open() {
        let f = Finding::new(Code::KidMissing, Subject::domain("acme", "io"), "x");
        let s1 = advance(
            &Snapshot::default(),
            vec![],
            vec![f.clone()],
            Timestamp(1_000),
            Timestamp(1_500),
        );
        let s2 = advance(
            &s1,
            vec![],
            vec![f.clone()],
            Timestamp(31_000),
            Timestamp(31_500),
        );
        assert_eq!(s2.since[&(f.code, f.subject.clone())], Timestamp(1_000));
        assert_eq!(s2.rounds, 2);
        let s3 = advance(&s2, vec![], vec![], Timestamp(61_000), Timestamp(61_500));
        assert!(s3.since.is_empty());
        let s4 = advance(
            &s3,
            vec![],
            vec![f.clone()],
            Timestamp(91_000),
            Timestamp(91_500),
        );
        assert_eq!(s4.since[&(f.code, f.subject)], Timestamp(91_000));
    }
}
