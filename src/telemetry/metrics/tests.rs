//! Tests of the metric families, through [`render`] of fixture snapshots: every family
//! has HELP and TYPE, series are unique, labels bounded, values what the snapshot says.
//! The encoder's and the histograms' own tables live in `exposition` and `durations`.

use super::views::cut;
use super::*;
use crate::detect::gate::{rotation_gate, view_budget};
use crate::detect::profiles::Budget;
use crate::model::{FetchOutcome, Finding, Subject, Timestamp, ViewKind};
use crate::telemetry::exposition::number;
use crate::telemetry::fixtures::{config, findings_mut, incident, obs_mut, set_history, view};
use std::collections::BTreeSet;

fn check(body: &str, line: &str) {
    assert!(
        body.lines().any(|l| l == line),
        "missing line `{line}` in:\n{body}"
    );
}

#[test]
fn seed_incident_as_metrics() {
    let body = render(&incident(), &config(), BuildInfo { version: "9.9.9" });
    let v = r#"tenant="acme",domain="io",path="cdn",edge="",kind="edge",location="lab""#;
    for line in [
        r#"keycanary_build_info{version="9.9.9"} 1"#.to_owned(),
        "keycanary_rounds_total 1".into(),
        "keycanary_round_duration_seconds 1.5".into(),
        "keycanary_last_round_timestamp_seconds 2.5".into(),
        format!("keycanary_view_up{{{v}}} 1"),
        format!(r#"keycanary_view_kid_present{{{v},kid="k2"}} 0"#),
        format!(r#"keycanary_view_kid_present{{{v},kid="k1"}} 1"#),
        format!("keycanary_view_age_seconds{{{v}}} 42"),
        format!(r#"keycanary_fetch_duration_seconds_bucket{{{v},le="0.1"}} 0"#),
        format!(r#"keycanary_fetch_duration_seconds_bucket{{{v},le="0.25"}} 1"#),
        format!(r#"keycanary_fetch_duration_seconds_bucket{{{v},le="+Inf"}} 1"#),
        format!("keycanary_fetch_duration_seconds_sum{{{v}}} 0.25"),
        format!("keycanary_fetch_duration_seconds_count{{{v}}} 1"),
        r#"keycanary_login_duration_seconds_bucket{tenant="acme",domain="io",location="lab",le="0.1"} 0"#.into(),
        r#"keycanary_login_duration_seconds_bucket{tenant="acme",domain="io",location="lab",le="0.25"} 1"#.into(),
        r#"keycanary_login_duration_seconds_sum{tenant="acme",domain="io",location="lab"} 0.12"#.into(),
        r#"keycanary_login_duration_seconds_count{tenant="acme",domain="io",location="lab"} 1"#.into(),
        "# TYPE keycanary_fetch_duration_seconds histogram".into(),
        "# TYPE keycanary_login_duration_seconds histogram".into(),
        r#"keycanary_login_up{tenant="acme",domain="io"} 1"#.into(),
        r#"keycanary_token_verifications{tenant="acme",domain="io",path="cdn",edge="",result="kid_missing"} 1"#.into(),
        r#"keycanary_token_verifications{tenant="acme",domain="io",path="cdn",edge="",result="verified"} 0"#.into(),
        r#"keycanary_token_verifications{tenant="acme",domain="io",path="origin",edge="",result="verified"} 1"#.into(),
        r#"keycanary_signing_kid_info{tenant="acme",domain="io",kid="k2"} 1"#.into(),
        r#"keycanary_findings_open{tenant="acme",code="kid_missing",severity="critical"} 1"#.into(),
    ] {
        check(&body, &line);
    }
    // The series budget: a code with nothing open has no `findings_open` series, and a
    // view has a `verified` series plus one per failure result that counted something.
    assert!(!body.contains(r#"keycanary_findings_open{tenant="acme",code="stale_edge""#));
    assert!(
        !body
            .lines()
            .any(|l| l.starts_with("keycanary_findings_open") && l.ends_with(" 0"))
    );
    assert!(!body.contains(r#"path="origin",edge="",result="kid_missing""#));
    assert!(!body.contains(r#"result="view_unavailable""#));
    // The origin view sends no Age: no sample rather than a made-up zero.
    assert!(
        !body.contains(r#"keycanary_view_age_seconds{tenant="acme",domain="io",path="origin""#)
    );
}

#[test]
fn every_family_has_help_and_type_and_no_duplicate_series() {
    let body = render(&incident(), &config(), BuildInfo::current());
    let mut helped = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    let mut series = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP for {name}");
            if kind == "histogram" {
                histograms.insert(name.to_owned());
            }
        } else {
            let (id, _) = line.rsplit_once(' ').unwrap();
            let series_name = id.split('{').next().unwrap();
            // A histogram's series are its family's name plus a suffix.
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| series_name.strip_suffix(s))
                .find(|base| histograms.contains(*base))
                .unwrap_or(series_name);
            assert!(helped.contains(name), "no HELP for {name}");
            assert!(name.starts_with("keycanary_"), "{name}");
            assert!(series.insert(id.to_owned()), "duplicate series {id}");
        }
    }
}

#[test]
fn before_the_first_round_families_are_there_without_samples() {
    let body = render(&Snapshot::default(), &config(), BuildInfo::current());
    check(&body, "keycanary_rounds_total 0");
    check(&body, "# TYPE keycanary_view_up gauge");
    assert!(
        !body
            .lines()
            .any(|l| l.starts_with("keycanary_round_duration_seconds")),
        "{body}"
    );
}

#[test]
fn kids_from_the_wire_are_bounded_and_escaped() {
    let mut s = incident();
    let d = &mut obs_mut(&mut s).domains[0];
    let many: Vec<String> = (0..50)
        .map(|i| format!("k{i}\"\\\n{}", "x".repeat(300)))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    d.views[1] = view("origin", ViewKind::Origin, None, &refs);
    let body = render(&s, &config(), BuildInfo::current());
    let present = body
        .lines()
        .filter(|l| l.starts_with("keycanary_view_kid_present{") && l.contains("path=\"cdn\""))
        .count();
    assert_eq!(present, MAX_KIDS_PER_DOMAIN);
    assert!(body.contains(r#"kid="k0\"\\\nxxx"#), "{body}");
    // Every exported kid is the wire kid cut to MAX_LABEL_LEN bytes (escaping undone).
    let kids: Vec<String> = body
        .lines()
        .filter(|l| l.starts_with("keycanary_view_kid_present{"))
        .filter_map(|l| l.split(",kid=\"").nth(1))
        .map(|rest| {
            let escaped = &rest[..rest.rfind("\"}").unwrap()];
            escaped
                .replace("\\n", "\n")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        })
        .collect();
    assert!(kids.len() >= MAX_KIDS_PER_DOMAIN, "{body}");
    for kid in &kids {
        assert!(kid.len() <= MAX_LABEL_LEN, "{} bytes: {kid:?}", kid.len());
        assert!(
            many.iter().any(|m| cut(m) == *kid) || !kid.contains('x'),
            "not a cut wire kid: {kid:?}"
        );
    }
    assert!(kids.iter().any(|k| k.len() == MAX_LABEL_LEN), "{kids:?}");
}

/// The incident with its observation recorded in the history (as the daemon does) and
/// the cdn edge sending caching headers.
fn incident_with_history() -> Snapshot {
    let mut s = incident();
    let cdn = &mut obs_mut(&mut s).domains[0].views[0];
    if let FetchOutcome::Response(r) = &mut cdn.fetch.outcome {
        r.headers.cache_control = Some("public, max-age=300".into());
    }
    let mut history = crate::detect::history::History::default();
    history.record(obs_mut(&mut s), Timestamp(2_000));
    set_history(&mut s, &history);
    s
}

const CDN: &str = r#"tenant="acme",domain="io",path="cdn",edge="",kind="edge",location="lab""#;
const ORIGIN: &str =
    r#"tenant="acme",domain="io",path="origin",edge="",kind="origin",location="lab""#;

#[test]
fn edge_ttl_remaining_only_for_edges_with_a_declared_lifetime() {
    let cfg = config();
    let body = render(&incident_with_history(), &cfg, BuildInfo::current());
    // max-age=300 with Age: 42.
    check(
        &body,
        &format!("keycanary_view_edge_ttl_remaining_seconds{{{CDN}}} 258"),
    );
    assert!(
        !body.contains(&format!(
            "keycanary_view_edge_ttl_remaining_seconds{{{ORIGIN}}}"
        )),
        "{body}"
    );
    // Without caching headers the edge declares no lifetime: no sample.
    let body = render(&incident(), &cfg, BuildInfo::current());
    check(
        &body,
        "# TYPE keycanary_view_edge_ttl_remaining_seconds gauge",
    );
    assert!(
        !body
            .lines()
            .any(|l| l.starts_with("keycanary_view_edge_ttl_remaining_seconds{")),
        "{body}"
    );
}

#[test]
fn staleness_budget_is_the_gates() {
    let cfg = config();
    let s = incident_with_history();
    let body = render(&s, &cfg, BuildInfo::current());
    let h = s.history("acme").unwrap();
    let t = cfg.tenant("acme").unwrap();
    let profiles = cfg.tenant_profiles(t);
    for (labels, view) in [
        (CDN, &s.observations()[0].domains[0].views[0]),
        (ORIGIN, &s.observations()[0].domains[0].views[1]),
    ] {
        let Budget::Bounded(want) = view_budget(h, "io", &view.id, &profiles) else {
            panic!("the default profiles are bounded");
        };
        check(
            &body,
            &format!(
                "keycanary_view_staleness_budget_seconds{{{labels}}} {}",
                number(want.as_secs_f64())
            ),
        );
    }
    // The edge's cached lifetime counts towards its S, not the origin's.
    let value = |labels: &str| -> f64 {
        let prefix = format!("keycanary_view_staleness_budget_seconds{{{labels}}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(value(CDN) > value(ORIGIN), "{body}");
    check(
        &body,
        "# TYPE keycanary_view_staleness_budget_unbounded gauge",
    );
    assert!(!body.contains("keycanary_view_staleness_budget_unbounded{"));
}

#[test]
fn unbounded_staleness_budget_has_its_own_family() {
    let text = r#"
[[profile]]
name = "forever"
refetch_on_unknown_kid = false
[[tenant]]
name = "acme"
client_profiles = ["forever"]
[[tenant.domain]]
name = "io"
issuer = "https://idp.example/io/acme"
[tenant.domain.login]
client_id = "c"
client_secret = { env = "S" }
[[tenant.domain.jwks]]
name = "cdn"
"#;
    let env = |name: &str| (name == "S").then(|| "x".to_owned());
    let cfg = Config::from_toml_str(
        text,
        "t.toml",
        &crate::config::SecretSource {
            base_dir: std::path::Path::new("."),
            env: &env,
        },
    )
    .unwrap();
    let body = render(&incident_with_history(), &cfg, BuildInfo::current());
    for labels in [CDN, ORIGIN] {
        check(
            &body,
            &format!(
                r#"keycanary_view_staleness_budget_unbounded{{{labels},profile="forever"}} 1"#
            ),
        );
    }
    assert!(
        !body
            .lines()
            .any(|l| l.starts_with("keycanary_view_staleness_budget_seconds{")),
        "{body}"
    );
}

#[test]
fn rotation_gate_for_the_current_signer() {
    let cfg = config();
    let mut s = incident_with_history();
    let now = Timestamp(2_500);
    let mut history = crate::detect::history::History::default();
    history.record(obs_mut(&mut s), Timestamp(2_000));
    let findings = findings_mut(&mut s).clone();
    s.judged(
        &cfg,
        "acme",
        None,
        findings.clone(),
        &history,
        Timestamp(1_000),
        now,
    );
    let want = rotation_gate(
        &cfg,
        &history,
        s.observation("acme"),
        &findings,
        "acme",
        None,
        now,
    );
    assert!(!want.safe, "k2 is missing on the cdn edge");
    let body = render(&s, &cfg, BuildInfo::current());
    check(&body, r#"keycanary_gate_safe{tenant="acme"} 0"#);
    check(
        &body,
        &format!(
            r#"keycanary_gate_blockers{{tenant="acme"}} {}"#,
            want.blocking.len()
        ),
    );
    assert!(!want.blocking.is_empty());
    // A healthy tenant: every view serves the signer, nothing open, settled for long.
    let mut healthy = s.clone();
    obs_mut(&mut healthy).domains[0].views[0] = view("cdn", ViewKind::Edge, None, &["k1", "k2"]);
    let mut history = crate::detect::history::History::default();
    history.record(obs_mut(&mut healthy), Timestamp(2_000));
    let later = Timestamp(2_000 + 30 * 86_400_000);
    let answer = rotation_gate(
        &cfg,
        &history,
        healthy.observation("acme"),
        &[],
        "acme",
        None,
        later,
    );
    assert!(answer.safe, "{answer:?}");
    healthy.judged(
        &cfg,
        "acme",
        None,
        vec![],
        &history,
        Timestamp(2_000),
        later,
    );
    let body = render(&healthy, &cfg, BuildInfo::current());
    check(&body, r#"keycanary_gate_safe{tenant="acme"} 1"#);
    check(&body, r#"keycanary_gate_blockers{tenant="acme"} 0"#);
}

#[test]
fn no_gate_samples_before_the_first_round() {
    let body = render(&Snapshot::default(), &config(), BuildInfo::current());
    check(&body, "# TYPE keycanary_gate_safe gauge");
    check(&body, "# TYPE keycanary_gate_blockers gauge");
    assert!(
        !body.lines().any(|l| l.starts_with("keycanary_gate_")),
        "{body}"
    );
}

#[test]
fn outbox_and_notification_counts() {
    let toml = crate::config::fixtures::TomlFixture::tenant("acme")
        .domain("io", "https://idp.example/io/acme")
        .to_string();
    let cfg = Config::from_toml_str(
        &format!(
            r#"{toml}
[alerting]
[[alerting.channel]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[alerting.route]]
channels = ["hook"]
"#
        ),
        "t.toml",
        &crate::config::SecretSource {
            base_dir: std::path::Path::new("."),
            env: &|_: &str| None,
        },
    )
    .unwrap();
    // Before the first commit: the families, no outbox samples, zero counters.
    let body = render(&Snapshot::default(), &cfg, BuildInfo::current());
    check(&body, "# TYPE keycanary_outbox_depth gauge");
    check(&body, "# TYPE keycanary_notifications_dead gauge");
    check(&body, "# TYPE keycanary_notifications_total counter");
    assert!(
        !body
            .lines()
            .any(|l| l.starts_with("keycanary_outbox_depth "))
    );
    for r in ["sent", "retried", "dead"] {
        check(
            &body,
            &format!(r#"keycanary_notifications_total{{channel="hook",result="{r}"}} 0"#),
        );
    }
    check(&body, "# TYPE keycanary_store_errors_total counter");
    check(&body, r#"keycanary_store_errors_total{writer="commit"} 0"#);
    check(
        &body,
        r#"keycanary_store_errors_total{writer="notifier"} 0"#,
    );
    let mut s = Snapshot::default();
    s.store.outbox_depth = Some(3);
    s.store.dead_letters = Some(1);
    s.store.commit_errors = 2;
    s.deliveries.add("hook", "sent");
    s.deliveries.add("hook", "sent");
    s.deliveries.add("old", "dead");
    let body = render(&s, &cfg, BuildInfo::current());
    check(&body, "keycanary_outbox_depth 3");
    check(&body, r#"keycanary_store_errors_total{writer="commit"} 2"#);
    check(&body, "keycanary_notifications_dead 1");
    check(
        &body,
        r#"keycanary_notifications_total{channel="hook",result="sent"} 2"#,
    );
    check(
        &body,
        r#"keycanary_notifications_total{channel="hook",result="dead"} 0"#,
    );
    // A channel removed by a reload keeps its counts.
    check(
        &body,
        r#"keycanary_notifications_total{channel="old",result="dead"} 1"#,
    );
    check(
        &body,
        r#"keycanary_notifications_total{channel="old",result="sent"} 0"#,
    );
}

/// `(le, value)` of the `_bucket` lines of `name` for the series with `labels`, in
/// output order, plus its `_sum` and `_count`.
fn histogram_lines(body: &str, name: &str, labels: &str) -> (Vec<(String, f64)>, f64, f64) {
    let bucket = format!("{name}_bucket{{{labels},le=\"");
    let buckets = body
        .lines()
        .filter_map(|l| l.strip_prefix(&bucket))
        .map(|rest| {
            let (le, value) = rest.split_once("\"} ").unwrap();
            (le.to_owned(), value.parse().unwrap())
        })
        .collect();
    let single = |suffix: &str| -> f64 {
        let prefix = format!("{name}{suffix}{{{labels}}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{body}"))
            .parse()
            .unwrap()
    };
    (buckets, single("_sum"), single("_count"))
}

#[test]
fn duration_histograms_accumulate_across_rounds() {
    // Three rounds of the incident: the io edge fetch takes 250 ms, 30 ms, then 12 s
    // (the origin and the login keep their durations).
    let mut s = incident();
    let obs = s.observations()[0].clone();
    for ms in [30, 12_000] {
        let mut o = obs.clone();
        o.domains[0].views[0].fetch.duration_ms = ms;
        s.durations.observe(&o, true);
    }
    let body = render(&s, &config(), BuildInfo::current());
    let (buckets, sum, count) = histogram_lines(&body, FETCH_DURATION, CDN);
    let want: Vec<(String, f64)> = [
        ("0.025", 0.0),
        ("0.1", 1.0),
        ("0.25", 2.0),
        ("0.5", 2.0),
        ("1", 2.0),
        ("2.5", 2.0),
        ("+Inf", 3.0),
    ]
    .iter()
    .map(|(le, n)| (le.to_string(), *n))
    .collect();
    assert_eq!(buckets, want, "{body}");
    assert_eq!(count, 3.0);
    assert!((sum - 12.28).abs() < 1e-9, "{sum}");
    let (buckets, sum, count) = histogram_lines(&body, FETCH_DURATION, ORIGIN);
    assert_eq!(buckets.last().unwrap(), &("+Inf".to_owned(), 3.0));
    assert_eq!((sum, count), (0.75, 3.0));
    let login = r#"tenant="acme",domain="io",location="lab""#;
    let (buckets, _, count) = histogram_lines(&body, LOGIN_DURATION, login);
    assert_eq!(buckets.last().unwrap().1, count);
    assert_eq!(count, 3.0);
    // A fresh snapshot after the incident's round keeps the histograms.
    let mut next = s.clone();
    next.judged(
        &config(),
        "acme",
        None,
        vec![],
        &crate::detect::history::History::default(),
        Timestamp(3_000),
        Timestamp(3_100),
    );
    assert_eq!(next.durations, s.durations);
}

#[test]
fn histogram_families_are_there_before_the_first_round() {
    let body = render(&Snapshot::default(), &config(), BuildInfo::current());
    for name in [FETCH_DURATION, LOGIN_DURATION] {
        check(&body, &format!("# TYPE {name} histogram"));
        assert!(!body.lines().any(|l| l.starts_with(name)), "{body}");
    }
}

#[test]
fn a_login_without_a_request_has_no_duration() {
    let mut obs = incident().observations()[0].clone();
    if let Some(login) = &mut obs.domains[0].login {
        login.fetch = None;
    }
    let kinds: Vec<DurationKind> = round_durations(&obs, false)
        .into_iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(kinds, [DurationKind::Fetch, DurationKind::Fetch]);
}

#[test]
fn fetch_durations_are_per_domain_unless_asked_per_view() {
    let obs = incident().observations()[0].clone();
    let domain = r#"tenant="acme",domain="io",location="lab""#;
    let mut by_domain = Snapshot::default();
    by_domain.durations.observe(&obs, false);
    let body = render(&by_domain, &config(), BuildInfo::current());
    let (buckets, sum, count) = histogram_lines(&body, FETCH_DURATION, domain);
    assert_eq!(buckets.len(), DURATION_BUCKETS.len() + 1, "{body}");
    assert_eq!(
        (count, sum),
        (2.0, 0.5),
        "both views' fetches in the domain's one series"
    );
    let series = |body: &str| {
        body.lines()
            .filter(|l| l.starts_with(&format!("{FETCH_DURATION}_count{{")))
            .count()
    };
    assert_eq!(series(&body), 1, "{body}");
    let mut by_view = Snapshot::default();
    by_view.durations.observe(&obs, true);
    let body = render(&by_view, &config(), BuildInfo::current());
    assert_eq!(series(&body), 2, "one per view: {body}");
    histogram_lines(&body, FETCH_DURATION, CDN);
}

#[test]
fn kids_are_cut_on_a_character_boundary() {
    assert_eq!(cut(&"é".repeat(100)).len(), 128);
}

#[test]
fn a_histogram_samples_as_its_buckets_sum_and_count() {
    let mut h = Histogram::default();
    for v in [0.02, 0.3, 20.0] {
        h.observe(v);
    }
    let labels: Labels = vec![("tenant", "acme".to_owned())];
    let sample = super::process::sample(&h, labels.clone());
    assert_eq!(sample.labels, labels);
    assert_eq!(sample.buckets, h.buckets());
    assert_eq!((sample.sum, sample.count), (h.sum(), 3));
}

/// A scrape copies each tenant's text rendered after its judgement: the body is the same
/// with that text as without it, and equal to the families OTLP exports, encoded.
#[test]
fn rendered_tenant_text_is_what_the_families_say() {
    let mut s = incident();
    let config = config();
    let build = BuildInfo::current();
    let fresh = render(&s, &config, build);
    assert_eq!(fresh, encode(&families(&s, &config, build)));
    let names: Vec<String> = s.tenants.keys().cloned().collect();
    assert!(!names.is_empty());
    for t in &names {
        let text = render_tenant(&s, &config, t);
        assert!(text.lines.iter().any(|l| !l.is_empty()), "{t}: {text:?}");
        s.tenants.get_mut(t).unwrap().exposition = Some(std::sync::Arc::new(text));
    }
    assert_eq!(render(&s, &config, build), fresh);
    // Stale text is what a scrape serves until the daemon renders again: it is used.
    let t = &names[0];
    s.tenants.get_mut(t).unwrap().exposition =
        Some(std::sync::Arc::new(crate::snapshot::TenantExposition {
            lines: vec!["marker_line 1\n".into()],
        }));
    let body = render(&s, &config, build);
    assert!(
        body.contains("# TYPE keycanary_view_up gauge\nmarker_line 1\n"),
        "{body}"
    );
    // A split scrape writes only the selected tenants' text and families.
    let only = Selection::parse(Some(&format!("tenant={t}&name[]=keycanary_view_up"))).unwrap();
    assert_eq!(
        render_selected(&s, &config, build, &only),
        "# HELP keycanary_view_up 1 when the JWKS view answered 2xx with at least one key in the latest round, else 0.\n\
         # TYPE keycanary_view_up gauge\nmarker_line 1\n"
    );
}

/// The facts the global gate reads back: since when each view serves each watched kid (a
/// kid found signing at the first look is 0), the view's open states, an unsettled edge's
/// turnover and the tenant's latest round; read back by `detect::gate::global`, they give
/// the local gate's view blockers.
#[test]
fn gate_facts_for_the_global_gate() {
    use crate::detect::gate::global::{self, Sample};
    let cfg = config();
    let mut s = incident_with_history();
    findings_mut(&mut s).push(Finding::new(
        crate::model::Code::StaleEdge,
        Subject::view(
            "acme",
            "io",
            &crate::model::ViewId {
                path: "cdn".into(),
                edge: None,
            },
        ),
        "stale",
    ));
    let body = render(&s, &cfg, BuildInfo::current());
    // k2 signs in the first round and the origin serves it: found signing there (0); the
    // edge lacks it, so it has no sample and its turnover (max-age 300 from the round at
    // 2 s, minus Age 42) is exported.
    check(
        &body,
        &format!(r#"keycanary_view_kid_visible_since_timestamp_seconds{{{ORIGIN},kid="k2"}} 0"#),
    );
    assert!(
        !body.contains(&format!(
            r#"keycanary_view_kid_visible_since_timestamp_seconds{{{CDN},kid="k2"}}"#
        )),
        "{body}"
    );
    check(
        &body,
        &format!(r#"keycanary_view_kid_visible_since_timestamp_seconds{{{CDN},kid="k1"}} 2"#),
    );
    check(
        &body,
        &format!(r#"keycanary_view_state{{{CDN},state="stale_edge"}} 1"#),
    );
    assert!(
        !body.contains(&format!(r#"keycanary_view_state{{{ORIGIN}"#)),
        "{body}"
    );
    assert!(!body.contains(r#"state="error_cached""#), "{body}");
    check(
        &body,
        &format!("keycanary_view_edge_turnover_timestamp_seconds{{{CDN}}} 260"),
    );
    assert!(!body.contains(&format!(
        "keycanary_view_edge_turnover_timestamp_seconds{{{ORIGIN}}}"
    )));
    check(
        &body,
        r#"keycanary_tenant_last_round_timestamp_seconds{tenant="acme",location="lab"} 2"#,
    );

    // Parsed back as Prometheus would serve them, the global gate over location "lab"
    // blocks on the same views as the local gate does.
    let mut samples = Vec::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        let mut map: std::collections::BTreeMap<String, String> = labels
            .trim_end_matches('}')
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        map.insert("__name__".into(), name.into());
        samples.push(Sample {
            labels: map,
            value: value.parse().unwrap(),
        });
    }
    let now = Timestamp(3_000);
    let locations = ["lab".to_owned()];
    let remote = global::rotation(
        &samples,
        &global::Scope {
            tenant: "acme",
            kid: "k2",
            locations: &locations,
            margin: cfg.settings.gate_margin,
            max_age: std::time::Duration::from_secs(90),
            now,
        },
    );
    let mut history = crate::detect::history::History::default();
    history.record(&s.observations()[0].clone(), Timestamp(2_000));
    let local = rotation_gate(
        &cfg,
        &history,
        s.observation("acme"),
        &s.tenants["acme"].findings,
        "acme",
        Some("k2"),
        now,
    );
    let strip = |a: &crate::detect::gate::GateAnswer| -> Vec<(crate::model::Code, Option<String>, Option<Timestamp>)> {
        a.blocking
            .iter()
            .filter(|b| b.code != crate::model::Code::AlgNotAllowed)
            .map(|b| (b.code, b.subject.view_label(), b.ready_at))
            .collect()
    };
    assert_eq!(strip(&remote), strip(&local), "{remote:#?}\n{local:#?}");
    assert!(
        strip(&local)
            .iter()
            .any(|(c, v, r)| *c == crate::model::Code::KidMissing
                && v.as_deref() == Some("cdn")
                && r.is_some()),
        "{local:#?}"
    );
    assert!(
        strip(&local)
            .iter()
            .any(|(c, _, _)| *c == crate::model::Code::StaleEdge)
    );
    assert!(
        remote
            .blocking
            .iter()
            .all(|b| b.location.as_deref() == Some("lab"))
    );
    assert!(!remote.safe);
}
