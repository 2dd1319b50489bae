//! Intrusive doubly linked lists threaded through the slab of slots.
//!
//! Each slot carries `prev` and `next` as `u32` slab indices ([`NIL`] for "none"), so a
//! list costs 8 bytes per entry and no allocation per node. A slot is on exactly one
//! list at a time: the shard's LRU list while it holds a live entry, the tombstone list
//! while it holds a tombstone, the free list (through `next` only) while unused.
//!
//! The LRU list keeps the most recently used entry at the head. Every operation is O(1):
//! [`List::push_front`] on insert, [`List::unlink`] on delete, [`List::move_to_front`] on
//! access; eviction takes the tail. Order is exact within a shard; across shards see
//! the eviction notes in [`crate::store`].

/// "No slot": end of a list, or a slot not on any list.
pub(crate) const NIL: u32 = u32::MAX;

/// Access to the link fields of a slab element.
pub(crate) trait Links {
    fn prev(&self) -> u32;
    fn next(&self) -> u32;
    fn set_prev(&mut self, p: u32);
    fn set_next(&mut self, n: u32);
}

/// Head/tail of one intrusive list. The nodes live in a slab slice owned elsewhere.
#[derive(Debug, Clone, Copy)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    len: u32,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

fn at(i: u32) -> usize {
    i as usize
}

impl List {
    /// Most recently pushed/moved element.
    #[cfg(test)]
    pub(crate) fn head(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Least recently pushed/moved element.
    pub(crate) fn tail(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Inserts `i` (not on any list) at the head.
    pub(crate) fn push_front<T: Links>(&mut self, slab: &mut [T], i: u32) {
        slab[at(i)].set_prev(NIL);
        slab[at(i)].set_next(self.head);
        if self.head != NIL {
            slab[at(self.head)].set_prev(i);
        } else {
            self.tail = i;
        }
        self.head = i;
        self.len += 1;
    }

    /// Removes `i`, which must be on this list.
    pub(crate) fn unlink<T: Links>(&mut self, slab: &mut [T], i: u32) {
        let (p, n) = (slab[at(i)].prev(), slab[at(i)].next());
        if p != NIL {
            slab[at(p)].set_next(n);
        } else {
            debug_assert_eq!(self.head, i);
            self.head = n;
        }
        if n != NIL {
            slab[at(n)].set_prev(p);
        } else {
            debug_assert_eq!(self.tail, i);
            self.tail = p;
        }
        slab[at(i)].set_prev(NIL);
        slab[at(i)].set_next(NIL);
        self.len -= 1;
    }

    /// Makes `i` (on this list) the head.
    pub(crate) fn move_to_front<T: Links>(&mut self, slab: &mut [T], i: u32) {
        if self.head != i {
            self.unlink(slab, i);
            self.push_front(slab, i);
        }
    }

    /// Elements from head to tail (for tests and invariant checks).
    pub(crate) fn iter<'a, T: Links>(&self, slab: &'a [T]) -> impl Iterator<Item = u32> + 'a {
        let mut cur = self.head;
        std::iter::from_fn(move || {
            (cur != NIL).then(|| {
                let i = cur;
                cur = slab[at(i)].next();
                i
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    struct N(u32, u32);
    impl Links for N {
        fn prev(&self) -> u32 {
            self.0
        }
        fn next(&self) -> u32 {
            self.1
        }
        fn set_prev(&mut self, p: u32) {
            self.0 = p;
        }
        fn set_next(&mut self, n: u32) {
            self.1 = n;
        }
    }

    #[test]
    fn push_move_unlink_keep_order() {
        let mut slab = vec![N(NIL, NIL); 4];
        let mut l = List::default();
        for i in 0..4 {
            l.push_front(&mut slab, i);
        }
        assert_eq!(l.iter(&slab).collect::<Vec<_>>(), [3, 2, 1, 0]);
        l.move_to_front(&mut slab, 0);
        assert_eq!(l.iter(&slab).collect::<Vec<_>>(), [0, 3, 2, 1]);
        l.unlink(&mut slab, 2);
        l.unlink(&mut slab, 1);
        assert_eq!(l.iter(&slab).collect::<Vec<_>>(), [0, 3]);
        assert_eq!((l.head(), l.tail(), l.len()), (Some(0), Some(3), 2));
        l.unlink(&mut slab, 0);
        l.unlink(&mut slab, 3);
        assert_eq!((l.head(), l.tail(), l.len()), (None, None, 0));
    }
}
