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

/// The keys `QUORRA HOTKEYS` lists at `node`, with the nodes that find each hot.
async fn hot_keys(node: &Node) -> Vec<(String, Vec<String>)> {
    let mut con = connect_url(&format!("redis://{}/", node.resp)).await;
    let Value::Array(keys) = ok(&mut con, &["QUORRA", "HOTKEYS"]).await else {
        panic!("QUORRA HOTKEYS answers an array");
    };
    keys.into_iter()
        .map(|key| {
            // A map, which RESP2 sends as a flat array of fields and values.
            let fields: Vec<(Value, Value)> = match key {
                Value::Map(fields) => fields,
                Value::Array(flat) => flat
                    .chunks(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect(),
                other => panic!("one map per key: {other:?}"),
            };
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

#[tokio::test]
async fn a_key_read_far_more_than_others_turns_hot_on_every_node_and_cools_down() {
    let flags = ["--replicas", "3", "--hot-key-min-ops-per-sec", "200"];
    let first = Node::start_with("n1", None, &flags);
    let second = Node::start_with("n2", Some(first.cluster), &flags);
    let third = Node::start_with("n3", Some(first.cluster), &flags);
    let nodes = [&first, &second, &third];
    for node in nodes {
        until_up(node, 3).await;
    }
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
    let primary = [&first, &second, &third]
        .into_iter()
        .zip(["n1", "n2", "n3"])
        .find(|(_, id)| *id == owners[0])
        .map(|(node, _)| node)
        .unwrap();
    let (_, metrics) = http(primary.http, "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("quorra_hot_key_transitions_total{event=\"turned_hot\"} 1"),
        "{metrics}"
    );

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
