//! `x5c_mismatch`: a key's `x5c` certificate does not hold the key it is published with,
//! does not match the key's `x5t` / `x5t#S256`, is expired at `now`, or cannot be read.
//!
//! The probe parsed the certificate ([`X5cFacts`]); this rule only judges those facts, per
//! view and key. A key without `x5c` is not judged (its `x5t` has nothing to match).

use super::{Ctx, kid_name, one_line};
use crate::model::{Code, Finding, KeyInfo, Timestamp, X5cFacts};

pub(super) fn x5c_mismatch(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (d, v) in cx.all_views() {
        for k in v.keys() {
            let Some(facts) = &k.x5c else { continue };
            let reasons = reasons(k, facts, cx.now);
            if reasons.is_empty() {
                continue;
            }
            let subject = cx.view_subject(d, &v.id).with_kid(k.kid.as_deref());
            let message = format!("key {}: {}", kid_name(k.kid.as_deref()), reasons.join(", "));
            out.push(Finding::new(Code::X5cMismatch, subject, message));
        }
    }
}

fn reasons(k: &KeyInfo, facts: &X5cFacts, now: Timestamp) -> Vec<String> {
    if let Some(err) = &facts.parse_error {
        return vec![one_line(err)];
    }
    let mut out = Vec::new();
    if facts.matches_key == Some(false) {
        let members = match k.kty.as_str() {
            "RSA" => "n/e",
            "EC" => "x/y",
            "OKP" => "x",
            _ => "members",
        };
        out.push(format!(
            "x5c[0] holds another public key than the JWK's {members}"
        ));
    }
    // Digests compare without padding: some publishers pad base64url.
    let differs = |published: &Option<String>, actual: &Option<String>| match (published, actual) {
        (Some(p), Some(a)) => p.trim_end_matches('=') != a,
        _ => false,
    };
    if differs(&k.x5t, &facts.leaf_sha1) {
        out.push("x5t is not the SHA-1 of x5c[0]".to_owned());
    }
    if differs(&k.x5t_s256, &facts.leaf_sha256) {
        out.push("x5t#S256 is not the SHA-256 of x5c[0]".to_owned());
    }
    if let Some(not_after) = facts.not_after
        && not_after < now.as_secs()
    {
        out.push(format!(
            "x5c[0] expired at {}",
            Timestamp::from_secs(not_after)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::model::*;

    /// `k1` with an x5c whose facts all match, expiring a day after `NOW`.
    fn good() -> KeyInfo {
        KeyInfo {
            x5t: Some("sha1".into()),
            x5t_s256: Some("sha256".into()),
            x5c: Some(X5cFacts {
                leaf_sha1: Some("sha1".into()),
                leaf_sha256: Some("sha256".into()),
                not_after: Some(NOW.as_secs() + 86_400),
                matches_key: Some(true),
                parse_error: None,
            }),
            ..key("k1")
        }
    }

    fn facts(k: &mut KeyInfo) -> &mut X5cFacts {
        k.x5c.as_mut().unwrap()
    }

    #[test]
    fn x5c_mismatch() {
        let c = Code::X5cMismatch;
        type Edit = fn(&mut KeyInfo);
        let table: &[(&str, Edit, &[&str], &str)] = &[
            ("clean", |_| {}, &[], ""),
            ("no x5c: x5t alone is not judged", |k| k.x5c = None, &[], ""),
            (
                "padded x5t is fine",
                |k| k.x5t = Some("sha1=".into()),
                &[],
                "",
            ),
            (
                "no x5t published",
                |k| {
                    k.x5t = None;
                    k.x5t_s256 = None;
                },
                &[],
                "",
            ),
            (
                "undetermined key match",
                |k| facts(k).matches_key = None,
                &[],
                "",
            ),
            (
                "another key",
                |k| facts(k).matches_key = Some(false),
                &["app/cdn#k1"],
                "key k1: x5c[0] holds another public key than the JWK's n/e",
            ),
            (
                "x5t",
                |k| k.x5t = Some("other".into()),
                &["app/cdn#k1"],
                "key k1: x5t is not the SHA-1 of x5c[0]",
            ),
            (
                "x5t#S256",
                |k| k.x5t_s256 = Some("other".into()),
                &["app/cdn#k1"],
                "key k1: x5t#S256 is not the SHA-256 of x5c[0]",
            ),
            (
                "expired",
                |k| facts(k).not_after = Some(NOW.as_secs() - 1),
                &["app/cdn#k1"],
                "key k1: x5c[0] expired at 2027-01-15T07:59:59Z",
            ),
            (
                "unreadable",
                |k| {
                    *facts(k) = X5cFacts {
                        parse_error: Some("`x5c[0]` is not base64".into()),
                        ..Default::default()
                    }
                },
                &["app/cdn#k1"],
                "key k1: `x5c[0]` is not base64",
            ),
        ];
        for (name, edit, expected, msg) in table {
            let mut k = good();
            edit(&mut k);
            let f = check(c, |o| keys(o, 0, 1, vec![k]), expected);
            if !expected.is_empty() {
                assert_eq!(message(&f), *msg, "{name}");
            }
        }
        // Several reasons are one finding; every view serving the key is judged.
        let mut k = good();
        facts(&mut k).matches_key = Some(false);
        k.x5t = Some("other".into());
        let f = check(
            c,
            |o| {
                keys(o, 0, 1, vec![k.clone()]);
                keys(o, 0, 0, vec![k]);
            },
            &["app/cdn#k1", "app/origin#k1"],
        );
        assert!(f[0].message.contains("n/e, x5t is not"), "{}", f[0].message);
    }
}
