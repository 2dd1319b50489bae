//! Store micro-benchmarks: GET hit, GET miss and SET (overwrite), with one thread and
//! with two threads sharing one store.
//!
//! The `get_with_hit_random` case reads the keys in a shuffled order, as
//! `redis-benchmark -r` does: the entries were written in key order, so the in-order
//! cases walk the slab sequentially and hardly miss the cache, while random order pays
//! the cache misses a server pays.
//!
//! Run: `CARGO_TARGET_DIR=/work/main/target-store cargo bench -p quorra-store`.
//! The 2-thread figures use `iter_custom`: two std threads each do half of the
//! iterations, and the reported time per iteration is wall time divided by the total
//! number of operations (the inverse of aggregate throughput).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use quorra_store::{SetOptions, Store, StoreConfig, SystemClock};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Keys preloaded before each group.
const KEYS: u64 = 100_000;
/// Value size, bytes.
const VALUE_LEN: usize = 100;

fn key(i: u64) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

fn store(shards: usize) -> Arc<Store> {
    let store = Store::new(
        StoreConfig {
            shards,
            ..StoreConfig::default()
        },
        Arc::new(SystemClock),
    );
    let value = vec![b'v'; VALUE_LEN];
    for i in 0..KEYS {
        store.set(&key(i), &value, SetOptions::default()).unwrap();
    }
    Arc::new(store)
}

/// One operation on key number `i`.
type Op = fn(&Store, &[u8]);

fn op_get(s: &Store, k: &[u8]) {
    black_box(s.get(k));
}

fn op_get_with(s: &Store, k: &[u8]) {
    black_box(s.get_with(k, |v| black_box(v.len())).unwrap());
}

fn op_set(s: &Store, k: &[u8]) {
    s.set(k, &[b'w'; VALUE_LEN], SetOptions::default()).unwrap();
}

/// Precomputed keys, shared by the benchmark threads.
type Keys = Arc<Vec<Vec<u8>>>;

/// Precomputed keys so that formatting is not measured.
fn keyset(prefix: &str) -> Keys {
    Arc::new(
        (0..KEYS)
            .map(|i| format!("{prefix}:{i:012}").into_bytes())
            .collect(),
    )
}

fn two_threads(store: &Arc<Store>, keys: &Keys, op: Op, iters: u64) -> Duration {
    let per = iters / 2 + 1;
    let start = Instant::now();
    let handles: Vec<_> = (0..2u64)
        .map(|t| {
            let (store, keys) = (Arc::clone(store), Arc::clone(keys));
            std::thread::spawn(move || {
                let n = keys.len() as u64;
                let first = t * (n / 2);
                for i in first..first + per {
                    op(&store, &keys[(i % n) as usize]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let hits = keyset("key");
    let misses = keyset("miss");
    let shuffled: Keys = {
        let mut keys = (*hits).clone();
        keys.shuffle(&mut StdRng::seed_from_u64(7));
        Arc::new(keys)
    };
    for shards in [16usize, 64, 1] {
        let s = store(shards);
        let mut g = c.benchmark_group(format!("store/{shards}-shards"));
        g.measurement_time(Duration::from_secs(3));
        g.warm_up_time(Duration::from_millis(500));
        let cases: [(&str, &Keys, Op); 5] = [
            ("get_hit", &hits, op_get),
            ("get_with_hit", &hits, op_get_with),
            ("get_with_hit_random", &shuffled, op_get_with),
            ("get_miss", &misses, op_get),
            ("set", &hits, op_set),
        ];
        for (name, keys, op) in cases {
            if shards == 16 {
                let mut i = 0usize;
                g.bench_function(format!("{name}/1-thread"), |b| {
                    b.iter(|| {
                        op(&s, &keys[i % keys.len()]);
                        i += 1;
                    })
                });
            }
            g.bench_function(format!("{name}/2-threads"), |b| {
                b.iter_custom(|iters| two_threads(&s, keys, op, iters))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
