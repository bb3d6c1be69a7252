//! The snapshot: what the daemon knows now, as the faces read it — the API, the status
//! page, `/metrics` and OTLP metrics. One value behind a lock, replaced after every tenant's
//! judgement by the daemon (its only writer); readers take it and render, nothing more.
//!
//! It holds the latest observation and open findings of each tenant, since when each
//! finding is open, the full-round counters, the history the gates read, the store's
//! health, the delivery and duration counters, the running config and, per tenant, the
//! rotation gate for its current signer (computed when the tenant is judged, not per scrape).
//!
//! Not here: deciding anything (`judge`, `detect`), rendering (`api`, `telemetry`).

use crate::config::Config;
use crate::detect::gate::{self, GateAnswer};
use crate::detect::history::History;
use crate::model::{Code, Finding, Observation, Subject, Timestamp};
use crate::notify::Deliveries;
use durations::Durations;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub mod durations;

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
    /// Per tenant, the rotation gate for its current signer ("healthy right now"), as of
    /// the tenant's latest judgement (or the latest reload): computed once per round, read
    /// by `/metrics`, OTLP and the status page.
    pub gates: BTreeMap<String, GateAnswer>,
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
        gates: previous.gates.clone(),
    }
}

impl Snapshot {
    /// The latest observation of `tenant`, if it has had a round.
    pub fn observation(&self, tenant: &str) -> Option<&Observation> {
        self.observations.iter().find(|o| o.tenant == tenant)
    }

    /// The rotation gate for `tenant`'s current signer, as of its latest judgement.
    pub fn gate(&self, tenant: &str) -> Option<&GateAnswer> {
        self.gates.get(tenant)
    }

    /// Recomputes the current-signer rotation gate of each of `tenants` at `now`, and
    /// forgets the gates of tenants `config` no longer has. The daemon calls it for the
    /// tenant it just judged, and for every tenant after a (re)load.
    pub fn refresh_gates<'a>(
        &mut self,
        config: &Config,
        tenants: impl IntoIterator<Item = &'a str>,
        now: Timestamp,
    ) {
        for tenant in tenants {
            let answer = gate::rotation_gate(
                config,
                &self.history,
                self.observation(tenant),
                &self.findings,
                tenant,
                None,
                now,
            );
            self.gates.insert(tenant.to_owned(), answer);
        }
        self.gates.retain(|t, _| config.tenant(t).is_some());
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
