//! Time source for the store.
//!
//! The store never reads the system time directly: every operation asks the [`Clock`] it
//! was built with for "now" in milliseconds since the Unix epoch, once per operation.
//! Production code uses [`SystemClock`]; tests use [`MockClock`], a shared counter that
//! only moves when the test calls [`MockClock::advance`] or [`MockClock::set`], so TTL
//! tests never sleep and are deterministic.
//!
//! Failure modes: a wall clock that steps backwards makes keys look younger (they expire
//! later than asked, never earlier than their absolute deadline); version issuance does
//! not depend on it being monotonic because [`crate::HybridClock`] never goes backwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since 1970-01-01T00:00:00Z. Should be (but need not be) monotonic.
    fn now_ms(&self) -> u64;
}

/// The operating system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a misconfigured host; treat it as the epoch.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A manually driven clock for tests. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct MockClock {
    /// Shared so that the test keeps a handle after giving a clone to the store.
    now: Arc<AtomicU64>,
}

impl MockClock {
    /// A mock clock showing `start_ms` milliseconds since the epoch.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves time forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }

    /// Sets the time to `ms` milliseconds since the epoch (may go backwards).
    pub fn set(&self, ms: u64) {
        self.now.store(ms, Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_is_shared_and_only_moves_when_told() {
        let c = MockClock::new(1_000);
        let c2 = c.clone();
        assert_eq!(c2.now_ms(), 1_000);
        c.advance(Duration::from_millis(250));
        assert_eq!(c2.now_ms(), 1_250);
        c.set(5);
        assert_eq!(c2.now_ms(), 5);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
