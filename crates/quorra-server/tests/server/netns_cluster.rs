//! A replicated cluster on three hosts: one network namespace per node, each joined by a
//! veth pair to a bridge in a fourth namespace. Cutting a node's link on the bridge
//! partitions it from the others: the majority keeps serving quorum operations, the
//! minority refuses them, and after the link comes back the replicas converge.
//!
//! Needs root, iproute2 and redis-cli (`scripts/test` provides them and sets
//! `QUORRA_NETNS_TESTS=1`). Every address lives inside the namespaces the test creates
//! (10.232.X.0/24), and they are deleted when it ends.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::fresh_data_dir;
use crate::netns::{ip, netns_tests_enabled, redis_cli_in};

const SECRET: &str = "netns cluster secret";
const HTTP_TOKEN: &str = "netns-http-token";

/// Three host namespaces `<tag>h0..2` (10.232.X.1..3) on a bridge in `<tag>hub`.
struct Hosts {
    tag: String,
    subnet: String,
    nodes: Vec<Child>,
    /// Each node's data directory (its roster), kept across a restart.
    data_dirs: Vec<PathBuf>,
}

impl Hosts {
    fn new() -> Hosts {
        let tag = format!("q{}", std::process::id());
        let subnet = format!("10.232.{}", std::process::id() % 200);
        let hub = format!("{tag}hub");
        ip(&format!("netns add {hub}"));
        ip(&format!("-n {hub} link add br0 type bridge"));
        ip(&format!("-n {hub} link set br0 up"));
        for i in 0..3 {
            let host = format!("{tag}h{i}");
            ip(&format!("netns add {host}"));
            ip(&format!("link add {tag}v{i} type veth peer name {tag}p{i}"));
            ip(&format!("link set {tag}v{i} netns {host}"));
            ip(&format!("link set {tag}p{i} netns {hub}"));
            ip(&format!("-n {hub} link set {tag}p{i} master br0"));
            ip(&format!("-n {hub} link set {tag}p{i} up"));
            ip(&format!(
                "-n {host} addr add {subnet}.{}/24 dev {tag}v{i}",
                i + 1
            ));
            ip(&format!("-n {host} link set {tag}v{i} up"));
            ip(&format!("-n {host} link set lo up"));
        }
        Hosts {
            tag,
            subnet,
            nodes: Vec::new(),
            data_dirs: (0..3).map(|_| fresh_data_dir()).collect(),
        }
    }

    fn host(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// Starts node `i` in its namespace, seeded with node 0.
    fn start(&mut self, i: usize) {
        let seed = format!("{}:7381", self.addr(0));
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.host(i),
                env!("CARGO_BIN_EXE_quorra"),
                "server",
            ])
            .args(["--bind", &self.addr(i), "--protected-mode", "false"])
            .args([
                "--port",
                "7379",
                "--http-port",
                "7380",
                "--cluster-port",
                "7381",
            ])
            .args(["--node-id", &format!("h{i}"), "--seeds", &seed])
            .arg("--data-dir")
            .arg(&self.data_dirs[i])
            .args(["--gossip-interval-ms", "100", "--cluster-timeout-ms", "500"])
            .args(["--anti-entropy-interval-ms", "1000"])
            // Gossip drops a dead node's state after a second, so the partition below
            // outlasts every membership timeout many times over.
            .args(["--dead-node-grace-ms", "1000"])
            // The admin API answers other hosts' (the test's) requests only with a token.
            .args(["--http-token", HTTP_TOKEN])
            .env("QUORRA_CLUSTER_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("quorra starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("quorra listening"), "{line}");
        self.nodes.push(child);
    }

    /// redis-cli on node `i`'s host, against node `i`.
    fn cli(&self, i: usize, args: &[&str]) -> String {
        redis_cli_in(&self.host(i), &self.addr(i), args)
    }

    fn nodes_up(&self, i: usize) -> String {
        self.cli(i, &["INFO", "cluster"])
            .lines()
            .find_map(|line| line.strip_prefix("quorra_cluster_nodes_up:"))
            .unwrap_or("?")
            .trim()
            .to_owned()
    }

    /// Waits until node `i` sees `count` members up.
    fn until_up(&self, i: usize, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.nodes_up(i) != count.to_string() {
            assert!(Instant::now() < deadline, "h{i} never saw {count} nodes up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Takes node `i`'s link on the bridge down (`false`) or up (`true`).
    fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&format!(
            "-n {}hub link set {}p{i} {state}",
            self.tag, self.tag
        ));
    }

    /// Keys in node `i`'s own store, from its `/v1/stats` (fetched with bash's /dev/tcp
    /// inside the host's namespace).
    fn local_keys(&self, i: usize) -> u64 {
        let script = format!(
            "exec 3<>/dev/tcp/{}/7380; printf 'GET /v1/stats HTTP/1.0\\r\\nAuthorization: Bearer {HTTP_TOKEN}\\r\\n\\r\\n' >&3; cat <&3",
            self.addr(i)
        );
        let output = Command::new("ip")
            .args(["netns", "exec", &self.host(i), "bash", "-c", &script])
            .output()
            .expect("bash runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("{}");
        let stats: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        stats["keys"].as_u64().unwrap_or(0)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        // Deleting a namespace deletes the veth ends inside it.
        for name in ["hub", "h0", "h1", "h2"] {
            let _ = Command::new("ip")
                .args(["netns", "delete", &format!("{}{name}", self.tag)])
                .status();
        }
    }
}

/// A partition long enough for everything time-based in membership to have run out:
/// detection, the dead-node grace (one second here), many times over.
const PARTITION: Duration = Duration::from_secs(6);

#[test]
fn a_partitioned_minority_refuses_quorum_throughout_and_no_acknowledged_write_is_lost() {
    if !netns_tests_enabled() {
        return;
    }
    let mut hosts = Hosts::new();
    for i in 0..3 {
        hosts.start(i);
    }
    for i in 0..3 {
        hosts.until_up(i, 3);
    }
    for i in 0..30 {
        let reply = hosts.cli(0, &["SET", &format!("before:{i}"), "v"]);
        assert_eq!(reply.trim(), "OK", "{reply}");
    }

    // h2 is cut off. From that moment until long after every membership timeout, both
    // sides are asked to write the same keys: the majority acknowledges (once failure
    // detection has caught up), the minority never does.
    hosts.link(2, false);
    let mut last_acknowledged: HashMap<String, String> = HashMap::new();
    let mut may_read: HashMap<String, Vec<String>> = HashMap::new();
    let (mut acknowledged, mut refused_by_minority) = (0, 0);
    let end = Instant::now() + PARTITION;
    let mut round = 0;
    while Instant::now() < end {
        let key = format!("k:{}", round % 20);
        let value = format!("majority:{round}");
        let node = round % 2;
        let reply = hosts.cli(node, &["SET", &key, &value]);
        if reply.trim() == "OK" {
            acknowledged += 1;
            last_acknowledged.insert(key.clone(), value.clone());
            may_read.insert(key.clone(), vec![value]);
        } else {
            // Failed (in the detection window): it may or may not have landed.
            may_read.entry(key.clone()).or_default().push(value);
        }
        let reply = hosts.cli(2, &["SET", &key, &format!("minority:{round}")]);
        assert!(
            reply.starts_with("NOQUORUM") || reply.starts_with("CLUSTERDOWN"),
            "the minority acknowledged a write: {reply}"
        );
        refused_by_minority += 1;
        round += 1;
    }
    hosts.until_up(0, 2);
    hosts.until_up(2, 1);
    // Long after detection and the grace period: still refused, still counted as three.
    let refused = hosts.cli(2, &["SET", "minority", "v"]);
    assert_eq!(
        refused.trim(),
        "NOQUORUM 1 of 2 required replicas answered (level QUORUM)"
    );
    // (0 or 1 answered: the replicas known to be down fail at once, so the refusal may
    // come before h2's own answer.)
    let refused = hosts.cli(2, &["GET", "before:1"]);
    assert!(
        ["NOQUORUM 0 of 2", "NOQUORUM 1 of 2"]
            .iter()
            .any(|start| refused.starts_with(start)),
        "{refused}"
    );
    assert!(
        hosts
            .cli(2, &["INFO", "cluster"])
            .contains("quorra_copies:3")
    );
    // The majority serves reads as well.
    for i in 0..30 {
        let reply = hosts.cli(i % 2, &["GET", &format!("before:{i}")]);
        assert_eq!(reply.trim(), "v", "{reply}");
    }
    eprintln!(
        "partition: {acknowledged} writes acknowledged by the majority, {refused_by_minority} refused by the minority"
    );
    assert!(
        last_acknowledged.len() == 20,
        "every key got an acknowledged write: {last_acknowledged:?}"
    );

    hosts.link(2, true);
    for i in 0..3 {
        hosts.until_up(i, 3);
    }
    // Hints and anti-entropy bring every copy up to date without any read: 30 keys from
    // before and the 20 written during the partition. What the minority was refused
    // left nothing behind.
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..3 {
        while hosts.local_keys(i) != 50 {
            assert!(
                Instant::now() < deadline,
                "h{i} holds {} of 50 keys",
                hosts.local_keys(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // No acknowledged write is lost: every key reads its last acknowledged value (or a
    // later majority write that failed but landed), through every node.
    for i in 0..3 {
        for (key, allowed) in &may_read {
            let reply = hosts.cli(i, &["GET", key]);
            assert!(
                allowed.iter().any(|value| reply.trim() == value),
                "h{i}: {key} reads {reply:?}, expected one of {allowed:?}"
            );
        }
    }
}
