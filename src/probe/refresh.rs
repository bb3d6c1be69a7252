//! Rotated refresh tokens. An IdP that rotates refresh tokens answers a `refresh_token`
//! grant with a new one and invalidates the one it was given (often revoking the whole
//! family when an old one is presented again). The probe keeps the newest token of each
//! tenant's domain here — in memory and in `refresh_tokens.json` in the state directory,
//! written with mode 0600 through a temporary file and a rename — and uses it next round
//! instead of the configured one.
//!
//! A stored token belongs to the configured token it descends from (by SHA-256): when the
//! configured `refresh_token` changes, the stored one is forgotten and the new configured
//! one is used. A stored token the IdP refuses is not replaced by the configured one
//! (presenting an already rotated token would trip reuse detection): the login fails and
//! says so, and setting a new `refresh_token` in probes.toml recovers.
//!
//! Tokens are never logged: [`Stored`]'s `Debug` hides them, errors name the file only.
//! Not here: building the token request (`probe::login`).

use crate::model::Timestamp;
use crate::probe::jwks::sha256_hex;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file in the state directory.
pub const FILE: &str = "refresh_tokens.json";

/// One domain's newest refresh token.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    /// SHA-256 (hex) of the configured token this one descends from.
    configured_sha256: String,
    refresh_token: String,
    stored_at: Timestamp,
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("stored_at", &self.stored_at)
            .finish_non_exhaustive()
    }
}

/// The token to present for one domain, and where it came from.
pub struct Current {
    pub token: SecretString,
    /// When the token was stored after a rotation; `None`: the configured one.
    pub rotated_at: Option<Timestamp>,
}

/// The newest refresh token per `tenant/domain` (see the module doc).
#[derive(Debug)]
pub struct RefreshTokens {
    /// `None`: kept in memory only.
    path: Option<PathBuf>,
    tokens: Mutex<BTreeMap<String, Stored>>,
}

fn sha256(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

impl RefreshTokens {
    /// Kept in memory only (tests, and when no state directory is wanted).
    pub fn in_memory() -> RefreshTokens {
        RefreshTokens {
            path: None,
            tokens: Mutex::default(),
        }
    }

    /// Kept in `dir` (created when a token is first stored); what `dir` already holds is
    /// read now. An unreadable file is logged and treated as empty.
    pub fn in_dir(dir: &Path) -> RefreshTokens {
        let path = dir.join(FILE);
        let tokens = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the stored refresh tokens; using the configured ones");
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the stored refresh tokens; using the configured ones");
                BTreeMap::new()
            }
        };
        RefreshTokens {
            path: Some(path),
            tokens: Mutex::new(tokens),
        }
    }

    /// The token to present for `key` whose configured token is `configured`.
    pub fn current(&self, key: &str, configured: &SecretString) -> Current {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get(key) {
            Some(s) if s.configured_sha256 == sha256(configured.expose_secret()) => Current {
                token: SecretString::from(s.refresh_token.clone()),
                rotated_at: Some(s.stored_at),
            },
            _ => Current {
                token: configured.clone(),
                rotated_at: None,
            },
        }
    }

    /// Keeps `new`, the token the IdP answered with, for `key`: in memory at once, then in
    /// the file. A file that cannot be written is an error (the token is still used until
    /// the process stops).
    pub fn rotated(
        &self,
        key: &str,
        configured: &SecretString,
        new: &str,
        now: Timestamp,
    ) -> std::io::Result<()> {
        let snapshot = {
            let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.insert(
                key.to_owned(),
                Stored {
                    configured_sha256: sha256(configured.expose_secret()),
                    refresh_token: new.to_owned(),
                    stored_at: now,
                },
            );
            serde_json::to_vec_pretty(&*tokens).expect("plain data serialises")
        };
        match &self.path {
            Some(path) => write_private(path, &snapshot),
            None => Ok(()),
        }
    }
}

/// Writes `bytes` to `path` readable by the owner only, atomically (a temporary file in
/// the same directory, then a rename).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn the_newest_token_is_kept_per_domain_and_belongs_to_its_configured_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = RefreshTokens::in_dir(dir.path());
        let configured = secret("rt-configured");
        let use_now = |s: &RefreshTokens, key: &str, c: &SecretString| {
            let cur = s.current(key, c);
            (cur.token.expose_secret().to_owned(), cur.rotated_at)
        };
        assert_eq!(
            use_now(&store, "acme/app", &configured),
            ("rt-configured".to_owned(), None)
        );
        store
            .rotated("acme/app", &configured, "rt-2", Timestamp(5))
            .unwrap();
        store
            .rotated("acme/app", &configured, "rt-3", Timestamp(6))
            .unwrap();
        let want = ("rt-3".to_owned(), Some(Timestamp(6)));
        assert_eq!(use_now(&store, "acme/app", &configured), want);
        // Another domain keeps its configured token.
        assert_eq!(use_now(&store, "acme/io", &configured).1, None);

        // A new process reads the file; the file is the owner's only.
        let path = dir.path().join(FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = RefreshTokens::in_dir(dir.path());
        assert_eq!(use_now(&again, "acme/app", &configured), want);
        // A changed configured token replaces the stored one.
        let changed = secret("rt-new-from-config");
        assert_eq!(
            use_now(&again, "acme/app", &changed),
            ("rt-new-from-config".to_owned(), None)
        );
        // Debug never shows a token.
        let shown = format!("{again:?}");
        assert!(
            !shown.contains("rt-3") && !shown.contains("configured"),
            "{shown}"
        );
    }

    #[test]
    fn an_unreadable_file_falls_back_to_the_configured_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"not json").unwrap();
        let store = RefreshTokens::in_dir(dir.path());
        let cur = store.current("acme/app", &secret("rt"));
        assert_eq!((cur.token.expose_secret(), cur.rotated_at), ("rt", None));
    }
}
