//! SIGHUP: re-reading the config. A file with problems is refused (each problem logged)
//! and the running config stays; a good one comes back, and the run loop expands the
//! inventory with it (`inventory`), builds a new prober and replaces the tenant tasks and
//! the notifier's channels — the same path an inventory change takes.
//!
//! Not here: the replacing itself (the run loop in `mod.rs`).

use crate::config::{self, Config};
use anyhow::Context;
use tracing::{error, info, warn};

/// Resolves on SIGHUP; never, without a config path (or off Unix).
pub(super) struct Hangups(Option<tokio::signal::unix::Signal>);

impl Hangups {
    pub(super) fn new(enabled: bool) -> anyhow::Result<Hangups> {
        if !enabled {
            return Ok(Hangups(None));
        }
        let s = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        Ok(Hangups(Some(s)))
    }

    pub(super) async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Loads the config at `path` for a reload (the file's config: the run loop expands the
/// inventory with it and builds the prober). `None` (and every problem logged) when it is
/// refused: the running config stays.
pub(super) fn reload(path: &std::path::Path, running: &Config) -> Option<Config> {
    info!(path = %path.display(), "SIGHUP: reloading the config");
    let new = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!("config reload refused, the running config stays: {e}");
            return None;
        }
    };
    if new.settings.state_dir != running.settings.state_dir {
        warn!(running = %running.settings.state_dir.display(), "state_dir changed: it takes effect at the next start");
    }
    if new.api.listen != running.api.listen || new.lab.is_some() != running.lab.is_some() {
        warn!(
            "[api] listen and [lab] changes take effect at the next start ([api] bearer_token, allowed_hosts and max_silence apply now)"
        );
    }
    Some(new)
}
