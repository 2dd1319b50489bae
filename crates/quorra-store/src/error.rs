//! The store's error type.
//!
//! Each variant says what the caller should do. The server maps them to Redis error
//! replies at the edge; the Redis text each one corresponds to is given on the variant.

/// Why a store operation was refused. The store is unchanged when an error is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The write needs memory and the policy is `NoEviction`, or nothing evictable is
    /// left (only tombstones or the entries being written). Retry after deleting data or
    /// raising `maxmemory`.
    ///
    /// Redis: `-OOM command not allowed when used memory > 'maxmemory'.`
    #[error("command not allowed when used memory > 'maxmemory'")]
    OutOfMemory,
    /// One entry (key + value + per-entry overhead) is larger than `maxmemory` itself, so
    /// no amount of eviction can make room. Give up or raise `maxmemory`.
    ///
    /// Redis: `-OOM command not allowed when used memory > 'maxmemory'.`
    #[error("entry of {size} bytes can never fit in maxmemory {limit}")]
    EntryTooLarge {
        /// Accounted size of the entry, bytes.
        size: u64,
        /// Current `maxmemory`, bytes.
        limit: u64,
    },
    /// The string would exceed the configured maximum string length (APPEND, SETRANGE),
    /// or a key is longer than [`crate::MAX_KEY_LEN`]. Give up.
    ///
    /// Redis: `-ERR string exceeds maximum allowed size (proto-max-bulk-len)`
    #[error("string exceeds maximum allowed size (proto-max-bulk-len)")]
    ValueTooLarge,
    /// The stored value (or the increment) is not a base-10 64-bit integer.
    ///
    /// Redis: `-ERR value is not an integer or out of range`
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// The integer result would not fit in an `i64`.
    ///
    /// Redis: `-ERR increment or decrement would overflow`
    #[error("increment or decrement would overflow")]
    Overflow,
    /// The stored value (or the increment) is not a valid float.
    ///
    /// Redis: `-ERR value is not a valid float`
    #[error("value is not a valid float")]
    NotAFloat,
    /// INCRBYFLOAT would produce NaN or an infinity.
    ///
    /// Redis: `-ERR increment would produce NaN or Infinity`
    #[error("increment would produce NaN or Infinity")]
    NanOrInfinity,
    /// The expire time is not positive (relative forms) or overflows when converted to
    /// absolute milliseconds. `command` names the command for the message.
    ///
    /// Redis: `-ERR invalid expire time in '<command>' command`
    #[error("invalid expire time in '{command}' command")]
    InvalidExpireTime {
        /// Lower-case command name, e.g. `set`, `expire`.
        command: &'static str,
    },
    /// EXPIRE options that cannot be combined (NX with XX/GT/LT, or GT with LT).
    ///
    /// Redis: `-ERR NX and XX, GT or LT options at the same time are not compatible`
    #[error("NX and XX, GT or LT options at the same time are not compatible")]
    IncompatibleExpireFlags,
    /// The key named as the source of RENAME does not exist.
    ///
    /// Redis: `-ERR no such key`
    #[error("no such key")]
    NoSuchKey,
    /// A SETRANGE offset below zero.
    ///
    /// Redis: `-ERR offset is out of range`
    #[error("offset is out of range")]
    OffsetOutOfRange,
    /// The key holds a value of another type than the command works on.
    ///
    /// Redis: `-WRONGTYPE Operation against a key holding the wrong kind of value`
    #[error("Operation against a key holding the wrong kind of value")]
    WrongType,
    /// A replicated entry claims to hold a collection its bytes do not encode (a corrupt
    /// or foreign message). Nothing is stored.
    #[error("replicated collection does not decode")]
    CorruptEntry,
    /// COPY with the same source and destination key.
    ///
    /// Redis: `-ERR source and destination objects are the same`
    #[error("source and destination objects are the same")]
    SameObject,
}
