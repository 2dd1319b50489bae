//! Quorum reads: with copies, GET, MGET and EXISTS are answered by the node the client
//! asked, from a quorum of the key's replicas. Every replica is asked for its entry, the
//! newest of the first R answers wins, and stale replicas are repaired in the
//! background ([`Replicator::read_many`](quorra_cluster::replication::Replicator::read_many)).
//! GET and MGET promote the key in the LRU of every replica they ask, as a GET does on a
//! single node, so that replicas evict the same keys; EXISTS does not. Other reads (TTL,
//! STRLEN, GETRANGE, ...) run at the primary.
//!
//! A GET or MGET that finds nothing for a key of a namespace with an origin asks the
//! key's primary for it ([`fill_from_primaries`]): the primary reads it through
//! ([`crate::read_through`]), once however many nodes ask.

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use quorra_cluster::placement::Placement;
use quorra_cluster::replication::QuorumError;
use quorra_origin::origins::Answer;
use quorra_resp::{Frame, Limits, Protocol, encode, parse_frame};
use quorra_ring::NodeId;
use quorra_store::{KeyType, Version, VersionedEntry};

use crate::accounting::Lookups;
use crate::commands::{CommandError, WRONGTYPE};
use crate::executor::{self, Cx, Mode};
use crate::plan::QuorumRead;
use crate::session::Session;

/// The keys a quorum read of `args` reads, each with its replicas.
pub fn quorum_reads(placement: &Placement<'_>, args: &[Bytes]) -> Vec<(Bytes, Vec<NodeId>)> {
    args[1..]
        .iter()
        .map(|key| {
            let replicas = placement.replicas(key).into_iter().cloned().collect();
            (key.clone(), replicas)
        })
        .collect()
}

/// The keyspace reads a quorum read of `kind` counts for these entries of its keys,
/// judged at `now_ms`: a hit per live value, a miss per other key (none for EXISTS);
/// nothing if a key had a quorum failure (the command fails).
pub fn lookups_of(
    kind: QuorumRead,
    entries: &[Result<Option<VersionedEntry>, QuorumError>],
    now_ms: u64,
) -> Lookups {
    let mut lookups = Lookups::default();
    if kind.promotes() && entries.iter().all(Result::is_ok) {
        for entry in entries.iter().flatten() {
            lookups.found(entry.as_ref().is_some_and(|entry| entry.is_live(now_ms)));
        }
    }
    lookups
}

/// Writes the reply of a quorum read from the entries of its keys, in order, judging
/// expiry at `now_ms` (the store's clock, by the one rule of
/// [`VersionedEntry::is_live`]), or returns the first quorum failure if any key had one.
pub fn write_read_reply(
    kind: QuorumRead,
    entries: Vec<Result<Option<VersionedEntry>, QuorumError>>,
    protocol: Protocol,
    now_ms: u64,
    out: &mut BytesMut,
) -> Result<(), CommandError> {
    let mut values = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = entry.map_err(|error| CommandError::new(error.to_string()))?;
        values.push(entry.filter(|entry| entry.is_live(now_ms)));
    }
    // MGET answers nil for a key that holds a collection; GET refuses it.
    let bulk = |value: &Option<VersionedEntry>, out: &mut BytesMut| match value {
        Some(entry) if entry.kind == KeyType::String => encode::bulk(out, &entry.value),
        _ => encode::null(out, protocol),
    };
    match kind {
        QuorumRead::Get
            if values[0]
                .as_ref()
                .is_some_and(|e| e.kind != KeyType::String) =>
        {
            return Err(CommandError::new(WRONGTYPE));
        }
        QuorumRead::Get => bulk(&values[0], out),
        QuorumRead::Mget => {
            encode::array_header(out, values.len());
            for value in &values {
                bulk(value, out);
            }
        }
        QuorumRead::Exists => {
            let found = values.iter().filter(|value| value.is_some()).count();
            encode::integer(out, found as i64);
        }
    }
    Ok(())
}

/// With copies: fills the entries of a quorum read (GET or MGET of `args`) that found
/// nothing for a namespace key, by asking each key's primary to GET it (the primary
/// loads it on a miss). `Err` with the first failure's text.
pub async fn fill_from_primaries(
    cx: Cx<'_>,
    args: &[Bytes],
    entries: &mut [Result<Option<VersionedEntry>, QuorumError>],
    now_ms: u64,
) -> Result<(), String> {
    let Some(origins) = &cx.shared.origins else {
        return Ok(());
    };
    let missing: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| {
            matches!(entry, Ok(None)) || matches!(entry, Ok(Some(found)) if !found.is_live(now_ms))
        })
        .map(|(position, _)| position)
        .filter(|&position| {
            origins
                .catalog()
                .namespace_of(&args[position + 1])
                .is_some()
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let answers = join_all(
        missing
            .iter()
            .map(|&position| from_primary(cx, &args[position + 1])),
    )
    .await;
    for (position, answer) in missing.into_iter().zip(answers) {
        if let Some(value) = answer? {
            entries[position] = Ok(Some(VersionedEntry::value(value, Version::default())));
        }
    }
    Ok(())
}

/// `GET key` at the key's primary, as a write-level command so that the primary stores
/// what it loads with copies.
async fn from_primary(cx: Cx<'_>, key: &Bytes) -> Answer {
    let placement = cx.node.placement(cx.view);
    let Some(primary) = placement.primary(key).cloned() else {
        return Err(crate::plan::NO_REPLICA.to_owned());
    };
    let mode = Mode {
        protocol: Protocol::Resp2,
        // The key is in stored form already: GET needs no database.
        db: 0,
        replicate: Some(cx.node.consistency.write),
        primary_only: false,
        track: false,
    };
    let mut session = Session::new(cx.shared.peer_client.clone(), false);
    let get = vec![Bytes::from_static(b"GET"), key.clone()];
    let (reply, _) = executor::run_on(cx, &mut session, &primary, get, mode)
        .await
        .map_err(|error| executor::peer_failure(&error).0.into_owned())?;
    match parse_frame(&reply, &Limits::default()) {
        Ok(Some((Frame::Bulk(value), _))) => Ok(Some(value)),
        Ok(Some((Frame::Null, _))) => Ok(None),
        Ok(Some((Frame::Error(text), _))) => Err(String::from_utf8_lossy(&text).into_owned()),
        _ => Err(format!(
            "ERR unexpected reply from the key's primary: {:?}",
            String::from_utf8_lossy(&reply)
        )),
    }
}
