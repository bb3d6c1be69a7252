//! [`step`]: one round of the alert lifecycle, as four named phases run in order: update
//! the episodes, decide which fire, fold them into incidents, make the notifications.
//!
//! Pure: data and `now` in, data out; it never reads a clock and cannot fail. Not here:
//! the types it works on (`types`), the policy (`policy`), or what mutes a finding
//! (`alert::silence`, asked through `is_muted`).

use super::policy::AlertPolicy;
use super::types::{
    AlertState, Episode, GroupKey, Incident, Key, Member, Notification, Sent, Status, key,
};
use crate::alert::silence::{Silence, is_muted};
use crate::model::{Code, Finding, Severity, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// The open episodes by key.
type Episodes = BTreeMap<Key, Episode>;

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
    let current = round_findings(findings);
    let (mut episodes, closed) = update_episodes(&state.episodes, &current, policy, now);
    decide_firing(&mut episodes, policy, now);
    let incidents = fold_into_incidents(&state.incidents, &episodes, &closed, policy, now);
    let (notifications, incidents) =
        make_notifications(incidents, &episodes, policy, silences, now);
    let next = AlertState {
        episodes: episodes.into_values().collect(),
        incidents,
    };
    (notifications, next)
}

/// The round's findings by key; of duplicates the most severe wins.
fn round_findings(findings: &[Finding]) -> BTreeMap<Key, &Finding> {
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
    current
}

/// Phase 1: counts this round in every episode, opens one for each new key and closes
/// those OK for `success_threshold` rounds in a row. Returns the open episodes and the
/// closed ones that had fired (their incidents record them as resolved).
fn update_episodes(
    previous: &[Episode],
    current: &BTreeMap<Key, &Finding>,
    policy: &AlertPolicy,
    now: Timestamp,
) -> (Episodes, Vec<Episode>) {
    let success_threshold = policy.success_threshold.max(1);
    let mut episodes: Episodes = previous
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
    for (k, f) in current {
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
    (episodes, closed)
}

/// Phase 2: an episode bad this round fires once it has `failure_threshold` bad rounds
/// and `for` has passed since it opened; a firing episode stays firing until it closes.
fn decide_firing(episodes: &mut Episodes, policy: &AlertPolicy, now: Timestamp) {
    let failure_threshold = policy.failure_threshold.max(1);
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
}

/// Phase 3: opens an incident for each newly firing group and records every firing
/// episode as a member of its group's incident, and every closed one as resolved `now`.
fn fold_into_incidents(
    previous: &[Incident],
    episodes: &Episodes,
    closed: &[Episode],
    policy: &AlertPolicy,
    now: Timestamp,
) -> BTreeMap<GroupKey, Incident> {
    let mut incidents: BTreeMap<GroupKey, Incident> = previous
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
    for e in closed {
        if let Some(incident) = incidents.get_mut(&GroupKey::of(&e.finding, policy.group_by)) {
            upsert_member(incident, e, Some(now));
        }
    }
    incidents
}

/// Phase 4: decides what each incident says this round. An incident none of whose members
/// has an open episode ends (with a resolved notification if it paged); the others page,
/// update or remind as [`next_status`] says. Returns the notifications, in group order, and
/// the incidents still open.
fn make_notifications(
    incidents: BTreeMap<GroupKey, Incident>,
    episodes: &Episodes,
    policy: &AlertPolicy,
    silences: &[Silence],
    now: Timestamp,
) -> (Vec<Notification>, Vec<Incident>) {
    let open_groups: BTreeSet<GroupKey> = episodes
        .values()
        .map(|e| GroupKey::of(&e.finding, policy.group_by))
        .collect();
    let mut notifications = Vec::new();
    let mut kept = Vec::new();
    for (group, mut incident) in incidents {
        if !open_groups.contains(&group) {
            notifications.extend(resolved(&incident, policy, now));
            continue;
        }
        let firing = unmuted_firing(episodes, &group, policy, silences, now);
        notifications.extend(page(&mut incident, firing, policy, now));
        kept.push(incident);
    }
    (notifications, kept)
}

/// The resolved notification of an incident that ends this round: every member, resolved
/// at the latest `now`, at the worst severity ever sent; `None` if it never paged or
/// `send_on_resolved` is off.
fn resolved(incident: &Incident, policy: &AlertPolicy, now: Timestamp) -> Option<Notification> {
    let sent = incident.sent.as_ref().filter(|_| policy.send_on_resolved)?;
    let mut findings = incident.members.clone();
    for m in &mut findings {
        m.resolved_at.get_or_insert(now);
    }
    sort_members(&mut findings);
    Some(notification(
        incident,
        Status::Resolved,
        sent.severity,
        now,
        None,
        findings,
    ))
}

/// The firing members of `group` that no silence or maintenance window mutes at `now`,
/// most severe first.
fn unmuted_firing(
    episodes: &Episodes,
    group: &GroupKey,
    policy: &AlertPolicy,
    silences: &[Silence],
    now: Timestamp,
) -> Vec<Member> {
    let mut firing: Vec<Member> = episodes
        .values()
        .filter(|e| e.firing && GroupKey::of(&e.finding, policy.group_by) == *group)
        .filter(|e| !is_muted(&e.finding, silences, &policy.maintenance, now))
        .map(|e| Member {
            finding: e.finding.clone(),
            since: e.since,
            last_seen: e.last_seen,
            resolved_at: None,
        })
        .collect();
    sort_members(&mut firing);
    firing
}

/// The page, update or reminder an open incident gets for its unmuted `firing` members,
/// if any, recorded in its `sent`; `None` when everything is muted or nothing is due.
fn page(
    incident: &mut Incident,
    firing: Vec<Member>,
    policy: &AlertPolicy,
    now: Timestamp,
) -> Option<Notification> {
    let severity = firing.iter().map(|m| m.finding.severity).min()?;
    let codes: BTreeSet<Code> = firing.iter().map(|m| m.finding.code).collect();
    let status = next_status(incident.sent.as_ref(), severity, &codes, policy, now)?;
    let next_reminder =
        (!policy.repeat_interval.is_zero()).then(|| now.plus(policy.repeat_interval));
    let out = notification(incident, status, severity, now, next_reminder, firing);
    let sent = incident.sent.get_or_insert_with(|| Sent {
        at: now,
        severity,
        codes: BTreeSet::new(),
    });
    sent.at = now;
    sent.severity = sent.severity.min(severity);
    sent.codes.extend(codes);
    Some(out)
}

/// `Firing` for the first page and whenever the incident got worse than what was sent (a
/// higher severity or a new code), `Reminder` once `repeat_interval` (if not zero) has
/// passed since the last page, else nothing.
fn next_status(
    sent: Option<&Sent>,
    severity: Severity,
    codes: &BTreeSet<Code>,
    policy: &AlertPolicy,
    now: Timestamp,
) -> Option<Status> {
    match sent {
        None => Some(Status::Firing),
        Some(sent) if severity < sent.severity || !codes.is_subset(&sent.codes) => {
            Some(Status::Firing)
        }
        Some(sent)
            if !policy.repeat_interval.is_zero() && now >= sent.at.plus(policy.repeat_interval) =>
        {
            Some(Status::Reminder)
        }
        Some(_) => None,
    }
}

/// Puts `e` into the incident's members (sorted by key), replacing its earlier entry.
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

/// The notification with this status about `incident`, made at `now`.
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
        reason: None,
    }
}

/// The tenant of `state` is gone (removed from the config or the inventory), so nothing
/// more will be seen of it: every episode closes and every incident ends `now`, each that
/// paged with a resolved notification (as [`step`] makes them, under `send_on_resolved`)
/// that says `reason`. Returns the notifications, in group order, and the empty state.
pub fn retire(
    state: &AlertState,
    reason: &str,
    policy: &AlertPolicy,
    now: Timestamp,
) -> (Vec<Notification>, AlertState) {
    let mut out = Vec::new();
    for incident in &state.incidents {
        let group = incident.group.clone();
        let mut incident = incident.clone();
        for e in state
            .episodes
            .iter()
            .filter(|e| e.firing && GroupKey::of(&e.finding, policy.group_by) == group)
        {
            upsert_member(&mut incident, e, Some(now));
        }
        if let Some(mut n) = resolved(&incident, policy, now) {
            n.reason = Some(reason.to_owned());
            out.push(n);
        }
    }
    (out, AlertState::default())
}
