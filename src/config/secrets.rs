//! Secret references — `{ env = "NAME" }` or `{ file = "path" }` — resolved through an
//! injected [`SecretReader`], and held as [`SecretString`] (redacted `Debug`) from then on.
//!
//! The reader is the only way config touches the environment or the filesystem for a
//! secret: [`SecretSource`] is the real one (an environment lookup, the process's by
//! default, and the filesystem), [`MemorySecrets`] an in-memory one for tests. Validation
//! itself never reads a variable or a file. Secrets are never written inline; this module
//! says so rather than accepting them.

use super::validate::Validator;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Where secret references are read from.
pub trait SecretReader {
    /// The value of the environment variable `name`; `None` when it is unset.
    fn env(&self, name: &str) -> Option<String>;
    /// The contents of the file at `path`, already resolved against the config's directory.
    fn file(&self, path: &Path) -> io::Result<String>;
    /// A standard `OTEL_*` variable (not a secret reference: `config::otlp` merges them
    /// under `[telemetry.otlp]`). None by default, so a reader that answers any `env`
    /// name (as test readers do) does not configure OTLP by accident; `config::load`
    /// reads the process's.
    fn otel_env(&self, _name: &str) -> Option<String> {
        None
    }
}

/// The reader [`super::load`] uses: [`SecretSource::process`] plus the process's `OTEL_*`
/// variables.
pub(super) struct ProcessReader<'a>(pub(super) SecretSource<'a>);

impl SecretReader for ProcessReader<'_> {
    fn env(&self, name: &str) -> Option<String> {
        self.0.env(name)
    }

    fn file(&self, path: &Path) -> io::Result<String> {
        self.0.file(path)
    }

    fn otel_env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// The real reader: environment variables through `env` (the process's, from
/// [`SecretSource::process`]) and files from the filesystem, relative `{ file = "…" }`
/// paths (and `state_dir`) resolved against `base_dir`.
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

impl SecretReader for SecretSource<'_> {
    fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// An in-memory reader for tests: variables and files are what was put in, nothing else
/// exists. No `Debug`, since it holds secrets in the clear.
#[derive(Clone, Default)]
pub struct MemorySecrets {
    env: BTreeMap<String, String>,
    files: BTreeMap<PathBuf, String>,
}

impl MemorySecrets {
    pub fn new() -> MemorySecrets {
        MemorySecrets::default()
    }

    /// Sets the variable `name`.
    pub fn with_env(mut self, name: &str, value: &str) -> MemorySecrets {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Puts a file at `path` (as the validator asks for it: joined to the base directory).
    pub fn with_file(mut self, path: impl Into<PathBuf>, contents: &str) -> MemorySecrets {
        self.files.insert(path.into(), contents.to_owned());
        self
    }
}

impl SecretReader for MemorySecrets {
    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    /// The `OTEL_*` variables put in with [`MemorySecrets::with_env`].
    fn otel_env(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .filter(|_| name.starts_with("OTEL_"))
            .cloned()
    }

    fn file(&self, path: &Path) -> io::Result<String> {
        self.files.get(path).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "No such file or directory (in-memory secrets)",
            )
        })
    }
}

impl Validator<'_> {
    /// Resolves one secret reference at `path`, recording every problem with it.
    pub(super) fn secret(&mut self, path: &str, raw: &toml::Value) -> Option<SecretString> {
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
            (Some(name), None) => match self.secrets.env(name) {
                Some(v) if !v.is_empty() => Some(SecretString::from(v)),
                _ => {
                    self.problem(path, format!("environment variable {name} is not set: set it, or use {{ file = \"path\" }}"));
                    None
                }
            },
            (None, Some(f)) => {
                let p = self.base_dir.join(f);
                match self.secrets.file(&p) {
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
}
