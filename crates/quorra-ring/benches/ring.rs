//! Ring benchmarks: lookup, preference lists, and the cost of a membership change.
//!
//! `cargo bench -p quorra-ring`. Keys cycle through 4,096 pre-generated random keys so
//! the branch predictor cannot learn one search path.

#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use quorra_ring::{NodeSpec, Ring, ownership_diff};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;

fn ring(nodes: usize, vnodes: u32, zones: usize) -> Ring {
    Ring::from_nodes((0..nodes).map(|i| {
        let spec = NodeSpec::new(format!("node-{i:03}")).with_vnodes(vnodes);
        if zones > 0 {
            spec.with_zone(format!("zone-{}", i % zones))
        } else {
            spec
        }
    }))
    .unwrap()
}

fn keys() -> Vec<[u8; 16]> {
    let mut rng = StdRng::seed_from_u64(1);
    (0..4096).map(|_| rng.random()).collect()
}

fn lookups(c: &mut Criterion) {
    let keys = keys();
    let rings = [
        ("1k_vnodes", ring(10, 100, 0)),
        ("15k_vnodes", ring(100, 150, 0)),
    ];
    for (name, ring) in &rings {
        let mut i = 0;
        c.bench_function(&format!("lookup/{name}"), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(ring.lookup(&keys[i]));
            })
        });
    }
    for (name, ring) in [
        ("15k_vnodes", ring(100, 150, 0)),
        ("15k_vnodes_3_zones", ring(100, 150, 3)),
    ] {
        let mut i = 0;
        c.bench_function(&format!("preference_list_n3/{name}"), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(ring.preference_list(&keys[i], 3));
            })
        });
    }
}

fn membership_changes(c: &mut Criterion) {
    let hundred = ring(100, 150, 0);
    c.bench_function("add_node/to_100_nodes", |b| {
        b.iter_batched(
            || hundred.clone(),
            |mut ring| {
                ring.add_node(NodeSpec::new("node-new")).unwrap();
                ring
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("remove_node/from_100_nodes", |b| {
        b.iter_batched(
            || hundred.clone(),
            |mut ring| {
                ring.remove_node(&"node-050".into()).unwrap();
                ring
            },
            BatchSize::SmallInput,
        )
    });
    let mut joined = hundred.clone();
    joined.add_node(NodeSpec::new("node-new")).unwrap();
    c.bench_function("ownership_diff_n3/join_100_nodes", |b| {
        b.iter(|| black_box(ownership_diff(&hundred, &joined, 3)))
    });
}

criterion_group!(benches, lookups, membership_changes);
criterion_main!(benches);
