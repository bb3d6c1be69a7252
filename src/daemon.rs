//! `keycanary run`: probe every tenant at the configured interval and log each finding
//! when it opens and when it resolves.
//!
//! This is the first, minimal daemon loop: one round at a time for all tenants, state in
//! memory only. Alert routing, durable state and notifications are not here yet.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::detect;
use crate::model::{Code, Finding, Subject};
use crate::probe::Prober;
use std::collections::BTreeMap;
use std::future::Future;
use tracing::{error, info, warn};

pub async fn run(
    config: Config,
    clock: SharedClock,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let prober = Prober::new(&config, clock.clone())?;
    let mut open: BTreeMap<(Code, Subject), Finding> = BTreeMap::new();
    let mut ticker = tokio::time::interval(config.settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    info!(tenants = config.tenants.len(), interval = ?config.settings.interval, "keycanary running");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let observations = prober.round(&config).await;
        let findings = detect::findings_for_round(&config, &observations, clock.now());
        let mut now_open = BTreeMap::new();
        for f in findings {
            let key = (f.code, f.subject.clone());
            if !open.contains_key(&key) {
                if f.severity.at_least(crate::model::Severity::High) {
                    error!(code = %f.code, severity = %f.severity, subject = %f.subject, "{}", f.message);
                } else {
                    warn!(code = %f.code, severity = %f.severity, subject = %f.subject, "{}", f.message);
                }
            }
            now_open.insert(key, f);
        }
        for ((code, subject), _) in open.iter().filter(|(k, _)| !now_open.contains_key(*k)) {
            info!(code = %code, subject = %subject, "resolved");
        }
        let views: usize = observations
            .iter()
            .flat_map(|o| &o.domains)
            .map(|d| d.views.len())
            .sum();
        info!(views, open_findings = now_open.len(), "round done");
        open = now_open;
    }
    info!("shutting down");
    Ok(())
}
