//! Deltas: how a write to a hash, set or sorted set reaches the key's other replicas
//! without copying the whole collection.
//!
//! Copying the resulting value makes every HSET to a hash of n fields cost O(n) on the
//! network and at each replica. Instead, a primary runs its command inside
//! [`Store::capture`]: every in-place update of a collection journals the elements it
//! touched, with what each held before ([`crate::collection::Journal`]), and the capture
//! keeps, per key, the version the update started from and the one it stamped
//! ([`KeyChange::Elements`]). Replication then sends an [`EntryDelta`]: those elements
//! as they are now, for a replica that holds the base version. A replica that does not
//! (it missed a write, or never had the key) answers [`DeltaOutcome::NeedsWhole`] and
//! is sent the whole value; versions decide, so a delta never applies twice or out of
//! order. The same journal gives the undo of a write no replica took
//! ([`Store::revert_change`]), so the primary keeps no copy of the collection either.
//!
//! Lists, new keys, and anything else ([`KeyChange::Whole`]) are copied whole.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::Store;
use crate::collection::{Collection, Element, Journal};
use crate::entry::{AccessKind, KeyType};
use crate::error::StoreError;
use crate::shard::{State, make_data};
use crate::version::Version;

/// A write to a collection key as a replica applies it: the elements the write changed,
/// as they are at `version`, for a replica holding `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDelta {
    /// The key's type.
    pub kind: KeyType,
    /// The version the delta applies to.
    pub base: Version,
    /// The version the key has once it is applied.
    pub version: Version,
    /// The changed elements present at `version`, in the replication encoding
    /// ([`Collection::encode`]).
    pub present: Bytes,
    /// The names of the changed elements absent at `version`.
    pub absent: Vec<Bytes>,
}

impl EntryDelta {
    /// Bytes it takes on the wire, about: to cut requests to size.
    pub fn size(&self) -> usize {
        self.present.len() + self.absent.iter().map(|name| name.len() + 8).sum::<usize>() + 48
    }
}

/// What a replica did with an [`EntryDelta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// Applied: the replica now holds `version`.
    Applied,
    /// The replica already holds `version` or a newer one: nothing to do.
    Held,
    /// The replica does not hold `base`: it needs the whole value.
    NeedsWhole,
    /// The replica evicted the key for memory (see
    /// [`ApplyOutcome::Evicted`](crate::ApplyOutcome::Evicted)).
    Evicted,
}

/// What a command did to one key, as a capture saw it.
#[derive(Debug, Clone)]
pub enum KeyChange {
    /// In-place updates of a hash, set or sorted set that existed.
    Elements {
        /// Its type.
        kind: KeyType,
        /// Its version before the first update.
        base: Version,
        /// Its expiry then (element updates leave it as it is).
        expire_at_ms: Option<u64>,
        /// The version the last update stamped (a tombstone's, if it emptied the key).
        result: Version,
        /// The elements touched, with their state before, in the order touched.
        before: Journal,
    },
    /// Anything else: the key is copied whole.
    Whole,
}

/// The changes a [`Store::capture`] saw, per key.
#[derive(Debug, Default)]
pub struct Changes {
    keys: HashMap<Bytes, KeyChange>,
}

impl Changes {
    /// What happened to `key`, if the capture saw it written.
    pub fn get(&self, key: &[u8]) -> Option<&KeyChange> {
        self.keys.get(key)
    }

    /// Adds `change`, made after those already here. Updates that follow one another
    /// (each starting from the version the previous one stamped) make one change; if
    /// another write came between, the key is copied whole.
    fn record(&mut self, key: &[u8], change: KeyChange) {
        let Some(held) = self.keys.get_mut(key) else {
            self.keys.insert(Bytes::copy_from_slice(key), change);
            return;
        };
        match (held, change) {
            (
                KeyChange::Elements { result, before, .. },
                KeyChange::Elements {
                    base,
                    result: next,
                    before: more,
                    ..
                },
            ) if *result == base => {
                *result = next;
                before.extend(more);
            }
            (held, _) => *held = KeyChange::Whole,
        }
    }

    /// Adds every change of `later`, made after those already here (a pipeline's next
    /// command).
    pub fn extend(&mut self, later: &Changes) {
        for (key, change) in &later.keys {
            self.record(key, change.clone());
        }
    }
}

thread_local! {
    /// The changes of the capture running on this thread, if one is.
    static CAPTURE: RefCell<Option<Changes>> = const { RefCell::new(None) };
}

/// Puts back the capture that was running when a new one started (none, normally),
/// also if the captured code panics.
struct CaptureScope(Option<Changes>);

impl Drop for CaptureScope {
    fn drop(&mut self) {
        let outer = self.0.take();
        CAPTURE.with(|capture| *capture.borrow_mut() = outer);
    }
}

/// Each element `journal` touched, once, with its state before the first touch.
fn first_touches(journal: &Journal) -> impl Iterator<Item = (&[u8], &Option<Element>)> {
    let mut seen = HashSet::new();
    journal
        .iter()
        .map(|(name, element)| (&name[..], element))
        .filter(move |(name, _)| seen.insert(*name))
}

/// The first state of each touched element, as a delta's parts: present elements
/// encoded, absent ones by name.
fn first_states(kind: KeyType, journal: &Journal) -> Option<(Vec<u8>, Vec<Bytes>)> {
    let mut earlier = match kind {
        KeyType::Hash => Collection::Hash(Default::default()),
        KeyType::Set => Collection::Set(Default::default()),
        KeyType::SortedSet => Collection::SortedSet(Default::default()),
        _ => return None,
    };
    let mut absent = Vec::new();
    for (name, element) in first_touches(journal) {
        match element {
            Some(element) => earlier.upsert_element(element),
            None => absent.push(Bytes::copy_from_slice(name)),
        }
    }
    Some((earlier.encode(), absent))
}

impl Store {
    /// Runs `f` (a command, on its keys' primary) and returns what it wrote to each key
    /// ([`Changes`]), for replication to send as deltas.
    pub fn capture<R>(&self, f: impl FnOnce() -> R) -> (R, Changes) {
        let outer = CAPTURE.with(|capture| capture.borrow_mut().replace(Changes::default()));
        let scope = CaptureScope(outer);
        let result = f();
        let changes = CAPTURE
            .with(|capture| capture.borrow_mut().take())
            .unwrap_or_default();
        drop(scope);
        (result, changes)
    }

    /// True while a capture runs on this thread: updates journal their changes.
    pub(crate) fn capturing() -> bool {
        CAPTURE.with(|capture| capture.borrow().is_some())
    }

    /// Records `change` to `key` in the capture running on this thread, if any.
    pub(crate) fn record_change(key: &[u8], change: KeyChange) {
        CAPTURE.with(|capture| {
            if let Some(changes) = capture.borrow_mut().as_mut() {
                changes.record(key, change);
            }
        });
    }

    /// The delta that brings a replica holding `change`'s base to what `key` holds now;
    /// `None` when the key must be copied whole (a change that is not an element
    /// update, or a key written again since).
    pub fn delta(&self, key: &[u8], change: &KeyChange) -> Option<EntryDelta> {
        let KeyChange::Elements {
            kind,
            base,
            result,
            before,
            ..
        } = change
        else {
            return None;
        };
        let (h, s) = self.locate(key, AccessKind::Read);
        let sh = self.cells[s].shard.lock();
        let i = sh.find(h, key)?;
        let slot = sh.slot(i);
        if slot.version() != *result {
            return None;
        }
        let names = first_touches(before).map(|(name, _)| name);
        let (present, absent) = match (slot.state(), sh.collection(i)) {
            (State::Live, Some(collection)) if collection.kind() == *kind => {
                let (present, absent) = collection.encode_elements(names);
                (present, absent)
            }
            // Emptied: every element it touched is gone.
            (State::Tombstone, _) => (Vec::new(), names.map(Box::from).collect()),
            _ => return None,
        };
        Some(EntryDelta {
            kind: *kind,
            base: *base,
            version: *result,
            present: Bytes::from(present),
            absent: absent.into_iter().map(Bytes::from).collect(),
        })
    }

    /// Applies a replicated delta: only to the collection of version `delta.base` (see
    /// [`DeltaOutcome`]). A delta that empties the collection deletes the key, leaving
    /// a tombstone with its version.
    pub fn apply_delta(&self, key: &[u8], delta: &EntryDelta) -> Result<DeltaOutcome, StoreError> {
        self.hlc.observe(delta.version);
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        {
            let sh = cell.shard.lock();
            match sh.find(h, key) {
                Some(i) if sh.slot(i).version() >= delta.version => {
                    return Ok(DeltaOutcome::Held);
                }
                None if cell.evicted.lock().covers(h, delta.version) => {
                    return Ok(DeltaOutcome::Evicted);
                }
                _ => {}
            }
        }
        let present = Collection::decode(delta.kind, &delta.present)
            .filter(|_| delta.kind != KeyType::List)
            .ok_or(StoreError::CorruptEntry)?;
        let applied = self.change_elements(
            key,
            delta.base,
            delta.version,
            None,
            &present,
            &delta.absent,
        )?;
        Ok(match applied {
            true => DeltaOutcome::Applied,
            false => DeltaOutcome::NeedsWhole,
        })
    }

    /// Undoes `change`, a write to `key` that no replica took, if the key still holds
    /// the version `change` stamped: its touched elements and its version go back to
    /// what they were. Returns false when there is nothing this can undo (the key was
    /// written since, or `change` is not an element update).
    pub fn revert_change(&self, key: &[u8], change: &KeyChange) -> Result<bool, StoreError> {
        let KeyChange::Elements {
            kind,
            base,
            expire_at_ms,
            result,
            before,
        } = change
        else {
            return Ok(false);
        };
        let Some((present, absent)) = first_states(*kind, before) else {
            return Ok(false);
        };
        let present = Collection::decode(*kind, &present).ok_or(StoreError::CorruptEntry)?;
        self.change_elements(key, *result, *base, Some(*expire_at_ms), &present, &absent)
    }

    /// Stores `present`'s elements in the collection of `key` and removes those called
    /// `absent`, if the key holds version `from` (a collection of `present`'s type, or
    /// a tombstone, whose collection starts empty, when `revive_expiry` gives the
    /// expiry to revive it with); the key then has version `to`. False, and nothing
    /// done, when the key holds something else.
    fn change_elements(
        &self,
        key: &[u8],
        from: Version,
        to: Version,
        revive_expiry: Option<Option<u64>>,
        present: &Collection,
        absent: &[Bytes],
    ) -> Result<bool, StoreError> {
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        let bound = present.bytes();
        self.with_room(&[key], || {
            let now = self.now();
            let mut sh = cell.shard.lock();
            let Some(i) = sh.find(h, key).filter(|&i| sh.slot(i).version() == from) else {
                return Ok(false);
            };
            let live = sh.slot(i).state() == State::Live;
            let fits = match sh.collection(i) {
                Some(held) => live && held.kind() == present.kind(),
                None => !live && revive_expiry.is_some(),
            };
            if !fits {
                return Ok(false);
            }
            let before = sh.entry_size(i);
            self.reserve(bound, || self.evict_one(&mut sh, cell, &[i]).is_some())?;
            if live {
                let elements_before = sh.collection(i).map_or(0, Collection::bytes);
                let held = sh.collection_mut(i).expect("checked above");
                held.merge(present);
                held.remove_elements(absent.iter().map(|name| &name[..]));
                sh.collection_changed(i, elements_before);
            } else {
                let mut revived = present.clone();
                revived.remove_elements(absent.iter().map(|name| &name[..]));
                let key_len = u32::try_from(key.len()).expect("key length checked");
                let expiry = revive_expiry.flatten();
                sh.put(
                    Some(i),
                    h,
                    make_data(key, &[]),
                    key_len,
                    State::Live,
                    expiry,
                    to,
                );
                sh.attach_collection(i, revived);
            }
            sh.set_version(i, to);
            let mut grew = sh.entry_size(i) as i128 - before as i128;
            if sh.collection(i).is_some_and(Collection::is_empty) {
                grew -= match self.tombstone_grace_ms {
                    0 => sh.remove(i),
                    _ => self.bury(&mut sh, i, now, to),
                } as i128;
            }
            self.settle(bound, grew);
            Self::sync_stats(&sh, cell);
            Ok(true)
        })
    }
}
