//! Replication with real processes: three `quorra server` processes under continuous
//! quorum writes and reads; one is killed with SIGKILL and started again.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use crate::common::*;
use crate::http::http;

const SECRET: &str = "failover test secret";

/// A `quorra server` process in cluster mode; killed on drop.
struct Node {
    child: Child,
    resp: SocketAddr,
    http: SocketAddr,
    cluster: SocketAddr,
    data_dir: PathBuf,
}

impl Node {
    /// Starts node `id` with a data directory of its own.
    fn start(id: &str, seed: Option<SocketAddr>) -> Node {
        Node::start_in(id, seed, fresh_data_dir())
    }

    /// Starts node `id` with its data in `data_dir` (a restart passes the old one).
    fn start_in(id: &str, seed: Option<SocketAddr>, data_dir: PathBuf) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quorra"));
        command
            .args(["server", "--node-id", id, "--port", "0", "--http-port", "0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--cluster-port", "0", "--gossip-interval-ms", "100"])
            .args(["--anti-entropy-interval-ms", "500"])
            .env("QUORRA_CLUSTER_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped());
        if let Some(seed) = seed {
            command.args(["--seeds", &seed.to_string()]);
        }
        let mut child = command.spawn().expect("quorra starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let (resp, http, cluster) =
            quorra_server::up::parse_listening(&line).unwrap_or_else(|| panic!("{line}"));
        Node {
            child,
            resp,
            http,
            cluster,
            data_dir,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Keys in this node's own store (`/v1/stats`), not the cluster's.
    async fn local_keys(&self) -> u64 {
        let (status, body) = http(self.http, "GET", "/v1/stats", &[], b"").await;
        assert_eq!(status, 200);
        let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
        stats["keys"].as_u64().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn nodes_up(con: &mut MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("quorra_cluster_nodes_up:"))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

/// Waits until `node` sees `count` members up.
async fn until_up(node: &Node, count: usize) {
    let mut con = connect_url(&format!("redis://{}/", node.resp)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes_up(&mut con).await != count.to_string() {
        assert!(
            Instant::now() < deadline,
            "{} never saw {count} nodes up",
            node.resp
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a key may read as: its last acknowledged value, or a write after it that
/// failed (a failed write may still have landed somewhere).
type Expected = HashMap<String, Vec<String>>;

/// Writes `count` keys through alternating nodes, reading each back at once, and
/// records what every key may read as. Read errors fail the test; write errors are
/// counted.
async fn traffic(
    clients: &mut [MultiplexedConnection],
    expected: &mut Expected,
    round: &str,
    count: usize,
) -> usize {
    let mut write_errors = 0;
    for i in 0..count {
        let key = format!("key:{}", i % 150);
        let value = format!("{round}:{i}");
        let client = &mut clients[i % clients.len()];
        match run(client, &["SET", &key, &value]).await {
            Ok(_) => {
                expected.insert(key.clone(), vec![value]);
            }
            Err(_) => {
                write_errors += 1;
                expected.entry(key.clone()).or_default().push(value);
            }
        }
        check(client, expected, &key).await;
    }
    write_errors
}

async fn check(client: &mut MultiplexedConnection, expected: &Expected, key: &str) {
    let got = ok(client, &["GET", key]).await;
    let allowed = &expected[key];
    assert!(
        allowed.iter().any(|value| got == bulk(value)),
        "{key} read {got:?}, expected one of {allowed:?}"
    );
}

#[tokio::test]
async fn killing_and_restarting_a_node_loses_no_acknowledged_write_and_it_converges() {
    let first = Node::start("p0", None);
    let seed = first.cluster;
    let mut nodes = vec![
        first,
        Node::start("p1", Some(seed)),
        Node::start("p2", Some(seed)),
    ];
    for node in &nodes {
        until_up(node, 3).await;
    }
    let mut clients = Vec::new();
    for node in &nodes[..2] {
        clients.push(connect_url(&format!("redis://{}/", node.resp)).await);
    }
    let mut expected = Expected::new();
    assert_eq!(traffic(&mut clients, &mut expected, "before", 300).await, 0);

    nodes[2].kill();
    // Right after the kill, before failure detection: reads must keep succeeding, and
    // writes whose primary was p2 fail over to the next replica. A write sent on a
    // connection to p2 just as it died fails (it may have run), and is not
    // acknowledged.
    let during_errors = traffic(&mut clients, &mut expected, "during", 300).await;
    assert!(
        during_errors < 10,
        "{during_errors} writes failed right after the kill"
    );
    until_up(&nodes[0], 2).await;
    let after_errors = traffic(&mut clients, &mut expected, "after", 300).await;

    let data_dir = nodes[2].data_dir.clone();
    nodes[2] = Node::start_in("p2", Some(seed), data_dir);
    for node in &nodes {
        until_up(node, 3).await;
    }
    let rejoined_errors = traffic(&mut clients, &mut expected, "rejoined", 300).await;
    assert_eq!((after_errors, rejoined_errors), (0, 0), "writes failed");

    // No acknowledged write is lost, through any node, the restarted one included.
    let mut everyone = clients;
    everyone.push(connect_url(&format!("redis://{}/", nodes[2].resp)).await);
    for client in &mut everyone {
        for key in expected.keys() {
            check(client, &expected, key).await;
        }
    }
    // And the restarted node holds its copy of every key (three copies on three nodes).
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[2].local_keys().await != expected.len() as u64 {
        assert!(Instant::now() < deadline, "p2 never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
