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
    /// Every profile that can be named: built-ins plus user-defined ones.
    pub profiles: Vec<ClientProfile>,
    pub tenants: Vec<Tenant>,
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
}

#[derive(Debug, Clone)]
pub struct LabConfig {
    pub listen: SocketAddr,
}

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
    client_profiles: Option<Vec<String>>,
    lab: Option<RawLab>,
    #[serde(default)]
    profile: Vec<RawProfile>,
    #[serde(default)]
    tenant: Vec<RawTenant>,
}

#[derive(Debug, Deserialize)]
struct RawLab {
    listen: Option<String>,
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
            Some(s)
                if s.is_empty()
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) =>
            {
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
        let tenants = raw
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
        Config {
            settings,
            lab,
            profiles,
            tenants,
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
        if location.is_empty()
            || !location
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
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
        }
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
    fn syntax_errors_are_one_clear_line() {
        let err = parse("interval = \n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("probes.toml is not valid TOML"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        let err = parse("interval = 5\n").unwrap_err();
        assert!(err.to_string().contains("interval"), "{err}");
    }
}
