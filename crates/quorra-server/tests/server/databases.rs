//! Databases (SELECT) on a single node and on three nodes with three copies: each
//! database a keyspace of its own for every command, on every replica, through MOVE,
//! FLUSHDB, a restart refilled by anti-entropy, and INFO keyspace.

use std::time::Duration;

use quorra_ring::database::stored_key;
use quorra_server::RunningServer;
use redis::Value;

use crate::cluster::*;
use crate::common::*;

/// A connection that selected database `db` at connect, as `redis://host/db` does.
async fn connect_to(node: &RunningServer, db: u8) -> redis::aio::MultiplexedConnection {
    connect_url(&format!("redis://{}/{db}", node.resp_addr)).await
}

/// The value this node's own store holds for `key` of database `db`.
fn stored_value(node: &RunningServer, db: u8, key: &str) -> Option<Vec<u8>> {
    let stored = stored_key(db, key.as_bytes());
    node.shared.store.get(&stored).map(|value| value.to_vec())
}

/// The sorted keys that a full SCAN of the connection's database returns.
async fn scanned(con: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut keys = scan_all(con).await.0;
    keys.sort();
    keys
}

#[tokio::test]
async fn on_one_node_each_database_is_its_own_keyspace() {
    let node = start().await;
    let mut zero = connect(&node).await;
    let mut one = connect_to(&node, 1).await;
    ok(&mut zero, &["SET", "k", "zero"]).await;
    ok(&mut one, &["SET", "k", "one", "EX", "100"]).await;
    ok(&mut one, &["SET", "only-in-one", "x"]).await;
    assert_eq!(ok(&mut zero, &["GET", "k"]).await, bulk("zero"));
    assert_eq!(ok(&mut one, &["GET", "k"]).await, bulk("one"));
    assert_eq!(ok(&mut zero, &["DBSIZE"]).await, int(1));
    assert_eq!(ok(&mut one, &["DBSIZE"]).await, int(2));
    assert_eq!(scanned(&mut one).await, ["k", "only-in-one"]);
    assert_eq!(scanned(&mut zero).await, ["k"]);
    let random = ok(&mut one, &["RANDOMKEY"]).await;
    assert!(
        [bulk("k"), bulk("only-in-one")].contains(&random),
        "RANDOMKEY answers a client's key of the database: {random:?}"
    );
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query_async(&mut zero)
        .await
        .unwrap();
    assert!(
        info.contains("db0:keys=1,expires=0,avg_ttl=0\r\n"),
        "{info}"
    );
    assert!(
        info.contains("db1:keys=2,expires=1,avg_ttl=0\r\n"),
        "{info}"
    );
    // A binary key of database 0 that starts like a stored prefix stays database 0's.
    let mut raw = redis::cmd("SET");
    raw.arg(b"\xff\x01k".as_slice()).arg("raw");
    let _: () = raw.query_async(&mut zero).await.unwrap();
    assert_eq!(ok(&mut one, &["GET", "k"]).await, bulk("one"));
    let _: () = redis::cmd("DEL")
        .arg(b"\xff\x01k".as_slice())
        .query_async(&mut zero)
        .await
        .unwrap();
    // FLUSHDB empties the session's database only.
    ok(&mut one, &["FLUSHDB"]).await;
    assert_eq!(ok(&mut one, &["DBSIZE"]).await, int(0));
    assert_eq!(ok(&mut zero, &["GET", "k"]).await, bulk("zero"));
    // SELECT's bad input, with Redis's texts; the connection keeps its database.
    for bad in ["16", "-1"] {
        assert_eq!(
            err(&mut one, &["SELECT", bad]).await,
            "ERR DB index is out of range"
        );
    }
    assert_eq!(
        err(&mut one, &["SELECT", "x"]).await,
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut one, &["MOVE", "k", "1"]).await,
        "ERR source and destination objects are the same"
    );
    assert_eq!(
        err(&mut one, &["MOVE", "k", "16"]).await,
        "ERR DB index is out of range"
    );
    node.shared.store.check_invariants().unwrap();
}

#[tokio::test]
async fn select_inside_multi_is_refused_and_the_transaction_runs_nothing() {
    let node = start().await;
    let mut con = connect(&node).await;
    ok(&mut con, &["MULTI"]).await;
    assert_eq!(
        ok(&mut con, &["SET", "k", "v"]).await,
        Value::SimpleString("QUEUED".into())
    );
    assert_eq!(
        err(&mut con, &["SELECT", "1"]).await,
        "ERR SELECT inside MULTI is not supported: select the database before MULTI"
    );
    assert_eq!(
        err(&mut con, &["EXEC"]).await,
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(ok(&mut con, &["EXISTS", "k"]).await, int(0));
}

#[tokio::test]
async fn with_three_copies_databases_stay_apart_on_every_replica_and_through_a_restart() {
    let adjust = |config: &mut quorra_node::config::ClusterConfig| {
        config.consistency.replicas = 3;
        config.max_hints = 0;
        config.anti_entropy_interval = Some(Duration::from_millis(300));
    };
    let mut nodes = start_cluster_with(3, adjust).await;
    let mut one = connect_to(&nodes[0], 1).await;
    let mut zero = connect_to(&nodes[1], 0).await;
    ok(&mut one, &["SET", "k", "one"]).await;
    ok(&mut zero, &["SET", "k", "zero"]).await;
    for node in &nodes {
        assert_eq!(stored_value(node, 1, "k"), Some(b"one".to_vec()));
        assert_eq!(stored_value(node, 0, "k"), Some(b"zero".to_vec()));
    }
    // MOVE through a third node: the key leaves database 1 and arrives in 2 on every
    // replica.
    let mut one_elsewhere = connect_to(&nodes[2], 1).await;
    assert_eq!(ok(&mut one_elsewhere, &["MOVE", "k", "2"]).await, int(1));
    for node in &nodes {
        assert_eq!(stored_value(node, 1, "k"), None);
        assert_eq!(stored_value(node, 2, "k"), Some(b"one".to_vec()));
    }
    let mut two = connect_to(&nodes[1], 2).await;
    assert_eq!(ok(&mut two, &["GET", "k"]).await, bulk("one"));
    assert_eq!(ok(&mut two, &["DBSIZE"]).await, int(1));
    assert_eq!(ok(&mut one, &["DBSIZE"]).await, int(0));
    assert_eq!(ok(&mut zero, &["DBSIZE"]).await, int(1));
    assert_eq!(scanned(&mut two).await, ["k"]);
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query_async(&mut one)
        .await
        .unwrap();
    assert!(info.contains("db0:keys=1,"), "{info}");
    assert!(info.contains("db2:keys=1,"), "{info}");
    assert!(!info.contains("db1:"), "{info}");
    // A transaction and a script in database 3, through any node.
    let mut three = connect_to(&nodes[2], 3).await;
    let replies: Value = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("{t}:a")
        .arg("1")
        .cmd("INCR")
        .arg("{t}:a")
        .query_async(&mut three)
        .await
        .unwrap();
    assert_eq!(replies, array(vec![Value::Okay, int(2)]));
    let script: Value = redis::cmd("EVAL")
        .arg("return {KEYS[1], redis.call('GET', KEYS[1])}")
        .arg(1)
        .arg("{t}:a")
        .query_async(&mut one_elsewhere)
        .await
        .unwrap();
    assert_eq!(script, array(vec![bulk("{t}:a"), Value::Nil]));
    // FLUSHDB clears database 2 on every node and leaves 0 alone.
    ok(&mut two, &["FLUSHDB"]).await;
    for node in &nodes {
        assert_eq!(stored_value(node, 2, "k"), None);
        assert_eq!(stored_value(node, 0, "k"), Some(b"zero".to_vec()));
    }
    // A replica that missed writes to database 5 gets them back in database 5 from
    // anti-entropy (no hints here), and nothing lands in database 0.
    nodes.pop().unwrap().crash().await;
    for node in &nodes {
        until(node, "n2 down", |view| serving_ids(view) == ["n0", "n1"]).await;
    }
    let mut five = connect_to(&nodes[0], 5).await;
    for i in 0..50 {
        ok(&mut five, &["SET", &format!("k:{i}"), &i.to_string()]).await;
    }
    let mut config = cluster_config("n2", Some(cluster_addr(&nodes[0])), SECRET);
    adjust(&mut config);
    nodes.push(start_configured(config).await);
    eventually("anti-entropy refilled database 5 on n2", async || {
        (0..50).all(|i| {
            stored_value(&nodes[2], 5, &format!("k:{i}")) == Some(i.to_string().into_bytes())
        })
    })
    .await;
    assert!((0..50).all(|i| stored_value(&nodes[2], 0, &format!("k:{i}")).is_none()));
    // DBSIZE counts each key at its primary: once every node sees n2 serving again.
    for node in &nodes {
        until(node, "n2 back", |view| {
            serving_ids(view) == ["n0", "n1", "n2"]
        })
        .await;
    }
    assert_eq!(ok(&mut five, &["DBSIZE"]).await, int(50));
    assert_eq!(ok(&mut zero, &["DBSIZE"]).await, int(1));
}
