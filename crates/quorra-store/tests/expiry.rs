//! TTLs with a mock clock: lazy expiry, the active cycle, EXPIRE options.

mod common;

use std::time::Duration;

use common::{T0, store};
use quorra_store::{ExpireFlags, SetExpiry, SetOptions, StoreError};

fn ex(secs: i64) -> SetOptions {
    SetOptions {
        expiry: SetExpiry::Ex(secs),
        ..Default::default()
    }
}

#[test]
fn ttl_and_pttl_report_missing_and_persistent() {
    let (s, clock) = store();
    assert_eq!((s.ttl(b"k"), s.pttl(b"k")), (-2, -2));
    s.set(b"k", b"v", SetOptions::default()).unwrap();
    assert_eq!((s.ttl(b"k"), s.pttl(b"k")), (-1, -1));
    assert_eq!((s.expiretime(b"k"), s.expiretime(b"x")), (-1, -2));
    s.expire(b"k", 10, ExpireFlags::NONE).unwrap();
    clock.advance(Duration::from_millis(2_400));
    assert_eq!((s.ttl(b"k"), s.pttl(b"k")), (8, 7_600));
    assert!(s.persist(b"k"));
    assert!(!s.persist(b"k"));
    assert_eq!(s.ttl(b"k"), -1);
}

#[test]
fn lazy_expiry_hides_and_removes_the_key() {
    let (s, clock) = store();
    s.set(b"k", b"v", ex(1)).unwrap();
    clock.advance(Duration::from_millis(1_000));
    assert!(
        s.get(b"k").is_some(),
        "alive at exactly its deadline (Redis: now > when)"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(s.get(b"k"), None);
    assert_eq!(s.stats().total.expirations, 1);
    assert_eq!(s.stats().total.entries, 0);
    assert_eq!(s.ttl(b"k"), -2);
    s.check_invariants().unwrap();
}

#[test]
fn active_cycle_reclaims_untouched_expired_keys() {
    let (s, clock) = store();
    for i in 0..2_000 {
        let ttl = if i % 4 == 0 { 1_000 } else { 1 };
        s.set(format!("k{i}").as_bytes(), &[0u8; 50], ex(ttl))
            .unwrap();
    }
    for i in 0..100 {
        s.set(format!("p{i}").as_bytes(), b"v", SetOptions::default())
            .unwrap();
    }
    let before = s.used_memory();
    clock.advance(Duration::from_secs(2));
    let r = s.tick(clock.now_ms_for_tests());
    assert_eq!(r.expired, 1_500, "{r:?}");
    assert_eq!(s.stats().total.entries, 600);
    assert_eq!(s.stats().total.expirations, 1_500);
    assert!(s.used_memory() < before);
    s.check_invariants().unwrap();
    // A second tick finds nothing much to do.
    let r2 = s.tick(clock.now_ms_for_tests());
    assert_eq!(r2.expired, 0);
    assert!(r2.sampled <= 20 * s.shard_count() as u64);
}

#[test]
fn active_cycle_leaves_a_mostly_fresh_shard_after_one_sample() {
    let (s, clock) = common::store_with(quorra_store::StoreConfig {
        shards: 1,
        ..Default::default()
    });
    for i in 0..1_000 {
        let ttl = if i < 10 { 1 } else { 1_000 };
        s.set(format!("k{i}").as_bytes(), b"v", ex(ttl)).unwrap();
    }
    clock.advance(Duration::from_secs(2));
    let r = s.tick(clock.now_ms_for_tests());
    // The first 20 deadlines hold the 10 stale keys: 50% stale, so it samples again;
    // the next sample is fully fresh and the shard is left.
    assert_eq!((r.sampled, r.expired), (40, 10), "{r:?}");
}

#[test]
fn expire_nx_xx_gt_lt_follow_redis() {
    let (s, _) = store();
    assert_eq!(s.expire(b"missing", 10, ExpireFlags::NONE), Ok(false));
    s.set(b"k", b"v", SetOptions::default()).unwrap();
    // No TTL yet: XX and GT fail (no TTL = infinite), NX and LT succeed.
    assert_eq!(s.expire(b"k", 100, ExpireFlags::XX), Ok(false));
    assert_eq!(s.expire(b"k", 100, ExpireFlags::GT), Ok(false));
    assert_eq!(s.ttl(b"k"), -1);
    assert_eq!(s.expire(b"k", 100, ExpireFlags::LT), Ok(true));
    assert_eq!(s.ttl(b"k"), 100);
    s.persist(b"k");
    assert_eq!(s.expire(b"k", 100, ExpireFlags::NX), Ok(true));
    assert_eq!(s.expire(b"k", 50, ExpireFlags::NX), Ok(false));
    assert_eq!(s.expire(b"k", 50, ExpireFlags::XX), Ok(true));
    assert_eq!(s.ttl(b"k"), 50);
    assert_eq!(s.expire(b"k", 40, ExpireFlags::GT), Ok(false));
    assert_eq!(
        s.expire(b"k", 50, ExpireFlags::GT),
        Ok(false),
        "equal is not greater"
    );
    assert_eq!(s.expire(b"k", 60, ExpireFlags::GT), Ok(true));
    assert_eq!(s.expire(b"k", 70, ExpireFlags::LT), Ok(false));
    assert_eq!(s.expire(b"k", 30, ExpireFlags::LT), Ok(true));
    assert_eq!(s.ttl(b"k"), 30);
    let xx_gt = ExpireFlags {
        xx: true,
        gt: true,
        ..ExpireFlags::NONE
    };
    assert_eq!(s.expire(b"k", 35, xx_gt), Ok(true));
    for bad in [
        ExpireFlags {
            nx: true,
            xx: true,
            ..ExpireFlags::NONE
        },
        ExpireFlags {
            nx: true,
            gt: true,
            ..ExpireFlags::NONE
        },
        ExpireFlags {
            gt: true,
            lt: true,
            ..ExpireFlags::NONE
        },
    ] {
        assert_eq!(
            s.expire(b"k", 1, bad),
            Err(StoreError::IncompatibleExpireFlags)
        );
    }
    assert_eq!(
        s.expire(b"k", i64::MAX, ExpireFlags::NONE),
        Err(StoreError::InvalidExpireTime { command: "expire" })
    );
}

#[test]
fn expire_in_the_past_deletes_the_key() {
    let (s, _) = store();
    s.mset(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")])
        .unwrap();
    assert_eq!(s.expire(b"a", 0, ExpireFlags::NONE), Ok(true));
    assert_eq!(s.pexpire(b"b", -5, ExpireFlags::NONE), Ok(true));
    assert_eq!(s.expireat(b"c", 1, ExpireFlags::NONE), Ok(true));
    assert_eq!(
        s.pexpireat(b"d", T0 as i64, ExpireFlags::NONE),
        Ok(true),
        "at == now deletes"
    );
    assert_eq!(s.exists(&["a", "b", "c", "d"]), 0);
    s.set(b"e", b"1", SetOptions::default()).unwrap();
    assert_eq!(
        s.pexpireat(b"e", T0 as i64 + 1, ExpireFlags::NONE),
        Ok(true)
    );
    assert_eq!(s.pttl(b"e"), 1);
}

trait NowForTests {
    fn now_ms_for_tests(&self) -> u64;
}
impl NowForTests for quorra_store::MockClock {
    fn now_ms_for_tests(&self) -> u64 {
        use quorra_store::Clock;
        self.now_ms()
    }
}

#[test]
fn active_cycle_stops_at_its_iteration_budget_and_resumes_next_tick() {
    use quorra_store::expiry::{ACTIVE_EXPIRE_KEYS_PER_LOOP, ACTIVE_EXPIRE_MAX_LOOPS_PER_SHARD};
    let (s, clock) = common::store_with(quorra_store::StoreConfig {
        shards: 1,
        ..Default::default()
    });
    let per_tick = (ACTIVE_EXPIRE_KEYS_PER_LOOP * ACTIVE_EXPIRE_MAX_LOOPS_PER_SHARD) as u64;
    let total = per_tick + 5_000;
    for i in 0..total {
        s.set(format!("k{i}").as_bytes(), b"v", ex(1)).unwrap();
    }
    clock.advance(Duration::from_secs(2));
    let now = clock.now_ms_for_tests();
    let first = s.tick(now);
    assert!(first.budget_exhausted, "{first:?}");
    assert_eq!(first.expired, per_tick);
    let second = s.tick(now);
    assert!(!second.budget_exhausted);
    assert_eq!(second.expired, 5_000);
    assert_eq!(s.stats().total.entries, 0);
    s.check_invariants().unwrap();
}

#[test]
fn expired_keys_are_invisible_everywhere_before_any_cleanup() {
    let (s, clock) = store();
    s.set(b"gone", b"v", ex(1)).unwrap();
    s.set(b"kept", b"v", SetOptions::default()).unwrap();
    clock.advance(Duration::from_secs(5));
    assert_eq!(s.keys(0, b"*"), vec![bytes::Bytes::from("kept")]);
    assert_eq!(s.scan(0, 0, None, 100).1, vec![bytes::Bytes::from("kept")]);
    assert_eq!(s.random_key(0), Some(bytes::Bytes::from("kept")));
    assert_eq!(s.exists(&["gone"]), 0);
    assert_eq!(s.strlen(b"gone").unwrap(), 0);
    assert_eq!(
        s.incr(b"gone"),
        Ok(1),
        "an expired key counts as missing for writes"
    );
    assert_eq!(s.ttl(b"gone"), -1);
}

#[test]
fn every_expiration_is_reported_once_whether_lazy_or_active() {
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Expired(Mutex<Vec<Vec<u8>>>);
    impl quorra_store::RemovalObserver for Expired {
        fn on_expire(&self, key: &[u8]) {
            self.0.lock().unwrap().push(key.to_vec());
        }
    }
    let expired = Arc::new(Expired::default());
    let (s, clock) = store();
    let s = s.with_removal_observer(expired.clone());
    s.set(b"lazy", b"v", ex(1)).unwrap();
    s.set(b"active", b"v", ex(1)).unwrap();
    s.set(b"kept", b"v", SetOptions::default()).unwrap();
    s.set(b"deleted", b"v", ex(1)).unwrap();
    assert_eq!(s.del(&[b"deleted"]), 1);
    clock.advance(Duration::from_millis(1_001));
    assert!(s.get(b"lazy").is_none());
    assert!(s.get(b"lazy").is_none());
    s.tick(T0 + 1_001);
    let mut reported = expired.0.lock().unwrap().clone();
    reported.sort();
    assert_eq!(reported, vec![b"active".to_vec(), b"lazy".to_vec()]);
    assert_eq!(s.stats().total.expirations, 2);
}
