//! What a node answers its peers: every [`Request`] another node sends it.
//!
//! A peer's [`Request::Execute`] runs through the same executor as a local client's
//! commands ([`run_here`]), on a session that is authenticated (the peer proved it knows
//! the cluster secret) and speaks the RESP version of the client the peer coordinates
//! for. Its commands are counted here only as run for a peer; their keyspace reads go
//! back with the replies, for the peer to count ([`crate::accounting`]). A request that
//! arrives after its deadline (plus [`CLOCK_SKEW_ALLOWANCE_MS`]) is refused unrun: its
//! sender has already told its client it failed.
//!
//! The other requests serve replication: `Apply` and `Read` (a replica's entries),
//! `Evict` (an eviction by another replica), `Digest` and `BucketVersions`
//! (anti-entropy), `KeyspaceCounts` (INFO's keyspace section); `Publish` delivers
//! messages published on the peer to this node's subscribers, and `Ping` tells the
//! peer's relay that this node answers ([`crate::pubsub_relay`]).
//!
//! The RPC server starts before the node's state exists (the state holds the cluster
//! machinery); [`HandlerSlot`] is the handler the server is given, which answers once
//! [`HandlerSlot::serve`] has connected it to the state.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use quorra_cluster::antientropy;
use quorra_cluster::membership::ClusterView;
use quorra_cluster::message::{DeltaAnswer, Request, Response, WireMessage};
use quorra_ring::NodeId;
use quorra_store::{DeltaOutcome, Version, VersionedEntry};

use crate::accounting;
use crate::commands::{self, server::keyspace_counts};
use crate::executor::{Mode, protocol_of, run_here, settle};
use crate::node_replicas::{apply_delta_waiting, apply_entry, read_entries};
use crate::pubsub::{Admission, Kind, Published};
use crate::read_through;
use crate::session::Session;
use crate::shared::Shared;
use crate::tracking::Tracker;
use crate::transaction;
use crate::wall_clock::unix_ms;
use crate::write_behind;

/// How far nodes' clocks may disagree before a request that arrived in time is taken for
/// one that arrived after its deadline (see [`Request::Execute`]'s `deadline_ms`).
pub const CLOCK_SKEW_ALLOWANCE_MS: u64 = 1_000;

/// The handler of a node's RPC server, answering once it is connected to the node's
/// state (and while the state lives). Clones share the connection.
#[derive(Clone, Default)]
pub struct HandlerSlot {
    shared: Arc<OnceLock<Weak<Shared>>>,
}

impl HandlerSlot {
    /// Connects the handler to the node's state: peers' requests are served from now.
    pub fn serve(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
    }

    /// The RPC handler.
    pub fn handler(
        &self,
    ) -> impl Fn(NodeId, Bytes) -> quorra_cluster::rpc::BoxFuture<Result<Bytes, String>>
    + Clone
    + Send
    + Sync
    + 'static {
        let slot = self.shared.clone();
        move |from, payload| {
            let shared = slot.get().and_then(Weak::upgrade);
            Box::pin(async move {
                let shared = shared.ok_or("node is starting or stopping")?;
                answer(shared, from, payload).await
            })
        }
    }
}

/// Refuses commands sent by `from` that arrived after their deadline (see
/// [`Request::Execute`]'s `deadline_ms`), or an empty one.
fn check_commands(from: &NodeId, commands: &[Vec<Bytes>], deadline_ms: u64) -> Result<(), String> {
    if unix_ms() > deadline_ms.saturating_add(CLOCK_SKEW_ALLOWANCE_MS) {
        return Err(format!(
            "request from {from} arrived after its deadline; not run"
        ));
    }
    if commands.iter().any(Vec::is_empty) {
        return Err(format!("empty command from {from}"));
    }
    Ok(())
}

/// Serves one request from the authenticated peer `from`.
pub async fn answer(shared: Arc<Shared>, from: NodeId, payload: Bytes) -> Result<Bytes, String> {
    let request = Request::decode(&payload).map_err(|error| error.to_string())?;
    let response = match request {
        Request::Execute {
            resp3,
            db,
            commands,
            replicate,
            primary_only,
            deadline_ms,
            track,
        } => {
            check_commands(&from, &commands, deadline_ms)?;
            let mut session = Session::new(shared.peer_client.clone(), false);
            session.protocol = protocol_of(resp3);
            // The peer's client tracks what it reads: the peer follows the keys read here.
            session.tracked_for = track.then(|| from.clone());
            let mode = Mode {
                protocol: session.protocol,
                db,
                replicate,
                primary_only,
                track: false,
            };
            let view = shared.cluster.as_ref().map(|node| node.view());
            let (replies, lookups) = match &view {
                Some(view) => run_here(&shared, view, &mut session, &commands, mode).await,
                None => {
                    session.select(db);
                    commands::run_each(&shared, &mut session, &commands)
                }
            };
            settle(&shared, &mut session).await;
            // The peer's node answers the client and counts the commands; here they
            // count only as run for a peer.
            accounting::peer_commands(&shared, replies.len());
            Response::Replies {
                replies,
                hits: lookups.hits,
                misses: lookups.misses,
            }
        }
        Request::Exec {
            ref commands,
            deadline_ms,
            ..
        } => {
            check_commands(&from, commands, deadline_ms)?;
            let view = shared_view(&shared)?;
            let (reply, lookups) = transaction::exec_request(&shared, &view, request).await;
            accounting::peer_commands(&shared, 1);
            Response::Replies {
                replies: vec![reply],
                hits: lookups.hits,
                misses: lookups.misses,
            }
        }
        Request::KeyspaceCounts { primary_only } => {
            let databases = keyspace_counts(&shared, primary_only)
                .into_iter()
                .map(|counts| (counts.db, counts.keys, counts.expires))
                .collect();
            Response::KeyspaceCounts { databases }
        }
        Request::Apply { entries, atomic } => {
            // At a key's primary, an applied entry is a change its followers did not hear
            // of (a hint, a repair, an acting primary's write): it is told. Elsewhere the
            // primary tells them.
            let view = shared.cluster.as_ref().map(|node| (node, node.view()));
            let primary_here = |key: &[u8]| {
                !shared.tracking.is_idle()
                    && view.as_ref().is_some_and(|(node, view)| {
                        node.placement(view).primary(key) == Some(&view.self_id)
                    })
            };
            let section = atomic.then(|| shared.store.exclusive_section());
            let outcomes = entries
                .into_iter()
                .map(|(key, entry)| {
                    let entry = entry.into();
                    let outcome = apply_entry(&shared.store, &key, VersionedEntry::clone(&entry));
                    if outcome.is_ok() {
                        if primary_here(&key) {
                            let nodes = shared.tracking.changed(&shared.pubsub, [&key], None);
                            shared.tracking.queue(nodes);
                        }
                        // A copy of a write: in a write-behind namespace, this replica
                        // keeps the write's mark until the primary has flushed it.
                        write_behind::mark_applied(&shared, &key, &entry);
                    }
                    outcome.err()
                })
                .collect();
            drop(section);
            // A delta waiting for one of these as its base can now apply.
            if let Some(cluster) = shared.cluster.as_ref() {
                cluster.replica_writes.notify_waiters();
            }
            Response::Applied(outcomes)
        }
        Request::ApplyDeltas { deltas } => {
            let cluster = shared.cluster.as_ref().ok_or("not in a cluster")?;
            let applied = deltas.into_iter().map(|(key, delta)| {
                let (store, notify) = (&shared.store, &cluster.replica_writes);
                async move {
                    let delta = delta.into();
                    match apply_delta_waiting(store, notify, &key, &delta).await {
                        Ok(DeltaOutcome::NeedsWhole) => DeltaAnswer::NeedsWhole,
                        Ok(_) => DeltaAnswer::Stored,
                        Err(why) => DeltaAnswer::Refused(why),
                    }
                }
            });
            Response::DeltasApplied(futures_util::future::join_all(applied).await)
        }
        Request::Flushed { entries } => {
            write_behind::flushed_elsewhere(&shared, &entries);
            Response::Flushed
        }
        Request::Publish {
            stream,
            batch,
            dropped,
            messages,
        } => {
            // Delivered by a task of its own: a sender that stops waiting (its timeout)
            // drops the connection, which cancels this handler, and a batch cancelled
            // halfway would lose its second half (sent again, it is taken as delivered).
            let relayed = Relayed {
                from,
                stream,
                batch,
                dropped,
                messages,
            };
            let delivery = tokio::spawn(deliver_relayed(shared.clone(), relayed));
            let receivers = delivery.await.map_err(|error| error.to_string())?;
            Response::Published { receivers }
        }
        Request::Ping => Response::Pong,
        Request::Invalidate { keys } => {
            let nodes = shared.tracking.changed(&shared.pubsub, &keys, None);
            shared.tracking.queue(nodes);
            if shared.hot_cache.enabled() {
                for key in &keys {
                    shared.hot_cache.changed_at_source(&shared.store, key);
                }
            }
            Response::Invalidated
        }
        Request::FollowPrefixes { prefixes } => {
            shared
                .tracking
                .follow_prefixes(&from, prefixes, std::time::Instant::now());
            Response::Invalidated
        }
        Request::Read {
            keys,
            promote,
            follow,
        } => {
            if follow {
                // Before the read: a change after it is told to the peer.
                let peer = Tracker::Node(from.clone());
                shared.tracking.follow(&shared.pubsub, &peer, &keys);
            }
            let now = shared.store.now_ms();
            let entries = read_entries(&shared.store, &keys, promote);
            Response::Entries(
                keys.iter()
                    .zip(entries)
                    .map(|(key, entry)| {
                        if promote {
                            // A client's GET or MGET: at the key's primary, a stale
                            // value queues its refresh.
                            read_through::note_stale_entry(&shared, key, entry.as_ref(), now);
                        }
                        entry.map(Into::into)
                    })
                    .collect(),
            )
        }
        Request::Evict { entries } => {
            let mut dropped = 0;
            for (key, hlc, node) in entries {
                dropped += u64::from(shared.store.evict_replica(&key, Version { hlc, node }));
            }
            Response::Evicted { dropped }
        }
        Request::Digest { copies } => {
            let view = shared_view(&shared)?;
            Response::Digest(antientropy::digest(
                &shared.store,
                &view,
                &from,
                copies as usize,
            ))
        }
        Request::BucketVersions { copies, buckets } => {
            let view = shared_view(&shared)?;
            let buckets: Vec<usize> = buckets.into_iter().map(|bucket| bucket as usize).collect();
            let versions = antientropy::bucket_versions(
                &shared.store,
                &view,
                &from,
                copies as usize,
                &buckets,
            );
            Response::Versions(
                versions
                    .into_iter()
                    .map(|(bucket, key, version)| (bucket as u32, key, version.hlc, version.node))
                    .collect(),
            )
        }
    };
    Ok(response.encode())
}

fn shared_view(shared: &Shared) -> Result<Arc<ClusterView>, String> {
    shared
        .cluster
        .as_ref()
        .map(|node| node.view())
        .ok_or_else(|| "not in cluster mode".to_owned())
}

/// A batch of messages a peer relayed ([`Request::Publish`]).
struct Relayed {
    /// The peer.
    from: NodeId,
    stream: u64,
    batch: u64,
    dropped: u64,
    messages: Vec<WireMessage>,
}

/// Delivers a batch of messages a peer relayed to this node's subscribers, after the
/// batches it relayed before (one at a time per sender) and only once: a batch that
/// arrives again (its sender got no answer in time) is answered without being delivered.
/// Subscribers that missed messages of that peer (it dropped them, its queue being full)
/// are disconnected first. How many deliveries it made.
async fn deliver_relayed(shared: Arc<Shared>, relayed: Relayed) -> u64 {
    let Relayed {
        from,
        stream,
        batch,
        dropped,
        messages,
    } = relayed;
    let pubsub = &shared.pubsub;
    let inbound = pubsub.inbound(from.as_str());
    let mut position = inbound.lock().await;
    let count = messages.len() as u64;
    let missed = match position.admit(stream, batch) {
        Admission::Duplicate => {
            pubsub
                .counters
                .relay_duplicates
                .fetch_add(count, Ordering::Relaxed);
            return 0;
        }
        Admission::Deliver { missed } => missed || dropped > 0,
    };
    if missed {
        let closed = pubsub.disconnect_all();
        if closed > 0 {
            tracing::warn!(peer = %from, dropped, subscribers = closed,
                "a peer dropped pub/sub messages for this node: the subscribers that missed them are disconnected");
        }
    }
    pubsub
        .counters
        .relay_received
        .fetch_add(count, Ordering::Relaxed);
    let mut receivers = 0;
    for (delivered, message) in messages.into_iter().enumerate() {
        // A batch to many subscribers is long work: let the node's other tasks (gossip
        // among them) run in between.
        if delivered % 64 == 63 {
            tokio::task::yield_now().await;
        }
        let kind = match message.sharded {
            true => Kind::Shard,
            false => Kind::Channel,
        };
        receivers += pubsub.deliver(Published {
            kind,
            channel: message.channel,
            message: message.message,
        }) as u64;
    }
    receivers
}
