//! `quorra up` as a user runs it: three real `quorra server` processes (three copies of
//! every key by default), a real client against each, one node killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A running `quorra up`; stopped with SIGTERM (and its nodes with it) on drop.
struct Up {
    child: Child,
    /// (node id, pid, RESP address) per row of the printed table.
    nodes: Vec<(String, u32, String)>,
}

impl Up {
    fn start(nodes: usize, log_dir: &std::path::Path) -> Up {
        Up::start_with(nodes, log_dir, &[])
    }

    /// `quorra up` with `extra` flags of its own (`--maxmemory`).
    fn start_with(nodes: usize, log_dir: &std::path::Path, extra: &[&str]) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quorra"))
            .args(["up", "--nodes", &nodes.to_string(), "--base-port", "0"])
            .args(extra)
            .arg("--log-dir")
            .arg(log_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .spawn()
            .expect("quorra up starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut rows = Vec::new();
        for line in stdout.lines() {
            let line = line.expect("quorra up prints its table");
            if line.starts_with("Ctrl-C") {
                break;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let ["node-0" | "node-1" | "node-2", pid, resp, _http, _cluster] = fields[..] {
                rows.push((fields[0].to_owned(), pid.parse().unwrap(), resp.to_owned()));
            }
        }
        assert_eq!(rows.len(), nodes, "one table row per node");
        Up { child, nodes: rows }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

async fn every_key_reads_its_value(
    client: &mut redis::aio::MultiplexedConnection,
    keys: &[String],
) {
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            ok(client, &["GET", key]).await,
            bulk(&format!("v{i}")),
            "{key}"
        );
    }
}

#[tokio::test]
async fn quorra_up_serves_through_every_node_and_survives_a_killed_node() {
    let log_dir = std::env::temp_dir().join(format!("quorra-up-test-{}", std::process::id()));
    let up = Up::start(3, &log_dir);
    let mut clients = Vec::new();
    for (_, _, resp) in &up.nodes {
        clients.push(connect_url(&format!("redis://{resp}/")).await);
    }
    let keys: Vec<String> = (0..60).map(|i| format!("user:{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        ok(&mut clients[i % 3], &["SET", key, &format!("v{i}")]).await;
    }
    for client in &mut clients {
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(ok(client, &["GET", key]).await, bulk(&format!("v{i}")));
        }
    }

    // kill -9 node-2: no goodbye. Reads keep succeeding at once (two copies of three
    // answer) and no acknowledged write is lost; writes go on.
    let (_, dead_pid, _) = up.nodes[2].clone();
    let status = Command::new("kill")
        .args(["-KILL", &dead_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for client in &mut clients[..2] {
        every_key_reads_its_value(client, &keys).await;
        ok(client, &["SET", "after", "yes"]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for client in &mut clients[..2] {
        loop {
            let info: String = redis::cmd("INFO")
                .arg("cluster")
                .query_async(client)
                .await
                .unwrap();
            if info.contains("quorra_cluster_nodes_up:2\r\n") {
                break;
            }
            assert!(Instant::now() < deadline, "node-2 never dropped: {info}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for client in &mut clients[..2] {
        every_key_reads_its_value(client, &keys).await;
        assert_eq!(ok(client, &["GET", "after"]).await, bulk("yes"));
        assert_eq!(ok(client, &["DBSIZE"]).await, int(61));
    }
    drop(up);
    let _ = std::fs::remove_dir_all(&log_dir);
}

/// INFO stats' `keyspace_hits` and `keyspace_misses` of the node at `resp`.
async fn keyspace_stats(resp: &str) -> (u64, u64) {
    let mut client = connect_url(&format!("redis://{resp}/")).await;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut client)
        .await
        .unwrap();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (field("keyspace_hits"), field("keyspace_misses"))
}

/// The experiment of the one-request-path issue: 1,000 keys of 1 KB, keys 0-99 read
/// three times, 1,000 more keys: how many of the read keys survive eviction, and how many
/// of keys 100-199, never read. Also the keyspace hits and misses the client saw.
async fn lru_experiment(
    clients: &mut [redis::aio::MultiplexedConnection],
) -> (usize, usize, (u64, u64)) {
    let value = "v".repeat(1024);
    let mut seen = (0u64, 0u64);
    let count = |seen: &mut (u64, u64), reply: &redis::Value| {
        if *reply == redis::Value::Nil {
            seen.1 += 1;
            false
        } else {
            seen.0 += 1;
            true
        }
    };
    let n = clients.len();
    for i in 0..1_000 {
        ok(&mut clients[i % n], &["SET", &format!("first:{i}"), &value]).await;
    }
    for round in 0..3 {
        for i in 0..100 {
            let reply = ok(
                &mut clients[(i + round) % n],
                &["GET", &format!("first:{i}")],
            )
            .await;
            count(&mut seen, &reply);
        }
    }
    for i in 0..1_000 {
        ok(
            &mut clients[i % n],
            &["SET", &format!("second:{i}"), &value],
        )
        .await;
    }
    // Evictions reach the other replicas within a few tens of milliseconds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut read_kept, mut unread_kept) = (0, 0);
    for i in 0..200 {
        let reply = ok(&mut clients[0], &["GET", &format!("first:{i}")]).await;
        let kept = usize::from(count(&mut seen, &reply));
        match i < 100 {
            true => read_kept += kept,
            false => unread_kept += kept,
        }
    }
    (read_kept, unread_kept, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_cluster_under_memory_pressure_is_an_lru_cache_like_one_node() {
    // One node.
    let single = {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quorra"))
            .args([
                "server",
                "--port",
                "0",
                "--http-port",
                "0",
                "--maxmemory",
                "2mb",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let resp = line.split_whitespace().nth(3).unwrap().to_owned();
        (child, resp)
    };
    let mut one = vec![connect_url(&format!("redis://{}/", single.1)).await];
    let (single_read, single_unread, single_seen) = lru_experiment(&mut one).await;
    let single_info = keyspace_stats(&single.1).await;
    let (mut child, _) = single;
    let _ = child.kill();
    let _ = child.wait();

    // Three nodes, three copies of every key, the same memory per node; the client uses
    // every node.
    let log_dir = std::env::temp_dir().join(format!("quorra-up-lru-{}", std::process::id()));
    let up = Up::start_with(3, &log_dir, &["--maxmemory", "2mb"]);
    let mut clients = Vec::new();
    for (_, _, resp) in &up.nodes {
        clients.push(connect_url(&format!("redis://{resp}/")).await);
    }
    let (cluster_read, cluster_unread, cluster_seen) = lru_experiment(&mut clients).await;
    let mut cluster_info = (0, 0);
    for (_, _, resp) in &up.nodes {
        let (hits, misses) = keyspace_stats(resp).await;
        cluster_info.0 += hits;
        cluster_info.1 += misses;
    }
    eprintln!(
        "LRU under pressure: one node kept {single_read} of 100 read keys and {single_unread} \
         of 100 unread; three nodes with three copies kept {cluster_read} and {cluster_unread}; \
         hits/misses seen by the client {cluster_seen:?}, in INFO summed over the nodes {cluster_info:?}"
    );
    assert_eq!(
        single_info, single_seen,
        "one node's INFO matches the client"
    );
    assert_eq!(
        cluster_info, cluster_seen,
        "the nodes' INFO, summed, matches the client"
    );
    assert!(
        single_read >= 95,
        "the single node is an LRU cache: {single_read}"
    );
    assert!(
        cluster_read + 5 >= single_read,
        "read keys survive in the cluster as on one node: {cluster_read} against {single_read}"
    );
    assert!(
        cluster_unread < cluster_read,
        "eviction prefers the keys nobody read"
    );
    drop(up);
    let _ = std::fs::remove_dir_all(&log_dir);
}
