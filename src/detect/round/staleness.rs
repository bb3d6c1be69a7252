//! How long old key sets may linger, read from one round's edge views:
//! `cache_ttl_exceeded` (an edge serves a copy older than the lifetime its headers declare:
//! the CDN overrides the origin's policy) and `staleness_budget_exceeded` (a view's
//! worst-case staleness S, for the tenant's client profiles, exceeds `rotation_lead_time`).
//!
//! The arithmetic is [`crate::detect::freshness`]'s and [`crate::detect::profiles`]'; this
//! file only picks the views and words the findings. S here is the worst case over the
//! edge's cache cycle — a change at the origin just after the edge stored its copy — so it
//! does not flap with the Age of the copy a round happened to see. Whether a key was in
//! fact visible for S before signing is for rules with history (`key_activated_early`).

use super::Ctx;
use crate::detect::freshness::{EdgeFreshness, view_freshness};
use crate::detect::profiles::{self, Budget, human};
use crate::model::{Code, Finding};
use std::time::Duration;

pub(super) fn cache_ttl_exceeded(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (d, v) in cx.edge_views() {
        let Some(f) = view_freshness(v) else {
            continue;
        };
        let (Some(over), Some(declared), Some(source)) = (f.overage(), f.declared_ttl, f.source)
        else {
            continue;
        };
        let message = format!(
            "the edge serves a copy aged {} s, {} s past its declared lifetime of {} s ({source}{}): the CDN keeps copies longer than the origin allows",
            f.age.as_secs(),
            over.as_secs(),
            declared.as_secs(),
            stale_windows(&f)
        );
        out.push(Finding::new(
            Code::CacheTtlExceeded,
            cx.view_subject(d, &v.id),
            message,
        ));
    }
}

/// ` + stale-while-revalidate 60 s + stale-if-error 10 s`, for the windows that are set.
fn stale_windows(f: &EdgeFreshness) -> String {
    [
        ("stale-while-revalidate", f.stale_while_revalidate),
        ("stale-if-error", f.stale_if_error),
    ]
    .into_iter()
    .filter(|(_, d)| !d.is_zero())
    .map(|(name, d)| format!(" + {name} {} s", d.as_secs()))
    .collect()
}

pub(super) fn staleness_budget_exceeded(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let lead = cx.settings.rotation_lead_time;
    for (d, v) in cx.edge_views() {
        let Some(f) = view_freshness(v) else {
            continue;
        };
        if !v
            .fetch
            .response()
            .is_some_and(|r| (200..300).contains(&r.status))
        {
            continue;
        }
        let edge = f.worst_serves_for();
        let message = match profiles::staleness_budget(edge, &cx.profiles, f.client_ttl) {
            Budget::Bounded(s) if s > lead => format!(
                "worst-case staleness S {} exceeds rotation_lead_time {}: {}",
                human(s),
                human(lead),
                explain(cx, &f, edge)
            ),
            Budget::Bounded(_) => continue,
            Budget::Unbounded { profile } => format!(
                "worst-case staleness S is unbounded: client profile {profile} has no TTL and never refetches on an unknown kid, so no rotation_lead_time ({}) covers it",
                human(lead)
            ),
        };
        out.push(Finding::new(
            Code::StalenessBudgetExceeded,
            cx.view_subject(d, &v.id),
            message,
        ));
    }
}

/// The two terms of S, for messages.
fn explain(cx: &Ctx<'_>, f: &EdgeFreshness, edge: Option<Duration>) -> String {
    let declared = f.declared_serves_for();
    let edge_part = match (edge, f.source) {
        (None, _) => "the edge declares no lifetime (counted as 0)".to_owned(),
        (Some(e), _) if Some(e) > declared => {
            format!("the edge keeps copies at least {} (observed Age)", human(e))
        }
        (Some(e), Some(source)) => format!(
            "the edge may serve a copy for {} ({source}{})",
            human(e),
            stale_windows(f)
        ),
        (Some(e), None) => format!("the edge may serve a copy for {}", human(e)),
    };
    let client_part = match profiles::slowest(&cx.profiles, f.client_ttl) {
        None => "no client profile is configured".to_owned(),
        Some((p, lag)) => {
            let lag = lag.unwrap_or_default();
            let what = if p.refetch_on_unknown_kid {
                "cooldown"
            } else {
                "TTL"
            };
            format!(
                "then client profile {} adds {} ({what})",
                p.name,
                human(lag)
            )
        }
    };
    format!("{edge_part}, {client_part}")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::config::Config;
    use crate::detect::profiles::{ClientProfile, OnFetchFailure};
    use crate::model::*;
    use std::time::Duration;

    fn cc(s: &str) -> CacheHeaders {
        CacheHeaders {
            cache_control: Some(s.into()),
            ..hit_headers()
        }
    }

    #[test]
    fn cache_ttl_exceeded() {
        let c = Code::CacheTtlExceeded;
        type Edit = fn(&mut Observation);
        let table: &[(&str, Edit, &[&str], &str)] = &[
            ("clean: Age 10 s of 300 s", |_| {}, &[], ""),
            (
                "Age past max-age",
                |o| cdn_headers(o, 0).age = Some(900),
                &["app/cdn"],
                "the edge serves a copy aged 900 s, 600 s past its declared lifetime of 300 s (Cache-Control max-age): the CDN keeps copies longer than the origin allows",
            ),
            (
                "Age equal to max-age is within",
                |o| cdn_headers(o, 0).age = Some(300),
                &[],
                "",
            ),
            (
                "s-maxage governs a shared cache",
                |o| {
                    *cdn_headers(o, 1) = CacheHeaders {
                        age: Some(500),
                        ..cc("max-age=60, s-maxage=600")
                    }
                },
                &[],
                "",
            ),
            (
                "CDN-Cache-Control governs the CDN",
                |o| {
                    let h = cdn_headers(o, 1);
                    h.age = Some(700);
                    h.cdn_cache_control = Some("max-age=600".into());
                },
                &["io/cdn"],
                "100 s past its declared lifetime of 600 s (CDN-Cache-Control max-age)",
            ),
            (
                "stale-while-revalidate is within the policy",
                |o| {
                    *cdn_headers(o, 0) = CacheHeaders {
                        age: Some(350),
                        ..cc("max-age=300, stale-while-revalidate=60")
                    }
                },
                &[],
                "",
            ),
            (
                "beyond stale-while-revalidate",
                |o| {
                    *cdn_headers(o, 0) = CacheHeaders {
                        age: Some(400),
                        ..cc("max-age=300, stale-while-revalidate=60")
                    }
                },
                &["app/cdn"],
                "40 s past its declared lifetime of 300 s (Cache-Control max-age + stale-while-revalidate 60 s)",
            ),
            (
                "no declared lifetime: nothing to exceed",
                |o| {
                    *cdn_headers(o, 0) = CacheHeaders {
                        age: Some(4000),
                        ..cc("public")
                    }
                },
                &[],
                "",
            ),
            (
                "caching forbidden is cache_policy_drift's",
                |o| {
                    *cdn_headers(o, 0) = CacheHeaders {
                        age: Some(40),
                        ..cc("no-store")
                    }
                },
                &[],
                "",
            ),
            (
                "origin views are not edges",
                |o| {
                    if let FetchOutcome::Response(r) = &mut origin(o, 0).fetch.outcome {
                        r.headers.age = Some(900);
                    }
                },
                &[],
                "",
            ),
        ];
        for (name, edit, expected, fragment) in table {
            let f = check(c, edit, expected);
            if let Some(f) = f.first() {
                assert!(f.message.contains(fragment), "{name}: {}", f.message);
            }
        }
    }

    #[test]
    fn staleness_budget_exceeded() {
        let c = Code::StalenessBudgetExceeded;
        type Edit = fn(&mut Observation);
        let table: &[(&str, Edit, &[&str], &str)] = &[
            // 300 s edge + envoy's 10 min TTL = 15 min, within the default 1 h.
            ("clean", |_| {}, &[], ""),
            (
                "a one-hour edge lifetime plus envoy's TTL",
                |o| *cdn_headers(o, 0) = cc("public, max-age=3600"),
                &["app/cdn"],
                "worst-case staleness S 1h 10m exceeds rotation_lead_time 1h: the edge may serve a copy for 1h (Cache-Control max-age), then client profile envoy adds 10m (TTL)",
            ),
            (
                "Age does not lower the worst case",
                |o| {
                    *cdn_headers(o, 0) = CacheHeaders {
                        age: Some(3500),
                        ..cc("max-age=3600")
                    }
                },
                &["app/cdn"],
                "S 1h 10m",
            ),
            (
                "stale-if-error counts",
                |o| *cdn_headers(o, 1) = cc("max-age=300, stale-if-error=3000"),
                &["io/cdn"],
                "the edge may serve a copy for 55m (Cache-Control max-age + stale-if-error 3000 s)",
            ),
            (
                "an overriding CDN: the observed Age bounds it from below",
                |o| cdn_headers(o, 1).age = Some(4000),
                &["io/cdn"],
                "the edge keeps copies at least 1h 6m 40s (observed Age)",
            ),
            (
                "a CDN-Cache-Control lifetime",
                |o| cdn_headers(o, 1).cdn_cache_control = Some("s-maxage=86400".into()),
                &["io/cdn"],
                "for 1day (CDN-Cache-Control s-maxage)",
            ),
            (
                "failed and non-2xx views have no budget here",
                |o| {
                    cdn(o, 0).fetch.outcome = response(503, cc("max-age=86400"));
                    cdn(o, 1).fetch.outcome = FetchOutcome::Error {
                        kind: FetchErrorKind::Timeout,
                        message: "timeout".into(),
                    };
                },
                &[],
                "",
            ),
        ];
        for (name, edit, expected, fragment) in table {
            let f = check(c, edit, expected);
            if let Some(f) = f.first() {
                assert!(f.message.contains(fragment), "{name}: {}", f.message);
            }
        }
    }

    #[test]
    fn staleness_budget_follows_the_tenants_profiles() {
        let c = Code::StalenessBudgetExceeded;
        let o = obs();
        let mut tenant = config().tenants.remove(0);
        // istio keeps its set 20 min; 300 s + 20 min is still within 1 h.
        tenant.client_profiles = vec!["istio".into()];
        check_obs(c, &o, &tenant, &[]);
        // aws_http_api's 2 h TTL exceeds the lead time on every edge view.
        tenant.client_profiles = vec!["jose".into(), "aws_http_api".into()];
        let f = check_obs(c, &o, &tenant, &["app/cdn", "io/cdn"]);
        assert!(
            f[0].message
                .contains("client profile aws_http_api adds 2h (TTL)"),
            "{}",
            f[0].message
        );
        // Only refetching clients: S is the edge's 300 s plus go_oidc's nothing.
        tenant.client_profiles = vec!["go_oidc".into()];
        check_obs(c, &o, &tenant, &[]);
    }

    #[test]
    fn unbounded_budget_with_a_user_profile() {
        let c = Code::StalenessBudgetExceeded;
        let run = |config: &Config| -> Vec<Finding> {
            super::super::round_findings(&obs(), &config.tenants[0], config, NOW)
                .into_iter()
                .filter(|f| f.code == c)
                .collect()
        };
        let mut config = config();
        config.profiles.push(ClientProfile {
            name: "frozen".into(),
            ttl: None,
            refetch_on_unknown_kid: false,
            cooldown: None,
            honours_headers: false,
            on_fetch_failure: OnFetchFailure::KeepLastGood,
        });
        config.tenants[0].client_profiles = vec!["jose".into(), "frozen".into()];
        let found = run(&config);
        let subjects: Vec<String> = found.iter().map(|f| short(&f.subject)).collect();
        assert_eq!(subjects, ["app/cdn", "io/cdn"]);
        assert_eq!(
            found[0].message,
            "worst-case staleness S is unbounded: client profile frozen has no TTL and never refetches on an unknown kid, so no rotation_lead_time (1h) covers it"
        );
        // A lead time longer than a bounded S covers it.
        config.tenants[0].client_profiles = vec!["aws_http_api".into()];
        assert_eq!(run(&config).len(), 2);
        config.settings.rotation_lead_time = Duration::from_secs(3 * 3600);
        assert!(run(&config).is_empty());
    }
}
