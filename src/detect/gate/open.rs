//! The tenant's open findings, sorted for one gate question into what blocks it and what
//! is only advised: a stale edge, a cached error or missing fresh data blocks every
//! promotion; a key hygiene problem (`kid_reused`, `kid_ambiguous`, `weak_key`,
//! `jwk_unparseable`) blocks promoting the kid it names; drifts and other keys' hygiene
//! are [`Advisory`]s, each with why it matters for the rotation. Once the new kid has been
//! in every view for that view's own S, no client of any view can fail on it, drift or
//! not, so a drift never makes `safe` false.
//!
//! For retirement, only missing fresh data blocks; the rest is advised.

use super::{Advisory, Blocker, GateKind, edge_turnover};
use crate::detect::history::TenantHistory;
use crate::model::{Code, Finding};

/// The open findings of `tenant` about gate `gate` for `kid`: (blocking, advisories).
pub(super) fn sort_open(
    h: &TenantHistory,
    open: &[Finding],
    tenant: &str,
    gate: GateKind,
    kid: &str,
) -> (Vec<Blocker>, Vec<Advisory>) {
    let mut blocking = Vec::new();
    let mut advisories = Vec::new();
    for f in open.iter().filter(|f| f.subject.tenant == tenant) {
        let about_kid = f.subject.kid.as_deref() == Some(kid);
        let blocks = match gate {
            GateKind::Rotation => {
                f.code.blocks_rotation() || (f.code.blocks_promoting_its_kid() && about_kid)
            }
            GateKind::Retirement => f.code == Code::ProbeStale,
        };
        if blocks {
            // A stale or error-caching edge turns over when its cached copy expires.
            let ready_at = match f.code {
                Code::StaleEdge | Code::ErrorCached => edge_turnover(h, &f.subject),
                _ => None,
            };
            blocking.push(Blocker {
                code: f.code,
                subject: f.subject.clone(),
                detail: f.message.clone(),
                ready_at,
                location: None,
            });
            continue;
        }
        let why = match gate {
            GateKind::Rotation => rotation_why(f.code),
            GateKind::Retirement => retirement_why(f.code, about_kid),
        };
        if let Some(why) = why {
            advisories.push(Advisory {
                code: f.code,
                subject: f.subject.clone(),
                detail: f.message.clone(),
                why: why.to_owned(),
            });
        }
    }
    (blocking, advisories)
}

/// Why an open finding that does not block this promotion still matters for it.
fn rotation_why(code: Code) -> Option<&'static str> {
    Some(match code {
        Code::CachePolicyDrift => {
            "domains that should cache alike do not: each view's staleness budget differs, so a purge or a wait planned for one domain does not cover the others (the gate already waits each view's own S)"
        }
        Code::JwksDrift => {
            "views of this tenant serve different key sets: publish and purge through every path and domain clients read, not only the one you checked"
        }
        Code::DiscoveryDrift => {
            "discovery documents disagree: clients of the other document may read keys from another jwks_uri or expect another alg; check both before and after the promotion"
        }
        Code::KidReused | Code::KidAmbiguous => {
            "another key of the set is ambiguous: clients may pick the wrong key for that kid, with or without this promotion; fix it before that key signs again"
        }
        Code::WeakKey => {
            "another key of the set is unsafe: remove it; it does not change how tokens of this kid verify"
        }
        Code::JwkUnparseable => {
            "another key of the set is rejected by common parsers, and some reject the whole set over it: such clients fail on every key already, this one included; fix it independently of the promotion"
        }
        _ => return None,
    })
}

/// Why an open finding matters when removing an old key.
fn retirement_why(code: Code, about_kid: bool) -> Option<&'static str> {
    Some(match code {
        Code::StaleEdge | Code::ErrorCached => {
            "an edge serves a copy that differs from its origin: clients of that view see the old key set until it turns over; after removing the key, verify the purge there too"
        }
        Code::CachePolicyDrift => {
            "domains cache differently: the removal reaches each domain's clients after that domain's own staleness budget"
        }
        Code::JwksDrift => {
            "views serve different key sets: remove the key through every path and domain, or some clients keep it"
        }
        Code::DiscoveryDrift => {
            "discovery documents disagree: clients may read keys from another jwks_uri, where the key may still be published"
        }
        c if c.blocks_promoting_its_kid() && about_kid => {
            "this finding is about the key being removed: removing it resolves it"
        }
        c if c.blocks_promoting_its_kid() => {
            "a key hygiene problem of another key: unrelated to this removal, fix it separately"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::stateful::fixtures::{recorded, round};
    use crate::model::{Subject, ViewId};

    fn finding(code: Code, kid: Option<&str>) -> Finding {
        let view = ViewId {
            path: "cdn".into(),
            edge: None,
        };
        Finding::new(
            code,
            Subject::view("acme", "io", &view).with_kid(kid),
            "seen",
        )
    }

    /// Sorts one finding for `gate` about kid `k2`: "block", "advise" or "ignore".
    fn check(gate: GateKind, code: Code, kid: Option<&str>, expected: &str) {
        let h = recorded(&[round(0)]);
        let th = h.tenant("acme").unwrap();
        let f = finding(code, kid);
        let (b, a) = sort_open(th, std::slice::from_ref(&f), "acme", gate, "k2");
        let got = match (b.len(), a.len()) {
            (1, 0) => "block",
            (0, 1) => "advise",
            (0, 0) => "ignore",
            _ => panic!("{b:?} {a:?}"),
        };
        assert_eq!(got, expected, "{gate:?} {code} kid {kid:?}");
        for a in &a {
            assert!(!a.why.is_empty() && !a.why.ends_with('.'), "{}", a.why);
        }
        // Other tenants' findings are never about this gate.
        let (b, a) = sort_open(th, &[f], "globex", gate, "k2");
        assert!(b.is_empty() && a.is_empty());
    }

    #[test]
    fn what_blocks_and_what_is_advised() {
        use Code::*;
        use GateKind::*;
        let table: &[(GateKind, Code, Option<&str>, &str)] = &[
            (Rotation, StaleEdge, None, "block"),
            (Rotation, ErrorCached, None, "block"),
            (Rotation, ProbeStale, None, "block"),
            (Rotation, CachePolicyDrift, None, "advise"),
            (Rotation, JwksDrift, None, "advise"),
            (Rotation, DiscoveryDrift, None, "advise"),
            (Rotation, KidReused, Some("k2"), "block"),
            (Rotation, KidAmbiguous, Some("k2"), "block"),
            (Rotation, WeakKey, Some("k2"), "block"),
            (Rotation, JwkUnparseable, Some("k2"), "block"),
            (Rotation, KidReused, Some("k1"), "advise"),
            (Rotation, KidAmbiguous, None, "advise"),
            (Rotation, WeakKey, Some("k1"), "advise"),
            (Rotation, JwkUnparseable, None, "advise"),
            (Rotation, KidMissing, Some("k1"), "ignore"),
            (Rotation, ClockSkew, None, "ignore"),
            (Retirement, ProbeStale, None, "block"),
            (Retirement, StaleEdge, None, "advise"),
            (Retirement, CachePolicyDrift, None, "advise"),
            (Retirement, WeakKey, Some("k2"), "advise"),
            (Retirement, WeakKey, Some("k1"), "advise"),
            (Retirement, ClockSkew, None, "ignore"),
        ];
        for (gate, code, kid, expected) in table {
            check(*gate, *code, *kid, expected);
        }
    }
}
