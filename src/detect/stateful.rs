//! Rules that need the past: from the [`History`] (already holding this round) and this
//! round's [`Observation`] to findings. Per tenant ([`history_findings`]): `kid_reused`,
//! `key_removed_early` (`keys`), `signing_key_inconsistent` (`signing`),
//! `validator_inconsistent`, `tls_certificate` (`transport`) and `probe_stale` (`stale`);
//! across tenants ([`cross_tenant_key_for`], one tenant's side, run by `detect::assess` and
//! `detect::assess_tenant`).
//!
//! **Record first, then judge.** Every rule reads the history *after* this round was
//! recorded ([`crate::detect::assess`] does exactly that), so "the past" below includes this
//! round and `now` must be the time the round was recorded with:
//!
//! - `kid_reused` — the ledger holds every material ever seen under a kid; while the kid is
//!   still served this round and the ledger holds more than one, it fires (once per newer
//!   material). It resolves when the kid is no longer served or the old material is pruned.
//! - `key_removed_early` — this round says the kid is absent from an ok view; the ledger
//!   says it was there before and that a token it signed (this round's included) is valid.
//! - `signing_key_inconsistent` — this round's tokens, and the last three token-returning
//!   rounds of the signing record (this one included).
//! - `validator_inconsistent` — the ETag→body record includes this round's bodies; the
//!   view's timeline before its latest run gives what it served before a 304.
//! - `tls_certificate` — the view's leaf record remembers the previous leaf; a change fires
//!   in the round it is first seen.
//! - `probe_stale` — the last ok round of each configured view, this round's included.
//! - `cross_tenant_key` — what each tenant's views served in their latest ok round (the
//!   history's key index, current as of this round).
//!
//! Pure: no I/O, no clock reads, no `async`, no `Result`.

mod keys;
mod signing;
mod stale;
mod transport;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod replay;

pub use keys::cross_tenant_key_for;
pub use stale::{STALE_INTERVALS, configured_views, probe_stale};

use crate::config::{self, Config};
use crate::detect::history::{History, TenantHistory};
use crate::detect::round::finish;
use crate::model::{Finding, Observation, Timestamp};

/// Everything a rule may read.
struct Ctx<'a> {
    history: &'a TenantHistory,
    obs: &'a Observation,
    tenant: &'a config::Tenant,
    config: &'a Config,
    now: Timestamp,
}

type Rule = fn(&Ctx<'_>, &mut Vec<Finding>);

const RULES: &[Rule] = &[
    keys::kid_reused,
    keys::key_removed_early,
    signing::signing_key_inconsistent,
    transport::validator_inconsistent,
    transport::tls_certificate,
];

/// The history rules of one tenant's round (plus its `probe_stale`), sorted and merged like
/// [`crate::detect::round_findings`]. `history` must already hold `obs` (recorded at `now`);
/// a tenant the history does not know yields only `probe_stale`.
pub fn history_findings(
    history: &History,
    obs: &Observation,
    tenant: &config::Tenant,
    config: &Config,
    now: Timestamp,
) -> Vec<Finding> {
    let mut out = probe_stale(history, tenant, config, now);
    if let Some(th) = history.tenant(&obs.tenant) {
        let cx = Ctx {
            history: th,
            obs,
            tenant,
            config,
            now,
        };
        for rule in RULES {
            rule(&cx, &mut out);
        }
    }
    finish(out)
}

/// A thumbprint for messages: its first 12 characters.
fn short_tp(tp: &str) -> &str {
    match tp.char_indices().nth(12) {
        Some((cut, _)) => &tp[..cut],
        None => tp,
    }
}

/// A duration in seconds for messages: `90 s`, `2 h 5 min`, `3 d 4 h`.
fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_helpers() {
        assert_eq!(short_tp("abcdefghijklmnop"), "abcdefghijkl");
        assert_eq!(short_tp("abc"), "abc");
        assert_eq!(human(-5), "0 s");
        assert_eq!(human(90), "90 s");
        assert_eq!(human(600), "10 min");
        assert_eq!(human(3 * 3600 + 300), "3 h 5 min");
        assert_eq!(human(15 * 86_400 + 7200), "15 d 2 h");
    }
}
