//! Reading the TOML into the raw structs without stopping at the first wrong type: each
//! value of the wrong type (`interval = 30` where a string is expected) becomes a
//! [`Problem`] at its TOML path, the value is set aside, and reading goes on, so the
//! file's other problems are listed with it.
//!
//! A syntax error (the text is not TOML) still stops everything, and is reported by
//! line, column and the parser's message only — never the offending line, which may be
//! an inline secret. Values are never quoted in type problems either; only their kind.

use super::toml_path;
use crate::config::raw::RawConfig;
use crate::config::{ConfigError, Problem};
use serde_path_to_error::Segment;

/// What reading gives: the raw config, the TOML paths of unknown keys, and the values of
/// the wrong type (each a problem).
pub(super) struct Read {
    pub(super) raw: RawConfig,
    pub(super) unknown: Vec<String>,
    pub(super) wrong_types: Vec<Problem>,
}

/// At most this many wrong types are listed (each costs one more pass over the file).
const MAX_WRONG_TYPES: usize = 100;

pub(super) fn read(text: &str, origin: &str) -> Result<Read, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: origin.to_owned(),
        message: syntax_message(text, &e),
    })?;
    let mut value = toml::Value::Table(table);
    let mut wrong_types = Vec::new();
    loop {
        let mut unknown = Vec::new();
        let mut note = |p: serde_ignored::Path<'_>| unknown.push(toml_path(&p));
        let de = serde_ignored::Deserializer::new(value.clone(), &mut note);
        let err = match serde_path_to_error::deserialize::<_, RawConfig>(de) {
            Ok(raw) => {
                return Ok(Read {
                    raw,
                    unknown,
                    wrong_types,
                });
            }
            Err(err) => err,
        };
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let found = lookup(&value, &segments).map(kind);
        wrong_types.push(Problem {
            path: path.clone(),
            message: type_message(found, &err.inner().to_string()),
        });
        if wrong_types.len() >= MAX_WRONG_TYPES || !remove(&mut value, &segments) {
            // Nothing more can be read: report what was found, with nothing else.
            return Ok(Read {
                raw: RawConfig::default(),
                unknown: Vec::new(),
                wrong_types,
            });
        }
    }
}

/// `line L, column C: message` for a syntax error, without the source text.
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let message = super::one_line(e.message());
    let Some(span) = e.span() else {
        return message;
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}: {message}")
}

fn kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// The problem's message: what was found and what was expected, never the value itself.
fn type_message(found: Option<&str>, serde_message: &str) -> String {
    let expected = serde_message
        .rsplit_once("expected ")
        .map(|(_, e)| e.trim().to_owned());
    let mut out = match (found, &expected) {
        (Some(f), Some(e)) => format!("wrong type: {f}, expected {e}"),
        (None, Some(e)) => format!("wrong type: expected {e}"),
        _ => "wrong type".to_owned(),
    };
    let number = matches!(found, Some("an integer" | "a float"));
    if number && expected.as_deref().is_some_and(|e| e.contains("string")) {
        out.push_str(": write durations and names in quotes, like \"30s\"");
    }
    out
}

fn lookup<'a>(v: &'a toml::Value, path: &[Segment]) -> Option<&'a toml::Value> {
    path.iter().try_fold(v, |v, s| match (s, v) {
        (Segment::Map { key }, toml::Value::Table(t)) => t.get(key),
        (Segment::Seq { index }, toml::Value::Array(a)) => a.get(*index),
        _ => None,
    })
}

/// Removes the value at `path`; false when there is none (or the path is the root).
fn remove(v: &mut toml::Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut v = v;
    for s in parents {
        v = match (s, v) {
            (Segment::Map { key }, toml::Value::Table(t)) => match t.get_mut(key) {
                Some(x) => x,
                None => return false,
            },
            (Segment::Seq { index }, toml::Value::Array(a)) => match a.get_mut(*index) {
                Some(x) => x,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, v) {
        (Segment::Map { key }, toml::Value::Table(t)) => t.remove(key).is_some(),
        (Segment::Seq { index }, toml::Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}
