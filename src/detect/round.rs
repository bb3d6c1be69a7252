//! The rules of one probe round: from the [`Observation`] of one tenant to its findings.
//!
//! Each rule is a small function over a [`Ctx`] (the observation, the tenant's config, the
//! settings and `now`) that pushes findings; [`round_findings`] runs them all, then sorts
//! and merges. The rules live beside the data they read: `login` (tokens), `discovery`,
//! `key_set` (what a view serves, and origin-vs-origin drift), `edges` (edge vs origin,
//! cached errors), `cache` (Cache-Control reading and caching drift), `x5c` (a key's
//! certificate against the key), `clock` (`iat`/`nbf` ahead of local time) and
//! `staleness` (edge lifetimes against Age and against the rotation lead time).
//!
//! Deliberately not here: rules that need history (`kid_reused`, `key_removed_early`,
//! `key_activated_early`, `client_would_fail`, `probe_stale`, …: see `detect::stateful`)
//! and rules across tenants (`cross_tenant_key`). Pure: no I/O, no clock reads, no
//! `async`, no `Result` — a failed fetch is data and becomes a finding.

mod cache;
mod clock;
mod discovery;
mod edges;
mod key_set;
mod login;
mod staleness;
mod x5c;

#[cfg(test)]
pub(crate) mod fixtures;

use crate::config;
use crate::detect::profiles::ClientProfile;
use crate::model::{
    DomainObservation, Finding, Observation, Subject, Timestamp, ViewId, ViewKind, ViewObservation,
};

/// Everything a rule may read.
struct Ctx<'a> {
    obs: &'a Observation,
    tenant: &'a config::Tenant,
    settings: &'a config::Settings,
    now: Timestamp,
    /// The tenant's client profiles (`client_profiles`), resolved.
    profiles: Vec<&'a ClientProfile>,
}

type Rule = fn(&Ctx<'_>, &mut Vec<Finding>);

const RULES: &[Rule] = &[
    login::login_failed,
    login::kid_missing,
    login::signature_invalid,
    login::claims_invalid,
    login::alg_not_allowed,
    discovery::discovery_failed,
    discovery::discovery_drift,
    key_set::jwks_fetch_failed,
    key_set::kid_ambiguous,
    key_set::weak_key,
    key_set::jwk_unparseable,
    key_set::jwks_drift,
    edges::stale_edge,
    edges::error_cached,
    cache::cache_policy_drift,
    staleness::cache_ttl_exceeded,
    staleness::staleness_budget_exceeded,
    x5c::x5c_mismatch,
    clock::clock_skew,
];

/// The findings of one probe round of one tenant, sorted by (severity, code, subject) —
/// code in catalogue order — with one finding per (code, subject): when several rules or
/// tokens hit the same subject, their distinct messages are joined with `; `.
/// The tenant's `client_profiles` are looked up in `config` (built-in and user-defined
/// profiles alike).
pub fn round_findings(
    obs: &Observation,
    tenant: &config::Tenant,
    config: &config::Config,
    now: Timestamp,
) -> Vec<Finding> {
    let profiles = config.tenant_profiles(tenant);
    run_rules(Ctx {
        obs,
        tenant,
        settings: &config.settings,
        now,
        profiles,
    })
}

fn run_rules(cx: Ctx<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for rule in RULES {
        rule(&cx, &mut out);
    }
    finish(out)
}

/// Sorts (stably, so messages keep rule order) and merges findings with one (code, subject)
/// (a message stops growing once past [`crate::detect::bound::MESSAGE_CHARS`]).
pub(crate) fn finish(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| a.rank().cmp(&b.rank()));
    let mut out: Vec<Finding> = Vec::with_capacity(findings.len());
    for f in findings {
        match out.last_mut() {
            Some(last) if last.code == f.code && last.subject == f.subject => {
                // Past the message cap nothing more would be shown: stop merging, so that
                // thousands of findings about one subject cost linear time.
                if last.message.len() <= crate::detect::bound::MESSAGE_CHARS
                    && !last.message.split("; ").any(|m| m == f.message)
                {
                    last.message.push_str("; ");
                    last.message.push_str(&f.message);
                }
            }
            _ => out.push(f),
        }
    }
    out
}

impl<'a> Ctx<'a> {
    fn domain_subject(&self, d: &DomainObservation) -> Subject {
        Subject::domain(&self.obs.tenant, &d.domain)
    }

    fn view_subject(&self, d: &DomainObservation, view: &ViewId) -> Subject {
        Subject::view(&self.obs.tenant, &d.domain, view)
    }

    fn config_domain(&self, name: &str) -> Option<&'a config::Domain> {
        self.tenant.domains.iter().find(|d| d.name == name)
    }

    /// The observed domains of each configured group, in config order. Observed domains
    /// the config does not know take part in no group rule.
    fn groups(&self) -> Vec<Vec<&'a DomainObservation>> {
        config::groups(self.tenant)
            .into_values()
            .map(|members| {
                members
                    .iter()
                    .filter_map(|m| self.obs.domains.iter().find(|d| d.domain == m.name))
                    .collect()
            })
            .collect()
    }

    /// Every (domain, edge view) of the round.
    fn edge_views(&self) -> impl Iterator<Item = (&'a DomainObservation, &'a ViewObservation)> {
        self.obs.domains.iter().flat_map(|d| {
            d.views
                .iter()
                .filter(|v| v.kind == ViewKind::Edge)
                .map(move |v| (d, v))
        })
    }

    /// Every (domain, view) of the round, origin views included.
    fn all_views(&self) -> impl Iterator<Item = (&'a DomainObservation, &'a ViewObservation)> {
        self.obs
            .domains
            .iter()
            .flat_map(|d| d.views.iter().map(move |v| (d, v)))
    }
}

/// The origin view of a domain (the first, should there be several).
fn origin_view(d: &DomainObservation) -> Option<&ViewObservation> {
    d.views.iter().find(|v| v.kind == ViewKind::Origin)
}

/// Issuer identifiers compared the way the rules do: ignoring one trailing slash.
fn same_issuer(a: &str, b: &str) -> bool {
    a.strip_suffix('/').unwrap_or(a) == b.strip_suffix('/').unwrap_or(b)
}

/// Text from the wire or from a probe's error, made safe for a one-line message.
pub(crate) fn one_line(s: &str) -> String {
    const MAX: usize = 200;
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// A kid for messages.
fn kid_name(kid: Option<&str>) -> &str {
    kid.unwrap_or("(no kid)")
}

/// A list of names for messages: `a, b, c`, capped so a message stays one readable line.
fn names<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    const MAX: usize = 8;
    let all: Vec<String> = items.into_iter().map(|s| s.as_ref().to_owned()).collect();
    if all.is_empty() {
        return "none".to_owned();
    }
    let mut s = all.iter().take(MAX).cloned().collect::<Vec<_>>().join(", ");
    if all.len() > MAX {
        s.push_str(&format!(" and {} more", all.len() - MAX));
    }
    s
}

/// Within a group, the value most members share (ties: the earliest member's), with the
/// first member holding it. `None` for an empty slice.
fn reference<'x, T: PartialEq>(members: &'x [(&'x str, T)]) -> Option<(&'x str, &'x T)> {
    let count = |v: &T| members.iter().filter(|(_, w)| w == v).count();
    let mut best: Option<(&str, &T, usize)> = None;
    for (name, v) in members {
        let n = count(v);
        if best.is_none_or(|(_, _, m)| n > m) {
            best = Some((name, v, n));
        }
    }
    best.map(|(name, v, _)| (name, v))
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::model::{Code, KeySetParse};

    #[test]
    fn clean_round_has_no_findings() {
        let findings = run(&obs());
        assert!(findings.is_empty(), "{findings:#?}");
    }

    #[test]
    fn output_is_sorted_and_merged() {
        let mut o = obs();
        // Two keys with one bad kid: weak_key twice on one subject, merged into one.
        let mut weak = key("k9");
        weak.size_bits = Some(1024);
        weak.private_members = vec!["d".into()];
        cdn(&mut o, 0).key_set = Some(KeySetParse::Parsed {
            keys: vec![key("k1"), weak],
        });
        app(&mut o).login = None;
        let findings = run(&o);
        let keys: Vec<_> = findings
            .iter()
            .map(|f| (f.severity, f.code, short(&f.subject)))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let weak: Vec<_> = findings
            .iter()
            .filter(|f| f.code == Code::WeakKey)
            .collect();
        assert_eq!(weak.len(), 1, "{weak:#?}");
        assert!(weak[0].message.contains("1024 bits"), "{}", weak[0].message);
        assert!(weak[0].message.contains("private"), "{}", weak[0].message);
        assert_eq!(short(&weak[0].subject), "app/cdn#k9");
    }

    #[test]
    fn reference_is_majority_then_first() {
        let pick = |m: &[(&str, i32)]| reference(m).map(|(n, v)| (n.to_owned(), *v));
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[("a", 1), ("b", 2)]), Some(("a".into(), 1)));
        assert_eq!(pick(&[("a", 1), ("b", 2), ("c", 2)]), Some(("b".into(), 2)));
    }

    #[test]
    fn text_helpers() {
        assert!(same_issuer("https://x/a/", "https://x/a"));
        assert!(!same_issuer("https://x/a//", "https://x/a"));
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert_eq!(one_line(&"x".repeat(300)).chars().count(), 201);
        assert_eq!(names(["a", "b"]), "a, b");
        assert_eq!(names(Vec::<String>::new()), "none");
        assert!(names((0..10).map(|i| i.to_string())).ends_with("and 2 more"));
    }
}
