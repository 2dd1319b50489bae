//! Last-writer-wins, tombstones and ring-range iteration.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::store;
use quorra_ring::TokenRange;
use quorra_store::{ApplyOutcome, SetOptions, Version, VersionedEntry};

fn v(ms: u64, node: u64) -> Version {
    Version::new(ms, 0, node)
}

#[test]
fn older_versions_never_overwrite_newer_ones() {
    let (s, _) = store();
    assert_eq!(
        s.apply(b"k", VersionedEntry::value("new", v(200, 1))),
        Ok(ApplyOutcome::Applied)
    );
    assert_eq!(
        s.apply(b"k", VersionedEntry::value("old", v(100, 9))),
        Ok(ApplyOutcome::Stale)
    );
    assert_eq!(s.get(b"k"), Some(Bytes::from("new")));
    assert_eq!(
        s.apply(b"k", VersionedEntry::value("new", v(200, 1))),
        Ok(ApplyOutcome::Duplicate)
    );
    // Same time, higher node id wins.
    assert_eq!(
        s.apply(b"k", VersionedEntry::value("tie", v(200, 2))),
        Ok(ApplyOutcome::Applied)
    );
    assert_eq!(s.get(b"k"), Some(Bytes::from("tie")));
    assert_eq!(s.get_versioned(b"k").unwrap().version, v(200, 2));
    s.check_invariants().unwrap();
}

#[test]
fn local_writes_are_newer_than_anything_observed() {
    let (s, _) = store();
    let far_future = v(common::T0 + 1_000_000, 7);
    s.apply(b"k", VersionedEntry::value("remote", far_future))
        .unwrap();
    s.set(b"k", b"local", SetOptions::default()).unwrap();
    let e = s.get_versioned(b"k").unwrap();
    assert!(e.version > far_future);
    assert_eq!(e.value, "local");
    let a = s.get_versioned(b"k").unwrap().version;
    s.incr(b"n").unwrap();
    assert!(s.get_versioned(b"n").unwrap().version > a);
}

#[test]
fn tombstone_blocks_resurrection_until_purged() {
    let (s, clock) = common::store_with(quorra_store::StoreConfig {
        tombstone_grace_ms: 10_000,
        ..Default::default()
    });
    s.apply(b"k", VersionedEntry::value("v1", v(100, 1)))
        .unwrap();
    assert_eq!(
        s.apply(b"k", VersionedEntry::tombstone(v(300, 1))),
        Ok(ApplyOutcome::Applied)
    );
    assert_eq!(s.get(b"k"), None);
    assert_eq!(
        (s.exists(&["k"]), s.dbsize(0)),
        (0, 0),
        "tombstones are invisible"
    );
    assert_eq!(s.keys(0, b"*").len(), 0);
    assert_eq!(s.scan(0, 0, None, 100).1.len(), 0);
    assert_eq!(s.stats().total.tombstones, 1);
    // A stale write (older than the delete) is refused.
    assert_eq!(
        s.apply(b"k", VersionedEntry::value("v2", v(200, 1))),
        Ok(ApplyOutcome::Stale)
    );
    assert_eq!(s.get(b"k"), None);
    let t = s.get_versioned(b"k").unwrap();
    assert!(t.tombstone && t.version == v(300, 1));
    // The grace period passes; the active cycle purges the tombstone.
    clock.advance(Duration::from_millis(10_001));
    let r = s.tick(common::T0 + 10_001);
    assert_eq!(r.purged_tombstones, 1);
    assert_eq!(s.stats().total.tombstones, 0);
    assert_eq!(s.used_memory(), 0);
    // Now the same stale write is accepted: the guard is gone.
    assert_eq!(
        s.apply(b"k", VersionedEntry::value("v2", v(200, 1))),
        Ok(ApplyOutcome::Applied)
    );
    s.check_invariants().unwrap();
}

#[test]
fn local_delete_leaves_a_versioned_tombstone() {
    let (s, _) = store();
    s.set(b"k", b"v", SetOptions::default()).unwrap();
    let live = s.get_versioned(b"k").unwrap().version;
    assert_eq!(s.del(&["k"]), 1);
    let t = s.get_versioned(b"k").unwrap();
    assert!(t.tombstone && t.version > live);
    assert_eq!(
        s.apply(b"k", VersionedEntry::value("x", live)),
        Ok(ApplyOutcome::Stale)
    );
    // A local write after the delete reuses the key.
    s.set(b"k", b"again", SetOptions::default()).unwrap();
    assert_eq!(s.get(b"k"), Some(Bytes::from("again")));
    s.check_invariants().unwrap();
}

#[test]
fn applying_an_already_expired_entry_deletes() {
    let (s, _) = store();
    s.apply(b"k", VersionedEntry::value("v", v(1, 1))).unwrap();
    let mut e = VersionedEntry::value("v2", v(2, 1));
    e.expire_at_ms = Some(common::T0 - 1);
    assert_eq!(s.apply(b"k", e), Ok(ApplyOutcome::Applied));
    assert_eq!(s.get(b"k"), None);
    assert!(s.get_versioned(b"k").unwrap().tombstone);
}

#[test]
fn visit_range_matches_a_naive_filter_with_wraparound() {
    let (s, _) = store();
    // Every fourth key has a hash tag: its token is its tag's, not its own hash.
    let key = |i: usize| match i % 4 {
        0 => format!("{{tag{}}}:k{i}", i % 7),
        _ => format!("k{i}"),
    };
    for i in 0..400 {
        s.set(key(i).as_bytes(), b"v", SetOptions::default())
            .unwrap();
    }
    s.del(&["k1", "k2"]);
    let all: Vec<u64> = (0..400)
        .map(|i| quorra_ring::key_token(key(i).as_bytes()))
        .collect();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    let (a, b) = (sorted[100], sorted[300]);
    for (start, end) in [(a, b), (b, a), (a, a), (0, u64::MAX)] {
        let mut seen = Vec::new();
        let mut tombs = 0;
        let range = TokenRange { start, end };
        s.visit_range(range, |e| {
            assert_eq!(e.token, quorra_ring::key_token(e.key));
            tombs += usize::from(e.tombstone);
            seen.push(e.token);
        });
        let expected = all.iter().filter(|&&h| range.contains(h)).count();
        assert_eq!(seen.len(), expected, "range ({start}, {end}]");
        assert!(tombs <= 2);
    }
}

#[test]
fn a_reverted_write_puts_back_what_was_there_unless_the_key_was_written_since() {
    let (s, _) = store();
    s.set(b"k", b"before", SetOptions::default()).unwrap();
    let before = s.get_versioned(b"k").unwrap();
    s.set(b"k", b"failed write", SetOptions::default()).unwrap();
    let written = s.get_versioned(b"k").unwrap().version;
    assert_eq!(s.revert(b"k", written, Some(&before)), Ok(true));
    assert_eq!(s.get_versioned(b"k"), Some(before.clone()));
    // A key that did not exist is removed again, leaving no tombstone.
    s.set(b"new", b"x", SetOptions::default()).unwrap();
    let written = s.get_versioned(b"new").unwrap().version;
    assert_eq!(s.revert(b"new", written, None), Ok(true));
    assert_eq!(s.get_versioned(b"new"), None);
    // A write that came after the failed one is kept.
    s.set(b"k", b"failed", SetOptions::default()).unwrap();
    let failed = s.get_versioned(b"k").unwrap().version;
    s.set(b"k", b"later", SetOptions::default()).unwrap();
    assert_eq!(s.revert(b"k", failed, Some(&before)), Ok(false));
    assert_eq!(s.get(b"k"), Some(Bytes::from("later")));
    s.check_invariants().unwrap();
}

#[test]
fn a_quorum_read_promotes_the_entry_and_replication_bookkeeping_does_not() {
    let (s, _) = common::small_store(0, 1);
    s.set(b"a", b"1", SetOptions::default()).unwrap();
    s.set(b"b", b"2", SetOptions::default()).unwrap();
    // Most recent first: b, a. Copying or comparing leaves the order alone...
    assert!(s.get_versioned(b"a").is_some());
    assert_eq!(s.lru_dump(0), vec![Bytes::from("b"), Bytes::from("a")]);
    // ...a client's read served by this replica promotes, as a GET would.
    assert!(s.read_versioned(b"a").is_some());
    assert_eq!(s.lru_dump(0), vec![Bytes::from("a"), Bytes::from("b")]);
}

#[test]
fn one_expiry_rule_an_entry_lives_through_its_expiry_millisecond() {
    let (s, clock) = store();
    let now = s.now_ms();
    let entry = |at: u64| VersionedEntry {
        expire_at_ms: Some(at),
        ..VersionedEntry::value("v", v(now, 1))
    };
    // Expiring exactly now: stored, live, and read as live.
    assert_eq!(s.apply(b"k", entry(now)), Ok(ApplyOutcome::Applied));
    assert_eq!(s.get(b"k"), Some(Bytes::from("v")));
    assert!(s.get_versioned(b"k").unwrap().is_live(s.now_ms()));
    clock.advance(Duration::from_millis(1));
    assert!(!entry(now).is_live(s.now_ms()));
    assert_eq!(s.get(b"k"), None);
    assert!(!VersionedEntry::tombstone(v(now, 1)).is_live(now));
}

#[test]
fn evictions_are_reported_and_a_replica_drops_what_another_evicted() {
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Evicted(Mutex<Vec<(Vec<u8>, Version)>>);
    impl quorra_store::RemovalObserver for Evicted {
        fn on_evict(&self, key: &[u8], version: Version) {
            self.0.lock().unwrap().push((key.to_vec(), version));
        }
    }
    let evicted = Arc::new(Evicted::default());
    let (s, _) = common::small_store(300, 1);
    let s = s.with_removal_observer(evicted.clone());
    for i in 0..20 {
        s.set(
            format!("key{i}").as_bytes(),
            b"value",
            SetOptions::default(),
        )
        .unwrap();
    }
    let reported = evicted.0.lock().unwrap().clone();
    assert!(!reported.is_empty());
    assert_eq!(reported[0].0, b"key0");
    assert_eq!(s.stats().total.evictions, reported.len() as u64);
    // Another replica of key19 evicted it at its version: this one drops it too, unless
    // it holds a newer write.
    let (replica, _) = store();
    let held = s.get_versioned(b"key19").unwrap();
    replica.apply(b"key19", held.clone()).unwrap();
    assert!(replica.evict_replica(b"key19", held.version));
    assert_eq!(replica.get_versioned(b"key19"), None, "no tombstone left");
    replica.set(b"newer", b"x", SetOptions::default()).unwrap();
    let newer = replica.get_versioned(b"newer").unwrap().version;
    assert!(
        !replica.evict_replica(b"newer", v(1, 1)),
        "an older eviction"
    );
    assert!(!replica.evict_replica(b"absent", newer));
}

#[test]
fn what_a_store_evicted_for_memory_is_not_copied_back_but_a_newer_write_is() {
    let (s, _) = common::small_store(300, 1);
    s.set(b"key0", b"value", SetOptions::default()).unwrap();
    let held = s.get_versioned(b"key0").unwrap();
    for i in 1..20 {
        let key = format!("key{i}");
        s.set(key.as_bytes(), b"value", SetOptions::default())
            .unwrap();
    }
    // key0 went for memory; a replica still holding it offers it back (read repair,
    // anti-entropy, a hint): refused, nothing stored.
    assert_eq!(s.get_versioned(b"key0"), None);
    assert_eq!(s.apply(b"key0", held.clone()), Ok(ApplyOutcome::Evicted));
    assert_eq!(s.get_versioned(b"key0"), None);
    // A newer write of the key is taken as usual.
    let newer = VersionedEntry::value("newer", v(common::T0 + 10_000, 1));
    assert_eq!(s.apply(b"key0", newer), Ok(ApplyOutcome::Applied));
    assert_eq!(s.get(b"key0"), Some(Bytes::from("newer")));
    // A key dropped because another replica evicted it is remembered the same way.
    let (replica, _) = store();
    let entry = VersionedEntry::value("x", v(common::T0, 2));
    replica.apply(b"shared", entry.clone()).unwrap();
    assert!(replica.evict_replica(b"shared", entry.version));
    assert_eq!(replica.apply(b"shared", entry), Ok(ApplyOutcome::Evicted));
    s.check_invariants().unwrap();
}
