//! Rate-limited log lines: what a remote party can trigger (failed passwords, forged
//! requests, accept errors when out of file descriptors) must not flood the log.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wall_clock::unix_ms;

/// Lets a log line through at most once per interval, and counts the ones it held back,
/// so that what a remote party can trigger (failed passwords, forged requests, accept
/// errors when out of file descriptors) cannot flood the log.
#[derive(Debug)]
pub struct LogLimiter {
    interval_ms: u64,
    last_ms: AtomicU64,
    held_back: AtomicU64,
}

impl LogLimiter {
    /// A limiter letting one line through per `interval_ms`.
    pub const fn new(interval_ms: u64) -> LogLimiter {
        LogLimiter {
            interval_ms,
            last_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` if a line may be logged now, `n` being the lines held back since the
    /// last one; `None` if this one must be held back.
    pub fn admit(&self) -> Option<u64> {
        let now = unix_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= self.interval_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if due {
            Some(self.held_back.swap(0, Ordering::Relaxed))
        } else {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
