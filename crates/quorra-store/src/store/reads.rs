//! Reads: GET and its relatives, TTL queries, and the commands that walk the keyspace
//! (KEYS, SCAN, RANDOMKEY). Only GET, GETEX and TOUCH promote an entry in the LRU; the
//! others look without touching.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{RANDOMKEY_PROBES, SCAN_VISITS_PER_COUNT, Store};
use quorra_ring::database;

use crate::entry::{AccessKind, KeyType, expired};
use crate::error::StoreError;
use crate::glob::glob_match;
use crate::shard::{Shard, State};
use crate::stats::{DatabaseCounts, KeyspaceTally};

impl Store {
    /// The string value, promoting the entry to most recently used; `None` when the key
    /// is missing or holds a collection (MGET's rule). (Whether a read is a keyspace hit
    /// or miss is counted by the node that answers the client, not here.)
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.get_with(key, Bytes::copy_from_slice).ok().flatten()
    }

    /// GET without a copy: calls `f` with the value while the shard is locked (promoting
    /// the entry, like [`Store::get`]); `None` on a miss. For a server that writes the
    /// value straight into its output buffer. `f` must be short and must not call into
    /// the store. GET's rules: `WrongType` for a collection.
    pub fn get_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, StoreError> {
        let (h, s) = self.locate(key, AccessKind::Read);
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let found = self.find(&mut sh, cell, h, key, || self.now()).live;
        let Some(i) = Self::string_slot(&sh, found)? else {
            return Ok(None);
        };
        sh.touch(i);
        Ok(Some(f(sh.slot(i).value())))
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

    /// MEMORY USAGE: the bytes the key is accounted for (key, value and
    /// [`ENTRY_OVERHEAD`](crate::ENTRY_OVERHEAD)), without promoting it.
    pub fn memory_usage(&self, key: &[u8]) -> Option<u64> {
        self.peek(key, |sh, i| i.map(|i| sh.entry_size(i)))
    }

    /// OBJECT ENCODING: Redis's name for how `key`'s value is held, without promoting
    /// it; `None` when the key is missing.
    pub fn encoding(&self, key: &[u8]) -> Option<&'static str> {
        self.peek(key, |sh, i| {
            let i = i?;
            Some(match sh.collection(i) {
                Some(collection) => collection.encoding(),
                None => string_encoding(sh.slot(i).value()),
            })
        })
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
        self.peek(key, |sh, i| match i {
            None => KeyType::None,
            Some(i) => sh.collection(i).map_or(KeyType::String, |c| c.kind()),
        })
    }

    /// STRLEN: length of the value, 0 when missing.
    pub fn strlen(&self, key: &[u8]) -> Result<u64, StoreError> {
        self.peek(key, |sh, i| {
            let i = Self::string_slot(sh, i)?;
            Ok(i.map_or(0, |i| sh.slot(i).value().len() as u64))
        })
    }

    /// GETRANGE with Redis 8 index rules: negative indices count from the end; an end
    /// that is still negative after that, or a start past the end of the string, gives
    /// an empty string (Redis PR #12272); the end is clamped to the last byte.
    pub fn getrange(&self, key: &[u8], start: i64, end: i64) -> Result<Bytes, StoreError> {
        self.peek(key, |sh, i| {
            let Some(i) = Self::string_slot(sh, i)? else {
                return Ok(Bytes::new());
            };
            let v = sh.slot(i).value();
            Ok(match getrange_bounds(v.len(), start, end) {
                Some((a, b)) => Bytes::copy_from_slice(&v[a..=b]),
                None => Bytes::new(),
            })
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

    /// DBSIZE of database `db`: its live entries (entries past their TTL that nobody
    /// has touched yet are still counted, as in Redis). Read from counters while only
    /// database 0 holds keys; otherwise a pass over the store.
    pub fn dbsize(&self, db: u8) -> u64 {
        self.keyspace()
            .into_iter()
            .find(|counts| counts.db == db)
            .map_or(0, |counts| counts.keys)
    }

    /// INFO keyspace: the keys and the keys with a TTL of each database that holds
    /// any, in database order. From counters while only database 0 holds keys;
    /// otherwise one pass over the store.
    pub fn keyspace(&self) -> Vec<DatabaseCounts> {
        let total = self.stats().total;
        let mut tally = KeyspaceTally::default();
        if total.entries_outside_db0 == 0 {
            if total.entries > 0 {
                tally.add(0, total.entries, total.volatile);
            }
            return tally.databases();
        }
        for cell in self.cells.iter() {
            let sh = cell.shard.lock();
            for i in sh.lru_order() {
                let db = database::split(sh.slot(i).key()).0;
                tally.add(db, 1, u64::from(sh.deadline(i).is_some()));
            }
        }
        tally.databases()
    }

    /// KEYS in database `db`: every live stored key of it whose client's key matches
    /// the glob `pattern`. O(n); holds one shard lock at a time.
    pub fn keys(&self, db: u8, pattern: &[u8]) -> Vec<Bytes> {
        let now = self.now();
        let mut out = Vec::new();
        for cell in self.cells.iter() {
            let sh = cell.shard.lock();
            for i in sh.lru_order() {
                let s = sh.slot(i);
                if sh.deadline(i).is_some_and(|at| expired(at, now)) {
                    continue;
                }
                if in_database(db, Some(pattern), s.key()) {
                    out.push(Bytes::copy_from_slice(s.key()));
                }
            }
        }
        out
    }

    /// SCAN of database `db`: visits slots from `cursor`, returning the next cursor (0
    /// when done) and the live stored keys of `db` found whose client's key matches
    /// `pattern`. Stops after `count` keys or `count * SCAN_VISITS_PER_COUNT` slots. See
    /// the module docs for the guarantee.
    pub fn scan(
        &self,
        cursor: u64,
        db: u8,
        pattern: Option<&[u8]>,
        count: usize,
    ) -> (u64, Vec<Bytes>) {
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
                    && database::split(slot.key()).0 == db
                {
                    found += 1;
                    if in_database(db, pattern, slot.key()) {
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

    /// RANDOMKEY of database `db`: some live stored key of it, or `None` when it is
    /// empty. Roughly uniform over shards with live entries, then over a shard's slots.
    pub fn random_key(&self, db: u8) -> Option<Bytes> {
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
                    && database::split(sh.slot(i).key()).0 == db
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
}

/// How Redis would hold string `value`: an integer, a short string embedded in its
/// object, or a separate buffer (OBJECT ENCODING).
fn string_encoding(value: &[u8]) -> &'static str {
    let integer = value.len() <= 20 && crate::numeric::parse_i64(value).is_ok();
    match (integer, value.len()) {
        (true, _) => "int",
        (false, 0..=44) => "embstr",
        _ => "raw",
    }
}

/// True when the stored `key` is of database `db` and its client's key matches
/// `pattern` (any, without one).
fn in_database(db: u8, pattern: Option<&[u8]>, key: &[u8]) -> bool {
    let (key_db, key) = database::split(key);
    key_db == db && pattern.is_none_or(|pattern| glob_match(pattern, key))
}

/// GETRANGE bounds (inclusive) for a string of `len` bytes, or `None` for empty.
fn getrange_bounds(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
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
