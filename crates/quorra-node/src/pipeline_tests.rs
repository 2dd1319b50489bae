//! The pipeline against an in-memory cluster ([`crate::in_memory_cluster`]): exact reply
//! bytes and order, read-your-writes with copies, forwards that fail halfway, and a
//! quorum lost in the middle of a pipeline. No sockets, no gossip, no sleeping.

use std::sync::atomic::Ordering;

use bytes::BytesMut;
use quorra_cluster::membership::MemberState;

use crate::in_memory_cluster::{InMemoryCluster, member};

fn bulk(value: &str) -> String {
    format!("${}\r\n{value}\r\n", value.len())
}

/// What a client is told when node `index` cannot be connected to.
fn unreachable(index: usize) -> String {
    let addr = member(index, MemberState::Up).addresses.cluster;
    format!(
        "-CLUSTERDOWN node n{index} at {addr} did not answer: peer {addr} unreachable: connection refused\r\n"
    )
}

/// Keys `a`, `b`, `c` of nodes 1, 2 and 0.
fn keys_of_every_node(cluster: &InMemoryCluster) -> [String; 3] {
    [("a", 1), ("b", 2), ("c", 0)].map(|(prefix, node)| cluster.key_with_primary(prefix, node))
}

#[tokio::test]
async fn replies_come_back_in_the_clients_order_wherever_the_commands_ran() {
    let cluster = InMemoryCluster::new(3, 1, 0);
    let [a, b, c] = keys_of_every_node(&cluster);
    let mut client = cluster.client(0);
    let replies = client
        .pipeline(&[
            &["SET", &a, "1"],
            &["SET", &b, "2"],
            &["SET", &c, "3"],
            &["PING"],
            &["GET", &a],
            &["MGET", &a, &b, &c],
            &["INCR", &c],
            &["ECHO", "done"],
            &["DEL", &a, &b, &c],
            &["MGET", &a, &b, &c],
        ])
        .await;
    let expected = [
        "+OK\r\n".to_owned(),
        "+OK\r\n".to_owned(),
        "+OK\r\n".to_owned(),
        "+PONG\r\n".to_owned(),
        bulk("1"),
        format!("*3\r\n{}{}{}", bulk("1"), bulk("2"), bulk("3")),
        ":4\r\n".to_owned(),
        bulk("done"),
        ":3\r\n".to_owned(),
        "*3\r\n$-1\r\n$-1\r\n$-1\r\n".to_owned(),
    ]
    .concat();
    assert_eq!(replies, expected);
    // Counted once, where the client was answered; the others ran commands for it.
    let counters = |index: usize| &cluster.nodes[index].counters;
    assert_eq!(counters(0).commands_processed.load(Ordering::Relaxed), 10);
    for other in [1, 2] {
        assert_eq!(
            counters(other).commands_processed.load(Ordering::Relaxed),
            0
        );
        assert!(
            counters(other)
                .peer_commands_processed
                .load(Ordering::Relaxed)
                > 0
        );
    }
    // GET a hit; MGET hit 3 keys, the last MGET missed 3.
    assert_eq!(counters(0).keyspace_hits.load(Ordering::Relaxed), 4);
    assert_eq!(counters(0).keyspace_misses.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn with_three_copies_a_pipeline_reads_its_own_writes_from_any_node() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let k = cluster.key_with_primary("k", 1);
    let counter = cluster.key_with_primary("c", 2);
    let mut client = cluster.client(0);
    let replies = client
        .pipeline(&[
            &["SET", &k, "v1"],
            &["GET", &k],
            &["APPEND", &k, "x"],
            &["GET", &k],
            &["INCR", &counter],
            &["INCR", &counter],
            &["GET", &counter],
            &["DEL", &k],
            &["GET", &k],
            &["EXISTS", &k, &counter],
        ])
        .await;
    let expected = [
        "+OK\r\n".to_owned(),
        bulk("v1"),
        ":3\r\n".to_owned(),
        bulk("v1x"),
        ":1\r\n:2\r\n".to_owned(),
        bulk("2"),
        ":1\r\n$-1\r\n:1\r\n".to_owned(),
    ]
    .concat();
    assert_eq!(replies, expected);
    // Every node answers the same, and every node holds a copy.
    for index in 0..3 {
        let mut other = cluster.client(index);
        assert_eq!(other.pipeline(&[&["GET", &counter]]).await, bulk("2"));
        assert!(
            cluster.nodes[index]
                .store
                .get_versioned(counter.as_bytes())
                .is_some()
        );
    }
}

#[tokio::test]
async fn a_forward_that_fails_halfway_fails_only_its_own_commands() {
    let cluster = InMemoryCluster::new(3, 1, 0);
    let [a, b, c] = keys_of_every_node(&cluster);
    cluster.cut(2);
    let mut client = cluster.client(0);
    let replies = client
        .pipeline(&[
            &["SET", &a, "1"],
            &["SET", &b, "2"],
            &["SET", &c, "3"],
            &["GET", &a],
            &["GET", &b],
            &["GET", &c],
        ])
        .await;
    let expected = [
        "+OK\r\n".to_owned(),
        unreachable(2),
        "+OK\r\n".to_owned(),
        bulk("1"),
        unreachable(2),
        bulk("3"),
    ]
    .concat();
    assert_eq!(replies, expected);
    let failed = cluster.nodes[0]
        .counters
        .failed_calls
        .load(Ordering::Relaxed);
    assert_eq!(failed, 2);
    // Healed: the failed write never happened, and can be made now.
    cluster.heal();
    let replies = client
        .pipeline(&[&["GET", &b], &["SET", &b, "2"], &["GET", &b]])
        .await;
    assert_eq!(replies, format!("$-1\r\n+OK\r\n{}", bulk("2")));
}

#[tokio::test]
async fn with_copies_a_primary_that_did_not_run_a_write_is_stood_in_for_and_one_that_may_have_is_not()
 {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let k = cluster.key_with_primary("k", 1);
    let mut client = cluster.client(0);
    // The primary cannot be connected to: the next replica runs the write as acting
    // primary, and a quorum (itself and the third replica) acknowledges it.
    cluster.cut(1);
    assert_eq!(client.pipeline(&[&["SET", &k, "v1"]]).await, "+OK\r\n");
    let hints = &cluster.nodes[0].cluster.as_ref().unwrap().replicator;
    let hints = hints.hints().len() + {
        let third = &cluster.nodes[2].cluster.as_ref().unwrap().replicator;
        third.hints().len()
    };
    assert_eq!(hints, 1, "the primary's copy waits in a hint");
    cluster.heal();
    // The primary runs the write but its answer is lost: the client is told the node did
    // not answer — it is not retried elsewhere, since it may have run. It did.
    cluster.lose_answers(1);
    let reply = client.pipeline(&[&["SET", &k, "v2"]]).await;
    let addr = member(1, MemberState::Up).addresses.cluster;
    assert_eq!(
        reply,
        format!(
            "-CLUSTERDOWN node n1 at {addr} did not answer: connection to peer {addr} closed\r\n"
        )
    );
    cluster.heal();
    assert_eq!(client.pipeline(&[&["GET", &k]]).await, bulk("v2"));
}

#[tokio::test]
async fn a_quorum_lost_in_the_middle_of_a_pipeline_fails_what_follows_and_leaves_nothing() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let a = cluster.key_with_primary("a", 0);
    let b = cluster.key_with_primary("b", 0);
    let mut client = cluster.client(0);
    let mut out = BytesMut::new();
    client.send(&["SET", &a, "1"], &mut out).await;
    client.send(&["GET", &a], &mut out).await;
    // PING runs in order: everything before it is sent and answered first.
    client.send(&["PING"], &mut out).await;
    // Both other replicas are cut off before the rest of the pipeline.
    cluster.cut(1);
    cluster.cut(2);
    client.send(&["SET", &b, "2"], &mut out).await;
    client.send(&["GET", &b], &mut out).await;
    client.send(&["GET", &a], &mut out).await;
    client.flush(&mut out).await;
    // The write's primary and its own copy: one answer of two. A read fails as soon as
    // two replicas have failed, so it reports the answers heard by then: none, or the
    // primary's own if it came first.
    let noquorum = |answered: &str| {
        format!("-NOQUORUM {answered} of 2 required replicas answered (level QUORUM)\r\n")
    };
    let replies = String::from_utf8_lossy(&out).into_owned();
    let before_cut = format!("+OK\r\n{}+PONG\r\n{}", bulk("1"), noquorum("1"));
    assert!(replies.starts_with(&before_cut), "{replies}");
    let reads = &replies[before_cut.len()..];
    let either = [noquorum("0"), noquorum("1")];
    assert!(
        either.iter().any(|first| reads
            .strip_prefix(first.as_str())
            .is_some_and(|rest| either.iter().any(|second| rest == second))),
        "{replies}"
    );
    // The refused write was undone on the primary: it cannot win over writes that
    // another side acknowledged.
    assert!(cluster.nodes[0].store.get_versioned(b.as_bytes()).is_none());
    cluster.heal();
    let replies = client.pipeline(&[&["GET", &b], &["GET", &a]]).await;
    assert_eq!(replies, format!("$-1\r\n{}", bulk("1")));
}

#[tokio::test]
async fn a_node_seen_down_is_not_waited_for() {
    let mut cluster = InMemoryCluster::new(3, 3, 0);
    let k = cluster.key_with_primary("k", 0);
    let mut client = cluster.client(0);
    assert_eq!(client.pipeline(&[&["SET", &k, "v"]]).await, "+OK\r\n");
    // Failure detection marks node 2 down: reads and writes go on with the other two,
    // and the write for node 2 waits in a hint.
    cluster.cut(2);
    cluster.set_state(2, MemberState::Down);
    let mut client = cluster.client(1);
    let replies = client.pipeline(&[&["SET", &k, "w"], &["GET", &k]]).await;
    assert_eq!(replies, format!("+OK\r\n{}", bulk("w")));
    let replicator = &cluster.nodes[0].cluster.as_ref().unwrap().replicator;
    assert_eq!(replicator.hints().nodes().len(), 1);
}

#[tokio::test]
async fn with_copies_a_key_expires_by_the_one_rule_on_every_node() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let k = cluster.key_with_primary("k", 2);
    let mut client = cluster.client(0);
    assert_eq!(
        client.pipeline(&[&["SET", &k, "v", "PX", "100"]]).await,
        "+OK\r\n"
    );
    // Alive at its deadline, gone a millisecond after, whichever node is asked.
    cluster.clock.advance(std::time::Duration::from_millis(100));
    for index in 0..3 {
        assert_eq!(
            cluster.client(index).pipeline(&[&["GET", &k]]).await,
            bulk("v")
        );
    }
    cluster.clock.advance(std::time::Duration::from_millis(1));
    for index in 0..3 {
        let replies = cluster
            .client(index)
            .pipeline(&[&["GET", &k], &["EXISTS", &k]])
            .await;
        assert_eq!(replies, "$-1\r\n:0\r\n");
    }
}
