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
use std::collections::{BTreeMap, BTreeSet};

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
pub(super) struct TenantRound {
    pub(super) observation: Observation,
    pub(super) started: Timestamp,
    /// The round's trace, which its judgement joins.
    pub(super) trace: RoundTrace,
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
        self.last_seen.retain(|t, _| names.contains(t));
        for t in &names {
            self.last_seen.entry(t.clone()).or_insert(now);
        }
        self.pending = names;
        self.round_started = None;
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
}
