//! `keycanary run`: probe every tenant at the configured interval, judge each round
//! (detection over the remembered history, then the alert state machine), commit the new
//! state and its notifications to the store in one transaction, and let the notifier
//! (`crate::notify`, its own task) deliver them. The latest state is also published in a
//! shared [`Snapshot`] for the HTTP API, and each finding is logged when it opens and
//! when it resolves.
//!
//! One round covers all tenants (tenants and domains are probed concurrently inside it).
//! The state directory is locked for the life of the process; a restart resumes from
//! what the last committed round left (history, alert state, outbox).
//!
//! Not here: the judgement itself (`detect`, `alert` — pure), SQL (`store`), talking to
//! receivers (`alert::channel`, driven by `notify`).

use crate::alert::{self, AlertState, Notification, Silence};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::detect::{self, history::History};
use crate::model::{Code, Finding, Observation, Severity, Subject, Timestamp};
use crate::notify::{Backoff, Notifier};
use crate::probe::Prober;
use crate::store::{self, RoundRecord, SharedStore, StateLock, Store};
use anyhow::Context;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// What the daemon knows now. Replaced as a whole after every round.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The latest observation of each tenant.
    pub observations: Vec<Observation>,
    /// Findings open after the latest round, sorted by severity.
    pub findings: Vec<Finding>,
    /// When each open finding (code + subject) was first seen in its current streak.
    pub since: BTreeMap<(Code, Subject), Timestamp>,
    pub last_round_started: Option<Timestamp>,
    pub last_round_finished: Option<Timestamp>,
    /// Rounds finished since the process started.
    pub rounds: u64,
}

pub type SharedSnapshot = Arc<RwLock<Snapshot>>;

pub fn new_snapshot() -> SharedSnapshot {
    Arc::new(RwLock::new(Snapshot::default()))
}

/// Knobs of the daemon that are not user configuration (tests turn them).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// When failed sends are retried.
    pub backoff: Backoff,
}

pub async fn run(
    config: Config,
    clock: SharedClock,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with(config, clock, new_snapshot(), shutdown).await
}

/// The loop, publishing into `snapshot` so other tasks (the API) can read it.
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
    /// Rounds committed since the state directory was created.
    pub rounds: u64,
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
    let prober = Prober::new(&config, clock.clone())?;
    info!(
        state_dir = %dir.display(),
        rounds = memory.rounds,
        open_incidents = memory.alerts.incidents.len(),
        requeued,
        "state loaded"
    );

    let cancel = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let notifier = Arc::new(Notifier::new(
        &config,
        store.clone(),
        clock.clone(),
        options.backoff,
    ));
    let notifier = tokio::spawn(notifier.run(wake.clone(), cancel.child_token()));

    let mut ticker = tokio::time::interval(config.settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    info!(tenants = config.tenants.len(), interval = ?config.settings.interval, "keycanary running");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let started = clock.now();
        let observations = prober.round(&config).await;
        let now = clock.now();
        let (next, verdict, queued) =
            commit(&config, &store, memory, &observations, started, now).await;
        memory = next;
        if queued > 0 {
            wake.notify_one();
        }
        publish(
            &snapshot,
            observations,
            verdict.findings,
            started,
            now,
            queued,
        );
    }
    info!("shutting down");
    cancel.cancel();
    if notifier.await.is_err() {
        error!("the notifier task panicked");
    }
    drop(lock);
    Ok(())
}
/// One round's judgement.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Every open finding, sorted by (severity, code, subject).
    pub findings: Vec<Finding>,
    /// The alert state after this round.
    pub alerts: AlertState,
    pub notifications: Vec<Notification>,
    /// `(channel, notification)` for every route that matches each notification.
    pub outbox: Vec<(String, Notification)>,
}

/// Judges one round at `now`, purely: records the observations into `history` (pruned to
/// the configured retention), runs detection over it, steps the alert state machine and
/// routes its notifications. `silences` are the API's; the config's are added here.
pub fn judge(
    config: &Config,
    history: &mut History,
    alerts: &AlertState,
    silences: &[Silence],
    observations: &[Observation],
    now: Timestamp,
) -> Verdict {
    let findings = detect::assess(config, history, observations, now);
    history.prune(now, config.settings.retention);
    let all_silences: Vec<Silence> = config
        .alerting
        .silences
        .iter()
        .chain(silences)
        .cloned()
        .collect();
    let (notifications, next) = alert::step(
        alerts,
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
        alerts: next,
        notifications,
        outbox,
    }
}

/// Judges the round and commits it (state, history, outbox rows) in one transaction.
/// Returns the memory to carry on with, the verdict and how many rows were queued. When
/// the commit fails the alert state stays as it was, so the next round decides again and
/// no notification is lost (it is made again, a round later).
async fn commit(
    config: &Config,
    store: &SharedStore,
    mut memory: Memory,
    observations: &[Observation],
    started: Timestamp,
    now: Timestamp,
) -> (Memory, Verdict, usize) {
    let api_silences = store::blocking(store, move |s| s.silences(now))
        .await
        .unwrap_or_else(|e| {
            error!(error = %e, "cannot read silences from the state directory; using those of probes.toml only");
            Vec::new()
        });
    let verdict = judge(
        config,
        &mut memory.history,
        &memory.alerts,
        &api_silences,
        observations,
        now,
    );
    memory.rounds += 1;
    let record = RoundRecord {
        number: memory.rounds,
        started_at: started,
        finished_at: now,
    };
    let forget_dead_before = Timestamp(
        now.0
            .saturating_sub(config.settings.retention.as_millis() as i64),
    );
    let (memory, verdict, result) = store::blocking(store, move |s| {
        let result = s.commit_round(
            record,
            &verdict.alerts,
            Some(&memory.history),
            &verdict.outbox,
            forget_dead_before,
        );
        (memory, verdict, result)
    })
    .await;
    let mut memory = memory;
    match result {
        Ok(queued) => {
            memory.alerts = verdict.alerts.clone();
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
            (memory, verdict, queued)
        }
        Err(e) => {
            error!(error = %e, "cannot commit the round to the state directory; its notifications will be decided again next round");
            (memory, verdict, 0)
        }
    }
}

/// Replaces the shared snapshot after a round and logs what opened and resolved.
fn publish(
    snapshot: &SharedSnapshot,
    observations: Vec<Observation>,
    findings: Vec<Finding>,
    started: Timestamp,
    now: Timestamp,
    queued: usize,
) {
    let previous = snapshot.read().unwrap_or_else(|e| e.into_inner()).clone();
    let next = advance(&previous, observations, findings, started, now);
    log_changes(&previous, &next);
    let views: usize = next
        .observations
        .iter()
        .flat_map(|o| &o.domains)
        .map(|d| d.views.len())
        .sum();
    info!(
        views,
        open_findings = next.findings.len(),
        queued,
        "round done"
    );
    *snapshot.write().unwrap_or_else(|e| e.into_inner()) = next;
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
                &[round(i, stale)],
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
                &[round(i, i > 0)],
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
