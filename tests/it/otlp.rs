//! Traces: `keycanary check` (the real binary) exports its probe spans over OTLP/gRPC to
//! an in-test receiver, and each tenant's `detect.assess` span with the round's finding
//! codes in the round's trace, never with a secret or token in an attribute; and an
//! unreachable collector does not fail the check. Metrics: `keycanary run` exports the
//! `/metrics` families over OTLP/gRPC with their labels, the duration histograms
//! cumulative with the `/metrics` buckets, and traces its judgements the same way.

use crate::check::{keycanary, repo, shipped_config_for, start_lab};
use crate::peers::free_port;
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
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// One received span: name, attributes as strings, and where it sits in its trace.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub(crate) name: String,
    pub(crate) attrs: BTreeMap<String, String>,
    pub(crate) trace_id: Vec<u8>,
    pub(crate) span_id: Vec<u8>,
    pub(crate) parent_span_id: Vec<u8>,
}

struct Receiver(mpsc::UnboundedSender<Span>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        for s in spans {
            let attrs = strings(&s.attributes);
            let _ = self.0.send(Span {
                name: s.name,
                attrs,
                trace_id: s.trace_id,
                span_id: s.span_id,
                parent_span_id: s.parent_span_id,
            });
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Attributes as strings.
pub(crate) fn strings(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.clone(),
                Some(Any::IntValue(i)) => i.to_string(),
                Some(Any::BoolValue(b)) => b.to_string(),
                Some(Any::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

/// Serves the OTLP trace service on 127.0.0.1:0; spans arrive on the channel.
async fn start_receiver() -> (SocketAddr, mpsc::UnboundedReceiver<Span>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, rx)
}

pub(crate) const MARKER: &str = "kc-otlp-secret-marker-7f3a9c";

/// `text` (the shipped config) with its first client secret, acme's on the app domain,
/// replaced by the marker (from the environment): that login fails (401), so each of
/// acme's rounds has a `login_failed` finding.
pub(crate) fn with_marker_secret(text: &str) -> String {
    let lab_secret = format!(
        "client_secret = {{ file = \"{}/client-secret\" }}",
        repo().join("lab").display()
    );
    assert!(text.contains(&lab_secret), "the shipped config changed");
    text.replacen(
        &lab_secret,
        "client_secret = { env = \"KC_OTLP_MARKER\" }",
        1,
    )
}

/// The shipped config against `base`, one client secret replaced by the marker (from the
/// environment), exporting to `endpoint`.
fn config_with_otlp(base: &str, dir: &Path, endpoint: &str) -> std::path::PathBuf {
    let path = shipped_config_for(base, dir);
    let text = with_marker_secret(&std::fs::read_to_string(&path).unwrap());
    // Top-level tables must follow the top-level keys: append at the end.
    let text =
        format!("{text}\n[telemetry.otlp]\nendpoint = \"{endpoint}\"\nprotocol = \"grpc\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// No attribute of any span carries the marker secret, the lab's secret or a JWT.
pub(crate) fn assert_no_secrets(spans: &[Span]) {
    for s in spans {
        for (k, v) in &s.attrs {
            assert!(
                !v.contains(MARKER) && !v.contains("lab-secret") && !v.contains("eyJ"),
                "secret or token in {}.{k} = {v}",
                s.name
            );
        }
    }
}

/// Each `detect.assess` span is a child of a `probe.round` span of the same tenant, in
/// its trace; `finding.codes` is sorted and deduplicated, `finding.count` at least as
/// many. Returns the `detect.assess` spans of `tenant`.
fn assess_spans<'a>(spans: &'a [Span], tenant: &str) -> Vec<&'a Span> {
    let assess: Vec<&Span> = spans.iter().filter(|s| s.name == "detect.assess").collect();
    for a in &assess {
        let round = spans
            .iter()
            .find(|r| r.name == "probe.round" && r.span_id == a.parent_span_id)
            .unwrap_or_else(|| panic!("detect.assess without its probe.round: {a:#?}"));
        assert_eq!(a.trace_id, round.trace_id, "{a:#?}");
        assert_eq!(a.attrs["tenant"], round.attrs["tenant"], "{a:#?}");
        let codes: Vec<&str> = a.attrs["finding.codes"]
            .split(',')
            .filter(|c| !c.is_empty())
            .collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "{a:#?}");
        let count: usize = a.attrs["finding.count"].parse().unwrap();
        assert!(count >= codes.len(), "{a:#?}");
    }
    assess
        .into_iter()
        .filter(|a| a.attrs["tenant"] == tenant)
        .collect()
}

/// Whether one of `spans` is acme's `detect.assess` with `login_failed` (the marker's login).
fn acme_login_failed_assessed(spans: &[Span]) -> bool {
    spans.iter().any(|s| {
        s.name == "detect.assess"
            && s.attrs.get("tenant").is_some_and(|t| t == "acme")
            && s.attrs
                .get("finding.codes")
                .is_some_and(|c| c.split(',').any(|c| c == "login_failed"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exports_probe_spans_without_secrets() {
    let lab = start_lab().await;
    let (addr, mut rx) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_otlp(lab.base_url(), dir.path(), &format!("http://{addr}"));
    let run = keycanary(
        &["check", "-c", config.to_str().unwrap(), "--format", "json"],
        &[("KC_OTLP_MARKER", MARKER)],
    )
    .await;
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    // The binary flushes on exit, so everything has arrived by now.
    let mut spans = Vec::new();
    while let Ok(s) = rx.try_recv() {
        spans.push(s);
    }
    fn named<'a>(spans: &'a [Span], name: &'a str) -> impl Iterator<Item = &'a Span> + 'a {
        spans.iter().filter(move |s| s.name == name)
    }
    for (name, attrs) in [
        ("probe.round", &["tenant", "location"][..]),
        ("probe.discovery", &["domain", "http.status"][..]),
        ("probe.login", &["grant", "http.status", "result"][..]),
        (
            "probe.jwks",
            &["domain", "view", "http.status", "body.sha256", "jwks.kids"][..],
        ),
        ("probe.verify", &["kid", "alg", "view", "result"][..]),
    ] {
        assert!(
            named(&spans, name).any(|s| attrs.iter().all(|a| s.attrs.contains_key(*a))),
            "no {name} span with {attrs:?}; got {:#?}",
            spans
                .iter()
                .map(|s| (&s.name, &s.attrs))
                .collect::<Vec<_>>()
        );
    }
    assert!(named(&spans, "probe.verify").any(|s| s.attrs["result"] == "verified"));
    assert!(named(&spans, "probe.jwks").any(|s| s.attrs.contains_key("cache.status")));
    assert!(named(&spans, "probe.round").any(|s| s.attrs["tenant"] == "acme"));
    // The marker secret's login failed (401) and was still traced.
    assert!(named(&spans, "probe.login").any(|s| s.attrs["http.status"] == "401"));
    // Detection after the round, in the round's trace: one `detect.assess` per tenant,
    // acme's with the failed login's finding, as the report has it.
    let report = run.json();
    let acme_codes: BTreeSet<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["subject"]["tenant"] == "acme")
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(acme_codes.contains("login_failed"), "{report:#}");
    for tenant in ["acme", "globex", "initech"] {
        assert_eq!(
            assess_spans(&spans, tenant).len(),
            1,
            "{tenant}: {spans:#?}"
        );
    }
    let acme = assess_spans(&spans, "acme")[0];
    let want: Vec<&str> = acme_codes.into_iter().collect();
    assert_eq!(acme.attrs["finding.codes"], want.join(","), "{acme:#?}");
    assert!(acme_login_failed_assessed(&spans));
    assert_no_secrets(&spans);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_collector_does_not_fail_check() {
    let lab = start_lab().await;
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[telemetry.otlp]\nendpoint = \"http://{addr}\"\nprotocol = \"grpc\"\n"),
    )
    .unwrap();
    let run = keycanary(&["check", "-c", config.to_str().unwrap()], &[]).await;
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    lab.shutdown().await;
}

/// One received data point: metric name, kind, attributes and value (a histogram's
/// count, with its sum, bounds, bucket counts and temporality).
#[derive(Debug, Clone, Default)]
struct Point {
    name: String,
    kind: &'static str,
    attrs: BTreeMap<String, String>,
    value: f64,
    sum: f64,
    bounds: Vec<f64>,
    buckets: Vec<u64>,
    temporality: i32,
}

#[derive(Clone, Default)]
struct MetricsReceiver(Arc<Mutex<Vec<Point>>>);

#[tonic::async_trait]
impl MetricsService for MetricsReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as N;
        let metrics = request
            .into_inner()
            .resource_metrics
            .into_iter()
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics);
        let mut points = self.0.lock().unwrap();
        for m in metrics {
            let (kind, data_points) = match m.data {
                Some(Data::Gauge(g)) => ("gauge", g.data_points),
                Some(Data::Sum(s)) => ("sum", s.data_points),
                Some(Data::Histogram(h)) => {
                    for p in h.data_points {
                        points.push(Point {
                            name: m.name.clone(),
                            kind: "histogram",
                            attrs: strings(&p.attributes),
                            value: p.count as f64,
                            sum: p.sum.unwrap_or(f64::NAN),
                            bounds: p.explicit_bounds,
                            buckets: p.bucket_counts,
                            temporality: h.aggregation_temporality,
                        });
                    }
                    continue;
                }
                _ => continue,
            };
            for p in data_points {
                let value = match p.value {
                    Some(N::AsDouble(d)) => d,
                    Some(N::AsInt(i)) => i as f64,
                    None => f64::NAN,
                };
                points.push(Point {
                    name: m.name.clone(),
                    kind,
                    attrs: strings(&p.attributes),
                    value,
                    ..Point::default()
                });
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// `keycanary run` (the binary) with a 1 s interval exports the `/metrics` families over
/// OTLP: view and findings gauges with their tenant/domain labels, rounds as a sum, the
/// fetch and login durations as cumulative histograms accumulating across rounds; and
/// traces each judgement (`detect.assess`, acme's with `login_failed`) in its round's
/// trace, without secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exports_metric_families_over_otlp() {
    let lab = start_lab().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = MetricsReceiver::default();
    let (span_tx, mut span_rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(received.clone()))
            .add_service(TraceServiceServer::new(Receiver(span_tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let text = with_marker_secret(&std::fs::read_to_string(&config).unwrap());
    assert!(
        text.contains("interval = \"30s\""),
        "the shipped config changed"
    );
    let state = dir.path().join("state");
    let text = text
        .replacen(
            "interval = \"30s\"",
            &format!("interval = \"1s\"\nstate_dir = \"{}\"", state.display()),
            1,
        )
        .replacen("timeout = \"10s\"", "timeout = \"1s\"", 1);
    let text = format!(
        "{text}\n[api]\nlisten = \"127.0.0.1:{}\"\n\n[telemetry.otlp]\nendpoint = \"http://{addr}\"\nprotocol = \"grpc\"\n",
        free_port()
    );
    std::fs::write(&config, text).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_keycanary"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env("KC_OTLP_MARKER", MARKER)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("keycanary.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Labels as on /metrics: views by tenant and domain, findings by tenant and code.
    let has = |points: &[Point], name: &str, labels: &[&str]| {
        points
            .iter()
            .any(|p| p.name == name && labels.iter().all(|l| p.attrs.contains_key(*l)))
    };
    let domain = ["tenant", "domain", "location"];
    // A fetch histogram that has accumulated at least two rounds.
    let accumulated = |points: &[Point]| {
        points
            .iter()
            .any(|p| p.name == "keycanary_fetch_duration_seconds" && p.value >= 2.0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut spans = Vec::new();
    loop {
        while let Ok(s) = span_rx.try_recv() {
            spans.push(s);
        }
        let points = received.0.lock().unwrap().clone();
        if has(&points, "keycanary_view_up", &["tenant", "domain", "kind"])
            && has(&points, "keycanary_findings_open", &["tenant", "code"])
            && has(&points, "keycanary_fetch_duration_seconds", &domain)
            && has(
                &points,
                "keycanary_login_duration_seconds",
                &["tenant", "domain", "location"],
            )
            && accumulated(&points)
            && acme_login_failed_assessed(&spans)
        {
            break;
        }
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none() && tokio::time::Instant::now() < deadline,
            "no view, findings and duration metrics or acme's detect.assess span over OTLP (exit: {exited:?}); received {:?}, spans {:?}\nlog:\n{}",
            points.iter().map(|p| &p.name).collect::<BTreeSet<_>>(),
            spans
                .iter()
                .map(|s| (&s.name, &s.attrs))
                .collect::<Vec<_>>(),
            std::fs::read_to_string(dir.path().join("keycanary.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill().await;
    let points = received.0.lock().unwrap().clone();
    let up: Vec<&Point> = points
        .iter()
        .filter(|p| p.name == "keycanary_view_up")
        .collect();
    assert!(up.iter().all(|p| p.kind == "gauge"), "{up:#?}");
    assert!(
        up.iter().any(|p| p.attrs["tenant"] == "acme"
            && !p.attrs["domain"].is_empty()
            && p.value == 1.0),
        "{up:#?}"
    );
    assert!(
        points
            .iter()
            .any(|p| p.name == "keycanary_build_info" && p.attrs.contains_key("version")),
        "no build info: {points:#?}"
    );
    // The duration histograms: cumulative, the /metrics buckets, counts that add up, and
    // the same labels as /metrics.
    let histograms: Vec<&Point> = points
        .iter()
        .filter(|p| {
            p.name.ends_with("_duration_seconds") && p.name != "keycanary_round_duration_seconds"
        })
        .collect();
    assert!(!histograms.is_empty());
    for h in &histograms {
        assert_eq!(h.kind, "histogram", "{h:#?}");
        assert_eq!(h.temporality, 2, "cumulative: {h:#?}");
        assert_eq!(h.bounds, [0.025, 0.1, 0.25, 0.5, 1.0, 2.5], "{h:#?}");
        assert_eq!(h.buckets.len(), h.bounds.len() + 1, "{h:#?}");
        assert_eq!(h.buckets.iter().sum::<u64>() as f64, h.value, "{h:#?}");
        assert!(h.sum >= 0.0, "{h:#?}");
        let keys: Vec<&str> = h.attrs.keys().map(String::as_str).collect();
        // Both histograms are labelled by domain (the default; per view only with
        // `[telemetry] per_view_histograms`).
        let mut want: Vec<&str> = domain.to_vec();
        want.sort();
        assert_eq!(keys, want, "{h:#?}");
    }
    // A series' count never goes down from one export to the next.
    let mut last: BTreeMap<(String, Vec<(String, String)>), f64> = BTreeMap::new();
    for h in &histograms {
        let key = (h.name.clone(), h.attrs.clone().into_iter().collect());
        let previous = last.insert(key, h.value).unwrap_or(0.0);
        assert!(h.value >= previous, "{h:#?}");
    }
    // The judgements are traced in their rounds' traces, without secrets.
    assert!(!assess_spans(&spans, "acme").is_empty());
    assert_no_secrets(&spans);
    lab.shutdown().await;
}
