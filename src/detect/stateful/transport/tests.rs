use super::super::fixtures::*;
use crate::model::*;

fn response_of(v: &mut ViewObservation) -> &mut HttpResponse {
    match &mut v.fetch.outcome {
        FetchOutcome::Response(r) => r,
        FetchOutcome::Error { .. } => panic!("no response"),
    }
}

/// Sets the ETag and body hash of view `v` of domain `d`.
fn served(o: &mut Observation, d: usize, v: usize, etag: &str, body: &str) {
    let r = response_of(&mut o.domains[d].views[v]);
    r.headers.etag = Some(etag.into());
    r.body_sha256 = body.into();
}

/// Step `i` where every view of app serves `etag` with `body`.
fn app_serves(i: i64, etag: &str, body: &str) -> Observation {
    let mut o = round(i);
    served(&mut o, 0, 0, etag, body);
    served(&mut o, 0, 1, etag, body);
    o
}

#[test]
fn validator_inconsistent() {
    let c = Code::ValidatorInconsistent;
    type Steps = fn() -> Vec<Observation>;
    let table: &[(&str, Steps, &[&str])] = &[
        (
            "one etag, one body",
            || vec![app_serves(0, "\"a\"", "b1"), app_serves(1, "\"a\"", "b1")],
            &[],
        ),
        (
            "new body, new etag",
            || vec![app_serves(0, "\"a\"", "b1"), app_serves(1, "\"b\"", "b2")],
            &[],
        ),
        (
            "one round, two bodies under one etag",
            || {
                let mut o = app_serves(0, "\"a\"", "b1");
                served(&mut o, 0, 1, "\"a\"", "b2");
                vec![o]
            },
            &["app/cdn", "app/origin"],
        ),
        (
            "over time on one view",
            || vec![app_serves(0, "\"a\"", "b1"), app_serves(1, "\"a\"", "b2")],
            &["app/cdn", "app/origin"],
        ),
        (
            "the same etag on two domains is not compared",
            || {
                let mut o = app_serves(0, "\"a\"", "b1");
                served(&mut o, 1, 0, "\"a\"", "b2");
                vec![o]
            },
            &[],
        ),
        (
            "weak etag, other bytes, same keys",
            || {
                vec![
                    app_serves(0, "W/\"a\"", "b1"),
                    app_serves(1, "W/\"a\"", "b2"),
                ]
            },
            &[],
        ),
        (
            "weak etag, other keys",
            || {
                let mut o = app_serves(1, "W/\"a\"", "b2");
                keys(&mut o, 0, 0, vec![key("k1"), key("k2")]);
                vec![app_serves(0, "W/\"a\"", "b1"), o]
            },
            &["app/cdn", "app/origin"],
        ),
    ];
    for (name, steps, expected) in table {
        let f = check(c, &steps(), expected);
        for f in &f {
            assert!(f.message.contains("ETag"), "{name}: {}", f.message);
        }
    }
    let f = check(
        c,
        &[app_serves(0, "\"a\"", "b1"), {
            let mut o = app_serves(1, "\"a\"", "b1");
            served(&mut o, 0, 0, "\"a\"", "b2");
            o
        }],
        &["app/cdn", "app/origin"],
    );
    assert_eq!(
        f[1].message,
        "the ETag \"a\" comes with body b2… here but with another body (b1…) at app/origin (last seen 2027-01-15T08:00:30Z): clients revalidating with If-None-Match keep whichever they have"
    );
}

#[test]
fn a_304_while_the_origin_changed() {
    let c = Code::ValidatorInconsistent;
    let not_modified = |i: i64, origin_body: &str| {
        let mut o = round(i);
        response_of(origin(&mut o, 0)).body_sha256 = origin_body.into();
        let v = cdn(&mut o, 0);
        response_of(v).status = 304;
        response_of(v).body_sha256 = "empty".into();
        v.key_set = None;
        o
    };
    let f = check(c, &[round(0), not_modified(1, "changed")], &["app/cdn"]);
    assert_eq!(
        message(&f),
        "answered 304 Not Modified while the origin's body changed (00… last served here at 2027-01-15T08:00:00Z, the origin now serves changed…): clients keep the old key set"
    );
    check(c, &[round(0), not_modified(1, "00")], &[]);
    // Nothing served before to compare with.
    check(c, &[not_modified(0, "changed")], &[]);
}

#[test]
fn tls_certificate() {
    let c = Code::TlsCertificate;
    let day = 86_400;
    let leaf = |i: i64, sha: &str, not_after: Option<i64>| {
        let mut o = round(i);
        let r = response_of(cdn(&mut o, 0));
        r.tls_leaf_sha256 = Some(sha.into());
        r.tls_leaf_not_after = not_after;
        o
    };
    let far = Some(NOW.as_secs() + 90 * day);
    check(c, &[leaf(0, "a", far), leaf(1, "a", far)], &[]);
    // Changed: fires in the round of the change only.
    let f = check(c, &[leaf(0, "a", far), leaf(1, "b", far)], &["app/cdn"]);
    assert_eq!(
        message(&f),
        "the TLS leaf changed (a… → b…; the previous one, last seen 2027-01-15T08:00:00Z, was valid until 2027-04-15T08:00:00Z)"
    );
    check(
        c,
        &[leaf(0, "a", far), leaf(1, "b", far), leaf(2, "b", far)],
        &[],
    );
    // A failed round in between does not hide the change.
    let mut down = round(1);
    cdn(&mut down, 0).fetch.outcome = FetchOutcome::Error {
        kind: FetchErrorKind::Tls,
        message: "handshake".into(),
    };
    check(
        c,
        &[leaf(0, "a", far), down, leaf(2, "b", far)],
        &["app/cdn"],
    );
    // Expiry within the warning (14 days by default), or past.
    check(c, &[leaf(0, "a", Some(NOW.as_secs() + 15 * day))], &[]);
    let f = check(
        c,
        &[leaf(0, "a", Some(NOW.as_secs() + 13 * day))],
        &["app/cdn"],
    );
    assert_eq!(
        message(&f),
        "the TLS leaf expires at 2027-01-28T08:00:00Z (in 13 d 0 h, warning at 14 d 0 h)"
    );
    let f = check(c, &[leaf(0, "a", Some(NOW.as_secs() - 1))], &["app/cdn"]);
    assert_eq!(message(&f), "the TLS leaf expired at 2027-01-15T07:59:59Z");
    // The warning is configurable.
    let config = config_with(|t| format!("tls_expiry_warning = \"30days\"\n{t}"));
    check_with(
        &config,
        c,
        &[leaf(0, "a", Some(NOW.as_secs() + 20 * day))],
        &["app/cdn"],
    );
    // Change and expiry together are one finding.
    let f = check(
        c,
        &[leaf(0, "a", far), leaf(1, "b", Some(NOW.as_secs() + day))],
        &["app/cdn"],
    );
    assert!(message(&f).contains("changed") && message(&f).contains("; the TLS leaf expires"));
}
