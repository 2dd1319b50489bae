//! The near cache (L1): values read from the cluster, kept in the client's memory and
//! bounded in bytes, dropped as the nodes invalidate them.
//!
//! Every connection of a client with a near cache turns `CLIENT TRACKING` on, so the node
//! tells it when a key it read changes anywhere in the cluster
//! (`docs/client-side-caching.md`). A reply is put in the cache by the connection's
//! reader before it reads the next frame, and invalidations are read on the same
//! connection after the replies sent before them, so a value is never put back after the
//! invalidation of the change that replaced it. A connection that drops, or an
//! invalidation of everything, empties the whole cache: invalidations it would have
//! carried are lost.

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// Bytes counted for an entry beyond its key and value: the cache's own bookkeeping and
/// the two `Bytes` handles, rounded up.
const ENTRY_OVERHEAD: u64 = 64;

#[derive(Clone)]
struct EntryBytes;

impl Weighter<Bytes, Bytes> for EntryBytes {
    fn weight(&self, key: &Bytes, value: &Bytes) -> u64 {
        (key.len() + value.len()) as u64 + ENTRY_OVERHEAD
    }
}

/// Values by key, at most `max_bytes` of them (keys, values and overhead counted).
pub struct NearCache {
    entries: Cache<Bytes, Bytes, EntryBytes>,
}

impl NearCache {
    /// An empty cache of at most `max_bytes`.
    pub fn new(max_bytes: u64) -> NearCache {
        // quick_cache sizes its tables from an estimate of the entries: one per 256 bytes.
        let estimated_entries = (max_bytes / 256).clamp(16, 1 << 24) as usize;
        NearCache {
            entries: Cache::with_weighter(estimated_entries, max_bytes, EntryBytes),
        }
    }

    /// The cached value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.entries.get(key)
    }

    /// Keeps `value` for `key` (a value larger than the whole cache is not kept).
    pub fn insert(&self, key: Bytes, value: Bytes) {
        self.entries.insert(key, value);
    }

    /// Drops `key`.
    pub fn invalidate(&self, key: &[u8]) {
        self.entries.remove(key);
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Entries and their counted bytes.
    pub fn size(&self) -> (usize, u64) {
        (self.entries.len(), self.entries.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_holds_at_most_its_bytes() {
        let cache = NearCache::new(10_000);
        for i in 0..1000 {
            cache.insert(
                Bytes::from(format!("key:{i}")),
                Bytes::from(vec![b'v'; 100]),
            );
        }
        let (entries, bytes) = cache.size();
        assert!(bytes <= 10_000, "{bytes}");
        assert!(entries > 0 && entries < 1000, "{entries}");
        cache.insert(Bytes::from_static(b"k"), Bytes::from_static(b"v"));
        assert_eq!(cache.get(b"k"), Some(Bytes::from_static(b"v")));
        cache.invalidate(b"k");
        assert_eq!(cache.get(b"k"), None);
        cache.clear();
        assert_eq!(cache.size().0, 0);
    }
}
