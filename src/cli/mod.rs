//! The `keycanary` command line: argument parsing, the runtime, log and trace set-up, and
//! one file per command (`validate`, `check`, `run`, `gate`, `status`, `lab`). The config
//! is loaded once, here, before anything else (so secret files are read once), and handed
//! to the command; a config with problems is printed in full and ends the process with 2.
//!
//! Wiring only: what a command does is in the rooms it calls (probe, detect, daemon,
//! store, api). `src/main.rs` only calls [`main`].

mod check;
mod gate;
mod inventory;
mod lab;
mod oneshot;
mod run;
mod status;
mod validate;

use crate::config::{self, Config};
use crate::model::Severity;
use crate::telemetry::traces::Traces;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keycanary",
    version,
    about = "Watches OAuth/OIDC signing keys the way clients see them"
)]
struct Cli {
    /// Log lines as human-readable text or as one JSON object per line (level: RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file and list every problem; exit 0 if valid, 2 if not.
    Validate {
        #[arg(long, short, default_value = "probes.toml")]
        config: PathBuf,
    },
    /// Run one probe round, print the matrix and findings; exit 1 on findings at or above --fail-on.
    Check {
        #[arg(long, short, default_value = "probes.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[arg(long, value_enum, default_value_t = FailOn::High)]
        fail_on: FailOn,
        /// Probe only this tenant (one of the file's, or one the inventory makes).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Probe continuously at the configured interval and log findings as they open and close.
    Run {
        #[arg(long, short, default_value = "probes.toml")]
        config: PathBuf,
    },
    /// Ask a rotation gate: may key --kid become the signer of --tenant now (or, with
    /// --retire, may it be removed)? Exit 0 safe, 1 unsafe, 2 error.
    Gate {
        #[arg(long, short, default_value = "probes.toml")]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
        /// The key to promote (rotation) or remove (--retire). Rotation without a kid checks
        /// the current signer is healthy now.
        #[arg(long)]
        kid: Option<String>,
        #[arg(long)]
        retire: bool,
        /// Ask a running daemon (its API base URL, e.g. http://127.0.0.1:9464) instead of
        /// probing from here; its history makes time-based conditions decidable.
        #[arg(long)]
        url: Option<String>,
        /// Ask over every location instead: read what every keycanary exports from this
        /// Prometheus (its base URL, e.g. http://127.0.0.1:9090) and judge all their views.
        #[arg(long, conflicts_with_all = ["url", "retire"])]
        prometheus: Option<String>,
        /// Ask over every location through `[gate] prometheus` of the config.
        #[arg(long, conflicts_with_all = ["url", "retire"])]
        global: bool,
        /// A location that must answer (repeatable); default `[gate] locations`.
        #[arg(long = "location")]
        locations: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// What the state directory says about the daemon: last full round, open incidents,
    /// outbox, dead letters. Exit 0 ok, 1 when something needs a person, 2 error.
    Status {
        #[arg(long, short, default_value = "probes.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Serve the lab (simulated IdP behind a caching CDN) until interrupted.
    Lab {
        #[arg(long, default_value = "127.0.0.1:8765")]
        listen: SocketAddr,
    },
}

impl Command {
    /// The config file this command reads, if it reads one.
    fn config_path(&self) -> Option<&Path> {
        match self {
            Command::Validate { config }
            | Command::Check { config, .. }
            | Command::Run { config }
            | Command::Gate { config, .. }
            | Command::Status { config, .. } => Some(config),
            Command::Lab { .. } => None,
        }
    }

    /// Whether this command probes from here (and so exports traces when OTLP is on).
    fn probes(&self) -> bool {
        matches!(
            self,
            Command::Run { .. }
                | Command::Check { .. }
                | Command::Gate {
                    url: None,
                    prometheus: None,
                    global: false,
                    ..
                }
        )
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailOn {
    Critical,
    High,
    Medium,
    Low,
}

impl From<FailOn> for Severity {
    fn from(f: FailOn) -> Severity {
        match f {
            FailOn::Critical => Severity::Critical,
            FailOn::High => Severity::High,
            FailOn::Medium => Severity::Medium,
            FailOn::Low => Severity::Low,
        }
    }
}

/// The process: parse the arguments, load the config once, start the runtime, traces and
/// logs, run the command. Exit codes: 0 ok, 1 the command's "no" (findings, unsafe, needs
/// a person), 2 an error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. } | Command::Lab { .. }) {
        "info"
    } else {
        "warn"
    };
    let config = match cli.command.config_path().map(config::load) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let traces = {
        // The exporter's gRPC channel lives on the runtime.
        let _rt = runtime.enter();
        let wanted = config.as_ref().filter(|_| cli.command.probes());
        match wanted.map(start_traces).transpose() {
            Ok(t) => t.flatten(),
            Err(e) => {
                eprintln!("error: {}", error_line(&e));
                return ExitCode::from(2);
            }
        }
    };
    init_logs(cli.log_format, default_level, traces.as_ref());
    if let Some(otlp) = config
        .as_ref()
        .filter(|_| cli.command.probes())
        .and_then(|c| c.telemetry.otlp.clone())
    {
        // Says at start when a collector cannot be reached (e.g. its certificate is from
        // another CA); never waited for.
        runtime.spawn(crate::telemetry::check_collectors(otlp));
    }
    let code = match runtime.block_on(dispatch(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::from(2)
        }
    };
    // Outside `block_on`, while the runtime still drives the exporter's channel.
    if let Some(t) = traces {
        t.shutdown();
    }
    code
}

/// Starts OTLP trace export when the config asks for it.
fn start_traces(cfg: &Config) -> anyhow::Result<Option<Traces>> {
    match &cfg.telemetry.otlp {
        Some(otlp) => Traces::start(otlp, &cfg.settings.location),
        None => Ok(None),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Crates whose logs quote what they read from the wire: the HTML parser logs every piece
/// of a sign-in page it parses at debug level (a page may echo the password it was sent),
/// and the cookie store the session cookies; the DevTools client logs every message it
/// sends (the typed password) and receives (page text) at trace level. Off whatever
/// `RUST_LOG` says.
const QUIET_TARGETS: [&str; 8] = [
    "html5ever=off",
    "markup5ever=off",
    "selectors=off",
    "cookie_store=off",
    "chromiumoxide=off",
    "chromiumoxide_cdp=off",
    "async_tungstenite=off",
    "tungstenite=off",
];

fn init_logs(format: LogFormat, default_level: &str, traces: Option<&Traces>) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    for quiet in QUIET_TARGETS {
        filter = filter.add_directive(quiet.parse().expect("a valid directive"));
    }
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => {
            use std::io::IsTerminal;
            logs.with_ansi(std::io::stderr().is_terminal()).boxed()
        }
        LogFormat::Json => logs.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces.map(|t| t.layer()))
        .init();
}

/// Runs `command` with its config (loaded by [`main`]; `None` only for `lab`).
async fn dispatch(command: Command, config: Option<Config>) -> anyhow::Result<ExitCode> {
    let cfg = || config.expect("every command but lab has a loaded config");
    match command {
        Command::Validate { config: path } => {
            let (cfg, report) = inventory::expand(cfg(), &crate::clock::system()).await?;
            Ok(validate::run(&path, &cfg, report.as_ref()))
        }
        Command::Check {
            config: path,
            format,
            fail_on,
            tenant,
        } => {
            let (mut cfg, _) = inventory::expand(cfg(), &crate::clock::system()).await?;
            if let Some(t) = &tenant {
                let Some(one) = cfg.tenant(t).cloned() else {
                    eprintln!(
                        "error: tenant `{t}` is neither in {} nor made by its inventory (keycanary validate lists rejected entries)",
                        path.display()
                    );
                    return Ok(ExitCode::from(2));
                };
                cfg.tenants = vec![one];
                cfg.reindex_tenants();
            }
            check::run(&cfg, format, fail_on.into()).await
        }
        Command::Run { config: path } => run::run(cfg(), path).await,
        Command::Status { format, .. } => status::run(&cfg(), format),
        Command::Gate {
            config: path,
            tenant,
            kid,
            retire,
            url,
            prometheus,
            global,
            locations,
            format,
        } => {
            let question = gate::Asked {
                tenant,
                kid,
                retire,
            };
            let source = match (url, prometheus, global) {
                (Some(url), _, _) => gate::Source::Daemon(url),
                (None, Some(p), _) => gate::Source::Prometheus(Some(p), locations),
                (None, None, true) => gate::Source::Prometheus(None, locations),
                (None, None, false) => gate::Source::Here,
            };
            let (cfg, _) = inventory::expand(cfg(), &crate::clock::system()).await?;
            gate::run(&cfg, &path, question, source, format).await
        }
        Command::Lab { listen } => lab::run(listen).await,
    }
}

/// An error and its causes on one line, each cause once: a message that already quotes
/// its cause (`cannot create the state directory …: Not a directory …`) is not followed by
/// that cause again.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_line;
    use crate::store::StoreError;
    use anyhow::Context;

    #[test]
    fn error_lines_name_each_cause_once() {
        let os = || std::io::Error::from(std::io::ErrorKind::NotADirectory);
        let create = |path: &str| {
            anyhow::Error::new(StoreError::CreateDir {
                path: path.into(),
                source: os(),
            })
        };
        let context = |e: anyhow::Error, what: &'static str| e.context(what);
        let plain = Err::<(), _>(os())
            .context("reading probes.toml")
            .unwrap_err();
        let said = os().to_string();
        let created = "create it or set `state_dir`";
        for (e, want) in [
            // The store's message quotes its cause: once.
            (
                create("x/state"),
                format!("cannot create the state directory x/state: {said}: {created}"),
            ),
            // A context that does not: the cause follows it.
            (plain, format!("reading probes.toml: {said}")),
            (
                context(create("y"), "starting"),
                format!("starting: cannot create the state directory y: {said}: {created}"),
            ),
        ] {
            assert_eq!(error_line(&e), want);
        }
    }
}
