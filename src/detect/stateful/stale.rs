//! `probe_stale`: keycanary's own freshness. A configured view (every tenant × domain ×
//! path × pinned edge, plus the origin view) whose last ok round (2xx key set) is older
//! than 3 × the interval, or that never had one although it has been tried — or, never
//! tried, the tenant has been watched — for longer than that.
//!
//! Self-monitoring: the pre-rotation gate refuses while any view of the tenant is stale.

use super::human;
use crate::config::{self, Config};
use crate::detect::history::History;
use crate::model::{Code, Finding, Subject, Timestamp, ViewId};

/// How many intervals without an ok round make a view stale.
pub const STALE_INTERVALS: u32 = 3;

/// `probe_stale` for every configured view of `tenant`.
pub fn probe_stale(
    history: &History,
    tenant: &config::Tenant,
    config: &Config,
    now: Timestamp,
) -> Vec<Finding> {
    let interval = config.settings.interval;
    let limit = (interval * STALE_INTERVALS).as_millis() as i64;
    let th = history.tenant(&tenant.name);
    let Some(watched_since) = th.map(|t| t.first_recorded()).or(history.first_recorded()) else {
        return Vec::new();
    };
    let older = |t: Timestamp| now.0.saturating_sub(t.0) > limit;
    let why = format!(
        "more than {STALE_INTERVALS} × the {} interval",
        human(interval.as_secs() as i64)
    );
    let mut out = Vec::new();
    for d in &tenant.domains {
        for id in configured_views(d) {
            let vh = th.and_then(|t| t.view(&d.name, &id));
            let message = match vh.map(|v| (v.last_ok(), v.first_attempt())) {
                Some((Some(ok), _)) if older(ok) => format!(
                    "no successful fetch of this view since {ok} ({} ago, {why})",
                    human(now.0.saturating_sub(ok.0) / 1000)
                ),
                Some((None, first)) if older(first) => format!(
                    "no successful fetch of this view since it was first tried at {first} ({why})"
                ),
                None if older(watched_since) => format!(
                    "this view has not been probed although keycanary has watched since {watched_since} ({why})"
                ),
                _ => continue,
            };
            let subject = Subject::view(&tenant.name, &d.name, &id);
            out.push(Finding::new(Code::ProbeStale, subject, message));
        }
    }
    out
}

/// The views of a configured domain as the probe names them: each JWKS path once per
/// pinned edge (or once, unpinned), then the origin view.
pub fn configured_views(d: &config::Domain) -> Vec<ViewId> {
    d.views().into_iter().map(|v| v.id).collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::model::*;

    #[test]
    fn configured_views_are_the_probes_views() {
        let config = config_with(|toml| {
            toml.replacen(
                "[[tenant.domain.jwks]]\nname = \"cdn\"\n",
                "[[tenant.domain.jwks]]\nname = \"cdn\"\n[[tenant.domain.jwks]]\nname = \"pinned\"\nurl = \"https://cdn.example/jwks\"\nedges = [\"192.0.2.1\", \"2001:db8::1\"]\n",
                1,
            )
        });
        let d = &config.tenants[0].domains[0];
        let probe: Vec<ViewId> = crate::probe::view_targets(d, None)
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(configured_views(d), probe);
        assert_eq!(probe.len(), 4);
    }

    /// A round at step `i` whose `cdn` view of app failed.
    fn cdn_down(i: i64) -> Observation {
        let mut o = round(i);
        cdn(&mut o, 0).fetch.outcome = FetchOutcome::Error {
            kind: FetchErrorKind::Timeout,
            message: "timed out".into(),
        };
        cdn(&mut o, 0).key_set = None;
        o
    }

    #[test]
    fn probe_stale() {
        let c = Code::ProbeStale;
        // Rounds every 30 s, interval 30 s: stale after more than 90 s without an ok round.
        check(c, &[round(0), cdn_down(1), cdn_down(2), cdn_down(3)], &[]);
        let f = check(
            c,
            &[round(0), cdn_down(1), cdn_down(2), cdn_down(3), cdn_down(4)],
            &["app/cdn"],
        );
        assert_eq!(
            message(&f),
            "no successful fetch of this view since 2027-01-15T08:00:00Z (2 min ago, more than 3 × the 30 s interval)"
        );
        check(
            c,
            &[round(0), cdn_down(1), cdn_down(2), cdn_down(3), round(4)],
            &[],
        );
        // Never ok since the first try.
        check(
            c,
            &[cdn_down(0), cdn_down(1), cdn_down(2), cdn_down(3)],
            &[],
        );
        let f = check(c, &[cdn_down(0), cdn_down(4)], &["app/cdn"]);
        assert!(message(&f).contains("since it was first tried at 2027-01-15T08:00:00Z"));
        // A configured view the probe never returned.
        let drop_io_cdn = |i| {
            let mut o = round(i);
            io(&mut o).views.truncate(1);
            o
        };
        check(c, &[drop_io_cdn(0), drop_io_cdn(3)], &[]);
        let f = check(c, &[drop_io_cdn(0), drop_io_cdn(4)], &["io/cdn"]);
        assert!(message(&f).starts_with("this view has not been probed"));
        // A whole tenant without observations: assess judges it from the history's age.
        let two = two_tenants();
        let f = check_with(&two, c, &[round(0), round(1)], &[]);
        assert!(f.is_empty());
        let (_, steps) = replay(&two, &[round(0), round(4)]);
        let stale: Vec<String> = steps[1]
            .iter()
            .filter(|f| f.code == c)
            .map(|f| format!("{}:{}", f.subject.tenant, short(&f.subject)))
            .collect();
        assert_eq!(stale, ["globex:app/cdn", "globex:app/origin"]);
    }
}
