//! The client compatibility suite: what applications written against Redis observe
//! through real client libraries, run against Debian's `redis-server` and against
//! quorra — a single node, and three nodes keeping three copies — in the same test, and
//! compared case by case. A case where quorra differs fails the test unless it is
//! listed in [`KNOWN_DIFFERENCES`] with its reason.
//!
//! The scripts live in `tests/compat/`; `scripts/test` installs their libraries:
//! redis-py, Django, django-redis and Flask-Caching from PyPI, ioredis and node-redis
//! from npm (`tests/compat/package.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use quorra_node::config::ClusterConfig;
use quorra_server::RunningServer;

use crate::cluster::start_cluster_with;
use crate::common::*;

/// Cases where quorra may differ from Redis, each with why. Empty: every case of every
/// script observes the same as on Redis.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// A `redis-server` on a free port, stopped when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        for _ in 0..10 {
            let port = crate::common::free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| {
                    panic!("redis-server cannot run ({error}); ./scripts/test installs it")
                });
            let mut server = RedisServer { child, port };
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                if server.child.try_wait().ok().flatten().is_some() {
                    break; // The port was taken meanwhile: try another.
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server did not start");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compat")
        .join(name)
}

/// Runs the script `name` (with `python3` or `node`, by its extension) against
/// `ports`: its observations by case.
async fn run_script(name: &str, ports: Vec<u16>) -> BTreeMap<String, String> {
    let path = script(name);
    let interpreter = if name.ends_with(".py") {
        "python3"
    } else {
        "node"
    };
    let output = tokio::task::spawn_blocking(move || {
        Command::new(interpreter)
            .arg(path)
            .args(ports.iter().map(u16::to_string))
            .output()
            .unwrap_or_else(|error| {
                panic!("{interpreter} cannot run ({error}); ./scripts/test installs it")
            })
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).expect("one JSON per line");
            let case = line["case"].as_str().expect("a case name").to_owned();
            (case, line["result"].to_string())
        })
        .collect()
}

/// Compares quorra's observations (`target` names the deployment) with Redis's.
fn compare(target: &str, redis: &BTreeMap<String, String>, quorra: &BTreeMap<String, String>) {
    assert_eq!(
        redis.keys().collect::<Vec<_>>(),
        quorra.keys().collect::<Vec<_>>(),
        "{target}: the same cases ran"
    );
    let differing: Vec<String> = redis
        .iter()
        .filter(|(case, observed)| quorra[*case] != **observed)
        .filter(|(case, _)| !KNOWN_DIFFERENCES.iter().any(|(known, _)| known == case))
        .map(|(case, observed)| {
            format!("{case}:\n  redis:  {observed}\n  quorra: {}", quorra[case])
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{target} differs from Redis:\n{}",
        differing.join("\n")
    );
}

/// Three copies, and gossip at its production interval rather than the suite's quick
/// one: these tests are about what clients see, and with the quick interval a machine
/// starved of CPU (the whole suite at once) makes failure detection mark a live peer
/// down for a moment, and a write is refused `NOQUORUM` (seen in a clean run).
fn three_copies_at_production_gossip(config: &mut ClusterConfig) {
    config.consistency.replicas = 3;
    config.gossip_interval = quorra_cluster::membership::DEFAULT_GOSSIP_INTERVAL;
}

fn port(node: &RunningServer) -> u16 {
    node.resp_addr.port()
}

/// Runs the script `name` against Redis, a single node and three nodes with three
/// copies, and compares.
async fn observes_the_same_on_quorra_as_on_redis(name: &str) {
    let redis = RedisServer::start();
    let expected = run_script(name, vec![redis.port]).await;
    let single = start().await;
    compare(
        &format!("{name} on a single node"),
        &expected,
        &run_script(name, vec![port(&single)]).await,
    );
    let cluster = start_cluster_with(3, three_copies_at_production_gossip).await;
    compare(
        &format!("{name} on three nodes with three copies"),
        &expected,
        &run_script(name, cluster.iter().map(port).collect()).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_observes_the_same_on_quorra_as_on_redis() {
    observes_the_same_on_quorra_as_on_redis("redis_py.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_django_redis_and_flask_caching_observe_the_same_on_quorra_as_on_redis() {
    observes_the_same_on_quorra_as_on_redis("frameworks.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ioredis_and_node_redis_observe_the_same_on_quorra_as_on_redis() {
    observes_the_same_on_quorra_as_on_redis("node_clients.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_on_hashes_lists_sets_and_sorted_sets_observes_the_same_on_quorra_as_on_redis() {
    observes_the_same_on_quorra_as_on_redis("collections.py").await;
}

/// `session_store.py` checks its own answers (hash field TTLs are newer than Debian's
/// redis-server, so there is nothing to compare with): on one node, and on three nodes
/// with three copies, its clients spread over the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_py_session_store_with_field_ttls_works_on_one_node_and_on_three() {
    const CHECKS: usize = 16;
    let single = start().await;
    let passed = run_script("session_store.py", vec![port(&single)]).await;
    assert_eq!(passed.len(), CHECKS, "{passed:?}");
    let cluster = start_cluster_with(3, three_copies_at_production_gossip).await;
    let passed = run_script("session_store.py", cluster.iter().map(port).collect()).await;
    assert_eq!(passed.len(), CHECKS, "{passed:?}");
}

/// redis-py's client-side caching, unmodified (`protocol=3` and a cache config), with
/// caching clients on each of three nodes keeping three copies and a writer on the
/// first: `client_side_cache.py` checks that writes, deletes, expiry and FLUSHALL
/// through one node reach the caches on every node (redis-py needs Redis 7.4, newer
/// than Debian's redis-server, so there is nothing to compare with). Prints the longest
/// time a cache answered a replaced value after the write was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_client_side_caching_stays_coherent_across_three_nodes() {
    const CHECKS: usize = 5;
    let cluster = start_cluster_with(3, three_copies_at_production_gossip).await;
    let observed = run_script("client_side_cache.py", cluster.iter().map(port).collect()).await;
    println!("client-side caching: {}", observed["staleness"]);
    assert_eq!(observed.len(), CHECKS + 1, "{observed:?}");
}

/// node-redis's client-side cache, unmodified (`RESP: 3` and `clientSideCache`), the same
/// way: `client_side_cache.mjs` checks that a write and a delete through one node reach
/// the caches of clients on every node of three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redis_client_side_caching_stays_coherent_across_three_nodes() {
    const CHECKS: usize = 3;
    let cluster = start_cluster_with(3, three_copies_at_production_gossip).await;
    let observed = run_script("client_side_cache.mjs", cluster.iter().map(port).collect()).await;
    println!("node-redis client-side caching: {}", observed["staleness"]);
    assert_eq!(observed.len(), CHECKS + 1, "{observed:?}");
}
