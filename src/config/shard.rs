//! Sharding: `shard = "i/n"` (or `KEYCANARY_SHARD=i/n`, which wins so one probes.toml
//! serves every instance) makes this instance watch the tenants whose name hashes to `i`
//! of `n`. n instances with the same file and shards `0/n` … `(n-1)/n` watch every tenant
//! exactly once; Prometheus scraping all of them is where the fleet view lives.
//!
//! The hash is 64-bit FNV-1a of the tenant name's UTF-8 bytes (`model::wire::fnv1a`,
//! written out so that it never changes with a toolchain or a dependency): a tenant stays
//! on its shard across upgrades (its history and incidents are in that shard's state
//! directory). Adding a shard moves tenants; README says how to roll that out.
//!
//! Pure: parsing and ownership only. Not here: where the override comes from (`load`).

use crate::model::wire::fnv1a;
use std::fmt;

/// Shard `index` of `count` (`0 <= index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Most shards one fleet may be split into.
pub const MAX_SHARDS: u32 = 4096;

impl Shard {
    /// `"i/n"` with `0 <= i < n <= MAX_SHARDS`, or what is wrong with it.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || {
            format!(
                "`{}` is not `i/n` with 0 <= i < n <= {MAX_SHARDS}: e.g. \"0/4\" is the first of four instances",
                s.chars().take(32).collect::<String>()
            )
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard watches the tenant named `tenant`.
    pub fn owns(&self, tenant: &str) -> bool {
        fnv1a(tenant.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_i_of_n_only() {
        let table: &[(&str, Option<(u32, u32)>)] = &[
            ("0/1", Some((0, 1))),
            ("3/4", Some((3, 4))),
            (" 1 / 2 ", Some((1, 2))),
            ("4095/4096", Some((4095, 4096))),
            ("4/4", None),
            ("0/0", None),
            ("1/4097", None),
            ("-1/2", None),
            ("1", None),
            ("a/b", None),
            ("", None),
        ];
        for (text, want) in table {
            let got = Shard::parse(text).ok().map(|s| (s.index, s.count));
            assert_eq!(got, *want, "{text:?}");
        }
        let err = Shard::parse("9/4").unwrap_err();
        assert!(err.contains("`9/4`") && err.contains("0/4"), "{err}");
        assert_eq!(Shard::parse("2/8").unwrap().to_string(), "2/8");
    }

    /// The published FNV-1a test vectors: a tenant's shard must never move with a toolchain.
    #[test]
    fn the_hash_is_fnv1a_64() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// Every tenant on exactly one of n shards, and the shards about even.
    #[test]
    fn shards_partition_the_tenants_evenly() {
        let names: Vec<String> = (0..10_000).map(|i| format!("tenant-{i:05}")).collect();
        for count in [1u32, 2, 3, 8] {
            let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
            let mut sizes = vec![0usize; count as usize];
            for n in &names {
                let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns(n)).collect();
                assert_eq!(owners.len(), 1, "{n} on {owners:?}");
                sizes[owners[0].index as usize] += 1;
            }
            let even = names.len() / count as usize;
            for size in sizes {
                assert!(
                    size.abs_diff(even) * 10 <= even,
                    "{count} shards: {size} tenants, {even} expected within 10 %"
                );
            }
        }
    }
}
