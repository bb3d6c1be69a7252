//! `probes.toml`: raw serde structs, then validation into a [`Config`] the rest of the
//! program trusts.
//!
//! Validation reports **every** problem at once, each with its TOML path
//! (`tenant[0].domain[1].jwks[0].url`) and what to do. Unknown keys are collected the same
//! way (with `serde_ignored`) rather than aborting at the first one. Secrets are read from
//! the environment or a file here and held as [`SecretString`] from then on.
//!
//! This module does not fetch anything and holds no runtime state.

use crate::detect::profiles::{self, ClientProfile, OnFetchFailure};
use crate::model::ViewId;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

// ---------------------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    /// Start the built-in lab in-process before probing.
    pub lab: Option<LabConfig>,
    /// `[api]`: the HTTP API and status page served by `run`.
    pub api: ApiConfig,
    /// Every profile that can be named: built-ins plus user-defined ones.
    pub profiles: Vec<ClientProfile>,
    pub tenants: Vec<Tenant>,
    /// `[alerting]`: when findings page, and where to.
    pub alerting: Alerting,
    /// `[telemetry]`: where traces go (off unless configured).
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// `[telemetry.otlp]`, or `OTEL_EXPORTER_OTLP_ENDPOINT` when the table is absent.
    pub otlp: Option<OtlpConfig>,
}

/// Export to `OTEL_EXPORTER_OTLP_ENDPOINT` (read with `env`) when `[telemetry.otlp]` is
/// absent; `Ok(None)` when the variable is unset or empty. Kept out of [`Config::from_toml_str`]
/// because that variable is not a secret and the secret lookup may answer any name.
pub fn otlp_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<OtlpConfig>, String> {
    const VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    let Some(raw) = env(VAR).filter(|e| !e.trim().is_empty()) else {
        return Ok(None);
    };
    match Url::parse(raw.trim()) {
        Ok(endpoint) if endpoint.scheme() == "http" && endpoint.host().is_some() => {
            Ok(Some(OtlpConfig {
                endpoint,
                headers: Vec::new(),
                service_name: DEFAULT_SERVICE_NAME.to_owned(),
            }))
        }
        _ => Err(format!(
            "{VAR} `{raw}` is not an http URL with a host: fix it, unset it, or configure [telemetry.otlp]"
        )),
    }
}

/// Where spans are exported (OTLP over gRPC).
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub endpoint: Url,
    /// gRPC metadata sent with every export (e.g. an API key); values may be secrets.
    pub headers: Vec<(String, SecretString)>,
    /// `service.name` of the resource; default `keycanary`.
    pub service_name: String,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub interval: Duration,
    pub timeout: Duration,
    pub location: String,
    pub allowed_algs: Vec<String>,
    pub max_clock_skew: Duration,
    pub rotation_lead_time: Duration,
    pub max_body_bytes: u64,
    pub max_redirects: usize,
    /// `tls_certificate` fires when a TLS leaf expires within this; default 14 days.
    pub tls_expiry_warning: Duration,
    /// Extra wait on top of the staleness budget before the rotation gate says safe.
    pub gate_margin: Duration,
    /// Where `run` keeps its durable state (SQLite); default `.state` next to the config
    /// file (relative paths resolve against the config file's directory).
    pub state_dir: PathBuf,
    /// How long detection history and dead letters are kept; default 7 days.
    pub retention: Duration,
    /// Most tenants `run` probes at the same time; default 16.
    pub max_concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct LabConfig {
    pub listen: SocketAddr,
}

/// Where `run` serves the HTTP API, and the optional bearer token guarding it.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Default [`DEFAULT_API_LISTEN`] (loopback). Any address is accepted; `run` warns
    /// when it is not a loopback one.
    pub listen: SocketAddr,
    /// When set, every route but `/healthz` and `/readyz` needs `Authorization: Bearer …`.
    pub bearer_token: Option<SecretString>,
}

pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:9464";
/// `state_dir` when unset, relative to the config file.
pub const DEFAULT_STATE_DIR: &str = ".state";
/// `retention` when unset: a week of history.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// `service.name` of exported traces when unset.
pub const DEFAULT_SERVICE_NAME: &str = "keycanary";
/// `max_concurrency` when unset.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
const MIN_RETENTION: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub client_profiles: Vec<String>,
    /// Longest lifetime of tokens this tenant issues (retirement gate); default 1 h.
    pub max_token_lifetime: Duration,
    pub domains: Vec<Domain>,
}

#[derive(Debug, Clone)]
pub struct Domain {
    pub name: String,
    pub issuer: Url,
    pub discovery: bool,
    /// Domains with the same group must behave alike (same keys, same caching).
    pub group: String,
    pub login: Option<Login>,
    pub jwks: Vec<JwksPath>,
    pub origin: Origin,
}

impl Domain {
    /// Where discovery is fetched from.
    pub fn discovery_url(&self) -> Url {
        let mut s = self.issuer.as_str().trim_end_matches('/').to_owned();
        s.push_str("/.well-known/openid-configuration");
        Url::parse(&s).unwrap_or_else(|_| self.issuer.clone())
    }

    /// The views of this domain, in the order they are probed and reported: each JWKS
    /// path once per pinned edge (or once, unpinned), then the origin view.
    pub fn views(&self) -> Vec<ConfiguredView<'_>> {
        let mut out = Vec::new();
        for path in &self.jwks {
            let edges: Vec<Option<IpAddr>> = if path.edges.is_empty() {
                vec![None]
            } else {
                path.edges.iter().copied().map(Some).collect()
            };
            for edge in edges {
                out.push(ConfiguredView {
                    id: ViewId {
                        path: path.name.clone(),
                        edge: edge.map(|ip| ip.to_string()),
                    },
                    path: Some(path),
                    edge,
                });
            }
        }
        out.push(ConfiguredView {
            id: ViewId::origin(),
            path: None,
            edge: None,
        });
        out
    }
}

/// One view of a configured domain (see [`Domain::views`]).
#[derive(Debug, Clone)]
pub struct ConfiguredView<'a> {
    pub id: ViewId,
    /// The JWKS path; `None` for the origin view.
    pub path: Option<&'a JwksPath>,
    /// The pinned edge address.
    pub edge: Option<IpAddr>,
}

#[derive(Debug, Clone)]
pub struct Login {
    pub grant: Grant,
    /// Explicit token URL; `None` means the discovery document's `token_endpoint`.
    pub token_url: Option<Url>,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub auth: ClientAuth,
    pub resource: Option<String>,
    pub audience: Option<String>,
    pub scope: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Grant {
    ClientCredentials,
    Password {
        username: String,
        password: SecretString,
    },
    RefreshToken {
        refresh_token: SecretString,
    },
}

impl Grant {
    pub fn as_str(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::Password { .. } => "password",
            Grant::RefreshToken { .. } => "refresh_token",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Clone)]
pub struct JwksPath {
    pub name: String,
    /// `None`: the discovery document's `jwks_uri`.
    pub url: Option<Url>,
    /// Pin requests to these addresses (Host and SNI kept). Empty: normal DNS.
    pub edges: Vec<IpAddr>,
}

/// How the cache-bypassing origin view is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An explicit URL that no cache answers.
    Url(Url),
    /// The first JWKS path's URL with this query parameter set to a fresh random value.
    Bust { param: String },
}

/// Name of the origin view's path in reports.
pub const ORIGIN_PATH: &str = "origin";

/// Names and labels (tenants, domains, paths, location): non-empty, letters, digits, `_`,
/// `-` or `.`, so they are safe as metric labels and in URLs.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// TOML path, e.g. `tenant[0].domain[1].login.client_secret`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML for keycanary: {message}")]
    Syntax { path: String, message: String },
    #[error("{} has {} problem(s):\n{}", .path, .problems.len(), list(.problems))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw structs (what serde reads)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    interval: Option<String>,
    timeout: Option<String>,
    location: Option<String>,
    allowed_algs: Option<Vec<String>>,
    max_clock_skew: Option<String>,
    rotation_lead_time: Option<String>,
    max_body_bytes: Option<u64>,
    max_redirects: Option<usize>,
    tls_expiry_warning: Option<String>,
    gate_margin: Option<String>,
    state_dir: Option<String>,
    retention: Option<String>,
    max_concurrency: Option<usize>,
    client_profiles: Option<Vec<String>>,
    lab: Option<RawLab>,
    api: Option<RawApi>,
    telemetry: Option<RawTelemetry>,
    #[serde(default)]
    profile: Vec<RawProfile>,
    #[serde(default)]
    tenant: Vec<RawTenant>,
    alerting: Option<RawAlerting>,
}

#[derive(Debug, Deserialize)]
struct RawLab {
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawApi {
    listen: Option<String>,
    bearer_token: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
struct RawTelemetry {
    otlp: Option<RawOtlp>,
}

#[derive(Debug, Deserialize)]
struct RawOtlp {
    endpoint: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, toml::Value>,
    service_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawProfile {
    name: Option<String>,
    ttl: Option<String>,
    refetch_on_unknown_kid: Option<bool>,
    cooldown: Option<String>,
    honours_headers: Option<bool>,
    on_fetch_failure: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawTenant {
    name: Option<String>,
    client_profiles: Option<Vec<String>>,
    max_token_lifetime: Option<String>,
    #[serde(default)]
    domain: Vec<RawDomain>,
}

#[derive(Debug, Deserialize)]
struct RawDomain {
    name: Option<String>,
    issuer: Option<String>,
    discovery: Option<bool>,
    group: Option<String>,
    login: Option<RawLogin>,
    #[serde(default)]
    jwks: Vec<RawJwks>,
    origin: Option<RawOrigin>,
}

#[derive(Debug, Deserialize)]
struct RawLogin {
    grant: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<toml::Value>,
    auth: Option<String>,
    resource: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    username: Option<String>,
    password: Option<toml::Value>,
    refresh_token: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
struct RawJwks {
    name: Option<String>,
    url: Option<String>,
    #[serde(default)]
    edges: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawOrigin {
    url: Option<String>,
    bust_param: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

/// Where secrets are looked up: environment variables, and the directory that relative
/// `{ file = "…" }` paths are resolved against.
pub struct SecretSource<'a> {
    pub base_dir: &'a Path,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl SecretSource<'_> {
    /// The process environment, files relative to `base_dir`.
    pub fn process(base_dir: &Path) -> SecretSource<'_> {
        SecretSource {
            base_dir,
            env: &|name| std::env::var(name).ok(),
        }
    }
}

/// Reads and validates a config file. Relative secret files resolve against its directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Config::from_toml_str(
        &text,
        &path.display().to_string(),
        &SecretSource::process(base),
    )
}

impl Config {
    /// Parses and validates config text. `origin` names the text in messages.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        secrets: &SecretSource<'_>,
    ) -> Result<Config, ConfigError> {
        let mut unknown = Vec::new();
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: one_line(&e.to_string()),
        })?;
        let raw: RawConfig = serde_ignored::deserialize(de, |p| unknown.push(toml_path(&p)))
            .map_err(|e| ConfigError::Syntax {
                path: origin.to_owned(),
                message: one_line(&e.to_string()),
            })?;
        let mut v = Validator {
            problems: Vec::new(),
            secrets,
        };
        for path in unknown {
            let (parent, key) = match path.rsplit_once('.') {
                Some((p, k)) => (p.to_owned(), k.to_owned()),
                None => (String::new(), path.clone()),
            };
            v.problem(&parent, format!("unknown key `{key}`: check the spelling against the probes.toml reference in README.md"));
        }
        let config = v.config(raw);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: origin.to_owned(),
                problems: v.problems,
            })
        }
    }

    pub fn profile(&self, name: &str) -> Option<&ClientProfile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The client profiles that matter for `tenant` (its `client_profiles`, in order).
    pub fn tenant_profiles(&self, tenant: &Tenant) -> Vec<&ClientProfile> {
        tenant
            .client_profiles
            .iter()
            .filter_map(|n| self.profile(n))
            .collect()
    }

    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.name == name)
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Formats a serde_ignored path the way users write TOML paths: `tenant[0].domain[1].key`.
fn toml_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", toml_path(parent)),
        P::Map { parent, key } => {
            let parent = toml_path(parent);
            if parent.is_empty() {
                key.to_string()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            toml_path(parent)
        }
    }
}

const KNOWN_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

struct Validator<'a> {
    problems: Vec<Problem>,
    secrets: &'a SecretSource<'a>,
}

impl Validator<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn duration(&mut self, path: &str, raw: Option<&str>, default: Duration) -> Duration {
        let Some(s) = raw else { return default };
        match humantime::parse_duration(s) {
            Ok(d) => d,
            Err(e) => {
                self.problem(
                    path,
                    format!(
                        "`{s}` is not a duration ({e}): write it like \"30s\", \"5m\" or \"1h\""
                    ),
                );
                default
            }
        }
    }

    fn optional_duration(&mut self, path: &str, raw: Option<&str>) -> Option<Duration> {
        raw.map(|s| self.duration(path, Some(s), Duration::ZERO))
    }

    fn label(&mut self, path: &str, raw: Option<&str>, what: &str) -> String {
        match raw {
            None => {
                self.problem(path, format!("missing: every {what} needs a `name`"));
                String::new()
            }
            Some(s) if !is_label(s) => {
                self.problem(
                    path,
                    format!("`{s}` is not a valid name: use letters, digits, `_`, `-` or `.`"),
                );
                s.to_owned()
            }
            Some(s) => s.to_owned(),
        }
    }

    fn url(&mut self, path: &str, raw: &str) -> Option<Url> {
        match Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                self.problem(path, format!("`{raw}` is not an http(s) URL with a host"));
                None
            }
            Err(e) => {
                self.problem(path, format!("`{raw}` is not a URL ({e})"));
                None
            }
        }
    }

    fn secret(&mut self, path: &str, raw: &toml::Value) -> Option<SecretString> {
        let table = match raw {
            toml::Value::Table(t) => t,
            toml::Value::String(_) => {
                self.problem(path, "secrets are never written inline: use { env = \"NAME\" } or { file = \"path\" }");
                return None;
            }
            _ => {
                self.problem(path, "expected { env = \"NAME\" } or { file = \"path\" }");
                return None;
            }
        };
        let env = table.get("env").and_then(toml::Value::as_str);
        let file = table.get("file").and_then(toml::Value::as_str);
        for key in table.keys().filter(|k| *k != "env" && *k != "file") {
            self.problem(path, format!("unknown key `{key}` in a secret: use {{ env = \"NAME\" }} or {{ file = \"path\" }}"));
        }
        match (env, file) {
            (Some(name), None) => match (self.secrets.env)(name) {
                Some(v) if !v.is_empty() => Some(SecretString::from(v)),
                _ => {
                    self.problem(path, format!("environment variable {name} is not set: set it, or use {{ file = \"path\" }}"));
                    None
                }
            },
            (None, Some(f)) => {
                let p = self.secrets.base_dir.join(f);
                match std::fs::read_to_string(&p) {
                    Ok(v) if !v.trim().is_empty() => Some(SecretString::from(
                        v.trim_end_matches(['\n', '\r']).to_owned(),
                    )),
                    Ok(_) => {
                        self.problem(path, format!("secret file {} is empty", p.display()));
                        None
                    }
                    Err(e) => {
                        self.problem(
                            path,
                            format!("cannot read secret file {}: {e}", p.display()),
                        );
                        None
                    }
                }
            }
            _ => {
                self.problem(
                    path,
                    "give exactly one of { env = \"NAME\" } or { file = \"path\" }",
                );
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let settings = self.settings(&raw);
        let lab = raw.lab.as_ref().map(|l| {
            let listen = l.listen.as_deref().unwrap_or("127.0.0.1:8765");
            let listen = listen.parse().unwrap_or_else(|_| {
                self.problem(
                    "lab.listen",
                    format!("`{listen}` is not an address: write it like \"127.0.0.1:8765\""),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            });
            LabConfig { listen }
        });
        let api = self.api(raw.api.as_ref());
        let telemetry = self.telemetry(raw.telemetry.as_ref());
        let profiles = self.profiles(&raw.profile);
        let known: BTreeSet<String> = profiles.iter().map(|p| p.name.clone()).collect();
        let default_profiles = match &raw.client_profiles {
            Some(names) => self.profile_names("client_profiles", names, &known),
            None => profiles::DEFAULT_PROFILES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        if raw.tenant.is_empty() {
            self.problem(
                "tenant",
                "no tenants: add at least one [[tenant]] with a [[tenant.domain]]",
            );
        }
        let mut seen = BTreeSet::new();
        let tenants: Vec<Tenant> = raw
            .tenant
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let tenant = self.tenant(&format!("tenant[{i}]"), t, &known, &default_profiles);
                if !tenant.name.is_empty() && !seen.insert(tenant.name.clone()) {
                    self.problem(
                        &format!("tenant[{i}].name"),
                        format!("tenant `{}` is defined twice", tenant.name),
                    );
                }
                tenant
            })
            .collect();
        let tenant_names: BTreeSet<String> = tenants.iter().map(|t| t.name.clone()).collect();
        let alerting = self.alerting(raw.alerting.as_ref(), &tenant_names);
        Config {
            settings,
            lab,
            api,
            profiles,
            tenants,
            alerting,
            telemetry,
        }
    }

    fn telemetry(&mut self, raw: Option<&RawTelemetry>) -> TelemetryConfig {
        let Some(raw) = raw.and_then(|t| t.otlp.as_ref()) else {
            return TelemetryConfig::default();
        };
        let endpoint = match raw.endpoint.as_deref() {
            Some(e) => self.url("telemetry.otlp.endpoint", e).filter(|u| {
                let plain = u.scheme() == "http";
                if !plain {
                    self.problem(
                        "telemetry.otlp.endpoint",
                        "https is not supported yet: export to a local collector over http",
                    );
                }
                plain
            }),
            None => {
                self.problem(
                    "telemetry.otlp.endpoint",
                    "missing: set the collector's OTLP/gRPC address, e.g. \"http://127.0.0.1:4317\", or remove [telemetry.otlp]",
                );
                None
            }
        };
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
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        let service_name = match raw.service_name.as_deref().map(str::trim) {
            None => DEFAULT_SERVICE_NAME.to_owned(),
            Some("") => {
                self.problem(
                    "telemetry.otlp.service_name",
                    "empty: remove it for the default \"keycanary\"",
                );
                DEFAULT_SERVICE_NAME.to_owned()
            }
            Some(s) => s.to_owned(),
        };
        TelemetryConfig {
            otlp: endpoint.map(|endpoint| OtlpConfig {
                endpoint,
                headers,
                service_name,
            }),
        }
    }

    fn api(&mut self, raw: Option<&RawApi>) -> ApiConfig {
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
        ApiConfig {
            listen,
            bearer_token,
        }
    }

    fn settings(&mut self, raw: &RawConfig) -> Settings {
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
        }
    }

    /// `state_dir`, resolved against the config file's directory.
    fn state_dir(&mut self, raw: Option<&str>) -> PathBuf {
        let raw = raw.unwrap_or(DEFAULT_STATE_DIR);
        if raw.trim().is_empty() {
            self.problem(
                "state_dir",
                format!("must not be empty: name a directory, e.g. \"{DEFAULT_STATE_DIR}\""),
            );
        }
        self.secrets.base_dir.join(raw)
    }

    fn retention(&mut self, raw: Option<&str>) -> Duration {
        let retention = self.duration("retention", raw, DEFAULT_RETENTION);
        if retention < MIN_RETENTION {
            self.problem(
                "retention",
                "must be at least 1h: history rules look back over token lifetimes and rotations",
            );
        }
        retention
    }

    fn profiles(&mut self, raw: &[RawProfile]) -> Vec<ClientProfile> {
        let mut all = profiles::builtin();
        for (i, p) in raw.iter().enumerate() {
            let path = format!("profile[{i}]");
            let name = self.label(&format!("{path}.name"), p.name.as_deref(), "[[profile]]");
            if all.iter().any(|q| q.name == name) {
                self.problem(
                    &format!("{path}.name"),
                    format!("a profile named `{name}` already exists: choose another name"),
                );
            }
            let on_fetch_failure = match p.on_fetch_failure.as_deref() {
                None | Some("error") => OnFetchFailure::Error,
                Some("keep_last_good") => OnFetchFailure::KeepLastGood,
                Some("clear_cache") => OnFetchFailure::ClearCache,
                Some(other) => {
                    self.problem(
                        &format!("{path}.on_fetch_failure"),
                        format!("`{other}` is not one of error, keep_last_good, clear_cache"),
                    );
                    OnFetchFailure::Error
                }
            };
            let Some(refetch) = p.refetch_on_unknown_kid else {
                self.problem(
                    &format!("{path}.refetch_on_unknown_kid"),
                    "missing: say true or false",
                );
                continue;
            };
            let profile = ClientProfile {
                name,
                ttl: self.optional_duration(&format!("{path}.ttl"), p.ttl.as_deref()),
                refetch_on_unknown_kid: refetch,
                cooldown: self
                    .optional_duration(&format!("{path}.cooldown"), p.cooldown.as_deref()),
                honours_headers: p.honours_headers.unwrap_or(false),
                on_fetch_failure,
            };
            all.push(profile);
        }
        all
    }

    fn profile_names(
        &mut self,
        path: &str,
        names: &[String],
        known: &BTreeSet<String>,
    ) -> Vec<String> {
        for (i, n) in names.iter().enumerate() {
            if !known.contains(n) {
                self.problem(&format!("{path}[{i}]"), format!("unknown client profile `{n}`: use a built-in one (see README) or define it in [[profile]]"));
            }
        }
        names.to_vec()
    }

    fn tenant(
        &mut self,
        path: &str,
        t: &RawTenant,
        known: &BTreeSet<String>,
        default_profiles: &[String],
    ) -> Tenant {
        let name = self.label(&format!("{path}.name"), t.name.as_deref(), "[[tenant]]");
        let client_profiles = match &t.client_profiles {
            Some(names) => self.profile_names(&format!("{path}.client_profiles"), names, known),
            None => default_profiles.to_vec(),
        };
        let max_token_lifetime = self.duration(
            &format!("{path}.max_token_lifetime"),
            t.max_token_lifetime.as_deref(),
            Duration::from_secs(3600),
        );
        if t.domain.is_empty() {
            self.problem(
                &format!("{path}.domain"),
                "no domains: add at least one [[tenant.domain]] with an issuer",
            );
        }
        let mut seen = BTreeSet::new();
        let domains = t
            .domain
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let dpath = format!("{path}.domain[{i}]");
                let domain = self.domain(&dpath, d, &name);
                if !domain.name.is_empty() && !seen.insert(domain.name.clone()) {
                    self.problem(
                        &format!("{dpath}.name"),
                        format!("domain `{}` is defined twice in this tenant", domain.name),
                    );
                }
                domain
            })
            .collect();
        Tenant {
            name,
            client_profiles,
            max_token_lifetime,
            domains,
        }
    }

    fn domain(&mut self, path: &str, d: &RawDomain, tenant: &str) -> Domain {
        let name = self.label(
            &format!("{path}.name"),
            d.name.as_deref(),
            "[[tenant.domain]]",
        );
        let issuer = match d.issuer.as_deref() {
            Some(s) => self.url(&format!("{path}.issuer"), s),
            None => {
                self.problem(
                    &format!("{path}.issuer"),
                    "missing: set the issuer URL this domain serves",
                );
                None
            }
        };
        let issuer =
            issuer.unwrap_or_else(|| Url::parse("http://invalid.invalid/").expect("static URL"));
        let discovery = d.discovery.unwrap_or(true);
        let group = match d.group.as_deref() {
            Some(g) => self.label(&format!("{path}.group"), Some(g), "group"),
            None => tenant.to_owned(),
        };
        let login = d
            .login
            .as_ref()
            .map(|l| self.login(&format!("{path}.login"), l, discovery));
        if d.jwks.is_empty() {
            self.problem(&format!("{path}.jwks"), "no JWKS paths: add [[tenant.domain.jwks]] with a name (and a url, unless discovery's jwks_uri is meant)");
        }
        let mut seen = BTreeSet::new();
        let jwks: Vec<JwksPath> = d
            .jwks
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let jpath = format!("{path}.jwks[{i}]");
                let p = self.jwks(&jpath, j, discovery);
                if p.name == ORIGIN_PATH {
                    self.problem(&format!("{jpath}.name"), "`origin` is reserved for the origin view: configure it in [tenant.domain.origin]");
                } else if !p.name.is_empty() && !seen.insert(p.name.clone()) {
                    self.problem(&format!("{jpath}.name"), format!("JWKS path `{}` is defined twice in this domain", p.name));
                }
                p
            })
            .collect();
        let origin = match &d.origin {
            Some(RawOrigin {
                url: Some(u),
                bust_param: None,
            }) => self.url(&format!("{path}.origin.url"), u).map(Origin::Url),
            Some(RawOrigin {
                url: None,
                bust_param: Some(p),
            }) if !p.is_empty() => Some(Origin::Bust { param: p.clone() }),
            None
            | Some(RawOrigin {
                url: None,
                bust_param: None,
            }) => None,
            Some(_) => {
                self.problem(&format!("{path}.origin"), "give either `url` (an origin URL no cache answers) or a non-empty `bust_param`, not both");
                None
            }
        };
        let origin = origin.unwrap_or_else(|| Origin::Bust {
            param: "keycanary_nocache".to_owned(),
        });
        Domain {
            name,
            issuer,
            discovery,
            group,
            login,
            jwks,
            origin,
        }
    }

    fn jwks(&mut self, path: &str, j: &RawJwks, discovery: bool) -> JwksPath {
        let name = self.label(
            &format!("{path}.name"),
            j.name.as_deref(),
            "[[tenant.domain.jwks]]",
        );
        let url = match j.url.as_deref() {
            Some(s) => self.url(&format!("{path}.url"), s),
            None => {
                if !discovery {
                    self.problem(
                        &format!("{path}.url"),
                        "missing: with discovery = false every JWKS path needs a url",
                    );
                }
                None
            }
        };
        let mut edges = Vec::new();
        for (i, e) in j.edges.iter().enumerate() {
            match e.parse::<IpAddr>() {
                Ok(ip) => edges.push(ip),
                Err(_) => self.problem(&format!("{path}.edges[{i}]"), format!("`{e}` is not an IP address: edges are addresses like \"192.0.2.10\" (the port comes from the url)")),
            }
        }
        if !edges.is_empty()
            && let Some(u) = &url
            && !matches!(u.host(), Some(url::Host::Domain(_)))
        {
            self.problem(
                &format!("{path}.edges"),
                "pinning edges needs a url with a host name, not an address",
            );
        }
        JwksPath { name, url, edges }
    }

    fn login(&mut self, path: &str, l: &RawLogin, discovery: bool) -> Login {
        let secret = |v: &mut Self, key: &str, raw: &Option<toml::Value>| {
            raw.as_ref()
                .and_then(|r| v.secret(&format!("{path}.{key}"), r))
        };
        let client_secret = secret(self, "client_secret", &l.client_secret);
        let grant = match l.grant.as_deref() {
            None | Some("client_credentials") => {
                if l.client_secret.is_none() {
                    self.problem(&format!("{path}.client_secret"), "missing: client_credentials needs a client_secret ({ env = \"NAME\" } or { file = \"path\" })");
                }
                Grant::ClientCredentials
            }
            Some("password") => {
                let username = l.username.clone().unwrap_or_default();
                if username.is_empty() {
                    self.problem(
                        &format!("{path}.username"),
                        "missing: the password grant needs a username",
                    );
                }
                let password = secret(self, "password", &l.password);
                if l.password.is_none() {
                    self.problem(&format!("{path}.password"), "missing: the password grant needs a password ({ env = \"NAME\" } or { file = \"path\" })");
                }
                Grant::Password {
                    username,
                    password: password.unwrap_or_else(|| SecretString::from(String::new())),
                }
            }
            Some("refresh_token") => {
                let token = secret(self, "refresh_token", &l.refresh_token);
                if l.refresh_token.is_none() {
                    self.problem(&format!("{path}.refresh_token"), "missing: the refresh_token grant needs a refresh_token ({ env = \"NAME\" } or { file = \"path\" })");
                }
                Grant::RefreshToken {
                    refresh_token: token.unwrap_or_else(|| SecretString::from(String::new())),
                }
            }
            Some(other) => {
                self.problem(
                    &format!("{path}.grant"),
                    format!("`{other}` is not one of client_credentials, password, refresh_token"),
                );
                Grant::ClientCredentials
            }
        };
        let token_url = match l.token_url.as_deref() {
            Some(s) => self.url(&format!("{path}.token_url"), s),
            None => {
                if !discovery {
                    self.problem(
                        &format!("{path}.token_url"),
                        "missing: with discovery = false the login needs a token_url",
                    );
                }
                None
            }
        };
        let client_id = l.client_id.clone().unwrap_or_default();
        if client_id.is_empty() {
            self.problem(
                &format!("{path}.client_id"),
                "missing: set the client_id keycanary logs in with",
            );
        }
        let auth = match l.auth.as_deref() {
            None | Some("client_secret_basic") => ClientAuth::ClientSecretBasic,
            Some("client_secret_post") => ClientAuth::ClientSecretPost,
            Some(other) => {
                self.problem(
                    &format!("{path}.auth"),
                    format!("`{other}` is not one of client_secret_basic, client_secret_post"),
                );
                ClientAuth::ClientSecretBasic
            }
        };
        Login {
            grant,
            token_url,
            client_id,
            client_secret,
            auth,
            resource: l.resource.clone(),
            audience: l.audience.clone(),
            scope: l.scope.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// [alerting]: lifecycle policy, channels, routes, silences, maintenance windows
// ---------------------------------------------------------------------------------------

use crate::alert::channel::alertmanager::AlertmanagerConfig;
use crate::alert::channel::email::{EmailConfig, SmtpTls};
use crate::alert::channel::pagerduty::{self, PagerDutyConfig};
use crate::alert::channel::slack::SlackConfig;
use crate::alert::channel::webhook::WebhookConfig;
use crate::alert::channel::{Channel, ChannelConfig};
use crate::alert::{AlertPolicy, GroupBy, MaintenanceWindow, Route, Silence, SubjectPattern};
use crate::model::{Code, Severity, Timestamp};
use secrecy::ExposeSecret;

/// `[alerting]`, validated. Runtime counters live in `alert::AlertState`, never here.
#[derive(Debug, Clone)]
pub struct Alerting {
    pub policy: AlertPolicy,
    /// Linked from every notification that can carry a link.
    pub status_page_url: Option<Url>,
    pub channels: Vec<Channel>,
    pub routes: Vec<Route>,
    /// Silences from probes.toml (ids `config-<n>`); the API adds its own at run time.
    pub silences: Vec<Silence>,
}

impl Alerting {
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawAlerting {
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
    #[serde(rename = "for")]
    for_: Option<String>,
    repeat_interval: Option<String>,
    send_on_resolved: Option<bool>,
    group_by: Option<String>,
    status_page_url: Option<String>,
    #[serde(default)]
    channel: Vec<RawChannel>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    silence: Vec<RawSilence>,
    #[serde(default)]
    maintenance: Vec<RawMaintenance>,
}

#[derive(Debug, Deserialize)]
struct RawChannel {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password: Option<toml::Value>,
    from: Option<String>,
    to: Option<Vec<String>>,
    routing_key: Option<toml::Value>,
    url: Option<toml::Value>,
    hmac_key: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
struct RawRoute {
    channels: Option<Vec<String>>,
    min_severity: Option<String>,
    tenants: Option<Vec<String>>,
    codes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct RawSilence {
    tenant: Option<String>,
    code: Option<String>,
    severity: Option<String>,
    subject: Option<String>,
    starts: Option<String>,
    ends: Option<String>,
    created_by: Option<String>,
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawMaintenance {
    tenants: Option<Vec<String>>,
    starts: Option<String>,
    ends: Option<String>,
    comment: Option<String>,
}

const CHANNEL_TYPES: &str = "email, pagerduty, slack, webhook, alertmanager";

impl Validator<'_> {
    fn alerting(&mut self, raw: Option<&RawAlerting>, tenants: &BTreeSet<String>) -> Alerting {
        let default = RawAlerting::default();
        let raw = raw.unwrap_or(&default);
        let defaults = AlertPolicy::default();
        let threshold = |v: &mut Self, key: &str, value: Option<u32>, default: u32| {
            let n = value.unwrap_or(default);
            if n == 0 {
                v.problem(&format!("alerting.{key}"), "must be at least 1 (rounds)");
            }
            n.max(1)
        };
        let failure_threshold = threshold(
            self,
            "failure_threshold",
            raw.failure_threshold,
            defaults.failure_threshold,
        );
        let success_threshold = threshold(
            self,
            "success_threshold",
            raw.success_threshold,
            defaults.success_threshold,
        );
        let for_duration =
            self.duration("alerting.for", raw.for_.as_deref(), defaults.for_duration);
        let repeat_interval = self.duration(
            "alerting.repeat_interval",
            raw.repeat_interval.as_deref(),
            defaults.repeat_interval,
        );
        let group_by = match raw.group_by.as_deref() {
            None | Some("tenant") => GroupBy::Tenant,
            Some("tenant_code") => GroupBy::TenantCode,
            Some(other) => {
                self.problem(
                    "alerting.group_by",
                    format!("`{other}` is not one of tenant, tenant_code"),
                );
                GroupBy::Tenant
            }
        };
        let status_page_url = raw
            .status_page_url
            .as_deref()
            .and_then(|s| self.url("alerting.status_page_url", s));

        let mut channels: Vec<Channel> = Vec::new();
        for (i, c) in raw.channel.iter().enumerate() {
            let path = format!("alerting.channel[{i}]");
            if let Some(channel) = self.channel(&path, c) {
                if channels.iter().any(|o| o.name == channel.name) {
                    self.problem(
                        &format!("{path}.name"),
                        format!("channel `{}` is defined twice", channel.name),
                    );
                }
                channels.push(channel);
            }
        }
        // Names of every declared channel, valid or not, so one bad channel does not also
        // make each route that names it a problem.
        let channel_names: BTreeSet<&str> = raw
            .channel
            .iter()
            .filter_map(|c| c.name.as_deref())
            .collect();
        let routes = raw
            .route
            .iter()
            .enumerate()
            .map(|(i, r)| self.route(&format!("alerting.route[{i}]"), r, &channel_names, tenants))
            .collect();
        let silences = raw
            .silence
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.silence(i, s, tenants))
            .collect();
        let maintenance = raw
            .maintenance
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let path = format!("alerting.maintenance[{i}]");
                let listed =
                    self.tenant_names(&format!("{path}.tenants"), m.tenants.as_deref(), tenants);
                if m.tenants.as_ref().is_none_or(Vec::is_empty) {
                    self.problem(
                        &format!("{path}.tenants"),
                        "missing: list the tenants under maintenance",
                    );
                }
                let (starts, ends) =
                    self.time_range(&path, m.starts.as_deref(), m.ends.as_deref())?;
                Some(MaintenanceWindow {
                    tenants: listed,
                    starts,
                    ends,
                    comment: m.comment.clone().unwrap_or_default(),
                })
            })
            .collect();
        Alerting {
            policy: AlertPolicy {
                failure_threshold,
                success_threshold,
                for_duration,
                repeat_interval,
                send_on_resolved: raw.send_on_resolved.unwrap_or(defaults.send_on_resolved),
                group_by,
                maintenance,
            },
            status_page_url,
            channels,
            routes,
            silences,
        }
    }

    fn channel(&mut self, path: &str, c: &RawChannel) -> Option<Channel> {
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
                    None => Url::parse(pagerduty::DEFAULT_URL).expect("static URL"),
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

    fn email_channel(&mut self, path: &str, c: &RawChannel) -> EmailConfig {
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
            username: c.username.clone(),
            password,
            from,
            to,
        }
    }

    fn required_secret(
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

    fn required_url(&mut self, path: &str, raw: Option<&toml::Value>, what: &str) -> Option<Url> {
        match raw {
            Some(v) => self.plain_url(&format!("{path}.url"), v),
            None => {
                self.problem(&format!("{path}.url"), format!("missing: {what}"));
                None
            }
        }
    }

    fn plain_url(&mut self, path: &str, raw: &toml::Value) -> Option<Url> {
        match raw.as_str() {
            Some(s) => self.url(path, s),
            None => {
                self.problem(path, "expected a URL string");
                None
            }
        }
    }

    fn route(
        &mut self,
        path: &str,
        r: &RawRoute,
        channels: &BTreeSet<&str>,
        tenants: &BTreeSet<String>,
    ) -> Route {
        let names = r.channels.clone().unwrap_or_default();
        if names.is_empty() {
            self.problem(
                &format!("{path}.channels"),
                "missing: list the channels this route sends to",
            );
        }
        for (i, n) in names.iter().enumerate() {
            if !channels.contains(n.as_str()) {
                self.problem(
                    &format!("{path}.channels[{i}]"),
                    format!("no channel named `{n}`: define it in [[alerting.channel]]"),
                );
            }
        }
        let min_severity = match r.min_severity.as_deref() {
            None => Severity::Low,
            Some(s) => self
                .severity(&format!("{path}.min_severity"), s)
                .unwrap_or(Severity::Low),
        };
        let codes = r
            .codes
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, c)| self.code(&format!("{path}.codes[{i}]"), c))
            .collect();
        Route {
            channels: names,
            min_severity,
            tenants: self.tenant_names(&format!("{path}.tenants"), r.tenants.as_deref(), tenants),
            codes,
        }
    }

    fn silence(&mut self, i: usize, s: &RawSilence, tenants: &BTreeSet<String>) -> Option<Silence> {
        let path = format!("alerting.silence[{i}]");
        if let Some(t) = &s.tenant
            && !tenants.contains(t)
        {
            self.problem(&format!("{path}.tenant"), format!("no tenant named `{t}`"));
        }
        let code = s
            .code
            .as_deref()
            .and_then(|c| self.code(&format!("{path}.code"), c));
        let severity = s
            .severity
            .as_deref()
            .and_then(|v| self.severity(&format!("{path}.severity"), v));
        let subject = s
            .subject
            .as_deref()
            .and_then(|p| match SubjectPattern::parse(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.problem(&format!("{path}.subject"), e);
                    None
                }
            });
        if s.tenant.is_none() && s.code.is_none() && s.severity.is_none() && s.subject.is_none() {
            self.problem(&path, "a silence needs at least one of tenant, code, severity, subject (it would silence everything)");
        }
        let (starts, ends) = self.time_range(&path, s.starts.as_deref(), s.ends.as_deref())?;
        Some(Silence {
            id: format!("config-{i}"),
            tenant: s.tenant.clone(),
            code,
            severity,
            subject,
            starts,
            ends,
            created_by: s
                .created_by
                .clone()
                .unwrap_or_else(|| "probes.toml".to_owned()),
            comment: s.comment.clone().unwrap_or_default(),
        })
    }

    fn tenant_names(
        &mut self,
        path: &str,
        names: Option<&[String]>,
        tenants: &BTreeSet<String>,
    ) -> Vec<String> {
        let names = names.unwrap_or_default();
        for (i, n) in names.iter().enumerate() {
            if !tenants.contains(n) {
                self.problem(&format!("{path}[{i}]"), format!("no tenant named `{n}`"));
            }
        }
        names.to_vec()
    }

    fn severity(&mut self, path: &str, raw: &str) -> Option<Severity> {
        let s = Severity::parse(raw);
        if s.is_none() {
            self.problem(
                path,
                format!("`{raw}` is not one of critical, high, medium, low"),
            );
        }
        s
    }

    fn code(&mut self, path: &str, raw: &str) -> Option<Code> {
        let c = Code::parse(raw);
        if c.is_none() {
            self.problem(
                path,
                format!("unknown finding code `{raw}`: see the finding catalogue in README.md"),
            );
        }
        c
    }

    fn timestamp(&mut self, path: &str, raw: Option<&str>) -> Option<Timestamp> {
        let Some(s) = raw else {
            self.problem(
                path,
                "missing: write it like \"2026-11-26T00:00:00Z\" (UTC)",
            );
            return None;
        };
        match humantime::parse_rfc3339(s) {
            Ok(t) => Some(Timestamp::from_system_time(t).unwrap_or(Timestamp(0))),
            Err(e) => {
                self.problem(
                    path,
                    format!(
                        "`{s}` is not a time ({e}): write it like \"2026-11-26T00:00:00Z\" (UTC)"
                    ),
                );
                None
            }
        }
    }

    fn time_range(
        &mut self,
        path: &str,
        starts: Option<&str>,
        ends: Option<&str>,
    ) -> Option<(Timestamp, Timestamp)> {
        let starts = self.timestamp(&format!("{path}.starts"), starts);
        let ends = self.timestamp(&format!("{path}.ends"), ends);
        let (starts, ends) = (starts?, ends?);
        if ends <= starts {
            self.problem(&format!("{path}.ends"), "must be after `starts`");
            return None;
        }
        Some((starts, ends))
    }
}

/// Every tenant × domain pair's group, for rules that compare domains that must behave alike.
pub fn groups(tenant: &Tenant) -> BTreeMap<&str, Vec<&Domain>> {
    let mut out: BTreeMap<&str, Vec<&Domain>> = BTreeMap::new();
    for d in &tenant.domains {
        out.entry(d.group.as_str()).or_default().push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const GOOD: &str = r#"
interval = "10s"
timeout = "5s"
location = "eu-1"

[[tenant]]
name = "acme"

[[tenant.domain]]
name = "app"
issuer = "https://idp.example.app/acme"

[tenant.domain.login]
grant = "client_credentials"
client_id = "keycanary"
client_secret = { env = "SECRET_A" }
resource = "https://api.example"

[[tenant.domain.jwks]]
name = "cdn"

[[tenant.domain.jwks]]
name = "edge"
url = "https://idp.example.app/acme/jwks"
edges = ["192.0.2.10", "2001:db8::1"]

[[tenant.domain]]
name = "io"
issuer = "https://idp.example.io/acme"
origin = { url = "https://origin.example.io/acme/jwks" }

[tenant.domain.login]
grant = "password"
client_id = "keycanary"
client_secret = { file = "secret.txt" }
auth = "client_secret_post"
username = "probe"
password = { env = "PASSWORD" }

[[tenant.domain.jwks]]
name = "cdn"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s3cret-from-file\n").unwrap();
        let env = |name: &str| match name {
            "SECRET_A" => Some("s3cret-a".to_owned()),
            "PASSWORD" => Some("hunter2".to_owned()),
            _ => None,
        };
        Config::from_toml_str(
            text,
            "probes.toml",
            &SecretSource {
                base_dir: dir.path(),
                env: &env,
            },
        )
    }

    /// Asserts that `text` is refused with a problem at each `(path, message fragment)`.
    fn check_problems(text: &str, expected: &[(&str, &str)]) {
        let err = parse(text).expect_err("config should be refused");
        let problems = err.problems();
        for (path, fragment) in expected {
            assert!(
                problems
                    .iter()
                    .any(|p| p.path == *path && p.message.contains(fragment)),
                "expected a problem at `{path}` containing `{fragment}`, got:\n{err}"
            );
        }
        assert_eq!(
            problems.len(),
            expected.len(),
            "unexpected extra problems:\n{err}"
        );
    }

    #[test]
    fn good_config_validates() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.settings.interval, Duration::from_secs(10));
        assert_eq!(c.settings.location, "eu-1");
        let acme = &c.tenants[0];
        assert_eq!(acme.client_profiles, profiles::DEFAULT_PROFILES);
        let app = &acme.domains[0];
        assert_eq!(app.group, "acme");
        assert_eq!(
            app.discovery_url().as_str(),
            "https://idp.example.app/acme/.well-known/openid-configuration"
        );
        assert_eq!(
            app.origin,
            Origin::Bust {
                param: "keycanary_nocache".into()
            }
        );
        assert_eq!(app.jwks[1].edges.len(), 2);
        let login = app.login.as_ref().unwrap();
        assert_eq!(
            login.client_secret.as_ref().unwrap().expose_secret(),
            "s3cret-a"
        );
        let io = &acme.domains[1];
        assert!(matches!(io.origin, Origin::Url(_)));
        let login = io.login.as_ref().unwrap();
        assert_eq!(login.auth, ClientAuth::ClientSecretPost);
        assert_eq!(
            login.client_secret.as_ref().unwrap().expose_secret(),
            "s3cret-from-file"
        );
        match &login.grant {
            Grant::Password { username, password } => {
                assert_eq!(username, "probe");
                assert_eq!(password.expose_secret(), "hunter2");
            }
            g => panic!("wrong grant {g:?}"),
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = parse(GOOD).unwrap();
        let dump = format!("{c:?}");
        for secret in ["s3cret-a", "s3cret-from-file", "hunter2"] {
            assert!(!dump.contains(secret), "{secret} leaked in Debug output");
        }
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let text = r#"
intervall = "10s"
timeout = "soon"
allowed_algs = ["RS256", "HS256", "XX1"]
client_profiles = ["jose", "nope"]

[[profile]]
name = "jose"
refetch_on_unknown_kid = true
on_fetch_failure = "explode"

[[tenant]]
name = "acme"
max_token_lifetime = "forever"

[[tenant.domain]]
name = "app"
issuer = "not a url"
discovery = false

[tenant.domain.login]
grant = "password"
client_id = "keycanary"
client_secret = "inline-secret"
auth = "private_key_jwt"

[[tenant.domain.jwks]]
name = "cdn"
edges = ["edge-1"]

[[tenant.domain.jwks]]
name = "origin"
url = "ftp://example.com/jwks"
colour = "blue"

[[tenant]]
name = "acme"

[[tenant.domain]]
name = "x y"
issuer = "https://idp.example/x"
origin = { url = "https://a.example/", bust_param = "b" }

[[tenant.domain.jwks]]
name = "cdn"
url = "https://127.0.0.1/jwks"
edges = ["127.0.0.1"]

[tenant.domain.login]
grant = "refresh_token"
client_id = "keycanary"
refresh_token = { env = "UNSET_VAR" }
"#;
        check_problems(
            text,
            &[
                ("", "unknown key `intervall`"),
                ("timeout", "not a duration"),
                ("allowed_algs[1]", "cannot be allowed"),
                ("allowed_algs[2]", "unknown alg `XX1`"),
                ("client_profiles[1]", "unknown client profile `nope`"),
                ("profile[0].name", "already exists"),
                ("profile[0].on_fetch_failure", "`explode`"),
                ("tenant[0].max_token_lifetime", "not a duration"),
                ("tenant[0].domain[0].issuer", "not a URL"),
                (
                    "tenant[0].domain[0].login.client_secret",
                    "never written inline",
                ),
                ("tenant[0].domain[0].login.username", "needs a username"),
                ("tenant[0].domain[0].login.password", "needs a password"),
                ("tenant[0].domain[0].login.token_url", "needs a token_url"),
                ("tenant[0].domain[0].login.auth", "`private_key_jwt`"),
                ("tenant[0].domain[0].jwks[0].url", "needs a url"),
                ("tenant[0].domain[0].jwks[0].edges[0]", "not an IP address"),
                ("tenant[0].domain[0].jwks[1].name", "reserved"),
                ("tenant[0].domain[0].jwks[1].url", "not an http(s) URL"),
                ("tenant[0].domain[0].jwks[1]", "unknown key `colour`"),
                ("tenant[1].name", "defined twice"),
                ("tenant[1].domain[0].name", "not a valid name"),
                ("tenant[1].domain[0].origin", "not both"),
                ("tenant[1].domain[0].jwks[0].edges", "host name"),
                (
                    "tenant[1].domain[0].login.refresh_token",
                    "UNSET_VAR is not set",
                ),
            ],
        );
    }

    #[test]
    fn missing_pieces_are_named() {
        check_problems("", &[("tenant", "no tenants")]);
        check_problems(
            "[[tenant]]\nname = \"a\"\n",
            &[("tenant[0].domain", "no domains")],
        );
        check_problems(
            "[[tenant]]\nname = \"a\"\n[[tenant.domain]]\nname = \"d\"\n",
            &[
                ("tenant[0].domain[0].issuer", "missing"),
                ("tenant[0].domain[0].jwks", "no JWKS paths"),
            ],
        );
        check_problems(
            "[[tenant]]\n[[tenant.domain]]\nname = \"d\"\nissuer = \"https://x.example\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n[tenant.domain.login]\nclient_id = \"c\"\n",
            &[
                ("tenant[0].name", "needs a `name`"),
                (
                    "tenant[0].domain[0].login.client_secret",
                    "needs a client_secret",
                ),
            ],
        );
    }

    #[test]
    fn secret_file_problems() {
        let text = GOOD.replace("secret.txt", "does-not-exist.txt");
        check_problems(
            &text,
            &[(
                "tenant[0].domain[1].login.client_secret",
                "cannot read secret file",
            )],
        );
        let text = GOOD.replace(
            "{ env = \"SECRET_A\" }",
            "{ env = \"SECRET_A\", file = \"secret.txt\" }",
        );
        check_problems(
            &text,
            &[("tenant[0].domain[0].login.client_secret", "exactly one")],
        );
    }

    #[test]
    fn settings_bounds() {
        let base = "[[tenant]]\nname = \"a\"\n[[tenant.domain]]\nname = \"d\"\nissuer = \"https://x.example\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n";
        check_problems(
            &format!("interval = \"10ms\"\ntimeout = \"5ms\"\n{base}"),
            &[("interval", "at least 1s")],
        );
        check_problems(
            &format!("interval = \"5s\"\ntimeout = \"6s\"\n{base}"),
            &[("timeout", "at most the interval")],
        );
        check_problems(
            &format!("location = \"eu 1\"\n{base}"),
            &[("location", "not a valid label")],
        );
        check_problems(
            &format!("[lab]\nlisten = \"localhost\"\n{base}"),
            &[("lab.listen", "not an address")],
        );
        check_problems(
            &format!("[[profile]]\nname = \"gw\"\n{base}"),
            &[("profile[0].refetch_on_unknown_kid", "missing")],
        );
    }

    #[test]
    fn api_table_defaults_and_validation() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.api.listen.to_string(), DEFAULT_API_LISTEN);
        assert!(c.api.bearer_token.is_none());
        let c = parse(&format!(
            "{GOOD}\n[api]\nlisten = \"127.0.0.1:0\"\nbearer_token = {{ env = \"SECRET_A\" }}\n"
        ))
        .unwrap();
        assert_eq!(c.api.listen.port(), 0);
        assert_eq!(
            c.api.bearer_token.as_ref().unwrap().expose_secret(),
            "s3cret-a"
        );
        check_problems(
            &format!("{GOOD}\n[api]\nlisten = \"localhost\"\nbearer_token = \"inline\"\n"),
            &[
                ("api.listen", "not an address"),
                ("api.bearer_token", "never written inline"),
            ],
        );
    }

    #[test]
    fn telemetry_otlp_table_env_fallback_and_validation() {
        let c = parse(GOOD).unwrap();
        assert!(c.telemetry.otlp.is_none(), "off unless configured");
        let c = parse(&format!(
            "{GOOD}\n[telemetry.otlp]\nendpoint = \"http://127.0.0.1:4317\"\nheaders = {{ X-Api-Key = {{ env = \"SECRET_A\" }}, tenant = \"ops\" }}\n"
        ))
        .unwrap();
        let o = c.telemetry.otlp.unwrap();
        assert_eq!(o.endpoint.as_str(), "http://127.0.0.1:4317/");
        assert_eq!(o.service_name, DEFAULT_SERVICE_NAME);
        let headers: Vec<(&str, &str)> = o
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.expose_secret()))
            .collect();
        assert_eq!(headers, [("tenant", "ops"), ("x-api-key", "s3cret-a")]);
        check_problems(
            &format!(
                "{GOOD}\n[telemetry.otlp]\nendpoint = \"grpc:nohost\"\nservice_name = \"\"\nheaders = {{ \"bad name\" = \"x\", k = {{ env = \"UNSET\" }} }}\n"
            ),
            &[
                ("telemetry.otlp.endpoint", "not an http(s) URL"),
                ("telemetry.otlp.service_name", "empty"),
                ("telemetry.otlp.headers.bad name", "not a valid header name"),
                ("telemetry.otlp.headers.k", "UNSET is not set"),
            ],
        );
        check_problems(
            &format!("{GOOD}\n[telemetry.otlp]\nservice_name = \"kc\"\n"),
            &[("telemetry.otlp.endpoint", "missing")],
        );
        // Without the table, the standard variable turns export on.
        let env = |name: &str| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://collector:4317".to_owned())
        };
        let o = otlp_from_env(&env).unwrap().unwrap();
        assert_eq!(o.endpoint.as_str(), "http://collector:4317/");
        assert!(o.headers.is_empty());
        assert!(otlp_from_env(&|_| None).unwrap().is_none());
        let bad = otlp_from_env(&|_| Some("collector:4317".to_owned())).unwrap_err();
        assert!(bad.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{bad}");
    }

    #[test]
    fn tls_expiry_warning_setting() {
        let base = "[[tenant]]\nname = \"a\"\n[[tenant.domain]]\nname = \"d\"\nissuer = \"https://x.example\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n";
        let c = parse(base).unwrap();
        assert_eq!(
            c.settings.tls_expiry_warning,
            Duration::from_secs(14 * 24 * 3600)
        );
        let c = parse(&format!("tls_expiry_warning = \"30days\"\n{base}")).unwrap();
        assert_eq!(
            c.settings.tls_expiry_warning,
            Duration::from_secs(30 * 24 * 3600)
        );
        check_problems(
            &format!("tls_expiry_warning = \"soon\"\n{base}"),
            &[("tls_expiry_warning", "not a duration")],
        );
    }

    #[test]
    fn state_dir_and_retention_settings() {
        let base = "[[tenant]]\nname = \"a\"\n[[tenant.domain]]\nname = \"d\"\nissuer = \"https://x.example\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n";
        let c = parse(base).unwrap();
        assert!(
            c.settings.state_dir.ends_with(".state"),
            "{:?}",
            c.settings.state_dir
        );
        assert!(
            c.settings.state_dir.is_absolute(),
            "resolved against the config's directory"
        );
        assert_eq!(c.settings.retention, Duration::from_secs(7 * 24 * 3600));
        let c = parse(&format!(
            "state_dir = \"/var/lib/keycanary\"\nretention = \"2days\"\n{base}"
        ))
        .unwrap();
        assert_eq!(c.settings.state_dir, PathBuf::from("/var/lib/keycanary"));
        assert_eq!(c.settings.retention, Duration::from_secs(2 * 24 * 3600));
        check_problems(
            &format!("state_dir = \"\"\nretention = \"10m\"\n{base}"),
            &[
                ("state_dir", "must not be empty"),
                ("retention", "at least 1h"),
            ],
        );
        check_problems(
            &format!("retention = \"forever\"\n{base}"),
            &[("retention", "not a duration")],
        );
    }

    #[test]
    fn max_concurrency_setting() {
        let base = "[[tenant]]\nname = \"a\"\n[[tenant.domain]]\nname = \"d\"\nissuer = \"https://x.example\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n";
        assert_eq!(parse(base).unwrap().settings.max_concurrency, 16);
        let c = parse(&format!("max_concurrency = 2\n{base}")).unwrap();
        assert_eq!(c.settings.max_concurrency, 2);
        check_problems(
            &format!("max_concurrency = 0\n{base}"),
            &[("max_concurrency", "at least 1")],
        );
    }

    const ALERTING: &str = r#"
[alerting]
failure_threshold = 3
success_threshold = 4
for = "1m"
repeat_interval = "2h"
send_on_resolved = false
group_by = "tenant_code"
status_page_url = "http://127.0.0.1:9464/"

[[alerting.channel]]
name = "sre-email"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = 2525
tls = "none"
username = "keycanary"
password = { env = "PASSWORD" }
from = "Keycanary <keycanary@example.com>"
to = ["sre@example.com"]

[[alerting.channel]]
name = "pd"
type = "pagerduty"
routing_key = { env = "SECRET_A" }

[[alerting.channel]]
name = "slack"
type = "slack"
url = { file = "slack-url.txt" }

[[alerting.channel]]
name = "hook"
type = "webhook"
url = "https://hooks.example/keycanary"
hmac_key = { file = "secret.txt" }

[[alerting.channel]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:9093/"

[[alerting.route]]
channels = ["pd", "sre-email"]
min_severity = "critical"

[[alerting.route]]
channels = ["slack", "hook", "am"]
tenants = ["acme"]
codes = ["stale_edge", "kid_missing"]

[[alerting.silence]]
tenant = "acme"
code = "stale_edge"
subject = "domain=io*"
starts = "2026-11-26T00:00:00Z"
ends = "2026-11-27T00:00:00Z"
comment = "CDN migration"

[[alerting.maintenance]]
tenants = ["acme"]
starts = "2026-12-01T02:00:00Z"
ends = "2026-12-01T04:00:00Z"
"#;

    /// `parse`, with a Slack webhook URL in `slack-url.txt` beside the config.
    fn parse_alerting(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s3cret-from-file\n").unwrap();
        std::fs::write(
            dir.path().join("slack-url.txt"),
            "https://hooks.slack.example/services/T0/B0/sl4ck-t0ken\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("not-a-url.txt"), "sl4ck-t0ken\n").unwrap();
        let env = |name: &str| match name {
            "SECRET_A" => Some("s3cret-a".to_owned()),
            "PASSWORD" => Some("hunter2".to_owned()),
            _ => None,
        };
        Config::from_toml_str(
            text,
            "probes.toml",
            &SecretSource {
                base_dir: dir.path(),
                env: &env,
            },
        )
    }

    fn check_alerting_problems(text: &str, expected: &[(&str, &str)]) {
        let err = parse_alerting(&format!("{GOOD}\n{text}")).expect_err("config should be refused");
        let problems = err.problems();
        for (path, fragment) in expected {
            assert!(
                problems
                    .iter()
                    .any(|p| p.path == *path && p.message.contains(fragment)),
                "expected a problem at `{path}` containing `{fragment}`, got:\n{err}"
            );
        }
        assert_eq!(
            problems.len(),
            expected.len(),
            "unexpected extra problems:\n{err}"
        );
        for secret in ["sl4ck-t0ken", "s3cret-a", "hunter2"] {
            assert!(
                !err.to_string().contains(secret),
                "{secret} leaked in:\n{err}"
            );
        }
    }

    #[test]
    fn alerting_defaults_page_within_two_rounds() {
        let c = parse(GOOD).unwrap();
        let a = &c.alerting;
        assert_eq!(a.policy, crate::alert::AlertPolicy::default());
        assert_eq!(a.policy.failure_threshold, 2);
        assert_eq!(a.policy.success_threshold, 2);
        assert_eq!(a.policy.for_duration, Duration::ZERO);
        assert_eq!(a.policy.repeat_interval, Duration::from_secs(4 * 3600));
        assert!(a.policy.send_on_resolved);
        assert!(a.channels.is_empty() && a.routes.is_empty() && a.silences.is_empty());
        assert!(a.status_page_url.is_none());
    }

    #[test]
    fn alerting_section_validates() {
        let c = parse_alerting(&format!("{GOOD}\n{ALERTING}")).unwrap();
        let a = &c.alerting;
        assert_eq!(a.policy.failure_threshold, 3);
        assert_eq!(a.policy.success_threshold, 4);
        assert_eq!(a.policy.for_duration, Duration::from_secs(60));
        assert_eq!(a.policy.repeat_interval, Duration::from_secs(7200));
        assert!(!a.policy.send_on_resolved);
        assert_eq!(a.policy.group_by, GroupBy::TenantCode);
        assert_eq!(a.policy.maintenance.len(), 1);
        assert_eq!(a.policy.maintenance[0].tenants, ["acme"]);
        let kinds: Vec<&str> = a.channels.iter().map(|c| c.config.kind()).collect();
        assert_eq!(
            kinds,
            ["email", "pagerduty", "slack", "webhook", "alertmanager"]
        );
        match &a.channel("sre-email").unwrap().config {
            ChannelConfig::Email(e) => {
                assert_eq!(e.smtp_port, 2525);
                assert_eq!(e.tls, SmtpTls::None);
                assert_eq!(e.password.as_ref().unwrap().expose_secret(), "hunter2");
            }
            other => panic!("{other:?}"),
        }
        match &a.channel("pd").unwrap().config {
            ChannelConfig::PagerDuty(p) => {
                assert_eq!(p.routing_key.expose_secret(), "s3cret-a");
                assert_eq!(p.url.as_str(), pagerduty::DEFAULT_URL);
            }
            other => panic!("{other:?}"),
        }
        match &a.channel("slack").unwrap().config {
            ChannelConfig::Slack(s) => {
                assert!(s.webhook_url.expose_secret().ends_with("sl4ck-t0ken"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.routes[0].min_severity, Severity::Critical);
        assert_eq!(a.routes[1].min_severity, Severity::Low);
        assert_eq!(a.routes[1].codes, [Code::StaleEdge, Code::KidMissing]);
        let s = &a.silences[0];
        assert_eq!(s.id, "config-0");
        assert_eq!(s.created_by, "probes.toml");
        assert_eq!(s.starts, Timestamp::from_secs(1_795_651_200));
        assert_eq!(s.subject.as_ref().unwrap().to_string(), "domain=io*");

        let dump = format!("{c:?}");
        for secret in ["s3cret-a", "s3cret-from-file", "hunter2", "sl4ck-t0ken"] {
            assert!(!dump.contains(secret), "{secret} leaked in Debug output");
        }
    }

    #[test]
    fn email_port_follows_tls() {
        let text = |tls: &str| {
            format!(
                "{GOOD}\n[[alerting.channel]]\nname = \"m\"\ntype = \"email\"\nsmtp_host = \"mail.example\"\n{tls}\nfrom = \"k@example.com\"\nto = [\"s@example.com\"]\n"
            )
        };
        for (tls, port) in [
            ("", 587),
            ("tls = \"implicit\"", 465),
            ("tls = \"none\"", 25),
        ] {
            let c = parse_alerting(&text(tls)).unwrap();
            match &c.alerting.channels[0].config {
                ChannelConfig::Email(e) => assert_eq!(e.smtp_port, port, "{tls}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn alerting_policy_problems() {
        check_alerting_problems(
            "[alerting]\nfailure_threshold = 0\nsuccess_threshold = 0\nfor = \"soon\"\nrepeat_interval = \"often\"\ngroup_by = \"domain\"\nstatus_page_url = \"ftp://x\"\nsend_resolved = true\n",
            &[
                ("alerting.failure_threshold", "at least 1"),
                ("alerting.success_threshold", "at least 1"),
                ("alerting.for", "not a duration"),
                ("alerting.repeat_interval", "not a duration"),
                ("alerting.group_by", "`domain`"),
                ("alerting.status_page_url", "not an http(s) URL"),
                ("alerting", "unknown key `send_resolved`"),
            ],
        );
    }

    #[test]
    fn alerting_channel_problems() {
        check_alerting_problems(
            r#"
[[alerting.channel]]
name = "mail"
type = "email"
tls = "ssl"
username = "k"
from = "nobody"
to = ["ok@example.com", "not an address"]
routing_key = { env = "SECRET_A" }

[[alerting.channel]]
name = "mail"
type = "email"
smtp_host = "mail.example"
password = { env = "PASSWORD" }
from = "k@example.com"
to = []

[[alerting.channel]]
name = "pd"
type = "pagerduty"
routing_key = "inline-key"

[[alerting.channel]]
name = "slack"
type = "slack"
url = "https://hooks.slack.example/services/T0/B0/sl4ck-t0ken"

[[alerting.channel]]
name = "slack2"
type = "slack"
url = { file = "not-a-url.txt" }

[[alerting.channel]]
name = "hook"
type = "webhook"
hmac_key = { env = "UNSET_KEY" }

[[alerting.channel]]
name = "am"
type = "alertmanager"
url = "not a url"

[[alerting.channel]]
name = "x"
type = "sms"

[[alerting.channel]]
name = "y"
"#,
            &[
                ("alerting.channel[0].smtp_host", "missing"),
                ("alerting.channel[0].tls", "`ssl`"),
                (
                    "alerting.channel[0].password",
                    "a username needs a password",
                ),
                ("alerting.channel[0].from", "not an email address"),
                ("alerting.channel[0].to[1]", "not an email address"),
                (
                    "alerting.channel[0].routing_key",
                    "does not apply to type = \"email\"",
                ),
                ("alerting.channel[1].name", "defined twice"),
                (
                    "alerting.channel[1].username",
                    "a password needs a username",
                ),
                ("alerting.channel[1].to", "at least one recipient"),
                ("alerting.channel[2].routing_key", "never written inline"),
                ("alerting.channel[3].url", "never written inline"),
                ("alerting.channel[4].url", "not an http(s) URL"),
                ("alerting.channel[5].hmac_key", "UNSET_KEY is not set"),
                ("alerting.channel[5].url", "missing"),
                ("alerting.channel[6].url", "not a URL"),
                ("alerting.channel[7].type", "`sms` is not one of"),
                ("alerting.channel[8].type", "missing"),
            ],
        );
    }

    #[test]
    fn alerting_route_silence_maintenance_problems() {
        check_alerting_problems(
            r#"
[[alerting.channel]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:9093/"

[[alerting.route]]
channels = ["am", "pagerduty"]
min_severity = "urgent"
tenants = ["acme", "nobody"]
codes = ["kid_missing", "kid_gone"]

[[alerting.route]]
min_severity = "high"

[[alerting.silence]]
tenant = "nobody"
code = "stale"
severity = "bad"
subject = "host=io*"
starts = "2026-11-26"
ends = "2026-11-27T00:00:00Z"

[[alerting.silence]]
comment = "everything"
starts = "2026-11-27T00:00:00Z"
ends = "2026-11-26T00:00:00Z"

[[alerting.silence]]
tenant = "acme"

[[alerting.maintenance]]
starts = "2026-12-01T02:00:00Z"
ends = "2026-12-01T04:00:00Z"

[[alerting.maintenance]]
tenants = ["ghost"]
starts = "2026-12-01T02:00:00Z"
ends = "2026-12-01T02:00:00Z"
"#,
            &[
                (
                    "alerting.route[0].channels[1]",
                    "no channel named `pagerduty`",
                ),
                ("alerting.route[0].min_severity", "`urgent`"),
                ("alerting.route[0].tenants[1]", "no tenant named `nobody`"),
                (
                    "alerting.route[0].codes[1]",
                    "unknown finding code `kid_gone`",
                ),
                ("alerting.route[1].channels", "missing"),
                ("alerting.silence[0].tenant", "no tenant named `nobody`"),
                ("alerting.silence[0].code", "unknown finding code `stale`"),
                ("alerting.silence[0].severity", "`bad`"),
                (
                    "alerting.silence[0].subject",
                    "unknown subject field `host`",
                ),
                ("alerting.silence[0].starts", "not a time"),
                (
                    "alerting.silence[1]",
                    "at least one of tenant, code, severity, subject",
                ),
                ("alerting.silence[1].ends", "after `starts`"),
                ("alerting.silence[2].starts", "missing"),
                ("alerting.silence[2].ends", "missing"),
                ("alerting.maintenance[0].tenants", "missing"),
                (
                    "alerting.maintenance[1].tenants[0]",
                    "no tenant named `ghost`",
                ),
                ("alerting.maintenance[1].ends", "after `starts`"),
            ],
        );
    }

    #[test]
    fn syntax_errors_are_one_clear_line() {
        let err = parse("interval = \n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("probes.toml is not valid TOML"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        let err = parse("interval = 5\n").unwrap_err();
        assert!(err.to_string().contains("interval"), "{err}");
    }
}
