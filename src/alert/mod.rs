//! Alerting: from findings to pages.
//!
//! - [`state`]: the pure lifecycle state machine (findings over time + now → notifications).
//! - [`silence`]: silences and maintenance windows (mute, never stop tracking).
//! - [`route`]: which channels a notification goes to.
//!
//! Pure, like `detect`: no I/O, no clock (callers pass `now`), no `async`.
//!
//! Not here: rendering and sending (`crate::notify`, with its channels), durable state and
//! the outbox (`crate::store`, written by the daemon's commit).

pub mod route;
pub mod silence;
pub mod state;

pub use route::{Route, route};
pub use silence::{MaintenanceWindow, Silence, SubjectPattern};
pub use state::{AlertPolicy, AlertState, GroupBy, GroupKey, Notification, Status, retire, step};
