//! The rotation gates: may key N become the signer of tenant T now, and may old key C be
//! removed now? Pure functions over the history, the open findings and `now`, with exactly
//! the rules of the finding catalogue:
//!
//! Each answer has two lists: `blocking` (what makes this promotion or removal unsafe now;
//! `safe` is `blocking` being empty) and `advisories` (the tenant's open problems that do
//! not make it unsafe, each with why it matters for the rotation; see `gate/open.rs`).
//!
//! **Pre-rotation** ([`rotation_gate`]) — blocked while
//! 1. N's kid is missing from a configured view of T, has several key materials, or has
//!    not been present continuously for the view's staleness budget S (+ `gate_margin`);
//! 2. a `stale_edge` / `error_cached` is open for T (purges verified, not just issued);
//! 3. a `kid_reused`, `kid_ambiguous`, `weak_key`, `jwk_unparseable` about N is open;
//! 4. N's alg is not advertised in discovery (when discovery lists algs) or not allowed;
//! 5. a `probe_stale` is open for a view of T (no fresh data).
//!
//! `cache_policy_drift`, `jwks_drift`, `discovery_drift` and other keys' hygiene are
//! advisories: once N has been in every view for that view's own S, no client of any view
//! can fail on it, drift or not.
//!
//! **Retirement** ([`retirement_gate`]) — safe only if C has not signed an observed token
//! for at least `max_token_lifetime` + skew (and every token it signed has expired), the
//! current signing kid has been stable for at least S, no view lacks the current kid and
//! no view lacks fresh data; the other open problems are advisories.
//!
//! Every blocking condition is listed with a finding code (the one that describes what
//! would go wrong, or the open finding itself), its subject, a detail line and, for
//! time-based conditions, `ready_at`: when it will be met if nothing changes. A kid first
//! seen in a view's first observation ("since before keycanary watched") counts as visible
//! only from that first observation: the gate never assumes history it has not seen — except
//! for a kid that was already signing then: a signer keycanary found signing and served by
//! a view was not activated early there (unknown history may hold back a *new* kid, never
//! paint a healthy signer red).
//!
//! Deliberately not here: fetching anything, or deciding which kid is "next" (the caller
//! names it; with no kid the rotation gate checks the current signer is healthy now).

use crate::config::{Config, Tenant};
use crate::detect::freshness::edge_freshness;
use crate::detect::history::{History, Since, TenantHistory};
use crate::detect::profiles::{self, Budget, ClientProfile};
use crate::detect::stateful::configured_views;
use crate::model::{Code, Finding, KeyInfo, Observation, Subject, Timestamp, ViewId, ViewKind};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    Rotation,
    Retirement,
}

impl GateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GateKind::Rotation => "rotation",
            GateKind::Retirement => "retirement",
        }
    }
}

/// One reason the gate says no.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocker {
    pub code: Code,
    pub subject: Subject,
    pub detail: String,
    /// When this condition will be met if nothing changes; absent when that cannot be
    /// predicted (something has to be fixed first).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ready_at: Option<Timestamp>,
    /// The vantage point (`location`) whose view this is about: set in answers over every
    /// location (`scope=global`), absent in a local answer.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub location: Option<String>,
}

/// An open problem of the tenant that does not make this answer unsafe, and why it still
/// matters for the rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advisory {
    pub code: Code,
    pub subject: Subject,
    pub detail: String,
    /// Why it matters for this promotion or removal.
    pub why: String,
}

/// The gate's answer: what the API serves, `keycanary gate` prints and `gate --url` reads
/// back (fields are added, never renamed; unknown fields from a newer daemon are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateAnswer {
    pub gate: GateKind,
    pub tenant: String,
    /// The kid the answer is about (for a rotation gate without a kid: the current signer).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kid: Option<String>,
    pub safe: bool,
    pub blocking: Vec<Blocker>,
    /// Open problems that do not block this answer (absent from answers of older
    /// versions: read as none).
    #[serde(default)]
    pub advisories: Vec<Advisory>,
    /// When every blocking condition will be met if nothing changes: the latest of the
    /// blockers' `ready_at`, present only when every blocker has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ready_at: Option<Timestamp>,
    pub evaluated_at: Timestamp,
}

impl GateAnswer {
    fn new(
        gate: GateKind,
        tenant: &str,
        kid: Option<String>,
        mut blocking: Vec<Blocker>,
        mut advisories: Vec<Advisory>,
        now: Timestamp,
    ) -> Self {
        blocking
            .sort_by(|a, b| (a.code, &a.subject, &a.detail).cmp(&(b.code, &b.subject, &b.detail)));
        blocking.dedup();
        advisories
            .sort_by(|a, b| (a.code, &a.subject, &a.detail).cmp(&(b.code, &b.subject, &b.detail)));
        advisories.dedup();
        let ready_at = if blocking.is_empty() {
            None
        } else {
            blocking
                .iter()
                .map(|b| b.ready_at)
                .collect::<Option<Vec<_>>>()
                .and_then(|v| v.into_iter().max())
        };
        GateAnswer {
            gate,
            tenant: tenant.to_owned(),
            kid,
            safe: blocking.is_empty(),
            blocking,
            advisories,
            ready_at,
            evaluated_at: now,
        }
    }
}

/// The question put to a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question<'a> {
    /// May this kid (`None`: the current signer) sign now?
    Rotation(Option<&'a str>),
    /// May this kid be removed now?
    Retirement(&'a str),
}

/// Answers `question` for `tenant` from the history, the latest round's observations (the
/// tenant's own is looked up among them) and the open findings: what the API, the status
/// page, `/metrics` and `keycanary gate` all ask.
pub fn answer(
    config: &Config,
    history: &History,
    observations: &[Observation],
    open: &[Finding],
    tenant: &str,
    question: Question<'_>,
    now: Timestamp,
) -> GateAnswer {
    match question {
        Question::Rotation(kid) => {
            let latest = observations.iter().find(|o| o.tenant == tenant);
            rotation_gate(config, history, latest, open, tenant, kid, now)
        }
        Question::Retirement(kid) => retirement_gate(config, history, open, tenant, kid, now),
    }
}

/// May `next_kid` become the signing key of `tenant` now? With `next_kid = None`, the
/// current signer is checked against the same rules ("healthy right now").
pub fn rotation_gate(
    config: &Config,
    history: &History,
    latest: Option<&Observation>,
    open: &[Finding],
    tenant: &str,
    next_kid: Option<&str>,
    now: Timestamp,
) -> GateAnswer {
    let mut blocking = Vec::new();
    let (Some(t), Some(h)) = (config.tenant(tenant), history.tenant(tenant)) else {
        blocking.push(no_data(tenant));
        return GateAnswer::new(
            GateKind::Rotation,
            tenant,
            next_kid.map(str::to_owned),
            blocking,
            Vec::new(),
            now,
        );
    };
    let kid = match next_kid.map(str::to_owned).or_else(|| current_signer(h)) {
        Some(k) => k,
        None => {
            blocking.push(Blocker {
                code: Code::LoginFailed,
                subject: Subject::tenant(tenant),
                detail: "no kid given and no observed token names the current signer".into(),
                ready_at: None,
                location: None,
            });
            return GateAnswer::new(GateKind::Rotation, tenant, None, blocking, Vec::new(), now);
        }
    };
    let profiles = config.tenant_profiles(t);
    let margin = config.settings.gate_margin;

    // 1. Present everywhere, with one thumbprint, for at least S.
    let ledger = h.kid(&kid);
    if let Some(l) = ledger
        && l.thumbprints().len() > 1
    {
        blocking.push(Blocker {
            code: Code::KidReused,
            subject: Subject::tenant(tenant).with_kid(Some(&kid)),
            detail: format!(
                "{kid} has been served with {} different key materials",
                l.thumbprints().len()
            ),
            ready_at: None,
            location: None,
        });
    }
    let views = facts::local_view_facts(h, t, &kid, &profiles);
    blocking.extend(facts::view_blockers(tenant, &kid, &views, margin, now));

    // 2, 3, 5. Open findings that block; the rest are advisories.
    let (open_blocking, advisories) = open::sort_open(h, open, tenant, GateKind::Rotation, &kid);
    blocking.extend(open_blocking);

    // 4. The alg.
    if let Some(detail) = latest.and_then(|o| alg_problem(config, o, &kid)) {
        blocking.push(Blocker {
            code: Code::AlgNotAllowed,
            subject: Subject::tenant(tenant).with_kid(Some(&kid)),
            detail,
            ready_at: None,
            location: None,
        });
    }
    GateAnswer::new(
        GateKind::Rotation,
        tenant,
        Some(kid),
        blocking,
        advisories,
        now,
    )
}

/// May `old_kid` be removed from `tenant`'s key set now?
pub fn retirement_gate(
    config: &Config,
    history: &History,
    open: &[Finding],
    tenant: &str,
    old_kid: &str,
    now: Timestamp,
) -> GateAnswer {
    let mut blocking = Vec::new();
    let (Some(t), Some(h)) = (config.tenant(tenant), history.tenant(tenant)) else {
        blocking.push(no_data(tenant));
        return GateAnswer::new(
            GateKind::Retirement,
            tenant,
            Some(old_kid.to_owned()),
            blocking,
            Vec::new(),
            now,
        );
    };
    let skew = config.settings.max_clock_skew;
    let subject = Subject::tenant(tenant).with_kid(Some(old_kid));
    let current = current_signer(h);

    // C has not signed for max_token_lifetime + skew, and its tokens have expired.
    if current.as_deref() == Some(old_kid) {
        blocking.push(Blocker {
            code: Code::KeyRemovedEarly,
            subject: subject.clone(),
            detail: format!("{old_kid} is still the signing key: promote another key first"),
            ready_at: None,
            location: None,
        });
    } else if let Some(l) = h.kid(old_kid) {
        let by_lifetime = l
            .last_signed()
            .map(|at| at.plus(t.max_token_lifetime + skew));
        let by_exp = l
            .latest_exp()
            .map(|exp| Timestamp::from_secs(exp).plus(skew));
        if let Some(ready) = by_lifetime.max(by_exp)
            && ready > now
        {
            blocking.push(Blocker {
                code: Code::KeyRemovedEarly,
                subject: subject.clone(),
                detail: format!(
                    "{old_kid} last signed at {}; tokens it signed may be used until {ready} (max_token_lifetime {} + skew {})",
                    l.last_signed().map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                    profiles::human(t.max_token_lifetime),
                    profiles::human(skew)
                ),
                ready_at: Some(ready),
                location: None,
            });
        }
    }

    // The current signer: stable for at least S, and served by every view.
    let profiles = config.tenant_profiles(t);
    match &current {
        None => blocking.push(Blocker {
            code: Code::LoginFailed,
            subject: Subject::tenant(tenant),
            detail: "no observed token names the current signer".into(),
            ready_at: None,
            location: None,
        }),
        Some(signer) => {
            let stable_since = signer_stable_since(h, signer);
            let mut worst = Some(Duration::ZERO);
            for (domain, view) in all_views(t) {
                if h.kid(signer)
                    .and_then(|l| l.present_since_in(&domain, &view))
                    .is_none()
                {
                    blocking.push(Blocker {
                        code: Code::KidMissing,
                        subject: Subject::view(tenant, &domain, &view).with_kid(Some(signer)),
                        detail: format!(
                            "the current signer {signer} is not served by {domain}/{view}"
                        ),
                        ready_at: None,
                        location: None,
                    });
                }
                worst = match (worst, view_budget(h, &domain, &view, &profiles)) {
                    (Some(w), Budget::Bounded(s)) => Some(w.max(s)),
                    _ => None,
                };
            }
            match worst {
                None => blocking.push(Blocker {
                    code: Code::StalenessBudgetExceeded,
                    subject: Subject::tenant(tenant).with_kid(Some(signer)),
                    detail: "a configured client profile never drops a cached key set: no wait is long enough".into(),
                    ready_at: None,
                    location: None,
                }),
                Some(s) => {
                    let ready = stable_since.plus(s);
                    if ready > now {
                        blocking.push(Blocker {
                            code: Code::SigningKeyInconsistent,
                            subject: Subject::tenant(tenant).with_kid(Some(signer)),
                            detail: format!("{signer} has signed alone since {stable_since}; needs {} (staleness budget)", profiles::human(s)),
                            ready_at: Some(ready),
                            location: None,
                        });
                    }
                }
            }
        }
    }
    let (open_blocking, advisories) =
        open::sort_open(h, open, tenant, GateKind::Retirement, old_kid);
    blocking.extend(open_blocking);
    GateAnswer::new(
        GateKind::Retirement,
        tenant,
        Some(old_kid.to_owned()),
        blocking,
        advisories,
        now,
    )
}

fn no_data(tenant: &str) -> Blocker {
    Blocker {
        code: Code::ProbeStale,
        subject: Subject::tenant(tenant),
        detail: format!("no observations of tenant {tenant} yet: run at least one round"),
        ready_at: None,
        location: None,
    }
}

pub(crate) fn all_views(t: &Tenant) -> Vec<(String, ViewId)> {
    t.domains
        .iter()
        .flat_map(|d| configured_views(d).into_iter().map(|v| (d.name.clone(), v)))
        .collect()
}

/// The kid of the latest observed token (the last one of the latest round with tokens).
pub fn current_signer(h: &TenantHistory) -> Option<String> {
    h.signing()
        .last()?
        .tokens
        .iter()
        .rev()
        .find_map(|s| s.kid.clone())
}

/// Since when `signer` alone has signed: the first of the trailing rounds in which every
/// token carried it.
pub fn signer_stable_since(h: &TenantHistory, signer: &str) -> Timestamp {
    let mut since = h
        .signing()
        .last()
        .map(|r| r.at)
        .unwrap_or(h.first_recorded());
    for round in h.signing().iter().rev() {
        if round
            .tokens
            .iter()
            .all(|s| s.kid.as_deref() == Some(signer))
        {
            since = round.at;
        } else {
            break;
        }
    }
    // The history may begin mid-way: never claim more than it holds.
    since.max(h.first_recorded())
}

/// S of one view from its latest answer's caching headers. Origin views add no edge
/// lifetime: they are the truth edges converge to.
pub(crate) fn view_budget(
    h: &TenantHistory,
    domain: &str,
    view: &ViewId,
    profiles: &[&ClientProfile],
) -> Budget {
    let v = h.view(domain, view);
    let entry = v.and_then(|v| v.latest());
    let fresh = entry.and_then(|e| e.headers.as_ref().map(|hd| edge_freshness(hd, e.last_at)));
    let is_edge = v.is_some_and(|v| v.kind() == ViewKind::Edge);
    let edge = if is_edge {
        fresh.as_ref().and_then(|f| f.worst_serves_for())
    } else {
        Some(Duration::ZERO)
    };
    profiles::staleness_budget(edge, profiles, fresh.as_ref().and_then(|f| f.client_ttl))
}

/// When the edge view of `subject` will drop its cached copy (see [`view_turnover`]).
fn edge_turnover(h: &TenantHistory, subject: &Subject) -> Option<Timestamp> {
    let view = ViewId {
        path: subject.path.clone()?,
        edge: subject.edge.clone(),
    };
    view_turnover(h, subject.domain.as_deref()?, &view)
}

/// When an edge view will drop its cached copy: its latest answer's freshness lifetime
/// plus stale-* windows. `None` when the headers do not say.
pub(crate) fn view_turnover(h: &TenantHistory, domain: &str, view: &ViewId) -> Option<Timestamp> {
    let e = h.view(domain, view)?.latest()?;
    let f = edge_freshness(e.headers.as_ref()?, e.last_at);
    f.fresh_until.map(|t| t.plus(f.stale_windows()))
}

/// Why the kid's alg may not sign, judged from the latest round: the key as an origin
/// view serves it (else any view), and the algs discovery advertises on any domain.
fn alg_problem(config: &Config, latest: &Observation, kid: &str) -> Option<String> {
    let views = || latest.domains.iter().flat_map(|d| &d.views);
    let pick = |origin: bool| {
        views()
            .filter(|v| (v.kind == ViewKind::Origin) == origin)
            .flat_map(|v| v.keys())
            .find(|k| k.kid.as_deref() == Some(kid))
    };
    let key = pick(true).or_else(|| pick(false))?;
    let alg = key.alg.clone().or_else(|| inferred_alg(key))?;
    if !config.settings.allowed_algs.contains(&alg) {
        return Some(format!(
            "{kid} is a {alg} key and {alg} is not in allowed_algs"
        ));
    }
    let mut advertised: Vec<&String> = Vec::new();
    for doc in latest.domains.iter().filter_map(|d| d.discovery_doc()) {
        advertised.extend(
            doc.id_token_signing_alg_values_supported
                .iter()
                .chain(&doc.other_signing_alg_values_supported),
        );
    }
    if !advertised.is_empty() && !advertised.contains(&&alg) {
        return Some(format!(
            "{kid} is a {alg} key and discovery does not advertise {alg}"
        ));
    }
    None
}

fn inferred_alg(k: &KeyInfo) -> Option<String> {
    match (k.kty.as_str(), k.crv.as_deref()) {
        ("EC", Some("P-256")) => Some("ES256".into()),
        ("EC", Some("P-384")) => Some("ES384".into()),
        ("OKP", Some("Ed25519")) => Some("EdDSA".into()),
        ("RSA", _) => Some("RS256".into()),
        _ => None,
    }
}

/// `key_activated_early`: a kid signs tokens before it was visible in every configured view
/// of the tenant for at least that view's staleness budget S. Judged only for activations
/// keycanary saw (the kid first signed after the tenant's history began). Open while the
/// kid is missing from a view, or until it has been visible everywhere for S; the history
/// must already hold this round.
pub fn key_activated_early(
    history: &History,
    obs: &Observation,
    tenant: &Tenant,
    config: &Config,
    now: Timestamp,
) -> Vec<Finding> {
    let Some(h) = history.tenant(&obs.tenant) else {
        return Vec::new();
    };
    let profiles = config.tenant_profiles(tenant);
    let views = all_views(tenant);
    let mut kids: Vec<&str> = obs
        .domains
        .iter()
        .flat_map(|d| d.tokens())
        .filter_map(|t| t.header.kid.as_deref())
        .collect();
    kids.sort();
    kids.dedup();
    let mut out = Vec::new();
    for kid in kids {
        let Some(ledger) = h.kid(kid) else { continue };
        let Some(first_signed) = ledger.first_signed().filter(|f| *f > h.first_recorded()) else {
            continue;
        };
        let subject = Subject::tenant(&obs.tenant).with_kid(Some(kid));
        let missing: Vec<String> = views
            .iter()
            .filter(|(d, v)| ledger.present_since_in(d, v).is_none())
            .map(|(d, v)| format!("{d}/{v}"))
            .collect();
        if !missing.is_empty() {
            out.push(Finding::new(
                Code::KeyActivatedEarly,
                subject,
                format!(
                    "{kid} signs tokens (since {first_signed}) but is not served by {}",
                    missing.join(", ")
                ),
            ));
            continue;
        }
        // Visible everywhere now: since when, and for how long it needed to be before signing.
        let mut worst: Option<(Timestamp, Duration, String)> = None;
        for (d, v) in &views {
            let Some(Since::At(since)) = ledger.present_since_in(d, v) else {
                continue;
            };
            let Budget::Bounded(s) = view_budget(h, d, v, &profiles) else {
                continue;
            };
            let until = since.plus(s);
            if worst.as_ref().is_none_or(|(u, _, _)| until > *u) {
                worst = Some((until, s, format!("{d}/{v}")));
            }
        }
        if let Some((until, s, view)) = worst
            && until > first_signed
            && until > now
        {
            out.push(Finding::new(
                Code::KeyActivatedEarly,
                subject,
                format!(
                    "{kid} first signed at {first_signed}, before it had been visible in {view} for its staleness budget {}: clients may reject its tokens until {until}",
                    profiles::human(s)
                ),
            ));
        }
    }
    out
}

pub mod facts;
pub mod global;
mod open;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::stateful::fixtures::{
        at, cdn_headers, check, config_with, key, keys, replay, round, short, sign_with,
    };
    use crate::model::CacheHeaders;

    /// Step `i` with k1 signing and `k2` published in every view from `staged_at` on;
    /// k2 signs from `promoted_at` on.
    fn step(i: i64, staged_at: Option<i64>, promoted_at: Option<i64>) -> Observation {
        let mut o = round(i);
        if staged_at.is_some_and(|s| i >= s) {
            for d in 0..2 {
                for v in 0..2 {
                    keys(&mut o, d, v, vec![key("k1"), key("k2")]);
                }
            }
        }
        if promoted_at.is_some_and(|p| i >= p) {
            sign_with(&mut o, "k2");
        }
        o
    }

    fn walk(n: i64, staged_at: Option<i64>, promoted_at: Option<i64>) -> Vec<Observation> {
        (0..n).map(|i| step(i, staged_at, promoted_at)).collect()
    }

    /// The rotation gate for acme's `kid` at `now`, after replaying `steps`.
    fn rotation_after(
        config: &Config,
        steps: &[Observation],
        kid: Option<&str>,
        now: Timestamp,
    ) -> GateAnswer {
        let (history, findings) = replay(config, steps);
        rotation_gate(
            config,
            &history,
            steps.last(),
            findings.last().unwrap(),
            "acme",
            kid,
            now,
        )
    }

    fn codes(a: &GateAnswer) -> Vec<Code> {
        a.blocking.iter().map(|b| b.code).collect()
    }

    #[test]
    fn no_observations_means_no_answer() {
        let config = config_with(str::to_owned);
        let a = rotation_gate(
            &config,
            &History::default(),
            None,
            &[],
            "acme",
            Some("k2"),
            at(0),
        );
        assert!(!a.safe);
        assert_eq!(codes(&a), [Code::ProbeStale]);
        let a = retirement_gate(&config, &History::default(), &[], "acme", "k1", at(0));
        assert_eq!(codes(&a), [Code::ProbeStale]);
    }

    #[test]
    fn rotation_waits_for_the_staleness_budget() {
        let config = config_with(str::to_owned);
        // k2 staged at step 10; ask at step 11: visible for one interval only.
        let steps = walk(12, Some(10), None);
        let (history, findings) = replay(&config, &steps);
        let last = steps.last().unwrap();
        let a = rotation_gate(
            &config,
            &history,
            Some(last),
            findings.last().unwrap(),
            "acme",
            Some("k2"),
            at(11),
        );
        assert!(!a.safe, "{a:#?}");
        assert!(
            codes(&a).iter().all(|c| *c == Code::KeyActivatedEarly),
            "{a:#?}"
        );
        let ready = a.ready_at.expect("time-based");
        // S = edge (max-age 300 + the fixture's Age) + envoy's 10 min TTL, from step 10.
        assert!(
            ready > at(10).plus_secs(600) && ready <= at(10).plus_secs(1_000),
            "{a:#?}"
        );
        // Far enough past it, the same question is answered yes.
        let n = 10 + (ready.0 - at(10).0) / 30_000 + 2;
        let steps = walk(n, Some(10), None);
        let a = rotation_after(&config, &steps, Some("k2"), at(n - 1));
        assert!(a.safe, "{a:#?}");
        // A kid nobody serves is missing everywhere, with no predictable end.
        let a = rotation_gate(
            &config,
            &history,
            steps.last(),
            findings.last().unwrap(),
            "acme",
            Some("k9"),
            at(n - 1),
        );
        assert!(
            codes(&a).iter().all(|c| *c == Code::KidMissing) && a.ready_at.is_none(),
            "{a:#?}"
        );
    }

    #[test]
    fn drifts_are_advisories_and_disallowed_algs_block() {
        let config = config_with(|t| {
            t.replace(
                "allowed_algs = [\"RS256\", \"ES256\", \"EdDSA\"]",
                "allowed_algs = [\"ES256\"]",
            )
        });
        let steps = walk(2, None, None);
        let (history, _) = replay(&config, &steps);
        let open = [Finding::new(
            Code::CachePolicyDrift,
            Subject::domain("acme", "io"),
            "drift",
        )];
        let a = rotation_gate(
            &config,
            &history,
            steps.last(),
            &open,
            "acme",
            Some("k1"),
            at(1),
        );
        assert_eq!(codes(&a), [Code::AlgNotAllowed], "{a:#?}");
        assert_eq!(a.advisories.len(), 1, "{a:#?}");
        assert_eq!(a.advisories[0].code, Code::CachePolicyDrift);
        assert!(a.advisories[0].why.contains("purge"), "{a:#?}");
        assert!(
            a.ready_at.is_none(),
            "an alg has no predictable end: {a:#?}"
        );
    }

    /// The stage of the acceptance test: app's edge does not cache, io's does (a permanent
    /// `cache_policy_drift`); k2 staged in every view at step 10.
    fn drifting(i: i64, staged_at: i64) -> Observation {
        let mut o = step(i, Some(staged_at), None);
        *cdn_headers(&mut o, 0) = CacheHeaders {
            cache_control: Some("no-store".into()),
            cache_status: Some("MISS".into()),
            cache_status_header: Some("X-Cache-Status".into()),
            ..Default::default()
        };
        o
    }

    #[test]
    fn rotation_is_safe_with_a_permanent_cache_policy_drift_once_the_kid_has_waited_out_s() {
        let config = config_with(str::to_owned);
        let ask = |steps: &[Observation], kid: &str| {
            let (history, findings) = replay(&config, steps);
            let open = findings.last().unwrap();
            assert!(
                open.iter().any(|f| f.code == Code::CachePolicyDrift),
                "the stage drifts: {open:#?}"
            );
            let last = steps.last().unwrap();
            rotation_gate(
                &config,
                &history,
                Some(last),
                open,
                "acme",
                Some(kid),
                last.finished_at,
            )
        };
        // Staged at 10, asked at 11: not yet, with a time.
        let steps: Vec<Observation> = (0..12).map(|i| drifting(i, 10)).collect();
        let a = ask(&steps, "k2");
        assert!(!a.safe, "{a:#?}");
        assert!(
            codes(&a).iter().all(|c| *c == Code::KeyActivatedEarly),
            "{a:#?}"
        );
        let ready = a.ready_at.expect("time-based");
        // Past every view's own S: safe, the drift an advisory.
        let n = 10 + (ready.0 - at(10).0) / 30_000 + 2;
        let mut steps: Vec<Observation> = (0..n).map(|i| drifting(i, 10)).collect();
        let a = ask(&steps, "k2");
        assert!(a.safe, "{a:#?}");
        assert!(a.blocking.is_empty());
        assert!(
            a.advisories
                .iter()
                .any(|a| a.code == Code::CachePolicyDrift),
            "{a:#?}"
        );
        // The same, while io's edge lacks k2: refused, naming that view.
        keys(steps.last_mut().unwrap(), 1, 1, vec![key("k1")]);
        let a = ask(&steps, "k2");
        assert!(!a.safe, "{a:#?}");
        let missing: Vec<String> = a
            .blocking
            .iter()
            .filter(|b| b.code == Code::KidMissing)
            .map(|b| short(&b.subject))
            .collect();
        assert_eq!(missing, ["io/cdn#k2"], "{a:#?}");
    }

    #[test]
    fn regression_a_signer_found_signing_and_served_everywhere_is_healthy_on_a_first_start() {
        // Two rounds after a first start: k1 was signing and served by every view when
        // keycanary first looked. The gate without a kid says healthy.
        let config = config_with(str::to_owned);
        let steps = walk(2, None, None);
        let a = rotation_after(&config, &steps, None, at(1));
        assert_eq!(a.kid.as_deref(), Some("k1"));
        assert!(a.safe, "{a:#?}");
        // The same when the first round's logins failed: k1 signed the first tokens seen.
        let mut steps = walk(3, None, None);
        for d in &mut steps[0].domains {
            d.login = Some(crate::model::LoginObservation {
                grant: "client_credentials".into(),
                fetch: None,
                result: crate::model::LoginResult::Failed {
                    reason: "503".into(),
                },
            });
        }
        let a = rotation_after(&config, &steps, None, at(2));
        assert!(a.safe, "{a:#?}");
        // A new kid found already published (but not signing) on that first start still
        // waits out S from when keycanary first saw it: its history is unknown.
        let steps: Vec<Observation> = (0..2).map(|i| step(i, Some(0), None)).collect();
        let a = rotation_after(&config, &steps, Some("k2"), at(1));
        assert!(!a.safe, "{a:#?}");
        assert!(
            codes(&a).iter().all(|c| *c == Code::KeyActivatedEarly),
            "{a:#?}"
        );
        // A signer that began signing while watched is judged on its own S as before.
        let steps = walk(4, Some(3), Some(3));
        let a = rotation_after(&config, &steps, None, at(3));
        assert_eq!(a.kid.as_deref(), Some("k2"));
        assert!(codes(&a).contains(&Code::KeyActivatedEarly), "{a:#?}");
    }

    #[test]
    fn retirement_waits_for_tokens_and_a_settled_signer() {
        let config = config_with(str::to_owned);
        // Staged at 1, promoted at 40: k1 last signed at step 39.
        let steps = walk(41, Some(1), Some(40));
        let (history, findings) = replay(&config, &steps);
        let a = retirement_gate(
            &config,
            &history,
            findings.last().unwrap(),
            "acme",
            "k1",
            at(40),
        );
        assert!(!a.safe);
        assert!(
            codes(&a).contains(&Code::KeyRemovedEarly)
                && codes(&a).contains(&Code::SigningKeyInconsistent),
            "{a:#?}"
        );
        let ready = a.ready_at.expect("time-based");
        // The current signer can never be retired.
        let a = retirement_gate(
            &config,
            &history,
            findings.last().unwrap(),
            "acme",
            "k2",
            at(40),
        );
        assert!(
            codes(&a).contains(&Code::KeyRemovedEarly) && a.ready_at.is_none(),
            "{a:#?}"
        );
        // After ready: safe.
        let n = 40 + (ready.0 - at(40).0) / 30_000 + 2;
        let steps = walk(n, Some(1), Some(40));
        let (history, findings) = replay(&config, &steps);
        let a = retirement_gate(
            &config,
            &history,
            findings.last().unwrap(),
            "acme",
            "k1",
            at(n - 1),
        );
        assert!(a.safe, "{a:#?}");
    }

    #[test]
    fn key_activated_early_fires_for_an_unstaged_promotion_only() {
        const C: Code = Code::KeyActivatedEarly;
        // Staged and promoted in the same round: early.
        check(C, &walk(4, Some(3), Some(3)), &["#k2"]);
        // Staged long before (more than S): not early.
        check(C, &walk(45, Some(1), Some(44)), &[]);
        // A signer present from the first round is not judged (no activation seen).
        check(C, &walk(3, None, None), &[]);
        // Signing while a view still lacks it.
        let mut steps = walk(4, Some(3), Some(3));
        keys(steps.last_mut().unwrap(), 1, 0, vec![key("k1")]);
        let f = check(C, &steps, &["#k2"]);
        assert!(
            f[0].message.contains("is not served by io/"),
            "{}",
            f[0].message
        );
    }
}
