//! `clock_skew`: a freshly issued token's `iat` or `nbf` is ahead of local time (`now`) by
//! more than `max_clock_skew` — the IdP's clock is off. Per domain and token.
//!
//! `claims_invalid` judges `exp`/`nbf` validity; this rule is only about the clock, so a
//! far-future `nbf` is reported by both (one says the token is unusable, this one why).

use super::Ctx;
use crate::model::{Code, Finding};

pub(super) fn clock_skew(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let skew = cx.settings.max_clock_skew.as_secs() as i64;
    let now = cx.now.as_secs();
    for d in &cx.obs.domains {
        for t in d.tokens() {
            let ahead: Vec<String> = [("iat", t.claims.iat), ("nbf", t.claims.nbf)]
                .into_iter()
                .filter_map(|(name, at)| {
                    let ahead = at?.saturating_sub(now);
                    (ahead > skew).then(|| format!("{name} is {ahead} s ahead"))
                })
                .collect();
            if ahead.is_empty() {
                continue;
            }
            let message = format!(
                "{} {} of local time (allowed skew {skew} s): the IdP's clock is off",
                t.kind.as_str(),
                ahead.join(", ")
            );
            let subject = cx.domain_subject(d).with_kid(t.header.kid.as_deref());
            out.push(Finding::new(Code::ClockSkew, subject, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::model::*;

    #[test]
    fn clock_skew() {
        let c = Code::ClockSkew;
        let now = NOW.as_secs();
        type Edit = fn(&mut TokenClaims, i64);
        let table: &[(&str, Edit, &[&str], &str)] = &[
            ("clean", |_, _| {}, &[], ""),
            ("iat within skew", |c, now| c.iat = Some(now + 60), &[], ""),
            ("no iat", |c, _| c.iat = None, &[], ""),
            ("nbf in the past", |c, now| c.nbf = Some(now - 600), &[], ""),
            (
                "iat ahead",
                |c, now| c.iat = Some(now + 61),
                &["app#k1"],
                "access_token iat is 61 s ahead of local time (allowed skew 60 s): the IdP's clock is off",
            ),
            (
                "iat and nbf ahead",
                |c, now| {
                    c.iat = Some(now + 300);
                    c.nbf = Some(now + 300);
                },
                &["app#k1"],
                "access_token iat is 300 s ahead, nbf is 300 s ahead of local time (allowed skew 60 s): the IdP's clock is off",
            ),
        ];
        for (name, edit, expected, msg) in table {
            let f = check(c, |o| edit(&mut tok(o, 0).claims, now), expected);
            if !expected.is_empty() {
                assert_eq!(message(&f), *msg, "{name}");
            }
        }
        // Per domain: a token of io ahead too.
        check(
            c,
            |o| {
                tok(o, 0).claims.iat = Some(now + 120);
                let LoginResult::Tokens { tokens } = &mut io(o).login.as_mut().unwrap().result
                else {
                    unreachable!()
                };
                tokens[0].claims.iat = Some(now + 120);
            },
            &["app#k1", "io#k1"],
        );
    }
}
