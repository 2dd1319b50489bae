//! One shard: a slab of slots, a hash index over it, an LRU list, a tombstone list and
//! a vector of slots that carry a deadline. Plain data; the caller holds the lock.
//!
//! Layout:
//!
//! ```text
//!  table: HashTable<u32>   -- slot indices, hashed by the stored xxh3 key hash
//!  slots: Vec<Slot>        -- 56 bytes each; freed slots form a free list via `next`
//!  lru:   List             -- live slots, most recently used at the head
//!  tombs: List             -- tombstone slots, newest at the head
//!  deadlines: Vec<Deadline>-- (slot, ms) for live entries with a TTL and for
//!                             tombstones (their purge time); a slot knows its position
//!                             here, so removal is a swap-remove, O(1)
//! ```
//!
//! A key keeps its slot for its whole life, including overwrites, TTL changes, and a
//! delete that leaves a tombstone; the slot is only freed when the entry is removed
//! outright (expiry, eviction, purge, FLUSHALL, or delete without tombstones). SCAN's
//! cursor relies on this.
//!
//! Key and value share one heap allocation (`key ++ value`): one allocation header per
//! entry instead of two. Reads copy the value out into a fresh `Bytes`.
//!
//! A key holding a collection (hash, set, sorted set) keeps only its key in the slot,
//! with `COLLECTION_BIT` set, and its [`Collection`] in `collections`, by slot index:
//! strings, the common case, pay nothing for the other types. The collection's
//! accounted bytes are part of the entry's size ([`Shard::entry_size`]).
//!
//! The shard keeps its own byte and entry counters; the global budget is the caller's
//! business ([`crate::memory`]).
//!
//! Failure mode: the slab and the index never shrink. After a mass deletion the freed
//! slots (56 bytes each) and the index capacity stay resident, unaccounted, until new
//! keys reuse them or FLUSHALL drops the shard; RSS can then sit well above the
//! accounted total. (Compacting would move slots and break the SCAN guarantee.)

use std::collections::{BTreeSet, HashMap};

use hashbrown::HashTable;
use quorra_ring::database;

use crate::collection::Collection;

use crate::lru::{Links, List, NIL};
use crate::memory::ENTRY_OVERHEAD;
use crate::version::Version;

/// What a slot currently holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Free,
    Live,
    Tombstone,
}

/// Longest key a slot can hold, bytes (the top three bits of the length word hold the
/// slot state and the collection bit): 512 MiB - 1, Redis's own limit.
pub(crate) const MAX_KEY_LEN: usize = (COLLECTION_BIT - 1) as usize;
/// `meta` bit: the slot holds a tombstone.
const TOMBSTONE_BIT: u32 = 1 << 31;
/// `meta` bit: the slot is on the free list.
const FREE_BIT: u32 = 1 << 30;
/// `meta` bit: the live entry's value is a collection, kept in `Shard::collections`.
const COLLECTION_BIT: u32 = 1 << 29;

/// One entry, 56 bytes, in this order (`repr(C)`):
///
/// ```text
/// data (ptr, len) 16 | hash 8 | meta 4 | deadline 4 | version 16 | prev 4 | next 4
/// ```
///
/// `meta` is the key length in the low 29 bits plus the state and collection bits. What a lookup reads
/// — data, hash, meta, then deadline — comes first, in 32 bytes: at a 56-byte stride
/// those straddle two cache lines for 3 slots in 8, against 7 in 8 when the compiler put
/// `meta` at offset 48.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Slot {
    /// Key bytes followed by value bytes (a tombstone holds the key only).
    data: Box<[u8]>,
    /// xxh3-64 of the key, computed once per operation.
    hash: u64,
    /// Key length (low 29 bits), `TOMBSTONE_BIT`, `FREE_BIT`, `COLLECTION_BIT`.
    meta: u32,
    /// Position in `Shard::deadlines`, or `NIL`.
    deadline: u32,
    version: Version,
    prev: u32,
    next: u32,
}

impl Links for Slot {
    fn prev(&self) -> u32 {
        self.prev
    }
    fn next(&self) -> u32 {
        self.next
    }
    fn set_prev(&mut self, p: u32) {
        self.prev = p;
    }
    fn set_next(&mut self, n: u32) {
        self.next = n;
    }
}

impl Slot {
    fn key_len(&self) -> usize {
        (self.meta & (COLLECTION_BIT - 1)) as usize
    }
    fn meta(key_len: u32, state: State) -> u32 {
        debug_assert!(key_len as usize <= MAX_KEY_LEN);
        key_len
            | match state {
                State::Live => 0,
                State::Tombstone => TOMBSTONE_BIT,
                State::Free => FREE_BIT,
            }
    }
    pub(crate) fn key(&self) -> &[u8] {
        &self.data[..self.key_len()]
    }
    /// The string value (empty for a tombstone or a collection).
    pub(crate) fn value(&self) -> &[u8] {
        &self.data[self.key_len()..]
    }
    /// True if the live entry holds a collection rather than a string.
    pub(crate) fn is_collection(&self) -> bool {
        self.meta & COLLECTION_BIT != 0
    }
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }
    pub(crate) fn version(&self) -> Version {
        self.version
    }
    pub(crate) fn state(&self) -> State {
        if self.meta & FREE_BIT != 0 {
            State::Free
        } else if self.meta & TOMBSTONE_BIT != 0 {
            State::Tombstone
        } else {
            State::Live
        }
    }
    /// Accounted size of the slot's own bytes: key + value + [`ENTRY_OVERHEAD`]; a
    /// collection's elements come on top ([`Shard::entry_size`]).
    fn size(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD
    }
}

/// A slot with a deadline: expiry time of a live entry, purge time of a tombstone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) slot: u32,
    /// Milliseconds since the epoch.
    pub(crate) at_ms: u64,
}

/// Builds the `key ++ value` allocation with exact capacity.
pub(crate) fn make_data(key: &[u8], value_parts: &[&[u8]]) -> Box<[u8]> {
    let len = key.len() + value_parts.iter().map(|p| p.len()).sum::<usize>();
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(key);
    for p in value_parts {
        v.extend_from_slice(p);
    }
    v.into_boxed_slice()
}

/// True when the stored `key` belongs to a database other than 0.
fn outside_db0(key: &[u8]) -> bool {
    database::split(key).0 != 0
}

/// The data of one shard. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    table: HashTable<u32>,
    slots: Vec<Slot>,
    free_head: Option<u32>,
    lru: List,
    tombs: List,
    deadlines: Vec<Deadline>,
    /// Accounted bytes of all occupied slots.
    bytes: u64,
    /// Live slots whose key belongs to a database other than 0: while it is 0 (nearly
    /// always), DBSIZE and INFO keyspace read counters instead of visiting keys.
    live_outside_db0: u64,
    /// Round-robin position of the active expiry cycle in `deadlines`.
    pub(crate) expire_cursor: usize,
    /// The slot where the active expiry of hash fields goes on next.
    pub(crate) field_expiry_cursor: u32,
    /// The collection of each slot with `COLLECTION_BIT`.
    collections: HashMap<u32, Collection>,
    /// Slots whose hash has fields with a TTL, for the active expiry of fields.
    volatile_hashes: BTreeSet<u32>,
}

impl Shard {
    pub(crate) fn slot(&self, i: u32) -> &Slot {
        &self.slots[i as usize]
    }

    /// Accounted size of entry `i`: its slot's bytes and its collection's elements.
    pub(crate) fn entry_size(&self, i: u32) -> u64 {
        let slot = &self.slots[i as usize];
        let elements = match slot.is_collection() {
            true => self.collections[&i].bytes(),
            false => 0,
        };
        slot.size() + elements
    }

    /// The collection of live slot `i`, if it holds one.
    pub(crate) fn collection(&self, i: u32) -> Option<&Collection> {
        self.collections.get(&i)
    }

    /// The collection of live slot `i`, to change in place; call
    /// [`collection_changed`](Self::collection_changed) afterwards with the bytes it had.
    pub(crate) fn collection_mut(&mut self, i: u32) -> Option<&mut Collection> {
        self.collections.get_mut(&i)
    }

    /// Accounts for a change made through [`collection_mut`](Self::collection_mut):
    /// `before` is what its elements were accounted before.
    pub(crate) fn collection_changed(&mut self, i: u32, before: u64) {
        let collection = &self.collections[&i];
        self.bytes = self.bytes - before + collection.bytes();
        if collection.has_volatile_fields() {
            self.volatile_hashes.insert(i);
        } else {
            self.volatile_hashes.remove(&i);
        }
    }

    /// Slots whose hash has fields with a TTL, from slot `from` on.
    pub(crate) fn volatile_hashes_from(&self, from: u32) -> impl Iterator<Item = u32> + '_ {
        self.volatile_hashes.range(from..).copied()
    }

    /// Makes live slot `i` (just written by [`put`](Self::put) with its key only) hold
    /// `collection`.
    pub(crate) fn attach_collection(&mut self, i: u32, collection: Collection) {
        let slot = &mut self.slots[i as usize];
        debug_assert!(slot.state() == State::Live && slot.value().is_empty());
        slot.meta |= COLLECTION_BIT;
        self.bytes += collection.bytes();
        self.collections.insert(i, collection);
        self.collection_changed(i, self.collections[&i].bytes());
    }

    /// Drops the collection of slot `i`, if any; returns the bytes it was accounted.
    fn detach_collection(&mut self, i: u32) -> u64 {
        let slot = &mut self.slots[i as usize];
        if !slot.is_collection() {
            return 0;
        }
        slot.meta &= !COLLECTION_BIT;
        self.volatile_hashes.remove(&i);
        let freed = self.collections.remove(&i).map_or(0, |c| c.bytes());
        self.bytes -= freed;
        freed
    }

    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn live(&self) -> u64 {
        u64::from(self.lru.len())
    }

    pub(crate) fn live_outside_db0(&self) -> u64 {
        self.live_outside_db0
    }

    pub(crate) fn tombstones(&self) -> u64 {
        u64::from(self.tombs.len())
    }

    /// Live entries with a TTL. Every tombstone has a purge deadline, so the rest of the
    /// deadline vector is exactly the live entries that expire.
    pub(crate) fn volatile(&self) -> u64 {
        self.deadlines.len() as u64 - self.tombstones()
    }

    pub(crate) fn deadlines(&self) -> &[Deadline] {
        &self.deadlines
    }

    /// The slot holding `key` (live or tombstone).
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| {
                let s = &slots[i as usize];
                s.hash == hash && s.key() == key
            })
            .copied()
    }

    /// Deadline of slot `i` (expiry of a live entry, purge time of a tombstone).
    pub(crate) fn deadline(&self, i: u32) -> Option<u64> {
        let d = self.slots[i as usize].deadline;
        (d != NIL).then(|| self.deadlines[d as usize].at_ms)
    }

    pub(crate) fn set_deadline(&mut self, i: u32, at: Option<u64>) {
        let d = self.slots[i as usize].deadline;
        match (d != NIL, at) {
            (true, Some(at_ms)) => self.deadlines[d as usize].at_ms = at_ms,
            (false, Some(at_ms)) => {
                self.slots[i as usize].deadline =
                    u32::try_from(self.deadlines.len()).expect("deadline vector below 2^32");
                self.deadlines.push(Deadline { slot: i, at_ms });
            }
            (true, None) => {
                self.deadlines.swap_remove(d as usize);
                if let Some(moved) = self.deadlines.get(d as usize) {
                    self.slots[moved.slot as usize].deadline = d;
                }
                self.slots[i as usize].deadline = NIL;
            }
            (false, None) => {}
        }
    }

    /// Replaces the version of slot `i` (a metadata-only write such as EXPIRE).
    pub(crate) fn set_version(&mut self, i: u32, v: Version) {
        self.slots[i as usize].version = v;
    }

    /// Marks `i` most recently used (no-op for tombstones).
    pub(crate) fn touch(&mut self, i: u32) {
        if self.slots[i as usize].state() == State::Live {
            self.lru.move_to_front(&mut self.slots, i);
        }
    }

    /// Stores `data` (key ++ value) for `hash` in slot `at` (which must hold the same
    /// key) or in a new slot, as `state` (`Live` or `Tombstone`), with `deadline` and
    /// `version`. A live entry becomes most recently used. Returns the slot index and
    /// the accounted size the slot had before (0 for a new slot).
    #[allow(clippy::too_many_arguments)] // every field of a slot; a struct would only rename them
    pub(crate) fn put(
        &mut self,
        at: Option<u32>,
        hash: u64,
        data: Box<[u8]>,
        key_len: u32,
        state: State,
        deadline: Option<u64>,
        version: Version,
    ) -> (u32, u64) {
        debug_assert!(state != State::Free);
        let new_size = data.len() as u64 + ENTRY_OVERHEAD;
        let mut old_slot_size = 0;
        let (i, old_size) = match at {
            Some(i) => {
                let old = self.entry_size(i);
                self.detach_collection(i);
                let s = &mut self.slots[i as usize];
                old_slot_size = s.size();
                if s.state() == State::Live && outside_db0(s.key()) {
                    self.live_outside_db0 -= 1;
                }
                match s.state() {
                    State::Live => self.lru.unlink(&mut self.slots, i),
                    State::Tombstone => self.tombs.unlink(&mut self.slots, i),
                    State::Free => unreachable!("put into a free slot"),
                }
                let s = &mut self.slots[i as usize];
                s.data = data;
                s.meta = Slot::meta(key_len, state);
                s.version = version;
                (i, old)
            }
            None => {
                let slot = Slot {
                    data,
                    hash,
                    version,
                    prev: NIL,
                    next: NIL,
                    meta: Slot::meta(key_len, state),
                    deadline: NIL,
                };
                let i = match self.free_head {
                    Some(i) => {
                        let next = self.slots[i as usize].next;
                        self.free_head = (next != NIL).then_some(next);
                        self.slots[i as usize] = slot;
                        i
                    }
                    None => {
                        let i = u32::try_from(self.slots.len())
                            .ok()
                            .filter(|&i| i != NIL)
                            .expect("shard holds fewer than 2^32-1 slots");
                        self.slots.push(slot);
                        i
                    }
                };
                let slots = &self.slots;
                self.table
                    .insert_unique(hash, i, |&j| slots[j as usize].hash);
                (i, 0)
            }
        };
        match state {
            State::Live => self.lru.push_front(&mut self.slots, i),
            _ => self.tombs.push_front(&mut self.slots, i),
        }
        if state == State::Live && outside_db0(self.slots[i as usize].key()) {
            self.live_outside_db0 += 1;
        }
        self.set_deadline(i, deadline);
        // A collection's share of `old_size` already went with `detach_collection`.
        self.bytes = self.bytes - old_slot_size + new_size;
        (i, old_size)
    }

    /// Replaces the value of live slot `i` by one of the same length, in place: no
    /// allocation, the accounted size is unchanged. The entry becomes most recently used.
    pub(crate) fn overwrite_value(
        &mut self,
        i: u32,
        value: &[u8],
        deadline: Option<u64>,
        version: Version,
    ) {
        let s = &mut self.slots[i as usize];
        debug_assert!(s.state() == State::Live && s.value().len() == value.len());
        let key_len = s.key_len();
        s.data[key_len..].copy_from_slice(value);
        s.version = version;
        self.lru.move_to_front(&mut self.slots, i);
        self.set_deadline(i, deadline);
    }

    /// Removes slot `i` outright and frees it. Returns its accounted size.
    pub(crate) fn remove(&mut self, i: u32) -> u64 {
        let elements = self.detach_collection(i);
        let hash = self.slots[i as usize].hash;
        match self.table.find_entry(hash, |&j| j == i) {
            Ok(e) => {
                e.remove();
            }
            Err(_) => unreachable!("occupied slot missing from the index"),
        }
        let s = &self.slots[i as usize];
        if s.state() == State::Live && outside_db0(s.key()) {
            self.live_outside_db0 -= 1;
        }
        match s.state() {
            State::Live => self.lru.unlink(&mut self.slots, i),
            State::Tombstone => self.tombs.unlink(&mut self.slots, i),
            State::Free => unreachable!("removing a free slot"),
        }
        self.set_deadline(i, None);
        let s = &mut self.slots[i as usize];
        let size = s.size();
        s.data = Box::default();
        s.meta = Slot::meta(0, State::Free);
        s.prev = NIL;
        s.next = self.free_head.unwrap_or(NIL);
        self.free_head = Some(i);
        self.bytes -= size;
        size + elements
    }

    /// The eviction candidate: the least recently used live slot not in `protect`,
    /// else the oldest tombstone not in `protect`.
    pub(crate) fn eviction_candidate(&self, protect: &[u32]) -> Option<u32> {
        for list in [&self.lru, &self.tombs] {
            let mut cur = list.tail().unwrap_or(NIL);
            while cur != NIL {
                if !protect.contains(&cur) {
                    return Some(cur);
                }
                cur = self.slots[cur as usize].prev;
            }
        }
        None
    }

    /// Removes everything; keeps the allocations' capacity small again.
    pub(crate) fn clear(&mut self) {
        *self = Shard::default();
    }

    /// Live slots from most to least recently used.
    pub(crate) fn lru_order(&self) -> impl Iterator<Item = u32> + '_ {
        self.lru.iter(&self.slots)
    }

    /// Checks the shard's internal invariants; returns a description of the first
    /// violation.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut bytes = 0;
        let (mut live, mut tombs) = (0u64, 0u64);
        for (i, s) in self.slots.iter().enumerate() {
            if s.state() == State::Free {
                continue;
            }
            bytes += self.entry_size(i as u32);
            if s.is_collection() != self.collections.contains_key(&(i as u32)) {
                return Err(format!("slot {i}: collection bit and collection disagree"));
            }
            if s.is_collection() && self.collections[&(i as u32)].is_empty() {
                return Err(format!("slot {i} holds an empty collection"));
            }
            if s.is_collection()
                && self.collections[&(i as u32)].has_volatile_fields()
                    != self.volatile_hashes.contains(&(i as u32))
            {
                return Err(format!(
                    "slot {i}: volatile hash not listed, or listed wrongly"
                ));
            }
            match s.state() {
                State::Live => live += 1,
                _ => tombs += 1,
            }
            let i = i as u32;
            if self.find(s.hash, s.key()) != Some(i) {
                return Err(format!("slot {i} not found through the index"));
            }
            if s.hash != quorra_ring::key_hash(s.key()) {
                return Err(format!("slot {i} has a stale hash"));
            }
            if s.deadline != NIL && self.deadlines[s.deadline as usize].slot != i {
                return Err(format!("slot {i} deadline back-pointer is wrong"));
            }
            if s.state() == State::Tombstone && !s.value().is_empty() {
                return Err(format!("tombstone {i} carries a value"));
            }
            if s.state() == State::Tombstone && s.deadline == NIL {
                return Err(format!("tombstone {i} has no purge deadline"));
            }
        }
        if bytes != self.bytes {
            return Err(format!(
                "shard bytes {} != sum of slots {bytes}",
                self.bytes
            ));
        }
        if self.collections.len() != self.slots.iter().filter(|s| s.is_collection()).count() {
            return Err("a collection belongs to no slot".into());
        }
        if self.table.len() as u64 != live + tombs {
            return Err("index size != occupied slots".into());
        }
        let outside = self
            .lru
            .iter(&self.slots)
            .filter(|&i| outside_db0(self.slots[i as usize].key()))
            .count() as u64;
        if outside != self.live_outside_db0 {
            return Err(format!(
                "{} live keys outside database 0, counted {}",
                outside, self.live_outside_db0
            ));
        }
        if self.lru.iter(&self.slots).count() as u64 != live || self.live() != live {
            return Err("LRU list does not hold exactly the live slots".into());
        }
        if self.tombs.iter(&self.slots).count() as u64 != tombs || self.tombstones() != tombs {
            return Err("tombstone list does not hold exactly the tombstones".into());
        }
        for (d, dl) in self.deadlines.iter().enumerate() {
            if self.slots[dl.slot as usize].deadline as usize != d {
                return Err(format!(
                    "deadline {d} points at a slot that does not point back"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 56);
    }

    #[test]
    fn slots_are_reused_and_keep_their_index_on_overwrite() {
        let mut sh = Shard::default();
        let h = |k: &[u8]| quorra_ring::key_hash(k);
        let (a, _) = sh.put(
            None,
            h(b"a"),
            make_data(b"a", &[b"1"]),
            1,
            State::Live,
            None,
            Version::ZERO,
        );
        let (b, _) = sh.put(
            None,
            h(b"b"),
            make_data(b"b", &[b"2"]),
            1,
            State::Live,
            Some(5),
            Version::ZERO,
        );
        let (a2, old) = sh.put(
            Some(a),
            h(b"a"),
            make_data(b"a", &[b"longer"]),
            1,
            State::Live,
            None,
            Version::ZERO,
        );
        assert_eq!((a2, old), (a, 2 + ENTRY_OVERHEAD));
        assert_eq!(sh.lru_order().collect::<Vec<_>>(), [a, b]);
        sh.check().unwrap();
        sh.remove(b);
        sh.check().unwrap();
        let (c, _) = sh.put(
            None,
            h(b"c"),
            make_data(b"c", &[]),
            1,
            State::Live,
            None,
            Version::ZERO,
        );
        assert_eq!(c, b, "freed slot is reused");
        assert_eq!(sh.find(h(b"c"), b"c"), Some(c));
        assert_eq!(sh.find(h(b"b"), b"b"), None);
        sh.check().unwrap();
    }
}
