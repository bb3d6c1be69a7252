//! Table tests of the global gate: samples as two locations' keycanaries export them in,
//! the blockers (code, location, view, ready_at) out.

use super::*;

const NOW: i64 = 10_000;

/// A sample of `name` about acme with `labels` (`k=v` pairs) and `value`.
fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    l.insert("__name__".into(), name.into());
    l.entry("tenant".into()).or_insert_with(|| "acme".into());
    Sample { labels: l, value }
}

/// The view labels of `path` (`cdn` an edge, `origin` the origin) of domain io at `loc`.
fn view(loc: &'static str, path: &'static str) -> Vec<(&'static str, &'static str)> {
    let kind = if path == "origin" { "origin" } else { "edge" };
    vec![
        ("location", loc),
        ("domain", "io"),
        ("path", path),
        ("edge", ""),
        ("kind", kind),
    ]
}

/// A healthy location: a fresh round, and both views serving k2 since `since` with S 60 s.
fn location(loc: &'static str, since: f64) -> Vec<Sample> {
    instance(loc, "a", since)
}

/// [`location`] as reported by keycanary instance `inst` there.
fn instance(loc: &'static str, inst: &'static str, since: f64) -> Vec<Sample> {
    let mut out = vec![sample(
        TENANT_ROUND,
        &[("location", loc), ("instance", inst)],
        (NOW - 5) as f64,
    )];
    for path in ["cdn", "origin"] {
        let mut v = view(loc, path);
        v.push(("instance", inst));
        out.push(sample(VIEW_UP, &v, 1.0));
        out.push(sample(BUDGET, &v, 60.0));
        let mut k = v.clone();
        k.push(("kid", "k2"));
        out.push(sample(KID_SINCE, &k, since));
    }
    out
}

fn answer(samples: &[Sample], locations: &[&str]) -> GateAnswer {
    let locations: Vec<String> = locations.iter().map(|l| (*l).to_owned()).collect();
    rotation(
        samples,
        &Scope {
            tenant: "acme",
            kid: "k2",
            locations: &locations,
            margin: Duration::ZERO,
            max_age: Duration::from_secs(90),
            now: Timestamp::from_secs(NOW),
        },
    )
}

/// Each blocker as `code location view ready_at-in-seconds`.
fn rows(a: &GateAnswer) -> Vec<String> {
    a.blocking
        .iter()
        .map(|b| {
            let view = b.subject.view_label().unwrap_or_else(|| "-".into());
            let ready = b.ready_at.map_or("-".into(), |t| t.as_secs().to_string());
            let loc = b.location.as_deref().unwrap_or("-");
            format!("{} {loc} {view} {ready}", b.code)
        })
        .collect()
}

fn check(samples: Vec<Sample>, locations: &[&str], expected: &[&str]) {
    let a = answer(&samples, locations);
    assert_eq!(rows(&a), expected, "{a:#?}");
    assert_eq!(a.safe, expected.is_empty());
    assert_eq!(a.kid.as_deref(), Some("k2"));
}

fn edit(mut samples: Vec<Sample>, f: impl Fn(&mut Vec<Sample>)) -> Vec<Sample> {
    f(&mut samples);
    samples
}

fn drop(samples: &mut Vec<Sample>, name: &str, loc: &str, path: Option<&str>) {
    samples.retain(|s| {
        !(s.labels["__name__"] == name
            && label(s, "location") == loc
            && path.is_none_or(|p| label(s, "path") == p))
    });
}

#[test]
fn every_location_waits_out_its_own_views() {
    let eu = || location("eu", (NOW - 100) as f64);
    let us = || location("us", (NOW - 100) as f64);
    let both = || [eu(), us()].concat();
    // Both locations served k2 for longer than S: safe.
    check(both(), &["eu", "us"], &[]);
    // us saw k2 20 s ago: its two views wait until S has passed there.
    let recent = [eu(), location("us", (NOW - 20) as f64)].concat();
    check(
        recent,
        &["eu", "us"],
        &[
            "key_activated_early us cdn 10040",
            "key_activated_early us origin 10040",
        ],
    );
    // us's edge lacks k2, its origin serves it, the copy turns over at NOW + 30: ready
    // then plus S.
    let missing = edit(both(), |s| {
        s.retain(|s| {
            !(label(s, "location") == "us"
                && s.labels["__name__"] == KID_SINCE
                && label(s, "path") == "cdn")
        });
        s.push(sample(EDGE_TURNOVER, &view("us", "cdn"), (NOW + 30) as f64));
        s.push(sample(
            VIEW_STATE,
            &[view("us", "cdn"), vec![("state", "stale_edge")]].concat(),
            1.0,
        ));
    });
    check(
        missing,
        &["eu", "us"],
        &["kid_missing us cdn 10090", "stale_edge us cdn 10030"],
    );
    // A cached error, and a state sample at 0 (not in that state).
    let cached = edit(both(), |s| {
        s.push(sample(
            VIEW_STATE,
            &[view("eu", "cdn"), vec![("state", "error_cached")]].concat(),
            1.0,
        ));
        s.push(sample(
            VIEW_STATE,
            &[view("us", "cdn"), vec![("state", "stale_edge")]].concat(),
            0.0,
        ));
        s.push(sample(
            VIEW_STATE,
            &[view("us", "cdn"), vec![("state", "fetch_failing")]].concat(),
            1.0,
        ));
    });
    check(cached, &["eu", "us"], &["error_cached eu cdn -"]);
    // An unbounded S never passes.
    let unbounded = edit(both(), |s| {
        drop(s, BUDGET, "eu", Some("cdn"));
        s.push(sample(
            UNBOUNDED,
            &[view("eu", "cdn"), vec![("profile", "istio")]].concat(),
            1.0,
        ));
    });
    check(
        unbounded,
        &["eu", "us"],
        &["staleness_budget_exceeded eu cdn -"],
    );
    // Found signing when that keycanary first looked (0): no wait.
    let found = edit(both(), |s| {
        for x in s.iter_mut().filter(|x| x.labels["__name__"] == KID_SINCE) {
            x.value = 0.0;
        }
    });
    check(found, &["eu", "us"], &[]);
}

#[test]
fn no_data_is_never_safe() {
    let eu = || location("eu", (NOW - 100) as f64);
    // A configured location nobody reports.
    check(eu(), &["eu", "us"], &["probe_stale us - -"]);
    // Its latest round is older than max_age: its views are not judged either.
    let old = edit([eu(), location("us", 1.0)].concat(), |s| {
        for x in s
            .iter_mut()
            .filter(|x| x.labels["__name__"] == TENANT_ROUND && label(x, "location") == "us")
        {
            x.value = (NOW - 91) as f64;
        }
    });
    check(old, &["eu", "us"], &["probe_stale us - -"]);
    // A fresh round but no view.
    let viewless = edit([eu(), location("us", 1.0)].concat(), |s| {
        s.retain(|x| label(x, "location") != "us" || x.labels["__name__"] == TENANT_ROUND);
    });
    check(viewless, &["eu", "us"], &["probe_stale us - -"]);
    // A view without S.
    let no_s = edit(eu(), |s| drop(s, BUDGET, "eu", Some("origin")));
    check(no_s, &["eu"], &["probe_stale eu origin -"]);
    // Nothing at all, and no location configured: nothing says safe either.
    let a = answer(&[], &[]);
    assert!(a.safe, "no locations asked, none blocks: {a:#?}");
    check(Vec::new(), &["eu"], &["probe_stale eu - -"]);
    // Another tenant's samples are no data about acme.
    let other = edit(eu(), |s| {
        for x in s.iter_mut() {
            x.labels.insert("tenant".into(), "globex".into());
        }
    });
    check(other, &["eu"], &["probe_stale eu - -"]);
}

#[test]
fn two_instances_of_one_location_merge_to_the_worse() {
    let a = instance("eu", "a", (NOW - 100) as f64);
    let b = edit(instance("eu", "b", (NOW - 10) as f64), |s| {
        for x in s.iter_mut().filter(|x| x.labels["__name__"] == BUDGET) {
            x.value = 30.0;
        }
    });
    // The later sighting (10 s ago) with the longer S (60 s).
    check(
        [a.clone(), b].concat(),
        &["eu"],
        &[
            "key_activated_early eu cdn 10050",
            "key_activated_early eu origin 10050",
        ],
    );
    // One instance lacks the kid on its edge: missing wins.
    let c = edit(instance("eu", "c", (NOW - 100) as f64), |s| {
        drop(s, KID_SINCE, "eu", Some("cdn"));
    });
    check([a.clone(), c].concat(), &["eu"], &["kid_missing eu cdn -"]);
    // The same instance twice (a scrape job listed twice) is one reporter.
    check([a.clone(), a].concat(), &["eu"], &[]);
}

#[test]
fn hostile_samples_are_dropped_or_cleaned() {
    let eu = || location("eu", (NOW - 100) as f64);
    // Not-a-number values: a budget that says nothing is no budget; a sighting that says
    // nothing is no sighting.
    let nan = edit(eu(), |s| {
        for x in s
            .iter_mut()
            .filter(|x| label(x, "path") == "cdn" && x.labels["__name__"] != VIEW_UP)
        {
            x.value = f64::NAN;
        }
    });
    check(nan, &["eu"], &["probe_stale eu cdn -"]);
    let neg = edit(eu(), |s| {
        for x in s
            .iter_mut()
            .filter(|x| x.labels["__name__"] == KID_SINCE && label(x, "path") == "cdn")
        {
            x.value = -5.0;
        }
    });
    check(neg, &["eu"], &["kid_missing eu cdn -"]);
    // A huge timestamp saturates: far in the future, never ready.
    let huge = edit(eu(), |s| {
        for x in s
            .iter_mut()
            .filter(|x| x.labels["__name__"] == KID_SINCE && label(x, "path") == "cdn")
        {
            x.value = 1e300;
        }
    });
    let a = answer(&huge, &["eu"]);
    assert_eq!(a.blocking.len(), 1, "{a:#?}");
    assert_eq!(a.blocking[0].code, Code::KeyActivatedEarly);
    // Control characters in a label and an unknown kind.
    let weird = edit(eu(), |s| {
        for x in s.iter_mut().filter(|x| label(x, "path") == "cdn") {
            x.labels.insert("domain".into(), "io\u{1b}[31m".into());
        }
        s.push(sample(
            VIEW_UP,
            &[
                ("location", "eu"),
                ("domain", "io"),
                ("path", "x"),
                ("kind", "sideways"),
            ],
            1.0,
        ));
    });
    let a = answer(&weird, &["eu"]);
    assert!(a.safe, "{a:#?}");
    let kid_missing = edit(weird_missing(), |_| {});
    let a = answer(&kid_missing, &["eu"]);
    let domain = a.blocking[0].subject.domain.clone().unwrap();
    assert!(
        !domain.contains('\u{1b}') && domain.starts_with("io"),
        "{domain:?}"
    );
}

/// eu with a control character in the edge view's domain and k2 missing there.
fn weird_missing() -> Vec<Sample> {
    edit(location("eu", (NOW - 100) as f64), |s| {
        drop(s, KID_SINCE, "eu", Some("cdn"));
        for x in s.iter_mut().filter(|x| label(x, "path") == "cdn") {
            x.labels.insert("domain".into(), "io\u{1b}[31m".into());
        }
    })
}

#[test]
fn the_query_names_every_family_and_the_tenant() {
    let q = query("acme");
    for f in FAMILIES {
        assert!(q.contains(f), "{q}");
    }
    assert!(q.ends_with(",tenant=\"acme\"}"), "{q}");
}

#[test]
fn a_local_answer_adds_what_it_knows_about_the_key_itself() {
    use crate::detect::gate::Advisory;
    let global = answer(&location("eu", (NOW - 100) as f64), &["eu"]);
    assert!(global.safe);
    let blocker = |code, kid: &str| Blocker {
        code,
        subject: Subject::tenant("acme").with_kid(Some(kid)),
        detail: "seen here".into(),
        ready_at: None,
        location: None,
    };
    let mut local = global.clone();
    local.blocking = vec![
        blocker(Code::WeakKey, "k2"),
        blocker(Code::AlgNotAllowed, "k2"),
        blocker(Code::KidReused, "k2"),
        // View conditions of this location only: the global answer has its own.
        blocker(Code::KidMissing, "k2"),
        blocker(Code::StaleEdge, "k2"),
        blocker(Code::KeyActivatedEarly, "k2"),
        blocker(Code::ProbeStale, "k2"),
    ];
    local.advisories = vec![Advisory {
        code: Code::CachePolicyDrift,
        subject: Subject::tenant("acme"),
        detail: "drift".into(),
        why: "why".into(),
    }];
    let merged = with_key_conditions(global.clone(), &local);
    let codes: Vec<Code> = merged.blocking.iter().map(|b| b.code).collect();
    assert_eq!(
        codes,
        [Code::AlgNotAllowed, Code::KidReused, Code::WeakKey],
        "{merged:#?}"
    );
    assert!(!merged.safe);
    assert_eq!(merged.advisories.len(), 1);
    assert_eq!(merged.evaluated_at, global.evaluated_at);
    // A healthy key adds nothing.
    let merged = with_key_conditions(global.clone(), &global);
    assert!(merged.safe && merged.blocking.is_empty());
}

/// The retirement of k1 with k2 (the `kid` of [`location`]) signing alone since
/// `alone_since` (seconds), after `local`'s blockers: each blocker as in [`rows`].
fn retire(samples: &[Sample], locations: &[&str], alone_since: i64, local: &[Code]) -> Vec<String> {
    let locations: Vec<String> = locations.iter().map(|l| (*l).to_owned()).collect();
    let scope = Scope {
        tenant: "acme",
        kid: "k1",
        locations: &locations,
        margin: Duration::ZERO,
        max_age: Duration::from_secs(90),
        now: Timestamp::from_secs(NOW),
    };
    let mut answer = rotation(&[], &scope);
    answer.blocking = local
        .iter()
        .map(|code| Blocker {
            code: *code,
            subject: Subject::tenant("acme").with_kid(Some("k1")),
            detail: "from the history".into(),
            ready_at: None,
            location: None,
        })
        .collect();
    let signing = Signing {
        signer: "k2",
        alone_since: Timestamp::from_secs(alone_since),
    };
    let a = retirement(samples, &scope, Some(signing), &answer);
    assert_eq!(a.gate, GateKind::Retirement);
    assert_eq!(a.kid.as_deref(), Some("k1"));
    assert_eq!(a.safe, a.blocking.is_empty());
    rows(&a)
}

#[test]
fn retirement_over_every_location() {
    let both = || [location("eu", 1.0), location("us", 1.0)].concat();
    // The signer served everywhere, alone for longer than every S (60 s): safe.
    assert_eq!(
        retire(&both(), &["eu", "us"], NOW - 61, &[]),
        Vec::<String>::new()
    );
    // Not yet alone for the longest S: ready then.
    let longer = edit(both(), |s| {
        for x in s
            .iter_mut()
            .filter(|x| x.labels["__name__"] == BUDGET && label(x, "location") == "us")
        {
            x.value = 120.0;
        }
    });
    assert_eq!(
        retire(&longer, &["eu", "us"], NOW - 61, &[]),
        ["signing_key_inconsistent - - 10059"]
    );
    // us's edge does not serve the signer.
    let missing = edit(both(), |s| drop(s, KID_SINCE, "us", Some("cdn")));
    assert_eq!(
        retire(&missing, &["eu", "us"], NOW - 61, &[]),
        ["kid_missing us cdn -"]
    );
    // An unbounded S anywhere: no wait is long enough.
    let unbounded = edit(both(), |s| {
        drop(s, BUDGET, "us", Some("cdn"));
        s.push(sample(
            UNBOUNDED,
            &[view("us", "cdn"), vec![("profile", "istio")]].concat(),
            1.0,
        ));
    });
    assert_eq!(
        retire(&unbounded, &["eu", "us"], NOW - 61, &[]),
        ["staleness_budget_exceeded us - -"]
    );
    // No data from a listed location.
    assert_eq!(
        retire(&location("eu", 1.0), &["eu", "us"], NOW - 61, &[]),
        ["probe_stale us - -"]
    );
    // What the history says about k1 itself is kept; its view blockers are replaced by
    // every location's.
    assert_eq!(
        retire(
            &both(),
            &["eu", "us"],
            NOW - 61,
            &[
                Code::KeyRemovedEarly,
                Code::KidMissing,
                Code::SigningKeyInconsistent
            ]
        ),
        ["key_removed_early - - -"]
    );
}
