//! Writes: SET and its variants, GETEX, GETDEL, DEL, MSET and MSETNX (atomic over the
//! shards they touch, their memory reserved before anything is written), and the
//! read-modify-write commands (INCR family, APPEND, SETRANGE), which keep the key's TTL.

use bytes::Bytes;
use quorra_ring::database;

use super::Store;
use super::deadline::{TimeOption, already_due};
use crate::entry::{AccessKind, GetExExpiry, SetCondition, SetExpiry, SetOptions, SetOutcome};
use crate::error::StoreError;
use crate::numeric::{format_f64, format_i64, parse_f64, parse_i64};
use crate::shard::{State, make_data};

impl Store {
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
        self.with_room(&[key], || {
            let now = self.now();
            let deadline = TimeOption::of_set(opts.expiry)
                .map(|time| time.deadline(now, "set"))
                .transpose()?;
            let mut sh = cell.shard.lock();
            let found = self.find(&mut sh, cell, h, key, || now);
            // SET overwrites a key of any type, but SET ... GET must read a string.
            let previous = match opts.get {
                true => Self::string_slot(&sh, found.live)?
                    .map(|i| Bytes::copy_from_slice(sh.slot(i).value())),
                false => None,
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
                    Some(at) if already_due(at, now) => {
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
                && !sh.slot(i).is_collection()
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
        let deadline = TimeOption::of_getex(expiry)
            .map(|time| time.deadline(now, "getex"))
            .transpose()?;
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let found = self.find(&mut sh, cell, h, key, || now).live;
        let Some(i) = Self::string_slot(&sh, found)? else {
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
            (_, Some(at)) if already_due(at, now) => {
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
    pub fn getdel(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let (h, s) = self.locate(key, AccessKind::Write);
        let now = self.now();
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let found = self.find(&mut sh, cell, h, key, || now).live;
        let Some(i) = Self::string_slot(&sh, found)? else {
            return Ok(None);
        };
        let value = Bytes::copy_from_slice(sh.slot(i).value());
        self.delete_slot(&mut sh, cell, i, now);
        Ok(Some(value))
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
        let keys: Vec<&[u8]> = items.iter().map(|it| it.2).collect();
        self.with_room(&keys, || {
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
                let new = self.entry_size(key.len(), key.len() + value.len())?;
                let old = found.slot.map_or(0, |i| sh.entry_size(i));
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
        self.with_room(&[key], || {
            let now = self.now();
            let mut sh = cell.shard.lock();
            let found = self.find(&mut sh, cell, h, key, || now);
            let live = Self::string_slot(&sh, found.live)?;
            let current = live.map(|i| sh.slot(i).value());
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

    /// FLUSHDB: removes every entry and tombstone of database `db`, locally, as
    /// [`Store::flushall`] does for all of them.
    pub fn flushdb(&self, db: u8) {
        for cell in self.cells.iter() {
            let mut sh = cell.shard.lock();
            let doomed: Vec<u32> = (0..sh.slot_count() as u32)
                .filter(|&i| {
                    sh.slot(i).state() != State::Free && database::split(sh.slot(i).key()).0 == db
                })
                .collect();
            for i in doomed {
                self.drop_slot(&mut sh, cell, i);
            }
        }
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
}
