//! `cross_tenant_key_for` against the rule it replaced: over generated multi-tenant
//! histories, one tenant's findings from the key index say what the all-pairs comparison
//! says about that tenant — every subject, other tenant and kind of sharing — and nothing
//! else. Where several keys of the other tenant share in the same way, the index names one
//! of them (the all-pairs rule named each, which made a set of n keys under one kid cost
//! n² findings).

use super::super::super::fixtures::*;
use super::super::cross_tenant_key_for;
use crate::config::Config;
use crate::detect::history::History;
use crate::detect::{assess, round::finish};
use crate::model::*;
use std::collections::BTreeSet;
use std::time::Duration;

/// The rule as it was: every configured tenant's served keys against every other's.
fn all_pairs(history: &History, config: &Config) -> Vec<Finding> {
    type KeySet<'a> = BTreeSet<(Option<&'a str>, Option<&'a str>)>;
    let served: Vec<(&str, KeySet<'_>)> = config
        .tenants
        .iter()
        .filter_map(|t| {
            let th = history.tenant(&t.name)?;
            let keys = th
                .views()
                .filter(|(_, vh)| vh.last_attempt() == th.last_recorded())
                .filter_map(|(_, vh)| vh.timeline().iter().rev().find(|e| e.served.ok()))
                .flat_map(|e| e.served.keys.iter().flatten())
                .map(|k| (k.kid.as_deref(), k.thumbprint.as_deref()))
                .collect();
            Some((t.name.as_str(), keys))
        })
        .collect();
    let mut out = Vec::new();
    for (a, a_keys) in &served {
        for (b, b_keys) in &served {
            if a == b {
                continue;
            }
            for (kid, tp) in a_keys {
                for (other_kid, other_tp) in b_keys {
                    let same_kid = kid.is_some() && kid == other_kid;
                    let same_key = tp.is_some() && tp == other_tp;
                    let what = match (same_kid, same_key) {
                        (true, true) => "the same kid and key".to_owned(),
                        (true, false) => "the same kid with other key material".to_owned(),
                        (false, true) => format!(
                            "the same key ({}…) under kid {}",
                            super::super::super::short_tp(tp.unwrap_or_default()),
                            other_kid.unwrap_or("(none)")
                        ),
                        (false, false) => continue,
                    };
                    let message = format!(
                        "tenant {b} serves {what}: a cache keyed without the Host may serve one tenant's keys to the other's clients"
                    );
                    out.push(Finding::new(
                        Code::CrossTenantKey,
                        Subject::tenant(a).with_kid(*kid),
                        message,
                    ));
                }
            }
        }
    }
    out
}

/// What findings say, apart from which of several matching keys they name: (subject,
/// other tenant, kind of sharing) for each part of each (possibly merged) message.
fn gists(findings: &[Finding]) -> BTreeSet<(Subject, String, &'static str)> {
    let mut out = BTreeSet::new();
    for f in findings {
        // A part cut at the message cap (ending in `…`) is left out.
        for part in f.message.split("; ").filter(|p| !p.ends_with('…')) {
            let other = part
                .strip_prefix("tenant ")
                .and_then(|r| r.split_once(' '))
                .map(|(t, _)| t.to_owned())
                .expect("names the other tenant");
            let kind = [
                "the same kid and key",
                "the same kid with other",
                "the same key (",
            ]
            .into_iter()
            .find(|k| part.contains(k))
            .expect("a known kind of sharing");
            out.insert((f.subject.clone(), other, kind));
        }
    }
    out
}

/// The subjects of `findings`, in order.
fn subjects(findings: &[Finding]) -> Vec<&Subject> {
    findings.iter().map(|f| &f.subject).collect()
}

/// A small deterministic generator (xorshift64*), so no dependency and no flakes.
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

/// The fixture tenant `acme` plus `t1`..`t4` (one domain `app`, one path `cdn`).
fn fleet() -> Config {
    config_with(|toml| {
        let mut out = toml.to_owned();
        for t in ["t1", "t2", "t3", "t4"] {
            out.push_str(&format!(
                "\n[[tenant]]\nname = \"{t}\"\n[[tenant.domain]]\nname = \"app\"\nissuer = \"https://idp.example.app/{t}\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n"
            ));
        }
        out
    })
}

/// Tenants that send rounds: the configured ones and two the config does not name.
const SENDERS: [&str; 7] = ["acme", "t1", "t2", "t3", "t4", "u1", "u2"];

/// A key from a small pool, so kids and materials collide across tenants: the usual
/// `tp-{kid}`, the same kid with other material, a kid with no thumbprint, a key with
/// no kid.
fn some_key(g: &mut Gen) -> KeyInfo {
    let kid = *g.pick(&["k1", "k2", "k3"]);
    let mut k = key(kid);
    match g.below(6) {
        0 => k.thumbprint = Some(format!("tp-{}", g.pick(&["k1", "k2", "x"]))),
        1 => k.thumbprint = None,
        2 => k.kid = None,
        _ => {}
    }
    k
}

/// A round of `tenant` at `t`: each view serves 0–3 pool keys, fails, or is not tried.
fn some_round(g: &mut Gen, tenant: &str, t: Timestamp) -> Observation {
    let mut o = obs();
    retime(&mut o, t);
    o.tenant = tenant.to_owned();
    if tenant != "acme" {
        o.domains.truncate(1);
        o.domains[0].login = None;
    }
    for d in &mut o.domains {
        for v in &mut d.views {
            let ks = (0..g.below(4)).map(|_| some_key(g)).collect();
            v.key_set = Some(KeySetParse::Parsed { keys: ks });
            if g.below(5) == 0 {
                v.fetch.outcome = response(503, hit_headers());
                v.key_set = None;
            }
        }
        if g.below(6) == 0 {
            let drop = g.below(d.views.len());
            d.views.remove(drop);
        }
    }
    o
}

#[test]
fn per_tenant_equals_all_pairs_filtered_over_generated_fleets() {
    let config = fleet();
    let mut seen = BTreeSet::new();
    for seed in 1..=40u64 {
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut h = History::default();
        for step in 0..30 {
            let now = at(step);
            for _ in 0..=g.below(3) {
                let tenant = *g.pick(&SENDERS);
                h.record(&some_round(&mut g, tenant, now), now);
            }
            match g.below(10) {
                0 => h.prune_tenant(g.pick::<&str>(&SENDERS), now, Duration::from_secs(30 * 3)),
                1 => h.remove_tenant(g.pick::<&str>(&SENDERS)),
                _ => {}
            }
            let old = all_pairs(&h, &config);
            for t in &config.tenants {
                let want: Vec<Finding> = old
                    .iter()
                    .filter(|f| f.subject.tenant == t.name)
                    .cloned()
                    .collect();
                let got = cross_tenant_key_for(&h, &config, &t.name);
                let context = format!("seed {seed} step {step} tenant {}", t.name);
                assert_eq!(gists(&got), gists(&want), "{context}");
                for f in &got {
                    assert!(want.contains(f), "{context}: not in the old rule's: {f:?}");
                }
                // Merged, the same subjects (a merged message stops growing at the cap, so
                // its parts may differ).
                assert_eq!(subjects(&finish(got)), subjects(&finish(want)), "{context}");
            }
            for u in ["u1", "u2", "nobody"] {
                assert!(cross_tenant_key_for(&h, &config, u).is_empty());
            }
            // The one-shot path gives the old rule's findings, merged.
            let assessed: Vec<Finding> = assess(&config, &mut h.clone(), &[], now)
                .into_iter()
                .filter(|f| f.code == Code::CrossTenantKey)
                .collect();
            assert_eq!(
                subjects(&assessed),
                subjects(&finish(old.clone())),
                "seed {seed} step {step}"
            );
            assert!(gists(&assessed).is_subset(&gists(&old)));
            for f in &old {
                let kind = [
                    "the same kid and key",
                    "the same kid with other",
                    "the same key (",
                ]
                .into_iter()
                .find(|k| f.message.contains(k));
                seen.insert(kind.expect("a known kind of sharing"));
            }
        }
    }
    // Every kind of sharing came up.
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "the same key (",
            "the same kid and key",
            "the same kid with other"
        ],
        "generator too narrow"
    );
}
