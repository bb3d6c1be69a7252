//! Edge freshness: how long the shared cache that answered a view (the CDN edge) may keep
//! serving the copy it sent, read from that response's caching headers.
//!
//! The RFC 9111 arithmetic is `http-cache-semantics`' in shared-cache mode: s-maxage over
//! max-age, Expires − Date, Age, heuristic freshness from Last-Modified, and what makes a
//! response unstorable or always stale (no-store, private, no-cache, proxy-revalidate). On
//! top of it, what that crate does not know:
//! - **targeted fields** (RFC 9213): the CDN obeys `CDN-Cache-Control`, else
//!   `Surrogate-Control`, and then ignores `Cache-Control` and `Expires` altogether;
//! - **stale-while-revalidate / stale-if-error** (RFC 5861): how long past its lifetime the
//!   edge may still serve the copy;
//! - the lifetime a client that honours `Cache-Control` (a private cache, for
//!   `honours_headers` profiles) gives the response.
//!
//! The status is not consulted: the edge already stored whatever it served (a cached 503 is
//! `error_cached`'s business), the question here is only how long the headers let it keep
//! that copy. What the CDN really does beyond its headers shows in `Age` (see
//! `cache_ttl_exceeded`). Not modelled: request directives, `Vary`, revalidation.
//! Pure: times come from the fetch record, never from a clock.

use crate::model::{CacheHeaders, Timestamp, ViewObservation};
use http::header::{self, HeaderName, HeaderValue};
use http_cache_semantics::{CacheOptions, CachePolicy};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The header field whose directives govern a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    CdnCacheControl,
    SurrogateControl,
    CacheControl,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::CdnCacheControl => "CDN-Cache-Control",
            Field::SurrogateControl => "Surrogate-Control",
            Field::CacheControl => "Cache-Control",
        }
    }
}

/// Where a declared lifetime comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeSource {
    /// `s-maxage` of the governing field.
    SMaxage(Field),
    /// `max-age` of the governing field.
    MaxAge(Field),
    /// `Expires` − `Date` (only when `Cache-Control` governs).
    Expires,
    /// `no-cache` / `proxy-revalidate`: stale at once, lifetime 0.
    Revalidate(Field),
    /// `Pragma: no-cache` without any `Cache-Control`: lifetime 0.
    PragmaNoCache,
    /// 10 % of the time since `Last-Modified`.
    Heuristic,
    /// `immutable` without a max-age: the crate's default of one day.
    Immutable,
}

impl LifetimeSource {
    /// Whether the origin stated this lifetime, rather than a cache inferring one.
    pub fn is_explicit(self) -> bool {
        !matches!(self, LifetimeSource::Heuristic | LifetimeSource::Immutable)
    }
}

impl fmt::Display for LifetimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LifetimeSource::SMaxage(h) => write!(f, "{} s-maxage", h.as_str()),
            LifetimeSource::MaxAge(h) => write!(f, "{} max-age", h.as_str()),
            LifetimeSource::Expires => f.write_str("Expires"),
            LifetimeSource::Revalidate(h) => write!(f, "{} no-cache", h.as_str()),
            LifetimeSource::PragmaNoCache => f.write_str("Pragma no-cache"),
            LifetimeSource::Heuristic => f.write_str("Last-Modified heuristic"),
            LifetimeSource::Immutable => f.write_str("immutable"),
        }
    }
}

/// How long the edge may keep serving the copy of one response, as of the fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeFreshness {
    /// The field the CDN obeys (`None`: no caching header at all).
    pub governing: Option<Field>,
    /// Whether a shared cache may store the response at all (no `no-store`, no `private`).
    pub storable: bool,
    /// Where [`Self::declared_ttl`] comes from; `None` with it.
    pub source: Option<LifetimeSource>,
    /// The lifetime the headers declare, counted from the copy's creation. `None`: not
    /// storable, or the headers declare none (the CDN then applies its own default).
    pub declared_ttl: Option<Duration>,
    /// How old the copy was when served (`Age`).
    pub age: Duration,
    /// Lifetime left when served (zero when past it). `None`: not cacheable, or unknown.
    pub remaining: Option<Duration>,
    /// How long past its lifetime the edge may serve the copy while revalidating.
    pub stale_while_revalidate: Duration,
    /// How long past its lifetime the edge may serve the copy when the origin fails.
    pub stale_if_error: Duration,
    /// When the copy turns stale: fetch time + [`Self::remaining`].
    pub fresh_until: Option<Timestamp>,
    /// The lifetime a client honouring `Cache-Control` (a private cache, which ignores
    /// s-maxage and the CDN's fields) gives a fresh copy of this response: the header TTL
    /// of `honours_headers` profiles. `Some(0)` when it may not store it; `None` when the
    /// headers declare nothing for it.
    pub client_ttl: Option<Duration>,
}

impl EdgeFreshness {
    /// How long past its lifetime the edge may still serve the copy: stale-while-revalidate
    /// plus stale-if-error.
    pub fn stale_windows(&self) -> Duration {
        self.stale_while_revalidate
            .saturating_add(self.stale_if_error)
    }

    /// The declared lifetime plus [`Self::stale_windows`] for a copy just stored: `Some(0)`
    /// when it may not be stored, `None` when the headers declare no lifetime.
    pub fn declared_serves_for(&self) -> Option<Duration> {
        if self.storable {
            self.declared_ttl
                .map(|d| d.saturating_add(self.stale_windows()))
        } else {
            Some(Duration::ZERO)
        }
    }

    /// How much longer the edge may serve this copy, stale-* windows included: the edge
    /// term of the staleness budget S at the time of the fetch. `Some(0)` when the response
    /// may not be stored; `None` when the headers declare no lifetime.
    pub fn serves_for(&self) -> Option<Duration> {
        if !self.storable {
            return Some(Duration::ZERO);
        }
        Some(self.remaining?.saturating_add(self.stale_windows()))
    }

    /// [`Self::serves_for`] for a copy the edge has just stored: the declared lifetime plus
    /// stale-* windows — or the observed `Age` when that is longer (the edge demonstrably
    /// keeps copies that long). The worst case over the edge's cache cycle; `None` when
    /// nothing bounds it from the headers and the copy has not aged.
    pub fn worst_serves_for(&self) -> Option<Duration> {
        let aged = (!self.age.is_zero()).then_some(self.age);
        self.declared_serves_for().max(aged)
    }

    /// How far `Age` exceeds an explicit declared lifetime and its stale-* windows: the
    /// edge keeps copies longer than the origin allows. `None` when within, or when the
    /// lifetime is not explicit or zero (caching forbidden is `cache_policy_drift`'s).
    pub fn overage(&self) -> Option<Duration> {
        let declared = self.declared_ttl.filter(|d| !d.is_zero())?;
        if !self.source?.is_explicit() {
            return None;
        }
        let allowed = declared.saturating_add(self.stale_windows());
        self.age.checked_sub(allowed).filter(|d| !d.is_zero())
    }
}

/// The freshness of a view's response, as received (`started_at` + duration); `None` when
/// the fetch got no response.
pub fn view_freshness(v: &ViewObservation) -> Option<EdgeFreshness> {
    let r = v.fetch.response()?;
    let received = Timestamp(
        v.fetch
            .started_at
            .0
            .saturating_add(v.fetch.duration_ms as i64),
    );
    Some(edge_freshness(&r.headers, received))
}

/// The freshness of a response with these headers, received at `fetched_at`.
pub fn edge_freshness(h: &CacheHeaders, fetched_at: Timestamp) -> EdgeFreshness {
    let at = system_time(fetched_at);
    let governing = governing(h);
    let (field, directives) = match &governing {
        Some((field, value)) => (Some(*field), directives(value)),
        None => (None, Vec::new()),
    };
    // The CDN's view: the governing field stands in for Cache-Control; a targeted field
    // also silences Expires and Pragma (RFC 9213 §2.1).
    let cc = governing.as_ref().map(|(_, v)| v.as_str());
    let cdn_only = matches!(
        field,
        Some(Field::CdnCacheControl | Field::SurrogateControl)
    );
    let shared = |age: bool| {
        let mut list = vec![
            (header::CACHE_CONTROL, cc),
            (header::DATE, h.date.as_deref()),
            (header::LAST_MODIFIED, h.last_modified.as_deref()),
        ];
        if !cdn_only {
            list.push((header::EXPIRES, h.expires.as_deref()));
            list.push((header::PRAGMA, h.pragma.as_deref()));
        }
        let age_value = h.age.filter(|_| age).map(|a| a.to_string());
        list.push((header::AGE, age_value.as_deref()));
        policy(&list, at, true)
    };
    let with_age = shared(true);
    let storable = with_age.is_storable();
    let source = lifetime_source(field, &directives, true, h).filter(|_| storable);
    let declared_ttl = source.map(|_| shared(false).time_to_live(at));
    let remaining = source.map(|_| with_age.time_to_live(at));
    let stale = |name: &str| {
        storable
            .then(|| seconds(&directives, name))
            .flatten()
            .unwrap_or_default()
    };
    EdgeFreshness {
        governing: field,
        storable,
        source,
        declared_ttl,
        age: Duration::from_secs(h.age.unwrap_or(0)),
        remaining,
        stale_while_revalidate: stale("stale-while-revalidate"),
        stale_if_error: stale("stale-if-error"),
        fresh_until: remaining.map(|r| fetched_at.plus(r)),
        client_ttl: client_ttl(h, at),
    }
}

/// The lifetime a private cache that honours `Cache-Control` gives a fresh copy.
fn client_ttl(h: &CacheHeaders, at: SystemTime) -> Option<Duration> {
    let list = [
        (header::CACHE_CONTROL, h.cache_control.as_deref()),
        (header::EXPIRES, h.expires.as_deref()),
        (header::PRAGMA, h.pragma.as_deref()),
        (header::DATE, h.date.as_deref()),
        (header::LAST_MODIFIED, h.last_modified.as_deref()),
    ];
    let p = policy(&list, at, false);
    if !p.is_storable() {
        return Some(Duration::ZERO);
    }
    let d = h
        .cache_control
        .as_deref()
        .map(directives)
        .unwrap_or_default();
    let field = h.cache_control.as_ref().map(|_| Field::CacheControl);
    lifetime_source(field, &d, false, h)?;
    Some(p.time_to_live(at))
}

/// Which directive the crate's lifetime comes from (mirroring its order), or `None` when
/// the headers declare none. `field` is the governing field and `d` its directives.
fn lifetime_source(
    field: Option<Field>,
    d: &[(String, Option<String>)],
    shared: bool,
    h: &CacheHeaders,
) -> Option<LifetimeSource> {
    let has = |name: &str| d.iter().any(|(n, _)| n == name);
    if let Some(f) = field {
        if has("no-cache") || (shared && has("proxy-revalidate")) {
            return Some(LifetimeSource::Revalidate(f));
        }
        if shared && has("s-maxage") {
            return Some(LifetimeSource::SMaxage(f));
        }
        if has("max-age") {
            return Some(LifetimeSource::MaxAge(f));
        }
    }
    // Expires and Pragma count only where Cache-Control governs (or nothing does).
    let plain = matches!(field, None | Some(Field::CacheControl));
    if field.is_none() && h.pragma.as_deref().is_some_and(|p| p.contains("no-cache")) {
        Some(LifetimeSource::PragmaNoCache)
    } else if plain && h.expires.is_some() {
        Some(LifetimeSource::Expires)
    } else if h.last_modified.is_some() {
        Some(LifetimeSource::Heuristic)
    } else if has("immutable") {
        Some(LifetimeSource::Immutable)
    } else {
        None
    }
}

/// The field the CDN obeys and its value, normalised for the crate: the first of
/// CDN-Cache-Control and Surrogate-Control with a non-empty value, else Cache-Control.
fn governing(h: &CacheHeaders) -> Option<(Field, String)> {
    let targeted = [
        (Field::CdnCacheControl, &h.cdn_cache_control),
        (Field::SurrogateControl, &h.surrogate_control),
    ];
    for (field, value) in targeted {
        if let Some(v) = value.as_deref().map(targeted_value)
            && !v.is_empty()
        {
            return Some((field, v));
        }
    }
    h.cache_control
        .as_deref()
        .map(|v| (Field::CacheControl, v.to_owned()))
}

/// A targeted field's directives in Cache-Control syntax: Surrogate-Control's
/// `max-age=60+30` and `max-age=60;edge` both read as `max-age=60`.
fn targeted_value(v: &str) -> String {
    v.split(',')
        .map(|d| {
            let d = d.split(';').next().unwrap_or_default().trim();
            match d.split_once('=') {
                Some((n, val)) => {
                    let val = val.trim();
                    let val = val.split('+').next().unwrap_or(val).trim();
                    format!("{}={val}", n.trim())
                }
                None => d.to_owned(),
            }
        })
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Directives as lowercase names with their unquoted values.
fn directives(v: &str) -> Vec<(String, Option<String>)> {
    v.split(',')
        .filter_map(|d| {
            let d = d.trim();
            if d.is_empty() {
                return None;
            }
            Some(match d.split_once('=') {
                Some((n, val)) => (
                    n.trim().to_ascii_lowercase(),
                    Some(val.trim().trim_matches('"').to_owned()),
                ),
                None => (d.to_ascii_lowercase(), None),
            })
        })
        .collect()
}

fn seconds(d: &[(String, Option<String>)], name: &str) -> Option<Duration> {
    d.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref()?.parse().ok())
        .map(Duration::from_secs)
}

/// A cache policy over these response headers (a GET of `/` answered 200), as received at
/// `at`. Values that are not valid header text are left out.
fn policy(headers: &[(HeaderName, Option<&str>)], at: SystemTime, shared: bool) -> CachePolicy {
    let request = http::Request::new(());
    let mut response = http::Response::new(());
    for (name, value) in headers {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            response.headers_mut().append(name.clone(), v);
        }
    }
    let options = CacheOptions {
        shared,
        ..CacheOptions::default()
    };
    CachePolicy::new_options(&request, &response, at, options)
}

/// Our millisecond timestamp as a `SystemTime` (a conversion, not a clock read).
pub fn system_time(t: Timestamp) -> SystemTime {
    let ms = Duration::from_millis(t.0.unsigned_abs());
    if t.0 >= 0 {
        UNIX_EPOCH + ms
    } else {
        UNIX_EPOCH.checked_sub(ms).unwrap_or(UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2027-01-15T08:00:00Z, a whole second.
    const AT: Timestamp = Timestamp(1_800_000_000_000);
    const DATE: &str = "Fri, 15 Jan 2027 08:00:00 GMT";

    fn cc(s: &str) -> CacheHeaders {
        CacheHeaders {
            cache_control: Some(s.into()),
            ..Default::default()
        }
    }

    fn aged(age: u64, h: CacheHeaders) -> CacheHeaders {
        CacheHeaders {
            age: Some(age),
            ..h
        }
    }

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    /// `(declared, remaining, swr, sie)` in seconds.
    type Want = (Option<u64>, Option<u64>, u64, u64);

    fn check(name: &str, h: CacheHeaders, want: Want) -> EdgeFreshness {
        let f = edge_freshness(&h, AT);
        let got = (
            f.declared_ttl.map(|d| d.as_secs()),
            f.remaining.map(|d| d.as_secs()),
            f.stale_while_revalidate.as_secs(),
            f.stale_if_error.as_secs(),
        );
        assert_eq!(got, want, "{name}: {f:#?}");
        assert_eq!(
            f.fresh_until,
            f.remaining.map(|r| AT.plus(r)),
            "{name}: fresh_until"
        );
        f
    }

    /// Regression: lifetimes and windows near 2^64 s overflowed `Duration` sums (a panic
    /// in every round). Each derived lifetime saturates instead.
    #[test]
    fn extreme_lifetimes_saturate() {
        const MAX: u64 = u64::MAX;
        let huge = format!("max-age={MAX}, stale-while-revalidate={MAX}, stale-if-error={MAX}");
        let max = Duration::MAX;
        // (name, headers, serves_for, worst_serves_for, overage)
        type Row = (
            &'static str,
            CacheHeaders,
            Option<Duration>,
            Option<Duration>,
            Option<Duration>,
        );
        let table: &[Row] = &[
            ("all near 2^64", cc(&huge), Some(max), Some(max), None),
            (
                "aged 2^64-1, lifetime 60 s",
                aged(MAX, cc("max-age=60")),
                secs(0),
                secs(MAX),
                secs(MAX - 60),
            ),
            (
                "aged, all near 2^64",
                aged(MAX, cc(&huge)),
                Some(max),
                Some(max),
                None,
            ),
            (
                "Expires in year 9999",
                CacheHeaders {
                    expires: Some("Fri, 31 Dec 9999 23:59:59 GMT".into()),
                    date: Some(DATE.into()),
                    ..Default::default()
                },
                secs(253_402_300_799 - 1_800_000_000),
                secs(253_402_300_799 - 1_800_000_000),
                None,
            ),
        ];
        for (name, h, serves, worst, over) in table {
            let f = edge_freshness(h, AT);
            assert_eq!(f.serves_for(), *serves, "{name}: {f:#?}");
            assert_eq!(f.worst_serves_for(), *worst, "{name}");
            assert_eq!(f.overage(), *over, "{name}");
            let until = f.fresh_until.map(Timestamp::to_rfc3339);
            assert!(
                until.is_none_or(|u| u.as_str() <= "9999-12-31T23:59:59Z"),
                "{name}"
            );
        }
    }

    #[test]
    fn freshness_table() {
        use LifetimeSource::*;
        let table: &[(&str, CacheHeaders, Want, Option<LifetimeSource>)] = &[
            (
                "no headers",
                CacheHeaders::default(),
                (None, None, 0, 0),
                None,
            ),
            ("public only", cc("public"), (None, None, 0, 0), None),
            (
                "max-age",
                cc("public, max-age=300"),
                (Some(300), Some(300), 0, 0),
                Some(MaxAge(Field::CacheControl)),
            ),
            (
                "quoted max-age",
                cc("max-age=\"60\""),
                (Some(60), Some(60), 0, 0),
                Some(MaxAge(Field::CacheControl)),
            ),
            (
                "Age subtracts",
                aged(120, cc("max-age=300")),
                (Some(300), Some(180), 0, 0),
                Some(MaxAge(Field::CacheControl)),
            ),
            (
                "Age past the lifetime",
                aged(400, cc("max-age=300")),
                (Some(300), Some(0), 0, 0),
                Some(MaxAge(Field::CacheControl)),
            ),
            (
                "s-maxage over max-age",
                aged(120, cc("max-age=30, s-maxage=600")),
                (Some(600), Some(480), 0, 0),
                Some(SMaxage(Field::CacheControl)),
            ),
            (
                "Expires minus Date",
                CacheHeaders {
                    expires: Some("Fri, 15 Jan 2027 08:10:00 GMT".into()),
                    date: Some(DATE.into()),
                    age: Some(60),
                    ..Default::default()
                },
                (Some(600), Some(540), 0, 0),
                Some(Expires),
            ),
            (
                "max-age beats Expires",
                CacheHeaders {
                    expires: Some("Fri, 15 Jan 2027 08:10:00 GMT".into()),
                    date: Some(DATE.into()),
                    ..cc("max-age=60")
                },
                (Some(60), Some(60), 0, 0),
                Some(MaxAge(Field::CacheControl)),
            ),
            (
                "invalid Expires is already expired",
                CacheHeaders {
                    expires: Some("0".into()),
                    ..cc("public")
                },
                (Some(0), Some(0), 0, 0),
                Some(Expires),
            ),
            (
                "no-store: not cacheable",
                cc("no-store, max-age=300"),
                (None, None, 0, 0),
                None,
            ),
            (
                "private: not for a shared cache",
                cc("private, max-age=300"),
                (None, None, 0, 0),
                None,
            ),
            (
                "no-cache: always stale",
                cc("no-cache, max-age=300"),
                (Some(0), Some(0), 0, 0),
                Some(Revalidate(Field::CacheControl)),
            ),
            (
                "stale-while-revalidate and stale-if-error",
                aged(
                    100,
                    cc("max-age=300, stale-while-revalidate=60, stale-if-error=86400"),
                ),
                (Some(300), Some(200), 60, 86400),
                Some(MaxAge(Field::CacheControl)),
            ),
            (
                "heuristic from Last-Modified (10 % of 10 days)",
                CacheHeaders {
                    last_modified: Some("Tue, 05 Jan 2027 08:00:00 GMT".into()),
                    date: Some(DATE.into()),
                    ..Default::default()
                },
                (Some(86400), Some(86400), 0, 0),
                Some(Heuristic),
            ),
            (
                "CDN-Cache-Control over Cache-Control",
                aged(
                    100,
                    CacheHeaders {
                        cdn_cache_control: Some("max-age=900, stale-while-revalidate=30".into()),
                        ..cc("s-maxage=60, stale-while-revalidate=5")
                    },
                ),
                (Some(900), Some(800), 30, 0),
                Some(MaxAge(Field::CdnCacheControl)),
            ),
            (
                "CDN-Cache-Control lifts Cache-Control's no-store and Expires",
                CacheHeaders {
                    cdn_cache_control: Some("max-age=120".into()),
                    expires: Some("0".into()),
                    ..cc("no-store")
                },
                (Some(120), Some(120), 0, 0),
                Some(MaxAge(Field::CdnCacheControl)),
            ),
            (
                "CDN-Cache-Control no-store",
                CacheHeaders {
                    cdn_cache_control: Some("no-store".into()),
                    ..cc("max-age=300")
                },
                (None, None, 0, 0),
                None,
            ),
            (
                "empty CDN-Cache-Control is ignored",
                CacheHeaders {
                    cdn_cache_control: Some(" ".into()),
                    ..cc("max-age=300")
                },
                (Some(300), Some(300), 0, 0),
                Some(MaxAge(Field::CacheControl)),
            ),
            (
                "Surrogate-Control over Cache-Control",
                aged(
                    10,
                    CacheHeaders {
                        surrogate_control: Some("max-age=3600".into()),
                        ..cc("max-age=60")
                    },
                ),
                (Some(3600), Some(3590), 0, 0),
                Some(MaxAge(Field::SurrogateControl)),
            ),
            (
                "Surrogate-Control stale extension and target are dropped",
                CacheHeaders {
                    surrogate_control: Some("max-age=600+60;edge1, content=\"ESI/1.0\"".into()),
                    ..cc("max-age=60")
                },
                (Some(600), Some(600), 0, 0),
                Some(MaxAge(Field::SurrogateControl)),
            ),
            (
                "CDN-Cache-Control over Surrogate-Control",
                CacheHeaders {
                    cdn_cache_control: Some("s-maxage=30".into()),
                    surrogate_control: Some("max-age=3600".into()),
                    ..cc("max-age=60")
                },
                (Some(30), Some(30), 0, 0),
                Some(SMaxage(Field::CdnCacheControl)),
            ),
        ];
        for (name, h, want, source) in table {
            let f = check(name, h.clone(), *want);
            assert_eq!(f.source, *source, "{name}");
        }
    }

    #[test]
    fn expires_without_date_counts_from_the_fetch() {
        let h = CacheHeaders {
            expires: Some("Fri, 15 Jan 2027 08:05:00 GMT".into()),
            ..Default::default()
        };
        check("expires", h, (Some(300), Some(300), 0, 0));
    }

    #[test]
    fn pragma_no_cache_without_cache_control() {
        let h = CacheHeaders {
            pragma: Some("no-cache".into()),
            expires: Some("Fri, 15 Jan 2027 08:05:00 GMT".into()),
            ..Default::default()
        };
        check("pragma", h, (Some(0), Some(0), 0, 0));
    }

    #[test]
    fn client_ttl_is_the_private_reading() {
        let ttl = |h: CacheHeaders| edge_freshness(&h, AT).client_ttl;
        assert_eq!(ttl(cc("max-age=60, s-maxage=600")), secs(60));
        // Age does not shorten the TTL a client gives a fresh copy.
        assert_eq!(ttl(aged(50, cc("max-age=60"))), secs(60));
        assert_eq!(ttl(cc("private, max-age=60")), secs(60));
        assert_eq!(ttl(cc("no-store")), secs(0));
        assert_eq!(ttl(cc("s-maxage=600")), None);
        assert_eq!(ttl(CacheHeaders::default()), None);
        // CDN-Cache-Control is for the CDN only.
        let h = CacheHeaders {
            cdn_cache_control: Some("max-age=900".into()),
            ..cc("max-age=30")
        };
        assert_eq!(ttl(h), secs(30));
    }

    #[test]
    fn windows_and_overage() {
        let f = |h: CacheHeaders| edge_freshness(&h, AT);
        let swr = aged(
            100,
            cc("max-age=300, stale-while-revalidate=60, stale-if-error=40"),
        );
        assert_eq!(f(swr.clone()).serves_for(), secs(300));
        assert_eq!(f(swr.clone()).worst_serves_for(), secs(400));
        assert_eq!(f(swr).overage(), None);
        // Within stale-while-revalidate is within the policy.
        let h = aged(350, cc("max-age=300, stale-while-revalidate=60"));
        assert_eq!(f(h).overage(), None);
        let h = aged(900, cc("max-age=300, stale-while-revalidate=60"));
        assert_eq!(f(h.clone()).overage(), secs(540));
        assert_eq!(f(h.clone()).serves_for(), secs(60));
        assert_eq!(f(h).worst_serves_for(), secs(900));
        // Heuristic or zero lifetimes are not overrides.
        let h = CacheHeaders {
            last_modified: Some("Fri, 15 Jan 2027 07:00:00 GMT".into()),
            date: Some(DATE.into()),
            age: Some(3600),
            ..Default::default()
        };
        assert_eq!(f(h).overage(), None);
        assert_eq!(f(aged(10, cc("no-cache"))).overage(), None);
        // Unstorable: the edge should keep nothing; unknown: nothing bounds it.
        assert_eq!(f(cc("no-store")).serves_for(), secs(0));
        assert_eq!(f(cc("no-store")).worst_serves_for(), secs(0));
        assert_eq!(f(cc("public")).serves_for(), None);
        assert_eq!(f(cc("public")).worst_serves_for(), None);
        assert_eq!(f(aged(30, cc("public"))).worst_serves_for(), secs(30));
    }

    #[test]
    fn view_freshness_counts_from_the_response() {
        // From JSON, so that fields others add to the model (with defaults) do not matter.
        let v: ViewObservation = serde_json::from_value(serde_json::json!({
            "id": { "path": "cdn" },
            "kind": "edge",
            "fetch": {
                "url": "https://cdn.example/jwks",
                "started_at": AT.0,
                "duration_ms": 2000,
                "result": "response",
                "status": 200,
                "headers": { "cache_control": "max-age=60" },
                "body_sha256": "00",
                "body_len": 0
            }
        }))
        .unwrap();
        let f = view_freshness(&v).unwrap();
        assert_eq!(f.fresh_until, Some(AT.plus_secs(62)));
    }

    #[test]
    fn timestamps_convert_without_a_clock() {
        assert_eq!(
            system_time(Timestamp(1_500)),
            UNIX_EPOCH + Duration::from_millis(1_500)
        );
        assert_eq!(
            system_time(Timestamp(-1_000)),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1)).unwrap()
        );
    }
}
