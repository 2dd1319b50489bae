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
        let mut child = Command::new(env!("CARGO_BIN_EXE_quorra"))
            .args(["up", "--nodes", &nodes.to_string(), "--base-port", "0"])
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
