//! The lab's simulated caching CDN: one [`Cache`] per domain in front of the origin.
//!
//! Behaviour, deliberately close to an nginx `proxy_cache`:
//! - the cache key is the request path plus query (so a cache-busting query misses);
//! - a 200 is stored for `s-maxage`, else `max-age`, of the origin's `Cache-Control`, and
//!   not at all under `no-store`, `private` or `no-cache` (no heuristic freshness: no
//!   `Cache-Control`, no storing);
//! - with [`CachePolicy::override_ttl_secs`] set the origin's headers are ignored and a 200
//!   is stored for that TTL (`proxy_ignore_headers` + `proxy_cache_valid`);
//! - with [`CachePolicy::cache_errors`] a non-200 is stored too, for the override TTL or
//!   [`ERROR_TTL_SECS`];
//! - responses carry `X-Cache-Status: MISS | HIT | EXPIRED | BYPASS` and, on hits,
//!   `Age` in whole seconds since the entry was stored. A request with `X-Refresh: 1` is a
//!   BYPASS: the origin is asked and a storable answer overwrites the entry (one that may not
//!   be stored leaves the entry as it was, as nginx does).
//!
//! The freshness maths is hand-written rather than `http-cache-semantics`: the lab must
//! misbehave on demand (override TTLs, cached errors) the way misconfigured CDNs do, which a
//! correct cache library exists to prevent. Deliberately not modelled: revalidation
//! (`If-None-Match`, 304), `stale-while-revalidate`, `Vary`, `Expires`, request
//! `Cache-Control`, several edges per domain. Time is always the `now` passed in.

use super::Reply;
use crate::model::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// `Cache-Control` the origin sends for a domain unless told otherwise.
pub const DEFAULT_ORIGIN_CACHE_CONTROL: &str = "public, max-age=60";
/// How long a cached error lives when the domain has no override TTL.
pub const ERROR_TTL_SECS: u64 = 10;

/// A domain's caching set-up: what the origin sends, and how the CDN treats it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachePolicy {
    /// The `Cache-Control` the origin sends on discovery and JWKS; `None`: no header.
    pub origin_cache_control: Option<String>,
    /// When set, the CDN ignores the origin's caching headers and stores 200s this long.
    pub override_ttl_secs: Option<u64>,
    /// When true, the CDN stores non-200 responses too.
    pub cache_errors: bool,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            origin_cache_control: Some(DEFAULT_ORIGIN_CACHE_CONTROL.to_owned()),
            override_ttl_secs: None,
            cache_errors: false,
        }
    }
}

/// A change to a [`CachePolicy`]. A field left out (`None`) leaves that setting unchanged.
/// For the two optional settings, JSON `null` (Rust `Some(None)`) clears them: no override
/// TTL, no `Cache-Control` from the origin.
///
/// ```json
/// {"override_ttl_secs": 600}                      // ignore the origin, store 600 s
/// {"override_ttl_secs": null}                     // honour the origin again
/// {"origin_cache_control": "public, s-maxage=300"}
/// {"origin_cache_control": null, "cache_errors": true}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePolicyUpdate {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub override_ttl_secs: Option<Option<u64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub origin_cache_control: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_errors: Option<bool>,
}

/// A member that is present is `Some`, even when it is `null`.
fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

impl CachePolicy {
    pub fn apply(&mut self, update: &CachePolicyUpdate) {
        if let Some(ttl) = update.override_ttl_secs {
            self.override_ttl_secs = ttl;
        }
        if let Some(cc) = &update.origin_cache_control {
            self.origin_cache_control.clone_from(cc);
        }
        if let Some(on) = update.cache_errors {
            self.cache_errors = on;
        }
    }
}

/// How long the CDN stores a response with this status and origin `Cache-Control`, or
/// `None` when it does not store it at all.
pub fn storage_ttl(status: u16, cache_control: Option<&str>, policy: &CachePolicy) -> Option<u64> {
    if status != 200 {
        let ttl = policy.override_ttl_secs.unwrap_or(ERROR_TTL_SECS);
        return (policy.cache_errors && ttl > 0).then_some(ttl);
    }
    if let Some(ttl) = policy.override_ttl_secs {
        return (ttl > 0).then_some(ttl);
    }
    let mut s_maxage = None;
    let mut max_age = None;
    for directive in cache_control?.split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n, Some(v.trim().trim_matches('"'))),
            None => (directive, None),
        };
        let seconds = || value.and_then(|v| v.parse::<u64>().ok());
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" | "private" | "no-cache" => return None,
            "s-maxage" => s_maxage = seconds(),
            "max-age" => max_age = seconds(),
            _ => {}
        }
    }
    s_maxage.or(max_age).filter(|&ttl| ttl > 0)
}

/// Whether a stored entry may still be served at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh { age_secs: u64 },
    Expired,
}

/// An entry stored at `stored_at` for `ttl_secs` is fresh while its age is below the TTL.
/// Age is whole seconds, rounded down; a clock moved backwards counts as age 0.
pub fn freshness(stored_at: Timestamp, ttl_secs: u64, now: Timestamp) -> Freshness {
    let age_ms = u64::try_from(now.0.saturating_sub(stored_at.0)).unwrap_or(0);
    if age_ms < ttl_secs.saturating_mul(1000) {
        Freshness::Fresh {
            age_secs: age_ms / 1000,
        }
    } else {
        Freshness::Expired
    }
}

/// What the CDN did for one request, as sent in `X-Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CacheStatus {
    Miss,
    Hit,
    Expired,
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Miss => "MISS",
            CacheStatus::Hit => "HIT",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    reply: Reply,
    stored_at: Timestamp,
    ttl_secs: u64,
}

/// One cached entry as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    pub key: String,
    pub status: u16,
    pub stored_at: Timestamp,
    pub ttl_secs: u64,
    pub age_secs: u64,
    pub fresh: bool,
}

/// The stored responses of one domain, by cache key.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    entries: BTreeMap<String, Entry>,
}

impl Cache {
    /// The first half of answering a GET for `key`: a fresh stored reply (with `Age` and
    /// `X-Cache-Status: HIT`), or why the origin must be asked. `refresh` is the
    /// `X-Refresh: 1` bypass.
    pub fn lookup(&self, key: &str, refresh: bool, now: Timestamp) -> Result<Reply, CacheStatus> {
        if refresh {
            return Err(CacheStatus::Bypass);
        }
        let entry = self.entries.get(key).ok_or(CacheStatus::Miss)?;
        match freshness(entry.stored_at, entry.ttl_secs, now) {
            Freshness::Fresh { age_secs } => Ok(entry
                .reply
                .clone()
                .with_header("age", age_secs.to_string())
                .with_header("x-cache-status", CacheStatus::Hit.as_str())),
            Freshness::Expired => Err(CacheStatus::Expired),
        }
    }

    /// The second half: stores the origin's `reply` when `policy` allows and returns it
    /// marked with `status` (what [`Cache::lookup`] said).
    pub fn store(
        &mut self,
        key: &str,
        status: CacheStatus,
        reply: Reply,
        policy: &CachePolicy,
        now: Timestamp,
    ) -> Reply {
        // Expired entries are dropped whenever something is stored, so cache-busting query
        // strings (a new key per request) cannot grow the cache without bound.
        self.entries
            .retain(|_, e| freshness(e.stored_at, e.ttl_secs, now) != Freshness::Expired);
        match storage_ttl(reply.status, reply.header("cache-control"), policy) {
            Some(ttl_secs) => {
                let entry = Entry {
                    reply: reply.clone(),
                    stored_at: now,
                    ttl_secs,
                };
                self.entries.insert(key.to_owned(), entry);
            }
            None if status == CacheStatus::Expired => {
                self.entries.remove(key);
            }
            None => {}
        }
        reply.with_header("x-cache-status", status.as_str())
    }

    /// Empties the cache; returns how many entries it held.
    pub fn purge(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        n
    }

    pub fn view(&self, now: Timestamp) -> Vec<EntryView> {
        self.entries
            .iter()
            .map(|(key, e)| {
                let fresh = freshness(e.stored_at, e.ttl_secs, now);
                EntryView {
                    key: key.clone(),
                    status: e.reply.status,
                    stored_at: e.stored_at,
                    ttl_secs: e.ttl_secs,
                    age_secs: u64::try_from(now.0.saturating_sub(e.stored_at.0) / 1000)
                        .unwrap_or(0),
                    fresh: matches!(fresh, Freshness::Fresh { .. }),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(override_ttl_secs: Option<u64>, cache_errors: bool) -> CachePolicy {
        CachePolicy {
            origin_cache_control: None,
            override_ttl_secs,
            cache_errors,
        }
    }

    #[test]
    fn storage_ttl_honours_origin_headers() {
        let honour = policy(None, false);
        let check = |cc: Option<&str>, want: Option<u64>| {
            assert_eq!(storage_ttl(200, cc, &honour), want, "{cc:?}");
        };
        check(Some("public, max-age=60"), Some(60));
        check(Some("max-age=60, s-maxage=300"), Some(300));
        check(Some("s-maxage=300, max-age=60"), Some(300));
        check(Some("Public, MAX-AGE=120"), Some(120));
        check(Some("max-age=\"90\""), Some(90));
        check(Some("max-age=0"), None);
        check(Some("public, max-age=60, no-store"), None);
        check(Some("private, max-age=60"), None);
        check(Some("no-cache, s-maxage=60"), None);
        check(Some("public"), None);
        check(Some("max-age=soon"), None);
        check(Some(""), None);
        check(None, None);
    }

    #[test]
    fn storage_ttl_with_override_and_errors() {
        let check = |status: u16, cc: Option<&str>, p: CachePolicy, want: Option<u64>| {
            assert_eq!(storage_ttl(status, cc, &p), want, "{status} {cc:?} {p:?}");
        };
        check(200, Some("no-store"), policy(Some(600), false), Some(600));
        check(200, None, policy(Some(600), false), Some(600));
        check(200, Some("max-age=60"), policy(Some(0), false), None);
        check(503, Some("max-age=60"), policy(None, false), None);
        check(503, None, policy(Some(600), false), None);
        check(503, None, policy(None, true), Some(ERROR_TTL_SECS));
        check(404, Some("no-store"), policy(Some(600), true), Some(600));
        check(200, Some("max-age=60"), policy(None, true), Some(60));
    }

    #[test]
    fn freshness_by_time() {
        let stored = Timestamp::from_secs(1_000);
        let check = |ms_later: i64, ttl: u64, want: Freshness| {
            let now = Timestamp(stored.0 + ms_later);
            assert_eq!(
                freshness(stored, ttl, now),
                want,
                "{ms_later} ms, ttl {ttl}"
            );
        };
        check(0, 60, Freshness::Fresh { age_secs: 0 });
        check(999, 60, Freshness::Fresh { age_secs: 0 });
        check(1_000, 60, Freshness::Fresh { age_secs: 1 });
        check(59_999, 60, Freshness::Fresh { age_secs: 59 });
        check(60_000, 60, Freshness::Expired);
        check(3_600_000, 60, Freshness::Expired);
        check(-5_000, 60, Freshness::Fresh { age_secs: 0 });
        check(0, 0, Freshness::Expired);
    }

    #[test]
    fn policy_update_distinguishes_absent_from_null() {
        let mut p = CachePolicy::default();
        let update = |json: &str| -> CachePolicyUpdate { serde_json::from_str(json).unwrap() };
        p.apply(&update(r#"{"override_ttl_secs": 600}"#));
        assert_eq!(p.override_ttl_secs, Some(600));
        assert_eq!(
            p.origin_cache_control.as_deref(),
            Some(DEFAULT_ORIGIN_CACHE_CONTROL)
        );
        p.apply(&update(
            r#"{"origin_cache_control": null, "cache_errors": true}"#,
        ));
        assert_eq!(p.override_ttl_secs, Some(600));
        assert_eq!(p.origin_cache_control, None);
        assert!(p.cache_errors);
        p.apply(&update(r#"{"override_ttl_secs": null}"#));
        assert_eq!(p.override_ttl_secs, None);
        assert!(serde_json::from_str::<CachePolicyUpdate>(r#"{"ttl": 1}"#).is_err());
        // Round trip: `Some(None)` serialises as null and reads back the same.
        let u = CachePolicyUpdate {
            override_ttl_secs: Some(None),
            ..Default::default()
        };
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(json, r#"{"override_ttl_secs":null}"#);
        assert_eq!(update(&json), u);
    }

    /// What the CDN route does: lookup, else ask the origin and store.
    fn serve(
        cache: &mut Cache,
        key: &str,
        p: &CachePolicy,
        refresh: bool,
        now: Timestamp,
        origin: impl FnOnce() -> Reply,
    ) -> Reply {
        match cache.lookup(key, refresh, now) {
            Ok(hit) => hit,
            Err(status) => cache.store(key, status, origin(), p, now),
        }
    }

    fn origin_reply(body: &'static str, cc: &str) -> Reply {
        Reply::new(200, body.as_bytes().to_vec()).with_header("cache-control", cc)
    }

    #[test]
    fn expired_entries_are_dropped_when_storing() {
        let mut cache = Cache::default();
        let p = policy(None, false);
        let t0 = Timestamp::from_secs(10_000);
        for i in 0..50 {
            let key = format!("/k?bust={i}");
            serve(&mut cache, &key, &p, false, t0.plus_secs(i * 61), || {
                origin_reply("v", "max-age=60")
            });
        }
        assert_eq!(cache.view(t0.plus_secs(50 * 61)).len(), 1);
    }

    #[test]
    fn serve_miss_hit_expired_bypass() {
        let mut cache = Cache::default();
        let p = policy(None, false);
        let t0 = Timestamp::from_secs(10_000);
        let at = |s: i64| t0.plus_secs(s);
        let status = |r: &Reply| r.header("x-cache-status").map(str::to_owned);

        let r = serve(&mut cache, "/k", &p, false, at(0), || {
            origin_reply("v1", "max-age=60")
        });
        assert_eq!(status(&r).as_deref(), Some("MISS"));
        assert_eq!(r.header("age"), None);

        let r = serve(&mut cache, "/k", &p, false, at(42), || {
            panic!("must not reach origin")
        });
        assert_eq!(status(&r).as_deref(), Some("HIT"));
        assert_eq!(r.header("age"), Some("42"));
        assert_eq!(r.body, b"v1".to_vec());

        let r = serve(&mut cache, "/k", &p, false, at(60), || {
            origin_reply("v2", "max-age=60")
        });
        assert_eq!(status(&r).as_deref(), Some("EXPIRED"));
        assert_eq!(r.body, b"v2".to_vec());

        let r = serve(&mut cache, "/k", &p, true, at(61), || {
            origin_reply("v3", "max-age=60")
        });
        assert_eq!(status(&r).as_deref(), Some("BYPASS"));
        let r = serve(&mut cache, "/k", &p, false, at(62), || {
            panic!("must not reach origin")
        });
        assert_eq!((&r.body[..], r.header("age")), (&b"v3"[..], Some("1")));

        // A bypass answer that may not be stored leaves the entry as it was.
        let r = serve(&mut cache, "/k", &p, true, at(63), || {
            origin_reply("v4", "no-store")
        });
        assert_eq!(r.body, b"v4".to_vec());
        let r = serve(&mut cache, "/k", &p, false, at(64), || {
            panic!("must not reach origin")
        });
        assert_eq!(r.body, b"v3".to_vec());

        // The query is part of the key.
        let r = serve(&mut cache, "/k?x=1", &p, false, at(64), || {
            origin_reply("q", "max-age=60")
        });
        assert_eq!(status(&r).as_deref(), Some("MISS"));

        cache.purge();
        let r = serve(&mut cache, "/k", &p, false, at(65), || {
            origin_reply("v5", "no-store")
        });
        assert_eq!(status(&r).as_deref(), Some("MISS"));
        let r = serve(&mut cache, "/k", &p, false, at(66), || {
            origin_reply("v6", "no-store")
        });
        assert_eq!(status(&r).as_deref(), Some("MISS"));
        assert!(cache.view(at(66)).is_empty());
    }

    #[test]
    fn serve_caches_errors_only_when_told() {
        let error = || Reply::new(503, b"<html>down</html>".to_vec());
        let t0 = Timestamp::from_secs(10_000);

        let mut cache = Cache::default();
        serve(&mut cache, "/k", &policy(None, false), false, t0, error);
        assert!(cache.view(t0).is_empty());

        let r = serve(&mut cache, "/k", &policy(None, true), false, t0, error);
        assert_eq!(r.header("x-cache-status"), Some("MISS"));
        let r = serve(
            &mut cache,
            "/k",
            &policy(None, true),
            false,
            t0.plus_secs(9),
            || panic!("must not reach origin"),
        );
        assert_eq!((r.status, r.header("age")), (503, Some("9")));
        let view = cache.view(t0.plus_secs(10));
        assert_eq!(view.len(), 1);
        assert!(!view[0].fresh);
    }
}
