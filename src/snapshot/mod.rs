//! The snapshot: what the daemon knows now, as the faces read it — the API, the status
//! page, `/metrics` and OTLP metrics. One value behind a lock, written only by the daemon;
//! readers take it and render, nothing more.
//!
//! It holds, **per tenant** ([`TenantSnapshot`]), the latest observation, the open
//! findings and since when each is open, the tenant's history (the gates and the page read
//! it) and the rotation gate for its current signer (computed when the tenant is judged,
//! not per scrape); and for the process: the full-round counters, the store's health, the
//! delivery and duration counters and the running config.
//!
//! A tenant's judgement replaces that tenant's entry in place ([`Snapshot::judged`]):
//! publishing costs the tenant's own size, never the fleet's; what spans every tenant (all
//! findings in rank order, every observation) is assembled when a face asks for it.
//!
//! Not here: deciding anything (`judge`, `detect`), rendering (`api`, `telemetry`).

use crate::config::Config;
use crate::detect::gate::{self, GateAnswer};
use crate::detect::history::{History, TenantHistory};
use crate::model::{Code, Finding, Observation, Subject, Timestamp};
use crate::notify::Deliveries;
use durations::Durations;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub mod durations;

/// What the daemon knows now.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per tenant, by name: its latest round and what was made of it.
    pub tenants: BTreeMap<String, TenantSnapshot>,
    /// The latest full round (every tenant probed once).
    pub last_round_started: Option<Timestamp>,
    pub last_round_finished: Option<Timestamp>,
    /// Full rounds finished since the process started.
    pub rounds: u64,
    /// The state store as the latest commit left it (`/readyz`, `/metrics`).
    pub store: StoreHealth,
    /// keycanary's own lag: the longest a tenant round waited for a concurrency permit
    /// plus for the judge, in the latest full round (or so far in the current one when
    /// worse). Its own health (`/readyz`, `/metrics`), never a finding.
    pub lag: std::time::Duration,
    /// Notification sends by channel and result; the notifier counts into it.
    pub deliveries: Arc<Deliveries>,
    /// Fetch and login durations of every tenant round since the process started.
    pub durations: Durations,
    /// The config the daemon runs with, published at start and replaced by each SIGHUP
    /// reload; `None` until the daemon starts. The API reads tenants from it.
    pub config: Option<Arc<Config>>,
    /// The inventory as the latest load left it; `None` without `[inventory]`.
    pub inventory: Option<InventoryStatus>,
}

/// The inventory's health (`/metrics`, `/readyz`): what the tenants running now were made
/// from, and how each source's latest read went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryStatus {
    /// Entries that became tenants (every shard's) and entries rejected.
    pub accepted: usize,
    pub rejected: usize,
    /// Per source (`file`, `url`).
    pub sources: BTreeMap<&'static str, SourceStatus>,
}

/// One inventory source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// When it was last read and understood as a list.
    pub last_success: Option<Timestamp>,
    /// Why its latest read failed (its last good list is kept); `None` when it succeeded.
    pub error: Option<String>,
}

/// One tenant in the snapshot.
#[derive(Debug, Clone, Default)]
pub struct TenantSnapshot {
    /// The latest round's observation; `None` before the tenant's first round.
    pub observation: Option<Arc<Observation>>,
    /// Findings open after the tenant's latest judgement, in rank order.
    pub findings: Vec<Finding>,
    /// When each open finding (code + subject) was first seen in its current streak.
    pub since: BTreeMap<(Code, Subject), Timestamp>,
    /// The tenant's history as of its latest judgement (the gates and the page read it).
    pub history: Option<Arc<TenantHistory>>,
    /// The rotation gate for the tenant's current signer ("healthy right now"), as of its
    /// latest judgement (or the latest reload).
    pub gate: Option<GateAnswer>,
    /// The tenant's `/metrics` sample lines, rendered once after its judgement so a scrape
    /// copies text instead of deciding anything; `None` until then (a scrape renders the
    /// tenant itself) and after every change that could alter them.
    pub exposition: Option<Arc<TenantExposition>>,
}

/// One tenant's part of the `/metrics` body: for each tenant family, in output order, its
/// sample lines (possibly none). Filled by the daemon with `telemetry::metrics::render_tenant`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantExposition {
    pub lines: Vec<String>,
}

/// What one judgement changed in the open findings: for the log.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub opened: Vec<Finding>,
    pub resolved: Vec<(Code, Subject)>,
}

/// The state store as the daemon's latest commit found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// When the latest successful commit happened.
    pub last_commit: Option<Timestamp>,
    /// Why the latest commit failed; `None` once one succeeds again.
    pub commit_error: Option<String>,
    /// Commits that failed since the process started.
    pub commit_errors: u64,
    /// Outbox rows waiting to be sent, and dead letters, read after the latest commit.
    pub outbox_depth: Option<u64>,
    pub dead_letters: Option<u64>,
}

pub type SharedSnapshot = Arc<RwLock<Snapshot>>;

pub fn new_snapshot() -> SharedSnapshot {
    Arc::new(RwLock::new(Snapshot::default()))
}

impl Snapshot {
    /// The latest observation of `tenant`, if it has had a round.
    pub fn observation(&self, tenant: &str) -> Option<&Observation> {
        self.tenants.get(tenant)?.observation.as_deref()
    }

    /// Every tenant's latest observation, by tenant name.
    pub fn observations(&self) -> Vec<&Observation> {
        self.tenants
            .values()
            .filter_map(|t| t.observation.as_deref())
            .collect()
    }

    /// Every open finding, in rank order (severity, code, subject).
    pub fn findings(&self) -> Vec<&Finding> {
        let mut all: Vec<&Finding> = self.tenants.values().flat_map(|t| &t.findings).collect();
        all.sort_by(|a, b| a.rank().cmp(&b.rank()));
        all
    }

    /// When `finding` was first seen in its current streak.
    pub fn since(&self, finding: &Finding) -> Option<Timestamp> {
        let t = self.tenants.get(&finding.subject.tenant)?;
        t.since
            .get(&(finding.code, finding.subject.clone()))
            .copied()
    }

    /// `tenant`'s history as of its latest judgement.
    pub fn history(&self, tenant: &str) -> Option<&TenantHistory> {
        self.tenants.get(tenant)?.history.as_deref()
    }

    /// A [`History`] holding `tenant`'s part only, for the gate functions (a copy of one
    /// tenant's history, made per question).
    pub fn history_of(&self, tenant: &str) -> History {
        History::from_tenants(
            None,
            self.history(tenant).map(|h| (tenant.to_owned(), h.clone())),
        )
    }

    /// The rotation gate for `tenant`'s current signer, as of its latest judgement.
    pub fn gate(&self, tenant: &str) -> Option<&GateAnswer> {
        self.tenants.get(tenant)?.gate.as_ref()
    }

    /// Replaces `tenant`'s entry after a judgement at `now`: its findings (in rank order),
    /// a new observation (`None`: keep the previous one, as for a stale tenant), its history.
    /// A finding still open keeps its `since`; a new one gets `started` (when the round
    /// began). The gate is recomputed from `history` at `now`. Returns what opened and
    /// resolved. Costs the tenant's own size only.
    #[allow(clippy::too_many_arguments)]
    pub fn judged(
        &mut self,
        config: &Config,
        tenant: &str,
        observation: Option<Arc<Observation>>,
        findings: Vec<Finding>,
        history: &History,
        started: Timestamp,
        now: Timestamp,
    ) -> Changes {
        let entry = self.tenants.entry(tenant.to_owned()).or_default();
        if observation.is_some() {
            entry.observation = observation;
        }
        let since: BTreeMap<(Code, Subject), Timestamp> = findings
            .iter()
            .map(|f| {
                let key = (f.code, f.subject.clone());
                let at = entry.since.get(&key).copied().unwrap_or(started);
                (key, at)
            })
            .collect();
        let changes = Changes {
            opened: findings
                .iter()
                .filter(|f| !entry.since.contains_key(&(f.code, f.subject.clone())))
                .cloned()
                .collect(),
            resolved: entry
                .since
                .keys()
                .filter(|k| !since.contains_key(*k))
                .cloned()
                .collect(),
        };
        entry.findings = findings;
        entry.since = since;
        entry.exposition = None;
        entry.history = history.tenant_shared(tenant);
        entry.gate = Some(gate::rotation_gate(
            config,
            history,
            entry.observation.as_deref(),
            &entry.findings,
            tenant,
            None,
            now,
        ));
        changes
    }

    /// `self` after one more full round of `observations` with `findings` (each tenant
    /// judged, the round counted): how the test fixtures build a snapshot.
    #[cfg(test)]
    pub(crate) fn after_round(
        mut self,
        config: &Config,
        observations: Vec<Observation>,
        findings: Vec<Finding>,
        history: &History,
        started: Timestamp,
        finished: Timestamp,
    ) -> Snapshot {
        let mut by_tenant: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
        for f in findings {
            by_tenant
                .entry(f.subject.tenant.clone())
                .or_default()
                .push(f);
        }
        for o in observations {
            let tenant = o.tenant.clone();
            let mut mine = by_tenant.remove(&tenant).unwrap_or_default();
            mine.sort_by(|a, b| a.rank().cmp(&b.rank()));
            self.judged(
                config,
                &tenant,
                Some(Arc::new(o)),
                mine,
                history,
                started,
                finished,
            );
        }
        for (tenant, mut mine) in by_tenant {
            mine.sort_by(|a, b| a.rank().cmp(&b.rank()));
            self.judged(config, &tenant, None, mine, history, started, finished);
        }
        self.rounds += 1;
        self.last_round_started = Some(started);
        self.last_round_finished = Some(finished);
        self
    }

    /// After a (re)load: forgets tenants `config` no longer has (their duration series
    /// too), and recomputes every tenant's gate at `now` from `history` (so a tenant added
    /// by a reload shows at once). Every tenant's rendered metrics are dropped: the new
    /// config may change them (client profiles change staleness budgets).
    pub fn reconfigured(&mut self, config: &Arc<Config>, history: &History, now: Timestamp) {
        self.config = Some(config.clone());
        self.tenants.retain(|t, _| config.tenant(t).is_some());
        self.durations
            .retain_tenants(|t| config.tenant(t).is_some());
        for t in &config.tenants {
            let entry = self.tenants.entry(t.name.clone()).or_default();
            entry.exposition = None;
            entry.gate = Some(gate::rotation_gate(
                config,
                history,
                entry.observation.as_deref(),
                &entry.findings,
                &t.name,
                None,
                now,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(s: &mut Snapshot, findings: Vec<Finding>, started: i64) -> Changes {
        let config = crate::telemetry::fixtures::config();
        s.judged(
            &config,
            "acme",
            None,
            findings,
            &History::default(),
            Timestamp(started),
            Timestamp(started + 500),
        )
    }

    #[test]
    fn since_survives_while_a_finding_stays_open() {
        let f = Finding::new(Code::KidMissing, Subject::domain("acme", "io"), "x");
        let mut s = Snapshot::default();
        let opened = judge(&mut s, vec![f.clone()], 1_000);
        assert_eq!(opened.opened, vec![f.clone()]);
        let again = judge(&mut s, vec![f.clone()], 31_000);
        assert_eq!(again, Changes::default(), "nothing opened or resolved");
        assert_eq!(s.since(&f), Some(Timestamp(1_000)));
        let closed = judge(&mut s, vec![], 61_000);
        assert_eq!(closed.resolved, vec![(f.code, f.subject.clone())]);
        assert_eq!(s.since(&f), None);
        judge(&mut s, vec![f.clone()], 91_000);
        assert_eq!(s.since(&f), Some(Timestamp(91_000)));
    }

    #[test]
    fn a_judgement_replaces_only_its_tenant() {
        let config = crate::telemetry::fixtures::config();
        let mut s = Snapshot::default();
        s.tenants.insert(
            "globex".into(),
            TenantSnapshot {
                findings: vec![Finding::new(
                    Code::LoginFailed,
                    Subject::tenant("globex"),
                    "x",
                )],
                ..Default::default()
            },
        );
        let f = Finding::new(Code::KidMissing, Subject::domain("acme", "io"), "y");
        s.judged(
            &config,
            "acme",
            None,
            vec![f.clone()],
            &History::default(),
            Timestamp(0),
            Timestamp(1),
        );
        let mut want = vec![
            f.clone(),
            Finding::new(Code::LoginFailed, Subject::tenant("globex"), "x"),
        ];
        want.sort_by(|a, b| a.rank().cmp(&b.rank()));
        let got: Vec<Finding> = s.findings().into_iter().cloned().collect();
        assert_eq!(got, want, "both tenants' findings, in rank order");
        assert!(s.gate("acme").is_some() && s.gate("globex").is_none());
        s.reconfigured(&Arc::new(config), &History::default(), Timestamp(2));
        assert!(
            !s.tenants.contains_key("globex"),
            "a tenant the config does not have is forgotten"
        );
    }
}
