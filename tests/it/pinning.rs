//! Pinned edges through the real binary: one nginx answering on two loopback addresses
//! (the two "edges"), each serving its own key set for the same host names, which resolve
//! nowhere. `keycanary check` must see, in each pinned view, the keys of the edge it is
//! pinned to — so the pin was used (the names do not resolve), the URL's port was kept,
//! and the Host header was kept (nginx answers 421 to any other Host). Two domains use two
//! host names on the same two edges, so one edge's client serves several hosts.

use crate::check::{keycanary, start_lab};
use crate::delivery::{ca, pem};
use crate::peers::{start_edges, start_tls_edges};
use rcgen::{CertificateParams, KeyPair};
use serde_json::Value;
use std::path::Path;

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
    pinned_views_see_their_own_edges(false).await;
}

/// The same over TLS, the edges' certificates from a private CA that only the
/// `SSL_CERT_FILE` given to keycanary trusts. Each edge presents the right certificate
/// only to a client whose SNI is the URL's host name (any other gets one for
/// `edge.invalid`), so a 200 with the edge's keys shows the SNI was kept while the
/// connection went to the pinned address.
#[tokio::test(flavor = "multi_thread")]
async fn pinned_views_over_tls_keep_the_urls_host_as_sni() {
    pinned_views_see_their_own_edges(true).await;
}

/// Writes a private CA (`ca.pem`) and certificates for each name (`NAME-cert.pem`,
/// `NAME-key.pem`) into `dir`.
fn edge_certs(dir: &Path, names: &[&str]) {
    let issuer = ca("keycanary test edges");
    std::fs::write(dir.join("ca.pem"), pem("CERTIFICATE", issuer.der())).unwrap();
    for name in names {
        let key = KeyPair::generate().unwrap();
        let san = if *name == "default" {
            "edge.invalid"
        } else {
            name
        };
        let cert = CertificateParams::new(vec![san.to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(
            dir.join(format!("{name}-cert.pem")),
            pem("CERTIFICATE", cert.der()),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{name}-key.pem")),
            pem("PRIVATE KEY", &key.serialize_der()),
        )
        .unwrap();
    }
}

async fn pinned_views_see_their_own_edges(tls: bool) {
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
    let dir = tempfile::tempdir().unwrap();
    let scheme = if tls { "https" } else { "http" };
    let edges = if tls {
        edge_certs(
            dir.path(),
            &["default", "jwks.app.pinned.test", "jwks.io.pinned.test"],
        );
        start_tls_edges(&bodies, dir.path()).await
    } else {
        start_edges(&bodies).await
    };
    let port = edges.port;
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
url = "{scheme}://jwks.{d}.pinned.test:{port}/jwks"
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
    let ca_file = dir.path().join("ca.pem");
    let envs: Vec<(&str, &str)> = if tls {
        vec![("SSL_CERT_FILE", ca_file.to_str().unwrap())]
    } else {
        Vec::new()
    };
    let run = keycanary(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "json",
        ],
        &envs,
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
                format!("{scheme}://jwks.{d}.pinned.test:{port}/jwks"),
                "the view's URL is the configured one"
            );
        }
    }
    lab.shutdown().await;
}
