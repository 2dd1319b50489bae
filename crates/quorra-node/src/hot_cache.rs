//! Hot-key mitigation: a copy of each of the cluster's hot keys on every node, so that a
//! GET of a hot key at any node answers from memory, with no hop and no quorum read.
//!
//! The copies follow the cluster-wide hot set ([`crate::hot_keys`]): every
//! [`REFRESH_INTERVAL`] a node's task reads each hot key from the first of its replicas
//! that serves (itself, if it is one) and replaces its copy; a key that left the hot set
//! loses its copy.
//!
//! **Writes are settled.** The read that makes a copy asks the replica it reads from —
//! the one that runs the key's writes — to follow the key ([`crate::tracking`]). When a
//! write changes the key there, that replica tells every node holding a copy, and the
//! write is acknowledged only once they answered ([`crate::executor::settle`]): after a
//! write's reply, no node answers the value it replaced. A refresh whose read began
//! before such a change does not put the old value back ([`HotCache::refresh`]).
//!
//! **Copies are leased.** A copy is served for at most [`HotCache::lease`] (the cluster
//! timeout) from when the read that made it began. A write waits for a node's answer at
//! most that long, so a node that does not answer (paused, cut off) has stopped serving
//! its copy by the time the write is acknowledged without it. A node that cannot refresh
//! a copy stops serving it when its lease runs out; the reads then take the normal path.
//!
//! Copies hold strings only (a GET's value) and their TTL; their bytes are accounted
//! under `maxmemory` beside the store's ([`Store::reserve_outside`]) and bounded by
//! `hot-cache-max-memory` (0 turns mitigation off). A GET served from a copy counts as
//! an access of the key for detection, so a key stays hot on the nodes serving it even
//! though the nodes holding it no longer see its reads.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::RwLock;
use quorra_store::entry::expired;
use quorra_store::{KeyType, Store, VersionedEntry};

/// How often a node reads its hot keys' values again.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// Accounted bytes per copy on top of its key and value: its map entry and the
/// allocations' headers, rounded up.
const COPY_OVERHEAD: u64 = 96;

/// One hot key's value as this node last read it.
struct Copy {
    value: Bytes,
    expire_at_ms: Option<u64>,
    /// When it stops being served: its read's start plus the lease.
    lease_ends: Instant,
    /// Its accounted bytes.
    bytes: u64,
}

/// The copies, and the writes that dropped some.
#[derive(Default)]
struct Copies {
    copies: HashMap<Bytes, Copy>,
    /// Writes through this node that dropped a copy, counted.
    writes: u64,
    /// Hot keys written through this node, with the count of that write: a refresh
    /// whose reads began before it does not copy them back.
    written: HashMap<Bytes, u64>,
    /// The hot set of the last refresh, copied or not.
    hot: HashSet<Bytes>,
    /// The count of writes at the last flush: a refresh begun before it copies nothing.
    flushed: u64,
    /// Hot keys read holding a collection: not read again while they stay hot (a big
    /// hash would be copied over the network ten times a second for nothing).
    not_strings: HashSet<Bytes>,
}

/// The copies of one node.
pub struct HotCache {
    copies: RwLock<Copies>,
    /// Most accounted bytes of copies; 0 turns mitigation off.
    max_bytes: u64,
    /// How long a copy is served after the read that made it began.
    pub lease: Duration,
    /// GETs answered from a copy, since start.
    pub hits: AtomicU64,
    /// Set while there is no copy and no hot key: the request path's one check, an
    /// atomic load rather than the lock.
    idle: AtomicBool,
}

impl HotCache {
    /// Copies of at most `max_bytes` (0: none are kept), each served for `lease` after
    /// the read that made it began.
    pub fn new(max_bytes: u64, lease: Duration) -> HotCache {
        HotCache {
            copies: RwLock::new(Copies::default()),
            max_bytes,
            lease,
            hits: AtomicU64::new(0),
            idle: AtomicBool::new(true),
        }
    }

    /// True when mitigation is on.
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// The value of `key`'s copy at `now_ms` (its TTL) and `now` (its lease), if there is
    /// a live one.
    pub fn get(&self, key: &[u8], now_ms: u64, now: Instant) -> Option<Bytes> {
        let copies = self.copies.read();
        let copy = copies.copies.get(key)?;
        if copy.expire_at_ms.is_some_and(|at| expired(at, now_ms)) || now >= copy.lease_ends {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(copy.value.clone())
    }

    /// True if this node holds a copy of `key`.
    pub fn holds(&self, key: &[u8]) -> bool {
        self.copies.read().copies.contains_key(key)
    }

    /// True if there is no copy and no hot key (the request path's quick check).
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    /// Brings [`is_idle`](Self::is_idle) up to date; called with the lock held after a
    /// change.
    fn note_idle(&self, copies: &Copies) {
        let idle = copies.copies.is_empty() && copies.hot.is_empty();
        self.idle.store(idle, Ordering::Relaxed);
    }

    /// A write of `key` through this node: drops its copy, giving its bytes back; and,
    /// for a hot key, a refresh whose reads began before this does not copy it back.
    pub fn invalidate(&self, store: &Store, key: &[u8]) {
        self.drop_copy(store, key, false);
    }

    /// A change of `key` at the node this one reads it from (which follows the reads of
    /// copies): drops the copy; a refresh whose read began before this, even the first
    /// one of a key that just turned hot, does not copy it back.
    pub fn changed_at_source(&self, store: &Store, key: &[u8]) {
        self.drop_copy(store, key, true);
    }

    fn drop_copy(&self, store: &Store, key: &[u8], read_in_flight: bool) {
        let mut copies = self.copies.write();
        if let Some(copy) = copies.copies.remove(key) {
            store.release_outside(copy.bytes);
        }
        if read_in_flight || copies.hot.contains(key) {
            copies.writes += 1;
            let write = copies.writes;
            copies.written.insert(Bytes::copy_from_slice(key), write);
        }
        self.note_idle(&copies);
    }

    /// A flush: drops every copy; a refresh whose reads began before it copies nothing
    /// it read.
    pub fn clear(&self, store: &Store) {
        let mut copies = self.copies.write();
        for (_, copy) in copies.copies.drain() {
            store.release_outside(copy.bytes);
        }
        copies.writes += 1;
        copies.flushed = copies.writes;
        self.note_idle(&copies);
    }

    /// Where a refresh starts: pass it to [`refresh`](Self::refresh) with what was
    /// read after it.
    pub fn writes_so_far(&self) -> u64 {
        self.copies.read().writes
    }

    /// True for a hot key last read holding a collection, which a refresh need not read.
    pub fn holds_no_string(&self, key: &[u8]) -> bool {
        self.copies.read().not_strings.contains(key)
    }

    /// Keys copied and their accounted bytes.
    pub fn size(&self) -> (usize, u64) {
        let copies = self.copies.read();
        let bytes = copies.copies.values().map(|copy| copy.bytes).sum();
        (copies.copies.len(), bytes)
    }

    /// Brings the copies in line with the hot set `hot` and the entries read for them
    /// from `read_at` on, after [`writes_so_far`](Self::writes_so_far) answered `started`
    /// (`None`: the read failed, so the copy, if any, stays as it was, until its lease
    /// ends): a key not in `hot` or read missing, deleted or of another type than a
    /// string loses its copy; the others are copied, hottest first, while they fit under
    /// the limit and under `maxmemory` — except a key dropped since `started` (a write
    /// through this node, a change where it is read from), whose read may predate it.
    pub fn refresh(
        &self,
        store: &Store,
        started: u64,
        read_at: Instant,
        hot: &[(Bytes, Option<Option<VersionedEntry>>)],
    ) {
        let now = store.now_ms();
        let mut guard = self.copies.write();
        let Copies {
            copies,
            written,
            hot: tracked,
            not_strings,
            flushed,
            ..
        } = &mut *guard;
        let read_before_a_flush = *flushed > started;
        *tracked = hot.iter().map(|(key, _)| key.clone()).collect();
        not_strings.retain(|key| tracked.contains(key));
        let keep: HashMap<&[u8], _> = hot.iter().map(|(key, read)| (&key[..], read)).collect();
        copies.retain(|key, copy| {
            let kept = match keep.get(&key[..]) {
                None => false,
                // Not read: kept as it was.
                Some(None) => true,
                // Read before a write through this node: kept, as it was.
                Some(Some(_)) if written.get(key).is_some_and(|&write| write > started) => true,
                // Replaced below, or gone.
                Some(Some(_)) => false,
            };
            if !kept {
                store.release_outside(copy.bytes);
            }
            kept
        });
        let mut total: u64 = copies.values().map(|copy| copy.bytes).sum();
        for (key, read) in hot {
            let Some(Some(entry)) = read else {
                continue;
            };
            if read_before_a_flush || written.get(key).is_some_and(|&write| write > started) {
                continue;
            }
            if !entry.tombstone && entry.kind != KeyType::String {
                not_strings.insert(key.clone());
                continue;
            }
            let live = !entry.tombstone && !entry.expire_at_ms.is_some_and(|at| expired(at, now));
            if !live {
                continue;
            }
            let bytes = (key.len() + entry.value.len()) as u64 + COPY_OVERHEAD;
            if total + bytes > self.max_bytes || !store.reserve_outside(bytes) {
                continue;
            }
            total += bytes;
            copies.insert(
                key.clone(),
                Copy {
                    value: entry.value.clone(),
                    expire_at_ms: entry.expire_at_ms,
                    lease_ends: read_at + self.lease,
                    bytes,
                },
            );
        }
        // What the next refresh's reads, which begin after this, cannot predate.
        written.retain(|_, write| *write > started);
        self.note_idle(&guard);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use quorra_store::{MockClock, StoreConfig, Version};

    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const LEASE: Duration = Duration::from_secs(1);

    fn entry(value: &str, expire_at_ms: Option<u64>) -> Option<Option<VersionedEntry>> {
        let mut entry =
            VersionedEntry::value(Bytes::from(value.to_owned()), Version { hlc: 1, node: 1 });
        entry.expire_at_ms = expire_at_ms;
        Some(Some(entry))
    }

    fn key(text: &str) -> Bytes {
        Bytes::from(text.to_owned())
    }

    #[test]
    fn copies_follow_the_hot_set_and_are_accounted_under_maxmemory() {
        let t0 = Instant::now();
        let store = Store::new(
            StoreConfig {
                maxmemory: 10_000,
                ..StoreConfig::default()
            },
            Arc::new(MockClock::new(NOW)),
        );
        let cache = HotCache::new(1_000, LEASE);
        cache.refresh(
            &store,
            0,
            t0,
            &[
                (key("a"), entry("1", None)),
                (key("gone"), Some(None)),
                (key("soon"), entry("2", Some(NOW + 10))),
                (key("big"), entry(&"x".repeat(900), None)),
            ],
        );
        assert_eq!(cache.get(b"a", NOW, t0), Some(key("1")));
        assert_eq!(cache.get(b"gone", NOW, t0), None);
        assert_eq!(
            cache.get(b"soon", NOW + 11, t0),
            None,
            "a copy keeps its TTL"
        );
        assert_eq!(
            cache.get(b"big", NOW, t0),
            None,
            "over hot-cache-max-memory"
        );
        assert!(!cache.holds_no_string(b"a"));
        let (keys, bytes) = cache.size();
        assert_eq!((keys, bytes), (2, (1 + 1) + (4 + 1) + 2 * COPY_OVERHEAD));
        assert_eq!(store.used_memory(), bytes, "counted under maxmemory");
        assert_eq!(cache.hits.load(Ordering::Relaxed), 1);

        // A failed read keeps the copy; a key that left the hot set loses it; a write
        // through this node drops its copy.
        cache.refresh(
            &store,
            0,
            t0,
            &[(key("a"), None), (key("soon"), entry("3", None))],
        );
        assert_eq!(cache.get(b"a", NOW, t0), Some(key("1")));
        assert_eq!(cache.get(b"soon", NOW + 10, t0), Some(key("3")));
        cache.refresh(&store, 0, t0, &[(key("soon"), entry("3", None))]);
        assert_eq!(cache.get(b"a", NOW, t0), None);
        cache.invalidate(&store, b"soon");
        assert_eq!(cache.size().0, 0);
        assert_eq!(store.used_memory(), 0);
        store.check_invariants().unwrap();

        // A hot collection is not copied, and not read again while it stays hot.
        let mut hash = entry("", None).unwrap().unwrap();
        hash.kind = KeyType::Hash;
        cache.refresh(&store, 0, t0, &[(key("h"), Some(Some(hash)))]);
        assert!(cache.holds_no_string(b"h"));
        cache.refresh(&store, 0, t0, &[]);
        assert!(!cache.holds_no_string(b"h"), "forgotten once it cools");

        // No room under maxmemory: nothing copied.
        let full = Store::new(
            StoreConfig {
                maxmemory: 50,
                ..StoreConfig::default()
            },
            Arc::new(MockClock::new(NOW)),
        );
        cache.refresh(&full, 0, t0, &[(key("a"), entry("1", None))]);
        assert_eq!(cache.size().0, 0);
    }

    #[test]
    fn a_zero_limit_turns_mitigation_off() {
        let t0 = Instant::now();
        let store = Store::new(StoreConfig::default(), Arc::new(MockClock::new(NOW)));
        let cache = HotCache::new(0, LEASE);
        assert!(!cache.enabled());
        cache.refresh(&store, 0, t0, &[(key("a"), entry("1", None))]);
        assert_eq!(cache.size().0, 0);
    }

    #[test]
    fn a_read_begun_before_a_write_through_this_node_does_not_bring_the_old_value_back() {
        let t0 = Instant::now();
        let store = Store::new(StoreConfig::default(), Arc::new(MockClock::new(NOW)));
        let cache = HotCache::new(1_000, LEASE);
        cache.refresh(
            &store,
            cache.writes_so_far(),
            t0,
            &[(key("k"), entry("old", None))],
        );
        assert_eq!(cache.get(b"k", NOW, t0), Some(key("old")));
        // A refresh begins; a write through this node lands while it reads.
        let started = cache.writes_so_far();
        cache.invalidate(&store, b"k");
        cache.refresh(&store, started, t0, &[(key("k"), entry("old", None))]);
        assert_eq!(
            cache.get(b"k", NOW, t0),
            None,
            "the write is not hidden by the old read"
        );
        // A write while there is no copy, during the next refresh, counts the same.
        let started = cache.writes_so_far();
        cache.invalidate(&store, b"k");
        cache.refresh(&store, started, t0, &[(key("k"), entry("older", None))]);
        assert_eq!(cache.get(b"k", NOW, t0), None);
        // A refresh begun after the writes copies the key again.
        cache.refresh(
            &store,
            cache.writes_so_far(),
            t0,
            &[(key("k"), entry("new", None))],
        );
        assert_eq!(cache.get(b"k", NOW, t0), Some(key("new")));
        assert!(!cache.is_idle());
    }

    #[test]
    fn a_copy_is_served_only_during_its_lease_and_a_failed_refresh_does_not_renew_it() {
        let store = Store::new(StoreConfig::default(), Arc::new(MockClock::new(NOW)));
        let lease = Duration::from_millis(500);
        let cache = HotCache::new(1_000, lease);
        let t0 = Instant::now();
        cache.refresh(&store, 0, t0, &[(key("k"), entry("v", None))]);
        assert_eq!(cache.get(b"k", NOW, t0 + lease / 2), Some(key("v")));
        // The next read failed: the copy stays, with the lease it had.
        cache.refresh(&store, 0, t0 + lease / 2, &[(key("k"), None)]);
        assert_eq!(cache.get(b"k", NOW, t0 + lease), None, "its lease ran out");
        cache.refresh(&store, 0, t0 + lease, &[(key("k"), entry("v2", None))]);
        assert_eq!(cache.get(b"k", NOW, t0 + lease), Some(key("v2")));
    }

    #[test]
    fn a_change_at_the_source_during_the_first_read_of_a_new_hot_key_keeps_it_out() {
        let store = Store::new(StoreConfig::default(), Arc::new(MockClock::new(NOW)));
        let cache = HotCache::new(1_000, LEASE);
        let t0 = Instant::now();
        // The key is not in the hot set yet: its first read is in flight.
        let started = cache.writes_so_far();
        cache.changed_at_source(&store, b"k");
        cache.refresh(&store, started, t0, &[(key("k"), entry("old", None))]);
        assert_eq!(cache.get(b"k", NOW, t0), None);
    }

    #[test]
    fn a_flush_drops_every_copy_and_a_refresh_begun_before_it_copies_nothing() {
        let store = Store::new(StoreConfig::default(), Arc::new(MockClock::new(NOW)));
        let cache = HotCache::new(1_000, LEASE);
        let t0 = Instant::now();
        cache.refresh(&store, 0, t0, &[(key("a"), entry("1", None))]);
        let started = cache.writes_so_far();
        cache.clear(&store);
        assert_eq!(cache.size().0, 0);
        assert_eq!(store.used_memory(), 0);
        cache.refresh(&store, started, t0, &[(key("new"), entry("old", None))]);
        assert_eq!(cache.size().0, 0, "read before the flush");
        cache.refresh(
            &store,
            cache.writes_so_far(),
            t0,
            &[(key("new"), entry("2", None))],
        );
        assert_eq!(cache.get(b"new", NOW, t0), Some(key("2")));
    }
}
