//! Placement: which nodes hold a key's copies, and which of them runs its writes.
//!
//! One rule, used by routing, replication, anti-entropy and `QUORRA OWNERS` alike, and a
//! pure function of a [`ClusterView`] and the configured number of copies:
//!
//! - **Copies (N)** = the configured `replicas`, capped by the members the cluster
//!   counts — its [roster](crate::roster), up or down. A member that goes down is still
//!   counted, so a node cut off from the others still needs a majority of N answers and
//!   cannot make a quorum alone. N shrinks only when a member leaves gracefully or is
//!   forgotten by the operator.
//! - **Replicas** of a key = the first N distinct nodes of its preference list on the
//!   ring of counted members, serving or not. A replica that is down misses the writes
//!   (they leave hints for it) and fails the reads sent to it; no other node stands in,
//!   so two sides of a partition never both hold a majority of the same key's replicas.
//! - **Primary** = the first replica that serves: it runs the key's writes. When every
//!   replica is down, the key has no primary and cannot be written.
//! - With one copy (N = 1) nothing is replicated and a key is a cache entry on one node:
//!   its single replica is the first *serving* node clockwise, so a node going down
//!   moves its keys (they are missed and loaded again) instead of making them
//!   unavailable.

use quorra_ring::{NodeId, Token};

use crate::membership::ClusterView;

/// The placement of keys under one view.
#[derive(Clone, Copy, Debug)]
pub struct Placement<'v> {
    view: &'v ClusterView,
    copies: usize,
}

impl<'v> Placement<'v> {
    /// Placement under `view` with `replicas` configured copies per key.
    pub fn new(view: &'v ClusterView, replicas: usize) -> Placement<'v> {
        Placement {
            view,
            copies: replicas.min(view.ring.len()).max(1),
        }
    }

    /// The view this placement is computed from.
    pub fn view(&self) -> &'v ClusterView {
        self.view
    }

    /// N: copies of each key.
    pub fn copies(&self) -> usize {
        self.copies
    }

    /// True if keys have more than one copy.
    pub fn replicated(&self) -> bool {
        self.copies > 1
    }

    /// The key's replicas in preference-list order (clockwise from the key); with one
    /// copy, the serving node that holds it, if any.
    pub fn replicas(&self, key: &[u8]) -> Vec<&'v NodeId> {
        self.replicas_for_token(quorra_ring::key_token(key))
    }

    /// [`replicas`](Self::replicas) of the key at `token`.
    pub fn replicas_for_token(&self, token: Token) -> Vec<&'v NodeId> {
        if self.replicated() {
            self.view.ring.preference_list_for_token(token, self.copies)
        } else {
            self.primary_for_token(token).into_iter().collect()
        }
    }

    /// The node that runs the key's writes: its first serving replica. `None` if none
    /// serves.
    pub fn primary(&self, key: &[u8]) -> Option<&'v NodeId> {
        self.primary_for_token(quorra_ring::key_token(key))
    }

    fn primary_for_token(&self, token: Token) -> Option<&'v NodeId> {
        self.view
            .ring
            .primary_for_token(token, self.copies, |id| self.view.is_serving(id))
    }

    /// How many of the key's replicas serve.
    pub fn serving_replicas(&self, key: &[u8]) -> usize {
        self.replicas(key)
            .into_iter()
            .filter(|id| self.view.is_serving(id))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Member, MemberState, MemberStats, NodeAddresses};
    use quorra_ring::{NodeSpec, Ring};
    use std::net::SocketAddr;

    fn view(states: &[(&str, MemberState)]) -> ClusterView {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let members = states
            .iter()
            .map(|(id, state)| Member {
                id: NodeId::from(*id),
                generation: 1,
                addresses: NodeAddresses {
                    resp: addr,
                    http: addr,
                    cluster: addr,
                },
                zone: None,
                state: *state,
                stats: MemberStats::default(),
                hot_keys: String::new(),
            })
            .collect();
        let ring = Ring::from_nodes(states.iter().map(|(id, _)| NodeSpec::new(*id))).unwrap();
        ClusterView {
            self_id: NodeId::from(states[0].0),
            members,
            ring,
            ring_version: 0,
            joined: true,
        }
    }

    const UP: MemberState = MemberState::Up;
    const DOWN: MemberState = MemberState::Down;

    /// A key whose preference list starts with `first`.
    fn key_owned_by(view: &ClusterView, first: &str) -> Vec<u8> {
        (0u32..)
            .map(|i| format!("key{i}").into_bytes())
            .find(|key| view.ring.lookup(key).unwrap().as_str() == first)
            .unwrap()
    }

    #[test]
    fn a_down_member_keeps_its_place_among_the_replicas_and_loses_the_primary_role() {
        let all_up = view(&[("a", UP), ("b", UP), ("c", UP), ("d", UP), ("e", UP)]);
        let one_down = view(&[("a", DOWN), ("b", UP), ("c", UP), ("d", UP), ("e", UP)]);
        let key = key_owned_by(&all_up, "a");
        let up = Placement::new(&all_up, 3);
        let down = Placement::new(&one_down, 3);
        assert_eq!(up.copies(), 3);
        assert_eq!(down.copies(), 3, "a down member is still counted");
        assert_eq!(
            up.replicas(&key),
            down.replicas(&key),
            "no stand-in replica"
        );
        assert_eq!(up.primary(&key).unwrap().as_str(), "a");
        assert_eq!(down.primary(&key), Some(down.replicas(&key)[1]));
        assert_eq!(down.serving_replicas(&key), 2);
    }

    #[test]
    fn a_key_whose_replicas_are_all_down_has_no_primary() {
        let split = view(&[("a", UP), ("b", DOWN), ("c", DOWN)]);
        let placement = Placement::new(&split, 3);
        let key = key_owned_by(&split, "b");
        // a is a replica too (three copies on three nodes), so it is the primary.
        assert_eq!(placement.primary(&key).unwrap().as_str(), "a");
        let five = view(&[("a", UP), ("b", DOWN), ("c", DOWN), ("d", DOWN), ("e", UP)]);
        let placement = Placement::new(&five, 2);
        let stranded = (0u32..)
            .map(|i| format!("key{i}").into_bytes())
            .find(|key| {
                placement
                    .replicas(key)
                    .iter()
                    .all(|id| !["a", "e"].contains(&id.as_str()))
            })
            .unwrap();
        assert_eq!(placement.primary(&stranded), None);
        assert_eq!(placement.serving_replicas(&stranded), 0);
    }

    #[test]
    fn with_one_copy_a_down_owner_hands_its_keys_to_the_next_serving_node() {
        let all_up = view(&[("a", UP), ("b", UP), ("c", UP)]);
        let one_down = view(&[("a", DOWN), ("b", UP), ("c", UP)]);
        let key = key_owned_by(&all_up, "a");
        let placement = Placement::new(&one_down, 1);
        assert!(!placement.replicated());
        let next = all_up.ring.preference_list(&key, 2)[1];
        assert_eq!(placement.primary(&key), Some(next));
        assert_eq!(placement.replicas(&key), vec![next]);
    }

    #[test]
    fn copies_are_capped_by_the_counted_members_not_the_serving_ones() {
        let lone = view(&[("a", UP)]);
        assert_eq!(Placement::new(&lone, 3).copies(), 1);
        let cut_off = view(&[("a", UP), ("b", DOWN), ("c", DOWN)]);
        assert_eq!(Placement::new(&cut_off, 3).copies(), 3);
        assert_eq!(Placement::new(&cut_off, 5).copies(), 3);
    }
}
