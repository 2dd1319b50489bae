//! Quorum reads: with copies, GET, MGET and EXISTS are answered by the node the client
//! asked, from a quorum of the key's replicas. Every replica is asked for its entry, the
//! newest of the first R answers wins, and stale replicas are repaired in the
//! background ([`Replicator::read_many`](quorra_cluster::replication::Replicator::read_many)).
//! GET and MGET promote the key in the LRU of every replica they ask, as a GET does on a
//! single node, so that replicas evict the same keys; EXISTS does not. Other reads (TTL,
//! STRLEN, GETRANGE, ...) run at the primary.

use bytes::{Bytes, BytesMut};
use quorra_cluster::placement::Placement;
use quorra_cluster::replication::QuorumError;
use quorra_resp::{Protocol, encode};
use quorra_ring::NodeId;
use quorra_store::VersionedEntry;

use crate::accounting::Lookups;
use crate::commands::CommandError;
use crate::plan::QuorumRead;

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

/// Writes the reply of a quorum read from the entries of its keys, in order, judging
/// expiry at `now_ms` (the store's clock, by the one rule of
/// [`VersionedEntry::is_live`]); returns the keyspace reads it counts (none for
/// EXISTS), or the first quorum failure if any key had one.
pub fn write_read_reply(
    kind: QuorumRead,
    entries: Vec<Result<Option<VersionedEntry>, QuorumError>>,
    protocol: Protocol,
    now_ms: u64,
    out: &mut BytesMut,
) -> Result<Lookups, CommandError> {
    let mut values = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = entry.map_err(|error| CommandError::new(error.to_string()))?;
        values.push(entry.filter(|entry| entry.is_live(now_ms)));
    }
    let mut lookups = Lookups::default();
    let mut bulk = |value: &Option<VersionedEntry>, out: &mut BytesMut| {
        lookups.found(value.is_some());
        match value {
            Some(entry) => encode::bulk(out, &entry.value),
            None => encode::null(out, protocol),
        }
    };
    match kind {
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
            return Ok(Lookups::default());
        }
    }
    Ok(lookups)
}
