//! The messages nodes exchange over [`rpc`](crate::rpc), encoded with postcard.
//!
//! A request is one [`Request`]; its answer one [`Response`]. The RPC layer carries them
//! as opaque payloads and its error frames carry a handler's refusal, so a peer that
//! cannot decode a request answers with an error text rather than a `Response`.
//!
//! Routing needs only [`Request::Execute`]: the coordinating node sends a client's
//! commands to the node that owns their keys, which runs them in order against its own
//! store exactly as it would for a local client (never routing them further, so two
//! nodes whose ring views briefly differ cannot bounce a command between them) and
//! returns each reply's bytes, already encoded in the client's RESP version. Sending a
//! pipeline's commands for one owner as one request keeps their order (the RPC runs
//! separate requests concurrently) and costs one round trip.

use bytes::Bytes;
use quorra_store::{EntryDelta, KeyType, Version, VersionedEntry};
use serde::{Deserialize, Serialize};

use crate::replication::Level;

/// What one node asks another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Run commands (each name first), in order, on the receiver's own store and reply
    /// with their RESP bytes ([`Response::Replies`]), encoded for a client that speaks
    /// RESP3 if `resp3` is set, RESP2 otherwise.
    Execute {
        /// RESP version of the client the replies are for.
        resp3: bool,
        /// The client's database (SELECT). The commands' keys are in stored form
        /// already; the database matters to the commands that list or count keys, and
        /// to scripts' own commands.
        db: u8,
        /// The commands, each with its arguments.
        commands: Vec<Vec<Bytes>>,
        /// With replication: the receiver runs the commands as the keys' primary and
        /// copies every key a command wrote to the key's other replicas, answering only
        /// once this many (level) have it, itself included.
        replicate: Option<Level>,
        /// Keyspace commands (KEYS, SCAN, DBSIZE, RANDOMKEY) see only the keys whose
        /// primary the receiver is, so that replicated keys are counted once.
        primary_only: bool,
        /// When the caller stops waiting, ms since the epoch on its clock. A receiver
        /// that gets the request later (it was held up in the network) refuses it rather
        /// than run writes its caller has already reported as failed.
        deadline_ms: u64,
        /// The caller's client tracks what it reads (CLIENT TRACKING): the receiver
        /// tells the caller when a key the commands read changes
        /// ([`Request::Invalidate`]).
        track: bool,
    },
    /// Count the receiver's live keys and keys with a TTL in each database (for INFO
    /// keyspace); with `primary_only`, only the keys whose primary it is.
    KeyspaceCounts {
        /// Count only the keys this node is primary for.
        primary_only: bool,
    },
    /// The receiver's entries for these keys, tombstones included.
    Read {
        /// The keys.
        keys: Vec<Bytes>,
        /// A client's read (a quorum read): the receiver promotes the entries in its LRU
        /// as a GET would. Not for replication's own reads (anti-entropy).
        promote: bool,
        /// The caller keeps copies of these keys (hot keys): the receiver tells it when
        /// one changes ([`Request::Invalidate`]).
        follow: bool,
    },
    /// These keys changed at the sender, which the receiver read through it for its
    /// tracking clients or its hot-key copies: drop what was cached of them
    /// ([`Response::Invalidated`]).
    Invalidate {
        /// The keys, in stored form.
        keys: Vec<Bytes>,
    },
    /// The BCAST prefixes of the sender's tracking clients, replacing those it sent
    /// before: the receiver tells it of every change of a key under one
    /// ([`Response::Invalidated`]).
    FollowPrefixes {
        /// The prefixes (an empty one: every key).
        prefixes: Vec<Bytes>,
    },
    /// Anti-entropy: the receiver's digest of the entries it shares with the caller
    /// under `copies` copies per key.
    Digest {
        /// N, as the caller counts it.
        copies: u32,
    },
    /// Anti-entropy: the (key, version) of the shared entries in some digest buckets.
    BucketVersions {
        /// N, as the caller counts it.
        copies: u32,
        /// The buckets.
        buckets: Vec<u32>,
    },
    /// Store each entry if it is newer than what the receiver holds (last writer wins):
    /// the copies of a pipeline's writes, hints, repairs ([`Response::Applied`]).
    Apply {
        /// (key, entry) pairs.
        entries: Vec<(Bytes, WireEntry)>,
        /// The copies of one transaction: stored in one step, so that no reader of the
        /// receiver sees some of them without the others.
        atomic: bool,
    },
    /// Apply each delta — the elements a write to a hash, set or sorted set changed —
    /// if the receiver holds the version it starts from ([`Response::DeltasApplied`]).
    ApplyDeltas {
        /// (key, delta) pairs.
        deltas: Vec<(Bytes, WireDelta)>,
    },
    /// Run a transaction (the commands queued between MULTI and EXEC) as its keys'
    /// primary, atomically, and reply with EXEC's reply ([`Response::Replies`], one
    /// reply).
    Exec {
        /// RESP version of the client the reply is for.
        resp3: bool,
        /// The client's database (see [`Request::Execute`]).
        db: u8,
        /// The queued commands, each with its arguments.
        commands: Vec<Vec<Bytes>>,
        /// The keys the client WATCHed, with the version each had then (hybrid-logical
        /// timestamp and node id; `None`: no entry). The transaction runs only if each
        /// still has it.
        watched: Vec<(Bytes, Option<(u64, u64)>)>,
        /// With replication: the write level; the writes are copied as one batch.
        replicate: Option<Level>,
        /// When the caller stops waiting (see [`Request::Execute`]).
        deadline_ms: u64,
    },
    /// Another replica of these keys evicted them for memory: drop them too unless the
    /// receiver holds a newer version ([`Response::Evicted`]), so that no replica copies
    /// them back to another.
    Evict {
        /// (key, the evicted version's hybrid-logical timestamp, its node id).
        entries: Vec<(Bytes, u64, u64)>,
    },
    /// Write-behind: the keys' primary wrote these keys to their origin as of these
    /// versions; the receiver drops its pending marks that are not newer
    /// ([`Response::Flushed`]).
    Flushed {
        /// (key, the flushed version's hybrid-logical timestamp, its node id).
        entries: Vec<(Bytes, u64, u64)>,
    },
    /// Pub/sub: messages published on the sender, in the order they were published,
    /// for the receiver's own subscribers ([`Response::Published`]). The sender numbers
    /// the batches of each of its streams to the receiver and sends a batch again until
    /// it is answered, so a batch may arrive twice; the receiver delivers each once.
    Publish {
        /// The sender's stream to the receiver (random): batches are numbered within it.
        stream: u64,
        /// The batch's number in its stream: 0, 1, 2, ...
        batch: u64,
        /// Messages the sender dropped for the receiver just before this batch (its
        /// queue to the receiver was full): the receiver's subscribers missed them.
        dropped: u64,
        /// The messages.
        messages: Vec<WireMessage>,
    },
    /// Does the receiver answer ([`Response::Pong`])? The pub/sub relay checks with it
    /// what the failure detector says of a member.
    Ping,
}

/// A published message as it travels to the other nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMessage {
    /// Published with SPUBLISH (for SSUBSCRIBE's subscribers), not PUBLISH.
    pub sharded: bool,
    /// The channel.
    pub channel: Bytes,
    /// The message.
    pub message: Bytes,
}

/// A [`VersionedEntry`] as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// The value (empty for a tombstone): a string, or an encoded collection.
    pub value: Bytes,
    /// What `value` holds: 0 string, 1 hash, 2 set, 3 sorted set, 4 list.
    pub kind: u8,
    /// Absolute expiry, ms since the epoch.
    pub expire_at_ms: Option<u64>,
    /// The version's hybrid-logical timestamp.
    pub hlc: u64,
    /// The version's node id.
    pub node: u64,
    /// A delete marker.
    pub tombstone: bool,
}

/// How a key's type travels: 0 string, 1 hash, 2 set, 3 sorted set, 4 list.
fn kind_code(kind: KeyType) -> u8 {
    match kind {
        KeyType::Hash => 1,
        KeyType::Set => 2,
        KeyType::SortedSet => 3,
        KeyType::List => 4,
        KeyType::String | KeyType::None => 0,
    }
}

/// The type [`kind_code`] gave `code`. An unknown code reads as `None`, which the
/// store refuses to decode: such an entry or delta is not applied.
fn kind_of(code: u8) -> KeyType {
    match code {
        0 => KeyType::String,
        1 => KeyType::Hash,
        2 => KeyType::Set,
        3 => KeyType::SortedSet,
        4 => KeyType::List,
        _ => KeyType::None,
    }
}

impl From<VersionedEntry> for WireEntry {
    fn from(entry: VersionedEntry) -> Self {
        WireEntry {
            value: entry.value,
            kind: kind_code(entry.kind),
            expire_at_ms: entry.expire_at_ms,
            hlc: entry.version.hlc,
            node: entry.version.node,
            tombstone: entry.tombstone,
        }
    }
}

impl From<WireEntry> for VersionedEntry {
    fn from(entry: WireEntry) -> Self {
        VersionedEntry {
            value: entry.value,
            kind: kind_of(entry.kind),
            expire_at_ms: entry.expire_at_ms,
            version: Version {
                hlc: entry.hlc,
                node: entry.node,
            },
            tombstone: entry.tombstone,
        }
    }
}

/// An [`EntryDelta`] as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireDelta {
    /// The key's type, coded as [`WireEntry::kind`].
    pub kind: u8,
    /// The version it applies to: hybrid-logical timestamp, node id.
    pub base: (u64, u64),
    /// The version the key has once it is applied.
    pub version: (u64, u64),
    /// The changed elements present after the write, in the collection encoding.
    pub present: Bytes,
    /// The names of the changed elements absent after it.
    pub absent: Vec<Bytes>,
}

impl From<EntryDelta> for WireDelta {
    fn from(delta: EntryDelta) -> Self {
        WireDelta {
            kind: kind_code(delta.kind),
            base: (delta.base.hlc, delta.base.node),
            version: (delta.version.hlc, delta.version.node),
            present: delta.present,
            absent: delta.absent,
        }
    }
}

impl From<WireDelta> for EntryDelta {
    fn from(delta: WireDelta) -> Self {
        let version = |(hlc, node)| Version { hlc, node };
        EntryDelta {
            kind: kind_of(delta.kind),
            base: version(delta.base),
            version: version(delta.version),
            present: delta.present,
            absent: delta.absent,
        }
    }
}

/// What a receiver did with one delta of [`Request::ApplyDeltas`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeltaAnswer {
    /// Applied, or it already held that version or a newer one.
    Stored,
    /// It does not hold the version the delta starts from: send the whole entry.
    NeedsWhole,
    /// Refused, and why (evicted there for memory, out of memory, corrupt).
    Refused(String),
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The replies to [`Request::Execute`], one per command: exactly the bytes a client
    /// would have read; and the keyspace hits and misses the commands made, which the
    /// node that answers the client counts.
    Replies {
        /// One reply per command.
        replies: Vec<Bytes>,
        /// Reads that found their key.
        hits: u64,
        /// Reads that did not.
        misses: u64,
    },
    /// The answer to [`Request::Invalidate`] and [`Request::FollowPrefixes`]: done.
    Invalidated,
    /// The answer to [`Request::Read`]: one entry (or none) per key, in order.
    Entries(Vec<Option<WireEntry>>),
    /// The answer to [`Request::Digest`]: one word per bucket.
    Digest(Vec<u64>),
    /// The answer to [`Request::BucketVersions`]: (bucket, key, hlc, node) per entry.
    Versions(Vec<(u32, Bytes, u64, u64)>),
    /// The answer to [`Request::KeyspaceCounts`].
    KeyspaceCounts {
        /// (database, live keys, live keys with a TTL) of each database holding keys.
        databases: Vec<(u8, u64, u64)>,
    },
    /// The answer to [`Request::Apply`], one per entry in order: `None` if stored (or
    /// already held in that or a newer version), else why it was refused.
    Applied(Vec<Option<String>>),
    /// The answer to [`Request::ApplyDeltas`], one per delta in order.
    DeltasApplied(Vec<DeltaAnswer>),
    /// The answer to [`Request::Evict`]: how many entries went.
    Evicted {
        /// Entries dropped.
        dropped: u64,
    },
    /// The answer to [`Request::Flushed`].
    Flushed,
    /// The answer to [`Request::Publish`].
    Published {
        /// Deliveries to the receiver's subscribers.
        receivers: u64,
    },
    /// The answer to [`Request::Ping`].
    Pong,
}

/// A payload that does not decode as the message expected.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a message of this type.
    #[error("undecodable cluster message: {0}")]
    Malformed(#[from] postcard::Error),
    /// A whole message followed by bytes that belong to none: a peer that sends them is
    /// not speaking this protocol version, so nothing of it is believed.
    #[error("undecodable cluster message: {0} bytes after its end")]
    TrailingBytes(usize),
}

macro_rules! codec {
    ($type:ty) => {
        impl $type {
            /// Encodes for the wire.
            pub fn encode(&self) -> Bytes {
                Bytes::from(postcard::to_stdvec(self).expect("messages always serialize"))
            }

            /// Decodes from the wire: exactly one message, nothing after it.
            pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
                match postcard::take_from_bytes(payload)? {
                    (message, []) => Ok(message),
                    (_, rest) => Err(DecodeError::TrailingBytes(rest.len())),
                }
            }
        }
    };
}

codec!(Request);
codec!(Response);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let request = Request::Execute {
            resp3: true,
            db: 15,
            commands: vec![
                vec![
                    Bytes::from_static(b"SET"),
                    Bytes::from(vec![0u8, 255, 13, 10]),
                ],
                vec![Bytes::from_static(b"GET")],
            ],
            replicate: Some(Level::Count(2)),
            primary_only: true,
            deadline_ms: 1_800_000_000_000,
            track: true,
        };
        assert_eq!(Request::decode(&request.encode()).unwrap(), request);
        let replies = Response::Replies {
            replies: vec![Bytes::from_static(b"+OK\r\n"), Bytes::new()],
            hits: 1,
            misses: 2,
        };
        assert_eq!(Response::decode(&replies.encode()).unwrap(), replies);
        let evict = Request::Evict {
            entries: vec![(Bytes::from_static(b"k"), 5, 9)],
        };
        assert_eq!(Request::decode(&evict.encode()).unwrap(), evict);
        let exec = Request::Exec {
            resp3: false,
            db: 1,
            commands: vec![vec![Bytes::from_static(b"INCR"), Bytes::from_static(b"k")]],
            watched: vec![
                (Bytes::from_static(b"k"), Some((5, 9))),
                (Bytes::new(), None),
            ],
            replicate: Some(Level::Quorum),
            deadline_ms: 12,
        };
        assert_eq!(Request::decode(&exec.encode()).unwrap(), exec);
        let entry = VersionedEntry {
            value: Bytes::from_static(b"v"),
            kind: KeyType::SortedSet,
            expire_at_ms: Some(7),
            version: Version::new(5, 1, 9),
            tombstone: false,
        };
        let apply = Request::Apply {
            entries: vec![(Bytes::from_static(b"k"), entry.clone().into())],
            atomic: true,
        };
        let Request::Apply {
            mut entries,
            atomic: true,
        } = Request::decode(&apply.encode()).unwrap()
        else {
            panic!("an Apply decodes as an Apply");
        };
        let (key, wire) = entries.pop().unwrap();
        assert_eq!(
            (key, VersionedEntry::from(wire)),
            (Bytes::from_static(b"k"), entry)
        );
        let response = Response::KeyspaceCounts {
            databases: vec![(0, u64::MAX, 3), (15, 1, 0)],
        };
        assert_eq!(Response::decode(&response.encode()).unwrap(), response);
        let publish = Request::Publish {
            stream: u64::MAX,
            batch: 7,
            dropped: 1,
            messages: vec![WireMessage {
                sharded: true,
                channel: Bytes::from_static(b"news\xff"),
                message: Bytes::new(),
            }],
        };
        assert_eq!(Request::decode(&publish.encode()).unwrap(), publish);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Request::decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(Request::decode(&[]).is_err());
        // An Execute that announces more commands than the payload holds.
        assert!(Request::decode(&[0, 1, 0xff, 0xff, 0x03]).is_err());
    }

    #[test]
    fn a_message_followed_by_more_bytes_is_refused() {
        let request = Request::KeyspaceCounts { primary_only: true };
        let mut payload = request.encode().to_vec();
        assert_eq!(Request::decode(&payload).unwrap(), request);
        payload.extend_from_slice(&[0, 0]);
        assert!(matches!(
            Request::decode(&payload),
            Err(DecodeError::TrailingBytes(2))
        ));
    }
}
