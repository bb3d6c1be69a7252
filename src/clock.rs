//! The injected clock. Everything that needs "now" outside the pure core gets it from a
//! [`Clock`], so tests can drive time by hand instead of sleeping.
//!
//! The pure core (`detect`, the alert state machine, the judge) never holds a clock: it is
//! handed a [`Timestamp`] by its caller.
//!
//! This is the only module that reads the system's clocks (`clippy.toml` forbids
//! `SystemTime::now` and `Instant::now` elsewhere): wall-clock time through [`Clock`], and
//! the monotonic clock through [`monotonic`], for measuring a request and for scheduling.

use crate::model::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

pub type SharedClock = Arc<dyn Clock>;

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now()).unwrap_or(Timestamp(0))
    }
}

/// The monotonic clock (tokio's, so `tokio::time::pause` drives it in tests): for request
/// durations and for when the next round is due, never for timestamps.
#[allow(clippy::disallowed_methods)]
pub fn monotonic() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.0)))
    }
    /// Starts at the current wall-clock time (so issued tokens look plausible to peers).
    pub fn starting_now() -> Self {
        ManualClock::new(SystemClock.now())
    }
    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
    pub fn set(&self, to: Timestamp) {
        self.0.store(to.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp(1_000));
        let c2 = c.clone();
        assert_eq!(c.now(), Timestamp(1_000));
        c.advance(std::time::Duration::from_secs(2));
        assert_eq!(c2.now(), Timestamp(3_000));
        c.set(Timestamp(5));
        assert_eq!(c2.now(), Timestamp(5));
    }
}
