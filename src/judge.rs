//! The judge: one tenant's round in, its findings, notifications and next alert state
//! out — detection over the remembered history (`detect`), then the alert state machine on
//! the tenant's part of the alert state (`alert::step`), then routing to channels
//! (`alert::route`). Pure: no I/O, no clock, no `async`; the daemon hands it `now`, the
//! silences and the state, and commits what it returns.
//!
//! Not here: when to judge (the daemon's scheduler), storing the verdict (`store`, through
//! the daemon's commit), sending (`notify`).

use crate::alert::{self, AlertState, Notification, Silence};
use crate::config::Config;
use crate::detect::{self, history::History};
use crate::model::{Code, Finding, Observation, Timestamp};

/// One tenant's judgement.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The tenant's open findings, sorted by (severity, code, subject).
    pub findings: Vec<Finding>,
    /// The tenant's part of the alert state after this judgement.
    pub alerts: AlertState,
    pub notifications: Vec<Notification>,
    /// `(channel, notification)` for every route that matches each notification.
    pub outbox: Vec<(String, Notification)>,
}

/// Judges one tenant at `now`, purely. With an observation: records it into `history`
/// (pruned to the configured retention) and runs detection. Without one (the tenant is
/// stale, or no longer configured): `carried` findings plus whatever detection says of
/// an unobserved tenant (`probe_stale`). Then steps `alerts`, the tenant's part of the
/// alert state (episodes and incidents are per tenant, so the parts are independent:
/// [`AlertState::by_tenant`]), and routes its notifications. `silences` are the API's; the
/// config's are added here. Costs the tenant's own size: no other tenant is read.
#[allow(clippy::too_many_arguments)]
pub fn judge(
    config: &Config,
    history: &mut History,
    alerts: &AlertState,
    silences: &[Silence],
    tenant: &str,
    observation: Option<&Observation>,
    carried: &[Finding],
    now: Timestamp,
) -> Verdict {
    let mut findings: Vec<Finding> =
        detect::assess_tenant(config, history, tenant, observation, now)
            .into_iter()
            .filter(|f| observation.is_some() || f.code == Code::ProbeStale)
            .collect();
    if observation.is_none() {
        findings.extend(carried.iter().cloned());
        findings.sort_by(|a, b| a.rank().cmp(&b.rank()));
    }
    history.prune_tenant(tenant, now, config.settings.retention);
    let all_silences: Vec<Silence> = config
        .alerting
        .silences
        .iter()
        .chain(silences)
        .cloned()
        .collect();
    let (notifications, part) = alert::step(
        alerts,
        &findings,
        &config.alerting.policy,
        &all_silences,
        now,
    );
    let outbox = routed(config, &notifications);
    Verdict {
        findings,
        alerts: part,
        notifications,
        outbox,
    }
}

/// Judges a tenant that is gone (removed from the config or the inventory): its history
/// goes, and its incidents end at once through [`alert::retire`], each that paged with a
/// resolved notification saying `reason`, routed like any other. Pure.
pub fn judge_removed(
    config: &Config,
    history: &mut History,
    alerts: &AlertState,
    tenant: &str,
    reason: &str,
    now: Timestamp,
) -> Verdict {
    history.remove_tenant(tenant);
    let (notifications, part) = alert::retire(alerts, reason, &config.alerting.policy, now);
    let outbox = routed(config, &notifications);
    Verdict {
        findings: Vec::new(),
        alerts: part,
        notifications,
        outbox,
    }
}

/// `(channel, notification)` for every route that matches each notification.
fn routed(config: &Config, notifications: &[Notification]) -> Vec<(String, Notification)> {
    notifications
        .iter()
        .flat_map(|n| {
            alert::route(n, &config.alerting.routes)
                .into_iter()
                .map(move |channel| (channel, n.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Status;
    use crate::detect::stateful::fixtures as fx;

    /// The detect fixture (tenant acme, 30 s rounds) with a webhook for everything and an
    /// email for failed logins only, simulating one client profile that refetches at
    /// once (so clients recover as soon as the edge does).
    fn alerting_config() -> Config {
        fx::config_with(|toml| {
            format!(
                r#"client_profiles = ["eager"]
{toml}
[[profile]]
name = "eager"
ttl = "1s"
refetch_on_unknown_kid = true
cooldown = "0s"

[alerting]
[[alerting.channel]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[alerting.channel]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
tls = "none"
from = "k@example.com"
to = ["sre@example.com"]
[[alerting.route]]
channels = ["hook"]
[[alerting.route]]
channels = ["mail"]
codes = ["login_failed"]
"#
            )
        })
    }

    /// Round `i`; with `stale`, io's cdn edge serves an old key set (`k0`).
    fn round(i: i64, stale: bool) -> Observation {
        let mut o = fx::round(i);
        if stale {
            fx::keys(&mut o, 1, 1, vec![fx::key("k0")]);
        }
        o
    }

    #[test]
    fn a_removed_tenant_is_resolved_at_once_with_the_reason_and_routed() {
        let config = alerting_config();
        let mut history = History::default();
        let mut alerts = AlertState::default();
        for i in 0..3 {
            let v = judge(
                &config,
                &mut history,
                &alerts,
                &[],
                "acme",
                Some(&round(i, i > 0)),
                &[],
                fx::at(i),
            );
            alerts = v.alerts;
        }
        assert_eq!(alerts.incidents.len(), 1, "the stale edge has paged");
        let v = judge_removed(
            &config,
            &mut history,
            &alerts,
            "acme",
            "tenant removed from the inventory",
            fx::at(3),
        );
        assert_eq!(v.alerts, AlertState::default());
        assert_eq!(history.tenants().count(), 0, "its history goes");
        let routed: Vec<(&str, Status, Option<&str>)> = v
            .outbox
            .iter()
            .map(|(c, n)| (c.as_str(), n.status, n.reason.as_deref()))
            .collect();
        assert_eq!(
            routed,
            [(
                "hook",
                Status::Resolved,
                Some("tenant removed from the inventory")
            )]
        );
    }

    #[test]
    fn judge_pages_once_per_incident_routes_it_and_resolves() {
        let config = alerting_config();
        let mut history = History::default();
        let mut alerts = AlertState::default();
        let mut sent: Vec<(i64, Status, Vec<String>)> = Vec::new();
        for (i, stale) in [
            (0, false),
            (1, true),
            (2, true),
            (3, true),
            (4, false),
            (5, false),
            (6, false),
        ] {
            let v = judge(
                &config,
                &mut history,
                &alerts,
                &[],
                "acme",
                Some(&round(i, stale)),
                &[],
                fx::at(i),
            );
            assert_eq!(v.findings.is_empty(), !stale, "round {i}: {:?}", v.findings);
            for n in &v.notifications {
                let channels = v
                    .outbox
                    .iter()
                    .filter(|(_, o)| o.id == n.id)
                    .map(|(c, _)| c.clone())
                    .collect();
                sent.push((i, n.status, channels));
            }
            alerts = v.alerts;
        }
        assert_eq!(
            sent,
            [
                (2, Status::Firing, vec!["hook".to_owned()]),
                (5, Status::Resolved, vec!["hook".to_owned()]),
            ],
            "fires on the 2nd bad round, resolves after 2 good ones; no login failed, so no email"
        );
        assert!(alerts.incidents.is_empty() && alerts.episodes.is_empty());
        assert!(history.tenant("acme").is_some(), "the rounds were recorded");
    }

    /// acme's state after `bad` bad rounds from step 1 on (firing from the 2nd).
    fn firing_acme(config: &Config, history: &mut History, bad: i64) -> (AlertState, Vec<Finding>) {
        let mut alerts = AlertState::default();
        let mut findings = Vec::new();
        for i in 0..=bad {
            let v = judge(
                config,
                history,
                &alerts,
                &[],
                "acme",
                Some(&round(i, i > 0)),
                &[],
                fx::at(i),
            );
            alerts = v.alerts;
            findings = v.findings;
        }
        (alerts, findings)
    }

    #[test]
    fn a_stale_tenant_keeps_its_incident_and_a_removed_one_resolves() {
        let config = alerting_config();
        let mut history = History::default();
        let (alerts, findings) = firing_acme(&config, &mut history, 3);
        assert_eq!(alerts.incidents.len(), 1);

        // No round arrives: its last findings are carried, so nothing resolves (and
        // probe_stale joins once the views have had no good fetch for 3 intervals).
        let mut stale = alerts.clone();
        for i in 4..8 {
            let v = judge(
                &config,
                &mut history,
                &stale,
                &[],
                "acme",
                None,
                &findings,
                fx::at(i),
            );
            assert!(
                v.notifications.iter().all(|n| n.status != Status::Resolved),
                "tick {i}: {:?}",
                v.notifications
            );
            stale = v.alerts;
        }
        assert_eq!(stale.incidents.len(), 1);

        // The same incident under a tenant no longer configured: it resolves.
        let mut gone = alerts.clone();
        for e in &mut gone.episodes {
            e.finding.subject.tenant = "gone".into();
        }
        for i in &mut gone.incidents {
            i.group.tenant = "gone".into();
            for m in &mut i.members {
                m.finding.subject.tenant = "gone".into();
            }
        }
        let mut statuses = Vec::new();
        for i in 4..7 {
            let v = judge(
                &config,
                &mut history,
                &gone,
                &[],
                "gone",
                None,
                &[],
                fx::at(i),
            );
            statuses.extend(v.notifications.iter().map(|n| (i, n.status)));
            gone = v.alerts;
        }
        assert_eq!(statuses, [(5, Status::Resolved)]);
        assert!(gone.incidents.is_empty() && gone.episodes.is_empty());
    }

    #[test]
    fn judging_one_tenant_leaves_the_others_alone() {
        let config = alerting_config();
        let mut history = History::default();
        let (alerts, _) = firing_acme(&config, &mut history, 2);
        let mut other = alerts.clone();
        for e in &mut other.episodes {
            e.finding.subject.tenant = "zeta".into();
        }
        for i in &mut other.incidents {
            i.group.tenant = "zeta".into();
        }
        let both = alerts.with_tenant_part("zeta", other.clone());
        assert_eq!(both.tenant_part("zeta"), other);
        assert_eq!(both.tenant_part("acme"), alerts);
        // A clean acme round, judged on acme's part as the daemon holds it, moves acme's
        // episodes only and returns acme's part only.
        let parts = both.by_tenant();
        let v = judge(
            &config,
            &mut history,
            &parts["acme"],
            &[],
            "acme",
            Some(&round(3, false)),
            &[],
            fx::at(3),
        );
        assert_eq!(v.alerts.tenant_part("zeta"), AlertState::default());
        assert_eq!(parts["zeta"], other);
        assert_ne!(v.alerts.tenant_part("acme"), alerts);
    }

    #[test]
    fn judge_applies_silences_from_the_api() {
        let config = alerting_config();
        let silence = Silence {
            id: "api-1".into(),
            tenant: Some("acme".into()),
            code: None,
            severity: None,
            subject: None,
            starts: fx::at(0),
            ends: fx::at(100),
            created_by: "test".into(),
            comment: String::new(),
        };
        // Four rounds of acme under `silences`: the notifications of each round.
        let rounds = |silences: &[Silence]| -> Vec<Vec<Notification>> {
            let (mut history, mut alerts) = (History::default(), AlertState::default());
            (0..4)
                .map(|i| {
                    let v = judge(
                        &config,
                        &mut history,
                        &alerts,
                        silences,
                        "acme",
                        Some(&round(i, i > 0)),
                        &[],
                        fx::at(i),
                    );
                    alerts = v.alerts;
                    v.notifications
                })
                .collect()
        };
        for (i, notifications) in rounds(std::slice::from_ref(&silence)).iter().enumerate() {
            assert!(notifications.is_empty(), "round {i}: {notifications:?}");
        }
        // The same rounds without the silence page: there was an incident to mute.
        let sent: usize = rounds(&[]).iter().map(Vec::len).sum();
        assert!(
            sent > 0,
            "the unsilenced rounds must page for the silence to mean anything"
        );
    }
}
