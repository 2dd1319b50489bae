//! Replication in-process: three nodes with three copies of every key, a node crashed
//! and restarted, two nodes gone, levels changed per connection.

use std::time::{Duration, Instant};

use quorra_node::config::ClusterConfig;
use quorra_server::RunningServer;
use redis::Value;

use crate::cluster::*;
use crate::common::*;

fn three_copies(config: &mut ClusterConfig) {
    config.consistency.replicas = 3;
}

fn local_value(node: &RunningServer, key: &str) -> Option<Vec<u8>> {
    node.shared
        .store
        .get(key.as_bytes())
        .map(|value| value.to_vec())
}

#[tokio::test]
async fn with_three_copies_every_command_answers_as_a_single_node_would() {
    let single = start().await;
    let expected = run_script(&mut connect(&single).await).await;
    let nodes = start_cluster_with(3, three_copies).await;
    for node in &nodes {
        let replies = run_script(&mut connect(node).await).await;
        for ((command, want), got) in SCRIPT.iter().zip(&expected).zip(&replies) {
            assert_eq!(got, want, "{command:?} through {}", view(node).self_id);
        }
    }
    let mut con = connect(&nodes[1]).await;
    let keys: Vec<String> = (0..40).map(|i| format!("key:{i}")).collect();
    for key in &keys {
        ok(&mut con, &["SET", key, "x"]).await;
    }
    // Every node holds every key (N = 3 on three nodes), yet each is counted once.
    for node in &nodes {
        assert_eq!(node.shared.store.dbsize(0), 40, "{}", view(node).self_id);
        let mut con = connect(node).await;
        assert_eq!(ok(&mut con, &["DBSIZE"]).await, int(40));
        let (scanned, _) = scan_all(&mut con).await;
        assert_eq!(scanned.len(), 40);
        let Value::Array(listed) = ok(&mut con, &["KEYS", "*"]).await else {
            panic!("KEYS is an array");
        };
        assert_eq!(listed.len(), 40);
        let info: String = redis::cmd("INFO")
            .arg("keyspace")
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(info.contains("db0:keys=40,"), "{info}");
    }
    let owners = ok(&mut con, &["QUORRA", "OWNERS", "key:1"]).await;
    let Value::Array(owners) = owners else {
        panic!("owners")
    };
    assert_eq!(owners.len(), 3);
}

#[tokio::test]
async fn with_three_copies_a_pipeline_keeps_its_order_and_reads_its_own_writes() {
    let nodes = start_cluster_with(3, three_copies).await;
    pipeline_keeps_order_through_every_node(&nodes).await;
}

/// A pipeline of large values is copied in several requests per replica (each at most
/// `MAX_APPLY_BATCH_BYTES`), and every copy arrives.
#[tokio::test]
async fn a_pipeline_of_large_values_reaches_every_replica() {
    let nodes = start_cluster_with(3, three_copies).await;
    let value = vec![b'v'; 1 << 20];
    let keys: Vec<String> = (0..12).map(|i| format!("big:{i}")).collect();
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("SET").arg(key).arg(&value);
    }
    let mut con = connect(&nodes[0]).await;
    let replies: Vec<String> = pipe.query_async(&mut con).await.unwrap();
    assert!(replies.iter().all(|reply| reply == "OK"), "{replies:?}");
    // Acknowledged at QUORUM: two copies at once, the third soon after.
    for node in &nodes {
        eventually("every replica holds every value", async || {
            keys.iter()
                .all(|key| local_value(node, key).is_some_and(|held| held == value))
        })
        .await;
    }
}

#[tokio::test]
async fn a_crashed_node_loses_no_acknowledged_write_and_catches_up_when_it_returns() {
    // Default gossip (failure detection after about a second), so that the writes made
    // right after the crash find n2 still in the ring and leave hints for it.
    let mut nodes = start_cluster_with(3, |config| {
        three_copies(config);
        config.gossip_interval = Duration::from_millis(200);
    })
    .await;
    let mut con = connect(&nodes[0]).await;
    for i in 0..60 {
        ok(&mut con, &["SET", &format!("before:{i}"), &i.to_string()]).await;
    }
    ok(&mut con, &["INCRBY", "counter", "5"]).await;
    let crashed = nodes.pop().unwrap();
    crashed.crash().await;
    let hints = |node: &RunningServer| {
        node.shared
            .cluster
            .as_ref()
            .unwrap()
            .replicator
            .hints()
            .len()
    };

    // At once, before failure detection: writes whose primary was n2 go to the next
    // replica (n2 refuses connections), and every read finds two copies.
    let mut other = connect(&nodes[1]).await;
    for i in 0..60 {
        ok(&mut other, &["SET", &format!("during:{i}"), &i.to_string()]).await;
    }
    assert_eq!(ok(&mut other, &["INCR", "counter"]).await, int(6));
    for i in 0..60 {
        assert_eq!(
            ok(&mut con, &["GET", &format!("before:{i}")]).await,
            bulk(&i.to_string())
        );
        assert_eq!(
            ok(&mut con, &["GET", &format!("during:{i}")]).await,
            bulk(&i.to_string())
        );
    }
    for node in &nodes {
        until(node, "n2 down", |view| serving_ids(view) == ["n0", "n1"]).await;
    }
    // Two nodes left: N is still 3 (n2 is down, not gone), and a quorum of 2 is both.
    for i in 0..60 {
        ok(&mut con, &["SET", &format!("after:{i}"), &i.to_string()]).await;
    }

    let hinted = hints(&nodes[0]) + hints(&nodes[1]);
    assert!(
        hinted >= 60,
        "every write during the crash left a hint for n2: {hinted}"
    );
    let mut config = cluster_config("n2", Some(cluster_addr(&nodes[0])), SECRET);
    three_copies(&mut config);
    config.gossip_interval = Duration::from_millis(200);
    let restarted = start_configured(config).await;
    nodes.push(restarted);
    for node in &nodes {
        until(node, "n2 back", |view| {
            serving_ids(view) == ["n0", "n1", "n2"]
        })
        .await;
    }
    // The writes n2 missed while it was unreachable but still in the ring come back from
    // the hints its peers kept, before anyone reads them.
    eventually("the hinted writes reach n2", async || {
        (0..60).all(|i| {
            local_value(&nodes[2], &format!("during:{i}")) == Some(i.to_string().into_bytes())
        })
    })
    .await;
    let replayed = |node: &RunningServer| {
        let stats = node.shared.cluster.as_ref().unwrap().replicator.stats();
        stats
            .hints_replayed
            .load(std::sync::atomic::Ordering::Relaxed) as usize
    };
    assert_eq!(replayed(&nodes[0]) + replayed(&nodes[1]), hinted);
    // What it held before it crashed is gone from its memory; reads through any node
    // repair it.
    let mut back = connect(&nodes[2]).await;
    for (prefix, count) in [("before", 60), ("during", 60), ("after", 60)] {
        for i in 0..count {
            let key = format!("{prefix}:{i}");
            assert_eq!(
                ok(&mut back, &["GET", &key]).await,
                bulk(&i.to_string()),
                "{key}"
            );
        }
    }
    assert_eq!(ok(&mut back, &["GET", "counter"]).await, bulk("6"));
    eventually("n2 holds a copy of every key", async || {
        ["before", "after"].iter().all(|prefix| {
            (0..60).all(|i| local_value(&nodes[2], &format!("{prefix}:{i}")).is_some())
        })
    })
    .await;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut back)
        .await
        .unwrap();
    assert!(info.contains("quorra_copies:3"), "{info}");
    assert!(!info.contains("quorra_read_repairs:0\r\n"), "{info}");
}

#[tokio::test]
async fn with_two_of_three_gone_quorum_is_refused_with_the_counts_and_one_still_works() {
    // Before failure detection the two are unreachable; after it they are down but
    // still counted in N: either way one node alone is no majority of three.
    let mut nodes = start_cluster_with(3, three_copies).await;
    let mut con = connect(&nodes[0]).await;
    ok(&mut con, &["SET", "k", "before"]).await;
    nodes.pop().unwrap().crash().await;
    nodes.pop().unwrap().crash().await;

    assert_eq!(
        err(&mut con, &["SET", "k", "v"]).await,
        "NOQUORUM 1 of 2 required replicas answered (level QUORUM)"
    );
    assert_eq!(
        err(&mut con, &["GET", "k"]).await,
        "NOQUORUM 1 of 2 required replicas answered (level QUORUM)"
    );
    assert_eq!(
        ok(&mut con, &["QUORRA", "CONSISTENCY", "ONE"]).await,
        Value::Okay
    );
    ok(&mut con, &["SET", "k", "one"]).await;
    assert_eq!(ok(&mut con, &["GET", "k"]).await, bulk("one"));
    // Another connection still has the node's default.
    let mut fresh = connect(&nodes[0]).await;
    assert!(err(&mut fresh, &["GET", "k"]).await.starts_with("NOQUORUM"));
    assert!(
        err(&mut fresh, &["QUORRA", "CONSISTENCY", "MOST"])
            .await
            .starts_with("ERR invalid level")
    );
    ok(
        &mut fresh,
        &["QUORRA", "CONSISTENCY", "WRITE", "ALL", "READ", "1"],
    )
    .await;
    // A RESP2 connection gets the map as a flat array.
    assert_eq!(
        ok(&mut fresh, &["QUORRA", "CONSISTENCY"]).await,
        array(vec![
            bulk("replicas"),
            bulk("3"),
            bulk("copies"),
            bulk("3"),
            bulk("write"),
            bulk("ALL"),
            bulk("read"),
            bulk("1"),
        ])
    );
    assert_eq!(ok(&mut fresh, &["GET", "k"]).await, bulk("one"));
    assert!(
        err(&mut fresh, &["SET", "k", "all"])
            .await
            .starts_with("NOQUORUM 1 of 3")
    );
}

#[tokio::test]
async fn anti_entropy_refills_a_restarted_replica_that_nobody_reads() {
    // No hints and nobody reads: only anti-entropy can bring n2's copies back.
    let adjust = |config: &mut ClusterConfig| {
        three_copies(config);
        config.max_hints = 0;
        config.anti_entropy_interval = Some(Duration::from_millis(300));
    };
    let mut nodes = start_cluster_with(3, adjust).await;
    let mut con = connect(&nodes[0]).await;
    for i in 0..200 {
        ok(&mut con, &["SET", &format!("k:{i}"), &i.to_string()]).await;
    }
    ok(&mut con, &["DEL", "k:0"]).await;
    nodes.pop().unwrap().crash().await;
    for node in &nodes {
        until(node, "n2 down", |view| serving_ids(view) == ["n0", "n1"]).await;
    }
    let mut config = cluster_config("n2", Some(cluster_addr(&nodes[0])), SECRET);
    adjust(&mut config);
    nodes.push(start_configured(config).await);
    eventually("anti-entropy copied every key to n2", async || {
        (1..200)
            .all(|i| local_value(&nodes[2], &format!("k:{i}")) == Some(i.to_string().into_bytes()))
    })
    .await;
    assert_eq!(local_value(&nodes[2], "k:0"), None);
    // Each node compares with the peers whose ids sort after its own, so n0 or n1 may
    // have done the repair: count over all three.
    let mut repaired_keys = 0;
    for node in &nodes {
        let mut con = connect(node).await;
        repaired_keys += info_figure(&mut con, "cluster", "quorra_anti_entropy_keys").await;
        let read_repairs = info_figure(&mut con, "cluster", "quorra_read_repairs").await;
        assert_eq!(read_repairs, 0, "no read repaired anything");
    }
    assert!(repaired_keys > 0, "anti-entropy moved no key");
}

#[tokio::test]
async fn two_of_three_gone_longer_than_every_membership_timeout_leave_no_quorum_of_one() {
    // Gossip forgets a dead node's state after a second here; the survivor must keep
    // counting both for as long as they are gone.
    // Without hot-key copies: this loop reads ten keys as fast as it can, which makes
    // them hot, and the survivor would answer them from copies of its own store (level
    // ONE, docs/hot-keys.md) while this test is about the quorum path.
    let mut nodes = start_cluster_of_nodes(
        3,
        |config| {
            three_copies(config);
            config.dead_node_grace = Duration::from_secs(1);
        },
        |config| config.hot_cache_max_memory = 0,
    )
    .await;
    let mut con = connect(&nodes[0]).await;
    let keys: Vec<String> = (0..10).map(|i| format!("k:{i}")).collect();
    for key in &keys {
        ok(&mut con, &["SET", key, "before"]).await;
    }
    nodes.pop().unwrap().crash().await;
    nodes.pop().unwrap().crash().await;
    let survivor = &nodes[0];

    // From right after the crash (before failure detection) until four times the grace
    // period later, every QUORUM write and read is refused.
    let refused_with =
        |error: &str| error.starts_with("NOQUORUM") || error.starts_with("CLUSTERDOWN");
    let end = Instant::now() + Duration::from_secs(4);
    let mut refusals = 0;
    while Instant::now() < end {
        for key in &keys {
            let error = err(&mut con, &["SET", key, "during"]).await;
            assert!(refused_with(&error), "{error}");
            let error = err(&mut con, &["GET", key]).await;
            assert!(refused_with(&error), "{error}");
            refusals += 2;
        }
    }
    assert!(refusals > 40, "only {refusals} attempts in four seconds");
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(info.contains("quorra_copies:3\r\n"), "{info}");
    assert!(info.contains("quorra_cluster_nodes_up:1\r\n"), "{info}");
    // Nothing the survivor refused stayed behind: not in its store (a write it ran
    // before it knew the others were gone was undone), not as a hint to deliver later.
    for key in &keys {
        assert_eq!(
            local_value(survivor, key),
            Some(b"before".to_vec()),
            "{key}"
        );
    }
    let hints = survivor.shared.cluster.as_ref().unwrap().replicator.hints();
    assert_eq!(hints.len(), 0);
}

/// A figure of an `INFO` section, asked over `con`.
async fn info_figure(
    con: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field}"))
        .trim()
        .parse()
        .unwrap()
}

/// The sum of the latency histogram's counts over every command, from /metrics.
async fn timed_commands(node: &RunningServer) -> u64 {
    let (status, body) = crate::http::http(node.http_addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    String::from_utf8(body)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("quorra_command_duration_seconds_count"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn every_client_command_is_counted_once_at_the_node_that_answered_it() {
    for copies in [1, 3] {
        let nodes = start_cluster_with(3, |config| config.consistency.replicas = copies).await;
        let mut con = connect(&nodes[0]).await;
        let mut others = Vec::new();
        for node in &nodes[1..] {
            others.push(connect(node).await);
        }
        // Keys on every owner, so that commands run here, are forwarded, are quorum
        // reads or replicated writes, and split over owners.
        let keys: Vec<String> = (0..12).map(|i| format!("key:{i}")).collect();
        let before_processed = info_figure(&mut con, "stats", "total_commands_processed").await;
        let before_timed = timed_commands(&nodes[0]).await;
        let mut before_others = Vec::new();
        for other in &mut others {
            before_others.push(info_figure(other, "stats", "total_commands_processed").await);
        }
        let mut ran = 0;
        for key in &keys {
            ok(&mut con, &["SET", key, "1"]).await;
            ok(&mut con, &["GET", key]).await;
            ok(&mut con, &["INCR", key]).await;
            ran += 3;
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("GET").arg(key).cmd("EXPIRE").arg(key).arg(100);
            ran += 2;
        }
        let _: Vec<redis::Value> = pipe.query_async(&mut con).await.unwrap();
        let mut mget = vec!["MGET"];
        mget.extend(keys.iter().map(String::as_str));
        ok(&mut con, &mget).await;
        ok(&mut con, &["DBSIZE"]).await;
        ok(&mut con, &["PING"]).await;
        ran += 3;
        // Refused before running: not processed, not timed.
        let _ = run(&mut con, &["NOSUCHCOMMAND"]).await;
        let _ = run(&mut con, &["GET"]).await;
        // The INFO that read the "before" figure counts too (after it answered).
        let processed =
            info_figure(&mut con, "stats", "total_commands_processed").await - before_processed;
        assert_eq!(processed, ran + 1, "N={copies}: processed once each");
        let timed = timed_commands(&nodes[0]).await - before_timed;
        assert_eq!(timed, ran + 1, "N={copies}: timed once each");
        for (other, before) in others.iter_mut().zip(before_others) {
            // Only the INFO that read "before": the commands they ran for node 0 are
            // node 0's.
            let processed = info_figure(other, "stats", "total_commands_processed").await - before;
            assert_eq!(processed, 1, "N={copies}: a peer's commands were counted");
        }
        let mut peer_commands = 0;
        for other in &mut others {
            peer_commands += info_figure(other, "stats", "quorra_peer_commands_processed").await;
        }
        assert!(
            peer_commands > 0,
            "N={copies}: the others ran none of node 0's"
        );
    }
}

/// WAIT answers with the replicas besides the primary that every acknowledged write
/// reached: the write level's count minus one.
#[tokio::test]
async fn wait_reports_the_replicas_an_acknowledged_write_reached() {
    let single = start().await;
    let mut con = connect(&single).await;
    assert_eq!(ok(&mut con, &["WAIT", "0", "0"]).await, int(0));
    assert_eq!(
        err(&mut con, &["WAIT", "1", "-1"]).await,
        "ERR timeout is negative"
    );
    let nodes = start_cluster_with(3, three_copies).await;
    let mut con = connect(&nodes[0]).await;
    ok(&mut con, &["SET", "k", "v"]).await;
    assert_eq!(ok(&mut con, &["WAIT", "2", "100"]).await, int(1));
    ok(&mut con, &["QUORRA", "CONSISTENCY", "WRITE", "ALL"]).await;
    assert_eq!(ok(&mut con, &["WAIT", "2", "100"]).await, int(2));
}
