//! The exit codes of README's "Commands and exit codes" table, and `--log-format json`,
//! from the binary. Covered elsewhere, and not repeated here: `validate` 0/2
//! (`check::validate_lists_every_problem_with_its_path`), `check` 0/1 (`check::seed_…`),
//! `gate --url` 0/1 (`api::api_on_a_healthy_lab`), `status` 0 (`daemon::sighup_…`), `run` 2
//! on a state directory that cannot be made (`faults::a_state_directory_…`), and
//! `max_body_bytes` / `max_redirects` (`faults::every_wire_fault_…`, rows `big`, `loop`).

use crate::check::{keycanary, shipped_config_for, start_lab};
use keycanary::store::{StateLock, Store};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn check_exits_2_on_a_bad_config_or_usage() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let good = std::fs::read_to_string(&config).unwrap();
    let path = config.to_str().unwrap();

    std::fs::write(&config, format!("intervall = \"30s\"\n{good}")).unwrap();
    let run = keycanary(&["check", "--config", path], &[]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("unknown key `intervall`"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "no round was run: {}", run.stdout);

    std::fs::write(&config, &good).unwrap();
    let run = keycanary(&["check", "--config", path, "--fail-on", "urgent"], &[]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let run = keycanary(&["check", "--config", "/nonexistent/probes.toml"], &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    // The same file, unbroken, is a healthy round: the 2s above came from the config.
    let run = keycanary(&["check", "--config", path], &[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    lab.shutdown().await;
}

/// `gate` without `--url` probes once from here: 0 for the current signer of a healthy
/// lab, 1 for a kid nobody publishes.
#[tokio::test(flavor = "multi_thread")]
async fn local_gate_exits_0_when_safe_and_1_when_unsafe() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let path = config.to_str().unwrap();
    let signer = lab.signer_kid("acme").unwrap();

    let run = keycanary(
        &[
            "gate", "--config", path, "--tenant", "acme", "--format", "json",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let answer = run.json();
    assert_eq!(answer["safe"], true, "{answer:#}");
    assert_eq!(answer["kid"], signer.as_str(), "{answer:#}");
    crate::contracts::assert_gate_contract(&answer);

    let run = keycanary(
        &[
            "gate",
            "--config",
            path,
            "--tenant",
            "acme",
            "--kid",
            "nobody-k9",
            "--format",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let answer = run.json();
    assert_eq!(answer["safe"], false, "{answer:#}");
    let codes: Vec<&str> = answer["blocking"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["code"].as_str())
        .collect();
    assert!(codes.contains(&"kid_missing"), "{answer:#}");
    crate::contracts::assert_gate_contract(&answer);

    let run = keycanary(&["gate", "--config", path, "--tenant", "nosuch"], &[]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    lab.shutdown().await;
}

/// A state directory whose store has never committed a full round needs a person:
/// `status` says so and exits 1.
#[tokio::test(flavor = "multi_thread")]
async fn status_exits_1_when_no_full_round_was_committed() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let path = config.to_str().unwrap();
    drop(Store::open(&dir.path().join(".state")).unwrap());

    let run = keycanary(&["status", "--config", path, "--format", "json"], &[]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["last_round"], serde_json::Value::Null, "{report:#}");
    assert!(
        report["problems"][0]
            .as_str()
            .unwrap()
            .contains("no full round"),
        "{report:#}"
    );
    crate::contracts::assert_status_contract(&report);
    lab.shutdown().await;
}

/// A second `run` on a state directory another instance holds stops at once with 2,
/// naming the directory.
#[tokio::test(flavor = "multi_thread")]
async fn run_exits_2_when_another_instance_holds_the_state_directory() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let state = dir.path().join(".state");
    let held = StateLock::acquire(&state).unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_keycanary"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("`run` stopped instead of serving beside the other instance")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another keycanary is using the state directory")
            && stderr.contains(&state.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(held);
    lab.shutdown().await;
}

/// `--log-format json`, before or after the command: every stderr line is one JSON
/// object with a level and a message.
#[tokio::test(flavor = "multi_thread")]
async fn log_format_json_writes_one_object_per_line() {
    let lab = start_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_for(lab.base_url(), dir.path());
    let path = config.to_str().unwrap();
    for args in [
        vec!["--log-format", "json", "check", "--config", path],
        vec!["check", "--config", path, "--log-format", "json"],
    ] {
        let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        // Off the runtime: the lab serves the run meanwhile.
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_keycanary"))
                .args(&argv)
                .env("RUST_LOG", "debug")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}\n{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(lines.len() >= 2, "{args:?}: a debug run logs: {stderr}");
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{args:?}: not one JSON object ({e}): {line}"));
            assert!(v.is_object(), "{line}");
            assert!(v["level"].is_string(), "{line}");
            assert!(
                v["fields"].is_object() || v["message"].is_string(),
                "{line}"
            );
        }
    }
    lab.shutdown().await;
}
