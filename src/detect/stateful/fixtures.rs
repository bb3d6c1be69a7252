//! Test fixtures for history and its rules: the clean round of `round::fixtures` moved to
//! step `i` (every 30 s from `NOW`, tokens issued then), replayed through
//! [`crate::detect::assess`], and a `check` on the findings of the last step.

use crate::config::{Config, SecretSource};
use crate::detect::assess;
use crate::detect::history::History;
pub use crate::detect::round::fixtures::*;
use crate::model::*;

/// The time of step `i`: rounds are 30 s apart (the fixture's interval).
pub fn at(i: i64) -> Timestamp {
    NOW.plus_secs(30 * i)
}

/// The clean round at step `i`.
pub fn round(i: i64) -> Observation {
    let mut o = obs();
    retime(&mut o, at(i));
    o
}

/// Moves a round to `t`: fetch times, and tokens issued at `t` valid for 300 s.
pub fn retime(o: &mut Observation, t: Timestamp) {
    o.started_at = t;
    o.finished_at = t;
    for d in &mut o.domains {
        if let Some(disc) = &mut d.discovery {
            disc.fetch.started_at = t;
        }
        for v in &mut d.views {
            v.fetch.started_at = t;
        }
        if let Some(LoginObservation {
            result: LoginResult::Tokens { tokens },
            ..
        }) = &mut d.login
        {
            for tok in tokens {
                tok.claims.iat = Some(t.as_secs() - 1);
                tok.claims.exp = Some(t.as_secs() + 300);
            }
        }
    }
}

/// The fixture config with its TOML edited.
pub fn config_with(edit: impl FnOnce(&str) -> String) -> Config {
    let env = |_: &str| Some("test-secret".to_owned());
    let secrets = SecretSource {
        base_dir: std::path::Path::new("."),
        env: &env,
    };
    let interval = format!("interval = \"30s\"\n{}", probes_toml());
    Config::from_toml_str(&edit(&interval), "test.toml", &secrets).expect("test config is valid")
}

/// The fixture tenant `acme` plus `globex` (one domain `app`, one path `cdn`).
pub fn two_tenants() -> Config {
    config_with(|toml| {
        format!(
            "{toml}\n[[tenant]]\nname = \"globex\"\n[[tenant.domain]]\nname = \"app\"\nissuer = \"https://idp.example.app/globex\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n"
        )
    })
}

/// Assesses each observation at its `finished_at` (one step each, several tenants of one
/// step share a time); returns the history and the findings of every step.
pub fn replay(config: &Config, steps: &[Observation]) -> (History, Vec<Vec<Finding>>) {
    let mut history = History::default();
    let mut out = Vec::new();
    for o in steps {
        let findings = assess(config, &mut history, std::slice::from_ref(o), o.finished_at);
        for f in &findings {
            assert!(!f.message.contains('\n'), "multi-line message: {f:?}");
            assert!(
                f.message.chars().next().is_some_and(|c| !c.is_uppercase()),
                "message must start lowercase: {f:?}"
            );
            assert_eq!(f.severity, f.code.severity());
        }
        let keys: Vec<_> = findings
            .iter()
            .map(|f| (f.severity, f.code, &f.subject))
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "assess output must be sorted with one finding per (code, subject): {keys:#?}"
        );
        out.push(findings);
    }
    (history, out)
}

/// Replays `steps` with the fixture config and asserts on which subjects `code` fires at
/// the last step. Returns those findings.
pub fn check(code: Code, steps: &[Observation], expected: &[&str]) -> Vec<Finding> {
    check_with(&config_with(str::to_owned), code, steps, expected)
}

pub fn check_with(
    config: &Config,
    code: Code,
    steps: &[Observation],
    expected: &[&str],
) -> Vec<Finding> {
    let (_, mut findings) = replay(config, steps);
    let found: Vec<Finding> = findings
        .pop()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.code == code)
        .collect();
    let subjects: Vec<String> = found.iter().map(|f| short(&f.subject)).collect();
    assert_eq!(subjects, expected, "{code} findings: {found:#?}");
    found
}

/// The history after recording `steps` (no rules run).
pub fn recorded(steps: &[Observation]) -> History {
    let mut h = History::default();
    for o in steps {
        h.record(o, o.finished_at);
    }
    h
}

/// Signs every token of the round (app's and io's) with `kid`.
pub fn sign_with(o: &mut Observation, kid: &str) {
    tok(o, 0).header.kid = Some(kid.into());
    if let Some(LoginObservation {
        result: LoginResult::Tokens { tokens },
        ..
    }) = &mut io(o).login
    {
        tokens[0].header.kid = Some(kid.into());
    }
}
