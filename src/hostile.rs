//! Hostile input through the whole pure path: numbers from the network at their extremes
//! (a token's times in milliseconds or at `i64::MAX`, `Age` and `max-age` near 2^64,
//! `Expires` in year 9999, certificates expiring at the end of time) and key sets of
//! thousands of keys, judged round after round, then answered by the gates and rendered by
//! the report, the metrics and the status page. Nothing may panic, and what comes out is
//! bounded (`detect::bound`).

use crate::detect::bound::{MESSAGE_CHARS, PER_CODE, PER_TENANT};
use crate::detect::gate::{self, Question};
use crate::detect::history::History;
use crate::detect::stateful::fixtures::*;
use crate::judge::{Verdict, judge};
use crate::model::*;
use crate::report::Report;
use crate::snapshot::Snapshot;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every token of the round.
fn tokens(o: &mut Observation) -> impl Iterator<Item = &mut TokenInfo> {
    o.domains
        .iter_mut()
        .filter_map(|d| d.login.as_mut())
        .filter_map(|l| match &mut l.result {
            LoginResult::Tokens { tokens } => Some(tokens),
            LoginResult::Failed { .. } => None,
        })
        .flatten()
}

/// Every response of the round: discovery and views.
fn responses(o: &mut Observation) -> impl Iterator<Item = &mut HttpResponse> {
    o.domains
        .iter_mut()
        .flat_map(|d| {
            d.views
                .iter_mut()
                .map(|v| &mut v.fetch)
                .chain(d.discovery.as_mut().map(|x| &mut x.fetch))
        })
        .filter_map(|f| match &mut f.outcome {
            FetchOutcome::Response(r) => Some(&mut **r),
            FetchOutcome::Error { .. } => None,
        })
}

/// Every key of every view.
fn all_keys(o: &mut Observation) -> impl Iterator<Item = &mut KeyInfo> {
    o.domains
        .iter_mut()
        .flat_map(|d| d.views.iter_mut())
        .filter_map(|v| match &mut v.key_set {
            Some(KeySetParse::Parsed { keys }) => Some(keys),
            _ => None,
        })
        .flatten()
}

fn claims(o: &mut Observation, edit: impl Fn(&mut TokenClaims)) {
    tokens(o).for_each(|t| edit(&mut t.claims));
}

fn headers(o: &mut Observation, edit: impl Fn(&mut CacheHeaders)) {
    responses(o).for_each(|r| edit(&mut r.headers));
}

const U64_MAX: &str = "18446744073709551615";
const YEAR_9999: &str = "Fri, 31 Dec 9999 23:59:59 GMT";

/// A named edit of a round.
type Extreme = (&'static str, Box<dyn Fn(&mut Observation)>);

/// One extreme each: (name, edit of a round).
fn extremes() -> Vec<Extreme> {
    let ms = NOW.0;
    let mut cases: Vec<Extreme> = vec![
        (
            "times in milliseconds",
            Box::new(move |o| {
                claims(o, |c| {
                    c.nbf = Some(ms);
                    c.iat = Some(ms);
                    c.exp = Some(ms + 300_000);
                })
            }),
        ),
        (
            "Age 2^64-1",
            Box::new(|o| headers(o, |h| h.age = Some(u64::MAX))),
        ),
        (
            "max-age and stale-* 2^64-1",
            Box::new(|o| {
                headers(o, |h| {
                    h.cache_control = Some(format!(
                        "public, max-age={U64_MAX}, s-maxage={U64_MAX}, stale-while-revalidate={U64_MAX}, stale-if-error={U64_MAX}"
                    ))
                })
            }),
        ),
        (
            "CDN fields 2^64-1",
            Box::new(|o| {
                headers(o, |h| {
                    h.cdn_cache_control = Some(format!(
                        "max-age={U64_MAX}, stale-while-revalidate={U64_MAX}"
                    ));
                    h.surrogate_control = Some(format!("max-age={U64_MAX}+{U64_MAX}"));
                    h.age = Some(u64::MAX);
                })
            }),
        ),
        (
            "Expires in year 9999",
            Box::new(|o| {
                headers(o, |h| {
                    h.cache_control = None;
                    h.expires = Some(YEAR_9999.into());
                    h.date = Some("Thu, 01 Jan 1970 00:00:00 GMT".into());
                })
            }),
        ),
        (
            "Date in year 9999, Last-Modified in 1970",
            Box::new(|o| {
                headers(o, |h| {
                    h.cache_control = None;
                    h.date = Some(YEAR_9999.into());
                    h.last_modified = Some("Thu, 01 Jan 1970 00:00:00 GMT".into());
                    h.age = Some(u64::MAX / 2);
                })
            }),
        ),
        (
            "TLS leaf and x5c at the ends of time",
            Box::new(|o| {
                for (i, r) in responses(o).enumerate() {
                    r.tls_leaf_sha256 = Some(format!("leaf{i}"));
                    r.tls_leaf_not_after = Some(if i % 2 == 0 { i64::MAX } else { i64::MIN });
                    r.body_len = u64::MAX;
                }
                for k in all_keys(o) {
                    k.x5c = Some(X5cFacts {
                        not_after: Some(i64::MIN),
                        ..Default::default()
                    });
                    k.size_bits = Some(u32::MAX);
                }
            }),
        ),
        (
            "fetch durations 2^64-1",
            Box::new(|o| {
                for d in &mut o.domains {
                    for v in &mut d.views {
                        v.fetch.duration_ms = u64::MAX;
                    }
                    if let Some(l) = &mut d.login
                        && let Some(f) = &mut l.fetch
                    {
                        f.duration_ms = u64::MAX;
                    }
                }
            }),
        ),
    ];
    for (name, v) in [
        ("token times i64::MAX", i64::MAX),
        ("token times i64::MIN", i64::MIN),
        ("token times -1", -1),
    ] {
        cases.push((
            name,
            Box::new(move |o| {
                claims(o, |c| {
                    c.nbf = Some(v);
                    c.iat = Some(v);
                    c.exp = Some(v);
                })
            }),
        ));
    }
    cases
}

/// Judges `steps` (each at its `finished_at`), then asks the gates and renders what the
/// faces render; returns the verdicts.
fn judge_and_render(config: &crate::config::Config, steps: &[Observation]) -> Vec<Verdict> {
    let mut history = History::default();
    let mut alerts = BTreeMap::new();
    let mut snapshot = Snapshot {
        config: Some(Arc::new(config.clone())),
        ..Default::default()
    };
    let mut verdicts = Vec::new();
    for o in steps {
        let part = alerts.remove(&o.tenant).unwrap_or_default();
        let now = o.finished_at;
        let v = judge(
            config,
            &mut history,
            &part,
            &[],
            &o.tenant,
            Some(o),
            &[],
            now,
        );
        alerts.insert(o.tenant.clone(), v.alerts.clone());
        snapshot.judged(
            config,
            &o.tenant,
            Some(Arc::new(o.clone())),
            v.findings.clone(),
            &history,
            o.started_at,
            now,
        );
        for kid in [None, Some("k1"), Some("k0")] {
            let rotation = Question::Rotation(kid);
            let q = [rotation, Question::Retirement(kid.unwrap_or("k1"))];
            for question in q {
                let a = gate::answer(
                    config,
                    &history,
                    std::slice::from_ref(o),
                    &v.findings,
                    &o.tenant,
                    question,
                    now,
                );
                assert!(!serde_json::to_string(&a).unwrap().is_empty());
            }
        }
        let report = Report::new([o], v.findings.clone());
        assert!(!report.to_text().is_empty());
        assert!(!report.to_json().is_empty());
        verdicts.push(v);
    }
    let metrics = crate::telemetry::metrics::render(
        &snapshot,
        config,
        crate::telemetry::metrics::BuildInfo::current(),
    );
    assert!(metrics.contains("keycanary_findings_open"));
    let last = steps.last().map_or(NOW, |o| o.finished_at);
    assert!(crate::api::page::render(&snapshot, config, last).contains("<html"));
    verdicts
}

/// Regression: a token's `nbf` in milliseconds made `check` exit 101 (a year past 9999
/// could not be formatted); `max-age` / `stale-*` near 2^64 overflowed durations; `Expires`
/// in year 9999 did too. Every extreme, round after round, through every consumer.
#[test]
fn extreme_numbers_from_the_network_never_panic() {
    let config = config_with(str::to_owned);
    let mut failed = Vec::new();
    for (name, edit) in extremes() {
        let steps: Vec<Observation> = (0..3)
            .map(|i| {
                let mut o = round(i);
                if i > 0 {
                    edit(&mut o);
                }
                o
            })
            .collect();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            judge_and_render(&config, &steps)
        }));
        match outcome {
            Err(_) => failed.push(name),
            Ok(verdicts) => {
                for f in verdicts.iter().flat_map(|v| &v.findings) {
                    assert!(f.message.chars().count() <= MESSAGE_CHARS, "{name}: {f:?}");
                }
            }
        }
    }
    assert!(failed.is_empty(), "panicked: {failed:?}");
}

/// The issue's own case, read back: `nbf` in milliseconds is a finding that names the
/// latest time keycanary writes, not a crash.
#[test]
fn nbf_in_milliseconds_is_a_finding() {
    let config = config_with(str::to_owned);
    let mut o = round(0);
    claims(&mut o, |c| c.nbf = Some(NOW.0));
    let v = &judge_and_render(&config, &[o])[0];
    let claims: Vec<&Finding> = v
        .findings
        .iter()
        .filter(|f| f.code == Code::ClaimsInvalid)
        .collect();
    assert_eq!(claims.len(), 2, "{claims:#?}");
    assert!(
        claims[0].message.contains("nbf 9999-12-31T23:59:59Z"),
        "{}",
        claims[0].message
    );
}

/// Regression: two tenants sharing a 501-key set took 14 s and 300 MB with 75 MB of finding
/// text (every pair of keys under one kid became a finding, merged into one message by
/// quadratic appends). 2,500 keys — half of them under one kid, some weak, some without
/// kid — served by both tenants: the findings are bounded per code and per tenant and so is
/// their text.
#[test]
fn two_tenants_sharing_a_hostile_set_of_2500_keys_give_bounded_findings() {
    let config = two_tenants();
    let set: Vec<KeyInfo> = (0..2_500)
        .map(|i| {
            let kid = match i % 7 {
                0 => None,
                1 | 3 | 5 => Some("dup".to_owned()),
                _ => Some(format!("k{i}")),
            };
            KeyInfo {
                kid,
                thumbprint: Some(format!("tp-{i}")),
                size_bits: Some(if i % 5 == 0 { 1024 } else { 2048 }),
                ..key("k")
            }
        })
        .collect();
    let acme = |i: i64| {
        let mut o = round(i);
        for d in 0..2 {
            for v in 0..2 {
                keys(&mut o, d, v, set.clone());
            }
        }
        o
    };
    let globex = |i: i64| {
        let mut o = round(i);
        o.tenant = "globex".into();
        o.domains.truncate(1);
        o.domains[0].login = None;
        keys(&mut o, 0, 0, set.clone());
        keys(&mut o, 0, 1, set.clone());
        o
    };
    let steps = [acme(0), globex(0), acme(1), globex(1)];
    let verdicts = judge_and_render(&config, &steps);
    for (step, v) in verdicts.iter().enumerate() {
        let mut per_code: BTreeMap<Code, usize> = BTreeMap::new();
        for f in &v.findings {
            *per_code.entry(f.code).or_default() += 1;
            assert!(f.message.chars().count() <= MESSAGE_CHARS, "{f:?}");
        }
        for (code, n) in &per_code {
            assert!(*n <= PER_CODE + 1, "step {step}: {n} {code} findings");
        }
        assert!(
            v.findings.len() <= PER_TENANT + per_code.len(),
            "step {step}: {} findings",
            v.findings.len()
        );
        let text: usize = v.findings.iter().map(|f| f.message.len()).sum();
        assert!(text <= 200_000, "step {step}: {text} bytes of messages");
        assert!(v.outbox.len() <= 10, "step {step}: {} rows", v.outbox.len());
    }
    // The rules still see everything: the shared keys and the weak ones are reported, with
    // the count of those not listed.
    let last = &verdicts[2].findings;
    let folded = |code: Code| {
        last.iter()
            .find(|f| f.code == code && f.subject == Subject::tenant("acme"))
            .map(|f| f.message.clone())
            .unwrap_or_default()
    };
    assert!(
        folded(Code::CrossTenantKey).contains("more cross_tenant_key findings"),
        "{last:#?}"
    );
    assert!(folded(Code::WeakKey).contains("more weak_key findings"));
}
