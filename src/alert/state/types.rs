//! What the alert state machine remembers and says: [`AlertState`] (its [`Episode`]s and
//! [`Incident`]s, with each tenant's part taken out or put back), the [`GroupKey`] of an
//! incident, and the [`Notification`]s it makes, with their [`Member`]s and [`Status`].
//!
//! Plain, serialisable data (the store persists [`AlertState`] as JSON; channels render
//! [`Notification`]s). Not here: how a round changes them (`step`) or the policy that
//! steers it (`policy`).

use super::policy::GroupBy;
use crate::model::{Code, Finding, Severity, Subject, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

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
    /// Why a resolved incident ended other than by its findings clearing ("tenant removed
    /// from the inventory"); `None` when its findings cleared.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
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

/// An episode's key: one finding code on one subject.
pub(super) type Key = (Code, Subject);

/// The key of `f`'s episode.
pub(super) fn key(f: &Finding) -> Key {
    (f.code, f.subject.clone())
}

impl AlertState {
    /// The episodes and incidents of `tenant` (its episodes by the finding's subject, its
    /// incidents by their group), in the order they have here.
    pub fn tenant_part(&self, tenant: &str) -> AlertState {
        AlertState {
            episodes: self
                .episodes
                .iter()
                .filter(|e| e.finding.subject.tenant == tenant)
                .cloned()
                .collect(),
            incidents: self
                .incidents
                .iter()
                .filter(|i| i.group.tenant == tenant)
                .cloned()
                .collect(),
        }
    }

    /// The state split into each tenant's part (tenants without episodes or incidents are
    /// absent): how the daemon holds it, so a tenant's judgement touches its part only.
    pub fn by_tenant(self) -> BTreeMap<String, AlertState> {
        let mut out: BTreeMap<String, AlertState> = BTreeMap::new();
        for e in self.episodes {
            out.entry(e.finding.subject.tenant.clone())
                .or_default()
                .episodes
                .push(e);
        }
        for i in self.incidents {
            out.entry(i.group.tenant.clone())
                .or_default()
                .incidents
                .push(i);
        }
        out
    }

    /// Whether nothing is tracked: no episode, no incident.
    pub fn is_empty(&self) -> bool {
        self.episodes.is_empty() && self.incidents.is_empty()
    }

    /// This state with `tenant`'s part replaced by `part`, both lists sorted by their keys
    /// (episodes by code and subject, incidents by group). Whatever `part` holds goes in
    /// as it is, other tenants' entries included.
    pub fn with_tenant_part(&self, tenant: &str, part: AlertState) -> AlertState {
        let mut episodes: Vec<_> = self
            .episodes
            .iter()
            .filter(|e| e.finding.subject.tenant != tenant)
            .cloned()
            .chain(part.episodes)
            .collect();
        episodes.sort_by(|a, b| {
            (a.finding.code, &a.finding.subject).cmp(&(b.finding.code, &b.finding.subject))
        });
        let mut incidents: Vec<_> = self
            .incidents
            .iter()
            .filter(|i| i.group.tenant != tenant)
            .cloned()
            .chain(part.incidents)
            .collect();
        incidents.sort_by(|a, b| a.group.cmp(&b.group));
        AlertState {
            episodes,
            incidents,
        }
    }
}
