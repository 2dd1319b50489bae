//! Gossip from someone without the cluster secret: rogue chitchat instances that claim
//! to be members (one says a real member is leaving, ten invent new members), one of
//! them sealing its packets with a wrong secret, and replays of real packets captured on
//! the wire. Membership does not change and clients see no errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chitchat::transport::{Transport, UdpTransport};
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use quorra_cluster::gossip_auth::{AuthenticatedUdp, GossipAuthStats};
use quorra_cluster::rpc::ClusterSecret;
use quorra_server::RunningServer;

use crate::cluster::*;
use crate::common::*;

/// A chitchat instance that gossips to `seed` as member `id` (of `generation`) in
/// `state`, over `transport`, with the cluster id an eavesdropper reads off any Syn.
async fn rogue(
    id: &str,
    generation: u64,
    state: &str,
    seed: SocketAddr,
    transport: &dyn Transport,
) -> ChitchatHandle {
    let listen: SocketAddr = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(id.to_owned(), generation, listen),
        cluster_id: ClusterSecret::new(SECRET).gossip_cluster_id(),
        gossip_interval: Duration::from_millis(20),
        listen_addr: listen,
        seed_nodes: vec![seed.to_string()],
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(60),
        catchup_callback: None,
        extra_liveness_predicate: None,
    };
    let addr = listen.to_string();
    let initial = vec![
        ("resp".to_owned(), addr.clone()),
        ("http".to_owned(), addr.clone()),
        ("cluster".to_owned(), addr),
        ("state".to_owned(), state.to_owned()),
    ];
    chitchat::spawn_chitchat(config, initial, transport)
        .await
        .expect("rogue gossip starts")
}

fn gossip_stats(node: &RunningServer) -> &GossipAuthStats {
    &node.shared.cluster.as_ref().unwrap().gossip_stats
}

#[tokio::test]
async fn forged_and_replayed_gossip_changes_no_membership_and_no_client_sees_an_error() {
    // n0 is also seeded with a tap the test listens on: n0 gossips to it now and then,
    // so the test captures real, authenticated packets to replay.
    let tap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let nodes = start_cluster_with(3, |config| {
        config.consistency.replicas = 3;
        if config.seeds.is_empty() {
            config.seeds = vec![tap.local_addr().unwrap().to_string()];
        }
    })
    .await;
    let before: Vec<_> = nodes.iter().map(|node| view(node).ring.clone()).collect();
    let n1 = view(&nodes[0]).member(&"n1".into()).unwrap().clone();

    // One rogue says n1, in a newer generation, is leaving; ten invent members that are
    // up; one more does the same sealing with a wrong secret.
    let mut rogues = vec![
        rogue(
            "n1",
            n1.generation + 1,
            "leaving",
            cluster_addr(&nodes[0]),
            &UdpTransport,
        )
        .await,
    ];
    for i in 0..10 {
        rogues.push(
            rogue(
                &format!("fake-{i}"),
                1,
                "up",
                cluster_addr(&nodes[i % 3]),
                &UdpTransport,
            )
            .await,
        );
    }
    let wrong = AuthenticatedUdp::new(
        &ClusterSecret::new("not the secret"),
        Arc::new(GossipAuthStats::default()),
    );
    rogues.push(rogue("fake-sealed", 1, "up", cluster_addr(&nodes[1]), &wrong).await);

    // Meanwhile: replay what the tap catches to every node, three times over, while a
    // client writes and reads through every node.
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(connect(node).await);
    }
    let targets: Vec<SocketAddr> = nodes.iter().map(cluster_addr).collect();
    let end = Instant::now() + Duration::from_secs(3);
    let (mut replayed, mut commands) = (0, 0);
    let mut datagram = vec![0u8; 65_536];
    while Instant::now() < end {
        if let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(5), tap.recv_from(&mut datagram)).await
        {
            for _ in 0..3 {
                for target in &targets {
                    tap.send_to(&datagram[..len], target).await.unwrap();
                    replayed += 1;
                }
            }
        }
        for (i, client) in clients.iter_mut().enumerate() {
            let key = format!("k:{}", commands % 50);
            ok(client, &["SET", &key, &i.to_string()]).await;
            assert_eq!(ok(client, &["GET", &key]).await, bulk(&i.to_string()));
            commands += 2;
        }
    }
    assert!(replayed > 0, "the tap caught no gossip to replay");

    for (node, ring) in nodes.iter().zip(&before) {
        let view = view(node);
        assert_eq!(&view.ring, ring, "{}: the ring changed", view.self_id);
        assert_eq!(serving_ids(&view), ["n0", "n1", "n2"], "{}", view.self_id);
        assert!(
            view.members
                .iter()
                .all(|member| !member.id.as_str().starts_with("fake")),
            "{}: {:?}",
            view.self_id,
            view.members
        );
        assert_eq!(
            view.member(&"n1".into()).unwrap().generation,
            n1.generation,
            "{}: n1 was replaced",
            view.self_id
        );
    }
    let dropped = |reason: fn(&GossipAuthStats) -> u64| -> u64 {
        nodes.iter().map(|node| reason(gossip_stats(node))).sum()
    };
    let replays = dropped(|stats| stats.replayed.load(Ordering::Relaxed));
    let forged = dropped(|stats| stats.forged.load(Ordering::Relaxed));
    let foreign = dropped(|stats| stats.malformed.load(Ordering::Relaxed));
    eprintln!(
        "gossip attack: {commands} commands answered; {replayed} replays sent, {replays} dropped; \
         {forged} forged and {foreign} unsealed packets dropped"
    );
    assert!(replays > 0 && forged > 0 && foreign > 0);
    let mut con = connect(&nodes[0]).await;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        !info.contains("quorra_gossip_dropped_malformed:0\r\n"),
        "{info}"
    );
    drop(rogues);
}
