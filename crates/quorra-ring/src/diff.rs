//! Ownership diff: which token ranges change hands between two rings.
//!
//! Rebalancing needs to know, after a membership change, which keys must move and where.
//! Keys are too many to enumerate, but ownership is constant between consecutive vnode
//! tokens: every token in `(a, b]`, where `a` and `b` are neighbours in the *union* of
//! both rings' tokens, has the same successor vnode in the old ring and the same one in
//! the new ring, hence the same preference list in each. So the diff walks the union of
//! tokens once (O((V_old + V_new) · n)), computes both preference lists at each boundary,
//! and reports the ranges where they differ, merging neighbours with the same change.

use crate::node::NodeId;
use crate::placement::Token;
use crate::ring::Ring;

/// A range of tokens `(start, end]`, read clockwise.
///
/// When `start >= end` the range wraps past `u64::MAX` to 0; when `start == end` it is the
/// whole ring (a ring with a single token owns everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenRange {
    /// Exclusive lower bound.
    pub start: Token,
    /// Inclusive upper bound.
    pub end: Token,
}

impl TokenRange {
    /// True if `token` lies in the range.
    pub fn contains(&self, token: Token) -> bool {
        if self.start < self.end {
            self.start < token && token <= self.end
        } else {
            token > self.start || token <= self.end
        }
    }

    /// Number of tokens in the range (2^64 for the whole ring).
    pub fn width(&self) -> u128 {
        if self.start == self.end {
            1 << 64
        } else {
            u128::from(self.end.wrapping_sub(self.start))
        }
    }
}

/// One range whose replicas differ between the old and the new ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeChange {
    /// The tokens concerned.
    pub range: TokenRange,
    /// Preference list in the old ring, owner first (empty if the old ring was empty).
    pub before: Vec<NodeId>,
    /// Preference list in the new ring, owner first (empty if the new ring is empty).
    pub after: Vec<NodeId>,
}

/// The ranges whose preference list of `replicas` nodes differs between `old` and `new`,
/// ordered by their end token (so a range that covers token 0 comes first). Neighbouring
/// ranges with the same before and after lists are merged. Empty if nothing changed.
///
/// With `replicas == 1` this is the change of owner; with the replication factor it is
/// every range some replica has to receive or may drop.
pub fn ownership_diff(old: &Ring, new: &Ring, replicas: usize) -> Vec<RangeChange> {
    let mut boundaries: Vec<Token> = Vec::with_capacity(old.vnode_count() + new.vnode_count());
    boundaries.extend_from_slice(old.tokens());
    boundaries.extend_from_slice(new.tokens());
    boundaries.sort_unstable();
    boundaries.dedup();
    let Some(&last) = boundaries.last() else {
        return Vec::new();
    };

    let mut changes: Vec<RangeChange> = Vec::new();
    let mut start = last;
    for &end in &boundaries {
        let before = old.preference_list_for_token(end, replicas);
        let after = new.preference_list_for_token(end, replicas);
        if before != after {
            let before: Vec<NodeId> = before.into_iter().cloned().collect();
            let after: Vec<NodeId> = after.into_iter().cloned().collect();
            match changes.last_mut() {
                Some(previous)
                    if previous.range.end == start
                        && previous.before == before
                        && previous.after == after =>
                {
                    previous.range.end = end;
                }
                _ => changes.push(RangeChange {
                    range: TokenRange { start, end },
                    before,
                    after,
                }),
            }
        }
        start = end;
    }

    // The first range starts where the last one ends (at the top token); join them if
    // they describe the same change.
    if changes.len() > 1 {
        let (first, last) = (&changes[0], &changes[changes.len() - 1]);
        if first.range.start == last.range.end
            && first.before == last.before
            && first.after == last.after
        {
            let last = changes.pop().expect("len > 1");
            changes[0].range.start = last.range.start;
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeSpec;

    #[test]
    fn ranges_contain_their_end_not_their_start_and_wrap() {
        let plain = TokenRange { start: 10, end: 20 };
        assert!(
            !plain.contains(10) && plain.contains(11) && plain.contains(20) && !plain.contains(21)
        );
        assert_eq!(plain.width(), 10);
        let wrapping = TokenRange {
            start: u64::MAX - 1,
            end: 5,
        };
        assert!(wrapping.contains(u64::MAX) && wrapping.contains(0) && wrapping.contains(5));
        assert!(!wrapping.contains(6) && !wrapping.contains(u64::MAX - 1));
        assert_eq!(wrapping.width(), 7);
        let whole = TokenRange { start: 7, end: 7 };
        assert!(whole.contains(7) && whole.contains(8) && whole.contains(0));
        assert_eq!(whole.width(), 1 << 64);
    }

    #[test]
    fn identical_rings_have_no_diff() {
        let ring = Ring::from_nodes(["a", "b", "c"].map(NodeSpec::new)).unwrap();
        assert!(ownership_diff(&ring, &ring.clone(), 3).is_empty());
        assert!(ownership_diff(&Ring::new(), &Ring::new(), 1).is_empty());
    }

    #[test]
    fn from_an_empty_ring_everything_changes_hands() {
        let new = Ring::from_nodes([NodeSpec::new("a").with_vnodes(4)]).unwrap();
        let changes = ownership_diff(&Ring::new(), &new, 1);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].range.width(), 1 << 64);
        assert!(changes[0].before.is_empty());
        assert_eq!(changes[0].after, vec![NodeId::from("a")]);
    }
}
