//! `scripts/rehearse`, the stage the README walks through, builds the same stage as this
//! suite: `up` with io's CDN caching for 10 minutes and app's not → `keycanary check` on
//! the rendered probes.toml sees the drift and nothing missing → `rotate` → `kid_missing`
//! on io's edge only → `purge` ends it. `status` works, and `down` (run on drop too, so a
//! failing assertion still stops the stage) leaves no process behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

use crate::rig::repo;

/// A stage started by `scripts/rehearse up` in a temp dir; `down` on drop.
struct ScriptStage {
    dir: TempDir,
}

impl ScriptStage {
    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `scripts/rehearse <command> <dir> <args…>`, its output checked for success.
    fn rehearse(&self, command: &str, args: &[&str]) -> String {
        let out = rehearse(command, self.dir(), args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "scripts/rehearse {command} {args:?}: {}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// `keycanary check --format json` on the rendered config: the exit code and the
    /// findings as `(tenant, code, domain, path)`, sorted.
    fn check(&self) -> (i32, Vec<(String, String, String, String)>) {
        let out = Command::new(env!("CARGO_BIN_EXE_keycanary"))
            .args(["check", "--config"])
            .arg(self.dir().join("probes.toml"))
            .args(["--format", "json"])
            .output()
            .expect("run keycanary check");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check printed no JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let mut findings: Vec<_> = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| {
                let subject = &f["subject"];
                (
                    s(&subject["tenant"]),
                    s(&f["code"]),
                    s(&subject["domain"]),
                    s(&subject["path"]),
                )
            })
            .collect();
        findings.sort();
        (out.status.code().expect("exit code"), findings)
    }

    /// The pids in the stage's pid files.
    fn pids(&self) -> Vec<u32> {
        std::fs::read_dir(self.dir().join("run"))
            .expect("run dir")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pid"))
            .map(|p| std::fs::read_to_string(&p).unwrap().trim().parse().unwrap())
            .collect()
    }
}

impl Drop for ScriptStage {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_logs(&self.dir().join("log"));
        }
        let out = rehearse("down", self.dir(), &[]);
        if !out.status.success() {
            eprintln!(
                "scripts/rehearse down: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn rehearse(command: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(repo().join("scripts/rehearse"))
        .arg(command)
        .arg(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/rehearse {command}: {e}"))
}

fn print_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        eprintln!("--- {} ---\n{tail}", log.display());
    }
}

/// Whether `pid` is a live process (a zombie is not: the stage's processes outlive the
/// script that started them, and nobody may reap them).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

fn about(
    findings: &[(String, String, String, String)],
    code: &str,
) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = findings
        .iter()
        .filter(|f| f.1 == code)
        .map(|(tenant, _, domain, path)| (tenant.clone(), domain.clone(), path.clone()))
        .collect();
    out.dedup();
    out
}

#[test]
fn the_script_builds_the_incident_stage_and_stops_it() {
    let stage = ScriptStage {
        dir: tempfile::tempdir().unwrap(),
    };
    let summary = stage.rehearse("up", &["--io-ttl", "600"]);
    assert!(
        summary.contains("CDN cached 600s") && summary.contains("CDN not cached"),
        "{summary}"
    );

    // Before the rotation: the drift, nothing missing. Checked twice: the first check
    // leaves a copy of the key set in io's cache.
    for _ in 0..2 {
        let (_, findings) = stage.check();
        assert_eq!(
            about(&findings, "cache_policy_drift"),
            [("example".to_owned(), "io".to_owned(), String::new())],
            "{findings:#?}"
        );
        assert_eq!(about(&findings, "kid_missing"), [], "{findings:#?}");
    }

    // The incident: key-2 signs at once; io's edge still serves the cached set.
    let rotated = stage.rehearse("rotate", &[]);
    assert!(rotated.contains("io  origin  key-2 key-1"), "{rotated}");
    let (code, findings) = stage.check();
    assert_eq!(code, 1, "{findings:#?}");
    assert_eq!(
        about(&findings, "kid_missing"),
        [("example".to_owned(), "io".to_owned(), "cdn".to_owned())],
        "{findings:#?}"
    );

    // The purge ends it.
    stage.rehearse("purge", &[]);
    let (_, findings) = stage.check();
    assert_eq!(about(&findings, "kid_missing"), [], "{findings:#?}");

    let status = stage.rehearse("status", &[]);
    assert!(
        status.contains("nginx              running") && status.contains("io  CDN     key-2 key-1"),
        "{status}"
    );

    let pids = stage.pids();
    assert_eq!(pids.len(), 8, "one pid file per component");
    assert!(pids.iter().all(|&pid| alive(pid)), "{pids:?}");
    stage.rehearse("down", &[]);
    let left: Vec<u32> = pids.into_iter().filter(|&pid| alive(pid)).collect();
    assert!(left.is_empty(), "still running after down: {left:?}");
    assert!(
        stage.dir().join("stage.env").exists(),
        "down keeps DIR for inspection"
    );
}
