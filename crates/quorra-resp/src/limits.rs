//! Hard limits on what one client may send. Every size a client controls is bounded here,
//! and every bound is configurable.

/// Limits applied while parsing requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string (one argument), in bytes. Default 512 MiB, Redis's
    /// `proto-max-bulk-len`.
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk request. Default 1,048,576 (2^20); Redis allows up
    /// to `INT_MAX`, but the argument vector is allocated up front (capped at
    /// [`PREALLOCATED_ARGS`](Limits::PREALLOCATED_ARGS) per step) and a million
    /// arguments is already far beyond any real command.
    pub max_args: usize,
    /// Longest inline request line, and longest `*`/`$` header line, in bytes. Default
    /// 64 KiB, Redis's `PROTO_INLINE_MAX_SIZE`.
    pub max_inline_len: usize,
    /// Most bytes one command may occupy while it is being received. Default 1 GiB,
    /// Redis's `client-query-buffer-limit`.
    pub max_query_buffer: usize,
}

impl Limits {
    /// Upper bound on the capacity reserved for a request's arguments before they arrive,
    /// so that `*1000000\r\n` alone cannot make the server allocate 24 MB.
    pub const PREALLOCATED_ARGS: usize = 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_args: 1 << 20,
            max_inline_len: 64 * 1024,
            max_query_buffer: 1024 * 1024 * 1024,
        }
    }
}
