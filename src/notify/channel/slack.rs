//! Slack incoming webhook: one `text` message in Slack's mrkdwn, the title, the gate line,
//! up to 20 findings and the status-page link.
//!
//! The webhook URL is the credential (its path carries the token), so it is held as a
//! `SecretString` and exposed only into the rendered request's URL.

use super::{HttpRequest, RenderContext, gate_line, title};
use crate::alert::state::{Notification, Status};
pub use crate::config::SlackConfig;
use secrecy::ExposeSecret;
use serde_json::json;
use std::fmt::Write as _;

/// Findings listed in one message, at most.
const MAX_LISTED: usize = 20;

/// Slack's mrkdwn needs only `&`, `<` and `>` escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Pure: the webhook request for `n`.
pub fn render(n: &Notification, cfg: &SlackConfig, ctx: &RenderContext) -> HttpRequest {
    let icon = match n.status {
        Status::Firing => ":rotating_light:",
        Status::Reminder => ":bell:",
        Status::Resolved => ":white_check_mark:",
    };
    let mut text = format!("{icon} *{}*\n", esc(&title(n)));
    let when = match n.status {
        Status::Resolved => format!("resolved at {}, bad since {}", n.at, n.since),
        _ => format!("firing since {}", n.since),
    };
    let _ = writeln!(text, "{} · location `{}`", when, esc(&ctx.location));
    let _ = writeln!(text, "_{}_", esc(&gate_line(n)));
    for m in n.findings.iter().take(MAX_LISTED) {
        let f = &m.finding;
        let _ = writeln!(
            text,
            "• `{}` {} — {}",
            f.code,
            esc(&f.subject.to_string()),
            esc(&f.message)
        );
    }
    if n.findings.len() > MAX_LISTED {
        let _ = writeln!(text, "… and {} more", n.findings.len() - MAX_LISTED);
    }
    if let Some(url) = &ctx.status_page_url {
        let _ = writeln!(text, "<{}|Status page>", esc(url));
    }
    let body = json!({ "text": text.trim_end() });
    HttpRequest::post_json(cfg.webhook_url.expose_secret().to_owned(), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::channel::fixtures;
    use secrecy::SecretString;

    fn cfg() -> SlackConfig {
        SlackConfig {
            webhook_url: SecretString::from("http://127.0.0.1:9999/services/T0/B0/test-token"),
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
    fn webhook_url_is_redacted_in_debug() {
        assert!(!format!("{:?}", cfg()).contains("test-token"));
        let r = render(&fixtures::firing(), &cfg(), &fixtures::ctx());
        assert!(!format!("{r:?}").contains("test-token"));
    }
}
