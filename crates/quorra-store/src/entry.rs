//! Public value types: options of the Redis commands, replication entries, views.

use bytes::Bytes;
pub use quorra_resp::command::{GetExExpiry, SetCondition, SetExpiry, SetOptions};

use crate::version::Version;

/// The one expiry rule, Redis's: an entry whose absolute expiry is `at_ms` has expired
/// once the clock has passed it (`now_ms > at_ms`); at exactly `at_ms` it still lives.
/// Lazy and active expiry, replicated writes and quorum reads all use it, each with the
/// store's clock.
pub fn expired(at_ms: u64, now_ms: u64) -> bool {
    now_ms > at_ms
}

/// An entry as replicas exchange it: enough to apply last-writer-wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedEntry {
    /// The value (empty for a tombstone): a string's bytes, or a collection as
    /// [`Collection::encode`](crate::collection::Collection::encode) gives it.
    pub value: Bytes,
    /// What `value` holds ([`KeyType::String`] for a tombstone).
    pub kind: KeyType,
    /// Absolute expiry, ms since the epoch; `None` = no expiry.
    pub expire_at_ms: Option<u64>,
    /// Version of the write that produced this entry.
    pub version: Version,
    /// A delete marker: the key does not exist as of `version`.
    pub tombstone: bool,
}

impl VersionedEntry {
    /// A live value with no expiry.
    pub fn value(value: impl Into<Bytes>, version: Version) -> Self {
        Self {
            value: value.into(),
            kind: KeyType::String,
            expire_at_ms: None,
            version,
            tombstone: false,
        }
    }

    /// True if the entry is a value that has not expired at `now_ms` (see [`expired`]).
    pub fn is_live(&self, now_ms: u64) -> bool {
        !self.tombstone && !self.expire_at_ms.is_some_and(|at| expired(at, now_ms))
    }

    /// A delete marker.
    pub fn tombstone(version: Version) -> Self {
        Self {
            value: Bytes::new(),
            kind: KeyType::String,
            expire_at_ms: None,
            version,
            tombstone: true,
        }
    }
}

/// What [`crate::Store::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The entry was newer and is now stored (or, for a tombstone, the key is deleted).
    Applied,
    /// The store holds a newer version; nothing changed.
    Stale,
    /// The store holds exactly this version already; nothing changed (idempotent).
    Duplicate,
    /// The store evicted this key for memory holding this version or a newer one, and
    /// does not take it back from a replica; nothing changed.
    Evicted,
}

/// A borrowed view of one stored entry, given to [`crate::Store::visit_range`].
#[derive(Debug, Clone, Copy)]
pub struct EntryView<'a> {
    /// Key bytes.
    pub key: &'a [u8],
    /// The key's ring position, [`quorra_ring::key_token`].
    pub token: u64,
    /// Value bytes (empty for a tombstone and for a collection).
    pub value: &'a [u8],
    /// What the key holds ([`KeyType::String`] for a tombstone).
    pub kind: KeyType,
    /// Absolute expiry of a live entry, ms since the epoch.
    pub expire_at_ms: Option<u64>,
    /// Version of the last write.
    pub version: Version,
    /// Whether this is a delete marker.
    pub tombstone: bool,
}

/// Result of SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// Whether the value was written (false when NX/XX stopped it).
    pub written: bool,
    /// The previous value, when [`SetOptions::get`] was set and the key existed.
    pub previous: Option<Bytes>,
}

/// EXPIRE's NX / XX / GT / LT options. XX may be combined with GT or LT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireFlags {
    /// Set only when the key has no TTL.
    pub nx: bool,
    /// Set only when the key has a TTL.
    pub xx: bool,
    /// Set only when the new expiry is later (no TTL counts as infinite).
    pub gt: bool,
    /// Set only when the new expiry is earlier (no TTL counts as infinite).
    pub lt: bool,
}

impl ExpireFlags {
    /// No condition.
    pub const NONE: ExpireFlags = ExpireFlags {
        nx: false,
        xx: false,
        gt: false,
        lt: false,
    };
    /// NX.
    pub const NX: ExpireFlags = ExpireFlags {
        nx: true,
        ..Self::NONE
    };
    /// XX.
    pub const XX: ExpireFlags = ExpireFlags {
        xx: true,
        ..Self::NONE
    };
    /// GT.
    pub const GT: ExpireFlags = ExpireFlags {
        gt: true,
        ..Self::NONE
    };
    /// LT.
    pub const LT: ExpireFlags = ExpireFlags {
        lt: true,
        ..Self::NONE
    };
}

/// The Redis type of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// The key does not exist.
    None,
    /// A string value.
    #[default]
    String,
    /// A hash.
    Hash,
    /// A list.
    List,
    /// A set.
    Set,
    /// A sorted set.
    SortedSet,
}

impl KeyType {
    /// The TYPE reply text: `none`, `string`, `hash`, `list`, `set` or `zset`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::None => "none",
            KeyType::String => "string",
            KeyType::Hash => "hash",
            KeyType::List => "list",
            KeyType::Set => "set",
            KeyType::SortedSet => "zset",
        }
    }

    /// The type TYPE calls `name` (any case), for SCAN's TYPE filter.
    pub fn from_name(name: &[u8]) -> Option<KeyType> {
        [
            KeyType::String,
            KeyType::Hash,
            KeyType::List,
            KeyType::Set,
            KeyType::SortedSet,
        ]
        .into_iter()
        .find(|kind| kind.as_str().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// Whether an access reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    /// A read (GET, EXISTS, ...).
    Read,
    /// A write (SET, DEL, INCR, ...).
    Write,
}

/// The hook the store calls on every keyed access, before the shard lock is taken (where
/// a hot-key detector plugs in). It must be cheap and must not call back into the store.
pub trait AccessObserver: Send + Sync {
    /// Called with the key's xxh3-64 hash, the key and the kind of access.
    fn on_access(&self, _hash: u64, _key: &[u8], _kind: AccessKind) {}
}

/// The hooks the store calls, under the shard lock, when it removes a live entry on its
/// own: evicted to make room (so that a node can tell the key's other replicas), or past
/// its TTL (keyspace notifications). A separate hook from [`AccessObserver`], so that a
/// node that only listens to removals pays nothing per access. They must be cheap and
/// must not call back into the store.
pub trait RemovalObserver: Send + Sync {
    /// An entry evicted for memory: its key and the version it held.
    fn on_evict(&self, _key: &[u8], _version: crate::Version) {}

    /// A live entry removed because its TTL passed (lazily, by a read or write that
    /// found it expired, or by the active expiry cycle).
    fn on_expire(&self, _key: &[u8]) {}
}

/// What one call of [`crate::Store::tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireCycleReport {
    /// Deadlines examined.
    pub sampled: u64,
    /// Live entries removed because their TTL had passed.
    pub expired: u64,
    /// Tombstones removed because their grace period had passed.
    pub purged_tombstones: u64,
    /// Hash fields removed because their TTL had passed.
    pub expired_fields: u64,
    /// Whether the cycle stopped on its time or iteration budget.
    pub budget_exhausted: bool,
}
