//! The store: shards behind mutexes, the memory budget, the clocks, and the Redis
//! string commands on top.
//!
//! This module holds the store itself and the building blocks every operation shares —
//! finding a key (with lazy expiry), reserving memory and evicting, writing an entry,
//! deleting one (a tombstone or nothing), locking several shards. The operations are
//! grouped by mechanism in its submodules: `reads`, `writes` (SET and
//! read-modify-write), `transfer` (RENAME, COPY), `expire` (the EXPIRE family),
//! `versioned` (what replication reads and applies), `maintenance` (the active expiry
//! cycle, counters, invariant checks), and `deadline` (TTL options as absolute
//! deadlines).
//!
//! # Sharding
//!
//! A key's hash is xxh3-64 of its bytes ([`quorra_ring::key_hash`]; the ring's token
//! for a key without a hash tag), computed once per operation and stored in the slot.
//! Tagged keys are hashed whole here, not by their tag, so that many keys of one tag do
//! not share a hash. The shard index is taken from the bits below the
//! top 7, `(h << 7) >> (64 - log2(shards))`, because hashbrown uses the top 7 bits as
//! its control tag; using them for shard choice too would leave every key of a shard
//! with nearly the same tag. Each shard has its own `parking_lot::Mutex`. An operation
//! on one key locks one shard; MSET/MSETNX/RENAME/COPY lock every shard they touch in
//! increasing shard index, so they cannot deadlock with each other; eviction across
//! shards and the active expiry cycle hold one lock at a time.
//!
//! # Memory and eviction
//!
//! A write computes the growth of the accounted total, reserves it in the global
//! [`MemoryBudget`](crate::memory) and only then changes the shard, so the accounted
//! total never exceeds `maxmemory`. If the reservation fails under `AllKeysLru`, the
//! writer evicts the least recently used entry of the shard(s) it holds locked (never
//! an entry the operation itself reads or writes) and tries again. Only when those
//! shards have nothing left to evict does it release its locks, evict round-robin from
//! all shards (one lock at a time) and retry the whole operation, at most
//! [`MAX_ROOM_ATTEMPTS`] times before answering `OutOfMemory`.
//!
//! This is an approximation of global LRU: with keys spread uniformly over shards, each
//! shard's tail is about as old as the global tail, but a shard whose keys are all hot
//! still loses its least hot key when it is written to while another shard holds
//! colder data. Tombstones are evicted only after a shard's live entries (oldest
//! first); evicting one early lets a delayed stale replica write resurrect the key.
//!
//! # SCAN
//!
//! The cursor is `(shard << 32) | slot`. A key keeps its slab slot for its whole life
//! (overwrites included), and slots never move, so walking shards in order and slots
//! in index order returns every key that exists for the whole scan at least once.
//! Keys created during the scan may or may not be returned; a slot freed and reused by
//! another key behind the cursor is not revisited.
//!
//! # Versions and tombstones
//!
//! Every local write stamps a fresh version from the store's [`HybridClock`]. A local
//! delete leaves a tombstone carrying its version (key bytes only, accounted like an
//! entry) that is purged by the active expiry cycle after `tombstone_grace_ms`; with a
//! grace of 0 deletes remove entries outright. [`Store::apply`] keeps whichever version
//! is newer. Local expiry (lazy or active) removes entries without a tombstone: every
//! replica expires the same absolute deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::clock::Clock;
use crate::collection::Collection;
use crate::entry::*;
use crate::error::StoreError;
use crate::memory::MemoryBudget;
use crate::shard::{Shard, State, make_data};
use crate::stats::ShardStats;
use crate::sync::{AtomicU8, AtomicU64, AtomicUsize, Mutex, MutexGuard};
use crate::version::{HybridClock, Version};
use recently_evicted::{REMEMBERED_EVICTIONS, RecentlyEvicted};

mod collections;
mod deadline;
pub mod delta;
mod expire;
mod maintenance;
mod reads;
mod recently_evicted;
mod transfer;
mod versioned;
mod writes;

/// Longest key the store accepts, bytes; longer keys are refused with
/// [`StoreError::ValueTooLarge`] (Redis's 512 MiB argument limit is lower anyway).
pub const MAX_KEY_LEN: usize = crate::shard::MAX_KEY_LEN;
/// Default number of shards. `benches/store.rs` compares 1, 16 and 64 shards with two
/// threads: one shard is clearly slower for SET (one lock for both threads); 16 and 64
/// were within run-to-run noise on the 2-core machine used, so the smaller count (less
/// fixed memory, fuller hash tables) is the default. See `docs/benchmarks.md`.
pub const DEFAULT_SHARDS: usize = 16;
/// Largest allowed shard count.
pub const MAX_SHARDS: usize = 1 << 16;
/// Default grace period of tombstones, milliseconds.
pub const DEFAULT_TOMBSTONE_GRACE_MS: u64 = 60_000;
/// Default maximum string length, bytes (Redis `proto-max-bulk-len`).
pub const DEFAULT_MAX_STRING_LEN: u64 = 512 * 1024 * 1024;
/// How many times a write retries after global eviction before answering OutOfMemory.
pub const MAX_ROOM_ATTEMPTS: usize = 8;
/// Random slot probes per shard before RANDOMKEY falls back to the LRU head.
pub const RANDOMKEY_PROBES: usize = 32;
/// Slots SCAN may visit per requested key before returning early, so sparse slabs
/// cannot make one call unbounded.
pub const SCAN_VISITS_PER_COUNT: usize = 10;

/// What to do when a write needs memory beyond `maxmemory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxmemoryPolicy {
    /// Evict least recently used entries (approximately, see module docs).
    #[default]
    AllKeysLru,
    /// Refuse the write with [`StoreError::OutOfMemory`].
    NoEviction,
}

/// Construction parameters of a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Number of shards; rounded up to a power of two, at most [`MAX_SHARDS`].
    pub shards: usize,
    /// Accounted-bytes limit; 0 = unlimited.
    pub maxmemory: u64,
    /// Behaviour when a write needs memory.
    pub policy: MaxmemoryPolicy,
    /// This node's numeric id, stamped in every local version.
    pub node_id: u64,
    /// How long tombstones are kept, ms; 0 = deletes leave no tombstone.
    pub tombstone_grace_ms: u64,
    /// Maximum string length for APPEND / SETRANGE, bytes.
    pub max_string_len: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            shards: DEFAULT_SHARDS,
            maxmemory: 0,
            policy: MaxmemoryPolicy::AllKeysLru,
            node_id: 0,
            tombstone_grace_ms: DEFAULT_TOMBSTONE_GRACE_MS,
            max_string_len: DEFAULT_MAX_STRING_LEN,
        }
    }
}

/// One shard and its lock-free counters. Aligned to 128 bytes (two cache lines, the
/// unit of adjacent-line prefetch on x86) so that threads working on neighbouring
/// shards do not bounce each other's lock word and counters.
#[repr(align(128))]
struct Cell {
    shard: Mutex<Shard>,
    stats: ShardStats,
    /// Taken inside `shard`'s lock, never on its own.
    evicted: Mutex<RecentlyEvicted>,
}

/// Why an internal step could not finish.
enum Fail {
    /// Give this error to the caller.
    Store(StoreError),
    /// The locked shards have nothing left to evict; this many bytes are still needed.
    Room(u64),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

/// Outcome of a lookup that may lazily expire.
#[derive(Clone, Copy)]
struct Found {
    /// The slot of a live, unexpired entry.
    live: Option<u32>,
    /// The slot holding the key in any state (a tombstone's slot can be reused).
    slot: Option<u32>,
}

/// One node's data. Cheap to share: wrap it in an `Arc`.
pub struct Store {
    cells: Box<[Cell]>,
    shard_bits: u32,
    mem: MemoryBudget,
    /// Bytes of `mem` the node holds outside the store ([`Store::reserve_outside`]).
    outside: AtomicU64,
    policy: AtomicU8,
    clock: Arc<dyn Clock>,
    hlc: HybridClock,
    tombstone_grace_ms: u64,
    max_string_len: u64,
    observer: Option<Arc<dyn AccessObserver>>,
    removals: Option<Arc<dyn RemovalObserver>>,
    /// Next shard for cross-shard eviction (spreads the damage).
    evict_rr: AtomicUsize,
    /// Shard where the next active expiry cycle starts.
    expire_rr: AtomicUsize,
    /// xorshift state for RANDOMKEY.
    rng: AtomicU64,
    /// Sections: a command holds it shared, a transaction exclusively (see
    /// [`Store::shared_section`]). parking_lot's, even under shuttle: the store's own
    /// operations never take it, so its model checks do not involve it.
    sections: parking_lot::RwLock<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("shards", &self.cells.len())
            .field("used", &self.mem.used())
            .field("maxmemory", &self.mem.limit())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store with `config`, reading time from `clock`.
    pub fn new(config: StoreConfig, clock: Arc<dyn Clock>) -> Self {
        let n = config.shards.clamp(1, MAX_SHARDS).next_power_of_two();
        let cells = (0..n)
            .map(|_| Cell {
                shard: Mutex::new(Shard::default()),
                stats: ShardStats::default(),
                evicted: Mutex::new(RecentlyEvicted::default()),
            })
            .collect();
        let seed = clock.now_ms() ^ 0x9E37_79B9_7F4A_7C15;
        Self {
            cells,
            shard_bits: n.trailing_zeros(),
            mem: MemoryBudget::new(config.maxmemory),
            outside: AtomicU64::new(0),
            policy: AtomicU8::new(config.policy as u8),
            hlc: HybridClock::new(config.node_id),
            clock,
            tombstone_grace_ms: config.tombstone_grace_ms,
            max_string_len: config.max_string_len,
            observer: None,
            removals: None,
            evict_rr: AtomicUsize::new(0),
            expire_rr: AtomicUsize::new(0),
            rng: AtomicU64::new(seed | 1),
            sections: parking_lot::RwLock::new(()),
        }
    }

    /// A shared section: what one command of a node (or one replica read or apply)
    /// holds while it runs, so that it never sees, or lands in the middle of, the
    /// commands of an [`exclusive_section`](Self::exclusive_section). Shared sections
    /// run side by side. The store's own operations do not take sections; atomicity
    /// across several operations is the caller's, and this is its tool.
    pub fn shared_section(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.sections.read()
    }

    /// [`shared_section`](Self::shared_section), or `None` if an exclusive section held
    /// it for all of `wait` (a long script: the caller may answer `BUSY` instead).
    #[inline]
    pub fn try_shared_section_for(
        &self,
        wait: std::time::Duration,
    ) -> Option<parking_lot::RwLockReadGuard<'_, ()>> {
        self.sections.try_read_for(wait)
    }

    /// [`exclusive_section`](Self::exclusive_section), or `None` after `wait`.
    pub fn try_exclusive_section_for(
        &self,
        wait: std::time::Duration,
    ) -> Option<parking_lot::RwLockWriteGuard<'_, ()>> {
        self.sections.try_write_for(wait)
    }

    /// An exclusive section: a transaction's commands (EXEC), or the apply of a
    /// transaction's copies on a replica, run inside one, with no shared section open.
    /// Must not be taken by a thread that holds a shared section (it would wait for
    /// itself).
    pub fn exclusive_section(&self) -> parking_lot::RwLockWriteGuard<'_, ()> {
        self.sections.write()
    }

    /// Installs the access observer (hot-key detector). Call before sharing the store.
    pub fn with_observer(mut self, observer: Arc<dyn AccessObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Installs the removal observer (evictions, expirations). Call before sharing the
    /// store.
    pub fn with_removal_observer(mut self, observer: Arc<dyn RemovalObserver>) -> Self {
        self.removals = Some(observer);
        self
    }

    /// Records that the live entry in slot `i` of `sh` expired, for the stats and the
    /// removal observer; the caller drops it.
    fn note_expired(&self, sh: &Shard, cell: &Cell, i: u32) {
        cell.stats.expired();
        if let Some(removals) = &self.removals {
            removals.on_expire(sh.slot(i).key());
        }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.cells.len()
    }

    /// The store's version clock (the server's replication layer stamps with it too).
    pub fn hybrid_clock(&self) -> &HybridClock {
        &self.hlc
    }

    /// Shard index of a key hash: the `log2(shards)` bits below the top 7.
    pub fn shard_of_hash(&self, h: u64) -> usize {
        if self.shard_bits == 0 {
            0
        } else {
            ((h << 7) >> (64 - self.shard_bits)) as usize
        }
    }

    fn locate(&self, key: &[u8], kind: AccessKind) -> (u64, usize) {
        let h = quorra_ring::key_hash(key);
        if let Some(o) = &self.observer {
            o.on_access(h, key, kind);
        }
        (h, self.shard_of_hash(h))
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Current eviction policy.
    pub fn policy(&self) -> MaxmemoryPolicy {
        if self.policy.load(Ordering::Relaxed) == MaxmemoryPolicy::NoEviction as u8 {
            MaxmemoryPolicy::NoEviction
        } else {
            MaxmemoryPolicy::AllKeysLru
        }
    }

    /// Changes the eviction policy (CONFIG SET maxmemory-policy).
    pub fn set_policy(&self, policy: MaxmemoryPolicy) {
        self.policy.store(policy as u8, Ordering::Relaxed);
    }

    /// Current `maxmemory` in bytes (0 = unlimited).
    pub fn maxmemory(&self) -> u64 {
        self.mem.limit()
    }

    /// Accounted bytes in use.
    pub fn used_memory(&self) -> u64 {
        self.mem.used()
    }

    /// Accounts `bytes` the node holds outside the store (its copies of the cluster's
    /// hot keys) under the same `maxmemory`, if they fit without evicting anything:
    /// false, and nothing accounted, if they do not. Given back with
    /// [`release_outside`](Self::release_outside).
    pub fn reserve_outside(&self, bytes: u64) -> bool {
        let fits = self.mem.try_reserve(bytes);
        if fits {
            self.outside.fetch_add(bytes, Ordering::Relaxed);
        }
        fits
    }

    /// Gives back `bytes` of what [`reserve_outside`](Self::reserve_outside) accounted.
    pub fn release_outside(&self, bytes: u64) {
        self.outside.fetch_sub(bytes, Ordering::Relaxed);
        self.mem.release(bytes);
    }

    /// Changes `maxmemory` (CONFIG SET maxmemory). Under `AllKeysLru`, evicts until the
    /// accounted total fits the new limit or nothing evictable is left; returns the
    /// number of entries evicted. Under `NoEviction` nothing is evicted; writes that need
    /// memory fail until enough is deleted.
    pub fn set_maxmemory(&self, limit: u64) -> u64 {
        self.mem.set_limit(limit);
        let mut evicted = 0;
        if limit == 0 || self.policy() == MaxmemoryPolicy::NoEviction {
            return 0;
        }
        loop {
            let used = self.mem.used();
            if used <= limit {
                return evicted;
            }
            let (freed, n) = self.evict_global(used - limit, &[]);
            evicted += n;
            if freed == 0 {
                return evicted;
            }
        }
    }

    // ---- internal building blocks -------------------------------------------------

    fn sync_stats(sh: &Shard, cell: &Cell) {
        cell.stats.entries.store(sh.live(), Ordering::Relaxed);
        cell.stats
            .tombstones
            .store(sh.tombstones(), Ordering::Relaxed);
        cell.stats.used_bytes.store(sh.bytes(), Ordering::Relaxed);
        cell.stats.volatile.store(sh.volatile(), Ordering::Relaxed);
        cell.stats
            .entries_outside_db0
            .store(sh.live_outside_db0(), Ordering::Relaxed);
    }

    /// Removes slot `i` outright and returns its bytes to the budget.
    fn drop_slot(&self, sh: &mut Shard, cell: &Cell, i: u32) {
        let freed = sh.remove(i);
        self.mem.release(freed);
        Self::sync_stats(sh, cell);
    }

    /// Finds `key`, lazily expiring a live entry past its deadline and purging a
    /// tombstone past its grace period.
    /// `now` is called only when the entry has a deadline, so reads of keys without a
    /// TTL do not read the clock.
    fn find(
        &self,
        sh: &mut Shard,
        cell: &Cell,
        h: u64,
        key: &[u8],
        now: impl FnOnce() -> u64,
    ) -> Found {
        let Some(i) = sh.find(h, key) else {
            return Found {
                live: None,
                slot: None,
            };
        };
        let past_deadline = sh.deadline(i).is_some_and(|at| expired(at, now()));
        match (sh.slot(i).state(), past_deadline) {
            (State::Live, false) => Found {
                live: Some(i),
                slot: Some(i),
            },
            (State::Tombstone, false) => Found {
                live: None,
                slot: Some(i),
            },
            (state, _) => {
                if state == State::Live {
                    self.note_expired(sh, cell, i);
                }
                self.drop_slot(sh, cell, i);
                Found {
                    live: None,
                    slot: None,
                }
            }
        }
    }

    /// The live entry `live` if it holds a string; `WrongType` if it holds a collection.
    fn string_slot(sh: &Shard, live: Option<u32>) -> Result<Option<u32>, StoreError> {
        match live {
            Some(i) if sh.slot(i).is_collection() => Err(StoreError::WrongType),
            other => Ok(other),
        }
    }

    /// Evicts one entry of `sh` not in `protect`; returns its accounted size. The
    /// observer hears of it.
    fn evict_one(&self, sh: &mut Shard, cell: &Cell, protect: &[u32]) -> Option<u64> {
        let victim = sh.eviction_candidate(protect)?;
        let slot = sh.slot(victim);
        if let Some(removals) = &self.removals {
            removals.on_evict(slot.key(), slot.version());
        }
        self.remember_eviction(cell, slot.hash(), slot.version());
        let freed = sh.remove(victim);
        self.mem.release(freed);
        cell.stats.evicted();
        Self::sync_stats(sh, cell);
        Some(freed)
    }

    /// Remembers that the key of `hash` in `cell` went for memory holding `version`, so
    /// that replication does not copy it back (see [`recently_evicted`]).
    fn remember_eviction(&self, cell: &Cell, hash: u64, version: Version) {
        let capacity = (REMEMBERED_EVICTIONS / self.cells.len()).max(8);
        cell.evicted.lock().remember(hash, version, capacity);
    }

    /// Reserves `bytes`, evicting through `evict` (which returns false when it has
    /// nothing left) while the reservation fails.
    fn reserve(&self, bytes: u64, mut evict: impl FnMut() -> bool) -> Result<(), Fail> {
        loop {
            if self.mem.try_reserve(bytes) {
                return Ok(());
            }
            if self.policy() == MaxmemoryPolicy::NoEviction {
                return Err(Fail::Store(StoreError::OutOfMemory));
            }
            if !evict() {
                return Err(Fail::Room(bytes));
            }
        }
    }

    /// Evicts round-robin across all shards, one lock at a time, until `bytes` are freed
    /// or nothing is evictable, sparing the entries of `protect` (the keys the write that
    /// needs the room reads or writes: evicting one would change what it does, as an
    /// APPEND to a value evicted under it would start again from nothing). Returns (bytes
    /// freed, entries evicted).
    fn evict_global(&self, bytes: u64, protect: &[&[u8]]) -> (u64, u64) {
        let n = self.cells.len();
        let protected: Vec<(usize, u64, &[u8])> = protect
            .iter()
            .map(|key| {
                let h = quorra_ring::key_hash(key);
                (self.shard_of_hash(h), h, *key)
            })
            .collect();
        let start = self.evict_rr.fetch_add(1, Ordering::Relaxed);
        let (mut freed, mut count, mut idle) = (0u64, 0u64, 0usize);
        let mut k = start;
        while freed < bytes && idle < n {
            let cell = &self.cells[k % n];
            let mut sh = cell.shard.lock();
            let spare: Vec<u32> = protected
                .iter()
                .filter(|(shard, _, _)| *shard == k % n)
                .filter_map(|(_, h, key)| sh.find(*h, key))
                .collect();
            match self.evict_one(&mut sh, cell, &spare) {
                Some(f) => {
                    freed += f;
                    count += 1;
                    idle = 0;
                }
                None => idle += 1,
            }
            drop(sh);
            k += 1;
        }
        (freed, count)
    }

    /// Runs `op` (which takes its own locks) until it succeeds, fails for a reason other
    /// than room, or global eviction — which spares `keys`, the keys `op` works on —
    /// cannot help.
    fn with_room<T>(
        &self,
        keys: &[&[u8]],
        mut op: impl FnMut() -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        for _ in 0..=MAX_ROOM_ATTEMPTS {
            match op() {
                Ok(v) => return Ok(v),
                Err(Fail::Store(e)) => return Err(e),
                Err(Fail::Room(bytes)) => {
                    if self.evict_global(bytes, keys).0 == 0 {
                        return Err(StoreError::OutOfMemory);
                    }
                }
            }
        }
        Err(StoreError::OutOfMemory)
    }

    /// The accounted size of an entry whose key is `key_len` bytes and whose key and
    /// value together are `data_len` bytes — or why it cannot be stored: a key longer
    /// than [`MAX_KEY_LEN`], or an entry larger than all of `maxmemory`.
    fn entry_size(&self, key_len: usize, data_len: usize) -> Result<u64, StoreError> {
        if key_len > MAX_KEY_LEN {
            return Err(StoreError::ValueTooLarge);
        }
        let size = data_len as u64 + crate::ENTRY_OVERHEAD;
        let limit = self.mem.limit();
        if limit != 0 && size > limit {
            return Err(StoreError::EntryTooLarge { size, limit });
        }
        Ok(size)
    }

    /// Writes `data` for a key into `sh` (reusing slot `at`), reserving any growth
    /// first and evicting from `sh` (sparing `at`) if needed.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        sh: &mut Shard,
        cell: &Cell,
        h: u64,
        at: Option<u32>,
        data: Box<[u8]>,
        key_len: usize,
        deadline: Option<u64>,
        version: Version,
    ) -> Result<u32, Fail> {
        let new = self.entry_size(key_len, data.len())?;
        let old = at.map_or(0, |i| sh.entry_size(i));
        if new > old {
            let spare = at.as_slice();
            self.reserve(new - old, || self.evict_one(sh, cell, spare).is_some())?;
        }
        let key_len = u32::try_from(key_len).expect("key shorter than 4 GiB");
        let (i, _) = sh.put(at, h, data, key_len, State::Live, deadline, version);
        if old > new {
            self.mem.release(old - new);
        }
        Self::sync_stats(sh, cell);
        Ok(i)
    }

    /// Writes replicated `entry` — a string, or a collection in its encoding — for `key`
    /// into `sh` (reusing slot `at`), reserving any growth first and evicting from `sh`
    /// (sparing `at`) if needed.
    #[allow(clippy::too_many_arguments)]
    fn write_entry(
        &self,
        sh: &mut Shard,
        cell: &Cell,
        h: u64,
        at: Option<u32>,
        key: &[u8],
        entry: &VersionedEntry,
    ) -> Result<u32, Fail> {
        let (expiry, version) = (entry.expire_at_ms, entry.version);
        if entry.kind == KeyType::String {
            let data = make_data(key, &[&entry.value]);
            return self.write(sh, cell, h, at, data, key.len(), expiry, version);
        }
        let collection = Collection::decode(entry.kind, &entry.value)
            .filter(|c| !c.is_empty())
            .ok_or(StoreError::CorruptEntry)?;
        let new = self.entry_size(key.len(), key.len())? + collection.bytes();
        let old = at.map_or(0, |i| sh.entry_size(i));
        if new > old {
            let spare = at.as_slice();
            self.reserve(new - old, || self.evict_one(sh, cell, spare).is_some())?;
        }
        let key_len = u32::try_from(key.len()).expect("key length checked");
        let (i, _) = sh.put(
            at,
            h,
            make_data(key, &[]),
            key_len,
            State::Live,
            expiry,
            version,
        );
        sh.attach_collection(i, collection);
        if old > new {
            self.mem.release(old - new);
        }
        Self::sync_stats(sh, cell);
        Ok(i)
    }

    /// Deletes the live entry in slot `i` as a local write: leaves a tombstone (or
    /// removes the slot when tombstones are disabled).
    fn delete_slot(&self, sh: &mut Shard, cell: &Cell, i: u32, now: u64) {
        if self.tombstone_grace_ms == 0 {
            self.drop_slot(sh, cell, i);
            return;
        }
        let version = self.hlc.next(now);
        self.tombstone_slot(sh, cell, i, now, version);
    }

    /// Turns slot `i` into a tombstone of `version`, purged after the grace period, and
    /// returns its bytes to the budget.
    fn tombstone_slot(&self, sh: &mut Shard, cell: &Cell, i: u32, now: u64, version: Version) {
        let freed = self.bury(sh, i, now, version);
        self.mem.release(freed);
        Self::sync_stats(sh, cell);
    }

    /// Replaces slot `i`'s entry by a tombstone of `version` (its key only), purged at
    /// `now` plus the grace period. Returns the bytes it gave up, for the caller to
    /// account for.
    fn bury(&self, sh: &mut Shard, i: u32, now: u64, version: Version) -> u64 {
        let s = sh.slot(i);
        let (h, old) = (s.hash(), sh.entry_size(i));
        let key = make_data(s.key(), &[]);
        let key_len = u32::try_from(key.len()).expect("key shorter than 4 GiB");
        let purge_at = now.saturating_add(self.tombstone_grace_ms);
        sh.put(
            Some(i),
            h,
            key,
            key_len,
            State::Tombstone,
            Some(purge_at),
            version,
        );
        old - sh.entry_size(i)
    }

    /// Locks the shards of `hashes` in increasing shard order; returns guards sorted
    /// by shard index.
    fn lock_many(&self, shard_ids: &[usize]) -> Vec<(usize, MutexGuard<'_, Shard>)> {
        let mut ids = shard_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|s| (s, self.cells[s].shard.lock()))
            .collect()
    }

    fn guard<'a, 'g>(guards: &'a mut [(usize, MutexGuard<'g, Shard>)], s: usize) -> &'a mut Shard {
        let pos = guards
            .binary_search_by_key(&s, |(id, _)| *id)
            .expect("shard was locked");
        &mut guards[pos].1
    }
}

/// Model checking of the real store code with shuttle (see [`crate::sync`]). Run with
/// `cargo test -p quorra-store --features shuttle --lib shuttle`.
#[cfg(all(test, feature = "shuttle"))]
mod shuttle_tests {
    use super::*;
    use crate::clock::MockClock;

    /// Three threads write to a 2-shard store with room for five small entries: SET,
    /// APPEND (growth), DEL (tombstones), RENAME and MSET (two shard locks), with
    /// eviction inside the writer's shard and across shards. In every explored
    /// interleaving the accounted total stays ≤ maxmemory after each operation, no
    /// operation deadlocks (shuttle reports deadlocks), and at the end all invariants
    /// hold: accounted == sum of entries, counters == contents, structures consistent.
    #[test]
    fn shuttle_concurrent_writers_never_overcommit_and_account_exactly() {
        shuttle::check_random(
            || {
                let limit = 5 * (crate::ENTRY_OVERHEAD + 12);
                let store = Arc::new(Store::new(
                    StoreConfig {
                        shards: 2,
                        maxmemory: limit,
                        tombstone_grace_ms: 1_000,
                        ..StoreConfig::default()
                    },
                    Arc::new(MockClock::new(1_000)),
                ));
                let handles: Vec<_> = (0..3u8)
                    .map(|t| {
                        let store = Arc::clone(&store);
                        shuttle::thread::spawn(move || {
                            for i in 0..3u8 {
                                let key = [b'k', b'0' + (t + i) % 4];
                                let other = [b'k', b'0' + (t + 2 * i + 1) % 4];
                                let r = match (t + 2 * i) % 5 {
                                    0 => {
                                        store.set(&key, &[t; 10], SetOptions::default()).map(|_| ())
                                    }
                                    1 => store.append(&key, &[i; 6]).map(|_| ()),
                                    2 => {
                                        store.del(&[&key[..]]);
                                        Ok(())
                                    }
                                    3 => store.rename(&key, &other),
                                    _ => store.mset(&[
                                        (&key[..], &b"mm"[..]),
                                        (&other[..], &b"nnnn"[..]),
                                    ]),
                                };
                                assert!(matches!(r, Ok(()) | Err(StoreError::NoSuchKey)), "{r:?}");
                                assert!(store.used_memory() <= limit);
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().unwrap();
                }
                store.check_invariants().unwrap();
            },
            1_000,
        );
    }
}
