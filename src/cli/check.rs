//! `keycanary check`: one round of every tenant, the matrix and findings printed as text
//! or JSON (`crate::report`); exit 1 when a finding is at or above `--fail-on`.

use super::Format;
use super::oneshot::{probe_and_assess, start_lab_if_configured};
use crate::config::Config;
use crate::model::Severity;
use crate::{clock, probe, report};
use std::process::ExitCode;

pub(super) async fn run(
    cfg: &Config,
    format: Format,
    fail_on: Severity,
) -> anyhow::Result<ExitCode> {
    let clock = clock::system();
    let _lab = start_lab_if_configured(cfg, &clock).await?;
    let prober = probe::Prober::new(cfg, clock.clone())?;
    let assessed = probe_and_assess(cfg, &prober, &clock).await;
    let report = report::Report::new(&assessed.observations, assessed.findings);
    match format {
        Format::Text => print!("{}", report.to_text()),
        Format::Json => println!("{}", report.to_json()),
    }
    let failing = report.worst().is_some_and(|w| w.at_least(fail_on));
    Ok(if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
