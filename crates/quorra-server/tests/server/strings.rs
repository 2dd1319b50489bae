//! String commands through a real client, against Redis's documented replies.

use redis::Value;

use crate::common::*;

#[tokio::test]
async fn set_and_its_options() {
    let server = start().await;
    let mut c = connect(&server).await;
    assert_eq!(ok(&mut c, &["SET", "k", "v"]).await, Value::Okay);
    assert_eq!(ok(&mut c, &["GET", "k"]).await, bulk("v"));
    assert_eq!(ok(&mut c, &["GET", "missing"]).await, Value::Nil);
    assert_eq!(ok(&mut c, &["SET", "k", "w", "NX"]).await, Value::Nil);
    assert_eq!(ok(&mut c, &["SET", "new", "w", "XX"]).await, Value::Nil);
    assert_eq!(ok(&mut c, &["SET", "k", "w", "XX", "GET"]).await, bulk("v"));
    assert_eq!(ok(&mut c, &["SET", "fresh", "x", "GET"]).await, Value::Nil);
    assert_eq!(
        ok(&mut c, &["SET", "k", "v", "EX", "100"]).await,
        Value::Okay
    );
    assert_eq!(ok(&mut c, &["TTL", "k"]).await, int(100));
    ok(&mut c, &["SET", "k", "v2", "KEEPTTL"]).await;
    assert_eq!(ok(&mut c, &["TTL", "k"]).await, int(100));
    ok(&mut c, &["SET", "k", "v3"]).await;
    assert_eq!(
        ok(&mut c, &["TTL", "k"]).await,
        int(-1),
        "plain SET drops the TTL"
    );
    ok(&mut c, &["SET", "k", "v", "PX", "5000"]).await;
    let Value::Int(pttl) = ok(&mut c, &["PTTL", "k"]).await else {
        panic!()
    };
    assert!((4000..=5000).contains(&pttl), "{pttl}");
    let future = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1000)
        .to_string();
    ok(&mut c, &["SET", "k", "v", "EXAT", &future]).await;
    assert_eq!(
        ok(&mut c, &["EXPIRETIME", "k"]).await,
        int(future.parse().unwrap())
    );
    let future_ms = (future.parse::<i64>().unwrap() * 1000).to_string();
    ok(&mut c, &["SET", "k", "v", "PXAT", &future_ms]).await;
    assert_eq!(
        ok(&mut c, &["PEXPIRETIME", "k"]).await,
        int(future_ms.parse().unwrap())
    );

    assert_eq!(
        err(&mut c, &["SET", "k", "v", "EX", "0"]).await,
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err(&mut c, &["SET", "k", "v", "EX", "ten"]).await,
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut c, &["SET", "k", "v", "NX", "XX"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["SET", "k", "v", "EX", "10", "PX", "10"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["SET", "k", "v", "EX"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["SET", "k", "v", "BOGUS"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["SET", "k"]).await,
        "ERR wrong number of arguments for 'set' command"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn setnx_setex_psetex_getex_getdel_getset() {
    let server = start().await;
    let mut c = connect(&server).await;
    assert_eq!(ok(&mut c, &["SETNX", "k", "1"]).await, int(1));
    assert_eq!(ok(&mut c, &["SETNX", "k", "2"]).await, int(0));
    assert_eq!(ok(&mut c, &["SETEX", "k", "50", "v"]).await, Value::Okay);
    assert_eq!(ok(&mut c, &["TTL", "k"]).await, int(50));
    assert_eq!(
        err(&mut c, &["SETEX", "k", "0", "v"]).await,
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(
        err(&mut c, &["PSETEX", "k", "-5", "v"]).await,
        "ERR invalid expire time in 'psetex' command"
    );
    assert_eq!(ok(&mut c, &["PSETEX", "p", "9000", "v"]).await, Value::Okay);
    assert_eq!(ok(&mut c, &["TTL", "p"]).await, int(9));

    assert_eq!(ok(&mut c, &["GETEX", "k", "EX", "200"]).await, bulk("v"));
    assert_eq!(ok(&mut c, &["TTL", "k"]).await, int(200));
    assert_eq!(ok(&mut c, &["GETEX", "k", "PERSIST"]).await, bulk("v"));
    assert_eq!(ok(&mut c, &["TTL", "k"]).await, int(-1));
    assert_eq!(ok(&mut c, &["GETEX", "k"]).await, bulk("v"));
    assert_eq!(ok(&mut c, &["GETEX", "nope", "EX", "5"]).await, Value::Nil);
    assert_eq!(
        err(&mut c, &["GETEX", "k", "EX", "5", "PX", "5"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["GETEX", "k", "EX", "-1"]).await,
        "ERR invalid expire time in 'getex' command"
    );

    assert_eq!(ok(&mut c, &["GETSET", "k", "new"]).await, bulk("v"));
    assert_eq!(ok(&mut c, &["GETDEL", "k"]).await, bulk("new"));
    assert_eq!(ok(&mut c, &["GETDEL", "k"]).await, Value::Nil);
    assert_eq!(ok(&mut c, &["GETSET", "k", "first"]).await, Value::Nil);
    server.shutdown().await;
}

#[tokio::test]
async fn multi_key_strings() {
    let server = start().await;
    let mut c = connect(&server).await;
    assert_eq!(ok(&mut c, &["MSET", "a", "1", "b", "2"]).await, Value::Okay);
    assert_eq!(
        ok(&mut c, &["MGET", "a", "x", "b"]).await,
        array(vec![bulk("1"), Value::Nil, bulk("2")])
    );
    assert_eq!(
        err(&mut c, &["MSET", "a", "1", "b"]).await,
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(ok(&mut c, &["MSETNX", "c", "3", "d", "4"]).await, int(1));
    assert_eq!(ok(&mut c, &["MSETNX", "d", "5", "e", "6"]).await, int(0));
    assert_eq!(
        ok(&mut c, &["MGET", "d", "e"]).await,
        array(vec![bulk("4"), Value::Nil])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn counters() {
    let server = start().await;
    let mut c = connect(&server).await;
    assert_eq!(ok(&mut c, &["INCR", "n"]).await, int(1));
    assert_eq!(ok(&mut c, &["INCRBY", "n", "41"]).await, int(42));
    assert_eq!(ok(&mut c, &["DECR", "n"]).await, int(41));
    assert_eq!(ok(&mut c, &["DECRBY", "n", "-9"]).await, int(50));
    ok(&mut c, &["SET", "s", "abc"]).await;
    assert_eq!(
        err(&mut c, &["INCR", "s"]).await,
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut c, &["INCRBY", "n", "x"]).await,
        "ERR value is not an integer or out of range"
    );
    ok(&mut c, &["SET", "max", "9223372036854775807"]).await;
    assert_eq!(
        err(&mut c, &["INCR", "max"]).await,
        "ERR increment or decrement would overflow"
    );
    ok(&mut c, &["SET", "f", "10.5"]).await;
    assert_eq!(ok(&mut c, &["INCRBYFLOAT", "f", "0.1"]).await, bulk("10.6"));
    ok(&mut c, &["SET", "e", "5.0e3"]).await;
    assert_eq!(
        ok(&mut c, &["INCRBYFLOAT", "e", "2.0e2"]).await,
        bulk("5200")
    );
    assert_eq!(
        err(&mut c, &["INCRBYFLOAT", "f", "abc"]).await,
        "ERR value is not a valid float"
    );
    assert_eq!(
        err(&mut c, &["INCRBYFLOAT", "s", "1"]).await,
        "ERR value is not a valid float"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn append_strlen_ranges() {
    let server = start().await;
    let mut c = connect(&server).await;
    assert_eq!(ok(&mut c, &["APPEND", "k", "Hello"]).await, int(5));
    assert_eq!(ok(&mut c, &["APPEND", "k", " World"]).await, int(11));
    assert_eq!(ok(&mut c, &["STRLEN", "k"]).await, int(11));
    assert_eq!(ok(&mut c, &["STRLEN", "missing"]).await, int(0));
    assert_eq!(
        ok(&mut c, &["GETRANGE", "k", "0", "4"]).await,
        bulk("Hello")
    );
    assert_eq!(
        ok(&mut c, &["GETRANGE", "k", "-5", "-1"]).await,
        bulk("World")
    );
    assert_eq!(ok(&mut c, &["GETRANGE", "k", "5", "1"]).await, bulk(""));
    assert_eq!(
        ok(&mut c, &["GETRANGE", "k", "0", "100"]).await,
        bulk("Hello World")
    );
    assert_eq!(ok(&mut c, &["SUBSTR", "k", "0", "-7"]).await, bulk("Hello"));
    assert_eq!(ok(&mut c, &["SETRANGE", "k", "6", "Redis"]).await, int(11));
    assert_eq!(ok(&mut c, &["GET", "k"]).await, bulk("Hello Redis"));
    assert_eq!(ok(&mut c, &["SETRANGE", "pad", "3", "x"]).await, int(4));
    assert_eq!(
        ok(&mut c, &["GET", "pad"]).await,
        Value::BulkString(b"\0\0\0x".to_vec())
    );
    assert_eq!(
        err(&mut c, &["SETRANGE", "k", "-1", "x"]).await,
        "ERR offset is out of range"
    );
    assert_eq!(
        err(&mut c, &["GETRANGE", "k", "a", "1"]).await,
        "ERR value is not an integer or out of range"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn lcs_as_in_the_redis_docs() {
    let server = start().await;
    let mut c = connect(&server).await;
    ok(&mut c, &["MSET", "key1", "ohmytext", "key2", "mynewtext"]).await;
    assert_eq!(ok(&mut c, &["LCS", "key1", "key2"]).await, bulk("mytext"));
    assert_eq!(ok(&mut c, &["LCS", "key1", "key2", "LEN"]).await, int(6));
    let range = |a: i64, b: i64| array(vec![int(a), int(b)]);
    assert_eq!(
        ok(&mut c, &["LCS", "key1", "key2", "IDX"]).await,
        array(vec![
            bulk("matches"),
            array(vec![
                array(vec![range(4, 7), range(5, 8)]),
                array(vec![range(2, 3), range(0, 1)])
            ]),
            bulk("len"),
            int(6),
        ])
    );
    assert_eq!(
        ok(
            &mut c,
            &[
                "LCS",
                "key1",
                "key2",
                "IDX",
                "MINMATCHLEN",
                "4",
                "WITHMATCHLEN"
            ]
        )
        .await,
        array(vec![
            bulk("matches"),
            array(vec![array(vec![range(4, 7), range(5, 8), int(4)])]),
            bulk("len"),
            int(6)
        ])
    );
    assert_eq!(ok(&mut c, &["LCS", "key1", "nokey"]).await, bulk(""));
    assert_eq!(
        err(&mut c, &["LCS", "key1", "key2", "LEN", "IDX"]).await,
        "ERR If you want both the length and indexes, please just use IDX."
    );
    server.shutdown().await;
}
