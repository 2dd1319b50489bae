//! The admin API's cluster routes that the dashboard reads: the overview and each
//! node's health from gossip, one bounded SCAN page with each key's details, binary
//! keys and truncated values, the console, node actions, and the refusals of requests
//! another site's page sends.

use std::time::{Duration, Instant};

use quorra_server::RunningServer;
use serde_json::Value;

use crate::cluster::*;
use crate::common::*;
use crate::http::{http, json};

async fn get_json(node: &RunningServer, path: &str) -> Value {
    let (status, body) = http(node.http_addr, "GET", path, &[], b"").await;
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    json(&body)
}

/// Polls `path` every 50 ms until `check` accepts its JSON, for at most 15 s.
async fn until_json(node: &RunningServer, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = get_json(node, path).await;
        if check(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{path} never matched: {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_and_every_node_s_figures_come_from_gossip() {
    let nodes = start_cluster_with(3, |config| config.consistency.replicas = 3).await;
    let mut con = connect(&nodes[1]).await;
    for i in 0..300 {
        ok(&mut con, &["SET", &format!("k{i}"), "v"]).await;
        ok(&mut con, &["GET", &format!("k{i}")]).await;
        ok(&mut con, &["GET", "missing"]).await;
    }
    // The figures of the last second reach every node through gossip: wait for a
    // sample that saw traffic, then check what it says.
    let overview = until_json(&nodes[0], "/v1/overview", |overview| {
        overview["ops_per_sec"].as_u64() > Some(0) && overview["keys"] == 300
    })
    .await;
    assert_eq!(overview["nodes_up"], 3);
    assert_eq!(overview["consistency"]["replicas"], 3);
    assert_eq!(overview["consistency"]["write"], "QUORUM");
    let ratio = overview["hit_ratio"].as_f64().expect("reads were made");
    assert!(ratio > 0.2 && ratio < 0.8, "half the reads hit: {ratio}");
    assert!(
        overview["latency_p99_ms"].as_f64() > Some(0.0),
        "{overview}"
    );
    let cluster = until_json(&nodes[2], "/v1/cluster", |cluster| {
        cluster["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|node| node["stats"]["rss_bytes"].as_u64() > Some(0))
    })
    .await;
    for node in cluster["nodes"].as_array().unwrap() {
        // No maxmemory: never degraded for memory (CPU depends on the machine: these
        // nodes share one test process).
        let reasons = node["health_reasons"].as_array().unwrap();
        assert!(!reasons.contains(&"memory".into()), "{node}");
        assert_eq!(
            node["stats"]["keys"], 300,
            "three copies on three nodes: {node}"
        );
        assert!(node["stats"]["cpu_percent"].as_f64().is_some());
    }
    let ring = get_json(&nodes[0], "/v1/ring?tokens=true").await;
    let tokens: usize = ring["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["tokens"].as_array().unwrap().len())
        .sum();
    assert_eq!(tokens as u64, ring["vnodes"].as_u64().unwrap());
}

#[tokio::test]
async fn a_node_over_its_memory_threshold_is_degraded_until_it_is_back_below() {
    let node = start_with(|config| {
        config.cluster = Some(cluster_config("n0", None, SECRET));
        config.maxmemory = 4 << 20;
        config.degraded_thresholds.memory_percent = 50;
        // The test process runs many nodes at once: its CPU says nothing of this one.
        config.degraded_thresholds.cpu_percent = 100;
    })
    .await;
    let mut con = connect(&node).await;
    let value = "x".repeat(100_000);
    for i in 0..30 {
        ok(&mut con, &["SET", &format!("big{i}"), &value]).await;
    }
    let degraded = |cluster: &Value| cluster["nodes"][0]["health"] == "degraded";
    let cluster = until_json(&node, "/v1/cluster", degraded).await;
    assert_eq!(
        cluster["nodes"][0]["health_reasons"],
        serde_json::json!(["memory"])
    );
    let nodes: String = redis::cmd("QUORRA")
        .arg("NODES")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(nodes.contains("health=degraded:memory"), "{nodes}");
    let (_, metrics) = http(node.http_addr, "GET", "/metrics", &[], b"").await;
    assert!(
        String::from_utf8_lossy(&metrics).contains("quorra_degraded 1"),
        "the gauge says so too"
    );
    ok(&mut con, &["FLUSHALL"]).await;
    until_json(&node, "/v1/cluster", |cluster| {
        cluster["nodes"][0]["health_reasons"] == serde_json::json!([])
    })
    .await;
}

#[tokio::test]
async fn a_scan_page_is_bounded_and_describes_binary_keys_and_large_values() {
    let nodes = start_cluster_with(3, |config| config.consistency.replicas = 2).await;
    let mut con = connect(&nodes[0]).await;
    for i in 0..2_000 {
        ok(&mut con, &["SET", &format!("many:{i}"), "v"]).await;
    }
    let _: () = redis::cmd("SET")
        .arg(b"bin\xff".as_slice())
        .arg(b"\x00\x01")
        .query_async(&mut con)
        .await
        .unwrap();
    let big = "b".repeat(20 << 20);
    ok(&mut con, &["SET", "big", &big, "EX", "600"]).await;
    let page = get_json(&nodes[1], "/v1/scan?match=many:*&count=10").await;
    let keys = page["keys"].as_array().unwrap();
    assert!(keys.len() <= 40, "one bounded page: {}", keys.len());
    assert_ne!(page["cursor"], "0", "more pages follow");
    let (status, body) = http(nodes[1].http_addr, "GET", "/v1/scan?count=100000", &[], b"").await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // Every key, page by page, with its details.
    let (mut cursor, mut seen) = ("0".to_owned(), Vec::new());
    loop {
        let page = get_json(&nodes[2], &format!("/v1/scan?cursor={cursor}&count=500")).await;
        seen.extend(page["keys"].as_array().unwrap().iter().cloned());
        cursor = page["cursor"].as_str().unwrap().to_owned();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 2_002);
    let binary = seen.iter().find(|key| key["binary"] == true).unwrap();
    assert_eq!(binary["key_hex"], "62696eff");
    assert_eq!(binary["owners"].as_array().unwrap().len(), 2);
    let large = seen.iter().find(|key| key["key"] == "big").unwrap();
    assert_eq!(large["type"], "string");
    assert!(large["ttl_ms"].as_i64() > Some(590_000), "{large}");
    assert!(large["size"].as_u64() > Some(20 << 20), "{large}");
    // The binary key by its percent-encoded bytes; the large value cut short.
    let (status, body) = http(nodes[1].http_addr, "GET", "/v1/keys/bin%FF", &[], b"").await;
    assert_eq!((status, body), (200, b"\x00\x01".to_vec()));
    let (status, body) = http(nodes[2].http_addr, "GET", "/v1/keys/big?limit=4", &[], b"").await;
    assert_eq!((status, body), (200, b"bbbb".to_vec()));
    let head = raw_head(&nodes[2], "/v1/keys/big?limit=4").await;
    assert!(head.contains("x-quorra-value-length: 20971520"), "{head}");
    let (status, _) = http(
        nodes[2].http_addr,
        "GET",
        "/v1/keys/nothing?limit=4",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 404);
}

/// The response head of a GET, lower-cased.
async fn raw_head(node: &RunningServer, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(node.http_addr)
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        node.http_addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_lowercase();
    text.split("\r\n\r\n").next().unwrap().to_owned()
}

#[tokio::test]
async fn the_console_runs_one_command_through_the_request_path() {
    let nodes = start_cluster_with(2, |_| {}).await;
    let addr = nodes[0].http_addr;
    let post = |body: &'static str| async move {
        let headers = ["Content-Type: application/json"];
        let (status, reply) = http(addr, "POST", "/v1/command", &headers, body.as_bytes()).await;
        (status, json(&reply))
    };
    assert_eq!(
        post(r#"{"args": ["SET", "c", "v"]}"#).await,
        (200, serde_json::json!({"reply": "OK"}))
    );
    assert_eq!(
        post(r#"{"args": ["MGET", "c", "none"]}"#).await.1["reply"],
        serde_json::json!(["v", null])
    );
    assert_eq!(
        post(r#"{"args": ["INCR", "c"]}"#).await.1["reply"]["error"],
        "ERR value is not an integer or out of range"
    );
    for refused in [
        r#"{"args": ["MULTI"]}"#,
        r#"{"args": ["SUBSCRIBE", "news"]}"#,
        r#"{"args": []}"#,
        r#"{"args": "GET"}"#,
        "not json",
    ] {
        let (status, body) = post(refused).await;
        assert_eq!(status, 400, "{refused}: {body}");
        assert!(body["error"].is_string(), "{refused}: {body}");
    }
    let mut con = connect(&nodes[1]).await;
    assert_eq!(ok(&mut con, &["GET", "c"]).await, bulk("v"));
    // Node actions: a serving node cannot be forgotten; an unknown one is 404; leave
    // reaches the named node.
    let (status, _) = http(nodes[0].http_addr, "POST", "/v1/nodes/n1/forget", &[], b"").await;
    assert_eq!(status, 400);
    let (status, _) = http(nodes[0].http_addr, "POST", "/v1/nodes/nope/leave", &[], b"").await;
    assert_eq!(status, 404);
    assert!(!nodes[1].shared.leave_requested.is_cancelled());
    let (status, body) = http(nodes[0].http_addr, "POST", "/v1/nodes/n1/leave", &[], b"").await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    assert!(nodes[1].shared.leave_requested.is_cancelled());
    assert!(!nodes[0].shared.leave_requested.is_cancelled());
}

#[tokio::test]
async fn requests_another_site_sends_are_refused() {
    let node = start().await;
    let addr = node.http_addr;
    let origin = format!("Origin: http://{addr}");
    let (status, _) = http(addr, "GET", "/v1/stats", &[&origin], b"").await;
    assert_eq!(status, 200, "the dashboard's own page");
    let (status, body) = http(
        addr,
        "POST",
        "/v1/command",
        &["Origin: http://evil.example"],
        br#"{"args":["FLUSHALL"]}"#,
    )
    .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("another site")
    );
    // DNS rebinding: a site's name pointed at this machine.
    let (status, _) =
        raw_request(&node, "GET /v1/stats HTTP/1.1\r\nHost: evil.example:1\r\n").await;
    assert_eq!(status, 403);
    let (status, _) = raw_request(
        &node,
        &format!(
            "GET /v1/stats HTTP/1.1\r\nHost: localhost:{}\r\n",
            addr.port()
        ),
    )
    .await;
    assert_eq!(status, 200);
    let head = raw_head(&node, "/v1/stats").await;
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
}

/// Sends a request head (without its final blank line) and returns the status.
async fn raw_request(node: &RunningServer, head: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(node.http_addr)
        .await
        .unwrap();
    socket
        .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

/// The key browser given a pattern that matches a million keys: each page holds at
/// most `count` keys whatever the pattern matches, and the node serves others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_matching_a_million_keys_is_answered_page_by_page() {
    let node = start().await;
    // Straight into the store: a million SETs through a client would only slow the test.
    for batch in 0..1_000 {
        let pairs: Vec<(String, &str)> = (0..1_000)
            .map(|i| (format!("m:{}", batch * 1_000 + i), "v"))
            .collect();
        node.shared.store.mset(&pairs).unwrap();
    }
    let mut con = connect(&node).await;
    assert_eq!(ok(&mut con, &["DBSIZE"]).await, int(1_000_000));
    let mut cursor = "0".to_owned();
    for _ in 0..3 {
        let page = get_json(
            &node,
            &format!("/v1/scan?cursor={cursor}&match=m:*&count=100"),
        )
        .await;
        let keys = page["keys"].as_array().unwrap();
        assert!(!keys.is_empty() && keys.len() <= 100, "{} keys", keys.len());
        cursor = page["cursor"].as_str().unwrap().to_owned();
        assert_ne!(cursor, "0", "a million keys do not fit in three pages");
        assert_eq!(
            ok(&mut con, &["PING"]).await,
            redis::Value::SimpleString("PONG".into())
        );
    }
}
