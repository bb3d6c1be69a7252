//! The scheduler: one task per tenant, probing it every interval (plus jitter) while one
//! of `max_concurrency` permits is free, and sending each finished round to the run loop;
//! and [`Workers`], the running parts (tenant tasks and the notifier) that a reload replaces.
//!
//! Not here: what a round does (`crate::probe`), what is made of it (`rounds`).

use super::live::{Progress, TaskProgress, TenantRound};
use crate::clock::SharedClock;
use crate::config::{Config, Tenant};
use crate::notify::{Backoff, Deliveries, Notifier};
use crate::probe::Prober;
use crate::store::SharedStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// A tenant round's start is delayed by up to this fraction of the interval, so tenants
/// drift apart instead of hitting shared CDNs and receivers in lockstep.
pub(super) const JITTER: f64 = 0.1;

/// The running parts that a reload replaces.
pub(super) struct Workers {
    pub(super) config: Arc<Config>,
    pub(super) tenants: CancellationToken,
    pub(super) tenant_tasks: Vec<JoinHandle<()>>,
    pub(super) notifier_stop: CancellationToken,
    pub(super) notifier: Option<JoinHandle<()>>,
}

/// What every generation of workers shares with the run loop (a reload keeps it).
pub(super) struct Plumbing {
    pub(super) store: SharedStore,
    pub(super) clock: SharedClock,
    pub(super) backoff: Backoff,
    /// Wakes the notifier when rows were queued.
    pub(super) wake: Arc<Notify>,
    pub(super) rounds: mpsc::Sender<TenantRound>,
    pub(super) deliveries: Arc<Deliveries>,
    pub(super) progress: Progress,
}

impl Workers {
    pub(super) fn start(config: Arc<Config>, prober: Arc<Prober>, plumbing: &Plumbing) -> Workers {
        let Plumbing {
            store,
            clock,
            backoff,
            wake,
            rounds,
            deliveries,
            progress,
        } = plumbing;
        {
            // Tenants a reload removed have no task any more.
            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
            p.retain(|t, _| config.tenant(t).is_some());
        }
        let notifier_stop = CancellationToken::new();
        let notifier = Arc::new(
            Notifier::new(&config, store.clone(), clock.clone(), *backoff)
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
                    (rounds.clone(), progress.clone()),
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
    pub(super) async fn stop_tenants(&mut self) {
        self.tenants.cancel();
        for t in self.tenant_tasks.drain(..) {
            if t.await.is_err() {
                error!("a tenant task panicked");
            }
        }
    }

    /// Stops the notifier (sends in flight get their grace) and waits for it.
    pub(super) async fn stop_notifier(&mut self) {
        self.notifier_stop.cancel();
        if let Some(task) = self.notifier.take()
            && task.await.is_err()
        {
            error!("the notifier task panicked");
        }
    }
}

/// One tenant, probed every `interval` (plus jitter) while a permit is free, until `stop`.
pub(super) async fn tenant_loop(
    tenant: Tenant,
    interval: Duration,
    prober: Arc<Prober>,
    permits: Arc<Semaphore>,
    clock: SharedClock,
    (rounds, progress): (mpsc::Sender<TenantRound>, Progress),
    stop: CancellationToken,
) {
    let note = |edit: &dyn Fn(&mut TaskProgress)| {
        let mut all = progress.lock().unwrap_or_else(|e| e.into_inner());
        edit(all.entry(tenant.name.clone()).or_default());
    };
    loop {
        let begin = crate::clock::monotonic();
        let due = clock.now();
        note(&|p| p.due = Some(due));
        let round = async {
            let _permit = permits
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let started = clock.now();
            note(&|p| p.started = Some(started));
            let (observation, trace) = prober.tenant_traced(&tenant).await;
            let finished = clock.now();
            note(&|p| p.finished = Some(finished));
            TenantRound {
                observation,
                due,
                started,
                finished,
                trace,
            }
        };
        let round = tokio::select! {
            r = round => r,
            _ = stop.cancelled() => return,
        };
        // The run loop may be busy (or stopping and waiting for this task): never block
        // on a full channel past `stop`.
        tokio::select! {
            sent = rounds.send(round) => if sent.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let next = begin + interval + interval.mul_f64(JITTER * fastrand::f64());
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
    }
}
