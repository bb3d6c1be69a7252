//! The cross-tenant key index: derived from a [`History`], never stored. Per tenant, the
//! keys `(kid, thumbprint)` it currently serves — the union of the latest ok answer of
//! every view its latest round tried — and, across tenants, which tenants serve a kid and
//! which serve a key material. `cross_tenant_key` reads it to find the tenants that share
//! a key with one tenant without comparing every pair of tenants.
//!
//! [`History`] keeps it current itself: [`History::record`], the pruning methods and
//! [`History::remove_tenant`] re-derive the one tenant they change, and a history built by
//! [`History::from_tenants`] or deserialised is indexed whole. So there is nothing to call
//! after loading. Not here: deciding anything from it (`detect::stateful`), serialising it.

use super::{History, TenantHistory};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One served key: kid and thumbprint, either possibly absent.
type KeyPair = (Option<String>, Option<String>);

/// Who serves which keys now (see the module doc).
#[derive(Clone, Default, PartialEq)]
pub struct KeyIndex {
    /// Tenant → the keys it serves; tenants serving none are absent.
    served: BTreeMap<String, TenantKeys>,
    /// kid → tenants serving a key under it.
    by_kid: BTreeMap<String, BTreeSet<String>>,
    /// Thumbprint → tenants serving that key material.
    by_thumbprint: BTreeMap<String, BTreeSet<String>>,
}

/// The keys one tenant serves.
#[derive(Clone, Default, PartialEq)]
struct TenantKeys {
    keys: BTreeSet<KeyPair>,
    /// Thumbprint → the kids it is served under (by this tenant).
    by_thumbprint: BTreeMap<String, BTreeSet<Option<String>>>,
}

impl fmt::Debug for KeyIndex {
    /// Short: the index is derived from the history printed beside it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyIndex")
            .field("tenants", &self.served.len())
            .field("kids", &self.by_kid.len())
            .field("thumbprints", &self.by_thumbprint.len())
            .finish()
    }
}

/// What `th` serves now: for each view its latest round tried, the keys of the view's
/// latest ok timeline entry.
pub(super) fn served_now(th: &TenantHistory) -> BTreeSet<KeyPair> {
    th.views()
        .filter(|(_, vh)| vh.last_attempt() == th.last_recorded())
        .filter_map(|(_, vh)| vh.timeline().iter().rev().find(|e| e.served.ok()))
        .flat_map(|e| e.served.keys.iter().flatten())
        .map(|k| (k.kid.clone(), k.thumbprint.clone()))
        .collect()
}

impl KeyIndex {
    /// The index of every tenant of `history`.
    pub(super) fn of<'a>(tenants: impl IntoIterator<Item = (&'a str, &'a TenantHistory)>) -> Self {
        let mut index = KeyIndex::default();
        for (name, th) in tenants {
            index.set(name, served_now(th));
        }
        index
    }

    /// Replaces what `tenant` serves with `keys`.
    pub(super) fn set(&mut self, tenant: &str, keys: BTreeSet<KeyPair>) {
        if self.served.get(tenant).map(|t| &t.keys) == Some(&keys) {
            return;
        }
        self.remove(tenant);
        if keys.is_empty() {
            return;
        }
        let mut entry = TenantKeys::default();
        for (kid, tp) in &keys {
            if let Some(kid) = kid {
                add(&mut self.by_kid, kid, tenant);
            }
            if let Some(tp) = tp {
                add(&mut self.by_thumbprint, tp, tenant);
                entry
                    .by_thumbprint
                    .entry(tp.clone())
                    .or_default()
                    .insert(kid.clone());
            }
        }
        entry.keys = keys;
        self.served.insert(tenant.to_owned(), entry);
    }

    /// Forgets `tenant`.
    pub(super) fn remove(&mut self, tenant: &str) {
        let Some(old) = self.served.remove(tenant) else {
            return;
        };
        for (kid, tp) in &old.keys {
            if let Some(kid) = kid {
                drop_from(&mut self.by_kid, kid, tenant);
            }
            if let Some(tp) = tp {
                drop_from(&mut self.by_thumbprint, tp, tenant);
            }
        }
    }

    /// The keys `tenant` serves, sorted by (kid, thumbprint); none for a tenant the history
    /// does not know.
    pub fn served(&self, tenant: &str) -> impl Iterator<Item = (Option<&str>, Option<&str>)> {
        self.served
            .get(tenant)
            .into_iter()
            .flat_map(|t| &t.keys)
            .map(|(kid, tp)| (kid.as_deref(), tp.as_deref()))
    }

    /// The tenants serving a key under `kid`, by name.
    pub fn tenants_with_kid(&self, kid: &str) -> impl Iterator<Item = &str> {
        self.by_kid
            .get(kid)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// The tenants serving the key material `thumbprint`, by name.
    pub fn tenants_with_thumbprint(&self, thumbprint: &str) -> impl Iterator<Item = &str> {
        self.by_thumbprint
            .get(thumbprint)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// The keys `tenant` serves that share the kid `kid` or the thumbprint `thumbprint`
    /// (an absent one matches nothing), in the order of [`served`](Self::served): at most
    /// one of each kind of sharing — the same kid and key, the same kid with another key,
    /// the same key under another kid — so a hostile set with thousands of keys under one
    /// kid costs a few lookups per key, not one per pair of keys.
    pub fn matching(
        &self,
        tenant: &str,
        kid: Option<&str>,
        thumbprint: Option<&str>,
    ) -> Vec<(Option<&str>, Option<&str>)> {
        let Some(t) = self.served.get(tenant) else {
            return Vec::new();
        };
        let mut out: BTreeSet<(Option<&str>, Option<&str>)> = BTreeSet::new();
        if let Some(kid) = kid {
            let from = (Some(kid.to_owned()), None);
            let mut same_kid = t
                .keys
                .range(from..)
                .take_while(|(k, _)| k.as_deref() == Some(kid))
                .map(|(k, tp)| (k.as_deref(), tp.as_deref()));
            // The same key, and the first other key, under this kid (a set holds each
            // (kid, thumbprint) once, so each search stops within two steps).
            out.extend(same_kid.clone().find(|(_, tp)| *tp == thumbprint));
            out.extend(same_kid.find(|(_, tp)| *tp != thumbprint));
        }
        if let Some((tp, kids)) = thumbprint.and_then(|tp| t.by_thumbprint.get_key_value(tp)) {
            let tp = Some(tp.as_str());
            out.extend(
                kids.iter()
                    .find(|k| k.as_deref() == kid)
                    .map(|k| (k.as_deref(), tp)),
            );
            out.extend(
                kids.iter()
                    .find(|k| k.as_deref() != kid)
                    .map(|k| (k.as_deref(), tp)),
            );
        }
        out.into_iter().collect()
    }
}

fn add(map: &mut BTreeMap<String, BTreeSet<String>>, key: &str, tenant: &str) {
    map.entry(key.to_owned())
        .or_default()
        .insert(tenant.to_owned());
}

fn drop_from(map: &mut BTreeMap<String, BTreeSet<String>>, key: &str, tenant: &str) {
    if let Some(tenants) = map.get_mut(key) {
        tenants.remove(tenant);
        if tenants.is_empty() {
            map.remove(key);
        }
    }
}

impl History {
    /// Who serves which keys now, across tenants (kept current by every change).
    pub fn key_index(&self) -> &KeyIndex {
        &self.key_index
    }

    /// Re-derives `tenant`'s part of the key index after it changed.
    pub(super) fn reindex_tenant(&mut self, tenant: &str) {
        match self.tenants.get(tenant) {
            Some(th) => self.key_index.set(tenant, served_now(th)),
            None => self.key_index.remove(tenant),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(kid: Option<&str>, tp: Option<&str>) -> KeyPair {
        (kid.map(str::to_owned), tp.map(str::to_owned))
    }

    fn set(pairs: &[(Option<&str>, Option<&str>)]) -> BTreeSet<KeyPair> {
        pairs.iter().map(|(k, t)| pair(*k, *t)).collect()
    }

    #[test]
    fn set_replace_and_remove_keep_the_maps_in_step() {
        let mut ix = KeyIndex::default();
        ix.set("a", set(&[(Some("k1"), Some("t1")), (None, Some("t2"))]));
        ix.set(
            "b",
            set(&[(Some("k1"), Some("t9")), (Some("k2"), Some("t2"))]),
        );
        assert_eq!(ix.tenants_with_kid("k1").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            ix.tenants_with_thumbprint("t2").collect::<Vec<_>>(),
            ["a", "b"]
        );
        // Replacing drops the old entries.
        ix.set("a", set(&[(Some("k3"), None)]));
        assert_eq!(ix.tenants_with_kid("k1").collect::<Vec<_>>(), ["b"]);
        assert_eq!(ix.tenants_with_thumbprint("t2").collect::<Vec<_>>(), ["b"]);
        assert_eq!(ix.tenants_with_thumbprint("t1").count(), 0);
        assert_eq!(ix.served("a").collect::<Vec<_>>(), [(Some("k3"), None)]);
        // An empty set and a removal forget the tenant everywhere.
        ix.set("a", BTreeSet::new());
        ix.remove("b");
        ix.remove("never");
        assert_eq!(ix, KeyIndex::default());
    }

    #[test]
    fn matching_by_kid_or_thumbprint_in_served_order() {
        let mut ix = KeyIndex::default();
        ix.set(
            "b",
            set(&[
                (None, Some("t1")),
                (Some("k1"), None),
                (Some("k1"), Some("t5")),
                (Some("k10"), Some("t1")),
                (Some("k2"), Some("t1")),
                (Some("k2"), Some("t2")),
            ]),
        );
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            &'a [(Option<&'a str>, Option<&'a str>)],
        );
        let table: &[Case<'_>] = &[
            (None, None, &[]),
            (
                Some("k1"),
                None,
                &[(Some("k1"), None), (Some("k1"), Some("t5"))],
            ),
            (
                None,
                Some("t1"),
                &[(None, Some("t1")), (Some("k10"), Some("t1"))],
            ),
            // One match of each kind: the same kid and key, the same kid with another
            // key, the same key under another kid (the first of several).
            (
                Some("k2"),
                Some("t1"),
                &[
                    (None, Some("t1")),
                    (Some("k2"), Some("t1")),
                    (Some("k2"), Some("t2")),
                ],
            ),
            (Some("k"), Some("t9"), &[]),
        ];
        for (kid, tp, want) in table {
            assert_eq!(ix.matching("b", *kid, *tp), *want, "{kid:?} {tp:?}");
        }
        assert!(ix.matching("nobody", Some("k1"), None).is_empty());
    }
}
