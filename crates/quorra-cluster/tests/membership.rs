//! Membership over chitchat's in-memory transport, with links cut and healed, on tokio's
//! paused clock: time advances only when every task waits, so the failure-detection
//! bounds below are exact virtual times, not wall-clock races.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use quorra_cluster::membership::{
    ClusterView, MemberState, Membership, MembershipConfig, NodeAddresses,
};
use quorra_cluster::rpc::ClusterSecret;
use tokio::sync::watch;
use tokio::time::Instant;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config(name: &str, port: u16, secret: &str) -> MembershipConfig {
    let addresses = NodeAddresses {
        resp: addr(port + 100),
        http: addr(port + 200),
        cluster: addr(port),
    };
    let mut config = MembershipConfig::new(name, 1, addresses, ClusterSecret::new(secret));
    config.seeds = vec![addr(10_001).to_string()];
    config
}

async fn start(transport: &ChannelTransport, config: MembershipConfig) -> Membership {
    let membership = Membership::start_with_transport(config, transport)
        .await
        .expect("membership starts");
    membership.set_state(MemberState::Up).await;
    membership
}

/// Waits (in virtual time, at most a minute) until `check` holds for the view.
async fn until(
    view: &mut watch::Receiver<Arc<ClusterView>>,
    what: &str,
    check: impl Fn(&ClusterView) -> bool,
) {
    let wait = async {
        loop {
            if check(&view.borrow_and_update()) {
                return;
            }
            view.changed().await.expect("membership alive");
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .is_err()
    {
        panic!("{what}: not reached; view is {:#?}", view.borrow());
    }
}

fn ring_ids(view: &ClusterView) -> Vec<&str> {
    view.ring
        .members()
        .iter()
        .map(|m| m.id().as_str())
        .collect()
}

fn state_of(view: &ClusterView, id: &str) -> Option<MemberState> {
    view.members
        .iter()
        .find(|m| m.id.as_str() == id)
        .map(|m| m.state)
}

async fn three_nodes(transport: &ChannelTransport) -> [Membership; 3] {
    let a = start(transport, config("a", 10_001, "secret")).await;
    let b = start(transport, config("b", 10_002, "secret")).await;
    let c = start(transport, config("c", 10_003, "secret")).await;
    for node in [&a, &b, &c] {
        until(&mut node.subscribe(), "three nodes in the ring", |view| {
            ring_ids(view) == ["a", "b", "c"]
        })
        .await;
    }
    [a, b, c]
}

#[tokio::test(start_paused = true)]
async fn views_converge_to_the_same_ring_with_addresses() {
    let transport = ChannelTransport::default();
    let [a, b, c] = three_nodes(&transport).await;
    let (va, vb, vc) = (a.view(), b.view(), c.view());
    assert_eq!(va.ring, vb.ring);
    assert_eq!(vb.ring, vc.ring);
    let c_seen_by_a = va.member(&"c".into()).unwrap();
    assert_eq!(c_seen_by_a.addresses.resp, addr(10_103));
    assert_eq!(c_seen_by_a.addresses.http, addr(10_203));
    assert_eq!(c_seen_by_a.state, MemberState::Up);
    // Every node computes the same owner for any key.
    for key in ["alpha", "beta", "gamma", "delta"] {
        assert_eq!(va.owner(key.as_bytes()), vc.owner(key.as_bytes()));
    }
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_node_is_marked_down_within_three_seconds_and_rejoins_after_healing() {
    let transport = ChannelTransport::default();
    let [a, b, c] = three_nodes(&transport).await;
    let cut_at = Instant::now();
    transport.remove_link(addr(10_003), addr(10_001)).await;
    transport.remove_link(addr(10_003), addr(10_002)).await;

    // The majority side drops c; c, alone, drops both others.
    for node in [&a, &b] {
        until(&mut node.subscribe(), "c marked down", |view| {
            state_of(view, "c") == Some(MemberState::Down) && ring_ids(view) == ["a", "b"]
        })
        .await;
    }
    let detected_after = cut_at.elapsed();
    assert!(
        detected_after <= Duration::from_secs(3),
        "detection took {detected_after:?} of virtual time with the default settings"
    );
    until(&mut c.subscribe(), "c alone", |view| {
        ring_ids(view) == ["c"]
    })
    .await;

    transport.add_link(addr(10_003), addr(10_001)).await;
    transport.add_link(addr(10_003), addr(10_002)).await;
    for node in [&a, &b, &c] {
        until(&mut node.subscribe(), "healed", |view| {
            ring_ids(view) == ["a", "b", "c"]
        })
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_leaving_node_is_dropped_from_the_ring_before_failure_detection() {
    let transport = ChannelTransport::default();
    let [a, _b, c] = three_nodes(&transport).await;
    c.leave().await;
    // The ring lost c while c is still listed as leaving: peers heard it leave, they did
    // not have to notice its silence.
    until(&mut a.subscribe(), "c out of the ring", |view| {
        ring_ids(view) == ["a", "b"]
    })
    .await;
    assert_eq!(state_of(&a.view(), "c"), Some(MemberState::Leaving));
}

#[tokio::test(start_paused = true)]
async fn a_node_with_another_secret_never_joins() {
    let transport = ChannelTransport::default();
    let [a, _b, _c] = three_nodes(&transport).await;
    let stranger = start(&transport, config("x", 10_009, "wrong")).await;
    // Give gossip ample rounds; a fourth node with the right secret joins meanwhile.
    let d = start(&transport, config("d", 10_004, "secret")).await;
    until(&mut a.subscribe(), "d joined", |view| {
        ring_ids(view) == ["a", "b", "c", "d"]
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(state_of(&a.view(), "x"), None);
    assert_eq!(ring_ids(&stranger.view()), ["x"]);
    drop(d);
}
