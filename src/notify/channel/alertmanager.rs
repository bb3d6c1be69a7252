//! Alertmanager v2: `POST <url>/api/v2/alerts` with one alert per finding, so
//! Alertmanager's own grouping, inhibition and silences apply. Labels are bounded:
//! `alertname` (the code), `tenant`, `domain`, `view`, `severity`, `location`; the kid,
//! message and incident key go in annotations.
//!
//! Alertmanager resolves an alert on its own once `endsAt` passes, so firing alerts carry
//! `endsAt` = two reminder periods after this notification (reminders re-post before
//! then). With reminders off it is left out and Alertmanager's `resolve_timeout` applies.
//! Resolved alerts carry `endsAt` = when they resolved.

use super::{HttpRequest, RenderContext, join_path};
use crate::alert::state::{Notification, Status};
pub use crate::config::AlertmanagerConfig;
use serde_json::json;

/// Pure: the alerts request for `n`.
pub fn render(n: &Notification, cfg: &AlertmanagerConfig, ctx: &RenderContext) -> HttpRequest {
    let ends_firing = n
        .next_reminder
        .map(|next| next.plus_secs(next.as_secs() - n.at.as_secs()));
    let alerts: Vec<serde_json::Value> = n
        .findings
        .iter()
        .map(|m| {
            let s = &m.finding.subject;
            let view = s.view_label();
            let mut labels = json!({
                "alertname": m.finding.code,
                "tenant": s.tenant,
                "severity": m.finding.severity,
                "location": ctx.location,
            });
            if let Some(d) = &s.domain {
                labels["domain"] = json!(d);
            }
            if let Some(v) = view {
                labels["view"] = json!(v);
            }
            let mut annotations = json!({
                "summary": m.finding.message,
                "subject": s.to_string(),
                "keycanary_dedup_key": n.dedup_key,
            });
            if let Some(k) = &s.kid {
                annotations["kid"] = json!(k);
            }
            let mut alert = json!({
                "labels": labels,
                "annotations": annotations,
                "startsAt": m.since.to_string(),
            });
            let ends = match n.status {
                Status::Resolved => Some(m.resolved_at.unwrap_or(n.at)),
                Status::Firing | Status::Reminder => ends_firing,
            };
            if let Some(e) = ends {
                alert["endsAt"] = json!(e.to_string());
            }
            if let Some(u) = &ctx.status_page_url {
                alert["generatorURL"] = json!(u);
            }
            alert
        })
        .collect();
    HttpRequest::post_json(
        join_path(&cfg.url, "api/v2/alerts"),
        &serde_json::Value::Array(alerts),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::channel::fixtures;
    use url::Url;

    fn cfg() -> AlertmanagerConfig {
        AlertmanagerConfig {
            url: Url::parse("http://127.0.0.1:9093/").unwrap(),
        }
    }

    #[test]
    fn firing() {
        insta::assert_snapshot!(
            render(&fixtures::firing(), &cfg(), &fixtures::ctx()).to_snapshot()
        );
    }

    #[test]
    fn resolved() {
        insta::assert_snapshot!(
            render(&fixtures::resolved(), &cfg(), &fixtures::ctx()).to_snapshot()
        );
    }

    #[test]
    fn url_joins_with_or_without_trailing_slash() {
        for base in [
            "http://am.example:9093",
            "http://am.example:9093/",
            "http://am.example/am/",
        ] {
            let c = AlertmanagerConfig {
                url: Url::parse(base).unwrap(),
            };
            let r = render(&fixtures::firing(), &c, &fixtures::ctx());
            assert!(r.url.ends_with("/api/v2/alerts"), "{}", r.url);
            assert!(!r.url.contains("//api"), "{}", r.url);
        }
    }
}
