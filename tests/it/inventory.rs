//! Tenants from an inventory, end to end: the daemon on the lab with an inventory file and
//! an HTTP inventory (an axum server here, with a bearer), its API served beside it, and a
//! webhook receiver. An entry added to the file is probed within a refresh; one removed
//! leaves, and its open incident resolves with the reason in the webhook body; an HTTP
//! inventory that starts failing (a 503, a redirect) keeps its tenants, says so in
//! `/readyz` and `/metrics`, and the bearer never follows the redirect. `keycanary
//! validate` and `check --tenant` on the same files, through the binary.
//!
//! Every wait is bounded and says what it waited for; nothing is timed.

use crate::check::{repo, start_lab};
use crate::daemon::{BOUND, Daemon, webhook_channel};
use crate::peers::{free_port, wait_until};
use crate::receivers::Hook;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keycanary::api::{self, ApiState};
use keycanary::clock;
use keycanary::lab::Lab;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::process::Command;

const TOKEN: &str = "inventory-bearer-marker";

/// The config: no hand-written tenant, one template for the lab (its io domain only for
/// entries that give `io_port`), a per-tenant secret file, the inventory file and `url`
/// refreshed every second, every notification to `hook`.
fn write_config(dir: &Path, inventory_url: &str, hook: &str) -> PathBuf {
    let lab_dir = repo().join("lab");
    let text = format!(
        r#"interval = "1s"
timeout = "1s"
location = "it"
client_profiles = ["eager"]

[[profile]]
name = "eager"
ttl = "1s"
refetch_on_unknown_kid = true
cooldown = "0s"

[inventory]
file = "inventory.json"
url = "{inventory_url}"
bearer = {{ file = "inventory-token" }}
refresh = "1s"

[[tenant_template]]
name = "lab"
max_token_lifetime = "5m"

[[tenant_template.domain]]
name = "app"
issuer = "http://127.0.0.1:{{vars.port}}/app/{{tenant}}"
[tenant_template.domain.login]
grant = "{{vars.grant}}"
client_id = "keycanary"
client_secret = {{ file = "secrets/{{tenant}}/client" }}
username = "probe"
password = {{ file = "{lab}/password" }}
[[tenant_template.domain.jwks]]
name = "cdn"

[[tenant_template.domain]]
name = "io"
issuer = "http://127.0.0.1:{{vars.io_port}}/io/{{tenant}}"
[tenant_template.domain.login]
grant = "{{vars.grant}}"
client_id = "keycanary"
client_secret = {{ file = "secrets/{{tenant}}/client" }}
username = "probe"
password = {{ file = "{lab}/password" }}
[[tenant_template.domain.jwks]]
name = "cdn"

[alerting]
{hook}
[[alerting.route]]
channels = ["hook"]
"#,
        lab = lab_dir.display(),
        hook = webhook_channel("hook", hook),
    );
    let secret = std::fs::read_to_string(lab_dir.join("client-secret")).unwrap();
    for t in ["acme", "globex", "ghost"] {
        let d = dir.join("secrets").join(t);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("client"), &secret).unwrap();
    }
    std::fs::write(dir.join("inventory-token"), TOKEN).unwrap();
    let path = dir.join("probes.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn entry(name: &str, grant: &str, port: u16, io_port: Option<u16>) -> Value {
    let mut vars = json!({"port": port.to_string(), "grant": grant});
    if let Some(p) = io_port {
        vars["io_port"] = json!(p.to_string());
    }
    json!({"name": name, "template": "lab", "vars": vars})
}

/// Writes the inventory file whole (a temporary file renamed over it, as a deploy would).
fn write_inventory(dir: &Path, entries: &[Value]) {
    let tmp = dir.join("inventory.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(entries).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("inventory.json")).unwrap();
}

/// What the HTTP inventory answers, and what it saw.
#[derive(Default)]
struct Served {
    /// `None`: 200 with `body`; `Some(503)`: an error; `Some(302)`: a redirect to `/elsewhere`.
    failing: Option<u16>,
    body: Vec<Value>,
    authorizations: Vec<Option<String>>,
    elsewhere: usize,
}

struct Inventory {
    served: Arc<Mutex<Served>>,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Inventory {
    async fn start(body: Vec<Value>) -> Inventory {
        let served = Arc::new(Mutex::new(Served {
            body,
            ..Served::default()
        }));
        let (sd, elsewhere) = (served.clone(), served.clone());
        let app = axum::Router::new()
            .route(
                "/sd",
                axum::routing::get(move |headers: HeaderMap| {
                    let served = sd.clone();
                    async move {
                        let mut s = served.lock().unwrap();
                        s.authorizations.push(
                            headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                        );
                        let r: Response = match s.failing {
                            None => axum::Json(s.body.clone()).into_response(),
                            Some(302) => {
                                (StatusCode::FOUND, [("location", "/elsewhere")]).into_response()
                            }
                            Some(code) => StatusCode::from_u16(code).unwrap().into_response(),
                        };
                        r
                    }
                }),
            )
            .route(
                "/elsewhere",
                axum::routing::get(move || {
                    let served = elsewhere.clone();
                    async move {
                        served.lock().unwrap().elsewhere += 1;
                        axum::Json(Vec::<Value>::new())
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Inventory { served, port, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/sd", self.port)
    }

    fn set_failing(&self, failing: Option<u16>) {
        self.served.lock().unwrap().failing = failing;
    }

    fn requests(&self) -> usize {
        self.served.lock().unwrap().authorizations.len()
    }
}

impl Drop for Inventory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The API over the daemon's snapshot (it follows every config the daemon applies).
async fn serve_api(d: &Daemon, config: &Path) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = Arc::new(keycanary::config::load(config).unwrap());
    let state = ApiState {
        snapshot: d.snapshot(),
        state_dir: Some(config.settings.state_dir.clone()),
        config,
        clock: clock::system(),
    };
    tokio::spawn(async move {
        api::serve(listener, state, std::future::pending())
            .await
            .unwrap();
    });
    base
}

async fn get_json(url: &str) -> Value {
    let resp = reqwest::Client::new().get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap()
}

/// The tenants `/v1/status` shows views of.
async fn tenants_in_status(api: &str) -> Vec<String> {
    let status = get_json(&format!("{api}/v1/status")).await;
    let mut out: Vec<String> = status["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["tenant"].as_str().unwrap().to_owned())
        .collect();
    out.dedup();
    out
}

fn lab_port(lab: &Lab) -> u16 {
    lab.base_url().rsplit(':').next().unwrap().parse().unwrap()
}

/// Webhook bodies about `tenant` with `status`.
fn hooked(hook: &Hook, tenant: &str, status: &str) -> Vec<Value> {
    hook.bodies()
        .into_iter()
        .filter(|b| b["group"]["tenant"] == tenant && b["status"] == status)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_follow_the_inventory_and_leave_with_a_reason() {
    let lab = start_lab().await;
    let port = lab_port(&lab);
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::start(0).await;
    let inventory = Inventory::start(vec![entry("globex", "password", port, None)]).await;
    let config = write_config(dir.path(), &inventory.url(), &hook.url());
    write_inventory(
        dir.path(),
        &[entry("acme", "client_credentials", port, Some(port))],
    );

    let d = Daemon::start(&config);
    let api = serve_api(&d, &config).await;
    wait_until(
        "acme (file) and globex (url) in /v1/status",
        BOUND,
        || async {
            let t = tenants_in_status(&api).await;
            t.contains(&"acme".to_owned()) && t.contains(&"globex".to_owned())
        },
    )
    .await;
    // acme has both domains; globex gave no io_port, so its io domain is left out.
    let status = get_json(&format!("{api}/v1/status")).await;
    let domains = |tenant: &str| -> Vec<String> {
        let mut d: Vec<String> = status["views"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["tenant"] == tenant)
            .map(|v| v["domain"].as_str().unwrap().to_owned())
            .collect();
        d.dedup();
        d
    };
    assert_eq!(domains("acme"), ["app", "io"]);
    assert_eq!(domains("globex"), ["app"]);
    assert!(
        inventory
            .served
            .lock()
            .unwrap()
            .authorizations
            .iter()
            .all(|a| a.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "the bearer goes to the inventory url"
    );

    // An entry added to the file: probed within a refresh, and (its IdP is down) pages.
    let dead = free_port();
    write_inventory(
        dir.path(),
        &[
            entry("acme", "client_credentials", port, Some(port)),
            entry("ghost", "client_credentials", dead, None),
        ],
    );
    wait_until("ghost's incident pages", BOUND, || async {
        !hooked(&hook, "ghost", "firing").is_empty()
    })
    .await;
    assert!(tenants_in_status(&api).await.contains(&"ghost".to_owned()));

    // Removed from the file: it leaves, and its incident resolves saying why.
    write_inventory(
        dir.path(),
        &[entry("acme", "client_credentials", port, Some(port))],
    );
    wait_until("ghost's resolve", BOUND, || async {
        !hooked(&hook, "ghost", "resolved").is_empty()
    })
    .await;
    let resolved = hooked(&hook, "ghost", "resolved").remove(0);
    assert_eq!(
        resolved["reason"], "tenant removed from the inventory",
        "{resolved:#}"
    );
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .ends_with("· tenant removed from the inventory"),
        "{resolved:#}"
    );
    let firing = hooked(&hook, "ghost", "firing").remove(0);
    assert_eq!(
        resolved["dedup_key"], firing["dedup_key"],
        "the same incident"
    );
    wait_until("ghost gone from /v1/status", BOUND, || async {
        !tenants_in_status(&api).await.contains(&"ghost".to_owned())
    })
    .await;

    let metrics = reqwest::get(format!("{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "keycanary_inventory_entries{state=\"accepted\"} 2",
        "keycanary_inventory_entries{state=\"rejected\"} 0",
        "keycanary_inventory_up{source=\"file\"} 1",
        "keycanary_inventory_up{source=\"url\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    // The HTTP inventory fails: its tenant stays, and readiness and metrics say so.
    for (failing, says) in [(503, "answered 503"), (302, "redirect")] {
        inventory.set_failing(Some(failing));
        let before = inventory.requests();
        wait_until("/readyz names the failing url", BOUND, || async {
            let ready = get_json(&format!("{api}/readyz")).await;
            inventory.requests() > before + 1
                && ready["inventory"]["failing"]["url"]
                    .as_str()
                    .is_some_and(|e| e.contains(says))
        })
        .await;
        let rounds = d.rounds();
        d.wait_rounds(rounds + 2).await;
        let t = tenants_in_status(&api).await;
        assert!(t.contains(&"globex".to_owned()), "{failing}: {t:?}");
        let metrics = reqwest::get(format!("{api}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l == "keycanary_inventory_up{source=\"url\"} 0"),
            "{metrics}"
        );
    }
    assert_eq!(
        inventory.served.lock().unwrap().elsewhere,
        0,
        "with a bearer, the redirect is never followed"
    );
    let ready = get_json(&format!("{api}/readyz")).await;
    assert_eq!(ready["ready"], true, "{ready:#}");
    crate::contracts::contract::assert_served_keeps(
        "`GET /readyz` with an inventory",
        &ready,
        include_str!("../contracts/readyz.contract"),
    );
    let mut shown = format!("{ready}{metrics}");
    for route in ["/v1/status", "/v1/findings", "/"] {
        shown.push_str(
            &reqwest::get(format!("{api}{route}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    d.stop().await;
    for f in std::fs::read_dir(dir.path().join(".state")).unwrap() {
        let path = f.unwrap().path();
        if path.is_file() {
            shown.push_str(&String::from_utf8_lossy(&std::fs::read(path).unwrap()));
        }
    }
    assert!(
        shown.contains("globex") && !shown.contains(TOKEN),
        "the bearer is in no answer and no file of the state directory"
    );

    // A restart with the url still failing starts from the list the last run saved.
    let d = Daemon::start(&config);
    d.wait_rounds(1).await;
    let config_now = d.snapshot().read().unwrap().config.clone().unwrap();
    assert!(
        config_now.tenant("globex").is_some(),
        "globex from the saved list"
    );
    d.stop().await;
    lab.shutdown().await;
}

async fn keycanary(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keycanary"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_expands_and_check_runs_one_tenant() {
    let lab = start_lab().await;
    let port = lab_port(&lab);
    let dir = tempfile::tempdir().unwrap();
    let inventory = Inventory::start(vec![entry("globex", "password", port, None)]).await;
    let config = write_config(dir.path(), &inventory.url(), "http://127.0.0.1:9/hook");
    let path = config.to_str().unwrap();
    write_inventory(
        dir.path(),
        &[
            entry("acme", "client_credentials", port, Some(port)),
            json!({"name": "bad", "template": "lab", "vars": {"port": "x/y"}}),
            json!({"name": "nosecret", "template": "lab", "vars": {"port": "1", "grant": "client_credentials"}}),
        ],
    );
    let (code, out) = keycanary(&["validate", "--config", path]).await;
    assert_eq!(code, 1, "entries rejected: {out}");
    assert!(out.contains("inventory file: 3 entries"), "{out}");
    assert!(out.contains("inventory url: 1 entries"), "{out}");
    assert!(
        out.contains("rejected: entry `bad`: vars.port is not a valid value"),
        "{out}"
    );
    assert!(
        out.contains("rejected: entry `nosecret`: tenant_template[0].domain[0].login.client_secret: cannot read secret file"),
        "{out}"
    );
    // acme: app + io (2 views each: cdn, origin); globex: app only.
    assert!(
        out.contains("ok with rejected entries (2 tenant(s), 2 from the inventory, 6 view(s); 2 entries accepted, 2 rejected)"),
        "{out}"
    );

    let (code, out) = keycanary(&[
        "check", "--config", path, "--tenant", "acme", "--format", "json",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let tenants: Vec<&str> = report["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["tenant"].as_str().unwrap())
        .collect();
    assert!(
        !tenants.is_empty() && tenants.iter().all(|t| *t == "acme"),
        "{tenants:?}"
    );
    let (code, _) = keycanary(&["check", "--config", path, "--tenant", "nosecret"]).await;
    assert_eq!(code, 2, "a rejected entry is no tenant");

    // An unreadable url: validate says so and exits 2.
    inventory.set_failing(Some(503));
    let (code, out) = keycanary(&["validate", "--config", path]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("inventory url: cannot be read"), "{out}");
    lab.shutdown().await;
}
