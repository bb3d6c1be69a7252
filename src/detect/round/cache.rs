//! Reading caching headers, and the `cache_policy_drift` rule: (a) normalised caching
//! headers differ between the domains of a group, (b) one domain is served from a cache
//! while another shows no cache at all, (c) an edge serves from cache although the policy
//! that governs the CDN forbids it.
//!
//! Freshness predictions in messages ([`freshness`]) come from
//! [`crate::detect::freshness`] (`http-cache-semantics` plus the CDN's targeted fields).
//! Hit/miss comes from [`CacheHeaders::served_from_cache`].

use super::{Ctx, reference};
use crate::detect::freshness::view_freshness;
use crate::model::{
    CacheHeaders, Code, DomainObservation, Finding, Subject, ViewKind, ViewObservation,
};
use std::collections::BTreeSet;

/// Directives of one header: trimmed, lowercased, `name=value` without inner spaces.
fn directives(header: &str) -> Vec<String> {
    header
        .split(',')
        .map(|d| {
            let d = d.trim().to_ascii_lowercase();
            match d.split_once('=') {
                Some((name, value)) => format!("{}={}", name.trim(), value.trim()),
                None => d,
            }
        })
        .filter(|d| !d.is_empty())
        .collect()
}

/// A caching header as compared between domains: directives sorted, `(none)` when absent.
pub(super) fn normalise(header: Option<&str>) -> String {
    match header {
        None => "(none)".to_owned(),
        Some(h) => {
            let mut d = directives(h);
            d.sort();
            d.dedup();
            d.join(", ")
        }
    }
}

fn has(header: &str, name: &str) -> bool {
    directives(header)
        .iter()
        .any(|d| d == name || d.strip_prefix(name).is_some_and(|r| r.starts_with('=')))
}

fn seconds(header: Option<&str>, name: &str) -> Option<i64> {
    directives(header?).iter().find_map(|d| {
        let value = d.strip_prefix(name)?.strip_prefix('=')?;
        value.trim_matches('"').parse().ok()
    })
}

/// When the edge's copy of a view's response turns stale, for messages.
pub(super) fn freshness(v: &ViewObservation) -> String {
    let Some(f) = view_freshness(v) else {
        return "no response to predict freshness".to_owned();
    };
    if !f.storable {
        return "its caching headers forbid a shared cache to store it".to_owned();
    }
    match (f.declared_ttl, f.remaining) {
        (Some(_), Some(r)) if !r.is_zero() => format!("fresh in ~{} s", r.as_secs()),
        (Some(d), Some(_)) => format!(
            "past its lifetime by {} s",
            f.age.saturating_sub(d).as_secs()
        ),
        _ => "no max-age or s-maxage to predict freshness".to_owned(),
    }
}

/// A cache answered: the cache status says so, or the copy has aged.
pub(super) fn served_from_cache(h: &CacheHeaders) -> bool {
    h.served_from_cache() == Some(true) || h.age.is_some_and(|a| a > 0)
}

/// No sign of any cache: no cache-status header and no Age.
fn no_cache_evidence(h: &CacheHeaders) -> bool {
    h.cache_status.is_none() && h.age.is_none()
}

/// The caching evidence of a response, for messages: `cache status HIT (X-Cache), Age 10 s`.
pub(super) fn evidence(h: &CacheHeaders) -> String {
    let status = match (&h.cache_status, &h.cache_status_header) {
        (Some(s), Some(from)) => format!("cache status {} ({from})", super::one_line(s)),
        (Some(s), None) => format!("cache status {}", super::one_line(s)),
        (None, _) => "no cache status".to_owned(),
    };
    match h.age {
        Some(age) => format!("{status}, Age {age} s"),
        None => format!("{status}, no Age"),
    }
}

/// Why the policy that governs a CDN forbids serving from cache, if it does. The CDN obeys
/// CDN-Cache-Control, else Surrogate-Control, else Cache-Control; there, `no-store`,
/// `private`, `no-cache` (unless the status says the copy was revalidated), `s-maxage=0`,
/// or `max-age=0` without an `s-maxage` forbid it.
fn forbidding(h: &CacheHeaders) -> Option<String> {
    let (name, header) = [
        ("CDN-Cache-Control", &h.cdn_cache_control),
        ("Surrogate-Control", &h.surrogate_control),
        ("Cache-Control", &h.cache_control),
    ]
    .into_iter()
    .find_map(|(n, v)| Some((n, v.as_deref()?)))?;
    let revalidated = h
        .cache_status
        .as_deref()
        .is_some_and(|s| s.to_ascii_lowercase().contains("revalidated"));
    for directive in ["no-store", "private", "no-cache"] {
        if has(header, directive) && !(directive == "no-cache" && revalidated) {
            return Some(format!("{name} says {directive}"));
        }
    }
    let s_maxage = seconds(Some(header), "s-maxage");
    if s_maxage == Some(0) {
        return Some(format!("{name} says s-maxage=0"));
    }
    if s_maxage.is_none() && seconds(Some(header), "max-age") == Some(0) {
        return Some(format!("{name} says max-age=0"));
    }
    None
}

pub(super) fn cache_policy_drift(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (d, v) in cx.edge_views() {
        let Some(r) = v.fetch.response() else {
            continue;
        };
        if served_from_cache(&r.headers)
            && let Some(why) = forbidding(&r.headers)
        {
            let message = format!(
                "served from cache ({}) although {why}",
                evidence(&r.headers)
            );
            out.push(Finding::new(
                Code::CachePolicyDrift,
                cx.view_subject(d, &v.id),
                message,
            ));
        }
    }
    for group in cx.groups() {
        headers_drift(cx, &group, out);
        behaviour_drift(cx, &group, out);
    }
}

/// The edge views of a domain that answered 2xx: the JWKS as clients get it.
fn served_edges(d: &DomainObservation) -> impl Iterator<Item = &ViewObservation> {
    d.views.iter().filter(|v| {
        v.kind == ViewKind::Edge
            && v.fetch
                .response()
                .is_some_and(|r| (200..300).contains(&r.status))
    })
}

fn headers_of(v: &ViewObservation) -> &CacheHeaders {
    &v.fetch
        .response()
        .expect("served edges have responses")
        .headers
}

/// The normalised caching headers of a domain's edge views (every distinct value).
#[derive(PartialEq)]
struct Policy {
    cache_control: BTreeSet<String>,
    cdn_cache_control: BTreeSet<String>,
    surrogate_control: BTreeSet<String>,
}

fn policy(d: &DomainObservation) -> Option<Policy> {
    let mut p = Policy {
        cache_control: BTreeSet::new(),
        cdn_cache_control: BTreeSet::new(),
        surrogate_control: BTreeSet::new(),
    };
    for v in served_edges(d) {
        let h = headers_of(v);
        p.cache_control
            .insert(normalise(h.cache_control.as_deref()));
        p.cdn_cache_control
            .insert(normalise(h.cdn_cache_control.as_deref()));
        p.surrogate_control
            .insert(normalise(h.surrogate_control.as_deref()));
    }
    (!p.cache_control.is_empty()).then_some(p)
}

fn headers_drift(cx: &Ctx<'_>, group: &[&DomainObservation], out: &mut Vec<Finding>) {
    let members: Vec<(&str, Policy)> = group
        .iter()
        .filter_map(|d| Some((d.domain.as_str(), policy(d)?)))
        .collect();
    let Some((ref_name, want)) = reference(&members) else {
        return;
    };
    let quoted = |s: &BTreeSet<String>| {
        s.iter()
            .map(|v| format!("\"{}\"", super::one_line(v)))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    for (name, got) in &members {
        let diffs: Vec<String> = [
            ("Cache-Control", &got.cache_control, &want.cache_control),
            (
                "CDN-Cache-Control",
                &got.cdn_cache_control,
                &want.cdn_cache_control,
            ),
            (
                "Surrogate-Control",
                &got.surrogate_control,
                &want.surrogate_control,
            ),
        ]
        .into_iter()
        .filter(|(_, g, w)| g != w)
        .map(|(header, g, w)| format!("{header} {} vs {}", quoted(g), quoted(w)))
        .collect();
        if !diffs.is_empty() {
            let message = format!(
                "caching headers differ from {ref_name}'s: {}",
                diffs.join(", ")
            );
            let subject = Subject::domain(&cx.obs.tenant, name);
            out.push(Finding::new(Code::CachePolicyDrift, subject, message));
        }
    }
}

/// Whether a domain's JWKS goes through a cache that stores it. MISS vs HIT is timing, not
/// behaviour: a MISS shows a cache that will store the answer, so it counts as `Cached`.
/// `Uncached` needs every edge view to show no cache at all, or a cache that declines to
/// store (BYPASS, DYNAMIC).
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Cached,
    Uncached,
}

fn view_behaviour(h: &CacheHeaders) -> Option<Behaviour> {
    if served_from_cache(h) {
        return Some(Behaviour::Cached);
    }
    if no_cache_evidence(h) {
        return Some(Behaviour::Uncached);
    }
    let status = h
        .cache_status
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if status.contains("bypass") || status.contains("dynamic") {
        Some(Behaviour::Uncached)
    } else if status.contains("miss") || status.contains("expired") {
        Some(Behaviour::Cached)
    } else {
        None
    }
}

/// A domain's behaviour, with the view that shows it (`None`: neither clearly).
fn behaviour(d: &DomainObservation) -> Option<(Behaviour, &ViewObservation)> {
    if let Some(v) =
        served_edges(d).find(|v| view_behaviour(headers_of(v)) == Some(Behaviour::Cached))
    {
        return Some((Behaviour::Cached, v));
    }
    let first = served_edges(d).next()?;
    served_edges(d)
        .all(|v| view_behaviour(headers_of(v)) == Some(Behaviour::Uncached))
        .then_some((Behaviour::Uncached, first))
}

fn behaviour_drift(cx: &Ctx<'_>, group: &[&DomainObservation], out: &mut Vec<Finding>) {
    let seen: Vec<(&str, (Behaviour, &ViewObservation))> = group
        .iter()
        .filter_map(|d| Some((d.domain.as_str(), behaviour(d)?)))
        .collect();
    let members: Vec<(&str, Behaviour)> = seen.iter().map(|(n, (b, _))| (*n, *b)).collect();
    let Some((_, &want)) = reference(&members) else {
        return;
    };
    let Some((ref_name, (_, ref_view))) = seen.iter().find(|(_, (b, _))| *b == want) else {
        return;
    };
    let describe = |b: Behaviour, v: &ViewObservation| {
        let what = match b {
            Behaviour::Cached => "goes through a cache",
            Behaviour::Uncached => "shows no cache at all",
        };
        format!("{what} ({} on {})", evidence(headers_of(v)), v.id)
    };
    for (name, (got, view)) in &seen {
        if *got != want {
            let message = format!(
                "{name} {} while {ref_name} {}",
                describe(*got, view),
                describe(want, ref_view)
            );
            let subject = Subject::domain(&cx.obs.tenant, name);
            out.push(Finding::new(Code::CachePolicyDrift, subject, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::model::*;

    fn cc(s: &str) -> CacheHeaders {
        CacheHeaders {
            cache_control: Some(s.into()),
            ..Default::default()
        }
    }

    #[test]
    fn normalising() {
        assert_eq!(
            normalise(Some(" Public,MAX-AGE = 60 ,, ")),
            "max-age=60, public"
        );
        assert_eq!(
            normalise(Some("max-age=60, public")),
            normalise(Some("public, max-age=60"))
        );
        assert_eq!(normalise(None), "(none)");
    }

    #[test]
    fn freshness_messages() {
        // The arithmetic is detect::freshness's (tested there); this is the wording.
        let check = |h: CacheHeaders, want: &str| {
            let mut o = obs();
            *cdn_headers(&mut o, 0) = h;
            assert_eq!(freshness(&o.domains[0].views[1]), want);
        };
        check(cc("max-age=60"), "fresh in ~60 s");
        check(
            CacheHeaders {
                age: Some(120),
                ..cc("max-age=30, s-maxage=600")
            },
            "fresh in ~480 s",
        );
        check(
            CacheHeaders {
                age: Some(400),
                ..cc("max-age=300")
            },
            "past its lifetime by 100 s",
        );
        check(
            CacheHeaders {
                cdn_cache_control: Some("max-age=900".into()),
                ..cc("s-maxage=60")
            },
            "fresh in ~900 s",
        );
        check(cc("public"), "no max-age or s-maxage to predict freshness");
        check(
            cc("no-store, max-age=60"),
            "its caching headers forbid a shared cache to store it",
        );
        let mut o = obs();
        cdn(&mut o, 0).fetch.outcome = FetchOutcome::Error {
            kind: FetchErrorKind::Timeout,
            message: "timeout".into(),
        };
        assert_eq!(
            freshness(&o.domains[0].views[1]),
            "no response to predict freshness"
        );
    }

    #[test]
    fn what_forbids_caching() {
        let check = |h: CacheHeaders, want: Option<&str>| {
            assert_eq!(forbidding(&h).as_deref(), want, "{h:?}")
        };
        check(cc("public, max-age=60"), None);
        check(cc("no-store"), Some("Cache-Control says no-store"));
        check(
            cc("private=\"set-cookie\""),
            Some("Cache-Control says private"),
        );
        check(cc("No-Cache"), Some("Cache-Control says no-cache"));
        check(cc("max-age=0"), Some("Cache-Control says max-age=0"));
        check(
            cc("s-maxage=0, max-age=60"),
            Some("Cache-Control says s-maxage=0"),
        );
        // Shared caches follow s-maxage over max-age, and the CDN its own header.
        check(cc("max-age=0, s-maxage=300"), None);
        check(
            CacheHeaders {
                cdn_cache_control: Some("max-age=300".into()),
                ..cc("no-store")
            },
            None,
        );
        check(
            CacheHeaders {
                surrogate_control: Some("no-store".into()),
                ..cc("max-age=60")
            },
            Some("Surrogate-Control says no-store"),
        );
        // no-cache allows serving a revalidated copy.
        check(
            CacheHeaders {
                cache_status: Some("REVALIDATED".into()),
                ..cc("no-cache")
            },
            None,
        );
        check(CacheHeaders::default(), None);
    }

    #[test]
    fn cached_against_policy() {
        let c = Code::CachePolicyDrift;
        let f = check(
            c,
            |o| {
                cdn_headers(o, 0).cache_control = Some("no-store".into());
                cdn_headers(o, 1).cache_control = Some("no-store".into());
                cdn_headers(o, 1).cache_status = Some("MISS".into());
                cdn_headers(o, 1).age = None;
            },
            &["app/cdn"],
        );
        assert_eq!(
            message(&f),
            "served from cache (cache status HIT (X-Cache-Status), Age 10 s) although Cache-Control says no-store"
        );
        // Age alone counts as served from cache.
        check(
            c,
            |o| {
                for i in 0..2 {
                    let h = cdn_headers(o, i);
                    h.cache_control = Some("private".into());
                    h.cache_status = None;
                    h.age = Some(i as u64);
                }
            },
            &["io/cdn"],
        );
        // Not served from cache: fine.
        check(
            c,
            |o| {
                for i in 0..2 {
                    let h = cdn_headers(o, i);
                    h.cache_control = Some("max-age=0".into());
                    h.cache_status = Some("MISS".into());
                    h.age = Some(0);
                }
            },
            &[],
        );
    }

    #[test]
    fn headers_differ_in_group() {
        let c = Code::CachePolicyDrift;
        check(
            c,
            |o| cdn_headers(o, 1).cache_control = Some("MAX-AGE=300 ,public".into()),
            &[],
        );
        let f = check(
            c,
            |o| cdn_headers(o, 1).cache_control = Some("public, max-age=60".into()),
            &["io"],
        );
        assert_eq!(
            message(&f),
            "caching headers differ from app's: Cache-Control \"max-age=60, public\" vs \"max-age=300, public\""
        );
        let f = check(
            c,
            |o| cdn_headers(o, 0).cdn_cache_control = Some("max-age=600".into()),
            &["io"],
        );
        assert!(message(&f).contains("CDN-Cache-Control \"(none)\" vs \"max-age=600\""));
        // Origin views and failed edges are not compared.
        check(
            c,
            |o| {
                match &mut origin(o, 1).fetch.outcome {
                    FetchOutcome::Response(r) => r.headers.cache_control = Some("no-store".into()),
                    FetchOutcome::Error { .. } => unreachable!(),
                }
                cdn(o, 0).fetch.outcome = response(503, cc("no-store"));
            },
            &[],
        );
    }

    #[test]
    fn behaviour_differs_in_group() {
        let c = Code::CachePolicyDrift;
        // HIT against MISS is timing, not drift.
        check(
            c,
            |o| {
                cdn_headers(o, 1).cache_status = Some("MISS".into());
                cdn_headers(o, 1).age = None;
            },
            &[],
        );
        // MISS against no cache at all: a cache that stores vs none, before any HIT.
        check(
            c,
            |o| {
                cdn_headers(o, 0).cache_status = Some("MISS".into());
                cdn_headers(o, 0).age = None;
                cdn_headers(o, 1).cache_status = None;
                cdn_headers(o, 1).cache_status_header = None;
                cdn_headers(o, 1).age = None;
            },
            &["io"],
        );
        // A cache that declines to store (BYPASS) against a HIT.
        check(
            c,
            |o| {
                cdn_headers(o, 1).cache_status = Some("BYPASS".into());
                cdn_headers(o, 1).age = None;
            },
            &["io"],
        );
        // HIT against no cache at all: the later domain differs (tie → first is reference).
        let f = check(
            c,
            |o| {
                cdn_headers(o, 1).cache_status = None;
                cdn_headers(o, 1).cache_status_header = None;
                cdn_headers(o, 1).age = None;
            },
            &["io"],
        );
        assert_eq!(
            message(&f),
            "io shows no cache at all (no cache status, no Age on cdn) while app goes through a cache (cache status HIT (X-Cache-Status), Age 10 s on cdn)"
        );
        // Age 0 without a status still shows a cache.
        check(
            c,
            |o| {
                cdn_headers(o, 1).cache_status = None;
                cdn_headers(o, 1).age = Some(0);
            },
            &[],
        );
    }

    #[test]
    fn drift_is_per_group() {
        let mut o = obs();
        cdn_headers(&mut o, 1).cache_control = Some("max-age=5".into());
        let mut tenant = config().tenants.remove(0);
        tenant.domains[1].group = "elsewhere".into();
        check_obs(Code::CachePolicyDrift, &o, &tenant, &[]);
    }
}
