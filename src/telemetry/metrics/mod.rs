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

mod gate;
mod inventory;
mod login;
mod process;
mod select;
mod verdicts;
mod views;

use crate::config::Config;
use crate::model::Observation;
use crate::snapshot::{Snapshot, TenantExposition};
use std::sync::Arc;

pub use select::Selection;

pub use crate::snapshot::durations::{
    DURATION_BUCKETS, DurationKind, Durations, FETCH_DURATION, Histogram, LOGIN_DURATION,
    round_durations,
};
pub use crate::telemetry::exposition::{
    CONTENT_TYPE, Family, HistogramSample, Labels, MetricType, Sample, encode, write_header,
    write_samples,
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

/// The `/metrics` body for this snapshot: [`render_selected`] with everything selected.
pub fn render(snapshot: &Snapshot, config: &Config, build: BuildInfo) -> String {
    render_selected(snapshot, config, build, &Selection::default())
}

/// The `/metrics` body, or the part `selection` asks for. Pure, and decides nothing per
/// scrape: each tenant's samples are the text the daemon rendered after the tenant's
/// judgement ([`render_tenant`], kept in the snapshot), copied in; a tenant without that
/// text yet is rendered here. So a scrape costs the bytes it writes, and the same text as
/// [`encode`] of [`families`] (a test holds the two equal).
pub fn render_selected(
    snapshot: &Snapshot,
    config: &Config,
    build: BuildInfo,
    selection: &Selection,
) -> String {
    let tenants: Vec<&str> = config
        .tenants
        .iter()
        .map(|t| t.name.as_str())
        .filter(|t| selection.wants_tenant(t))
        .collect();
    let cached = |t: &str| snapshot.tenants.get(t).and_then(|ts| ts.exposition.clone());
    let parts: Vec<Arc<TenantExposition>> = tenants
        .iter()
        .map(|t| cached(t).unwrap_or_else(|| Arc::new(render_tenant(snapshot, config, t))))
        .collect();
    let size: usize = parts.iter().flat_map(|p| &p.lines).map(String::len).sum();
    let mut out = String::with_capacity(size + 16 * 1024);
    let process = |out: &mut String, families: Vec<Family>| {
        for f in families.iter().filter(|f| selection.wants_family(f.name)) {
            write_header(out, f);
            if selection.tenants.is_empty() {
                write_samples(out, f);
            }
        }
    };
    process(&mut out, head_families(snapshot, build));
    for (i, f) in tenant_families(snapshot, config, None).iter().enumerate() {
        if !selection.wants_family(f.name) {
            continue;
        }
        write_header(&mut out, f);
        for part in &parts {
            if let Some(lines) = part.lines.get(i) {
                out.push_str(lines);
            }
        }
    }
    process(&mut out, tail_families(snapshot, config));
    out
}

/// One tenant's sample lines, family by family in output order (what the daemon keeps in
/// the snapshot after judging the tenant, so scrapes only copy it).
pub fn render_tenant(snapshot: &Snapshot, config: &Config, tenant: &str) -> TenantExposition {
    let lines = tenant_families(snapshot, config, Some(tenant))
        .iter()
        .map(|f| {
            let mut out = String::new();
            write_samples(&mut out, f);
            out
        })
        .collect();
    TenantExposition { lines }
}

/// Every family, in output order, with every configured tenant's samples (OTLP exports
/// these). Families are emitted (HELP and TYPE) even when they have no samples yet, so
/// dashboards and `absent()` alerts see them from the start.
pub fn families(snapshot: &Snapshot, config: &Config, build: BuildInfo) -> Vec<Family> {
    let mut out = head_families(snapshot, build);
    let mut merged = tenant_families(snapshot, config, None);
    for t in &config.tenants {
        let mine = tenant_families(snapshot, config, Some(&t.name));
        for (all, f) in merged.iter_mut().zip(mine) {
            all.samples.extend(f.samples);
            all.histograms.extend(f.histograms);
        }
    }
    out.extend(merged);
    out.extend(tail_families(snapshot, config));
    out
}

/// The process's families written before the tenants' ones.
fn head_families(snapshot: &Snapshot, build: BuildInfo) -> Vec<Family> {
    let mut out = vec![
        Family::gauge(
            "keycanary_build_info",
            "Build facts of this keycanary as labels; the value is always 1.",
        )
        .with(&[("version", build.version)], 1.0),
    ];
    out.extend(process::round_families(snapshot));
    out
}

/// The families with a `tenant` label, with `tenant`'s samples only (none for `None`:
/// the families' names and help, in output order).
fn tenant_families(snapshot: &Snapshot, config: &Config, tenant: Option<&str>) -> Vec<Family> {
    let observations: Vec<&Observation> = tenant
        .and_then(|t| snapshot.observation(t))
        .into_iter()
        .collect();
    let mut out = views::view_families(&observations);
    out.extend(login::login_families(&observations));
    out.extend(process::duration_families(&snapshot.durations, tenant));
    out.push(verdicts::findings_open(snapshot, tenant));
    out.extend(views::freshness_families(snapshot, config, tenant));
    out.extend(verdicts::gate_families(snapshot, config, tenant));
    out.extend(gate::gate_fact_families(snapshot, tenant));
    // Extension point: families of a tenant that later work feeds from the snapshot go
    // here; process-wide ones in `head_families` or `tail_families`.
    out
}

/// The process's families written after the tenants' ones.
fn tail_families(snapshot: &Snapshot, config: &Config) -> Vec<Family> {
    let mut out = process::notification_families(snapshot, config);
    out.extend(inventory::inventory_families(snapshot, config));
    out
}

#[cfg(test)]
mod tests;
