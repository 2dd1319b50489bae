//! quorra-client against three nodes keeping three copies: every key straight to its
//! primary (no node forwards a command), a near cache that answers repeated reads without
//! a request and drops a key as soon as it is written through another node, a
//! single-flight cache-aside load, and a near cache emptied when its node dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quorra_client::{Client, ClientConfig};
use quorra_server::RunningServer;

use crate::cluster::start_cluster_with;
use crate::common::*;

fn three_copies(config: &mut quorra_node::config::ClusterConfig) {
    config.consistency.replicas = 3;
}

/// Commands the node ran for a peer (forwarded to it) since it started.
fn forwarded_to(node: &RunningServer) -> u64 {
    node.shared
        .counters
        .peer_commands_processed
        .load(Ordering::Relaxed)
}

/// Commands the node's own clients sent it.
fn commands_at(node: &RunningServer) -> u64 {
    node.shared
        .counters
        .commands_processed
        .load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_each_key_to_its_primary_and_its_near_cache_stays_coherent() {
    let mut nodes = start_cluster_with(3, three_copies).await;
    let client = Client::connect(nodes[0].resp_addr, ClientConfig::default())
        .await
        .unwrap();
    let keys: Vec<String> = (0..60).map(|i| format!("client:{i}")).collect();
    let forwarded_before: u64 = nodes.iter().map(forwarded_to).sum();
    for key in &keys {
        client.set(key.as_bytes(), b"v1", None).await.unwrap();
        assert_eq!(
            client.get(key.as_bytes()).await.unwrap(),
            Some(Bytes::from_static(b"v1"))
        );
    }
    let forwarded: u64 = nodes.iter().map(forwarded_to).sum::<u64>() - forwarded_before;
    assert_eq!(
        forwarded, 0,
        "no node forwarded a command: each went to its primary"
    );
    assert!(
        nodes.iter().all(|node| commands_at(node) > 0),
        "the keys spread over every node"
    );

    // Read again: answered from the near cache, without a request.
    let sent_before: u64 = nodes.iter().map(commands_at).sum();
    for key in &keys {
        assert_eq!(
            client.get(key.as_bytes()).await.unwrap(),
            Some(Bytes::from_static(b"v1"))
        );
    }
    assert_eq!(nodes.iter().map(commands_at).sum::<u64>(), sent_before);
    assert_eq!(client.near_cache_size().0, keys.len());

    // A write through another node, by a plain client: acknowledged, then the near cache
    // answers the new value (the invalidation is on its way before the acknowledgement).
    let mut plain = connect(&nodes[2]).await;
    let mut longest = Duration::ZERO;
    for key in &keys {
        ok(&mut plain, &["SET", key, "v2"]).await;
        let acknowledged = Instant::now();
        while client.get(key.as_bytes()).await.unwrap() != Some(Bytes::from_static(b"v2")) {
            assert!(
                acknowledged.elapsed() < Duration::from_secs(5),
                "{key} stays stale"
            );
            tokio::task::yield_now().await;
        }
        longest = longest.max(acknowledged.elapsed());
    }
    println!("quorra-client near cache: the new value read at most {longest:?} after the write");

    // Cache-aside: twenty callers miss at once; one loads.
    let loads = Arc::new(AtomicUsize::new(0));
    let callers = (0..20).map(|_| {
        let client = client.clone();
        let loads = loads.clone();
        tokio::spawn(async move {
            client
                .get_or_load(b"client:loaded", Duration::from_secs(60), || async move {
                    loads.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, String>(Bytes::from_static(b"from the database"))
                })
                .await
        })
    });
    for caller in callers {
        assert_eq!(
            caller.await.unwrap().unwrap(),
            Bytes::from_static(b"from the database")
        );
    }
    assert_eq!(
        loads.load(Ordering::Relaxed),
        1,
        "one load for twenty callers"
    );
    assert_eq!(
        ok(&mut plain, &["GET", "client:loaded"]).await,
        bulk("from the database")
    );
    let failed = client
        .get_or_load(b"client:failing", Duration::from_secs(1), || async {
            Err::<Bytes, _>("the database is down")
        })
        .await;
    assert_eq!(
        failed.unwrap_err().to_string(),
        "loading failed: the database is down"
    );

    // A node dies: the near cache is emptied (its invalidations are lost with the
    // connection), and the client goes on with the two others.
    nodes.pop().unwrap().crash().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.near_cache_size().0 != 0 {
        assert!(Instant::now() < deadline, "the near cache is emptied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for key in &keys {
        loop {
            match client.get(key.as_bytes()).await {
                Ok(value) => {
                    assert_eq!(value, Some(Bytes::from_static(b"v2")));
                    break;
                }
                Err(error) => {
                    assert!(Instant::now() < deadline, "{key}: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
