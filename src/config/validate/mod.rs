//! Validation: raw serde structs in, a [`Config`] out, with **every** problem collected
//! (each with its TOML path and what to do) rather than stopping at the first.
//!
//! This file holds the [`Validator`] (the problem list, the base directory and the secret
//! reader), its small helpers (durations, names, URLs) and the walk over the whole file;
//! each section lives beside it (`settings`, `tenants`) or in its own module
//! (`super::alerting`, `super::channels`, `super::secrets`). Nothing here reads a file or
//! a variable: secrets come through the injected [`SecretReader`].

mod lenient;
mod settings;
mod tenants;

use super::raw::RawConfig;
use super::secrets::SecretReader;
use super::{Config, ConfigError, LabConfig, Problem, Tenant, profiles};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use url::Url;

/// Parses and validates `text` (named `origin` in messages). Relative paths resolve
/// against `base_dir`; secret references are read through `secrets`.
pub(super) fn run(
    text: &str,
    origin: &str,
    base_dir: &Path,
    secrets: &dyn SecretReader,
) -> Result<Config, ConfigError> {
    let lenient::Read {
        raw,
        unknown,
        wrong_types,
    } = lenient::read(text, origin)?;
    let mut v = Validator {
        problems: Vec::new(),
        base_dir,
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
    // A value of the wrong type was set aside: what validation then says about its
    // absence (or about what lies under it) would only repeat it.
    let under = |p: &str, w: &str| {
        p == w || w.is_empty() || p.starts_with(&format!("{w}.")) || p.starts_with(&format!("{w}["))
    };
    v.problems
        .retain(|p| !wrong_types.iter().any(|w| under(&p.path, &w.path)));
    v.problems.splice(0..0, wrong_types);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: origin.to_owned(),
            problems: v.problems,
        })
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

/// Names and labels (tenants, domains, paths, location): non-empty, letters, digits, `_`,
/// `-` or `.`, so they are safe as metric labels and in URLs.
pub(super) fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Collects problems while building validated types.
pub(in crate::config) struct Validator<'a> {
    problems: Vec<Problem>,
    /// The config file's directory: relative secret files and `state_dir` resolve here.
    pub(super) base_dir: &'a Path,
    pub(super) secrets: &'a dyn SecretReader,
}

impl<'a> Validator<'a> {
    /// A validator with no problems yet.
    pub(in crate::config) fn new(base_dir: &'a Path, secrets: &'a dyn SecretReader) -> Self {
        Validator {
            problems: Vec::new(),
            base_dir,
            secrets,
        }
    }

    /// The problems found so far.
    pub(in crate::config) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

impl Validator<'_> {
    pub(super) fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    pub(super) fn has_problem_at(&self, path: &str) -> bool {
        self.problems.iter().any(|p| p.path == path)
    }

    pub(super) fn duration(
        &mut self,
        path: &str,
        raw: Option<&str>,
        default: Duration,
    ) -> Duration {
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

    pub(super) fn optional_duration(&mut self, path: &str, raw: Option<&str>) -> Option<Duration> {
        raw.map(|s| self.duration(path, Some(s), Duration::ZERO))
    }

    pub(super) fn label(&mut self, path: &str, raw: Option<&str>, what: &str) -> String {
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

    pub(super) fn url(&mut self, path: &str, raw: &str) -> Option<Url> {
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

    /// An origin (`https://login.example.net`, a port when not the scheme's default): an
    /// http(s) URL with a host and nothing after it.
    pub(super) fn origin(&mut self, path: &str, raw: &str) -> Option<url::Origin> {
        let url = self.url(path, raw)?;
        let bare = url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if !bare {
            self.problem(
                path,
                format!(
                    "`{raw}` is not an origin: write only the scheme, host and port, like \"https://login.example.net\""
                ),
            );
            return None;
        }
        Some(url.origin())
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
        let templates = self.templates(&raw.tenant_template, &known, &default_profiles);
        let inventory = raw
            .inventory
            .as_ref()
            .map(|i| self.inventory(i, &templates));
        if !templates.is_empty() && inventory.is_none() {
            self.problem(
                "tenant_template",
                "templates are filled from an inventory: add [inventory] with a file or a url",
            );
        }
        if raw.tenant.is_empty() && inventory.is_none() {
            self.problem(
                "tenant",
                "no tenants: add at least one [[tenant]] with a [[tenant.domain]] (or an [inventory])",
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
        let gate = self.gate(raw.gate.as_ref(), settings.interval);
        Config {
            settings,
            lab,
            api,
            profiles,
            tenant_index: super::TenantIndex::of(&tenants),
            tenants_in_file: tenants.len(),
            file_tenants: tenant_names.clone(),
            inventory_tenants: BTreeSet::new(),
            templates,
            inventory,
            tenants,
            alerting,
            telemetry,
            gate,
        }
    }
}
