//! Collections replicated under faults, against an in-memory cluster
//! ([`crate::in_memory_cluster`]): a hash written concurrently through all three nodes
//! while one replica is cut off converges, field by field, on every replica once the
//! link heals; and a sorted set whose primary is cut off is written through a stand-in
//! and converges the same way; and anti-entropy alone (no hints) repairs a replica that
//! missed writes to a set and a list; and hash writes that fail their quorum are undone
//! on the primary, from the store's journal. No sockets, no sleeping.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use quorra_store::collection::{HashValue, ListValue, SetValue, SortedSetValue};

use crate::in_memory_cluster::{InMemoryCluster, node_id};

/// Node `index`'s own copy of hash `key`, field by field.
fn local_hash(cluster: &InMemoryCluster, index: usize, key: &str) -> BTreeMap<String, String> {
    cluster.nodes[index]
        .store
        .read_collection::<HashValue, _>(key.as_bytes(), |hash, now| {
            hash.iter(now)
                .map(|field| {
                    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                    (text(field.name()), text(field.value()))
                })
                .collect()
        })
        .expect("a hash")
        .unwrap_or_default()
}

/// Delivers every hint any node keeps for node `target`.
async fn replay_hints_for(cluster: &InMemoryCluster, target: usize) -> usize {
    let mut delivered = 0;
    for node in &cluster.nodes {
        let replicator = &node.cluster.as_ref().expect("cluster").replicator;
        delivered += replicator.replay_hints(&node_id(target)).await;
    }
    delivered
}

#[tokio::test]
async fn a_hash_written_through_three_nodes_while_a_replica_is_cut_off_converges_field_by_field() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let key = cluster.key_with_primary("session", 0);
    let mut clients: Vec<_> = (0..3).map(|i| cluster.client(i)).collect();
    assert_eq!(
        clients[0].pipeline(&[&["HSET", &key, "base", "0"]]).await,
        ":1\r\n"
    );
    cluster.cut(2);
    // Rounds of writes through every node, each round's three in flight together:
    // distinct fields per writer, and one field all of them fight over.
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    acknowledged.insert("base".into(), "0".into());
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..40 {
        let commands: Vec<Vec<String>> = (0..3)
            .map(|writer| {
                let (field, value) = match round % 4 {
                    0 => ("shared".to_owned(), format!("w{writer}r{round}")),
                    _ => (format!("w{writer}f{}", round % 7), format!("r{round}")),
                };
                vec!["HSET".into(), key.clone(), field, value]
            })
            .collect();
        let [c0, c1, c2] = &mut clients[..] else {
            unreachable!()
        };
        let words: Vec<Vec<&str>> = commands
            .iter()
            .map(|command| command.iter().map(String::as_str).collect())
            .collect();
        let (a, b, c) = ([&words[0][..]], [&words[1][..]], [&words[2][..]]);
        let replies = tokio::join!(c0.pipeline(&a), c1.pipeline(&b), c2.pipeline(&c));
        for (writer, reply) in [replies.0, replies.1, replies.2].into_iter().enumerate() {
            if reply.starts_with(':') {
                accepted += 1;
                acknowledged.insert(commands[writer][2].clone(), commands[writer][3].clone());
            } else {
                assert_eq!(writer, 2, "only the cut-off node refuses: {reply}");
                refused += 1;
            }
        }
    }
    assert_eq!((accepted, refused), (80, 40));
    // The primary serialised the writes: what it holds is the acknowledged writes in
    // the order they ran there, the same field set as `acknowledged`, and for the field
    // they shared, one of its acknowledged values.
    let primary = local_hash(&cluster, 0, &key);
    assert_eq!(
        primary.keys().collect::<Vec<_>>(),
        acknowledged.keys().collect::<Vec<_>>()
    );
    for (field, value) in &acknowledged {
        if field != "shared" {
            assert_eq!(&primary[field], value, "{field}");
        }
    }
    assert_eq!(local_hash(&cluster, 1, &key), primary, "the other replica");
    // The cut-off replica has only what it held before: its refused writes were undone.
    assert_eq!(
        local_hash(&cluster, 2, &key),
        BTreeMap::from([("base".to_owned(), "0".to_owned())])
    );

    // Each acknowledged write reached the primary's own store and the other replica as
    // a delta (its one field), not as the whole hash.
    let stats = cluster.nodes[0]
        .cluster
        .as_ref()
        .expect("cluster")
        .replicator
        .stats();
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    assert!(
        load(&stats.deltas_sent) >= 2 * 80,
        "{}",
        load(&stats.deltas_sent)
    );

    cluster.heal();
    assert!(replay_hints_for(&cluster, 2).await > 0);
    for index in 0..3 {
        assert_eq!(local_hash(&cluster, index, &key), primary, "node {index}");
    }
    // Reads through every node answer the same, from the primary.
    for client in &mut clients {
        let reply = client.pipeline(&[&["HLEN", &key]]).await;
        assert_eq!(reply, format!(":{}\r\n", primary.len()));
    }
}

#[tokio::test]
async fn a_sorted_set_whose_primary_is_cut_off_is_written_through_a_stand_in_and_converges() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let key = cluster.key_with_primary("board", 2);
    let mut client = cluster.client(0);
    client.pipeline(&[&["ZADD", &key, "1", "ada"]]).await;
    cluster.cut(2);
    for (score, member) in [("5", "bob"), ("3", "cy"), ("9", "ada")] {
        let reply = client.pipeline(&[&["ZADD", &key, score, member]]).await;
        assert!(reply.starts_with(':'), "{reply}");
    }
    let reply = client.pipeline(&[&["ZINCRBY", &key, "2", "cy"]]).await;
    assert_eq!(reply, "$1\r\n5\r\n");
    cluster.heal();
    assert!(replay_hints_for(&cluster, 2).await > 0);
    let members = |index: usize| {
        cluster.nodes[index]
            .store
            .read_collection::<SortedSetValue, _>(key.as_bytes(), |zset, _| {
                zset.ascending()
                    .map(|(member, score)| (String::from_utf8_lossy(member).into_owned(), score))
                    .collect::<Vec<_>>()
            })
            .unwrap()
            .unwrap_or_default()
    };
    let expected = vec![
        ("bob".to_owned(), 5.0),
        ("cy".to_owned(), 5.0),
        ("ada".to_owned(), 9.0),
    ];
    for index in 0..3 {
        assert_eq!(members(index), expected, "node {index}");
    }
    let reply = client.pipeline(&[&["ZREVRANGE", &key, "0", "0"]]).await;
    assert_eq!(reply, "*1\r\n$3\r\nada\r\n");
}

#[tokio::test]
async fn anti_entropy_alone_repairs_a_replica_that_missed_writes_to_a_set_and_a_list() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let tags = cluster.key_with_primary("tags", 0);
    let queue = cluster.key_with_primary("queue", 0);
    let mut client = cluster.client(0);
    client
        .pipeline(&[&["SADD", &tags, "a", "b"], &["RPUSH", &queue, "1", "2"]])
        .await;
    cluster.cut(2);
    let replies = client
        .pipeline(&[
            &["SADD", &tags, "c"],
            &["SREM", &tags, "a"],
            &["LPOP", &queue],
            &["RPUSH", &queue, "3"],
        ])
        .await;
    assert_eq!(replies, ":1\r\n:1\r\n$1\r\n1\r\n:2\r\n");
    cluster.heal();
    // The hints for node 2 are thrown away: only anti-entropy can repair it now.
    for node in &cluster.nodes {
        node.cluster
            .as_ref()
            .unwrap()
            .replicator
            .hints()
            .take(&node_id(2));
    }
    let set = |index: usize| {
        let mut members: Vec<Vec<u8>> = cluster.nodes[index]
            .store
            .read_collection::<SetValue, _>(tags.as_bytes(), |set, _| {
                set.iter().map(<[u8]>::to_vec).collect()
            })
            .unwrap()
            .unwrap_or_default();
        members.sort();
        members
    };
    let list = |index: usize| {
        cluster.nodes[index]
            .store
            .read_collection::<ListValue, _>(queue.as_bytes(), |list, _| {
                list.iter().map(<[u8]>::to_vec).collect::<Vec<_>>()
            })
            .unwrap()
            .unwrap_or_default()
    };
    assert_eq!(
        set(2),
        [b"a".to_vec(), b"b".to_vec()],
        "node 2 missed the writes"
    );
    let node = cluster.nodes[0].cluster.as_ref().unwrap();
    let view = node.view();
    let report =
        crate::cluster_tasks::sync_with_peer(&cluster.nodes[0], node, &view, &node_id(2), 3)
            .await
            .unwrap();
    assert_eq!(report.pushed, 2, "{report:?}");
    for index in 0..3 {
        assert_eq!(set(index), [b"b".to_vec(), b"c".to_vec()], "node {index}");
        assert_eq!(list(index), [b"2".to_vec(), b"3".to_vec()], "node {index}");
    }
}

#[tokio::test]
async fn hash_writes_that_fail_their_quorum_leave_the_primary_as_it_was() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let key = cluster.key_with_primary("profile", 0);
    let mut client = cluster.client(0);
    assert_eq!(
        client
            .pipeline(&[&["HSET", &key, "name", "ada", "city", "x"]])
            .await,
        ":2\r\n"
    );
    let original = local_hash(&cluster, 0, &key);
    // The primary is cut off from the other replicas (it does not know yet): its
    // writes run, reach no other replica, fail their quorum and must leave nothing.
    // Element updates are undone from the store's journal (no copy of the hash is
    // kept), a replacement from the entry it replaced. (A pipeline replicates a key's
    // writes one command at a time: a command on a key already waiting flushes first.)
    cluster.cut(0);
    let pipelines: [&[&[&str]]; 3] = [
        // An element update, then a replacement of the same key.
        &[&["HSET", &key, "name", "grace"], &["DEL", &key]],
        // Two element updates.
        &[&["HSET", &key, "name", "grace"], &["HDEL", &key, "city"]],
        // An update that empties the hash (undone from its tombstone), then one that
        // recreates it.
        &[&["HDEL", &key, "name", "city"], &["HSET", &key, "new", "1"]],
    ];
    for commands in pipelines {
        let reply = client.pipeline(commands).await;
        assert!(reply.contains("NOQUORUM"), "{reply}");
        assert_eq!(
            local_hash(&cluster, 0, &key),
            original,
            "after {commands:?}"
        );
    }
    cluster.heal();
    for index in 0..3 {
        assert_eq!(local_hash(&cluster, index, &key), original, "node {index}");
    }
}
