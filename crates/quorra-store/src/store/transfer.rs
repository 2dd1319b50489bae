//! RENAME, RENAMENX and COPY: a value (string or collection) and its TTL moved or
//! copied between two keys,
//! which may live in different shards (both locked, in shard order). Only the net growth
//! has to fit under `maxmemory`: a rename gets back what its source gives up.

use super::Store;
use crate::entry::AccessKind;
use crate::error::StoreError;
use crate::shard::{State, make_data};

impl Store {
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
        self.with_room(&[src, dst], || {
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
            let (value, collection, deadline, src_size, src_key_len) = {
                let sh = Self::guard(&mut guards, ss);
                let s = sh.slot(si);
                let data = make_data(dst, &[s.value()]);
                let collection = sh.collection(si).cloned();
                let key_len = s.key().len() as u64;
                (
                    data,
                    collection,
                    sh.deadline(si),
                    sh.entry_size(si),
                    key_len,
                )
            };
            let elements = collection.as_ref().map_or(0, |c| c.bytes());
            let new = self.entry_size(dst.len(), value.len())? + elements;
            let old_dst = dst_found
                .slot
                .map_or(0, |i| Self::guard(&mut guards, sd).entry_size(i));
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
                // What this gives back is `credit`, accounted for below.
                if self.tombstone_grace_ms == 0 {
                    sh.remove(si);
                } else {
                    self.bury(sh, si, now, self.hlc.next(now));
                }
                Self::sync_stats(sh, &self.cells[ss]);
            }
            let version = self.hlc.next(now);
            let sh = Self::guard(&mut guards, sd);
            let key_len = u32::try_from(dst.len()).expect("key length checked");
            let (i, _) = sh.put(
                dst_found.slot,
                hd,
                value,
                key_len,
                State::Live,
                deadline,
                version,
            );
            if let Some(collection) = collection {
                sh.attach_collection(i, collection);
            }
            Self::sync_stats(sh, &self.cells[sd]);
            let surplus = old_dst.saturating_sub(new);
            let release = extra + surplus + credit - need;
            if release > 0 {
                self.mem.release(release);
            }
            Ok(true)
        })
    }
}

#[derive(Clone, Copy)]
enum Transfer {
    Rename,
    RenameNx,
    Copy { replace: bool },
}
