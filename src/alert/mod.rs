//! Alerting: from findings to pages.
//!
//! - [`state`]: the pure lifecycle state machine (findings over time + now → notifications).
//! - [`silence`]: silences and maintenance windows (mute, never stop tracking).
//! - [`route`]: which channels a notification goes to.
//! - [`channel`]: pure `render` per channel, and a short `send` (the only code in keycanary
//!   that talks SMTP or HTTP to receivers).
//!
//! Not here: durable state, the outbox and retries (the store and the daemon own those),
//! and reading a clock (callers pass `now`).

pub mod channel;
pub mod route;
pub mod silence;
pub mod state;

pub use route::{Route, route};
pub use silence::{MaintenanceWindow, Silence, SubjectPattern};
pub use state::{AlertPolicy, AlertState, GroupBy, GroupKey, Notification, Status, step};
