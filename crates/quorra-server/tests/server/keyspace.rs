//! Generic key commands and expiry through a real client.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use quorra_store::MockClock;
use redis::Value;

use crate::common::*;

#[tokio::test]
async fn del_exists_touch_type_dbsize_flush() {
    let server = start().await;
    let mut c = connect(&server).await;
    ok(&mut c, &["MSET", "a", "1", "b", "2", "c", "3"]).await;
    assert_eq!(
        ok(&mut c, &["EXISTS", "a", "a", "x"]).await,
        int(2),
        "EXISTS counts repeats"
    );
    assert_eq!(ok(&mut c, &["TOUCH", "a", "b", "x"]).await, int(2));
    assert_eq!(
        ok(&mut c, &["TYPE", "a"]).await,
        Value::SimpleString("string".into())
    );
    assert_eq!(
        ok(&mut c, &["TYPE", "x"]).await,
        Value::SimpleString("none".into())
    );
    assert_eq!(ok(&mut c, &["DBSIZE"]).await, int(3));
    ok(&mut c, &["EXPIRE", "a", "100"]).await;
    let Value::BulkString(keyspace) = ok(&mut c, &["INFO", "keyspace"]).await else {
        panic!()
    };
    assert!(
        String::from_utf8(keyspace)
            .unwrap()
            .contains("db0:keys=3,expires=1,")
    );
    assert_eq!(ok(&mut c, &["DEL", "a", "x"]).await, int(1));
    assert_eq!(ok(&mut c, &["UNLINK", "b"]).await, int(1));
    assert_eq!(ok(&mut c, &["DBSIZE"]).await, int(1));
    assert_eq!(ok(&mut c, &["FLUSHDB"]).await, Value::Okay);
    assert_eq!(ok(&mut c, &["DBSIZE"]).await, int(0));
    ok(&mut c, &["SET", "z", "1"]).await;
    assert_eq!(ok(&mut c, &["FLUSHALL", "ASYNC"]).await, Value::Okay);
    assert_eq!(ok(&mut c, &["RANDOMKEY"]).await, Value::Nil);
    assert_eq!(
        err(&mut c, &["FLUSHALL", "LATER"]).await,
        "ERR syntax error"
    );
    server.shutdown().await;
}

fn keys_of(value: Value) -> BTreeSet<String> {
    let Value::Array(items) = value else {
        panic!("{value:?}")
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn keys_scan_randomkey() {
    let server = start().await;
    let mut c = connect(&server).await;
    for i in 0..200 {
        ok(&mut c, &["SET", &format!("user:{i}"), "x"]).await;
    }
    ok(&mut c, &["SET", "other", "x"]).await;
    assert_eq!(keys_of(ok(&mut c, &["KEYS", "user:1?"]).await).len(), 10);
    assert_eq!(keys_of(ok(&mut c, &["KEYS", "*"]).await).len(), 201);

    // A full SCAN with MATCH returns each matching key, and only those.
    let mut cursor = "0".to_owned();
    let mut seen = BTreeSet::new();
    loop {
        let Value::Array(reply) =
            ok(&mut c, &["SCAN", &cursor, "MATCH", "user:*", "COUNT", "25"]).await
        else {
            panic!()
        };
        let [Value::BulkString(next), keys] = <[Value; 2]>::try_from(reply).unwrap() else {
            panic!()
        };
        seen.extend(keys_of(keys));
        cursor = String::from_utf8(next).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 200);
    assert!(seen.iter().all(|key| key.starts_with("user:")));
    let Value::Array(reply) = ok(&mut c, &["SCAN", "0", "TYPE", "hash"]).await else {
        panic!()
    };
    assert_eq!(reply[1], array(vec![]), "no keys of other types");
    assert_eq!(err(&mut c, &["SCAN", "abc"]).await, "ERR invalid cursor");
    assert_eq!(
        err(&mut c, &["SCAN", "0", "COUNT", "0"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["SCAN", "0", "MATCH"]).await,
        "ERR syntax error"
    );
    let Value::BulkString(random) = ok(&mut c, &["RANDOMKEY"]).await else {
        panic!()
    };
    assert_eq!(
        ok(&mut c, &["EXISTS", std::str::from_utf8(&random).unwrap()]).await,
        int(1)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn rename_and_copy() {
    let server = start().await;
    let mut c = connect(&server).await;
    ok(&mut c, &["SET", "a", "1", "EX", "100"]).await;
    assert_eq!(ok(&mut c, &["RENAME", "a", "b"]).await, Value::Okay);
    assert_eq!(
        ok(&mut c, &["TTL", "b"]).await,
        int(100),
        "RENAME keeps the TTL"
    );
    assert_eq!(err(&mut c, &["RENAME", "a", "b"]).await, "ERR no such key");
    ok(&mut c, &["SET", "c", "3"]).await;
    assert_eq!(ok(&mut c, &["RENAMENX", "b", "c"]).await, int(0));
    assert_eq!(ok(&mut c, &["RENAMENX", "b", "d"]).await, int(1));
    assert_eq!(ok(&mut c, &["COPY", "d", "c"]).await, int(0));
    assert_eq!(ok(&mut c, &["COPY", "d", "c", "REPLACE"]).await, int(1));
    assert_eq!(ok(&mut c, &["GET", "c"]).await, bulk("1"));
    assert_eq!(ok(&mut c, &["COPY", "d", "e", "DB", "0"]).await, int(1));
    assert_eq!(ok(&mut c, &["COPY", "d", "f", "DB", "1"]).await, int(1));
    assert_eq!(
        ok(&mut c, &["EXISTS", "f"]).await,
        int(0),
        "f is in database 1"
    );
    assert_eq!(
        err(&mut c, &["COPY", "d", "f", "DB", "16"]).await,
        "ERR DB index is out of range"
    );
    assert_eq!(
        err(&mut c, &["COPY", "d", "d"]).await,
        "ERR source and destination objects are the same"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn expire_family_follows_redis_rules() {
    let server = start().await;
    let mut c = connect(&server).await;
    ok(&mut c, &["SET", "k", "v"]).await;
    assert_eq!(ok(&mut c, &["TTL", "k"]).await, int(-1));
    assert_eq!(ok(&mut c, &["TTL", "missing"]).await, int(-2));
    assert_eq!(ok(&mut c, &["PTTL", "missing"]).await, int(-2));
    assert_eq!(ok(&mut c, &["EXPIRETIME", "k"]).await, int(-1));
    // GT and XX on a key without TTL: no TTL counts as infinite, so nothing is set.
    assert_eq!(ok(&mut c, &["EXPIRE", "k", "100", "XX"]).await, int(0));
    assert_eq!(ok(&mut c, &["EXPIRE", "k", "100", "GT"]).await, int(0));
    assert_eq!(ok(&mut c, &["EXPIRE", "k", "100", "LT"]).await, int(1));
    assert_eq!(ok(&mut c, &["EXPIRE", "k", "50", "NX"]).await, int(0));
    assert_eq!(ok(&mut c, &["EXPIRE", "k", "200", "GT"]).await, int(1));
    assert_eq!(ok(&mut c, &["TTL", "k"]).await, int(200));
    assert_eq!(ok(&mut c, &["PEXPIRE", "k", "300000", "XX"]).await, int(1));
    assert_eq!(ok(&mut c, &["TTL", "k"]).await, int(300));
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 500;
    assert_eq!(
        ok(&mut c, &["EXPIREAT", "k", &at.to_string()]).await,
        int(1)
    );
    assert_eq!(ok(&mut c, &["EXPIRETIME", "k"]).await, int(at as i64));
    assert_eq!(
        ok(&mut c, &["PEXPIREAT", "k", &(at * 1000 + 7).to_string()]).await,
        int(1)
    );
    assert_eq!(
        ok(&mut c, &["PEXPIRETIME", "k"]).await,
        int((at * 1000 + 7) as i64)
    );
    assert_eq!(ok(&mut c, &["PERSIST", "k"]).await, int(1));
    assert_eq!(ok(&mut c, &["PERSIST", "k"]).await, int(0));
    assert_eq!(ok(&mut c, &["EXPIRE", "missing", "10"]).await, int(0));
    assert_eq!(
        err(&mut c, &["EXPIRE", "k", "10", "NX", "XX"]).await,
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        err(&mut c, &["EXPIRE", "k", "10", "SOON"]).await,
        "ERR Unsupported option SOON"
    );
    assert_eq!(
        err(&mut c, &["EXPIRE", "k", "ten"]).await,
        "ERR value is not an integer or out of range"
    );
    // A time in the past deletes the key.
    assert_eq!(ok(&mut c, &["EXPIRE", "k", "-1"]).await, int(1));
    assert_eq!(ok(&mut c, &["EXISTS", "k"]).await, int(0));
    server.shutdown().await;
}

#[tokio::test]
async fn keys_expire_by_the_nodes_clock_lazily_and_actively() {
    let clock = MockClock::new(1_700_000_000_000);
    let server = start_on_clock(|_| {}, Arc::new(clock.clone())).await;
    let mut c = connect(&server).await;
    ok(&mut c, &["SET", "short", "v", "PX", "30"]).await;
    ok(&mut c, &["SET", "long", "v", "EX", "100"]).await;
    ok(&mut c, &["SET", "unread", "v", "PX", "500"]).await;
    // At its deadline a key still lives; a millisecond later it is gone.
    clock.advance(Duration::from_millis(30));
    assert_eq!(
        ok(&mut c, &["GET", "short"]).await,
        Value::BulkString(b"v".to_vec())
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(ok(&mut c, &["GET", "short"]).await, Value::Nil);
    clock.advance(Duration::from_secs(40));
    assert_eq!(ok(&mut c, &["TTL", "long"]).await, int(60));
    // Nobody reads "unread": the active-expiry ticker removes it, by the same clock.
    let stored = || server.shared.store.stats().total.entries;
    let removed = async {
        while stored() > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), removed)
        .await
        .expect("the active-expiry ticker removes an expired key nobody reads");
    assert_eq!(
        ok(&mut c, &["KEYS", "*"]).await,
        Value::Array(vec![Value::BulkString(b"long".to_vec())])
    );
    server.shutdown().await;
}
