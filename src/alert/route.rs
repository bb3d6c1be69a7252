//! Which channels a notification goes to: `[[alerting.route]]` entries matched by
//! severity, tenant and code.
//!
//! Every matching route contributes its channels (no "first match wins", no nesting), so
//! "critical to PagerDuty" and "everything for acme to Slack" can be written as two
//! independent routes. Pure: no sending, no state.

use crate::alert::state::Notification;
use crate::model::{Code, Severity};

/// One `[[alerting.route]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Channel names (validated against `[[alerting.channel]]`).
    pub channels: Vec<String>,
    /// The notification's severity must be at least this; `low` by default (everything).
    pub min_severity: Severity,
    /// Empty: any tenant.
    pub tenants: Vec<String>,
    /// Empty: any code. Otherwise one of the notification's findings must have one of these.
    pub codes: Vec<Code>,
}

impl Route {
    pub fn matches(&self, n: &Notification) -> bool {
        n.severity.at_least(self.min_severity)
            && (self.tenants.is_empty() || self.tenants.contains(&n.group.tenant))
            && (self.codes.is_empty()
                || n.findings
                    .iter()
                    .any(|m| self.codes.contains(&m.finding.code)))
    }
}

/// The channel names `n` goes to, each once, in the order routes first name them.
pub fn route(n: &Notification, routes: &[Route]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in routes.iter().filter(|r| r.matches(n)) {
        for c in &r.channels {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::state::{GroupKey, Member, Status};
    use crate::model::{Finding, Subject, Timestamp};

    fn notification(tenant: &str, codes: &[Code]) -> Notification {
        let findings: Vec<Member> = codes
            .iter()
            .map(|&c| Member {
                finding: Finding::new(c, Subject::tenant(tenant), "m"),
                since: Timestamp(0),
                last_seen: Timestamp(0),
                resolved_at: None,
            })
            .collect();
        Notification {
            id: "i".into(),
            dedup_key: "d".into(),
            group: GroupKey {
                tenant: tenant.into(),
                code: None,
            },
            status: Status::Firing,
            severity: codes.iter().map(|c| c.severity()).min().unwrap(),
            since: Timestamp(0),
            at: Timestamp(0),
            next_reminder: None,
            reason: None,
            findings,
        }
    }

    fn r(channels: &[&str], min: Severity, tenants: &[&str], codes: &[Code]) -> Route {
        Route {
            channels: channels.iter().map(|s| s.to_string()).collect(),
            min_severity: min,
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
            codes: codes.to_vec(),
        }
    }

    #[test]
    fn routing_table() {
        let routes = [
            r(&["pagerduty"], Severity::Critical, &[], &[]),
            r(&["acme-slack"], Severity::Low, &["acme"], &[]),
            r(&["sre-email"], Severity::High, &[], &[]),
            r(
                &["cdn-team", "sre-email"],
                Severity::Low,
                &[],
                &[Code::StaleEdge, Code::ErrorCached],
            ),
        ];
        let check = |tenant: &str, codes: &[Code], want: &[&str]| {
            let got = route(&notification(tenant, codes), &routes);
            assert_eq!(got, want, "{tenant} {codes:?}");
        };
        check(
            "acme",
            &[Code::KidMissing],
            &["pagerduty", "acme-slack", "sre-email"],
        );
        check("beta", &[Code::KidMissing], &["pagerduty", "sre-email"]);
        check("beta", &[Code::StaleEdge], &["sre-email", "cdn-team"]);
        check("beta", &[Code::CacheTtlExceeded], &[]);
        check("acme", &[Code::CacheTtlExceeded], &["acme-slack"]);
        check(
            "beta",
            &[Code::KidMissing, Code::ErrorCached],
            &["pagerduty", "sre-email", "cdn-team"],
        );
        assert!(route(&notification("acme", &[Code::KidMissing]), &[]).is_empty());
    }
}
