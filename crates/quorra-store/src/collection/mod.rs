//! Collections: the values other than strings a key can hold — hashes (with field
//! TTLs), lists, sets and sorted sets.
//!
//! A collection lives beside its key's slot (see `shard`), not in the slot's byte
//! allocation: commands change it in place, and its accounted size — the sum of its
//! elements' accounted sizes, kept up to date by each structure as it changes — is part
//! of the entry's size, so `maxmemory` covers it exactly as it covers strings.
//!
//! Replication copies a list whole, in the encoding [`Collection::encode`] gives; a
//! write to a hash, set or sorted set travels as the elements it changed, in the same
//! encoding (a delta, see `crate::delta` and `docs/collections.md`).

pub mod hash;
pub mod list;
pub mod set;
pub mod sorted_set;
pub mod table;

pub use hash::{FieldExpiry, HashValue};
pub use list::{End, ListValue};
pub use set::SetValue;
pub use sorted_set::{LexBound, Score, ScoreBound, SortedSetValue};
pub use table::{ELEMENT_OVERHEAD, Element, Journal, MAX_ELEMENT_NAME, Table};

use crate::entry::KeyType;

/// Accounted bytes of a hash or a set itself, whatever its elements: its entry in its
/// shard's collection map and its element table's smallest allocation. Measured with
/// the store's memory example (`... --example memory -- hash 10000 1`): one-element
/// hashes and sets took about 390 B of RSS each against 157 B accounted by key, slot and
/// element; this constant is the difference, rounded up.
pub const COLLECTION_OVERHEAD: u64 = 240;

/// [`COLLECTION_OVERHEAD`] for a sorted set, whose ordered set's first B-tree node comes
/// on top: one-element sorted sets took about 704 B of RSS against 228 B accounted.
pub const SORTED_SET_OVERHEAD: u64 = 480;

/// A key's value when it is not a string.
#[derive(Debug, Clone)]
pub enum Collection {
    /// A hash.
    Hash(HashValue),
    /// A list.
    List(ListValue),
    /// A set.
    Set(SetValue),
    /// A sorted set.
    SortedSet(SortedSetValue),
}

/// The collection types, for the store's typed access (`Store::read`, `Store::update`).
pub trait CollectionType: Default + Sized {
    /// Its TYPE.
    const KIND: KeyType;
    /// Accounted bytes of the collection itself, whatever its elements.
    const OVERHEAD: u64;
    /// Accounted bytes of its elements.
    fn bytes(&self) -> u64;
    /// True when it has no element left.
    fn is_empty(&self) -> bool;
    /// Removes the elements whose TTL has passed at `now_ms` (a hash's fields); how
    /// many went. Runs before every update.
    fn remove_expired(&mut self, _now_ms: u64) -> usize {
        0
    }
    /// This type inside `collection`, if it is one.
    fn of(collection: &Collection) -> Option<&Self>;
    /// This type inside `collection`, if it is one.
    fn of_mut(collection: &mut Collection) -> Option<&mut Self>;
    /// Wraps a value of this type.
    fn wrap(self) -> Collection;
}

macro_rules! collection_type {
    ($type:ty, $variant:ident, $kind:expr, $overhead:expr $(, $extra:item)*) => {
        impl CollectionType for $type {
            const KIND: KeyType = $kind;
            const OVERHEAD: u64 = $overhead;
            fn bytes(&self) -> u64 {
                <$type>::bytes(self)
            }
            fn is_empty(&self) -> bool {
                <$type>::is_empty(self)
            }
            fn of(collection: &Collection) -> Option<&Self> {
                match collection {
                    Collection::$variant(value) => Some(value),
                    _ => None,
                }
            }
            fn of_mut(collection: &mut Collection) -> Option<&mut Self> {
                match collection {
                    Collection::$variant(value) => Some(value),
                    _ => None,
                }
            }
            fn wrap(self) -> Collection {
                Collection::$variant(self)
            }
            $($extra)*
        }
    };
}

collection_type!(
    HashValue,
    Hash,
    KeyType::Hash,
    COLLECTION_OVERHEAD,
    fn remove_expired(&mut self, now_ms: u64) -> usize {
        HashValue::remove_expired(self, now_ms)
    }
);
collection_type!(ListValue, List, KeyType::List, COLLECTION_OVERHEAD);
collection_type!(SetValue, Set, KeyType::Set, COLLECTION_OVERHEAD);
collection_type!(
    SortedSetValue,
    SortedSet,
    KeyType::SortedSet,
    SORTED_SET_OVERHEAD
);

impl Collection {
    /// Its TYPE.
    pub fn kind(&self) -> KeyType {
        match self {
            Collection::Hash(_) => KeyType::Hash,
            Collection::List(_) => KeyType::List,
            Collection::Set(_) => KeyType::Set,
            Collection::SortedSet(_) => KeyType::SortedSet,
        }
    }

    /// Accounted bytes: the collection's own overhead and its elements'.
    pub fn bytes(&self) -> u64 {
        match self {
            Collection::Hash(h) => HashValue::OVERHEAD + h.bytes(),
            Collection::List(l) => ListValue::OVERHEAD + l.bytes(),
            Collection::Set(s) => SetValue::OVERHEAD + s.bytes(),
            Collection::SortedSet(z) => SortedSetValue::OVERHEAD + z.bytes(),
        }
    }

    /// True when it has no element left (the key then goes).
    pub fn is_empty(&self) -> bool {
        match self {
            Collection::Hash(h) => h.is_empty(),
            Collection::List(l) => l.is_empty(),
            Collection::Set(s) => s.is_empty(),
            Collection::SortedSet(z) => z.is_empty(),
        }
    }

    /// True for a hash holding fields with a TTL.
    pub fn has_volatile_fields(&self) -> bool {
        matches!(self, Collection::Hash(h) if h.has_volatile_fields())
    }

    /// OBJECT ENCODING's answer. quorra has one encoding per type; it reports Redis's
    /// names for the large encodings, which are the ones that behave like quorra's.
    pub fn encoding(&self) -> &'static str {
        match self {
            Collection::Hash(_) | Collection::Set(_) => "hashtable",
            Collection::List(_) => "quicklist",
            Collection::SortedSet(_) => "skiplist",
        }
    }

    /// The bytes replication sends: each element as length-prefixed name, then a hash
    /// field's expiry (0 for none) and value, or a member's score.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes() as usize);
        match (self.elements(), self) {
            (Some(table), _) => {
                let kind = self.kind();
                table.iter().for_each(|e| encode_element(kind, &mut out, e));
            }
            (None, Collection::List(l)) => l.iter().for_each(|e| put_bytes(&mut out, e)),
            (None, _) => unreachable!("every other type keeps an element table"),
        }
        out
    }

    /// The collection of type `kind` that [`encode`](Self::encode) gave `bytes`; `None`
    /// for bytes it cannot have given (a corrupt or foreign message).
    pub fn decode(kind: KeyType, bytes: &[u8]) -> Option<Collection> {
        let mut collection = match kind {
            KeyType::Hash => Collection::Hash(HashValue::default()),
            KeyType::Set => Collection::Set(SetValue::default()),
            KeyType::SortedSet => Collection::SortedSet(SortedSetValue::default()),
            KeyType::List => {
                let mut reader = Reader(bytes);
                let mut l = ListValue::default();
                while !reader.0.is_empty() {
                    l.push(End::Right, reader.bytes()?);
                }
                return Some(Collection::List(l));
            }
            KeyType::String | KeyType::None => return None,
        };
        collection.upsert_encoded(bytes)?;
        Some(collection)
    }

    /// The element table of a hash, set or sorted set (a list has none): what deltas
    /// are made of.
    fn elements(&self) -> Option<&Table> {
        match self {
            Collection::Hash(h) => Some(h.fields()),
            Collection::Set(s) => Some(s.members()),
            Collection::SortedSet(z) => Some(z.scores()),
            Collection::List(_) => None,
        }
    }

    /// Starts journaling the element table's changes (see [`Table::start_journal`]);
    /// false for a list, which has no element table and is copied whole.
    pub fn start_journal(&mut self) -> bool {
        let table = match self {
            Collection::Hash(h) => h.fields_mut(),
            Collection::Set(s) => s.members_mut(),
            Collection::SortedSet(z) => z.scores_mut(),
            Collection::List(_) => return false,
        };
        table.start_journal();
        true
    }

    /// Ends the journal [`start_journal`](Self::start_journal) opened.
    pub fn take_journal(&mut self) -> Journal {
        match self {
            Collection::Hash(h) => h.fields_mut().take_journal(),
            Collection::Set(s) => s.members_mut().take_journal(),
            Collection::SortedSet(z) => z.scores_mut().take_journal(),
            Collection::List(_) => Journal::new(),
        }
    }

    /// The elements called `names` as they are now, for a delta: those present in the
    /// encoding [`encode`](Self::encode) uses, the names of those absent apart.
    pub fn encode_elements<'a>(
        &self,
        names: impl Iterator<Item = &'a [u8]>,
    ) -> (Vec<u8>, Vec<Box<[u8]>>) {
        let (mut present, mut absent) = (Vec::new(), Vec::new());
        let Some(table) = self.elements() else {
            return (present, absent);
        };
        for name in names {
            match table.get(name) {
                Some(e) => encode_element(self.kind(), &mut present, e),
                None => absent.push(Box::from(name)),
            }
        }
        (present, absent)
    }

    /// Stores every element of `bytes` (the encoding of [`encode`](Self::encode) for
    /// this collection's type), replacing those of the same names. `None` if the bytes
    /// are corrupt; what came before the corruption is stored.
    pub fn upsert_encoded(&mut self, bytes: &[u8]) -> Option<()> {
        let mut reader = Reader(bytes);
        while !reader.0.is_empty() {
            let name = reader.bytes()?;
            match self {
                Collection::Hash(h) => {
                    let at = reader.u64()?;
                    h.put(name, (at != 0).then_some(at), reader.bytes()?);
                }
                Collection::Set(s) => {
                    s.add(name);
                }
                Collection::SortedSet(z) => {
                    z.insert(name, Score::new(f64::from_bits(reader.u64()?))?);
                }
                Collection::List(_) => return None,
            }
        }
        Some(())
    }

    /// Stores every element of `other` (a collection of the same type) here,
    /// replacing those of the same names.
    pub fn merge(&mut self, other: &Collection) {
        if let Some(table) = other.elements() {
            table.iter().for_each(|e| self.upsert_element(e));
        }
    }

    /// Stores `e`, an element of a table of this collection's type, replacing the one
    /// of the same name.
    pub fn upsert_element(&mut self, e: &Element) {
        match self {
            Collection::Hash(h) => {
                h.put(e.name(), e.expire_at(), e.value());
            }
            Collection::Set(s) => {
                s.add(e.name());
            }
            Collection::SortedSet(z) => {
                z.insert(e.name(), sorted_set::score_of(e));
            }
            Collection::List(_) => {}
        }
    }

    /// Removes the elements called `names` (a list has none to remove by name).
    pub fn remove_elements<'a>(&mut self, names: impl Iterator<Item = &'a [u8]>) {
        for name in names {
            match self {
                Collection::Hash(h) => {
                    h.delete(name, 0);
                }
                Collection::Set(s) => {
                    s.remove(name);
                }
                Collection::SortedSet(z) => {
                    z.remove(name);
                }
                Collection::List(_) => return,
            }
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// One element of a `kind` table in the replication encoding. A sorted set's table
/// keeps the score as its 8 little-endian bytes, which is also how it travels.
fn encode_element(kind: KeyType, out: &mut Vec<u8>, e: &Element) {
    put_bytes(out, e.name());
    match kind {
        KeyType::Hash => {
            out.extend_from_slice(&e.expire_at().unwrap_or(0).to_le_bytes());
            put_bytes(out, e.value());
        }
        KeyType::SortedSet => out.extend_from_slice(e.value()),
        _ => {}
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        if len > MAX_ELEMENT_NAME {
            return None;
        }
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Elements in a canonical order (a hash table's order depends on its history).
    fn contents(c: &Collection) -> Vec<String> {
        let mut out: Vec<String> = match c {
            Collection::Hash(h) => h
                .iter(0)
                .map(|e| format!("{:?}={:?}@{:?}", e.name(), e.value(), e.expire_at()))
                .collect(),
            // A list's order is its content: kept as it is.
            Collection::List(l) => return l.iter().map(|e| format!("{e:?}")).collect(),
            Collection::Set(s) => s.iter().map(|m| format!("{m:?}")).collect(),
            Collection::SortedSet(z) => z.ascending().map(|(m, s)| format!("{m:?}:{s}")).collect(),
        };
        out.sort();
        out
    }

    #[test]
    fn every_type_survives_its_encoding() {
        let mut h = HashValue::default();
        h.put(b"a", None, b"1");
        h.put(b"b", Some(99), b"");
        let mut s = SetValue::default();
        s.add(b"x");
        s.add(b"");
        let mut z = SortedSetValue::default();
        z.insert(b"m", Score::new(-1.5).unwrap());
        z.insert(b"n", Score::new(f64::INFINITY).unwrap());
        let mut l = ListValue::default();
        l.push(End::Right, b"b");
        l.push(End::Left, b"a");
        l.push(End::Right, b"a");
        for c in [
            Collection::Hash(h),
            Collection::List(l),
            Collection::Set(s),
            Collection::SortedSet(z),
        ] {
            let back = Collection::decode(c.kind(), &c.encode()).unwrap();
            assert_eq!(contents(&back), contents(&c));
            assert_eq!(back.bytes(), c.bytes());
        }
        assert!(Collection::decode(KeyType::Hash, b"\x05\0\0\0ab").is_none());
    }
}
