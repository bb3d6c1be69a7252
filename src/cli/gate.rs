//! `keycanary gate`: ask a rotation or retirement gate, either from here (one round of
//! every tenant, assessed on a fresh history) or, with `--url`, from a running daemon's
//! `/v1/gate/*` (its history makes time-based conditions decidable). Both give the same
//! typed [`GateAnswer`], printed as JSON or as text ([`gate_text`]); exit 0 safe, 1 unsafe.
//!
//! The daemon never calls this; only the CLI does.

use super::Format;
use super::oneshot::{probe_and_assess, start_lab_if_configured};
use crate::config::Config;
use crate::detect::gate::{self, GateAnswer, Question, global};
use crate::{clock, probe};
use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// What the command line asks.
pub(super) struct Asked {
    pub tenant: String,
    pub kid: Option<String>,
    pub retire: bool,
}

impl Asked {
    fn question(&self) -> Question<'_> {
        if self.retire {
            Question::Retirement(self.kid.as_deref().unwrap_or_default())
        } else {
            Question::Rotation(self.kid.as_deref())
        }
    }
}

/// Where the answer comes from.
pub(super) enum Source {
    /// One round from here.
    Here,
    /// A running daemon's API (`--url`).
    Daemon(String),
    /// Every location's exports in Prometheus: `--prometheus` (else `[gate] prometheus`)
    /// and `--location`s (else `[gate] locations`).
    Prometheus(Option<String>, Vec<String>),
}

pub(super) async fn run(
    cfg: &Config,
    path: &Path,
    asked: Asked,
    source: Source,
    format: Format,
) -> anyhow::Result<ExitCode> {
    if let Source::Prometheus(url, locations) = source {
        return global(cfg, path, &asked, url, locations, format).await;
    }
    let url = match &source {
        Source::Daemon(url) => Some(url.as_str()),
        _ => None,
    };
    if cfg.tenant(&asked.tenant).is_none() {
        eprintln!(
            "error: tenant `{}` is not in {}",
            asked.tenant,
            path.display()
        );
        return Ok(ExitCode::from(2));
    }
    if asked.retire && asked.kid.is_none() {
        eprintln!("error: --retire needs --kid (the key to remove)");
        return Ok(ExitCode::from(2));
    }
    let answer = match url {
        Some(url) => ask(url, &asked, cfg.api.bearer_token.as_ref()).await?,
        None => {
            let clock = clock::system();
            let _lab = start_lab_if_configured(cfg, &clock).await?;
            let prober = probe::Prober::new(cfg, clock.clone())?;
            let a = probe_and_assess(cfg, &prober, &clock).await;
            gate::answer(
                cfg,
                &a.history,
                &a.observations,
                &a.findings,
                &asked.tenant,
                asked.question(),
                a.now,
            )
        }
    };
    print_answer(&answer, format)
}

/// The rotation gate over every location, from Prometheus. Prometheus unreachable or
/// answering garbage is an error (exit 2), never an answer.
async fn global(
    cfg: &Config,
    path: &Path,
    asked: &Asked,
    url: Option<String>,
    locations: Vec<String>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let base = match url {
        Some(u) => url::Url::parse(&u)
            .ok()
            .filter(|p| matches!(p.scheme(), "http" | "https"))
            .with_context(|| format!("--prometheus `{u}` is not an http(s) URL"))?,
        None => cfg.gate.prometheus.clone().with_context(|| {
            format!(
                "--global needs [gate] prometheus in {} (or pass --prometheus URL)",
                path.display()
            )
        })?,
    };
    let locations = if locations.is_empty() {
        cfg.gate.locations.clone()
    } else {
        locations
    };
    if locations.is_empty() {
        bail!(
            "no locations to ask: set [gate] locations in {} or pass --location (repeatable)",
            path.display()
        );
    }
    let Some(kid) = asked.kid.as_deref() else {
        bail!("the gate over every location needs --kid: the key to promote");
    };
    let scope = global::Scope {
        tenant: &asked.tenant,
        kid,
        locations: &locations,
        margin: cfg.settings.gate_margin,
        max_age: cfg.gate.max_age,
        now: clock::system().now(),
    };
    let answer = crate::prometheus::rotation(&base, &scope)
        .await
        .context("no answer over every location")?;
    print_answer(&answer, format)
}

fn print_answer(answer: &GateAnswer, format: Format) -> anyhow::Result<ExitCode> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(answer)?),
        Format::Text => print!("{}", gate_text(answer)),
    }
    Ok(if answer.safe {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `GET {base}/v1/gate/rotation?tenant=&kid=` or `/v1/gate/retirement?tenant=&kid=`.
/// 200 and 409 both carry an answer; anything else is an error.
async fn ask(
    base: &str,
    asked: &Asked,
    bearer: Option<&SecretString>,
) -> anyhow::Result<GateAnswer> {
    let gate = if asked.retire {
        "retirement"
    } else {
        "rotation"
    };
    let mut url = url::Url::parse(base).with_context(|| format!("--url `{base}` is not a URL"))?;
    url.set_path(&format!("/v1/gate/{gate}"));
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("tenant", &asked.tenant);
        if let Some(k) = &asked.kid {
            q.append_pair("kid", k);
        }
    }
    // The request carries the bearer token: a redirect is an error, never followed.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut req = client.get(url.clone());
    if let Some(token) = bearer {
        req = req.bearer_auth(token.expose_secret());
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {base}"))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .with_context(|| format!("cannot read the daemon's answer to {url}"))?;
    if status.as_u16() != 200 && status.as_u16() != 409 {
        bail!(
            "the daemon answered HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body)
        .with_context(|| format!("the daemon's answer to {url} is not a gate answer"))
}

/// A gate answer for people: the verdict, then every blocking condition with its subject,
/// detail and when it will be met, then every advisory (an open problem that does not make
/// the answer unsafe) with why it matters for the rotation.
pub(super) fn gate_text(answer: &GateAnswer) -> String {
    let mut out = String::new();
    let kid = answer
        .kid
        .as_deref()
        .map(|k| format!(" kid {k}"))
        .unwrap_or_default();
    let verdict = if answer.safe { "SAFE" } else { "UNSAFE" };
    let _ = writeln!(
        out,
        "{} gate, tenant {}{kid}: {verdict}",
        answer.gate.as_str(),
        answer.tenant
    );
    if let Some(at) = answer.ready_at {
        let _ = writeln!(out, "ready at {at} if nothing changes");
    }
    if !answer.blocking.is_empty() {
        let _ = writeln!(out, "blocking:");
    }
    for b in &answer.blocking {
        let ready = b
            .ready_at
            .map(|t| format!(" (ready at {t})"))
            .unwrap_or_default();
        let location = b
            .location
            .as_deref()
            .map(|l| format!(" location={l}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<26} {}{location}  {}{ready}",
            b.code.as_str(),
            b.subject,
            b.detail
        );
    }
    if !answer.advisories.is_empty() {
        let _ = writeln!(out, "advisories (do not block):");
    }
    for a in &answer.advisories {
        let _ = writeln!(
            out,
            "  {:<26} {}  {}\n  {:<26} why: {}",
            a.code.as_str(),
            a.subject,
            a.detail,
            "",
            a.why
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::gate::{Advisory, Blocker, GateKind};
    use crate::model::{Code, Subject, Timestamp, ViewId};

    fn unsafe_answer() -> GateAnswer {
        GateAnswer {
            gate: GateKind::Rotation,
            tenant: "acme".into(),
            kid: Some("key-2".into()),
            safe: false,
            blocking: vec![Blocker {
                code: Code::StaleEdge,
                subject: Subject::view(
                    "acme",
                    "io",
                    &ViewId {
                        path: "cdn".into(),
                        edge: None,
                    },
                ),
                detail: "serves key-1 only".into(),
                ready_at: Some(Timestamp(60_000)),
                location: None,
            }],
            advisories: vec![Advisory {
                code: Code::CachePolicyDrift,
                subject: Subject::domain("acme", "io"),
                detail: "io caches, app does not".into(),
                why: "a purge planned for one domain does not cover the other".into(),
            }],
            ready_at: Some(Timestamp(60_000)),
            evaluated_at: Timestamp(0),
        }
    }

    /// What `gate --format json` prints and `/v1/gate/*` serves (one serializer), for an
    /// unsafe and a safe answer, keeps every documented field with its type.
    #[test]
    fn the_answer_keeps_its_published_contract() {
        let unsafe_ = unsafe_answer();
        let mut edge = unsafe_.blocking[0].clone();
        edge.subject.edge = Some("192.0.2.10".into());
        edge.subject.kid = Some("key-1".into());
        edge.ready_at = None;
        edge.location = Some("us".into());
        let mut pinned = unsafe_.clone();
        pinned.blocking.push(edge);
        let safe = GateAnswer {
            gate: GateKind::Retirement,
            kid: None,
            safe: true,
            blocking: vec![],
            ready_at: None,
            ..unsafe_answer()
        };
        let printed: Vec<serde_json::Value> = [unsafe_, pinned, safe]
            .iter()
            .map(|a| serde_json::from_str(&serde_json::to_string_pretty(a).unwrap()).unwrap())
            .collect();
        crate::contract::assert_all_keep(
            "the gate answer",
            &printed,
            include_str!("../../tests/contracts/gate.contract"),
        );
    }

    #[test]
    fn the_answer_the_api_serves_reads_back_as_the_same_answer() {
        let a = unsafe_answer();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<GateAnswer>(&json).unwrap(), a);
        // A newer daemon may add fields: they are ignored, not an error.
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["later_field"] = serde_json::json!([]);
        assert_eq!(serde_json::from_value::<GateAnswer>(v.clone()).unwrap(), a);
        // An older daemon sends no advisories: read as none.
        v.as_object_mut().unwrap().remove("advisories");
        let old = serde_json::from_value::<GateAnswer>(v).unwrap();
        assert!(old.advisories.is_empty() && old.blocking == a.blocking);
    }

    #[test]
    fn text_names_the_verdict_and_each_blocker_with_its_subject_and_ready_time() {
        let text = gate_text(&unsafe_answer());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "rotation gate, tenant acme kid key-2: UNSAFE");
        assert_eq!(
            lines[1],
            format!("ready at {} if nothing changes", Timestamp(60_000))
        );
        assert_eq!(lines[2], "blocking:");
        assert!(lines[3].contains("stale_edge"), "{text}");
        assert!(
            lines[3].contains("tenant=acme domain=io path=cdn"),
            "{text}"
        );
        assert!(lines[3].contains("serves key-1 only"), "{text}");
        assert!(lines[3].ends_with(&format!("(ready at {})", Timestamp(60_000))));
        assert_eq!(lines[4], "advisories (do not block):");
        assert!(
            lines[5].contains("cache_policy_drift") && lines[5].contains("io caches"),
            "{text}"
        );
        assert!(
            lines[6].trim_start().starts_with("why: a purge planned"),
            "{text}"
        );
        assert_eq!(lines.len(), 7, "{text}");
    }

    #[test]
    fn text_names_the_location_of_a_blocker_over_every_location() {
        let mut a = unsafe_answer();
        a.blocking[0].location = Some("us".into());
        let text = gate_text(&a);
        assert!(
            text.lines()
                .nth(3)
                .is_some_and(|l| l.contains("path=cdn location=us  serves key-1 only")),
            "{text}"
        );
    }

    #[test]
    fn a_safe_answer_still_shows_its_advisories() {
        let mut a = unsafe_answer();
        a.safe = true;
        a.blocking.clear();
        a.ready_at = None;
        let text = gate_text(&a);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "rotation gate, tenant acme kid key-2: SAFE");
        assert_eq!(lines[1], "advisories (do not block):");
        assert!(!text.contains("blocking:"), "{text}");
    }
}
