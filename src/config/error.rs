//! What can go wrong with a config file: it cannot be read, it is not TOML of the right
//! shape, or it has problems ([`Problem`], each with its TOML path), all listed at once.
//!
//! Only the error types and their messages; finding the problems is `validate`'s job.

use std::fmt;
use std::path::PathBuf;

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
