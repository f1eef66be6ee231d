//! The raft node's clock: the one place its core asks what time it is (deadlines of requests,
//! when to send again, how long a leader has been silent). In production that is tokio's clock,
//! which tests can pause; a simulation drives one by hand, so a run depends on its seed alone.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What time it is, for the raft node.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Instant;
}

/// tokio's clock: the wall clock, unless a test has paused time.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A clock that moves only when told to: for simulations.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Instant) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }

    /// Sets the clock to `to` (never backwards).
    pub fn set(&self, to: Instant) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = (*now).max(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_forward_and_only_when_told() {
        let start = Instant::now();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(5));
        assert_eq!(clock.now(), start + Duration::from_millis(5));
        clock.set(start);
        assert_eq!(clock.now(), start + Duration::from_millis(5));
    }
}
