//! The shipped Grafana dashboards and Prometheus alert rules (`dashboards/`), checked
//! without Grafana: every panel's PromQL goes through `promtool check rules` as a recording
//! rule, the alert rules through `promtool check rules` and their unit tests through
//! `promtool test rules`, every `keycanary_*` name they use must be one `/metrics` exports,
//! and a real Prometheus scraping the daemon on the lab raises the kid-missing alert during
//! the seed incident. A missing promtool or prometheus fails (never skips).

use crate::api::Harness;
use crate::check::{cache_io_for_ten_minutes, repo};
use crate::peers::wait_until;
use crate::receivers::Prometheus;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

const INSTALL_HINT: &str = "run scripts/install-peers.sh";

fn dashboards_dir() -> PathBuf {
    repo().join("dashboards")
}

fn rules_file() -> PathBuf {
    dashboards_dir().join("rules/keycanary.yml")
}

/// Every `dashboards/*.json`, parsed, with its file name.
fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dashboards_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
        out.push((name, value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.iter().any(|(n, _)| n == "keycanary-overview.json"),
        "no dashboards/keycanary-overview.json"
    );
    out
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `(where, expr)` of every panel target and every query variable's selector.
fn exprs(name: &str, dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: panel {} target without expr", p["title"]));
            out.push((
                format!(
                    "{name} panel {} {:?} target {}",
                    p["id"], p["title"], t["refId"]
                ),
                expr.to_owned(),
            ));
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.rsplit_once(','))
            .unwrap_or_else(|| panic!("{name}: variable {} query {q}", v["name"]));
        out.push((format!("{name} variable {}", v["name"]), inner.0.to_owned()));
    }
    out
}

/// Grafana's template variables replaced by concrete values.
fn substitute(expr: &str) -> String {
    let value = |var: &str| -> &str {
        match var {
            "tenant" => "acme",
            "location" => "local",
            "__rate_interval" | "__interval" | "__range" => "1m",
            "__interval_ms" | "__range_ms" => "60000",
            "__range_s" => "60",
            other => panic!("unknown template variable ${other} in {expr}"),
        }
    };
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("unclosed ${");
            let var = braced[..end].split(':').next().unwrap();
            out.push_str(value(var));
            rest = &braced[end + 1..];
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            out.push_str(value(&after[..end]));
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Every `keycanary_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("keycanary_") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            out.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out
}

fn promtool(args: &[&str]) -> Output {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn dashboards_are_importable_grafana_json() {
    for (name, d) in dashboards() {
        assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "{name}");
        assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "{name}");
        assert!(d["title"].as_str().is_some_and(|u| !u.is_empty()), "{name}");
        let inputs = d["__inputs"].as_array().unwrap();
        assert!(
            inputs
                .iter()
                .any(|i| i["type"] == "datasource" && i["pluginId"] == "prometheus"),
            "{name}: __inputs needs a prometheus datasource"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = |n: &str| {
            vars.iter()
                .find(|v| v["name"] == n)
                .unwrap_or_else(|| panic!("{name}: no ${n} variable"))
        };
        assert_eq!(var("datasource")["type"], "datasource", "{name}");
        assert_eq!(var("datasource")["query"], "prometheus", "{name}");
        for (v, label) in [("location", "location"), ("tenant", "tenant")] {
            let q = &var(v)["query"]["query"];
            assert_eq!(var(v)["type"], "query", "{name}");
            assert!(
                q.as_str()
                    .is_some_and(|q| q.starts_with("label_values(keycanary_view_up")
                        && q.ends_with(&format!(", {label})"))),
                "{name}: ${v} query {q}"
            );
        }
        let mut ids = BTreeSet::new();
        let all = panels(&d);
        assert!(all.len() >= 8, "{name}: {} panels", all.len());
        for p in all {
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{name}: duplicate id"
            );
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
            assert!(x + w <= 24 && g["h"].as_u64().unwrap() > 0, "{name}: {p}");
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{name}: {}",
                p["title"]
            );
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{name}: {}",
                p["title"]
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}");
            }
        }
    }
    // The overview has the panels the runbooks point at.
    let overview = &dashboards()
        .into_iter()
        .find(|(n, _)| n == "keycanary-overview.json")
        .unwrap()
        .1;
    let titles: Vec<&str> = panels(overview)
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for t in [
        "Views up",
        "Views down",
        "Open findings by code and severity",
        "Kid present per view",
        "Age per view",
        "Token verifications by result",
        "Round duration",
        "Last round age",
    ] {
        assert!(
            titles.contains(&t),
            "overview has no panel {t:?}: {titles:?}"
        );
    }
}

#[test]
fn substitute_replaces_every_variable_form() {
    assert_eq!(
        substitute(r#"rate(x{tenant=~"$tenant",location=~"${location:regex}"}[$__rate_interval])"#),
        r#"rate(x{tenant=~"acme",location=~"local"}[1m])"#
    );
    assert_eq!(substitute("y[${__interval}]"), "y[1m]");
    assert_eq!(
        metric_names("a(keycanary_view_up) / xkeycanary_no + keycanary_rounds_total"),
        BTreeSet::from([
            "keycanary_view_up".to_owned(),
            "keycanary_rounds_total".to_owned()
        ])
    );
}

#[test]
fn dashboard_queries_pass_promtool() {
    let mut groups = Vec::new();
    for (name, d) in dashboards() {
        let rules: Vec<Value> = exprs(&name, &d)
            .into_iter()
            .enumerate()
            .map(|(i, (place, expr))| {
                let expr = substitute(&expr);
                assert!(!expr.contains('$'), "{place}: {expr}");
                json!({
                    "record": format!("dashboard:query_{i}"),
                    "expr": expr,
                    "labels": { "source": place },
                })
            })
            .collect();
        assert!(!rules.is_empty(), "{name}");
        groups.push(json!({ "name": name, "rules": rules }));
    }
    let dir = tempfile::tempdir().unwrap();
    // A rules file is YAML; JSON is YAML.
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({ "groups": groups })).unwrap(),
    )
    .unwrap();
    let out = promtool(&["check", "rules", path.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{out:?}"
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let out = promtool(&["check", "rules", "dashboards/rules/keycanary.yml"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{out:?}"
    );
    let out = promtool(&["test", "rules", "dashboards/rules/keycanary_test.yml"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{out:?}"
    );
    let rules = std::fs::read_to_string(rules_file()).unwrap();
    for alert in [
        "KeycanaryKidMissing",
        "KeycanaryStaleEdge",
        "KeycanaryClientWouldFail",
        "KeycanaryProbeStale",
        "KeycanaryDown",
        "KeycanaryFindingInManyLocations",
    ] {
        assert!(rules.contains(&format!("- alert: {alert}\n")), "{alert}");
    }
}

/// `/metrics` of a running [`Harness`] (lab + daemon + API, see `api.rs`).
async fn metrics(h: &Harness) -> String {
    let resp = h.get("/metrics", None).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The names a query can select from what `/metrics` declares (`# TYPE name type`): the
/// family name, or for a histogram its `_bucket`, `_sum` and `_count` series (the bare
/// name of a histogram selects nothing).
fn exported_families(body: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in body.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut words = l.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        if kind == "histogram" {
            out.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
        } else {
            out.insert(name.to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_used_is_exported() {
    let mut s = Harness::start(None).await;
    s.start_daemon();
    s.wait_for_rounds(1).await;
    let body = metrics(&s).await;
    s.stop().await;
    let exported = exported_families(&body);
    assert!(exported.contains("keycanary_view_up"), "{body}");

    let mut used: Vec<(String, BTreeSet<String>)> = dashboards()
        .into_iter()
        .map(|(name, d)| {
            let text: String = exprs(&name, &d)
                .into_iter()
                .map(|(_, e)| e + "\n")
                .collect();
            (name, metric_names(&text))
        })
        .collect();
    let rules = std::fs::read_to_string(rules_file()).unwrap();
    let rule_exprs: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    used.push(("rules/keycanary.yml".into(), metric_names(&rule_exprs)));
    for (name, names) in &used {
        assert!(!names.is_empty(), "{name} uses no keycanary metric");
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{name} uses metrics /metrics does not export: {unknown:?}; exported: {exported:?}"
        );
    }
    // The overview covers the families operators look at first.
    let overview = &used
        .iter()
        .find(|(n, _)| n == "keycanary-overview.json")
        .unwrap()
        .1;
    for family in [
        "keycanary_view_up",
        "keycanary_view_kid_present",
        "keycanary_view_age_seconds",
        "keycanary_findings_open",
        "keycanary_token_verifications",
        "keycanary_round_duration_seconds",
        "keycanary_last_round_timestamp_seconds",
    ] {
        assert!(overview.contains(family), "overview lacks {family}");
    }
}

/// The shipped rules with every `for:` cut to 0 s, so alerts show at the first evaluation.
fn rules_without_for() -> String {
    let text = std::fs::read_to_string(rules_file()).unwrap();
    let out: String = text
        .lines()
        .map(|l| match l.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 0s\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    assert!(out.contains("for: 0s") && !out.contains("for: 1m"), "{out}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_raises_kid_missing_during_the_seed_incident() {
    let mut s = Harness::start(None).await;
    let target = s.base.trim_start_matches("http://").to_owned();
    let prom = Prometheus::start(&target, &rules_without_for()).await;

    // The seed incident: io's CDN keeps the JWKS for 10 minutes, a round caches the old
    // key set, acme rotates, the pipeline purges app only.
    cache_io_for_ten_minutes(&s.lab);
    s.start_daemon();
    s.wait_for_rounds(1).await;
    // Healthy so far: Prometheus scrapes the daemon and no keycanary alert fires.
    wait_until(
        "prometheus scrapes a round",
        Duration::from_secs(30),
        || async {
            let v = prom
                .api("/api/v1/query", &[("query", "keycanary_rounds_total >= 1")])
                .await;
            !v["data"]["result"].as_array().unwrap().is_empty()
        },
    )
    .await;
    s.lab.rotate("acme").unwrap();
    s.lab.purge("app").unwrap();
    let now = s.rounds();
    s.wait_for_rounds(now + 2).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let kid_missing = loop {
        let alerts = prom.alerts().await;
        let found = alerts.iter().find(|a| {
            a["labels"]["alertname"] == "KeycanaryKidMissing" && a["labels"]["tenant"] == "acme"
        });
        if let Some(a) = found {
            break a.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no KeycanaryKidMissing alert for acme within 30 s: {alerts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        ["pending", "firing"].contains(&kid_missing["state"].as_str().unwrap()),
        "{kid_missing:#}"
    );
    assert_eq!(kid_missing["labels"]["severity"], "critical");
    assert_eq!(kid_missing["labels"]["code"], "kid_missing");
    let alerts = prom.alerts().await;
    let names: BTreeSet<&str> = alerts
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    // One location: the N-of-M rule stays quiet; keycanary itself is healthy.
    for quiet in [
        "KeycanaryFindingInManyLocations",
        "KeycanaryDown",
        "KeycanaryProbeStale",
    ] {
        assert!(!names.contains(quiet), "{quiet} fired: {alerts:#?}");
    }
    assert!(
        !alerts
            .iter()
            .any(|a| a["labels"]["tenant"] == "globex" || a["labels"]["tenant"] == "initech"),
        "{alerts:#?}"
    );

    // Every dashboard query runs on the real Prometheus, and the incident shows in the
    // panels: each dashboard has a findings panel whose query returns a sample above 0.
    let mut shows_incident = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (name, d) in dashboards() {
        names.insert(name.clone());
        for (_, expr) in exprs(&name, &d) {
            let expr = substitute(&expr);
            let answer = prom.api("/api/v1/query", &[("query", &expr)]).await;
            let above_zero = answer["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                .any(|v| v > 0.0);
            if expr.contains("keycanary_findings_open") && above_zero {
                shows_incident.insert(name.clone());
            }
        }
    }
    assert_eq!(
        shows_incident, names,
        "dashboards whose findings panels show the incident"
    );
    let missing = prom
        .api(
            "/api/v1/query",
            &[(
                "query",
                r#"keycanary_view_kid_present{tenant="acme",domain="io",kind="edge"} == 0"#,
            )],
        )
        .await;
    assert_eq!(
        missing["data"]["result"].as_array().unwrap().len(),
        1,
        "{missing:#}"
    );
    drop(prom);
    s.stop().await;
}
