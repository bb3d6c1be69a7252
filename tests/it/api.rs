//! The HTTP API and status page as operators use them: the daemon loop and the API run
//! in-process against the lab over real HTTP; `promtool` checks `/metrics`; headless
//! Chromium renders the status page and a tenant's page during the seed incident; the
//! real binary reloads its config on SIGHUP and the API follows.

use crate::check::{cache_io_for_ten_minutes, shipped_config_for, start_lab};
use crate::peers::signal;
use keycanary::api::{self, ApiState};
use keycanary::clock;
use keycanary::config::{self, Config};
use keycanary::daemon;
use keycanary::lab::Lab;
use keycanary::snapshot::{self, SharedSnapshot};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TOKEN: &str = "test-bearer-token";

/// A lab, the daemon probing it every 2 s, and the API serving its snapshot.
pub(crate) struct Harness {
    pub(crate) lab: Lab,
    pub(crate) base: String,
    snapshot: SharedSnapshot,
    pub(crate) http: reqwest::Client,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    dir: tempfile::TempDir,
    bearer: Option<String>,
}

/// The shipped probes.toml pointed at `lab`, probing every 2 s, simulating only client
/// profiles that refetch on an unknown kid (so a purged domain recovers at once and only
/// the stale one shows red after an unstaged rotation; Envoy-like clients would fail on
/// every domain for their TTL — see the rotation tests).
fn config_for(lab: &Lab, dir: &Path) -> Config {
    config_with_bearer(lab, dir, None)
}

/// [`config_for`] with `[api] bearer_token` set to `bearer`.
fn config_with_bearer(lab: &Lab, dir: &Path, bearer: Option<&str>) -> Config {
    let path = shipped_config_for(lab.base_url(), dir);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("interval = \"30s\"", "interval = \"2s\"")
        .replace("timeout = \"10s\"", "timeout = \"2s\"")
        .replace(
            "client_profiles = [\"jose\", \"keyfunc\", \"spring\", \"envoy\", \"honours_http\"]",
            "client_profiles = [\"jose\", \"spring\", \"honours_http\"]",
        );
    std::fs::write(&path, &text).unwrap();
    let config = config::load(&path).unwrap();
    assert_eq!(config.settings.interval, Duration::from_secs(2), "{text}");
    assert_eq!(
        config.tenants[0].client_profiles,
        ["jose", "spring", "honours_http"],
        "{text}"
    );
    let mut config = config;
    config.api.bearer_token = bearer.map(|b| b.to_owned().into());
    config
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

impl Harness {
    /// Starts the lab and the API (with `bearer`), but not the daemon: nothing is probed
    /// until [`Harness::start_daemon`].
    pub(crate) async fn start(bearer: Option<&str>) -> Harness {
        let lab = start_lab().await;
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(config_with_bearer(&lab, dir.path(), bearer));
        let snapshot = snapshot::new_snapshot();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = ApiState {
            snapshot: snapshot.clone(),
            state_dir: Some(config.settings.state_dir.clone()),
            config,
            clock: clock::system(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            api::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Harness {
            lab,
            base,
            snapshot,
            http: http(),
            stops: vec![stop],
            tasks: vec![task],
            dir,
            bearer: bearer.map(str::to_owned),
        }
    }

    pub(crate) fn start_daemon(&mut self) {
        let config = config_with_bearer(&self.lab, self.dir.path(), self.bearer.as_deref());
        let snapshot = self.snapshot.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        self.tasks.push(tokio::spawn(async move {
            daemon::run_with(config, clock::system(), snapshot, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        }));
        self.stops.push(stop);
    }

    /// The daemon's state directory (`.state` beside the config).
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join(".state")
    }

    pub(crate) fn rounds(&self) -> u64 {
        self.snapshot.read().unwrap().rounds
    }

    /// Waits (bounded) until at least `n` rounds have finished.
    pub(crate) async fn wait_for_rounds(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.rounds() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the daemon finished {} of {n} rounds within 60 s",
                self.rounds()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// `method path` with an optional JSON body.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let write = method != reqwest::Method::GET;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        } else if write {
            // Every write names JSON, bodiless DELETE included.
            req = req.header("content-type", "application/json");
        }
        req.send().await.unwrap()
    }

    async fn json(&self, path: &str, token: Option<&str>) -> Value {
        let resp = self.get(path, token).await;
        assert_eq!(resp.status(), 200, "{path}");
        resp.json().await.unwrap()
    }

    pub(crate) async fn stop(mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.tasks.drain(..) {
            t.await.unwrap();
        }
        self.lab.shutdown().await;
    }
}

/// The `_count` of every series of histogram `family` in `body`, by its labels.
fn histogram_counts(body: &str, family: &str) -> std::collections::BTreeMap<String, f64> {
    let prefix = format!("{family}_count{{");
    body.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once("} ").unwrap();
            (labels.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// `promtool check metrics` on `body`; fails (never skips) when promtool is missing.
fn promtool_check_metrics(body: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): run scripts/install-peers.sh"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics failed:\n{}{}\n--- body ---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_on_a_healthy_lab() {
    let mut h = Harness::start(None).await;

    // Before the first round: alive, not ready.
    let health = h.get("/healthz", None).await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let ready = h.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    let reason: Value = ready.json().await.unwrap();
    assert_eq!(reason["ready"], false);
    assert!(
        reason["reason"]
            .as_str()
            .unwrap()
            .contains("no probe round")
    );
    let status = h.json("/v1/status", None).await;
    assert_eq!(status["last_round"], Value::Null);
    assert_eq!(status["views"].as_array().unwrap().len(), 0);

    h.start_daemon();
    h.wait_for_rounds(1).await;
    let ready = h.json("/readyz", None).await;
    assert_eq!(ready["ready"], true);
    assert!(
        ready["last_commit"].as_str().unwrap().ends_with('Z'),
        "{ready:#}"
    );

    let status = h.json("/v1/status", None).await;
    let views = status["views"].as_array().unwrap();
    assert_eq!(views.len(), 12, "3 tenants x 2 domains x (cdn + origin)");
    assert!(status["last_round"]["number"].as_u64().unwrap() >= 1);
    assert!(
        status["last_round"]["finished_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(
        views
            .iter()
            .all(|v| v["verdict"] == "ok" && !v["kids"].as_array().unwrap().is_empty()),
        "{status:#}"
    );
    // Every field served is documented in openapi.json.
    let doc: Value = serde_json::from_str(api::OPENAPI).unwrap();
    let documented = |schema: &str| -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let row_fields = documented("ViewRow");
    for v in views {
        for k in v.as_object().unwrap().keys() {
            assert!(row_fields.contains(k), "ViewRow.{k} is not in openapi.json");
        }
    }
    let round_fields = documented("LastRound");
    for k in status["last_round"].as_object().unwrap().keys() {
        assert!(
            round_fields.contains(k),
            "LastRound.{k} is not in openapi.json"
        );
    }
    let ready_fields = documented("Ready");
    for k in ready.as_object().unwrap().keys() {
        assert!(ready_fields.contains(k), "Ready.{k} is not in openapi.json");
    }

    // One tenant's rows: `?tenant=`; an unknown tenant is a 400.
    let globex = h.json("/v1/status?tenant=globex", None).await;
    let rows = globex["views"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "2 domains x (cdn + origin): {globex:#}");
    assert!(rows.iter().all(|v| v["tenant"] == "globex"), "{globex:#}");
    assert_eq!(globex["last_round"], status["last_round"]);
    let unknown = h.get("/v1/status?tenant=nosuch", None).await;
    assert_eq!(unknown.status(), 400);
    let message: Value = unknown.json().await.unwrap();
    assert!(
        message["error"]
            .as_str()
            .unwrap()
            .contains("unknown tenant `nosuch`"),
        "{message:#}"
    );

    let findings = h.json("/v1/findings", None).await;
    assert_eq!(findings["findings"], serde_json::json!([]), "{findings:#}");

    // /metrics is valid for promtool and carries the matrix.
    let resp = h.get("/metrics", None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = resp.text().await.unwrap();
    promtool_check_metrics(&body);
    let up = body
        .lines()
        .filter(|l| l.starts_with("keycanary_view_up{") && l.ends_with(" 1"))
        .count();
    assert_eq!(up, 12, "{body}");
    assert!(
        body.lines()
            .any(|l| l.starts_with("keycanary_signing_kid_info{tenant=\"acme\",domain=\"io\""))
    );
    // The duration histograms: every domain's fetches (by domain by default) and every
    // domain's login so far.
    for (family, series) in [
        ("keycanary_fetch_duration_seconds", 6),
        ("keycanary_login_duration_seconds", 6),
    ] {
        assert!(
            body.lines()
                .any(|l| l == format!("# TYPE {family} histogram")),
            "{body}"
        );
        let counts = histogram_counts(&body, family);
        assert_eq!(counts.len(), series, "{family}: {counts:?}");
        assert!(counts.values().all(|n| *n >= 1.0), "{family}: {counts:?}");
    }

    // The status page: every tenant healthy, so each is one line and no matrix is shown;
    // a tenant's page has its matrix; the filter keeps the names that contain the text.
    let page = h.get("/", None).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = page.text().await.unwrap();
    for tenant in ["acme", "globex", "initech"] {
        assert_eq!(line_class(&page, tenant), "ok", "{tenant}: {page}");
        assert!(
            page.contains(&format!("href=\"/?tenant={tenant}\"")),
            "{page}"
        );
    }
    assert!(!page.contains("data-cell"), "{page}");
    let acme = h.get("/?tenant=acme", None).await;
    assert_eq!(acme.status(), 200);
    let acme = acme.text().await.unwrap();
    assert!(has_class(&cell_class(&acme, "acme/io/cdn"), "ok"), "{acme}");
    assert!(!acme.contains("globex"), "{acme}");
    let filtered = h.get("/?q=GLOB", None).await.text().await.unwrap();
    assert_eq!(line_class(&filtered, "globex"), "ok", "{filtered}");
    assert!(!filtered.contains("data-tenant=\"acme\""), "{filtered}");
    let missing = h.get("/?tenant=%3Cb%3Enosuch", None).await;
    assert_eq!(missing.status(), 404);
    let missing = missing.text().await.unwrap();
    assert!(
        missing.contains("No tenant named “&lt;b&gt;nosuch”"),
        "{missing}"
    );
    h.stop().await;
}

/// The `class` attribute of the status page's one-line entry for `tenant`.
fn line_class(page: &str, tenant: &str) -> String {
    let at = page
        .find(&format!("data-tenant=\"{tenant}\""))
        .unwrap_or_else(|| panic!("no line for {tenant} in the page:\n{page}"));
    let open = page[..at].rfind("<li").expect("the line is an <li>");
    let tag = &page[open..at];
    let class = tag
        .split("class=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no class on {tag}"));
    class.split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_guards_everything_but_health() {
    let h = Harness::start(Some(TOKEN)).await;
    for path in api::route_paths() {
        let public = path == "/healthz" || path == "/readyz";
        // `/v1/silences/{id}` only deletes: ask for an id that does not exist.
        let (method, concrete) = match path.strip_suffix("/{id}") {
            Some(base) => (reqwest::Method::DELETE, format!("{base}/no-such-id")),
            None => (reqwest::Method::GET, path.to_owned()),
        };
        let call = |token| h.send(method.clone(), &concrete, token, None);
        let anonymous = call(None).await;
        let wrong = call(Some("wrong-token")).await;
        let right = call(Some(TOKEN)).await;
        if public {
            assert_ne!(anonymous.status(), 401, "{path} is public");
        } else {
            assert_eq!(anonymous.status(), 401, "{path} without a token");
            assert!(
                anonymous.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer")
            );
            let body: Value = anonymous.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("bearer token"));
            assert_eq!(wrong.status(), 401, "{path} with a wrong token");
        }
        // /readyz is 503 here: the daemon never ran; the gates need their `tenant` query.
        let want = match path {
            "/readyz" => 503,
            p if p.starts_with("/v1/gate/") => 400,
            "/v1/silences/{id}" => 404,
            _ => 200,
        };
        assert_eq!(right.status(), want, "{path} with the token");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_lists_exactly_the_served_routes() {
    let h = Harness::start(None).await;
    let doc = h.json("/openapi.json", None).await;
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::check::repo().join("openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc, committed, "/openapi.json serves the committed file");
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routes: BTreeSet<String> = api::route_paths().iter().map(|p| p.to_string()).collect();
    assert_eq!(documented, routes);
    // Each documented path and method is served, and nothing else is. `{id}` is filled
    // with an unknown id: the 404 must then be the handler's, not the router's.
    for path in &documented {
        let concrete = path.replace("{id}", "no-such-id");
        let methods = doc["paths"][path].as_object().unwrap();
        assert!(!methods.is_empty(), "{path}: no methods documented");
        for method in methods.keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            assert!(
                ["get", "post", "delete"].contains(&method.as_str()),
                "{path}: {method}"
            );
            let resp = h
                .send(m, &concrete, None, Some(&serde_json::json!({})))
                .await;
            let status = resp.status();
            let body = resp.text().await.unwrap();
            let unrouted = status == 405 || (status == 404 && body.contains("no such route"));
            assert!(
                !unrouted,
                "{method} {path} is documented but not served: {status} {body}"
            );
        }
    }
    for path in ["/v1", "/v1/gates", "/status", "/metrics/extra"] {
        let resp = h.get(path, None).await;
        assert_eq!(resp.status(), 404, "{path} is not a route");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_incident_in_findings_and_metrics() {
    let mut h = Harness::start(None).await;
    let (old_kid, new_kid) = stage_seed_incident(&mut h).await;

    let all = h.json("/v1/findings", None).await;
    let codes = |v: &Value| -> Vec<(String, String, String)> {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let s = |x: &Value| x.as_str().unwrap_or("").to_owned();
                (
                    s(&f["code"]),
                    s(&f["subject"]["domain"]),
                    s(&f["subject"]["path"]),
                )
            })
            .collect()
    };
    let found = codes(&all);
    assert!(
        found.contains(&("kid_missing".into(), "io".into(), "cdn".into())),
        "{all:#}"
    );
    assert!(
        found.contains(&("stale_edge".into(), "io".into(), "cdn".into())),
        "{all:#}"
    );
    let kid_missing = h
        .json("/v1/findings?tenant=acme&code=kid_missing", None)
        .await;
    let list = kid_missing["findings"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{kid_missing:#}");
    assert_eq!(list[0]["subject"]["kid"], new_kid.as_str());
    assert!(list[0]["since"].as_str().unwrap().ends_with('Z'));
    let critical = h.json("/v1/findings?severity=critical", None).await;
    assert!(
        critical["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] == "critical")
    );
    assert!(codes(&critical).iter().any(|c| c.0 == "kid_missing"));
    assert!(!codes(&critical).iter().any(|c| c.0 == "stale_edge"));
    let high = h.json("/v1/findings?severity=high", None).await;
    assert!(codes(&high).iter().any(|c| c.0 == "stale_edge"));
    let globex = h.json("/v1/findings?tenant=globex", None).await;
    assert_eq!(globex["findings"], serde_json::json!([]), "{globex:#}");
    for bad in [
        "/v1/findings?severity=urgent",
        "/v1/findings?code=kid_gone",
        "/v1/findings?tenant=nobody",
    ] {
        let resp = h.get(bad, None).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("unknown"),
            "{body}"
        );
    }

    let body = h.get("/metrics", None).await.text().await.unwrap();
    promtool_check_metrics(&body);
    let view = r#"tenant="acme",domain="io",path="cdn",edge="",kind="edge",location="local""#;
    for line in [
        format!(r#"keycanary_view_kid_present{{{view},kid="{new_kid}"}} 0"#),
        format!(r#"keycanary_view_kid_present{{{view},kid="{old_kid}"}} 1"#),
        r#"keycanary_findings_open{tenant="acme",code="kid_missing",severity="critical"} 1"#
            .to_owned(),
        r#"keycanary_token_verifications{tenant="acme",domain="io",path="cdn",edge="",result="verified"} 0"#.to_owned(),
        format!(r#"keycanary_signing_kid_info{{tenant="acme",domain="io",kid="{new_kid}"}} 1"#),
    ] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
    }
    // Fetch durations accumulate over every round acme had (at least three by now, of
    // two views each on io), and each series' `+Inf` bucket is its count.
    let domain = r#"tenant="acme",domain="io",location="local""#;
    let counts = histogram_counts(&body, "keycanary_fetch_duration_seconds");
    assert!(counts[domain] >= 6.0, "{counts:?}");
    let inf = format!(r#"keycanary_fetch_duration_seconds_bucket{{{domain},le="+Inf"}} "#);
    let inf: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix(&inf))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(inf, counts[domain]);
    let missing = r#"keycanary_token_verifications{tenant="acme",domain="io",path="cdn",edge="",result="kid_missing"} "#;
    assert!(
        body.lines()
            .any(|l| l.starts_with(missing) && !l.ends_with(" 0")),
        "{body}"
    );
    // Split scrapes: one tenant's series, a few families, or both; a typo is a 400.
    let samples = |body: &str| -> Vec<String> {
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let acme = h
        .get("/metrics?tenant=acme", None)
        .await
        .text()
        .await
        .unwrap();
    promtool_check_metrics(&acme);
    assert!(
        samples(&acme)
            .iter()
            .any(|l| l.contains(missing.trim_end())),
        "{acme}"
    );
    assert!(
        samples(&acme)
            .iter()
            .all(|l| l.contains(r#"tenant="acme""#)),
        "{acme}"
    );
    assert!(
        samples(&body)
            .iter()
            .any(|l| l.contains(r#"tenant="globex""#))
    );
    let two = h
        .get(
            "/metrics?name%5B%5D=keycanary_view_up&name[]=keycanary_gate_safe&tenant=globex",
            None,
        )
        .await
        .text()
        .await
        .unwrap();
    let names: BTreeSet<&str> = two
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["keycanary_view_up", "keycanary_gate_safe"]),
        "{two}"
    );
    assert!(
        !samples(&two).is_empty()
            && samples(&two)
                .iter()
                .all(|l| l.contains(r#"tenant="globex""#)),
        "{two}"
    );
    for bad in ["/metrics?tenant=nobody", "/metrics?match[]=up"] {
        let resp = h.get(bad, None).await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
    h.stop().await;
}

/// `/v1/silences` over HTTP, for the seed incident's tenant and code: create, list, delete
/// (twice), and a bad body with every problem named. The daemon side (a silence from the
/// API mutes the incident) is in `daemon::api_silence_mutes_the_seed_incident`.
#[tokio::test(flavor = "multi_thread")]
async fn silences_create_list_delete() {
    use reqwest::Method;
    use serde_json::json;
    let h = Harness::start(Some(TOKEN)).await;
    let t = Some(TOKEN);
    let empty = h.json("/v1/silences", t).await;
    assert_eq!(empty, json!({ "silences": [] }));

    let resp = h
        .send(
            Method::POST,
            "/v1/silences",
            t,
            Some(&json!({
                "tenant": "acme",
                "code": "kid_missing",
                "subject": "domain=io path=cdn",
                "ends": "2h",
                "created_by": "sre@example.com",
                "comment": "INC-42: io CDN purge pending",
            })),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("api-"), "{created:#}");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["code"], "kid_missing");
    assert_eq!(created["subject"], "domain=io path=cdn");
    assert_eq!(created["active"], true);
    assert!(
        created["ends"].as_str().unwrap().ends_with('Z'),
        "{created:#}"
    );
    // A future one is listed too, not active yet.
    let planned = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(30 * 24 * 3600),
    )
    .to_string();
    let resp = h
        .send(
            Method::POST,
            "/v1/silences",
            t,
            Some(&json!({
                "severity": "high",
                "starts": planned,
                "ends": "2h",
                "created_by": "sre",
                "comment": "planned",
            })),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let future: Value = resp.json().await.unwrap();
    assert_eq!(future["active"], false);

    let list = h.json("/v1/silences", t).await;
    let listed = list["silences"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{list:#}");
    let mine = listed.iter().find(|s| s["id"] == id.as_str()).unwrap();
    assert_eq!(mine, &created);

    // What the daemon reads each round: the same silence, muting the seed finding.
    let store = keycanary::store::Store::open(&h.dir.path().join(".state")).unwrap();
    let now = clock::system().now();
    let stored = store.silences(now).unwrap();
    let mut seed = keycanary::model::Finding::new(
        keycanary::model::Code::KidMissing,
        keycanary::model::Subject::domain("acme", "io").with_kid(Some("acme-k2")),
        "m",
    );
    seed.subject.path = Some("cdn".into());
    assert!(keycanary::alert::silence::is_muted(
        &seed,
        &stored,
        &[],
        now
    ));
    drop(store);

    let path = format!("/v1/silences/{id}");
    let anonymous = h.send(Method::DELETE, &path, None, None).await;
    assert_eq!(anonymous.status(), 401);
    let deleted = h.send(Method::DELETE, &path, t, None).await;
    assert_eq!(deleted.status(), 204);
    let again = h.send(Method::DELETE, &path, t, None).await;
    assert_eq!(again.status(), 404);
    let body: Value = again.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains(&id), "{body}");
    let list = h.json("/v1/silences", t).await;
    assert_eq!(list["silences"].as_array().unwrap().len(), 1, "{list:#}");

    // A bad body: 400 naming every problem.
    let resp = h
        .send(
            Method::POST,
            "/v1/silences",
            t,
            Some(&json!({
                "tenant": "nobody",
                "code": "kid_gone",
                "severity": "urgent",
                "subject": "host=x",
                "starts": "yesterday",
            })),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let problems: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for field in [
        "tenant",
        "code",
        "severity",
        "subject",
        "starts",
        "ends",
        "created_by",
        "comment",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(&format!("{field}:"))),
            "no problem about {field}: {body:#}"
        );
    }
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown tenant `nobody`")
    );
    let not_json = h
        .http
        .post(format!("{}/v1/silences", h.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("ends=2h")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let body: Value = not_json.json().await.unwrap();
    assert!(
        body["problems"][0].as_str().unwrap().starts_with("body:"),
        "{body}"
    );
    h.stop().await;
}

/// The seed incident, through the daemon: io's CDN keeps the JWKS for 10 minutes, a round
/// caches the old key set, acme rotates, the pipeline purges app only; returns once a
/// whole round has run after the rotation. Returns `(old kid, new kid)`.
pub(crate) async fn stage_seed_incident(h: &mut Harness) -> (String, String) {
    cache_io_for_ten_minutes(&h.lab);
    h.start_daemon();
    h.wait_for_rounds(1).await; // the warm round: io's edge now holds the old set
    let old_kid = h.lab.signer_kid("acme").unwrap();
    let new_kid = h.lab.rotate("acme").unwrap();
    h.lab.purge("app").unwrap();
    // A round may be running across the rotation; the one after it started after it.
    let now = h.rounds();
    h.wait_for_rounds(now + 2).await;
    (old_kid, new_kid)
}

/// Chromium's `--dump-dom` / `--screenshot` of `url`; fails when Chromium is missing.
async fn chromium(url: &str, mode: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(mode)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished within 90 s")
        .unwrap_or_else(|e| panic!("cannot run chromium ({e}): run scripts/install-peers.sh"));
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `class` attribute of the `<td>` whose `data-cell` is `cell`, in serialised HTML.
fn cell_class(dom: &str, cell: &str) -> String {
    let at = dom
        .find(&format!("data-cell=\"{cell}\""))
        .unwrap_or_else(|| panic!("no cell {cell} in the page:\n{dom}"));
    let open = dom[..at].rfind("<td").expect("the cell is a <td>");
    let close = at + dom[at..].find('>').unwrap();
    let tag = &dom[open..close];
    let class = tag
        .split("class=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no class on {tag}"));
    class.split('"').next().unwrap().to_owned()
}

fn has_class(classes: &str, want: &str) -> bool {
    classes.split_whitespace().any(|c| c == want)
}

/// Where test artefacts go: `target/test-output/`.
fn test_output_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target dir")
        .to_owned();
    let dir = target.join("test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_in_chromium_shows_the_stale_edge_red() {
    let mut h = Harness::start(None).await;
    let (old_kid, new_kid) = stage_seed_incident(&mut h).await;
    let url = format!("{}/", h.base);

    // acme has problems: its card comes first, with its matrix; the healthy tenants are
    // one line each, below it.
    let dom = chromium(&url, &["--dump-dom".to_owned()]).await;
    let io = cell_class(&dom, "acme/io/cdn");
    let app = cell_class(&dom, "acme/app/cdn");
    assert!(has_class(&io, "bad"), "acme/io/cdn is `{io}`");
    assert!(has_class(&app, "ok"), "acme/app/cdn is `{app}`");
    assert!(has_class(&cell_class(&dom, "acme/io/origin"), "ok"));
    assert!(dom.contains("kid_missing") && dom.contains(&new_kid) && dom.contains(&old_kid));
    let card = dom.find("id=\"tenant-acme\"").expect("acme's card");
    for other in ["globex", "initech"] {
        assert_eq!(line_class(&dom, other), "ok", "{other}");
        let line = dom.find(&format!("data-tenant=\"{other}\"")).unwrap();
        assert!(card < line, "problems first");
        assert!(
            !dom.contains(&format!("data-cell=\"{other}/")),
            "{other} is folded"
        );
    }
    // A healthy tenant's full matrix is on its page; the filter finds it by part of its
    // name (the form's GET, as a browser sends it).
    let globex = chromium(
        &format!("{}/?tenant=globex", h.base),
        &["--dump-dom".to_owned()],
    )
    .await;
    for cell in ["globex/io/cdn", "globex/app/origin", "globex/io/login"] {
        assert!(has_class(&cell_class(&globex, cell), "ok"), "{cell}");
    }
    assert!(!globex.contains("acme/io/cdn"), "only globex");
    let filtered = h.get("/?q=itech", None).await.text().await.unwrap();
    assert_eq!(line_class(&filtered, "initech"), "ok", "{filtered}");
    assert!(!filtered.contains("tenant-acme") && !filtered.contains("data-tenant=\"globex\""));

    let png = test_output_dir().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &url,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,900".to_owned(),
        ],
    )
    .await;
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
    assert!(bytes.len() > 10_000, "the screenshot has content");
    // `KEYCANARY_UPDATE_DOCS=1` refreshes the README's copy.
    if std::env::var_os("KEYCANARY_UPDATE_DOCS").is_some() {
        let docs = crate::check::repo().join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&png, docs.join("status-page.png")).unwrap();
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gates_over_http_and_from_the_cli() {
    let mut h = Harness::start(None).await;
    let before = h.get("/v1/gate/rotation?tenant=acme", None).await;
    assert_eq!(before.status(), 503, "no round yet");
    h.start_daemon();
    h.wait_for_rounds(2).await;
    // The daemon has watched for seconds only, but the current signer was already signing
    // and served by every view when it started: healthy, not "activated early". What the
    // tenant has open beside it (the lab's domains cache differently) is advised.
    let resp = h.get("/v1/gate/rotation?tenant=acme", None).await;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!(answer["safe"], true, "{answer:#}");
    assert_eq!(answer["kid"], "acme-k1", "{answer:#}");
    assert_eq!(answer["blocking"], serde_json::json!([]), "{answer:#}");
    assert!(answer["advisories"].is_array(), "{answer:#}");
    // Every field of the answer, blockers and advisories is documented in openapi.json.
    let doc: Value = serde_json::from_str(api::OPENAPI).unwrap();
    let documented = |schema: &str, v: &Value| {
        let props = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap();
        for k in v.as_object().unwrap().keys() {
            assert!(props.contains_key(k), "{schema}.{k} is not in openapi.json");
        }
    };
    documented("GateAnswer", &answer);
    for a in answer["advisories"].as_array().unwrap() {
        documented("Advisory", a);
    }
    // A key nobody publishes is missing from every view (2 domains × (cdn + origin)).
    let answer: Value = h
        .get("/v1/gate/rotation?tenant=acme&kid=nope", None)
        .await
        .json()
        .await
        .unwrap();
    let missing = answer["blocking"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["code"] == "kid_missing")
        .count();
    assert_eq!(missing, 4, "{answer:#}");
    for b in answer["blocking"].as_array().unwrap() {
        documented("Blocker", b);
    }
    assert!(answer.get("ready_at").is_none(), "{answer:#}");
    // The signer cannot be retired; bad questions are 400.
    let resp = h
        .get("/v1/gate/retirement?tenant=acme&kid=acme-k1", None)
        .await;
    assert_eq!(resp.status(), 409);
    assert_eq!(
        h.get("/v1/gate/retirement?tenant=acme", None)
            .await
            .status(),
        400
    );
    assert_eq!(
        h.get("/v1/gate/rotation?tenant=nobody", None)
            .await
            .status(),
        400
    );
    // A query string that does not parse is a 400 with the same JSON error.
    for bad in ["/v1/gate/rotation", "/v1/gate/retirement?kid=x"] {
        let resp = h.get(bad, None).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("tenant"),
            "{bad}: {body}"
        );
    }

    // `keycanary gate --url` prints the daemon's answer: exit 0 for the healthy signer,
    // 1 (unsafe) for a key nobody publishes, with its blocking list.
    let config = h.dir.path().join("probes.toml");
    let gate = |kid: Option<&'static str>| {
        let mut args = vec![
            "gate".to_owned(),
            "--config".to_owned(),
            config.to_str().unwrap().to_owned(),
            "--tenant".to_owned(),
            "acme".to_owned(),
            "--url".to_owned(),
            h.base.clone(),
        ];
        if let Some(k) = kid {
            args.extend(["--kid".to_owned(), k.to_owned()]);
        }
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::check::keycanary(&args, &[]).await
        }
    };
    let run = gate(None).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .starts_with("rotation gate, tenant acme kid acme-k1: SAFE"),
        "{}",
        run.stdout
    );
    let run = gate(Some("nope")).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .starts_with("rotation gate, tenant acme kid nope: UNSAFE"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("blocking:\n") && run.stdout.contains("kid_missing"),
        "{}",
        run.stdout
    );
    h.stop().await;
}

/// Polls `ready` every 100 ms for up to 60 s; on timeout, fails with the daemon's log.
pub(crate) async fn wait_for<F, Fut>(what: &str, log: &Path, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !ready().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 60 s; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The real binary started without initech, then SIGHUP with initech added back: the API
/// serves the new tenant list without a restart. /metrics lists initech in the families
/// that cover every configured tenant (open findings, the rotation gate) as soon as the
/// reload is done, /v1/findings and the gates accept it, the status page shows it, and
/// once it has been probed its views are in /v1/status and its fetches in the histograms.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reload_reaches_the_api_without_a_restart() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    config_for(&lab, dir.path());
    let path = dir.path().join("probes.toml");
    let port = crate::peers::free_port();
    let full = format!(
        "{}\n[api]\nlisten = \"127.0.0.1:{port}\"\n",
        std::fs::read_to_string(&path).unwrap()
    );
    let start = full
        .find("# --- initech")
        .expect("initech is the last tenant");
    let end = full.find("\n[api]\n").unwrap();
    std::fs::write(&path, format!("{}{}", &full[..start], &full[end..])).unwrap();
    let log = dir.path().join("keycanary.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_keycanary"))
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = http();
    let base = format!("http://127.0.0.1:{port}");
    let get = |p: &str| {
        let req = http.get(format!("{base}{p}"));
        async move {
            match req.send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        }
    };
    let views = |body: &str| -> Vec<Value> {
        serde_json::from_str::<Value>(body).unwrap_or_default()["views"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let initech_gate = r#"keycanary_gate_safe{tenant="initech"} "#;

    // acme and globex: 2 tenants × 2 domains × (cdn + origin).
    wait_for("8 views in /v1/status", &log, || async {
        views(&get("/v1/status").await.1).len() == 8
    })
    .await;
    let metrics = get("/metrics").await.1;
    assert!(!metrics.contains("tenant=\"initech\""), "{metrics}");
    assert_eq!(get("/v1/findings?tenant=initech").await.0, 400);
    assert_eq!(get("/v1/gate/rotation?tenant=initech").await.0, 400);
    assert!(!get("/").await.1.contains("initech"));

    // initech back, and SIGHUP.
    std::fs::write(&path, &full).unwrap();
    signal(&child, "HUP");
    wait_for("the reload in the log", &log, || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("config reloaded")
    })
    .await;
    // The gate families over every configured tenant follow the reload at once, before
    // any round.
    wait_for("initech in /metrics", &log, || async {
        let body = get("/metrics").await.1;
        body.lines().any(|l| l.starts_with(initech_gate))
    })
    .await;
    let (status, body) = get("/v1/findings?tenant=initech").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get("/v1/gate/rotation?tenant=initech").await;
    assert!(status == 200 || status == 409, "{status} {body}");
    assert!(get("/").await.1.contains("initech"));
    // Once probed: its views, and its fetches in the duration histograms.
    wait_for("12 views in /v1/status", &log, || async {
        let rows = views(&get("/v1/status").await.1);
        rows.len() == 12 && rows.iter().any(|r| r["tenant"] == "initech")
    })
    .await;
    wait_for("initech's fetch durations", &log, || async {
        let body = get("/metrics").await.1;
        histogram_counts(&body, "keycanary_fetch_duration_seconds")
            .keys()
            .any(|labels| labels.starts_with("tenant=\"initech\""))
    })
    .await;
    let body = get("/metrics").await.1;
    promtool_check_metrics(&body);

    signal(&child, "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stopped within 30 s")
        .unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    lab.shutdown().await;
}
