//! What replication reads and applies: entries with their versions (tombstones
//! included), last-writer-wins application, undoing a write no replica took, evicting a
//! key another replica evicted, and walking a token range for anti-entropy.

use bytes::Bytes;
use quorra_ring::TokenRange;

use super::Store;
use crate::entry::{AccessKind, ApplyOutcome, EntryView, KeyType, VersionedEntry, expired};
use crate::error::StoreError;
use crate::shard::{State, make_data};
use crate::version::Version;

impl Store {
    /// Applies a replicated entry with last-writer-wins: stored only if its version is
    /// newer than what the store holds for the key (live, tombstone, or expired but not
    /// yet removed), and, for a key the store does not hold, newer than the version it
    /// evicted for memory if it did ([`ApplyOutcome::Evicted`]). A tombstone, or an entry whose expiry has already passed, deletes
    /// the key, leaving a tombstone with that version (unless tombstones are disabled).
    pub fn apply(&self, key: &[u8], entry: VersionedEntry) -> Result<ApplyOutcome, StoreError> {
        self.hlc.observe(entry.version);
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        self.with_room(&[key], || {
            let now = self.now();
            let mut sh = cell.shard.lock();
            let at = sh.find(h, key);
            match at {
                Some(i) => {
                    let held = sh.slot(i).version();
                    if held > entry.version {
                        return Ok(ApplyOutcome::Stale);
                    }
                    if held == entry.version {
                        return Ok(ApplyOutcome::Duplicate);
                    }
                }
                // Evicted here for memory: a copy of what went does not come back.
                None if !entry.tombstone && cell.evicted.lock().covers(h, entry.version) => {
                    return Ok(ApplyOutcome::Evicted);
                }
                None => {}
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
            self.write_entry(&mut sh, cell, h, at, key, &entry)?;
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
        self.remember_eviction(cell, h, slot.version());
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
        self.with_room(&[key], || {
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
                    self.write_entry(&mut sh, cell, h, Some(i), key, entry)?;
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
        let (value, kind) = match sh.collection(i) {
            Some(collection) => (Bytes::from(collection.encode()), collection.kind()),
            None => (Bytes::copy_from_slice(slot.value()), KeyType::String),
        };
        Some(VersionedEntry {
            value,
            kind,
            expire_at_ms: if tombstone { None } else { sh.deadline(i) },
            version: slot.version(),
            tombstone,
        })
    }

    /// Calls `f` for every entry (tombstones included, expired entries skipped) whose ring
    /// token, [`quorra_ring::key_token`], lies in `range`. Scans every slot: O(entries).
    /// Holds one shard lock at a time while calling `f`, so `f` must not call into the
    /// store.
    pub fn visit_range(&self, range: TokenRange, mut f: impl FnMut(EntryView<'_>)) {
        let now = self.now();
        for cell in self.cells.iter() {
            let sh = cell.shard.lock();
            for i in 0..sh.slot_count() as u32 {
                let s = sh.slot(i);
                if s.state() == State::Free {
                    continue;
                }
                // The slot keeps the whole key's hash; a tagged key's token is its tag's.
                let token = quorra_ring::key_token_from_hash(s.key(), s.hash());
                if !range.contains(token) {
                    continue;
                }
                let tombstone = s.state() == State::Tombstone;
                let deadline = sh.deadline(i);
                if !tombstone && deadline.is_some_and(|at| expired(at, now)) {
                    continue;
                }
                f(EntryView {
                    key: s.key(),
                    token,
                    value: s.value(),
                    kind: sh.collection(i).map_or(KeyType::String, |c| c.kind()),
                    expire_at_ms: if tombstone { None } else { deadline },
                    version: s.version(),
                    tombstone,
                });
            }
        }
    }
}
