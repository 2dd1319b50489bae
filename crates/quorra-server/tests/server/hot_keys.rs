//! Hot-key detection with real processes: three nodes keeping three copies; a key read
//! far more than the others is found hot by the nodes that serve it, every node lists
//! it (`QUORRA HOTKEYS`, `GET /v1/hotkeys`, the metrics), and it cools down once the load
//! stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Value;

use crate::common::*;
use crate::failover::{Node, until_up};
use crate::http::http;

/// A map's fields and values: RESP2 sends a map as a flat array of them.
fn map_fields(map: Value) -> Vec<(Value, Value)> {
    match map {
        Value::Map(fields) => fields,
        Value::Array(flat) => flat
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect(),
        other => panic!("a map: {other:?}"),
    }
}

/// The keys `QUORRA HOTKEYS` lists at `node`, with the nodes that find each hot.
async fn hot_keys(node: &Node) -> Vec<(String, Vec<String>)> {
    let mut con = connect_url(&format!("redis://{}/", node.resp)).await;
    let Value::Array(keys) = ok(&mut con, &["QUORRA", "HOTKEYS"]).await else {
        panic!("QUORRA HOTKEYS answers an array");
    };
    keys.into_iter()
        .map(|key| {
            let fields = map_fields(key);
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(field, _)| *field == bulk(name))
                    .map(|(_, value)| value.clone())
                    .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
            };
            let text = |value: Value| match value {
                Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
                other => panic!("text expected: {other:?}"),
            };
            let Value::Array(nodes) = field("nodes") else {
                panic!("nodes is an array");
            };
            (text(field("key")), nodes.into_iter().map(text).collect())
        })
        .collect()
}

/// Three nodes keeping three copies, with `extra` flags, all up. A key is hot from 200
/// accesses a second and a tenth of a node's accesses: the popular key takes half, and
/// no other key comes near it even when a few samples of one land in the same window.
async fn start_cluster(extra: &[&str]) -> [Node; 3] {
    let mut flags = vec![
        "--replicas",
        "3",
        "--hot-key-min-ops-per-sec",
        "200",
        "--hot-key-min-share-permille",
        "100",
    ];
    flags.extend_from_slice(extra);
    let first = Node::start_with("n1", None, &flags);
    let second = Node::start_with("n2", Some(first.cluster), &flags);
    let third = Node::start_with("n3", Some(first.cluster), &flags);
    let nodes = [first, second, third];
    for node in &nodes {
        until_up(node, 3).await;
    }
    nodes
}

#[tokio::test]
async fn a_key_read_far_more_than_others_turns_hot_on_every_node_and_cools_down() {
    let [first, second, third] = start_cluster(&[]).await;
    let nodes = [&first, &second, &third];
    let mut con = connect_url(&format!("redis://{}/", first.resp)).await;
    ok(&mut con, &["SET", "popular", "v"]).await;
    for n in 0..200 {
        ok(&mut con, &["SET", &format!("other:{n}"), "v"]).await;
    }
    for node in nodes {
        assert!(
            hot_keys(node).await.is_empty(),
            "nothing is hot before the load"
        );
    }

    // Half of every pipeline reads the popular key, the other half 200 others.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (stop, mut con) = (stop.clone(), con.clone());
        async move {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut pipe = redis::pipe();
                for n in 0..50 {
                    pipe.get("popular")
                        .get(format!("other:{}", (round * 50 + n) % 200));
                }
                let _: Vec<Option<String>> = pipe.query_async(&mut con).await.unwrap();
                round += 1;
            }
        }
    });
    let started = Instant::now();
    let mut owners: Vec<String> = redis::cmd("QUORRA")
        .arg("OWNERS")
        .arg("popular")
        .query_async(&mut con)
        .await
        .unwrap();
    owners.sort();
    let mut seen_everywhere = None;
    while Instant::now() < started + Duration::from_secs(30) {
        let mut listed = 0;
        for node in nodes {
            let hot = hot_keys(node).await;
            if let Some((_, finders)) = hot.iter().find(|(key, _)| key == "popular") {
                assert!(
                    finders.iter().all(|finder| owners.contains(finder)),
                    "only nodes holding the key can find it hot: {finders:?} of {owners:?}"
                );
                listed += 1;
            }
            assert!(
                hot.iter().all(|(key, _)| key == "popular"),
                "no other key is hot: {hot:?}"
            );
        }
        if listed == nodes.len() {
            seen_everywhere = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = seen_everywhere.expect("every node lists the popular key within 30 s");
    eprintln!("the popular key was listed on every node {took:?} after its load began");

    // The HTTP API and the metrics say so too.
    let (status, body) = http(second.http, "GET", "/v1/hotkeys", &[], b"").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["hotkeys"][0]["key"], "popular", "{json}");
    assert!(
        json["hotkeys"][0]["ops_per_sec"].as_u64().unwrap() >= 200,
        "{json}"
    );
    let mut turned_hot = 0;
    for node in nodes {
        let (_, metrics) = http(node.http, "GET", "/metrics", &[], b"").await;
        let metrics = String::from_utf8(metrics).unwrap();
        turned_hot += metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix("quorra_hot_key_transitions_total{event=\"turned_hot\"} ")
            })
            .unwrap_or_else(|| panic!("no transitions counted: {metrics}"))
            .parse::<u64>()
            .unwrap();
    }
    assert!(turned_hot >= 1, "a node counted the key turning hot");

    // Without the load it cools down, everywhere.
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in nodes {
        while !hot_keys(node).await.is_empty() {
            assert!(Instant::now() < deadline, "the popular key cools down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `INFO cluster`'s `field` at `node`.
async fn info_field(node: &Node, field: &str) -> u64 {
    let mut con = connect_url(&format!("redis://{}/", node.resp)).await;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut con)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_hot_key_is_answered_by_every_node_from_its_copy_and_survives_two_nodes_dying() {
    // Copies are on by default.
    let mut nodes = start_cluster(&[]).await;
    let mut connections = Vec::new();
    for node in &nodes {
        connections.push(connect_url(&format!("redis://{}/", node.resp)).await);
    }
    for n in 0..20 {
        ok(&mut connections[0], &["SET", &format!("other:{n}"), "o"]).await;
    }
    ok(&mut connections[0], &["SET", "popular", "v1"]).await;
    ok(&mut connections[0], &["SET", "quiet", "q"]).await;

    // Through every node, two clients: one reads the popular key, one reads others,
    // as many requests each.
    let stop = Arc::new(AtomicBool::new(false));
    let mut loads = Vec::new();
    for node in &nodes {
        for popular in [true, false] {
            let mut con = connect_url(&format!("redis://{}/", node.resp)).await;
            let stop = stop.clone();
            loads.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut pipe = redis::pipe();
                    for n in 0..20 {
                        match popular {
                            true => pipe.get("popular"),
                            false => pipe.get(format!("other:{n}")),
                        };
                    }
                    let answered: Result<Vec<Option<String>>, _> = pipe.query_async(&mut con).await;
                    if answered.is_err() {
                        // Its node was killed: a dead connection fails at once, and the
                        // test's runtime has one thread to share.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }));
        }
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    for node in &nodes {
        while info_field(node, "quorra_hot_cache_hits").await == 0 {
            assert!(
                Instant::now() < deadline,
                "every node answers the key from a copy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!(
        "every node answered the popular key from its copy {:?} after its load began",
        started.elapsed()
    );

    // A write through one node is acknowledged once every node's copy is gone: each
    // answers the new value at once.
    ok(&mut connections[1], &["SET", "popular", "v2"]).await;
    for con in &mut connections {
        assert_eq!(ok(con, &["GET", "popular"]).await, bulk("v2"));
    }

    // Two of three nodes killed: once they are found down, the last one answers the hot
    // key again (from its copy, now read from its own store: consistency level ONE),
    // while a quorum read of another key cannot be answered. Until then its copy's
    // lease runs out, since the primary it was read from no longer answers.
    nodes[1].kill();
    nodes[2].kill();
    let killed = Instant::now();
    let checks = async {
        let mut last = connect_url(&format!("redis://{}/", nodes[0].resp)).await;
        while run(&mut last, &["GET", "popular"]).await.ok() != Some(bulk("v2")) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "the last node answered the hot key again {:?} after two were killed",
            killed.elapsed()
        );
        let refused = err(&mut last, &["GET", "quiet"]).await;
        assert!(refused.contains("NOQUORUM"), "{refused}");
    };
    tokio::time::timeout(Duration::from_secs(60), checks)
        .await
        .expect("the last node answers");
    stop.store(true, Ordering::Relaxed);
    for load in loads {
        load.abort();
    }
}

/// `QUORRA HOT key`'s map at `node`: (hot, pinned, copied).
async fn hot_status(node: &Node, key: &str) -> (i64, i64, i64) {
    let mut con = connect_url(&format!("redis://{}/", node.resp)).await;
    let fields = map_fields(ok(&mut con, &["QUORRA", "HOT", key]).await);
    let field = |name: &str| match fields.iter().find(|(field, _)| *field == bulk(name)) {
        Some((_, Value::Int(n))) => *n,
        other => panic!("{name}: {other:?}"),
    };
    (field("hot"), field("pinned"), field("copied"))
}

#[tokio::test]
async fn a_key_pinned_by_hand_is_copied_to_every_node_until_unpinned() {
    let nodes = start_cluster(&[]).await;
    let mut con = connect_url(&format!("redis://{}/", nodes[1].resp)).await;
    assert_eq!(
        err(&mut con, &["QUORRA", "HOT", "missing", "ON"]).await,
        "ERR no such key"
    );
    assert_eq!(
        err(&mut con, &["QUORRA", "HOT", "missing", "MAYBE"]).await,
        "ERR syntax error"
    );
    ok(&mut con, &["SET", "pinned", "v"]).await;
    assert_eq!(
        ok(&mut con, &["QUORRA", "HOT", "pinned", "ON"]).await,
        Value::Okay
    );
    // Pinned on every node; each copies it within a refresh or two, with no load.
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in &nodes {
        while hot_status(node, "pinned").await != (1, 1, 1) {
            assert!(
                Instant::now() < deadline,
                "every node pins and copies the key"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        hot_keys(&nodes[2])
            .await
            .iter()
            .any(|(key, _)| key == "pinned")
    );
    assert_eq!(
        ok(&mut con, &["QUORRA", "HOT", "pinned", "OFF"]).await,
        Value::Okay
    );
    for node in &nodes {
        while hot_status(node, "pinned").await != (0, 0, 0) {
            assert!(
                Instant::now() < deadline,
                "unpinned everywhere, the copies go"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The HTTP flag NexusCache users know.
    let (status, _) = http(nodes[0].http, "PUT", "/v1/keys/flagged?hot=true", &[], b"v").await;
    assert_eq!(status, 204);
    for node in &nodes {
        assert_eq!(
            hot_status(node, "flagged").await.1,
            1,
            "pinned on every node"
        );
    }
    let (status, body) = http(
        nodes[0].http,
        "PUT",
        "/v1/keys/flagged?hot=maybe",
        &[],
        b"v",
    )
    .await;
    assert_eq!(status, 400);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("hot must be true or false"),
        "{error}"
    );
}

#[tokio::test]
async fn a_single_node_pins_and_refuses_a_missing_key_alike() {
    let server = start().await;
    let mut con = connect(&server).await;
    assert_eq!(
        err(&mut con, &["QUORRA", "HOT", "missing", "ON"]).await,
        "ERR no such key"
    );
    ok(&mut con, &["SET", "k", "v"]).await;
    assert_eq!(
        ok(&mut con, &["QUORRA", "HOT", "k", "ON"]).await,
        Value::Okay
    );
    let Value::Array(hot) = ok(&mut con, &["QUORRA", "HOTKEYS"]).await else {
        panic!("an array");
    };
    assert_eq!(hot.len(), 1, "the pinned key is listed: {hot:?}");
    assert_eq!(
        err(&mut con, &["QUORRA", "HOT"]).await,
        "ERR wrong number of arguments for 'quorra|hot' command"
    );
}
