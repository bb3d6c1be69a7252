//! Prometheus metrics, rendered from the daemon's [`Snapshot`] on every scrape.
//!
//! [`render`] is pure: snapshot, config and build facts in, exposition text out. Nothing
//! here counts events as they happen; every value is read from the latest round (gauges)
//! or from what the snapshot accumulates across rounds: counters (`rounds`) and the fetch
//! and login duration histograms ([`Durations`], observed by the daemon once per tenant
//! round).
//!
//! The families are built by one function each, grouped by what they describe: `process`
//! (rounds, durations, notifications), `views` (each JWKS view, its freshness and
//! staleness budget), `login` (logins and token checks) and `verdicts` (open findings and
//! the rotation gate). The text format is `exposition`'s and the duration histograms are
//! `durations`'; both are re-exported here under their old paths.
//!
//! Label sets are bounded by the configuration: tenants, domains, paths, edges, location,
//! finding codes, client profile names, and at most [`MAX_KIDS_PER_DOMAIN`] kids per domain
//! (the signer's plus the origin view's, each cut to [`MAX_LABEL_LEN`] bytes). No URL or
//! token ever becomes a label. The families and labels are documented in README.md
//! ("Metrics").

mod login;
mod process;
mod select;
mod verdicts;
mod views;

use crate::config::Config;
use crate::snapshot::Snapshot;

pub use select::Selection;

pub use crate::snapshot::durations::{
    DURATION_BUCKETS, DurationKind, Durations, FETCH_DURATION, Histogram, LOGIN_DURATION,
    round_durations,
};
pub use crate::telemetry::exposition::{
    CONTENT_TYPE, Family, HistogramSample, Labels, MetricType, Sample, encode,
};

/// Most kids per domain exported as `kid` labels (signer first, then the origin's set).
pub const MAX_KIDS_PER_DOMAIN: usize = 8;

/// Label values taken from the wire (kids) are cut to this many bytes.
pub const MAX_LABEL_LEN: usize = 128;

/// Facts about this build, exported as `keycanary_build_info`.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    pub version: &'static str,
}

impl BuildInfo {
    pub const fn current() -> BuildInfo {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// The `/metrics` body for this snapshot. Pure and computed from what the snapshot holds
/// (the gate answers included, as of each tenant's latest judgement): nothing is decided
/// per scrape.
pub fn render(snapshot: &Snapshot, config: &Config, build: BuildInfo) -> String {
    encode(&families(snapshot, config, build))
}

/// Every family, in output order. Families are emitted (HELP and TYPE) even when they
/// have no samples yet, so dashboards and `absent()` alerts see them from the start.
pub fn families(snapshot: &Snapshot, config: &Config, build: BuildInfo) -> Vec<Family> {
    let mut out = vec![
        Family::gauge(
            "keycanary_build_info",
            "Build facts of this keycanary as labels; the value is always 1.",
        )
        .with(&[("version", build.version)], 1.0),
    ];
    out.extend(process::round_families(snapshot));
    let observations = snapshot.observations();
    out.extend(views::view_families(&observations));
    out.extend(login::login_families(&observations));
    out.extend(process::duration_families(&snapshot.durations));
    out.push(verdicts::findings_open(snapshot));
    out.extend(views::freshness_families(snapshot, config));
    out.extend(verdicts::gate_families(snapshot, config));
    out.extend(process::notification_families(snapshot, config));
    // Extension point: families that later work feeds from the snapshot go here, each
    // from its own function of the snapshot.
    out
}

#[cfg(test)]
mod tests;
