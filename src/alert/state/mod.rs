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
//!
//! The rooms: `types` (what the machine remembers and says), `policy` (how findings turn
//! into pages) and `step` (one round, as named phases). Their public items are
//! re-exported here, so `alert::state::X` names them all.

mod policy;
mod step;
mod types;

pub use policy::{AlertPolicy, GroupBy};
pub use step::{retire, step};
pub use types::{AlertState, Episode, GroupKey, Incident, Member, Notification, Sent, Status};

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
