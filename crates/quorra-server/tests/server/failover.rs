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
pub(crate) struct Node {
    child: Child,
    pub(crate) resp: SocketAddr,
    pub(crate) http: SocketAddr,
    pub(crate) cluster: SocketAddr,
    data_dir: PathBuf,
}

impl Node {
    /// Starts node `id` with a data directory of its own.
    pub(crate) fn start(id: &str, seed: Option<SocketAddr>) -> Node {
        Node::start_in(id, seed, fresh_data_dir())
    }

    /// [`Node::start`] with more flags.
    pub(crate) fn start_with(id: &str, seed: Option<SocketAddr>, flags: &[&str]) -> Node {
        Node::spawn(id, seed, fresh_data_dir(), flags)
    }

    /// Starts node `id` with its data in `data_dir` (a restart passes the old one).
    fn start_in(id: &str, seed: Option<SocketAddr>, data_dir: PathBuf) -> Node {
        Node::spawn(id, seed, data_dir, &[])
    }

    fn spawn(id: &str, seed: Option<SocketAddr>, data_dir: PathBuf, flags: &[&str]) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quorra"));
        command
            .args(["server", "--node-id", id, "--port", "0", "--http-port", "0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--cluster-port", "0", "--gossip-interval-ms", "100"])
            .args(["--anti-entropy-interval-ms", "500"])
            .args(flags)
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

    /// SIGTERM (a graceful stop), and waits for the process to end; true if it exited
    /// cleanly.
    pub(crate) fn terminate(&mut self) -> bool {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a child's pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        self.child.wait().is_ok_and(|status| status.success())
    }

    /// SIGKILL, and waits for the process to end.
    pub(crate) fn kill(&mut self) {
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
pub(crate) async fn until_up(node: &Node, count: usize) {
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

/// What writers through every node have done: per key, its last acknowledged value and
/// the writes after it that failed; and the counts.
#[derive(Default)]
struct Ledger {
    expected: Expected,
    acknowledged: usize,
    /// Acknowledgements per RESP address (a restarted node listens on a new one).
    acknowledged_by: HashMap<SocketAddr, usize>,
    failed: usize,
}

/// Writes `w<writer>:<i % 40>` = `i` through the node whose RESP address is in `target`
/// until `stop`, reconnecting whenever the node goes away, and records every outcome.
async fn write_until_stopped(
    writer: usize,
    target: std::sync::Arc<parking_lot::Mutex<SocketAddr>>,
    ledger: std::sync::Arc<parking_lot::Mutex<Ledger>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut con: Option<(SocketAddr, MultiplexedConnection)> = None;
    let mut i = 0usize;
    while !stop.is_cancelled() {
        let addr = *target.lock();
        if con.as_ref().is_none_or(|(at, _)| *at != addr) {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_response_timeout(Some(Duration::from_secs(5)));
            match client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(connection) => con = Some((addr, connection)),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let (_, connection) = con.as_mut().expect("connected above");
        let key = format!("w{writer}:{}", i % 40);
        let value = i.to_string();
        let outcome = run(connection, &["SET", &key, &value]).await;
        let mut ledger = ledger.lock();
        match outcome {
            Ok(_) => {
                ledger.acknowledged += 1;
                *ledger.acknowledged_by.entry(addr).or_default() += 1;
                ledger.expected.insert(key, vec![value]);
            }
            Err(error) => {
                ledger.failed += 1;
                ledger.expected.entry(key).or_default().push(value);
                if error.is_io_error() || error.is_connection_dropped() {
                    con = None;
                }
            }
        }
        drop(ledger);
        i += 1;
    }
}

#[tokio::test]
async fn a_node_restarted_and_killed_again_within_its_first_second_loses_no_acknowledged_write() {
    let first = Node::start("r0", None);
    let seed = first.cluster;
    let mut nodes = vec![
        first,
        Node::start("r1", Some(seed)),
        Node::start("r2", Some(seed)),
    ];
    for node in &nodes {
        until_up(node, 3).await;
    }
    let ledger = std::sync::Arc::new(parking_lot::Mutex::new(Ledger::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    let targets: Vec<_> = nodes
        .iter()
        .map(|node| std::sync::Arc::new(parking_lot::Mutex::new(node.resp)))
        .collect();
    let writers: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(writer, target)| {
            tokio::spawn(write_until_stopped(
                writer,
                target.clone(),
                ledger.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // r2 dies; comes back with its data directory (it remembers the cluster) and is
    // killed again 300 ms after it listens, while the writer through it hammers it;
    // then comes back for good.
    nodes[2].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut short_lived = None;
    for lifetime in [Some(Duration::from_millis(300)), None] {
        let data_dir = nodes[2].data_dir.clone();
        nodes[2] = Node::start_in("r2", Some(seed), data_dir);
        *targets[2].lock() = nodes[2].resp;
        if let Some(lifetime) = lifetime {
            short_lived = Some(nodes[2].resp);
            tokio::time::sleep(lifetime).await;
            nodes[2].kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    for node in &nodes {
        until_up(node, 3).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for writer in writers {
        writer.await.unwrap();
    }

    let ledger = std::sync::Arc::try_unwrap(ledger)
        .ok()
        .unwrap()
        .into_inner();
    let in_first_second = short_lived.map_or(0, |addr| {
        ledger.acknowledged_by.get(&addr).copied().unwrap_or(0)
    });
    eprintln!(
        "restart race: {} writes acknowledged ({in_first_second} by r2 in the 300 ms it lived), {} failed",
        ledger.acknowledged, ledger.failed
    );
    assert!(
        ledger.acknowledged > 100,
        "too little traffic to mean anything"
    );
    // Every acknowledged write reads back through every node, the restarted one too.
    for node in &nodes {
        let mut client = connect_url(&format!("redis://{}/", node.resp)).await;
        for key in ledger.expected.keys() {
            check(&mut client, &ledger.expected, key).await;
        }
    }
}

/// Transactions of 100 writes run through one node while a replica is killed (SIGKILL)
/// among them: each node that stays up holds whole transactions only — its count of
/// their keys is a multiple of 100, and covers every acknowledged one — and the killed
/// node, restarted, catches up to the same.
#[tokio::test]
async fn a_replica_killed_during_transactions_leaves_no_node_holding_part_of_one() {
    let first = Node::start("t0", None);
    let seed = first.cluster;
    let mut nodes = vec![
        first,
        Node::start("t1", Some(seed)),
        Node::start("t2", Some(seed)),
    ];
    for node in &nodes {
        until_up(node, 3).await;
    }
    let mut client = connect_url(&format!("redis://{}/", nodes[0].resp)).await;
    let mut acknowledged = 0;
    for round in 0..40 {
        if round == 10 {
            nodes[2].kill();
        }
        let mut transaction = redis::pipe();
        transaction.atomic();
        for i in 0..100 {
            transaction
                .cmd("SET")
                .arg(format!("{{tx}}:r{round}:k{i}"))
                .arg(round);
        }
        let result: redis::RedisResult<redis::Value> = transaction.query_async(&mut client).await;
        acknowledged += usize::from(result.is_ok());
    }
    assert!(
        acknowledged >= 30,
        "only {acknowledged} of 40 transactions succeeded"
    );
    let mut held = Vec::new();
    for node in &nodes[..2] {
        let keys = node.local_keys().await;
        assert_eq!(keys % 100, 0, "{} holds part of a transaction", node.resp);
        assert!(
            keys >= 100 * acknowledged as u64,
            "{} lost a transaction",
            node.resp
        );
        held.push(keys);
    }
    assert_eq!(held[0], held[1]);
    let data_dir = nodes[2].data_dir.clone();
    nodes[2] = Node::start_in("t2", Some(seed), data_dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[2].local_keys().await != held[0] {
        assert!(Instant::now() < deadline, "t2 never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The dashboard's "leave" through another node's HTTP API: the node runs `QUORRA
/// LEAVE`, exits cleanly, and the others take it out of the ring at once (no failure
/// detection needed), still serving every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_asked_to_leave_over_http_exits_and_the_ring_shrinks() {
    let first = Node::start("n0", None);
    let second = Node::start("n1", Some(first.cluster));
    let mut third = Node::start("n2", Some(first.cluster));
    for node in [&first, &second, &third] {
        until_up(node, 3).await;
    }
    let mut con = connect_url(&format!("redis://{}/", first.resp)).await;
    for i in 0..100 {
        ok(&mut con, &["SET", &format!("left:{i}"), "v"]).await;
    }
    let (status, body) = http(first.http, "POST", "/v1/nodes/n2/leave", &[], b"").await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let exited = tokio::task::spawn_blocking(move || {
        let status = third.child.wait();
        status.is_ok_and(|status| status.success())
    })
    .await
    .unwrap();
    assert!(exited, "the node stops cleanly");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let nodes: String = redis::cmd("QUORRA")
            .arg("RING")
            .query_async(&mut con)
            .await
            .unwrap();
        if nodes.contains("nodes=2") && !nodes.contains("\nn2 ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2 is still in the ring: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut other = connect_url(&format!("redis://{}/", second.resp)).await;
    for i in 0..100 {
        assert_eq!(
            ok(&mut other, &["GET", &format!("left:{i}")]).await,
            bulk("v")
        );
    }
}
