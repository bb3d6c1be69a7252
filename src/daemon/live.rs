//! What the daemon carries between rounds: [`Memory`] (history, alert state, the full-round
//! count: persisted by the store) and [`Live`] (per tenant, the latest observation and
//! findings, when it last finished a round, and the full-round bookkeeping: not persisted).
//!
//! Not here: judging (`crate::judge`), storing (`commit`).

use crate::alert::AlertState;
use crate::config::Config;
use crate::detect::history::History;
use crate::model::{Finding, Observation, Timestamp};
use crate::snapshot::StoreHealth;
use crate::telemetry::traces::RoundTrace;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// What the daemon carries from one round to the next; the store persists it, one row per
/// tenant.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub history: History,
    /// Each tenant's part of the alert state (tenants with nothing tracked are absent).
    pub alerts: BTreeMap<String, AlertState>,
    /// Full rounds committed since the state directory was created.
    pub rounds: u64,
}

/// `tenant`'s part of the alert state in `alerts` (empty when nothing is tracked for it).
pub(super) fn alerts_of<'a>(
    alerts: &'a BTreeMap<String, AlertState>,
    tenant: &str,
) -> &'a AlertState {
    const NOTHING: &AlertState = &AlertState {
        episodes: Vec::new(),
        incidents: Vec::new(),
    };
    alerts.get(tenant).unwrap_or(NOTHING)
}

/// One tenant's finished probe round, sent by its task to the judge.
#[derive(Debug)]
pub(super) struct TenantRound {
    pub(super) observation: Observation,
    /// When the round was due (its task woke for it).
    pub(super) due: Timestamp,
    /// When probing began (a concurrency permit was free).
    pub(super) started: Timestamp,
    /// When probing ended (before the round waited for the judge).
    pub(super) finished: Timestamp,
    /// The round's trace, which its judgement joins.
    pub(super) trace: RoundTrace,
}

/// Where a tenant's task is, written by the task itself (not through the round channel,
/// so a busy run loop never makes a tenant look silent).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct TaskProgress {
    /// When its current (or latest) round became due.
    pub(super) due: Option<Timestamp>,
    /// When probing of that round began.
    pub(super) started: Option<Timestamp>,
    /// When its latest round finished probing.
    pub(super) finished: Option<Timestamp>,
}

/// Every tenant task's progress, shared by the tasks and the run loop.
pub(super) type Progress = Arc<Mutex<HashMap<String, TaskProgress>>>;

/// What a tick finds about a tenant that has finished no round for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Silent {
    /// Its round has been probing for that long: the identity provider is not answering.
    Probing,
    /// Its round is waiting for keycanary (a concurrency permit): keycanary's own lag,
    /// not the identity provider's.
    Waiting,
}

impl TaskProgress {
    /// Whether the tenant has finished no round within `limit` ms before `now` (counting
    /// from `since` when it has finished none), and if so, why.
    pub(super) fn silent(&self, since: Timestamp, now: Timestamp, limit: i64) -> Option<Silent> {
        let last = self.finished.unwrap_or(since).max(since);
        if now.0 - last.0 <= limit {
            return None;
        }
        let probing = self
            .started
            .is_some_and(|s| self.finished.is_none_or(|f| s > f));
        Some(if probing {
            Silent::Probing
        } else {
            Silent::Waiting
        })
    }
}

/// The judge's view of each tenant (not persisted).
#[derive(Debug, Default)]
pub(super) struct Live {
    /// Latest observation and findings per tenant.
    pub(super) latest: BTreeMap<String, Vec<Finding>>,
    /// When each tenant's latest round finished (or the daemon started).
    pub(super) last_seen: BTreeMap<String, Timestamp>,
    /// Tenants not yet probed in the current full round, and when it began.
    pub(super) pending: BTreeSet<String>,
    pub(super) round_started: Option<Timestamp>,
    /// The latest full round.
    pub(super) last_round: Option<(Timestamp, Timestamp)>,
    /// Full rounds since the process started.
    pub(super) rounds: u64,
    /// What the latest commit found.
    pub(super) store: StoreHealth,
    /// keycanary's own lag (ms): the longest a tenant round of the current full round
    /// waited for a concurrency permit plus for the judge, and the same of the latest full
    /// round.
    pub(super) lag: u64,
    pub(super) last_lag: u64,
    /// Tenants that a reload or the inventory removed, and why: what their incidents'
    /// resolve says. A tenant gone before a restart is "no longer configured".
    pub(super) gone: BTreeMap<String, String>,
}

impl Live {
    pub(super) fn new(config: &Config, now: Timestamp) -> Live {
        let mut live = Live::default();
        live.reset(config, now);
        live
    }

    /// After a (re)load: forget removed tenants, start a new full round.
    pub(super) fn reset(&mut self, config: &Config, now: Timestamp) {
        let names: BTreeSet<String> = config.tenants.iter().map(|t| t.name.clone()).collect();
        self.latest.retain(|t, _| names.contains(t));
        self.gone.retain(|t, _| !names.contains(t));
        self.last_seen.retain(|t, _| names.contains(t));
        for t in &names {
            self.last_seen.entry(t.clone()).or_insert(now);
        }
        self.pending = names;
        self.round_started = None;
    }

    /// Counts one round's lag (ms) into the current full round's.
    pub(super) fn lagged(&mut self, ms: u64) {
        self.lag = self.lag.max(ms);
    }

    /// keycanary's lag as it stands: the latest full round's, or the current one's when
    /// that is already worse.
    pub(super) fn lag_ms(&self) -> u64 {
        self.lag.max(self.last_lag)
    }

    /// Records `tenant`'s round; returns the full round it completes, if it does.
    pub(super) fn finished(
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
        self.last_lag = std::mem::take(&mut self.lag);
        self.rounds += 1;
        self.pending = self.last_seen.keys().cloned().collect();
        Some(round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::stateful::fixtures as fx;

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
    fn a_silent_tenant_is_the_idp_only_while_its_round_is_probing() {
        let at = Timestamp;
        let limit = 90_000;
        let check = |p: TaskProgress, now: i64, want: Option<Silent>| {
            assert_eq!(p.silent(at(0), at(now), limit), want, "{p:?} at {now}");
        };
        let never = TaskProgress::default();
        check(never, 90_000, None);
        check(never, 90_001, Some(Silent::Waiting));
        let done = TaskProgress {
            due: Some(at(10_000)),
            started: Some(at(10_000)),
            finished: Some(at(12_000)),
        };
        check(done, 100_000, None);
        check(done, 102_001, Some(Silent::Waiting));
        let probing = TaskProgress {
            started: Some(at(40_000)),
            ..done
        };
        check(probing, 102_001, Some(Silent::Probing));
        let probing_first = TaskProgress {
            due: Some(at(0)),
            started: Some(at(0)),
            finished: None,
        };
        check(probing_first, 90_001, Some(Silent::Probing));
    }
}
