//! Request parsing, server side: bytes from a client become commands.
//!
//! A client sends either a *multibulk* request — `*<argc>\r\n` then `argc` times
//! `$<len>\r\n<len bytes>\r\n` — or an *inline* request, a line of space-separated words
//! with Redis's quoting rules (`SET "a b" 'c'\r\n`). The parser follows Redis's
//! `processMultibulkBuffer` / `processInlineBuffer`:
//!
//! - A header line is found by its `\r`, and the byte after it is skipped without being
//!   checked, as Redis does; the two bytes after a bulk body are skipped the same way.
//! - Counts and lengths are parsed like `string2ll` (strict decimal, no `+`, no leading
//!   zeros). `*0` and `*-1` are empty requests and are skipped silently, as are blank
//!   inline lines.
//! - While a header line is incomplete, the buffer may hold at most
//!   [`Limits::max_inline_len`] bytes; a longer run without `\r` is an error (a client
//!   streaming garbage cannot make us buffer forever).
//!
//! The parser consumes every complete argument as soon as it arrives and remembers how
//! many are still due, so a request is scanned once however many reads it takes. Only
//! an incomplete bulk's header is re-read when more bytes come.
//!
//! Arguments are `Bytes` split off the read buffer without copying. They keep that
//! buffer's allocation alive: copy an argument before storing it beyond the command
//! (a 100-byte value must not pin a 16 KB read buffer).

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::limits::Limits;
use crate::number::parse_i64;

/// One command: its arguments, the command name first. Never empty.
pub type Request = Vec<Bytes>;

/// Incremental request parser for one connection. The [module docs](crate::request)
/// give the rules it follows.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: Limits,
    /// The multibulk request being received, if its `*<argc>` line has been read.
    pending: Option<PendingMultibulk>,
}

#[derive(Debug)]
struct PendingMultibulk {
    /// Arguments still to come.
    remaining: usize,
    args: Vec<Bytes>,
    /// Bytes of the arguments received so far, for the query-buffer limit.
    received: usize,
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            pending: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the limits; they apply from the next header parsed.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// True while a multibulk request has been started but not finished.
    pub fn is_mid_request(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes the next whole command off the front of `buf`.
    ///
    /// Returns `Ok(Some(args))` for a command, `Ok(None)` when `buf` holds no whole
    /// command yet (whatever could be consumed was; call again after the next read), and
    /// `Err` when the input breaks the protocol or a limit — the connection must then be
    /// closed, because its byte stream is no longer in step.
    pub fn next_request(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            if let Some(pending) = &mut self.pending {
                while pending.remaining > 0 {
                    let Some(arg) = take_bulk(buf, &self.limits)? else {
                        if pending.received + buf.len() > self.limits.max_query_buffer {
                            return Err(ProtocolError::QueryBufferLimit);
                        }
                        return Ok(None);
                    };
                    pending.received += arg.len();
                    pending.args.push(arg);
                    pending.remaining -= 1;
                }
                let done = self.pending.take().expect("pending is set");
                return Ok(Some(done.args));
            }
            match buf.first() {
                None => return Ok(None),
                Some(b'*') => {
                    let Some(count) =
                        take_header(buf, &self.limits, ProtocolError::MultibulkCountTooBig)?
                    else {
                        return Ok(None);
                    };
                    let count = parse_i64(&count).ok_or(ProtocolError::InvalidMultibulkLength)?;
                    if count > self.limits.max_args as i64 {
                        return Err(ProtocolError::InvalidMultibulkLength);
                    }
                    if count > 0 {
                        let count = count as usize;
                        self.pending = Some(PendingMultibulk {
                            remaining: count,
                            args: Vec::with_capacity(count.min(Limits::PREALLOCATED_ARGS)),
                            received: 0,
                        });
                    }
                }
                Some(_) => {
                    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
                        if buf.len() > self.limits.max_inline_len {
                            return Err(ProtocolError::InlineTooBig);
                        }
                        return Ok(None);
                    };
                    if newline > self.limits.max_inline_len {
                        return Err(ProtocolError::InlineTooBig);
                    }
                    let line = buf.split_to(newline + 1);
                    let line = line.strip_suffix(b"\n").unwrap_or(&line);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    let args = split_inline_args(line)?;
                    if !args.is_empty() {
                        return Ok(Some(args));
                    }
                }
            }
        }
    }
}

/// Takes a `<sigil><digits>\r\n` header line off `buf` and returns the digits, or `None`
/// if the line is not complete yet (`too_long` if it cannot be a header at all).
fn take_header(
    buf: &mut BytesMut,
    limits: &Limits,
    too_long: ProtocolError,
) -> Result<Option<BytesMut>, ProtocolError> {
    let Some(cr) = buf.iter().position(|&b| b == b'\r') else {
        return if buf.len() > limits.max_inline_len {
            Err(too_long)
        } else {
            Ok(None)
        };
    };
    // The byte after '\r' must have arrived too; Redis skips it unchecked.
    if cr + 2 > buf.len() {
        return Ok(None);
    }
    let mut line = buf.split_to(cr + 2);
    line.truncate(cr);
    line.advance(1);
    Ok(Some(line))
}

/// Takes one `$<len>\r\n<bytes>\r\n` argument off `buf`, or returns `None` (consuming
/// nothing) if it has not fully arrived.
fn take_bulk(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Bytes>, ProtocolError> {
    let Some(cr) = buf.iter().position(|&b| b == b'\r') else {
        return if buf.len() > limits.max_inline_len {
            Err(ProtocolError::BulkCountTooBig)
        } else {
            Ok(None)
        };
    };
    if buf[0] != b'$' {
        return Err(ProtocolError::ExpectedBulk(buf[0]));
    }
    let len = parse_i64(&buf[1..cr]).ok_or(ProtocolError::InvalidBulkLength)?;
    if len < 0 || len as u64 > limits.max_bulk_len as u64 {
        return Err(ProtocolError::InvalidBulkLength);
    }
    let len = len as usize;
    let header = cr + 2;
    if buf.len() < header + len + 2 {
        // Make room for the whole argument in one allocation rather than by doubling.
        buf.reserve(header + len + 2 - buf.len());
        return Ok(None);
    }
    buf.advance(header);
    let arg = buf.split_to(len).freeze();
    buf.advance(2);
    Ok(Some(arg))
}

/// Splits an inline request line into arguments with Redis's `sdssplitargs` rules:
/// words separated by whitespace; `"..."` with `\n \r \t \b \a \\ \" \xHH` escapes;
/// `'...'` with only `\'`; a closing quote must be followed by whitespace or the end;
/// a NUL byte ends the line.
fn split_inline_args(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    // Redis splits a C string, so a NUL byte ends the line.
    let line = line.split(|&b| b == 0).next().unwrap_or_default();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut word = Vec::new();
        let mut quote: Option<u8> = None;
        loop {
            match quote {
                Some(q) => {
                    let Some(&c) = line.get(i) else {
                        return Err(ProtocolError::UnbalancedQuotes);
                    };
                    if q == b'"' && c == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' {
                        if let (Some(hi), Some(lo)) = (hex(line[i + 2]), hex(line[i + 3])) {
                            word.push(hi << 4 | lo);
                            i += 4;
                            continue;
                        }
                    }
                    if c == b'\\' && i + 1 < line.len() && (q == b'"' || line[i + 1] == b'\'') {
                        i += 1;
                        word.push(if q == b'"' {
                            unescape(line[i])
                        } else {
                            line[i]
                        });
                    } else if c == q {
                        if line.get(i + 1).is_some_and(|&next| !is_space(next)) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    } else {
                        word.push(c);
                    }
                    i += 1;
                }
                None => match line.get(i) {
                    None => break,
                    Some(b' ' | b'\n' | b'\r' | b'\t') => break,
                    Some(&c @ (b'"' | b'\'')) => {
                        quote = Some(c);
                        i += 1;
                    }
                    Some(&c) => {
                        word.push(c);
                        i += 1;
                    }
                },
            }
        }
        args.push(Bytes::from(word));
    }
}

/// C's `isspace`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn unescape(c: u8) -> u8 {
    match c {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    }
}
