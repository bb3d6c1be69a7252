//! Rules about edge views against the truth: `stale_edge` (an edge's kid→thumbprint map
//! differs from its domain's origin view) and `error_cached` (an edge serves an error,
//! HTML or an empty or unreadable key set from cache).
//!
//! Only this round is compared; how long an edge has been stale is for rules with history.

use super::cache::{evidence, freshness, served_from_cache};
use super::key_set::{describe_diff, key_map};
use super::{Ctx, one_line, origin_view};
use crate::detect::history::ok_keys;
use crate::model::{Code, Finding, KeySetParse, ViewKind};

pub(super) fn stale_edge(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for d in &cx.obs.domains {
        let Some(want) = origin_view(d).and_then(ok_keys).map(key_map) else {
            continue;
        };
        for v in d.views.iter().filter(|v| v.kind == ViewKind::Edge) {
            let (Some(got), Some(r)) = (ok_keys(v), v.fetch.response()) else {
                continue;
            };
            let got = key_map(got);
            if got == want {
                continue;
            }
            // A copy the edge did not serve from its cache (a MISS, Age 0) has no cache
            // lifetime to predict: say what is known, that the edge fetched it from
            // somewhere else than the origin view does.
            let message = if served_from_cache(&r.headers) || r.headers.cache_status.is_none() {
                format!(
                    "edge differs from origin ({}): {}, {}",
                    describe_diff(&want, &got),
                    evidence(&r.headers),
                    freshness(v)
                )
            } else {
                format!(
                    "edge differs from origin ({}): the edge did not answer from its cache ({}), so it fetched this set from another source than the origin view",
                    describe_diff(&want, &got),
                    evidence(&r.headers)
                )
            };
            out.push(Finding::new(
                Code::StaleEdge,
                cx.view_subject(d, &v.id),
                message,
            ));
        }
    }
}

pub(super) fn error_cached(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (d, v) in cx.edge_views() {
        let Some(r) = v.fetch.response() else {
            continue;
        };
        let html = r.content_type.as_deref().is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
        });
        let what = if r.status >= 400 {
            format!("status {}", r.status)
        } else if html {
            format!("an HTML page (status {})", r.status)
        } else {
            match &v.key_set {
                Some(KeySetParse::Invalid { reason }) => {
                    format!("a body that is not a JWKS ({})", one_line(reason))
                }
                Some(KeySetParse::Parsed { keys }) if keys.is_empty() => {
                    "an empty key set".to_owned()
                }
                _ => continue,
            }
        };
        if !served_from_cache(&r.headers) {
            continue;
        }
        let message = format!(
            "{what} served from cache ({}), {}",
            evidence(&r.headers),
            freshness(v)
        );
        out.push(Finding::new(
            Code::ErrorCached,
            cx.view_subject(d, &v.id),
            message,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::model::*;

    /// A pinned edge view of `app`'s cdn path serving `kids`.
    fn pinned(o: &mut Observation, ip: &str, kids: &[&str]) {
        let mut v = cdn(o, 0).clone();
        v.id.edge = Some(ip.into());
        v.key_set = Some(KeySetParse::Parsed {
            keys: kids.iter().map(|k| key(k)).collect(),
        });
        app(o).views.push(v);
    }

    #[test]
    fn stale_edge() {
        let c = Code::StaleEdge;
        check(c, |_| {}, &[]);
        let f = check(
            c,
            |o| {
                keys(o, 0, 0, vec![key("k1"), key("k2")]);
                cdn_headers(o, 0).age = Some(120);
            },
            &["app/cdn"],
        );
        assert_eq!(
            message(&f),
            "edge differs from origin (missing k2): cache status HIT (X-Cache-Status), Age 120 s, fresh in ~180 s"
        );
        let f = check(
            c,
            |o| {
                keys(o, 1, 0, vec![key("k2")]);
                cdn_headers(o, 1).cache_control = Some("public".into());
            },
            &["io/cdn"],
        );
        assert!(
            message(&f).starts_with("edge differs from origin (missing k2, extra k1)"),
            "{}",
            message(&f)
        );
        assert!(message(&f).ends_with("no max-age or s-maxage to predict freshness"));
        // Right after a miss the copy is not a cached one: the message says so instead of
        // predicting when it expires.
        let f = check(
            c,
            |o| {
                keys(o, 0, 0, vec![key("k1"), key("k2")]);
                let h = cdn_headers(o, 0);
                h.cache_status = Some("MISS".into());
                h.age = Some(0);
            },
            &["app/cdn"],
        );
        assert_eq!(
            message(&f),
            "edge differs from origin (missing k2): the edge did not answer from its cache (cache status MISS (X-Cache-Status), Age 0 s), so it fetched this set from another source than the origin view"
        );
        // Pinned edges are views of their own; an equal one does not fire.
        check(
            c,
            |o| {
                pinned(o, "192.0.2.10", &["k1"]);
                pinned(o, "192.0.2.11", &["k0"]);
            },
            &["app/cdn@192.0.2.11"],
        );
        // Either side unavailable: nothing to compare.
        check(
            c,
            |o| {
                origin(o, 0).fetch.outcome = response(502, CacheHeaders::default());
                keys(o, 0, 1, vec![key("k9")]);
            },
            &[],
        );
        check(
            c,
            |o| {
                cdn(o, 0).key_set = Some(KeySetParse::Invalid {
                    reason: "not JSON".into(),
                })
            },
            &[],
        );
    }

    #[test]
    fn error_cached() {
        let c = Code::ErrorCached;
        type Edit = fn(&mut Observation);
        let table: &[(Edit, &[&str], &str)] = &[
            (|_| {}, &[], ""),
            (
                |o| {
                    cdn(o, 0).fetch.outcome = response(503, hit_headers());
                    cdn(o, 0).key_set = None;
                },
                &["app/cdn"],
                "status 503 served from cache (cache status HIT (X-Cache-Status), Age 10 s), fresh in ~290 s",
            ),
            (
                // An error not from cache is jwks_fetch_failed only.
                |o| {
                    let h = CacheHeaders {
                        cache_status: Some("MISS".into()),
                        ..hit_headers()
                    };
                    cdn(o, 0).fetch.outcome = response(503, CacheHeaders { age: None, ..h });
                    cdn(o, 0).key_set = None;
                },
                &[],
                "",
            ),
            (
                |o| {
                    let h = CacheHeaders {
                        cache_status: None,
                        age: Some(30),
                        ..hit_headers()
                    };
                    cdn(o, 0).fetch.outcome = response(404, h);
                    cdn(o, 0).key_set = None;
                },
                &["app/cdn"],
                "status 404",
            ),
            (
                |o| {
                    if let FetchOutcome::Response(r) = &mut cdn(o, 1).fetch.outcome {
                        r.content_type = Some("text/html; charset=utf-8".into());
                    }
                    cdn(o, 1).key_set = Some(KeySetParse::Invalid {
                        reason: "not JSON".into(),
                    });
                },
                &["io/cdn"],
                "an HTML page (status 200)",
            ),
            (
                |o| {
                    cdn(o, 1).key_set = Some(KeySetParse::Invalid {
                        reason: "keys missing".into(),
                    })
                },
                &["io/cdn"],
                "a body that is not a JWKS (keys missing)",
            ),
            (|o| keys(o, 0, 1, vec![]), &["app/cdn"], "an empty key set"),
            (
                // The origin view is never "cached".
                |o| keys(o, 0, 0, vec![]),
                &[],
                "",
            ),
        ];
        for (edit, expected, fragment) in table {
            let f = check(c, edit, expected);
            if let Some(f) = f.first() {
                assert!(f.message.contains(fragment), "{}", f.message);
            }
        }
    }
}
