//! Protocol errors. Their `Display` is the text Redis sends for the same violation, so a
//! server can reply with `-ERR {error}` and a client sees what it would see from Redis.

/// Input that breaks the protocol or a configured limit. After one, the connection's
/// byte stream can no longer be trusted: Redis replies with the error and closes the
/// connection, and quorra does the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*<count>` is not a number or exceeds [`Limits::max_args`](crate::Limits).
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$<len>` is not a number or exceeds [`Limits::max_bulk_len`](crate::Limits).
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// Inside a multibulk request, an argument did not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    /// An inline request has an unterminated quote, or a closing quote not followed by
    /// a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// An inline request is longer than [`Limits::max_inline_len`](crate::Limits)
    /// without a newline.
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    /// A `*<count>` line is longer than the inline limit without a newline.
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    /// A `$<len>` line is longer than the inline limit without a newline.
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    /// One command needs more bytes buffered than
    /// [`Limits::max_query_buffer`](crate::Limits). Redis closes such a client without a
    /// reply; quorra sends this text first.
    #[error("Protocol error: query buffer limit reached")]
    QueryBufferLimit,
    /// A reply frame (client side) is malformed; the text says how.
    #[error("Protocol error: {0}")]
    InvalidFrame(&'static str),
    /// A reply frame nests deeper than [`MAX_FRAME_DEPTH`](crate::MAX_FRAME_DEPTH).
    #[error("Protocol error: reply nested too deeply")]
    TooDeep,
}
