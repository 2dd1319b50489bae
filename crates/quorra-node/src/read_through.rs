//! Read-through: a GET or MGET that misses a key of a namespace with an origin loads
//! the key from the origin, stores it with the namespace's TTL and jitter, and answers
//! with it.
//!
//! It hooks into the one path after a command has run, and only when its reply is a
//! miss on such a key, so hits pay one comparison. Loads run at the key's primary,
//! where the node's [`SingleFlight`](quorra_origin::flight::SingleFlight) makes every
//! concurrent miss of the key — from this node's clients, or forwarded by other nodes —
//! wait for one load:
//!
//! - a single node, or a cluster without copies, runs GET at the key's owner, so the
//!   owner completes the reply itself ([`complete_in`], [`complete`]);
//! - with copies, GET is a quorum read by the node the client is connected to; on a
//!   miss it sends `GET key` to the key's primary as a write-level command
//!   ([`crate::quorum_read::fill_from_primaries`]), and the primary's own GET misses,
//!   loads, and stores the value through [`crate::primary_write`], which copies it to
//!   the replicas like any write.
//!
//! The leader of a flight checks the store before it loads (a flight that just ended
//! stored its value) and the negative cache (the origin recently had no such row), and
//! finishes only after the value is stored: whoever misses later finds it. A write to
//! the key while the origin answers overtakes the flight ([`crate::write_through`]):
//! the leader then answers from the cache and stores nothing, so an older row never
//! replaces a newer write. (A write that lands between that check and the store — a
//! window of microseconds, not of a load — can still be overwritten until the TTL.)
//!
//! Stale-while-revalidate: a value is stored for its TTL plus the namespace's stale
//! window. A read at the key's primary that finds it inside the window
//! ([`note_stale_reads`] at the owner, [`note_stale_entry`] for quorum reads) serves it
//! and queues one refresh; [`refresh_stale`] runs them, each a flight of its own.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use quorra_cluster::membership::ClusterView;
use quorra_cluster::replication::Level;
use quorra_origin::flight::{Leader, Turn};
use quorra_origin::origins::{Answer, NamespaceStats, Origins};
use quorra_resp::encode;
use quorra_store::VersionedEntry;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::commands::{self, CommandId, error_reply};
use crate::primary_write;
use crate::session::Session;
use crate::shared::Shared;

/// True if the reply `reply` of the command `args` is a miss that read-through may
/// fill: a GET of a namespace key that found nothing, or an MGET with a namespace key
/// that is not in the store.
pub fn needs_load(shared: &Shared, args: &[Bytes], reply: &[u8]) -> bool {
    let Some(origins) = &shared.origins else {
        return false;
    };
    // The reply's shape first: most replies (a GET's value, OK, a number) rule the
    // command out without looking its name up.
    let null = is_null(reply);
    if !null && reply.first() != Some(&b'*') {
        return false;
    }
    let in_namespace = |key: &Bytes| origins.catalog().namespace_of(key).is_some();
    match commands::lookup(&args[0]) {
        Some(CommandId::Get) => null && args.len() == 2 && in_namespace(&args[1]),
        Some(CommandId::Mget) => args[1..]
            .iter()
            .any(|key| in_namespace(key) && !stored(shared, key)),
        _ => false,
    }
}

/// True if `key` holds a value, without promoting it.
fn stored(shared: &Shared, key: &Bytes) -> bool {
    shared.store.exists(&[key]) == 1
}

fn is_null(reply: &[u8]) -> bool {
    reply == b"$-1\r\n" || reply == b"_\r\n"
}

/// After a command ran here and wrote its reply to `out` from `start`: if the reply is
/// a miss read-through can fill, replaces it with the filled reply. This node is the
/// keys' owner; `view` is `None` on a single node, and `replicate` the write level
/// when keys have copies.
pub async fn complete_in(
    shared: &Shared,
    view: Option<&ClusterView>,
    replicate: Option<Level>,
    session: &mut Session,
    out: &mut BytesMut,
    start: usize,
    args: &[Bytes],
) {
    if needs_load(shared, args, &out[start..]) {
        let reply = out.split_off(start).freeze();
        let filled = fill(shared, view, replicate, session, args, reply).await;
        out.extend_from_slice(&filled);
    } else {
        note_stale_reads(shared, args);
    }
}

/// [`complete_in`] for a reply of its own: `reply` as it is, or filled.
pub async fn complete(
    shared: &Shared,
    view: Option<&ClusterView>,
    replicate: Option<Level>,
    session: &mut Session,
    args: &[Bytes],
    reply: Bytes,
) -> Bytes {
    if !needs_load(shared, args, &reply) {
        note_stale_reads(shared, args);
        return reply;
    }
    fill(shared, view, replicate, session, args, reply).await
}

/// The reply of `args` (GET or MGET, whose first `reply` missed a namespace key, as
/// [`needs_load`] found) with its namespace keys loaded: the loaded value, or the
/// first load error.
async fn fill(
    shared: &Shared,
    view: Option<&ClusterView>,
    replicate: Option<Level>,
    session: &mut Session,
    args: &[Bytes],
    reply: Bytes,
) -> Bytes {
    if commands::lookup(&args[0]) == Some(CommandId::Get) {
        return match load_here(shared, view, replicate, &args[1]).await {
            Ok(Some(value)) => {
                let mut out = BytesMut::with_capacity(value.len() + 16);
                encode::bulk(&mut out, &value);
                out.freeze()
            }
            Ok(None) => reply,
            Err(text) => error_reply(&text),
        };
    }
    let origins = shared.origins.as_ref().expect("needs_load saw origins");
    let loads = args[1..]
        .iter()
        .filter(|key| origins.catalog().namespace_of(key).is_some() && !stored(shared, key));
    let answers = join_all(loads.map(|key| load_here(shared, view, replicate, key))).await;
    if let Some(Err(text)) = answers.into_iter().find(Result::is_err) {
        return error_reply(&text);
    }
    // Every namespace key is stored now (or has no row): the MGET answers from the
    // store, in the client's protocol.
    let (mut replies, _) = commands::run_each(shared, session, &[args]);
    replies.pop().expect("one reply per command")
}

/// `key`'s value, loaded from its namespace's origin here, at its primary, if no load
/// of it runs yet; waits for the running load otherwise. Stores what it loads, with
/// copies at `replicate` when keys have them.
pub async fn load_here(
    shared: &Shared,
    view: Option<&ClusterView>,
    replicate: Option<Level>,
    key: &Bytes,
) -> Answer {
    let origins = shared.origins.as_ref().expect("read-through needs origins");
    let Some(namespace) = origins.catalog().namespace_of(key) else {
        return Ok(None);
    };
    loop {
        match origins.flights.join(key) {
            Turn::Follow(follower) => {
                NamespaceStats::bump(&origins.stats(namespace).singleflight_dedup, 1);
                // `None`: the leader was cancelled before it finished; join again.
                if let Some(answer) = follower.wait().await {
                    return answer;
                }
            }
            Turn::Lead(leader) => {
                let owner = Owner {
                    shared,
                    view,
                    replicate,
                };
                let answer = lead(owner, origins, namespace, key, &leader).await;
                leader.finish(answer.clone());
                return answer;
            }
        }
    }
}

/// Where a loaded value is written: this node, the key's owner (its primary with
/// copies), copying the write at `replicate` when keys have copies.
#[derive(Clone, Copy)]
struct Owner<'a> {
    shared: &'a Shared,
    view: Option<&'a ClusterView>,
    replicate: Option<Level>,
}

/// A flight's work: the store, the negative cache, then the origin.
async fn lead(
    owner: Owner<'_>,
    origins: &Origins,
    namespace: usize,
    key: &Bytes,
    flight: &Leader<'_, Answer>,
) -> Answer {
    // A flight that ended between this caller's miss and now stored the value.
    if let Some(value) = owner.shared.store.get(key) {
        return Ok(Some(value));
    }
    if origins
        .negative
        .knows_missing(key, owner.shared.store.now_ms())
    {
        NamespaceStats::bump(&origins.stats(namespace).negative_hits, 1);
        return Ok(None);
    }
    load_and_store(owner, origins, namespace, key, flight).await
}

/// Loads `key` from its origin and writes what it found: the value with the
/// namespace's TTL (plus its stale window), or — the origin has no such row — the key
/// remembered as missing and deleted if the cache still holds a stale value of it.
async fn load_and_store(
    owner: Owner<'_>,
    origins: &Origins,
    namespace: usize,
    key: &Bytes,
    flight: &Leader<'_, Answer>,
) -> Answer {
    let policy = &origins.catalog().namespaces()[namespace];
    let started = std::time::Instant::now();
    let loaded = origins.load(namespace, key).await;
    owner
        .shared
        .metrics
        .origin_load(&policy.name, started.elapsed());
    if loaded.is_ok() && flight.overtaken() {
        // The key was written while the origin answered: the cache has the newer value.
        return Ok(owner.shared.store.get(key));
    }
    match loaded {
        Ok(Some(value)) => {
            let ttl_ms = policy.stored_ttl(rand::random::<f64>()).as_millis() as u64;
            let set = [
                Bytes::from_static(b"SET"),
                key.clone(),
                value.clone(),
                Bytes::from_static(b"PX"),
                Bytes::from(ttl_ms.max(1).to_string()),
            ];
            write(owner, set).await.map_err(|error| {
                format!(
                    "ORIGIN {}: loaded {} bytes but could not cache them: {error}",
                    policy.name,
                    value.len()
                )
            })?;
            Ok(Some(value))
        }
        Ok(None) => {
            let now = owner.shared.store.now_ms();
            if !policy.negative_ttl.is_zero() {
                let until = now + policy.negative_ttl.as_millis() as u64;
                origins.negative.remember(key.clone(), until, now);
            }
            if stored(owner.shared, key) {
                let delete = [Bytes::from_static(b"DEL"), key.clone()];
                write(owner, delete)
                    .await
                    .map_err(|error| format!("ORIGIN {}: {error}", policy.name))?;
            }
            Ok(None)
        }
        Err(error) => Err(format!("ORIGIN {}: {error}", policy.name)),
    }
}

/// Runs the write `command` here as the executor runs a write: with copies, as the
/// primary copying it to the replicas. `Err` with the error reply's text.
async fn write<const N: usize>(owner: Owner<'_>, command: [Bytes; N]) -> Result<(), String> {
    let shared = owner.shared;
    let mut session = Session::new(shared.peer_client.clone(), false);
    let (mut replies, _) = match (owner.view, owner.replicate) {
        (Some(view), Some(level)) => {
            primary_write::run_as_primary(shared, view, &mut session, &[command], level).await
        }
        _ => commands::run_each(shared, &mut session, &[command]),
    };
    let reply = replies.pop().expect("one reply per command");
    match reply.first() {
        Some(b'-') => Err(error_text(&reply)),
        _ => Ok(()),
    }
}

/// Notes the reads of a GET or MGET (`args`) that ran here, at the keys' owner, and
/// found values in their stale window: each queues one refresh.
pub fn note_stale_reads(shared: &Shared, args: &[Bytes]) {
    let Some(origins) = shared.origins.as_ref().filter(|o| o.has_stale_windows()) else {
        return;
    };
    if !matches!(
        commands::lookup(&args[0]),
        Some(CommandId::Get | CommandId::Mget)
    ) {
        return;
    }
    for key in &args[1..] {
        if let Some(namespace) = origins.catalog().namespace_of(key) {
            let policy = &origins.catalog().namespaces()[namespace];
            if policy.is_stale(shared.store.pttl(key)) {
                origins.serve_stale(namespace, key);
            }
        }
    }
}

/// With copies: notes that a quorum read found `entry` for `key`; if this node is the
/// key's primary and the value is in its stale window, queues one refresh. (Every
/// quorum read asks the primary too, so the primary sees every stale read.)
pub fn note_stale_entry(shared: &Shared, key: &Bytes, entry: Option<&VersionedEntry>, now_ms: u64) {
    let Some(origins) = shared.origins.as_ref().filter(|o| o.has_stale_windows()) else {
        return;
    };
    let (Some(entry), Some(node)) = (entry, &shared.cluster) else {
        return;
    };
    let (Some(namespace), Some(expire_at)) =
        (origins.catalog().namespace_of(key), entry.expire_at_ms)
    else {
        return;
    };
    let policy = &origins.catalog().namespaces()[namespace];
    let remaining = i64::try_from(expire_at.saturating_sub(now_ms)).unwrap_or(i64::MAX);
    if entry.is_live(now_ms) && policy.is_stale(remaining) {
        let view = node.view();
        if node.placement(&view).primary(key) == Some(&view.self_id) {
            origins.serve_stale(namespace, key);
        }
    }
}

/// Refreshes the stale values queued by [`note_stale_reads`] and [`note_stale_entry`],
/// several at a time, until `stop`.
pub async fn refresh_stale(shared: Arc<Shared>, stop: CancellationToken) {
    let Some(mut queue) = shared.origins.as_ref().and_then(|o| o.take_refresh_queue()) else {
        return;
    };
    let running = Arc::new(Semaphore::new(CONCURRENT_REFRESHES));
    let mut refreshes = JoinSet::new();
    loop {
        let key = tokio::select! {
            key = queue.recv() => key,
            () = stop.cancelled() => None,
        };
        let Some(key) = key else {
            break;
        };
        let permit = running
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let shared = shared.clone();
        refreshes.spawn(async move {
            refresh(&shared, &key).await;
            if let Some(origins) = &shared.origins {
                origins.refresh_done(&key);
            }
            drop(permit);
        });
        // Reap the finished ones, so the set holds only what runs.
        while refreshes.try_join_next().is_some() {}
    }
}

/// Most refreshes running at once on a node.
const CONCURRENT_REFRESHES: usize = 64;

/// One refresh: if this node is still the key's primary, no load of it runs, and it is
/// still stale, loads it again (a flight like a miss's, so misses that come meanwhile
/// wait for it).
async fn refresh(shared: &Shared, key: &Bytes) {
    let origins = shared.origins.as_ref().expect("refreshes need origins");
    let Some(namespace) = origins.catalog().namespace_of(key) else {
        return;
    };
    let view = shared.cluster.as_ref().map(|node| node.view());
    let replicate = match (&shared.cluster, &view) {
        (Some(node), Some(view)) => {
            let placement = node.placement(view);
            if placement.primary(key) != Some(&view.self_id) {
                return;
            }
            placement.replicated().then_some(node.consistency.write)
        }
        _ => None,
    };
    let owner = Owner {
        shared,
        view: view.as_deref(),
        replicate,
    };
    let Turn::Lead(leader) = origins.flights.join(key) else {
        return;
    };
    let policy = &origins.catalog().namespaces()[namespace];
    if !policy.is_stale(shared.store.pttl(key)) {
        // Refreshed (or gone) since it was queued.
        leader.finish(Ok(shared.store.get(key)));
        return;
    }
    origins.count_refresh(namespace);
    let answer = load_and_store(owner, origins, namespace, key, &leader).await;
    if let Err(error) = &answer {
        tracing::debug!(%error, "refresh failed; the stale value stays until it expires");
    }
    leader.finish(answer);
}

/// The text of an error reply (`-TEXT\r\n`), or the reply as it is.
fn error_text(reply: &[u8]) -> String {
    let text = reply.strip_prefix(b"-").unwrap_or(reply);
    let text = text.strip_suffix(b"\r\n").unwrap_or(text);
    String::from_utf8_lossy(text).into_owned()
}
