//! The negative cache: keys the origin said it has no row for, remembered for the
//! namespace's `negative-ttl`, so that GETs of a missing key do not each query the
//! origin. It lives at the keys' primary, where loads run; time is given in
//! milliseconds by the caller.
//!
//! Clients choose which missing keys are asked for, so the cache is bounded: beyond
//! [`NegativeCache::capacity`] keys, expired entries are dropped first, then arbitrary
//! ones. Forgetting early only costs a load.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;

/// Default most keys a node remembers as missing at the origin.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Keys missing at their origin, each until a time in milliseconds.
pub struct NegativeCache {
    until: Mutex<HashMap<Bytes, u64>>,
    capacity: usize,
}

impl NegativeCache {
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> NegativeCache {
        NegativeCache {
            until: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Most keys it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Remembers that `key` has no row, until `until_ms`.
    pub fn remember(&self, key: Bytes, until_ms: u64, now_ms: u64) {
        let mut until = self.until.lock();
        if until.len() >= self.capacity && !until.contains_key(&key) {
            until.retain(|_, &mut expires| expires > now_ms);
            if until.len() >= self.capacity {
                let victim = until.keys().next().cloned();
                if let Some(victim) = victim {
                    until.remove(&victim);
                }
            }
        }
        until.insert(key, until_ms);
    }

    /// True if `key` is known to have no row at `now_ms`.
    pub fn knows_missing(&self, key: &[u8], now_ms: u64) -> bool {
        let mut until = self.until.lock();
        match until.get(key) {
            Some(&expires) if expires > now_ms => true,
            Some(_) => {
                until.remove(key);
                false
            }
            None => false,
        }
    }

    /// Forgets `key` (it was written, so the origin may have it now).
    pub fn forget(&self, key: &[u8]) {
        self.until.lock().remove(key);
    }

    /// Keys remembered now (expired ones included until they are next looked at).
    pub fn len(&self) -> usize {
        self.until.lock().len()
    }

    /// True if no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> Bytes {
        Bytes::from(format!("k{n}"))
    }

    #[test]
    fn a_missing_key_is_remembered_until_its_time() {
        let cache = NegativeCache::new(10);
        cache.remember(key(1), 1_000, 0);
        assert!(cache.knows_missing(b"k1", 999));
        assert!(!cache.knows_missing(b"k1", 1_000));
        assert!(cache.is_empty());
        cache.remember(key(2), 1_000, 0);
        cache.forget(b"k2");
        assert!(!cache.knows_missing(b"k2", 0));
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let cache = NegativeCache::new(3);
        for n in 0..3 {
            cache.remember(key(n), 100, 0);
        }
        // Full of live entries: an arbitrary one makes room.
        cache.remember(key(3), 100, 0);
        assert_eq!(cache.len(), 3);
        assert!(cache.knows_missing(b"k3", 50));
        // Expired entries go first.
        cache.remember(key(4), 500, 200);
        assert_eq!(cache.len(), 1);
    }
}
