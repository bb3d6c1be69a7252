//! Tests of the alert lifecycle: [`step`] driven round by round through timelines
//! (thresholds, `for`, reminders, grouping, silences, maintenance, replay), and the
//! tenant parts of [`AlertState`].

use super::*;
use crate::alert::silence::{MaintenanceWindow, Silence, SubjectPattern};
use crate::model::{Code, Finding, Severity, Subject, Timestamp, ViewId};
use std::time::Duration;

const T0: i64 = 1_795_651_200; // 2026-11-26T00:00:00Z

/// Drives `step` round by round at a fixed interval, keeping every notification.
struct Sim {
    state: AlertState,
    policy: AlertPolicy,
    silences: Vec<Silence>,
    now: Timestamp,
    interval: Duration,
    sent: Vec<Notification>,
}

impl Sim {
    fn new(policy: AlertPolicy) -> Sim {
        Sim {
            state: AlertState::default(),
            policy,
            silences: Vec::new(),
            now: Timestamp::from_secs(T0),
            interval: Duration::from_secs(30),
            sent: Vec::new(),
        }
    }
    /// One round at `self.now` with these findings; then the clock moves one interval.
    fn round(&mut self, findings: &[Finding]) -> Vec<Notification> {
        let (out, next) = step(
            &self.state,
            findings,
            &self.policy,
            &self.silences,
            self.now,
        );
        // The state survives a JSON round trip unchanged (it is persisted that way).
        let json = serde_json::to_string(&next).unwrap();
        assert_eq!(serde_json::from_str::<AlertState>(&json).unwrap(), next);
        self.state = next;
        self.now = self.now.plus(self.interval);
        self.sent.extend(out.clone());
        out
    }
    /// Runs a pattern: `F` = these findings present, `.` = none.
    fn pattern(&mut self, pattern: &str, findings: &[Finding]) -> Vec<Notification> {
        let mut out = Vec::new();
        for c in pattern.chars() {
            out.extend(self.round(if c == 'F' { findings } else { &[] }));
        }
        out
    }
    fn statuses(&self) -> Vec<Status> {
        self.sent.iter().map(|n| n.status).collect()
    }
}

fn kid_missing(tenant: &str, domain: &str, path: &str) -> Finding {
    let view = ViewId {
        path: path.into(),
        edge: None,
    };
    Finding::new(
        Code::KidMissing,
        Subject::view(tenant, domain, &view).with_kid(Some("k2")),
        "kid k2 of a fresh token is not in this view",
    )
}

fn stale_edge(tenant: &str, domain: &str) -> Finding {
    Finding::new(
        Code::StaleEdge,
        Subject::domain(tenant, domain),
        "edge differs from origin (missing k2): Age 120 s",
    )
}

fn silence(tenant: &str, starts: i64, ends: i64) -> Silence {
    Silence {
        id: "s1".into(),
        tenant: Some(tenant.into()),
        code: None,
        severity: None,
        subject: None,
        starts: Timestamp::from_secs(starts),
        ends: Timestamp::from_secs(ends),
        created_by: "test".into(),
        comment: String::new(),
    }
}

/// The promise: defaults page within 2 minutes of the first bad token at a 30 s
/// interval. Worst case the token goes bad just after a round started, so the first
/// round that sees it is one interval later; the page goes out `failure_threshold - 1`
/// rounds after that.
#[test]
fn defaults_page_within_two_minutes_at_30s() {
    let policy = AlertPolicy::default();
    let mut sim = Sim::new(policy);
    assert_eq!(sim.interval, Duration::from_secs(30));
    let bad_token_at = sim.now.plus(Duration::from_millis(1)); // just missed round 0
    let f = [kid_missing("acme", "app", "cdn")];
    let mut rounds = 0;
    let page = loop {
        let findings: &[Finding] = if sim.now >= bad_token_at { &f } else { &[] };
        rounds += 1;
        if let Some(n) = sim.round(findings).into_iter().next() {
            break n;
        }
        assert!(rounds < 100, "never paged");
    };
    assert_eq!(page.status, Status::Firing);
    // Round 1 (t=0) clean, round 2 (t=30 s) first sees it, round 3 (t=60 s) pages.
    assert_eq!(rounds, 3);
    let latency = Duration::from_millis((page.at.0 - bad_token_at.0) as u64);
    assert!(latency < Duration::from_secs(60), "{latency:?}");
    // Even if the round itself takes its whole default timeout (10 s) before the
    // findings reach `step`, the page is out well inside the 2-minute promise.
    assert!(latency + Duration::from_secs(10) < Duration::from_secs(120));
}

#[test]
fn one_bad_round_is_pending_two_fire() {
    let mut sim = Sim::new(AlertPolicy::default());
    let f = [kid_missing("acme", "app", "cdn")];
    assert!(sim.round(&f).is_empty());
    assert_eq!(sim.state.episodes.len(), 1);
    assert!(!sim.state.episodes[0].firing);
    let out = sim.round(&f);
    assert_eq!(out.len(), 1);
    let n = &out[0];
    assert_eq!(n.status, Status::Firing);
    assert_eq!(n.severity, Severity::Critical);
    assert_eq!(n.since, Timestamp::from_secs(T0));
    assert_eq!(n.at, Timestamp::from_secs(T0 + 30));
    assert_eq!(n.dedup_key, format!("acme/{}", (T0 + 30) * 1000));
    assert_eq!(n.id, format!("{}/firing/{}", n.dedup_key, (T0 + 30) * 1000));
    assert_eq!(
        n.next_reminder,
        Some(Timestamp::from_secs(T0 + 30 + 4 * 3600))
    );
    assert_eq!(n.findings.len(), 1);
    assert_eq!(n.findings[0].finding, f[0]);
    // Still failing: nothing new.
    assert!(sim.pattern("FFFF", &f).is_empty());
}

#[test]
fn flapping_inside_thresholds_pages_once() {
    let f = [kid_missing("acme", "app", "cdn")];
    // fail/ok/fail: two bad rounds in one episode (one OK round does not close it).
    let mut sim = Sim::new(AlertPolicy::default());
    sim.pattern("F.F.F.F.F.F.", &f);
    assert_eq!(sim.statuses(), [Status::Firing]);
    // Two OK rounds in a row end it.
    sim.pattern("..", &f);
    assert_eq!(sim.statuses(), [Status::Firing, Status::Resolved]);
}

#[test]
fn isolated_blips_never_page() {
    let mut sim = Sim::new(AlertPolicy::default());
    let f = [kid_missing("acme", "app", "cdn")];
    sim.pattern("F..F..F..F..", &f);
    assert!(sim.sent.is_empty());
    assert!(sim.state.episodes.is_empty());
    assert!(sim.state.incidents.is_empty());
}

#[test]
fn resolves_after_success_threshold_and_only_if_paged() {
    let f = [kid_missing("acme", "app", "cdn")];
    let mut sim = Sim::new(AlertPolicy::default());
    sim.pattern("FF.", &f);
    assert_eq!(sim.statuses(), [Status::Firing]);
    let out = sim.round(&[]);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.status, Status::Resolved);
    assert_eq!(r.dedup_key, sim.sent[0].dedup_key, "same incident key");
    assert_ne!(r.id, sim.sent[0].id);
    assert_eq!(r.severity, Severity::Critical);
    assert_eq!(r.next_reminder, None);
    assert_eq!(r.findings[0].resolved_at, Some(r.at));
    assert_eq!(r.findings[0].last_seen, Timestamp::from_secs(T0 + 30));
    assert_eq!(sim.state, AlertState::default());

    let mut quiet = Sim::new(AlertPolicy {
        send_on_resolved: false,
        ..AlertPolicy::default()
    });
    quiet.pattern("FF....", &f);
    assert_eq!(quiet.statuses(), [Status::Firing]);
    assert!(quiet.state.incidents.is_empty());

    // A new bad spell after resolving is a new incident with a new key.
    sim.pattern("FF", &f);
    assert_eq!(sim.sent.len(), 3);
    assert_ne!(sim.sent[2].dedup_key, sim.sent[0].dedup_key);
}

#[test]
fn success_and_failure_thresholds_are_configurable() {
    let f = [kid_missing("acme", "app", "cdn")];
    let mut sim = Sim::new(AlertPolicy {
        failure_threshold: 1,
        success_threshold: 3,
        ..AlertPolicy::default()
    });
    assert_eq!(
        sim.round(&f).len(),
        1,
        "threshold 1 pages on the first round"
    );
    sim.pattern("..F...", &f);
    assert_eq!(sim.statuses(), [Status::Firing, Status::Resolved]);
    assert_eq!(
        sim.sent[1].at,
        Timestamp::from_secs(T0 + 6 * 30),
        "resolved on the third OK round after the last bad one"
    );
}

#[test]
fn for_duration_delays_firing() {
    let f = [kid_missing("acme", "app", "cdn")];
    let mut sim = Sim::new(AlertPolicy {
        for_duration: Duration::from_secs(120),
        ..AlertPolicy::default()
    });
    // Rounds at 0, 30, 60, 90 are pending; 120 s after opening it fires.
    assert!(sim.pattern("FFFF", &f).is_empty());
    let out = sim.round(&f);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].at, Timestamp::from_secs(T0 + 120));
    // `for` reached on an OK round does not fire: it waits for a bad one.
    let mut sim = Sim::new(AlertPolicy {
        for_duration: Duration::from_secs(120),
        ..AlertPolicy::default()
    });
    sim.pattern("FFFF.", &f);
    assert!(sim.sent.is_empty());
    assert_eq!(sim.round(&f).len(), 1);
}

#[test]
fn reminders_every_repeat_interval_while_firing() {
    let f = [kid_missing("acme", "app", "cdn")];
    let mut sim = Sim::new(AlertPolicy::default());
    sim.pattern("FF", &f);
    // 9 h more of failing at 30 s rounds: reminders at +4 h and +8 h.
    for _ in 0..(9 * 120) {
        sim.round(&f);
    }
    assert_eq!(
        sim.statuses(),
        [Status::Firing, Status::Reminder, Status::Reminder]
    );
    let fired = sim.sent[0].at;
    assert_eq!(sim.sent[1].at, fired.plus_secs(4 * 3600));
    assert_eq!(sim.sent[2].at, fired.plus_secs(8 * 3600));
    assert!(
        sim.sent
            .iter()
            .all(|n| n.dedup_key == sim.sent[0].dedup_key)
    );

    let mut off = Sim::new(AlertPolicy {
        repeat_interval: Duration::ZERO,
        ..AlertPolicy::default()
    });
    off.pattern("FF", &f);
    for _ in 0..(9 * 120) {
        off.round(&f);
    }
    assert_eq!(off.statuses(), [Status::Firing]);
    assert_eq!(off.sent[0].next_reminder, None);
}

#[test]
fn one_page_per_tenant_incident_not_per_view() {
    let acme = [
        kid_missing("acme", "app", "cdn"),
        kid_missing("acme", "app", "edge"),
        kid_missing("acme", "io", "cdn"),
        stale_edge("acme", "io"),
    ];
    let beta = [kid_missing("beta", "app", "cdn")];
    let all: Vec<Finding> = acme.iter().chain(&beta).cloned().collect();
    let mut sim = Sim::new(AlertPolicy::default());
    let out = sim.pattern("FF", &all);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].group.tenant, "acme");
    assert_eq!(out[0].findings.len(), 4);
    assert_eq!(
        out[0].codes(),
        [Code::KidMissing, Code::StaleEdge],
        "most severe first"
    );
    assert_eq!(out[1].group.tenant, "beta");
    assert_eq!(out[1].findings.len(), 1);

    let mut by_code = Sim::new(AlertPolicy {
        group_by: GroupBy::TenantCode,
        ..AlertPolicy::default()
    });
    let out = by_code.pattern("FF", &all);
    let groups: Vec<String> = out.iter().map(|n| n.group.to_string()).collect();
    assert_eq!(
        groups,
        ["acme/kid_missing", "acme/stale_edge", "beta/kid_missing"]
    );
    assert!(out[0].dedup_key.starts_with("acme/kid_missing/"));
}

#[test]
fn incident_pages_again_only_when_it_gets_worse() {
    let mut sim = Sim::new(AlertPolicy::default());
    let stale = stale_edge("acme", "io");
    let km1 = kid_missing("acme", "io", "cdn");
    let km2 = kid_missing("acme", "app", "cdn");
    sim.pattern("FF", std::slice::from_ref(&stale));
    assert_eq!(sim.sent.len(), 1);
    assert_eq!(sim.sent[0].severity, Severity::High);
    // kid_missing joins: critical and a new code, so an update with the same key.
    let both = [stale.clone(), km1.clone()];
    sim.pattern("FF", &both);
    assert_eq!(sim.statuses(), [Status::Firing, Status::Firing]);
    assert_eq!(sim.sent[1].severity, Severity::Critical);
    assert_eq!(sim.sent[1].dedup_key, sim.sent[0].dedup_key);
    assert_eq!(sim.sent[1].findings.len(), 2);
    // Another view with the same code: folded in silently.
    sim.pattern("FFFF", &[stale.clone(), km1.clone(), km2.clone()]);
    assert_eq!(sim.sent.len(), 2);
    // kid_missing recovers, then comes back within the same incident: nothing new.
    sim.pattern("FFF", std::slice::from_ref(&stale));
    sim.pattern("FF", &both);
    assert_eq!(sim.sent.len(), 2);
    // Everything recovers: one resolve listing every member that fired.
    sim.pattern("..", &[]);
    assert_eq!(sim.statuses().last(), Some(&Status::Resolved));
    let r = sim.sent.last().unwrap();
    assert_eq!(r.severity, Severity::Critical);
    assert_eq!(r.findings.len(), 3);
    assert!(r.findings.iter().all(|m| m.resolved_at.is_some()));
}

#[test]
fn pending_member_keeps_the_incident_open() {
    let mut sim = Sim::new(AlertPolicy::default());
    let a = kid_missing("acme", "app", "cdn");
    let b = kid_missing("acme", "io", "cdn");
    sim.pattern("FF", std::slice::from_ref(&a));
    // a recovers while b flaps below its threshold: b is bad, so no resolve yet.
    sim.round(std::slice::from_ref(&b));
    sim.round(&[]);
    assert_eq!(sim.statuses(), [Status::Firing]);
    sim.pattern("..", &[]);
    assert_eq!(sim.statuses(), [Status::Firing, Status::Resolved]);
}

#[test]
fn silence_mutes_but_keeps_tracking() {
    let f = [kid_missing("acme", "app", "cdn")];
    let mut sim = Sim::new(AlertPolicy::default());
    // Silenced for the first 5 minutes.
    sim.silences = vec![silence("acme", T0, T0 + 300)];
    for _ in 0..10 {
        sim.round(&f); // rounds at 0..270 s
    }
    assert!(sim.sent.is_empty(), "muted while the silence lasts");
    assert_eq!(sim.state.incidents.len(), 1, "but the incident is tracked");
    let out = sim.round(&f); // 300 s: the silence has ended, still failing
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Firing);
    assert_eq!(
        out[0].since,
        Timestamp::from_secs(T0),
        "since the first bad round"
    );
    assert_eq!(out[0].at, Timestamp::from_secs(T0 + 300));
}

#[test]
fn incident_that_ends_while_silenced_never_pages() {
    let f = [kid_missing("acme", "app", "cdn")];
    let mut sim = Sim::new(AlertPolicy::default());
    sim.silences = vec![silence("acme", T0, T0 + 3600)];
    sim.pattern("FFFF....", &f);
    assert!(sim.sent.is_empty());
    assert!(sim.state.incidents.is_empty());
}

#[test]
fn a_page_that_went_out_is_resolved_even_under_a_silence() {
    let f = [kid_missing("acme", "app", "cdn")];
    let mut sim = Sim::new(AlertPolicy::default());
    sim.pattern("FF", &f);
    sim.silences = vec![silence("acme", T0, T0 + 3600)];
    sim.pattern("FF..", &f);
    assert_eq!(
        sim.statuses(),
        [Status::Firing, Status::Resolved],
        "an open PagerDuty incident must not be left dangling"
    );
}

#[test]
fn silence_hides_only_the_members_it_matches() {
    let stale = stale_edge("acme", "io");
    let km = kid_missing("acme", "app", "cdn");
    let mut sim = Sim::new(AlertPolicy::default());
    sim.silences = vec![Silence {
        code: Some(Code::StaleEdge),
        subject: Some(SubjectPattern::parse("domain=io*").unwrap()),
        ..silence("acme", T0, T0 + 3600)
    }];
    let out = sim.pattern("FF", &[stale, km.clone()]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].findings.len(), 1);
    assert_eq!(out[0].findings[0].finding, km);
}

#[test]
fn silenced_reminder_goes_out_when_the_silence_ends() {
    let f = [kid_missing("acme", "app", "cdn")];
    let mut sim = Sim::new(AlertPolicy {
        repeat_interval: Duration::from_secs(600),
        ..AlertPolicy::default()
    });
    sim.pattern("FF", &f); // page at 30 s; reminder due at 630 s
    sim.silences = vec![silence("acme", T0 + 600, T0 + 900)];
    for _ in 0..28 {
        sim.round(&f); // rounds up to 870 s
    }
    assert_eq!(sim.statuses(), [Status::Firing]);
    let out = sim.round(&f); // 900 s
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Reminder);
}

#[test]
fn maintenance_window_mutes_its_tenants() {
    let acme = kid_missing("acme", "app", "cdn");
    let beta = kid_missing("beta", "app", "cdn");
    let mut sim = Sim::new(AlertPolicy {
        maintenance: vec![MaintenanceWindow {
            tenants: vec!["acme".into()],
            starts: Timestamp::from_secs(T0),
            ends: Timestamp::from_secs(T0 + 120),
            comment: "CDN migration".into(),
        }],
        ..AlertPolicy::default()
    });
    let out = sim.pattern("FFFF", &[acme.clone(), beta]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].group.tenant, "beta");
    let out = sim.round(std::slice::from_ref(&acme)); // 120 s: window over
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].group.tenant, "acme");
}

#[test]
fn replay_is_deterministic_and_input_state_untouched() {
    let f = [kid_missing("acme", "app", "cdn"), stale_edge("acme", "io")];
    let policy = AlertPolicy::default();
    let now = Timestamp::from_secs(T0);
    let (_, s1) = step(&AlertState::default(), &f, &policy, &[], now);
    let before = s1.clone();
    let a = step(&s1, &f, &policy, &[], now.plus_secs(30));
    let b = step(&s1, &f, &policy, &[], now.plus_secs(30));
    assert_eq!(a, b);
    assert_eq!(s1, before);
    assert_eq!(a.0.len(), 1);
}

#[test]
fn duplicate_keys_in_a_round_count_once() {
    let f = kid_missing("acme", "app", "cdn");
    let mut sim = Sim::new(AlertPolicy::default());
    sim.round(&[f.clone(), f.clone()]);
    assert_eq!(sim.state.episodes.len(), 1);
    assert_eq!(sim.state.episodes[0].bad_rounds, 1);
}

/// A state made by `step` itself, grouped by tenant and code: `acme` fires with two codes
/// (two incidents), `zeta` with one, and `beta` has a pending episode and no incident.
fn three_tenants() -> AlertState {
    let mut sim = Sim::new(AlertPolicy {
        group_by: GroupBy::TenantCode,
        ..AlertPolicy::default()
    });
    let firing = [
        kid_missing("acme", "app", "cdn"),
        stale_edge("acme", "app"),
        kid_missing("zeta", "io", "cdn"),
    ];
    sim.round(&firing);
    sim.round(&firing);
    let mut with_beta = firing.to_vec();
    with_beta.push(stale_edge("beta", "io"));
    sim.round(&with_beta);
    sim.state
}

/// `tenant/code` of each episode and the group of each incident, in order.
fn shape(s: &AlertState) -> (Vec<String>, Vec<String>) {
    let episodes = s
        .episodes
        .iter()
        .map(|e| format!("{}/{}", e.finding.subject.tenant, e.finding.code))
        .collect();
    let incidents = s.incidents.iter().map(|i| i.group.to_string()).collect();
    (episodes, incidents)
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn the_fixture_state_has_three_tenants() {
    let state = three_tenants();
    assert_eq!(
        shape(&state),
        (
            strings(&[
                "acme/kid_missing",
                "zeta/kid_missing",
                "acme/stale_edge",
                "beta/stale_edge"
            ]),
            strings(&["acme/kid_missing", "acme/stale_edge", "zeta/kid_missing"]),
        )
    );
}

#[test]
fn tenant_part_is_the_tenants_episodes_and_incidents() {
    let state = three_tenants();
    let check = |tenant: &str, episodes: &[&str], incidents: &[&str]| {
        let part = state.tenant_part(tenant);
        assert_eq!(
            shape(&part),
            (strings(episodes), strings(incidents)),
            "{tenant}"
        );
        // The entries themselves, unchanged.
        assert!(part.episodes.iter().all(|e| state.episodes.contains(e)));
        assert!(part.incidents.iter().all(|i| state.incidents.contains(i)));
    };
    check(
        "acme",
        &["acme/kid_missing", "acme/stale_edge"],
        &["acme/kid_missing", "acme/stale_edge"],
    );
    // A pending episode belongs to its tenant before any incident does.
    check("beta", &["beta/stale_edge"], &[]);
    check("zeta", &["zeta/kid_missing"], &["zeta/kid_missing"]);
    // Tenant names match exactly, never as a prefix.
    check("acm", &[], &[]);
    check("nobody", &[], &[]);
    assert_eq!(
        AlertState::default().tenant_part("acme"),
        AlertState::default()
    );
}

#[test]
fn with_tenant_part_replaces_that_tenants_part_and_keeps_lists_sorted() {
    let state = three_tenants();
    let without_acme = state.with_tenant_part("acme", AlertState::default());
    let check = |base: &AlertState,
                 tenant: &str,
                 part: AlertState,
                 episodes: &[&str],
                 incidents: &[&str]| {
        let next = base.with_tenant_part(tenant, part);
        assert_eq!(
            shape(&next),
            (strings(episodes), strings(incidents)),
            "{tenant}"
        );
        let ordered = |e: &Episode| (e.finding.code, e.finding.subject.clone());
        assert!(
            next.episodes
                .windows(2)
                .all(|w| ordered(&w[0]) <= ordered(&w[1]))
        );
        assert!(next.incidents.windows(2).all(|w| w[0].group <= w[1].group));
    };
    // An empty part removes the tenant and nothing else.
    check(
        &state,
        "acme",
        AlertState::default(),
        &["zeta/kid_missing", "beta/stale_edge"],
        &["zeta/kid_missing"],
    );
    check(
        &state,
        "beta",
        AlertState::default(),
        &["acme/kid_missing", "zeta/kid_missing", "acme/stale_edge"],
        &["acme/kid_missing", "acme/stale_edge", "zeta/kid_missing"],
    );
    // A part put back goes in sorted among the other tenants' entries.
    check(
        &without_acme,
        "acme",
        state.tenant_part("acme"),
        &[
            "acme/kid_missing",
            "zeta/kid_missing",
            "acme/stale_edge",
            "beta/stale_edge",
        ],
        &["acme/kid_missing", "acme/stale_edge", "zeta/kid_missing"],
    );
    // The part goes in as it is: it is not filtered by `tenant`.
    check(
        &without_acme,
        "beta",
        state.tenant_part("zeta"),
        &["zeta/kid_missing", "zeta/kid_missing"],
        &["zeta/kid_missing", "zeta/kid_missing"],
    );
    // Every tenant's own part back (or an unknown tenant's empty one) changes nothing.
    for tenant in ["acme", "beta", "zeta", "nobody"] {
        let part = state.tenant_part(tenant);
        assert_eq!(state.with_tenant_part(tenant, part), state, "{tenant}");
    }
}

#[test]
fn by_tenant_splits_into_every_tenants_part_and_back() {
    let state = three_tenants();
    let parts = state.clone().by_tenant();
    let names: Vec<&str> = parts.keys().map(String::as_str).collect();
    assert_eq!(names, ["acme", "beta", "zeta"]);
    for (tenant, part) in &parts {
        assert_eq!(part, &state.tenant_part(tenant), "{tenant}");
        assert!(!part.is_empty());
    }
    let mut joined = AlertState::default();
    for (tenant, part) in parts {
        joined = joined.with_tenant_part(&tenant, part);
    }
    assert_eq!(joined, state, "the parts put back together are the state");
    assert!(AlertState::default().by_tenant().is_empty());
}

#[test]
fn a_retired_tenant_resolves_what_paged_at_once_with_the_reason() {
    let f = [kid_missing("acme", "app", "cdn"), stale_edge("acme", "app")];
    // (rounds before the tenant goes, policy, resolved notifications expected)
    let check = |pattern: &str, policy: AlertPolicy, want: usize| {
        let mut sim = Sim::new(policy.clone());
        sim.pattern(pattern, &f);
        let (out, next) = retire(
            &sim.state,
            "tenant removed from the inventory",
            &policy,
            sim.now,
        );
        assert_eq!(
            next,
            AlertState::default(),
            "{pattern}: nothing of it is kept"
        );
        assert_eq!(out.len(), want, "{pattern}: {out:#?}");
        for n in &out {
            assert_eq!(n.status, Status::Resolved);
            assert_eq!(
                n.reason.as_deref(),
                Some("tenant removed from the inventory")
            );
            assert!(
                sim.sent.iter().any(|s| s.dedup_key == n.dedup_key),
                "an incident that paged"
            );
            assert!(
                n.findings.iter().all(|m| m.resolved_at == Some(sim.now)),
                "{n:#?}"
            );
            let json = serde_json::to_string(n).unwrap();
            assert_eq!(serde_json::from_str::<Notification>(&json).unwrap(), *n);
        }
    };
    check("FF", AlertPolicy::default(), 1);
    check("FFF.", AlertPolicy::default(), 1);
    // Pending, never paged: nothing to resolve.
    check("F", AlertPolicy::default(), 0);
    check("", AlertPolicy::default(), 0);
    check(
        "FF",
        AlertPolicy {
            send_on_resolved: false,
            ..AlertPolicy::default()
        },
        0,
    );
    check(
        "FF",
        AlertPolicy {
            group_by: GroupBy::TenantCode,
            ..AlertPolicy::default()
        },
        2,
    );
    // A resolution by the findings clearing says no reason.
    let mut sim = Sim::new(AlertPolicy::default());
    let out = sim.pattern("FF..", &f);
    assert_eq!(out.last().map(|n| n.reason.clone()), Some(None));
}
