//! `keycanary run`: probe every tenant at the configured interval, keep the latest state
//! in a shared [`Snapshot`] (read by the HTTP API), and log each finding when it opens and
//! when it resolves.
//!
//! One round covers all tenants (tenants and domains are probed concurrently inside it).
//! Alert routing, durable state and notifications are not here yet.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::detect;
use crate::model::{Code, Finding, Observation, Severity, Subject, Timestamp};
use crate::probe::Prober;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
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
    pub rounds: u64,
}

pub type SharedSnapshot = Arc<RwLock<Snapshot>>;

pub fn new_snapshot() -> SharedSnapshot {
    Arc::new(RwLock::new(Snapshot::default()))
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
    let prober = Prober::new(&config, clock.clone())?;
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
        let findings = detect::findings_for_round(&config, &observations, now);
        let previous = snapshot.read().unwrap_or_else(|e| e.into_inner()).clone();
        let next = advance(&previous, observations, findings, started, now);
        log_changes(&previous, &next);
        let views: usize = next
            .observations
            .iter()
            .flat_map(|o| &o.domains)
            .map(|d| d.views.len())
            .sum();
        info!(views, open_findings = next.findings.len(), "round done");
        *snapshot.write().unwrap_or_else(|e| e.into_inner()) = next;
    }
    info!("shutting down");
    Ok(())
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
