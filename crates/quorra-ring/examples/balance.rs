//! Prints how evenly keys spread: for 3, 10 and 100 nodes at the default vnode count,
//! the worst deviation of any node's key count from the mean over 100,000 random keys,
//! and the same for each node's share of the token space (the expected load).
//!
//! `cargo run --release -p quorra-ring --example balance`

use quorra_ring::{NodeSpec, Ring};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KEYS: usize = 100_000;

fn main() {
    println!("nodes  vnodes/node  worst key-count deviation  worst token-share deviation");
    for nodes in [3, 10, 100] {
        let ring =
            Ring::from_nodes((0..nodes).map(|i| NodeSpec::new(format!("node-{i}")))).unwrap();
        let index = |id| ring.members().iter().position(|m| m.id() == id).unwrap();

        let mut rng = StdRng::seed_from_u64(42);
        let mut counts = vec![0usize; nodes];
        for _ in 0..KEYS {
            let key: [u8; 16] = rng.random();
            counts[index(ring.lookup(&key).unwrap())] += 1;
        }
        let mean = KEYS as f64 / nodes as f64;
        let worst_keys = counts
            .iter()
            .map(|&c| (c as f64 - mean).abs() / mean)
            .fold(0.0, f64::max);

        let fair = 1.0 / nodes as f64;
        let worst_share = ring
            .token_shares()
            .iter()
            .map(|&share| (share - fair).abs() / fair)
            .fold(0.0, f64::max);

        println!(
            "{nodes:>5}  {:>11}  {:>24.1}%  {:>26.1}%",
            ring.default_vnodes(),
            worst_keys * 100.0,
            worst_share * 100.0
        );
    }
}
