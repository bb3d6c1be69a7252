//! OTLP to collectors as they are run: the real binary exporting to in-test receivers on
//! loopback over OTLP/gRPC with TLS (a private CA from `ca_file`, an API key header from
//! a `{ env = … }` secret), over gRPC and over HTTP/protobuf that require a client
//! certificate (mutual TLS), and over HTTP/protobuf configured by the standard
//! `OTEL_EXPORTER_OTLP_*` variables alone
//! (the exporter's async-client pitfall: spans and metric families must arrive from the
//! SDK's own threads). A collector whose certificate is from another CA is a clear error
//! in the log at start while probing and `/metrics` go on; an unreadable `ca_file` is
//! refused by `validate`. Header secrets never appear in a log, even at debug level.

use crate::check::{keycanary, shipped_config_for, start_lab};
use crate::delivery::{ca, pem};
use crate::otlp::{MARKER, Span, assert_no_secrets, strings, with_marker_secret};
use crate::peers::free_port;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use rcgen::{CertificateParams, CertifiedIssuer, KeyPair};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::rustls;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The API key the collectors expect, sent from a secret; it must never be logged.
const API_KEY: &str = "kc-otlp-api-key-3e9d1b";

/// What a receiver got: spans, metric names, and each export's API key header.
#[derive(Clone, Default)]
struct Seen {
    spans: Arc<Mutex<Vec<Span>>>,
    metrics: Arc<Mutex<BTreeSet<String>>>,
    keys: Arc<Mutex<BTreeSet<String>>>,
}

impl Seen {
    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
    fn metrics(&self) -> BTreeSet<String> {
        self.metrics.lock().unwrap().clone()
    }
    fn keys(&self) -> BTreeSet<String> {
        self.keys.lock().unwrap().clone()
    }
    fn key(&self, value: Option<&[u8]>) {
        let value = value.map_or("(none)".into(), |v| String::from_utf8_lossy(v).into_owned());
        self.keys.lock().unwrap().insert(value);
    }
    fn traces(&self, request: ExportTraceServiceRequest) {
        let spans = request
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        let mut seen = self.spans.lock().unwrap();
        for s in spans {
            seen.push(Span {
                name: s.name,
                attrs: strings(&s.attributes),
                trace_id: s.trace_id,
                span_id: s.span_id,
                parent_span_id: s.parent_span_id,
            });
        }
    }
    fn metric_names(&self, request: ExportMetricsServiceRequest) {
        let names = request
            .resource_metrics
            .into_iter()
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics)
            .map(|m| m.name);
        self.metrics.lock().unwrap().extend(names);
    }
}

#[tonic::async_trait]
impl TraceService for Seen {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.key(request.metadata().get("x-api-key").map(|v| v.as_bytes()));
        self.traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Seen {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.key(request.metadata().get("x-api-key").map(|v| v.as_bytes()));
        self.metric_names(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A TLS certificate for 127.0.0.1 and localhost signed by `issuer`: (cert, key) DER.
fn leaf_der(issuer: &CertifiedIssuer<'static, KeyPair>) -> (Vec<u8>, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

/// [`leaf_der`] as PEM.
fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
    let (cert, key) = leaf_der(issuer);
    (pem("CERTIFICATE", &cert), pem("PRIVATE KEY", &key))
}

/// A rustls server presenting a certificate from `server_ca` and requiring a client
/// certificate from `client_ca` (aws-lc-rs, as everything else).
fn mutual_tls_server(
    server_ca: &CertifiedIssuer<'static, KeyPair>,
    client_ca: &CertifiedIssuer<'static, KeyPair>,
) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(client_ca.der().to_vec()))
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let (cert, key) = leaf_der(server_ca);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An OTLP/gRPC receiver with TLS on 127.0.0.1:0 presenting a certificate from
/// `server_ca`; with `client_ca`, it requires a client certificate from that CA.
async fn grpc_tls_receiver(
    server_ca: &CertifiedIssuer<'static, KeyPair>,
    client_ca: Option<&CertifiedIssuer<'static, KeyPair>>,
) -> (SocketAddr, Seen) {
    let (cert, key) = leaf(server_ca);
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(client_ca) = client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(pem("CERTIFICATE", client_ca.der())));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(TraceServiceServer::new(seen.clone()))
            .add_service(MetricsServiceServer::new(seen.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, seen)
}

/// An OTLP/HTTP receiver (protobuf bodies) on 127.0.0.1:0 under `prefix`, behind `tls`
/// when given.
async fn http_receiver(prefix: &str, tls: Option<Arc<rustls::ServerConfig>>) -> (SocketAddr, Seen) {
    async fn traces(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
        seen.key(headers.get("x-api-key").map(|v| v.as_bytes()));
        seen.traces(ExportTraceServiceRequest::decode(body).expect("an OTLP trace request"));
        ExportTraceServiceResponse::default().encode_to_vec()
    }
    async fn metrics(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
        seen.key(headers.get("x-api-key").map(|v| v.as_bytes()));
        seen.metric_names(
            ExportMetricsServiceRequest::decode(body).expect("an OTLP metrics request"),
        );
        ExportMetricsServiceResponse::default().encode_to_vec()
    }
    let seen = Seen::default();
    let app = axum::Router::new()
        .route(&format!("{prefix}/v1/traces"), axum::routing::post(traces))
        .route(
            &format!("{prefix}/v1/metrics"),
            axum::routing::post(metrics),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let Some(tls) = tls else {
        tokio::spawn(async move { axum::serve(listener, app).await });
        return (addr, seen);
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client without an acceptable certificate ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// The shipped config against the lab, with the marker secret, probing every second, the
/// API on a free port, state in `dir`, and `otlp` appended.
fn daemon_config(base: &str, dir: &Path, otlp: &str) -> (PathBuf, u16) {
    let path = shipped_config_for(base, dir);
    let text = with_marker_secret(&std::fs::read_to_string(&path).unwrap());
    let text = text
        .replacen(
            "interval = \"30s\"",
            &format!(
                "interval = \"1s\"\nstate_dir = \"{}\"",
                dir.join("state").display()
            ),
            1,
        )
        .replacen("timeout = \"10s\"", "timeout = \"1s\"", 1);
    let port = free_port();
    std::fs::write(
        &path,
        format!("{text}\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n{otlp}"),
    )
    .unwrap();
    (path, port)
}

/// `keycanary run` at debug level with `envs`, its log in `dir/keycanary.log`.
fn spawn_run(config: &Path, dir: &Path, envs: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_keycanary"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "debug")
        .env("KC_OTLP_MARKER", MARKER)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("keycanary.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("keycanary.log")).unwrap_or_default()
}

/// Waits (up to 60 s) until `done` holds, failing with the daemon's log if it exits.
async fn wait_for(
    child: &mut tokio::process::Child,
    dir: &Path,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none() && tokio::time::Instant::now() < deadline,
            "{what} (exit: {exited:?})\nlog:\n{}",
            log(dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `keycanary check` at debug level with the marker and `envs`: exit code and stderr.
async fn check_debug(config: &Path, envs: &[(&str, &str)]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keycanary"))
        .args(["check", "-c"])
        .arg(config)
        .env("RUST_LOG", "debug")
        .env("KC_OTLP_MARKER", MARKER)
        .envs(envs.iter().copied())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn has_round(spans: &[Span]) -> bool {
    spans
        .iter()
        .any(|s| s.name == "probe.round" && s.attrs.get("tenant").is_some_and(|t| t == "acme"))
}

/// `check` exports its spans over gRPC with TLS to a collector whose certificate is
/// from a private CA given as `ca_file`, with the API key header from a secret; neither
/// the key nor the marker secret is in the debug log or in a span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_with_a_private_ca_and_a_header_secret() {
    let lab = start_lab().await;
    let collector_ca = ca("kc-otlp-collector-ca");
    let (addr, seen) = grpc_tls_receiver(&collector_ca, None).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("collector-ca.pem"),
        pem("CERTIFICATE", collector_ca.der()),
    )
    .unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let text = with_marker_secret(&std::fs::read_to_string(&config).unwrap());
    std::fs::write(
        &config,
        format!(
            "{text}\n[telemetry.otlp]\nendpoint = \"https://127.0.0.1:{}\"\nprotocol = \"grpc\"\nca_file = \"collector-ca.pem\"\nheaders = {{ x-api-key = {{ env = \"KC_OTLP_KEY\" }} }}\n",
            addr.port()
        ),
    )
    .unwrap();
    let (code, stderr) = check_debug(&config, &[("KC_OTLP_KEY", API_KEY)]).await;
    assert!(code == 0 || code == 1, "{stderr}");
    // The binary flushes on exit: everything has arrived.
    let spans = seen.spans();
    assert!(has_round(&spans), "no probe.round over TLS: {stderr}");
    assert!(spans.iter().any(|s| s.name == "probe.jwks"));
    assert_eq!(seen.keys(), BTreeSet::from([API_KEY.to_owned()]));
    assert_no_secrets(&spans);
    assert!(!stderr.contains(API_KEY), "the API key is in the log");
    assert!(!stderr.contains(MARKER), "the marker secret is in the log");
    lab.shutdown().await;
}

/// A collector that requires a client certificate gets the spans from `check` configured
/// with `client_certificate` and `client_key` (secrets read from files), and none from
/// one without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_with_mutual_tls() {
    let lab = start_lab().await;
    let collector_ca = ca("kc-otlp-mtls-server-ca");
    let client_ca = ca("kc-otlp-mtls-client-ca");
    let (addr, seen) = grpc_tls_receiver(&collector_ca, Some(&client_ca)).await;
    let dir = tempfile::tempdir().unwrap();
    let (client_cert, client_key) = leaf(&client_ca);
    std::fs::write(
        dir.path().join("collector-ca.pem"),
        pem("CERTIFICATE", collector_ca.der()),
    )
    .unwrap();
    std::fs::write(dir.path().join("client.pem"), client_cert).unwrap();
    std::fs::write(dir.path().join("client-key.pem"), client_key).unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let otlp = format!(
        "[telemetry.otlp]\nendpoint = \"https://127.0.0.1:{}\"\nprotocol = \"grpc\"\nca_file = \"collector-ca.pem\"\n",
        addr.port()
    );
    // Without a client certificate: the collector refuses the connection.
    std::fs::write(&config, format!("{text}\n{otlp}")).unwrap();
    let without = keycanary(&["check", "-c", config.to_str().unwrap()], &[]).await;
    assert!(without.code == 0 || without.code == 1, "{}", without.stderr);
    assert!(
        seen.spans().is_empty(),
        "spans without a client certificate"
    );
    // With one.
    std::fs::write(
        &config,
        format!("{text}\n{otlp}client_certificate = {{ file = \"client.pem\" }}\nclient_key = {{ file = \"client-key.pem\" }}\n"),
    )
    .unwrap();
    let with = keycanary(&["check", "-c", config.to_str().unwrap()], &[]).await;
    assert!(with.code == 0 || with.code == 1, "{}", with.stderr);
    assert!(
        has_round(&seen.spans()),
        "no spans over mutual TLS: {}",
        with.stderr
    );
    lab.shutdown().await;
}

/// HTTP/protobuf (the default protocol) to a collector behind TLS that requires a client
/// certificate: `check` with `ca_file`, `client_certificate` and `client_key` (secrets)
/// and an API key header from a secret gets its spans there over the project's own
/// HTTP client; without the client certificate none arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_over_mutual_tls() {
    let lab = start_lab().await;
    let collector_ca = ca("kc-otlp-http-server-ca");
    let client_ca = ca("kc-otlp-http-client-ca");
    let (addr, seen) = http_receiver("", Some(mutual_tls_server(&collector_ca, &client_ca))).await;
    let dir = tempfile::tempdir().unwrap();
    let (client_cert, client_key) = leaf(&client_ca);
    std::fs::write(
        dir.path().join("collector-ca.pem"),
        pem("CERTIFICATE", collector_ca.der()),
    )
    .unwrap();
    std::fs::write(dir.path().join("client.pem"), client_cert).unwrap();
    std::fs::write(dir.path().join("client-key.pem"), client_key).unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let text = with_marker_secret(&std::fs::read_to_string(&config).unwrap());
    let otlp = format!(
        "[telemetry.otlp]\nendpoint = \"https://127.0.0.1:{}\"\nca_file = \"collector-ca.pem\"\nheaders = {{ x-api-key = {{ env = \"KC_OTLP_KEY\" }} }}\n",
        addr.port()
    );
    std::fs::write(&config, format!("{text}\n{otlp}")).unwrap();
    let (code, stderr) = check_debug(&config, &[("KC_OTLP_KEY", API_KEY)]).await;
    assert!(code == 0 || code == 1, "{stderr}");
    assert!(
        seen.spans().is_empty(),
        "spans without a client certificate"
    );
    std::fs::write(
        &config,
        format!("{text}\n{otlp}client_certificate = {{ file = \"client.pem\" }}\nclient_key = {{ file = \"client-key.pem\" }}\n"),
    )
    .unwrap();
    let (code, stderr) = check_debug(&config, &[("KC_OTLP_KEY", API_KEY)]).await;
    assert!(code == 0 || code == 1, "{stderr}");
    let spans = seen.spans();
    assert!(
        has_round(&spans),
        "no spans over HTTP/protobuf with mutual TLS: {stderr}"
    );
    assert_eq!(seen.keys(), BTreeSet::from([API_KEY.to_owned()]));
    assert_no_secrets(&spans);
    assert!(!stderr.contains(API_KEY), "the API key is in the log");
    assert!(!stderr.contains(MARKER), "the marker secret is in the log");
    lab.shutdown().await;
}

/// `run` with no `[telemetry.otlp]` at all: `OTEL_EXPORTER_OTLP_ENDPOINT` (a base: the
/// signal paths are appended), the default protocol (HTTP/protobuf) and
/// `OTEL_EXPORTER_OTLP_HEADERS` (percent-decoded) send spans and metric families to an
/// HTTP receiver, from the SDK's own export threads, without a panic; the header value
/// is in no log line at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_from_the_standard_variables() {
    let lab = start_lab().await;
    let (addr, seen) = http_receiver("/otlp", None).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = daemon_config(lab.base_url(), dir.path(), "");
    let endpoint = format!("http://127.0.0.1:{}/otlp", addr.port());
    // The value percent-encoded in part, as the variable allows.
    let encoded = API_KEY.replacen('-', "%2D", 1);
    let headers = format!("x-api-key={encoded}");
    let mut child = spawn_run(
        &config,
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_HEADERS", &headers),
        ],
    );
    wait_for(
        &mut child,
        dir.path(),
        "spans and metrics over HTTP/protobuf",
        || {
            let metrics = seen.metrics();
            let spans = seen.spans();
            has_round(&spans)
                && spans.iter().any(|s| s.name == "detect.assess")
                && metrics.contains("keycanary_view_up")
                && metrics.contains("keycanary_fetch_duration_seconds")
                && metrics.contains("keycanary_rounds_total")
        },
    )
    .await;
    let _ = child.kill().await;
    assert_eq!(seen.keys(), BTreeSet::from([API_KEY.to_owned()]));
    assert_no_secrets(&seen.spans());
    let log = log(dir.path());
    assert!(
        !log.contains(API_KEY) && !log.contains(&encoded),
        "the API key is in the log"
    );
    assert!(!log.contains("panicked"), "{log}");
    lab.shutdown().await;
}

/// A collector whose certificate is from another CA than `ca_file`'s: `run` says so in the
/// log at start (naming the certificate problem), keeps probing, and `/metrics` answers
/// with the rounds counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_from_another_ca_is_logged_and_probing_goes_on() {
    let lab = start_lab().await;
    let (addr, seen) = grpc_tls_receiver(&ca("kc-otlp-real-ca"), None).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("other-ca.pem"),
        pem("CERTIFICATE", ca("kc-otlp-other-ca").der()),
    )
    .unwrap();
    let otlp = format!(
        "[telemetry.otlp]\nendpoint = \"https://127.0.0.1:{}\"\nprotocol = \"grpc\"\nca_file = \"other-ca.pem\"\nheaders = {{ x-api-key = {{ env = \"KC_OTLP_KEY\" }} }}\n",
        addr.port()
    );
    let (config, api_port) = daemon_config(lab.base_url(), dir.path(), &otlp);
    let mut child = spawn_run(&config, dir.path(), &[("KC_OTLP_KEY", API_KEY)]);
    wait_for(
        &mut child,
        dir.path(),
        "the start-up check and the first failed metric export in the log",
        || {
            let log = log(dir.path());
            log.contains("OTLP: cannot reach the collector")
                && log
                    .lines()
                    .any(|l| l.contains("OTLP: export failed") && l.contains("signal=\"metrics\""))
        },
    )
    .await;
    let rounds = || async {
        let body = reqwest::get(format!("http://127.0.0.1:{api_port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.lines()
            .find(|l| l.starts_with("keycanary_rounds_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rounds().await.unwrap_or(0.0) < 3.0 {
        assert!(
            tokio::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "probing stopped\nlog:\n{}",
            log(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill().await;
    let log = log(dir.path());
    let line = log
        .lines()
        .find(|l| l.contains("OTLP: cannot reach the collector"))
        .unwrap();
    assert!(
        line.contains("UnknownIssuer") && line.contains(&format!("127.0.0.1:{}", addr.port())),
        "{line}"
    );
    // Exports fail every interval; that is said once.
    let failed = log
        .lines()
        .filter(|l| l.contains("OTLP: export failed") && l.contains("signal=\"metrics\""))
        .count();
    assert_eq!(failed, 1, "logged once, not per export:\n{log}");
    assert!(
        seen.spans().is_empty(),
        "spans through a certificate from another CA"
    );
    assert!(!log.contains(API_KEY), "the API key is in the log");
    lab.shutdown().await;
}

/// What can be known without connecting is refused by `validate`: an unreadable
/// `ca_file`, a bad protocol, and a bad standard variable, each with its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_lists_otlp_problems() {
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_for("http://127.0.0.1:9", dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[telemetry.otlp]\nendpoint = \"https://collector.example:4318\"\nprotocol = \"http/json\"\nca_file = \"no-such-ca.pem\"\n"),
    )
    .unwrap();
    let run = keycanary(
        &["validate", "-c", config.to_str().unwrap()],
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "5s")],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    for want in [
        "telemetry.otlp.protocol: `http/json` is not a protocol",
        "telemetry.otlp.ca_file: cannot read",
        "OTEL_EXPORTER_OTLP_TIMEOUT: `5s` is not a timeout in milliseconds",
    ] {
        assert!(run.stderr.contains(want), "no {want:?} in:\n{}", run.stderr);
    }
}
