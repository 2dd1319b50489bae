//! Resident memory per key, or per collection element.
//!
//! By default it inserts 1,000,000 keys of 16 bytes (`key:{:012}`) with 100-byte values
//! and prints the RSS growth per key and the bytes per key beyond key + value. This is
//! how `ENTRY_OVERHEAD` was measured.
//!
//! With `hash`, `set` or `zset` first it fills 10,000 keys with 100 elements each
//! instead — hash fields `field:NNN` (9 bytes) with 8-byte values, set members
//! `field:NNN`, sorted-set members `field:NNN` with pseudo-random scores (a leaderboard's
//! insertion order) — in two phases: every key with its first element, then the other
//! elements. It prints RSS growth and accounted bytes (`used_memory`) per element, over
//! the whole run and for the second phase alone (the marginal cost of an element, free
//! of the per-key costs), and the element's resident overhead beyond its payload, which
//! is what `ELEMENT_OVERHEAD` (hash, set) and `ORDER_OVERHEAD` (sorted set, on top of
//! the element) stand for. This is how they were measured.
//!
//! Run: `cargo run --release -p quorra-store --example memory [keys] [shards]`, or
//! `cargo run --release -p quorra-store --example memory -- hash|set|zset [keys]
//! [elements per key] [shards]`. Run one type per process: memory freed in one phase
//! would be reused by the next.

use std::sync::Arc;

use quorra_store::collection::{
    Collection, ELEMENT_OVERHEAD, Element, HashValue, Score, SetValue, SortedSetValue,
};
use quorra_store::{ENTRY_OVERHEAD, SetOptions, Store, StoreConfig, SystemClock};

/// Default number of keys.
const KEYS: u64 = 1_000_000;
/// Value size, bytes.
const VALUE_LEN: usize = 100;
/// Default number of collection keys.
const COLLECTION_KEYS: u64 = 10_000;
/// Default number of elements per collection.
const ELEMENTS: u64 = 100;

/// Resident set size in bytes, from `/proc/self/statm` (second field, in pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn store(shards: usize) -> Store {
    Store::new(
        StoreConfig {
            shards,
            ..StoreConfig::default()
        },
        Arc::new(SystemClock),
    )
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if let Some(kind) = args
        .peek()
        .filter(|a| matches!(a.as_str(), "hash" | "set" | "zset"))
        .cloned()
    {
        args.next();
        let keys = args
            .next()
            .map_or(COLLECTION_KEYS, |a| a.parse().expect("keys"));
        let elements = args
            .next()
            .map_or(ELEMENTS, |a| a.parse().expect("elements"));
        let shards = args.next().map_or(16, |a| a.parse().expect("shards"));
        collections(&kind, keys, elements, shards);
        return;
    }
    let keys: u64 = args.next().map_or(KEYS, |a| a.parse().expect("keys"));
    let shards: usize = args.next().map_or(16, |a| a.parse().expect("shards"));
    let store = store(shards);
    let value = vec![b'v'; VALUE_LEN];
    let before = rss_bytes();
    let mut key_bytes = 0u64;
    for i in 0..keys {
        let key = format!("key:{i:012}");
        key_bytes += key.len() as u64;
        store
            .set(key.as_bytes(), &value, SetOptions::default())
            .unwrap();
    }
    let after = rss_bytes();
    let payload = key_bytes + keys * VALUE_LEN as u64;
    let per_key = (after - before) as f64 / keys as f64;
    let overhead = per_key - payload as f64 / keys as f64;
    println!("keys: {keys}, shards: {shards}");
    println!("RSS before: {before} B, after: {after} B");
    println!("RSS delta per key: {per_key:.1} B");
    println!("key + value per key: {:.1} B", payload as f64 / keys as f64);
    println!("overhead per key beyond key + value: {overhead:.1} B");
    println!(
        "accounted per key: {:.1} B (ENTRY_OVERHEAD = {ENTRY_OVERHEAD})",
        store.used_memory() as f64 / keys as f64
    );
    assert_eq!(store.dbsize(0), keys);
}

/// The name of element `j`: `field:NNN` (9 bytes below 1,000 elements).
fn element_name(j: u64) -> Vec<u8> {
    format!("field:{j:03}").into_bytes()
}

/// A pseudo-random score for element `j` of key `i` (splitmix64), so that members
/// enter the ordered set in no particular order.
fn score(i: u64, j: u64) -> Score {
    let mut z = (i << 32 ^ j).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    Score::new((z ^ (z >> 31)) as f64).expect("finite")
}

/// Adds elements `from..to` to the collection of `kind` at `key`; returns their payload
/// bytes: what each element's allocation holds (4-byte header, name, value or score),
/// plus a sorted-set member's second copy of its name in the ordered set.
fn add(store: &Store, kind: &str, i: u64, key: &[u8], from: u64, to: u64) -> u64 {
    const VALUE: &[u8] = b"value:00";
    let names: Vec<Vec<u8>> = (from..to).map(element_name).collect();
    match kind {
        "hash" => {
            let bound = names
                .iter()
                .map(|n| Element::accounted_for(n.len(), VALUE.len(), false))
                .sum();
            store
                .update_collection::<HashValue, _>(key, true, bound, |h, _| {
                    names.iter().for_each(|n| {
                        h.set(n, VALUE, false);
                    });
                    ((), true)
                })
                .unwrap();
            names
                .iter()
                .map(|n| (4 + n.len() + VALUE.len()) as u64)
                .sum()
        }
        "set" => {
            let bound = names
                .iter()
                .map(|n| Element::accounted_for(n.len(), 0, false))
                .sum();
            store
                .update_collection::<SetValue, _>(key, true, bound, |s, _| {
                    names.iter().for_each(|n| {
                        s.add(n);
                    });
                    ((), true)
                })
                .unwrap();
            names.iter().map(|n| (4 + n.len()) as u64).sum()
        }
        _ => {
            let bound = names
                .iter()
                .map(|n| SortedSetValue::member_bytes(n.len()))
                .sum();
            store
                .update_collection::<SortedSetValue, _>(key, true, bound, |z, _| {
                    for (j, n) in (from..).zip(&names) {
                        z.insert(n, score(i, j));
                    }
                    ((), true)
                })
                .unwrap();
            names
                .iter()
                .map(|n| (4 + n.len() + 8 + n.len()) as u64)
                .sum()
        }
    }
}

/// The collection mode: see the module's documentation.
fn collections(kind: &str, keys: u64, elements: u64, shards: usize) {
    assert!(elements >= 2, "two phases need two elements per key");
    let store = store(shards);
    let key = |i: u64| format!("key:{i:012}").into_bytes();
    let start = rss_bytes();
    let mut payload_first = 0;
    for i in 0..keys {
        payload_first += add(&store, kind, i, &key(i), 0, 1);
    }
    let (rss_first, used_first) = (rss_bytes(), store.used_memory());
    let mut payload_rest = 0;
    for i in 0..keys {
        payload_rest += add(&store, kind, i, &key(i), 1, elements);
    }
    let (end, used) = (rss_bytes(), store.used_memory());
    assert_eq!(store.dbsize(0), keys);

    let total = (keys * elements) as f64;
    let rest = (keys * (elements - 1)) as f64;
    let payload = (payload_first + payload_rest) as f64 / total;
    let rss_element = (end - start) as f64 / total;
    let rss_marginal = (end - rss_first) as f64 / rest;
    let used_marginal = (used - used_first) as f64 / rest;
    println!(
        "{kind}: {keys} keys x {elements} elements, shards: {shards}; \
         size_of::<Collection>() = {} B",
        size_of::<Collection>()
    );
    println!("RSS before: {start} B, after the first elements: {rss_first} B, after all: {end} B");
    println!(
        "per key with its first element: RSS {:.1} B, accounted {:.1} B",
        (rss_first - start) as f64 / keys as f64,
        used_first as f64 / keys as f64
    );
    println!(
        "per element, whole run: RSS {rss_element:.1} B, accounted {:.1} B",
        used as f64 / total
    );
    println!("per element, second phase: RSS {rss_marginal:.1} B, accounted {used_marginal:.1} B");
    println!(
        "payload per element: {payload:.1} B (header + name + value or score{})",
        if kind == "zset" {
            " + the ordered set's copy of the name"
        } else {
            ""
        }
    );
    println!(
        "resident overhead per element beyond its payload, second phase: {:.1} B",
        rss_marginal - payload
    );
    if kind == "zset" {
        // The element (a 21-byte allocation in the member table) costs what a hash
        // field of an 8-byte value costs: the ordered set's share is this run's figure
        // minus the `hash` run's at the same counts, minus the name's copy.
        println!(
            "ORDER_OVERHEAD = {}: the ordered set's share per member is this run's RSS per \
             element minus a `hash` run's at the same counts, minus the name's length",
            quorra_store::collection::sorted_set::ORDER_OVERHEAD
        );
    } else {
        println!("ELEMENT_OVERHEAD = {ELEMENT_OVERHEAD}");
    }
}
