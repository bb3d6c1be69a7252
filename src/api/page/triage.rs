//! Which tenants the status page shows how, so that it stays readable at a thousand
//! tenants: a tenant with a problem (an open finding, or an unsafe rotation gate for its
//! current signer) comes first, worst first; a healthy tenant folds into one line; a tenant
//! not probed yet is listed apart. The `?q=` filter keeps the tenants whose name contains
//! the text, ignoring case.
//!
//! Pure: the snapshot and the config in, ordered lists out. Linear in the tenants, plus a
//! sort of those with problems; no tenant's views are walked here.

use crate::config::Config;
use crate::model::{Severity, worst};
use crate::snapshot::{Snapshot, TenantSnapshot};

/// How a tenant stands on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Open findings (`worst` is the most severe, `findings` how many), or an unsafe gate
    /// for the current signer with none.
    Problem {
        worst: Option<Severity>,
        findings: usize,
        gate_unsafe: bool,
    },
    /// Probed, nothing open, the gate safe.
    Healthy,
    /// No round of its own yet.
    Waiting,
}

/// One configured tenant and how it stands.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub snap: Option<&'a TenantSnapshot>,
    pub standing: Standing,
}

/// The configured tenants the page shows, sorted into its three lists.
#[derive(Debug, Default)]
pub struct Fleet<'a> {
    /// Worst first: the most severe finding, then the most findings, then probes.toml
    /// order; an unsafe gate without findings after every tenant with findings.
    pub problems: Vec<Entry<'a>>,
    /// In probes.toml order.
    pub healthy: Vec<Entry<'a>>,
    pub waiting: Vec<Entry<'a>>,
    /// Every configured tenant by standing, matched by the filter or not: (with
    /// problems, healthy, not probed yet).
    pub totals: (usize, usize, usize),
}

impl Fleet<'_> {
    /// The tenants the filter kept.
    pub fn shown(&self) -> usize {
        self.problems.len() + self.healthy.len() + self.waiting.len()
    }
}

/// Whether `name` contains `q`, ignoring ASCII case (tenant names are ASCII); an empty or
/// blank `q` matches every name.
pub fn matches(name: &str, q: &str) -> bool {
    let q = q.trim();
    q.is_empty() || name.to_ascii_lowercase().contains(&q.to_ascii_lowercase())
}

/// How a tenant with this part of the snapshot stands.
pub fn standing(t: Option<&TenantSnapshot>) -> Standing {
    let Some(t) = t else {
        return Standing::Waiting;
    };
    let gate_unsafe = t.observation.is_some() && t.gate.as_ref().is_some_and(|g| !g.safe);
    if !t.findings.is_empty() || gate_unsafe {
        return Standing::Problem {
            worst: worst(&t.findings),
            findings: t.findings.len(),
            gate_unsafe,
        };
    }
    if t.observation.is_none() {
        return Standing::Waiting;
    }
    Standing::Healthy
}

/// The configured tenants whose name matches `q` (every tenant without one), sorted.
pub fn triage<'a>(s: &'a Snapshot, config: &'a Config, q: Option<&str>) -> Fleet<'a> {
    let mut fleet = Fleet::default();
    for t in &config.tenants {
        let snap = s.tenants.get(&t.name);
        let entry = Entry {
            name: &t.name,
            snap,
            standing: standing(snap),
        };
        let shown = q.is_none_or(|q| matches(&t.name, q));
        let (total, list) = match entry.standing {
            Standing::Problem { .. } => (&mut fleet.totals.0, &mut fleet.problems),
            Standing::Healthy => (&mut fleet.totals.1, &mut fleet.healthy),
            Standing::Waiting => (&mut fleet.totals.2, &mut fleet.waiting),
        };
        *total += 1;
        if shown {
            list.push(entry);
        }
    }
    // Stable: ties keep probes.toml order.
    fleet.problems.sort_by_key(|e| match e.standing {
        Standing::Problem {
            worst, findings, ..
        } => (worst.is_none(), worst, std::cmp::Reverse(findings)),
        _ => (true, None, std::cmp::Reverse(0)),
    });
    fleet
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::TomlFixture;
    use crate::config::{self, MemorySecrets};
    use crate::detect::gate::{GateAnswer, GateKind};
    use crate::model::{Code, Finding, Observation, Subject, Timestamp};
    use std::sync::Arc;

    fn config_of(names: &[&str]) -> Config {
        let mut fx = TomlFixture::tenant(names[0]).domain("io", "https://idp.example/io");
        for n in &names[1..] {
            fx = fx.and_tenant(n).domain("io", "https://idp.example/io");
        }
        config::parse(
            &fx.to_string(),
            "t.toml",
            std::path::Path::new("."),
            &MemorySecrets::new(),
        )
        .unwrap()
    }

    /// A tenant's part of the snapshot: probed or not, its findings' codes, its gate.
    fn tenant(name: &str, probed: bool, codes: &[Code], gate_safe: Option<bool>) -> TenantSnapshot {
        TenantSnapshot {
            observation: probed.then(|| {
                Arc::new(Observation {
                    tenant: name.into(),
                    location: "lab".into(),
                    started_at: Timestamp(0),
                    finished_at: Timestamp(1),
                    domains: vec![],
                })
            }),
            findings: codes
                .iter()
                .map(|c| Finding::new(*c, Subject::tenant(name), "x"))
                .collect(),
            gate: gate_safe.map(|safe| GateAnswer {
                gate: GateKind::Rotation,
                tenant: name.into(),
                kid: Some("k1".into()),
                safe,
                blocking: vec![],
                advisories: vec![],
                ready_at: None,
                evaluated_at: Timestamp(1),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn standing_of_a_tenant() {
        let check = |t: Option<TenantSnapshot>, want: Standing| {
            assert_eq!(standing(t.as_ref()), want, "{t:?}")
        };
        check(None, Standing::Waiting);
        check(Some(tenant("a", false, &[], None)), Standing::Waiting);
        check(
            Some(tenant("a", false, &[], Some(false))),
            Standing::Waiting,
        );
        check(Some(tenant("a", true, &[], None)), Standing::Healthy);
        check(Some(tenant("a", true, &[], Some(true))), Standing::Healthy);
        check(
            Some(tenant("a", true, &[], Some(false))),
            Standing::Problem {
                worst: None,
                findings: 0,
                gate_unsafe: true,
            },
        );
        // A stale tenant keeps no new observation but its findings are open.
        check(
            Some(tenant("a", false, &[Code::ProbeStale], None)),
            Standing::Problem {
                worst: Some(Code::ProbeStale.severity()),
                findings: 1,
                gate_unsafe: false,
            },
        );
        check(
            Some(tenant(
                "a",
                true,
                &[Code::KidMissing, Code::ProbeStale],
                Some(false),
            )),
            Standing::Problem {
                worst: Some(Severity::Critical),
                findings: 2,
                gate_unsafe: true,
            },
        );
    }

    #[test]
    fn names_match_by_part_ignoring_case() {
        let check = |name: &str, q: &str, want: bool| assert_eq!(matches(name, q), want, "{q}");
        check("acme-prod", "acme", true);
        check("acme-prod", "PROD", true);
        check("acme-prod", " me-p ", true);
        check("acme-prod", "", true);
        check("acme-prod", "  ", true);
        check("acme-prod", "globex", false);
        check("acme", "acme-prod", false);
        check("acme", "<script>", false);
    }

    #[test]
    fn problems_come_first_worst_first_and_healthy_tenants_keep_their_order() {
        let names = [
            "h1", "gate", "medium", "crit1", "wait", "crit2", "h2", "high",
        ];
        let config = config_of(&names);
        let mut s = Snapshot::default();
        for t in [
            tenant("h1", true, &[], Some(true)),
            tenant("gate", true, &[], Some(false)),
            tenant("medium", true, &[Code::CacheTtlExceeded], None),
            tenant("crit1", true, &[Code::KidMissing], None),
            // "wait" has no entry at all.
            tenant("crit2", true, &[Code::KidMissing, Code::StaleEdge], None),
            tenant("h2", true, &[], None),
            tenant("high", true, &[Code::DiscoveryFailed], None),
        ] {
            let name = t.observation.as_ref().unwrap().tenant.clone();
            s.tenants.insert(name, t);
        }
        let fleet = triage(&s, &config, None);
        fn names_of<'a>(es: &[Entry<'a>]) -> Vec<&'a str> {
            es.iter().map(|e| e.name).collect()
        }
        // Critical with two findings, critical with one, high, medium, then the gate alone.
        assert_eq!(
            names_of(&fleet.problems),
            ["crit2", "crit1", "high", "medium", "gate"]
        );
        assert_eq!(names_of(&fleet.healthy), ["h1", "h2"]);
        assert_eq!(names_of(&fleet.waiting), ["wait"]);
        assert_eq!((fleet.totals, fleet.shown()), ((5, 2, 1), 8));

        let filtered = triage(&s, &config, Some("H"));
        assert_eq!(names_of(&filtered.problems), ["high"]);
        assert_eq!(names_of(&filtered.healthy), ["h1", "h2"]);
        assert!(filtered.waiting.is_empty());
        assert_eq!((filtered.totals, filtered.shown()), ((5, 2, 1), 3));
        assert_eq!(triage(&s, &config, Some("nobody")).shown(), 0);
    }
}
