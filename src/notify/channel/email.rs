//! Email: a text and an HTML body saying what broke, where (tenant, domain, view, kid),
//! since when, the cache evidence detect recorded (Age, cache status — in each finding's
//! message), what it means for the rotation gate, and a link to the status page.
//!
//! `send` speaks SMTP through lettre (rustls, no OpenSSL; the system's roots plus the
//! channel's `ca_file`). It builds a transport per message; pooling across messages is
//! the outbox's business.

use super::{RenderContext, SEND_TIMEOUT, SendError, gate_line, title};
use crate::alert::state::{Member, Notification, Status};
pub use crate::config::{EmailConfig, SmtpTls};
use crate::model::Subject;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use maud::{DOCTYPE, html};
use secrecy::ExposeSecret;
use std::fmt::Write as _;

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl EmailMessage {
    /// Human-readable form for snapshots.
    pub fn to_snapshot(&self) -> String {
        format!(
            "From: {}\nTo: {}\nSubject: {}\n\n--- text ---\n{}\n--- html ---\n{}\n",
            self.from,
            self.to.join(", "),
            self.subject,
            self.text,
            self.html
        )
    }
}

fn status_phrase(n: &Notification) -> String {
    match n.status {
        Status::Firing | Status::Reminder => format!("firing since {}", n.since),
        Status::Resolved => format!("resolved at {} (bad since {})", n.at, n.since),
    }
}

fn view(s: &Subject) -> String {
    s.view_label().unwrap_or_default()
}

fn member_times(m: &Member) -> String {
    match m.resolved_at {
        Some(r) => format!("since {}, last seen {}, resolved {r}", m.since, m.last_seen),
        None => format!("since {}, last seen {}", m.since, m.last_seen),
    }
}

/// Pure: the email for `n`.
pub fn render(n: &Notification, cfg: &EmailConfig, ctx: &RenderContext) -> EmailMessage {
    let subject = title(n);
    let gate = gate_line(n);

    let mut text = String::new();
    let _ = writeln!(text, "{subject}\n");
    let _ = writeln!(text, "Tenant:   {}", n.group.tenant);
    let _ = writeln!(text, "Status:   {}", status_phrase(n));
    let _ = writeln!(text, "Severity: {}", n.severity);
    let _ = writeln!(text, "Location: {}", ctx.location);
    let _ = writeln!(text, "Gate:     {gate}");
    if let Some(url) = &ctx.status_page_url {
        let _ = writeln!(text, "Status page: {url}");
    }
    let _ = writeln!(text, "\nFindings:");
    for m in &n.findings {
        let f = &m.finding;
        let _ = writeln!(text, "\n- {} {}", f.severity, f.code);
        let _ = writeln!(text, "  {}", f.subject);
        let _ = writeln!(text, "  {}", f.message);
        let _ = writeln!(text, "  {}", member_times(m));
    }
    if let Some(next) = n.next_reminder {
        let _ = writeln!(text, "\nNext reminder at {next} if it is still firing.");
    }
    let _ = writeln!(text, "\nIncident {} · notification {}", n.dedup_key, n.id);

    let rows = [
        ("Tenant", n.group.tenant.clone()),
        ("Status", status_phrase(n)),
        ("Severity", n.severity.to_string()),
        ("Location", ctx.location.clone()),
        ("Gate", gate),
    ];
    let html = html! {
        (DOCTYPE)
        html {
            head { meta charset="utf-8"; title { (subject) } }
            body style="font-family: sans-serif" {
                h2 { (subject) }
                table {
                    @for (k, v) in &rows {
                        tr { th align="left" { (k) } td { (v) } }
                    }
                    @if let Some(url) = &ctx.status_page_url {
                        tr { th align="left" { "Status page" } td { a href=(url) { (url) } } }
                    }
                }
                h3 { "Findings" }
                table border="1" cellpadding="4" style="border-collapse: collapse" {
                    tr {
                        th { "severity" } th { "code" } th { "tenant" } th { "domain" }
                        th { "view" } th { "kid" } th { "what was seen" } th { "when" }
                    }
                    @for m in &n.findings {
                        @let s = &m.finding.subject;
                        tr {
                            td { (m.finding.severity) }
                            td { code { (m.finding.code) } }
                            td { (s.tenant) }
                            td { (s.domain.as_deref().unwrap_or("")) }
                            td { (view(s)) }
                            td { (s.kid.as_deref().unwrap_or("")) }
                            td { (m.finding.message) }
                            td { (member_times(m)) }
                        }
                    }
                }
                @if let Some(next) = n.next_reminder {
                    p { "Next reminder at " (next) " if it is still firing." }
                }
                p style="color: #666" { "Incident " (n.dedup_key) " · notification " (n.id) }
            }
        }
    }
    .into_string();

    EmailMessage {
        from: cfg.from.clone(),
        to: cfg.to.clone(),
        subject,
        text,
        html,
    }
}

/// Builds the lettre message (multipart/alternative: text, then HTML).
pub fn build(msg: &EmailMessage) -> Result<lettre::Message, SendError> {
    let mailbox = |s: &str| {
        s.parse::<Mailbox>()
            .map_err(|e| SendError::Permanent(format!("`{s}` is not a mailbox: {e}")))
    };
    let mut b = lettre::Message::builder()
        .from(mailbox(&msg.from)?)
        .subject(&msg.subject);
    for to in &msg.to {
        b = b.to(mailbox(to)?);
    }
    b.multipart(MultiPart::alternative_plain_html(
        msg.text.clone(),
        msg.html.clone(),
    ))
    .map_err(|e| SendError::Permanent(format!("cannot build the email: {e}")))
}

/// The SMTP transport for `cfg`.
pub fn transport(cfg: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
    let setup = |e: lettre::transport::smtp::Error| {
        SendError::Permanent(format!("cannot set up SMTP to {}: {e}", cfg.smtp_host))
    };
    let tls = match cfg.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTls | SmtpTls::Implicit => {
            let mut params = TlsParameters::builder(cfg.smtp_host.clone());
            if let Some(pem) = &cfg.ca_pem {
                params = params
                    .add_root_certificate(Certificate::from_pem(pem.as_bytes()).map_err(setup)?);
            }
            let params = params.build_rustls().map_err(setup)?;
            if cfg.tls == SmtpTls::StartTls {
                Tls::Required(params)
            } else {
                Tls::Wrapper(params)
            }
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host)
        .tls(tls)
        .port(cfg.smtp_port)
        .timeout(Some(SEND_TIMEOUT));
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// Sends one email. SMTP 5xx (and messages that cannot be built) are permanent; SMTP 4xx,
/// connection and TLS problems are retryable.
pub async fn send(cfg: &EmailConfig, msg: &EmailMessage) -> Result<(), SendError> {
    let message = build(msg)?;
    let transport = transport(cfg)?;
    match transport.send(message).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP refused: {e}"))),
        Err(e) => Err(SendError::Retryable(format!("SMTP failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::channel::fixtures;
    use secrecy::SecretString;

    fn cfg(port: u16) -> EmailConfig {
        EmailConfig {
            smtp_host: "127.0.0.1".into(),
            smtp_port: port,
            tls: SmtpTls::None,
            ca_pem: None,
            username: None,
            password: None,
            from: "Keycanary <keycanary@example.com>".into(),
            to: vec!["sre@example.com".into(), "oncall@example.com".into()],
        }
    }

    #[test]
    fn firing_email() {
        let m = render(&fixtures::firing(), &cfg(2525), &fixtures::ctx());
        assert!(m.html.contains("&lt;script&gt;"), "finding text is escaped");
        assert!(!m.html.contains("<script>"));
        insta::assert_snapshot!(m.to_snapshot());
    }

    #[test]
    fn resolved_email() {
        let ctx = RenderContext {
            status_page_url: None,
            ..fixtures::ctx()
        };
        let m = render(&fixtures::resolved(), &cfg(2525), &ctx);
        insta::assert_snapshot!(m.to_snapshot());
    }

    #[test]
    fn builds_a_multipart_message() {
        let m = render(&fixtures::firing(), &cfg(2525), &fixtures::ctx());
        let built = String::from_utf8(build(&m).unwrap().formatted()).unwrap();
        assert!(built.contains("multipart/alternative"), "{built}");
        assert!(built.contains("text/html"), "{built}");
        let bad = EmailMessage {
            from: "not a mailbox".into(),
            ..m
        };
        assert!(matches!(build(&bad), Err(SendError::Permanent(_))));
    }

    #[test]
    fn password_is_redacted_in_debug() {
        let c = EmailConfig {
            username: Some("keycanary".into()),
            password: Some(SecretString::from("smtp-hunter2")),
            ..cfg(25)
        };
        assert!(!format!("{c:?}").contains("smtp-hunter2"));
    }

    /// A scripted SMTP peer: answers each command with the next canned reply and records
    /// what it was sent. Real-server coverage comes with the daemon's integration tests.
    async fn smtp_peer(data_reply: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            let mut seen = String::new();
            w.write_all(b"220 test ESMTP\r\n").await.unwrap();
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                seen.push_str(&line);
                seen.push('\n');
                if in_data {
                    if line == "." {
                        in_data = false;
                        w.write_all(data_reply.as_bytes()).await.unwrap();
                    }
                    continue;
                }
                let upper = line.to_ascii_uppercase();
                let reply: &[u8] = if upper.starts_with("EHLO") {
                    b"250-test\r\n250 8BITMIME\r\n"
                } else if upper.starts_with("DATA") {
                    in_data = true;
                    b"354 go ahead\r\n"
                } else if upper.starts_with("QUIT") {
                    w.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                } else {
                    b"250 ok\r\n"
                };
                w.write_all(reply).await.unwrap();
            }
            seen
        });
        (port, task)
    }

    #[tokio::test]
    async fn sends_over_smtp() {
        let (port, peer) = smtp_peer("250 queued\r\n").await;
        let m = render(&fixtures::firing(), &cfg(port), &fixtures::ctx());
        send(&cfg(port), &m).await.unwrap();
        let seen = peer.await.unwrap();
        assert!(seen.contains("RCPT TO:<sre@example.com>"), "{seen}");
        assert!(seen.contains("RCPT TO:<oncall@example.com>"), "{seen}");
        assert!(seen.contains("multipart/alternative"), "{seen}");
    }

    #[tokio::test]
    async fn smtp_replies_are_classified() {
        let (port, _peer) = smtp_peer("554 rejected\r\n").await;
        let m = render(&fixtures::firing(), &cfg(port), &fixtures::ctx());
        assert!(matches!(
            send(&cfg(port), &m).await,
            Err(SendError::Permanent(_))
        ));

        let (port, _peer) = smtp_peer("451 try later\r\n").await;
        assert!(matches!(
            send(&cfg(port), &m).await,
            Err(SendError::Retryable(_))
        ));

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(matches!(
            send(&cfg(closed), &m).await,
            Err(SendError::Retryable(_))
        ));
    }
}
