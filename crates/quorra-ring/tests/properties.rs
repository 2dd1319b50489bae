//! Property tests: the ring against a naive oracle, minimal movement under membership
//! changes, preference-list invariants, and the ownership diff against per-key truth.

use std::collections::BTreeSet;

use proptest::prelude::*;
use quorra_ring::{NodeId, NodeSpec, Ring, key_token, ownership_diff, vnode_token};

/// The naive ring: every vnode of every member, sorted by (token, id), searched linearly.
struct Oracle {
    vnodes: Vec<(u64, NodeId)>,
}

impl Oracle {
    fn new(members: &[(String, u32)]) -> Self {
        let mut vnodes: Vec<(u64, NodeId)> = members
            .iter()
            .flat_map(|(id, count)| {
                let id = NodeId::from(id.as_str());
                (0..*count).map(move |i| (vnode_token(&id, i), id.clone()))
            })
            .collect();
        vnodes.sort();
        Oracle { vnodes }
    }

    /// Index of the first vnode at or after `token`, by linear scan, wrapping to 0.
    fn successor(&self, token: u64) -> usize {
        self.vnodes
            .iter()
            .position(|(t, _)| *t >= token)
            .unwrap_or(0)
    }

    fn lookup(&self, token: u64) -> Option<&NodeId> {
        (!self.vnodes.is_empty()).then(|| &self.vnodes[self.successor(token)].1)
    }

    /// First `n` distinct nodes clockwise (no zones).
    fn preference_list(&self, token: u64, n: usize) -> Vec<&NodeId> {
        let mut list: Vec<&NodeId> = Vec::new();
        if self.vnodes.is_empty() {
            return list;
        }
        let start = self.successor(token);
        for step in 0..self.vnodes.len() {
            let id = &self.vnodes[(start + step) % self.vnodes.len()].1;
            if list.len() < n && !list.contains(&id) {
                list.push(id);
            }
        }
        list
    }
}

/// Distinct node ids with small vnode counts, so collisions and wrap-around get exercised.
fn members(max_nodes: usize) -> impl Strategy<Value = Vec<(String, u32)>> {
    prop::collection::btree_map("[a-z]{1,6}", 1u32..40, 0..max_nodes)
        .prop_map(|members| members.into_iter().collect())
}

fn build(members: &[(String, u32)]) -> Ring {
    Ring::from_nodes(
        members
            .iter()
            .map(|(id, vnodes)| NodeSpec::new(id.as_str()).with_vnodes(*vnodes)),
    )
    .unwrap()
}

/// Tokens to probe: random ones plus the exact vnode tokens and their neighbours, where
/// off-by-one errors in the binary search would show.
fn probes(ring: &Ring, random: &[u64]) -> Vec<u64> {
    let mut probes = random.to_vec();
    probes.extend([0, 1, u64::MAX]);
    for (token, _) in ring.vnodes() {
        probes.extend([token.wrapping_sub(1), token, token.wrapping_add(1)]);
    }
    probes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn lookup_and_preference_lists_match_the_naive_oracle(
        members in members(8),
        random in prop::collection::vec(any::<u64>(), 50),
        keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 20),
        n in 0usize..10,
    ) {
        let ring = build(&members);
        let oracle = Oracle::new(&members);
        for token in probes(&ring, &random) {
            prop_assert_eq!(ring.lookup_token(token), oracle.lookup(token));
            prop_assert_eq!(ring.preference_list_for_token(token, n), oracle.preference_list(token, n));
        }
        for key in &keys {
            prop_assert_eq!(ring.lookup(key), oracle.lookup(key_token(key)));
        }
    }

    #[test]
    fn adding_a_node_moves_keys_only_to_it(
        members in members(8),
        joiner_vnodes in 1u32..40,
        random in prop::collection::vec(any::<u64>(), 200),
    ) {
        let joiner = NodeId::from("joiner-0");
        let old = build(&members);
        let mut new = old.clone();
        new.add_node(NodeSpec::new(joiner.clone()).with_vnodes(joiner_vnodes)).unwrap();
        for token in probes(&new, &random) {
            let (before, after) = (old.lookup_token(token), new.lookup_token(token).unwrap());
            prop_assert!(before == Some(after) || *after == joiner);
            // Replicas: the new list is the old one with the joiner inserted somewhere
            // and the last node pushed out.
            let old_list = old.preference_list_for_token(token, 3);
            let new_list = new.preference_list_for_token(token, 3);
            let without_joiner: Vec<_> = new_list.iter().copied().filter(|id| **id != joiner).collect();
            prop_assert_eq!(&old_list[..without_joiner.len()], &without_joiner[..]);
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_keys(
        members in members(8).prop_filter("need a node to remove", |m| !m.is_empty()),
        pick in any::<prop::sample::Index>(),
        random in prop::collection::vec(any::<u64>(), 200),
    ) {
        let old = build(&members);
        let leaver = NodeId::from(members[pick.index(members.len())].0.as_str());
        let mut new = old.clone();
        new.remove_node(&leaver).unwrap();
        for token in probes(&old, &random) {
            let before = old.lookup_token(token).unwrap();
            if *before != leaver {
                prop_assert_eq!(new.lookup_token(token), Some(before));
            }
            let old_list = old.preference_list_for_token(token, 3);
            let new_list = new.preference_list_for_token(token, 3);
            let survivors: Vec<_> = old_list.iter().copied().filter(|id| **id != leaver).collect();
            prop_assert_eq!(&new_list[..survivors.len()], &survivors[..]);
        }
    }

    #[test]
    fn preference_lists_are_distinct_and_cover_zones(
        nodes in prop::collection::btree_map("[a-z]{1,6}", (0u8..4, 1u32..30), 1..10),
        random in prop::collection::vec(any::<u64>(), 100),
        n in 1usize..8,
    ) {
        let ring = Ring::from_nodes(nodes.iter().map(|(id, (zone, vnodes))| {
            NodeSpec::new(id.as_str()).with_zone(format!("zone-{zone}")).with_vnodes(*vnodes)
        }))
        .unwrap();
        let all_zones: BTreeSet<u8> = nodes.values().map(|(zone, _)| *zone).collect();
        for token in probes(&ring, &random) {
            let list = ring.preference_list_for_token(token, n);
            prop_assert_eq!(list.len(), n.min(nodes.len()));
            prop_assert_eq!(Some(list[0]), ring.lookup_token(token));
            let distinct: BTreeSet<_> = list.iter().collect();
            prop_assert_eq!(distinct.len(), list.len());
            let zones: BTreeSet<u8> = list.iter().map(|id| nodes[id.as_str()].0).collect();
            prop_assert_eq!(zones.len(), list.len().min(all_zones.len()), "{:?}", list);
            prop_assert_eq!(&list, &ring.preference_list_for_token(token, n), "stable");
        }
    }

    #[test]
    fn ownership_diff_reports_exactly_the_tokens_whose_replicas_changed(
        before in members(6),
        after in members(6),
        replicas in 1usize..4,
        random in prop::collection::vec(any::<u64>(), 100),
    ) {
        let (old, new) = (build(&before), build(&after));
        let changes = ownership_diff(&old, &new, replicas);
        let mut probe_tokens = probes(&old, &random);
        probe_tokens.extend(probes(&new, &random));
        for token in probe_tokens {
            let expected_before = old.preference_list_for_token(token, replicas);
            let expected_after = new.preference_list_for_token(token, replicas);
            let covering: Vec<_> = changes.iter().filter(|c| c.range.contains(token)).collect();
            if expected_before == expected_after {
                prop_assert!(covering.is_empty(), "token {} reported as moved: {:?}", token, covering);
            } else {
                prop_assert_eq!(covering.len(), 1, "token {} in {} ranges", token, covering.len());
                prop_assert!(covering[0].before.iter().eq(expected_before));
                prop_assert!(covering[0].after.iter().eq(expected_after));
            }
        }
        let total: u128 = changes.iter().map(|c| c.range.width()).sum();
        prop_assert!(total <= 1 << 64, "ranges overlap");
    }
}
