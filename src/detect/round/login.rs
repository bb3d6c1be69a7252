//! Rules about the login and the tokens it returned: `login_failed`, `kid_missing`,
//! `signature_invalid` (per view the token was checked against), `claims_invalid` and
//! `alg_not_allowed` (per token and domain).
//!
//! The probe did the verifying; these rules only read its verdicts and the decoded header
//! and claims. `iat` in the future is left to the `clock_skew` rule (only mentioned here
//! when `exp`/`nbf` are off, as a hint).

use super::{Ctx, kid_name, names, one_line, same_issuer};
use crate::model::{
    Code, DomainObservation, Finding, LoginResult, Timestamp, TokenCheckResult, TokenInfo,
    TokenKind,
};

pub(super) fn login_failed(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for d in &cx.obs.domains {
        let Some(login) = &d.login else { continue };
        let message = match &login.result {
            LoginResult::Failed { reason } => {
                format!("{} login failed: {}", login.grant, one_line(reason))
            }
            LoginResult::Tokens { tokens } if tokens.is_empty() => {
                format!("{} login returned no token", login.grant)
            }
            LoginResult::Tokens { .. } => continue,
        };
        out.push(Finding::new(
            Code::LoginFailed,
            cx.domain_subject(d),
            message,
        ));
    }
}

pub(super) fn kid_missing(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for d in &cx.obs.domains {
        for t in d.tokens() {
            for check in t.checks.iter() {
                if check.result != TokenCheckResult::KidMissing {
                    continue;
                }
                let has = match d.view(&check.view) {
                    Some(v) => names(v.keys().iter().map(|k| kid_name(k.kid.as_deref()))),
                    None => "unknown keys".to_owned(),
                };
                let kind = t.kind.as_str();
                let message = match &t.header.kid {
                    Some(kid) => {
                        format!("{kind} kid {kid} is not in this view's key set (it serves {has})")
                    }
                    None => format!(
                        "{kind} has no kid and this view cannot pick a key (it serves {has})"
                    ),
                };
                let subject = cx
                    .view_subject(d, &check.view)
                    .with_kid(t.header.kid.as_deref());
                out.push(Finding::new(Code::KidMissing, subject, message));
            }
        }
    }
}

pub(super) fn signature_invalid(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for d in &cx.obs.domains {
        for t in d.tokens() {
            let kind = t.kind.as_str();
            let kid = kid_name(t.header.kid.as_deref());
            let alg = &t.header.alg;
            for check in &t.checks {
                let message = match &check.result {
                    TokenCheckResult::SignatureInvalid { reason } => format!(
                        "{kind} ({alg}) does not verify with this view's key {kid}: {}",
                        one_line(reason)
                    ),
                    TokenCheckResult::KeyUnusable { reason } => format!(
                        "this view's key {kid} cannot verify {kind} ({alg}): {}",
                        one_line(reason)
                    ),
                    _ => continue,
                };
                let subject = cx
                    .view_subject(d, &check.view)
                    .with_kid(t.header.kid.as_deref());
                out.push(Finding::new(Code::SignatureInvalid, subject, message));
            }
        }
    }
}

pub(super) fn claims_invalid(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for d in &cx.obs.domains {
        for t in d.tokens() {
            let problems = claim_problems(cx, d, t);
            if problems.is_empty() {
                continue;
            }
            let message = format!("{}: {}", t.kind.as_str(), problems.join(", "));
            let subject = cx.domain_subject(d).with_kid(t.header.kid.as_deref());
            out.push(Finding::new(Code::ClaimsInvalid, subject, message));
        }
    }
}

fn claim_problems(cx: &Ctx<'_>, d: &DomainObservation, t: &TokenInfo) -> Vec<String> {
    let mut problems = Vec::new();
    let c = &t.claims;

    let (expected, whose) = match d.discovery_doc() {
        Some(doc) => (doc.issuer.as_str(), "discovery issuer"),
        None => (d.issuer.as_str(), "configured issuer"),
    };
    match &c.iss {
        None => problems.push("iss missing".to_owned()),
        Some(iss) if !same_issuer(iss, expected) => problems.push(format!(
            "iss {} is not the {whose} {expected}",
            one_line(iss)
        )),
        Some(_) => {}
    }

    let now = cx.now.0;
    let skew = cx.settings.max_clock_skew.as_millis() as i64;
    let ms = |secs: i64| secs.saturating_mul(1000);
    let mut time_off = false;
    match c.exp {
        None => problems.push("exp missing".to_owned()),
        Some(exp) if ms(exp).saturating_add(skew) < now => {
            time_off = true;
            problems.push(format!(
                "expired {} s ago (exp {}, skew {} s)",
                now.saturating_sub(ms(exp)) / 1000,
                Timestamp(ms(exp)),
                skew / 1000
            ));
        }
        Some(_) => {}
    }
    if let Some(nbf) = c.nbf
        && ms(nbf) > now.saturating_add(skew)
    {
        time_off = true;
        problems.push(format!(
            "not valid for another {} s (nbf {}, skew {} s)",
            ms(nbf).saturating_sub(now) / 1000,
            Timestamp(ms(nbf)),
            skew / 1000
        ));
    }
    if time_off && let Some(iat) = c.iat {
        let ahead = ms(iat).saturating_sub(now) / 1000;
        problems.push(if ahead > 0 {
            format!("iat is {ahead} s ahead of local time (clock skew?)")
        } else {
            format!("iat was {} s ago", ahead.saturating_neg())
        });
    }

    if let Some(login) = cx.config_domain(&d.domain).and_then(|cd| cd.login.as_ref()) {
        let wanted: Vec<&str> = match t.kind {
            TokenKind::AccessToken => [&login.resource, &login.audience]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
            TokenKind::IdToken => vec![login.client_id.as_str()],
        };
        if !wanted.is_empty() && !wanted.iter().any(|w| c.aud.iter().any(|a| a == w)) {
            problems.push(format!(
                "aud [{}] lacks {}",
                one_line(&c.aud.join(", ")),
                wanted.join(" or ")
            ));
        }
    }

    let allowed_typ: &[&str] = match t.kind {
        TokenKind::AccessToken => &["JWT", "at+jwt", "application/at+jwt"],
        TokenKind::IdToken => &["JWT"],
    };
    if let Some(typ) = &t.header.typ
        && !allowed_typ.iter().any(|a| a.eq_ignore_ascii_case(typ))
    {
        problems.push(format!(
            "typ {} is not {}",
            one_line(typ),
            allowed_typ.join(" or ")
        ));
    }
    problems
}

pub(super) fn alg_not_allowed(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let allowed = &cx.settings.allowed_algs;
    for d in &cx.obs.domains {
        let advertised: Vec<&str> = d
            .discovery_doc()
            .map(|doc| {
                let mut all: Vec<&str> = doc
                    .id_token_signing_alg_values_supported
                    .iter()
                    .chain(&doc.other_signing_alg_values_supported)
                    .map(String::as_str)
                    .collect();
                all.sort_unstable();
                all.dedup();
                all
            })
            .unwrap_or_default();
        for t in d.tokens() {
            let alg = t.header.alg.as_str();
            let mut problems = Vec::new();
            if alg.eq_ignore_ascii_case("none") {
                problems.push("unsigned".to_owned());
            } else if alg.to_ascii_uppercase().starts_with("HS") {
                problems.push("symmetric".to_owned());
            } else if !allowed.iter().any(|a| a == alg) {
                problems.push(format!("not in allowed_algs ({})", names(allowed)));
            }
            if !advertised.is_empty() && !advertised.contains(&alg) {
                problems.push(format!(
                    "not advertised in discovery ({})",
                    names(&advertised)
                ));
            }
            if problems.is_empty() {
                continue;
            }
            let message = format!(
                "{} alg {}: {}",
                t.kind.as_str(),
                one_line(alg),
                problems.join(", ")
            );
            let subject = cx.domain_subject(d).with_kid(t.header.kid.as_deref());
            out.push(Finding::new(Code::AlgNotAllowed, subject, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::model::*;

    fn fail(o: &mut Observation, reason: &str) {
        app(o).login.as_mut().unwrap().result = LoginResult::Failed {
            reason: reason.into(),
        };
    }

    fn set_check(o: &mut Observation, view: usize, result: TokenCheckResult) {
        tok(o, 0).checks[view].result = result;
    }

    /// Adds a valid id token from `app` signed by `k1`.
    fn id_token(o: &mut Observation) -> &mut TokenInfo {
        let mut t = tok(o, 0).clone();
        t.kind = TokenKind::IdToken;
        t.header.typ = Some("JWT".into());
        t.claims.aud = vec!["keycanary".into()];
        match &mut app(o).login.as_mut().unwrap().result {
            LoginResult::Tokens { tokens } => {
                tokens.push(t);
                tokens.last_mut().unwrap()
            }
            LoginResult::Failed { .. } => unreachable!(),
        }
    }

    #[test]
    fn login_failed() {
        let c = Code::LoginFailed;
        check(c, |_| {}, &[]);
        check(c, |o| app(o).login = None, &[]);
        let f = check(c, |o| fail(o, "HTTP 401\nbody"), &["app"]);
        assert_eq!(
            message(&f),
            "client_credentials login failed: HTTP 401 body"
        );
        check(
            c,
            |o| {
                app(o).login.as_mut().unwrap().result = LoginResult::Tokens { tokens: vec![] };
            },
            &["app"],
        );
    }

    #[test]
    fn kid_missing() {
        let c = Code::KidMissing;
        check(c, |_| {}, &[]);
        let f = check(
            c,
            |o| set_check(o, 1, TokenCheckResult::KidMissing),
            &["app/cdn#k1"],
        );
        assert_eq!(
            message(&f),
            "access_token kid k1 is not in this view's key set (it serves k1)"
        );
        check(
            c,
            |o| {
                set_check(o, 0, TokenCheckResult::KidMissing);
                set_check(o, 1, TokenCheckResult::KidMissing);
            },
            &["app/cdn#k1", "app/origin#k1"],
        );
        // An unavailable view is its own finding, not a missing kid.
        check(
            c,
            |o| set_check(o, 1, TokenCheckResult::ViewUnavailable),
            &[],
        );
        check(
            c,
            |o| {
                tok(o, 0).header.kid = None;
                set_check(o, 1, TokenCheckResult::KidMissing);
            },
            &["app/cdn"],
        );
    }

    #[test]
    fn signature_invalid() {
        let c = Code::SignatureInvalid;
        check(c, |_| {}, &[]);
        check(c, |o| set_check(o, 1, TokenCheckResult::KidMissing), &[]);
        let f = check(
            c,
            |o| {
                set_check(
                    o,
                    1,
                    TokenCheckResult::SignatureInvalid {
                        reason: "bad signature".into(),
                    },
                )
            },
            &["app/cdn#k1"],
        );
        assert!(message(&f).contains("bad signature"));
        check(
            c,
            |o| {
                set_check(
                    o,
                    0,
                    TokenCheckResult::KeyUnusable {
                        reason: "EC key for RS256".into(),
                    },
                )
            },
            &["app/origin#k1"],
        );
    }

    #[test]
    fn claims_invalid() {
        let c = Code::ClaimsInvalid;
        let now = NOW.as_secs();
        type Edit = fn(&mut Observation);
        let table: &[(&str, Edit, &[&str], &str)] = &[
            ("clean", |_| {}, &[], ""),
            (
                "iss trailing slash is fine",
                |o| tok(o, 0).claims.iss = Some(format!("{}/", issuer("app"))),
                &[],
                "",
            ),
            (
                "iss differs from discovery",
                |o| tok(o, 0).claims.iss = Some(issuer("io")),
                &["app#k1"],
                "is not the discovery issuer",
            ),
            (
                "without discovery, the configured issuer counts",
                |o| {
                    app(o).discovery = None;
                    tok(o, 0).claims.iss = Some("https://other.example".into());
                },
                &["app#k1"],
                "is not the configured issuer https://idp.example.app/acme",
            ),
            (
                "iss missing",
                |o| tok(o, 0).claims.iss = None,
                &["app#k1"],
                "iss missing",
            ),
            (
                "exp missing",
                |o| tok(o, 0).claims.exp = None,
                &["app#k1"],
                "exp missing",
            ),
            (
                "expired within skew is fine",
                |o| tok(o, 0).claims.exp = Some(NOW.as_secs() - 60),
                &[],
                "",
            ),
            (
                "expired beyond skew",
                |o| tok(o, 0).claims.exp = Some(NOW.as_secs() - 61),
                &["app#k1"],
                "expired 61 s ago",
            ),
            (
                "nbf within skew is fine",
                |o| tok(o, 0).claims.nbf = Some(NOW.as_secs() + 60),
                &[],
                "",
            ),
            (
                "nbf beyond skew, iat ahead too",
                |o| {
                    tok(o, 0).claims.nbf = Some(NOW.as_secs() + 120);
                    tok(o, 0).claims.iat = Some(NOW.as_secs() + 120);
                },
                &["app#k1"],
                "not valid for another 120 s",
            ),
            (
                "iat alone is left to clock_skew",
                |o| tok(o, 0).claims.iat = Some(NOW.as_secs() + 3600),
                &[],
                "",
            ),
            (
                "aud lacks the resource",
                |o| tok(o, 0).claims.aud = vec!["other".into()],
                &["app#k1"],
                "aud [other] lacks https://api.example",
            ),
            (
                "typ at+jwt in any case is fine",
                |o| tok(o, 0).header.typ = Some("AT+JWT".into()),
                &[],
                "",
            ),
            (
                "typ wrong",
                |o| tok(o, 0).header.typ = Some("dpop+jwt".into()),
                &["app#k1"],
                "typ dpop+jwt is not JWT or at+jwt or application/at+jwt",
            ),
            (
                "typ absent is fine",
                |o| tok(o, 0).header.typ = None,
                &[],
                "",
            ),
            (
                "valid id token",
                |o| {
                    id_token(o);
                },
                &[],
                "",
            ),
            (
                "id token typ at+jwt",
                |o| id_token(o).header.typ = Some("at+jwt".into()),
                &["app#k1"],
                "id_token: typ at+jwt is not JWT",
            ),
            (
                "id token aud must hold the client_id, not the resource",
                |o| id_token(o).claims.aud = vec!["https://api.example".into()],
                &["app#k1"],
                "lacks keycanary",
            ),
        ];
        for (name, edit, expected, fragment) in table {
            let f = check(c, edit, expected);
            if let Some(f) = f.first() {
                assert!(f.message.contains(fragment), "{name}: {}", f.message);
            }
        }
        // One finding per token and domain, naming the iat hint when times are off.
        let f = check(
            c,
            |o| {
                tok(o, 0).claims.exp = Some(now - 600);
                tok(o, 0).claims.iat = Some(now - 900);
            },
            &["app#k1"],
        );
        assert_eq!(
            message(&f),
            "access_token: expired 600 s ago (exp 2027-01-15T07:50:00Z, skew 60 s), iat was 900 s ago"
        );
        // Both tokens with one kid: one finding, both messages.
        let f = check(
            c,
            |o| {
                tok(o, 0).claims.iss = None;
                id_token(o).claims.iss = None;
            },
            &["app#k1"],
        );
        assert_eq!(
            message(&f),
            "access_token: iss missing; id_token: iss missing"
        );
    }

    #[test]
    fn claims_audience_from_config() {
        let mut o = obs();
        tok(&mut o, 0).claims.aud = vec!["urn:api".into()];
        let mut tenant = config().tenants.remove(0);
        let login = tenant.domains[0].login.as_mut().unwrap();
        login.resource = None;
        check_obs(Code::ClaimsInvalid, &o, &tenant, &[]);
        tenant.domains[0].login.as_mut().unwrap().audience = Some("urn:api".into());
        check_obs(Code::ClaimsInvalid, &o, &tenant, &[]);
        tenant.domains[0].login.as_mut().unwrap().audience = Some("urn:other".into());
        check_obs(Code::ClaimsInvalid, &o, &tenant, &["app#k1"]);
    }

    #[test]
    fn alg_not_allowed() {
        let c = Code::AlgNotAllowed;
        type Edit = fn(&mut Observation);
        let table: &[(Edit, &[&str], &str)] = &[
            (|_| {}, &[], ""),
            (
                |o| tok(o, 0).header.alg = "none".into(),
                &["app#k1"],
                "alg none: unsigned",
            ),
            (
                |o| tok(o, 0).header.alg = "HS256".into(),
                &["app#k1"],
                "symmetric",
            ),
            (
                |o| {
                    tok(o, 0).header.alg = "PS256".into();
                    app(o).discovery = None;
                },
                &["app#k1"],
                "access_token alg PS256: not in allowed_algs (RS256, ES256, EdDSA)",
            ),
            (
                // Allowed, but discovery advertises only RS256.
                |o| tok(o, 0).header.alg = "ES256".into(),
                &["app#k1"],
                "access_token alg ES256: not advertised in discovery (RS256)",
            ),
            (
                // Advertised through the other *_signing_alg_values_supported.
                |o| {
                    tok(o, 0).header.alg = "ES256".into();
                    let Some(DiscoveryObservation {
                        result: DiscoveryResult::Parsed { doc },
                        ..
                    }) = &mut app(o).discovery
                    else {
                        unreachable!()
                    };
                    doc.other_signing_alg_values_supported = vec!["ES256".into()];
                },
                &[],
                "",
            ),
            (
                // Discovery advertising nothing does not restrict.
                |o| {
                    tok(o, 0).header.alg = "ES256".into();
                    let Some(DiscoveryObservation {
                        result: DiscoveryResult::Parsed { doc },
                        ..
                    }) = &mut app(o).discovery
                    else {
                        unreachable!()
                    };
                    doc.id_token_signing_alg_values_supported.clear();
                },
                &[],
                "",
            ),
        ];
        for (edit, expected, fragment) in table {
            let f = check(c, edit, expected);
            if let Some(f) = f.first() {
                assert!(f.message.contains(fragment), "{}", f.message);
            }
        }
    }
}
