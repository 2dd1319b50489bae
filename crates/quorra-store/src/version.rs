//! Versions for last-writer-wins replication, issued by a hybrid logical clock.
//!
//! A [`Version`] is a pair `(hlc, node)` compared lexicographically, so the order is
//! total: two writes with the same timestamp are ordered by the numeric id of the node
//! that made them. The `hlc` word packs wall-clock milliseconds and a logical counter:
//!
//! ```text
//!  63                                            16 15              0
//! +------------------------------------------------+-----------------+
//! |        physical time, ms since the epoch       | logical counter |
//! |                  (48 bits)                     |    (16 bits)    |
//! +------------------------------------------------+-----------------+
//! ```
//!
//! 48 bits of milliseconds last until the year 10889.
//!
//! [`HybridClock::next`] returns `max(now_ms << 16, last + 1)`: when the wall clock moves
//! forward the counter restarts at zero; when it stands still or steps back the previous
//! value is incremented, so issued versions are strictly increasing on one node. If more
//! than 65 536 versions are issued within one millisecond the counter carries into the
//! physical part, which then runs slightly ahead of the wall clock until it catches up;
//! nothing breaks. [`HybridClock::observe`] folds in a version received from another
//! node, so that a later local write is always newer than anything this node has seen
//! (that is what lets a local write overwrite a replicated tombstone).

use std::sync::atomic::Ordering;

use crate::sync::AtomicU64;

/// Number of low bits of [`Version::hlc`] that hold the logical counter.
pub const LOGICAL_BITS: u32 = 16;

/// The version of one write: hybrid logical timestamp, then node id as a tie-break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    /// Physical ms (high 48 bits) and logical counter (low 16 bits).
    pub hlc: u64,
    /// Numeric id of the node that issued the version; breaks ties.
    pub node: u64,
}

impl Version {
    /// The smallest version; older than every issued one.
    pub const ZERO: Version = Version { hlc: 0, node: 0 };

    /// A version from its parts.
    pub const fn new(physical_ms: u64, logical: u16, node: u64) -> Self {
        Version {
            hlc: (physical_ms << LOGICAL_BITS) | logical as u64,
            node,
        }
    }

    /// Wall-clock milliseconds part.
    pub const fn physical_ms(self) -> u64 {
        self.hlc >> LOGICAL_BITS
    }

    /// Logical counter part.
    pub const fn logical(self) -> u16 {
        // Truncation is the point: the low 16 bits are the counter.
        (self.hlc & 0xffff) as u16
    }
}

/// Issues strictly increasing [`Version`]s for one node.
#[derive(Debug)]
pub struct HybridClock {
    /// Last issued or observed `hlc` word; only ever grows (CAS loop).
    last: AtomicU64,
    /// This node's id, stamped into every issued version.
    node: u64,
}

impl HybridClock {
    /// A clock for node `node` that has issued nothing yet.
    pub fn new(node: u64) -> Self {
        Self {
            last: AtomicU64::new(0),
            node,
        }
    }

    /// The node id stamped into issued versions.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// A version newer than every version issued or observed so far, given the wall
    /// clock reading `now_ms`.
    pub fn next(&self, now_ms: u64) -> Version {
        let physical = now_ms << LOGICAL_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = physical.max(last.saturating_add(1));
            match self.last.compare_exchange_weak(
                last,
                candidate,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Version {
                        hlc: candidate,
                        node: self.node,
                    };
                }
                Err(seen) => last = seen,
            }
        }
    }

    /// Records a version seen from elsewhere so later [`next`](Self::next) calls exceed it.
    pub fn observe(&self, seen: Version) {
        self.last.fetch_max(seen.hlc, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use super::*;

    #[test]
    fn version_is_small_and_ordered_by_time_then_node() {
        assert_eq!(std::mem::size_of::<Version>(), 16);
        assert!(Version::new(5, 0, 9) < Version::new(5, 1, 0));
        assert!(Version::new(5, 1, 1) < Version::new(5, 1, 2));
        assert!(Version::new(4, 0xffff, 9) < Version::new(5, 0, 0));
        let v = Version::new(1234, 7, 3);
        assert_eq!((v.physical_ms(), v.logical()), (1234, 7));
    }

    #[test]
    fn hybrid_clock_is_strictly_increasing_even_when_time_stands_still_or_goes_back() {
        let c = HybridClock::new(1);
        let a = c.next(100);
        let b = c.next(100);
        let d = c.next(50);
        let e = c.next(200);
        assert!(a < b && b < d && d < e);
        assert_eq!(a, Version::new(100, 0, 1));
        assert_eq!(b, Version::new(100, 1, 1));
        assert_eq!(e, Version::new(200, 0, 1));
    }

    #[test]
    fn observe_pushes_the_clock_past_remote_versions() {
        let c = HybridClock::new(1);
        let remote = Version::new(10_000, 5, 2);
        c.observe(remote);
        let v = c.next(1);
        assert!(v > remote);
        assert_eq!(v.node, 1);
    }
}
