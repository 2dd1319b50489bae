//! Redis string-command semantics.

mod common;

use bytes::Bytes;
use common::store;
use quorra_store::{GetExExpiry, KeyType, SetCondition, SetExpiry, SetOptions, StoreError};

fn b(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn set_nx_xx_get_keepttl() {
    let (s, _) = store();
    let nx = SetOptions {
        condition: SetCondition::IfAbsent,
        ..Default::default()
    };
    let xx = SetOptions {
        condition: SetCondition::IfPresent,
        ..Default::default()
    };
    assert!(
        !s.set(b"k", b"v", xx).unwrap().written,
        "XX on a missing key"
    );
    assert_eq!(s.get(b"k"), None);
    assert!(s.set(b"k", b"v1", nx).unwrap().written);
    assert!(
        !s.set(b"k", b"v2", nx).unwrap().written,
        "NX on an existing key"
    );
    assert_eq!(s.get(b"k"), b("v1"));
    assert!(s.set(b"k", b"v3", xx).unwrap().written);
    assert_eq!(s.get(b"k"), b("v3"));

    // GET returns the old value, also when NX blocks the write.
    let nx_get = SetOptions { get: true, ..nx };
    let out = s.set(b"k", b"v4", nx_get).unwrap();
    assert_eq!((out.written, out.previous), (false, b("v3")));
    let get = SetOptions {
        get: true,
        ..Default::default()
    };
    assert_eq!(s.set(b"new", b"x", get).unwrap().previous, None);

    // EX sets a TTL, a plain SET clears it, KEEPTTL keeps it.
    let ex = SetOptions {
        expiry: SetExpiry::Ex(100),
        ..Default::default()
    };
    s.set(b"t", b"1", ex).unwrap();
    assert_eq!(s.ttl(b"t"), 100);
    let keep = SetOptions {
        expiry: SetExpiry::KeepTtl,
        ..Default::default()
    };
    s.set(b"t", b"2", keep).unwrap();
    assert_eq!(s.ttl(b"t"), 100);
    s.set(b"t", b"3", SetOptions::default()).unwrap();
    assert_eq!(s.ttl(b"t"), -1);
}

#[test]
fn set_expiry_forms_and_invalid_times() {
    let (s, _) = store();
    let now = common::T0 as i64;
    let px = SetOptions {
        expiry: SetExpiry::Px(1500),
        ..Default::default()
    };
    s.set(b"a", b"1", px).unwrap();
    assert_eq!(s.pttl(b"a"), 1500);
    assert_eq!(s.ttl(b"a"), 2, "TTL rounds to the nearest second");
    let pxat = SetOptions {
        expiry: SetExpiry::PxAt(now + 10_000),
        ..Default::default()
    };
    s.set(b"b", b"1", pxat).unwrap();
    assert_eq!(s.pexpiretime(b"b"), now + 10_000);
    let exat = SetOptions {
        expiry: SetExpiry::ExAt(now / 1000 + 20),
        ..Default::default()
    };
    s.set(b"c", b"1", exat).unwrap();
    assert_eq!(s.expiretime(b"c"), now / 1000 + 20);
    for bad in [
        SetExpiry::Ex(0),
        SetExpiry::Px(-5),
        SetExpiry::Ex(i64::MAX / 10),
        SetExpiry::PxAt(0),
    ] {
        let o = SetOptions {
            expiry: bad,
            ..Default::default()
        };
        assert_eq!(
            s.set(b"d", b"1", o),
            Err(StoreError::InvalidExpireTime { command: "set" })
        );
    }
    assert_eq!(s.get(b"d"), None);
    // An absolute time in the past deletes the key.
    s.set(b"e", b"1", SetOptions::default()).unwrap();
    let past = SetOptions {
        expiry: SetExpiry::PxAt(1),
        ..Default::default()
    };
    assert!(s.set(b"e", b"2", past).unwrap().written);
    assert_eq!(s.get(b"e"), None);
}

#[test]
fn setnx_getset_getdel_getex() {
    let (s, _) = store();
    assert!(s.setnx(b"k", b"1").unwrap());
    assert!(!s.setnx(b"k", b"2").unwrap());
    assert_eq!(s.getset(b"k", b"3").unwrap(), b("1"));
    assert_eq!(s.getdel(b"k").unwrap(), b("3"));
    assert_eq!(s.getdel(b"k").unwrap(), None);
    assert_eq!(s.get(b"k"), None);

    s.set(b"g", b"v", SetOptions::default()).unwrap();
    assert_eq!(s.getex(b"g", GetExExpiry::Ex(50)).unwrap(), b("v"));
    assert_eq!(s.ttl(b"g"), 50);
    assert_eq!(s.getex(b"g", GetExExpiry::Keep).unwrap(), b("v"));
    assert_eq!(s.ttl(b"g"), 50);
    assert_eq!(s.getex(b"g", GetExExpiry::Persist).unwrap(), b("v"));
    assert_eq!(s.ttl(b"g"), -1);
    assert_eq!(
        s.getex(b"g", GetExExpiry::PxAt(1)).unwrap(),
        b("v"),
        "returns, then deletes"
    );
    assert_eq!(s.get(b"g"), None);
    assert_eq!(s.getex(b"missing", GetExExpiry::Ex(5)).unwrap(), None);
    assert_eq!(
        s.getex(b"missing", GetExExpiry::Ex(0)),
        Err(StoreError::InvalidExpireTime { command: "getex" })
    );
}

#[test]
fn incr_family_errors_and_overflow() {
    let (s, _) = store();
    assert_eq!(s.incr(b"n"), Ok(1));
    assert_eq!(s.incrby(b"n", 41), Ok(42));
    assert_eq!(s.decr(b"n"), Ok(41));
    assert_eq!(s.decrby(b"n", 50), Ok(-9));
    assert_eq!(s.get(b"n"), b("-9"));
    s.set(
        b"max",
        i64::MAX.to_string().as_bytes(),
        SetOptions::default(),
    )
    .unwrap();
    assert_eq!(s.incr(b"max"), Err(StoreError::Overflow));
    assert_eq!(
        s.get(b"max"),
        b(&i64::MAX.to_string()),
        "unchanged after the error"
    );
    s.set(
        b"min",
        i64::MIN.to_string().as_bytes(),
        SetOptions::default(),
    )
    .unwrap();
    assert_eq!(s.decr(b"min"), Err(StoreError::Overflow));
    assert_eq!(s.decrby(b"zero", i64::MIN), Err(StoreError::Overflow));
    for bad in ["abc", "1.5", " 1", "01", "", "+1", "99999999999999999999"] {
        s.set(b"bad", bad.as_bytes(), SetOptions::default())
            .unwrap();
        assert_eq!(s.incr(b"bad"), Err(StoreError::NotAnInteger), "{bad:?}");
    }
    // INCR keeps the TTL.
    let ex = SetOptions {
        expiry: SetExpiry::Ex(10),
        ..Default::default()
    };
    s.set(b"t", b"5", ex).unwrap();
    assert_eq!(s.incr(b"t"), Ok(6));
    assert_eq!(s.ttl(b"t"), 10);
}

#[test]
fn incrbyfloat_formats_like_redis() {
    let (s, _) = store();
    s.set(b"f", b"10.5", SetOptions::default()).unwrap();
    assert_eq!(s.incrbyfloat(b"f", 0.1).unwrap(), "10.6");
    assert_eq!(s.get(b"f"), b("10.6"));
    s.set(b"g", b"5.0e3", SetOptions::default()).unwrap();
    assert_eq!(s.incrbyfloat(b"g", 2.0e2).unwrap(), "5200");
    assert_eq!(s.incrbyfloat(b"new", 3.0).unwrap(), "3");
    assert_eq!(s.incrbyfloat(b"new", -3.5).unwrap(), "-0.5");
    s.set(b"x", b"abc", SetOptions::default()).unwrap();
    assert_eq!(s.incrbyfloat(b"x", 1.0), Err(StoreError::NotAFloat));
    s.set(b"big", b"1.7e308", SetOptions::default()).unwrap();
    assert_eq!(
        s.incrbyfloat(b"big", 1.7e308),
        Err(StoreError::NanOrInfinity)
    );
    assert_eq!(
        s.incrbyfloat(b"big", f64::INFINITY),
        Err(StoreError::NanOrInfinity)
    );
    assert_eq!(s.incrbyfloat(b"big", f64::NAN), Err(StoreError::NotAFloat));
    assert_eq!(s.get(b"big"), b("1.7e308"), "unchanged after errors");
}

#[test]
fn getrange_edge_cases() {
    let (s, _) = store();
    s.set(b"k", b"This is a string", SetOptions::default())
        .unwrap();
    let r = |a, e| s.getrange(b"k", a, e).unwrap();
    assert_eq!(r(0, 3), "This");
    assert_eq!(r(-3, -1), "ing");
    assert_eq!(r(0, -1), "This is a string");
    assert_eq!(r(10, 100), "string");
    assert_eq!(r(100, 200), "");
    assert_eq!(r(-1, -3), "", "start after end, both negative");
    assert_eq!(r(5, 3), "");
    assert_eq!(r(-200, 3), "This", "start clamped to 0");
    // Redis 8: a negative end still negative after adding the length gives "".
    assert_eq!(r(0, -100), "");
    assert_eq!(r(-200, -100), "");
    assert_eq!(r(-100, -100), "");
    assert_eq!(s.getrange(b"missing", 0, -1).unwrap(), "");
    s.set(b"e", b"", SetOptions::default()).unwrap();
    assert_eq!(s.getrange(b"e", 0, -1).unwrap(), "");
}

#[test]
fn setrange_pads_and_limits() {
    let (s, _) = store();
    assert_eq!(s.setrange(b"k", 5, b"hi"), Ok(7));
    assert_eq!(s.get(b"k"), Some(Bytes::from_static(b"\0\0\0\0\0hi")));
    s.set(b"w", b"Hello World", SetOptions::default()).unwrap();
    assert_eq!(s.setrange(b"w", 6, b"Redis"), Ok(11));
    assert_eq!(s.get(b"w"), b("Hello Redis"));
    assert_eq!(
        s.setrange(b"w", 0, b""),
        Ok(11),
        "empty value: length, no change"
    );
    assert_eq!(s.setrange(b"none", 3, b""), Ok(0));
    assert_eq!(
        s.exists(&[b"none"]),
        0,
        "empty value does not create the key"
    );
    assert_eq!(
        s.setrange(b"w", -1, b"x"),
        Err(StoreError::OffsetOutOfRange)
    );
    assert_eq!(
        s.setrange(b"w", 512 * 1024 * 1024, b"x"),
        Err(StoreError::ValueTooLarge)
    );
    assert_eq!(s.append(b"w", b"!"), Ok(12));
    assert_eq!(s.append(b"a", b"xy"), Ok(2));
    assert_eq!(s.strlen(b"w").unwrap(), 12);
    assert_eq!(s.strlen(b"nope").unwrap(), 0);
}

#[test]
fn configurable_string_limit() {
    let (s, _) = common::store_with(quorra_store::StoreConfig {
        max_string_len: 10,
        ..Default::default()
    });
    assert_eq!(s.setrange(b"k", 8, b"abc"), Err(StoreError::ValueTooLarge));
    assert_eq!(s.setrange(b"k", 7, b"abc"), Ok(10));
    assert_eq!(s.append(b"k", b"x"), Err(StoreError::ValueTooLarge));
}

#[test]
fn databases_are_counted_listed_and_flushed_apart() {
    use quorra_ring::database::stored_key;
    use quorra_store::DatabaseCounts;
    let (s, clock) = store();
    let in_db = |db: u8, key: &str| stored_key(db, key.as_bytes()).into_owned();
    s.set(b"a", b"0", SetOptions::default()).unwrap();
    s.set(&in_db(1, "a"), b"1", SetOptions::default()).unwrap();
    let expiring = SetOptions {
        expiry: SetExpiry::Px(1_000),
        ..SetOptions::default()
    };
    s.set(&in_db(1, "b"), b"1", expiring).unwrap();
    s.set(&in_db(7, "c"), b"7", SetOptions::default()).unwrap();
    let counts = |db, keys, expires| DatabaseCounts { db, keys, expires };
    assert_eq!(
        s.keyspace(),
        [counts(0, 1, 0), counts(1, 2, 1), counts(7, 1, 0)]
    );
    assert_eq!((s.dbsize(0), s.dbsize(1), s.dbsize(2)), (1, 2, 0));
    assert_eq!(s.keys(1, b"*").len(), 2);
    assert_eq!(s.keys(0, b"*"), vec![Bytes::from("a")]);
    assert_eq!(s.scan(0, 7, None, 100).1, vec![Bytes::from(in_db(7, "c"))]);
    assert_eq!(s.random_key(7), Some(Bytes::from(in_db(7, "c"))));
    assert_eq!(s.random_key(2), None);
    // Expiry, deletion and FLUSHDB keep the counts exact.
    clock.advance(std::time::Duration::from_secs(2));
    assert_eq!(s.get(&in_db(1, "b")), None);
    s.del(&[in_db(7, "c")]);
    s.check_invariants().unwrap();
    assert_eq!(s.keyspace(), [counts(0, 1, 0), counts(1, 1, 0)]);
    s.flushdb(1);
    assert_eq!(s.keyspace(), [counts(0, 1, 0)]);
    assert_eq!(s.stats().total.entries_outside_db0, 0);
    s.check_invariants().unwrap();
}

#[test]
fn del_exists_touch_type_dbsize_flushall() {
    let (s, _) = store();
    s.mset(&[("a", "1"), ("b", "2"), ("c", "3")]).unwrap();
    assert_eq!(s.exists(&["a", "a", "zz"]), 2, "duplicates count twice");
    assert_eq!(s.touch(&["a", "zz"]), 1);
    assert_eq!(s.key_type(b"a"), KeyType::String);
    assert_eq!(s.key_type(b"zz").as_str(), "none");
    assert_eq!(s.dbsize(0), 3);
    assert_eq!(s.del(&["a", "b", "zz"]), 2);
    assert_eq!(s.dbsize(0), 1, "tombstones are not counted");
    assert_eq!(s.mget(&["a", "c"]), vec![None, b("3")]);
    s.flushall();
    assert_eq!(s.dbsize(0), 0);
    assert_eq!(s.stats().total.used_bytes, 0);
    s.check_invariants().unwrap();
}

#[test]
fn mset_last_wins_and_msetnx_is_all_or_nothing() {
    let (s, _) = store();
    s.mset(&[("k", "1"), ("k", "2")]).unwrap();
    assert_eq!(s.get(b"k"), b("2"));
    assert_eq!(s.msetnx(&[("x", "1"), ("k", "9")]), Ok(false));
    assert_eq!(s.get(b"x"), None);
    assert_eq!(s.msetnx(&[("x", "1"), ("y", "2")]), Ok(true));
    assert_eq!(s.mget(&["x", "y"]), vec![b("1"), b("2")]);
    s.check_invariants().unwrap();
}

#[test]
fn rename_renamenx_copy() {
    let (s, _) = store();
    assert_eq!(s.rename(b"nope", b"x"), Err(StoreError::NoSuchKey));
    let ex = SetOptions {
        expiry: SetExpiry::Ex(100),
        ..Default::default()
    };
    s.set(b"src", b"v", ex).unwrap();
    s.rename(b"src", b"dst").unwrap();
    assert_eq!((s.get(b"src"), s.get(b"dst")), (None, b("v")));
    assert_eq!(s.ttl(b"dst"), 100, "TTL moves with the value");
    s.rename(b"dst", b"dst").unwrap();
    assert_eq!(s.get(b"dst"), b("v"));
    s.set(b"other", b"o", SetOptions::default()).unwrap();
    assert_eq!(s.renamenx(b"dst", b"other"), Ok(false));
    assert_eq!(s.renamenx(b"dst", b"fresh"), Ok(true));
    assert_eq!(s.copy(b"fresh", b"other", false), Ok(false));
    assert_eq!(s.copy(b"fresh", b"other", true), Ok(true));
    assert_eq!(s.get(b"other"), b("v"));
    assert_eq!(s.get(b"fresh"), b("v"), "COPY keeps the source");
    assert_eq!(s.copy(b"missing", b"z", true), Ok(false));
    assert_eq!(
        s.copy(b"fresh", b"fresh", true),
        Err(StoreError::SameObject)
    );
    // Many keys so that source and destination land in different shards too.
    for i in 0..50 {
        let (a, z) = (format!("a{i}"), format!("z{i}"));
        s.set(a.as_bytes(), b"payload", SetOptions::default())
            .unwrap();
        s.rename(a.as_bytes(), z.as_bytes()).unwrap();
        assert_eq!(s.get(z.as_bytes()), b("payload"));
        assert_eq!(s.get(a.as_bytes()), None);
    }
    s.check_invariants().unwrap();
}

#[test]
fn keys_scan_randomkey() {
    let (s, _) = store();
    assert_eq!(s.random_key(0), None);
    for i in 0..300 {
        s.set(format!("user:{i}").as_bytes(), b"x", SetOptions::default())
            .unwrap();
    }
    s.set(b"other", b"x", SetOptions::default()).unwrap();
    assert_eq!(s.keys(0, b"user:*").len(), 300);
    assert_eq!(s.keys(0, b"user:1?").len(), 10);
    assert_eq!(s.keys(0, b"other").len(), 1);
    // A full SCAN returns every key.
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    loop {
        let (next, keys) = s.scan(cursor, 0, Some(b"user:*"), 7);
        seen.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 300);
    let k = s.random_key(0).unwrap();
    assert!(s.get(&k).is_some());
}

#[test]
fn scan_returns_keys_present_for_the_whole_scan_despite_concurrent_writes() {
    let (s, _) = store();
    for i in 0..500 {
        s.set(
            format!("stable:{i}").as_bytes(),
            b"x",
            SetOptions::default(),
        )
        .unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    let mut round = 0;
    loop {
        let (next, keys) = s.scan(cursor, 0, None, 10);
        seen.extend(keys);
        // Churn between calls: new keys, deletes of churn keys, overwrites of stable
        // keys with bigger values.
        for j in 0..20 {
            let k = format!("churn:{round}:{j}");
            s.set(k.as_bytes(), b"y", SetOptions::default()).unwrap();
            if j % 2 == 0 {
                s.del(&[k.as_bytes()]);
            }
        }
        let i = round % 500;
        s.set(
            format!("stable:{i}").as_bytes(),
            &[b'z'; 64],
            SetOptions::default(),
        )
        .unwrap();
        round += 1;
        if next == 0 {
            break;
        }
        cursor = next;
    }
    for i in 0..500 {
        assert!(
            seen.contains(format!("stable:{i}").as_bytes()),
            "stable:{i} missed"
        );
    }
}

#[test]
fn access_observer_sees_every_keyed_access() {
    use quorra_store::{AccessKind, AccessObserver};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Log(Mutex<Vec<(u64, Vec<u8>, AccessKind)>>);
    impl AccessObserver for Log {
        fn on_access(&self, hash: u64, key: &[u8], kind: AccessKind) {
            self.0.lock().unwrap().push((hash, key.to_vec(), kind));
        }
    }
    let log = Arc::new(Log::default());
    let (s, _) = store();
    let s = s.with_observer(log.clone());
    s.set(b"k", b"v", SetOptions::default()).unwrap();
    s.get(b"k");
    s.get(b"other");
    let seen = log.0.lock().unwrap();
    let h = quorra_ring::key_hash(b"k");
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0], (h, b"k".to_vec(), AccessKind::Write));
    assert_eq!(seen[1], (h, b"k".to_vec(), AccessKind::Read));
    assert_eq!(seen[2].1, b"other".to_vec());
}

#[test]
fn get_with_reads_in_place_and_promotes() {
    let (s, _) = common::small_store(0, 1);
    s.set(b"a", b"1", SetOptions::default()).unwrap();
    s.set(b"b", b"22", SetOptions::default()).unwrap();
    assert_eq!(s.get_with(b"a", |v| v.to_vec()), Ok(Some(b"1".to_vec())));
    assert_eq!(s.lru_dump(0), vec![Bytes::from("a"), Bytes::from("b")]);
    assert_eq!(s.get_with(b"zz", |v| v.len()), Ok(None));
}
