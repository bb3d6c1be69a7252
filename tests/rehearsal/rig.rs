//! One rehearsal stage with keycanary watching it, and what the scenarios ask of it.

use std::path::PathBuf;
use std::time::Duration;

use keycanary::store::{StatusReport, Store};
use reqwest::Client;
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::Command;

use crate::peers::{
    Caching, MockOAuth2, Proc, Stage, StageOpts, free_port, generate_key, start_mock_oauth2,
    start_stage, wait_until,
};
use crate::receivers::{Alertmanager, Hook, MailSink, Prometheus, mail_sink};

/// The longest any single wait may take.
pub const BOUND: Duration = Duration::from_secs(150);
/// `[alerting] failure_threshold` of the stage: the default.
pub const FAILURE_THRESHOLD: u64 = 2;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct RigOpts {
    pub app: Caching,
    pub io: Caching,
    /// Key algorithm of the generated keys `key-1`, `key-2`, …
    pub alg: &'static str,
    /// How many keys to generate; the stage starts with the first only.
    pub keys: usize,
    /// Access token lifetime, also the tenant's `max_token_lifetime`.
    pub token_ttl: Duration,
    pub interval: Duration,
    pub client_ttl: Duration,
    pub client_cooldown: Duration,
    /// Start Prometheus with the shipped rules, scraping keycanary.
    pub prometheus: bool,
    /// Tenant `example` logs in through the sign-in pages ([`SIGN_IN`]) instead of with
    /// client_credentials.
    pub signin: bool,
}

/// Tenant `example`'s login in the template (after its `client_id`), and the same login
/// through oidc-provider's sign-in pages, as README's "Sign in the way people do" shows.
const CLIENT_CREDENTIALS: &str =
    "client_secret = { file = \"client-secret\" }\nresource = \"https://api.example.test/\"\n";
pub const SIGN_IN: &str = "grant = \"authorization_code\"\nclient_secret = { file = \"client-secret\" }\nusername = \"probe\"\npassword = { file = \"password\" }\nredirect_uri = \"http://127.0.0.1:9/callback\"\nscope = \"openid api\"\nresource = \"https://api.example.test/\"\n";

impl Default for RigOpts {
    fn default() -> Self {
        RigOpts {
            app: Caching::OFF,
            io: Caching::for_(Duration::from_secs(600)),
            alg: "RS256",
            keys: 2,
            token_ttl: Duration::from_secs(600),
            interval: Duration::from_secs(2),
            client_ttl: Duration::from_secs(4),
            client_cooldown: Duration::from_secs(2),
            prometheus: false,
            signin: false,
        }
    }
}

/// Replaces every `{{NAME}}` of `template`; panics on one left over.
pub fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    assert!(!text.contains("{{"), "unrendered placeholder in\n{text}");
    text
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

pub struct Rig {
    pub stage: Stage,
    _mock: MockOAuth2,
    pub mail: MailSink,
    pub am: Alertmanager,
    pub tickets: Hook,
    pub prom: Option<Prometheus>,
    /// Every generated key, `key-1` first; the stage starts with `key-1` only.
    pub keys: Vec<Value>,
    pub api: String,
    pub http: Client,
    _keycanary: Proc,
    dir: TempDir,
}

impl Rig {
    pub async fn start(opts: RigOpts) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = Vec::new();
        for n in 1..=opts.keys {
            keys.push(generate_key(opts.alg, &format!("key-{n}")).await);
        }
        let (stage, mock, mail, am, tickets) = tokio::join!(
            start_stage(StageOpts {
                app: opts.app.clone(),
                io: opts.io.clone(),
                keys: vec![keys[0].clone()],
                token_ttl: Some(opts.token_ttl),
            }),
            start_mock_oauth2(),
            mail_sink(dir.path(), 0),
            Alertmanager::start(dir.path()),
            Hook::start(0),
        );
        let api_port = free_port();
        let api = format!("http://127.0.0.1:{api_port}");
        let template =
            std::fs::read_to_string(repo().join("peers/rehearsal/probes.toml.template")).unwrap();
        let config = render(
            &template,
            &[
                ("INTERVAL", secs(opts.interval)),
                ("API_PORT", api_port.to_string()),
                ("CLIENT_TTL", secs(opts.client_ttl)),
                ("CLIENT_COOLDOWN", secs(opts.client_cooldown)),
                ("TOKEN_LIFETIME", secs(opts.token_ttl)),
                ("APP_PORT", stage.cdn.app_port.to_string()),
                ("IO_PORT", stage.cdn.io_port.to_string()),
                ("MOCK_PORT", mock.port.to_string()),
                ("SMTP_PORT", mail.port.to_string()),
                ("ALERTMANAGER_URL", format!("{}/", am.base)),
                ("TICKETS_URL", tickets.url()),
            ],
        );
        let config = if opts.signin {
            assert_eq!(config.matches(CLIENT_CREDENTIALS).count(), 2, "{config}");
            config.replace(CLIENT_CREDENTIALS, SIGN_IN)
        } else {
            config
        };
        let path = dir.path().join("probes.toml");
        std::fs::write(&path, config).unwrap();
        std::fs::write(dir.path().join("client-secret"), &stage.idp.client_secret).unwrap();
        std::fs::write(dir.path().join("password"), "rehearsal-password").unwrap();
        std::fs::write(dir.path().join("refresh-token"), "rehearsal-refresh-token").unwrap();

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keycanary"));
        cmd.args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info");
        let keycanary = Proc::spawn("keycanary", cmd, dir.path());
        let prom = if opts.prometheus {
            let rules = std::fs::read_to_string(repo().join("dashboards/rules/keycanary.yml"))
                .expect("shipped rules");
            Some(Prometheus::start(&format!("127.0.0.1:{api_port}"), &rules).await)
        } else {
            None
        };
        let rig = Rig {
            stage,
            _mock: mock,
            mail,
            am,
            tickets,
            prom,
            keys,
            api,
            http: Client::new(),
            _keycanary: keycanary,
            dir,
        };
        rig.wait_rounds(1).await;
        rig
    }

    /// Rounds finished so far (`/readyz`), 0 before the first.
    pub async fn rounds(&self) -> u64 {
        let Ok(r) = self.http.get(format!("{}/readyz", self.api)).send().await else {
            return 0;
        };
        let v: Value = r.json().await.unwrap_or_default();
        v["rounds"].as_u64().unwrap_or(0)
    }

    /// Waits until `n` rounds have finished.
    pub async fn wait_rounds(&self, n: u64) {
        wait_until(&format!("{n} keycanary rounds"), BOUND, || async {
            self.rounds().await >= n
        })
        .await;
    }

    /// Waits for `n` more rounds than now.
    pub async fn wait_more_rounds(&self, n: u64) -> u64 {
        let target = self.rounds().await + n;
        self.wait_rounds(target).await;
        target
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Open findings of `tenant` (`/v1/findings?tenant=`).
    pub async fn findings(&self, tenant: &str) -> Vec<Finding> {
        let (status, body) = self.get(&format!("/v1/findings?tenant={tenant}")).await;
        assert_eq!(status, 200, "{body}");
        body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(Finding::of)
            .collect()
    }

    /// `/v1/gate/{kind}?tenant=&kid=`: the status and the answer.
    pub async fn gate(&self, kind: &str, tenant: &str, kid: &str) -> (u16, Value) {
        self.get(&format!("/v1/gate/{kind}?tenant={tenant}&kid={kid}"))
            .await
    }

    /// What `keycanary status` says: the committed state (read-only, while running).
    pub fn committed(&self) -> Option<StatusReport> {
        Store::open_read_only(&self.dir.path().join("state"))
            .and_then(|s| s.status())
            .ok()
    }

    /// Replaces the stage's key set (the signer first), without a restart.
    pub async fn set_keys(&mut self, kids: &[&str]) {
        let keys = kids
            .iter()
            .map(|kid| {
                self.keys
                    .iter()
                    .find(|k| k["kid"] == *kid)
                    .unwrap_or_else(|| panic!("no generated key {kid}"))
                    .clone()
            })
            .collect();
        self.stage.idp.set_keys(keys).await;
    }

    /// Notifications the ticket webhook received, as `(status, [codes])`.
    pub fn tickets(&self) -> Vec<(String, Vec<String>)> {
        self.tickets
            .bodies()
            .iter()
            .map(|b| {
                let codes = b["findings"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .filter_map(|f| f["code"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                (b["status"].as_str().unwrap_or("").to_owned(), codes)
            })
            .collect()
    }
}

impl Rig {
    /// How many `status` tickets carried exactly the one finding code `code` (tickets are
    /// grouped per tenant and code, so each code of an incident is its own ticket).
    pub fn tickets_for(&self, status: &str, code: &str) -> usize {
        self.tickets()
            .iter()
            .filter(|(s, codes)| s == status && codes == &[code])
            .count()
    }
}

/// One open finding, flattened for assertions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub code: String,
    pub domain: String,
    pub path: String,
    pub kid: String,
    pub message: String,
}

impl Finding {
    fn of(v: &Value) -> Finding {
        let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
        Finding {
            code: s(&v["code"]),
            domain: s(&v["subject"]["domain"]),
            path: s(&v["subject"]["path"]),
            kid: s(&v["subject"]["kid"]),
            message: s(&v["message"]),
        }
    }
}

/// `(domain, path)` of every finding with `code`, sorted and deduplicated.
pub fn about(findings: &[Finding], code: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = findings
        .iter()
        .filter(|f| f.code == code)
        .map(|f| (f.domain.clone(), f.path.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn codes(findings: &[Finding]) -> Vec<String> {
    let mut out: Vec<String> = findings.iter().map(|f| f.code.clone()).collect();
    out.sort();
    out.dedup();
    out
}

/// Wall-clock time in Unix milliseconds, as the API's timestamps (`ready_at`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Polls `f` every 200 ms until it returns `Some`, panicking after [`BOUND`].
pub async fn until_some<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not after {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
