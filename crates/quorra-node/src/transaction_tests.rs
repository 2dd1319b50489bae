//! Transactions against an in-memory cluster ([`crate::in_memory_cluster`]): run at the
//! keys' primary from any node, refused whole when their keys have different replicas,
//! aborted by a write through another node, and copied to each replica all at once.

use bytes::Bytes;
use quorra_cluster::message::Request;

use crate::in_memory_cluster::{InMemoryCluster, node_id};

fn bulk(value: &str) -> String {
    format!("${}\r\n{value}\r\n", value.len())
}

/// Keys `{tag}:a`, `{tag}:b`, ... whose tag has node `primary` as its primary.
fn tagged(cluster: &InMemoryCluster, primary: usize) -> impl Fn(&str) -> String {
    let tag = cluster.key_with_primary("tag", primary);
    move |name| format!("{{{tag}}}:{name}")
}

fn value(cluster: &InMemoryCluster, node: usize, key: &str) -> Option<Bytes> {
    cluster.nodes[node]
        .store
        .get_versioned(key.as_bytes())
        .filter(|entry| !entry.tombstone)
        .map(|entry| entry.value)
}

#[tokio::test]
async fn a_transaction_runs_at_its_keys_primary_from_any_node_and_every_copy_holds_it() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let key = tagged(&cluster, 1);
    let (a, b) = (key("a"), key("b"));
    for client_node in 0..3 {
        let mut client = cluster.client(client_node);
        let replies = client
            .pipeline(&[
                &["SET", &a, "1"],
                &["MULTI"],
                &["INCR", &a],
                &["SET", &b, "x"],
                &["GET", &b],
                &["PING"],
                &["EXEC"],
                &["GET", &a],
            ])
            .await;
        let expected = [
            "+OK\r\n+OK\r\n",
            "+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n",
            &format!("*4\r\n:2\r\n+OK\r\n{}+PONG\r\n", bulk("x")),
            &bulk("2"),
        ]
        .concat();
        assert_eq!(replies, expected, "client of node {client_node}");
        for node in 0..3 {
            assert_eq!(value(&cluster, node, &a).as_deref(), Some(&b"2"[..]));
            assert_eq!(value(&cluster, node, &b).as_deref(), Some(&b"x"[..]));
        }
    }
}

#[tokio::test]
async fn keys_of_different_replicas_or_every_node_are_refused_when_queued_and_nothing_runs() {
    for copies in [1, 3] {
        let cluster = InMemoryCluster::new(3, copies, 0);
        let key = tagged(&cluster, 1);
        let other = cluster.key_with_primary("other", 2);
        let mut client = cluster.client(0);
        let crossslot = "-CROSSSLOT Keys in request don't hash to the same node\r\n";
        let replies = client
            .pipeline(&[
                &["MULTI"],
                &["SET", &key("a"), "1"],
                &["SET", &other, "2"],
                &["EXEC"],
            ])
            .await;
        let execabort = "-EXECABORT Transaction discarded because of previous errors.\r\n";
        assert_eq!(
            replies,
            format!("+OK\r\n+QUEUED\r\n{crossslot}{execabort}"),
            "{copies} copies"
        );
        let replies = client
            .pipeline(&[
                &["MULTI"],
                &["DBSIZE"],
                &["EXEC"],
                &["MGET", &key("a"), &other],
            ])
            .await;
        assert_eq!(
            replies,
            format!(
                "+OK\r\n-ERR 'dbsize' runs on every node of the cluster and cannot be part of \
                 a transaction\r\n{execabort}*2\r\n$-1\r\n$-1\r\n"
            )
        );
        // WATCH counts too: a transaction's keys must share the watched key's replicas.
        let replies = client
            .pipeline(&[
                &["WATCH", &other],
                &["MULTI"],
                &["SET", &key("a"), "1"],
                &["EXEC"],
            ])
            .await;
        assert_eq!(replies, format!("+OK\r\n+OK\r\n{crossslot}{execabort}"));
        for node in 0..3 {
            assert_eq!(value(&cluster, node, &key("a")), None);
        }
    }
}

#[tokio::test]
async fn a_write_through_another_node_aborts_a_watching_transaction() {
    for copies in [1, 3] {
        let cluster = InMemoryCluster::new(3, copies, 0);
        let key = tagged(&cluster, 1)("counter");
        let mut watcher = cluster.client(0);
        let mut writer = cluster.client(2);
        assert_eq!(
            watcher
                .pipeline(&[&["SET", &key, "1"], &["WATCH", &key]])
                .await,
            "+OK\r\n+OK\r\n"
        );
        assert_eq!(writer.pipeline(&[&["SET", &key, "5"]]).await, "+OK\r\n");
        let replies = watcher
            .pipeline(&[&["MULTI"], &["INCR", &key], &["EXEC"], &["GET", &key]])
            .await;
        assert_eq!(replies, format!("+OK\r\n+QUEUED\r\n*-1\r\n{}", bulk("5")));
        // Unchanged since the WATCH (even though it was read and the watch was renewed
        // through another node): it runs.
        let replies = watcher
            .pipeline(&[
                &["WATCH", &key],
                &["GET", &key],
                &["MULTI"],
                &["INCR", &key],
                &["EXEC"],
            ])
            .await;
        assert_eq!(
            replies,
            format!("+OK\r\n{}+OK\r\n+QUEUED\r\n*1\r\n:6\r\n", bulk("5"))
        );
        // A key that did not exist and was created since.
        let fresh = tagged(&cluster, 1)("fresh");
        assert_eq!(watcher.pipeline(&[&["WATCH", &fresh]]).await, "+OK\r\n");
        assert_eq!(writer.pipeline(&[&["SET", &fresh, "x"]]).await, "+OK\r\n");
        let replies = watcher
            .pipeline(&[&["MULTI"], &["DEL", &fresh], &["EXEC"]])
            .await;
        assert_eq!(replies, "+OK\r\n+QUEUED\r\n*-1\r\n");
    }
}

#[tokio::test]
async fn a_replica_cut_off_during_a_transaction_holds_none_of_it_until_it_gets_all_of_it() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let key = tagged(&cluster, 1);
    let keys: Vec<String> = (0..100).map(|i| key(&format!("k{i}"))).collect();
    cluster.cut(2);
    let mut commands: Vec<Vec<&str>> = vec![vec!["MULTI"]];
    commands.extend(keys.iter().map(|key| vec!["SET", key.as_str(), "v"]));
    commands.push(vec!["EXEC"]);
    let commands: Vec<&[&str]> = commands.iter().map(Vec::as_slice).collect();
    let replies = cluster.client(0).pipeline(&commands).await;
    let expected = format!(
        "+OK\r\n{}*100\r\n{}",
        "+QUEUED\r\n".repeat(100),
        "+OK\r\n".repeat(100)
    );
    assert_eq!(replies, expected);
    let held = |node: usize| {
        keys.iter()
            .filter(|key| value(&cluster, node, key).is_some())
            .count()
    };
    assert_eq!((held(0), held(1), held(2)), (100, 100, 0));
    // Back again: the primary's hints bring it every key.
    cluster.heal();
    let primary = cluster.nodes[1].cluster.as_ref().unwrap();
    primary.replicator.replay_hints(&node_id(2)).await;
    assert_eq!(held(2), 100);
}

#[tokio::test]
async fn a_transaction_sent_late_is_not_run() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let key = tagged(&cluster, 1)("late");
    let request = Request::Exec {
        resp3: false,
        db: 0,
        commands: vec![vec![
            Bytes::from_static(b"SET"),
            Bytes::from(key.clone()),
            Bytes::from_static(b"v"),
        ]],
        watched: Vec::new(),
        replicate: None,
        deadline_ms: 1,
    };
    let answer =
        crate::peer_handler::answer(cluster.nodes[1].clone(), node_id(0), request.encode()).await;
    assert!(answer.is_err());
    assert_eq!(value(&cluster, 1, &key), None);
}

/// A write the primary holds but is still copying (here: applied to its store alone):
/// a client that WATCHes the key must read it where EXEC will check the version, at
/// the primary. A quorum of the other two replicas would answer the older value, and an
/// increment built on it would commit over the newer one (a lost update; the compat
/// suite's 8 threads × 100 WATCH increments once ended at 716).
#[tokio::test]
async fn a_watched_key_is_read_at_its_primary_which_holds_every_write_first() {
    let cluster = InMemoryCluster::new(3, 3, 0);
    let key = cluster.key_with_primary("watched", 1);
    let mut writer = cluster.client(1);
    writer.pipeline(&[&["SET", &key, "1"]]).await;
    let primary = &cluster.nodes[1].store;
    let older = primary.get_versioned(key.as_bytes()).unwrap();
    let newer = quorra_store::VersionedEntry::value(
        Bytes::from_static(b"2"),
        quorra_store::Version {
            hlc: older.version.hlc + 1_000,
            node: older.version.node,
        },
    );
    primary.apply(key.as_bytes(), newer).unwrap();
    let mut client = cluster.client(0);
    assert_eq!(client.pipeline(&[&["WATCH", &key]]).await, "+OK\r\n");
    // With the primary's answers lost, the two other replicas still make a quorum: a
    // quorum read would answer their "1". The watching client must not see it.
    cluster.lose_answers(1);
    let reply = client.pipeline(&[&["GET", &key]]).await;
    assert!(reply.starts_with("-CLUSTERDOWN"), "{reply:?}");
    cluster.heal();
    assert_eq!(client.pipeline(&[&["GET", &key]]).await, bulk("2"));
    let replies = client
        .pipeline(&[&["MULTI"], &["INCR", &key], &["EXEC"]])
        .await;
    assert_eq!(replies, "+OK\r\n+QUEUED\r\n*1\r\n:3\r\n");
}
