//! Upkeep: the active expiry cycle ([`crate::expiry`] samples, this runs it shard by
//! shard within its time budget), the lock-free counters, and the invariant checks
//! tests run.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{MaxmemoryPolicy, Store};
use crate::collection::Collection;
use crate::entry::ExpireCycleReport;
use crate::expiry;
use crate::shard::State;
use crate::stats::StoreStats;

impl Store {
    /// Runs one active expiry cycle at time `now_ms` (see [`crate::expiry`]).
    pub fn tick(&self, now_ms: u64) -> ExpireCycleReport {
        let n = self.cells.len();
        let first = self.expire_rr.load(Ordering::Relaxed) % n;
        let started = self.now();
        let mut report = ExpireCycleReport::default();
        for k in 0..n {
            let s = (first + k) % n;
            let cell = &self.cells[s];
            report.expired_fields += self.expire_fields(cell, now_ms);
            let mut loops = 0;
            loop {
                let mut sh = cell.shard.lock();
                let step = expiry::sample_shard(&mut sh, now_ms, |sh, i, live| {
                    if live {
                        self.note_expired(sh, cell, i);
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

    /// The active expiry of hash fields in one shard: visits up to
    /// [`expiry::FIELD_EXPIRY_HASHES_PER_CYCLE`] of its hashes that hold fields with a
    /// TTL, round-robin, and removes their expired fields; a hash left empty goes, as
    /// an expired key. Returns how many fields went.
    fn expire_fields(&self, cell: &super::Cell, now_ms: u64) -> u64 {
        let mut sh = cell.shard.lock();
        let from = sh.field_expiry_cursor;
        let mut visit: Vec<u32> = sh
            .volatile_hashes_from(from)
            .take(expiry::FIELD_EXPIRY_HASHES_PER_CYCLE)
            .collect();
        if visit.len() < expiry::FIELD_EXPIRY_HASHES_PER_CYCLE {
            let wrapped = expiry::FIELD_EXPIRY_HASHES_PER_CYCLE - visit.len();
            visit.extend(
                sh.volatile_hashes_from(0)
                    .take_while(|&i| i < from)
                    .take(wrapped),
            );
        }
        let mut gone = 0;
        for &i in &visit {
            let before = sh.collection(i).map_or(0, Collection::bytes);
            let Some(Collection::Hash(hash)) = sh.collection_mut(i) else {
                continue;
            };
            let fields = hash.remove_expired(now_ms);
            if fields == 0 {
                continue;
            }
            gone += fields as u64;
            let empty = hash.is_empty();
            sh.collection_changed(i, before);
            let after = sh.collection(i).map_or(0, Collection::bytes);
            self.mem.release(before - after);
            if empty {
                self.note_expired(&sh, cell, i);
                self.drop_slot(&mut sh, cell, i);
            }
        }
        sh.field_expiry_cursor = visit.last().map_or(0, |&i| i + 1);
        Self::sync_stats(&sh, cell);
        gone
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
        let outside = self.outside.load(std::sync::atomic::Ordering::Relaxed);
        if used != total + outside {
            return Err(format!(
                "accounted {used} != sum of entries {total} + {outside} held outside"
            ));
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
