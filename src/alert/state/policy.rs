//! How findings turn into pages: [`AlertPolicy`] (thresholds, `for`, reminders, grouping,
//! maintenance windows) and [`GroupBy`], built from `[alerting]`.
//!
//! Plain configuration: no runtime state lives here (that is [`super::AlertState`]), and
//! nothing here decides anything (that is [`super::step()`]).

use crate::alert::silence::MaintenanceWindow;
use serde::{Deserialize, Serialize};
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
