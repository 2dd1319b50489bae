//! Pub/sub: messages published on any node reach the subscribers on every node, once
//! and in publish order; a subscriber that stops reading is disconnected at its limit;
//! RESP2's subscribed mode. (Client libraries on several nodes: `compat.rs`; a stalled
//! subscriber against the real binary's RSS: `process.rs`.)

use std::time::Duration;

use futures_util::StreamExt;
use redis::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::{eventually, start_cluster_with};
use crate::common::*;

/// A connection for (P|S)SUBSCRIBE through the redis crate.
async fn pubsub_client(node: &quorra_server::RunningServer) -> redis::aio::PubSub {
    redis::Client::open(format!("redis://{}/", node.resp_addr))
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap()
}

/// Messages published in all, spread over one publisher per node.
const TOTAL: usize = 10_000;

// Beside the suite's other cluster tests on two cores, this is the relay under load: RPC
// timeouts, batches sent again, failure detectors' false alarms (docs/pubsub.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_on_every_node_gets_every_message_once_in_publish_order() {
    // Gossip at the default pace: a million deliveries by a debug build keep the test
    // process busy for seconds, and the tests' faster gossip would take that for nodes
    // going down.
    let nodes = start_cluster_with(3, |config| {
        config.gossip_interval = quorra_cluster::membership::DEFAULT_GOSSIP_INTERVAL;
    })
    .await;
    let mut subscribers = Vec::new();
    for i in 0..100 {
        let mut pubsub = pubsub_client(&nodes[i % 3]).await;
        pubsub.subscribe("feed").await.unwrap();
        subscribers.push(pubsub.into_on_message());
    }
    let collectors: Vec<_> = subscribers
        .into_iter()
        .map(|mut messages| {
            tokio::spawn(async move {
                let mut payloads = Vec::with_capacity(TOTAL);
                while payloads.len() < TOTAL {
                    match tokio::time::timeout(Duration::from_secs(60), messages.next()).await {
                        Ok(Some(message)) => {
                            payloads.push(message.get_payload::<String>().unwrap())
                        }
                        _ => break,
                    }
                }
                // Nothing more arrives: each message came once. (A batch sent again
                // after it had arrived counts in `quorra_pubsub_relay_duplicates`.)
                let extra = tokio::time::timeout(Duration::from_millis(300), messages.next()).await;
                (payloads, extra.is_ok())
            })
        })
        .collect();
    let per_publisher = [TOTAL - 2 * (TOTAL / 3), TOTAL / 3, TOTAL / 3];
    let publishers: Vec<_> = (0..3)
        .map(|publisher| {
            let addr = nodes[publisher].resp_addr;
            tokio::spawn(async move {
                let mut con = connect_url(&format!("redis://{addr}/")).await;
                let sequence: Vec<usize> = (0..per_publisher[publisher]).collect();
                for chunk in sequence.chunks(100) {
                    let mut pipe = redis::pipe();
                    for seq in chunk {
                        pipe.cmd("PUBLISH")
                            .arg("feed")
                            .arg(format!("{publisher}:{seq}"))
                            .ignore();
                    }
                    let () = pipe.query_async(&mut con).await.unwrap();
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let mut outcomes = Vec::new();
    for collector in collectors {
        outcomes.push(collector.await.unwrap());
    }
    // The nodes' pub/sub figures, to tell a failure's cause.
    let mut figures = String::new();
    for node in &nodes {
        let mut con = connect(node).await;
        if let Value::BulkString(stats) = ok(&mut con, &["INFO", "stats"]).await {
            let stats = String::from_utf8_lossy(&stats).into_owned();
            let pubsub: Vec<&str> = stats
                .lines()
                .filter(|line| line.contains("pubsub"))
                .collect();
            figures.push_str(&format!("\n{}", pubsub.join(" ")));
        }
    }
    for (subscriber, (payloads, extra)) in outcomes.into_iter().enumerate() {
        assert_eq!(
            payloads.len(),
            TOTAL,
            "subscriber {subscriber}; nodes:{figures}"
        );
        assert!(!extra, "subscriber {subscriber} got a message twice");
        let mut next = [0usize; 3];
        for payload in &payloads {
            let (publisher, seq) = payload.split_once(':').unwrap();
            let publisher: usize = publisher.parse().unwrap();
            assert_eq!(
                seq.parse::<usize>().unwrap(),
                next[publisher],
                "subscriber {subscriber}: publisher {publisher}'s messages in order"
            );
            next[publisher] += 1;
        }
    }
}

/// Sends `input` on `socket` and reads what arrives until it is quiet for a moment.
async fn exchange(socket: &mut TcpStream, input: &[u8]) -> String {
    socket.write_all(input).await.unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(Ok(n @ 1..)) =
        tokio::time::timeout(Duration::from_millis(300), socket.read(&mut chunk)).await
    {
        reply.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn a_resp2_subscriber_may_only_subscribe_ping_and_leave_and_is_never_timed_out() {
    let node = start_with(|config| config.timeout = Some(Duration::from_secs(1))).await;
    let mut socket = TcpStream::connect(node.resp_addr).await.unwrap();
    let reply = exchange(&mut socket, b"SUBSCRIBE a\r\nGET k\r\nPING\r\nPING hi\r\n").await;
    assert_eq!(
        reply,
        "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n\
         -ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n\
         *2\r\n$4\r\npong\r\n$0\r\n\r\n*2\r\n$4\r\npong\r\n$2\r\nhi\r\n"
    );
    // Past `timeout`, a subscriber still gets its messages.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut publisher = connect(&node).await;
    let Value::BulkString(clients) = ok(&mut publisher, &["CLIENT", "LIST"]).await else {
        panic!("CLIENT LIST is a bulk string")
    };
    let clients = String::from_utf8(clients).unwrap();
    assert!(
        clients.contains("flags=P db=0 sub=1 psub=0 ssub=0"),
        "{clients}"
    );
    assert_eq!(ok(&mut publisher, &["PUBLISH", "a", "late"]).await, int(1));
    let reply = exchange(
        &mut socket,
        b"UNSUBSCRIBE\r\nSET k v\r\nMULTI\r\nSUBSCRIBE b\r\n",
    )
    .await;
    assert_eq!(
        reply,
        "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$4\r\nlate\r\n\
         *3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n+OK\r\n+OK\r\n\
         -ERR Command not allowed inside a transaction\r\n"
    );
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected_at_its_limit() {
    let node = start_with(|config| config.client_output_buffer_limit_pubsub = 1 << 20).await;
    let mut stalled = TcpStream::connect(node.resp_addr).await.unwrap();
    let confirmation = exchange(&mut stalled, b"SUBSCRIBE flood\r\n").await;
    assert!(confirmation.starts_with("*3\r\n$9\r\nsubscribe"));
    let mut reader = connect(&node).await;
    let mut listening = pubsub_client(&node).await;
    listening.subscribe("flood").await.unwrap();
    let mut messages = listening.into_on_message();
    let message = "m".repeat(64 * 1024);
    let mut publisher = connect(&node).await;
    // 32 MiB, far past the stalled subscriber's 1 MiB and its socket's buffers.
    for _ in 0..512 {
        ok(&mut publisher, &["PUBLISH", "flood", &message]).await;
        messages.next().await.unwrap();
    }
    eventually("the stalled subscriber is closed", async || {
        let Value::BulkString(stats) = ok(&mut reader, &["INFO", "stats"]).await else {
            return false;
        };
        String::from_utf8_lossy(&stats).contains("quorra_pubsub_disconnected_subscribers:1")
    })
    .await;
    assert_eq!(
        ok(&mut reader, &["PUBSUB", "NUMSUB", "flood"]).await,
        array(vec![bulk("flood"), int(1)]),
        "only the reading subscriber is left"
    );
    // The stalled client finds its connection closed once it reads what was sent.
    let mut chunk = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        while stalled.read(&mut chunk).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    assert!(closed.is_ok(), "the connection was closed");
}

/// The `(channel, message)` pairs `messages` yields until it is quiet for `quiet`.
async fn drain(messages: &mut redis::aio::PubSubStream, quiet: Duration) -> Vec<(String, String)> {
    let mut received = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(quiet, messages.next()).await {
        received.push((
            message.get_channel_name().to_owned(),
            message.get_payload::<String>().unwrap(),
        ));
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_copies_an_expired_key_raises_one_event_from_its_primary() {
    let nodes = start_cluster_with(3, |config| {
        config.consistency.replicas = 3;
        config.gossip_interval = quorra_cluster::membership::DEFAULT_GOSSIP_INTERVAL;
    })
    .await;
    for node in &nodes {
        let mut con = connect(node).await;
        ok(&mut con, &["CONFIG", "SET", "notify-keyspace-events", "Ex"]).await;
    }
    let mut pubsub = pubsub_client(&nodes[0]).await;
    pubsub.psubscribe("__keyevent@0__:*").await.unwrap();
    let mut messages = pubsub.into_on_message();
    let mut writer = connect(&nodes[1]).await;
    for i in 0..20 {
        ok(
            &mut writer,
            &["SET", &format!("short{i}"), "v", "PX", "100"],
        )
        .await;
    }
    ok(&mut writer, &["SET", "long", "v", "EX", "600"]).await;
    // The active expiry cycle (10 times a second) finds them on every replica.
    let received = drain(&mut messages, Duration::from_secs(2)).await;
    let mut keys: Vec<&str> = received
        .iter()
        .map(|(channel, key)| {
            assert_eq!(channel, "__keyevent@0__:expired");
            key.as_str()
        })
        .collect();
    keys.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("short{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected, "each key once, not once per replica");
}

#[tokio::test]
async fn keys_evicted_for_memory_raise_evicted_events() {
    let node = start_with(|config| {
        config.maxmemory = 1 << 20;
        config.notify_keyspace_events = quorra_node::notifications::parse(b"Ee").unwrap();
    })
    .await;
    let mut pubsub = pubsub_client(&node).await;
    pubsub.subscribe("__keyevent@0__:evicted").await.unwrap();
    let mut messages = pubsub.into_on_message();
    let mut con = connect(&node).await;
    let value = "v".repeat(1_000);
    for i in 0..3_000 {
        ok(&mut con, &["SET", &format!("fill{i}"), &value]).await;
    }
    let received = drain(&mut messages, Duration::from_millis(500)).await;
    let Value::BulkString(stats) = ok(&mut con, &["INFO", "stats"]).await else {
        panic!("INFO is a bulk string")
    };
    let evicted: usize = String::from_utf8(stats)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("evicted_keys:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(evicted > 1_000, "{evicted}");
    assert_eq!(received.len(), evicted, "one event per eviction");
    assert!(received.iter().all(|(_, key)| key.starts_with("fill")));
}

#[tokio::test]
async fn a_pathological_pattern_costs_a_bounded_match_and_the_node_keeps_answering() {
    let node = start().await;
    let mut pubsub = pubsub_client(&node).await;
    // `*a*a*...*b` against a channel of `a`s: the backtracking a naive glob matcher
    // makes exponential. Redis's two guards (a star that has tried every suffix ends the
    // match; nesting past 1,000 stars gives up) keep it polynomial.
    let pattern = format!("{}b", "*a".repeat(2_000));
    pubsub.psubscribe(&pattern).await.unwrap();
    pubsub.psubscribe("*").await.unwrap();
    let mut messages = pubsub.into_on_message();
    let mut publisher = connect(&node).await;
    let channel = "a".repeat(20_000);
    for _ in 0..10 {
        assert_eq!(
            ok(&mut publisher, &["PUBLISH", &channel, "m"]).await,
            int(1),
            "only `*` matches"
        );
    }
    for _ in 0..10 {
        let message = messages.next().await.unwrap();
        assert_eq!(message.get_pattern::<String>().unwrap(), "*");
    }
    assert_eq!(
        ok(&mut publisher, &["PING"]).await,
        Value::SimpleString("PONG".into())
    );
}
