//! The inventory's families: entries accepted and rejected, and per source whether its
//! latest read succeeded and when one last did. With `[inventory]` the families are there
//! from the start (without samples until the first load is published, so OTLP registers
//! them); nothing without it.
//!
//! Not here: reading or expanding the inventory (`probe::inventory`, `config::inventory`).

use super::Family;
use crate::config::Config;
use crate::snapshot::{InventoryStatus, Snapshot};

pub(super) fn inventory_families(s: &Snapshot, config: &Config) -> Vec<Family> {
    if config.inventory.is_none() && s.inventory.is_none() {
        return Vec::new();
    }
    let empty = InventoryStatus::default();
    let loaded = s.inventory.is_some();
    let inv = s.inventory.as_ref().unwrap_or(&empty);
    let mut entries = Family::gauge(
        "keycanary_inventory_entries",
        "Inventory entries by state: accepted (made a tenant, every shard's) or rejected (logged with the reason, skipped).",
    );
    if loaded {
        entries.push(&[("state", "accepted")], inv.accepted as f64);
        entries.push(&[("state", "rejected")], inv.rejected as f64);
    }
    let mut up = Family::gauge(
        "keycanary_inventory_up",
        "1 when the latest read of the inventory source succeeded, 0 when it failed (its last good list is kept).",
    );
    let mut last = Family::gauge(
        "keycanary_inventory_last_success_timestamp_seconds",
        "Unix time of the latest successful read of the inventory source.",
    );
    for (source, st) in &inv.sources {
        up.push(
            &[("source", source)],
            if st.error.is_none() { 1.0 } else { 0.0 },
        );
        if let Some(t) = st.last_success {
            last.push(&[("source", source)], t.0 as f64 / 1000.0);
        }
    }
    vec![entries, up, last]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use crate::snapshot::{InventoryStatus, SourceStatus};

    #[test]
    fn entries_and_each_source_are_exported() {
        let plain = crate::telemetry::fixtures::config();
        let check = |s: &Snapshot, config: &Config, want: &[&str]| {
            let mut got = Vec::new();
            for f in inventory_families(s, config) {
                for sample in &f.samples {
                    let l: Vec<String> = sample
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    got.push(format!("{}{{{}}} {}", f.name, l.join(","), sample.value));
                }
            }
            assert_eq!(got, want);
        };
        check(&Snapshot::default(), &plain, &[]);
        assert!(inventory_families(&Snapshot::default(), &plain).is_empty());
        // With [inventory], before the first load: the families, no samples yet.
        let mut with = plain.clone();
        with.inventory = Some(crate::config::inventory::Inventory {
            file: Some("inventory.json".into()),
            url: None,
            bearer: None,
            refresh: std::time::Duration::from_secs(60),
            max_bytes: 1024,
            base_dir: ".".into(),
        });
        let families = inventory_families(&Snapshot::default(), &with);
        let names: Vec<&str> = families.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "keycanary_inventory_entries",
                "keycanary_inventory_up",
                "keycanary_inventory_last_success_timestamp_seconds"
            ]
        );
        check(&Snapshot::default(), &with, &[]);
        let mut s = Snapshot::default();
        let mut sources = std::collections::BTreeMap::new();
        sources.insert(
            "file",
            SourceStatus {
                last_success: Some(Timestamp(1_700_000_000_000)),
                error: None,
            },
        );
        sources.insert(
            "url",
            SourceStatus {
                last_success: None,
                error: Some("GET http://x/: answered 503".into()),
            },
        );
        s.inventory = Some(InventoryStatus {
            accepted: 998,
            rejected: 2,
            sources,
        });
        check(
            &s,
            &plain,
            &[
                "keycanary_inventory_entries{state=accepted} 998",
                "keycanary_inventory_entries{state=rejected} 2",
                "keycanary_inventory_up{source=file} 1",
                "keycanary_inventory_up{source=url} 0",
                "keycanary_inventory_last_success_timestamp_seconds{source=file} 1700000000",
            ],
        );
    }
}
