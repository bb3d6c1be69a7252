use super::super::fixtures::*;
use crate::model::*;

/// `kid` with thumbprint `tp`.
fn material(kid: &str, tp: &str) -> KeyInfo {
    KeyInfo {
        thumbprint: Some(tp.into()),
        ..key(kid)
    }
}

/// Step `i` where view `v` of domain `d` serves `keys` (the rest of the clean round).
fn with(i: i64, edits: &[(usize, usize, Vec<KeyInfo>)]) -> Observation {
    let mut o = round(i);
    for (d, v, ks) in edits {
        keys(&mut o, *d, *v, ks.clone());
    }
    o
}

/// Step `i` with every view serving `ks`.
fn everywhere(i: i64, ks: Vec<KeyInfo>) -> Observation {
    let edits: Vec<_> = (0..2)
        .flat_map(|d| (0..2).map(move |v| (d, v)))
        .map(|(d, v)| (d, v, ks.clone()))
        .collect();
    with(i, &edits)
}

#[test]
fn kid_reused() {
    let c = Code::KidReused;
    let new = || material("k1", "tp-new");
    type Steps = fn() -> Vec<Observation>;
    let table: &[(&str, Steps, &[&str])] = &[
        ("steady", || vec![round(0), round(1)], &[]),
        (
            "across views in one round: the origin's material is the reference",
            || vec![with(0, &[(1, 1, vec![material("k1", "tp-new")])])],
            &["io/cdn#k1"],
        ),
        (
            "an origin switches material under the kid",
            || vec![round(0), with(1, &[(0, 0, vec![material("k1", "tp-new")])])],
            &["app/origin#k1"],
        ),
        (
            "over time, once every view has the new material",
            || {
                vec![
                    round(0),
                    everywhere(1, vec![material("k1", "tp-new")]),
                    everywhere(2, vec![material("k1", "tp-new")]),
                ]
            },
            &["app/origin#k1"],
        ),
        (
            "rolled back: the other material is still remembered",
            || {
                vec![
                    round(0),
                    everywhere(1, vec![material("k1", "tp-new")]),
                    round(2),
                ]
            },
            &["app/origin#k1"],
        ),
        (
            "the kid is no longer served: resolved",
            || {
                vec![
                    round(0),
                    everywhere(1, vec![material("k1", "tp-new")]),
                    everywhere(2, vec![key("k2")]),
                ]
            },
            &[],
        ),
        (
            "a new kid is not reuse",
            || vec![round(0), everywhere(1, vec![key("k1"), key("k2")])],
            &[],
        ),
        (
            "an unparseable key adds no material",
            || {
                let mut bad = key("k1");
                bad.thumbprint = None;
                vec![round(0), with(1, &[(0, 1, vec![bad])])]
            },
            &[],
        ),
    ];
    for (name, steps, expected) in table {
        let f = check(c, &steps(), expected);
        for f in &f {
            assert!(f.message.contains("tp-new"), "{name}: {}", f.message);
        }
    }
    let f = check(
        c,
        &[round(0), with(1, &[(0, 1, vec![new()])])],
        &["app/cdn#k1"],
    );
    assert_eq!(
        message(&f),
        "kid k1 maps to key tp-new… (served in app/cdn now, first seen 2027-01-15T08:00:30Z) but was key tp-k1… (first seen at app/origin 2027-01-15T08:00:00Z, last seen 2027-01-15T08:00:30Z): a client that cached one under this kid rejects tokens signed with the other"
    );
    // Three materials: one finding per newer one, where it was first seen.
    check(
        c,
        &[
            round(0),
            with(1, &[(0, 1, vec![new()])]),
            with(2, &[(1, 1, vec![material("k1", "tp-third")])]),
        ],
        &["app/cdn#k1", "io/cdn#k1"],
    );
}

#[test]
fn key_removed_early() {
    let c = Code::KeyRemovedEarly;
    // k0 signs at step 0 (token valid until at(0) + 300 s, + 60 s skew), k1 from step 1.
    let k0_signs = || {
        let mut o = everywhere(0, vec![key("k0"), key("k1")]);
        tok(&mut o, 0).header.kid = Some("k0".into());
        o
    };
    let both = |i| everywhere(i, vec![key("k0"), key("k1")]);
    let k0_gone_from_app_cdn = |i| {
        let mut o = both(i);
        keys(&mut o, 0, 1, vec![key("k1")]);
        o
    };
    check(c, &[k0_signs(), both(1)], &[]);
    let f = check(
        c,
        &[k0_signs(), both(1), k0_gone_from_app_cdn(2)],
        &["app/cdn#k0"],
    );
    assert_eq!(
        message(&f),
        "kid k0 is gone from this view (last seen 2027-01-15T08:00:30Z) while a token it signed is valid until 2027-01-15T08:05:00Z (+60 s skew, 5 min left): clients reading this view reject it"
    );
    // Gone everywhere: every view that had it.
    check(
        c,
        &[k0_signs(), round(1)],
        &["app/cdn#k0", "app/origin#k0", "io/cdn#k0", "io/origin#k0"],
    );
    // Still firing while the token is valid (+ skew), not after: exp at step 10, +60 s.
    check(
        c,
        &[
            k0_signs(),
            k0_gone_from_app_cdn(1),
            k0_gone_from_app_cdn(11),
        ],
        &["app/cdn#k0"],
    );
    check(
        c,
        &[
            k0_signs(),
            k0_gone_from_app_cdn(1),
            k0_gone_from_app_cdn(12),
        ],
        &[],
    );
    // A kid that never signed may go.
    check(c, &[both(0), k0_gone_from_app_cdn(1)], &[]);
    // A failed view says nothing about the kid.
    let mut down = both(1);
    cdn(&mut down, 0).fetch.outcome = response(503, hit_headers());
    cdn(&mut down, 0).key_set = None;
    check(c, &[k0_signs(), down], &[]);
    // A view that never served the kid has not lost it.
    let mut first = k0_signs();
    keys(&mut first, 1, 1, vec![key("k1")]);
    check(c, &[first, k0_gone_from_app_cdn(1)], &["app/cdn#k0"]);
}

#[test]
fn cross_tenant_key() {
    let c = Code::CrossTenantKey;
    let config = two_tenants();
    let globex = |i: i64, ks: Vec<KeyInfo>| {
        let mut o = round(i);
        o.tenant = "globex".into();
        o.domains.truncate(1);
        o.domains[0].login = None;
        keys(&mut o, 0, 0, ks.clone());
        keys(&mut o, 0, 1, ks);
        o
    };
    let run = |steps: &[Observation]| -> Vec<String> {
        let (_, found) = replay(&config, steps);
        found
            .last()
            .unwrap()
            .iter()
            .filter(|f| f.code == c)
            .map(|f| {
                format!(
                    "{}#{}: {}",
                    f.subject.tenant,
                    f.subject.kid.as_deref().unwrap_or(""),
                    f.message
                )
            })
            .collect()
    };
    assert!(run(&[round(0), globex(0, vec![key("g1")])]).is_empty());
    let f = run(&[round(0), globex(0, vec![key("g1"), key("k1")])]);
    assert_eq!(
        f,
        [
            "acme#k1: tenant globex serves the same kid and key: a cache keyed without the Host may serve one tenant's keys to the other's clients",
            "globex#k1: tenant acme serves the same kid and key: a cache keyed without the Host may serve one tenant's keys to the other's clients",
        ]
    );
    let f = run(&[round(0), globex(0, vec![material("k1", "tp-g")])]);
    assert!(f[0].ends_with("serves the same kid with other key material: a cache keyed without the Host may serve one tenant's keys to the other's clients"), "{f:?}");
    let f = run(&[round(0), globex(0, vec![material("g1", "tp-k1")])]);
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(
        f[0].starts_with("acme#k1: tenant globex serves the same key (tp-k1…) under kid g1"),
        "{f:?}"
    );
    assert!(
        f[1].starts_with("globex#g1: tenant acme serves the same key (tp-k1…) under kid k1"),
        "{f:?}"
    );
    // What a tenant served before its latest ok answer does not count.
    assert!(
        run(&[
            globex(0, vec![key("k1")]),
            round(1),
            globex(1, vec![key("g1")])
        ])
        .is_empty()
    );
    // A tenant the config does not name takes no part.
    let mut stranger = globex(0, vec![key("k1")]);
    stranger.tenant = "stranger".into();
    assert!(run(&[round(0), stranger]).is_empty());
}

#[test]
fn regression_kid_reused_subject_is_stable_while_the_material_spreads() {
    let c = Code::KidReused;
    let new = || {
        let mut k = key("k1");
        k.thumbprint = Some("tp-new".into());
        k
    };
    // Round 1: only app's origin (view 0) has the new material; round 2: every view.
    let first = check(
        c,
        &[round(0), with(1, &[(0, 0, vec![new()])])],
        &["app/origin#k1"],
    );
    let later = check(
        c,
        &[
            round(0),
            with(1, &[(0, 0, vec![new()])]),
            everywhere(2, vec![new()]),
        ],
        &["app/origin#k1"],
    );
    assert_eq!(first[0].subject, later[0].subject);
}

mod cross_tenant;
