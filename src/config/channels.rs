//! `[[alerting.channel]]`: what a configured notification channel is (plain data, one
//! struct per `type`) and how a raw channel table is validated into one.
//!
//! Secrets (SMTP password, PagerDuty routing key, Slack webhook URL, webhook HMAC key) are
//! held as `SecretString` and exposed only where a request is built, by the senders.
//! Rendering and sending live with the senders (`notify::channel`), which depend on
//! these types; nothing here knows how a message is built or sent.

use super::raw::RawChannel;
use super::validate::Validator;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

const CHANNEL_TYPES: &str = "email, pagerduty, slack, webhook, alertmanager";

/// One `[[alerting.channel]]`.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub config: ChannelConfig,
}

#[derive(Debug, Clone)]
pub enum ChannelConfig {
    Email(EmailConfig),
    PagerDuty(PagerDutyConfig),
    Slack(SlackConfig),
    Webhook(WebhookConfig),
    Alertmanager(AlertmanagerConfig),
}

impl ChannelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Email(_) => "email",
            ChannelConfig::PagerDuty(_) => "pagerduty",
            ChannelConfig::Slack(_) => "slack",
            ChannelConfig::Webhook(_) => "webhook",
            ChannelConfig::Alertmanager(_) => "alertmanager",
        }
    }
}

/// `smtp_host`, `tls`, … of a `type = "email"` channel.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    /// `ca_file`: PEM certificates trusted for the server's certificate, besides the
    /// system's roots (an internal relay signed by a private CA). Read and checked when
    /// the config is loaded.
    pub ca_pem: Option<String>,
    /// With `password`: SMTP AUTH. Both or neither (config validation sees to it).
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// A mailbox, `keycanary@example.com` or `Keycanary <keycanary@example.com>`.
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (a local relay or a test server only).
    None,
    /// Plain connect, then STARTTLS (required). Port 587 by default.
    StartTls,
    /// TLS from the first byte (SMTPS). Port 465 by default.
    Implicit,
}

impl SmtpTls {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
        }
    }
}

/// PagerDuty's Events API v2 enqueue endpoint, the default `url` of a `type = "pagerduty"`
/// channel.
pub const PAGERDUTY_DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    /// The integration's routing key (Events API v2).
    pub routing_key: SecretString,
    /// The enqueue endpoint; [`PAGERDUTY_DEFAULT_URL`] unless tests point it elsewhere.
    pub url: Url,
}

/// A `type = "slack"` channel: the incoming-webhook URL is the credential.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub webhook_url: SecretString,
}

/// A `type = "webhook"` channel.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: Url,
    pub hmac_key: Option<SecretString>,
}

/// A `type = "alertmanager"` channel.
#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL, e.g. `http://127.0.0.1:9093/`.
    pub url: Url,
}

impl Validator<'_> {
    pub(super) fn channel(&mut self, path: &str, c: &RawChannel) -> Option<Channel> {
        let name = self.label(
            &format!("{path}.name"),
            c.name.as_deref(),
            "[[alerting.channel]]",
        );
        let kind = match c.kind.as_deref() {
            Some(k @ ("email" | "pagerduty" | "slack" | "webhook" | "alertmanager")) => k,
            Some(other) => {
                self.problem(
                    &format!("{path}.type"),
                    format!("`{other}` is not one of {CHANNEL_TYPES}"),
                );
                return None;
            }
            None => {
                self.problem(
                    &format!("{path}.type"),
                    format!("missing: say which kind of channel ({CHANNEL_TYPES})"),
                );
                return None;
            }
        };
        let present = [
            ("smtp_host", c.smtp_host.is_some()),
            ("smtp_port", c.smtp_port.is_some()),
            ("tls", c.tls.is_some()),
            ("ca_file", c.ca_file.is_some()),
            ("username", c.username.is_some()),
            ("password", c.password.is_some()),
            ("from", c.from.is_some()),
            ("to", c.to.is_some()),
            ("routing_key", c.routing_key.is_some()),
            ("url", c.url.is_some()),
            ("hmac_key", c.hmac_key.is_some()),
        ];
        let allowed: &[&str] = match kind {
            "email" => &[
                "smtp_host",
                "smtp_port",
                "tls",
                "ca_file",
                "username",
                "password",
                "from",
                "to",
            ],
            "pagerduty" => &["routing_key", "url"],
            "webhook" => &["url", "hmac_key"],
            _ => &["url"],
        };
        for (key, _) in present
            .iter()
            .filter(|(k, set)| *set && !allowed.contains(k))
        {
            self.problem(
                &format!("{path}.{key}"),
                format!("`{key}` does not apply to type = \"{kind}\": remove it"),
            );
        }
        let config = match kind {
            "email" => ChannelConfig::Email(self.email_channel(path, c)),
            "pagerduty" => {
                let routing_key = self.required_secret(
                    path,
                    "routing_key",
                    c.routing_key.as_ref(),
                    "the PagerDuty integration's Events API v2 routing key",
                );
                let url = match &c.url {
                    None => Url::parse(PAGERDUTY_DEFAULT_URL).expect("static URL"),
                    Some(v) => self.plain_url(&format!("{path}.url"), v)?,
                };
                ChannelConfig::PagerDuty(PagerDutyConfig {
                    routing_key: routing_key?,
                    url,
                })
            }
            "slack" => {
                let url_path = format!("{path}.url");
                let webhook_url = self.required_secret(
                    path,
                    "url",
                    c.url.as_ref(),
                    "the Slack incoming-webhook URL",
                )?;
                if !Url::parse(webhook_url.expose_secret())
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                {
                    // The URL is the credential: never echo it.
                    self.problem(&url_path, "the secret is not an http(s) URL: it should hold the incoming-webhook URL Slack gave you");
                    return None;
                }
                ChannelConfig::Slack(SlackConfig { webhook_url })
            }
            "webhook" => {
                let hmac_key = c
                    .hmac_key
                    .as_ref()
                    .and_then(|v| self.secret(&format!("{path}.hmac_key"), v));
                let url =
                    self.required_url(path, c.url.as_ref(), "the URL to POST notifications to")?;
                ChannelConfig::Webhook(WebhookConfig { url, hmac_key })
            }
            _ => {
                let url = self.required_url(
                    path,
                    c.url.as_ref(),
                    "Alertmanager's base URL, like \"http://127.0.0.1:9093/\"",
                )?;
                ChannelConfig::Alertmanager(AlertmanagerConfig { url })
            }
        };
        Some(Channel { name, config })
    }

    pub(super) fn email_channel(&mut self, path: &str, c: &RawChannel) -> EmailConfig {
        let smtp_host = c.smtp_host.clone().unwrap_or_default();
        if smtp_host.is_empty() {
            self.problem(
                &format!("{path}.smtp_host"),
                "missing: set the SMTP server's host name or address",
            );
        }
        let tls = match c.tls.as_deref() {
            None | Some("starttls") => SmtpTls::StartTls,
            Some("implicit") => SmtpTls::Implicit,
            Some("none") => SmtpTls::None,
            Some(other) => {
                self.problem(
                    &format!("{path}.tls"),
                    format!("`{other}` is not one of none, starttls, implicit"),
                );
                SmtpTls::StartTls
            }
        };
        let ca_pem = c
            .ca_file
            .as_deref()
            .and_then(|f| self.ca_file(&format!("{path}.ca_file"), f, tls));
        let password = c
            .password
            .as_ref()
            .and_then(|v| self.secret(&format!("{path}.password"), v));
        match (&c.username, &c.password) {
            (Some(_), None) => self.problem(
                &format!("{path}.password"),
                "missing: a username needs a password ({ env = \"NAME\" } or { file = \"path\" })",
            ),
            (None, Some(_)) => self.problem(
                &format!("{path}.username"),
                "missing: a password needs a username",
            ),
            _ => {}
        }
        let mailbox = |v: &mut Self, p: String, s: &str| {
            if s.parse::<lettre::message::Mailbox>().is_err() {
                v.problem(&p, format!("`{s}` is not an email address: write it like \"sre@example.com\" or \"SRE <sre@example.com>\""));
            }
        };
        let from = c.from.clone().unwrap_or_default();
        if c.from.is_none() {
            self.problem(&format!("{path}.from"), "missing: set the sender address");
        } else {
            mailbox(self, format!("{path}.from"), &from);
        }
        let to = c.to.clone().unwrap_or_default();
        if to.is_empty() {
            self.problem(
                &format!("{path}.to"),
                "missing: list at least one recipient",
            );
        }
        for (i, addr) in to.iter().enumerate() {
            mailbox(self, format!("{path}.to[{i}]"), addr);
        }
        EmailConfig {
            smtp_host,
            smtp_port: c.smtp_port.unwrap_or(tls.default_port()),
            tls,
            ca_pem,
            username: c.username.clone(),
            password,
            from,
            to,
        }
    }

    /// `ca_file` of an email channel: a readable file (relative to the config's
    /// directory) holding at least one PEM certificate, with TLS on.
    fn ca_file(&mut self, path: &str, file: &str, tls: SmtpTls) -> Option<String> {
        if tls == SmtpTls::None {
            self.problem(
                path,
                "`ca_file` needs TLS: set tls = \"starttls\" or \"implicit\", or remove it",
            );
            return None;
        }
        let p = self.base_dir.join(file);
        let text = match self.secrets.file(&p) {
            Ok(t) => t,
            Err(e) => {
                self.problem(path, format!("cannot read {}: {e}", p.display()));
                return None;
            }
        };
        let parses = lettre::transport::smtp::client::Certificate::from_pem(text.as_bytes());
        if !text.contains("-----BEGIN CERTIFICATE-----") || parses.is_err() {
            self.problem(
                path,
                format!(
                    "{} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"): give the CA that signs the SMTP server's certificate",
                    p.display()
                ),
            );
            return None;
        }
        Some(text)
    }

    pub(super) fn required_secret(
        &mut self,
        path: &str,
        key: &str,
        raw: Option<&toml::Value>,
        what: &str,
    ) -> Option<SecretString> {
        match raw {
            Some(v) => self.secret(&format!("{path}.{key}"), v),
            None => {
                self.problem(
                    &format!("{path}.{key}"),
                    format!("missing: {what}, as {{ env = \"NAME\" }} or {{ file = \"path\" }}"),
                );
                None
            }
        }
    }

    pub(super) fn required_url(
        &mut self,
        path: &str,
        raw: Option<&toml::Value>,
        what: &str,
    ) -> Option<Url> {
        match raw {
            Some(v) => self.plain_url(&format!("{path}.url"), v),
            None => {
                self.problem(&format!("{path}.url"), format!("missing: {what}"));
                None
            }
        }
    }

    pub(super) fn plain_url(&mut self, path: &str, raw: &toml::Value) -> Option<Url> {
        match raw.as_str() {
            Some(s) => self.url(path, s),
            None => {
                self.problem(path, "expected a URL string");
                None
            }
        }
    }
}
