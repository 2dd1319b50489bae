//! Placement as users rely on it: pinned hashes, balance, determinism, zones.

use quorra_ring::{NodeId, NodeSpec, Ring, key_token, vnode_token};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn ring_of(ids: &[&str]) -> Ring {
    Ring::from_nodes(ids.iter().map(|&id| NodeSpec::new(id))).unwrap()
}

/// Placement must never change between versions: a client, a node and a node built a
/// year later must agree on who owns a key. If this test fails, the hash or the ring
/// layout changed — that is a breaking change for every running cluster.
#[test]
fn golden_placement_is_pinned() {
    assert_eq!(key_token(b""), GOLDEN_EMPTY_KEY_TOKEN);
    assert_eq!(key_token(b"user:42"), GOLDEN_USER_42_TOKEN);
    assert_eq!(vnode_token(&"node-a".into(), 0), GOLDEN_NODE_A_VNODE_0);
    assert_eq!(vnode_token(&"node-a".into(), 149), GOLDEN_NODE_A_VNODE_149);

    let ring = ring_of(&["node-a", "node-b", "node-c", "node-d", "node-e"]);
    let owners: Vec<String> = (0..GOLDEN_OWNERS.len())
        .map(|i| {
            ring.lookup(format!("key:{i}").as_bytes())
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(owners, GOLDEN_OWNERS);
    let replicas: Vec<&str> = ring
        .preference_list(b"user:42", 3)
        .into_iter()
        .map(NodeId::as_str)
        .collect();
    assert_eq!(replicas, GOLDEN_USER_42_REPLICAS);
}

/// Hash tags are pinned too: a key with a `{tag}` sits exactly where the tag alone sits,
/// and every key of one tag has the tag's owner and replica list. A client that places
/// `{user:42}:cart` itself relies on both.
#[test]
fn golden_hash_tag_placement_is_pinned() {
    for key in [
        &b"{user:42}:cart"[..],
        b"{user:42}:profile",
        b"session{user:42}",
        b"{user:42}{other}",
    ] {
        assert_eq!(key_token(key), GOLDEN_USER_42_TOKEN, "{key:?}");
    }
    let ring = ring_of(&["node-a", "node-b", "node-c", "node-d", "node-e"]);
    for key in [&b"{user:42}:cart"[..], b"{user:42}:profile"] {
        let replicas: Vec<&str> = ring
            .preference_list(key, 3)
            .into_iter()
            .map(NodeId::as_str)
            .collect();
        assert_eq!(replicas, GOLDEN_USER_42_REPLICAS);
    }
    // Not tags: an empty `{}` and an unclosed `{` leave the whole key hashed.
    assert_ne!(key_token(b"{}user:42"), key_token(b"user:42"));
    assert_ne!(key_token(b"{user:42"), key_token(b"user:42"));
    // A key without a tag is placed as before tags existed (the pins above).
    assert_eq!(key_token(b"user:42"), GOLDEN_USER_42_TOKEN);
}

/// A key is placed by its own bytes in every database: the stored prefix of a database
/// other than 0 is skipped, so MOVE and SELECT never change a key's replicas.
#[test]
fn a_key_has_the_same_token_in_every_database() {
    use quorra_ring::database::stored_key;
    for db in [0u8, 1, 15, 255] {
        assert_eq!(key_token(&stored_key(db, b"user:42")), GOLDEN_USER_42_TOKEN);
        assert_eq!(
            key_token(&stored_key(db, b"{user:42}:cart")),
            GOLDEN_USER_42_TOKEN
        );
        let binary = b"\xffbinary";
        assert_eq!(
            key_token(&stored_key(db, binary)),
            key_token(&stored_key(0, binary))
        );
    }
}

// The token values agree with the reference xxh3 implementation (Python `xxhash`:
// `xxh3_64_intdigest(b"user:42")`, and of b"node-a" + (149).to_bytes(4, "little")).
const GOLDEN_EMPTY_KEY_TOKEN: u64 = 0x2D06_8005_38D3_94C2;
const GOLDEN_USER_42_TOKEN: u64 = 11_511_735_035_886_662_826;
const GOLDEN_NODE_A_VNODE_0: u64 = 8_188_863_194_952_761_721;
const GOLDEN_NODE_A_VNODE_149: u64 = 6_840_530_606_226_310_925;
const GOLDEN_OWNERS: [&str; 20] = [
    "node-b", "node-b", "node-c", "node-c", "node-c", "node-a", "node-c", "node-e", "node-a",
    "node-b", "node-e", "node-e", "node-a", "node-e", "node-b", "node-b", "node-e", "node-d",
    "node-e", "node-b",
];
const GOLDEN_USER_42_REPLICAS: [&str; 3] = ["node-b", "node-e", "node-a"];

/// Keys per node for `keys` seeded random keys.
fn key_counts(ring: &Ring, keys: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = vec![0; ring.len()];
    for _ in 0..keys {
        let key: [u8; 16] = rng.random();
        let owner = ring.lookup(&key).unwrap();
        let index = ring.members().iter().position(|m| m.id() == owner).unwrap();
        counts[index] += 1;
    }
    counts
}

#[test]
fn three_nodes_with_150_vnodes_stay_within_15_percent_of_the_mean() {
    let ring = ring_of(&["node-1", "node-2", "node-3"]);
    assert_eq!(ring.vnode_count(), 450);
    let counts = key_counts(&ring, 10_000, 7);
    let mean = 10_000.0 / 3.0;
    for (member, &count) in ring.members().iter().zip(&counts) {
        let deviation = (count as f64 - mean).abs() / mean;
        assert!(
            deviation <= 0.15,
            "{} has {count} keys, {:.1}% off the mean",
            member.id(),
            deviation * 100.0
        );
    }
}

#[test]
fn weight_scales_a_nodes_share() {
    let mut ring = ring_of(&["small-1", "small-2"]);
    ring.add_node(NodeSpec::new("big").with_weight(2.0))
        .unwrap();
    let counts = key_counts(&ring, 20_000, 11);
    let big = ring
        .members()
        .iter()
        .position(|m| m.id().as_str() == "big")
        .unwrap();
    let share = counts[big] as f64 / 20_000.0;
    assert!(
        (0.42..=0.58).contains(&share),
        "big node's share is {share}"
    );
}

#[test]
fn insertion_order_does_not_matter() {
    let specs = vec![
        NodeSpec::new("a").with_zone("z1"),
        NodeSpec::new("b").with_zone("z2").with_vnodes(40),
        NodeSpec::new("c").with_zone("z1").with_weight(1.5),
        NodeSpec::new("d"),
        NodeSpec::new("e").with_zone("z3"),
    ];
    let forward = Ring::from_nodes(specs.clone()).unwrap();
    let backward = Ring::from_nodes(specs.iter().rev().cloned()).unwrap();
    assert_eq!(forward, backward);

    // Churn that ends with the same members gives the same ring too.
    let mut churned = Ring::from_nodes(specs[..3].iter().cloned()).unwrap();
    churned.add_node(NodeSpec::new("x")).unwrap();
    churned.add_node(specs[4].clone()).unwrap();
    churned.remove_node(&"x".into()).unwrap();
    churned.add_node(specs[3].clone()).unwrap();
    assert_eq!(churned, forward);
}

#[test]
fn replicas_spread_over_zones_before_a_zone_is_reused() {
    // Two zones of three nodes and one zone of a single node.
    let ring = Ring::from_nodes([
        NodeSpec::new("a1").with_zone("a"),
        NodeSpec::new("a2").with_zone("a"),
        NodeSpec::new("a3").with_zone("a"),
        NodeSpec::new("b1").with_zone("b"),
        NodeSpec::new("b2").with_zone("b"),
        NodeSpec::new("b3").with_zone("b"),
        NodeSpec::new("c1").with_zone("c"),
    ])
    .unwrap();
    let zone = |id: &NodeId| ring.member(id).unwrap().zone().unwrap().to_owned();
    for i in 0..2_000 {
        let key = format!("key:{i}");
        let three = ring.preference_list(key.as_bytes(), 3);
        let mut zones: Vec<String> = three.iter().map(|id| zone(id)).collect();
        zones.sort();
        assert_eq!(zones, ["a", "b", "c"], "{key}: {three:?}");
        assert_eq!(
            Some(three[0]),
            ring.lookup(key.as_bytes()),
            "owner comes first"
        );

        // Asking for more than the zones: all zones first, then distinct nodes.
        let five = ring.preference_list(key.as_bytes(), 5);
        assert_eq!(&five[..3], &three[..]);
        let mut distinct = five.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 5);
    }
}
