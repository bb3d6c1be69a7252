//! The daemon's alerting as operators rely on it: rounds against the lab, notifications
//! through the durable outbox to real receivers started here — aiosmtpd
//! (`peers/smtp/mailsink.py`), a webhook receiver (axum) and Debian's Alertmanager — with
//! a receiver that is down, and the real binary killed with SIGKILL between "queued" and
//! "sent".
//!
//! Every test has its own lab, temp dir (state dir included) and ephemeral ports. Times
//! are counted in daemon rounds; every wait is bounded and says what it waited for.

use crate::check::{cache_io_for_ten_minutes, repo, shipped_config_for, start_lab};
use crate::peers::{Proc, free_port, signal, wait_until};
use crate::receivers::{Alertmanager, Hook, mail_sink, mails, subjects};
use keycanary::api::{self, ApiState};
use keycanary::clock;
use keycanary::config;
use keycanary::daemon::{self, Options};
use keycanary::lab::{CachePolicyUpdate, Lab};
use keycanary::notify::Backoff;
use keycanary::snapshot::{self, SharedSnapshot};
use keycanary::store::{StatusReport, Store};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest any single wait in these tests may take.
pub(crate) const BOUND: Duration = Duration::from_secs(120);
/// `[alerting] failure_threshold` and `success_threshold` of these tests (the defaults).
const THRESHOLD: u64 = 2;

// ---------------------------------------------------------------------------------------
// The lab, the config, the daemon
// ---------------------------------------------------------------------------------------

/// The shipped probes.toml pointed at `lab`, probing every 2 s, with one client profile
/// that refetches at once (clients recover as soon as the edge does), the API on a free
/// port, and `alerting` appended. Written to `dir/probes.toml`; state in `dir/.state`.
pub(crate) fn write_config(lab: &Lab, dir: &Path, alerting: &str) -> PathBuf {
    let path = shipped_config_for(lab.base_url(), dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let replaced = text
        .replace("interval = \"30s\"", "interval = \"2s\"")
        .replace("timeout = \"10s\"", "timeout = \"2s\"")
        .replace(
            "client_profiles = [\"jose\", \"keyfunc\", \"spring\", \"envoy\", \"honours_http\"]",
            "client_profiles = [\"eager\"]",
        );
    assert!(replaced.contains("[\"eager\"]"), "{replaced}");
    let text = format!(
        "{replaced}\n[api]\nlisten = \"127.0.0.1:0\"\n\n[[profile]]\nname = \"eager\"\nttl = \"1s\"\nrefetch_on_unknown_kid = true\ncooldown = \"0s\"\n\n{alerting}\n"
    );
    std::fs::write(&path, &text).unwrap();
    config::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    path
}

fn email_channel(name: &str, port: u16) -> String {
    format!(
        "[[alerting.channel]]\nname = \"{name}\"\ntype = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\nfrom = \"keycanary@example.com\"\nto = [\"sre@example.com\"]\n"
    )
}

pub(crate) fn webhook_channel(name: &str, url: &str) -> String {
    format!("[[alerting.channel]]\nname = \"{name}\"\ntype = \"webhook\"\nurl = \"{url}\"\n")
}

/// `[alerting]` with `channels` and one route sending acme's notifications to all of them.
pub(crate) fn alerting(channels: &[String]) -> String {
    let names: Vec<String> = channels
        .iter()
        .map(|c| {
            let name = c.lines().nth(1).unwrap().trim_start_matches("name = ");
            name.to_owned()
        })
        .collect();
    format!(
        "[alerting]\nstatus_page_url = \"http://127.0.0.1:9464/\"\n{}\n[[alerting.route]]\nchannels = [{}]\ntenants = [\"acme\"]\n",
        channels.join("\n"),
        names.join(", ")
    )
}

/// What a warm round does to the io CDN: it now holds acme's current key set.
async fn warm_io(lab: &Lab) {
    let url = format!("{}/io/acme/jwks", lab.base_url());
    let resp = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
}

/// The unsafe rotation, and a pipeline that purges only the app domain.
fn rotate_acme_and_purge_app(lab: &Lab) {
    lab.rotate("acme").unwrap();
    lab.purge("app").unwrap();
}

/// The seed incident staged before the daemon starts: io cached 10 minutes, warmed,
/// rotated, app purged; acme/io/cdn serves the old key set.
pub(crate) async fn stage_incident(lab: &Lab) {
    cache_io_for_ten_minutes(lab);
    warm_io(lab).await;
    rotate_acme_and_purge_app(lab);
}

/// The same incident, held still for the length of a test: both domains declare a 10
/// minute lifetime (`max-age=600`, the same on both, so no drift), so the stale copy
/// never outlives what its headers say and the incident gains no finding as it ages
/// (with only the CDN's override, `cache_ttl_exceeded` joins after 60 s and re-pages).
pub(crate) async fn stage_steady_incident(lab: &Lab) {
    for domain in ["app", "io"] {
        lab.set_cache(
            domain,
            CachePolicyUpdate {
                origin_cache_control: Some(Some("public, max-age=600".into())),
                ..Default::default()
            },
        )
        .unwrap();
    }
    warm_io(lab).await;
    rotate_acme_and_purge_app(lab);
}

/// The fix: io's CDN honours the origin again, and is purged (left overriding, the new
/// copy would outlive its 60 s max-age and open `cache_ttl_exceeded`).
pub(crate) fn fix_io(lab: &Lab) {
    lab.set_cache(
        "io",
        CachePolicyUpdate {
            override_ttl_secs: Some(None),
            ..Default::default()
        },
    )
    .unwrap();
    lab.purge("io").unwrap();
}

fn fast_retries() -> Options {
    Options {
        backoff: Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_secs(1),
        },
        ..Options::default()
    }
}

/// The daemon loop in-process, with fast retries.
pub(crate) struct Daemon {
    snapshot: SharedSnapshot,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Daemon {
    pub(crate) fn start(config: &Path) -> Daemon {
        Daemon::start_with(config, fast_retries())
    }

    pub(crate) fn start_with(config: &Path, options: Options) -> Daemon {
        let config = config::load(config).unwrap();
        let snapshot = snapshot::new_snapshot();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon::run_with_options(
            config,
            clock::system(),
            snapshot.clone(),
            async {
                let _ = stopped.await;
            },
            options,
        ));
        Daemon {
            snapshot,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn rounds(&self) -> u64 {
        self.snapshot.read().unwrap().rounds
    }

    /// What the daemon publishes (the API reads it).
    pub(crate) fn snapshot(&self) -> SharedSnapshot {
        self.snapshot.clone()
    }

    /// The notifier's count of `result` on `channel` (`keycanary_notifications_total`).
    pub(crate) fn sends(&self, channel: &str, result: &'static str) -> u64 {
        let counts = self.snapshot.read().unwrap().deliveries.counts();
        counts
            .get(&(channel.to_owned(), result))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) async fn wait_rounds(&self, n: u64) {
        wait_until(&format!("{n} daemon rounds"), BOUND, || async {
            self.rounds() >= n
        })
        .await;
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// What `keycanary status` would say about `dir/.state` (read-only, while running).
pub(crate) fn status(dir: &Path) -> Option<StatusReport> {
    Store::open_read_only(&dir.join(".state"))
        .and_then(|s| s.status())
        .ok()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// The seed incident through the daemon: exactly one email when it fires (within the
/// thresholds, counted in rounds) and exactly one when it resolves after io is purged.
#[tokio::test(flavor = "multi_thread")]
async fn seed_incident_pages_one_email_then_one_resolved_email() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = mail_sink(dir.path(), 0).await;
    let config = write_config(
        &lab,
        dir.path(),
        &alerting(&[email_channel("sre-mail", sink.port)]),
    );
    cache_io_for_ten_minutes(&lab);
    let d = Daemon::start(&config);

    // Warm rounds: io's CDN now holds acme's key set. Healthy: nothing is sent.
    d.wait_rounds(2).await;
    assert!(mails(dir.path()).is_empty(), "{:?}", subjects(dir.path()));

    rotate_acme_and_purge_app(&lab);
    let rotated = d.rounds();
    wait_until("the firing email", BOUND, || async {
        !mails(dir.path()).is_empty()
    })
    .await;
    let fired = d.rounds();
    // Round `rotated + 1` may have been in flight during the rotation; the next
    // THRESHOLD rounds see the incident; one more for the delivery to land.
    assert!(
        fired <= rotated + 1 + THRESHOLD + 1,
        "fired after round {fired}, rotated after round {rotated}"
    );
    d.wait_rounds(fired + 3).await;
    let all = mails(dir.path());
    assert_eq!(all.len(), 1, "one email while it stays broken: {all:#?}");
    let subject = all[0]["subject"].as_str().unwrap();
    let text = all[0]["text"].as_str().unwrap();
    assert!(
        subject.starts_with("[FIRING] critical · acme ·"),
        "{subject}"
    );
    assert!(
        subject.contains("kid_missing") && subject.contains("stale_edge"),
        "{subject}"
    );
    assert!(text.contains("tenant=acme domain=io path=cdn"), "{text}");
    assert!(
        text.contains("Status page: http://127.0.0.1:9464/"),
        "{text}"
    );
    assert_eq!(all[0]["to"], serde_json::json!(["sre@example.com"]));

    // Fixing io ends it: one resolved email. Not at once: besides the stale edge, the new
    // key signed before it had been visible on io/cdn for that view's staleness budget
    // (`key_activated_early`, io's max-age of 60 s + the eager client's 1 s), so the
    // incident lasts until that budget has passed, then `THRESHOLD` clean rounds.
    fix_io(&lab);
    wait_until("the resolved email", BOUND, || async {
        mails(dir.path()).len() >= 2
    })
    .await;
    let resolved = d.rounds();
    // 60 s of max-age, plus the client's TTL and the rounds around the first signing:
    // at most 80 s of 2 s rounds.
    let budget_rounds = 80 / 2;
    assert!(
        resolved <= rotated + 1 + budget_rounds + THRESHOLD + 1,
        "resolved after round {resolved}, rotated after round {rotated}"
    );
    d.wait_rounds(resolved + 3).await;
    let subjects = subjects(dir.path());
    assert_eq!(subjects.len(), 2, "{subjects:#?}");
    assert!(subjects[1].starts_with("[RESOLVED]"), "{subjects:#?}");
    let s = status(dir.path()).expect("state dir");
    assert_eq!((s.pending, s.dead.len()), (0, 0));
    assert!(s.alert_state.incidents.is_empty(), "{:?}", s.alert_state);
    d.stop().await;
    lab.shutdown().await;
}

/// SMTP is down when the incident fires: the email waits in the outbox (retried, never
/// dropped, never duplicated) and goes out once the server is back.
#[tokio::test(flavor = "multi_thread")]
async fn smtp_down_during_the_incident_delivers_when_it_is_back() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = free_port(); // nothing listens there yet
    let config = write_config(
        &lab,
        dir.path(),
        &alerting(&[email_channel("sre-mail", smtp_port)]),
    );
    stage_steady_incident(&lab).await;
    let d = Daemon::start(&config);

    wait_until("a failed send in the outbox", BOUND, || async {
        status(dir.path()).is_some_and(|s| s.retrying >= 1)
    })
    .await;
    let failing = d.rounds();
    d.wait_rounds(failing + 2).await;
    let s = status(dir.path()).unwrap();
    assert_eq!(s.pending, 1, "one email queued, retried in place: {s:?}");
    assert!(s.dead.is_empty(), "{s:?}");
    assert!(mails(dir.path()).is_empty());
    // The metrics see it: the outbox depth (after the latest commit) and the retries.
    assert!(d.sends("sre-mail", "retried") >= 1);
    assert_eq!(d.sends("sre-mail", "sent"), 0);
    let health = d.snapshot.read().unwrap().store.clone();
    assert_eq!(
        (health.outbox_depth, health.dead_letters),
        (Some(1), Some(0)),
        "{health:?}"
    );
    assert!(health.last_commit.is_some() && health.commit_error.is_none());

    let _sink = mail_sink(dir.path(), smtp_port).await;
    wait_until("the queued email", BOUND, || async {
        !mails(dir.path()).is_empty()
    })
    .await;
    let delivered = d.rounds();
    d.wait_rounds(delivered + 2).await;
    let subjects = subjects(dir.path());
    assert_eq!(subjects.len(), 1, "{subjects:#?}");
    assert!(subjects[0].starts_with("[FIRING]"), "{subjects:#?}");
    let s = status(dir.path()).unwrap();
    assert_eq!((s.pending, s.dead.len()), (0, 0), "{s:?}");
    assert_eq!(d.sends("sre-mail", "sent"), 1);
    assert_eq!(d.sends("sre-mail", "dead"), 0);
    let health = d.snapshot.read().unwrap().store.clone();
    assert_eq!(
        (health.outbox_depth, health.dead_letters),
        (Some(0), Some(0)),
        "{health:?}"
    );
    d.stop().await;
    lab.shutdown().await;
}

/// `keycanary run` (the binary) against the lab, its stderr in `dir/keycanary-N.log`.
pub(crate) fn spawn_keycanary(config: &Path, dir: &Path, n: usize) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keycanary"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info");
    Proc::spawn(&format!("keycanary-{n}"), cmd, dir)
}

pub(crate) fn committed_rounds(dir: &Path) -> u64 {
    status(dir)
        .and_then(|s| s.last_round)
        .map_or(0, |r| r.number)
}

pub(crate) async fn wait_committed_rounds(dir: &Path, n: u64) {
    wait_until(&format!("{n} committed rounds"), BOUND, || async {
        committed_rounds(dir) >= n
    })
    .await;
}

/// The real binary is SIGKILLed after it queued the email and the webhook (receivers not
/// up yet, so neither is sent); both receivers come up; the restarted daemon delivers
/// each exactly once. Killed and restarted again, it re-sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_between_queued_and_sent_delivers_once_after_restart() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = free_port();
    let hook_port = free_port();
    let config = write_config(
        &lab,
        dir.path(),
        &alerting(&[
            email_channel("sre-mail", smtp_port),
            webhook_channel("hook", &format!("http://127.0.0.1:{hook_port}/hook")),
        ]),
    );
    stage_steady_incident(&lab).await;

    let mut first = spawn_keycanary(&config, dir.path(), 1);
    wait_until("both notifications queued and failing", BOUND, || async {
        status(dir.path()).is_some_and(|s| s.pending == 2 && s.retrying == 2)
    })
    .await;
    first.kill().await;

    let _sink = mail_sink(dir.path(), smtp_port).await;
    let hook = Hook::start(hook_port).await;
    let mut second = spawn_keycanary(&config, dir.path(), 2);
    wait_until(
        "the email and the webhook after the restart",
        BOUND,
        || async { !mails(dir.path()).is_empty() && !hook.bodies().is_empty() },
    )
    .await;
    wait_until("an empty outbox", BOUND, || async {
        status(dir.path()).is_some_and(|s| s.pending == 0)
    })
    .await;
    let after = committed_rounds(dir.path());
    wait_committed_rounds(dir.path(), after + 3).await;
    assert_eq!(mails(dir.path()).len(), 1, "{:?}", subjects(dir.path()));
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0]["status"], "firing");
    assert_eq!(bodies[0]["group"]["tenant"], "acme");
    assert!(
        bodies[0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "kid_missing" && f["subject"]["domain"] == "io"),
        "{:#}",
        bodies[0]
    );

    // Delivered is delivered: another SIGKILL and restart sends nothing again.
    second.kill().await;
    let _third = spawn_keycanary(&config, dir.path(), 3);
    let before = committed_rounds(dir.path());
    wait_committed_rounds(dir.path(), before + 3).await;
    assert_eq!(mails(dir.path()).len(), 1, "{:?}", subjects(dir.path()));
    assert_eq!(hook.bodies().len(), 1, "{:#?}", hook.bodies());
    let s = status(dir.path()).unwrap();
    assert_eq!((s.pending, s.dead.len()), (0, 0), "{s:?}");
    assert_eq!(s.alert_state.incidents.len(), 1, "still firing, paged once");
    lab.shutdown().await;
}

/// Alertmanager (Debian's) receives the alert over its v2 API, and the webhook receiver
/// behind it gets it; then the resolve.
#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_receives_the_alert_and_its_receiver_gets_it() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::start(dir.path()).await;

    let config = write_config(
        &lab,
        dir.path(),
        &alerting(&[format!(
            "[[alerting.channel]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"{}/\"\n",
            am.base
        )]),
    );
    stage_incident(&lab).await;
    let d = Daemon::start(&config);

    // Alertmanager holds the alert, with keycanary's labels.
    wait_until("kid_missing in Alertmanager", BOUND, || async {
        am.alerts()
            .await
            .iter()
            .any(|a| a["labels"]["alertname"] == "kid_missing")
    })
    .await;
    let held = am.alerts().await;
    let kid_missing = held
        .iter()
        .find(|a| a["labels"]["alertname"] == "kid_missing")
        .unwrap();
    assert_eq!(kid_missing["labels"]["tenant"], "acme", "{kid_missing:#}");
    assert_eq!(kid_missing["labels"]["domain"], "io", "{kid_missing:#}");
    assert_eq!(kid_missing["labels"]["view"], "cdn", "{kid_missing:#}");
    assert_eq!(kid_missing["labels"]["severity"], "critical");
    assert_eq!(kid_missing["status"]["state"], "active");

    // Its webhook receiver gets it.
    wait_until("kid_missing firing at the receiver", BOUND, || async {
        am.hook_saw("firing", "kid_missing")
    })
    .await;

    // The resolve reaches Alertmanager, which tells the receiver.
    fix_io(&lab);
    wait_until("kid_missing resolved at the receiver", BOUND, || async {
        am.hook_saw("resolved", "kid_missing")
    })
    .await;
    d.stop().await;
    lab.shutdown().await;
}

/// A silence made through the HTTP API (`POST /v1/silences`) mutes the seed incident: the
/// daemon reads it from the state directory, tracks the incident, sends nothing; deleting
/// the silence pages at once.
#[tokio::test(flavor = "multi_thread")]
async fn api_silence_mutes_the_seed_incident() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::start(0).await;
    let config = write_config(
        &lab,
        dir.path(),
        &alerting(&[webhook_channel("hook", &hook.url())]),
    );
    let cfg = config::load(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = ApiState {
        snapshot: snapshot::new_snapshot(),
        config: Arc::new(cfg.clone()),
        clock: clock::system(),
        state_dir: Some(cfg.settings.state_dir.clone()),
    };
    let (stop_api, api_stopped) = oneshot::channel::<()>();
    let api_task = tokio::spawn(api::serve(listener, state, async {
        let _ = api_stopped.await;
    }));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .post(format!("{base}/v1/silences"))
        .json(&serde_json::json!({
            "tenant": "acme",
            "ends": "1h",
            "created_by": "it",
            "comment": "the seed incident, planned",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    stage_incident(&lab).await;
    let d = Daemon::start(&config);
    let kid_missing = || {
        d.snapshot
            .read()
            .unwrap()
            .findings()
            .into_iter()
            .any(|f| f.subject.tenant == "acme" && f.code.as_str() == "kid_missing")
    };
    wait_until("kid_missing for acme", BOUND, || async { kid_missing() }).await;
    let seen = d.rounds();
    // Past the firing threshold, with time to deliver: nothing queued, nothing sent.
    d.wait_rounds(seen + THRESHOLD + 2).await;
    assert!(kid_missing(), "the incident is still there");
    assert!(hook.bodies().is_empty(), "{:#?}", hook.bodies());
    let s = status(dir.path()).expect("state dir");
    assert_eq!((s.pending, s.dead.len()), (0, 0));

    let deleted = http
        .delete(format!("{base}/v1/silences/{id}"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    wait_until("the page once the silence is gone", BOUND, || async {
        !hook.bodies().is_empty()
    })
    .await;
    d.stop().await;
    let _ = stop_api.send(());
    api_task.await.unwrap().unwrap();
    lab.shutdown().await;
}

/// A TCP server that accepts connections and never answers: an IdP that hangs.
pub(crate) async fn blackhole() -> (u16, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

/// A tenant whose IdP hangs: every request runs into the 2 s timeout, and a round needs
/// two in a row (discovery, then login and views), so it takes at least 4 s.
pub(crate) fn hanging_tenant(port: u16) -> String {
    let secret = repo().join("lab/client-secret");
    format!(
        r#"
[[tenant]]
name = "hung"
[[tenant.domain]]
name = "app"
issuer = "http://127.0.0.1:{port}/hung"
[tenant.domain.login]
client_id = "keycanary"
client_secret = {{ file = "{}" }}
token_url = "http://127.0.0.1:{port}/hung/token"
[[tenant.domain.jwks]]
name = "cdn"
url = "http://127.0.0.1:{port}/hung/jwks"
[tenant.domain.origin]
url = "http://127.0.0.1:{port}/origin/hung/jwks"
"#,
        secret.display()
    )
}

/// Each tenant has its own schedule: while a hanging IdP takes 4 s and more per round,
/// the lab's tenants keep their 2 s interval.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_idp_does_not_delay_the_other_tenants() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, hole) = blackhole().await;
    let config = write_config(&lab, dir.path(), &hanging_tenant(port));
    let d = Daemon::start(&config);
    let seen: Mutex<std::collections::BTreeMap<String, std::collections::BTreeSet<i64>>> =
        Mutex::default();
    let count = |tenant: &str| seen.lock().unwrap().get(tenant).map_or(0, |s| s.len());
    wait_until("8 rounds of acme", BOUND, || async {
        for o in d.snapshot.read().unwrap().observations() {
            seen.lock()
                .unwrap()
                .entry(o.tenant.clone())
                .or_default()
                .insert(o.started_at.0);
        }
        count("acme") >= 8
    })
    .await;
    let (acme, globex, hung) = (count("acme"), count("globex"), count("hung"));
    assert!(globex >= 7, "globex kept its pace too: {globex} rounds");
    assert!(
        hung <= 5,
        "the hanging tenant cannot have done more than ~half as many rounds: {hung} vs {acme}"
    );
    // It is reported, not waited for.
    let findings: Vec<_> = d
        .snapshot
        .read()
        .unwrap()
        .findings()
        .into_iter()
        .cloned()
        .collect();
    assert!(
        findings
            .iter()
            .any(|f| f.subject.tenant == "hung" && f.code.as_str() == "discovery_failed"),
        "{findings:#?}"
    );
    d.stop().await;
    hole.abort();
    lab.shutdown().await;
}

/// SIGHUP with a broken file is refused (every problem logged) and the daemon keeps
/// probing with the old config; with a good file the new tenants apply; SIGTERM stops it
/// cleanly (exit 0). `keycanary status` reads the state dir meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_or_refuses_and_sigterm_stops_cleanly() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let config = write_config(&lab, dir.path(), "");
    let good = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{api_port}\""),
    );
    std::fs::write(&config, &good).unwrap();
    let mut daemon = spawn_keycanary(&config, dir.path(), 1);
    wait_committed_rounds(dir.path(), 1).await;
    let log_path = daemon.log().to_owned();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // `keycanary status` while it runs.
    let status_run = crate::check::keycanary(
        &[
            "status",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(
        status_run.code, 0,
        "{}\n{}",
        status_run.stdout, status_run.stderr
    );
    let report = status_run.json();
    assert!(
        report["last_round"]["number"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
    assert_eq!(report["outbox"]["pending"], 0);

    // A broken file: refused, with each problem, and the daemon goes on.
    std::fs::write(
        &config,
        good.replace(
            "interval = \"2s\"",
            "interval = \"soon\"\nintervall = \"2s\"",
        ),
    )
    .unwrap();
    signal(&daemon.child, "HUP");
    wait_until("the refused reload in the log", BOUND, || async {
        log().contains("config reload refused")
    })
    .await;
    let refused = log();
    assert!(
        refused.contains("`soon` is not a duration") && refused.contains("unknown key `intervall`"),
        "{refused}"
    );
    let rounds = committed_rounds(dir.path());
    wait_committed_rounds(dir.path(), rounds + 2).await;

    // A good file without initech: reloaded, and only acme and globex are probed.
    let start = good.find("# --- initech").unwrap();
    let end = good.find("\n[api]\n").unwrap();
    std::fs::write(&config, format!("{}{}", &good[..start], &good[end..])).unwrap();
    signal(&daemon.child, "HUP");
    wait_until("the reload in the log", BOUND, || async {
        log().contains("config reloaded")
    })
    .await;
    let http = reqwest::Client::new();
    wait_until("8 views (2 tenants) in /v1/status", BOUND, || async {
        let Ok(resp) = http
            .get(format!("http://127.0.0.1:{api_port}/v1/status"))
            .send()
            .await
        else {
            return false;
        };
        let v: Value = resp.json().await.unwrap_or_default();
        v["views"].as_array().is_some_and(|views| {
            views.len() == 8 && views.iter().all(|row| row["tenant"] != "initech")
        })
    })
    .await;

    // SIGTERM: a clean stop.
    signal(&daemon.child, "TERM");
    let exit = tokio::time::timeout(BOUND, daemon.child.wait())
        .await
        .expect("stopped within the bound")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{}", log());
    assert!(log().contains("stopped"), "{}", log());
    assert!(
        status(dir.path()).is_some_and(|s| s.pending == 0),
        "state readable after the stop"
    );
    lab.shutdown().await;
}
