//! What the rotation gate's per-view condition (1: the kid in every view, with one key
//! material, for at least that view's S + margin) reads about one view, and the rule
//! itself. The facts come either from this instance's history ([`local_view_facts`]) or
//! from every location's exported metrics through Prometheus (`gate/global.rs`): both are
//! judged by [`view_blockers`], so a local and a global answer never differ in their rules.
//!
//! Not here: open findings (`gate/open.rs`) and reading Prometheus' answer (`global.rs`).

use super::{Blocker, view_budget, view_turnover};
use crate::config::Tenant;
use crate::detect::history::{Since, TenantHistory};
use crate::detect::profiles::{self, Budget, ClientProfile};
use crate::model::{Code, Subject, Timestamp, ViewId, ViewKind};
use std::time::Duration;

/// Since when a view serves the kid, as the gate counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KidSeen {
    /// Not served now. `arrival`: when the view will likely serve it (an edge whose origin
    /// already serves it: its cached copy's turnover).
    Missing { arrival: Option<Timestamp> },
    /// Served continuously since then (for a kid present when keycanary first looked: that
    /// first observation, never earlier).
    Since(Timestamp),
    /// Served since before keycanary watched, and already signing then: no activation was
    /// seen here, so no wait is counted.
    FoundSigning,
}

/// One view as the gate's view condition sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewFacts {
    /// The vantage point; `None` for this instance's own views in a local answer.
    pub location: Option<String>,
    pub domain: String,
    pub view: ViewId,
    pub kind: ViewKind,
    pub kid: KidSeen,
    /// The view's staleness budget S.
    pub budget: Budget,
}

impl ViewFacts {
    /// `io/cdn`, or `io/cdn at us` when the location is known.
    fn place(&self) -> String {
        match &self.location {
            Some(l) => format!("{}/{} at {l}", self.domain, self.view),
            None => format!("{}/{}", self.domain, self.view),
        }
    }
}

/// Condition 1 of the rotation gate over `views`: each view that lacks `kid`, cannot bound
/// its S, or has not served it for S + `margin` by `now` is one blocker naming it.
pub fn view_blockers(
    tenant: &str,
    kid: &str,
    views: &[ViewFacts],
    margin: Duration,
    now: Timestamp,
) -> Vec<Blocker> {
    let mut out = Vec::new();
    for f in views {
        let subject = Subject::view(tenant, &f.domain, &f.view).with_kid(Some(kid));
        let place = f.place();
        let blocker = |code, detail, ready_at| Blocker {
            code,
            subject: subject.clone(),
            detail,
            ready_at,
            location: f.location.clone(),
        };
        match (f.kid, &f.budget) {
            (KidSeen::Missing { arrival }, budget) => {
                let ready_at = arrival
                    .zip(bounded(budget))
                    .map(|(at, s)| at.plus(s.saturating_add(margin)));
                out.push(blocker(
                    Code::KidMissing,
                    format!("{kid} is not served by {place}"),
                    ready_at,
                ));
            }
            (_, Budget::Unbounded { profile }) => out.push(blocker(
                Code::StalenessBudgetExceeded,
                format!("{place}: client profile {profile} neither expires nor refetches its key set, so no wait is long enough"),
                None,
            )),
            (KidSeen::FoundSigning, Budget::Bounded(_)) => {}
            (KidSeen::Since(visible_from), Budget::Bounded(s)) => {
                let ready = visible_from.plus(s.saturating_add(margin));
                if ready > now {
                    out.push(blocker(
                        Code::KeyActivatedEarly,
                        format!(
                            "{kid} visible in {place} since {visible_from}, needs {} (staleness budget {} + margin {})",
                            profiles::human(s.saturating_add(margin)),
                            profiles::human(*s),
                            profiles::human(margin)
                        ),
                        Some(ready),
                    ));
                }
            }
        }
    }
    out
}

fn bounded(b: &Budget) -> Option<Duration> {
    match b {
        Budget::Bounded(d) => Some(*d),
        Budget::Unbounded { .. } => None,
    }
}

/// The facts of every configured view of `t` about `kid`, from this instance's history.
pub fn local_view_facts(
    h: &TenantHistory,
    t: &Tenant,
    kid: &str,
    profiles: &[&ClientProfile],
) -> Vec<ViewFacts> {
    super::all_views(t)
        .into_iter()
        .map(|(domain, view)| {
            let kid_seen = local_kid_seen(h, &domain, &view, kid);
            let budget = view_budget(h, &domain, &view, profiles);
            let kind = h
                .view(&domain, &view)
                .map_or(view_kind(&view), |v| v.kind());
            ViewFacts {
                location: None,
                domain,
                view,
                kind,
                kid: kid_seen,
                budget,
            }
        })
        .collect()
}

/// The configured kind of a view not seen yet: the origin path is the origin view.
fn view_kind(view: &ViewId) -> ViewKind {
    if view.path == crate::model::ORIGIN_PATH {
        ViewKind::Origin
    } else {
        ViewKind::Edge
    }
}

/// Since when one view serves `kid`, as the gate counts it (see [`KidSeen`]).
pub fn local_kid_seen(h: &TenantHistory, domain: &str, view: &ViewId, kid: &str) -> KidSeen {
    let ledger = h.kid(kid);
    let Some(since) = ledger.and_then(|l| l.present_since_in(domain, view)) else {
        return KidSeen::Missing {
            arrival: predicted_arrival(h, domain, view, kid),
        };
    };
    let visible_from = match since {
        Since::At(t) => return KidSeen::Since(t),
        Since::BeforeWatch => h
            .view(domain, view)
            .map(|v| v.first_attempt())
            .unwrap_or(h.first_recorded()),
    };
    // Already signing when keycanary first saw the view serve it (or in the first round
    // that returned tokens at all): whatever came before is unknown, but it was not an
    // activation seen here.
    let first_tokens = h.signing().first().map(|r| r.at);
    let found_signing = ledger
        .and_then(|l| l.first_signed())
        .is_some_and(|f| f <= visible_from || Some(f) == first_tokens);
    if found_signing {
        KidSeen::FoundSigning
    } else {
        KidSeen::Since(visible_from)
    }
}

/// When an edge view that lacks `kid` will likely serve it: its cached copy's expiry, if
/// its origin already serves the kid. `None` for origin views or when unpredictable.
fn predicted_arrival(
    h: &TenantHistory,
    domain: &str,
    view: &ViewId,
    kid: &str,
) -> Option<Timestamp> {
    let v = h.view(domain, view)?;
    if v.kind() != ViewKind::Edge {
        return None;
    }
    h.kid(kid)?.present_since_in(domain, &ViewId::origin())?;
    view_turnover(h, domain, view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(location: Option<&str>, path: &str, kid: KidSeen, s: Option<u64>) -> ViewFacts {
        ViewFacts {
            location: location.map(str::to_owned),
            domain: "io".into(),
            view: ViewId {
                path: path.into(),
                edge: None,
            },
            kind: view_kind(&ViewId {
                path: path.into(),
                edge: None,
            }),
            kid,
            budget: match s {
                Some(s) => Budget::Bounded(Duration::from_secs(s)),
                None => Budget::Unbounded {
                    profile: "istio".into(),
                },
            },
        }
    }

    /// A blocker's code and `ready_at` in seconds, or none.
    type Expected = Option<(Code, Option<i64>)>;

    /// One view's facts at t = 1000 s with a 10 s margin → (code, ready_at in s) or none.
    fn check(kid: KidSeen, s: Option<u64>, expected: Expected) {
        let now = Timestamp::from_secs(1_000);
        let views = [view(Some("us"), "cdn", kid, s)];
        let got = view_blockers("acme", "k2", &views, Duration::from_secs(10), now);
        let got: Expected = match got.as_slice() {
            [] => None,
            [b] => {
                assert_eq!(b.location.as_deref(), Some("us"));
                assert!(b.detail.contains("io/cdn at us"), "{}", b.detail);
                assert_eq!(b.subject.kid.as_deref(), Some("k2"));
                Some((b.code, b.ready_at.map(Timestamp::as_secs)))
            }
            more => panic!("{more:?}"),
        };
        assert_eq!(got, expected, "{kid:?} S {s:?}");
    }

    #[test]
    fn each_view_waits_its_own_budget() {
        use Code::*;
        let at = |s| Timestamp::from_secs(s);
        let missing = |a: Option<i64>| KidSeen::Missing { arrival: a.map(at) };
        let table: &[(KidSeen, Option<u64>, Expected)] = &[
            // Missing: ready when it arrives plus S plus margin, if both are known.
            (
                missing(Some(1_200)),
                Some(60),
                Some((KidMissing, Some(1_270))),
            ),
            (missing(None), Some(60), Some((KidMissing, None))),
            (missing(Some(1_200)), None, Some((KidMissing, None))),
            // Served: blocked until S + margin have passed since it appeared.
            (
                KidSeen::Since(at(950)),
                Some(60),
                Some((KeyActivatedEarly, Some(1_020))),
            ),
            (KidSeen::Since(at(930)), Some(60), None),
            (
                KidSeen::Since(at(931)),
                Some(60),
                Some((KeyActivatedEarly, Some(1_001))),
            ),
            // No wait is long enough for an unbounded S, found signing or not.
            (
                KidSeen::Since(at(0)),
                None,
                Some((StalenessBudgetExceeded, None)),
            ),
            (
                KidSeen::FoundSigning,
                None,
                Some((StalenessBudgetExceeded, None)),
            ),
            // Found signing when keycanary first looked: no activation to wait out.
            (KidSeen::FoundSigning, Some(60), None),
        ];
        for (kid, s, expected) in table {
            check(*kid, *s, *expected);
        }
    }

    #[test]
    fn a_local_view_names_no_location() {
        let views = [view(
            None,
            "origin",
            KidSeen::Missing { arrival: None },
            Some(1),
        )];
        let b = view_blockers("acme", "k2", &views, Duration::ZERO, Timestamp(0));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].location, None);
        assert_eq!(b[0].detail, "k2 is not served by io/origin");
    }
}
