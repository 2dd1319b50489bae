//! Cluster mode in-process: several nodes on free ports in one runtime, gossiping over
//! real UDP on loopback and forwarding over the authenticated RPC.
//!
//! Waiting for gossip uses each node's view channel with a wall-clock deadline (gossip
//! runs every 50 ms here); no test asserts how long anything took.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorra_cluster::membership::{ClusterView, MemberState};
use quorra_cluster::replication::Consistency;
use quorra_node::config::ClusterConfig;
use quorra_server::RunningServer;
use redis::Value;

use crate::common::*;
use crate::http::http;

pub(crate) const SECRET: &str = "cluster test secret";
const GOSSIP_INTERVAL: Duration = Duration::from_millis(50);

/// Single-copy settings: the tests of routing alone. Replication tests raise `replicas`.
pub(crate) fn cluster_config(id: &str, seed: Option<SocketAddr>, secret: &str) -> ClusterConfig {
    ClusterConfig {
        consistency: Consistency {
            replicas: 1,
            ..Consistency::default()
        },
        max_hints: 10_000,
        anti_entropy_interval: None,
        port: 0,
        seeds: seed.map(|seed| seed.to_string()).into_iter().collect(),
        secret: secret.to_owned(),
        node_id: Some(id.to_owned()),
        data_dir: fresh_data_dir(),
        zone: None,
        advertise: [127, 0, 0, 1].into(),
        vnodes: quorra_ring::DEFAULT_VNODES,
        gossip_interval: GOSSIP_INTERVAL,
        dead_node_grace: Duration::from_secs(60),
        timeout: Duration::from_secs(2),
    }
}

async fn start_node(id: &str, seed: Option<SocketAddr>, secret: &str) -> RunningServer {
    start_configured(cluster_config(id, seed, secret)).await
}

pub(crate) async fn start_configured(cluster: ClusterConfig) -> RunningServer {
    start_with(|config| config.cluster = Some(cluster)).await
}

pub(crate) fn view(node: &RunningServer) -> Arc<ClusterView> {
    node.shared.cluster.as_ref().expect("cluster mode").view()
}

pub(crate) fn cluster_addr(node: &RunningServer) -> SocketAddr {
    node.shared.cluster.as_ref().unwrap().addresses.cluster
}

pub(crate) fn ring_ids(view: &ClusterView) -> Vec<String> {
    view.ring
        .members()
        .iter()
        .map(|m| m.id().to_string())
        .collect()
}

/// The ids of the members that serve (up, and counted), sorted.
pub(crate) fn serving_ids(view: &ClusterView) -> Vec<String> {
    view.serving().map(|m| m.id.to_string()).collect()
}

/// Waits (at most 30 s) for a view of `node` that satisfies `check`, and returns it.
pub(crate) async fn until(
    node: &RunningServer,
    what: &str,
    check: impl Fn(&ClusterView) -> bool,
) -> Arc<ClusterView> {
    let mut views = node.shared.cluster.as_ref().unwrap().subscribe();
    let wait = async {
        loop {
            let view = views.borrow_and_update().clone();
            if check(&view) {
                return view;
            }
            views.changed().await.expect("membership alive");
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(view) => view,
        Err(_) => panic!("{what}: not reached; view is {:#?}", view(node)),
    }
}

/// Starts `n` nodes `n0..`, each seeded with the first, and waits until every ring has
/// all of them.
async fn start_cluster(n: usize) -> Vec<RunningServer> {
    start_cluster_with(n, |_| {}).await
}

/// Polls `check` every 20 ms for at most 30 s.
pub(crate) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`start_cluster`] with every node's settings changed by `adjust`.
pub(crate) async fn start_cluster_with(
    n: usize,
    adjust: impl Fn(&mut ClusterConfig),
) -> Vec<RunningServer> {
    start_cluster_of_nodes(n, adjust, |_| {}).await
}

/// [`start_cluster_with`], each node's own settings changed by `adjust_node`.
pub(crate) async fn start_cluster_of_nodes(
    n: usize,
    adjust: impl Fn(&mut ClusterConfig),
    adjust_node: impl Fn(&mut quorra_server::Config),
) -> Vec<RunningServer> {
    let start_node = |cluster: ClusterConfig| {
        start_with(|config| {
            adjust_node(config);
            config.cluster = Some(cluster);
        })
    };
    let mut config = cluster_config("n0", None, SECRET);
    adjust(&mut config);
    let first = start_node(config).await;
    let seed = cluster_addr(&first);
    let mut nodes = vec![first];
    for i in 1..n {
        let mut config = cluster_config(&format!("n{i}"), Some(seed), SECRET);
        adjust(&mut config);
        nodes.push(start_node(config).await);
    }
    let all: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    for node in &nodes {
        until(node, "every node serving", |view| serving_ids(view) == all).await;
    }
    nodes
}

/// The commands a single node and every node of a cluster must answer alike. Keys are
/// chosen freely, so with three nodes they spread over every owner.
pub(crate) const SCRIPT: &[&[&str]] = &[
    &["SET", "k1", "v1"],
    &["GET", "k1"],
    &["SET", "k2", "v2", "NX"],
    &["SET", "k2", "x", "XX", "GET"],
    &[
        "MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6",
    ],
    &["MGET", "a", "b", "c", "d", "e", "f", "nokey", "k1", "a"],
    &["EXISTS", "a", "b", "nokey", "a", "f"],
    &["TOUCH", "c", "d", "nokey"],
    &["DEL", "a", "nokey", "b"],
    &["UNLINK", "c", "e"],
    &["MGET", "a", "b", "c", "d", "e", "f"],
    &["INCR", "counter"],
    &["INCRBY", "counter", "10"],
    &["DECR", "counter"],
    &["INCRBYFLOAT", "float", "1.5"],
    &["APPEND", "k1", "more"],
    &["STRLEN", "k1"],
    &["GETRANGE", "k1", "0", "2"],
    &["SETRANGE", "k1", "1", "XY"],
    &["GET", "k1"],
    &["SET", "t", "v", "EXAT", "4102444800"],
    &["EXPIRETIME", "t"],
    &["PERSIST", "t"],
    &["TTL", "t"],
    &["GETDEL", "k2"],
    &["GET", "k2"],
    &["TYPE", "k1"],
    &["OBJECT", "ENCODING", "k1"],
    &["OBJECT", "ENCODING", "counter"],
    &["OBJECT", "ENCODING", "nokey"],
    &["OBJECT", "REFCOUNT", "k1"],
    &["MEMORY", "USAGE", "k1"],
    &["MEMORY", "USAGE", "nokey", "SAMPLES", "5"],
    &["OBJECT", "HELP"],
    &["CLIENT", "HELP"],
    &["SCRIPT", "HELP"],
    &["EVAL", "return redis.call('get', KEYS[1])", "1", "k1"],
    &[
        "EVAL",
        "return redis.call('incrby', KEYS[1], ARGV[1])",
        "1",
        "counter",
        "5",
    ],
    &["INCR", "k1"],
    &["GET"],
    &["SET", "k1"],
    &["DBSIZE"],
    &["KEYS", "*"],
    &["EXISTS", "nokey"],
    &["FLUSHALL"],
    &["DBSIZE"],
    &["MGET", "a", "k1"],
];

/// Runs the script; KEYS' and SCAN's keys are sorted (their order is not specified).
pub(crate) async fn run_script(
    con: &mut redis::aio::MultiplexedConnection,
) -> Vec<Result<Value, String>> {
    let mut replies = Vec::new();
    for command in SCRIPT {
        let reply = run(con, command).await.map_err(|error| error.to_string());
        let reply = match (command[0], reply) {
            ("KEYS", Ok(Value::Array(mut keys))) => {
                keys.sort_by_key(|key| format!("{key:?}"));
                Ok(Value::Array(keys))
            }
            (_, reply) => reply,
        };
        replies.push(reply);
    }
    replies
}

/// Every key SCAN returns over a whole iteration, sorted, and the number of calls.
pub(crate) async fn scan_all(con: &mut redis::aio::MultiplexedConnection) -> (Vec<String>, usize) {
    let mut cursor = "0".to_owned();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let (next, page): (String, Vec<String>) = redis::cmd("SCAN")
            .arg(&cursor)
            .arg("COUNT")
            .arg(7)
            .query_async(con)
            .await
            .unwrap();
        calls += 1;
        keys.extend(page);
        if next == "0" {
            break;
        }
        cursor = next;
        assert!(calls < 10_000, "SCAN does not terminate");
    }
    keys.sort();
    keys.dedup();
    (keys, calls)
}

#[tokio::test]
async fn every_command_through_every_node_answers_as_a_single_node_would() {
    let single = start().await;
    let expected = run_script(&mut connect(&single).await).await;
    let nodes = start_cluster(3).await;
    for node in &nodes {
        let replies = run_script(&mut connect(node).await).await;
        for ((command, want), got) in SCRIPT.iter().zip(&expected).zip(&replies) {
            assert_eq!(got, want, "{command:?} through {}", view(node).self_id);
        }
    }
    // The script's keys really were spread: every node stored some of them.
    let mut con = connect(&nodes[0]).await;
    let keys: Vec<String> = (0..60).map(|i| format!("key:{i}")).collect();
    for key in &keys {
        ok(&mut con, &["SET", key, "x"]).await;
    }
    for node in &nodes {
        assert!(
            node.shared.store.dbsize(0) > 0,
            "{} holds no key",
            view(node).self_id
        );
    }
    // Keyspace commands answer for the whole cluster, through any node.
    for node in &nodes {
        let mut con = connect(node).await;
        assert_eq!(ok(&mut con, &["DBSIZE"]).await, int(60));
        let (scanned, calls) = scan_all(&mut con).await;
        let mut want = keys.clone();
        want.sort();
        assert_eq!(scanned, want);
        assert!(calls >= 3, "the cursor walks node by node");
        let Value::BulkString(random) = ok(&mut con, &["RANDOMKEY"]).await else {
            panic!("RANDOMKEY found no key");
        };
        assert!(keys.contains(&String::from_utf8(random).unwrap()));
        let info: String = redis::cmd("INFO")
            .arg("keyspace")
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(info.contains("db0:keys=60,expires=0"), "{info}");
    }
}

#[tokio::test]
async fn keys_of_different_owners_in_one_atomic_command_are_refused_like_crossslot() {
    let nodes = start_cluster(3).await;
    let view = view(&nodes[0]);
    let owner = |key: &str| view.ring.lookup(key.as_bytes()).unwrap().clone();
    let keys: Vec<String> = (0..50).map(|i| format!("key:{i}")).collect();
    let same = keys
        .iter()
        .find(|key| *key != "key:0" && owner(key) == owner("key:0"))
        .unwrap();
    let other = &key_of_another_owner(&view, "key:0");
    for node in &nodes {
        let mut con = connect(node).await;
        ok(&mut con, &["SET", "key:0", "v"]).await;
        assert_eq!(ok(&mut con, &["COPY", "key:0", same]).await, int(1));
        ok(&mut con, &["RENAME", same, "key:0"]).await;
        for command in [
            vec!["RENAME", "key:0", other.as_str()],
            vec!["RENAMENX", "key:0", other.as_str()],
            vec!["COPY", "key:0", other.as_str()],
            vec!["LCS", "key:0", other.as_str()],
            vec!["MSETNX", "key:0", "1", other.as_str(), "2"],
        ] {
            assert_eq!(
                err(&mut con, &command).await,
                "CROSSSLOT Keys in request don't hash to the same node",
                "{command:?}"
            );
        }
    }
}

/// A key whose owner (in `view`) is not `key`'s.
pub(crate) fn key_of_another_owner(view: &ClusterView, key: &str) -> String {
    let owner = |key: &str| view.ring.lookup(key.as_bytes()).unwrap().clone();
    (0..)
        .map(|i| format!("key:{i}"))
        .find(|other| owner(other) != owner(key))
        .unwrap()
}

/// Keys that share a `{hash tag}` have one owner, as in Redis Cluster, so the commands
/// that need their keys on one node work on them through any node.
#[tokio::test]
async fn keys_sharing_a_hash_tag_work_together_in_atomic_commands_through_every_node() {
    let nodes = start_cluster(3).await;
    let view = view(&nodes[0]);
    let owner = |key: &str| view.ring.lookup(key.as_bytes()).unwrap().clone();
    // The owner the key would have if it were hashed whole.
    let untagged_owner = |key: &str| {
        let token = quorra_ring::key_hash(key.as_bytes());
        view.ring.lookup_token(token).unwrap().clone()
    };
    // A tag whose keys would be on different nodes without it.
    let (a, b, c) = (0..100)
        .map(|i| {
            let key = |suffix| format!("{{user{i}}}:{suffix}");
            (key("a"), key("b"), key("c"))
        })
        .find(|(a, b, _)| untagged_owner(a) != untagged_owner(b))
        .unwrap();
    assert_eq!(owner(&a), owner(&b));
    for node in &nodes {
        let mut con = connect(node).await;
        ok(&mut con, &["DEL", &a, &b, &c]).await;
        assert_eq!(ok(&mut con, &["MSETNX", &a, "1", &b, "2"]).await, int(1));
        ok(&mut con, &["RENAME", &a, &c]).await;
        assert_eq!(ok(&mut con, &["COPY", &c, &a]).await, int(1));
        assert_eq!(
            ok(&mut con, &["MGET", &a, &b, &c]).await,
            Value::Array(vec![bulk("1"), bulk("2"), bulk("1")])
        );
    }
}

#[tokio::test]
async fn a_crashed_node_is_detected_its_keys_move_and_it_rejoins_on_restart() {
    let mut nodes = start_cluster(3).await;
    let crashed = nodes.pop().unwrap();
    let crashed_cluster_addr = cluster_addr(&crashed);
    let view_before = view(&nodes[0]);
    let on_crashed = (0..1000)
        .map(|i| format!("key:{i}"))
        .find(|key| view_before.ring.lookup(key.as_bytes()).unwrap().as_str() == "n2")
        .unwrap();
    let mut con = connect(&nodes[0]).await;
    ok(&mut con, &["SET", &on_crashed, "before"]).await;
    crashed.crash().await;

    // Until failure detection notices, the key's owner is unreachable: a clear error
    // that names it.
    let error = err(&mut con, &["GET", &on_crashed]).await;
    assert!(
        error.starts_with("CLUSTERDOWN node n2 at ")
            && error.contains(&crashed_cluster_addr.to_string()),
        "{error}"
    );

    for node in &nodes {
        let view = until(node, "n2 marked down", |view| {
            serving_ids(view) == ["n0", "n1"]
        })
        .await;
        assert_eq!(
            view.member(&"n2".into()).map(|m| m.state),
            Some(MemberState::Down)
        );
    }
    // Its keys now belong to the survivors (its data is gone: no replication yet).
    assert_eq!(ok(&mut con, &["GET", &on_crashed]).await, Value::Nil);
    ok(&mut con, &["SET", &on_crashed, "after"]).await;
    let mut other = connect(&nodes[1]).await;
    assert_eq!(ok(&mut other, &["GET", &on_crashed]).await, bulk("after"));

    // The same node id comes back (new ports, new generation) and is taken back in.
    let restarted = start_node("n2", Some(cluster_addr(&nodes[0])), SECRET).await;
    nodes.push(restarted);
    for node in &nodes {
        until(node, "n2 back", |view| {
            serving_ids(view) == ["n0", "n1", "n2"]
        })
        .await;
    }
    assert_eq!(
        ok(&mut con, &["GET", &on_crashed]).await,
        Value::Nil,
        "the key is n2's again, and the restarted n2 is empty"
    );
}

#[tokio::test]
async fn a_node_leaving_gracefully_is_dropped_without_failure_detection() {
    let mut nodes = start_cluster(3).await;
    let leaving = nodes.pop().unwrap();
    let watcher = nodes[0].shared.cluster.as_ref().unwrap().clone();
    let mut views = watcher.subscribe();
    let shutdown = tokio::spawn(leaving.shutdown());
    // The first view without n2 in the ring still lists it as leaving, not down: the
    // peers were told, they did not have to notice its silence.
    let dropped = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            views.changed().await.unwrap();
            let view = views.borrow_and_update().clone();
            if ring_ids(&view) == ["n0", "n1"] {
                return view;
            }
        }
    })
    .await
    .expect("n2 leaves the ring");
    assert_eq!(
        dropped.member(&"n2".into()).map(|m| m.state),
        Some(MemberState::Leaving)
    );
    shutdown.await.unwrap();
}

#[tokio::test]
async fn a_peer_without_the_secret_is_refused() {
    let nodes = start_cluster(2).await;
    let impostor = quorra_cluster::rpc::RpcClient::new(quorra_cluster::rpc::RpcConfig::new(
        "impostor",
        quorra_cluster::rpc::ClusterSecret::new("not the secret"),
    ));
    let request = quorra_cluster::message::Request::Execute {
        resp3: false,
        db: 0,
        commands: vec![vec!["FLUSHALL".into()]],
        replicate: None,
        primary_only: false,
        deadline_ms: u64::MAX,
        track: false,
    };
    let refused = impostor
        .call(cluster_addr(&nodes[0]), request.encode())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, quorra_cluster::rpc::RpcError::AuthFailed { .. }),
        "{refused}"
    );
    // A node started with another secret gossips into a different cluster id.
    let stranger = start_node("stranger", Some(cluster_addr(&nodes[0])), "other").await;
    let newcomer = start_node("n2", Some(cluster_addr(&nodes[0])), SECRET).await;
    until(&nodes[0], "n2 joined", |view| {
        serving_ids(view) == ["n0", "n1", "n2"]
    })
    .await;
    assert!(view(&nodes[0]).member(&"stranger".into()).is_none());
    // The stranger was given a seed but never heard from its cluster: it has not
    // joined, so it never counted itself as a cluster of one.
    let stranger_view = view(&stranger);
    assert!(!stranger_view.joined);
    assert!(stranger_view.ring.is_empty());
    drop(newcomer);
}

#[tokio::test]
async fn introspection_over_resp_and_http() {
    let nodes = start_cluster(3).await;
    let mut con = connect(&nodes[1]).await;
    let Value::BulkString(text) = ok(&mut con, &["QUORRA", "NODES"]).await else {
        panic!("QUORRA NODES is text");
    };
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines()
            .any(|line| line.starts_with("n1 up,myself resp=")),
        "{text}"
    );
    let owner = view(&nodes[1])
        .ring
        .lookup(b"greeting")
        .unwrap()
        .to_string();
    assert_eq!(
        ok(&mut con, &["QUORRA", "OWNERS", "greeting"]).await,
        array(vec![bulk(&owner)])
    );
    assert!(
        err(&mut con, &["QUORRA", "BOGUS"])
            .await
            .starts_with("ERR unknown subcommand")
    );
    assert!(
        err(&mut con, &["QUORRA", "OWNERS"])
            .await
            .contains("wrong number of arguments")
    );

    let http_addr = nodes[0].http_addr;
    let (status, body) = http(http_addr, "GET", "/v1/cluster", &[], b"").await;
    assert_eq!(status, 200);
    let cluster: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let listed: Vec<&str> = cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["n0", "n1", "n2"]);
    assert!(
        cluster["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|node| node["state"] == "up")
    );
    let (status, body) = http(http_addr, "GET", "/v1/ring", &[], b"").await;
    assert_eq!(status, 200);
    let ring: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let shares: f64 = ring["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-9);
    let (status, body) = http(http_addr, "GET", "/v1/keys/greeting/owners", &[], b"").await;
    assert_eq!(status, 200);
    let owners: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(owners["owners"], serde_json::json!([owner]));

    // The HTTP key routes work through any node, whoever owns the key.
    for (writer, reader) in [(0, 1), (1, 2), (2, 0)] {
        let path = format!("/v1/keys/http:{writer}");
        let (status, _) = http(nodes[writer].http_addr, "PUT", &path, &[], b"value").await;
        assert_eq!(status, 204);
        let (status, body) = http(nodes[reader].http_addr, "GET", &path, &[], b"").await;
        assert_eq!((status, body.as_slice()), (200, b"value".as_slice()));
        let (status, _) = http(nodes[reader].http_addr, "DELETE", &path, &[], b"").await;
        assert_eq!(status, 204);
        let (status, _) = http(nodes[writer].http_addr, "GET", &path, &[], b"").await;
        assert_eq!(status, 404);
    }
}

#[tokio::test]
async fn a_single_node_says_cluster_mode_is_off() {
    let node = start().await;
    let mut con = connect(&node).await;
    assert!(
        err(&mut con, &["QUORRA", "NODES"])
            .await
            .contains("cluster mode is off")
    );
    let (status, _) = http(node.http_addr, "GET", "/v1/cluster", &[], b"").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_pipeline_through_any_node_keeps_its_order_and_reads_its_own_writes() {
    pipeline_keeps_order_through_every_node(&start_cluster(3).await).await;
}

/// Sends a pipeline mixing writes, reads of what it just wrote, increments, and
/// commands that must wait for everything before them, through every node.
pub(crate) async fn pipeline_keeps_order_through_every_node(nodes: &[RunningServer]) {
    for node in nodes {
        let mut con = connect(node).await;
        ok(&mut con, &["FLUSHALL"]).await;
        let mut pipe = redis::pipe();
        let mut expected = Vec::new();
        for i in 0..400 {
            let key = format!("p:{}", i % 37);
            // A read before the write sees the write before it, not this one.
            pipe.cmd("GET").arg(&key);
            expected.push(if i >= 37 {
                bulk(&(i - 37).to_string())
            } else {
                Value::Nil
            });
            pipe.cmd("SET").arg(&key).arg(i);
            expected.push(Value::Okay);
            pipe.cmd("GET").arg(&key);
            expected.push(bulk(&i.to_string()));
            pipe.cmd("INCR").arg("p:counter");
            expected.push(int(i + 1));
            if i % 50 == 0 {
                // Commands that must wait for everything before them.
                pipe.cmd("PING");
                expected.push(Value::SimpleString("PONG".into()));
                pipe.cmd("MGET").arg(&key).arg("p:counter");
                expected.push(array(vec![
                    bulk(&i.to_string()),
                    bulk(&(i + 1).to_string()),
                ]));
            }
        }
        pipe.cmd("DBSIZE");
        expected.push(int(38));
        let replies: Vec<Value> = pipe.query_async(&mut con).await.unwrap();
        assert_eq!(replies.len(), expected.len());
        for (index, (got, want)) in replies.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "reply {index} through {}", view(node).self_id);
        }
    }
}

#[tokio::test]
async fn a_value_larger_than_the_default_rpc_frame_travels_through_a_non_owner() {
    let nodes = start_cluster(2).await;
    let key = (0..100)
        .map(|i| format!("big:{i}"))
        .find(|key| {
            view(&nodes[0])
                .ring
                .lookup(key.as_bytes())
                .unwrap()
                .as_str()
                == "n1"
        })
        .unwrap();
    let value = vec![b'v'; 20 << 20];
    let mut con = connect(&nodes[0]).await;
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(&value)
        .query_async(&mut con)
        .await
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(back == value, "20 MiB value came back changed");
}

#[tokio::test]
async fn a_forwarded_command_that_arrives_after_its_deadline_is_not_run() {
    let nodes = start_cluster(2).await;
    let peer = quorra_cluster::rpc::RpcClient::new(quorra_cluster::rpc::RpcConfig::new(
        "late-peer",
        quorra_cluster::rpc::ClusterSecret::new(SECRET),
    ));
    // A request its sender gave up on long ago, held up in the network until now.
    let request = quorra_cluster::message::Request::Execute {
        resp3: false,
        db: 0,
        commands: vec![vec!["SET".into(), "late".into(), "write".into()]],
        replicate: None,
        primary_only: false,
        deadline_ms: 1,
        track: false,
    };
    let refused = peer
        .call(cluster_addr(&nodes[0]), request.encode())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("after its deadline"),
        "{refused}"
    );
    assert_eq!(nodes[0].shared.store.get(b"late"), None);
}
