use super::*;
use crate::detect::stateful::fixtures::*;
use crate::model::*;

fn id(path: &str) -> ViewId {
    ViewId {
        path: path.into(),
        edge: None,
    }
}

/// `(domain, path)` of the fixture's four views.
const VIEWS: [(&str, &str); 4] = [
    ("app", "origin"),
    ("app", "cdn"),
    ("io", "origin"),
    ("io", "cdn"),
];

fn all_views() -> Vec<(&'static str, ViewId)> {
    VIEWS.iter().map(|(d, p)| (*d, id(p))).collect()
}

/// Step `i` with `kids` served by every view.
fn serving(i: i64, kids: &[&str]) -> Observation {
    let mut o = round(i);
    for d in 0..2 {
        for v in 0..2 {
            keys(&mut o, d, v, kids.iter().map(|k| key(k)).collect());
        }
    }
    o
}

fn since_in(h: &History, kid: &str, domain: &str, path: &str) -> Option<Since> {
    h.tenant("acme")?
        .kid(kid)?
        .present_since_in(domain, &id(path))
}

fn fail(o: &mut Observation, d: usize, v: usize) {
    o.domains[d].views[v].fetch.outcome = FetchOutcome::Error {
        kind: FetchErrorKind::Connect,
        message: "refused".into(),
    };
    o.domains[d].views[v].key_set = None;
}

#[test]
fn presence_follows_the_views() {
    let mut steps = vec![serving(0, &["k1"])];
    // Step 1: app's origin publishes k2.
    let mut o = serving(1, &["k1"]);
    keys(&mut o, 0, 0, vec![key("k1"), key("k2")]);
    steps.push(o);
    // Step 2: every view has k2.
    steps.push(serving(2, &["k1", "k2"]));
    // Step 3: app/cdn fails: neither breaks nor extends presence.
    let mut o = serving(3, &["k1", "k2"]);
    fail(&mut o, 0, 1);
    steps.push(o);
    // Step 4: app/cdn drops k2; step 5: it is back.
    let mut o = serving(4, &["k1", "k2"]);
    keys(&mut o, 0, 1, vec![key("k1")]);
    steps.push(o);
    steps.push(serving(5, &["k1", "k2"]));

    type Want = [Option<Since>; 4];
    let before = Some(Since::BeforeWatch);
    let since = |i| Some(Since::At(at(i)));
    let table: [(usize, &str, Want); 7] = [
        (1, "k1", [before; 4]),
        (1, "k2", [since(1), None, None, None]),
        (2, "k2", [since(1), since(2), since(2), since(2)]),
        (3, "k2", [since(1), since(2), since(2), since(2)]),
        (4, "k2", [since(1), None, since(2), since(2)]),
        (5, "k2", [since(1), since(5), since(2), since(2)]),
        (5, "k1", [before; 4]),
    ];
    for (step, kid, want) in table {
        let h = recorded(&steps[..=step]);
        let got: Vec<Option<Since>> = VIEWS.iter().map(|(d, p)| since_in(&h, kid, d, p)).collect();
        assert_eq!(got, want, "{kid} after step {step}");
        let ledger = h.tenant("acme").unwrap().kid(kid).unwrap();
        let views = all_views();
        let all = ledger.present_in_all_since(views.iter().map(|(d, v)| (*d, v)));
        let latest = want
            .iter()
            .try_fold(None, |acc: Option<Since>, w| Some(acc.max(Some((*w)?))));
        assert_eq!(
            all,
            latest.flatten(),
            "{kid} in all views after step {step}"
        );
    }
    let h = recorded(&steps);
    let p = h
        .tenant("acme")
        .unwrap()
        .kid("k2")
        .unwrap()
        .presence_in("app", &id("cdn"))
        .unwrap();
    assert_eq!(
        (p.first_seen, p.last_seen, p.last_absent),
        (at(2), at(5), Some(at(4)))
    );
    assert!(p.present());
}

#[test]
fn a_view_first_ok_after_failures_counts_as_before_watch() {
    let mut o = serving(0, &["k1"]);
    fail(&mut o, 1, 1);
    let h = recorded(&[o, serving(1, &["k1"])]);
    assert_eq!(since_in(&h, "k1", "io", "cdn"), Some(Since::BeforeWatch));
    let v = h.tenant("acme").unwrap().view("io", &id("cdn")).unwrap();
    assert_eq!((v.first_attempt(), v.last_ok()), (at(0), Some(at(1))));
}

#[test]
fn signing_and_material_are_ledgered() {
    let mut o = round(1);
    tok(&mut o, 0).header.kid = Some("k2".into());
    let mut k1 = key("k1");
    k1.thumbprint = Some("tp-new".into());
    keys(&mut o, 1, 1, vec![k1]);
    let h = recorded(&[round(0), o, round(2)]);
    let t = h.tenant("acme").unwrap();
    let k1 = t.kid("k1").unwrap();
    assert_eq!(
        (k1.first_signed(), k1.last_signed(), k1.latest_exp()),
        (Some(at(0)), Some(at(2)), Some(at(2).as_secs() + 300))
    );
    let materials: Vec<(&str, Timestamp, Timestamp, String)> = k1
        .thumbprints()
        .iter()
        .map(|m| {
            (
                m.thumbprint.as_str(),
                m.first_seen,
                m.last_seen,
                m.first_seen_in.to_string(),
            )
        })
        .collect();
    assert_eq!(
        materials,
        [
            ("tp-k1", at(0), at(2), "app/origin".to_owned()),
            ("tp-new", at(1), at(1), "io/cdn".to_owned()),
        ]
    );
    // k2 signed but was never served: in the ledger, visible nowhere.
    let k2 = t.kid("k2").unwrap();
    assert_eq!(
        (k2.first_signed(), k2.last_signed()),
        (Some(at(1)), Some(at(1)))
    );
    assert!(!k2.served_now() && k2.thumbprints().is_empty());
    let kids: Vec<Vec<(&str, TokenKind, Option<&str>)>> = t
        .signing()
        .iter()
        .map(|r| {
            r.tokens
                .iter()
                .map(|s| (s.domain.as_str(), s.kind, s.kid.as_deref()))
                .collect()
        })
        .collect();
    let at_ = TokenKind::AccessToken;
    assert_eq!(kids[1], [("app", at_, Some("k2")), ("io", at_, Some("k1"))]);
    assert_eq!(kids.len(), 3);
}

#[test]
fn timeline_keeps_runs_of_identical_answers() {
    let mut steps: Vec<Observation> = (0..3).map(|i| serving(i, &["k1"])).collect();
    let mut o = serving(3, &["k1"]);
    fail(&mut o, 0, 1);
    steps.push(o);
    let mut o = serving(4, &["k1", "k2"]);
    cdn_headers(&mut o, 0).age = Some(42);
    steps.push(o);
    let h = recorded(&steps);
    let t = h.tenant("acme").unwrap();
    let line = t.view_timeline("app", &id("cdn"));
    let runs: Vec<(Timestamp, Timestamp, u32, bool)> = line
        .iter()
        .map(|e| (e.first_at, e.last_at, e.rounds, e.served.ok()))
        .collect();
    assert_eq!(
        runs,
        [
            (at(0), at(2), 3, true),
            (at(3), at(3), 1, false),
            (at(4), at(4), 1, true)
        ]
    );
    assert_eq!(line[1].served.error, Some(FetchErrorKind::Connect));
    assert_eq!(line[2].served.thumbprint("k2"), Some("tp-k2"));
    assert_eq!(
        (line[2].age(), line[2].cache_status()),
        (Some(42), Some("HIT"))
    );
    let v = t.view("app", &id("cdn")).unwrap();
    assert_eq!(v.served_at(at(1)).map(|e| e.first_at), Some(at(0)));
    assert_eq!(v.served_at(at(3)).map(|e| e.served.ok()), Some(false));
    assert!(v.served_at(at(-1)).is_none());
    assert!(v.served_at(at(9)).unwrap().served.has_kid("k2"));
    assert!(t.view_timeline("app", &id("nope")).is_empty());
}

#[test]
fn timeline_and_signing_are_bounded() {
    let steps: Vec<Observation> = (0..(TIMELINE_LEN as i64 + 20))
        .map(|i| serving(i, &[if i % 2 == 0 { "k1" } else { "k2" }]))
        .collect();
    let h = recorded(&steps);
    let t = h.tenant("acme").unwrap();
    let line = t.view_timeline("app", &id("cdn"));
    assert_eq!(line.len(), TIMELINE_LEN);
    assert_eq!(line.last().unwrap().first_at, at(TIMELINE_LEN as i64 + 19));
    assert_eq!(t.signing().len(), SIGNING_ROUNDS);
}

#[test]
fn steady_signing_rounds_share_one_token_list() {
    let signed_by = |i: i64, kid: &str| {
        let mut o = serving(i, &["k1", "k2"]);
        tok(&mut o, 0).header.kid = Some(kid.into());
        o
    };
    let h = recorded(&[
        signed_by(0, "k1"),
        signed_by(1, "k1"),
        signed_by(2, "k1"),
        signed_by(3, "k2"),
        signed_by(4, "k2"),
    ]);
    let rounds = h.tenant("acme").unwrap().signing();
    assert_eq!(rounds.len(), 5);
    let shared = |a: usize, b: usize| Arc::ptr_eq(&rounds[a].tokens, &rounds[b].tokens);
    assert!(shared(0, 1) && shared(1, 2), "same signers: one list");
    assert!(!shared(2, 3), "a new signer: a new list");
    assert!(shared(3, 4));
    assert_eq!(rounds[3].tokens[0].kid.as_deref(), Some("k2"));
    assert_eq!(rounds[2].tokens[0].kid.as_deref(), Some("k1"));
    // Stored and read back, each round still has its tokens, shared as before.
    let json = serde_json::to_string(&h).unwrap();
    let back: History = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
    let read = back.tenant("acme").unwrap().signing();
    assert!(Arc::ptr_eq(&read[0].tokens, &read[2].tokens));
    assert!(!Arc::ptr_eq(&read[2].tokens, &read[3].tokens));
}

#[test]
fn tls_leaves_and_etags_are_remembered() {
    let with = |i: i64, leaf: &str, etag: &str, body: &str| {
        let mut o = round(i);
        if let FetchOutcome::Response(r) = &mut cdn(&mut o, 0).fetch.outcome {
            r.tls_leaf_sha256 = Some(leaf.into());
            r.tls_leaf_not_after = Some(2_000_000_000);
            r.headers.etag = Some(etag.into());
            r.body_sha256 = body.into();
        }
        o
    };
    let h = recorded(&[
        with(0, "a", "\"e1\"", "b1"),
        with(1, "a", "\"e1\"", "b2"),
        with(2, "b", "\"e1\"", "b1"),
    ]);
    let t = h.tenant("acme").unwrap();
    let leaf = t.view("app", &id("cdn")).unwrap().tls().unwrap();
    assert_eq!(
        (leaf.sha256.as_str(), leaf.first_seen, leaf.not_after),
        ("b", at(2), Some(2_000_000_000))
    );
    let prev = leaf.previous.as_ref().unwrap();
    assert_eq!((prev.sha256.as_str(), prev.last_seen), ("a", at(1)));
    let bodies: Vec<(&str, Timestamp, Timestamp)> = t
        .etag_bodies("app", "\"e1\"")
        .iter()
        .map(|b| (b.body_sha256.as_str(), b.first_seen, b.last_seen))
        .collect();
    assert_eq!(bodies, [("b1", at(0), at(2)), ("b2", at(1), at(1))]);
    assert!(t.etag_bodies("io", "\"e1\"").is_empty());
}

#[test]
fn prune_drops_only_the_old() {
    let mut steps = vec![serving(0, &["k0"]), serving(1, &["k1"])];
    let mut o = serving(2, &["k1"]);
    o.tenant = "gone".into();
    steps.push(o);
    steps.extend((3..10).map(|i| serving(i, &["k1"])));
    let mut h = recorded(&steps);
    let untouched = h.clone();
    h.prune(at(9), std::time::Duration::from_secs(30 * 20));
    assert_eq!(h, untouched, "nothing is older than the window");
    // Keep 3 minutes at step 9: cut at step 3.
    h.prune(at(9), std::time::Duration::from_secs(30 * 6));
    assert!(h.tenant("gone").is_none());
    let t = h.tenant("acme").unwrap();
    assert!(t.kid("k0").is_none(), "k0 served and signed last at step 0");
    assert!(t.kid("k1").unwrap().served_now());
    let line = t.view_timeline("app", &id("cdn"));
    assert_eq!(line.len(), 1);
    assert_eq!((line[0].first_at, line[0].last_at), (at(1), at(9)));
    assert!(t.signing().iter().all(|r| r.at >= at(3)));
    assert_eq!(t.signing().len(), 7);
    assert_eq!(h.first_recorded(), Some(at(0)));
}

#[test]
fn a_token_still_valid_keeps_its_kid() {
    let mut o = serving(0, &["k0"]);
    tok(&mut o, 0).header.kid = Some("k0".into());
    tok(&mut o, 0).claims.exp = Some(at(100).as_secs());
    let mut h = recorded(&[o, serving(20, &["k1"])]);
    h.prune(at(20), std::time::Duration::from_secs(60));
    let k0 = h
        .tenant("acme")
        .unwrap()
        .kid("k0")
        .expect("kept for its valid token");
    assert_eq!(k0.latest_exp(), Some(at(100).as_secs()));
    assert_eq!(k0.views().count(), 0);
}

#[test]
fn serde_round_trip() {
    let mut o = serving(1, &["k1", "k2"]);
    if let FetchOutcome::Response(r) = &mut cdn(&mut o, 0).fetch.outcome {
        r.tls_leaf_sha256 = Some("leaf".into());
        r.headers.etag = Some("W/\"x\"".into());
    }
    cdn(&mut o, 1).id.edge = Some("192.0.2.1".into());
    let h = recorded(&[serving(0, &["k1"]), o]);
    let json = serde_json::to_string(&h).unwrap();
    let back: History = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
    assert!(json.contains("\"before_watch\""), "{json}");
    assert!(json.contains("\"edge\":\"192.0.2.1\""), "{json}");
    assert_eq!(
        serde_json::from_str::<History>("{}").unwrap(),
        History::default()
    );
}

#[test]
fn the_key_index_follows_every_change_and_is_rebuilt_when_loaded() {
    // Rebuilt from scratch (what deserialising does) it must equal the one kept current.
    let rebuilt =
        |h: &History| serde_json::from_str::<History>(&serde_json::to_string(h).unwrap()).unwrap();
    let served = |h: &History, t: &str| -> Vec<String> {
        h.key_index()
            .served(t)
            .map(|(k, tp)| format!("{}={}", k.unwrap_or("-"), tp.unwrap_or("-")))
            .collect()
    };
    let mut other = serving(1, &["k1"]);
    other.tenant = "globex".into();
    let mut down = serving(2, &["k2"]);
    for d in 0..2 {
        for v in 0..2 {
            down.domains[d].views[v].fetch.outcome = response(503, hit_headers());
            down.domains[d].views[v].key_set = None;
        }
    }
    let mut untried = serving(3, &["k3"]);
    untried.domains.truncate(1);
    untried.domains[0].views.truncate(1);
    type Step = (
        &'static str,
        Box<dyn Fn(&mut History)>,
        &'static [&'static str],
    );
    let table: Vec<Step> = vec![
        (
            "recorded",
            Box::new(|h| h.record(&serving(0, &["k0", "k1"]), at(0))),
            &["k0=tp-k0", "k1=tp-k1"],
        ),
        (
            "another tenant leaves acme's keys alone",
            Box::new(move |h| h.record(&other, at(1))),
            &["k0=tp-k0", "k1=tp-k1"],
        ),
        (
            "a failed round keeps the latest ok answer",
            Box::new(move |h| h.record(&down, at(2))),
            &["k0=tp-k0", "k1=tp-k1"],
        ),
        (
            "only the views the latest round tried count",
            Box::new(move |h| h.record(&untried, at(3))),
            &["k3=tp-k3"],
        ),
        (
            "pruning another tenant changes nothing here",
            Box::new(|h| h.prune_tenant("globex", at(3), Duration::from_secs(3600))),
            &["k3=tp-k3"],
        ),
        (
            "pruned away with its tenant",
            Box::new(|h| h.prune_tenant("acme", at(200), Duration::from_secs(60))),
            &[],
        ),
    ];
    let mut h = History::default();
    for (what, step, want) in table {
        step(&mut h);
        assert_eq!(served(&h, "acme"), want, "{what}");
        assert_eq!(rebuilt(&h).key_index(), h.key_index(), "{what}");
    }
    assert_eq!(served(&h, "globex"), ["k1=tp-k1"]);
    assert_eq!(
        h.key_index().tenants_with_kid("k1").collect::<Vec<_>>(),
        ["globex"]
    );
    h.remove_tenant("globex");
    assert_eq!(served(&h, "globex"), Vec::<String>::new());
    assert_eq!(h.key_index(), &KeyIndex::default());
    assert_eq!(
        h.first_recorded(),
        Some(at(0)),
        "removal keeps the first round"
    );
}

#[test]
fn prune_tenant_prunes_that_tenant_only() {
    let mut gone = serving(0, &["k0"]);
    gone.tenant = "gone".into();
    let mut other = serving(0, &["k0"]);
    other.tenant = "other".into();
    let steps: Vec<Observation> = vec![serving(0, &["k0"]), gone, other]
        .into_iter()
        .chain((1..10).map(|i| serving(i, &["k1"])))
        .collect();
    let mut h = recorded(&steps);
    let keep = Duration::from_secs(30 * 6);
    let mut everything = h.clone();
    everything.prune(at(9), keep);
    for t in ["acme", "gone", "other", "nobody"] {
        h.prune_tenant(t, at(9), keep);
    }
    assert_eq!(h, everything, "prune_tenant of each equals prune");
    let mut h = recorded(&steps);
    h.prune_tenant("gone", at(9), keep);
    assert!(h.tenant("gone").is_none());
    assert!(h.tenant("other").is_some(), "not judged, not pruned");
    assert!(
        h.tenant("acme").unwrap().kid("k0").is_some(),
        "not pruned yet"
    );
    h.remove_tenant("other");
    assert!(h.tenant("other").is_none());
}
