//! The ring itself: members, their sorted vnode tokens, and lookups.
//!
//! Layout: the members sorted by id, and two parallel vectors over all vnodes sorted by
//! token — `tokens` (what the binary search reads, 8 bytes per vnode so a 15,000-vnode
//! ring's search touches ~14 cache lines) and `owners` (member index per vnode). Ties
//! between equal tokens of different nodes are broken by node id, so the layout depends
//! only on the member set, never on insertion order.
//!
//! Changes are incremental: a joining node's tokens are sorted on their own and merged in
//! (O(V) for V vnodes); a leaving node's vnodes are filtered out. Member indices in
//! `owners` are shifted to keep members sorted. A ring is a plain value: the cluster layer
//! clones it, applies a change, and swaps it in, so readers never see a half-built ring.

use std::sync::Arc;

use crate::error::RingError;
use crate::node::{NodeId, NodeSpec, VnodeCount};
use crate::placement::{Token, key_token, sorted_vnode_tokens};

/// Vnodes per node when neither the ring nor the node says otherwise. 150 keeps every node
/// of a 3-node ring within a few percent of its fair share (see `docs/benchmarks.md`)
/// while a 100-node ring still fits its tokens in 120 KiB.
pub const DEFAULT_VNODES: u32 = 150;

/// Upper bound on one node's vnodes, so a mistyped weight cannot make a ring of millions
/// of tokens.
pub const MAX_VNODES_PER_NODE: u32 = 65_536;

/// A member of the ring as the ring sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    id: NodeId,
    zone: Option<Arc<str>>,
    vnodes: u32,
    /// Dense index of `zone` among the ring's distinct zones (no zone counts as one), so
    /// the zone-aware walk can mark zones in a small vector.
    zone_index: u32,
}

impl Member {
    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The node's zone, if it has one.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// How many vnodes the node has on the ring.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }
}

/// A consistent-hash ring over node ids. See the [crate docs](crate).
#[derive(Clone, Debug, PartialEq)]
pub struct Ring {
    default_vnodes: u32,
    /// Sorted by id.
    members: Vec<Member>,
    /// Every vnode's token, ascending; equal tokens ordered by owner id.
    tokens: Vec<Token>,
    /// `owners[i]` is the index in `members` of the node that owns `tokens[i]`.
    owners: Vec<u32>,
    /// Number of distinct zones among the members ("no zone" counts as one).
    zone_count: u32,
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new()
    }
}

impl Ring {
    /// An empty ring whose nodes get [`DEFAULT_VNODES`] vnodes unless they say otherwise.
    pub fn new() -> Self {
        Ring {
            default_vnodes: DEFAULT_VNODES,
            members: Vec::new(),
            tokens: Vec::new(),
            owners: Vec::new(),
            zone_count: 0,
        }
    }

    /// An empty ring whose nodes get `vnodes` vnodes by default.
    ///
    /// Fails with [`RingError::InvalidVnodeCount`] unless `1 <= vnodes <= MAX_VNODES_PER_NODE`.
    pub fn with_default_vnodes(vnodes: u32) -> Result<Self, RingError> {
        check_vnode_count(u64::from(vnodes))?;
        Ok(Ring {
            default_vnodes: vnodes,
            ..Ring::new()
        })
    }

    /// A ring with the default vnode count holding all of `nodes`.
    pub fn from_nodes(nodes: impl IntoIterator<Item = NodeSpec>) -> Result<Self, RingError> {
        let mut ring = Ring::new();
        for node in nodes {
            ring.add_node(node)?;
        }
        Ok(ring)
    }

    /// The vnode count a node gets when its spec does not set one.
    pub fn default_vnodes(&self) -> u32 {
        self.default_vnodes
    }

    /// Number of physical nodes.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the ring has no nodes: it owns nothing.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Total number of vnodes (tokens) on the ring.
    pub fn vnode_count(&self) -> usize {
        self.tokens.len()
    }

    /// The members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with this id, if any.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.member_index(id).ok().map(|i| &self.members[i])
    }

    /// Every vnode as `(token, owner)`, clockwise from token 0.
    pub fn vnodes(&self) -> impl Iterator<Item = (Token, &NodeId)> + '_ {
        self.tokens
            .iter()
            .zip(&self.owners)
            .map(|(&token, &owner)| (token, &self.members[owner as usize].id))
    }

    /// Each member's share of the token space, in [`members`](Self::members) order: the
    /// fraction of keys it is expected to own (they sum to 1; empty for an empty ring).
    /// Each vnode owns the tokens from its predecessor (exclusive) to itself.
    pub fn token_shares(&self) -> Vec<f64> {
        let mut owned = vec![0u128; self.members.len()];
        for (i, (&end, &owner)) in self.tokens.iter().zip(&self.owners).enumerate() {
            let start = self.tokens[(i + self.tokens.len() - 1) % self.tokens.len()];
            owned[owner as usize] += crate::TokenRange { start, end }.width();
        }
        owned
            .into_iter()
            .map(|tokens| tokens as f64 / (1u128 << 64) as f64)
            .collect()
    }

    /// Adds a node. On error the ring is unchanged.
    ///
    /// Errors: [`RingError::DuplicateNode`] if the id is already a member,
    /// [`RingError::EmptyNodeId`], [`RingError::InvalidWeight`] and
    /// [`RingError::InvalidVnodeCount`] for a bad vnode count or weight.
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<(), RingError> {
        if spec.id.as_str().is_empty() {
            return Err(RingError::EmptyNodeId);
        }
        let vnodes = self.resolve_vnodes(spec.vnodes)?;
        let position = match self.member_index(&spec.id) {
            Ok(_) => return Err(RingError::DuplicateNode(spec.id)),
            Err(position) => position,
        };
        let new_tokens = sorted_vnode_tokens(&spec.id, vnodes);
        let new_owner = position as u32;

        // Members after the insertion point move up by one.
        for owner in &mut self.owners {
            if *owner >= new_owner {
                *owner += 1;
            }
        }
        self.members.insert(
            position,
            Member {
                id: spec.id,
                zone: spec.zone,
                vnodes,
                zone_index: 0,
            },
        );

        // Merge the two sorted token lists. On equal tokens the lower node id goes first,
        // which is what makes the layout independent of insertion order.
        let total = self.tokens.len() + new_tokens.len();
        let mut tokens = Vec::with_capacity(total);
        let mut owners = Vec::with_capacity(total);
        let mut old = self
            .tokens
            .iter()
            .copied()
            .zip(self.owners.iter().copied())
            .peekable();
        let mut new = new_tokens.into_iter().peekable();
        loop {
            let take_new = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(&(old_token, old_owner)), Some(&new_token)) => {
                    new_token < old_token || (new_token == old_token && new_owner < old_owner)
                }
            };
            let (token, owner) = if take_new {
                (new.next().expect("peeked"), new_owner)
            } else {
                old.next().expect("peeked")
            };
            tokens.push(token);
            owners.push(owner);
        }
        self.tokens = tokens;
        self.owners = owners;
        self.reindex_zones();
        Ok(())
    }

    /// Removes a node and all its vnodes. Fails with [`RingError::UnknownNode`] (leaving
    /// the ring unchanged) if it is not a member.
    pub fn remove_node(&mut self, id: &NodeId) -> Result<(), RingError> {
        let position = self
            .member_index(id)
            .map_err(|_| RingError::UnknownNode(id.clone()))?;
        let removed = position as u32;
        self.members.remove(position);
        let mut kept = 0;
        for i in 0..self.tokens.len() {
            let owner = self.owners[i];
            if owner != removed {
                self.tokens[kept] = self.tokens[i];
                self.owners[kept] = if owner > removed { owner - 1 } else { owner };
                kept += 1;
            }
        }
        self.tokens.truncate(kept);
        self.owners.truncate(kept);
        self.reindex_zones();
        Ok(())
    }

    /// The node that owns `key`, or `None` if the ring is empty.
    #[inline]
    pub fn lookup(&self, key: &[u8]) -> Option<&NodeId> {
        self.lookup_token(key_token(key))
    }

    /// The node that owns `token`: the owner of the first vnode at or after it, wrapping
    /// past the top of the ring. `None` if the ring is empty.
    #[inline]
    pub fn lookup_token(&self, token: Token) -> Option<&NodeId> {
        self.successor(token)
            .map(|i| &self.members[self.owners[i] as usize].id)
    }

    /// The node that runs writes of the key at `token`, with `copies` copies per key, when
    /// `serving` tells which nodes serve: its owner if that serves; else, with copies,
    /// the first of its replicas that serves, and with one copy the next serving node
    /// clockwise (its keys move rather than become unavailable). `None` when no candidate
    /// serves. Nodes and clients (routing straight to the primary) share this rule.
    pub fn primary_for_token(
        &self,
        token: Token,
        copies: usize,
        serving: impl Fn(&NodeId) -> bool,
    ) -> Option<&NodeId> {
        let owner = self.lookup_token(token)?;
        if serving(owner) {
            return Some(owner);
        }
        let walk = if copies > 1 { copies } else { self.len() };
        self.preference_list_for_token(token, walk)
            .into_iter()
            .find(|id| serving(id))
    }

    /// The first `n` distinct physical nodes clockwise from `key` — the key's replicas,
    /// owner first. See [`Ring::preference_list_for_token`].
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<&NodeId> {
        self.preference_list_for_token(key_token(key), n)
    }

    /// The first `n` distinct physical nodes clockwise from `token`, owner first.
    ///
    /// Returns `min(n, len())` nodes: all of them if the ring has fewer than `n`, none if
    /// `n == 0` or the ring is empty. When members are in more than one zone, the walk
    /// first takes one node from each zone it meets, in clockwise order, until it has `n`
    /// nodes or has seen every zone; only then does it fill up with the remaining nodes in
    /// clockwise order. So three replicas over three zones land in three zones, and with
    /// no zones the list is simply clockwise.
    pub fn preference_list_for_token(&self, token: Token, n: usize) -> Vec<&NodeId> {
        let n = n.min(self.members.len());
        let Some(start) = self.successor(token).filter(|_| n > 0) else {
            return Vec::new();
        };
        let clockwise = || {
            self.owners[start..]
                .iter()
                .chain(&self.owners[..start])
                .map(|&owner| owner as usize)
        };
        let mut picked = vec![false; self.members.len()];
        let mut picks = Vec::with_capacity(n);

        if self.zone_count > 1 {
            let mut zone_used = vec![false; self.zone_count as usize];
            let mut zones_seen = 0;
            for owner in clockwise() {
                let zone = self.members[owner].zone_index as usize;
                if !zone_used[zone] {
                    zone_used[zone] = true;
                    zones_seen += 1;
                    picked[owner] = true;
                    picks.push(owner);
                    if picks.len() == n || zones_seen == self.zone_count {
                        break;
                    }
                }
            }
        }
        if picks.len() < n {
            for owner in clockwise() {
                if !picked[owner] {
                    picked[owner] = true;
                    picks.push(owner);
                    if picks.len() == n {
                        break;
                    }
                }
            }
        }
        picks.into_iter().map(|i| &self.members[i].id).collect()
    }

    /// Index of the first vnode at or after `token`, wrapping to 0; `None` if empty.
    #[inline]
    fn successor(&self, token: Token) -> Option<usize> {
        if self.tokens.is_empty() {
            return None;
        }
        let i = self.tokens.partition_point(|&t| t < token);
        Some(if i == self.tokens.len() { 0 } else { i })
    }

    /// The sorted vnode tokens; exposed for the ownership diff.
    pub(crate) fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    fn member_index(&self, id: &NodeId) -> Result<usize, usize> {
        self.members.binary_search_by(|member| member.id.cmp(id))
    }

    fn resolve_vnodes(&self, count: VnodeCount) -> Result<u32, RingError> {
        let count = match count {
            VnodeCount::RingDefault => u64::from(self.default_vnodes),
            VnodeCount::Exactly(count) => u64::from(count),
            VnodeCount::Weight(weight) => {
                if !(weight.is_finite() && weight > 0.0) {
                    return Err(RingError::InvalidWeight(weight));
                }
                // `as` saturates for out-of-range floats; the range check below rejects them.
                (f64::from(self.default_vnodes) * weight).round() as u64
            }
        };
        check_vnode_count(count)
    }

    /// Gives each member the dense index of its zone, in sorted zone order.
    fn reindex_zones(&mut self) {
        let mut zones: Vec<Option<Arc<str>>> = self
            .members
            .iter()
            .map(|member| member.zone.clone())
            .collect();
        zones.sort_unstable();
        zones.dedup();
        for member in &mut self.members {
            member.zone_index = zones
                .binary_search(&member.zone)
                .expect("every member's zone is in the list")
                as u32;
        }
        self.zone_count = zones.len() as u32;
    }
}

fn check_vnode_count(count: u64) -> Result<u32, RingError> {
    match u32::try_from(count) {
        Ok(count) if (1..=MAX_VNODES_PER_NODE).contains(&count) => Ok(count),
        _ => Err(RingError::InvalidVnodeCount { count }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(ids: &[&str]) -> Ring {
        Ring::from_nodes(ids.iter().map(|&id| NodeSpec::new(id))).unwrap()
    }

    #[test]
    fn token_shares_sum_to_one_and_are_fair() {
        assert!(Ring::new().token_shares().is_empty());
        let one = Ring::from_nodes([NodeSpec::new("a")]).unwrap();
        assert_eq!(one.token_shares(), [1.0]);
        let three = Ring::from_nodes(["a", "b", "c"].map(NodeSpec::new)).unwrap();
        let shares = three.token_shares();
        assert!(
            (shares.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "{shares:?}"
        );
        assert!(
            shares.iter().all(|s| (s - 1.0 / 3.0).abs() < 0.05),
            "{shares:?}"
        );
    }

    #[test]
    fn empty_ring_owns_nothing() {
        let ring = Ring::new();
        assert!(ring.is_empty());
        assert_eq!(ring.lookup(b"key"), None);
        assert!(ring.preference_list(b"key", 3).is_empty());
    }

    #[test]
    fn adding_a_node_twice_is_refused_and_changes_nothing() {
        let mut ring = ring_of(&["a", "b"]);
        let before = ring.clone();
        let err = ring
            .add_node(NodeSpec::new("a").with_vnodes(7))
            .unwrap_err();
        assert_eq!(err, RingError::DuplicateNode("a".into()));
        assert_eq!(ring, before);
    }

    #[test]
    fn removing_an_unknown_node_is_refused() {
        let mut ring = ring_of(&["a"]);
        let err = ring.remove_node(&"z".into()).unwrap_err();
        assert_eq!(err, RingError::UnknownNode("z".into()));
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn bad_vnode_counts_and_weights_are_refused() {
        let mut ring = Ring::new();
        let zero = ring.add_node(NodeSpec::new("a").with_vnodes(0));
        assert_eq!(zero, Err(RingError::InvalidVnodeCount { count: 0 }));
        let huge = ring.add_node(NodeSpec::new("a").with_vnodes(MAX_VNODES_PER_NODE + 1));
        assert!(matches!(huge, Err(RingError::InvalidVnodeCount { .. })));
        for weight in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = ring.add_node(NodeSpec::new("a").with_weight(weight));
            assert!(matches!(err, Err(RingError::InvalidWeight(_))), "{weight}");
        }
        let tiny = ring.add_node(NodeSpec::new("a").with_weight(0.001));
        assert_eq!(tiny, Err(RingError::InvalidVnodeCount { count: 0 }));
        assert!(matches!(
            Ring::with_default_vnodes(0),
            Err(RingError::InvalidVnodeCount { count: 0 })
        ));
        assert_eq!(
            ring.add_node(NodeSpec::new("")),
            Err(RingError::EmptyNodeId)
        );
        assert!(ring.is_empty());
    }

    #[test]
    fn vnode_counts_follow_ring_default_spec_and_weight() {
        let mut ring = Ring::with_default_vnodes(10).unwrap();
        ring.add_node(NodeSpec::new("default")).unwrap();
        ring.add_node(NodeSpec::new("exact").with_vnodes(3))
            .unwrap();
        ring.add_node(NodeSpec::new("heavy").with_weight(2.5))
            .unwrap();
        let vnodes = |id: &str| ring.member(&id.into()).unwrap().vnodes();
        assert_eq!(
            (vnodes("default"), vnodes("exact"), vnodes("heavy")),
            (10, 3, 25)
        );
        assert_eq!(ring.vnode_count(), 38);
        assert_eq!(
            ring.vnodes()
                .filter(|(_, id)| id.as_str() == "heavy")
                .count(),
            25
        );
    }

    #[test]
    fn n_zero_is_empty_and_n_beyond_members_is_everyone() {
        let ring = ring_of(&["a", "b", "c"]);
        assert!(ring.preference_list(b"k", 0).is_empty());
        let mut all: Vec<_> = ring
            .preference_list(b"k", 10)
            .into_iter()
            .cloned()
            .collect();
        all.sort();
        assert_eq!(all, vec!["a".into(), "b".into(), "c".into()] as Vec<NodeId>);
    }

    #[test]
    fn lookup_wraps_past_the_last_token() {
        let ring = ring_of(&["a", "b", "c"]);
        let (first_token, first_owner) = ring.vnodes().next().unwrap();
        assert_eq!(ring.lookup_token(u64::MAX), Some(first_owner));
        assert_eq!(ring.lookup_token(first_token), Some(first_owner));
        assert_eq!(ring.lookup_token(0), Some(first_owner));
    }

    #[test]
    fn removing_every_node_leaves_an_empty_ring() {
        let mut ring = ring_of(&["a", "b"]);
        ring.remove_node(&"a".into()).unwrap();
        ring.remove_node(&"b".into()).unwrap();
        assert_eq!(ring, Ring::new());
    }
}
