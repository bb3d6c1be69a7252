//! `[alerting]`: the lifecycle policy (thresholds, `for`, reminders, grouping), routes,
//! silences and maintenance windows, validated into [`Alerting`]. Channels are
//! `super::channels`.
//!
//! The policy, route and silence types are the alert state machine's (`crate::alert`);
//! this module only builds them from `probes.toml`. Runtime state (open incidents,
//! counters, API-made silences) never lives here.

use super::channels::Channel;
use super::raw::{RawAlerting, RawRoute, RawSilence};
use super::validate::Validator;
use crate::alert::{AlertPolicy, GroupBy, MaintenanceWindow, Route, Silence, SubjectPattern};
use crate::model::{Code, Severity, Timestamp};
use std::collections::BTreeSet;
use url::Url;

/// `[alerting]`, validated. Runtime counters live in `alert::AlertState`, never here.
#[derive(Debug, Clone)]
pub struct Alerting {
    pub policy: AlertPolicy,
    /// Linked from every notification that can carry a link.
    pub status_page_url: Option<Url>,
    pub channels: Vec<Channel>,
    pub routes: Vec<Route>,
    /// Silences from probes.toml (ids `config-<n>`); the API adds its own at run time.
    pub silences: Vec<Silence>,
}

impl Alerting {
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }
}

impl Validator<'_> {
    pub(super) fn alerting(
        &mut self,
        raw: Option<&RawAlerting>,
        tenants: &BTreeSet<String>,
    ) -> Alerting {
        let default = RawAlerting::default();
        let raw = raw.unwrap_or(&default);
        let defaults = AlertPolicy::default();
        let threshold = |v: &mut Self, key: &str, value: Option<u32>, default: u32| {
            let n = value.unwrap_or(default);
            if n == 0 {
                v.problem(&format!("alerting.{key}"), "must be at least 1 (rounds)");
            }
            n.max(1)
        };
        let failure_threshold = threshold(
            self,
            "failure_threshold",
            raw.failure_threshold,
            defaults.failure_threshold,
        );
        let success_threshold = threshold(
            self,
            "success_threshold",
            raw.success_threshold,
            defaults.success_threshold,
        );
        let for_duration =
            self.duration("alerting.for", raw.for_.as_deref(), defaults.for_duration);
        let repeat_interval = self.duration(
            "alerting.repeat_interval",
            raw.repeat_interval.as_deref(),
            defaults.repeat_interval,
        );
        let group_by = match raw.group_by.as_deref() {
            None | Some("tenant") => GroupBy::Tenant,
            Some("tenant_code") => GroupBy::TenantCode,
            Some(other) => {
                self.problem(
                    "alerting.group_by",
                    format!("`{other}` is not one of tenant, tenant_code"),
                );
                GroupBy::Tenant
            }
        };
        let status_page_url = raw
            .status_page_url
            .as_deref()
            .and_then(|s| self.url("alerting.status_page_url", s));

        let mut channels: Vec<Channel> = Vec::new();
        for (i, c) in raw.channel.iter().enumerate() {
            let path = format!("alerting.channel[{i}]");
            if let Some(channel) = self.channel(&path, c) {
                if channels.iter().any(|o| o.name == channel.name) {
                    self.problem(
                        &format!("{path}.name"),
                        format!("channel `{}` is defined twice", channel.name),
                    );
                }
                channels.push(channel);
            }
        }
        // Names of every declared channel, valid or not, so one bad channel does not also
        // make each route that names it a problem.
        let channel_names: BTreeSet<&str> = raw
            .channel
            .iter()
            .filter_map(|c| c.name.as_deref())
            .collect();
        let routes = raw
            .route
            .iter()
            .enumerate()
            .map(|(i, r)| self.route(&format!("alerting.route[{i}]"), r, &channel_names, tenants))
            .collect();
        let silences = raw
            .silence
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.silence(i, s, tenants))
            .collect();
        let maintenance = raw
            .maintenance
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let path = format!("alerting.maintenance[{i}]");
                let listed =
                    self.tenant_names(&format!("{path}.tenants"), m.tenants.as_deref(), tenants);
                if m.tenants.as_ref().is_none_or(Vec::is_empty) {
                    self.problem(
                        &format!("{path}.tenants"),
                        "missing: list the tenants under maintenance",
                    );
                }
                let (starts, ends) =
                    self.time_range(&path, m.starts.as_deref(), m.ends.as_deref())?;
                Some(MaintenanceWindow {
                    tenants: listed,
                    starts,
                    ends,
                    comment: m.comment.clone().unwrap_or_default(),
                })
            })
            .collect();
        Alerting {
            policy: AlertPolicy {
                failure_threshold,
                success_threshold,
                for_duration,
                repeat_interval,
                send_on_resolved: raw.send_on_resolved.unwrap_or(defaults.send_on_resolved),
                group_by,
                maintenance,
            },
            status_page_url,
            channels,
            routes,
            silences,
        }
    }

    pub(super) fn route(
        &mut self,
        path: &str,
        r: &RawRoute,
        channels: &BTreeSet<&str>,
        tenants: &BTreeSet<String>,
    ) -> Route {
        let names = r.channels.clone().unwrap_or_default();
        if names.is_empty() {
            self.problem(
                &format!("{path}.channels"),
                "missing: list the channels this route sends to",
            );
        }
        for (i, n) in names.iter().enumerate() {
            if !channels.contains(n.as_str()) {
                self.problem(
                    &format!("{path}.channels[{i}]"),
                    format!("no channel named `{n}`: define it in [[alerting.channel]]"),
                );
            }
        }
        let min_severity = match r.min_severity.as_deref() {
            None => Severity::Low,
            Some(s) => self
                .severity(&format!("{path}.min_severity"), s)
                .unwrap_or(Severity::Low),
        };
        let codes = r
            .codes
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, c)| self.code(&format!("{path}.codes[{i}]"), c))
            .collect();
        Route {
            channels: names,
            min_severity,
            tenants: self.tenant_names(&format!("{path}.tenants"), r.tenants.as_deref(), tenants),
            codes,
        }
    }

    pub(super) fn silence(
        &mut self,
        i: usize,
        s: &RawSilence,
        tenants: &BTreeSet<String>,
    ) -> Option<Silence> {
        let path = format!("alerting.silence[{i}]");
        if let Some(t) = &s.tenant
            && !tenants.contains(t)
        {
            self.problem(&format!("{path}.tenant"), format!("no tenant named `{t}`"));
        }
        let code = s
            .code
            .as_deref()
            .and_then(|c| self.code(&format!("{path}.code"), c));
        let severity = s
            .severity
            .as_deref()
            .and_then(|v| self.severity(&format!("{path}.severity"), v));
        let subject = s
            .subject
            .as_deref()
            .and_then(|p| match SubjectPattern::parse(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.problem(&format!("{path}.subject"), e);
                    None
                }
            });
        if s.tenant.is_none() && s.code.is_none() && s.severity.is_none() && s.subject.is_none() {
            self.problem(&path, "a silence needs at least one of tenant, code, severity, subject (it would silence everything)");
        }
        let (starts, ends) = self.time_range(&path, s.starts.as_deref(), s.ends.as_deref())?;
        Some(Silence {
            id: format!("config-{i}"),
            tenant: s.tenant.clone(),
            code,
            severity,
            subject,
            starts,
            ends,
            created_by: s
                .created_by
                .clone()
                .unwrap_or_else(|| "probes.toml".to_owned()),
            comment: s.comment.clone().unwrap_or_default(),
        })
    }

    pub(super) fn tenant_names(
        &mut self,
        path: &str,
        names: Option<&[String]>,
        tenants: &BTreeSet<String>,
    ) -> Vec<String> {
        let names = names.unwrap_or_default();
        for (i, n) in names.iter().enumerate() {
            if !tenants.contains(n) {
                self.problem(&format!("{path}[{i}]"), format!("no tenant named `{n}`"));
            }
        }
        names.to_vec()
    }

    pub(super) fn severity(&mut self, path: &str, raw: &str) -> Option<Severity> {
        let s = Severity::parse(raw);
        if s.is_none() {
            self.problem(
                path,
                format!("`{raw}` is not one of critical, high, medium, low"),
            );
        }
        s
    }

    pub(super) fn code(&mut self, path: &str, raw: &str) -> Option<Code> {
        let c = Code::parse(raw);
        if c.is_none() {
            self.problem(
                path,
                format!("unknown finding code `{raw}`: see the finding catalogue in README.md"),
            );
        }
        c
    }

    pub(super) fn timestamp(&mut self, path: &str, raw: Option<&str>) -> Option<Timestamp> {
        let Some(s) = raw else {
            self.problem(
                path,
                "missing: write it like \"2026-11-26T00:00:00Z\" (UTC)",
            );
            return None;
        };
        match humantime::parse_rfc3339(s) {
            Ok(t) => Some(Timestamp::from_system_time(t).unwrap_or(Timestamp(0))),
            Err(e) => {
                self.problem(
                    path,
                    format!(
                        "`{s}` is not a time ({e}): write it like \"2026-11-26T00:00:00Z\" (UTC)"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn time_range(
        &mut self,
        path: &str,
        starts: Option<&str>,
        ends: Option<&str>,
    ) -> Option<(Timestamp, Timestamp)> {
        let starts = self.timestamp(&format!("{path}.starts"), starts);
        let ends = self.timestamp(&format!("{path}.ends"), ends);
        let (starts, ends) = (starts?, ends?);
        if ends <= starts {
            self.problem(&format!("{path}.ends"), "must be after `starts`");
            return None;
        }
        Some((starts, ends))
    }
}
