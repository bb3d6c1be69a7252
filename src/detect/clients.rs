//! `client_would_fail`: replays the tenant's client profiles over what is known of each
//! view and kid, and reports every view through which some simulated client library would
//! reject tokens signed by that kid now.
//!
//! The rule ([`client_would_fail`]) judges explicit facts ([`ViewKeyFacts`]), so it does
//! not depend on how history is stored; [`view_key_facts`] gathers them from the key ledger
//! (since when the view serves the kid, when the kid first signed) and this round (is the
//! fetch failing, when the edge turns fresh — see [`crate::detect::freshness`]), and
//! [`client_findings`] is the two together, run by [`crate::detect::assess`]. The
//! simulation itself is [`crate::detect::profiles::replay`].
//!
//! Which kids and views: the kids of this round's tokens of a domain, in that domain's edge
//! views (the paths clients read; the origin view is keycanary's truth, not a client's
//! path). Pure: `now` is passed in.

use crate::config::{Config, Tenant};
use crate::detect::freshness::view_freshness;
use crate::detect::history::{self, History, TenantHistory};
use crate::detect::profiles::{self, ClientFailure, ClientProfile, KeyTimeline, Since};
use crate::model::{
    Code, DomainObservation, Finding, Observation, Subject, Timestamp, TokenCheckResult, ViewId,
    ViewKind, ViewObservation,
};
use std::collections::BTreeSet;

/// What is known about one kid in one view of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewKeyFacts {
    pub domain: String,
    pub view: ViewId,
    pub kid: String,
    pub timeline: KeyTimeline,
}

/// One finding (critical, subject view + kid) per fact through which at least one of
/// `profiles` fails, naming every failing profile with its predicted end.
pub fn client_would_fail(
    tenant: &str,
    facts: &[ViewKeyFacts],
    profiles: &[&ClientProfile],
    now: Timestamp,
) -> Vec<Finding> {
    facts
        .iter()
        .filter_map(|f| {
            let failures: Vec<ClientFailure> = profiles
                .iter()
                .filter_map(|p| profiles::replay(p, &f.timeline, now))
                .collect();
            if failures.is_empty() {
                return None;
            }
            let subject = Subject::view(tenant, &f.domain, &f.view).with_kid(Some(&f.kid));
            Some(Finding::new(
                Code::ClientWouldFail,
                subject,
                message(&f.kid, &failures),
            ))
        })
        .collect()
}

/// `client_would_fail` for one tenant's round: [`view_key_facts`] judged by the tenant's
/// `client_profiles` (looked up in `config`). `history` must already hold `obs`.
pub fn client_findings(
    history: &History,
    obs: &Observation,
    tenant: &Tenant,
    config: &Config,
    now: Timestamp,
) -> Vec<Finding> {
    let Some(th) = history.tenant(&obs.tenant) else {
        return Vec::new();
    };
    let profiles = config.tenant_profiles(tenant);
    client_would_fail(&obs.tenant, &view_key_facts(th, obs), &profiles, now)
}

/// For each domain of the round, each kid of its tokens and each of its edge views: what
/// that view served over time. Kids the ledger has not seen sign are skipped.
///
/// Every fact is about one view: whether and since when *it* has served the kid with the
/// signer's material, and whether *its* clients already knew the kid under other material.
/// What other views of the tenant serve (a crafted second key under the same kid on another
/// domain, say) is their own finding, never this view's.
pub fn view_key_facts(history: &TenantHistory, obs: &Observation) -> Vec<ViewKeyFacts> {
    let mut out = Vec::new();
    for d in &obs.domains {
        let kids: BTreeSet<&str> = d
            .tokens()
            .iter()
            .filter_map(|t| t.header.kid.as_deref())
            .collect();
        for kid in kids {
            let Some((ledger, first_signed)) =
                history.kid(kid).and_then(|l| Some((l, l.first_signed()?)))
            else {
                continue;
            };
            let material = signer_material(obs, d, kid);
            // With several materials under the kid, "first signed" is when the signer's
            // material appeared (the signing record does not say which material signed).
            let first_signed = match material
                .and_then(|tp| ledger.thumbprints().iter().find(|m| m.thumbprint == tp))
            {
                Some(m) if ledger.thumbprints().len() > 1 => m.first_seen.max(first_signed),
                _ => first_signed,
            };
            for v in d.views.iter().filter(|v| v.kind == ViewKind::Edge) {
                let served = served_over_time(history, ledger, &d.domain, &v.id, kid, material);
                let freshness = view_freshness(v);
                let fresh_at = match served.since {
                    Since::NotServed if origin_lacks(d, kid) != Some(true) => {
                        freshness.as_ref().and_then(|f| f.fresh_until)
                    }
                    _ => None,
                };
                out.push(ViewKeyFacts {
                    domain: d.domain.clone(),
                    view: v.id.clone(),
                    kid: kid.to_owned(),
                    timeline: KeyTimeline {
                        served_since: served.since,
                        first_signed,
                        fresh_at,
                        fetch_failing: !served_ok(v),
                        header_ttl: freshness.and_then(|f| f.client_ttl),
                        known: served.known,
                    },
                });
            }
        }
    }
    out
}

/// What one view served of one kid, read from that view's own timeline.
struct ViewServed {
    since: Since,
    /// The view's clients knew the kid under other material just before it served the
    /// signer's (or, while it does not, in its latest ok answer).
    known: bool,
}

/// Since when the view has served `kid` with `material` (any material when unknown), from
/// its ok answers only: a failed fetch neither confirms nor breaks what its clients hold
/// (a client that keeps its last good set keeps it; one that errors is judged on the
/// failure itself). A view that never answered ok has shown no absence: `BeforeWatching`.
fn served_over_time(
    history: &TenantHistory,
    ledger: &history::KidLedger,
    domain: &str,
    view: &ViewId,
    kid: &str,
    material: Option<&str>,
) -> ViewServed {
    let serves = |s: &history::Served| match material {
        Some(tp) => s.keys.as_deref().is_some_and(|ks| {
            ks.iter()
                .any(|k| k.kid.as_deref() == Some(kid) && k.thumbprint.as_deref() == Some(tp))
        }),
        None => s.has_kid(kid),
    };
    let mut ok = history
        .view_timeline(domain, view)
        .iter()
        .rev()
        .filter(|r| r.served.ok())
        .peekable();
    let Some(latest) = ok.peek() else {
        return ViewServed {
            since: Since::BeforeWatching,
            known: false,
        };
    };
    if !serves(&latest.served) {
        return ViewServed {
            since: Since::NotServed,
            known: latest.served.has_kid(kid),
        };
    }
    let mut first = latest.first_at;
    while let Some(run) = ok.next_if(|r| serves(&r.served)) {
        first = run.first_at;
    }
    match ok.next() {
        // The ok answer before served other material under the kid, or lacked the kid.
        Some(before) => ViewServed {
            since: Since::At(first),
            known: before.served.has_kid(kid),
        },
        // Served in every ok answer the timeline keeps: the ledger knows since when.
        None => ViewServed {
            since: match ledger.present_since_in(domain, view) {
                Some(history::Since::BeforeWatch) => Since::BeforeWatching,
                Some(history::Since::At(t)) => Since::At(t.min(first)),
                None => Since::At(first),
            },
            known: false,
        },
    }
}

/// The key material that signs `kid` this round: the one thumbprint under the kid in a
/// view on which tokens signed by it verified (domain `d`'s own first, then the tenant's
/// other domains), else in `d`'s origin view. A view serving the kid twice tells nothing.
/// `None` when nothing tells (any material under the kid counts then).
fn signer_material<'a>(
    obs: &'a Observation,
    d: &'a DomainObservation,
    kid: &str,
) -> Option<&'a str> {
    let only = |v: &'a ViewObservation| {
        let mut tps = ok_keys_or_empty(v)
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .map(|k| k.thumbprint.as_deref());
        match (tps.next(), tps.next()) {
            (Some(tp), None) => tp,
            _ => None,
        }
    };
    let verified_in = |d: &'a DomainObservation| {
        d.tokens()
            .iter()
            .filter(|t| t.header.kid.as_deref() == Some(kid))
            .flat_map(|t| &t.checks)
            .filter(|c| c.result == TokenCheckResult::Verified)
            .filter_map(|c| d.view(&c.view))
            .find_map(only)
    };
    verified_in(d)
        .or_else(|| obs.domains.iter().find_map(verified_in))
        .or_else(|| {
            d.views
                .iter()
                .filter(|v| v.kind == ViewKind::Origin)
                .find_map(only)
        })
}

fn ok_keys_or_empty(v: &ViewObservation) -> &[crate::model::KeyInfo] {
    crate::detect::history::ok_keys(v).unwrap_or_default()
}

/// Whether the view answered 2xx with a key set, as a client's fetch would need.
fn served_ok(v: &ViewObservation) -> bool {
    crate::detect::history::ok_keys(v).is_some()
}

/// Whether the domain's origin view (answering ok) lacks the kid: then the edge turning
/// fresh will not bring it. `None` when there is no ok origin view to tell.
fn origin_lacks(d: &DomainObservation, kid: &str) -> Option<bool> {
    let origin = d
        .views
        .iter()
        .find(|v| v.kind == ViewKind::Origin && served_ok(v))?;
    Some(!origin.keys().iter().any(|k| k.kid.as_deref() == Some(kid)))
}

fn message(kid: &str, failures: &[ClientFailure]) -> String {
    let each: Vec<String> = failures
        .iter()
        .map(|f| {
            let until = match f.until {
                Some(t) => format!("until {t}"),
                None => "with no end in sight".to_owned(),
            };
            format!("{} {until} ({})", f.profile, f.reason)
        })
        .collect();
    format!(
        "clients reading this view would reject tokens signed by {kid}: {}",
        each.join("; ")
    )
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::profiles::builtin;

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn facts(view: &str, since: Since, fresh_at: Option<Timestamp>) -> ViewKeyFacts {
        ViewKeyFacts {
            domain: "io".into(),
            view: ViewId {
                path: view.into(),
                edge: None,
            },
            kid: "k2".into(),
            timeline: KeyTimeline {
                served_since: since,
                first_signed: T0,
                fresh_at,
                fetch_failing: false,
                header_ttl: None,
                known: false,
            },
        }
    }

    fn run(names: &[&str], facts: &[ViewKeyFacts], now: Timestamp) -> Vec<Finding> {
        let all = builtin();
        let profiles: Vec<&ClientProfile> = names
            .iter()
            .map(|n| all.iter().find(|p| p.name == *n).unwrap())
            .collect();
        let found = client_would_fail("acme", facts, &profiles, now);
        for f in &found {
            assert_eq!(f.code, Code::ClientWouldFail);
            assert_eq!(f.severity, crate::model::Severity::Critical);
            assert!(!f.message.contains('\n'));
        }
        found
    }

    #[test]
    fn fires_naming_every_failing_profile() {
        // The seed incident, one minute in: io's cdn lacks k2 until T0 + 10 min.
        let f = run(
            &["jose", "keyfunc", "envoy", "honours_http"],
            &[facts("cdn", Since::NotServed, Some(T0.plus_secs(600)))],
            T0.plus_secs(60),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].subject.domain.as_deref(), Some("io"));
        assert_eq!(f[0].subject.path.as_deref(), Some("cdn"));
        assert_eq!(f[0].subject.kid.as_deref(), Some("k2"));
        let m = &f[0].message;
        assert!(
            m.starts_with("clients reading this view would reject tokens signed by k2: jose until 2027-01-15T08:10:30Z ("),
            "{m}"
        );
        for part in [
            "; keyfunc until 2027-01-15T08:15:00Z (",
            "; envoy until 2027-01-15T08:20:00Z (",
            "; honours_http until 2027-01-15T08:10:30Z (",
        ] {
            assert!(m.contains(part), "{part} in {m}");
        }
    }

    #[test]
    fn only_failing_profiles_are_named() {
        // Twelve minutes in, the view has served k2 since T0 + 10 min.
        let f = run(
            &["jose", "keyfunc", "envoy", "go_oidc"],
            &[facts("cdn", Since::At(T0.plus_secs(600)), None)],
            T0.plus_secs(720),
        );
        assert_eq!(f.len(), 1);
        let m = &f[0].message;
        assert!(m.contains("keyfunc until 2027-01-15T08:15:00Z"), "{m}");
        assert!(m.contains("envoy until 2027-01-15T08:20:00Z"), "{m}");
        assert!(!m.contains("jose") && !m.contains("go_oidc"), "{m}");
    }

    #[test]
    fn no_end_in_sight() {
        let mut fact = facts("cdn", Since::NotServed, None);
        fact.timeline.fetch_failing = true;
        let f = run(&["keyfunc"], &[fact], T0.plus_secs(60));
        assert!(
            f[0].message.contains("keyfunc with no end in sight ("),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn does_not_fire() {
        let cases = [
            // Visible everywhere long before signing.
            facts("cdn", Since::At(T0.plus_secs(-7200)), None),
            // No evidence it was ever absent.
            facts("origin", Since::BeforeWatching, None),
        ];
        assert!(run(&["jose", "keyfunc", "envoy"], &cases, T0.plus_secs(60)).is_empty());
        // Failing views, but nobody simulated.
        let late = facts("cdn", Since::NotServed, None);
        assert!(run(&[], std::slice::from_ref(&late), T0.plus_secs(60)).is_empty());
        // Before the kid signs anything, nobody is asked to accept it.
        assert!(run(&["jose"], &[late], T0.plus_secs(-1)).is_empty());
    }

    #[test]
    fn one_finding_per_view() {
        let f = run(
            &["envoy"],
            &[
                facts("cdn", Since::NotServed, Some(T0.plus_secs(600))),
                facts("mirror", Since::At(T0.plus_secs(-60)), None),
                facts("origin", Since::BeforeWatching, None),
            ],
            T0.plus_secs(60),
        );
        let paths: Vec<_> = f.iter().map(|f| f.subject.path.clone().unwrap()).collect();
        assert_eq!(paths, ["cdn", "mirror"]);
    }

    /// Through [`crate::detect::assess`]: the ledger and the round give the facts.
    mod assessed {
        use crate::detect::stateful::fixtures::{
            at, cdn, cdn_headers, check, hit_headers, key, keys, origin, response, round, sign_with,
        };
        use crate::model::*;

        /// The clean round at step `i`, after a rotation to k2 that both origins publish;
        /// io's edge still serves only k1 while `io_stale`.
        fn rotated(i: i64, io_stale: bool) -> Observation {
            let mut o = round(i);
            for d in 0..2 {
                for v in 0..2 {
                    keys(&mut o, d, v, vec![key("k1"), key("k2")]);
                }
            }
            if io_stale {
                keys(&mut o, 1, 1, vec![key("k1")]);
            }
            sign_with(&mut o, "k2");
            o
        }

        const C: Code = Code::ClientWouldFail;

        #[test]
        fn steady_state_is_quiet() {
            check(C, &[round(0), round(1), round(2)], &[]);
        }

        #[test]
        fn regression_seed_incident_over_rounds() {
            // Step 2: the rotation; io's edge is stale (max-age 300, Age 10).
            let steps = [round(0), round(1), rotated(2, true)];
            let f = check(C, &steps, &["app/cdn#k2", "io/cdn#k2"]);
            // app's edge served k2 from the round it signed: only envoy (no refetch, a
            // 10 min TTL on a set fetched just before) can still hold a set without it.
            assert!(f[0].message.contains("envoy until "), "{}", f[0].message);
            assert!(!f[0].message.contains("jose"), "{}", f[0].message);
            // io's edge lacks k2 until its copy turns stale (~290 s): everyone fails.
            for p in ["jose", "keyfunc", "spring", "envoy", "honours_http"] {
                assert!(f[1].message.contains(p), "{p}: {}", f[1].message);
            }
            // Step 3: io's edge serves k2 — after k2 began signing, so cooldowns still bite.
            let steps = [round(0), round(1), rotated(2, true), rotated(3, false)];
            let f = check(C, &steps, &["app/cdn#k2", "io/cdn#k2"]);
            let end = |s: i64| at(3).plus_secs(s).to_rfc3339();
            assert!(
                f[1].message
                    .contains(&format!("keyfunc until {} (", end(300))),
                "{}",
                f[1].message
            );
            assert!(!f[1].message.contains("spring"), "{}", f[1].message);
            // Fifteen minutes on, every cache has turned over.
            let steps = [
                round(0),
                round(1),
                rotated(2, true),
                rotated(3, false),
                rotated(30, false),
            ];
            check(C, &steps, &[]);
        }

        #[test]
        fn a_key_published_before_watching_signs_safely() {
            let published = |i| {
                let mut o = round(i);
                for d in 0..2 {
                    for v in 0..2 {
                        keys(&mut o, d, v, vec![key("k1"), key("k2")]);
                    }
                }
                o
            };
            let mut signing = published(2);
            sign_with(&mut signing, "k2");
            check(C, &[published(0), published(1), signing], &[]);
        }

        /// A key under `kid` with other material than the signer's.
        fn crafted(kid: &str) -> KeyInfo {
            KeyInfo {
                thumbprint: Some(format!("tp-crafted-{kid}")),
                ..key(kid)
            }
        }

        #[test]
        fn regression_crafted_set_on_one_domain_is_not_a_failure_of_the_other() {
            // io serves a second key under the signing kid with other material (first or
            // second in its set); app, not cached, serves the right set and every token
            // verifies. Only io is unhealthy: nothing about app's view, and no profile is
            // said to skip its refetch there.
            let crafted_sets = [
                vec![key("k1"), crafted("k1")],
                vec![crafted("k1"), key("k1")],
            ];
            for set in crafted_sets {
                let step = |i| {
                    let mut o = round(i);
                    keys(&mut o, 1, 0, set.clone());
                    keys(&mut o, 1, 1, set.clone());
                    *cdn_headers(&mut o, 0) = CacheHeaders::default();
                    o
                };
                // On a first round (as `check` sees it) and over rounds.
                for steps in [vec![step(0)], vec![step(0), step(1), step(2)]] {
                    let f = check(C, &steps, &[]);
                    assert!(f.is_empty());
                }
                // The crafted key arriving after the signer was established: the same.
                check(C, &[round(0), round(1), step(2), step(3)], &[]);
            }
        }

        #[test]
        fn regression_cached_error_does_not_fail_clients_that_keep_their_last_good_set() {
            // The origin answers 503 and io's edge serves that from its cache for 10 min,
            // on the first round keycanary sees. A client that keeps its last good set is
            // not shown to lack the kid; only clients that reject on a failed fetch fail.
            let mut o = round(0);
            let cached_error = CacheHeaders {
                cache_control: Some("public, max-age=600".into()),
                age: Some(5),
                cache_status: Some("HIT".into()),
                cache_status_header: Some("X-Cache-Status".into()),
                ..Default::default()
            };
            cdn(&mut o, 1).fetch.outcome = response(503, cached_error.clone());
            cdn(&mut o, 1).key_set = None;
            origin(&mut o, 1).fetch.outcome = response(503, CacheHeaders::default());
            origin(&mut o, 1).key_set = None;
            let f = check(C, std::slice::from_ref(&o), &["io/cdn#k1"]);
            let m = &f[0].message;
            assert!(m.contains("jose with no end in sight"), "{m}");
            for keeps in ["keyfunc", "honours_http", "stale set"] {
                assert!(!m.contains(keeps), "{keeps}: {m}");
            }
            // The same after rounds in which the view served the kid.
            let f = check(C, &[round(0), round(1), o], &["io/cdn#k1"]);
            assert!(!f[0].message.contains("keyfunc"), "{}", f[0].message);
        }

        #[test]
        fn a_view_that_lacks_the_kid_behind_a_cached_error_still_fails_everyone() {
            // k2 signs while io's edge, whose last good set lacks k2, serves a cached 503:
            // clients that keep their last good set hold a set without k2 and cannot
            // refresh it.
            let mut o = rotated(2, false);
            cdn(&mut o, 1).fetch.outcome = response(503, hit_headers());
            cdn(&mut o, 1).key_set = None;
            let f = check(C, &[round(0), round(1), o], &["app/cdn#k2", "io/cdn#k2"]);
            let m = &f[1].message;
            assert!(m.contains("keyfunc"), "{m}");
            assert!(
                m.contains("its last good set lacks the kid and its refetch fails"),
                "{m}"
            );
        }

        #[test]
        fn failing_fetch_fails_clients_that_error() {
            let mut o = round(1);
            cdn(&mut o, 1).fetch.outcome = response(503, CacheHeaders::default());
            cdn(&mut o, 1).key_set = None;
            let f = check(C, &[round(0), o], &["io/cdn#k1"]);
            let m = &f[0].message;
            assert!(m.contains("jose with no end in sight"), "{m}");
            assert!(!m.contains("keyfunc") && !m.contains("honours_http"), "{m}");
        }
    }
}
