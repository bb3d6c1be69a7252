//! `[gate]`: the rotation gate over every location. `prometheus` is the Prometheus that
//! scrapes every keycanary (one per location and shard); `locations` are the vantage
//! points that must answer (a configured location with no fresh data blocks); `max_age`
//! is how old a location's latest round of a tenant may be and still count (default three
//! intervals, as `probe_stale`).
//!
//! Kept apart from the other sections so the gate's settings read in one place. Pure:
//! the raw table in, a [`GateConfig`] and problems (with their TOML paths) out.

use super::validate::{Validator, is_label};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::time::Duration;
use url::Url;

/// `[gate]` as serde reads it.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawGate {
    pub(super) prometheus: Option<String>,
    pub(super) locations: Option<Vec<String>>,
    pub(super) max_age: Option<String>,
}

/// `[gate]`, validated.
#[derive(Debug, Clone, Default)]
pub struct GateConfig {
    /// Base URL of the Prometheus HTTP API (`/api/v1/query` is appended); `None`: only
    /// `keycanary gate --prometheus` can ask the global gate.
    pub prometheus: Option<Url>,
    /// Locations that must answer, each a `location` of some keycanary.
    pub locations: Vec<String>,
    /// How old a location's latest round may be and still count as data.
    pub max_age: Duration,
}

impl Validator<'_> {
    pub(super) fn gate(&mut self, raw: Option<&RawGate>, interval: Duration) -> GateConfig {
        let default_age = interval.saturating_mul(3);
        let Some(raw) = raw else {
            return GateConfig {
                max_age: default_age,
                ..GateConfig::default()
            };
        };
        let prometheus = raw
            .prometheus
            .as_deref()
            .and_then(|p| self.url("gate.prometheus", p));
        let mut locations = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, l) in raw.locations.iter().flatten().enumerate() {
            let path = format!("gate.locations[{i}]");
            if !is_label(l) {
                self.problem(&path, format!("`{l}` is not a location: use letters, digits, `_`, `-` or `.`, as each keycanary's `location`"));
            } else if !seen.insert(l.clone()) {
                self.problem(&path, format!("location `{l}` is listed twice"));
            } else {
                locations.push(l.clone());
            }
        }
        if raw.prometheus.is_some() && raw.locations.as_ref().is_none_or(Vec::is_empty) {
            self.problem(
                "gate.locations",
                "missing: list the locations that must answer, like [\"eu\", \"us\"] (each keycanary's `location`)",
            );
        }
        let max_age = self.duration("gate.max_age", raw.max_age.as_deref(), default_age);
        if max_age.is_zero() {
            self.problem(
                "gate.max_age",
                "must be more than 0s: a round is never that fresh",
            );
        }
        GateConfig {
            prometheus,
            locations,
            max_age,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{self, MemorySecrets, fixtures::TomlFixture};
    use std::path::Path;
    use std::time::Duration;

    /// The fixture tenant plus `gate` → the problems' `path: message`, or the config.
    fn parse(gate: &str) -> Result<config::Config, Vec<String>> {
        let text = format!(
            "{gate}\n{}",
            TomlFixture::tenant("acme")
                .domain("io", "https://idp.example/io/acme")
                .login("c", "S")
        );
        let secrets = MemorySecrets::new().with_env("S", "x");
        config::parse(&text, "t.toml", Path::new("."), &secrets).map_err(|e| match e {
            config::ConfigError::Invalid { problems, .. } => problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect(),
            other => vec![other.to_string()],
        })
    }

    #[test]
    fn gate_section() {
        let c = parse("").unwrap();
        assert!(c.gate.prometheus.is_none() && c.gate.locations.is_empty());
        assert_eq!(
            c.gate.max_age,
            Duration::from_secs(90),
            "3 × the default interval"
        );
        let c = parse("interval = \"10s\"\n[gate]\nprometheus = \"http://prom:9090\"\nlocations = [\"eu\", \"us\"]").unwrap();
        assert_eq!(c.gate.prometheus.unwrap().as_str(), "http://prom:9090/");
        assert_eq!(c.gate.locations, ["eu", "us"]);
        assert_eq!(c.gate.max_age, Duration::from_secs(30));
        let c = parse("[gate]\nlocations = [\"eu\"]\nmax_age = \"5m\"").unwrap();
        assert_eq!(c.gate.max_age, Duration::from_secs(300));
        // Every problem at once, each with its path.
        let problems = parse(
            "[gate]\nprometheus = \"ftp://x\"\nlocations = [\"eu\", \"eu\", \"a b\"]\nmax_age = \"0s\"\ncolour = 1",
        )
        .unwrap_err();
        let paths: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "gate",
                "gate.prometheus",
                "gate.locations[1]",
                "gate.locations[2]",
                "gate.max_age"
            ],
            "{problems:#?}"
        );
        let problems = parse("[gate]\nprometheus = \"http://prom:9090\"").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("gate.locations: missing"),
            "{problems:#?}"
        );
    }
}
