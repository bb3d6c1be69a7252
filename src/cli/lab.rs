//! `keycanary lab`: serve the lab (a simulated IdP behind a caching CDN) until interrupted.
//! The only command, with `check`/`gate`/`run` on a config with `[lab]`, that uses the lab.

use super::shutdown_signal;
use crate::{clock, lab};
use anyhow::Context;
use std::net::SocketAddr;
use std::process::ExitCode;

pub(super) async fn run(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let lab = lab::start(lab::LabOptions {
        listen,
        clock: clock::system(),
    })
    .await
    .with_context(|| format!("cannot start the lab on {listen}"))?;
    eprintln!(
        "lab listening on {}; see README.md \"The lab\" for the admin API",
        lab.base_url()
    );
    shutdown_signal().await;
    lab.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
