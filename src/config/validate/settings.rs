//! The top-level settings (`interval`, `timeout`, `allowed_algs`, `state_dir`, …) and the
//! `[api]` and `[telemetry]` tables, validated.
//!
//! Defaults are the `DEFAULT_*` constants of `config`; nothing here touches the
//! filesystem (`state_dir` is only resolved, never created) or the environment: files
//! (`ca_file`, certificates) and the `OTEL_*` variables come through the secret reader.

use super::{Validator, is_label};
use crate::config::otlp::{self, OtlpTable, PemKind, Protocol};
use crate::config::raw::{RawApi, RawConfig, RawOtlp, RawTelemetry};
use crate::config::{
    ApiConfig, DEFAULT_API_LISTEN, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_SILENCE, DEFAULT_RETENTION,
    DEFAULT_STATE_DIR, MAX_MAX_SILENCE, Settings, Shard, TelemetryConfig,
};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const KNOWN_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
const MIN_RETENTION: Duration = Duration::from_secs(3600);

impl Validator<'_> {
    pub(super) fn telemetry(&mut self, raw: Option<&RawTelemetry>) -> TelemetryConfig {
        let per_view_histograms = raw.is_some_and(|t| t.per_view_histograms);
        let table = raw
            .and_then(|t| t.otlp.as_ref())
            .map(|o| self.otlp_table(o));
        // The standard variables, through the reader (the process's only in `load`).
        let env: BTreeMap<String, String> = otlp::variables()
            .into_iter()
            .filter_map(|name| self.secrets.otel_env(&name).map(|v| (name, v)))
            .collect();
        let read = |p: &Path| self.secrets.file(p);
        let otlp = match otlp::resolve(table.as_ref(), &env, &read) {
            Ok(o) => o,
            Err(problems) => {
                // A key the table already has a problem with (an endpoint that is not a
                // URL is also "missing") is not reported twice.
                for p in problems {
                    if !self.has_problem_at(&p.path) {
                        self.problem(&p.path, p.message);
                    }
                }
                None
            }
        };
        TelemetryConfig {
            otlp,
            per_view_histograms,
        }
    }

    /// `[telemetry.otlp]` on its own (the variables are merged in by `otlp::resolve`).
    fn otlp_table(&mut self, raw: &RawOtlp) -> OtlpTable {
        let endpoint = |v: &mut Self, key: &str, value: Option<&str>| {
            v.url(&format!("telemetry.otlp.{key}"), value?)
        };
        let protocol = raw.protocol.as_deref().and_then(|p| {
            Protocol::parse(p).or_else(|| {
                self.problem(
                    "telemetry.otlp.protocol",
                    format!("`{p}` is not a protocol keycanary exports with: use \"http/protobuf\" (the default, usually port 4318) or \"grpc\" (usually 4317)"),
                );
                None
            })
        });
        let mut headers = Vec::new();
        for (name, value) in &raw.headers {
            let path = format!("telemetry.otlp.headers.{name}");
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                self.problem(&path, format!("`{name}` is not a valid header name"));
                continue;
            }
            let value = match value {
                toml::Value::String(v) => Some(SecretString::from(v.clone())),
                other => self.secret(&path, other),
            };
            if let Some(v) = value {
                if http::HeaderValue::from_str(secrecy::ExposeSecret::expose_secret(&v)).is_err() {
                    self.problem(&path, "the value is not a valid header value");
                    continue;
                }
                headers.push((lower, v));
            }
        }
        let timeout = raw.timeout.as_deref().map(|t| {
            let d = self.duration("telemetry.otlp.timeout", Some(t), otlp::DEFAULT_TIMEOUT);
            if d.is_zero() || d > otlp::MAX_TIMEOUT {
                self.problem(
                    "telemetry.otlp.timeout",
                    "must be more than 0s and at most 10m",
                );
            }
            d.min(otlp::MAX_TIMEOUT)
        });
        let ca_pem = raw.ca_file.as_deref().and_then(|f| {
            let p = self.base_dir.join(f);
            let problem = match self.secrets.file(&p) {
                Ok(text) => match otlp::check_pem(&text, PemKind::Certificates) {
                    Ok(()) => return Some(text),
                    Err(e) => format!(
                        "{} {e}: give the CA that signs the collector's certificate",
                        p.display()
                    ),
                },
                Err(e) => format!("cannot read {}: {e}", p.display()),
            };
            self.problem("telemetry.otlp.ca_file", problem);
            None
        });
        let pem = |v: &mut Self, key: &str, raw: Option<&toml::Value>, kind: PemKind| {
            let path = format!("telemetry.otlp.{key}");
            let secret = v.secret(&path, raw?)?;
            match otlp::check_pem(secrecy::ExposeSecret::expose_secret(&secret), kind) {
                Ok(()) => Some(secret),
                Err(e) => {
                    v.problem(&path, format!("the secret {e}"));
                    None
                }
            }
        };
        let client_certificate = pem(
            self,
            "client_certificate",
            raw.client_certificate.as_ref(),
            PemKind::Certificates,
        );
        let client_key = pem(
            self,
            "client_key",
            raw.client_key.as_ref(),
            PemKind::PrivateKey,
        );
        let service_name = match raw.service_name.as_deref().map(str::trim) {
            None => None,
            Some("") => {
                self.problem(
                    "telemetry.otlp.service_name",
                    "empty: remove it for the default \"keycanary\"",
                );
                None
            }
            Some(s) => Some(s.to_owned()),
        };
        OtlpTable {
            endpoint: endpoint(self, "endpoint", raw.endpoint.as_deref()),
            traces_endpoint: endpoint(self, "traces_endpoint", raw.traces_endpoint.as_deref()),
            metrics_endpoint: endpoint(self, "metrics_endpoint", raw.metrics_endpoint.as_deref()),
            protocol,
            headers,
            timeout,
            ca_pem,
            client_certificate,
            client_key,
            service_name,
        }
    }

    pub(super) fn api(&mut self, raw: Option<&RawApi>) -> ApiConfig {
        let default: SocketAddr = DEFAULT_API_LISTEN.parse().expect("static address");
        let listen = match raw.and_then(|a| a.listen.as_deref()) {
            None => default,
            Some(s) => s.parse().unwrap_or_else(|_| {
                self.problem(
                    "api.listen",
                    format!("`{s}` is not an address: write it like \"{DEFAULT_API_LISTEN}\""),
                );
                default
            }),
        };
        let bearer_token = raw
            .and_then(|a| a.bearer_token.as_ref())
            .and_then(|t| self.secret("api.bearer_token", t));
        let mut allowed_hosts = Vec::new();
        for (i, h) in raw
            .and_then(|a| a.allowed_hosts.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let host = h.trim().trim_end_matches('.').to_ascii_lowercase();
            let is_name = !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if is_name {
                allowed_hosts.push(host);
            } else {
                self.problem(
                    &format!("api.allowed_hosts[{i}]"),
                    format!("`{h}` is not a host name: write the name clients use in URLs, without scheme or port, like \"keycanary.internal\""),
                );
            }
        }
        let max_silence = self.duration(
            "api.max_silence",
            raw.and_then(|a| a.max_silence.as_deref()),
            DEFAULT_MAX_SILENCE,
        );
        if max_silence.is_zero() || max_silence > MAX_MAX_SILENCE {
            self.problem("api.max_silence", "must be more than 0s and at most 365d");
        }
        ApiConfig {
            listen,
            bearer_token,
            allowed_hosts,
            max_silence: max_silence.min(MAX_MAX_SILENCE),
        }
    }

    pub(super) fn settings(&mut self, raw: &RawConfig) -> Settings {
        let interval = self.duration("interval", raw.interval.as_deref(), Duration::from_secs(30));
        if interval < Duration::from_secs(1) {
            self.problem("interval", "must be at least 1s");
        }
        let timeout = self.duration(
            "timeout",
            raw.timeout.as_deref(),
            Duration::from_secs(10).min(interval),
        );
        if timeout.is_zero() || timeout > interval {
            self.problem("timeout", "must be more than 0s and at most the interval");
        }
        let location = raw.location.clone().unwrap_or_else(|| "default".to_owned());
        if !is_label(&location) {
            self.problem(
                "location",
                format!("`{location}` is not a valid label: use letters, digits, `_`, `-` or `.`"),
            );
        }
        let allowed_algs = raw
            .allowed_algs
            .clone()
            .unwrap_or_else(|| vec!["RS256".into(), "ES256".into(), "EdDSA".into()]);
        for (i, alg) in allowed_algs.iter().enumerate() {
            if alg == "none" || alg.starts_with("HS") {
                self.problem(&format!("allowed_algs[{i}]"), format!("`{alg}` cannot be allowed: tokens must be verifiable with a public key from the JWKS"));
            } else if !KNOWN_ALGS.contains(&alg.as_str()) {
                self.problem(
                    &format!("allowed_algs[{i}]"),
                    format!("unknown alg `{alg}`: use one of {}", KNOWN_ALGS.join(", ")),
                );
            }
        }
        if allowed_algs.is_empty() {
            self.problem("allowed_algs", "must list at least one alg");
        }
        Settings {
            interval,
            timeout,
            location,
            allowed_algs,
            max_clock_skew: self.duration(
                "max_clock_skew",
                raw.max_clock_skew.as_deref(),
                Duration::from_secs(60),
            ),
            rotation_lead_time: self.duration(
                "rotation_lead_time",
                raw.rotation_lead_time.as_deref(),
                Duration::from_secs(3600),
            ),
            max_body_bytes: raw.max_body_bytes.unwrap_or(1024 * 1024),
            max_redirects: raw.max_redirects.unwrap_or(3),
            gate_margin: self.duration("gate_margin", raw.gate_margin.as_deref(), Duration::ZERO),
            tls_expiry_warning: self.duration(
                "tls_expiry_warning",
                raw.tls_expiry_warning.as_deref(),
                Duration::from_secs(14 * 24 * 3600),
            ),
            state_dir: self.state_dir(raw.state_dir.as_deref()),
            retention: self.retention(raw.retention.as_deref()),
            max_concurrency: match raw.max_concurrency {
                None => DEFAULT_MAX_CONCURRENCY,
                Some(0) => {
                    self.problem(
                        "max_concurrency",
                        "must be at least 1 (tenants probed at once)",
                    );
                    1
                }
                Some(n) => n,
            },
            shard: raw.shard.as_deref().and_then(|s| match Shard::parse(s) {
                Ok(shard) => Some(shard),
                Err(message) => {
                    self.problem("shard", message);
                    None
                }
            }),
        }
    }

    /// `state_dir`, resolved against the config file's directory.
    pub(super) fn state_dir(&mut self, raw: Option<&str>) -> PathBuf {
        let raw = raw.unwrap_or(DEFAULT_STATE_DIR);
        if raw.trim().is_empty() {
            self.problem(
                "state_dir",
                format!("must not be empty: name a directory, e.g. \"{DEFAULT_STATE_DIR}\""),
            );
        }
        self.base_dir.join(raw)
    }

    pub(super) fn retention(&mut self, raw: Option<&str>) -> Duration {
        let retention = self.duration("retention", raw, DEFAULT_RETENTION);
        if retention < MIN_RETENTION {
            self.problem(
                "retention",
                "must be at least 1h: history rules look back over token lifetimes and rotations",
            );
        }
        retention
    }
}
