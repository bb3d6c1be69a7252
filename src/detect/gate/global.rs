//! The gates over every location, from what each location's keycanary exports and one
//! Prometheus scrapes: the samples of one instant query (see [`query`]) in, the same gate
//! answer out. [`rotation`] judges every location's views by the same view rule as a local
//! answer ([`facts::view_blockers`]) and the same open-state rule (a stale edge or a
//! cached error blocks every promotion); [`retirement`] asks every location's views to
//! serve the current signer and waits the longest S of any, with what the key signed
//! taken from the asked daemon's own answer.
//!
//! What the samples say is read as hostile: every label value is cleaned and bounded
//! (`model::wire`), a value that is not a finite number is dropped, and work is linear in
//! the number of samples. Several instances reporting the same view (two keycanaries in
//! one location) are merged to the worse of their facts.
//!
//! No data is never "safe": a configured location with no round of the tenant, or whose
//! latest round is older than `max_age`, blocks with `probe_stale` naming the location;
//! so does a fresh location that reports no view of the tenant, or a view without S.
//!
//! Deliberately not here: the HTTP request to Prometheus (`crate::prometheus`). The key's
//! own hygiene and alg (conditions 3 and 4: properties of the key set, the same from every
//! location) are not exported; a daemon that watches the tenant adds them from its local
//! answer ([`with_key_conditions`]).

use super::facts::{self, KidSeen, ViewFacts};
use super::{Blocker, GateAnswer, GateKind};
use crate::detect::profiles::Budget;
use crate::model::{Code, Subject, Timestamp, ViewId, ViewKind, wire};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The families the global gate reads, all exported per tenant by every keycanary.
pub const VIEW_UP: &str = "keycanary_view_up";
pub const BUDGET: &str = "keycanary_view_staleness_budget_seconds";
pub const UNBOUNDED: &str = "keycanary_view_staleness_budget_unbounded";
pub const KID_SINCE: &str = "keycanary_view_kid_visible_since_timestamp_seconds";
pub const VIEW_STATE: &str = "keycanary_view_state";
pub const EDGE_TURNOVER: &str = "keycanary_view_edge_turnover_timestamp_seconds";
pub const TENANT_ROUND: &str = "keycanary_tenant_last_round_timestamp_seconds";

/// The `state` label values of [`VIEW_STATE`].
pub const STATE_STALE_EDGE: &str = "stale_edge";
pub const STATE_ERROR_CACHED: &str = "error_cached";
pub const STATE_FETCH_FAILING: &str = "fetch_failing";

const FAMILIES: [&str; 7] = [
    VIEW_UP,
    BUDGET,
    UNBOUNDED,
    KID_SINCE,
    VIEW_STATE,
    EDGE_TURNOVER,
    TENANT_ROUND,
];

/// One sample of an instant vector: its labels (`__name__` included) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Whether `s` can be a tenant's name (a configuration label: letters, digits, `_`, `-`,
/// `.`; at most 128 characters), and so be put in a query as it is.
pub fn is_tenant_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The one PromQL instant query that fetches everything the gate needs about `tenant`
/// (a name that passes [`is_tenant_name`]: nothing to escape; callers check it first).
pub fn query(tenant: &str) -> String {
    format!(
        "{{__name__=~\"{}\",tenant=\"{tenant}\"}}",
        FAMILIES.join("|")
    )
}

/// What is asked, and of which locations.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub tenant: &'a str,
    pub kid: &'a str,
    /// The locations that must answer (`[gate] locations`).
    pub locations: &'a [String],
    pub margin: Duration,
    /// How old a location's latest round of the tenant may be and still count as data.
    pub max_age: Duration,
    pub now: Timestamp,
}

/// Where a view is: location, domain, view id, kind.
type ViewKey = (String, String, ViewId, ViewKind);

/// What the samples say about the tenant: the no-data blockers, and every fresh location's
/// views (each reported by at least one instance) with their facts about `kid`.
struct Read {
    blocking: Vec<Blocker>,
    views: BTreeMap<ViewKey, Merged>,
}

/// The rotation gate for `scope.kid` over every location's views in `samples`.
pub fn rotation(samples: &[Sample], scope: &Scope<'_>) -> GateAnswer {
    let tenant = scope.tenant;
    let kid = cut(scope.kid);
    let Read {
        mut blocking,
        views,
    } = read(samples, scope, &kid);
    let origin_has_kid = |location: &str, domain: &str| {
        views.iter().any(|(k, v)| {
            k.0 == location && k.1 == domain && k.3 == ViewKind::Origin && v.kid_seen().is_some()
        })
    };
    let mut view_facts = Vec::new();
    for ((location, domain, view, kind), v) in &views {
        let subject = Subject::view(tenant, domain, view);
        if v.stale_edge || v.error_cached {
            for (on, code) in [
                (v.stale_edge, Code::StaleEdge),
                (v.error_cached, Code::ErrorCached),
            ] {
                if on {
                    blocking.push(Blocker {
                        code,
                        subject: subject.clone(),
                        detail: format!(
                            "{code} on {domain}/{view} at {location}: verify a purge there, not only where it was issued"
                        ),
                        ready_at: v.turnover,
                        location: Some(location.clone()),
                    });
                }
            }
        }
        let Some(budget) = v.budget.clone() else {
            blocking.push(no_budget(tenant, &kid, (location, domain, view)));
            continue;
        };
        let seen = v.kid_seen().unwrap_or(KidSeen::Missing {
            arrival: (*kind == ViewKind::Edge && origin_has_kid(location, domain))
                .then_some(v.turnover)
                .flatten(),
        });
        view_facts.push(ViewFacts {
            location: Some(location.clone()),
            domain: domain.clone(),
            view: view.clone(),
            kind: *kind,
            kid: seen,
            budget,
        });
    }
    blocking.extend(facts::view_blockers(
        tenant,
        &kid,
        &view_facts,
        scope.margin,
        scope.now,
    ));
    GateAnswer::new(
        GateKind::Rotation,
        tenant,
        Some(scope.kid.to_owned()),
        blocking,
        Vec::new(),
        scope.now,
    )
}

/// What the retirement gate takes from the tenant's history: the current signer and since
/// when it has signed alone (the same at every location: the IdP signs for all of them).
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    pub signer: &'a str,
    pub alone_since: Timestamp,
}

/// The retirement gate for `scope.kid` (the key to remove) over every location: every
/// view of every location serves the current signer, and it has signed alone for the
/// longest S of any of them; with the no-data rule of [`rotation`]. What the history
/// decides (the key still signs, its tokens are not expired yet, no signer known) comes
/// from `local`, this daemon's own answer to the same question, as do the advisories.
pub fn retirement(
    samples: &[Sample],
    scope: &Scope<'_>,
    signing: Option<Signing<'_>>,
    local: &GateAnswer,
) -> GateAnswer {
    let tenant = scope.tenant;
    let mut blocking: Vec<Blocker> = local
        .blocking
        .iter()
        .filter(|b| matches!(b.code, Code::KeyRemovedEarly | Code::LoginFailed))
        .cloned()
        .collect();
    if let Some(Signing {
        signer,
        alone_since,
    }) = signing
    {
        let signer = cut(signer);
        let read = read(samples, scope, &signer);
        blocking.extend(read.blocking);
        let mut worst = Duration::ZERO;
        let mut unbounded: Option<(String, String)> = None;
        for ((location, domain, view, _), v) in &read.views {
            if v.kid_seen().is_none() {
                blocking.push(Blocker {
                    code: Code::KidMissing,
                    subject: Subject::view(tenant, domain, view).with_kid(Some(&signer)),
                    detail: format!(
                        "the current signer {signer} is not served by {domain}/{view} at {location}"
                    ),
                    ready_at: None,
                    location: Some(location.clone()),
                });
            }
            match &v.budget {
                None => blocking.push(no_budget(tenant, &signer, (location, domain, view))),
                Some(Budget::Bounded(s)) => worst = worst.max(*s),
                Some(Budget::Unbounded { profile }) => {
                    unbounded = Some((profile.clone(), location.clone()));
                }
            }
        }
        let subject = Subject::tenant(tenant).with_kid(Some(&signer));
        match unbounded {
            Some((profile, location)) => blocking.push(Blocker {
                code: Code::StalenessBudgetExceeded,
                subject,
                detail: format!("client profile {profile} at {location} never drops a cached key set: no wait is long enough"),
                ready_at: None,
                location: Some(location),
            }),
            None => {
                let ready = alone_since.plus(worst);
                if ready > scope.now {
                    blocking.push(Blocker {
                        code: Code::SigningKeyInconsistent,
                        subject,
                        detail: format!(
                            "{signer} has signed alone since {alone_since}; needs {} (the longest staleness budget of any location's views)",
                            crate::detect::profiles::human(worst)
                        ),
                        ready_at: Some(ready),
                        location: None,
                    });
                }
            }
        }
    }
    GateAnswer::new(
        GateKind::Retirement,
        tenant,
        Some(scope.kid.to_owned()),
        blocking,
        local.advisories.clone(),
        scope.now,
    )
}

fn no_budget(tenant: &str, kid: &str, (location, domain, view): (&str, &str, &ViewId)) -> Blocker {
    no_data(
        Subject::view(tenant, domain, view).with_kid(Some(kid)),
        location,
        format!("location {location} reports no staleness budget for {domain}/{view}"),
    )
}

/// Reads `samples` about `scope.tenant`, with the sightings of `kid` (already cut).
fn read(samples: &[Sample], scope: &Scope<'_>, kid: &str) -> Read {
    let tenant = scope.tenant;
    let mut blocking = Vec::new();
    let mut rounds: BTreeMap<String, Timestamp> = BTreeMap::new();
    let mut views: BTreeMap<ViewKey, Merged> = BTreeMap::new();
    for s in samples.iter().filter(|s| label(s, "tenant") == tenant) {
        let Some(name) = s.labels.get("__name__") else {
            continue;
        };
        if name == TENANT_ROUND {
            let Some(at) = secs(s.value) else { continue };
            let e = rounds.entry(clean(label(s, "location"))).or_insert(at);
            *e = (*e).max(at);
            continue;
        }
        let Some(key) = view_key(s) else { continue };
        let v = views.entry(key).or_default();
        match name.as_str() {
            VIEW_UP => {
                v.reporters.insert(label(s, "instance").to_owned());
            }
            BUDGET => {
                if let Some(d) = duration(s.value) {
                    v.budget = worse(v.budget.take(), Budget::Bounded(d));
                }
            }
            UNBOUNDED => {
                let profile = Budget::Unbounded {
                    profile: clean(label(s, "profile")),
                };
                v.budget = worse(v.budget.take(), profile);
            }
            KID_SINCE if label(s, "kid") == kid => {
                // 0: already signing when that keycanary first looked.
                let seen = match secs(s.value) {
                    Some(Timestamp(0)) => KidSeen::FoundSigning,
                    Some(at) => KidSeen::Since(at),
                    None => continue,
                };
                let by = v.kid.entry(label(s, "instance").to_owned()).or_insert(seen);
                *by = later(*by, seen);
            }
            VIEW_STATE if s.value >= 1.0 => match label(s, "state") {
                STATE_STALE_EDGE => v.stale_edge = true,
                STATE_ERROR_CACHED => v.error_cached = true,
                _ => {}
            },
            EDGE_TURNOVER => {
                let Some(at) = secs(s.value) else { continue };
                v.turnover = Some(v.turnover.map_or(at, |t: Timestamp| t.max(at)));
            }
            _ => {}
        }
    }

    // Fresh data from every location that must answer; the views of stale ones are not
    // judged (their blocker says why).
    let mut fresh: Vec<&str> = Vec::new();
    for location in scope.locations {
        let subject = Subject::tenant(tenant);
        let detail = match rounds.get(location) {
            None => format!(
                "no data from location {location}: no keycanary there has reported a round of {tenant} to Prometheus"
            ),
            Some(at) if scope.now.since(*at) > scope.max_age => format!(
                "the latest round of {tenant} at location {location} finished at {at}, more than {} ago",
                crate::detect::profiles::human(scope.max_age)
            ),
            Some(_) => {
                if !views.keys().any(|k| k.0 == *location) {
                    blocking.push(no_data(
                        subject,
                        location,
                        format!("location {location} reports no JWKS view of {tenant}"),
                    ));
                }
                continue;
            }
        };
        blocking.push(no_data(subject, location, detail));
    }
    for (location, at) in &rounds {
        if scope.now.since(*at) <= scope.max_age {
            fresh.push(location);
        }
    }

    views.retain(|k, v| fresh.contains(&k.0.as_str()) && !v.reporters.is_empty());
    Read { blocking, views }
}

/// `global` with what a local answer to the same question says about the key itself:
/// its hygiene and alg (conditions 3 and 4: properties of the key set, the same from every
/// location, which the exported families do not carry), and the local advisories. A
/// daemon that watches the tenant adds them to its answer over every location.
pub fn with_key_conditions(global: GateAnswer, local: &GateAnswer) -> GateAnswer {
    let about_the_key = |c: Code| c.blocks_promoting_its_kid() || c == Code::AlgNotAllowed;
    let mut blocking = global.blocking;
    blocking.extend(
        local
            .blocking
            .iter()
            .filter(|b| about_the_key(b.code))
            .cloned(),
    );
    GateAnswer::new(
        global.gate,
        &global.tenant,
        global.kid,
        blocking,
        local.advisories.clone(),
        global.evaluated_at,
    )
}

/// What the samples say about one view, merged over the instances that report it.
#[derive(Debug, Default)]
struct Merged {
    /// The instances (`instance` label) that report the view.
    reporters: BTreeSet<String>,
    budget: Option<Budget>,
    /// Each instance's sighting of the kid.
    kid: BTreeMap<String, KidSeen>,
    stale_edge: bool,
    error_cached: bool,
    turnover: Option<Timestamp>,
}

impl Merged {
    /// The kid's sighting every reporting instance agrees on: `None` (missing) when one of
    /// them does not serve it, else the latest sighting.
    fn kid_seen(&self) -> Option<KidSeen> {
        let mut out: Option<KidSeen> = None;
        for r in &self.reporters {
            let seen = *self.kid.get(r)?;
            out = Some(out.map_or(seen, |o| later(o, seen)));
        }
        out
    }
}

fn no_data(subject: Subject, location: &str, detail: String) -> Blocker {
    Blocker {
        code: Code::ProbeStale,
        subject,
        detail,
        ready_at: None,
        location: Some(location.to_owned()),
    }
}

/// The longer of two budgets; an unbounded one is longer than any.
fn worse(a: Option<Budget>, b: Budget) -> Option<Budget> {
    Some(match (a, b) {
        (None, b) => b,
        (Some(u @ Budget::Unbounded { .. }), _) | (_, u @ Budget::Unbounded { .. }) => u,
        (Some(Budget::Bounded(x)), Budget::Bounded(y)) => Budget::Bounded(x.max(y)),
    })
}

/// The later of two sightings (the one that waits longer).
fn later(a: KidSeen, b: KidSeen) -> KidSeen {
    match (a, b) {
        (KidSeen::Since(x), KidSeen::Since(y)) => KidSeen::Since(x.max(y)),
        (KidSeen::Since(x), _) | (_, KidSeen::Since(x)) => KidSeen::Since(x),
        (a, _) => a,
    }
}

fn label<'a>(s: &'a Sample, name: &str) -> &'a str {
    s.labels.get(name).map_or("", String::as_str)
}

/// A label value from Prometheus, safe to show and bounded.
fn clean(s: &str) -> String {
    wire::text(s, wire::IDENT_MAX)
}

/// A kid as the exporters cut it (`telemetry::metrics::MAX_LABEL_LEN` bytes).
fn cut(s: &str) -> String {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn view_key(s: &Sample) -> Option<ViewKey> {
    let kind = match label(s, "kind") {
        "edge" => ViewKind::Edge,
        "origin" => ViewKind::Origin,
        _ => return None,
    };
    let (domain, path) = (label(s, "domain"), label(s, "path"));
    if domain.is_empty() || path.is_empty() {
        return None;
    }
    let edge = label(s, "edge");
    Some((
        clean(label(s, "location")),
        clean(domain),
        ViewId {
            path: clean(path),
            edge: (!edge.is_empty()).then(|| clean(edge)),
        },
        kind,
    ))
}

/// Unix seconds as a timestamp (saturating); `None` for a value that is not a number or
/// is negative (such a sample is dropped: what it would have said is then missing).
fn secs(v: f64) -> Option<Timestamp> {
    (v.is_finite() && v >= 0.0).then_some(Timestamp((v * 1000.0) as i64))
}

/// Seconds as a duration (saturating); `None` for a value that is not a number or is
/// negative.
fn duration(v: f64) -> Option<Duration> {
    (v.is_finite() && v >= 0.0).then(|| Duration::try_from_secs_f64(v).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests;
