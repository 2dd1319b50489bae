//! Memory limit, eviction policy and run-time changes.

mod common;

use common::small_store;
use quorra_store::{ENTRY_OVERHEAD, MaxmemoryPolicy, SetOptions, StoreError};

fn size(k: &str, v: usize) -> u64 {
    k.len() as u64 + v as u64 + ENTRY_OVERHEAD
}

#[test]
fn writes_evict_least_recently_used_first() {
    let limit = 3 * size("k0", 10);
    let (s, _) = small_store(limit, 1);
    for k in ["k0", "k1", "k2"] {
        s.set(k.as_bytes(), &[0; 10], SetOptions::default())
            .unwrap();
    }
    s.get(b"k0");
    s.set(b"k3", &[0; 10], SetOptions::default()).unwrap();
    assert_eq!(s.get(b"k1"), None, "k1 was least recently used");
    assert!(s.get(b"k0").is_some() && s.get(b"k2").is_some() && s.get(b"k3").is_some());
    assert_eq!(s.stats().total.evictions, 1);
    assert!(s.used_memory() <= limit);
    s.check_invariants().unwrap();
}

#[test]
fn an_entry_larger_than_maxmemory_is_refused() {
    let (s, _) = small_store(1_000, 4);
    s.set(b"small", b"x", SetOptions::default()).unwrap();
    let err = s
        .set(b"big", &[0; 1_000], SetOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, StoreError::EntryTooLarge { limit: 1_000, .. }),
        "{err:?}"
    );
    assert!(
        s.get(b"small").is_some(),
        "nothing was evicted for a hopeless write"
    );
}

#[test]
fn noeviction_answers_out_of_memory() {
    let limit = 2 * size("k0", 10);
    let (s, _) = small_store(limit, 2);
    s.set_policy(MaxmemoryPolicy::NoEviction);
    s.set(b"k0", &[0; 10], SetOptions::default()).unwrap();
    s.set(b"k1", &[0; 10], SetOptions::default()).unwrap();
    assert_eq!(
        s.set(b"k2", &[0; 10], SetOptions::default()),
        Err(StoreError::OutOfMemory)
    );
    assert_eq!(s.append(b"k0", b"more"), Err(StoreError::OutOfMemory));
    // Writes that do not grow still work.
    s.set(b"k0", &[1; 5], SetOptions::default()).unwrap();
    assert_eq!(s.del(&["k1"]), 1);
    s.set(b"k2", &[0; 10], SetOptions::default()).unwrap();
    assert_eq!(s.stats().total.evictions, 0);
    s.check_invariants().unwrap();
}

#[test]
fn cross_shard_eviction_when_the_writers_shard_is_empty() {
    // 16 shards, room for ~4 entries: a write to an empty shard must evict elsewhere.
    let limit = 4 * size("key-00", 100);
    let (s, _) = small_store(limit, 16);
    for i in 0..100 {
        s.set(
            format!("key-{i:02}").as_bytes(),
            &[0; 100],
            SetOptions::default(),
        )
        .unwrap();
        assert!(s.used_memory() <= limit);
    }
    assert_eq!(s.dbsize(0), 4);
    assert_eq!(s.stats().total.evictions, 96);
    s.check_invariants().unwrap();
}

#[test]
fn lowering_maxmemory_evicts_down_to_it() {
    let (s, _) = small_store(0, 4);
    for i in 0..100 {
        s.set(format!("k{i}").as_bytes(), &[0; 50], SetOptions::default())
            .unwrap();
    }
    let target = s.used_memory() / 2;
    let evicted = s.set_maxmemory(target);
    assert!(evicted >= 50, "{evicted}");
    assert!(s.used_memory() <= target);
    assert_eq!(s.maxmemory(), target);
    s.check_invariants().unwrap();
}

#[test]
fn accounting_matches_entries_through_every_kind_of_write() {
    let (s, _) = small_store(0, 4);
    s.set(b"a", b"12345", SetOptions::default()).unwrap();
    assert_eq!(s.used_memory(), size("a", 5));
    s.append(b"a", b"678").unwrap();
    assert_eq!(s.used_memory(), size("a", 8));
    s.setrange(b"a", 20, b"x").unwrap();
    assert_eq!(s.used_memory(), size("a", 21));
    s.set(b"a", b"1", SetOptions::default()).unwrap();
    s.incrby(b"a", 1000).unwrap();
    assert_eq!(s.used_memory(), size("a", 4));
    s.rename(b"a", b"bb").unwrap();
    assert_eq!(s.used_memory(), size("bb", 4), "no tombstones with grace 0");
    s.del(&["bb"]);
    assert_eq!(s.used_memory(), 0);
    s.check_invariants().unwrap();
}

#[test]
fn rename_of_a_big_key_needs_only_the_net_growth() {
    let limit = size("a", 500) + 10;
    let (s, _) = small_store(limit, 4);
    s.set(b"a", &[7; 500], SetOptions::default()).unwrap();
    s.rename(b"a", b"bb").unwrap();
    assert_eq!(s.get(b"bb").map(|v| v.len()), Some(500));
    assert_eq!(s.used_memory(), size("bb", 500));
    assert_eq!(s.stats().total.evictions, 0);
    s.check_invariants().unwrap();
}

#[test]
fn noeviction_does_not_evict_when_the_limit_is_lowered() {
    let (s, _) = small_store(0, 4);
    s.set_policy(MaxmemoryPolicy::NoEviction);
    for i in 0..10 {
        s.set(format!("k{i}").as_bytes(), &[0; 10], SetOptions::default())
            .unwrap();
    }
    assert_eq!(s.set_maxmemory(100), 0);
    assert_eq!(s.dbsize(0), 10);
    assert_eq!(
        s.set(b"new", b"x", SetOptions::default()),
        Err(StoreError::OutOfMemory)
    );
    // Switching to LRU at run time makes writes evict again.
    s.set_policy(MaxmemoryPolicy::AllKeysLru);
    s.set_maxmemory(100 + size("k0", 10));
    s.set(b"new", b"x", SetOptions::default()).unwrap();
    assert!(s.used_memory() <= s.maxmemory());
}

#[test]
fn stats_give_per_shard_totals() {
    let (s, _) = small_store(0, 8);
    for i in 0..40 {
        s.set(format!("k{i}").as_bytes(), b"v", SetOptions::default())
            .unwrap();
    }
    // (Keyspace hits and misses are counted by the node that answers the client.)
    let found = (0..50)
        .filter(|i| s.get(format!("k{i}").as_bytes()).is_some())
        .count();
    assert_eq!(found, 40);
    let st = s.stats();
    assert_eq!(st.shards.len(), 8);
    assert_eq!(st.shards.iter().map(|x| x.entries).sum::<u64>(), 40);
    assert_eq!(
        st.shards.iter().map(|x| x.used_bytes).sum::<u64>(),
        s.used_memory()
    );
    assert!(
        st.shards.iter().filter(|x| x.entries > 0).count() > 1,
        "keys spread over shards"
    );
}

/// An overwrite with a value of the same length is done in place: it must still act as
/// a whole new write — new value, new version, TTL replaced, most recently used — with
/// the accounting unchanged.
#[test]
fn a_same_length_overwrite_is_a_full_write() {
    let limit = 2 * size("k0", 10);
    let (s, _) = small_store(limit, 1);
    let ttl = SetOptions {
        expiry: quorra_store::SetExpiry::Ex(100),
        ..SetOptions::default()
    };
    s.set(b"k0", &[1; 10], ttl).unwrap();
    s.set(b"k1", &[1; 10], SetOptions::default()).unwrap();
    let used = s.used_memory();
    let before = s.get_versioned(b"k0").unwrap().version;
    s.set(b"k0", &[2; 10], SetOptions::default()).unwrap();
    assert_eq!(s.get(b"k0").as_deref(), Some(&[2u8; 10][..]));
    assert_eq!(s.ttl(b"k0"), -1, "SET without KEEPTTL drops the TTL");
    assert!(s.get_versioned(b"k0").unwrap().version > before);
    assert_eq!(s.used_memory(), used);
    s.set(b"k0", &[3; 10], ttl).unwrap();
    assert_eq!(s.ttl(b"k0"), 100, "EX on an overwrite sets the TTL");
    // k0 was written after k1, so k1 is the one a third key evicts.
    s.set(b"k2", &[0; 10], SetOptions::default()).unwrap();
    assert_eq!(s.get(b"k1"), None);
    assert_eq!(s.get(b"k0").as_deref(), Some(&[3u8; 10][..]));
    s.check_invariants().unwrap();
}
