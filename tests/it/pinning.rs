//! Pinned edges through the real binary: one nginx answering on two loopback addresses
//! (the two "edges"), each serving its own key set for the same host names, which resolve
//! nowhere. `keycanary check` must see, in each pinned view, the keys of the edge it is
//! pinned to — so the pin was used (the names do not resolve), the URL's port was kept,
//! and the Host header was kept (nginx answers 421 to any other Host). Two domains use two
//! host names on the same two edges, so one edge's client serves several hosts.

use crate::check::{keycanary, start_lab};
use crate::peers::start_edges;
use serde_json::Value;

/// The lab's key set for `domain` of acme with every kid renamed to `kid`.
async fn keys_renamed(base: &str, domain: &str, kid: &str) -> String {
    let url = format!("{base}/origin/{domain}/acme/jwks");
    let mut jwks: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    for k in jwks["keys"].as_array_mut().expect("a key set") {
        k["kid"] = Value::from(kid);
    }
    jwks.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_pinned_view_sees_its_own_edge_with_the_urls_host_and_port() {
    let lab = start_lab().await;
    let base = lab.base_url().to_owned();
    let bodies = [
        (
            "127.0.0.2",
            "jwks.app.pinned.test",
            keys_renamed(&base, "app", "app-edge-2").await,
        ),
        (
            "127.0.0.3",
            "jwks.app.pinned.test",
            keys_renamed(&base, "app", "app-edge-3").await,
        ),
        (
            "127.0.0.2",
            "jwks.io.pinned.test",
            keys_renamed(&base, "io", "io-edge-2").await,
        ),
        (
            "127.0.0.3",
            "jwks.io.pinned.test",
            keys_renamed(&base, "io", "io-edge-3").await,
        ),
    ];
    let edges = start_edges(&bodies).await;
    let port = edges.port;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "lab-secret").unwrap();
    let domain = |d: &str| {
        format!(
            r#"
[[tenant.domain]]
name = "{d}"
issuer = "{base}/{d}/acme"
[tenant.domain.login]
client_id = "keycanary"
client_secret = {{ file = "secret" }}
[[tenant.domain.jwks]]
name = "pinned"
url = "http://jwks.{d}.pinned.test:{port}/jwks"
edges = ["127.0.0.2", "127.0.0.3"]
[tenant.domain.origin]
url = "{base}/origin/{d}/acme/jwks"
"#
        )
    };
    let text = format!(
        "timeout = \"5s\"\n[[tenant]]\nname = \"acme\"\n{}{}",
        domain("app"),
        domain("io")
    );
    let config = dir.path().join("probes.toml");
    std::fs::write(&config, text).unwrap();
    let run = keycanary(
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
    let report = run.json();
    let rows = report["views"].as_array().expect("views");
    for d in ["app", "io"] {
        for edge in ["127.0.0.2", "127.0.0.3"] {
            let row = rows
                .iter()
                .find(|r| r["domain"] == d && r["path"] == "pinned" && r["edge"] == edge)
                .unwrap_or_else(|| panic!("no {d} pinned@{edge} row in {report:#}"));
            assert_eq!(
                row["status"], 200,
                "{d} pinned@{edge}: {row:#}\n{}",
                run.stderr
            );
            let want = format!("{d}-edge-{}", edge.rsplit('.').next().unwrap());
            let kids: Vec<&str> = row["kids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap())
                .collect();
            assert!(
                !kids.is_empty() && kids.iter().all(|k| *k == want),
                "{d} pinned@{edge} must serve only {want}: {kids:?}"
            );
            assert_eq!(
                row["url"],
                format!("http://jwks.{d}.pinned.test:{port}/jwks"),
                "the view's URL is the configured one"
            );
        }
    }
    lab.shutdown().await;
}
