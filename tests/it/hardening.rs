//! What a web page, a slow client or a reload can do to the API, over real HTTP on
//! loopback: writes from other sites and non-JSON writes are refused, foreign `Host`s are
//! refused (DNS rebinding), silences are bounded and a read never writes, a client that
//! never finishes its headers is cut off, and a SIGHUP that changes the bearer token
//! applies it (the real binary).

use crate::api::{Harness, wait_for};
use crate::check::start_lab;
use crate::peers::{free_port, signal};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` as raw bytes on a new connection and returns what came back before
/// the server closed it (bounded: 60 s).
async fn raw(base: &str, request: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
        .await
        .expect("the server closed the connection within 60 s")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

fn silence(ends: &str) -> Value {
    json!({"tenant": "acme", "ends": ends, "created_by": "it", "comment": "test"})
}

#[tokio::test(flavor = "multi_thread")]
async fn web_pages_and_foreign_hosts_cannot_drive_the_api() {
    let h = Harness::start(None).await;
    let db = h.state_dir().join("state.db");
    let post = |body: String| h.http.post(format!("{}/v1/silences", h.base)).body(body);
    let status = |r: reqwest::Response| r.status().as_u16();

    // A read never writes: no database appears for listing silences.
    let list = h.get("/v1/silences", None).await;
    assert_eq!(list.status(), 200);
    assert_eq!(list.json::<Value>().await.unwrap(), json!({"silences": []}));
    assert!(!db.exists(), "GET /v1/silences created {}", db.display());

    // What a page can send without asking: text/plain (or a form), from its own origin.
    let body = silence("2h").to_string();
    let plain = post(body.clone())
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(status(plain), 415);
    let no_type = post(body.clone()).send().await.unwrap();
    assert_eq!(status(no_type), 415);
    let foreign = post(body.clone())
        .header("content-type", "application/json")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(status(foreign), 403);
    let cross = post(body.clone())
        .header("content-type", "application/json")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(status(cross), 403);
    assert!(!db.exists(), "a refused write reached the store");
    let delete = h
        .http
        .delete(format!("{}/v1/silences/api-1", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(status(delete), 415);

    // DNS rebinding: the attacker's name in Host, refused before any handler.
    let rebound = raw(
        &h.base,
        "GET /v1/status HTTP/1.1\r\nHost: attacker.example:9464\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(rebound.contains("allowed_hosts"), "{rebound}");
    let local = raw(
        &h.base,
        "GET /healthz HTTP/1.1\r\nHost: localhost:9464\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(local.starts_with("HTTP/1.1 200"), "{local}");

    // A silence that would last until year 8000 is refused; reads keep working.
    let resp = h
        .send(
            Method::POST,
            "/v1/silences",
            None,
            Some(&silence("8000-01-01T00:00:00Z")),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("max_silence"),
        "{body}"
    );
    // The same request as JSON, from the API's own origin, is accepted.
    let own = h
        .http
        .post(format!("{}/v1/silences", h.base))
        .header("origin", &h.base)
        .json(&silence("2h"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 201);
    let list = h.get("/v1/silences", None).await;
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["silences"].as_array().unwrap().len(), 1, "{list}");

    // A client that starts its headers and never finishes them is cut off.
    let cut = raw(
        &h.base,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1",
    )
    .await;
    assert!(!cut.contains("200 OK"), "{cut}");
    h.stop().await;
}

/// A request whose body never arrives is answered 408 (after `REQUEST_TIMEOUT`, 30 s)
/// instead of holding its task for ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_body_never_comes_is_answered_408() {
    let h = Harness::start(None).await;
    let answer = raw(
        &h.base,
        "POST /v1/silences HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"tenant\":",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    h.stop().await;
}

/// The real binary with a bearer token read from a file; the file changes and SIGHUP:
/// the new token is required from then on, the old one refused.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_bearer_token() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let path = crate::check::shipped_config_for(lab.base_url(), dir.path());
    let port = free_port();
    std::fs::write(dir.path().join("token"), "first-token\n").unwrap();
    let text = format!(
        "{}\n[api]\nlisten = \"127.0.0.1:{port}\"\nbearer_token = {{ file = \"token\" }}\n",
        std::fs::read_to_string(&path).unwrap()
    );
    std::fs::write(&path, text).unwrap();
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
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let status_with = |token: &'static str| {
        let req = http
            .get(format!("http://127.0.0.1:{port}/v1/status"))
            .bearer_auth(token);
        async move { req.send().await.map_or(0, |r| r.status().as_u16()) }
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    // The daemon listens for SIGHUP once it runs (the API answers a little earlier).
    wait_for("the daemon running", &log, || async {
        log_text().contains("keycanary running")
    })
    .await;
    assert_eq!(status_with("first-token").await, 200);
    assert_eq!(status_with("second-token").await, 401);

    std::fs::write(dir.path().join("token"), "second-token\n").unwrap();
    signal(&child, "HUP");
    wait_for("the reload in the log", &log, || async {
        log_text().contains("config reloaded")
    })
    .await;
    assert_eq!(status_with("second-token").await, 200, "{}", log_text());
    assert_eq!(status_with("first-token").await, 401, "{}", log_text());
    assert!(!log_text().contains("second-token"), "the token was logged");

    signal(&child, "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stopped within 30 s")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{}", log_text());
    lab.shutdown().await;
}
