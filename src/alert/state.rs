//! The alert lifecycle as a pure state machine: findings of one round + the previous
//! [`AlertState`] + `now` → notifications + the next state.
//!
//! No I/O, no clock, no `async`, no `Result`: [`step`] cannot fail, and replaying the same
//! rounds gives the same notifications (ids included), so the outbox can redeliver safely.
//! It does not render, route or send anything; `channel` and `route` do that.
//!
//! Two levels of state:
//! - an [`Episode`] per finding key (code + subject): opens on the first round the finding
//!   is present, *fires* once it has been present for `failure_threshold` rounds of the
//!   episode and `for` has passed since it opened, and closes after `success_threshold`
//!   consecutive rounds without it. Fewer OK rounds do not end the episode, which is what
//!   makes flapping inside the thresholds one page instead of a page per flap.
//! - an [`Incident`] per group (tenant, or tenant + code): opens when a member episode
//!   fires, pages once, pages again only when it gets worse (a new code or a higher
//!   severity among its firing members), reminds every `repeat_interval`, and resolves
//!   when none of its members has an open episode.
//!
//! Silences and maintenance windows hide firing members from notifications but never stop
//! the tracking: an incident that fired while muted pages as soon as it is no longer muted.

use crate::alert::silence::{MaintenanceWindow, Silence, is_muted};
use crate::model::{Code, Finding, Severity, Subject, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// How findings turn into pages. Built from `[alerting]`; holds no runtime state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPolicy {
    /// Rounds with the finding present (within one episode) before it can fire. At least 1.
    pub failure_threshold: u32,
    /// Consecutive rounds without the finding that close its episode. At least 1.
    pub success_threshold: u32,
    /// How long after the episode opened it may fire, at the earliest (`for`).
    pub for_duration: Duration,
    /// Reminder period while an incident fires; zero turns reminders off.
    pub repeat_interval: Duration,
    /// Send a resolved notification for incidents that paged.
    pub send_on_resolved: bool,
    pub group_by: GroupBy,
    pub maintenance: Vec<MaintenanceWindow>,
}

impl Default for AlertPolicy {
    /// Pages two rounds after the first bad one: ≤ 60 s at the default 30 s interval.
    fn default() -> Self {
        AlertPolicy {
            failure_threshold: 2,
            success_threshold: 2,
            for_duration: Duration::ZERO,
            repeat_interval: Duration::from_secs(4 * 3600),
            send_on_resolved: true,
            group_by: GroupBy::Tenant,
            maintenance: Vec::new(),
        }
    }
}

/// What one incident (one page) covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One incident per tenant, whatever broke.
    Tenant,
    /// One incident per tenant and finding code.
    TenantCode,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Tenant => "tenant",
            GroupBy::TenantCode => "tenant_code",
        }
    }
}

/// The key of an incident.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    pub tenant: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<Code>,
}

impl GroupKey {
    pub fn of(finding: &Finding, group_by: GroupBy) -> GroupKey {
        GroupKey {
            tenant: finding.subject.tenant.clone(),
            code: match group_by {
                GroupBy::Tenant => None,
                GroupBy::TenantCode => Some(finding.code),
            },
        }
    }
}

impl fmt::Display for GroupKey {
    /// `acme` or `acme/kid_missing`; tenant names never contain `/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tenant)?;
        if let Some(c) = self.code {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// Everything the machine remembers between rounds. Plain data, serialisable (the store
/// persists it as JSON); both lists are kept sorted by their keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    pub episodes: Vec<Episode>,
    pub incidents: Vec<Incident>,
}

/// One finding key's current bad spell, from its first bad round until it has been OK for
/// `success_threshold` rounds in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// The latest occurrence (message and severity are refreshed every bad round).
    pub finding: Finding,
    /// The round the episode opened.
    pub since: Timestamp,
    /// The latest round the finding was present.
    pub last_seen: Timestamp,
    /// Rounds in this episode with the finding present (not necessarily consecutive).
    pub bad_rounds: u32,
    /// Consecutive rounds without the finding since `last_seen`.
    pub good_streak: u32,
    /// Crossed `failure_threshold` and `for`; stays true until the episode closes.
    pub firing: bool,
}

/// One group's open incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub group: GroupKey,
    /// Stable for the life of the incident: `<group>/<fired_at ms>`.
    pub dedup_key: String,
    /// The earliest `since` of its members.
    pub since: Timestamp,
    pub fired_at: Timestamp,
    /// What has been sent; `None` while it has fired only muted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sent: Option<Sent>,
    /// Every finding key that fired during this incident, sorted by (code, subject).
    pub members: Vec<Member>,
}

/// The last page or reminder of an incident, and the worst it has said so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub at: Timestamp,
    pub severity: Severity,
    pub codes: BTreeSet<Code>,
}

/// A finding as a notification lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub finding: Finding,
    pub since: Timestamp,
    pub last_seen: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resolved_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The first page of an incident, or an update because it got worse.
    Firing,
    /// Still firing, `repeat_interval` after the last page.
    Reminder,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Reminder => "reminder",
            Status::Resolved => "resolved",
        }
    }
}

/// One message about one incident, for every channel its routes select.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique per notification and stable under replay: `<dedup_key>/<status>/<at ms>`.
    pub id: String,
    /// The incident's key (PagerDuty `dedup_key`, webhook consumers' idempotency key).
    pub dedup_key: String,
    pub group: GroupKey,
    pub status: Status,
    /// Firing/reminder: the worst firing member now. Resolved: the worst ever sent.
    pub severity: Severity,
    /// When the incident's first member went bad.
    pub since: Timestamp,
    /// The round that produced this notification.
    pub at: Timestamp,
    /// When the next reminder is due if it keeps firing (`None`: reminders off, or resolved).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_reminder: Option<Timestamp>,
    /// Firing/reminder: the unmuted firing members. Resolved: every member of the incident.
    /// Sorted most severe first, then by code and subject.
    pub findings: Vec<Member>,
}

impl Notification {
    /// The member a one-line summary leads with: the first of `findings`.
    pub fn lead(&self) -> Option<&Member> {
        self.findings.first()
    }
    /// Distinct codes among `findings`, in order of appearance.
    pub fn codes(&self) -> Vec<Code> {
        let mut out = Vec::new();
        for m in &self.findings {
            if !out.contains(&m.finding.code) {
                out.push(m.finding.code);
            }
        }
        out
    }
}

type Key = (Code, Subject);

fn key(f: &Finding) -> Key {
    (f.code, f.subject.clone())
}

/// Advances the machine by one round.
///
/// `findings` is everything detect reported for the round; a finding key absent from it
/// counts as an OK round for that key. `silences` are the config and API silences together
/// (inactive ones are ignored). Returns the notifications to send, in group order, and the
/// state to persist; `state` itself is not changed.
pub fn step(
    state: &AlertState,
    findings: &[Finding],
    policy: &AlertPolicy,
    silences: &[Silence],
    now: Timestamp,
) -> (Vec<Notification>, AlertState) {
    let failure_threshold = policy.failure_threshold.max(1);
    let success_threshold = policy.success_threshold.max(1);

    // The round's findings by key; of duplicates the most severe wins.
    let mut current: BTreeMap<Key, &Finding> = BTreeMap::new();
    for f in findings {
        current
            .entry(key(f))
            .and_modify(|old| {
                if f.severity < old.severity {
                    *old = f;
                }
            })
            .or_insert(f);
    }

    // Episodes: count this round, open new ones, close the recovered ones.
    let mut episodes: BTreeMap<Key, Episode> = state
        .episodes
        .iter()
        .map(|e| (key(&e.finding), e.clone()))
        .collect();
    for (k, e) in episodes.iter_mut() {
        match current.get(k) {
            Some(f) => {
                e.finding = (*f).clone();
                e.last_seen = now;
                e.bad_rounds = e.bad_rounds.saturating_add(1);
                e.good_streak = 0;
            }
            None => e.good_streak = e.good_streak.saturating_add(1),
        }
    }
    for (k, f) in &current {
        episodes.entry(k.clone()).or_insert_with(|| Episode {
            finding: (*f).clone(),
            since: now,
            last_seen: now,
            bad_rounds: 1,
            good_streak: 0,
            firing: false,
        });
    }
    let mut closed = Vec::new();
    episodes.retain(|_, e| {
        let open = e.good_streak < success_threshold;
        if !open && e.firing {
            closed.push(e.clone());
        }
        open
    });
    let for_ms = i64::try_from(policy.for_duration.as_millis()).unwrap_or(i64::MAX);
    for e in episodes.values_mut() {
        if !e.firing
            && e.good_streak == 0
            && e.bad_rounds >= failure_threshold
            && now.0.saturating_sub(e.since.0) >= for_ms
        {
            e.firing = true;
        }
    }

    // Incidents: open for newly firing groups, record members.
    let mut incidents: BTreeMap<GroupKey, Incident> = state
        .incidents
        .iter()
        .map(|i| (i.group.clone(), i.clone()))
        .collect();
    for e in episodes.values().filter(|e| e.firing) {
        let group = GroupKey::of(&e.finding, policy.group_by);
        let incident = incidents.entry(group.clone()).or_insert_with(|| Incident {
            dedup_key: format!("{group}/{}", now.0),
            group,
            since: e.since,
            fired_at: now,
            sent: None,
            members: Vec::new(),
        });
        incident.since = incident.since.min(e.since);
        upsert_member(incident, e, None);
    }
    for e in &closed {
        if let Some(incident) = incidents.get_mut(&GroupKey::of(&e.finding, policy.group_by)) {
            upsert_member(incident, e, Some(now));
        }
    }

    // Decide what each incident says this round.
    let open_groups: BTreeSet<GroupKey> = episodes
        .values()
        .map(|e| GroupKey::of(&e.finding, policy.group_by))
        .collect();
    let mut notifications = Vec::new();
    let mut kept = Vec::new();
    for (group, mut incident) in incidents {
        if !open_groups.contains(&group) {
            if let Some(sent) = &incident.sent
                && policy.send_on_resolved
            {
                let mut findings = incident.members.clone();
                for m in &mut findings {
                    m.resolved_at.get_or_insert(now);
                }
                sort_members(&mut findings);
                notifications.push(notification(
                    &incident,
                    Status::Resolved,
                    sent.severity,
                    now,
                    None,
                    findings,
                ));
            }
            continue;
        }
        let mut firing: Vec<Member> = episodes
            .values()
            .filter(|e| e.firing && GroupKey::of(&e.finding, policy.group_by) == group)
            .filter(|e| !is_muted(&e.finding, silences, &policy.maintenance, now))
            .map(|e| Member {
                finding: e.finding.clone(),
                since: e.since,
                last_seen: e.last_seen,
                resolved_at: None,
            })
            .collect();
        if let Some(severity) = firing.iter().map(|m| m.finding.severity).min() {
            sort_members(&mut firing);
            let codes: BTreeSet<Code> = firing.iter().map(|m| m.finding.code).collect();
            let status = match &incident.sent {
                None => Some(Status::Firing),
                Some(sent) if severity < sent.severity || !codes.is_subset(&sent.codes) => {
                    Some(Status::Firing)
                }
                Some(sent)
                    if !policy.repeat_interval.is_zero()
                        && now >= sent.at.plus(policy.repeat_interval) =>
                {
                    Some(Status::Reminder)
                }
                Some(_) => None,
            };
            if let Some(status) = status {
                let next_reminder =
                    (!policy.repeat_interval.is_zero()).then(|| now.plus(policy.repeat_interval));
                notifications.push(notification(
                    &incident,
                    status,
                    severity,
                    now,
                    next_reminder,
                    firing,
                ));
                let sent = incident.sent.get_or_insert_with(|| Sent {
                    at: now,
                    severity,
                    codes: BTreeSet::new(),
                });
                sent.at = now;
                sent.severity = sent.severity.min(severity);
                sent.codes.extend(codes);
            }
        }
        kept.push(incident);
    }

    let next = AlertState {
        episodes: episodes.into_values().collect(),
        incidents: kept,
    };
    (notifications, next)
}

fn upsert_member(incident: &mut Incident, e: &Episode, resolved_at: Option<Timestamp>) {
    let member = Member {
        finding: e.finding.clone(),
        since: e.since,
        last_seen: e.last_seen,
        resolved_at,
    };
    let k = key(&e.finding);
    match incident
        .members
        .binary_search_by(|m| key(&m.finding).cmp(&k))
    {
        Ok(i) => incident.members[i] = member,
        Err(i) => incident.members.insert(i, member),
    }
}

/// Most severe first, then by code and subject.
fn sort_members(members: &mut [Member]) {
    members.sort_by(|a, b| a.finding.rank().cmp(&b.finding.rank()));
}

fn notification(
    incident: &Incident,
    status: Status,
    severity: Severity,
    now: Timestamp,
    next_reminder: Option<Timestamp>,
    findings: Vec<Member>,
) -> Notification {
    Notification {
        id: format!("{}/{}/{}", incident.dedup_key, status.as_str(), now.0),
        dedup_key: incident.dedup_key.clone(),
        group: incident.group.clone(),
        status,
        severity,
        since: incident.since,
        at: now,
        next_reminder,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::silence::SubjectPattern;
    use crate::model::ViewId;

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
}
