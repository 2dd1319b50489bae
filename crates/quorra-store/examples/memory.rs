//! Resident memory per key: inserts 1,000,000 keys of 16 bytes (`key:{:012}`) with
//! 100-byte values and prints the RSS growth per key and the bytes per key beyond key +
//! value. This is how `ENTRY_OVERHEAD` was measured.
//!
//! Run: `cargo run --release -p quorra-store --example memory [keys] [shards]`.

use std::sync::Arc;

use quorra_store::{ENTRY_OVERHEAD, SetOptions, Store, StoreConfig, SystemClock};

/// Default number of keys.
const KEYS: u64 = 1_000_000;
/// Value size, bytes.
const VALUE_LEN: usize = 100;

/// Resident set size in bytes, from `/proc/self/statm` (second field, in pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().map_or(KEYS, |a| a.parse().expect("keys"));
    let shards: usize = args.next().map_or(16, |a| a.parse().expect("shards"));
    let store = Store::new(
        StoreConfig {
            shards,
            ..StoreConfig::default()
        },
        Arc::new(SystemClock),
    );
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
