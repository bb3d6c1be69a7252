//! Client profiles: how real JWKS consumers cache keys, stacked on top of the CDN's cache.
//!
//! The data (the shape of a profile, the built-in table, the defaults) lives in
//! `config::profiles` and is re-exported here; this module is the simulation over explicit
//! inputs: a profile's [`lag`], the staleness budget S of a view ([`staleness_budget`]),
//! and [`replay`] — would a client of this profile reading one view reject tokens signed
//! by one kid now, and until when.
//!
//! The inputs are plain facts (when the view started serving the kid, when the kid first
//! signed, when the view is predicted to turn fresh), not a history store, so every branch
//! is table-tested here; collecting those facts is the history's job. Predictions are
//! worst cases: a client is assumed to have fetched at the least favourable moment.
//! Nothing here does I/O or reads a clock.

pub use crate::config::profiles::{ClientProfile, DEFAULT_PROFILES, OnFetchFailure, builtin};
use crate::model::Timestamp;
use std::time::Duration;

/// How long after its view changes a client of this profile may still act on the old key
/// set: its cooldown (none: zero) if it refetches on an unknown kid, else its TTL — for
/// `honours_headers` profiles the `header_ttl`, falling back to the profile's TTL. `None`:
/// unbounded (no TTL and no refetch).
pub fn lag(profile: &ClientProfile, header_ttl: Option<Duration>) -> Option<Duration> {
    if profile.refetch_on_unknown_kid {
        Some(profile.cooldown.unwrap_or_default())
    } else {
        ttl(profile, header_ttl)
    }
}

/// The TTL a client of this profile gives a fetched set.
fn ttl(profile: &ClientProfile, header_ttl: Option<Duration>) -> Option<Duration> {
    if profile.honours_headers {
        header_ttl.or(profile.ttl)
    } else {
        profile.ttl
    }
}

/// The profile with the longest [`lag`] and that lag: the first unbounded one if any, else
/// the first of the longest. `None` for no profiles.
pub fn slowest<'p>(
    profiles: &[&'p ClientProfile],
    header_ttl: Option<Duration>,
) -> Option<(&'p ClientProfile, Option<Duration>)> {
    let mut best: Option<(&ClientProfile, Option<Duration>)> = None;
    for p in profiles {
        let l = lag(p, header_ttl);
        let longer = match (best.map(|(_, b)| b), l) {
            (None, _) => true,
            (Some(None), _) => false,
            (Some(Some(_)), None) => true,
            (Some(Some(b)), Some(l)) => l > b,
        };
        if longer {
            best = Some((p, l));
        }
    }
    best
}

/// The staleness budget S of a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Budget {
    Bounded(Duration),
    /// A profile neither expires its set nor refetches on an unknown kid.
    Unbounded {
        profile: String,
    },
}

/// S of a view (findings.md): how long the edge may still serve its copy, stale-* windows
/// included (`edge_remaining`; `None`, undeclared, counts as zero), plus the [`lag`] of
/// the slowest of `profiles`. `header_ttl` is the TTL headers give `honours_headers`
/// profiles.
pub fn staleness_budget(
    edge_remaining: Option<Duration>,
    profiles: &[&ClientProfile],
    header_ttl: Option<Duration>,
) -> Budget {
    let edge = edge_remaining.unwrap_or_default();
    match slowest(profiles, header_ttl) {
        None => Budget::Bounded(edge),
        Some((_, Some(lag))) => Budget::Bounded(edge.saturating_add(lag)),
        Some((p, None)) => Budget::Unbounded {
            profile: p.name.clone(),
        },
    }
}

/// Since when one view serves one kid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Served since before keycanary watched the view, or the view never answered ok
    /// while watched: no evidence it was ever absent.
    BeforeWatching,
    /// First served (continuously since) at this time.
    At(Timestamp),
    /// Not served now.
    NotServed,
}

/// What a replay needs to know about one view and one kid K: what that view served over
/// time, never what other views of the tenant served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTimeline {
    pub served_since: Since,
    /// When the first token signed by K was seen.
    pub first_signed: Timestamp,
    /// While the view does not serve K: when it is predicted to (the edge's copy turns
    /// stale: fetch time + remaining lifetime). `None`: unknown.
    pub fresh_at: Option<Timestamp>,
    /// The view's fetch fails now.
    pub fetch_failing: bool,
    /// The TTL the view's headers give clients that honour them (see
    /// [`crate::detect::freshness::EdgeFreshness::client_ttl`]).
    pub header_ttl: Option<Duration>,
    /// This view served K before with other key material: its clients already know the
    /// kid, so a refetch on an unknown kid never triggers and only their TTL renews the
    /// stale key. (Other views serving other material under K do not make it known here.)
    pub known: bool,
}

/// A client of `profile` rejects tokens signed by the kid through this view now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFailure {
    pub profile: String,
    /// Predicted end of the failure; `None`: no end in sight.
    pub until: Option<Timestamp>,
    /// Why, in a few words for messages.
    pub reason: String,
}

/// Would a client of `profile` reading this view reject a token signed by the kid at `now`?
///
/// - A client that refetches on an unknown kid fails while the view lacks the kid (its
///   refetch gets the same stale set), and — with cooldown `c` — until `served_at + c`
///   when the view started serving the kid only after it began signing.
/// - A client that does not refetch keeps its set for its TTL: worst case it fetched just
///   before the view started serving the kid, so it fails until `served_at + ttl`; with no
///   TTL it never recovers.
/// - `BeforeWatching` is no evidence of absence: no failure from the kid.
/// - A client that errors (or clears its cache, or is undocumented) on a failed fetch fails
///   while the view's fetch fails, with no predictable end.
pub fn replay(profile: &ClientProfile, k: &KeyTimeline, now: Timestamp) -> Option<ClientFailure> {
    let missing = missing_key(profile, k, now);
    let fetch = failed_fetch(profile, k);
    let (until, reason) = match (missing, fetch) {
        (None, None) => return None,
        (Some(m), None) => m,
        (None, Some(f)) => (None, f),
        (Some((_, m)), Some(f)) => (None, format!("{m}; {f}")),
    };
    Some(ClientFailure {
        profile: profile.name.clone(),
        until,
        reason,
    })
}

/// The failure from the kid being absent from the client's cached set, if any.
fn missing_key(
    profile: &ClientProfile,
    k: &KeyTimeline,
    now: Timestamp,
) -> Option<(Option<Timestamp>, String)> {
    if now < k.first_signed {
        return None;
    }
    let cooldown = profile.cooldown.unwrap_or_default();
    let ttl = ttl(profile, k.header_ttl);
    let refetch = profile.refetch_on_unknown_kid && !k.known;
    match k.served_since {
        Since::BeforeWatching => None,
        Since::NotServed => {
            // A prediction already past still leaves the view without the kid now.
            let served = k.fresh_at.map(|t| t.max(now));
            let (until, reason) = if refetch {
                let mut reason = if k.fetch_failing {
                    "its last good set lacks the kid and its refetch fails".to_owned()
                } else {
                    "its refetch on the unknown kid gets the same stale set".to_owned()
                };
                if !cooldown.is_zero() {
                    reason.push_str(&format!(", then waits out a {} cooldown", human(cooldown)));
                }
                (served.map(|t| t.plus(cooldown)), reason)
            } else {
                match ttl {
                    Some(ttl) => (
                        served.map(|t| t.plus(ttl)),
                        format!(
                            "no refetch on an unknown kid; keeps its set {} after the view serves the kid",
                            human(ttl)
                        ),
                    ),
                    None => (None, never_refreshes()),
                }
            };
            Some((until, reason))
        }
        Since::At(served) => {
            let until = if refetch {
                if k.first_signed >= served || cooldown.is_zero() {
                    return None;
                }
                served.plus(cooldown)
            } else {
                match ttl {
                    Some(ttl) => served.plus(ttl),
                    None => return Some((None, never_refreshes())),
                }
            };
            if now >= until {
                return None;
            }
            let reason = if refetch {
                format!(
                    "the view served the kid only after it signed; a {} refetch cooldown",
                    human(cooldown)
                )
            } else {
                format!(
                    "no refetch on an unknown kid; a set fetched just before the view served the kid lives {}",
                    human(ttl.unwrap_or_default())
                )
            };
            Some((Some(until), reason))
        }
    }
}

fn never_refreshes() -> String {
    "no TTL and no refetch on an unknown kid: keeps a set without the kid".to_owned()
}

/// The failure from the view's fetch failing now, if the profile rejects on that.
fn failed_fetch(profile: &ClientProfile, k: &KeyTimeline) -> Option<String> {
    if !k.fetch_failing {
        return None;
    }
    let what = match profile.on_fetch_failure {
        OnFetchFailure::KeepLastGood => return None,
        OnFetchFailure::Error => "rejects tokens when a fetch fails",
        OnFetchFailure::ClearCache => "clears its cache when a fetch fails",
        OnFetchFailure::Unknown => "may reject when a fetch fails (undocumented)",
    };
    Some(format!("the view's fetch fails and it {what}"))
}

/// A duration for messages: `5m`, `1h 30s`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;
    const HOUR: u64 = 3600;

    #[test]
    fn builtin_names_are_unique_and_defaults_exist() {
        let all = builtin();
        let mut names: Vec<_> = all.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for d in DEFAULT_PROFILES {
            assert!(names.contains(d), "{d}");
        }
    }

    #[test]
    fn consumers_that_never_refetch_are_marked() {
        let all = builtin();
        let never: Vec<_> = all
            .iter()
            .filter(|p| !p.refetch_on_unknown_kid)
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(never, ["envoy", "istio", "apigee", "aws_http_api"]);
    }

    fn profile(name: &str) -> ClientProfile {
        builtin()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no profile {name}"))
    }

    fn custom(ttl: Option<u64>, refetch: bool, honours: bool) -> ClientProfile {
        ClientProfile {
            name: "custom".into(),
            ttl: ttl.map(Duration::from_secs),
            refetch_on_unknown_kid: refetch,
            cooldown: None,
            honours_headers: honours,
            on_fetch_failure: OnFetchFailure::KeepLastGood,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn lag_per_builtin_profile() {
        let table: &[(&str, u64)] = &[
            ("jose", 30),
            ("jwks-rsa", 0),
            ("keyfunc", 5 * MIN),
            ("go_oidc", 0),
            ("spring", 0),
            ("spring_webflux", 0),
            ("nimbus", 30),
            ("microsoft", 5 * MIN),
            ("pyjwt", 0),
            ("quarkus", 10 * MIN),
            ("jwks_client_rs", 0),
            ("envoy", 10 * MIN),
            ("istio", 20 * MIN),
            ("kong_oidc", 30),
            ("azure_apim", 5 * MIN),
            ("apigee", 5 * MIN),
            ("aws_http_api", 2 * HOUR),
            ("oathkeeper", 0),
            ("honours_http", 30),
        ];
        assert_eq!(table.len(), builtin().len());
        for (name, want) in table {
            let p = profile(name);
            assert_eq!(lag(&p, None), Some(secs(*want)), "{name}");
            // Header TTLs matter only to profiles that honour headers and do not refetch.
            assert_eq!(lag(&p, Some(secs(7))), Some(secs(*want)), "{name}");
        }
    }

    #[test]
    fn lag_of_custom_profiles() {
        assert_eq!(lag(&custom(None, false, false), None), None);
        assert_eq!(
            lag(&custom(Some(60), false, false), Some(secs(5))),
            Some(secs(60))
        );
        assert_eq!(
            lag(&custom(Some(60), false, true), Some(secs(5))),
            Some(secs(5))
        );
        assert_eq!(lag(&custom(Some(60), false, true), None), Some(secs(60)));
        assert_eq!(lag(&custom(None, false, true), None), None);
        assert_eq!(lag(&custom(None, true, false), None), Some(secs(0)));
    }

    #[test]
    fn budget_per_builtin_profile() {
        let edge = Some(secs(300));
        for p in builtin() {
            let want = Budget::Bounded(secs(300) + lag(&p, None).unwrap());
            assert_eq!(staleness_budget(edge, &[&p], None), want, "{}", p.name);
        }
        let all = builtin();
        let refs: Vec<&ClientProfile> = all.iter().collect();
        assert_eq!(
            staleness_budget(edge, &refs, None),
            Budget::Bounded(secs(300 + 2 * HOUR))
        );
        let defaults: Vec<ClientProfile> = DEFAULT_PROFILES.iter().map(|n| profile(n)).collect();
        let refs: Vec<&ClientProfile> = defaults.iter().collect();
        assert_eq!(
            slowest(&refs, None).map(|(p, l)| (p.name.as_str(), l)),
            Some(("envoy", Some(secs(10 * MIN))))
        );
        // Undeclared edge lifetime counts as zero; no profiles add nothing.
        assert_eq!(
            staleness_budget(None, &refs, None),
            Budget::Bounded(secs(10 * MIN))
        );
        assert_eq!(
            staleness_budget(edge, &[], None),
            Budget::Bounded(secs(300))
        );
        // One unbounded profile makes S unbounded, whatever the others.
        let mut never = custom(None, false, false);
        never.name = "stuck".into();
        let envoy = profile("envoy");
        assert_eq!(
            staleness_budget(edge, &[&envoy, &never], None),
            Budget::Unbounded {
                profile: "stuck".into()
            }
        );
        // honours_headers without refetch takes the header TTL.
        let h = custom(Some(60), false, true);
        assert_eq!(
            staleness_budget(edge, &[&h], Some(secs(900))),
            Budget::Bounded(secs(1200))
        );
    }

    /// The rotation of the issue: K signs from T0; the view serves the old set for 10 min.
    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn at(secs: i64) -> Timestamp {
        T0.plus_secs(secs)
    }

    fn timeline(served_since: Since, fresh_at: Option<Timestamp>) -> KeyTimeline {
        KeyTimeline {
            served_since,
            first_signed: T0,
            fresh_at,
            fetch_failing: false,
            header_ttl: None,
            known: false,
        }
    }

    /// The view of the issue at `now`: without K and predicted fresh at T0 + 10 min until
    /// then, serving it from then on.
    fn stale_for_ten_minutes(now: i64) -> KeyTimeline {
        if now < 600 {
            timeline(Since::NotServed, Some(at(600)))
        } else {
            timeline(Since::At(at(600)), None)
        }
    }

    /// `replay`'s verdict in short: `None` (no failure), `Some(None)` (no end in sight) or
    /// `Some(Some(seconds after T0))`.
    type Verdict = Option<Option<i64>>;

    fn verdict(p: &ClientProfile, k: &KeyTimeline, now: i64) -> Verdict {
        let f = replay(p, k, at(now))?;
        assert_eq!(f.profile, p.name);
        assert!(!f.reason.is_empty());
        Some(f.until.map(|u| (u.0 - T0.0) / 1000))
    }

    #[test]
    fn regression_worked_example_stale_view_for_ten_minutes() {
        // (profile, now, expected) with now and `until` in seconds after T0.
        let table: &[(&str, i64, Verdict)] = &[
            // keyfunc: fails, and keeps failing until 5 min after the view serves K.
            ("keyfunc", -1, None),
            ("keyfunc", 0, Some(Some(900))),
            ("keyfunc", 300, Some(Some(900))),
            ("keyfunc", 600, Some(Some(900))),
            ("keyfunc", 899, Some(Some(900))),
            ("keyfunc", 900, None),
            // honours_http: fails until the edge expires, then within its 30 s cooldown.
            ("honours_http", 60, Some(Some(630))),
            ("honours_http", 610, Some(Some(630))),
            ("honours_http", 630, None),
            // envoy: never refetches: served_at + its 10 min TTL.
            ("envoy", 60, Some(Some(1200))),
            ("envoy", 1199, Some(Some(1200))),
            ("envoy", 1200, None),
            // go_oidc: no TTL, refetch, no cooldown: recovers as soon as the view serves K.
            ("go_oidc", 60, Some(Some(600))),
            ("go_oidc", 600, None),
            ("go_oidc", 601, None),
            // jose: 30 s cooldown.
            ("jose", 599, Some(Some(630))),
            ("jose", 629, Some(Some(630))),
            ("jose", 631, None),
        ];
        for (name, now, want) in table {
            let p = profile(name);
            let got = verdict(&p, &stale_for_ten_minutes(*now), *now);
            assert_eq!(got, *want, "{name} at T0+{now}s");
        }
    }

    #[test]
    fn replay_branches() {
        let keyfunc = profile("keyfunc");
        let envoy = profile("envoy");
        let go_oidc = profile("go_oidc");
        let stuck = custom(None, false, false);
        let table: &[(&str, &ClientProfile, KeyTimeline, i64, Verdict)] = &[
            (
                "served before watching: no evidence of absence",
                &envoy,
                timeline(Since::BeforeWatching, None),
                60,
                None,
            ),
            (
                "never served, no prediction: no end in sight",
                &keyfunc,
                timeline(Since::NotServed, None),
                60,
                Some(None),
            ),
            (
                "prediction already past: counts from now",
                &keyfunc,
                timeline(Since::NotServed, Some(at(30))),
                60,
                Some(Some(360)),
            ),
            (
                "visible long before signing: refetching client fine",
                &keyfunc,
                timeline(Since::At(at(-3600)), None),
                60,
                None,
            ),
            (
                "visible before signing but within the TTL: envoy fails",
                &envoy,
                timeline(Since::At(at(-300)), None),
                60,
                Some(Some(300)),
            ),
            (
                "visible a full TTL before signing: envoy fine",
                &envoy,
                timeline(Since::At(at(-600)), None),
                0,
                None,
            ),
            (
                "served at signing time: a refetch gets it",
                &keyfunc,
                timeline(Since::At(T0), None),
                1,
                None,
            ),
            (
                "no refetch, no TTL: never recovers",
                &stuck,
                timeline(Since::At(at(-86400)), None),
                60,
                Some(None),
            ),
            (
                "no refetch, no TTL, not served",
                &stuck,
                timeline(Since::NotServed, Some(at(600))),
                60,
                Some(None),
            ),
            (
                "go_oidc after a late view",
                &go_oidc,
                timeline(Since::At(at(120)), None),
                121,
                None,
            ),
        ];
        for (name, p, k, now, want) in table {
            assert_eq!(verdict(p, k, *now), *want, "{name}");
        }
    }

    #[test]
    fn replay_fetch_failures() {
        let failing = |since| KeyTimeline {
            fetch_failing: true,
            ..timeline(since, None)
        };
        let table: &[(&str, Since, Verdict)] = &[
            ("jose", Since::BeforeWatching, Some(None)),
            ("pyjwt", Since::BeforeWatching, Some(None)),
            ("apigee", Since::BeforeWatching, Some(None)),
            ("keyfunc", Since::BeforeWatching, None),
            ("honours_http", Since::BeforeWatching, None),
            // Both at once: no end in sight, both reasons.
            ("jose", Since::NotServed, Some(None)),
            ("keyfunc", Since::NotServed, Some(None)),
        ];
        for (name, since, want) in table {
            let p = profile(name);
            assert_eq!(verdict(&p, &failing(*since), 60), *want, "{name} {since:?}");
        }
        let k = KeyTimeline {
            fresh_at: Some(at(600)),
            ..failing(Since::NotServed)
        };
        let f = replay(&profile("jose"), &k, at(60)).unwrap();
        assert!(
            f.reason.contains("lacks the kid") && f.reason.contains("fetch fails"),
            "{}",
            f.reason
        );
    }

    #[test]
    fn honours_headers_without_refetch_uses_the_header_ttl() {
        let p = custom(Some(600), false, true);
        let mut k = timeline(Since::At(at(100)), None);
        assert_eq!(verdict(&p, &k, 200), Some(Some(700)));
        k.header_ttl = Some(secs(60));
        assert_eq!(verdict(&p, &k, 200), None);
        assert_eq!(verdict(&p, &k, 150), Some(Some(160)));
    }
}
