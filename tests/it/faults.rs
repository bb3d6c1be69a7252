//! The fault matrix (README, "Fault matrix"), the rows no other module holds.
//!
//! What an IdP can do wrong on the wire, each as a tenant of one `keycanary check` run
//! (the binary) against hostile servers on loopback: every row is a finding that names
//! the problem, never a crash (the run exits 1 for findings, not 101 for a panic). And
//! what the daemon's own ground can do: a state directory that cannot be made, a disk
//! that fills while it runs, `kill -9` in the middle of a round, SIGTERM with a round and
//! a send in flight.

use crate::check::{Run, keycanary, start_lab};
use crate::daemon::{
    alerting, blackhole, committed_rounds, hanging_tenant, spawn_keycanary, stage_steady_incident,
    status, wait_committed_rounds, webhook_channel, write_config,
};
use crate::peers::{Proc, free_port, signal, wait_until};
use crate::receivers::Hook;
use keycanary::lab::CachePolicyUpdate;
use keycanary::store::StatusReport;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The longest any single wait in these tests may take.
const BOUND: Duration = Duration::from_secs(120);
/// The probe's `max_body_bytes` in these runs; the `big` row serves 16 times as much.
const MAX_BODY: usize = 4096;
/// What the HTTP stack says of a body cut short of its `Content-Length`.
const TRUNCATED: &str = "end of file before message length reached";

/// Reads one request (head and `Content-Length` body) and returns its path.
async fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    head.split(' ').nth(1).map(str::to_owned)
}

fn answer(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What the hostile server does for a request to `/<row>/...`.
async fn misbehave(mut s: TcpStream, elsewhere: u16) {
    let Some(path) = read_request(&mut s).await else {
        return;
    };
    let row = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let bytes = match row {
        "5xx" => answer("503 Service Unavailable", "", ""),
        "html" => answer(
            "200 OK",
            "Content-Type: text/html\r\n",
            "<!DOCTYPE html><html><body>Down for maintenance</body></html>",
        ),
        // Promises 1000 bytes, sends 9, closes.
        "truncated" => b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{\"keys\":[".to_vec(),
        "big" => answer(
            "200 OK",
            "Content-Type: application/json\r\n",
            &format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(16 * MAX_BODY)),
        ),
        "loop" => answer("302 Found", &format!("Location: {path}\r\n"), ""),
        "elsewhere" => answer(
            "302 Found",
            &format!("Location: http://127.0.0.1:{elsewhere}{path}\r\n"),
            "",
        ),
        // Answers long after the probe's 2 s timeout.
        "slow" => {
            tokio::time::sleep(Duration::from_secs(20)).await;
            answer("503 Service Unavailable", "", "")
        }
        _ => answer("404 Not Found", "", ""),
    };
    let _ = s.write_all(&bytes).await;
    let _ = s.shutdown().await;
}

/// The hostile server on `127.0.0.1:0`, and the other host its `elsewhere` row redirects
/// to (a different port, which answers 503 to everything). Returns both ports.
async fn hostile() -> (u16, u16) {
    let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_port = other.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = other.accept().await {
            tokio::spawn(async move {
                if read_request(&mut s).await.is_some() {
                    let _ = s
                        .write_all(&answer("503 Service Unavailable", "", ""))
                        .await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = main.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = main.accept().await {
            tokio::spawn(misbehave(s, other_port));
        }
    });
    (port, other_port)
}

/// `openssl s_server` with a fresh self-signed certificate for localhost and 127.0.0.1;
/// returns the process and its port once it accepts connections.
async fn self_signed_tls(dir: &Path) -> (Proc, u16) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("tls-cert.der"), dir.join("tls-key.der"));
    std::fs::write(&cert, made.cert.der()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_der()).unwrap();
    let port = free_port();
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-certform", "DER", "-keyform", "DER", "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key);
    let proc = Proc::spawn("openssl-s_server", cmd, dir);
    wait_until(
        "openssl s_server listening",
        Duration::from_secs(30),
        || async { TcpStream::connect(("127.0.0.1", port)).await.is_ok() },
    )
    .await;
    (proc, port)
}

/// A tenant whose every URL (discovery, token endpoint, JWKS) is under `{base}/{row}`.
fn tenant(row: &str, base: &str) -> String {
    format!(
        r#"
[[tenant]]
name = "{row}"
[[tenant.domain]]
name = "app"
issuer = "{base}/{row}"
[tenant.domain.login]
client_id = "keycanary"
client_secret = {{ file = "secret" }}
token_url = "{base}/{row}/token"
[[tenant.domain.jwks]]
name = "cdn"
url = "{base}/{row}/jwks"
"#
    )
}

/// One row: the tenant, where it is served, and what each of its three findings must say.
struct Row {
    name: &'static str,
    base: String,
    discovery: Vec<String>,
    login: Vec<String>,
    jwks: Vec<String>,
}

fn row(name: &'static str, base: &str, discovery: &[&str], login: &[&str], jwks: &[&str]) -> Row {
    let strings = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect();
    Row {
        name,
        base: base.to_owned(),
        discovery: strings(discovery),
        login: strings(login),
        jwks: strings(jwks),
    }
}

/// The message of `code` for `tenant` (and its JWKS path `path`), exactly one.
fn message(report: &Value, tenant: &str, code: &str, path: Option<&str>) -> String {
    let found: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == code && f["subject"]["tenant"] == tenant)
        .filter(|f| f["subject"]["path"].as_str() == path)
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{tenant}: one {code} for {path:?} expected:\n{report:#}"
    );
    found[0].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_wire_fault_is_a_finding_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "fault-secret").unwrap();
    let (port, elsewhere) = hostile().await;
    let (_tls, tls_port) = self_signed_tls(dir.path()).await;
    let down = free_port(); // nothing listens there
    let base = format!("http://127.0.0.1:{port}");
    let other = format!("http://127.0.0.1:{elsewhere}");
    let never_follows = format!("a redirect to {base}: token requests never follow redirects");
    let to_other = format!("a redirect to {other}: token requests never follow redirects");
    let rows = [
        row(
            "down",
            &format!("http://127.0.0.1:{down}"),
            &["discovery fetch failed", "Connection refused"],
            &["the token request failed", "Connection refused"],
            &["failed (connect)", "Connection refused"],
        ),
        row(
            "dns",
            "http://idp.invalid",
            &["discovery fetch failed", "dns error"],
            &["the token request failed", "dns error"],
            &["failed (connect)", "dns error"],
        ),
        row(
            "slow",
            &base,
            &["discovery fetch failed", "operation timed out"],
            &["the token request failed", "operation timed out"],
            &["failed (timeout)", "operation timed out"],
        ),
        row(
            "5xx",
            &base,
            &["discovery answered HTTP 503"],
            &["the token endpoint answered HTTP 503"],
            &["answered status 503"],
        ),
        row(
            "html",
            &base,
            &["discovery is an HTML page, not JSON"],
            &["the token response is not JSON"],
            &["not a usable JWKS: the body is an HTML page, not JSON"],
        ),
        row(
            "truncated",
            &base,
            &["discovery fetch failed", TRUNCATED],
            &["the token request failed", TRUNCATED],
            &["failed (other)", TRUNCATED],
        ),
        row(
            "big",
            &base,
            &["discovery fetch failed", "body larger than 4096 bytes"],
            &["the token request failed", "body larger than 4096 bytes"],
            &[
                "failed (body too large)",
                "body larger than 4096 bytes (raise max_body_bytes",
            ],
        ),
        row(
            "loop",
            &base,
            &["discovery fetch failed", "redirect"],
            &["HTTP 302", &never_follows],
            &["failed (redirect)"],
        ),
        // JWKS and discovery fetches carry no credential and follow the redirect (to a
        // host that answers 503); the token request does not follow it.
        row(
            "elsewhere",
            &base,
            &["discovery answered HTTP 503"],
            &["HTTP 302", &to_other],
            &["answered status 503"],
        ),
        row(
            "tls",
            &format!("https://127.0.0.1:{tls_port}"),
            &[
                "discovery fetch failed",
                "invalid peer certificate: UnknownIssuer",
            ],
            &[
                "the token request failed",
                "invalid peer certificate: UnknownIssuer",
            ],
            &["failed (tls)", "invalid peer certificate: UnknownIssuer"],
        ),
    ];
    let mut text = format!("timeout = \"2s\"\nmax_body_bytes = {MAX_BODY}\n");
    for r in &rows {
        text.push_str(&tenant(r.name, &r.base));
    }
    let config = dir.path().join("probes.toml");
    std::fs::write(&config, text).unwrap();

    let run: Run = keycanary(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        !run.stdout.contains("fault-secret") && !run.stderr.contains("fault-secret"),
        "the client secret reached the output"
    );
    let report = run.json();
    for r in &rows {
        // The configured JWKS path and the origin view keycanary adds to it.
        for (code, path, parts) in [
            ("discovery_failed", None, &r.discovery),
            ("login_failed", None, &r.login),
            ("jwks_fetch_failed", Some("cdn"), &r.jwks),
            ("jwks_fetch_failed", Some("origin"), &r.jwks),
        ] {
            let text = message(&report, r.name, code, path);
            for part in parts {
                assert!(
                    text.contains(part.as_str()),
                    "row {}: {code} ({path:?}) does not say `{part}`: {text}",
                    r.name
                );
            }
        }
    }
}

/// A full disk: the daemon may not grow any file past 400 blocks (a soft `ulimit -f`, with
/// SIGXFSZ ignored, so a write past it fails as on a full disk). Its state store's
/// write-ahead log soon reaches that: the commit error is logged and `/readyz` answers 503
/// naming it, while the process keeps probing and serving. Then space comes back (the
/// limit is lifted with `prlimit`): `/readyz` is ready again, and the seed incident's
/// page, whose round could not be committed, is decided again and delivered once.
/// SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_reported_and_the_daemon_recovers_when_space_returns() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hook = Hook::start(0).await;
    let config = write_config(
        &lab,
        dir.path(),
        &alerting(&[webhook_channel("hook", &hook.url())]),
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&config, text).unwrap();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -S -f 400; exec \"$0\" run --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_keycanary"))
        .arg(&config)
        .env("RUST_LOG", "warn");
    let mut daemon = Proc::spawn("keycanary", cmd, dir.path());
    let log_path = daemon.log().to_owned();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| {
        let req = http.get(format!("http://127.0.0.1:{port}{path}"));
        async move {
            let resp = req.send().await.ok()?;
            let status = resp.status().as_u16();
            Some((status, resp.json::<Value>().await.unwrap_or_default()))
        }
    };
    let ready = || async { get("/readyz").await.is_some_and(|(s, _)| s == 200) };
    // SQLite's word for a write the file system refused.
    const NOT_WRITABLE: &str =
        "the state store is not writable: the latest commit failed: state database: disk I/O error";
    wait_until("ready after the first commits", BOUND, ready).await;
    wait_until("/readyz naming the failed commit", BOUND, || async {
        get("/readyz").await.is_some_and(|(s, body)| {
            s == 503
                && body["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(NOT_WRITABLE))
        })
    })
    .await;
    assert!(
        log().contains("cannot commit to the state directory"),
        "{}",
        log()
    );
    // The seed incident now, while nothing can be committed (io purged first, so its
    // next copy is the 10-minute one the staging warms).
    for domain in ["app", "io"] {
        let policy = CachePolicyUpdate {
            origin_cache_control: Some(Some("public, max-age=600".into())),
            ..Default::default()
        };
        lab.set_cache(domain, policy).unwrap();
    }
    lab.purge("io").unwrap();
    stage_steady_incident(&lab).await;
    // Still probing and serving: more rounds come (past the failure threshold), and
    // /healthz answers; no page goes out, since none could be queued.
    let rounds = |body: &Value| body["last_round"]["number"].as_u64();
    let before = get("/v1/status")
        .await
        .and_then(|(_, b)| rounds(&b))
        .unwrap();
    wait_until("four more rounds", BOUND, || async {
        get("/v1/status")
            .await
            .and_then(|(_, b)| rounds(&b))
            .is_some_and(|n| n >= before + 4)
    })
    .await;
    assert_eq!(get("/healthz").await.map(|(s, _)| s), Some(200));
    assert!(daemon.child.try_wait().unwrap().is_none(), "{}", log());
    let findings = get("/v1/findings?tenant=acme").await.unwrap().1;
    assert!(
        findings["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "kid_missing"),
        "the incident is seen while the disk is full: {findings:#}"
    );
    assert!(get("/readyz").await.is_some_and(|(s, _)| s == 503));
    assert!(hook.bodies().is_empty(), "{:#?}", hook.bodies());

    // Space comes back.
    let pid = daemon.child.id().unwrap().to_string();
    let lifted = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--fsize=unlimited"])
        .status()
        .unwrap();
    assert!(lifted.success());
    wait_until("ready again after a commit", BOUND, ready).await;
    wait_until("the page", BOUND, || async { !hook.bodies().is_empty() }).await;
    let after = committed_rounds(dir.path());
    wait_committed_rounds(dir.path(), after + 3).await;
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "one page: {bodies:#?}");
    assert_eq!(bodies[0]["status"], "firing");

    signal(&daemon.child, "TERM");
    let exit = tokio::time::timeout(BOUND, daemon.child.wait())
        .await
        .expect("stopped within the bound")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{}", log());
    lab.shutdown().await;
}

/// A state directory that cannot be made (its parent is a regular file): `keycanary run`
/// refuses to start, exit 2, and says which directory and why (once).
#[tokio::test(flavor = "multi_thread")]
async fn a_state_directory_that_cannot_be_made_stops_the_start() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&lab, dir.path(), "");
    std::fs::write(dir.path().join("not-a-dir"), "").unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = format!("state_dir = \"not-a-dir/state\"\n{text}");
    std::fs::write(&config, text).unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_keycanary"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BOUND, run)
        .await
        .expect("exited within the bound")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot create the state directory")
            && stderr.contains("not-a-dir/state: Not a directory"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("Not a directory").count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lab.shutdown().await;
}

/// Rounds of the hung tenant's open `discovery_failed` episode.
fn hung_bad_rounds(s: &StatusReport) -> u32 {
    s.alert_state
        .episodes
        .iter()
        .filter(|e| {
            e.finding.subject.tenant == "hung" && e.finding.code.as_str() == "discovery_failed"
        })
        .map(|e| e.bad_rounds)
        .max()
        .unwrap_or(0)
}

/// `kill -9` in the middle of a round, after the page went out: a tenant whose IdP never
/// answers has a round in flight at any moment (each of its requests waits out the 2 s
/// timeout, and it needs two in a row), so the SIGKILL lands during it. The restarted
/// daemon opens the same state, goes on committing rounds, still judges the hung tenant,
/// and does not page the open incident a second time.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_round_restarts_without_a_second_page() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, hole) = blackhole().await;
    let hook = Hook::start(0).await;
    let extra = format!(
        "{}\n{}",
        hanging_tenant(port),
        alerting(&[webhook_channel("hook", &hook.url())])
    );
    let config = write_config(&lab, dir.path(), &extra);
    stage_steady_incident(&lab).await;

    let mut first = spawn_keycanary(&config, dir.path(), 1);
    wait_until("the page", BOUND, || async { hook.bodies().len() == 1 }).await;
    wait_until("the page's row delivered", BOUND, || async {
        status(dir.path()).is_some_and(|s| s.pending == 0)
    })
    .await;
    first.kill().await;
    let killed_at = committed_rounds(dir.path());
    let hung_before = hung_bad_rounds(&status(dir.path()).unwrap());

    let _second = spawn_keycanary(&config, dir.path(), 2);
    wait_committed_rounds(dir.path(), killed_at + 4).await;
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0]["status"], "firing");
    let s = status(dir.path()).unwrap();
    assert_eq!((s.pending, s.dead.len()), (0, 0), "{s:?}");
    assert!(
        hung_bad_rounds(&s) > hung_before,
        "the hung tenant is judged after the restart: {s:?}"
    );
    hole.abort();
    lab.shutdown().await;
}

/// A receiver that accepts connections, reads what comes and never answers; counts the
/// connections it holds.
async fn silent_receiver() -> (u16, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (port, accepted, task)
}

/// SIGTERM with a round and a send in flight: the hung tenant's round is always probing,
/// and the webhook receiver holds the page's request unanswered. The daemon exits 0, the
/// page stays in the outbox, and the next start delivers it once to the receiver, now
/// answering on the same port.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_round_and_a_send_in_flight_keeps_the_page_for_the_next_start() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let (idp_port, hole) = blackhole().await;
    let (hook_port, accepted, silent) = silent_receiver().await;
    let extra = format!(
        "{}\n{}",
        hanging_tenant(idp_port),
        alerting(&[webhook_channel(
            "hook",
            &format!("http://127.0.0.1:{hook_port}/hook")
        )])
    );
    let config = write_config(&lab, dir.path(), &extra);
    stage_steady_incident(&lab).await;

    let mut first = spawn_keycanary(&config, dir.path(), 1);
    wait_until("the page's request held by the receiver", BOUND, || async {
        accepted.load(Ordering::SeqCst) >= 1
    })
    .await;
    signal(&first.child, "TERM");
    let exit = tokio::time::timeout(BOUND, first.child.wait())
        .await
        .expect("stopped within the bound")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{}", first.logs());
    let s = status(dir.path()).unwrap();
    assert_eq!((s.pending, s.dead.len()), (1, 0), "the page is kept: {s:?}");

    silent.abort();
    let _ = silent.await;
    let hook = Hook::start(hook_port).await;
    let _second = spawn_keycanary(&config, dir.path(), 2);
    wait_until("the page after the restart", BOUND, || async {
        !hook.bodies().is_empty()
    })
    .await;
    let after = committed_rounds(dir.path());
    wait_committed_rounds(dir.path(), after + 3).await;
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0]["status"], "firing");
    let s = status(dir.path()).unwrap();
    assert_eq!((s.pending, s.dead.len()), (0, 0), "{s:?}");
    hole.abort();
    lab.shutdown().await;
}
