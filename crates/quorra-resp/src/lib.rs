//! RESP, the Redis serialization protocol, as quorra speaks it.
//!
//! Redis clients and tools talk to quorra unchanged, so this crate follows Redis's own
//! parser (`networking.c`) closely, down to its error texts, while adding the hard limits
//! a cache facing untrusted clients needs. It is shared by the server, the client and the
//! load generator.
//!
//! # Components
//!
//! - [`RequestParser`]: the server side. Incremental: feed it the connection's read
//!   buffer as bytes arrive and it yields whole commands (arrays of bulk strings, or
//!   inline commands such as `PING\r\n` typed into telnet). It consumes what it has parsed
//!   and keeps the state of a half-received command, so a 100 MB value arriving in 16 KB
//!   reads is scanned once, not once per read.
//! - [`Limits`]: max bulk length (default 512 MB, Redis's `proto-max-bulk-len`), max
//!   arguments per command, max inline request length, max bytes buffered for one
//!   command (Redis's `client-query-buffer-limit`). Exceeding one is a
//!   [`ProtocolError`] whose text is Redis's; the server sends it and closes.
//! - [`encode`]: reply encoding straight into the write buffer, in RESP2 or RESP3
//!   ([`Protocol`]), with the downgrades Redis applies for RESP2 clients (maps become flat
//!   arrays, doubles become bulk strings, nulls become `$-1`/`*-1`).
//! - [`command`]: the command table (arity, flags, key positions) the server checks
//!   requests against and routing finds keys with, and [`Command`], typed requests that
//!   clients and the load generator encode.
//! - [`Frame`] and [`parse_frame`]: the client side: any RESP2/RESP3 reply as a value,
//!   with a nesting limit so a hostile server cannot exhaust the stack.
//!
//! # Non-goals
//!
//! RESP3 attributes and streamed (chunked) aggregates are parsed only as far as clients
//! need: attributes are refused as a protocol error, streaming is not supported.

pub mod command;
pub mod encode;
mod error;
mod frame;
mod limits;
pub mod number;
pub mod request;

pub use command::{Command, CommandId, CommandInfo};
pub use encode::Protocol;
pub use error::ProtocolError;
pub use frame::{Frame, MAX_FRAME_DEPTH, parse_frame};
pub use limits::Limits;
pub use request::{Request, RequestParser};
