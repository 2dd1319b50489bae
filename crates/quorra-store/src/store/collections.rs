//! Collections in the store: typed reads and in-place updates of hashes, sets and sorted
//! sets ([`crate::collection`]).
//!
//! An update reserves the most its command can grow the entry before it runs (the
//! caller's bound, plus a new key's slot), evicting other entries if it must, and gives
//! back what it did not use; so `maxmemory` holds for collections as for strings. A
//! collection left empty deletes its key (a tombstone, as DEL leaves), as Redis deletes
//! an emptied hash, set or sorted set. Every update that changes the collection stamps
//! a new version, which replication copies.

use super::Store;
use crate::collection::{Collection, CollectionType};
use crate::entry::AccessKind;
use crate::error::StoreError;
use crate::shard::{State, make_data};
use crate::store::delta::KeyChange;
use crate::version::Version;

impl Store {
    /// Calls `f` with the collection of type `C` at `key` and the store's time (which
    /// hides a hash's expired fields), promoting the key. `Ok(None)` when the key does
    /// not exist; `WrongType` when it holds another type.
    pub fn read_collection<C: CollectionType, R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&C, u64) -> R,
    ) -> Result<Option<R>, StoreError> {
        let (h, s) = self.locate(key, AccessKind::Read);
        let cell = &self.cells[s];
        let now = self.now();
        let mut sh = cell.shard.lock();
        let Some(i) = self.find(&mut sh, cell, h, key, || now).live else {
            return Ok(None);
        };
        sh.touch(i);
        match sh.collection(i).and_then(C::of) {
            Some(collection) => Ok(Some(f(collection, now))),
            None => Err(StoreError::WrongType),
        }
    }

    /// Runs `f` on the collection of type `C` at `key`, in place. `f` gets the store's
    /// time and returns its result and whether it changed the collection. A missing key
    /// is created empty for `f` when `create` is true (and stored only if `f` leaves
    /// something in it); otherwise `f` does not run and the answer is `Ok(None)`.
    /// `growth` bounds how many accounted bytes `f` can add; it is reserved first.
    /// `WrongType` when the key holds another type.
    pub fn update_collection<C: CollectionType, R>(
        &self,
        key: &[u8],
        create: bool,
        growth: u64,
        f: impl FnOnce(&mut C, u64) -> (R, bool),
    ) -> Result<Option<R>, StoreError> {
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        let mut f = Some(f);
        self.with_room(&[key], || {
            let now = self.now();
            let mut sh = cell.shard.lock();
            let found = self.find(&mut sh, cell, h, key, || now);
            if let Some(i) = found.live
                && sh.collection(i).and_then(C::of).is_none()
            {
                return Err(StoreError::WrongType.into());
            }
            if found.live.is_none() && !create {
                return Ok(None);
            }
            let new_slot = match found.live {
                Some(_) => 0,
                None => self.entry_size(key.len(), key.len())?,
            };
            let bound = match found.live {
                Some(_) => growth,
                None => growth.saturating_add(new_slot + C::OVERHEAD),
            };
            let spare: Vec<u32> = found.slot.into_iter().collect();
            self.reserve(bound, || self.evict_one(&mut sh, cell, &spare).is_some())?;
            // From here on nothing fails: `with_room` does not run this closure again.
            let f = f.take().expect("an update runs once");
            let (reply, grew) = match found.live {
                Some(i) => {
                    let before = sh.entry_size(i);
                    let before_elements = sh.collection(i).map_or(0, Collection::bytes);
                    let (base, expire_at_ms) = (sh.slot(i).version(), sh.deadline(i));
                    let held = sh.collection_mut(i).expect("checked above");
                    let collection = C::of_mut(held).expect("checked above");
                    let expired = collection.remove_expired(now) > 0;
                    // Under a capture, what `f` changes is journaled for a delta.
                    let journaled = Self::capturing() && held.start_journal();
                    let collection = C::of_mut(held).expect("checked above");
                    let (reply, changed) = f(collection, now);
                    let journal = sh.collection_mut(i).expect("still there").take_journal();
                    sh.touch(i);
                    sh.collection_changed(i, before_elements);
                    let after = sh.entry_size(i);
                    let empty = sh.collection(i).is_some_and(Collection::is_empty);
                    let (reply, grew, result) = match (changed, empty) {
                        (true, true) => {
                            // What the tombstone gives back is released here.
                            let (freed, version) = self.bury_or_drop(&mut sh, i, now);
                            (
                                reply,
                                after as i128 - before as i128 - freed as i128,
                                version,
                            )
                        }
                        (false, true) if expired => {
                            // Emptied by its fields' TTLs alone: expiry, not a delete.
                            self.note_expired(&sh, cell, i);
                            let freed = sh.remove(i);
                            (reply, after as i128 - before as i128 - freed as i128, None)
                        }
                        (changed, _) => {
                            let version = changed.then(|| self.hlc.next(now));
                            if let Some(version) = version {
                                sh.set_version(i, version);
                            }
                            (reply, after as i128 - before as i128, version)
                        }
                    };
                    if changed {
                        Self::record_change(
                            key,
                            match (journaled, result) {
                                (true, Some(result)) => KeyChange::Elements {
                                    kind: C::KIND,
                                    base,
                                    expire_at_ms,
                                    result,
                                    before: journal,
                                },
                                _ => KeyChange::Whole,
                            },
                        );
                    }
                    (reply, grew)
                }
                None => {
                    let mut collection = C::default();
                    let (reply, _) = f(&mut collection, now);
                    if collection.is_empty() {
                        (reply, 0)
                    } else {
                        let version = self.hlc.next(now);
                        let key_len = u32::try_from(key.len()).expect("key length checked");
                        let data = make_data(key, &[]);
                        let (i, old) =
                            sh.put(found.slot, h, data, key_len, State::Live, None, version);
                        sh.attach_collection(i, collection.wrap());
                        Self::record_change(key, KeyChange::Whole);
                        (reply, sh.entry_size(i) as i128 - old as i128)
                    }
                }
            };
            self.settle(bound, grew);
            Self::sync_stats(&sh, cell);
            Ok(Some(reply))
        })
    }

    /// Deletes live slot `i` as a write (a tombstone, or nothing without tombstones);
    /// returns the bytes it gave up, which the caller accounts for, and the
    /// tombstone's version.
    fn bury_or_drop(
        &self,
        sh: &mut crate::shard::Shard,
        i: u32,
        now: u64,
    ) -> (u64, Option<Version>) {
        if self.tombstone_grace_ms == 0 {
            (sh.remove(i), None)
        } else {
            let version = self.hlc.next(now);
            (self.bury(sh, i, now, version), Some(version))
        }
    }

    /// Settles a reservation of `reserved` bytes for an update that grew the store by
    /// `grew` (negative: shrank it).
    pub(super) fn settle(&self, reserved: u64, grew: i128) {
        let unused = reserved as i128 - grew;
        if unused >= 0 {
            self.mem.release(unused as u64);
        } else {
            // The caller's bound was too small: a bug, caught by the tests' invariant
            // checks. Account for what is really there rather than lose track of it.
            debug_assert!(
                false,
                "update grew {grew} bytes, beyond its bound {reserved}"
            );
            self.mem.add_beyond_limit((-unused) as u64);
        }
    }
}
