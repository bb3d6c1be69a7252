//! Detection: pure rules from observations (and, later, history) to findings.
//!
//! Nothing here does I/O, reads a clock or is `async`: callers pass `now`.

pub mod profiles;
pub mod round;

pub use round::round_findings;

use crate::config::Config;
use crate::model::{Finding, Observation, Timestamp};

/// The findings of one round of every tenant: [`round_findings`] for each observation and
/// its tenant (looked up by name; an observation of an unknown tenant yields nothing),
/// sorted by (severity, code, subject) across tenants.
pub fn findings_for_round(
    config: &Config,
    observations: &[Observation],
    now: Timestamp,
) -> Vec<Finding> {
    let mut all: Vec<Finding> = observations
        .iter()
        .filter_map(|o| Some((o, config.tenant(&o.tenant)?)))
        .flat_map(|(o, t)| round_findings(o, t, &config.settings, now))
        .collect();
    all.sort_by(|a, b| (a.severity, a.code, &a.subject).cmp(&(b.severity, b.code, &b.subject)));
    all
}
