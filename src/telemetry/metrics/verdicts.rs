//! Families about what keycanary concluded: open findings per tenant and code, and the
//! rotation gate for each tenant's current signer.
//!
//! Not here: the judgement itself; these read the snapshot's findings and the gate answers
//! the daemon computed when it judged each tenant (never a gate per scrape).

use super::Family;
use crate::config::Config;
use crate::model::Code;
use crate::snapshot::Snapshot;
use std::collections::BTreeMap;

/// Open findings per tenant and code, for the codes that have any: a code with nothing open
/// has no series (absent means zero; `keycanary_findings_open{...} > 0` alerts need no
/// `absent()`, and `sum(...) or vector(0)` draws the zero), so a healthy tenant costs no
/// series here instead of one per code.
pub(super) fn findings_open(s: &Snapshot, tenant: Option<&str>) -> Family {
    let mut family = Family::gauge(
        "keycanary_findings_open",
        "Findings open after the latest round, by tenant, code and severity (codes with none open have no series).",
    );
    let mut counts: BTreeMap<(&str, Code), u32> = BTreeMap::new();
    let findings = tenant
        .and_then(|t| s.tenants.get(t))
        .map(|t| t.findings.as_slice());
    for f in findings.unwrap_or_default() {
        *counts
            .entry((f.subject.tenant.as_str(), f.code))
            .or_default() += 1;
    }
    for ((tenant, code), n) in counts {
        let labels = [
            ("tenant", tenant),
            ("code", code.as_str()),
            ("severity", code.severity().as_str()),
        ];
        family.push(&labels, f64::from(n));
    }
    family
}

/// The rotation gate for the tenant's current signer ("healthy right now"), as of its
/// latest judgement; no samples before the first round or for a tenant not configured.
pub(super) fn gate_families(s: &Snapshot, config: &Config, tenant: Option<&str>) -> Vec<Family> {
    let mut safe = Family::gauge(
        "keycanary_gate_safe",
        "1 when the rotation gate passes for the tenant's current signer (healthy right now), else 0.",
    );
    let mut blockers = Family::gauge(
        "keycanary_gate_blockers",
        "Blocking conditions of the rotation gate for the tenant's current signer.",
    );
    if s.rounds > 0
        && let Some((t, answer)) = tenant
            .and_then(|t| config.tenant(t))
            .and_then(|t| Some((t, s.gate(&t.name)?)))
    {
        let labels = [("tenant", t.name.as_str())];
        safe.push(&labels, if answer.safe { 1.0 } else { 0.0 });
        blockers.push(&labels, answer.blocking.len() as f64);
    }
    vec![safe, blockers]
}
