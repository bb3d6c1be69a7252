//! What `check` and a local `gate` share: one round of every tenant from here, assessed on
//! a fresh history, and the lab started first when the config has `[lab]`.
//!
//! Not here: the daemon's rounds (`crate::daemon`), which judge against a remembered history.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::detect::{self, history::History};
use crate::model::{Finding, Observation, Timestamp};
use crate::{lab, probe, telemetry};
use anyhow::Context;

/// A round of every tenant and what detection made of it.
pub(super) struct Assessed {
    pub observations: Vec<Observation>,
    pub findings: Vec<Finding>,
    pub history: History,
    /// When the round was assessed.
    pub now: Timestamp,
}

/// One round of every tenant, assessed on a fresh history; each tenant's findings are
/// traced as `detect.assess` in its round's trace.
pub(super) async fn probe_and_assess(
    cfg: &Config,
    prober: &probe::Prober,
    clock: &SharedClock,
) -> Assessed {
    let (observations, traces): (Vec<_>, Vec<_>) =
        prober.round_traced(cfg).await.into_iter().unzip();
    let spans: Vec<tracing::Span> = observations
        .iter()
        .zip(&traces)
        .map(|(o, t)| t.assess_span(&o.tenant))
        .collect();
    let now = clock.now();
    let mut history = History::default();
    let findings = detect::assess(cfg, &mut history, &observations, now);
    for (o, span) in observations.iter().zip(&spans) {
        let mine: Vec<_> = findings
            .iter()
            .filter(|f| f.subject.tenant == o.tenant)
            .cloned()
            .collect();
        telemetry::traces::record_findings(span, &mine);
    }
    Assessed {
        observations,
        findings,
        history,
        now,
    }
}

/// Starts the in-process lab when the config has `[lab]`. If its address is already taken
/// (a lab or a daemon with its lab is running), that one is probed instead.
pub(super) async fn start_lab_if_configured(
    cfg: &Config,
    clock: &SharedClock,
) -> anyhow::Result<Option<lab::Lab>> {
    let Some(l) = &cfg.lab else { return Ok(None) };
    if std::net::TcpListener::bind(l.listen).is_err() {
        tracing::info!(listen = %l.listen, "lab address already in use: probing the lab that is running there");
        return Ok(None);
    }
    let lab = lab::start(lab::LabOptions {
        listen: l.listen,
        clock: clock.clone(),
    })
    .await
    .with_context(|| format!("cannot start the lab on {}", l.listen))?;
    Ok(Some(lab))
}
