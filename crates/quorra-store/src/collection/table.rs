//! The element table hashes, sets and sorted sets are built on: a `hashbrown` table of
//! elements, each one allocation holding its name, an optional expiry and its value.
//!
//! One allocation per element (instead of one for the name and one for the value) halves
//! the allocator headers, and the table itself holds only a 16-byte pointer per element.
//! The table counts its accounted bytes as elements come and go, so a collection's size
//! is known at every step without walking it.

use hashbrown::HashTable;

/// Accounted bytes per element on top of its allocation (name, value, the 4-byte
/// header and, for a field with a TTL, 8 bytes of expiry): the table's 16-byte pointer
/// and control byte at the table's load, and the allocator's header and rounding.
///
/// Measured with `cargo run --release -p quorra-store --example memory -- hash` and
/// `-- set` (10,000 keys with 100 elements each: fields `field:NNN` with 8-byte values,
/// members `field:NNN`; 16 shards, glibc malloc, Linux x86-64), as the RSS growth per
/// element past each key's first: 53.3 bytes for both types (one 32-byte malloc chunk,
/// and 21.3 bytes of table: 100 elements in 128 buckets), that is 32.3 bytes beyond a
/// field's 21-byte allocation and 40.3 beyond a member's 13. The table's share follows
/// its load: with 30, 60 or 1,000 elements per key (tables about half full) an element
/// took 66.8 bytes; over 10, 30, 60, 100, 200 and 1,000 elements per key the overhead
/// averaged 39.5 bytes for fields and 47.5 for members. The constant is that typical
/// figure, not a bound. A collection key's own structures (its `Collection` in the
/// shard's map, the table's first allocation) are not counted here.
pub const ELEMENT_OVERHEAD: u64 = 40;

/// Bit of the header word: an expiry follows the name.
const EXPIRY_FLAG: u32 = 1 << 31;

/// Longest element name, bytes (the header keeps one bit for the expiry flag).
pub const MAX_ELEMENT_NAME: usize = (EXPIRY_FLAG - 1) as usize;

/// One element: `name_len (u32 LE, top bit = has expiry) ++ name ++ [expiry u64 LE] ++
/// value`.
#[derive(Clone, PartialEq, Eq)]
pub struct Element(Box<[u8]>);

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Element")
            .field("name", &String::from_utf8_lossy(self.name()))
            .field("value", &String::from_utf8_lossy(self.value()))
            .field("expire_at", &self.expire_at())
            .finish()
    }
}

impl Element {
    fn new(name: &[u8], expire_at: Option<u64>, value: &[u8]) -> Self {
        debug_assert!(name.len() <= MAX_ELEMENT_NAME);
        let expiry_len = if expire_at.is_some() { 8 } else { 0 };
        let mut data = Vec::with_capacity(4 + name.len() + expiry_len + value.len());
        let flag = if expire_at.is_some() { EXPIRY_FLAG } else { 0 };
        data.extend_from_slice(&(name.len() as u32 | flag).to_le_bytes());
        data.extend_from_slice(name);
        if let Some(at) = expire_at {
            data.extend_from_slice(&at.to_le_bytes());
        }
        data.extend_from_slice(value);
        Element(data.into_boxed_slice())
    }

    fn header(&self) -> u32 {
        u32::from_le_bytes(self.0[..4].try_into().expect("4-byte header"))
    }

    fn name_len(&self) -> usize {
        (self.header() & !EXPIRY_FLAG) as usize
    }

    fn value_start(&self) -> usize {
        let expiry_len = if self.header() & EXPIRY_FLAG != 0 {
            8
        } else {
            0
        };
        4 + self.name_len() + expiry_len
    }

    /// The element's name (a hash's field, a set's member).
    pub fn name(&self) -> &[u8] {
        &self.0[4..4 + self.name_len()]
    }

    /// Its value (empty for a set's member).
    pub fn value(&self) -> &[u8] {
        &self.0[self.value_start()..]
    }

    /// Its absolute expiry, ms since the epoch (a hash field's TTL).
    pub fn expire_at(&self) -> Option<u64> {
        (self.header() & EXPIRY_FLAG != 0).then(|| {
            let at = 4 + self.name_len();
            u64::from_le_bytes(self.0[at..at + 8].try_into().expect("8-byte expiry"))
        })
    }

    /// Accounted size: its allocation plus [`ELEMENT_OVERHEAD`].
    pub fn accounted(&self) -> u64 {
        self.0.len() as u64 + ELEMENT_OVERHEAD
    }

    /// The accounted size of an element with these parts.
    pub fn accounted_for(name: usize, value: usize, expires: bool) -> u64 {
        (4 + name + value + if expires { 8 } else { 0 }) as u64 + ELEMENT_OVERHEAD
    }
}

fn hash_of(name: &[u8]) -> u64 {
    quorra_ring::key_hash(name)
}

/// What an update did to a table, element by element: each name it touched, with the
/// element it held before (`None`: it was absent), in the order touched. A name touched
/// twice appears twice; the first is its state before the update.
pub type Journal = Vec<(Box<[u8]>, Option<Element>)>;

/// Elements by name, with their accounted bytes.
#[derive(Default)]
pub struct Table {
    elements: HashTable<Element>,
    bytes: u64,
    /// While an update is journaled (see [`start_journal`](Self::start_journal)):
    /// what it touched. Boxed, so that a table pays one word for it.
    journal: Option<Box<Journal>>,
}

impl Clone for Table {
    /// The elements; a journal belongs to the update in progress, not to a copy.
    fn clone(&self) -> Self {
        Table {
            elements: self.elements.clone(),
            bytes: self.bytes,
            journal: None,
        }
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.elements.iter()).finish()
    }
}

impl Table {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// True when there is no element.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Accounted bytes of all elements.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The element called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Element> {
        self.elements.find(hash_of(name), |e| e.name() == name)
    }

    /// Starts recording what the table's updates touch, for replication's deltas
    /// (a journal already open is restarted).
    pub fn start_journal(&mut self) {
        self.journal = Some(Box::default());
    }

    /// Stops recording; what was touched since [`start_journal`](Self::start_journal)
    /// (nothing if no journal was open).
    pub fn take_journal(&mut self) -> Journal {
        self.journal
            .take()
            .map(|journal| *journal)
            .unwrap_or_default()
    }

    fn record(&mut self, name: &[u8], before: Option<&Element>) {
        if let Some(journal) = self.journal.as_mut() {
            journal.push((Box::from(name), before.cloned()));
        }
    }

    /// Stores `name` with `value` and `expire_at`, replacing an element of that name;
    /// returns the element it replaced.
    pub fn insert(&mut self, name: &[u8], expire_at: Option<u64>, value: &[u8]) -> Option<Element> {
        let element = Element::new(name, expire_at, value);
        self.bytes += element.accounted();
        let h = hash_of(name);
        let old = match self
            .elements
            .entry(h, |e| e.name() == name, |e| hash_of(e.name()))
        {
            hashbrown::hash_table::Entry::Occupied(mut slot) => {
                let old = std::mem::replace(slot.get_mut(), element);
                self.bytes -= old.accounted();
                Some(old)
            }
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(element);
                None
            }
        };
        self.record(name, old.as_ref());
        old
    }

    /// Removes the element called `name`; returns it.
    pub fn remove(&mut self, name: &[u8]) -> Option<Element> {
        let entry = self
            .elements
            .find_entry(hash_of(name), |e| e.name() == name);
        let (old, _) = entry.ok()?.remove();
        self.bytes -= old.accounted();
        self.record(old.name(), Some(&old));
        self.shrink_if_sparse();
        Some(old)
    }

    /// Gives back most of the table when fewer than one bucket in 8 holds an element
    /// (after SPOP, SREM, ...), so that [`random`](Self::random) stays a few probes and
    /// an emptied collection does not keep its peak's table.
    fn shrink_if_sparse(&mut self) {
        let buckets = self.elements.num_buckets();
        if buckets > 64 && self.elements.len() * 8 < buckets {
            let wanted = self.elements.len() * 2;
            self.elements.shrink_to(wanted, |e| hash_of(e.name()));
        }
    }

    /// An element chosen at random, `next` giving random numbers: probes random buckets
    /// until one holds an element — O(1) expected, since the table is kept at least one
    /// eighth full (it shrinks when sparser).
    pub fn random(&self, mut next: impl FnMut() -> u64) -> Option<&Element> {
        if self.elements.is_empty() {
            return None;
        }
        let buckets = self.elements.num_buckets() as u64;
        loop {
            if let Some(element) = self.elements.get_bucket((next() % buckets) as usize) {
                return Some(element);
            }
        }
    }

    /// Every element, in the table's order.
    pub fn iter(&self) -> impl Iterator<Item = &Element> {
        self.elements.iter()
    }

    /// Keeps only the elements for which `keep` is true; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&Element) -> bool) -> usize {
        let before = self.elements.len();
        let mut freed = 0;
        let journal = &mut self.journal;
        self.elements.retain(|e| {
            let kept = keep(e);
            if !kept {
                freed += e.accounted();
                if let Some(journal) = journal.as_mut() {
                    journal.push((Box::from(e.name()), Some(e.clone())));
                }
            }
            kept
        });
        self.bytes -= freed;
        self.shrink_if_sparse();
        before - self.elements.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_keep_name_value_and_expiry_apart_and_account_their_allocation() {
        let mut t = Table::default();
        assert!(t.insert(b"f", None, b"v1").is_none());
        assert!(t.insert(b"g", Some(42), b"").is_none());
        let g = t.get(b"g").unwrap();
        assert_eq!(
            (g.name(), g.value(), g.expire_at()),
            (&b"g"[..], &b""[..], Some(42))
        );
        let old = t.insert(b"f", None, b"longer").unwrap();
        assert_eq!(old.value(), b"v1");
        assert_eq!(
            t.bytes(),
            Element::accounted_for(1, 6, false) + Element::accounted_for(1, 0, true)
        );
        assert_eq!(t.remove(b"g").unwrap().expire_at(), Some(42));
        assert_eq!(t.bytes(), Element::accounted_for(1, 6, false));
        assert_eq!(t.retain(|_| false), 1);
        assert_eq!((t.len(), t.bytes()), (0, 0));
    }
}
