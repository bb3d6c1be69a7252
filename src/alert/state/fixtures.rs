//! Notifications shared by the tests of the alert state, the channels and the store: one
//! incident of tenant acme firing, resolved, and reminding.

use crate::alert::state::{GroupKey, Member, Notification, Status};
use crate::model::{Code, Finding, Subject, Timestamp, ViewId};

pub const T0: i64 = 1_795_651_200; // 2026-11-26T00:00:00Z

fn member(finding: Finding, since: i64, last_seen: i64, resolved: Option<i64>) -> Member {
    Member {
        finding,
        since: Timestamp::from_secs(since),
        last_seen: Timestamp::from_secs(last_seen),
        resolved_at: resolved.map(Timestamp::from_secs),
    }
}

fn findings(resolved: Option<i64>) -> Vec<Member> {
    let cdn = ViewId {
        path: "cdn".into(),
        edge: Some("192.0.2.10".into()),
    };
    vec![
        member(
            Finding::new(
                Code::KidMissing,
                Subject::view("acme", "app", &cdn).with_kid(Some("k2")),
                "kid k2 of a fresh access_token is not in this view (keys: k1)",
            ),
            T0,
            T0 + 60,
            resolved,
        ),
        member(
            Finding::new(
                Code::StaleEdge,
                Subject::view("acme", "app", &cdn),
                "edge differs from origin (missing k2): cache status HIT (X-Cache-Status), Age 120 s, fresh in ~180 s <script>",
            ),
            T0 + 30,
            T0 + 60,
            resolved,
        ),
    ]
}

pub fn firing() -> Notification {
    Notification {
        id: format!("acme/{}/firing/{}", (T0 + 30) * 1000, (T0 + 60) * 1000),
        dedup_key: format!("acme/{}", (T0 + 30) * 1000),
        group: GroupKey {
            tenant: "acme".into(),
            code: None,
        },
        status: Status::Firing,
        severity: crate::model::Severity::Critical,
        since: Timestamp::from_secs(T0),
        at: Timestamp::from_secs(T0 + 60),
        next_reminder: Some(Timestamp::from_secs(T0 + 60 + 4 * 3600)),
        findings: findings(None),
        reason: None,
    }
}

pub fn resolved() -> Notification {
    Notification {
        id: format!("acme/{}/resolved/{}", (T0 + 30) * 1000, (T0 + 120) * 1000),
        status: Status::Resolved,
        at: Timestamp::from_secs(T0 + 120),
        next_reminder: None,
        findings: findings(Some(T0 + 120)),
        ..firing()
    }
}

pub fn reminder() -> Notification {
    Notification {
        id: format!(
            "acme/{}/reminder/{}",
            (T0 + 30) * 1000,
            (T0 + 60 + 4 * 3600) * 1000
        ),
        status: Status::Reminder,
        at: Timestamp::from_secs(T0 + 60 + 4 * 3600),
        next_reminder: Some(Timestamp::from_secs(T0 + 60 + 8 * 3600)),
        ..firing()
    }
}
