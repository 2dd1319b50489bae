//! The keys a store evicted for memory, remembered for a while, so that replication
//! does not copy them back.
//!
//! With copies, a key one replica evicts is dropped by the others too (the node tells
//! them), but for a few milliseconds the others still hold it, and anti-entropy or a
//! quorum read's repair may find the evicting replica without it and copy it back —
//! onto a node short of memory, which then evicts something else, and the cluster
//! churns keys back and forth. So a store remembers what it evicted (its own choice, or
//! a replica's) and [`Store::apply`](crate::Store::apply) refuses an entry of a key it
//! evicted at that version or a newer one ([`ApplyOutcome::Evicted`]). A client's new
//! write has a newer version and is taken as usual.
//!
//! The memory is a direct-mapped table per shard, indexed by the key's hash: fixed
//! size (a few hundred kilobytes for the whole store), no allocation per eviction, and
//! lossy — a newer eviction overwrites an older one in the same place, after which that
//! older key could be copied back once, as it could without this table. It only has to
//! cover the moments until the other replicas have dropped the key too.
//!
//! [`ApplyOutcome::Evicted`]: crate::ApplyOutcome::Evicted

use crate::version::Version;

/// Evictions remembered by the whole store, spread over its shards.
pub(crate) const REMEMBERED_EVICTIONS: usize = 8192;

/// One shard's recent evictions.
#[derive(Debug, Default)]
pub(crate) struct RecentlyEvicted {
    /// `(key hash, version evicted)` by `hash % len`; allocated at the first eviction.
    slots: Vec<(u64, Version)>,
}

impl RecentlyEvicted {
    /// Remembers that the key of hash `hash` was evicted holding `version`. `capacity`
    /// is this shard's share of [`REMEMBERED_EVICTIONS`].
    pub(crate) fn remember(&mut self, hash: u64, version: Version, capacity: usize) {
        if self.slots.is_empty() {
            self.slots = vec![(0, Version::default()); capacity.max(1)];
        }
        let index = (hash % self.slots.len() as u64) as usize;
        self.slots[index] = (hash, version);
    }

    /// True if the key of hash `hash` was evicted here holding `version` or a newer one.
    pub(crate) fn covers(&self, hash: u64, version: Version) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (held, evicted) = self.slots[(hash % self.slots.len() as u64) as usize];
        held == hash && evicted >= version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(hlc: u64) -> Version {
        Version { hlc, node: 1 }
    }

    #[test]
    fn an_eviction_covers_its_version_and_older_ones_until_overwritten() {
        let mut evicted = RecentlyEvicted::default();
        assert!(!evicted.covers(7, version(1)));
        evicted.remember(7, version(5), 4);
        assert!(evicted.covers(7, version(5)));
        assert!(evicted.covers(7, version(4)));
        assert!(
            !evicted.covers(7, version(6)),
            "a newer write is not refused"
        );
        assert!(!evicted.covers(3, version(1)), "another key is not covered");
        // 11 falls in 7's place (11 % 4 == 7 % 4): the older eviction is forgotten.
        evicted.remember(11, version(9), 4);
        assert!(!evicted.covers(7, version(5)));
        assert!(evicted.covers(11, version(9)));
    }
}
