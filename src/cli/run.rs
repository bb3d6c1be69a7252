//! `keycanary run`: the daemon (`crate::daemon`) with its HTTP API (`crate::api`) and, when
//! configured, OTLP metrics, until SIGTERM or Ctrl-C. The lab starts first when the config
//! has `[lab]`.

use super::oneshot::start_lab_if_configured;
use super::shutdown_signal;
use crate::clock;
use crate::config::Config;
use crate::snapshot::{self, SharedSnapshot};
use crate::telemetry::metrics;
use crate::telemetry::otlp_metrics::{OtlpMetrics, Source};
use crate::{api, daemon};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

pub(super) async fn run(cfg: Config, path: PathBuf) -> anyhow::Result<ExitCode> {
    let clock = clock::system();
    let _lab = start_lab_if_configured(&cfg, &clock).await?;
    let listen = cfg.api.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} for the HTTP API: free it or set [api] listen")
        })?;
    let snapshot = snapshot::new_snapshot();
    let otlp_metrics = start_otlp_metrics(&cfg, &snapshot)?;
    let state = api::ApiState {
        snapshot: snapshot.clone(),
        config: Arc::new(cfg.clone()),
        clock: clock.clone(),
        state_dir: Some(cfg.settings.state_dir.clone()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(api::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let options = daemon::Options {
        config_path: Some(path),
        durations: otlp_metrics.as_ref().map(|m| m.durations()),
        ..Default::default()
    };
    let result = daemon::run_with_options(cfg, clock, snapshot, shutdown_signal(), options).await;
    let _ = stop.send(());
    if let Some(m) = otlp_metrics {
        // Off the worker threads: the final export blocks (bounded by a timeout).
        let _ = tokio::task::spawn_blocking(move || m.shutdown()).await;
    }
    api.await.context("the HTTP API task panicked")??;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Exports the `/metrics` families over OTLP every interval when OTLP is configured.
fn start_otlp_metrics(
    cfg: &Config,
    snapshot: &SharedSnapshot,
) -> anyhow::Result<Option<OtlpMetrics>> {
    let Some(otlp) = &cfg.telemetry.otlp else {
        return Ok(None);
    };
    let snapshot = snapshot.clone();
    let config = Arc::new(cfg.clone());
    let source: Source = Arc::new(move || {
        let s = snapshot.read().unwrap_or_else(|e| e.into_inner());
        // The daemon's running config (it follows reloads) once published.
        let config = s.config.as_deref().unwrap_or(&config);
        metrics::families(&s, config, metrics::BuildInfo::current())
    });
    OtlpMetrics::start(otlp, &cfg.settings.location, cfg.settings.interval, source)
}
