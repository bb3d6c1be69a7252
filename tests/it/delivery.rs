//! Delivery as operators rely on it beyond plain SMTP on a test relay: email over
//! STARTTLS and implicit TLS with SMTP AUTH against aiosmtpd presenting a certificate from
//! a private CA (`ca_file`), a certificate keycanary must refuse (kept in the outbox, with
//! a clear error), and the order of one incident's notifications on one channel when the
//! receiver was down while both were queued.

use crate::check::start_lab;
use crate::daemon::{
    BOUND, Daemon, alerting, committed_rounds, fix_io, stage_incident, stage_steady_incident,
    status, wait_committed_rounds, webhook_channel, write_config,
};
use crate::peers::{Proc, free_port, wait_until};
use crate::receivers::{Hook, MailSink, mail_sink_with, mails};
use base64::Engine;
use keycanary::daemon::Options;
use keycanary::notify::Backoff;
use keycanary::store::{OutboxRow, Store};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

/// The SMTP password of these tests: it must never reach the daemon's log.
const PASSWORD: &str = "kcmark-smtp-tls-pw-7f3a";
const USER: &str = "keycanary-relay";

// ---------------------------------------------------------------------------------------
// A private CA and the relay's certificates
// ---------------------------------------------------------------------------------------

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

pub(crate) fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A server certificate for `names` signed by `issuer`, written as `dir/NAME-cert.pem`
/// and `dir/NAME-key.pem`; returns the mailsink options presenting it with `tls`.
fn relay_cert(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    tls: &str,
) -> Vec<String> {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&cert_path, pem("CERTIFICATE", cert.der())).unwrap();
    std::fs::write(&key_path, pem("PRIVATE KEY", &key.serialize_der())).unwrap();
    vec![
        "--tls".into(),
        tls.into(),
        "--cert".into(),
        cert_path.display().to_string(),
        "--key".into(),
        key_path.display().to_string(),
        "--auth".into(),
        format!("{USER}:{PASSWORD}"),
    ]
}

/// The trusted CA in `dir/relay-ca.pem`, the SMTP password in `dir/smtp-password`, and
/// an email channel to 127.0.0.1:`port` over `tls` trusting that CA, with AUTH.
fn tls_email_channel(
    dir: &Path,
    trusted: &CertifiedIssuer<'static, KeyPair>,
    port: u16,
    tls: &str,
) -> String {
    std::fs::write(dir.join("relay-ca.pem"), pem("CERTIFICATE", trusted.der())).unwrap();
    std::fs::write(dir.join("smtp-password"), format!("{PASSWORD}\n")).unwrap();
    format!(
        "[[alerting.channel]]\nname = \"sre-mail\"\ntype = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"{tls}\"\nca_file = \"relay-ca.pem\"\nusername = \"{USER}\"\npassword = {{ file = \"smtp-password\" }}\nfrom = \"keycanary@example.com\"\nto = [\"sre@example.com\"]\n"
    )
}

/// `keycanary run` at debug level, its stderr in `dir/keycanary-mail.log`.
fn spawn_debug(config: &Path, dir: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keycanary"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "debug");
    Proc::spawn("keycanary-mail", cmd, dir)
}

fn daemon_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("keycanary-mail.log")).unwrap_or_default()
}

/// What the sink's authenticator recorded: one object per AUTH attempt.
fn auth_attempts(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("mail/auth.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Email over TLS
// ---------------------------------------------------------------------------------------

/// The steady seed incident pages by email over `tls` with AUTH to a relay whose
/// certificate a private CA signed: the mail arrives over TLS, AUTH was used with the
/// configured user, and the password is nowhere in the daemon's debug log.
async fn pages_over_tls_with_auth(tls: &str) {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("keycanary test relay CA");
    let options = relay_cert(dir.path(), "relay", &ca, &["127.0.0.1", "localhost"], tls);
    let sink: MailSink = mail_sink_with(dir.path(), 0, &options).await;
    let channel = tls_email_channel(dir.path(), &ca, sink.port, tls);
    let config = write_config(&lab, dir.path(), &alerting(&[channel]));
    stage_steady_incident(&lab).await;
    let _keycanary = spawn_debug(&config, dir.path());

    wait_until(&format!("the firing email over {tls}"), BOUND, || async {
        !sink.mails().is_empty()
    })
    .await;
    wait_until("an empty outbox", BOUND, || async {
        status(dir.path()).is_some_and(|s| s.pending == 0)
    })
    .await;
    let all = sink.mails();
    assert_eq!(all.len(), 1, "{all:#?}");
    let subject = all[0]["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("[FIRING] critical · acme ·"),
        "{subject}"
    );
    assert!(
        all[0]["tls"].as_str().is_some_and(|c| !c.is_empty()),
        "the message came over TLS: {all:#?}"
    );
    let attempts = auth_attempts(dir.path());
    assert_eq!(attempts.len(), 1, "one AUTH, accepted: {attempts:#?}");
    assert_eq!(attempts[0]["login"], USER);
    assert_eq!(attempts[0]["ok"], true);
    let s = status(dir.path()).unwrap();
    assert!(s.dead.is_empty(), "{s:?}");

    let log = daemon_log(dir.path());
    assert!(
        log.contains("sre-mail"),
        "the daemon's log speaks of the channel:\n{log}"
    );
    assert!(
        !log.contains(PASSWORD),
        "the SMTP password leaked into the log"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn email_over_starttls_with_auth_trusting_a_private_ca() {
    pages_over_tls_with_auth("starttls").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn email_over_implicit_tls_with_auth_trusting_a_private_ca() {
    pages_over_tls_with_auth("implicit").await;
}

/// The relay presents a certificate keycanary must refuse (`bad_names` / `bad_issuer`):
/// the email is not sent, the password never offered, the error says why in the log, and
/// the notification stays in the outbox, retried (not dead). Returns the test's dir and
/// the daemon for the caller to go on.
async fn refuses_the_certificate(
    bad_issuer: bool,
    bad_names: &[&str],
    expected_error: &str,
) -> (
    tempfile::TempDir,
    keycanary::lab::Lab,
    Proc,
    u16,
    CertifiedIssuer<'static, KeyPair>,
) {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let trusted = ca("keycanary test relay CA");
    let other = ca("someone else's CA");
    let issuer = if bad_issuer { &other } else { &trusted };
    let options = relay_cert(dir.path(), "wrong", issuer, bad_names, "starttls");
    let port = free_port();
    let sink = mail_sink_with(dir.path(), port, &options).await;
    let channel = tls_email_channel(dir.path(), &trusted, port, "starttls");
    let config = write_config(&lab, dir.path(), &alerting(&[channel]));
    stage_steady_incident(&lab).await;
    let keycanary = spawn_debug(&config, dir.path());

    wait_until("a failed send kept in the outbox", BOUND, || async {
        status(dir.path()).is_some_and(|s| s.retrying >= 1)
    })
    .await;
    let failing = committed_rounds(dir.path());
    wait_committed_rounds(dir.path(), failing + 2).await;
    let s = status(dir.path()).unwrap();
    assert_eq!(s.pending, 1, "the email is kept, retried in place: {s:?}");
    assert!(s.dead.is_empty(), "not dropped as undeliverable: {s:?}");
    assert!(sink.mails().is_empty(), "{:#?}", sink.mails());
    assert!(
        auth_attempts(dir.path()).is_empty(),
        "the password is never offered to a server keycanary does not trust"
    );
    let log = daemon_log(dir.path());
    let refused = log
        .lines()
        .find(|l| l.contains("notification not delivered, will retry"))
        .unwrap_or_else(|| panic!("no retry in the log:\n{log}"));
    assert!(
        refused.contains("invalid peer certificate") && refused.contains(expected_error),
        "the error says what is wrong with the certificate: {refused}"
    );
    assert!(
        !log.contains(PASSWORD),
        "the SMTP password leaked into the log"
    );
    drop(sink);
    (dir, lab, keycanary, port, trusted)
}

/// Signed by a CA keycanary does not trust: refused and kept; once the relay presents a
/// certificate from the trusted CA, the kept email goes out (once).
#[tokio::test(flavor = "multi_thread")]
async fn email_to_a_relay_signed_by_an_unknown_ca_is_kept_then_delivered() {
    let (dir, lab, _keycanary, port, trusted) =
        refuses_the_certificate(true, &["127.0.0.1", "localhost"], "UnknownIssuer").await;

    let options = relay_cert(dir.path(), "fixed", &trusted, &["127.0.0.1"], "starttls");
    let sink = mail_sink_with(dir.path(), port, &options).await;
    wait_until(
        "the kept email, once the certificate is right",
        BOUND,
        || async { !sink.mails().is_empty() },
    )
    .await;
    wait_until("an empty outbox", BOUND, || async {
        status(dir.path()).is_some_and(|s| s.pending == 0)
    })
    .await;
    let all = mails(dir.path());
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(
        all[0]["subject"].as_str().unwrap().starts_with("[FIRING]"),
        "{all:#?}"
    );
    let attempts = auth_attempts(dir.path());
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0]["ok"], true);
    assert!(status(dir.path()).unwrap().dead.is_empty());
    lab.shutdown().await;
}

/// Signed by the trusted CA but for another name: refused and kept.
#[tokio::test(flavor = "multi_thread")]
async fn email_to_a_relay_certified_for_another_name_is_kept() {
    let (_dir, lab, _keycanary, _port, _trusted) = refuses_the_certificate(
        false,
        &["mail.example.com"],
        "certificate not valid for name \"127.0.0.1\"",
    )
    .await;
    lab.shutdown().await;
}

/// The state dir's outbox rows, in queue order (read-only, while the daemon runs).
fn outbox(dir: &Path) -> Vec<OutboxRow> {
    Store::open_read_only(&dir.join(".state"))
        .and_then(|s| s.outbox())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Order per incident and channel
// ---------------------------------------------------------------------------------------

/// The webhook receiver refuses connections while the seed incident fires and resolves:
/// the page and its resolve both wait in the outbox. Once it answers, it gets the page
/// first, then the resolve, each once.
#[tokio::test(flavor = "multi_thread")]
async fn page_arrives_before_its_resolve_after_the_receiver_was_down() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens there yet: connections are refused
    let url = format!("http://127.0.0.1:{port}/hook");
    let config = write_config(
        &lab,
        dir.path(),
        &alerting(&[webhook_channel("sre-hook", &url)]),
    );
    stage_incident(&lab).await;
    // Retries that back off far enough for the page's next try to fall after the
    // resolve is due: only the rule "an incident's rows go out in order per channel"
    // then keeps the resolve behind the page.
    let d = Daemon::start_with(
        &config,
        Options {
            backoff: Backoff {
                first: Duration::from_secs(1),
                max: Duration::from_secs(30),
            },
            ..Options::default()
        },
    );

    wait_until("the page failing in the outbox", BOUND, || async {
        status(dir.path()).is_some_and(|s| s.retrying >= 1)
    })
    .await;
    fix_io(&lab);
    wait_until(
        "the incident resolved, its resolve queued too",
        BOUND,
        || async {
            status(dir.path()).is_some_and(|s| s.alert_state.incidents.is_empty() && s.pending == 2)
        },
    )
    .await;
    // The precondition that makes the order a test: the resolve is due before the page's
    // next try (it is held back, never tried, while the page waits).
    wait_until(
        "the page's next try after the resolve is due",
        BOUND,
        || async {
            let rows = outbox(dir.path());
            rows.len() == 2 && rows[0].next_attempt_at.0 > rows[1].next_attempt_at.0
        },
    )
    .await;
    let s = status(dir.path()).unwrap();
    assert!(s.dead.is_empty(), "{s:?}");
    assert!(d.sends("sre-hook", "retried") >= 1);
    assert_eq!(d.sends("sre-hook", "sent"), 0);

    let hook = Hook::start(port).await;
    wait_until("both notifications delivered", BOUND, || async {
        status(dir.path()).is_some_and(|s| s.pending == 0)
    })
    .await;
    let delivered = d.rounds();
    d.wait_rounds(delivered + 2).await;
    let bodies = hook.bodies();
    let statuses: Vec<&str> = bodies
        .iter()
        .map(|b| b["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["firing", "resolved"], "{bodies:#?}");
    assert_eq!(bodies[0]["group"], bodies[1]["group"], "one incident");
    assert_eq!(bodies[0]["group"]["tenant"], "acme");
    d.stop().await;
    lab.shutdown().await;
}
