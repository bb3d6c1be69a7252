//! `[inventory]`: tenants from a list of entries (`{name, template, vars?}`, JSON), read
//! from a file and/or an HTTP endpoint, expanded through `[[tenant_template]]`s into
//! tenants beside the hand-written ones.
//!
//! Entries are hostile input: each is read and checked on its own ([`parse_entries`]: its
//! shape, a name that is a label, vars that are short labels, no `..`), then filled and
//! validated like a hand-written tenant ([`expand`]). A bad entry is [`Rejected`] with its
//! name and every problem, and the others are kept; a name already used by a hand-written
//! tenant or an earlier entry is rejected too. Only a list that is not a JSON array (or is
//! too big) fails as a whole, and then the caller keeps the last good one.
//!
//! Pure: bytes and a [`SecretReader`] in, a [`Config`] out. Not here: reading the file or
//! the endpoint, or when (`probe::inventory`, the daemon).

use super::raw::RawInventory;
use super::secrets::SecretReader;
use super::template::{self, Template};
use super::validate::Validator;
use super::{Config, Problem};
use crate::model::wire;
use secrecy::SecretString;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// `[inventory]`, validated.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// A JSON file of entries (resolved against the config's directory), read every `refresh`.
    pub file: Option<PathBuf>,
    /// An endpoint answering a JSON list of entries, polled every `refresh`.
    pub url: Option<Url>,
    /// Sent as `Authorization: Bearer …` to `url` only: never across a redirect.
    pub bearer: Option<SecretString>,
    pub refresh: Duration,
    /// A larger answer (or file) is a failed load.
    pub max_bytes: u64,
    /// The config file's directory: relative secret files of the templates resolve here.
    pub base_dir: PathBuf,
}

/// `refresh` when unset (Prometheus' `http_sd_configs` default).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
/// `max_bytes` when unset.
pub const DEFAULT_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Most entries one list may hold; a longer list fails as a whole.
pub const MAX_ENTRIES: usize = 100_000;
/// Most vars one entry may give.
pub const MAX_VARS: usize = 64;
/// Longest var value (a DNS name's length).
pub const MAX_VAR_LEN: usize = 253;
/// Longest entry name.
pub const MAX_NAME_LEN: usize = 128;

/// One entry of the inventory, checked: a tenant named `name` made from `template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub template: String,
    pub vars: BTreeMap<String, String>,
}

/// An entry that is not run, with its name (cleaned of control characters and bounded,
/// as it came) and every problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub name: String,
    pub problems: Vec<String>,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry `{}`: {}", self.name, self.problems.join("; "))
    }
}

/// Reads a list of entries: `Err` when it is not a JSON array (or holds more than
/// [`MAX_ENTRIES`]); otherwise each element checked on its own, in order.
pub fn parse_entries(bytes: &[u8]) -> Result<Vec<Result<Entry, Rejected>>, String> {
    let list: Vec<serde_json::Value> = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "not a JSON list of entries ({}): write [{{\"name\": …, \"template\": …, \"vars\": {{…}}}}, …]",
            wire::text(&e.to_string(), wire::TEXT_MAX)
        )
    })?;
    if list.len() > MAX_ENTRIES {
        return Err(format!(
            "{} entries, more than {MAX_ENTRIES}: split the fleet over shards or instances",
            list.len()
        ));
    }
    Ok(list.iter().enumerate().map(|(i, v)| entry(i, v)).collect())
}

/// Whether `s` is safe as an entry name or a var value: letters, digits, `_`, `-`, `.`,
/// and no `..` (it may become a path segment of a secret file).
fn is_safe(s: &str) -> bool {
    !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn entry(i: usize, v: &serde_json::Value) -> Result<Entry, Rejected> {
    let raw_name = v.get("name").and_then(|n| n.as_str());
    let shown = raw_name.map_or_else(|| format!("#{i}"), wire::ident);
    let mut problems = Vec::new();
    let Some(obj) = v.as_object() else {
        return Err(Rejected {
            name: shown,
            problems: vec!["not an object: write {\"name\": …, \"template\": …}".into()],
        });
    };
    for key in obj
        .keys()
        .filter(|k| !matches!(k.as_str(), "name" | "template" | "vars"))
    {
        problems.push(format!(
            "unknown key `{}`: an entry has name, template and vars",
            wire::ident(key)
        ));
    }
    let name = match raw_name {
        None => {
            problems.push("missing `name` (a string)".into());
            String::new()
        }
        Some(n) if n.is_empty() || n.len() > MAX_NAME_LEN || !is_safe(n) || n.starts_with('.') => {
            problems.push(format!(
                "name is not a valid tenant name: use up to {MAX_NAME_LEN} letters, digits, `_`, `-` or `.` (no `..`)"
            ));
            String::new()
        }
        Some(n) => n.to_owned(),
    };
    let template = match obj.get("template").and_then(|t| t.as_str()) {
        Some(t) if !t.is_empty() => wire::ident(t),
        _ => {
            problems.push("missing `template` (the name of a [[tenant_template]])".into());
            String::new()
        }
    };
    let mut vars = BTreeMap::new();
    match obj.get("vars") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(m)) if m.len() > MAX_VARS => {
            problems.push(format!("{} vars, more than {MAX_VARS}", m.len()));
        }
        Some(serde_json::Value::Object(m)) => {
            for (k, x) in m {
                let key = wire::ident(k);
                if !template::is_var_name(k) {
                    problems.push(format!(
                        "var `{key}`: a var's name is up to 64 letters, digits, `_` or `-`"
                    ));
                    continue;
                }
                match x.as_str() {
                    Some(s) if s.len() <= MAX_VAR_LEN && is_safe(s) => {
                        vars.insert(k.clone(), s.to_owned());
                    }
                    Some(_) => problems.push(format!(
                        "vars.{key} is not a valid value: use up to {MAX_VAR_LEN} letters, digits, `_`, `-` or `.` (no `..`)"
                    )),
                    None => problems.push(format!("vars.{key} is not a string")),
                }
            }
        }
        Some(_) => problems.push("`vars` is not an object of strings".into()),
    }
    if problems.is_empty() {
        Ok(Entry {
            name,
            template,
            vars,
        })
    } else {
        Err(Rejected {
            name: shown,
            problems,
        })
    }
}

/// A config with the inventory's tenants, and what was left out.
#[derive(Debug)]
pub struct Expansion {
    pub config: Config,
    /// Entries that became tenants (every shard's; `config.tenants` holds this shard's).
    pub accepted: usize,
    pub rejected: Vec<Rejected>,
}

/// `base` (a config as loaded from its file) with a tenant for each good entry appended,
/// in order; the shard, if any, keeps its part. Secret references of the templates are
/// read through `secrets`.
pub fn expand(
    base: &Config,
    entries: &[Result<Entry, Rejected>],
    secrets: &dyn SecretReader,
) -> Expansion {
    let mut config = base.clone();
    let mut rejected = Vec::new();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    let mut accepted = 0;
    let base_dir = base
        .inventory
        .as_ref()
        .map_or(Path::new("."), |i| i.base_dir.as_path());
    let known: BTreeSet<String> = base.profiles.iter().map(|p| p.name.clone()).collect();
    for e in entries {
        let e = match e {
            Ok(e) => e,
            Err(r) => {
                rejected.push(r.clone());
                continue;
            }
        };
        let reject = |problem: String| Rejected {
            name: e.name.clone(),
            problems: vec![problem],
        };
        if base.file_tenants.contains(&e.name) {
            rejected.push(reject(
                "a [[tenant]] of the config file has this name: rename one of them".into(),
            ));
            continue;
        }
        if !names.insert(&e.name) {
            rejected.push(reject(
                "an earlier entry has this name: each tenant is listed once".into(),
            ));
            continue;
        }
        let Some(t) = base.templates.iter().find(|t| t.name == e.template) else {
            let known: Vec<&str> = base.templates.iter().map(|t| t.name.as_str()).collect();
            rejected.push(reject(format!(
                "no [[tenant_template]] named `{}` (there are: {})",
                e.template,
                known.join(", ")
            )));
            continue;
        };
        match tenant_of(t, e, base_dir, secrets, &known) {
            Ok(tenant) => {
                accepted += 1;
                if base.settings.shard.is_none_or(|s| s.owns(&tenant.name)) {
                    config.inventory_tenants.insert(tenant.name.clone());
                    config.tenants.push(tenant);
                }
            }
            Err(problems) => rejected.push(Rejected {
                name: e.name.clone(),
                problems,
            }),
        }
    }
    config.tenants_in_file = base.tenants_in_file + accepted;
    config.reindex_tenants();
    Expansion {
        config,
        accepted,
        rejected,
    }
}

/// One entry's tenant, or every problem with it (`path: message`, the path the
/// template's, with the template's domain index).
fn tenant_of(
    t: &Template,
    e: &Entry,
    base_dir: &Path,
    secrets: &dyn SecretReader,
    known: &BTreeSet<String>,
) -> Result<super::Tenant, Vec<String>> {
    let filled = template::fill(t, &e.name, &e.vars).map_err(|m| vec![m])?;
    let mut v = Validator::new(base_dir, secrets);
    let profiles = filled.raw.client_profiles.clone().unwrap_or_default();
    let tenant = v.tenant(&t.path, &filled.raw, known, &profiles);
    let problems = v.into_problems();
    if problems.is_empty() {
        return Ok(tenant);
    }
    Err(problems
        .into_iter()
        .map(|p| {
            format!(
                "{}: {}",
                template_path(&t.path, &filled.kept, &p.path),
                p.message
            )
        })
        .collect())
}

/// `p` (a path in the filled tenant) with its domain index put back to the template's.
fn template_path(prefix: &str, kept: &[usize], p: &str) -> String {
    let head = format!("{prefix}.domain[");
    if let Some(rest) = p.strip_prefix(&head)
        && let Some((index, tail)) = rest.split_once(']')
        && let Some(orig) = index.parse::<usize>().ok().and_then(|i| kept.get(i))
    {
        return format!("{head}{orig}]{tail}");
    }
    p.to_owned()
}

impl Validator<'_> {
    /// `[[tenant_template]]`: names unique labels, placeholders known, and each template
    /// valid as a tenant once filled with a sample entry (name `example`, every var `x`,
    /// every secret present), so a template's own mistakes are the file's problems.
    pub(super) fn templates(
        &mut self,
        raw: &[super::raw::RawTenant],
        known: &BTreeSet<String>,
        default_profiles: &[String],
    ) -> Vec<Template> {
        let mut out: Vec<Template> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let path = format!("tenant_template[{i}]");
            let name = self.label(
                &format!("{path}.name"),
                r.name.as_deref(),
                "[[tenant_template]]",
            );
            if out.iter().any(|t| t.name == name) {
                self.problem(
                    &format!("{path}.name"),
                    format!("template `{name}` is defined twice"),
                );
            }
            let checked = template::check(r);
            let placeholders_ok = checked.problems.is_empty();
            for (p, m) in checked.problems {
                self.problem(&format!("{path}.{p}"), m);
            }
            let mut r = r.clone();
            if r.client_profiles.is_none() {
                r.client_profiles = Some(default_profiles.to_vec());
            }
            let t = Template { name, path, raw: r };
            if placeholders_ok {
                let sample = Entry {
                    name: "example".into(),
                    template: t.name.clone(),
                    vars: checked
                        .vars
                        .into_iter()
                        .map(|v| (v, "x".to_owned()))
                        .collect(),
                };
                // What is said about a string that uses a var depends on the entry: only
                // the rest is the template's own mistake.
                let depends = |p: &str| {
                    let p = p.strip_prefix(&format!("{}.", t.path)).unwrap_or(p);
                    checked.var_paths.iter().any(|v| {
                        v == p || v.starts_with(&format!("{p}.")) || v.starts_with(&format!("{p}["))
                    })
                };
                if let Err(problems) = tenant_of(&t, &sample, self.base_dir, &AnySecret, known) {
                    for p in problems {
                        let (p, m) = p.split_once(": ").unwrap_or(("", &p));
                        if !depends(p) {
                            self.problem(p, m);
                        }
                    }
                }
            }
            out.push(t);
        }
        out
    }

    /// `[inventory]`.
    pub(super) fn inventory(&mut self, raw: &RawInventory, templates: &[Template]) -> Inventory {
        let file = raw.file.as_deref().map(|f| self.base_dir.join(f));
        let url = raw
            .url
            .as_deref()
            .and_then(|u| self.url("inventory.url", u));
        if raw.file.is_none() && raw.url.is_none() {
            self.problem(
                "inventory",
                "give `file` (a JSON list of entries), `url` (an endpoint answering one), or both",
            );
        }
        let bearer = raw
            .bearer
            .as_ref()
            .and_then(|b| self.secret("inventory.bearer", b));
        if raw.bearer.is_some() && raw.url.is_none() {
            self.problem(
                "inventory.bearer",
                "only sent to `url`: set url, or remove bearer",
            );
        }
        let refresh = self.duration("inventory.refresh", raw.refresh.as_deref(), DEFAULT_REFRESH);
        if refresh < Duration::from_secs(1) {
            self.problem("inventory.refresh", "must be at least 1s");
        }
        let max_bytes = raw.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        if max_bytes == 0 {
            self.problem("inventory.max_bytes", "must be more than 0");
        }
        if templates.is_empty() {
            self.problem(
                "inventory",
                "no [[tenant_template]]: entries name the template their tenant is made from",
            );
        }
        Inventory {
            file,
            url,
            bearer,
            refresh,
            max_bytes,
            base_dir: self.base_dir.to_owned(),
        }
    }
}

/// The sample entry's secret reader: every secret exists (a template's secrets are the
/// entries', checked when an entry is expanded).
struct AnySecret;

impl SecretReader for AnySecret {
    fn env(&self, _: &str) -> Option<String> {
        Some("x".into())
    }
    fn file(&self, _: &Path) -> std::io::Result<String> {
        Ok("x".into())
    }
}

/// The problems of an expansion as config problems (`inventory` path, one per entry),
/// for `validate` and the log.
pub fn problems(rejected: &[Rejected]) -> Vec<Problem> {
    rejected
        .iter()
        .map(|r| Problem {
            path: format!("inventory[{}]", r.name),
            message: r.problems.join("; "),
        })
        .collect()
}

#[cfg(test)]
#[path = "inventory_tests.rs"]
mod tests;
