//! `probes.toml`: raw serde structs, then validation into a [`Config`] the rest of the
//! program trusts.
//!
//! Validation reports **every** problem at once, each with its TOML path
//! (`tenant[0].domain[1].jwks[0].url`) and what to do. Unknown keys are collected the same
//! way (with `serde_ignored`) rather than aborting at the first one. Secrets are read
//! through an injected [`SecretReader`] and held as [`SecretString`] from then on.
//!
//! This file holds the validated types and the entry points: [`parse`] (pure: text, base
//! directory and a secret reader in, `Config` out), [`Config::from_toml_str`] (the same
//! with the real reader) and [`load`] (reads the file). The pieces: `raw` (serde),
//! `validate` (settings, tenants), `alerting`, `channels`, `profiles` (client profile
//! data), `otlp` (`[telemetry.otlp]` merged with the `OTEL_*` variables), `secrets`,
//! `error`. Only `load` (the file, the `OTEL_*` variables) and [`SecretSource`] (secrets)
//! touch the outside; nothing here fetches anything or holds runtime state, and config depends
//! on `model` and `alert`'s plain types only.

mod alerting;
pub mod channels;
mod error;
#[cfg(test)]
pub(crate) mod fixtures;
mod gate;
pub mod inventory;
pub mod otlp;
pub mod profiles;
mod raw;
mod secrets;
pub mod shard;
pub mod template;
#[cfg(test)]
mod tests;
mod validate;

/// Name of the origin view's path in reports; defined in `model` (re-exported here).
pub use crate::model::ORIGIN_PATH;
pub use alerting::Alerting;
pub use channels::{
    AlertmanagerConfig, Channel, ChannelConfig, EmailConfig, PAGERDUTY_DEFAULT_URL,
    PagerDutyConfig, SlackConfig, SmtpTls, WebhookConfig,
};
pub use error::{ConfigError, Problem};
pub use gate::GateConfig;
pub use otlp::{ClientIdentity, OtlpConfig, OtlpExport, Protocol};
pub use profiles::{ClientProfile, DEFAULT_PROFILES, OnFetchFailure};
pub use secrets::{MemorySecrets, SecretReader, SecretSource};
pub use shard::Shard;

use crate::model::ViewId;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

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
    /// How many tenants the file defines; more than `tenants.len()` when a shard watches
    /// only its part of them.
    pub tenants_in_file: usize,
    /// Names of the file's `[[tenant]]`s, every shard's: inventory entries may not reuse them.
    pub file_tenants: std::collections::BTreeSet<String>,
    /// Names of the tenants (this shard's) that came from the inventory; empty in a
    /// config as loaded from its file, filled by [`inventory::expand`].
    pub inventory_tenants: std::collections::BTreeSet<String>,
    /// `[[tenant_template]]`: what inventory entries are made from.
    pub templates: Vec<template::Template>,
    /// `[inventory]`: where entries come from.
    pub inventory: Option<inventory::Inventory>,
    /// Tenant name → position in `tenants`, for [`Config::tenant`]; built by validation.
    tenant_index: TenantIndex,
    /// `[alerting]`: when findings page, and where to.
    pub alerting: Alerting,
    /// `[telemetry]`: where traces go (off unless configured).
    pub telemetry: TelemetryConfig,
    /// `[gate]`: the rotation gate over every location, through Prometheus.
    pub gate: GateConfig,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// `[telemetry.otlp]` merged with the standard `OTEL_*` variables (the table wins);
    /// `None` when neither configures an endpoint.
    pub otlp: Option<OtlpConfig>,
    /// `per_view_histograms`: label the fetch duration histogram by view (9 series per
    /// view) instead of by domain (the default: 9 series per domain).
    pub per_view_histograms: bool,
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
    /// `shard = "i/n"` (or `KEYCANARY_SHARD`): watch only the tenants hashed to shard i.
    pub shard: Option<Shard>,
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
    /// A reload applies a changed token at once.
    pub bearer_token: Option<SecretString>,
    /// Host names (lowercase, no port) the API answers to besides loopback names and IP
    /// addresses: any other `Host` header is refused (a DNS-rebinding page).
    pub allowed_hosts: Vec<String>,
    /// Longest silence `POST /v1/silences` accepts; default [`DEFAULT_MAX_SILENCE`].
    pub max_silence: Duration,
}

/// `[api] max_silence` when unset: 30 days.
pub const DEFAULT_MAX_SILENCE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most `[api] max_silence` may be: a year.
pub const MAX_MAX_SILENCE: Duration = Duration::from_secs(365 * 24 * 3600);

pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:9464";
/// `state_dir` when unset, relative to the config file.
pub const DEFAULT_STATE_DIR: &str = ".state";
/// `retention` when unset: a week of history.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// `service.name` of exported traces when unset.
pub const DEFAULT_SERVICE_NAME: &str = "keycanary";
/// `max_concurrency` when unset.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;

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
    /// `token_endpoint_origin`: the one origin other than the issuer's where discovery's
    /// `token_endpoint` may be (and the opt-in for plain http there). `None`: the
    /// token request goes only to the issuer's own origin, over https unless it is a
    /// loopback address.
    pub token_endpoint_origin: Option<url::Origin>,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub auth: ClientAuth,
    /// The private key of `auth = "private_key_jwt"`.
    pub client_key: Option<ClientKey>,
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
    /// Signing in through the IdP's own pages (authorization code with PKCE).
    AuthorizationCode(Box<AuthCode>),
}

impl Grant {
    pub fn as_str(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::Password { .. } => "password",
            Grant::RefreshToken { .. } => "refresh_token",
            Grant::AuthorizationCode(_) => "authorization_code",
        }
    }
}

/// `grant = "authorization_code"`: keycanary starts at the authorization endpoint, signs
/// in on the IdP's pages as a person would, stops at the redirect to `redirect_uri` and
/// exchanges the code (PKCE S256, `state`, `nonce`).
#[derive(Debug, Clone)]
pub struct AuthCode {
    pub username: String,
    pub password: SecretString,
    /// Where the IdP sends the browser back with the code: read from `Location`, never
    /// fetched. https, or http on a loopback address.
    pub redirect_uri: Url,
    /// `authorization_url`; `None`: discovery's `authorization_endpoint`.
    pub authorization_url: Option<Url>,
    pub driver: Driver,
    /// Origins other than the issuer's where the sign-in pages may be.
    pub page_origins: Vec<url::Origin>,
    pub form: FormRules,
    pub browser: BrowserRules,
}

/// How the sign-in pages are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Plain HTTP: forms found in the HTML, filled and submitted.
    Form,
    /// Headless Chromium over the DevTools protocol, for pages that need JavaScript.
    Browser,
}

/// The CSS selectors the browser driver types into and clicks; defaults below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserRules {
    pub username: String,
    pub password: String,
    pub submit: String,
    /// Clicked when it appears after the password was submitted (a consent screen).
    pub consent: Option<String>,
}

impl BrowserRules {
    /// The page's text or email input (or an input without a type).
    pub const USERNAME: &str = "input[type=email], input[type=text], input:not([type])";
    pub const PASSWORD: &str = "input[type=password]";
    /// The form's submit button: a submit input or button, or a button of no type.
    pub const SUBMIT: &str = "[type=submit], form button:not([type])";
}

impl Default for BrowserRules {
    fn default() -> BrowserRules {
        BrowserRules {
            username: BrowserRules::USERNAME.to_owned(),
            password: BrowserRules::PASSWORD.to_owned(),
            submit: BrowserRules::SUBMIT.to_owned(),
            consent: None,
        }
    }
}

/// Which inputs and buttons of the sign-in pages the form driver uses; `None`: its
/// defaults (the text or email input, the password input, the form's first button).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormRules {
    pub username_input: Option<String>,
    pub password_input: Option<String>,
    pub submit_button: Option<String>,
    pub form_action: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523: a JWT signed with the client's private key ([`ClientKey`]).
    PrivateKeyJwt,
}

/// The client's private key for `private_key_jwt`: PEM (PKCS#8, or PKCS#1 for RSA), the
/// `kid` its public key is registered under, and the JWS alg (`RS256`, `ES256`, `EdDSA`).
#[derive(Debug, Clone)]
pub struct ClientKey {
    pub pem: SecretString,
    pub kid: String,
    pub alg: String,
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

/// Parses and validates config text, named `origin` in messages. Pure: relative secret
/// files and `state_dir` resolve against `base_dir`, and every secret reference is read
/// through `secrets` ([`SecretSource`] for the real environment and filesystem,
/// [`MemorySecrets`] in tests).
pub fn parse(
    text: &str,
    origin: &str,
    base_dir: &Path,
    secrets: &dyn SecretReader,
) -> Result<Config, ConfigError> {
    validate::run(text, origin, base_dir, secrets).map(Config::sharded)
}

/// The variable that sets the shard over the file's `shard`, so one file serves every
/// instance (e.g. a StatefulSet passing its pod index).
pub const SHARD_VAR: &str = "KEYCANARY_SHARD";

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
    let origin = path.display().to_string();
    let reader = secrets::ProcessReader(SecretSource::process(base));
    let mut config = validate::run(&text, &origin, base, &reader)?;
    if let Some(value) = std::env::var(SHARD_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        config.settings.shard =
            Some(
                Shard::parse(&value).map_err(|message| ConfigError::Invalid {
                    path: origin.clone(),
                    problems: vec![Problem {
                        path: String::new(),
                        message: format!("{SHARD_VAR}: {message}"),
                    }],
                })?,
            );
    }
    Ok(config.sharded())
}

impl Config {
    /// Parses and validates config text with `secrets` as the reader and its `base_dir`
    /// as the base directory (see [`parse`]). `origin` names the text in messages.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        secrets: &SecretSource<'_>,
    ) -> Result<Config, ConfigError> {
        parse(text, origin, secrets.base_dir, secrets)
    }

    /// The config with only this shard's tenants (all of them without a shard). Every
    /// tenant of the file was validated, so one file is checked the same on every shard.
    pub fn sharded(mut self) -> Config {
        self.tenants_in_file = self.tenants.len();
        if let Some(shard) = self.settings.shard {
            self.tenants.retain(|t| shard.owns(&t.name));
            self.reindex_tenants();
        }
        self
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

    /// The tenant named `name`: O(log n) through the index built with the config.
    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenant_position(name).map(|i| &self.tenants[i])
    }

    /// Where tenant `name` is in `tenants` (config order). Looked up in the index and
    /// checked against `tenants`; should `tenants` have been edited after validation so
    /// the index misses or disagrees, the list itself is searched, so the answer is right
    /// either way (and a name no tenant has costs a scan).
    pub fn tenant_position(&self, name: &str) -> Option<usize> {
        match self.tenant_index.0.get(name) {
            Some(&i) if self.tenants.get(i).is_some_and(|t| t.name == name) => Some(i),
            _ => self.tenants.iter().position(|t| t.name == name),
        }
    }

    /// Every secret value this config holds (login client secrets, passwords and
    /// refresh tokens, channel credentials, the API bearer token, OTLP header values),
    /// exposed so that text from outside can be scrubbed of them before it is kept
    /// (`model::wire::scrub`). Empty values are left out.
    pub fn secret_values(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        let mut out: Vec<&SecretString> = Vec::new();
        for d in self.tenants.iter().flat_map(|t| &t.domains) {
            let Some(login) = &d.login else { continue };
            out.extend(&login.client_secret);
            out.extend(login.client_key.as_ref().map(|k| &k.pem));
            match &login.grant {
                Grant::ClientCredentials => {}
                Grant::Password { password, .. } => out.push(password),
                Grant::RefreshToken { refresh_token } => out.push(refresh_token),
                Grant::AuthorizationCode(a) => out.push(&a.password),
            }
        }
        for c in &self.alerting.channels {
            match &c.config {
                ChannelConfig::Email(e) => out.extend(&e.password),
                ChannelConfig::PagerDuty(p) => out.push(&p.routing_key),
                ChannelConfig::Slack(s) => out.push(&s.webhook_url),
                ChannelConfig::Webhook(w) => out.extend(&w.hmac_key),
                ChannelConfig::Alertmanager(_) => {}
            }
        }
        out.extend(&self.api.bearer_token);
        if let Some(i) = &self.inventory {
            out.extend(&i.bearer);
        }
        if let Some(otlp) = &self.telemetry.otlp {
            out.extend(otlp.secrets());
        }
        let mut values: Vec<String> = out
            .into_iter()
            .map(|s| s.expose_secret().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        values.sort();
        values.dedup();
        values
    }

    /// Rebuilds the tenant index after `tenants` was edited in place (lookups stay right
    /// without it, only slower for edited names).
    pub fn reindex_tenants(&mut self) {
        self.tenant_index = TenantIndex::of(&self.tenants);
    }
}

/// Tenant name → position in [`Config::tenants`] (the first, should a name repeat).
#[derive(Clone, Default)]
struct TenantIndex(BTreeMap<String, usize>);

impl TenantIndex {
    fn of(tenants: &[Tenant]) -> Self {
        let mut map = BTreeMap::new();
        for (i, t) in tenants.iter().enumerate() {
            map.entry(t.name.clone()).or_insert(i);
        }
        TenantIndex(map)
    }
}

impl std::fmt::Debug for TenantIndex {
    /// Short: the tenants are printed beside it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TenantIndex({} tenants)", self.0.len())
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
