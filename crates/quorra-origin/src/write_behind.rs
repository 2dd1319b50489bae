//! The write-behind queue: writes acknowledged by the cache that the origin does not
//! have yet, one pending mark per key.
//!
//! Every replica of a key in a `write = "behind"` namespace marks the writes it stores
//! (the primary when it runs them, the others when they apply the copy), so a mark
//! survives the loss of any one node. The key's primary flushes: it takes the due marks
//! ([`WriteBehind::due`]), writes the newest value (or the delete) to the origin, and
//! then clears the mark everywhere ([`WriteBehind::flushed`], and a message to the other
//! replicas). A flush finds its marks in one pass over the queue. Marks are coalesced: a key written a thousand times between flushes is
//! one origin write, of its last value. Each mark keeps the value it was made with, so
//! a key evicted from the cache before its flush still reaches the origin.
//!
//! Nothing here does I/O; time comes in as milliseconds.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;

/// A write waiting for the origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// The namespace's index in the catalog.
    pub namespace: usize,
    /// The write's version (`hlc`, node), to tell older writes from newer.
    pub version: (u64, u64),
    /// The value written; `None` for a delete.
    pub value: Option<Bytes>,
    /// When the oldest write this mark coalesces was made, ms.
    pub since_ms: u64,
}

/// Why a write could not be queued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("write-behind queue full ({0} keys waiting for the origin)")]
pub struct QueueFull(pub usize);

/// The pending marks of one node.
pub struct WriteBehind {
    marks: Mutex<HashMap<Bytes, Mark>>,
    capacity: usize,
}

impl WriteBehind {
    /// A queue of at most `capacity` keys.
    pub fn new(capacity: usize) -> WriteBehind {
        WriteBehind {
            marks: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Marks `key` as written at `version` with `value` (`None`: deleted) at `now_ms`.
    /// A newer write replaces an older mark's version and value and keeps its age; an
    /// older one (a copy arriving late) changes nothing. A new key beyond the capacity
    /// is refused, unless `always` (a replica must keep what its primary acknowledged).
    pub fn mark(&self, key: &Bytes, mark: Mark, always: bool) -> Result<(), QueueFull> {
        let mut marks = self.marks.lock();
        let full = marks.len() >= self.capacity;
        match marks.get_mut(key) {
            Some(existing) if existing.version >= mark.version => {}
            Some(existing) => {
                existing.version = mark.version;
                existing.value = mark.value;
                existing.since_ms = existing.since_ms.min(mark.since_ms);
            }
            None if full && !always => {
                return Err(QueueFull(self.capacity));
            }
            None => {
                marks.insert(key.clone(), mark);
            }
        }
        Ok(())
    }

    /// The marks that `mine` accepts (the keys this node flushes now), oldest first;
    /// each with its key. They stay queued until [`WriteBehind::flushed`].
    pub fn due(&self, mine: impl Fn(&Bytes, &Mark) -> bool) -> Vec<(Bytes, Mark)> {
        let marks = self.marks.lock();
        let mut due: Vec<(Bytes, Mark)> = marks
            .iter()
            .filter(|(key, mark)| mine(key, mark))
            .map(|(key, mark)| (key.clone(), mark.clone()))
            .collect();
        due.sort_by_key(|(_, mark)| mark.since_ms);
        due
    }

    /// The origin has `key` as of `version`: its mark goes, unless a newer write came
    /// since.
    pub fn flushed(&self, key: &[u8], version: (u64, u64)) {
        let mut marks = self.marks.lock();
        if marks.get(key).is_some_and(|mark| mark.version <= version) {
            marks.remove(key);
        }
    }

    /// True if a write of `key` would be refused: the queue is full and has no mark
    /// of it.
    pub fn is_full_for(&self, key: &[u8]) -> bool {
        let marks = self.marks.lock();
        marks.len() >= self.capacity && !marks.contains_key(key)
    }

    /// Most keys it holds for new writes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keys waiting.
    pub fn depth(&self) -> usize {
        self.marks.lock().len()
    }

    /// Age of the oldest write waiting at `now_ms`, ms; 0 when none waits.
    pub fn lag_ms(&self, now_ms: u64) -> u64 {
        self.marks
            .lock()
            .values()
            .map(|mark| now_ms.saturating_sub(mark.since_ms))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(version: u64, value: &str, since_ms: u64) -> Mark {
        Mark {
            namespace: 0,
            version: (version, 1),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            since_ms,
        }
    }

    fn key(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn writes_to_one_key_coalesce_into_its_last_value() {
        let queue = WriteBehind::new(10);
        queue.mark(&key("a"), mark(1, "one", 100), false).unwrap();
        queue.mark(&key("a"), mark(3, "three", 300), false).unwrap();
        // A late copy of an older write changes nothing.
        queue.mark(&key("a"), mark(2, "two", 200), false).unwrap();
        let due = queue.due(|_, _| true);
        assert_eq!(due, vec![(key("a"), mark(3, "three", 100))]);
        assert_eq!(queue.lag_ms(1_000), 900);
        // Flushed at an older version than the newest write: the mark stays.
        queue.flushed(b"a", (2, 1));
        assert_eq!(queue.depth(), 1);
        queue.flushed(b"a", (3, 1));
        assert_eq!((queue.depth(), queue.lag_ms(1_000)), (0, 0));
    }

    #[test]
    fn the_oldest_marks_are_due_first_and_only_those_asked_for() {
        let queue = WriteBehind::new(10);
        for (name, since) in [("c", 30), ("a", 10), ("b", 20), ("theirs", 0)] {
            queue.mark(&key(name), mark(1, name, since), false).unwrap();
        }
        let due = queue.due(|key, _| key.as_ref() != b"theirs");
        let keys: Vec<&[u8]> = due.iter().map(|(key, _)| key.as_ref()).collect();
        assert_eq!(keys, [b"a".as_slice(), b"b", b"c"]);
    }

    #[test]
    fn a_full_queue_refuses_new_keys_but_not_replicas_or_known_keys() {
        let queue = WriteBehind::new(1);
        queue.mark(&key("a"), mark(1, "x", 0), false).unwrap();
        assert_eq!(
            queue.mark(&key("b"), mark(1, "x", 0), false),
            Err(QueueFull(1))
        );
        queue.mark(&key("a"), mark(2, "y", 0), false).unwrap();
        queue.mark(&key("b"), mark(1, "x", 0), true).unwrap();
        assert_eq!(queue.depth(), 2);
    }
}
