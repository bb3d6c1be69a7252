//! `keycanary check` as a user runs it: the binary, a config file, the lab over real HTTP.

use keycanary::clock;
use keycanary::lab::{self, CachePolicyUpdate, Lab, LabOptions, OriginFailure};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SHIPPED: &str = include_str!("../../probes.toml");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped probes.toml pointed at `base` (a lab already running), secrets resolved
/// from the repo's `lab/` folder, written into `dir`.
pub fn shipped_config_for(base: &str, dir: &Path) -> PathBuf {
    let lab_dir = repo().join("lab");
    let text = SHIPPED
        .replace("\n[lab]\n", "\n")
        .replace("listen = \"127.0.0.1:8765\"\n", "")
        .replace("http://127.0.0.1:8765", base)
        .replace("file = \"lab/", &format!("file = \"{}/", lab_dir.display()));
    assert!(
        !text.lines().any(|l| l.trim() == "[lab]"),
        "the [lab] table should have been removed"
    );
    let path = dir.join("probes.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs the keycanary binary off the async runtime (the lab keeps serving meanwhile).
pub async fn keycanary(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_keycanary"))
            .args(&args)
            .envs(envs)
            .env_remove("RUST_LOG")
            .output()
            .expect("run keycanary");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

pub async fn start_lab() -> Lab {
    lab::start(LabOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        clock: clock::system(),
    })
    .await
    .unwrap()
}

/// The seed incident's first move: io's CDN keeps JWKS responses for 10 minutes.
pub fn cache_io_for_ten_minutes(lab: &Lab) {
    lab.set_cache(
        "io",
        CachePolicyUpdate {
            override_ttl_secs: Some(Some(600)),
            ..Default::default()
        },
    )
    .unwrap();
}

/// `(code, domain, path)` of every finding.
fn finding_keys(report: &Value) -> Vec<(String, String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (
                s(&f["code"]),
                s(&f["subject"]["tenant"]),
                s(&f["subject"]["domain"]),
                s(&f["subject"]["path"]),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_incident_cached_domain_rotated() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let config = config.to_str().unwrap();

    // Healthy: every tenant, both domains, all grants.
    let healthy = keycanary(&["check", "--config", config, "--format", "json"], &[]).await;
    assert_eq!(
        healthy.code, 0,
        "healthy lab should pass:\n{}\n{}",
        healthy.stdout, healthy.stderr
    );
    let report = healthy.json();
    assert_eq!(
        report["findings"].as_array().unwrap().len(),
        0,
        "{report:#}"
    );
    let views = report["views"].as_array().unwrap();
    assert_eq!(views.len(), 12, "3 tenants x 2 domains x (cdn + origin)");
    assert!(
        views
            .iter()
            .all(|v| v["verdict"] == "ok" && !v["kids"].as_array().unwrap().is_empty()),
        "{report:#}"
    );

    // The seed incident: io's CDN keeps the JWKS for 10 minutes, the key rotates, and the
    // pipeline purges the domain it knows about (app) but not io.
    cache_io_for_ten_minutes(&lab);
    let warm = keycanary(&["check", "--config", config, "--format", "json"], &[]).await;
    assert_eq!(
        warm.code, 0,
        "caching alone is not an incident yet:\n{}",
        warm.stdout
    );
    let old_kid = lab.signer_kid("acme").unwrap();
    let new_kid = lab.rotate("acme").unwrap();
    lab.purge("app").unwrap();

    let after = keycanary(&["check", "--config", config, "--format", "json"], &[]).await;
    assert_eq!(
        after.code, 1,
        "the incident must fail the check:\n{}\n{}",
        after.stdout, after.stderr
    );
    let report = after.json();
    let keys = finding_keys(&report);
    let about = |code: &str| {
        keys.iter()
            .filter(|k| k.0 == code)
            .map(|k| (k.1.as_str(), k.2.as_str(), k.3.as_str()))
            .collect::<Vec<_>>()
    };
    assert_eq!(about("kid_missing"), [("acme", "io", "cdn")], "{report:#}");
    assert_eq!(about("stale_edge"), [("acme", "io", "cdn")], "{report:#}");
    let kid_missing = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "kid_missing")
        .unwrap();
    assert_eq!(kid_missing["subject"]["kid"], new_kid.as_str());
    assert_eq!(kid_missing["severity"], "critical");
    // The matrix shows the stale edge still serving only the old kid, from cache.
    let io_cdn = report["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["tenant"] == "acme" && v["domain"] == "io" && v["path"] == "cdn")
        .unwrap();
    assert_eq!(io_cdn["kids"], serde_json::json!([old_kid]));
    assert_eq!(io_cdn["cache_status"], "HIT");
    assert_eq!(io_cdn["verdict"], "critical");

    // The text report carries the same verdict.
    let text = keycanary(&["check", "--config", config], &[]).await;
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("kid_missing") && text.stdout.contains("stale_edge"),
        "{}",
        text.stdout
    );

    // Purging io ends it.
    lab.purge("io").unwrap();
    let fixed = keycanary(&["check", "--config", config, "--format", "json"], &[]).await;
    assert_eq!(fixed.code, 0, "{}", fixed.stdout);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_probes_toml_starts_its_own_lab() {
    // The shipped file as is, but on a free port so tests can run side by side.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let text = SHIPPED.replace("8765", &port.to_string()).replace(
        "file = \"lab/",
        &format!("file = \"{}/lab/", repo().display()),
    );
    let path = dir.path().join("probes.toml");
    std::fs::write(&path, text).unwrap();
    let run = keycanary(&["check", "--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("no findings"), "{}", run.stdout);
    for tenant in ["tenant acme", "tenant globex", "tenant initech"] {
        assert!(run.stdout.contains(tenant), "{}", run.stdout);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_lists_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probes.toml");
    std::fs::write(
        &path,
        r#"
intervall = "30s"
[[tenant]]
name = "acme"
[[tenant.domain]]
name = "app"
issuer = "https://idp.example/acme"
[tenant.domain.login]
client_id = "keycanary"
client_secret = { env = "KEYCANARY_TEST_UNSET_SECRET" }
[[tenant.domain.jwks]]
name = "cdn"
"#,
    )
    .unwrap();
    let run = keycanary(&["validate", "--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown key `intervall`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("tenant[0].domain[0].login.client_secret: environment variable KEYCANARY_TEST_UNSET_SECRET is not set"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);

    // With the variable set, the same file is valid — and the secret is never printed.
    let run = keycanary(
        &["validate", "--config", path.to_str().unwrap()],
        &[("KEYCANARY_TEST_UNSET_SECRET", "do-not-print-me")],
    )
    .await;
    assert_eq!(run.code, 2, "only the typo remains:\n{}", run.stderr);
    assert!(
        !run.stderr.contains("environment variable"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("do-not-print-me") && !run.stdout.contains("do-not-print-me"));

    let run = keycanary(&["validate", "--config", "/nonexistent/probes.toml"], &[]).await;
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot read config file /nonexistent/probes.toml"),
        "{}",
        run.stderr
    );
}

/// `KEYCANARY_SHARD=i/n` over one file: each instance validates every tenant and keeps
/// its share, the shares add up to the file, and a bad value is refused with exit 2.
#[tokio::test(flavor = "multi_thread")]
async fn keycanary_shard_splits_one_file_between_instances() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probes.toml");
    let tenants: String = (0..12)
        .map(|i| {
            format!(
                "[[tenant]]\nname = \"t{i}\"\n[[tenant.domain]]\nname = \"app\"\n\
                 issuer = \"https://idp.example/t{i}\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n"
            )
        })
        .collect();
    std::fs::write(&path, format!("shard = \"0/1\"\n{tenants}")).unwrap();
    let config = path.to_str().unwrap();
    let mut total = 0;
    for shard in ["0/3", "1/3", "2/3"] {
        let run = keycanary(
            &["validate", "--config", config],
            &[("KEYCANARY_SHARD", shard)],
        )
        .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let want = format!("shard {shard} watches ");
        let rest = run
            .stdout
            .split(&want)
            .nth(1)
            .unwrap_or_else(|| panic!("{}", run.stdout));
        let n: usize = rest.split(' ').next().unwrap().parse().unwrap();
        assert!(
            rest.starts_with(&format!("{n} of the file's 12 tenant(s)")),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains(&format!("ok ({n} tenant(s), {} view(s)", 2 * n))
        );
        total += n;
    }
    assert_eq!(total, 12);
    // Without the variable, the file's own shard (everything, here).
    let run = keycanary(&["validate", "--config", config], &[]).await;
    assert!(
        run.stdout.contains("shard 0/1 watches 12 of the file's 12"),
        "{}",
        run.stdout
    );
    let run = keycanary(
        &["validate", "--config", config],
        &[("KEYCANARY_SHARD", "3/3")],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("KEYCANARY_SHARD: `3/3` is not `i/n`"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_issuer_and_html_jwks_are_findings_not_crashes() {
    let lab = start_lab().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "lab-secret").unwrap();
    let base = lab.base_url();
    let text = format!(
        r#"
timeout = "2s"
[[tenant]]
name = "dead"
[[tenant.domain]]
name = "app"
issuer = "http://{dead}/app/dead"
[tenant.domain.login]
client_id = "keycanary"
client_secret = {{ file = "secret" }}
[[tenant.domain.jwks]]
name = "cdn"

[[tenant]]
name = "acme"
[[tenant.domain]]
name = "io"
issuer = "{base}/io/acme"
[tenant.domain.login]
client_id = "keycanary"
client_secret = {{ file = "secret" }}
[[tenant.domain.jwks]]
name = "cdn"
[tenant.domain.origin]
url = "{base}/origin/io/acme/jwks"
"#
    );
    drop(std::net::TcpListener::bind(dead)); // nothing listens there
    let path = dir.path().join("probes.toml");
    std::fs::write(&path, text).unwrap();
    // The origin serves an HTML error page with 200 once; the CDN stores it.
    lab.set_cache(
        "io",
        CachePolicyUpdate {
            cache_errors: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    lab.fail_origin(OriginFailure {
        tenant: "acme".into(),
        domain: Some("io".into()),
        status: 200,
        count: 2,
    })
    .unwrap();
    let run = keycanary(
        &[
            "check",
            "--config",
            path.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!run.stdout.contains("lab-secret") && !run.stderr.contains("lab-secret"));
    let report = run.json();
    let keys = finding_keys(&report);
    for (code, tenant, domain) in [
        ("discovery_failed", "dead", "app"),
        ("jwks_fetch_failed", "dead", "app"),
        ("login_failed", "dead", "app"),
        ("jwks_fetch_failed", "acme", "io"),
    ] {
        assert!(
            keys.iter()
                .any(|k| k.0 == code && k.1 == tenant && k.2 == domain),
            "no {code} for {tenant}/{domain}:\n{report:#}"
        );
    }
    let html = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "jwks_fetch_failed" && f["subject"]["tenant"] == "acme")
        .unwrap();
    assert!(
        html["message"].as_str().unwrap().contains("HTML"),
        "{html:#}"
    );
    lab.shutdown().await;
}
