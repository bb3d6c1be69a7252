//! Property tests of the client simulation over generated histories of tenant `acme`
//! (domains `app` and `io`, each with an origin view and a `cdn` edge view), every client
//! profile built in, replayed through [`crate::detect::assess`]:
//!
//! - **healthy** histories — every view answers 2xx and serves every kid that signs (from
//!   the first round, or from at least the longest client TTL before it signs) with the
//!   signer's material, beside other keys that come and go, with any caching headers —
//!   make no profile fail on any view and raise nothing critical;
//! - **unhealthy** ones — the same with some views, in some rounds, lacking the signer,
//!   serving other material under its kid (alone or beside the right key), or answering
//!   an error (from the edge's cache or not) — raise critical findings only about views
//!   that actually were unhealthy.
//!
//! The generator is seeded (`fastrand`), so a failure names the seed that reproduces it.

use super::view_key_facts;
use crate::config::Config;
use crate::detect::history::History;
use crate::detect::profiles::{builtin, replay};
use crate::detect::stateful::fixtures::{NOW, config_with, key, obs, response, retime};
use crate::model::*;
use std::collections::BTreeSet;

/// How many histories each property is checked on.
const CASES: u64 = 200;

/// Every built-in profile, so that every kind of client is simulated.
fn config() -> Config {
    let names: Vec<String> = builtin()
        .iter()
        .map(|p| format!("\"{}\"", p.name))
        .collect();
    config_with(|t| format!("client_profiles = [{}]\n{t}", names.join(", ")))
}

/// What a view does in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Healthy,
    /// Serves the other keys but not the signer.
    LacksSigner,
    /// Serves the signer's kid with other material only.
    OtherMaterial,
    /// Serves the signer's kid twice: the right key and another.
    Twice,
    /// Answers 503 (from its cache, for an edge).
    Error,
    /// No answer at all.
    Unreachable,
}

/// The views, as (domain index, view index, short name).
const VIEWS: [(usize, usize, &str); 4] = [
    (0, 0, "app/origin"),
    (0, 1, "app/cdn"),
    (1, 0, "io/origin"),
    (1, 1, "io/cdn"),
];

/// A kid the longest client TTL (`aws_http_api`, 2 h) plus the longest edge lifetime
/// below needs before it may sign.
const LEAD_SECS: i64 = 2 * 3600 + 3600;

fn crafted(kid: &str) -> KeyInfo {
    KeyInfo {
        thumbprint: Some(format!("tp-crafted-{kid}")),
        ..key(kid)
    }
}

fn edge_headers(rng: &mut fastrand::Rng) -> CacheHeaders {
    let cache_control = match rng.u8(0..5) {
        0 => None,
        1 => Some("no-store".to_owned()),
        2 => Some("public, max-age=60".to_owned()),
        3 => Some("public, max-age=300, stale-while-revalidate=60".to_owned()),
        _ => Some("public, max-age=3600".to_owned()),
    };
    CacheHeaders {
        cache_control,
        age: rng.bool().then(|| rng.u64(0..400)),
        cache_status: Some(if rng.bool() { "HIT" } else { "MISS" }.to_owned()),
        cache_status_header: Some("X-Cache-Status".to_owned()),
        ..Default::default()
    }
}

/// One generated history: its rounds, and the views that were unhealthy in any of them.
struct Generated {
    rounds: Vec<Observation>,
    unhealthy: BTreeSet<&'static str>,
}

/// A history of 6 to 30 rounds. The first round is healthy (the signer established);
/// a second kid may be published everywhere at some round and sign from `LEAD_SECS` later.
/// With `sick`, one to four views are unhealthy in some rounds.
fn generate(seed: u64, sick: bool) -> Generated {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = rng.usize(6..=30);
    let sick_views: Vec<usize> = if sick {
        let mut v: Vec<usize> = (0..4).filter(|_| rng.bool()).collect();
        if v.is_empty() {
            v.push(rng.usize(0..4));
        }
        v
    } else {
        Vec::new()
    };
    let published = rng.bool().then(|| rng.usize(1..n));
    let mut t = NOW;
    let mut signs_from = None;
    let mut rounds = Vec::new();
    let mut unhealthy = BTreeSet::new();
    for i in 0..n {
        if i > 0 {
            t = t.plus_secs(rng.i64(10..=900));
        }
        if published == Some(i) {
            signs_from = Some(t.plus_secs(LEAD_SECS));
        }
        let k2_served = published.is_some_and(|p| i >= p);
        let signer = match signs_from {
            Some(s) if t >= s => "k2",
            _ => "k1",
        };
        let mut o = obs();
        retime(&mut o, t);
        for (vi, &(d, v, name)) in VIEWS.iter().enumerate() {
            let mut ks = vec![key("k1")];
            if k2_served {
                ks.push(key("k2"));
            }
            // Keys that never sign come and go.
            for extra in ["k8", "k9"] {
                if rng.bool() {
                    ks.push(key(extra));
                }
            }
            let answer = if i > 0 && sick_views.contains(&vi) && rng.u8(0..3) > 0 {
                match rng.u8(0..5) {
                    0 => Answer::LacksSigner,
                    1 => Answer::OtherMaterial,
                    2 => Answer::Twice,
                    3 => Answer::Error,
                    _ => Answer::Unreachable,
                }
            } else {
                Answer::Healthy
            };
            match answer {
                Answer::Healthy | Answer::Error | Answer::Unreachable => {}
                Answer::LacksSigner => ks.retain(|k| k.kid.as_deref() != Some(signer)),
                Answer::OtherMaterial => {
                    ks.retain(|k| k.kid.as_deref() != Some(signer));
                    ks.push(crafted(signer));
                }
                Answer::Twice => ks.push(crafted(signer)),
            }
            if answer != Answer::Healthy {
                unhealthy.insert(name);
            }
            rng.shuffle(&mut ks);
            let view = &mut o.domains[d].views[v];
            let headers = if view.kind == ViewKind::Edge {
                edge_headers(&mut rng)
            } else {
                CacheHeaders::default()
            };
            match answer {
                Answer::Error => {
                    view.fetch.outcome = response(503, headers);
                    view.key_set = None;
                }
                Answer::Unreachable => {
                    view.fetch.outcome = FetchOutcome::Error {
                        kind: FetchErrorKind::Timeout,
                        message: "timed out".into(),
                    };
                    view.key_set = None;
                }
                _ => {
                    view.fetch.outcome = response(200, headers);
                    view.key_set = Some(KeySetParse::Parsed { keys: ks });
                }
            }
        }
        sign(&mut o, signer);
        rounds.push(o);
    }
    Generated { rounds, unhealthy }
}

/// Every token of the round signed by `kid`, each check what verifying against that view's
/// answer gives.
fn sign(o: &mut Observation, kid: &str) {
    for d in &mut o.domains {
        let results: Vec<(ViewId, TokenCheckResult)> = d
            .views
            .iter()
            .map(|v| {
                let result = match &v.key_set {
                    None => TokenCheckResult::ViewUnavailable,
                    Some(set) => {
                        let under: Vec<&KeyInfo> = set
                            .keys()
                            .iter()
                            .filter(|k| k.kid.as_deref() == Some(kid))
                            .collect();
                        if under.is_empty() {
                            TokenCheckResult::KidMissing
                        } else if under.iter().any(|k| *k == &key(kid)) {
                            TokenCheckResult::Verified
                        } else {
                            TokenCheckResult::SignatureInvalid {
                                reason: "the signature does not verify with this key".into(),
                            }
                        }
                    }
                };
                (v.id.clone(), result)
            })
            .collect();
        if let Some(LoginObservation {
            result: LoginResult::Tokens { tokens },
            ..
        }) = &mut d.login
        {
            for tok in tokens {
                tok.header.kid = Some(kid.to_owned());
                tok.checks = results
                    .iter()
                    .map(|(view, result)| TokenCheck {
                        view: view.clone(),
                        result: result.clone(),
                    })
                    .collect();
            }
        }
    }
}

/// Replays `g` and calls `each(step, history, findings)` after every round.
fn replay_with(g: &Generated, mut each: impl FnMut(usize, &History, &[Finding])) {
    let config = config();
    let mut history = History::default();
    for (i, o) in g.rounds.iter().enumerate() {
        let found = crate::detect::assess(
            &config,
            &mut history,
            std::slice::from_ref(o),
            o.finished_at,
        );
        each(i, &history, &found);
    }
}

#[test]
fn healthy_histories_fail_no_profile_and_raise_nothing_critical() {
    let profiles = builtin();
    for seed in 0..CASES {
        let g = generate(seed, false);
        assert!(g.unhealthy.is_empty());
        replay_with(&g, |i, history, found| {
            let o = &g.rounds[i];
            let th = history.tenant("acme").expect("recorded");
            let facts = view_key_facts(th, o);
            assert!(!facts.is_empty(), "seed {seed} step {i}: no facts");
            for f in &facts {
                for p in &profiles {
                    let failure = replay(p, &f.timeline, o.finished_at);
                    assert_eq!(
                        failure, None,
                        "seed {seed} step {i}: {} fails on {}/{} for {}: {f:#?}",
                        p.name, f.domain, f.view, f.kid
                    );
                }
            }
            let critical: Vec<&Finding> = found
                .iter()
                .filter(|f| f.severity == Severity::Critical)
                .collect();
            assert!(critical.is_empty(), "seed {seed} step {i}: {critical:#?}");
        });
    }
}

#[test]
fn unhealthy_histories_raise_criticals_only_about_unhealthy_views() {
    let mut criticals = 0;
    let mut client_failures = 0;
    for seed in 0..CASES {
        let g = generate(seed, true);
        let sick_domains: BTreeSet<&str> = g
            .unhealthy
            .iter()
            .filter_map(|v| v.split('/').next())
            .collect();
        replay_with(&g, |i, _, found| {
            for f in found.iter().filter(|f| f.severity == Severity::Critical) {
                criticals += 1;
                client_failures += usize::from(f.code == Code::ClientWouldFail);
                let s = &f.subject;
                let ok = match (&s.domain, &s.path) {
                    (Some(d), Some(p)) => g.unhealthy.contains(format!("{d}/{p}").as_str()),
                    (Some(d), None) => sick_domains.contains(d.as_str()),
                    (None, _) => !g.unhealthy.is_empty(),
                };
                assert!(
                    ok,
                    "seed {seed} step {i}: {f:#?} names a view that was healthy throughout (unhealthy: {:?})",
                    g.unhealthy
                );
            }
        });
    }
    // The generator does produce the failures the property is about.
    assert!(criticals > CASES as usize, "{criticals}");
    assert!(client_failures > 0, "{client_failures}");
}
