//! Shared by the integration binaries `it` and `rehearsal` (included with `#[path]`).
//!
//! The receivers keycanary notifies and the monitoring that scrapes it, as real processes
//! (or a real HTTP server) on 127.0.0.1, each killed on drop with its log printed when the
//! test fails: aiosmtpd (`peers/smtp/mailsink.py`), a webhook receiver (axum), Debian's
//! Alertmanager with a webhook receiver behind it, and Debian's Prometheus.
//!
//! Nothing here installs anything: a missing program fails the test with a message to run
//! `scripts/install-peers.sh`.

use axum::body::Bytes;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::peers::{Proc, free_port, wait_until};

/// The longest a receiver may take to start.
const START: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// aiosmtpd writing every message it receives into `dir`/mail (see peers/smtp/mailsink.py).
pub struct MailSink {
    _proc: Proc,
    pub port: u16,
    dir: PathBuf,
}

/// Starts the mail sink on `port` (0: any free port), logging into `dir`.
pub async fn mail_sink(dir: &Path, port: u16) -> MailSink {
    mail_sink_with(dir, port, &[]).await
}

/// The mail sink with more options of mailsink.py (`--tls`, `--cert`, `--key`, `--auth`).
pub async fn mail_sink_with(dir: &Path, port: u16, options: &[String]) -> MailSink {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("peers/smtp/mailsink.py"))
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir.join("mail"))
        .args(options);
    let mut proc = Proc::spawn("mailsink", cmd, dir);
    let port = proc.listening_port().await;
    MailSink {
        _proc: proc,
        port,
        dir: dir.to_owned(),
    }
}

impl MailSink {
    /// The decoded mails received so far (`subject`, `text`, …), in order.
    pub fn mails(&self) -> Vec<Value> {
        mails(&self.dir)
    }

    pub fn subjects(&self) -> Vec<String> {
        subjects(&self.dir)
    }
}

/// The decoded mails a sink logging into `dir` received so far, in order.
pub fn mails(dir: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir.join("mail")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

pub fn subjects(dir: &Path) -> Vec<String> {
    mails(dir)
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// An HTTP receiver on 127.0.0.1 that accepts every `POST /hook` and keeps the bodies.
pub struct Hook {
    bodies: Arc<Mutex<Vec<Value>>>,
    pub port: u16,
    task: JoinHandle<()>,
}

impl Hook {
    /// Listens on `port` (0: any free port).
    pub async fn start(port: u16) -> Hook {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = bodies.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    kept.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Hook { bodies, port, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Debian's Alertmanager, routing everything to a [`Hook`] (group wait and interval 1 s,
/// resolved notifications on).
pub struct Alertmanager {
    _proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The receiver behind it.
    pub hook: Hook,
}

impl Alertmanager {
    pub async fn start(dir: &Path) -> Alertmanager {
        let hook = Hook::start(0).await;
        let port = free_port();
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: hook\n  group_by: [alertname, tenant]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n",
                hook.url()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("prometheus-alertmanager");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        let proc = Proc::spawn("alertmanager", cmd, dir);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_until("alertmanager ready", START, || async {
            http.get(format!("{base}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        Alertmanager {
            _proc: proc,
            base,
            hook,
        }
    }

    /// The alerts it holds (`GET /api/v2/alerts`).
    pub async fn alerts(&self) -> Vec<Value> {
        reqwest::get(format!("{}/api/v2/alerts", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Whether the receiver behind it got a `status` ("firing"/"resolved") message with
    /// an alert named `alertname`.
    pub fn hook_saw(&self, status: &str, alertname: &str) -> bool {
        self.hook_count(status, alertname) > 0
    }

    /// How many `status` messages with an alert named `alertname` the receiver behind it
    /// got: what a person was sent, unlike [`Self::alerts`], where repeats merge.
    pub fn hook_count(&self, status: &str, alertname: &str) -> usize {
        self.hook
            .bodies()
            .iter()
            .filter(|b| {
                b["status"] == status
                    && b["alerts"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|a| a["labels"]["alertname"] == alertname))
            })
            .count()
    }
}

/// A Debian `prometheus` scraping one target every second and evaluating `rules` every
/// second; killed on drop.
pub struct Prometheus {
    pub base: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// `target` is `host:port` of a keycanary API; `rules` the text of a rules file.
    pub async fn start(target: &str, rules: &str) -> Prometheus {
        Prometheus::scraping(&[target], rules).await
    }

    /// Scraping every one of `targets` (`host:port` of keycanary APIs) in one job.
    pub async fn scraping(targets: &[&str], rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules_path = dir.path().join("keycanary.yml");
        std::fs::write(&rules_path, rules).unwrap();
        let config = json!({
            "global": { "scrape_interval": "1s", "evaluation_interval": "1s" },
            "rule_files": [rules_path],
            "scrape_configs": [{
                "job_name": "keycanary",
                "static_configs": [{ "targets": targets }],
            }],
        });
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let proc = Proc::spawn("prometheus", cmd, dir.path());
        let ready = format!("{base}/-/ready");
        let http = reqwest::Client::new();
        wait_until("prometheus /-/ready", START, || async {
            matches!(http.get(&ready).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        Prometheus {
            base,
            _proc: proc,
            _dir: dir,
        }
    }

    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body
    }

    /// Its alerts (`GET /api/v1/alerts`): pending and firing.
    pub async fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts", &[]).await["data"]["alerts"]
            .as_array()
            .unwrap()
            .clone()
    }
}
