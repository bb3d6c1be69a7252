//! Rules about what one view serves: `jwks_fetch_failed`, `kid_ambiguous`, `weak_key`,
//! `jwk_unparseable` (each per view, origin views included), and `jwks_drift` (origin key
//! sets across the domains of one group). Also the kid→thumbprint [`KeyMap`] and its
//! difference, shared with `stale_edge`.
//!
//! Keys are judged from the facts the probe extracted ([`KeyInfo`]); no key material is
//! parsed here.

use super::{Ctx, kid_name, names, one_line, origin_view, reference};
use crate::detect::history::ok_keys;
use crate::model::{
    Code, FetchErrorKind, FetchOutcome, Finding, KeyInfo, KeySetParse, Subject, TokenKind,
    ViewObservation,
};
use std::collections::{BTreeMap, BTreeSet};

/// Why a view has no usable key, or `None` when at least one key parses.
fn unusable(v: &ViewObservation) -> Option<String> {
    let r = match &v.fetch.outcome {
        FetchOutcome::Error { message, .. } if v.fetch.url.is_empty() => {
            return Some(one_line(message));
        }
        FetchOutcome::Error { kind, message } => {
            return Some(format!(
                "fetching {} failed ({}): {}",
                one_line(&v.fetch.url),
                error_kind(*kind),
                one_line(message)
            ));
        }
        FetchOutcome::Response(r) => r,
    };
    if !(200..300).contains(&r.status) {
        return Some(format!(
            "{} answered status {}",
            one_line(&v.fetch.url),
            r.status
        ));
    }
    match &v.key_set {
        None => Some("no key set was read from the 2xx response".to_owned()),
        Some(KeySetParse::Invalid { reason }) => {
            Some(format!("not a usable JWKS: {}", one_line(reason)))
        }
        Some(KeySetParse::Parsed { keys }) if keys.is_empty() => {
            Some("the key set is empty".to_owned())
        }
        Some(KeySetParse::Parsed { keys }) if keys.iter().all(|k| !k.problems.is_empty()) => {
            Some(format!(
                "none of the {} keys parses ({})",
                keys.len(),
                names(keys.iter().map(|k| kid_name(k.kid.as_deref())))
            ))
        }
        Some(KeySetParse::Parsed { .. }) => None,
    }
}

fn error_kind(kind: FetchErrorKind) -> &'static str {
    match kind {
        FetchErrorKind::Connect => "connect",
        FetchErrorKind::Timeout => "timeout",
        FetchErrorKind::Tls => "tls",
        FetchErrorKind::Redirect => "redirect",
        FetchErrorKind::BodyTooLarge => "body too large",
        FetchErrorKind::Other => "other",
    }
}

pub(super) fn jwks_fetch_failed(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (d, v) in cx.all_views() {
        if let Some(why) = unusable(v) {
            out.push(Finding::new(
                Code::JwksFetchFailed,
                cx.view_subject(d, &v.id),
                why,
            ));
        }
    }
}

pub(super) fn kid_ambiguous(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (d, v) in cx.all_views() {
        let keys = v.keys();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for kid in keys.iter().filter_map(|k| k.kid.as_deref()) {
            *counts.entry(kid).or_default() += 1;
        }
        for (kid, n) in counts.into_iter().filter(|(_, n)| *n > 1) {
            let subject = cx.view_subject(d, &v.id).with_kid(Some(kid));
            let message = format!("kid {kid} appears {n} times in the key set");
            out.push(Finding::new(Code::KidAmbiguous, subject, message));
        }
        let without = keys.iter().filter(|k| k.kid.is_none()).count();
        if without > 0 && keys.len() > 1 {
            let message = format!(
                "{without} of {} keys have no kid: clients cannot tell which one verifies",
                keys.len()
            );
            out.push(Finding::new(
                Code::KidAmbiguous,
                cx.view_subject(d, &v.id),
                message,
            ));
        }
    }
}

/// The curve an `ES*` alg requires.
fn curve_for(alg: &str) -> Option<&'static str> {
    match alg {
        "ES256" => Some("P-256"),
        "ES384" => Some("P-384"),
        "ES512" => Some("P-521"),
        _ => None,
    }
}

pub(super) fn weak_key(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    // kid → (token kinds, algs) of every token signed this round, tenant-wide.
    let mut signed: BTreeMap<&str, (BTreeSet<TokenKind>, BTreeSet<&str>)> = BTreeMap::new();
    for t in cx.obs.domains.iter().flat_map(|d| d.tokens()) {
        if let Some(kid) = &t.header.kid {
            let e = signed.entry(kid).or_default();
            e.0.insert(t.kind);
            e.1.insert(&t.header.alg);
        }
    }
    for (d, v) in cx.all_views() {
        for k in v.keys() {
            let signer = k.kid.as_deref().and_then(|kid| signed.get(kid));
            let mut reasons = Vec::new();
            if k.kty == "RSA"
                && let Some(bits) = k.size_bits.filter(|b| *b < 2048)
            {
                reasons.push(format!("RSA modulus of {bits} bits (< 2048)"));
            }
            if k.kty == "EC" {
                // The key's own alg, else the algs its tokens used this round.
                let algs: Vec<&str> = match (&k.alg, signer) {
                    (Some(alg), _) => vec![alg.as_str()],
                    (None, Some((_, algs))) => algs.iter().copied().collect(),
                    (None, None) => vec![],
                };
                for alg in algs {
                    if let Some(want) = curve_for(alg)
                        && k.crv.as_deref() != Some(want)
                    {
                        reasons.push(format!(
                            "curve {} does not match {alg} (needs {want})",
                            one_line(k.crv.as_deref().unwrap_or("(none)"))
                        ));
                    }
                }
            }
            if !k.private_members.is_empty() {
                reasons.push(format!(
                    "publishes private members {}",
                    names(&k.private_members)
                ));
            }
            if k.kty == "oct" {
                reasons.push("symmetric key (kty oct) published".to_owned());
            }
            if k.use_.as_deref() == Some("enc")
                && let Some((kinds, _)) = signer
            {
                reasons.push(format!(
                    "use=enc key signed {} this round",
                    names(kinds.iter().map(|t| t.as_str()))
                ));
            }
            for reason in reasons {
                let subject = cx.view_subject(d, &v.id).with_kid(k.kid.as_deref());
                let message = format!("key {}: {reason}", kid_name(k.kid.as_deref()));
                out.push(Finding::new(Code::WeakKey, subject, message));
            }
        }
    }
}

pub(super) fn jwk_unparseable(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (d, v) in cx.all_views() {
        for k in v.keys().iter().filter(|k| !k.problems.is_empty()) {
            let subject = cx.view_subject(d, &v.id).with_kid(k.kid.as_deref());
            let message = format!(
                "key {} (kty {}) is rejected by common parsers: {}",
                kid_name(k.kid.as_deref()),
                one_line(&k.kty),
                one_line(&k.problems.join(", "))
            );
            out.push(Finding::new(Code::JwkUnparseable, subject, message));
        }
    }
}

/// A key set as compared between views: its (kid, thumbprint) pairs.
pub(super) type KeyMap<'a> = BTreeSet<(Option<&'a str>, Option<&'a str>)>;

pub(super) fn key_map(keys: &[KeyInfo]) -> KeyMap<'_> {
    keys.iter()
        .map(|k| (k.kid.as_deref(), k.thumbprint.as_deref()))
        .collect()
}

/// How `got` differs from `want`, by kid: `missing k2, extra k0, changed k1`. Empty when
/// they are equal.
pub(super) fn describe_diff(want: &KeyMap<'_>, got: &KeyMap<'_>) -> String {
    type ByKid<'a> = BTreeMap<Option<&'a str>, BTreeSet<Option<&'a str>>>;
    fn by_kid<'a>(m: &KeyMap<'a>) -> ByKid<'a> {
        let mut out = ByKid::new();
        for (kid, tp) in m {
            out.entry(*kid).or_default().insert(*tp);
        }
        out
    }
    let (want, got) = (by_kid(want), by_kid(got));
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let changed: Vec<_> = want
        .iter()
        .filter(|(k, tps)| got.get(*k).is_some_and(|g| g != *tps))
        .map(|(k, _)| k)
        .collect();
    let mut parts = Vec::new();
    for (label, kids) in [("missing", missing), ("extra", extra), ("changed", changed)] {
        if !kids.is_empty() {
            let kids = names(kids.iter().map(|k| one_line(kid_name(**k))));
            parts.push(format!("{label} {kids}"));
        }
    }
    parts.join(", ")
}

pub(super) fn jwks_drift(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for group in cx.groups() {
        let members: Vec<(&str, KeyMap<'_>)> = group
            .iter()
            .filter_map(|d| Some((d.domain.as_str(), key_map(ok_keys(origin_view(d)?)?))))
            .collect();
        let Some((ref_name, want)) = reference(&members) else {
            continue;
        };
        for (name, got) in &members {
            if got != want {
                let message = format!(
                    "origin key set differs from {ref_name}'s: {}",
                    describe_diff(want, got)
                );
                let subject = Subject::domain(&cx.obs.tenant, name);
                out.push(Finding::new(Code::JwksDrift, subject, message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::model::*;

    #[test]
    fn jwks_fetch_failed() {
        let c = Code::JwksFetchFailed;
        type Edit = fn(&mut Observation);
        let table: &[(Edit, &[&str], &str)] = &[
            (|_| {}, &[], ""),
            (
                |o| {
                    cdn(o, 0).fetch.outcome = FetchOutcome::Error {
                        kind: FetchErrorKind::Timeout,
                        message: "timed out after 10s".into(),
                    };
                    cdn(o, 0).key_set = None;
                },
                &["app/cdn"],
                "fetching https://cdn.example/cdn/jwks failed (timeout): timed out after 10s",
            ),
            (
                |o| {
                    cdn(o, 0).fetch.outcome = response(503, hit_headers());
                    cdn(o, 0).key_set = None;
                },
                &["app/cdn"],
                "answered status 503",
            ),
            (
                |o| {
                    origin(o, 1).key_set = Some(KeySetParse::Invalid {
                        reason: "not JSON".into(),
                    })
                },
                &["io/origin"],
                "not a usable JWKS: not JSON",
            ),
            (
                |o| keys(o, 0, 1, vec![]),
                &["app/cdn"],
                "the key set is empty",
            ),
            (
                |o| {
                    let mut bad = key("k1");
                    bad.problems = vec!["bad base64url in n".into()];
                    keys(o, 0, 1, vec![bad]);
                },
                &["app/cdn"],
                "none of the 1 keys parses (k1)",
            ),
            (
                // One good key is enough.
                |o| {
                    let mut bad = key("k0");
                    bad.problems = vec!["unknown kty".into()];
                    keys(o, 0, 1, vec![bad, key("k1")]);
                },
                &[],
                "",
            ),
            (
                |o| cdn(o, 0).key_set = None,
                &["app/cdn"],
                "no key set was read",
            ),
        ];
        for (edit, expected, fragment) in table {
            let f = check(c, edit, expected);
            if let Some(f) = f.first() {
                assert!(f.message.contains(fragment), "{}", f.message);
            }
        }
    }

    #[test]
    fn kid_ambiguous() {
        let c = Code::KidAmbiguous;
        let nokid = || KeyInfo {
            kid: None,
            ..key("x")
        };
        check(c, |_| {}, &[]);
        check(c, |o| keys(o, 0, 1, vec![key("k1"), key("k2")]), &[]);
        let f = check(
            c,
            |o| keys(o, 0, 1, vec![key("k1"), key("k1"), key("k2")]),
            &["app/cdn#k1"],
        );
        assert_eq!(message(&f), "kid k1 appears 2 times in the key set");
        check(c, |o| keys(o, 0, 0, vec![nokid()]), &[]);
        let f = check(
            c,
            |o| keys(o, 0, 0, vec![key("k1"), nokid()]),
            &["app/origin"],
        );
        assert!(message(&f).starts_with("1 of 2 keys have no kid"));
    }

    #[test]
    fn weak_key() {
        let c = Code::WeakKey;
        let ec = |kid: &str, alg: Option<&str>, crv: &str| KeyInfo {
            kty: "EC".into(),
            alg: alg.map(str::to_owned),
            crv: Some(crv.into()),
            size_bits: Some(256),
            ..key(kid)
        };
        let table: &[(&str, Vec<KeyInfo>, &[&str], &str)] = &[
            ("clean", vec![key("k1")], &[], ""),
            (
                "small RSA",
                vec![KeyInfo {
                    size_bits: Some(1024),
                    ..key("k1")
                }],
                &["app/cdn#k1"],
                "key k1: RSA modulus of 1024 bits (< 2048)",
            ),
            (
                "P-256 with ES256",
                vec![ec("e1", Some("ES256"), "P-256")],
                &[],
                "",
            ),
            (
                "P-521 with ES512",
                vec![ec("e1", Some("ES512"), "P-521")],
                &[],
                "",
            ),
            (
                "P-384 with ES256",
                vec![ec("e1", Some("ES256"), "P-384")],
                &["app/cdn#e1"],
                "curve P-384 does not match ES256 (needs P-256)",
            ),
            (
                "EC without alg, unused",
                vec![ec("e1", None, "P-384")],
                &[],
                "",
            ),
            (
                "private members",
                vec![KeyInfo {
                    private_members: vec!["d".into(), "p".into()],
                    ..key("k1")
                }],
                &["app/cdn#k1"],
                "publishes private members d, p",
            ),
            (
                "oct",
                vec![KeyInfo {
                    kty: "oct".into(),
                    size_bits: None,
                    ..key("s1")
                }],
                &["app/cdn#s1"],
                "symmetric key (kty oct) published",
            ),
            (
                "enc key, not signing",
                vec![
                    key("k1"),
                    KeyInfo {
                        use_: Some("enc".into()),
                        ..key("k2")
                    },
                ],
                &[],
                "",
            ),
            (
                "enc key that signed",
                vec![KeyInfo {
                    use_: Some("enc".into()),
                    ..key("k1")
                }],
                &["app/cdn#k1"],
                "use=enc key signed access_token this round",
            ),
        ];
        for (name, ks, expected, fragment) in table {
            let f = check(c, |o| keys(o, 0, 1, ks.clone()), expected);
            if let Some(f) = f.first() {
                assert!(f.message.contains(fragment), "{name}: {}", f.message);
            }
        }
        // An EC key without alg is judged by the alg of the tokens it signed.
        check(
            c,
            |o| {
                keys(o, 0, 1, vec![ec("k1", None, "P-384")]);
                tok(o, 0).header.alg = "ES256".into();
            },
            &["app/cdn#k1"],
        );
    }

    #[test]
    fn jwk_unparseable() {
        let c = Code::JwkUnparseable;
        check(c, |_| {}, &[]);
        let f = check(
            c,
            |o| {
                let mut bad = key("k0");
                bad.kty = "OKP".into();
                bad.problems = vec!["unknown crv X448".into()];
                keys(o, 1, 0, vec![bad, key("k1")]);
            },
            &["io/origin#k0"],
        );
        assert_eq!(
            message(&f),
            "key k0 (kty OKP) is rejected by common parsers: unknown crv X448"
        );
        check(
            c,
            |o| {
                let mut bad = key("k0");
                bad.kid = None;
                bad.problems = vec!["missing e".into()];
                keys(o, 0, 1, vec![bad]);
            },
            &["app/cdn"],
        );
    }

    #[test]
    fn jwks_drift() {
        let c = Code::JwksDrift;
        check(c, |_| {}, &[]);
        // Edge differences are stale_edge's business, not drift.
        check(c, |o| keys(o, 0, 1, vec![key("k2")]), &[]);
        let f = check(c, |o| keys(o, 1, 0, vec![key("k1"), key("k2")]), &["io"]);
        assert_eq!(message(&f), "origin key set differs from app's: extra k2");
        let f = check(
            c,
            |o| {
                let mut k1 = key("k1");
                k1.thumbprint = Some("other".into());
                keys(o, 1, 0, vec![k1]);
            },
            &["io"],
        );
        assert_eq!(message(&f), "origin key set differs from app's: changed k1");
        // An unavailable origin takes no part.
        check(
            c,
            |o| {
                origin(o, 0).key_set = None;
                keys(o, 1, 0, vec![key("k2")]);
            },
            &[],
        );
    }

    #[test]
    fn diff_names_missing_extra_changed() {
        let a = [key("k1"), key("k2"), key("k3")];
        let mut k3 = key("k3");
        k3.thumbprint = Some("new".into());
        let b = [key("k0"), key("k1"), k3];
        assert_eq!(
            describe_diff(&key_map(&a), &key_map(&b)),
            "missing k2, extra k0, changed k3"
        );
        assert_eq!(describe_diff(&key_map(&a), &key_map(&a)), "");
    }
}
