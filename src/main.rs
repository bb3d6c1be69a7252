//! The `keycanary` command line: thin wiring of config, lab, probe, detect and report.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use keycanary::clock::{self, SharedClock};
use keycanary::config::{self, Config};
use keycanary::detect::gate::Question;
use keycanary::model::{Finding, Observation, Severity, Timestamp};
use keycanary::telemetry::metrics;
use keycanary::telemetry::otlp_metrics::OtlpMetrics;
use keycanary::telemetry::traces::Traces;
use keycanary::{detect, lab, probe, report};
use std::net::SocketAddr;
use std::path::PathBuf;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. } | Command::Lab { .. }) {
        "info"
    } else {
        "warn"
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
        match start_traces(&cli.command) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        }
    };
    init_logs(cli.log_format, default_level, traces.as_ref());
    let code = match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    };
    // Outside `block_on`, while the runtime still drives the exporter's channel.
    if let Some(t) = traces {
        t.shutdown();
    }
    code
}

/// Starts OTLP trace export for the probing commands when the config asks for it. A config
/// that does not load is reported (with every problem) by the command itself.
fn start_traces(command: &Command) -> anyhow::Result<Option<Traces>> {
    let path = match command {
        Command::Run { config } | Command::Check { config, .. } => config,
        Command::Gate {
            config, url: None, ..
        } => config,
        _ => return Ok(None),
    };
    let Ok(cfg) = config::load(path) else {
        return Ok(None);
    };
    let Some(otlp) = otlp_config(&cfg)? else {
        return Ok(None);
    };
    Traces::start(&otlp, &cfg.settings.location).map(Some)
}

/// `[telemetry.otlp]`, else `OTEL_EXPORTER_OTLP_ENDPOINT`, else none (export is off).
fn otlp_config(cfg: &config::Config) -> anyhow::Result<Option<config::OtlpConfig>> {
    match &cfg.telemetry.otlp {
        Some(o) => Ok(Some(o.clone())),
        None => config::otlp_from_env(&|name| std::env::var(name).ok()).map_err(anyhow::Error::msg),
    }
}

/// Exports the `/metrics` families over OTLP every interval when OTLP is configured.
fn start_otlp_metrics(
    cfg: &config::Config,
    snapshot: &keycanary::daemon::SharedSnapshot,
    clock: &keycanary::clock::SharedClock,
) -> anyhow::Result<Option<OtlpMetrics>> {
    let Some(otlp) = otlp_config(cfg)? else {
        return Ok(None);
    };
    let (snapshot, clock) = (snapshot.clone(), clock.clone());
    let config = std::sync::Arc::new(cfg.clone());
    let source: keycanary::telemetry::otlp_metrics::Source = std::sync::Arc::new(move || {
        let now = clock.now();
        let s = snapshot.read().unwrap_or_else(|e| e.into_inner());
        // The daemon's running config (it follows reloads) once published.
        let config = s.config.as_deref().unwrap_or(&config);
        metrics::families(&s, config, metrics::BuildInfo::current(), now)
    });
    OtlpMetrics::start(&otlp, &cfg.settings.location, cfg.settings.interval, source).map(Some)
}

/// One round of every tenant, assessed on a fresh history; each tenant's findings are
/// traced as `detect.assess` in its round's trace. Returns the observations, the
/// findings, the history and the time of the assessment.
async fn probe_and_assess(
    cfg: &Config,
    prober: &probe::Prober,
    clock: &SharedClock,
) -> (
    Vec<Observation>,
    Vec<Finding>,
    detect::history::History,
    Timestamp,
) {
    let (observations, traces): (Vec<_>, Vec<_>) =
        prober.round_traced(cfg).await.into_iter().unzip();
    let spans: Vec<tracing::Span> = observations
        .iter()
        .zip(&traces)
        .map(|(o, t)| t.assess_span(&o.tenant))
        .collect();
    let now = clock.now();
    let mut history = detect::history::History::default();
    let findings = detect::assess(cfg, &mut history, &observations, now);
    for (o, span) in observations.iter().zip(&spans) {
        let mine: Vec<_> = findings
            .iter()
            .filter(|f| f.subject.tenant == o.tenant)
            .cloned()
            .collect();
        keycanary::telemetry::traces::record_findings(span, &mine);
    }
    (observations, findings, history, now)
}

fn init_logs(format: LogFormat, default_level: &str, traces: Option<&Traces>) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
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

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { config } => Ok(match load(&config) {
            Some(c) => {
                let views: usize = c
                    .tenants
                    .iter()
                    .flat_map(|t| &t.domains)
                    .map(|d| d.views().len())
                    .sum();
                println!(
                    "{}: ok ({} tenant(s), {} view(s))",
                    config.display(),
                    c.tenants.len(),
                    views
                );
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        }),
        Command::Check {
            config,
            format,
            fail_on,
        } => {
            let Some(cfg) = load(&config) else {
                return Ok(ExitCode::from(2));
            };
            let clock = clock::system();
            let _lab = start_lab_if_configured(&cfg, &clock).await?;
            let prober = probe::Prober::new(&cfg, clock.clone())?;
            let (observations, findings, _, _) = probe_and_assess(&cfg, &prober, &clock).await;
            let report = report::Report::new(&observations, findings);
            match format {
                Format::Text => print!("{}", report.to_text()),
                Format::Json => println!("{}", report.to_json()),
            }
            let failing = report.worst().is_some_and(|w| w.at_least(fail_on.into()));
            Ok(if failing {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Run { config } => {
            let Some(cfg) = load(&config) else {
                return Ok(ExitCode::from(2));
            };
            let clock = clock::system();
            let _lab = start_lab_if_configured(&cfg, &clock).await?;
            let listen = cfg.api.listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {listen} for the HTTP API: free it or set [api] listen"
                    )
                })?;
            let snapshot = keycanary::daemon::new_snapshot();
            let otlp_metrics = start_otlp_metrics(&cfg, &snapshot, &clock)?;
            let state = keycanary::api::ApiState {
                snapshot: snapshot.clone(),
                config: std::sync::Arc::new(cfg.clone()),
                clock: clock.clone(),
                bearer: cfg.api.bearer_token.clone(),
                state_dir: Some(cfg.settings.state_dir.clone()),
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let api = tokio::spawn(keycanary::api::serve(listener, state, async {
                let _ = stopped.await;
            }));
            let options = keycanary::daemon::Options {
                config_path: Some(config.clone()),
                durations: otlp_metrics.as_ref().map(|m| m.durations()),
                ..Default::default()
            };
            let result = keycanary::daemon::run_with_options(
                cfg,
                clock,
                snapshot,
                shutdown_signal(),
                options,
            )
            .await;
            let _ = stop.send(());
            if let Some(m) = otlp_metrics {
                // Off the worker threads: the final export blocks (bounded by a timeout).
                let _ = tokio::task::spawn_blocking(move || m.shutdown()).await;
            }
            api.await.context("the HTTP API task panicked")??;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config, format } => {
            let Some(cfg) = load(&config) else {
                return Ok(ExitCode::from(2));
            };
            let dir = &cfg.settings.state_dir;
            let report = keycanary::store::Store::open_read_only(dir)
                .and_then(|s| s.status())
                .with_context(|| format!("cannot read the state in {}", dir.display()))?;
            let (now, interval) = (clock::system().now(), cfg.settings.interval);
            match format {
                Format::Text => print!(
                    "state: {}\n{}",
                    dir.display(),
                    keycanary::status::render_text(&report, interval, now)
                ),
                Format::Json => println!(
                    "{:#}",
                    keycanary::status::render_json(&report, interval, now)
                ),
            }
            let attention = !keycanary::status::problems(&report, interval, now).is_empty();
            Ok(if attention {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Gate {
            config,
            tenant,
            kid,
            retire,
            url,
            format,
        } => {
            let Some(cfg) = load(&config) else {
                return Ok(ExitCode::from(2));
            };
            if cfg.tenant(&tenant).is_none() {
                eprintln!("error: tenant `{tenant}` is not in {}", config.display());
                return Ok(ExitCode::from(2));
            }
            if retire && kid.is_none() {
                eprintln!("error: --retire needs --kid (the key to remove)");
                return Ok(ExitCode::from(2));
            }
            let answer = match url {
                Some(url) => {
                    keycanary::gate_client::ask(
                        &url,
                        &tenant,
                        kid.as_deref(),
                        retire,
                        cfg.api.bearer_token.as_ref(),
                    )
                    .await?
                }
                None => {
                    let clock = clock::system();
                    let _lab = start_lab_if_configured(&cfg, &clock).await?;
                    let prober = probe::Prober::new(&cfg, clock.clone())?;
                    let (observations, findings, history, now) =
                        probe_and_assess(&cfg, &prober, &clock).await;
                    let question = if retire {
                        Question::Retirement(kid.as_deref().unwrap_or_default())
                    } else {
                        Question::Rotation(kid.as_deref())
                    };
                    let answer = detect::gate::answer(
                        &cfg,
                        &history,
                        &observations,
                        &findings,
                        &tenant,
                        question,
                        now,
                    );
                    serde_json::to_value(&answer)?
                }
            };
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
                Format::Text => print!("{}", report::gate_text(&answer)),
            }
            let safe = answer
                .get("safe")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            Ok(if safe {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Lab { listen } => {
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
    }
}

/// Loads and validates; prints every problem and returns `None` on failure.
fn load(path: &std::path::Path) -> Option<Config> {
    match config::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// Starts the in-process lab when the config has `[lab]`. If its address is already taken
/// (a lab or a daemon with its lab is running), that one is probed instead.
async fn start_lab_if_configured(
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
