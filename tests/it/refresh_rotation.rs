//! Refresh-token rotation against the lab over HTTP: with the lab rotating refresh tokens
//! (the presented one is used up, the answer carries a new one), keycanary keeps logging in
//! round after round and across a restart, keeps the newest token in the state directory
//! (mode 0600), and a changed configured token replaces the stored one.

use keycanary::clock::{ManualClock, SharedClock};
use keycanary::config;
use keycanary::lab::{self, LabOptions};
use keycanary::model::{LoginResult, Observation};
use keycanary::probe::{Prober, refresh};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

/// probes.toml for tenant `initech` on the lab's `app` domain, refresh_token grant with
/// the token from `dir/refresh-token`, state in `dir/state`.
fn write_config(dir: &Path, base: &str, refresh_token: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("client-secret"), lab::idp::CLIENT_SECRET).unwrap();
    std::fs::write(dir.join("refresh-token"), refresh_token).unwrap();
    let toml = format!(
        r#"interval = "30s"
state_dir = "state"

[[tenant]]
name = "initech"
max_token_lifetime = "5m"
[[tenant.domain]]
name = "app"
issuer = "{base}/app/initech"
[tenant.domain.login]
grant = "refresh_token"
client_id = "keycanary"
client_secret = {{ file = "client-secret" }}
refresh_token = {{ file = "refresh-token" }}
[[tenant.domain.jwks]]
name = "cdn"
"#
    );
    let path = dir.join("probes.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// The login outcome of the round: `Ok` with tokens, or the failure reason.
fn login(o: &[Observation]) -> Result<(), String> {
    match &o[0].domains[0].login.as_ref().expect("a login").result {
        LoginResult::Tokens { tokens } if !tokens.is_empty() => Ok(()),
        LoginResult::Tokens { .. } => Err("no tokens".into()),
        LoginResult::Failed { reason } => Err(reason.clone()),
    }
}

/// A refresh token from the lab's password grant (the lab accepts the tokens it issued).
async fn issued_refresh_token(base: &str) -> String {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/app/initech/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "keycanary"),
            ("client_secret", lab::idp::CLIENT_SECRET),
            ("username", lab::idp::USERNAME),
            ("password", lab::idp::PASSWORD),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_rotated_refresh_token_is_kept_used_and_survives_a_restart() {
    let clock: SharedClock = Arc::new(ManualClock::starting_now());
    let lab = lab::start(LabOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        clock: clock.clone(),
    })
    .await
    .unwrap();
    lab.rotate_refresh_tokens(true);
    let base = lab.base_url().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &base, lab::idp::REFRESH_TOKEN);
    let config = config::load(&path).unwrap();

    let prober = Prober::new(&config, clock.clone()).unwrap();
    for round in 0..3 {
        let o = prober.round(&config).await;
        assert_eq!(login(&o), Ok(()), "round {round}");
    }
    let stored = dir.path().join("state").join(refresh::FILE);
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the stored token is the owner's only");
    let text = std::fs::read_to_string(&stored).unwrap();
    assert!(text.contains("lab-rt-"), "the rotated token is stored");
    assert!(
        !text.contains(lab::idp::REFRESH_TOKEN),
        "not the configured one"
    );

    // The configured token is used up at the IdP: presenting it again is refused.
    let again = reqwest::Client::new()
        .post(format!("{base}/app/initech/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "keycanary"),
            ("client_secret", lab::idp::CLIENT_SECRET),
            ("refresh_token", lab::idp::REFRESH_TOKEN),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 400);

    // A restart reads the stored token and goes on.
    let restarted = Prober::new(&config, clock.clone()).unwrap();
    assert_eq!(login(&restarted.round(&config).await), Ok(()));

    // A new configured token replaces the stored one.
    let fresh = issued_refresh_token(&base).await;
    let path = write_config(dir.path(), &base, &fresh);
    let config = config::load(&path).unwrap();
    let reconfigured = Prober::new(&config, clock.clone()).unwrap();
    assert_eq!(login(&reconfigured.round(&config).await), Ok(()));
    assert_eq!(login(&reconfigured.round(&config).await), Ok(()));

    // A stored token the IdP refuses fails the login and says what to do.
    lab.rotate_refresh_tokens(true);
    let stale = Prober::new(&config, clock.clone()).unwrap();
    let _ = reconfigured.round(&config).await; // uses up the token `stale` read at start
    let reason = login(&stale.round(&config).await).unwrap_err();
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert!(
        reason.contains("rotated refresh token stored at"),
        "{reason}"
    );
    assert!(
        !reason.contains("lab-rt-"),
        "no token in the reason: {reason}"
    );
}
