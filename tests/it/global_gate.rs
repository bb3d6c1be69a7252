//! The rotation gate over every location, on real peers: one oidc-provider, two caching
//! nginx (one per location, each keeping the JWKS until purged while telling clients
//! `max-age=5`), two `keycanary run` with locations `eu` and `us` (each reading the JWKS
//! through its own nginx), and one Debian Prometheus scraping both every second.
//!
//! A key is staged; only eu's edge is purged: each local gate answers for its own views
//! and the global gate (`/v1/gate/rotation?scope=global`, `keycanary gate --prometheus`)
//! refuses, naming us's edge with its `ready_at`. Then us's edge is purged too: the global
//! gate turns safe once us's staleness budget has passed since its edge served the key,
//! and not before. The retirement gate over every location refuses the signer and lets
//! the never-used staged key go. A location nobody reports blocks; a Prometheus that is
//! gone is a 503.

use std::path::PathBuf;
use std::time::Duration;

use keycanary::model::Timestamp;
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::Command;

use crate::peers::{
    Caching, CdnConf, Proc, StageOpts, free_port, generate_key, start_nginx, start_stage,
    wait_until,
};
use crate::receivers::Prometheus;

/// The longest any single wait may take.
const BOUND: Duration = Duration::from_secs(120);
/// The edges keep their copy until purged but say it is fresh for 5 s.
const TOLD_MAX_AGE: u64 = 5;
/// The client profile's cooldown: S of an edge is 5 s + 1 s.
const EDGE_S: i64 = 6;

/// One `keycanary run` at `location`.
struct Instance {
    _proc: Proc,
    api: String,
    config: PathBuf,
    _dir: TempDir,
}

fn config(location: &str, api_port: u16, prometheus: &str, issuer: &str, jwks_url: &str) -> String {
    format!(
        r#"interval = "2s"
timeout = "2s"
location = "{location}"
client_profiles = ["fast"]
state_dir = "state"

[api]
listen = "127.0.0.1:{api_port}"

[gate]
prometheus = "{prometheus}"
locations = ["eu", "us"]
max_age = "30s"

[[profile]]
name = "fast"
ttl = "2s"
refetch_on_unknown_kid = true
cooldown = "1s"

[[tenant]]
name = "example"

[[tenant.domain]]
name = "io"
issuer = "{issuer}"
[tenant.domain.login]
client_id = "keycanary"
client_secret = {{ file = "client-secret" }}
resource = "https://api.example.test/"
[[tenant.domain.jwks]]
name = "cdn"
url = "{jwks_url}"
"#
    )
}

impl Instance {
    fn start(location: &str, api_port: u16, text: String, secret: &str) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("probes.toml");
        std::fs::write(&config, text).unwrap();
        std::fs::write(dir.path().join("client-secret"), secret).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keycanary"));
        cmd.args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info");
        let proc = Proc::spawn(&format!("keycanary-{location}"), cmd, dir.path());
        Instance {
            _proc: proc,
            api: format!("http://127.0.0.1:{api_port}"),
            config,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("{}{path}", self.api)).await;
        let Ok(r) = r else {
            return (0, Value::Null);
        };
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Its own rotation gate for key-2.
    async fn local(&self) -> (u16, Value) {
        self.get("/v1/gate/rotation?tenant=example&kid=key-2").await
    }

    /// The rotation gate for key-2 over every location, asked of this daemon.
    async fn global(&self) -> (u16, Value) {
        self.get("/v1/gate/rotation?tenant=example&kid=key-2&scope=global")
            .await
    }
}

/// `(code, location, path)` of each blocker.
fn blockers(answer: &Value) -> Vec<(String, String, String)> {
    answer["blocking"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|b| {
            let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            (s(&b["code"]), s(&b["location"]), s(&b["subject"]["path"]))
        })
        .collect()
}

fn has(answer: &Value, code: &str, location: &str, path: &str) -> bool {
    blockers(answer)
        .iter()
        .any(|b| (b.0.as_str(), b.1.as_str(), b.2.as_str()) == (code, location, path))
}

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now()).unwrap()
}

/// `keycanary gate` with `args` after the common ones: exit code and stdout as JSON.
async fn cli_gate(config: &PathBuf, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keycanary"))
        .args(["gate", "--config"])
        .arg(config)
        .args(["--tenant", "example", "--kid", "key-2", "--format", "json"])
        .args(args)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_at_one_location_is_not_enough_for_the_global_gate() {
    let caching = Caching {
        ttl: Some(Duration::from_secs(600)),
        error_ttl: None,
        told_max_age: Some(Duration::from_secs(TOLD_MAX_AGE)),
    };
    let key1 = generate_key("RS256", "key-1").await;
    let key2 = generate_key("RS256", "key-2").await;
    let mut stage = start_stage(StageOpts {
        app: Caching::OFF,
        io: caching.clone(),
        keys: vec![key1.clone()],
        token_ttl: None,
    })
    .await;
    // us reaches the same IdP through its own nginx.
    let us_cdn = start_nginx(&CdnConf {
        app_port: free_port(),
        app_upstream: stage.idp.ports[0],
        app: Caching::OFF,
        io_port: free_port(),
        io_upstream: stage.idp.ports[1],
        io: caching,
    })
    .await;
    let (eu_port, us_port) = (free_port(), free_port());
    let prom = Prometheus::scraping(
        &[
            &format!("127.0.0.1:{eu_port}"),
            &format!("127.0.0.1:{us_port}"),
        ],
        "groups: []\n",
    )
    .await;
    let io = stage.io();
    let secret = stage.idp.client_secret.clone();
    let eu = Instance::start(
        "eu",
        eu_port,
        config("eu", eu_port, &prom.base, &io.issuer, &io.jwks_url),
        &secret,
    );
    let us_jwks = format!("http://127.0.0.1:{}/jwks", us_cdn.io_port);
    let us = Instance::start(
        "us",
        us_port,
        config("us", us_port, &prom.base, &io.issuer, &us_jwks),
        &secret,
    );

    // Both have probed (each edge now holds key-1 only) and Prometheus has both.
    wait_until("both locations in Prometheus", BOUND, || async {
        let v = prom
            .api(
                "/api/v1/query",
                &[(
                    "query",
                    "keycanary_tenant_last_round_timestamp_seconds{tenant=\"example\"}",
                )],
            )
            .await;
        v["data"]["result"].as_array().is_some_and(|r| r.len() == 2)
    })
    .await;

    // Stage key-2: the origin publishes it, both edges keep their copy.
    stage.idp.set_keys(vec![key1, key2]).await;
    for instance in [&eu, &us] {
        wait_until("the origin serves key-2", BOUND, || async {
            let (_, a) = instance.local().await;
            a["blocking"].is_array() && !has(&a, "kid_missing", "-", "origin")
        })
        .await;
    }
    // Purge eu's edge only.
    stage.cdn.purge();
    wait_until("eu's edge serves key-2", BOUND, || async {
        let (_, a) = eu.local().await;
        a["blocking"].is_array() && !has(&a, "kid_missing", "-", "cdn")
    })
    .await;

    // Each local gate answers for its own views, naming no location.
    let (_, eu_local) = eu.local().await;
    assert!(
        blockers(&eu_local)
            .iter()
            .all(|b| b.0 == "key_activated_early" && b.1 == "-"),
        "eu waits out S on its own views only: {eu_local:#}"
    );
    let (status, us_local) = us.local().await;
    assert_eq!(status, 409, "{us_local:#}");
    assert!(has(&us_local, "kid_missing", "-", "cdn"), "{us_local:#}");

    // The global gate, asked of eu: refuses, naming us's edge with its ready_at, once
    // Prometheus has seen eu's purge.
    let deadline = tokio::time::Instant::now() + BOUND;
    let global = loop {
        let (_, a) = eu.global().await;
        if a["blocking"].is_array() && !has(&a, "kid_missing", "eu", "cdn") {
            break a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the global gate never saw eu's purge: {a:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!global["safe"].as_bool().unwrap(), "{global:#}");
    let missing = global["blocking"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["code"] == "kid_missing" && b["location"] == "us")
        .unwrap_or_else(|| panic!("us's edge is named: {global:#}"));
    assert_eq!(missing["subject"]["path"], "cdn", "{global:#}");
    assert!(missing["ready_at"].as_i64().is_some(), "{global:#}");
    assert!(
        global["blocking"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["location"].is_string()),
        "every blocker names its location: {global:#}"
    );
    let (status, _) = eu.global().await;
    assert_eq!(status, 409);
    // Every field of the blockers is documented in openapi.json.
    let doc: Value = serde_json::from_str(keycanary::api::OPENAPI).unwrap();
    let props = doc["components"]["schemas"]["Blocker"]["properties"]
        .as_object()
        .unwrap();
    for b in global["blocking"].as_array().unwrap() {
        for k in b.as_object().unwrap().keys() {
            assert!(props.contains_key(k), "Blocker.{k} is not in openapi.json");
        }
    }

    // The command line asks the same Prometheus and gets the same refusal; a location
    // nobody reports blocks too.
    let (code, answer, stderr) = cli_gate(&us.config, &["--prometheus", &prom.base]).await;
    assert_eq!(code, 1, "{stderr}\n{answer:#}");
    assert!(has(&answer, "kid_missing", "us", "cdn"), "{answer:#}");
    let (code, answer, stderr) = cli_gate(
        &us.config,
        &["--global", "--location", "eu", "--location", "ap"],
    )
    .await;
    assert_eq!(code, 1, "{stderr}\n{answer:#}");
    assert!(has(&answer, "probe_stale", "ap", "-"), "{answer:#}");
    // us was not listed, but its fresh views are judged all the same: a location that
    // reports is never ignored.
    assert!(has(&answer, "kid_missing", "us", "cdn"), "{answer:#}");

    // eu alone turns safe once its S has passed; the global gate still refuses.
    wait_until("eu's local gate is safe", BOUND, || async {
        eu.local().await.0 == 200
    })
    .await;
    let (status, global) = eu.global().await;
    assert_eq!(status, 409, "{global:#}");
    assert!(has(&global, "kid_missing", "us", "cdn"), "{global:#}");

    // Purge us's edge too: safe once us's S has passed since its edge served key-2.
    let purged_at = now();
    us_cdn.purge();
    let mut waiting: Option<i64> = None;
    let deadline = tokio::time::Instant::now() + BOUND;
    let safe = loop {
        let (status, a) = eu.global().await;
        if status == 200 {
            break a;
        }
        assert_eq!(status, 409, "{a:#}");
        if let Some(b) = a["blocking"].as_array().unwrap().iter().find(|b| {
            b["code"] == "key_activated_early"
                && b["location"] == "us"
                && b["subject"]["path"] == "cdn"
        }) {
            waiting = b["ready_at"].as_i64();
        }
        assert!(tokio::time::Instant::now() < deadline, "never safe: {a:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ready = waiting.expect("us's edge was seen waiting out its S before the gate turned safe");
    assert!(
        ready >= purged_at.plus_secs(EDGE_S).0,
        "us's edge waits its S ({EDGE_S} s) from after the purge: ready {ready}, purged {}",
        purged_at.0
    );
    assert!(
        safe["evaluated_at"].as_i64().unwrap() >= ready,
        "safe only once us's S has passed: {safe:#}"
    );
    assert!(safe["blocking"].as_array().unwrap().is_empty(), "{safe:#}");
    // Without a kid: the current signer (key-1, found signing at both locations) is
    // healthy everywhere.
    let (status, healthy) = eu
        .get("/v1/gate/rotation?tenant=example&scope=global")
        .await;
    assert_eq!(status, 200, "{healthy:#}");
    assert_eq!(healthy["kid"], "key-1", "{healthy:#}");

    // The retirement gate over every location, asked of eu: key-1 still signs (eu's
    // history says so); the staged key-2, which never signed, may go: key-1 is served by
    // every view at both locations and has signed alone for longer than any S.
    let retire = async |kid: &str| {
        eu.get(&format!(
            "/v1/gate/retirement?tenant=example&kid={kid}&scope=global"
        ))
        .await
    };
    let (status, answer) = retire("key-1").await;
    assert_eq!(status, 409, "{answer:#}");
    assert!(has(&answer, "key_removed_early", "-", "-"), "{answer:#}");
    let (status, answer) = retire("key-2").await;
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!(answer["gate"], "retirement", "{answer:#}");

    // Prometheus gone: an error answer, never "safe".
    drop(prom);
    let (status, body) = eu.global().await;
    assert_eq!(status, 503, "{body:#}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach Prometheus"),
        "{body:#}"
    );
    let (status, body) = retire("key-2").await;
    assert_eq!(status, 503, "{body:#}");
    let (code, _, stderr) = cli_gate(&us.config, &["--global"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot reach Prometheus"), "{stderr}");
}
