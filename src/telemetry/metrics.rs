//! Prometheus metrics, rendered from the daemon's [`Snapshot`] on every scrape.
//!
//! [`render`] is pure: snapshot, config and build facts in, exposition text out. Nothing
//! here counts events as they happen; every value is read from the latest round (gauges)
//! or from what the snapshot accumulates across rounds: counters (`rounds`) and the fetch
//! and login duration histograms ([`Durations`], observed by the daemon once per tenant
//! round).
//!
//! The output is the Prometheus text format 0.0.4 from a small encoder here, not
//! OpenMetrics: `promtool check metrics` (Prometheus 2.42) parses only the former and
//! refuses OpenMetrics `info` families and `_total` counter samples.
//!
//! Label sets are bounded by the configuration: tenants, domains, paths, edges, location,
//! finding codes, client profile names, and at most [`MAX_KIDS_PER_DOMAIN`] kids per domain
//! (the signer's plus the origin view's, each cut to [`MAX_LABEL_LEN`] bytes). No URL or
//! token ever becomes a label. The families and labels are documented in README.md
//! ("Metrics").

use crate::config::Config;
use crate::detect::freshness::view_freshness;
use crate::detect::gate::{rotation_gate, view_budget};
use crate::detect::profiles::Budget;
use crate::model::{
    Code, DomainObservation, FetchOutcome, LoginResult, Observation, Timestamp, TokenCheckResult,
    ViewKind, ViewObservation,
};
use crate::snapshot::Snapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// Name of the fetch duration histogram (every JWKS view's fetch, by view).
pub const FETCH_DURATION: &str = "keycanary_fetch_duration_seconds";
/// Name of the login duration histogram (every token request, by domain).
pub const LOGIN_DURATION: &str = "keycanary_login_duration_seconds";

/// Upper bounds, in seconds, of the duration histograms' buckets (`+Inf` is implied):
/// from a fast local answer to the longest `timeout` worth waiting for.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One metric family: name, type, help, and its samples in output order. Gauges and
/// counters have `samples`; histograms have `histograms` (one per label set), which the
/// encoder writes as `_bucket`, `_sum` and `_count` series.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
    pub samples: Vec<Sample>,
    pub histograms: Vec<HistogramSample>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// Labels of one series, in output order.
pub type Labels = Vec<(&'static str, String)>;

/// One label set of a histogram family.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    pub labels: Labels,
    pub histogram: Histogram,
}

/// A cumulative histogram over [`DURATION_BUCKETS`]: observations per bucket, their sum
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
/// (`otlp_metrics`) both label from here.
pub fn round_durations(obs: &Observation) -> Vec<(DurationKind, Labels, f64)> {
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
        for v in &d.views {
            let labels = view_labels(obs, d, v);
            out.push((
                DurationKind::Fetch,
                owned(&labels),
                millis(v.fetch.duration_ms),
            ));
        }
    }
    out
}

/// Fetch and login durations accumulated over every tenant round since the process
/// started, one [`Histogram`] per label set. The daemon keeps it in its snapshot and
/// [`Durations::observe`]s each round once. Series of a tenant removed by a reload keep
/// their counts (counters never go back) until the process restarts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durations {
    pub fetch: BTreeMap<Labels, Histogram>,
    pub login: BTreeMap<Labels, Histogram>,
}

impl Durations {
    /// Adds one tenant round's durations.
    pub fn observe(&mut self, obs: &Observation) {
        for (kind, labels, value) in round_durations(obs) {
            let map = match kind {
                DurationKind::Fetch => &mut self.fetch,
                DurationKind::Login => &mut self.login,
            };
            map.entry(labels).or_default().observe(value);
        }
    }
}

impl Family {
    pub fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind: MetricType::Gauge,
            help,
            samples: Vec::new(),
            histograms: Vec::new(),
        }
    }
    pub fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            kind: MetricType::Counter,
            ..Family::gauge(name, help)
        }
    }
    pub fn histogram(name: &'static str, help: &'static str) -> Family {
        Family {
            kind: MetricType::Histogram,
            ..Family::gauge(name, help)
        }
    }
    pub fn push(&mut self, labels: &[(&'static str, &str)], value: f64) {
        self.samples.push(Sample {
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
        });
    }
    fn with(mut self, labels: &[(&'static str, &str)], value: f64) -> Family {
        self.push(labels, value);
        self
    }
}

/// The `/metrics` body for this snapshot, with the time-based gate conditions evaluated
/// at the end of the latest round (see [`render_at`]).
pub fn render(snapshot: &Snapshot, config: &Config, build: BuildInfo) -> String {
    let now = snapshot.last_round_finished.unwrap_or(Timestamp(0));
    render_at(snapshot, config, build, now)
}

/// The `/metrics` body for this snapshot, with the rotation gate evaluated at `now` (the
/// scrape time: "healthy right now").
pub fn render_at(snapshot: &Snapshot, config: &Config, build: BuildInfo, now: Timestamp) -> String {
    encode(&families(snapshot, config, build, now))
}

/// Every family, in output order. Families are emitted (HELP and TYPE) even when they
/// have no samples yet, so dashboards and `absent()` alerts see them from the start.
pub fn families(
    snapshot: &Snapshot,
    config: &Config,
    build: BuildInfo,
    now: Timestamp,
) -> Vec<Family> {
    let mut out = vec![
        Family::gauge(
            "keycanary_build_info",
            "Build facts of this keycanary as labels; the value is always 1.",
        )
        .with(&[("version", build.version)], 1.0),
    ];
    out.extend(round_families(snapshot));
    out.extend(view_families(&snapshot.observations));
    out.extend(login_families(&snapshot.observations));
    out.extend(duration_families(&snapshot.durations));
    out.push(findings_open(snapshot, config));
    out.extend(freshness_families(snapshot, config));
    out.extend(gate_families(snapshot, config, now));
    out.extend(notification_families(snapshot, config));
    // Extension point: families that later work feeds from the snapshot go here, each
    // from its own function of the snapshot.
    out
}

/// The outbox as the latest commit left it, and the notifier's sends since the process
/// started: every configured channel gets all three results (zeros included); channels
/// removed by a reload keep the counts they had.
fn notification_families(s: &Snapshot, config: &Config) -> Vec<Family> {
    let mut depth = Family::gauge(
        "keycanary_outbox_depth",
        "Alert notifications waiting in the outbox to be sent (not dead), after the latest commit.",
    );
    let mut dead = Family::gauge(
        "keycanary_notifications_dead",
        "Dead letters in the outbox: notifications a receiver refused for good, after the latest commit.",
    );
    if let Some(n) = s.store.outbox_depth {
        depth.push(&[], n as f64);
    }
    if let Some(n) = s.store.dead_letters {
        dead.push(&[], n as f64);
    }
    let mut total = Family::counter(
        "keycanary_notifications_total",
        "Notification sends since this process started, by channel and result (sent, retried, dead).",
    );
    let mut counts: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for c in &config.alerting.channels {
        for r in crate::notify::RESULTS {
            counts.insert((c.name.clone(), r), 0);
        }
    }
    for ((channel, result), n) in s.deliveries.counts() {
        for r in crate::notify::RESULTS {
            counts.entry((channel.clone(), r)).or_default();
        }
        counts.insert((channel, result), n);
    }
    for ((channel, result), n) in &counts {
        total.push(&[("channel", channel), ("result", result)], *n as f64);
    }
    vec![depth, dead, total]
}

/// The fetch and login duration histograms, as accumulated in the snapshot.
fn duration_families(d: &Durations) -> Vec<Family> {
    let family = |name, help, map: &BTreeMap<Labels, Histogram>| {
        let mut f = Family::histogram(name, help);
        f.histograms = map
            .iter()
            .map(|(labels, h)| HistogramSample {
                labels: labels.clone(),
                histogram: h.clone(),
            })
            .collect();
        f
    };
    vec![
        family(
            FETCH_DURATION,
            "Duration of the view's JWKS fetches since this process started (failed ones included).",
            &d.fetch,
        ),
        family(
            LOGIN_DURATION,
            "Duration of the domain's token requests since this process started (failed ones included).",
            &d.login,
        ),
    ]
}

/// The *view* labels of `v`.
fn view_labels<'a>(
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

/// Cache lifetime left on edge views, and each view's staleness budget S exactly as the
/// rotation gate computes it (from the history's latest answer and the tenant's client
/// profiles). A view whose S is unbounded gets an `_unbounded` sample instead.
fn freshness_families(s: &Snapshot, config: &Config) -> Vec<Family> {
    let mut remaining = Family::gauge(
        "keycanary_view_edge_ttl_remaining_seconds",
        "Cache lifetime the edge view's latest answer had left when served (edge views with a declared lifetime only).",
    );
    let mut budget = Family::gauge(
        "keycanary_view_staleness_budget_seconds",
        "Staleness budget S of the view as the rotation gate computes it (absent when unbounded).",
    );
    let mut unbounded = Family::gauge(
        "keycanary_view_staleness_budget_unbounded",
        "1 when the view's staleness budget is unbounded because of the named client profile.",
    );
    for obs in &s.observations {
        let tenant = config.tenant(&obs.tenant);
        let profiles = tenant.map(|t| config.tenant_profiles(t));
        let history = s.history.tenant(&obs.tenant);
        for d in &obs.domains {
            for v in &d.views {
                let labels = view_labels(obs, d, v);
                if v.kind == ViewKind::Edge
                    && let Some(left) = view_freshness(v).and_then(|f| f.remaining)
                {
                    remaining.push(&labels, left.as_secs_f64());
                }
                let (Some(h), Some(profiles)) = (history, &profiles) else {
                    continue;
                };
                match view_budget(h, &d.domain, &v.id, profiles) {
                    Budget::Bounded(b) => budget.push(&labels, b.as_secs_f64()),
                    Budget::Unbounded { profile } => {
                        let mut with_profile = labels.to_vec();
                        with_profile.push(("profile", profile.as_str()));
                        unbounded.push(&with_profile, 1.0);
                    }
                }
            }
        }
    }
    vec![remaining, budget, unbounded]
}

/// The rotation gate for each configured tenant's current signer ("healthy right now"),
/// evaluated at `now`; no samples before the first round.
fn gate_families(s: &Snapshot, config: &Config, now: Timestamp) -> Vec<Family> {
    let mut safe = Family::gauge(
        "keycanary_gate_safe",
        "1 when the rotation gate passes for the tenant's current signer (healthy right now), else 0.",
    );
    let mut blockers = Family::gauge(
        "keycanary_gate_blockers",
        "Blocking conditions of the rotation gate for the tenant's current signer.",
    );
    if s.rounds > 0 {
        for t in &config.tenants {
            let latest = s.observations.iter().find(|o| o.tenant == t.name);
            let answer = rotation_gate(config, &s.history, latest, &s.findings, &t.name, None, now);
            let labels = [("tenant", t.name.as_str())];
            safe.push(&labels, if answer.safe { 1.0 } else { 0.0 });
            blockers.push(&labels, answer.blocking.len() as f64);
        }
    }
    vec![safe, blockers]
}

/// A measured duration in seconds.
fn millis(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn round_families(s: &Snapshot) -> Vec<Family> {
    let rounds = Family::counter(
        "keycanary_rounds_total",
        "Probe rounds completed since this process started.",
    )
    .with(&[], s.rounds as f64);
    let mut duration = Family::gauge(
        "keycanary_round_duration_seconds",
        "Wall-clock duration of the latest probe round.",
    );
    let mut last = Family::gauge(
        "keycanary_last_round_timestamp_seconds",
        "Unix time at which the latest probe round finished.",
    );
    if let (Some(start), Some(end)) = (s.last_round_started, s.last_round_finished) {
        duration.push(&[], secs(end.0 - start.0).max(0.0));
        last.push(&[], secs(end.0));
    }
    vec![rounds, duration, last]
}

/// The kids exported for one domain: the signer's (from this round's tokens) first, then
/// those the origin view serves; deduplicated, capped, cut to [`MAX_LABEL_LEN`].
fn watched_kids(d: &DomainObservation) -> Vec<String> {
    let signer = d.tokens().iter().filter_map(|t| t.header.kid.as_deref());
    let origin = d
        .views
        .iter()
        .filter(|v| v.kind == ViewKind::Origin)
        .flat_map(|v| v.keys())
        .filter_map(|k| k.kid.as_deref());
    let mut seen = BTreeSet::new();
    signer
        .chain(origin)
        .map(cut)
        .filter(|k| seen.insert(k.clone()))
        .take(MAX_KIDS_PER_DOMAIN)
        .collect()
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_LABEL_LEN {
        return s.to_owned();
    }
    let mut end = MAX_LABEL_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn kind_str(k: ViewKind) -> &'static str {
    match k {
        ViewKind::Edge => "edge",
        ViewKind::Origin => "origin",
    }
}

fn view_up(v: &ViewObservation) -> bool {
    let ok_status = v
        .fetch
        .response()
        .is_some_and(|r| (200..300).contains(&r.status));
    ok_status && !v.keys().is_empty()
}

fn view_families(observations: &[Observation]) -> Vec<Family> {
    let mut up = Family::gauge(
        "keycanary_view_up",
        "1 when the JWKS view answered 2xx with at least one key in the latest round, else 0.",
    );
    let mut kid_present = Family::gauge(
        "keycanary_view_kid_present",
        "1 when the view serves the kid, else 0; kids are the signer's and the origin view's (bounded).",
    );
    let mut age = Family::gauge(
        "keycanary_view_age_seconds",
        "Age response header of the view in the latest round (absent when not sent).",
    );
    for obs in observations {
        for d in &obs.domains {
            let kids = watched_kids(d);
            for v in &d.views {
                let labels = view_labels(obs, d, v);
                up.push(&labels, if view_up(v) { 1.0 } else { 0.0 });
                if let FetchOutcome::Response(r) = &v.fetch.outcome
                    && let Some(a) = r.headers.age
                {
                    age.push(&labels, a as f64);
                }
                let served: BTreeSet<String> = v
                    .keys()
                    .iter()
                    .filter_map(|k| k.kid.as_deref())
                    .map(cut)
                    .collect();
                for kid in &kids {
                    let mut with_kid = labels.to_vec();
                    with_kid.push(("kid", kid.as_str()));
                    let present = served.contains(kid);
                    kid_present.push(&with_kid, if present { 1.0 } else { 0.0 });
                }
            }
        }
    }
    vec![up, kid_present, age]
}

const RESULTS: [&str; 5] = [
    "verified",
    "kid_missing",
    "signature_invalid",
    "key_unusable",
    "view_unavailable",
];

fn result_str(r: &TokenCheckResult) -> &'static str {
    match r {
        TokenCheckResult::Verified => RESULTS[0],
        TokenCheckResult::KidMissing => RESULTS[1],
        TokenCheckResult::SignatureInvalid { .. } => RESULTS[2],
        TokenCheckResult::KeyUnusable { .. } => RESULTS[3],
        TokenCheckResult::ViewUnavailable => RESULTS[4],
    }
}

fn login_families(observations: &[Observation]) -> Vec<Family> {
    let mut up = Family::gauge(
        "keycanary_login_up",
        "1 when the latest login on the domain returned tokens, else 0 (absent without a login).",
    );
    let mut verifications = Family::gauge(
        "keycanary_token_verifications",
        "Fresh tokens verified against the view in the latest round, by result.",
    );
    let mut signing = Family::gauge(
        "keycanary_signing_kid_info",
        "The kid that signed the domain's tokens in the latest round; the value is always 1.",
    );
    for obs in observations {
        for d in &obs.domains {
            let td = [
                ("tenant", obs.tenant.as_str()),
                ("domain", d.domain.as_str()),
            ];
            let Some(login) = &d.login else { continue };
            let ok = matches!(login.result, LoginResult::Tokens { .. });
            up.push(&td, if ok { 1.0 } else { 0.0 });
            // Every edge view gets all results, zeros included, once a token was issued.
            let mut counts: BTreeMap<(String, String, &str), u32> = BTreeMap::new();
            if !d.tokens().is_empty() {
                for v in &d.views {
                    for r in RESULTS {
                        let edge = v.id.edge.clone().unwrap_or_default();
                        counts.insert((v.id.path.clone(), edge, r), 0);
                    }
                }
            }
            let mut signers = BTreeSet::new();
            for t in d.tokens() {
                if let Some(kid) = &t.header.kid {
                    signers.insert(cut(kid));
                }
                for c in &t.checks {
                    let edge = c.view.edge.clone().unwrap_or_default();
                    *counts
                        .entry((c.view.path.clone(), edge, result_str(&c.result)))
                        .or_default() += 1;
                }
            }
            for ((path, edge, result), n) in &counts {
                let labels = [
                    td[0],
                    td[1],
                    ("path", path),
                    ("edge", edge),
                    ("result", result),
                ];
                verifications.push(&labels, f64::from(*n));
            }
            for kid in signers.iter().take(MAX_KIDS_PER_DOMAIN) {
                signing.push(&[td[0], td[1], ("kid", kid)], 1.0);
            }
        }
    }
    vec![up, verifications, signing]
}

/// Open findings per tenant and code; every code of every configured tenant is present
/// (zero when closed) so alerts need no `absent()`.
fn findings_open(s: &Snapshot, config: &Config) -> Family {
    let mut family = Family::gauge(
        "keycanary_findings_open",
        "Findings open after the latest round, by tenant, code and severity.",
    );
    let mut counts: BTreeMap<(&str, Code), u32> = BTreeMap::new();
    for t in &config.tenants {
        for &code in Code::ALL {
            counts.insert((t.name.as_str(), code), 0);
        }
    }
    for f in &s.findings {
        *counts
            .entry((f.subject.tenant.as_str(), f.code))
            .or_default() += 1;
    }
    for ((tenant, code), n) in counts {
        let labels = [
            ("tenant", tenant),
            ("code", code.as_str()),
            ("severity", code.severity().as_str()),
        ];
        family.push(&labels, f64::from(n));
    }
    family
}

/// The Prometheus text format 0.0.4 of `families`.
pub fn encode(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
        for s in &f.samples {
            series(&mut out, f.name, "", &s.labels, None, s.value);
        }
        for h in &f.histograms {
            for (le, n) in h.histogram.buckets() {
                let le = number(le);
                series(&mut out, f.name, "_bucket", &h.labels, Some(&le), n as f64);
            }
            series(&mut out, f.name, "_sum", &h.labels, None, h.histogram.sum());
            let count = h.histogram.count() as f64;
            series(&mut out, f.name, "_count", &h.labels, None, count);
        }
    }
    out
}

/// One sample line: `name+suffix{labels[,le]} value`.
fn series(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&'static str, String)],
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let le = le.map(|le| ("le", le));
    let all = labels.iter().map(|(k, v)| (*k, v.as_str())).chain(le);
    for (i, (k, v)) in all.enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
    }
    if !labels.is_empty() || le.is_some() {
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::fixtures::{config, incident, view};

    fn check(body: &str, line: &str) {
        assert!(
            body.lines().any(|l| l == line),
            "missing line `{line}` in:\n{body}"
        );
    }

    #[test]
    fn seed_incident_as_metrics() {
        let body = render(&incident(), &config(), BuildInfo { version: "9.9.9" });
        let v = r#"tenant="acme",domain="io",path="cdn",edge="",kind="edge",location="lab""#;
        for line in [
            r#"keycanary_build_info{version="9.9.9"} 1"#.to_owned(),
            "keycanary_rounds_total 1".into(),
            "keycanary_round_duration_seconds 1.5".into(),
            "keycanary_last_round_timestamp_seconds 2.5".into(),
            format!("keycanary_view_up{{{v}}} 1"),
            format!(r#"keycanary_view_kid_present{{{v},kid="k2"}} 0"#),
            format!(r#"keycanary_view_kid_present{{{v},kid="k1"}} 1"#),
            format!("keycanary_view_age_seconds{{{v}}} 42"),
            format!(r#"keycanary_fetch_duration_seconds_bucket{{{v},le="0.1"}} 0"#),
            format!(r#"keycanary_fetch_duration_seconds_bucket{{{v},le="0.25"}} 1"#),
            format!(r#"keycanary_fetch_duration_seconds_bucket{{{v},le="+Inf"}} 1"#),
            format!("keycanary_fetch_duration_seconds_sum{{{v}}} 0.25"),
            format!("keycanary_fetch_duration_seconds_count{{{v}}} 1"),
            r#"keycanary_login_duration_seconds_bucket{tenant="acme",domain="io",location="lab",le="0.1"} 0"#.into(),
            r#"keycanary_login_duration_seconds_bucket{tenant="acme",domain="io",location="lab",le="0.25"} 1"#.into(),
            r#"keycanary_login_duration_seconds_sum{tenant="acme",domain="io",location="lab"} 0.12"#.into(),
            r#"keycanary_login_duration_seconds_count{tenant="acme",domain="io",location="lab"} 1"#.into(),
            "# TYPE keycanary_fetch_duration_seconds histogram".into(),
            "# TYPE keycanary_login_duration_seconds histogram".into(),
            r#"keycanary_login_up{tenant="acme",domain="io"} 1"#.into(),
            r#"keycanary_token_verifications{tenant="acme",domain="io",path="cdn",edge="",result="kid_missing"} 1"#.into(),
            r#"keycanary_token_verifications{tenant="acme",domain="io",path="cdn",edge="",result="verified"} 0"#.into(),
            r#"keycanary_token_verifications{tenant="acme",domain="io",path="origin",edge="",result="verified"} 1"#.into(),
            r#"keycanary_signing_kid_info{tenant="acme",domain="io",kid="k2"} 1"#.into(),
            r#"keycanary_findings_open{tenant="acme",code="kid_missing",severity="critical"} 1"#.into(),
            r#"keycanary_findings_open{tenant="acme",code="stale_edge",severity="high"} 0"#.into(),
        ] {
            check(&body, &line);
        }
        // The origin view sends no Age: no sample rather than a made-up zero.
        assert!(
            !body.contains(r#"keycanary_view_age_seconds{tenant="acme",domain="io",path="origin""#)
        );
    }

    #[test]
    fn every_family_has_help_and_type_and_no_duplicate_series() {
        let body = render(&incident(), &config(), BuildInfo::current());
        let mut helped = BTreeSet::new();
        let mut histograms = BTreeSet::new();
        let mut series = BTreeSet::new();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.insert(rest.split(' ').next().unwrap().to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helped.contains(name), "TYPE before HELP for {name}");
                if kind == "histogram" {
                    histograms.insert(name.to_owned());
                }
            } else {
                let (id, _) = line.rsplit_once(' ').unwrap();
                let series_name = id.split('{').next().unwrap();
                // A histogram's series are its family's name plus a suffix.
                let name = ["_bucket", "_sum", "_count"]
                    .iter()
                    .filter_map(|s| series_name.strip_suffix(s))
                    .find(|base| histograms.contains(*base))
                    .unwrap_or(series_name);
                assert!(helped.contains(name), "no HELP for {name}");
                assert!(name.starts_with("keycanary_"), "{name}");
                assert!(series.insert(id.to_owned()), "duplicate series {id}");
            }
        }
    }

    #[test]
    fn before_the_first_round_families_are_there_without_samples() {
        let body = render(&Snapshot::default(), &config(), BuildInfo::current());
        check(&body, "keycanary_rounds_total 0");
        check(&body, "# TYPE keycanary_view_up gauge");
        assert!(
            !body
                .lines()
                .any(|l| l.starts_with("keycanary_round_duration_seconds")),
            "{body}"
        );
    }

    #[test]
    fn kids_from_the_wire_are_bounded_and_escaped() {
        let mut s = incident();
        let d = &mut s.observations[0].domains[0];
        let many: Vec<String> = (0..50)
            .map(|i| format!("k{i}\"\\\n{}", "x".repeat(300)))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        d.views[1] = view("origin", ViewKind::Origin, None, &refs);
        let body = render(&s, &config(), BuildInfo::current());
        let present = body
            .lines()
            .filter(|l| l.starts_with("keycanary_view_kid_present{") && l.contains("path=\"cdn\""))
            .count();
        assert_eq!(present, MAX_KIDS_PER_DOMAIN);
        assert!(body.contains(r#"kid="k0\"\\\nxxx"#), "{body}");
        assert!(body.lines().all(|l| l.len() < 600));
    }

    /// The incident with its observation recorded in the history (as the daemon does) and
    /// the cdn edge sending caching headers.
    fn incident_with_history() -> Snapshot {
        let mut s = incident();
        let cdn = &mut s.observations[0].domains[0].views[0];
        if let FetchOutcome::Response(r) = &mut cdn.fetch.outcome {
            r.headers.cache_control = Some("public, max-age=300".into());
        }
        let mut history = crate::detect::history::History::default();
        history.record(&s.observations[0], Timestamp(2_000));
        s.history = std::sync::Arc::new(history);
        s
    }

    const CDN: &str = r#"tenant="acme",domain="io",path="cdn",edge="",kind="edge",location="lab""#;
    const ORIGIN: &str =
        r#"tenant="acme",domain="io",path="origin",edge="",kind="origin",location="lab""#;

    #[test]
    fn edge_ttl_remaining_only_for_edges_with_a_declared_lifetime() {
        let cfg = config();
        let body = render(&incident_with_history(), &cfg, BuildInfo::current());
        // max-age=300 with Age: 42.
        check(
            &body,
            &format!("keycanary_view_edge_ttl_remaining_seconds{{{CDN}}} 258"),
        );
        assert!(
            !body.contains(&format!(
                "keycanary_view_edge_ttl_remaining_seconds{{{ORIGIN}}}"
            )),
            "{body}"
        );
        // Without caching headers the edge declares no lifetime: no sample.
        let body = render(&incident(), &cfg, BuildInfo::current());
        check(
            &body,
            "# TYPE keycanary_view_edge_ttl_remaining_seconds gauge",
        );
        assert!(
            !body
                .lines()
                .any(|l| l.starts_with("keycanary_view_edge_ttl_remaining_seconds{")),
            "{body}"
        );
    }

    #[test]
    fn staleness_budget_is_the_gates() {
        let cfg = config();
        let s = incident_with_history();
        let body = render(&s, &cfg, BuildInfo::current());
        let h = s.history.tenant("acme").unwrap();
        let t = cfg.tenant("acme").unwrap();
        let profiles = cfg.tenant_profiles(t);
        for (labels, view) in [
            (CDN, &s.observations[0].domains[0].views[0]),
            (ORIGIN, &s.observations[0].domains[0].views[1]),
        ] {
            let Budget::Bounded(want) = view_budget(h, "io", &view.id, &profiles) else {
                panic!("the default profiles are bounded");
            };
            check(
                &body,
                &format!(
                    "keycanary_view_staleness_budget_seconds{{{labels}}} {}",
                    number(want.as_secs_f64())
                ),
            );
        }
        // The edge's cached lifetime counts towards its S, not the origin's.
        let value = |labels: &str| -> f64 {
            let prefix = format!("keycanary_view_staleness_budget_seconds{{{labels}}} ");
            body.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(value(CDN) > value(ORIGIN), "{body}");
        check(
            &body,
            "# TYPE keycanary_view_staleness_budget_unbounded gauge",
        );
        assert!(!body.contains("keycanary_view_staleness_budget_unbounded{"));
    }

    #[test]
    fn unbounded_staleness_budget_has_its_own_family() {
        let text = r#"
[[profile]]
name = "forever"
refetch_on_unknown_kid = false
[[tenant]]
name = "acme"
client_profiles = ["forever"]
[[tenant.domain]]
name = "io"
issuer = "https://idp.example/io/acme"
[tenant.domain.login]
client_id = "c"
client_secret = { env = "S" }
[[tenant.domain.jwks]]
name = "cdn"
"#;
        let env = |name: &str| (name == "S").then(|| "x".to_owned());
        let cfg = Config::from_toml_str(
            text,
            "t.toml",
            &crate::config::SecretSource {
                base_dir: std::path::Path::new("."),
                env: &env,
            },
        )
        .unwrap();
        let body = render(&incident_with_history(), &cfg, BuildInfo::current());
        for labels in [CDN, ORIGIN] {
            check(
                &body,
                &format!(
                    r#"keycanary_view_staleness_budget_unbounded{{{labels},profile="forever"}} 1"#
                ),
            );
        }
        assert!(
            !body
                .lines()
                .any(|l| l.starts_with("keycanary_view_staleness_budget_seconds{")),
            "{body}"
        );
    }

    #[test]
    fn rotation_gate_for_the_current_signer() {
        let cfg = config();
        let s = incident_with_history();
        let now = Timestamp(2_500);
        let want = rotation_gate(
            &cfg,
            &s.history,
            Some(&s.observations[0]),
            &s.findings,
            "acme",
            None,
            now,
        );
        assert!(!want.safe, "k2 is missing on the cdn edge");
        let body = render_at(&s, &cfg, BuildInfo::current(), now);
        check(&body, r#"keycanary_gate_safe{tenant="acme"} 0"#);
        check(
            &body,
            &format!(
                r#"keycanary_gate_blockers{{tenant="acme"}} {}"#,
                want.blocking.len()
            ),
        );
        assert!(!want.blocking.is_empty());
        // A healthy tenant: every view serves the signer, nothing open, settled for long.
        let mut healthy = s.clone();
        healthy.findings.clear();
        healthy.observations[0].domains[0].views[0] =
            view("cdn", ViewKind::Edge, None, &["k1", "k2"]);
        let mut history = crate::detect::history::History::default();
        history.record(&healthy.observations[0], Timestamp(2_000));
        healthy.history = std::sync::Arc::new(history);
        let later = Timestamp(2_000 + 30 * 86_400_000);
        let answer = rotation_gate(
            &cfg,
            &healthy.history,
            Some(&healthy.observations[0]),
            &[],
            "acme",
            None,
            later,
        );
        assert!(answer.safe, "{answer:?}");
        let body = render_at(&healthy, &cfg, BuildInfo::current(), later);
        check(&body, r#"keycanary_gate_safe{tenant="acme"} 1"#);
        check(&body, r#"keycanary_gate_blockers{tenant="acme"} 0"#);
    }

    #[test]
    fn no_gate_samples_before_the_first_round() {
        let body = render(&Snapshot::default(), &config(), BuildInfo::current());
        check(&body, "# TYPE keycanary_gate_safe gauge");
        check(&body, "# TYPE keycanary_gate_blockers gauge");
        assert!(
            !body.lines().any(|l| l.starts_with("keycanary_gate_")),
            "{body}"
        );
    }

    #[test]
    fn outbox_and_notification_counts() {
        let cfg = Config::from_toml_str(
            r#"
[[tenant]]
name = "acme"
[[tenant.domain]]
name = "io"
issuer = "https://idp.example/io/acme"
[[tenant.domain.jwks]]
name = "cdn"
[alerting]
[[alerting.channel]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[alerting.route]]
channels = ["hook"]
"#,
            "t.toml",
            &crate::config::SecretSource {
                base_dir: std::path::Path::new("."),
                env: &|_: &str| None,
            },
        )
        .unwrap();
        // Before the first commit: the families, no outbox samples, zero counters.
        let body = render(&Snapshot::default(), &cfg, BuildInfo::current());
        check(&body, "# TYPE keycanary_outbox_depth gauge");
        check(&body, "# TYPE keycanary_notifications_dead gauge");
        check(&body, "# TYPE keycanary_notifications_total counter");
        assert!(
            !body
                .lines()
                .any(|l| l.starts_with("keycanary_outbox_depth "))
        );
        for r in ["sent", "retried", "dead"] {
            check(
                &body,
                &format!(r#"keycanary_notifications_total{{channel="hook",result="{r}"}} 0"#),
            );
        }
        let mut s = Snapshot::default();
        s.store.outbox_depth = Some(3);
        s.store.dead_letters = Some(1);
        s.deliveries.add("hook", "sent");
        s.deliveries.add("hook", "sent");
        s.deliveries.add("old", "dead");
        let body = render(&s, &cfg, BuildInfo::current());
        check(&body, "keycanary_outbox_depth 3");
        check(&body, "keycanary_notifications_dead 1");
        check(
            &body,
            r#"keycanary_notifications_total{channel="hook",result="sent"} 2"#,
        );
        check(
            &body,
            r#"keycanary_notifications_total{channel="hook",result="dead"} 0"#,
        );
        // A channel removed by a reload keeps its counts.
        check(
            &body,
            r#"keycanary_notifications_total{channel="old",result="dead"} 1"#,
        );
        check(
            &body,
            r#"keycanary_notifications_total{channel="old",result="sent"} 0"#,
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_is_the_count() {
        /// Observations, `(le, cumulative count)` of some buckets, and the sum.
        type Row = (&'static [f64], &'static [(f64, u64)], f64);
        let table: &[Row] = &[
            (&[], &[(0.005, 0), (1.0, 0), (f64::INFINITY, 0)], 0.0),
            // A value on a bound counts in that bucket (le is "less or equal").
            (
                &[0.005],
                &[(0.005, 1), (0.01, 1), (f64::INFINITY, 1)],
                0.005,
            ),
            (
                &[0.003, 0.2, 0.2, 0.7, 3.0],
                &[
                    (0.005, 1),
                    (0.1, 1),
                    (0.25, 3),
                    (0.5, 3),
                    (1.0, 4),
                    (2.5, 4),
                    (5.0, 5),
                    (10.0, 5),
                    (f64::INFINITY, 5),
                ],
                4.103,
            ),
            // Beyond the last bound: only +Inf has it.
            (
                &[0.01, 42.0],
                &[(0.01, 1), (10.0, 1), (f64::INFINITY, 2)],
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

    /// `(le, value)` of the `_bucket` lines of `name` for the series with `labels`, in
    /// output order, plus its `_sum` and `_count`.
    fn histogram_lines(body: &str, name: &str, labels: &str) -> (Vec<(String, f64)>, f64, f64) {
        let bucket = format!("{name}_bucket{{{labels},le=\"");
        let buckets = body
            .lines()
            .filter_map(|l| l.strip_prefix(&bucket))
            .map(|rest| {
                let (le, value) = rest.split_once("\"} ").unwrap();
                (le.to_owned(), value.parse().unwrap())
            })
            .collect();
        let single = |suffix: &str| -> f64 {
            let prefix = format!("{name}{suffix}{{{labels}}} ");
            body.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in:\n{body}"))
                .parse()
                .unwrap()
        };
        (buckets, single("_sum"), single("_count"))
    }

    #[test]
    fn duration_histograms_accumulate_across_rounds() {
        // Three rounds of the incident: the io edge fetch takes 250 ms, 30 ms, then 12 s
        // (the origin and the login keep their durations).
        let mut s = incident();
        let obs = s.observations[0].clone();
        for ms in [30, 12_000] {
            let mut o = obs.clone();
            o.domains[0].views[0].fetch.duration_ms = ms;
            s.durations.observe(&o);
        }
        let body = render(&s, &config(), BuildInfo::current());
        let (buckets, sum, count) = histogram_lines(&body, FETCH_DURATION, CDN);
        let want: Vec<(String, f64)> = [
            ("0.005", 0.0),
            ("0.01", 0.0),
            ("0.025", 0.0),
            ("0.05", 1.0),
            ("0.1", 1.0),
            ("0.25", 2.0),
            ("0.5", 2.0),
            ("1", 2.0),
            ("2.5", 2.0),
            ("5", 2.0),
            ("10", 2.0),
            ("+Inf", 3.0),
        ]
        .iter()
        .map(|(le, n)| (le.to_string(), *n))
        .collect();
        assert_eq!(buckets, want, "{body}");
        assert_eq!(count, 3.0);
        assert!((sum - 12.28).abs() < 1e-9, "{sum}");
        let (buckets, sum, count) = histogram_lines(&body, FETCH_DURATION, ORIGIN);
        assert_eq!(buckets.last().unwrap(), &("+Inf".to_owned(), 3.0));
        assert_eq!((sum, count), (0.75, 3.0));
        let login = r#"tenant="acme",domain="io",location="lab""#;
        let (buckets, _, count) = histogram_lines(&body, LOGIN_DURATION, login);
        assert_eq!(buckets.last().unwrap().1, count);
        assert_eq!(count, 3.0);
        // A fresh snapshot after the incident's round keeps the histograms.
        let next = crate::snapshot::advance(&s, vec![], vec![], Timestamp(3_000), Timestamp(3_100));
        assert_eq!(next.durations, s.durations);
    }

    #[test]
    fn histogram_families_are_there_before_the_first_round() {
        let body = render(&Snapshot::default(), &config(), BuildInfo::current());
        for name in [FETCH_DURATION, LOGIN_DURATION] {
            check(&body, &format!("# TYPE {name} histogram"));
            assert!(!body.lines().any(|l| l.starts_with(name)), "{body}");
        }
    }

    #[test]
    fn a_login_without_a_request_has_no_duration() {
        let mut obs = incident().observations[0].clone();
        if let Some(login) = &mut obs.domains[0].login {
            login.fetch = None;
        }
        let kinds: Vec<DurationKind> = round_durations(&obs).into_iter().map(|d| d.0).collect();
        assert_eq!(kinds, [DurationKind::Fetch, DurationKind::Fetch]);
    }

    #[test]
    fn encoding_of_values_and_labels() {
        let check = |v: f64, want: &str| assert_eq!(number(v), want);
        check(1.0, "1");
        check(0.25, "0.25");
        check(f64::NAN, "NaN");
        check(f64::INFINITY, "+Inf");
        check(f64::NEG_INFINITY, "-Inf");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        assert_eq!(cut(&"é".repeat(100)).len(), 128);
    }
}
