//! The store: shards behind mutexes, the memory budget, the clocks, and the Redis
//! string commands on top.
//!
//! # Sharding
//!
//! A key's hash is xxh3-64 of its bytes (the ring's placement hash), computed once per
//! operation and stored in the slot. The shard index is taken from the bits below the
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

use bytes::Bytes;
use quorra_ring::TokenRange;

use crate::clock::Clock;
use crate::entry::*;
use crate::error::StoreError;
use crate::expiry;
use crate::glob::glob_match;
use crate::memory::MemoryBudget;
use crate::numeric::{format_f64, format_i64, parse_f64, parse_i64};
use crate::shard::{Shard, State, make_data};
use crate::stats::{ShardStats, StoreStats};
use crate::sync::{AtomicU8, AtomicU64, AtomicUsize, Mutex, MutexGuard};
use crate::version::{HybridClock, Version};

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
    policy: AtomicU8,
    clock: Arc<dyn Clock>,
    hlc: HybridClock,
    tombstone_grace_ms: u64,
    max_string_len: u64,
    observer: Option<Arc<dyn AccessObserver>>,
    /// Next shard for cross-shard eviction (spreads the damage).
    evict_rr: AtomicUsize,
    /// Shard where the next active expiry cycle starts.
    expire_rr: AtomicUsize,
    /// xorshift state for RANDOMKEY.
    rng: AtomicU64,
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

/// Absolute deadline for a relative (`base_ms = Some(now)`) or absolute time `t` in
/// `unit_ms` units; `None` on overflow. May be ≤ 0 (in the past).
fn absolute_ms(t: i64, unit_ms: i64, base_ms: Option<u64>) -> Option<i64> {
    let ms = t.checked_mul(unit_ms)?;
    match base_ms {
        Some(now) => ms.checked_add(i64::try_from(now).ok()?),
        None => Some(ms),
    }
}

/// A SET/GETEX expiry option as an absolute deadline (ms), Redis's rules: the number
/// must be > 0 and must not overflow.
fn option_deadline(
    rel: bool,
    t: i64,
    unit_ms: i64,
    now: u64,
    command: &'static str,
) -> Result<i64, StoreError> {
    let bad = StoreError::InvalidExpireTime { command };
    if t <= 0 {
        return Err(bad);
    }
    absolute_ms(t, unit_ms, rel.then_some(now)).ok_or(bad)
}

impl Store {
    /// A store with `config`, reading time from `clock`.
    pub fn new(config: StoreConfig, clock: Arc<dyn Clock>) -> Self {
        let n = config.shards.clamp(1, MAX_SHARDS).next_power_of_two();
        let cells = (0..n)
            .map(|_| Cell {
                shard: Mutex::new(Shard::default()),
                stats: ShardStats::default(),
            })
            .collect();
        let seed = clock.now_ms() ^ 0x9E37_79B9_7F4A_7C15;
        Self {
            cells,
            shard_bits: n.trailing_zeros(),
            mem: MemoryBudget::new(config.maxmemory),
            policy: AtomicU8::new(config.policy as u8),
            hlc: HybridClock::new(config.node_id),
            clock,
            tombstone_grace_ms: config.tombstone_grace_ms,
            max_string_len: config.max_string_len,
            observer: None,
            evict_rr: AtomicUsize::new(0),
            expire_rr: AtomicUsize::new(0),
            rng: AtomicU64::new(seed | 1),
        }
    }

    /// Installs the access observer (hot-key detector). Call before sharing the store.
    pub fn with_observer(mut self, observer: Arc<dyn AccessObserver>) -> Self {
        self.observer = Some(observer);
        self
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
        let h = quorra_ring::key_token(key);
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
            let (freed, n) = self.evict_global(used - limit);
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
                    cell.stats.expired();
                }
                self.drop_slot(sh, cell, i);
                Found {
                    live: None,
                    slot: None,
                }
            }
        }
    }

    /// Evicts one entry of `sh` not in `protect`; returns its accounted size. The
    /// observer hears of it.
    fn evict_one(&self, sh: &mut Shard, cell: &Cell, protect: &[u32]) -> Option<u64> {
        let victim = sh.eviction_candidate(protect)?;
        if let Some(observer) = &self.observer {
            let slot = sh.slot(victim);
            observer.on_evict(slot.key(), slot.version());
        }
        let freed = sh.remove(victim);
        self.mem.release(freed);
        cell.stats.evicted();
        Self::sync_stats(sh, cell);
        Some(freed)
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
    /// or nothing is evictable. Returns (bytes freed, entries evicted).
    fn evict_global(&self, bytes: u64) -> (u64, u64) {
        let n = self.cells.len();
        let start = self.evict_rr.fetch_add(1, Ordering::Relaxed);
        let (mut freed, mut count, mut idle) = (0u64, 0u64, 0usize);
        let mut k = start;
        while freed < bytes && idle < n {
            let cell = &self.cells[k % n];
            let mut sh = cell.shard.lock();
            match self.evict_one(&mut sh, cell, &[]) {
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
    /// than room, or global eviction cannot help.
    fn with_room<T>(&self, mut op: impl FnMut() -> Result<T, Fail>) -> Result<T, StoreError> {
        for _ in 0..=MAX_ROOM_ATTEMPTS {
            match op() {
                Ok(v) => return Ok(v),
                Err(Fail::Store(e)) => return Err(e),
                Err(Fail::Room(bytes)) => {
                    if self.evict_global(bytes).0 == 0 {
                        return Err(StoreError::OutOfMemory);
                    }
                }
            }
        }
        Err(StoreError::OutOfMemory)
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
        if key_len > MAX_KEY_LEN {
            return Err(StoreError::ValueTooLarge.into());
        }
        let new = data.len() as u64 + crate::ENTRY_OVERHEAD;
        let limit = self.mem.limit();
        if limit != 0 && new > limit {
            return Err(StoreError::EntryTooLarge { size: new, limit }.into());
        }
        let old = at.map_or(0, |i| sh.slot(i).size());
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

    fn tombstone_slot(&self, sh: &mut Shard, cell: &Cell, i: u32, now: u64, version: Version) {
        let s = sh.slot(i);
        let (h, old) = (s.hash(), s.size());
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
        self.mem.release(old - sh.slot(i).size());
        Self::sync_stats(sh, cell);
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

    // ---- reads --------------------------------------------------------------------

    /// GET: the value, promoting the entry to most recently used. (Whether a read is a
    /// keyspace hit or miss is counted by the node that answers the client, not here.)
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.get_with(key, Bytes::copy_from_slice)
    }

    /// GET without a copy: calls `f` with the value while the shard is locked (promoting
    /// the entry, like [`Store::get`]); `None` on a miss. For a server that writes the
    /// value straight into its output buffer. `f` must be short and must not call into
    /// the store.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (h, s) = self.locate(key, AccessKind::Read);
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let i = self.find(&mut sh, cell, h, key, || self.now()).live?;
        sh.touch(i);
        Some(f(sh.slot(i).value()))
    }

    /// Runs `f` on the live slot of `key` (after lazy expiry), under the lock, without
    /// promoting it or counting a hit.
    fn peek<T>(&self, key: &[u8], f: impl FnOnce(&Shard, Option<u32>) -> T) -> T {
        let (h, s) = self.locate(key, AccessKind::Read);
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let found = self.find(&mut sh, cell, h, key, || self.now()).live;
        f(&sh, found)
    }

    /// MGET: one GET per key (each atomic on its own; the batch is not a snapshot).
    pub fn mget<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Option<Bytes>> {
        keys.iter().map(|k| self.get(k.as_ref())).collect()
    }

    /// EXISTS: how many of `keys` exist (a key named twice counts twice).
    pub fn exists<K: AsRef<[u8]>>(&self, keys: &[K]) -> u64 {
        keys.iter()
            .filter(|k| self.peek(k.as_ref(), |_, i| i.is_some()))
            .count() as u64
    }

    /// TOUCH: how many of `keys` exist; each existing one becomes most recently used.
    pub fn touch<K: AsRef<[u8]>>(&self, keys: &[K]) -> u64 {
        let mut n = 0;
        for k in keys {
            let key = k.as_ref();
            let (h, s) = self.locate(key, AccessKind::Read);
            let now = self.now();
            let cell = &self.cells[s];
            let mut sh = cell.shard.lock();
            if let Some(i) = self.find(&mut sh, cell, h, key, || now).live {
                sh.touch(i);
                n += 1;
            }
        }
        n
    }

    /// TYPE.
    pub fn key_type(&self, key: &[u8]) -> KeyType {
        if self.peek(key, |_, i| i.is_some()) {
            KeyType::String
        } else {
            KeyType::None
        }
    }

    /// STRLEN: length of the value, 0 when missing.
    pub fn strlen(&self, key: &[u8]) -> u64 {
        self.peek(key, |sh, i| {
            i.map_or(0, |i| sh.slot(i).value().len() as u64)
        })
    }

    /// GETRANGE with Redis 8 index rules: negative indices count from the end; an end
    /// that is still negative after that, or a start past the end of the string, gives
    /// an empty string (Redis PR #12272); the end is clamped to the last byte.
    pub fn getrange(&self, key: &[u8], start: i64, end: i64) -> Bytes {
        self.peek(key, |sh, i| {
            let Some(i) = i else { return Bytes::new() };
            let v = sh.slot(i).value();
            match getrange_bounds(v.len(), start, end) {
                Some((a, b)) => Bytes::copy_from_slice(&v[a..=b]),
                None => Bytes::new(),
            }
        })
    }

    /// TTL in seconds (rounded to nearest): -2 if missing, -1 if no expiry.
    pub fn ttl(&self, key: &[u8]) -> i64 {
        let ms = self.pttl(key);
        if ms < 0 { ms } else { (ms + 500) / 1000 }
    }

    /// PTTL in milliseconds: -2 if missing, -1 if no expiry.
    pub fn pttl(&self, key: &[u8]) -> i64 {
        let now = self.now();
        self.peek(key, |sh, i| match i {
            None => -2,
            Some(i) => sh.deadline(i).map_or(-1, |at| {
                i64::try_from(at.saturating_sub(now)).unwrap_or(i64::MAX)
            }),
        })
    }

    /// EXPIRETIME: absolute expiry in unix seconds; -2 missing, -1 no expiry.
    pub fn expiretime(&self, key: &[u8]) -> i64 {
        let ms = self.pexpiretime(key);
        if ms < 0 { ms } else { ms / 1000 }
    }

    /// PEXPIRETIME: absolute expiry in unix ms; -2 missing, -1 no expiry.
    pub fn pexpiretime(&self, key: &[u8]) -> i64 {
        self.peek(key, |sh, i| match i {
            None => -2,
            Some(i) => sh
                .deadline(i)
                .map_or(-1, |at| i64::try_from(at).unwrap_or(i64::MAX)),
        })
    }

    /// DBSIZE: live entries (from the counters; entries past their TTL that nobody has
    /// touched yet are still counted, as in Redis).
    pub fn dbsize(&self) -> u64 {
        self.cells
            .iter()
            .map(|c| c.stats.entries.load(Ordering::Relaxed))
            .sum()
    }

    /// KEYS: every live key matching the glob `pattern`. O(n); holds one shard lock at a
    /// time.
    pub fn keys(&self, pattern: &[u8]) -> Vec<Bytes> {
        let now = self.now();
        let mut out = Vec::new();
        for cell in self.cells.iter() {
            let sh = cell.shard.lock();
            for i in sh.lru_order() {
                let s = sh.slot(i);
                if sh.deadline(i).is_some_and(|at| expired(at, now)) {
                    continue;
                }
                if glob_match(pattern, s.key()) {
                    out.push(Bytes::copy_from_slice(s.key()));
                }
            }
        }
        out
    }

    /// SCAN: visits slots from `cursor`, returning the next cursor (0 when done) and the
    /// live keys found that match `pattern`. Stops after `count` keys or
    /// `count * SCAN_VISITS_PER_COUNT` slots. See the module docs for the guarantee.
    pub fn scan(&self, cursor: u64, pattern: Option<&[u8]>, count: usize) -> (u64, Vec<Bytes>) {
        let now = self.now();
        let count = count.max(1);
        let max_visits = count.saturating_mul(SCAN_VISITS_PER_COUNT);
        let (mut s, mut i) = ((cursor >> 32) as usize, (cursor & 0xffff_ffff) as usize);
        let (mut found, mut visited) = (0usize, 0usize);
        let mut out = Vec::new();
        while s < self.cells.len() {
            let sh = self.cells[s].shard.lock();
            while i < sh.slot_count() {
                let slot = sh.slot(i as u32);
                visited += 1;
                if slot.state() == State::Live
                    && !sh.deadline(i as u32).is_some_and(|at| expired(at, now))
                {
                    found += 1;
                    if pattern.is_none_or(|p| glob_match(p, slot.key())) {
                        out.push(Bytes::copy_from_slice(slot.key()));
                    }
                }
                i += 1;
                if found >= count || visited >= max_visits {
                    return (((s as u64) << 32) | i as u64, out);
                }
            }
            drop(sh);
            s += 1;
            i = 0;
        }
        (0, out)
    }

    fn next_random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// RANDOMKEY: some live key, or `None` when the store is empty. Roughly uniform
    /// over shards with live entries, then over a shard's slots.
    pub fn random_key(&self) -> Option<Bytes> {
        let now = self.now();
        let n = self.cells.len();
        let start = self.next_random() as usize;
        for k in 0..n {
            let sh = self.cells[(start + k) % n].shard.lock();
            if sh.live() == 0 {
                continue;
            }
            let alive = |i: u32| {
                sh.slot(i).state() == State::Live
                    && !sh.deadline(i).is_some_and(|at| expired(at, now))
            };
            for _ in 0..RANDOMKEY_PROBES {
                let i = (self.next_random() % sh.slot_count() as u64) as u32;
                if alive(i) {
                    return Some(Bytes::copy_from_slice(sh.slot(i).key()));
                }
            }
            if let Some(i) = sh.lru_order().find(|&i| alive(i)) {
                return Some(Bytes::copy_from_slice(sh.slot(i).key()));
            }
        }
        None
    }

    // ---- writes -------------------------------------------------------------------

    /// SET with NX/XX, EX/PX/EXAT/PXAT/KEEPTTL and GET. A deadline already in the past
    /// deletes the key (the write still counts as done).
    pub fn set(
        &self,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
    ) -> Result<SetOutcome, StoreError> {
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        self.with_room(|| {
            let now = self.now();
            let deadline = match opts.expiry {
                SetExpiry::None | SetExpiry::KeepTtl => None,
                SetExpiry::Ex(t) => Some(option_deadline(true, t, 1000, now, "set")?),
                SetExpiry::Px(t) => Some(option_deadline(true, t, 1, now, "set")?),
                SetExpiry::ExAt(t) => Some(option_deadline(false, t, 1000, now, "set")?),
                SetExpiry::PxAt(t) => Some(option_deadline(false, t, 1, now, "set")?),
            };
            let mut sh = cell.shard.lock();
            let found = self.find(&mut sh, cell, h, key, || now);
            let previous = match (opts.get, found.live) {
                (true, Some(i)) => Some(Bytes::copy_from_slice(sh.slot(i).value())),
                _ => None,
            };
            let blocked = match opts.condition {
                SetCondition::Always => false,
                SetCondition::IfAbsent => found.live.is_some(),
                SetCondition::IfPresent => found.live.is_none(),
            };
            if blocked {
                return Ok(SetOutcome {
                    written: false,
                    previous,
                });
            }
            let deadline = match (opts.expiry, found.live) {
                (SetExpiry::KeepTtl, Some(i)) => sh.deadline(i),
                (SetExpiry::KeepTtl, None) => None,
                _ => match deadline {
                    Some(at) if at <= i64::try_from(now).unwrap_or(i64::MAX) => {
                        // Already expired: the key ends up deleted.
                        if let Some(i) = found.live {
                            self.delete_slot(&mut sh, cell, i, now);
                        }
                        return Ok(SetOutcome {
                            written: true,
                            previous,
                        });
                    }
                    other => other.map(|at| at as u64),
                },
            };
            let version = self.hlc.next(now);
            // An overwrite with a value of the same length (a counter, a fixed-size
            // record, a benchmark's payload) reuses the entry's allocation.
            if let Some(i) = found.live
                && sh.slot(i).value().len() == value.len()
            {
                sh.overwrite_value(i, value, deadline, version);
                Self::sync_stats(&sh, cell);
                return Ok(SetOutcome {
                    written: true,
                    previous,
                });
            }
            self.write(
                &mut sh,
                cell,
                h,
                found.slot,
                make_data(key, &[value]),
                key.len(),
                deadline,
                version,
            )?;
            Ok(SetOutcome {
                written: true,
                previous,
            })
        })
    }

    /// SETNX: SET NX; whether it was written.
    pub fn setnx(&self, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        let opts = SetOptions {
            condition: SetCondition::IfAbsent,
            ..SetOptions::default()
        };
        Ok(self.set(key, value, opts)?.written)
    }

    /// GETSET: SET GET (the TTL is discarded); the previous value.
    pub fn getset(&self, key: &[u8], value: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let opts = SetOptions {
            get: true,
            ..SetOptions::default()
        };
        Ok(self.set(key, value, opts)?.previous)
    }

    /// GETEX: the value, optionally changing its TTL (a past deadline deletes the key).
    pub fn getex(&self, key: &[u8], expiry: GetExExpiry) -> Result<Option<Bytes>, StoreError> {
        let (h, s) = self.locate(key, AccessKind::Write);
        let now = self.now();
        let deadline = match expiry {
            GetExExpiry::Keep | GetExExpiry::Persist => None,
            GetExExpiry::Ex(t) => Some(option_deadline(true, t, 1000, now, "getex")?),
            GetExExpiry::Px(t) => Some(option_deadline(true, t, 1, now, "getex")?),
            GetExExpiry::ExAt(t) => Some(option_deadline(false, t, 1000, now, "getex")?),
            GetExExpiry::PxAt(t) => Some(option_deadline(false, t, 1, now, "getex")?),
        };
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let Some(i) = self.find(&mut sh, cell, h, key, || now).live else {
            return Ok(None);
        };
        sh.touch(i);
        let value = Bytes::copy_from_slice(sh.slot(i).value());
        match (expiry, deadline) {
            (GetExExpiry::Keep, _) => {}
            (GetExExpiry::Persist, _) => {
                if sh.deadline(i).is_some() {
                    sh.set_deadline(i, None);
                    sh.set_version(i, self.hlc.next(now));
                    Self::sync_stats(&sh, cell);
                }
            }
            (_, Some(at)) if at <= i64::try_from(now).unwrap_or(i64::MAX) => {
                self.delete_slot(&mut sh, cell, i, now);
            }
            (_, at) => {
                sh.set_deadline(i, at.map(|a| a as u64));
                sh.set_version(i, self.hlc.next(now));
                Self::sync_stats(&sh, cell);
            }
        }
        Ok(Some(value))
    }

    /// GETDEL: the value, deleting the key.
    pub fn getdel(&self, key: &[u8]) -> Option<Bytes> {
        let (h, s) = self.locate(key, AccessKind::Write);
        let now = self.now();
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let i = self.find(&mut sh, cell, h, key, || now).live?;
        let value = Bytes::copy_from_slice(sh.slot(i).value());
        self.delete_slot(&mut sh, cell, i, now);
        Some(value)
    }

    /// DEL: how many of `keys` were deleted.
    pub fn del<K: AsRef<[u8]>>(&self, keys: &[K]) -> u64 {
        let mut n = 0;
        for k in keys {
            let key = k.as_ref();
            let (h, s) = self.locate(key, AccessKind::Write);
            let now = self.now();
            let cell = &self.cells[s];
            let mut sh = cell.shard.lock();
            if let Some(i) = self.find(&mut sh, cell, h, key, || now).live {
                self.delete_slot(&mut sh, cell, i, now);
                n += 1;
            }
        }
        n
    }

    /// MSET: sets all pairs atomically (all shards involved are locked together; the
    /// memory for the whole batch is reserved before anything is written). A key named
    /// twice gets its last value.
    pub fn mset<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, pairs: &[(K, V)]) -> Result<(), StoreError> {
        self.mset_generic(pairs, false).map(|_| ())
    }

    /// MSETNX: sets all pairs only if none of the keys exists; whether it did.
    pub fn msetnx<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        pairs: &[(K, V)],
    ) -> Result<bool, StoreError> {
        self.mset_generic(pairs, true)
    }

    fn mset_generic<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        pairs: &[(K, V)],
        nx: bool,
    ) -> Result<bool, StoreError> {
        // Last occurrence of each key wins.
        let mut items: Vec<(u64, usize, &[u8], &[u8])> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs.iter().rev() {
            let key = k.as_ref();
            if items.iter().any(|it| it.2 == key) {
                continue;
            }
            let (h, s) = self.locate(key, AccessKind::Write);
            items.push((h, s, key, v.as_ref()));
        }
        let shard_ids: Vec<usize> = items.iter().map(|it| it.1).collect();
        self.with_room(|| {
            let now = self.now();
            let mut guards = self.lock_many(&shard_ids);
            // Phase 1: look up, check NX, compute growth.
            let mut slots = Vec::with_capacity(items.len());
            let mut growth = 0u64;
            let mut shrink = 0u64;
            for &(h, s, key, value) in &items {
                let cell = &self.cells[s];
                let sh = Self::guard(&mut guards, s);
                let found = self.find(sh, cell, h, key, || now);
                if nx && found.live.is_some() {
                    return Ok(false);
                }
                if key.len() > MAX_KEY_LEN {
                    return Err(StoreError::ValueTooLarge.into());
                }
                let new = (key.len() + value.len()) as u64 + crate::ENTRY_OVERHEAD;
                let limit = self.mem.limit();
                if limit != 0 && new > limit {
                    return Err(StoreError::EntryTooLarge { size: new, limit }.into());
                }
                let old = found.slot.map_or(0, |i| sh.slot(i).size());
                if new > old {
                    growth += new - old;
                } else {
                    shrink += old - new;
                }
                slots.push(found.slot);
            }
            // Phase 2: reserve the total growth, evicting from the locked shards.
            if growth > 0 {
                let protect: Vec<(usize, u32)> = items
                    .iter()
                    .zip(&slots)
                    .filter_map(|(it, sl)| sl.map(|i| (it.1, i)))
                    .collect();
                let mut evict = || {
                    for (s, sh) in guards.iter_mut() {
                        let spare: Vec<u32> =
                            protect.iter().filter(|p| p.0 == *s).map(|p| p.1).collect();
                        if self.evict_one(sh, &self.cells[*s], &spare).is_some() {
                            return true;
                        }
                    }
                    false
                };
                self.reserve(growth, &mut evict)?;
            }
            // Phase 3: commit (cannot fail).
            for (&(h, s, key, value), at) in items.iter().zip(&slots) {
                let cell = &self.cells[s];
                let sh = Self::guard(&mut guards, s);
                let version = self.hlc.next(now);
                let key_len = u32::try_from(key.len()).expect("key shorter than 4 GiB");
                sh.put(
                    *at,
                    h,
                    make_data(key, &[value]),
                    key_len,
                    State::Live,
                    None,
                    version,
                );
                Self::sync_stats(sh, cell);
            }
            if shrink > 0 {
                self.mem.release(shrink);
            }
            Ok(true)
        })
    }

    /// RENAME: moves `src`'s value and TTL to `dst` (overwriting it); the source leaves
    /// a tombstone. Errors with `NoSuchKey` when `src` is missing. Only the net growth
    /// (destination minus what the source gives back) has to fit under `maxmemory`.
    pub fn rename(&self, src: &[u8], dst: &[u8]) -> Result<(), StoreError> {
        self.move_or_copy(src, dst, Transfer::Rename).map(|_| ())
    }

    /// RENAMENX: like RENAME but only when `dst` does not exist; whether it moved.
    pub fn renamenx(&self, src: &[u8], dst: &[u8]) -> Result<bool, StoreError> {
        self.move_or_copy(src, dst, Transfer::RenameNx)
    }

    /// COPY: copies `src`'s value and TTL to `dst`; with `replace` false it does nothing
    /// when `dst` exists. Whether it copied. Same source and destination is an error.
    pub fn copy(&self, src: &[u8], dst: &[u8], replace: bool) -> Result<bool, StoreError> {
        if src == dst {
            return Err(StoreError::SameObject);
        }
        self.move_or_copy(src, dst, Transfer::Copy { replace })
    }

    fn move_or_copy(&self, src: &[u8], dst: &[u8], how: Transfer) -> Result<bool, StoreError> {
        let (hs, ss) = self.locate(src, AccessKind::Write);
        let (hd, sd) = self.locate(dst, AccessKind::Write);
        self.with_room(|| {
            let now = self.now();
            let mut guards = self.lock_many(&[ss, sd]);
            let src_found = self.find(
                Self::guard(&mut guards, ss),
                &self.cells[ss],
                hs,
                src,
                || now,
            );
            let Some(si) = src_found.live else {
                return match how {
                    Transfer::Copy { .. } => Ok(false),
                    _ => Err(StoreError::NoSuchKey.into()),
                };
            };
            if src == dst {
                return Ok(matches!(how, Transfer::Rename));
            }
            let dst_found = self.find(
                Self::guard(&mut guards, sd),
                &self.cells[sd],
                hd,
                dst,
                || now,
            );
            let may_overwrite = match how {
                Transfer::Rename => true,
                Transfer::RenameNx => false,
                Transfer::Copy { replace } => replace,
            };
            if dst_found.live.is_some() && !may_overwrite {
                return Ok(false);
            }
            let (value, deadline, src_size, src_key_len) = {
                let sh = Self::guard(&mut guards, ss);
                let s = sh.slot(si);
                let data = make_data(dst, &[s.value()]);
                (data, sh.deadline(si), s.size(), s.key().len() as u64)
            };
            if dst.len() > MAX_KEY_LEN {
                return Err(StoreError::ValueTooLarge.into());
            }
            let new = value.len() as u64 + crate::ENTRY_OVERHEAD;
            let limit = self.mem.limit();
            if limit != 0 && new > limit {
                return Err(StoreError::EntryTooLarge { size: new, limit }.into());
            }
            let old_dst = dst_found
                .slot
                .map_or(0, |i| Self::guard(&mut guards, sd).slot(i).size());
            let moving = !matches!(how, Transfer::Copy { .. });
            // Bytes the source gives back by becoming a tombstone (or disappearing): a
            // rename only needs room for the difference, reserved up front.
            let credit = match (moving, self.tombstone_grace_ms) {
                (false, _) => 0,
                (true, 0) => src_size,
                (true, _) => src_size - (src_key_len + crate::ENTRY_OVERHEAD),
            };
            let need = new.saturating_sub(old_dst);
            let extra = need.saturating_sub(credit);
            if extra > 0 {
                let spare_dst: Vec<u32> = dst_found
                    .slot
                    .into_iter()
                    .chain((ss == sd).then_some(si))
                    .collect();
                let spare_src = [si];
                let mut evict = || {
                    for (s, sh) in guards.iter_mut() {
                        let spare: &[u32] = if *s == sd { &spare_dst } else { &spare_src };
                        if self.evict_one(sh, &self.cells[*s], spare).is_some() {
                            return true;
                        }
                    }
                    false
                };
                self.reserve(extra, &mut evict)?;
            }
            // Commit; cannot fail. The source goes first so that the committed total
            // never exceeds what is reserved.
            if moving {
                let sh = Self::guard(&mut guards, ss);
                if self.tombstone_grace_ms == 0 {
                    sh.remove(si);
                } else {
                    let purge_at = now.saturating_add(self.tombstone_grace_ms);
                    let key_len = u32::try_from(src_key_len).expect("key length checked");
                    let tomb = make_data(src, &[]);
                    let v = self.hlc.next(now);
                    sh.put(
                        Some(si),
                        hs,
                        tomb,
                        key_len,
                        State::Tombstone,
                        Some(purge_at),
                        v,
                    );
                }
                Self::sync_stats(sh, &self.cells[ss]);
            }
            let version = self.hlc.next(now);
            let sh = Self::guard(&mut guards, sd);
            let key_len = u32::try_from(dst.len()).expect("key length checked");
            sh.put(
                dst_found.slot,
                hd,
                value,
                key_len,
                State::Live,
                deadline,
                version,
            );
            Self::sync_stats(sh, &self.cells[sd]);
            let surplus = old_dst.saturating_sub(new);
            let release = extra + surplus + credit - need;
            if release > 0 {
                self.mem.release(release);
            }
            Ok(true)
        })
    }

    /// EXPIRE key seconds with NX/XX/GT/LT. See [`Store::pexpireat`].
    pub fn expire(&self, key: &[u8], seconds: i64, flags: ExpireFlags) -> Result<bool, StoreError> {
        let now = self.now();
        let at = absolute_ms(seconds, 1000, Some(now))
            .ok_or(StoreError::InvalidExpireTime { command: "expire" })?;
        self.expire_generic(key, at, flags, now)
    }

    /// PEXPIRE key milliseconds. See [`Store::pexpireat`].
    pub fn pexpire(&self, key: &[u8], ms: i64, flags: ExpireFlags) -> Result<bool, StoreError> {
        let now = self.now();
        let at = absolute_ms(ms, 1, Some(now))
            .ok_or(StoreError::InvalidExpireTime { command: "pexpire" })?;
        self.expire_generic(key, at, flags, now)
    }

    /// EXPIREAT key unix-seconds. See [`Store::pexpireat`].
    pub fn expireat(
        &self,
        key: &[u8],
        unix_seconds: i64,
        flags: ExpireFlags,
    ) -> Result<bool, StoreError> {
        let at = absolute_ms(unix_seconds, 1000, None).ok_or(StoreError::InvalidExpireTime {
            command: "expireat",
        })?;
        self.expire_generic(key, at, flags, self.now())
    }

    /// PEXPIREAT key unix-ms with Redis's rules: false when the key is missing or a
    /// condition fails (NX: has a TTL; XX: has none; GT: new ≤ current or no TTL, since
    /// no TTL counts as infinite; LT: new ≥ current with a TTL); a deadline at or before
    /// now deletes the key (and answers true).
    pub fn pexpireat(
        &self,
        key: &[u8],
        unix_ms: i64,
        flags: ExpireFlags,
    ) -> Result<bool, StoreError> {
        self.expire_generic(key, unix_ms, flags, self.now())
    }

    fn expire_generic(
        &self,
        key: &[u8],
        at: i64,
        flags: ExpireFlags,
        now: u64,
    ) -> Result<bool, StoreError> {
        if (flags.nx && (flags.xx || flags.gt || flags.lt)) || (flags.gt && flags.lt) {
            return Err(StoreError::IncompatibleExpireFlags);
        }
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let Some(i) = self.find(&mut sh, cell, h, key, || now).live else {
            return Ok(false);
        };
        let current = sh.deadline(i).map(|c| i64::try_from(c).unwrap_or(i64::MAX));
        if flags.nx && current.is_some() {
            return Ok(false);
        }
        if flags.xx && current.is_none() {
            return Ok(false);
        }
        if flags.gt && current.is_none_or(|c| at <= c) {
            return Ok(false);
        }
        if flags.lt && current.is_some_and(|c| at >= c) {
            return Ok(false);
        }
        if at <= i64::try_from(now).unwrap_or(i64::MAX) {
            self.delete_slot(&mut sh, cell, i, now);
            return Ok(true);
        }
        sh.set_deadline(i, Some(at as u64));
        sh.set_version(i, self.hlc.next(now));
        sh.touch(i);
        Self::sync_stats(&sh, cell);
        Ok(true)
    }

    /// PERSIST: removes the TTL; whether there was one.
    pub fn persist(&self, key: &[u8]) -> bool {
        let (h, s) = self.locate(key, AccessKind::Write);
        let now = self.now();
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        match self.find(&mut sh, cell, h, key, || now).live {
            Some(i) if sh.deadline(i).is_some() => {
                sh.set_deadline(i, None);
                sh.set_version(i, self.hlc.next(now));
                Self::sync_stats(&sh, cell);
                true
            }
            _ => false,
        }
    }

    /// Read-modify-write of one key's value, keeping its TTL. `f` gets the current value
    /// (`None` when missing) and returns the new value (`None`: write nothing) and the
    /// reply, or an error.
    fn update<T>(
        &self,
        key: &[u8],
        mut f: impl FnMut(Option<&[u8]>) -> Result<(Option<Vec<u8>>, T), StoreError>,
    ) -> Result<T, StoreError> {
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        self.with_room(|| {
            let now = self.now();
            let mut sh = cell.shard.lock();
            let found = self.find(&mut sh, cell, h, key, || now);
            let current = found.live.map(|i| sh.slot(i).value());
            let (value, reply) = f(current)?;
            let Some(value) = value else {
                return Ok(reply);
            };
            let deadline = found.live.and_then(|i| sh.deadline(i));
            let version = self.hlc.next(now);
            self.write(
                &mut sh,
                cell,
                h,
                found.slot,
                make_data(key, &[&value]),
                key.len(),
                deadline,
                version,
            )?;
            Ok(reply)
        })
    }

    /// INCRBY: adds `delta` to the integer value (missing = 0); the new value.
    pub fn incrby(&self, key: &[u8], delta: i64) -> Result<i64, StoreError> {
        self.update(key, |cur| {
            let n = cur.map_or(Ok(0), parse_i64)?;
            let n = n.checked_add(delta).ok_or(StoreError::Overflow)?;
            Ok((Some(format_i64(n).into_bytes()), n))
        })
    }

    /// INCR.
    pub fn incr(&self, key: &[u8]) -> Result<i64, StoreError> {
        self.incrby(key, 1)
    }

    /// DECR.
    pub fn decr(&self, key: &[u8]) -> Result<i64, StoreError> {
        self.incrby(key, -1)
    }

    /// DECRBY: subtracts `delta` (DECRBY of `i64::MIN` overflows, as in Redis).
    pub fn decrby(&self, key: &[u8], delta: i64) -> Result<i64, StoreError> {
        let neg = delta.checked_neg().ok_or(StoreError::Overflow)?;
        self.incrby(key, neg)
    }

    /// INCRBYFLOAT: adds `incr` (missing = 0); the new value as stored (see
    /// [`crate::numeric`] for the formatting).
    pub fn incrbyfloat(&self, key: &[u8], incr: f64) -> Result<Bytes, StoreError> {
        if incr.is_nan() {
            return Err(StoreError::NotAFloat);
        }
        self.update(key, |cur| {
            let n = cur.map_or(Ok(0.0), parse_f64)?;
            let r = n + incr;
            if !r.is_finite() {
                return Err(StoreError::NanOrInfinity);
            }
            let text = format_f64(r).into_bytes();
            Ok((Some(text.clone()), Bytes::from(text)))
        })
    }

    /// APPEND: appends `suffix` (creating the key); the new length.
    pub fn append(&self, key: &[u8], suffix: &[u8]) -> Result<u64, StoreError> {
        let max = self.max_string_len;
        self.update(key, |cur| {
            let cur = cur.unwrap_or_default();
            let len = (cur.len() + suffix.len()) as u64;
            if len > max {
                return Err(StoreError::ValueTooLarge);
            }
            let mut v = Vec::with_capacity(len as usize);
            v.extend_from_slice(cur);
            v.extend_from_slice(suffix);
            Ok((Some(v), len))
        })
    }

    /// SETRANGE: overwrites from `offset`, padding with zero bytes; the new length. An
    /// empty `value` changes nothing (and does not create the key).
    pub fn setrange(&self, key: &[u8], offset: i64, value: &[u8]) -> Result<u64, StoreError> {
        let offset = u64::try_from(offset).map_err(|_| StoreError::OffsetOutOfRange)?;
        let max = self.max_string_len;
        self.update(key, |cur| {
            let cur_len = cur.map_or(0, |c| c.len() as u64);
            if value.is_empty() {
                return Ok((None, cur_len));
            }
            let end = offset
                .checked_add(value.len() as u64)
                .ok_or(StoreError::ValueTooLarge)?;
            if end > max {
                return Err(StoreError::ValueTooLarge);
            }
            let len = end.max(cur_len) as usize;
            let mut v = Vec::with_capacity(len);
            v.extend_from_slice(cur.unwrap_or_default());
            v.resize(len, 0);
            v[offset as usize..end as usize].copy_from_slice(value);
            Ok((Some(v), len as u64))
        })
    }

    /// FLUSHALL: removes every entry and tombstone. A local operation: it leaves no
    /// tombstones, so replicas that still hold the keys can repair them back.
    pub fn flushall(&self) {
        for cell in self.cells.iter() {
            let mut sh = cell.shard.lock();
            let freed = sh.bytes();
            sh.clear();
            self.mem.release(freed);
            Self::sync_stats(&sh, cell);
        }
    }

    // ---- replication --------------------------------------------------------------

    /// Applies a replicated entry with last-writer-wins: stored only if its version is
    /// newer than what the store holds for the key (live, tombstone, or expired but not
    /// yet removed). A tombstone, or an entry whose expiry has already passed, deletes
    /// the key, leaving a tombstone with that version (unless tombstones are disabled).
    pub fn apply(&self, key: &[u8], entry: VersionedEntry) -> Result<ApplyOutcome, StoreError> {
        self.hlc.observe(entry.version);
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        self.with_room(|| {
            let now = self.now();
            let mut sh = cell.shard.lock();
            let at = sh.find(h, key);
            if let Some(i) = at {
                let held = sh.slot(i).version();
                if held > entry.version {
                    return Ok(ApplyOutcome::Stale);
                }
                if held == entry.version {
                    return Ok(ApplyOutcome::Duplicate);
                }
            }
            let dead = entry.tombstone || entry.expire_at_ms.is_some_and(|at| expired(at, now));
            if dead {
                if self.tombstone_grace_ms == 0 {
                    if let Some(i) = at {
                        self.drop_slot(&mut sh, cell, i);
                    }
                    return Ok(ApplyOutcome::Applied);
                }
                let i = match at {
                    Some(i) => i,
                    None => self.write(
                        &mut sh,
                        cell,
                        h,
                        None,
                        make_data(key, &[]),
                        key.len(),
                        None,
                        entry.version,
                    )?,
                };
                self.tombstone_slot(&mut sh, cell, i, now, entry.version);
                return Ok(ApplyOutcome::Applied);
            }
            let data = make_data(key, &[&entry.value]);
            self.write(
                &mut sh,
                cell,
                h,
                at,
                data,
                key.len(),
                entry.expire_at_ms,
                entry.version,
            )?;
            Ok(ApplyOutcome::Applied)
        })
    }

    /// The store's clock, ms since the epoch: what expiry is judged against.
    pub fn now_ms(&self) -> u64 {
        self.now()
    }

    /// Evicts `key` because another replica evicted it for memory at `version`: the entry
    /// goes (no tombstone, and counted as an eviction) unless it is newer than `version`.
    /// Replicas that drop together never copy the key back to one another. Returns true
    /// if an entry went.
    pub fn evict_replica(&self, key: &[u8], version: Version) -> bool {
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let Some(i) = sh.find(h, key) else {
            return false;
        };
        let slot = sh.slot(i);
        if slot.state() != State::Live || slot.version() > version {
            return false;
        }
        cell.stats.evicted();
        self.drop_slot(&mut sh, cell, i);
        true
    }

    /// Undoes a write: if `key` still holds the entry of version `written`, puts back
    /// `previous` (the entry it held before, `None` if it held none). A primary whose
    /// write no replica took uses it, so that a write its client was told failed does not
    /// stay here with a version newer than writes acknowledged elsewhere. Returns true if
    /// the entry was put back; false if the key was written again (or removed) since.
    pub fn revert(
        &self,
        key: &[u8],
        written: Version,
        previous: Option<&VersionedEntry>,
    ) -> Result<bool, StoreError> {
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        self.with_room(|| {
            let now = self.now();
            let mut sh = cell.shard.lock();
            let Some(i) = sh.find(h, key).filter(|&i| sh.slot(i).version() == written) else {
                return Ok(false);
            };
            match previous {
                None => self.drop_slot(&mut sh, cell, i),
                Some(entry) if entry.tombstone => {
                    self.tombstone_slot(&mut sh, cell, i, now, entry.version);
                }
                Some(entry) => {
                    let data = make_data(key, &[&entry.value]);
                    let (expiry, version) = (entry.expire_at_ms, entry.version);
                    self.write(&mut sh, cell, h, Some(i), data, key.len(), expiry, version)?;
                }
            }
            Ok(true)
        })
    }

    /// The entry for `key` including its version; tombstones are returned too (for read
    /// repair). `None` when nothing is stored or the entry has expired. Does not promote
    /// the entry: for replication's own bookkeeping (copying a write, anti-entropy).
    pub fn get_versioned(&self, key: &[u8]) -> Option<VersionedEntry> {
        self.versioned(key, false)
    }

    /// [`get_versioned`](Self::get_versioned) for a client's read that a replica serves
    /// (a quorum read): a live entry is promoted to most recently used, as a GET on a
    /// single node would.
    pub fn read_versioned(&self, key: &[u8]) -> Option<VersionedEntry> {
        self.versioned(key, true)
    }

    fn versioned(&self, key: &[u8], promote: bool) -> Option<VersionedEntry> {
        let (h, s) = self.locate(key, AccessKind::Read);
        let now = self.now();
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let found = self.find(&mut sh, cell, h, key, || now);
        let i = found.slot?;
        if promote && found.live.is_some() {
            sh.touch(i);
        }
        let slot = sh.slot(i);
        let tombstone = slot.state() == State::Tombstone;
        Some(VersionedEntry {
            value: Bytes::copy_from_slice(slot.value()),
            expire_at_ms: if tombstone { None } else { sh.deadline(i) },
            version: slot.version(),
            tombstone,
        })
    }

    /// Calls `f` for every entry (tombstones included, expired entries skipped) whose key
    /// hash — its ring token, [`quorra_ring::key_token`] — lies in `range`. Scans every slot: O(entries). Holds one shard lock at a
    /// time while calling `f`, so `f` must not call into the store.
    pub fn visit_range(&self, range: TokenRange, mut f: impl FnMut(EntryView<'_>)) {
        let now = self.now();
        for cell in self.cells.iter() {
            let sh = cell.shard.lock();
            for i in 0..sh.slot_count() as u32 {
                let s = sh.slot(i);
                if s.state() == State::Free || !range.contains(s.hash()) {
                    continue;
                }
                let tombstone = s.state() == State::Tombstone;
                let deadline = sh.deadline(i);
                if !tombstone && deadline.is_some_and(|at| expired(at, now)) {
                    continue;
                }
                f(EntryView {
                    key: s.key(),
                    hash: s.hash(),
                    value: s.value(),
                    expire_at_ms: if tombstone { None } else { deadline },
                    version: s.version(),
                    tombstone,
                });
            }
        }
    }

    // ---- maintenance --------------------------------------------------------------

    /// Runs one active expiry cycle at time `now_ms` (see [`crate::expiry`]).
    pub fn tick(&self, now_ms: u64) -> ExpireCycleReport {
        let n = self.cells.len();
        let first = self.expire_rr.load(Ordering::Relaxed) % n;
        let started = self.now();
        let mut report = ExpireCycleReport::default();
        for k in 0..n {
            let s = (first + k) % n;
            let cell = &self.cells[s];
            let mut loops = 0;
            loop {
                let mut sh = cell.shard.lock();
                let step = expiry::sample_shard(&mut sh, now_ms, |sh, i, live| {
                    if live {
                        cell.stats.expired();
                    }
                    self.drop_slot(sh, cell, i);
                });
                drop(sh);
                report.sampled += step.sampled;
                report.expired += step.expired;
                report.purged_tombstones += step.purged;
                loops += 1;
                if !expiry::should_repeat(&step) {
                    break;
                }
                if loops >= expiry::ACTIVE_EXPIRE_MAX_LOOPS_PER_SHARD
                    || self.now().saturating_sub(started) >= expiry::ACTIVE_EXPIRE_CYCLE_BUDGET_MS
                {
                    report.budget_exhausted = true;
                    self.expire_rr.store(s, Ordering::Relaxed);
                    return report;
                }
            }
        }
        self.expire_rr.store(first + 1, Ordering::Relaxed);
        report
    }

    /// Counters, without taking any lock.
    pub fn stats(&self) -> StoreStats {
        let shards = self.cells.iter().map(|c| c.stats.snapshot()).collect();
        StoreStats::from_shards(shards, self.mem.limit(), self.mem.used())
    }

    /// Checks every internal invariant with all shards locked: each shard's structure,
    /// the per-shard counters, accounted total = sum of entry sizes ≤ maxmemory (when
    /// set). For tests; O(entries).
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let guards: Vec<_> = self.cells.iter().map(|c| c.shard.lock()).collect();
        let mut total = 0;
        for (s, sh) in guards.iter().enumerate() {
            sh.check().map_err(|e| format!("shard {s}: {e}"))?;
            let st = self.cells[s].stats.snapshot();
            let volatile = (0..sh.slot_count() as u32)
                .filter(|&i| sh.slot(i).state() == State::Live && sh.deadline(i).is_some())
                .count() as u64;
            if (st.entries, st.tombstones, st.used_bytes, st.volatile)
                != (sh.live(), sh.tombstones(), sh.bytes(), volatile)
            {
                return Err(format!("shard {s}: counters disagree with contents"));
            }
            for i in 0..sh.slot_count() as u32 {
                if sh.slot(i).state() != State::Free && self.shard_of_hash(sh.slot(i).hash()) != s {
                    return Err(format!("shard {s}: slot {i} is in the wrong shard"));
                }
            }
            total += sh.bytes();
        }
        let used = self.mem.used();
        if used != total {
            return Err(format!("accounted {used} != sum of entries {total}"));
        }
        let limit = self.mem.limit();
        if limit != 0 && used > limit && self.policy() == MaxmemoryPolicy::AllKeysLru {
            return Err(format!("accounted {used} > maxmemory {limit}"));
        }
        Ok(())
    }

    /// Keys of shard `shard` from most to least recently used (test introspection).
    #[doc(hidden)]
    pub fn lru_dump(&self, shard: usize) -> Vec<Bytes> {
        let sh = self.cells[shard].shard.lock();
        sh.lru_order()
            .map(|i| Bytes::copy_from_slice(sh.slot(i).key()))
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Transfer {
    Rename,
    RenameNx,
    Copy { replace: bool },
}

/// GETRANGE bounds (inclusive) for a string of `len` bytes, or `None` for empty.
pub(crate) fn getrange_bounds(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).ok()?;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return None;
    }
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    start = start.max(0);
    if start >= len || end < start {
        return None;
    }
    end = end.min(len - 1);
    Some((start as usize, end as usize))
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
