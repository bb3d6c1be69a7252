//! `keycanary run`: every tenant is probed by its own task at the configured interval
//! (jittered, at most `max_concurrency` at once, so a slow or dead IdP delays nobody
//! else), and each tenant's round is judged as it arrives — detection over the
//! remembered history, then the alert state machine — and committed to the store
//! together with its notifications in one transaction. The notifier (`crate::notify`, its
//! own task) delivers them. The latest state is published in the shared [`crate::snapshot::Snapshot`] for
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
//! notifier's channels. With `[inventory]`, the inventory's tenants join the file's at
//! start, and whenever its entries change the workers are replaced the same way
//! (`inventory`); a tenant that left is retired on the next tick, its incidents resolving
//! with the reason.
//!
//! Not here: the judgement itself (`crate::judge`: `detect`, `alert` — pure), SQL (`store`), talking to
//! receivers (`notify`).
//!
//! The rooms: `scheduler` (tenant tasks, the workers a reload replaces), `live` (what is
//! carried between rounds), `rounds` (a round or a tick: judge, commit, publish), `commit`
//! (the store side), `publish` (the snapshot side), `reload` (SIGHUP), `inventory` (the
//! inventory's poller and last good lists), `health` (the daemon's own health in its
//! log). This file is the run loop.

mod commit;
mod health;
mod inventory;
mod live;
mod publish;
mod reload;
mod rounds;
mod scheduler;

pub use live::Memory;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::notify::Backoff;
use crate::probe::Prober;
use crate::snapshot::SharedSnapshot;
use crate::store::{SharedStore, StateLock, Store};
use crate::telemetry::otlp_metrics::DurationRecorder;
use anyhow::Context;
use health::{SELF_CHECK_EVERY, log_health};
use inventory::{Fleet, Poller, why_gone};
use live::{Live, Progress, TenantRound};
use publish::publish_config;
use reload::{Hangups, reload};
use rounds::{on_round, on_tick};
use scheduler::{Plumbing, Workers};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};
use tracing::{error, info};

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

/// The daemon, publishing into `snapshot` so other tasks (the API) can read it.
pub async fn run_with(
    config: Config,
    clock: SharedClock,
    snapshot: SharedSnapshot,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with_options(config, clock, snapshot, shutdown, Options::default()).await
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
        alerts: persisted.alert_state.by_tenant(),
        rounds: persisted.last_round.map_or(0, |r| r.number),
    };
    // The inventory's tenants join the file's before anything starts.
    let mut fleet = Fleet::new(config);
    if let Some(loads) = inventory::read_now(&fleet.base, &clock).await {
        fleet.absorb(loads, clock.now());
    }
    let config = fleet
        .expansion(true)
        .expect("a forced expansion gives a config")
        .config;
    let (inventory_tx, mut inventory_rx) = mpsc::channel::<crate::probe::inventory::Loads>(4);
    let mut poller = Poller::start(&fleet.base, clock.clone(), inventory_tx.clone());
    let publish_inventory = |fleet: &Fleet| {
        snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .inventory = fleet.status();
    };
    publish_inventory(&fleet);
    let prober = Arc::new(Prober::new(&config, clock.clone())?);
    info!(
        state_dir = %dir.display(),
        rounds = memory.rounds,
        open_incidents = memory.alerts.values().map(|a| a.incidents.len()).sum::<usize>(),
        requeued,
        "state loaded"
    );
    let mut hangups = Hangups::new(options.config_path.is_some())?;

    let deliveries = snapshot
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .deliveries
        .clone();
    let (round_tx, mut round_rx) = mpsc::channel::<TenantRound>(64);
    let plumbing = Plumbing {
        store: store.clone(),
        clock: clock.clone(),
        backoff: options.backoff,
        wake: Arc::new(Notify::new()),
        rounds: round_tx,
        deliveries,
        progress: Progress::default(),
    };
    let config = Arc::new(config);
    publish_config(&snapshot, &config, &memory.history, clock.now());
    let record_durations = |r: &TenantRound, config: &Config| {
        if let Some(recorder) = &options.durations {
            recorder.record(&r.observation, config.telemetry.per_view_histograms);
        }
    };
    let mut live = Live::new(&config, clock.now());
    let mut workers = Workers::start(config.clone(), prober, &plumbing);
    let mut tick = tokio::time::interval(config.settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; nothing can be stale yet
    let mut self_check = tokio::time::interval(SELF_CHECK_EVERY);
    self_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    self_check.tick().await;
    tokio::pin!(shutdown);
    info!(tenants = config.tenants.len(), interval = ?config.settings.interval,
        max_concurrency = config.settings.max_concurrency, "keycanary running");
    if let Some(shard) = config.settings.shard {
        info!(shard = %shard, tenants = config.tenants.len(), tenants_in_file = config.tenants_in_file,
            "sharded: watching this shard's tenants only");
    }
    if config.alerting.channels.is_empty() {
        info!(
            "no [alerting] channels: findings are logged and served by the API, not sent anywhere"
        );
    }
    loop {
        // A SIGHUP or a changed inventory gives a new config; both replace the workers
        // the same way, below.
        let change = tokio::select! {
            _ = &mut shutdown => break,
            Some(r) = round_rx.recv() => {
                record_durations(&r, &workers.config);
                memory = on_round(&workers.config, &plumbing, &snapshot, &mut live, memory, r, clock.now()).await;
                None
            }
            _ = tick.tick() => {
                memory = on_tick(&workers.config, &plumbing, &snapshot, &mut live, memory, clock.now()).await;
                None
            }
            _ = self_check.tick() => {
                log_health(&store, &live, clock.now()).await;
                None
            }
            _ = hangups.recv() => {
                let path = options.config_path.as_deref().expect("SIGHUP only with a config path");
                match reload(path, &fleet.base) {
                    Some(base) => {
                        fleet.base = base;
                        if let Some(p) = poller.take() {
                            p.stop().await;
                        }
                        if let Some(loads) = inventory::read_now(&fleet.base, &clock).await {
                            fleet.absorb(loads, clock.now());
                        }
                        poller = Poller::start(&fleet.base, clock.clone(), inventory_tx.clone());
                        let x = fleet.expansion(true);
                        publish_inventory(&fleet);
                        x.map(|x| (x, "config reloaded"))
                    }
                    None => None,
                }
            }
            Some(loads) = inventory_rx.recv() => {
                fleet.absorb(loads, clock.now());
                let x = fleet.expansion(false);
                publish_inventory(&fleet);
                x.map(|x| (x, "inventory changed: tenants replaced"))
            }
        };
        let Some((expansion, applied)) = change else {
            continue;
        };
        let prober = match Prober::new(&expansion.config, clock.clone()) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                error!("new config refused, the running config stays: {e:#}");
                continue;
            }
        };
        live.gone.extend(why_gone(&workers.config, &expansion));
        workers.stop_tenants().await;
        // The old notifier stops before the new one starts: never two senders.
        workers.stop_notifier().await;
        workers = Workers::start(Arc::new(expansion.config), prober, &plumbing);
        live.reset(&workers.config, clock.now());
        // A removed tenant's history goes (its incidents resolve on the next tick, saying
        // why it went).
        let removed: Vec<String> = memory
            .history
            .tenants()
            .map(|(t, _)| t.to_owned())
            .filter(|t| workers.config.tenant(t).is_none())
            .collect();
        for t in &removed {
            memory.history.remove_tenant(t);
            if !memory.alerts.contains_key(t) {
                commit::forget_tenant(&store, t).await;
            }
        }
        publish_config(&snapshot, &workers.config, &memory.history, clock.now());
        // Rounds that finished before the change are judged, not lost: those of tenants
        // the new config still has, by the new config.
        while let Ok(r) = round_rx.try_recv() {
            if workers.config.tenant(&r.observation.tenant).is_some() {
                record_durations(&r, &workers.config);
                memory = on_round(
                    &workers.config,
                    &plumbing,
                    &snapshot,
                    &mut live,
                    memory,
                    r,
                    clock.now(),
                )
                .await;
            }
        }
        tick = tokio::time::interval(workers.config.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        info!(tenants = workers.config.tenants.len(), "{applied}");
    }
    info!("shutting down: cancelling rounds in flight");
    workers.stop_tenants().await;
    while let Ok(r) = round_rx.try_recv() {
        record_durations(&r, &workers.config);
        memory = on_round(
            &workers.config,
            &plumbing,
            &snapshot,
            &mut live,
            memory,
            r,
            clock.now(),
        )
        .await;
    }
    workers.stop_notifier().await;
    if let Some(p) = poller {
        p.stop().await;
    }
    drop(lock);
    info!("stopped");
    Ok(())
}
