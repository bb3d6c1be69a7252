//! The fetch and login duration histograms: what one tenant round measured
//! ([`round_durations`], labelled as `/metrics` and OTLP label it) and their accumulation
//! across rounds ([`Durations`], one cumulative [`Histogram`] per label set over
//! [`DURATION_BUCKETS`]), kept in the daemon's snapshot.
//!
//! Depends only on the model: the snapshot holds [`Durations`], and the metric families
//! (`telemetry`) read it. Not here: the families themselves or their encoding
//! (`telemetry::metrics`, `telemetry::exposition`), and OTLP's instruments
//! (`telemetry::otlp_metrics` records the same observations into its own).

use crate::model::{DomainObservation, Observation, ViewKind, ViewObservation};
use std::collections::BTreeMap;

/// A series' labels: names are fixed by the code, values come from the config and the
/// round (bounded and cut where they come from the wire).
pub type Labels = Vec<(&'static str, String)>;
/// Name of the fetch duration histogram (every JWKS view's fetch, by view).
pub const FETCH_DURATION: &str = "keycanary_fetch_duration_seconds";
/// Name of the login duration histogram (every token request, by domain).
pub const LOGIN_DURATION: &str = "keycanary_login_duration_seconds";

/// Upper bounds, in seconds, of the duration histograms' buckets (`+Inf` is implied): the
/// thresholds latency objectives are written against, from a cache hit near the edge
/// (25 ms) to an IdP that is slow (past 2.5 s, `+Inf` only). Six bounds keep a histogram at
/// nine series (`_bucket` × 7, `_sum`, `_count`), which is what lets `/metrics` stay under
/// 10 MB at 10,000 views with one fetch and one login histogram per domain.
pub const DURATION_BUCKETS: [f64; 6] = [0.025, 0.1, 0.25, 0.5, 1.0, 2.5];

/// and count, since it was created. Only ever grows.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// `counts[i]`: observations in `(bounds[i-1], bounds[i]]`; the last entry is
    /// `(bounds[last], +Inf)`. Not cumulative (see [`Histogram::buckets`]).
    counts: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: [0; DURATION_BUCKETS.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    /// Counts `value` (seconds) in the first bucket whose upper bound is at least `value`.
    pub fn observe(&mut self, value: f64) {
        let i = DURATION_BUCKETS
            .iter()
            .position(|&le| value <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// `(le, observations <= le)` for every bound and `+Inf` last, as Prometheus's
    /// `_bucket` series: cumulative, so the `+Inf` bucket equals [`Histogram::count`].
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let bounds = DURATION_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let mut total = 0;
        bounds
            .zip(self.counts)
            .map(|(le, n)| {
                total += n;
                (le, total)
            })
            .collect()
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Which duration histogram an observation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationKind {
    /// A JWKS view's fetch: [`FETCH_DURATION`], *view* labels.
    Fetch,
    /// A token request: [`LOGIN_DURATION`], `tenant, domain, location`.
    Login,
}

/// Every duration a tenant round measured, with the labels of its histogram series:
/// each view's fetch (failed ones too: a timeout is a duration worth seeing) and each
/// domain's token request, when one was sent. `/metrics` ([`Durations`]) and OTLP
/// (`otlp_metrics`) both label from here. Fetches are labelled by domain
/// (`tenant, domain, location`: 14 series per domain) unless `per_view`
/// (`[telemetry] per_view_histograms`), which labels them by view (14 series per view).
pub fn round_durations(obs: &Observation, per_view: bool) -> Vec<(DurationKind, Labels, f64)> {
    let owned = |labels: &[(&'static str, &str)]| -> Labels {
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    };
    let mut out = Vec::new();
    for d in &obs.domains {
        if let Some(f) = d.login.as_ref().and_then(|l| l.fetch.as_ref()) {
            let labels = [
                ("tenant", obs.tenant.as_str()),
                ("domain", d.domain.as_str()),
                ("location", obs.location.as_str()),
            ];
            out.push((DurationKind::Login, owned(&labels), millis(f.duration_ms)));
        }
        let domain = [
            ("tenant", obs.tenant.as_str()),
            ("domain", d.domain.as_str()),
            ("location", obs.location.as_str()),
        ];
        for v in &d.views {
            let labels = if per_view {
                owned(&view_labels(obs, d, v))
            } else {
                owned(&domain)
            };
            out.push((DurationKind::Fetch, labels, millis(v.fetch.duration_ms)));
        }
    }
    out
}

/// Fetch and login durations accumulated over every tenant round since the process
/// started, one [`Histogram`] per label set. The daemon keeps it in its snapshot and
/// [`Durations::observe`]s each round once. Series of a tenant removed by a reload are
/// dropped with it ([`Durations::retain_tenants`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durations {
    pub fetch: BTreeMap<Labels, Histogram>,
    pub login: BTreeMap<Labels, Histogram>,
}

impl Durations {
    /// The fetch and login histograms of `tenant`: a range of each map (every label set
    /// starts with the tenant), so the cost is the tenant's own series.
    pub fn of_tenant<'a>(&'a self, tenant: &'a str) -> [Vec<(&'a Labels, &'a Histogram)>; 2] {
        let start: Labels = vec![("tenant", tenant.to_owned())];
        let of = |map: &'a BTreeMap<Labels, Histogram>| {
            map.range(start.clone()..)
                .take_while(|(labels, _)| {
                    labels
                        .first()
                        .is_some_and(|(k, v)| *k == "tenant" && v == tenant)
                })
                .collect()
        };
        [of(&self.fetch), of(&self.login)]
    }

    /// Drops the series of tenants for which `keep` is false (tenants a reload removed).
    pub fn retain_tenants(&mut self, keep: impl Fn(&str) -> bool) {
        let keep = |labels: &Labels| {
            labels
                .first()
                .is_none_or(|(k, v)| *k != "tenant" || keep(v))
        };
        self.fetch.retain(|labels, _| keep(labels));
        self.login.retain(|labels, _| keep(labels));
    }

    /// Adds one tenant round's durations.
    /// Counts one round's durations (`per_view`: fetches labelled by view, else by domain).
    pub fn observe(&mut self, obs: &Observation, per_view: bool) {
        for (kind, labels, value) in round_durations(obs, per_view) {
            let map = match kind {
                DurationKind::Fetch => &mut self.fetch,
                DurationKind::Login => &mut self.login,
            };
            map.entry(labels).or_default().observe(value);
        }
    }
}

/// The *view* labels of `v`: `tenant, domain, path, edge, kind, location` (`edge` empty
/// for a view without a pinned edge). Every per-view series uses them.
pub fn view_labels<'a>(
    obs: &'a Observation,
    d: &'a DomainObservation,
    v: &'a ViewObservation,
) -> [(&'static str, &'a str); 6] {
    [
        ("tenant", obs.tenant.as_str()),
        ("domain", d.domain.as_str()),
        ("path", v.id.path.as_str()),
        ("edge", v.id.edge.as_deref().unwrap_or("")),
        ("kind", kind_str(v.kind)),
        ("location", obs.location.as_str()),
    ]
}

fn kind_str(k: ViewKind) -> &'static str {
    match k {
        ViewKind::Edge => "edge",
        ViewKind::Origin => "origin",
    }
}

/// A measured duration in seconds.
fn millis(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_is_the_count() {
        /// Observations, `(le, cumulative count)` of some buckets, and the sum.
        type Row = (&'static [f64], &'static [(f64, u64)], f64);
        let table: &[Row] = &[
            (&[], &[(0.025, 0), (1.0, 0), (f64::INFINITY, 0)], 0.0),
            // A value on a bound counts in that bucket (le is "less or equal").
            (&[0.025], &[(0.025, 1), (0.1, 1), (f64::INFINITY, 1)], 0.025),
            (
                &[0.003, 0.2, 0.2, 0.7, 3.0],
                &[
                    (0.025, 1),
                    (0.1, 1),
                    (0.25, 3),
                    (0.5, 3),
                    (1.0, 4),
                    (2.5, 4),
                    (f64::INFINITY, 5),
                ],
                4.103,
            ),
            // Beyond the last bound: only +Inf has it.
            (
                &[0.01, 42.0],
                &[(0.025, 1), (2.5, 1), (f64::INFINITY, 2)],
                42.01,
            ),
        ];
        for (values, want, sum) in table {
            let mut h = Histogram::default();
            for v in *values {
                h.observe(*v);
            }
            let buckets = h.buckets();
            assert_eq!(buckets.len(), DURATION_BUCKETS.len() + 1);
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{values:?}: {buckets:?}"
            );
            assert_eq!(buckets.last(), Some(&(f64::INFINITY, h.count())));
            assert_eq!(h.count(), values.len() as u64);
            assert!((h.sum() - sum).abs() < 1e-9, "{values:?}: {}", h.sum());
            for (le, n) in *want {
                let got = buckets.iter().find(|b| b.0 == *le).unwrap().1;
                assert_eq!(got, *n, "{values:?}: le={le}");
            }
        }
    }
}
