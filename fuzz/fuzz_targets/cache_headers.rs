//! Caching headers from the network (Cache-Control, CDN-Cache-Control, Surrogate-Control,
//! Expires, Date, Last-Modified, Pragma, Age), one per line, read as the edge's freshness
//! at a time taken from the first eight bytes; then every derived lifetime, the staleness
//! budget with every built-in client profile, and the times formatted.
#![no_main]

use keycanary::config::profiles;
use keycanary::detect::{freshness, profiles as budget};
use keycanary::model::{CacheHeaders, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (at, rest) = data.split_at(data.len().min(8));
    let mut ms = [0u8; 8];
    ms[..at.len()].copy_from_slice(at);
    let fetched_at = Timestamp(i64::from_le_bytes(ms));
    let text = String::from_utf8_lossy(rest);
    let mut lines = text
        .split('\n')
        .map(|l| (!l.is_empty()).then(|| l.to_owned()));
    let mut next = || lines.next().flatten();
    let h = CacheHeaders {
        cache_control: next(),
        cdn_cache_control: next(),
        surrogate_control: next(),
        expires: next(),
        date: next(),
        last_modified: next(),
        pragma: next(),
        age: next().and_then(|a| a.trim().parse().ok()),
        ..Default::default()
    };
    let f = freshness::edge_freshness(&h, fetched_at);
    let _ = (
        f.stale_windows(),
        f.declared_serves_for(),
        f.serves_for(),
        f.worst_serves_for(),
        f.overage(),
    );
    if let Some(t) = f.fresh_until {
        assert!(!t.to_rfc3339().is_empty());
    }
    let builtin = profiles::builtin();
    let all: Vec<_> = builtin.iter().collect();
    for p in &all {
        let _ = budget::lag(p, f.client_ttl);
    }
    if let budget::Budget::Bounded(d) =
        budget::staleness_budget(f.worst_serves_for(), &all, f.client_ttl)
    {
        assert!(!budget::human(d).is_empty());
    }
});
