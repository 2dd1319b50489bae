//! Membership over chitchat's in-memory transport, with links cut and healed, on tokio's
//! paused clock: time advances only when every task waits, so the failure-detection
//! bounds below are exact virtual times, not wall-clock races.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use quorra_cluster::membership::{
    ClusterView, DEFAULT_DEAD_NODE_GRACE, ForgetError, MemberState, Membership, MembershipConfig,
    NodeAddresses,
};
use quorra_cluster::placement::Placement;
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

fn serving_ids(view: &ClusterView) -> Vec<&str> {
    view.serving().map(|m| m.id.as_str()).collect()
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
        until(&mut node.subscribe(), "three nodes serving", |view| {
            serving_ids(view) == ["a", "b", "c"]
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
        assert_eq!(
            va.ring.lookup(key.as_bytes()),
            vc.ring.lookup(key.as_bytes())
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_node_is_marked_down_within_three_seconds_and_rejoins_after_healing() {
    let transport = ChannelTransport::default();
    let [a, b, c] = three_nodes(&transport).await;
    let cut_at = Instant::now();
    transport.remove_link(addr(10_003), addr(10_001)).await;
    transport.remove_link(addr(10_003), addr(10_002)).await;

    // The majority side marks c down; c, alone, marks both others down. Everyone still
    // counts all three: the ring, and so every key's replicas, stay as they were.
    for node in [&a, &b] {
        until(&mut node.subscribe(), "c marked down", |view| {
            state_of(view, "c") == Some(MemberState::Down) && serving_ids(view) == ["a", "b"]
        })
        .await;
        assert_eq!(ring_ids(&node.view()), ["a", "b", "c"]);
    }
    let detected_after = cut_at.elapsed();
    assert!(
        detected_after <= Duration::from_secs(3),
        "detection took {detected_after:?} of virtual time with the default settings"
    );
    until(&mut c.subscribe(), "c alone", |view| {
        serving_ids(view) == ["c"]
    })
    .await;
    assert_eq!(ring_ids(&c.view()), ["a", "b", "c"]);

    transport.add_link(addr(10_003), addr(10_001)).await;
    transport.add_link(addr(10_003), addr(10_002)).await;
    for node in [&a, &b, &c] {
        until(&mut node.subscribe(), "healed", |view| {
            serving_ids(view) == ["a", "b", "c"]
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

/// Cuts (or heals) every link between the node on `port` and the others.
async fn isolate(transport: &ChannelTransport, port: u16, others: &[u16], cut: bool) {
    for &other in others {
        if cut {
            transport.remove_link(addr(port), addr(other)).await;
        } else {
            transport.add_link(addr(port), addr(other)).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_partition_longer_than_every_membership_timeout_never_shrinks_the_count() {
    let transport = ChannelTransport::default();
    let [a, b, c] = three_nodes(&transport).await;
    isolate(&transport, 10_003, &[10_001, 10_002], true).await;
    until(&mut c.subscribe(), "c alone", |view| {
        serving_ids(view) == ["c"]
    })
    .await;
    // Three times chitchat's dead-node grace period: gossip has dropped the others'
    // state long ago, and each side still counts all three members.
    tokio::time::sleep(DEFAULT_DEAD_NODE_GRACE * 3).await;
    for (node, serving) in [(&a, vec!["a", "b"]), (&b, vec!["a", "b"]), (&c, vec!["c"])] {
        let view = node.view();
        assert_eq!(ring_ids(&view), ["a", "b", "c"], "{}", view.self_id);
        assert_eq!(serving_ids(&view), serving, "{}", view.self_id);
        assert_eq!(Placement::new(&view, 3).copies(), 3, "{}", view.self_id);
    }
    assert_eq!(state_of(&c.view(), "a"), Some(MemberState::Down));
    isolate(&transport, 10_003, &[10_001, 10_002], false).await;
    for node in [&a, &b, &c] {
        until(&mut node.subscribe(), "healed", |view| {
            serving_ids(view) == ["a", "b", "c"]
        })
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn only_a_down_member_can_be_forgotten_and_then_every_node_stops_counting_it() {
    let transport = ChannelTransport::default();
    let [a, b, c] = three_nodes(&transport).await;
    assert_eq!(
        b.forget(&"c".into()),
        Err(ForgetError::Alive("c".into(), MemberState::Up))
    );
    assert_eq!(b.forget(&"b".into()), Err(ForgetError::Myself));
    assert_eq!(
        b.forget(&"zz".into()),
        Err(ForgetError::Unknown("zz".into()))
    );
    c.stop();
    until(&mut b.subscribe(), "c down", |view| {
        state_of(view, "c") == Some(MemberState::Down)
    })
    .await;
    assert_eq!(ring_ids(&b.view()), ["a", "b", "c"]);
    b.forget(&"c".into()).expect("c is down");
    // The tombstone travels: a stops counting c too, without being told directly.
    for node in [&a, &b] {
        until(&mut node.subscribe(), "c forgotten", |view| {
            ring_ids(view) == ["a", "b"] && state_of(view, "c").is_none()
        })
        .await;
    }
    assert_eq!(Placement::new(&a.view(), 3).copies(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_counts_the_cluster_it_remembers_and_joins_only_once_it_hears_it() {
    let dir = std::env::temp_dir().join(format!("quorra-membership-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let with_roster = |name: &str, port: u16, generation: u64| {
        let mut config = config(name, port, "secret");
        config.generation = generation;
        config.roster_file = Some(dir.join(format!("{name}.roster")));
        config
    };
    let transport = ChannelTransport::default();
    let a = start(&transport, with_roster("a", 10_001, 1)).await;
    let b = start(&transport, with_roster("b", 10_002, 1)).await;
    let c = start(&transport, with_roster("c", 10_003, 1)).await;
    for node in [&a, &b, &c] {
        until(&mut node.subscribe(), "three serving", |view| {
            serving_ids(view) == ["a", "b", "c"] && view.joined
        })
        .await;
    }
    // Give the views task a round to write the roster file, then crash c.
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.stop();
    drop(c);
    // Let the stopped gossip task close its socket before the address is taken again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // c restarts (a new generation) while cut off from the others: it is not alone in
    // its own eyes, it is a member of a three-node cluster it cannot reach.
    isolate(&transport, 10_003, &[10_001, 10_002], true).await;
    let restarted = Membership::start_with_transport(with_roster("c", 10_003, 2), &transport)
        .await
        .expect("membership starts");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let view = restarted.view();
    assert!(!view.joined, "{view:#?}");
    assert_eq!(ring_ids(&view), ["a", "b", "c"]);
    assert_eq!(Placement::new(&view, 3).copies(), 3);
    assert!(serving_ids(&view).is_empty());
    isolate(&transport, 10_003, &[10_001, 10_002], false).await;
    until(&mut restarted.subscribe(), "joined", |view| view.joined).await;
    restarted.set_state(MemberState::Up).await;
    until(&mut a.subscribe(), "c serving again", |view| {
        serving_ids(view) == ["a", "b", "c"]
    })
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_new_node_with_seeds_has_not_joined_until_it_hears_a_member() {
    let transport = ChannelTransport::default();
    let [a, _b, _c] = three_nodes(&transport).await;
    isolate(&transport, 10_004, &[10_001, 10_002, 10_003], true).await;
    let d = Membership::start_with_transport(config("d", 10_004, "secret"), &transport)
        .await
        .expect("membership starts");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!d.view().joined);
    assert!(
        d.view().ring.is_empty(),
        "it counts nobody, itself included"
    );
    isolate(&transport, 10_004, &[10_001, 10_002, 10_003], false).await;
    until(&mut d.subscribe(), "joined", |view| {
        view.joined && ring_ids(view) == ["a", "b", "c"]
    })
    .await;
    d.set_state(MemberState::Up).await;
    until(&mut a.subscribe(), "d counted", |view| {
        ring_ids(view) == ["a", "b", "c", "d"]
    })
    .await;
}
