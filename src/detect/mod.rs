//! Detection: pure rules from observations and their [`history::History`] to findings.
//! [`assess`] is one step (record the round, then judge it); [`round_findings`] judges one
//! tenant's round alone.
//!
//! Nothing here does I/O, reads a clock or is `async`: callers pass `now`.

pub mod bound;
pub mod clients;
pub mod freshness;
pub mod gate;
pub mod history;
pub mod profiles;
pub mod round;
pub mod stateful;

pub use round::round_findings;

use crate::config::Config;
use crate::model::{Finding, Observation, Timestamp};
use history::History;

/// One step of detection over a whole round: record every observation into `history` (at
/// `now`), then return all findings — the round rules and the history rules
/// ([`stateful::history_findings`]) and `client_would_fail` ([`clients::client_findings`])
/// of each observed tenant, `probe_stale` of configured
/// tenants without an observation in `observations`, and `cross_tenant_key` across
/// tenants — sorted by (severity, code, subject) and merged per (code, subject) as
/// [`round_findings`] does, then bounded per tenant ([`bound`]).
///
/// Recording comes first: every history rule reads the past *including* this round (see
/// [`stateful`] for what each rule compares). Observations of tenants the config does not
/// know are recorded but judged by nothing.
pub fn assess(
    config: &Config,
    history: &mut History,
    observations: &[Observation],
    now: Timestamp,
) -> Vec<Finding> {
    for o in observations {
        history.record(o, now);
    }
    let history = &*history;
    let mut all = Vec::new();
    for t in &config.tenants {
        all.extend(tenant_findings(config, history, t, observations, now));
        all.extend(stateful::cross_tenant_key_for(history, config, &t.name));
    }
    bound::bound(round::finish(all))
}

/// [`assess`] for one tenant, as the daemon judges each tenant round: records
/// `observation` (that tenant's round, `None` when it has none to judge) and returns the
/// findings about `tenant` only, without judging the other tenants: its cost is the
/// tenant's own size (the other tenants are reached only through the history's key index
/// and the config's tenant index).
pub fn assess_tenant(
    config: &Config,
    history: &mut History,
    tenant: &str,
    observation: Option<&Observation>,
    now: Timestamp,
) -> Vec<Finding> {
    if let Some(o) = observation {
        history.record(o, now);
    }
    let Some(t) = config.tenant(tenant) else {
        return Vec::new();
    };
    let history = &*history;
    let observations = observation.map(std::slice::from_ref).unwrap_or(&[]);
    let mut all = tenant_findings(config, history, t, observations, now);
    all.extend(stateful::cross_tenant_key_for(history, config, tenant));
    bound::bound(round::finish(all))
}

/// The findings about tenant `t` from its observations among `observations` (recorded
/// already), or `probe_stale` when there is none.
fn tenant_findings(
    config: &Config,
    history: &History,
    t: &crate::config::Tenant,
    observations: &[Observation],
    now: Timestamp,
) -> Vec<Finding> {
    let mut all = Vec::new();
    let mut observed = observations
        .iter()
        .filter(|o| o.tenant == t.name)
        .peekable();
    if observed.peek().is_none() {
        all.extend(stateful::probe_stale(history, t, config, now));
    }
    for o in observed {
        all.extend(round_findings(o, t, config, now));
        all.extend(stateful::history_findings(history, o, t, config, now));
        all.extend(clients::client_findings(history, o, t, config, now));
        all.extend(gate::key_activated_early(history, o, t, config, now));
    }
    all
}
