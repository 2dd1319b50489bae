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
//! The parser remembers how far it has scanned a half-received request and how many
//! arguments are still due, so a request is scanned once however many reads it takes
//! (only an incomplete bulk's header is re-read when more bytes come). A complete
//! request is split off the buffer in one piece and its arguments are slices of it.
//!
//! Arguments are `Bytes` sharing the read buffer's allocation, without copying. They
//! keep that allocation alive: copy an argument before storing it beyond the command
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
    /// Where each complete argument of the pending request lies in the buffer; kept
    /// between requests so that parsing allocates nothing in the steady state.
    arg_ranges: Vec<(usize, usize)>,
}

/// A multibulk request whose arguments are still arriving. Nothing of it has been
/// consumed from the buffer yet: offsets are from the start of the buffer.
#[derive(Debug)]
struct PendingMultibulk {
    /// Arguments still to come.
    remaining: usize,
    /// Where the next argument's `$<len>` header starts.
    scanned: usize,
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            pending: None,
            arg_ranges: Vec::new(),
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
    /// command yet (call again after the next read), and `Err` when the input breaks the
    /// protocol or a limit — the connection must then be closed, because its byte stream
    /// is no longer in step.
    pub fn next_request(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        let mut args = Vec::new();
        Ok(self.next_request_into(buf, &mut args)?.then_some(args))
    }

    /// As [`next_request`](Self::next_request), but puts the arguments in `args`
    /// (cleared first) and returns whether a command was found, so a connection can
    /// reuse one vector for every command.
    ///
    /// A multibulk request is consumed in one piece once all of it has arrived: one
    /// split of the buffer, and each argument a slice of that piece.
    pub fn next_request_into(
        &mut self,
        buf: &mut BytesMut,
        args: &mut Vec<Bytes>,
    ) -> Result<bool, ProtocolError> {
        args.clear();
        loop {
            if let Some(pending) = &mut self.pending {
                while pending.remaining > 0 {
                    let Some((start, end)) = scan_bulk(buf, pending.scanned, &self.limits)? else {
                        if buf.len() > self.limits.max_query_buffer {
                            return Err(ProtocolError::QueryBufferLimit);
                        }
                        return Ok(false);
                    };
                    self.arg_ranges.push((start, end));
                    pending.scanned = end + 2;
                    pending.remaining -= 1;
                }
                let done = self.pending.take().expect("pending is set");
                let frame = buf.split_to(done.scanned).freeze();
                args.extend(
                    self.arg_ranges
                        .drain(..)
                        .map(|(start, end)| frame.slice(start..end)),
                );
                // One huge command must not pin its range table for the connection's life.
                if self.arg_ranges.capacity() > 4 * Limits::PREALLOCATED_ARGS {
                    self.arg_ranges.shrink_to(Limits::PREALLOCATED_ARGS);
                }
                return Ok(true);
            }
            match buf.first() {
                None => return Ok(false),
                Some(b'*') => {
                    let Some((digits, header_end)) =
                        scan_header(buf, 0, &self.limits, ProtocolError::MultibulkCountTooBig)?
                    else {
                        return Ok(false);
                    };
                    let count = parse_i64(digits).ok_or(ProtocolError::InvalidMultibulkLength)?;
                    if count > self.limits.max_args as i64 {
                        return Err(ProtocolError::InvalidMultibulkLength);
                    }
                    if count <= 0 {
                        buf.advance(header_end);
                        continue;
                    }
                    let count = count as usize;
                    self.arg_ranges.clear();
                    self.arg_ranges
                        .reserve(count.min(Limits::PREALLOCATED_ARGS));
                    self.pending = Some(PendingMultibulk {
                        remaining: count,
                        scanned: header_end,
                    });
                }
                Some(_) => {
                    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
                        if buf.len() > self.limits.max_inline_len {
                            return Err(ProtocolError::InlineTooBig);
                        }
                        return Ok(false);
                    };
                    if newline > self.limits.max_inline_len {
                        return Err(ProtocolError::InlineTooBig);
                    }
                    let line = buf.split_to(newline + 1);
                    let line = line.strip_suffix(b"\n").unwrap_or(&line);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    split_inline_args(line, args)?;
                    if !args.is_empty() {
                        return Ok(true);
                    }
                }
            }
        }
    }
}

/// Finds the `<sigil><digits>\r\n` header line starting at `from`: the digits and the
/// offset just past the line, or `None` if the line is not complete yet (`too_long` if
/// it has run past the inline limit without a `\r`).
fn scan_header<'a>(
    buf: &'a [u8],
    from: usize,
    limits: &Limits,
    too_long: ProtocolError,
) -> Result<Option<(&'a [u8], usize)>, ProtocolError> {
    let rest = &buf[from..];
    let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
        return if rest.len() > limits.max_inline_len {
            Err(too_long)
        } else {
            Ok(None)
        };
    };
    // The byte after '\r' must have arrived too; Redis skips it unchecked.
    if cr + 2 > rest.len() {
        return Ok(None);
    }
    Ok(Some((&rest[1..cr], from + cr + 2)))
}

/// Finds one `$<len>\r\n<bytes>\r\n` argument starting at `from`: where its bytes lie,
/// or `None` if it has not fully arrived. When only the body is missing, makes room for
/// all of it in one allocation rather than by doubling.
fn scan_bulk(
    buf: &mut BytesMut,
    from: usize,
    limits: &Limits,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    if let Some(&first) = buf.get(from)
        && first != b'$'
        && buf[from..].contains(&b'\r')
    {
        return Err(ProtocolError::ExpectedBulk(first));
    }
    let Some((digits, body)) = scan_header(buf, from, limits, ProtocolError::BulkCountTooBig)?
    else {
        return Ok(None);
    };
    let len = parse_i64(digits).ok_or(ProtocolError::InvalidBulkLength)?;
    if len < 0 || len as u64 > limits.max_bulk_len as u64 {
        return Err(ProtocolError::InvalidBulkLength);
    }
    let end = body + len as usize;
    if buf.len() < end + 2 {
        buf.reserve(end + 2 - buf.len());
        return Ok(None);
    }
    Ok(Some((body, end)))
}

/// Splits an inline request line into arguments with Redis's `sdssplitargs` rules:
/// words separated by whitespace; `"..."` with `\n \r \t \b \a \\ \" \xHH` escapes;
/// `'...'` with only `\'`; a closing quote must be followed by whitespace or the end;
/// a NUL byte ends the line.
fn split_inline_args(line: &[u8], args: &mut Vec<Bytes>) -> Result<(), ProtocolError> {
    // Redis splits a C string, so a NUL byte ends the line.
    let line = line.split(|&b| b == 0).next().unwrap_or_default();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
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
