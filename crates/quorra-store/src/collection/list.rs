//! Lists: a double-ended queue of elements, each its own allocation. LPUSH / RPUSH and
//! the pops are O(1); an index (LINDEX, LSET) is O(1) too, unlike Redis's quicklist
//! walk; LINSERT, LREM and LPOS walk the list.

use std::collections::VecDeque;

/// Accounted bytes per list element on top of its bytes: its 16-byte pointer in the
/// deque, which grows by doubling (24 bytes per element on average), and its
/// allocation's header and rounding (a 9-byte element takes a 32-byte chunk). Measured
/// with `scripts/bench-collections-memory`: lists of 100 9-byte elements took 55.4 bytes
/// of RSS per element (`docs/benchmarks.md`, "Collections").
pub const LIST_ELEMENT_OVERHEAD: u64 = 48;

/// A list's elements.
#[derive(Debug, Clone, Default)]
pub struct ListValue {
    elements: VecDeque<Box<[u8]>>,
    bytes: u64,
}

/// Which end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The head (index 0): LPUSH, LPOP.
    Left,
    /// The tail: RPUSH, RPOP.
    Right,
}

fn accounted(element: &[u8]) -> u64 {
    element.len() as u64 + LIST_ELEMENT_OVERHEAD
}

impl ListValue {
    /// Elements.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// True when the list has no element left.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Accounted bytes of the elements.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The accounted bytes an element of `len` bytes adds.
    pub fn element_bytes(len: usize) -> u64 {
        len as u64 + LIST_ELEMENT_OVERHEAD
    }

    /// Pushes `element` at `end`.
    pub fn push(&mut self, end: End, element: &[u8]) {
        self.bytes += accounted(element);
        match end {
            End::Left => self.elements.push_front(element.into()),
            End::Right => self.elements.push_back(element.into()),
        }
    }

    /// Pops an element from `end`.
    pub fn pop(&mut self, end: End) -> Option<Box<[u8]>> {
        let element = match end {
            End::Left => self.elements.pop_front(),
            End::Right => self.elements.pop_back(),
        }?;
        self.bytes -= accounted(&element);
        Some(element)
    }

    /// The position of Redis index `index` (negative from the tail), if inside.
    pub fn position(&self, index: i64) -> Option<usize> {
        let len = self.elements.len() as i64;
        let at = if index < 0 { len + index } else { index };
        (0..len).contains(&at).then_some(at as usize)
    }

    /// The element at position `at`.
    pub fn get(&self, at: usize) -> Option<&[u8]> {
        self.elements.get(at).map(|e| &e[..])
    }

    /// Replaces the element at position `at` (which must be inside).
    pub fn set(&mut self, at: usize, element: &[u8]) {
        let old = std::mem::replace(&mut self.elements[at], element.into());
        self.bytes = self.bytes - accounted(&old) + accounted(element);
    }

    /// Every element, head to tail.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + ExactSizeIterator {
        self.elements.iter().map(|e| &e[..])
    }

    /// LRANGE / LTRIM's positions for Redis indexes `start` and `stop` (negative from
    /// the tail, out-of-range clamped): `None` when the range is empty.
    pub fn range_bounds(&self, start: i64, stop: i64) -> Option<(usize, usize)> {
        let len = self.elements.len() as i64;
        let start = if start < 0 {
            (len + start).max(0)
        } else {
            start
        };
        let stop = if stop < 0 {
            len + stop
        } else {
            stop.min(len - 1)
        };
        (start <= stop && start < len).then_some((start as usize, stop as usize))
    }

    /// Keeps only positions `start..=stop` (LTRIM); `None` empties the list.
    pub fn keep(&mut self, range: Option<(usize, usize)>) {
        let Some((start, stop)) = range else {
            self.elements.clear();
            self.bytes = 0;
            return;
        };
        self.elements.truncate(stop + 1);
        let dropped: u64 = self.elements.drain(..start).map(|e| accounted(&e)).sum();
        let kept: u64 = self.elements.iter().map(|e| accounted(e)).sum();
        debug_assert!(dropped <= self.bytes);
        self.bytes = kept;
    }

    /// Inserts `element` before (or after) the first element equal to `pivot`; the new
    /// length, or `None` if there is no such element.
    pub fn insert(&mut self, pivot: &[u8], after: bool, element: &[u8]) -> Option<usize> {
        let at = self.elements.iter().position(|e| &e[..] == pivot)?;
        self.bytes += accounted(element);
        self.elements
            .insert(at + usize::from(after), element.into());
        Some(self.elements.len())
    }

    /// Removes up to `count` elements equal to `element` (LREM: from the head for a
    /// positive count, from the tail for a negative one, all for 0); how many went.
    pub fn remove(&mut self, count: i64, element: &[u8]) -> usize {
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs() as usize
        };
        let mut removed = 0;
        let mut at = if count < 0 { self.elements.len() } else { 0 };
        while removed < limit {
            let found = if count < 0 {
                self.elements.range(..at).rposition(|e| &e[..] == element)
            } else {
                self.elements
                    .range(at..)
                    .position(|e| &e[..] == element)
                    .map(|p| p + at)
            };
            let Some(position) = found else { break };
            let gone = self.elements.remove(position).expect("found above");
            self.bytes -= accounted(&gone);
            removed += 1;
            at = position;
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(bool, u8),
        Pop(bool),
        Set(i64, u8),
        Keep(i64, i64),
        Insert(u8, bool, u8),
        Remove(i64, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        let element = 0u8..4;
        prop_oneof![
            (any::<bool>(), element.clone()).prop_map(|(l, e)| Op::Push(l, e)),
            any::<bool>().prop_map(Op::Pop),
            (-6i64..6, element.clone()).prop_map(|(i, e)| Op::Set(i, e)),
            (-6i64..6, -6i64..6).prop_map(|(a, b)| Op::Keep(a, b)),
            (element.clone(), any::<bool>(), element.clone())
                .prop_map(|(p, after, e)| Op::Insert(p, after, e)),
            (-3i64..3, element).prop_map(|(c, e)| Op::Remove(c, e)),
        ]
    }

    /// An element of `n` bytes, so that sizes differ.
    fn bytes(n: u8) -> Vec<u8> {
        vec![b'a' + n; usize::from(n) + 1]
    }

    proptest! {
        /// Every operation against a `Vec` model, with Redis's index rules spelled out
        /// again; after each, the contents and the accounted bytes agree.
        #[test]
        fn a_list_matches_a_vec_and_accounts_for_every_element(ops in prop::collection::vec(op(), 1..60)) {
            let mut list = ListValue::default();
            let mut model: Vec<Vec<u8>> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(left, e) => {
                        let end = if left { End::Left } else { End::Right };
                        list.push(end, &bytes(e));
                        if left { model.insert(0, bytes(e)) } else { model.push(bytes(e)) }
                    }
                    Op::Pop(left) => {
                        let end = if left { End::Left } else { End::Right };
                        let expected = match (left, model.is_empty()) {
                            (_, true) => None,
                            (true, false) => Some(model.remove(0)),
                            (false, false) => model.pop(),
                        };
                        prop_assert_eq!(list.pop(end).map(|e| e.to_vec()), expected);
                    }
                    Op::Set(index, e) => {
                        let len = model.len() as i64;
                        let at = if index < 0 { len + index } else { index };
                        prop_assert_eq!(list.position(index), (0..len).contains(&at).then_some(at as usize));
                        if let Some(at) = list.position(index) {
                            list.set(at, &bytes(e));
                            model[at] = bytes(e);
                        }
                    }
                    Op::Keep(start, stop) => {
                        let len = model.len() as i64;
                        let s = if start < 0 { (len + start).max(0) } else { start };
                        let t = if stop < 0 { len + stop } else { stop.min(len - 1) };
                        model = if s <= t && s < len { model[s as usize..=t as usize].to_vec() } else { Vec::new() };
                        list.keep(list.range_bounds(start, stop));
                    }
                    Op::Insert(pivot, after, e) => {
                        let expected = model.iter().position(|x| *x == bytes(pivot)).map(|at| {
                            model.insert(at + usize::from(after), bytes(e));
                            model.len()
                        });
                        prop_assert_eq!(list.insert(&bytes(pivot), after, &bytes(e)), expected);
                    }
                    Op::Remove(count, e) => {
                        let target = bytes(e);
                        let limit = if count == 0 { usize::MAX } else { count.unsigned_abs() as usize };
                        let mut positions: Vec<usize> =
                            (0..model.len()).filter(|&i| model[i] == target).collect();
                        if count < 0 {
                            positions.reverse();
                        }
                        positions.truncate(limit);
                        positions.sort_unstable();
                        for &at in positions.iter().rev() {
                            model.remove(at);
                        }
                        prop_assert_eq!(list.remove(count, &target), positions.len());
                    }
                }
                let contents: Vec<Vec<u8>> = list.iter().map(<[u8]>::to_vec).collect();
                prop_assert_eq!(&contents, &model);
                let accounted: u64 = model.iter().map(|e| ListValue::element_bytes(e.len())).sum();
                prop_assert_eq!(list.bytes(), accounted);
            }
        }
    }
}
