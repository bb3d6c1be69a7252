//! Notification channels: a pure `render` per channel (notification → the exact message
//! to send) and a short `send` that only moves bytes.
//!
//! Rendering is where the wording lives and is snapshot-tested (`snapshots/`); sending
//! knows nothing about incidents. HTTP channels render to an [`HttpRequest`], email to an
//! [`email::EmailMessage`]. Email HTML is a `maud` template (escaped by construction,
//! checked at compile time; the status page uses maud too).
//!
//! Secrets stay in the channel configs as `SecretString` and are exposed only where a
//! request is built: the PagerDuty routing key in the body (the Events API requires it
//! there), the Slack webhook URL (the URL is the credential) and the webhook HMAC key
//! (only its signature leaves). `Debug` of a rendered [`HttpRequest`] shows neither URL
//! path nor body, so logging a message cannot leak them.

pub mod alertmanager;
pub mod email;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use crate::alert::state::{Notification, Status};
pub use crate::config::{Channel, ChannelConfig};
use crate::model::Code;
use std::fmt;
use std::time::Duration;

/// What a render needs besides the notification and the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderContext {
    /// This keycanary's `location` (vantage point).
    pub location: String,
    /// `[alerting].status_page_url`, linked from every message that can carry a link.
    pub status_page_url: Option<String>,
}

/// A rendered notification, ready for `send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Http(HttpRequest),
    Email(email::EmailMessage),
}

/// An HTTP request exactly as it will be sent.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The exact bytes sent (what a webhook signature covers).
    pub body: String,
}

impl fmt::Debug for HttpRequest {
    /// Redacted: the URL's path and query (a Slack webhook URL is a credential) and the
    /// body (PagerDuty's carries the routing key) are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = url::Url::parse(&self.url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| "<invalid url>".to_owned());
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &format_args!("{origin}/<redacted>"))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl HttpRequest {
    fn post_json(url: String, body: &serde_json::Value) -> HttpRequest {
        HttpRequest {
            method: "POST",
            url,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    /// Human-readable form for snapshots: request line, headers, pretty JSON body.
    pub fn to_snapshot(&self) -> String {
        let body = serde_json::from_str::<serde_json::Value>(&self.body)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| self.body.clone());
        let mut out = format!("{} {}\n", self.method, self.url);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push('\n');
        out.push_str(&body);
        out.push('\n');
        out
    }
}

/// Renders `n` for one channel. Pure.
pub fn render(n: &Notification, channel: &ChannelConfig, ctx: &RenderContext) -> Message {
    match channel {
        ChannelConfig::Email(c) => Message::Email(email::render(n, c, ctx)),
        ChannelConfig::PagerDuty(c) => Message::Http(pagerduty::render(n, c, ctx)),
        ChannelConfig::Slack(c) => Message::Http(slack::render(n, c, ctx)),
        ChannelConfig::Webhook(c) => Message::Http(webhook::render(n, c, ctx)),
        ChannelConfig::Alertmanager(c) => Message::Http(alertmanager::render(n, c, ctx)),
    }
}

/// Why a send failed, as the outbox needs to know it: try again later, or give up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// Connection problems, timeouts, HTTP 5xx and 429, SMTP 4xx: try again later.
    #[error("temporary failure, will retry: {0}")]
    Retryable(String),
    /// HTTP 4xx (except 429), SMTP 5xx, a message that cannot be built: retrying the same
    /// message cannot help; fix the channel's configuration.
    #[error("permanent failure, fix the channel configuration: {0}")]
    Permanent(String),
}

/// How long one delivery may take before it counts as a (retryable) failure.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// The client every HTTP channel sends with. It never follows a redirect: a 307 would
/// re-send the body (PagerDuty's routing key, a signed webhook payload) to wherever the
/// `Location` says; the redirect is a permanent failure instead ([`classify_status`]).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Sends a rendered message over `channel`. `http` is shared by every HTTP channel.
pub async fn send(
    msg: &Message,
    channel: &ChannelConfig,
    http: &reqwest::Client,
) -> Result<(), SendError> {
    match (msg, channel) {
        (Message::Email(m), ChannelConfig::Email(c)) => email::send(c, m).await,
        (Message::Http(r), _) => send_http(http, r).await,
        (Message::Email(_), other) => Err(SendError::Permanent(format!(
            "an email message cannot go to a {} channel",
            other.kind()
        ))),
    }
}

/// Sends one HTTP request and classifies the outcome. Error texts never carry the URL.
pub async fn send_http(client: &reqwest::Client, req: &HttpRequest) -> Result<(), SendError> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|e| SendError::Permanent(format!("bad method {}: {e}", req.method)))?;
    let mut builder = client
        .request(method, &req.url)
        .timeout(SEND_TIMEOUT)
        .body(req.body.clone());
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let response = builder.send().await.map_err(|e| {
        let permanent = e.is_builder();
        let e = e.without_url();
        if permanent {
            SendError::Permanent(format!("cannot build the request: {e}"))
        } else {
            SendError::Retryable(format!("request failed: {e}"))
        }
    })?;
    let status = response.status().as_u16();
    if (300..400).contains(&status) {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| response.url().join(l).ok())
            .map_or("an unknown place".to_owned(), |u| {
                u.origin().ascii_serialization()
            });
        return Err(SendError::Permanent(format!(
            "receiver answered {status}, a redirect to {}: notifications never follow redirects (they carry the channel's credentials); set the channel's url to the address that accepts them",
            crate::model::wire::text(&to, crate::model::wire::TEXT_MAX)
        )));
    }
    classify_status(status)
}

/// 2xx: delivered. 429 and 5xx: retry. Everything else (a redirect included):
/// permanent, since sending the same request again cannot help.
pub fn classify_status(status: u16) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(SendError::Retryable(format!("receiver answered {status}"))),
        _ => Err(SendError::Permanent(format!("receiver answered {status}"))),
    }
}

// ---------------------------------------------------------------------------------------
// Wording shared by the channels
// ---------------------------------------------------------------------------------------

/// `[FIRING] critical · acme · kid_missing, stale_edge · 4 findings`
pub fn title(n: &Notification) -> String {
    let status = match n.status {
        Status::Firing => "FIRING",
        Status::Reminder => "STILL FIRING",
        Status::Resolved => "RESOLVED",
    };
    let codes: Vec<&str> = n.codes().iter().map(|c| c.as_str()).collect();
    let count = n.findings.len();
    let reason = n
        .reason
        .as_deref()
        .map(|r| format!(" · {r}"))
        .unwrap_or_default();
    format!(
        "[{status}] {} · {} · {} · {count} finding{}{reason}",
        n.severity,
        n.group.tenant,
        codes.join(", "),
        if count == 1 { "" } else { "s" }
    )
}

/// One line on the rotation gate for the tenant, from the notification's findings: codes
/// that block every promotion, else key hygiene codes that block promoting the key they
/// name; drifts never block (the gate lists them as advisories).
pub fn gate_line(n: &Notification) -> String {
    let codes = n.codes();
    let named = |keep: fn(Code) -> bool| -> Vec<&str> {
        codes
            .iter()
            .copied()
            .filter(|c| keep(*c))
            .map(Code::as_str)
            .collect()
    };
    let blocking = named(Code::blocks_rotation);
    let hygiene = named(Code::blocks_promoting_its_kid);
    let are = |v: &[&str]| if v.len() == 1 { "is" } else { "are" };
    match n.status {
        Status::Resolved => format!(
            "these findings no longer block a key rotation for {}",
            n.group.tenant
        ),
        _ if !blocking.is_empty() => format!(
            "a key rotation for {} is blocked while {} {} open",
            n.group.tenant,
            blocking.join(", "),
            are(&blocking)
        ),
        _ if !hygiene.is_empty() => format!(
            "promoting a key these findings name is blocked for {} while {} {} open; other keys may be promoted",
            n.group.tenant,
            hygiene.join(", "),
            are(&hygiene)
        ),
        _ => format!(
            "none of these findings blocks a key rotation for {} by itself; ask the gate before rotating",
            n.group.tenant
        ),
    }
}

/// `base` with `suffix` appended to its path (one `/` between them).
pub(crate) fn join_path(base: &url::Url, suffix: &str) -> String {
    let mut s = base.as_str().trim_end_matches('/').to_owned();
    s.push('/');
    s.push_str(suffix.trim_start_matches('/'));
    s
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! The notifications of `alert::state::fixtures`, and a render context.
    use super::RenderContext;
    pub use crate::alert::state::fixtures::*;

    pub fn ctx() -> RenderContext {
        RenderContext {
            location: "eu-1".into(),
            status_page_url: Some("http://127.0.0.1:9464/".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let check = |status: u16, want: &str| {
            let got = match classify_status(status) {
                Ok(()) => "ok",
                Err(SendError::Retryable(_)) => "retry",
                Err(SendError::Permanent(_)) => "permanent",
            };
            assert_eq!(got, want, "{status}");
        };
        check(200, "ok");
        check(202, "ok");
        check(301, "permanent");
        check(400, "permanent");
        check(401, "permanent");
        check(404, "permanent");
        check(429, "retry");
        check(500, "retry");
        check(503, "retry");
    }

    #[test]
    fn titles_and_gate_lines() {
        let n = fixtures::firing();
        assert_eq!(
            title(&n),
            "[FIRING] critical · acme · kid_missing, stale_edge · 2 findings"
        );
        assert_eq!(
            gate_line(&n),
            "a key rotation for acme is blocked while stale_edge is open"
        );
        // Drifts never block; a key's own hygiene blocks promoting that key only.
        let with = |code: Code| {
            let mut n = fixtures::firing();
            for m in &mut n.findings {
                m.finding.code = code;
            }
            gate_line(&n)
        };
        assert_eq!(
            with(Code::CachePolicyDrift),
            "none of these findings blocks a key rotation for acme by itself; ask the gate before rotating"
        );
        assert_eq!(
            with(Code::WeakKey),
            "promoting a key these findings name is blocked for acme while weak_key is open; other keys may be promoted"
        );
        assert!(title(&fixtures::reminder()).starts_with("[STILL FIRING]"));
        assert!(title(&fixtures::resolved()).starts_with("[RESOLVED]"));
        let removed = crate::alert::Notification {
            reason: Some("tenant removed from the inventory".into()),
            ..fixtures::resolved()
        };
        assert_eq!(
            title(&removed),
            "[RESOLVED] critical · acme · kid_missing, stale_edge · 2 findings · tenant removed from the inventory"
        );
    }

    #[test]
    fn request_debug_is_redacted() {
        let r = HttpRequest {
            method: "POST",
            url: "https://hooks.slack.com/services/T000/B000/XXXXSECRET".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: r#"{"routing_key":"R0UTINGSECRET"}"#.into(),
        };
        let dump = format!("{r:?}");
        assert!(!dump.contains("XXXXSECRET"), "{dump}");
        assert!(!dump.contains("R0UTINGSECRET"), "{dump}");
        assert!(dump.contains("https://hooks.slack.com"), "{dump}");
    }
}
