//! Generic webhook: a documented JSON body (README, "Webhook payload"), optionally signed.
//!
//! Body fields: `version` (1), `id` (unique per notification, stable under redelivery),
//! `dedup_key` (the incident), `status` (`firing` | `resolved`; a reminder is `firing`
//! with `reminder: true`), `code`, `severity`, `subject` (of the lead finding), `group`,
//! `since`, `at`, `message`, `location`, `status_page_url`, `gate`, and `findings` (each
//! with `code`, `severity`, `subject`, `message`, `since`, `last_seen`, `resolved_at`).
//! Fields are added, never renamed.
//!
//! With `hmac_key`, the header `X-Keycanary-Signature: sha256=<hex>` carries the
//! HMAC-SHA256 of the exact body bytes. The key itself never leaves.

use super::{HttpRequest, RenderContext, gate_line, title};
use crate::alert::state::{Notification, Status};
pub use crate::config::WebhookConfig;
use crate::model::hex;
use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

pub const SIGNATURE_HEADER: &str = "X-Keycanary-Signature";

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(key: &SecretString, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret().as_bytes());
    format!("sha256={}", hex(hmac::sign(&key, body).as_ref()))
}

/// Pure: the webhook request for `n`.
pub fn render(n: &Notification, cfg: &WebhookConfig, ctx: &RenderContext) -> HttpRequest {
    let lead = n.lead();
    let findings: Vec<serde_json::Value> = n
        .findings
        .iter()
        .map(|m| {
            json!({
                "code": m.finding.code,
                "severity": m.finding.severity,
                "subject": m.finding.subject,
                "message": m.finding.message,
                "since": m.since.to_string(),
                "last_seen": m.last_seen.to_string(),
                "resolved_at": m.resolved_at.map(|t| t.to_string()),
            })
        })
        .collect();
    let mut body = json!({
        "version": 1,
        "id": n.id,
        "dedup_key": n.dedup_key,
        "status": match n.status {
            Status::Firing | Status::Reminder => "firing",
            Status::Resolved => "resolved",
        },
        "reminder": n.status == Status::Reminder,
        "code": lead.map(|m| m.finding.code),
        "severity": n.severity,
        "subject": lead.map(|m| &m.finding.subject),
        "group": n.group,
        "since": n.since.to_string(),
        "at": n.at.to_string(),
        "message": title(n),
        "location": ctx.location,
        "status_page_url": ctx.status_page_url,
        "gate": gate_line(n),
        "findings": findings,
    });
    if let Some(reason) = &n.reason {
        body["reason"] = json!(reason);
    }
    let mut req = HttpRequest::post_json(cfg.url.to_string(), &body);
    if let Some(key) = &cfg.hmac_key {
        req.headers
            .push((SIGNATURE_HEADER.into(), signature(key, req.body.as_bytes())));
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::channel::{SendError, fixtures, http_client, send_http};
    use std::sync::Arc;
    use url::Url;

    fn cfg(url: &str, key: Option<&str>) -> WebhookConfig {
        WebhookConfig {
            url: Url::parse(url).unwrap(),
            hmac_key: key.map(SecretString::from),
        }
    }

    #[test]
    fn firing_signed() {
        let c = cfg(
            "http://127.0.0.1:9000/hooks/keycanary",
            Some("test-hmac-key"),
        );
        insta::assert_snapshot!(render(&fixtures::firing(), &c, &fixtures::ctx()).to_snapshot());
    }

    #[test]
    fn resolved_unsigned() {
        let c = cfg("http://127.0.0.1:9000/hooks/keycanary", None);
        let r = render(&fixtures::resolved(), &c, &fixtures::ctx());
        assert!(r.headers.iter().all(|(k, _)| k != SIGNATURE_HEADER));
        insta::assert_snapshot!(r.to_snapshot());
    }

    #[test]
    fn reminder_is_firing_with_flag() {
        let c = cfg("http://127.0.0.1:9000/", None);
        let r = render(&fixtures::reminder(), &c, &fixtures::ctx());
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["status"], "firing");
        assert_eq!(v["reminder"], true);
    }

    /// Every documented field, with its type, in a firing, a resolved, a reminder and a
    /// per-code notification: receivers parse these, so fields only ever get added.
    #[test]
    fn body_keeps_its_published_contract() {
        let c = cfg("http://127.0.0.1:9000/", None);
        let mut per_code = fixtures::firing();
        per_code.group.code = Some(crate::model::Code::StaleEdge);
        let mut all = Vec::new();
        let removed = Notification {
            reason: Some("tenant removed from the inventory".into()),
            ..fixtures::resolved()
        };
        for n in [
            fixtures::firing(),
            fixtures::resolved(),
            fixtures::reminder(),
            per_code,
            removed,
        ] {
            all.push(
                serde_json::from_str::<serde_json::Value>(&render(&n, &c, &fixtures::ctx()).body)
                    .unwrap(),
            );
        }
        crate::contract::assert_all_keep(
            "the webhook body",
            &all,
            include_str!("../../../tests/contracts/webhook.contract"),
        );
    }

    /// RFC 4231 test case 2, so the signature is HMAC-SHA256 and not something like it.
    #[test]
    fn signature_is_standard_hmac_sha256() {
        assert_eq!(
            signature(&SecretString::from("Jefe"), b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn key_never_in_message_or_debug() {
        let c = cfg("http://127.0.0.1:9000/", Some("test-hmac-key"));
        assert!(!format!("{c:?}").contains("test-hmac-key"));
        let r = render(&fixtures::firing(), &c, &fixtures::ctx());
        assert!(!r.to_snapshot().contains("test-hmac-key"));
    }

    /// A receiver that checks the signature and answers with a chosen status.
    async fn receiver(status: u16) -> (String, tokio::sync::mpsc::Receiver<bool>) {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let got = headers
                        .get(SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let want = signature(&SecretString::from("test-hmac-key"), &body);
                    let _ = tx.send(got == want).await;
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, rx)
    }

    #[tokio::test]
    async fn sends_and_the_receiver_verifies_the_signature() {
        let client = reqwest::Client::new();
        let (url, mut verified) = receiver(204).await;
        let r = render(
            &fixtures::firing(),
            &cfg(&url, Some("test-hmac-key")),
            &fixtures::ctx(),
        );
        send_http(&client, &r).await.unwrap();
        assert!(verified.recv().await.unwrap(), "signature did not verify");
    }

    #[tokio::test]
    async fn a_redirect_is_a_permanent_failure_and_nothing_is_resent() {
        use axum::http::{HeaderMap, StatusCode, header};
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Where the redirect points: counts what reaches it.
        let (elsewhere, mut resent) = receiver(204).await;
        let origin = url::Url::parse(&elsewhere)
            .unwrap()
            .origin()
            .ascii_serialization();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut h = HeaderMap::new();
            h.insert(header::LOCATION, elsewhere.parse().unwrap());
            async move { (StatusCode::TEMPORARY_REDIRECT, h) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let r = render(
            &fixtures::firing(),
            &cfg(&url, Some("test-hmac-key")),
            &fixtures::ctx(),
        );
        match send_http(&http_client(), &r).await {
            Err(SendError::Permanent(msg)) => {
                assert!(msg.contains("307"), "{msg}");
                assert!(msg.contains(&format!("a redirect to {origin}:")), "{msg}");
                assert!(msg.contains("never follow redirects"), "{msg}");
            }
            other => panic!("expected a permanent failure, got {other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(resent.try_recv().is_err(), "the redirect was followed");
    }

    #[tokio::test]
    async fn receiver_answers_are_classified() {
        let client = reqwest::Client::new();
        let check = async |status: u16| {
            let (url, _rx) = receiver(status).await;
            let r = render(&fixtures::firing(), &cfg(&url, None), &fixtures::ctx());
            send_http(&client, &r).await
        };
        assert!(matches!(check(400).await, Err(SendError::Permanent(_))));
        assert!(matches!(check(404).await, Err(SendError::Permanent(_))));
        assert!(matches!(check(429).await, Err(SendError::Retryable(_))));
        assert!(matches!(check(503).await, Err(SendError::Retryable(_))));
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/hook", l.local_addr().unwrap())
        };
        let r = render(&fixtures::firing(), &cfg(&closed, None), &fixtures::ctx());
        match send_http(&client, &r).await {
            Err(SendError::Retryable(msg)) => assert!(!msg.contains("/hook"), "{msg}"),
            other => panic!("expected retryable, got {other:?}"),
        }
    }
}
