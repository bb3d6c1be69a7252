//! PagerDuty Events API v2: `trigger` for firing and reminders, `resolve` for resolved,
//! one PagerDuty alert per incident through `dedup_key`, so redelivery and reminders fold
//! into the same alert instead of paging again.
//!
//! The routing key travels in the body: the Events API has no other place for it. The
//! dedup key is `keycanary/<location>/<incident dedup key>`: keycanaries at different
//! locations open separate alerts, and each resolves only its own.

use super::{HttpRequest, RenderContext, gate_line, title};
use crate::alert::state::{Notification, Status};
pub use crate::config::{PAGERDUTY_DEFAULT_URL as DEFAULT_URL, PagerDutyConfig};
use crate::model::Severity;
use secrecy::ExposeSecret;
use serde_json::json;

/// Findings listed in `custom_details`, at most (PagerDuty caps the payload at 512 KB).
const MAX_DETAILS: usize = 50;

fn pd_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "info",
    }
}

pub fn dedup_key(n: &Notification, ctx: &RenderContext) -> String {
    format!("keycanary/{}/{}", ctx.location, n.dedup_key)
}

/// Pure: the Events API request for `n`.
pub fn render(n: &Notification, cfg: &PagerDutyConfig, ctx: &RenderContext) -> HttpRequest {
    let key = dedup_key(n, ctx);
    let body = match n.status {
        Status::Resolved => json!({
            "routing_key": cfg.routing_key.expose_secret(),
            "event_action": "resolve",
            "dedup_key": key,
        }),
        Status::Firing | Status::Reminder => {
            let findings: Vec<serde_json::Value> = n
                .findings
                .iter()
                .take(MAX_DETAILS)
                .map(|m| {
                    json!({
                        "code": m.finding.code,
                        "severity": m.finding.severity,
                        "subject": m.finding.subject.to_string(),
                        "message": m.finding.message,
                        "since": m.since.to_string(),
                        "last_seen": m.last_seen.to_string(),
                    })
                })
                .collect();
            let mut summary = title(n);
            if let Some(lead) = n.lead() {
                summary = format!("{summary}: {}", lead.finding.message);
            }
            let summary: String = summary.chars().take(1024).collect();
            let mut body = json!({
                "routing_key": cfg.routing_key.expose_secret(),
                "event_action": "trigger",
                "dedup_key": key,
                "client": "keycanary",
                "payload": {
                    "summary": summary,
                    "source": format!("keycanary/{}", ctx.location),
                    "severity": pd_severity(n.severity),
                    "timestamp": n.at.to_string(),
                    "component": n.group.tenant,
                    "group": n.group.to_string(),
                    "class": n.lead().map(|m| m.finding.code.as_str()).unwrap_or_default(),
                    "custom_details": {
                        "since": n.since.to_string(),
                        "gate": gate_line(n),
                        "findings": findings,
                        "findings_total": n.findings.len(),
                        "notification_id": n.id,
                    },
                },
            });
            if let Some(url) = &ctx.status_page_url {
                body["client_url"] = json!(url);
                body["links"] = json!([{ "href": url, "text": "keycanary status page" }]);
            }
            body
        }
    };
    HttpRequest::post_json(cfg.url.to_string(), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::channel::fixtures;
    use secrecy::SecretString;
    use url::Url;

    fn cfg() -> PagerDutyConfig {
        PagerDutyConfig {
            routing_key: SecretString::from("test-routing-key"),
            url: Url::parse(DEFAULT_URL).unwrap(),
        }
    }

    #[test]
    fn trigger() {
        insta::assert_snapshot!(
            render(&fixtures::firing(), &cfg(), &fixtures::ctx()).to_snapshot()
        );
    }

    #[test]
    fn reminder_is_a_trigger_with_the_same_dedup_key() {
        let ctx = fixtures::ctx();
        let a: serde_json::Value =
            serde_json::from_str(&render(&fixtures::firing(), &cfg(), &ctx).body).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(&render(&fixtures::reminder(), &cfg(), &ctx).body).unwrap();
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(a["dedup_key"], b["dedup_key"]);
    }

    #[test]
    fn resolve() {
        insta::assert_snapshot!(
            render(&fixtures::resolved(), &cfg(), &fixtures::ctx()).to_snapshot()
        );
    }

    #[test]
    fn routing_key_only_in_the_body_and_never_in_debug() {
        let c = cfg();
        assert!(!format!("{c:?}").contains("test-routing-key"));
        let r = render(&fixtures::firing(), &c, &fixtures::ctx());
        assert!(!r.url.contains("test-routing-key"));
        assert!(
            r.headers
                .iter()
                .all(|(_, v)| !v.contains("test-routing-key"))
        );
        assert!(!format!("{r:?}").contains("test-routing-key"));
    }
}
