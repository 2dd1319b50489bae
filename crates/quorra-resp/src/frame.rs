//! Reply frames, client side: any RESP2 or RESP3 value, parsed from a byte slice.
//!
//! [`parse_frame`] is a check-and-parse over a slice: it returns the frame and how many
//! bytes it used, or `None` if the slice does not hold a whole frame yet (read more and
//! call again). It never panics and never allocates more than the input justifies:
//! lengths are checked against [`Limits`] before anything is reserved, and nesting is
//! capped at [`MAX_FRAME_DEPTH`] so a hostile peer cannot overflow the stack (the
//! `redis-protocol` crate aborts on such input; see the design brief).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::limits::Limits;
use crate::number::parse_i64;

/// Deepest nesting of aggregates accepted in a reply. Redis's own replies nest at most a
/// handful of levels (COMMAND DOCS is the deepest, at about 6).
pub const MAX_FRAME_DEPTH: usize = 64;

/// One RESP value.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+text`: status replies such as `OK`.
    Simple(Bytes),
    /// `-text` or RESP3 `!len` blob error; the text starts with the error code.
    Error(Bytes),
    /// `:n`.
    Integer(i64),
    /// `$len` bulk string.
    Bulk(Bytes),
    /// RESP3 `_`, and RESP2's null bulk string and null array.
    Null,
    /// `*len`.
    Array(Vec<Frame>),
    /// RESP3 `%len`.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~len`.
    Set(Vec<Frame>),
    /// RESP3 `>len` out-of-band push.
    Push(Vec<Frame>),
    /// RESP3 `,value`.
    Double(f64),
    /// RESP3 `#t` / `#f`.
    Boolean(bool),
    /// RESP3 `(digits`, kept as text.
    BigNumber(Bytes),
    /// RESP3 `=len` verbatim string: a three-letter format (`txt`, `mkd`) and the text.
    Verbatim {
        /// The format, e.g. `txt`.
        format: [u8; 3],
        /// The text after `fmt:`.
        text: Bytes,
    },
}

impl Frame {
    /// Appends this frame's RESP encoding to `buf` (RESP3 types as RESP3; this is the
    /// inverse of [`parse_frame`]).
    pub fn write_to(&self, buf: &mut BytesMut) {
        fn header(buf: &mut BytesMut, sigil: u8, n: usize) {
            buf.put_u8(sigil);
            buf.put_slice(itoa::Buffer::new().format(n).as_bytes());
            buf.put_slice(b"\r\n");
        }
        match self {
            Frame::Simple(text) => {
                buf.put_u8(b'+');
                buf.put_slice(text);
                buf.put_slice(b"\r\n");
            }
            Frame::Error(text) => {
                header(buf, b'!', text.len());
                buf.put_slice(text);
                buf.put_slice(b"\r\n");
            }
            Frame::Integer(n) => crate::encode::integer(buf, *n),
            Frame::Bulk(bytes) => crate::encode::bulk(buf, bytes),
            Frame::Null => buf.put_slice(b"_\r\n"),
            Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
                let sigil = match self {
                    Frame::Array(_) => b'*',
                    Frame::Set(_) => b'~',
                    _ => b'>',
                };
                header(buf, sigil, items.len());
                items.iter().for_each(|item| item.write_to(buf));
            }
            Frame::Map(pairs) => {
                header(buf, b'%', pairs.len());
                for (key, value) in pairs {
                    key.write_to(buf);
                    value.write_to(buf);
                }
            }
            Frame::Double(value) => {
                crate::encode::double(buf, *value, crate::Protocol::Resp3);
            }
            Frame::Boolean(value) => {
                crate::encode::boolean(buf, *value, crate::Protocol::Resp3);
            }
            Frame::BigNumber(digits) => {
                buf.put_u8(b'(');
                buf.put_slice(digits);
                buf.put_slice(b"\r\n");
            }
            Frame::Verbatim { format, text } => {
                header(buf, b'=', text.len() + 4);
                buf.put_slice(format);
                buf.put_u8(b':');
                buf.put_slice(text);
                buf.put_slice(b"\r\n");
            }
        }
    }
}

/// Parses one frame from the front of `input`.
///
/// Returns `Ok(Some((frame, used)))`, `Ok(None)` if `input` holds only part of a frame,
/// or `Err` for malformed input or input beyond `limits` (bulk lengths against
/// `max_bulk_len`, aggregate lengths against `max_args`, lines against
/// `max_inline_len`) or nesting beyond [`MAX_FRAME_DEPTH`].
pub fn parse_frame(input: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let mut cursor = Cursor {
        input,
        pos: 0,
        limits,
    };
    match cursor.frame(0) {
        Ok(frame) => Ok(Some((frame, cursor.pos))),
        Err(Incomplete::No(error)) => Err(error),
        Err(Incomplete::Yes) => Ok(None),
    }
}

/// Why parsing stopped: the input ran out (read more), or it is bad.
enum Incomplete {
    Yes,
    No(ProtocolError),
}

impl From<ProtocolError> for Incomplete {
    fn from(error: ProtocolError) -> Self {
        Incomplete::No(error)
    }
}

struct Cursor<'a> {
    input: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl Cursor<'_> {
    /// The rest of the current line (without `\r\n`), advancing past it.
    fn line(&mut self) -> Result<&[u8], Incomplete> {
        let rest = &self.input[self.pos..];
        let Some(cr) = rest.windows(2).position(|pair| pair == b"\r\n") else {
            return Err(if rest.len() > self.limits.max_inline_len {
                Incomplete::No(ProtocolError::InvalidFrame("line too long"))
            } else {
                Incomplete::Yes
            });
        };
        self.pos += cr + 2;
        Ok(&rest[..cr])
    }

    fn length(&mut self, max: usize) -> Result<Option<usize>, Incomplete> {
        let line = self.line()?;
        match parse_i64(line) {
            Some(-1) => Ok(None),
            Some(n) if n >= 0 && n as u64 <= max as u64 => Ok(Some(n as usize)),
            _ => Err(ProtocolError::InvalidFrame("invalid length").into()),
        }
    }

    fn blob(&mut self, len: usize) -> Result<Bytes, Incomplete> {
        let rest = &self.input[self.pos..];
        if rest.len() < len + 2 {
            return Err(Incomplete::Yes);
        }
        if &rest[len..len + 2] != b"\r\n" {
            return Err(ProtocolError::InvalidFrame("bulk not terminated by CRLF").into());
        }
        self.pos += len + 2;
        Ok(Bytes::copy_from_slice(&rest[..len]))
    }

    fn frames(&mut self, count: usize, depth: usize) -> Result<Vec<Frame>, Incomplete> {
        // Reserve no more than the bytes left could hold (each frame is >= 3 bytes).
        let room = (self.input.len() - self.pos) / 3;
        let mut frames = Vec::with_capacity(count.min(room));
        for _ in 0..count {
            frames.push(self.frame(depth + 1)?);
        }
        Ok(frames)
    }

    fn frame(&mut self, depth: usize) -> Result<Frame, Incomplete> {
        if depth > MAX_FRAME_DEPTH {
            return Err(ProtocolError::TooDeep.into());
        }
        let Some(&sigil) = self.input.get(self.pos) else {
            return Err(Incomplete::Yes);
        };
        self.pos += 1;
        let max_bulk = self.limits.max_bulk_len;
        let max_items = self.limits.max_args;
        Ok(match sigil {
            b'+' => Frame::Simple(Bytes::copy_from_slice(self.line()?)),
            b'-' => Frame::Error(Bytes::copy_from_slice(self.line()?)),
            b':' => Frame::Integer(
                parse_i64(self.line()?).ok_or(ProtocolError::InvalidFrame("invalid integer"))?,
            ),
            b'$' => match self.length(max_bulk)? {
                None => Frame::Null,
                Some(len) => Frame::Bulk(self.blob(len)?),
            },
            b'!' => match self.length(max_bulk)? {
                None => return Err(ProtocolError::InvalidFrame("null blob error").into()),
                Some(len) => Frame::Error(self.blob(len)?),
            },
            b'=' => {
                let Some(len) = self.length(max_bulk)? else {
                    return Err(ProtocolError::InvalidFrame("null verbatim string").into());
                };
                let blob = self.blob(len)?;
                if blob.len() < 4 || blob[3] != b':' {
                    return Err(
                        ProtocolError::InvalidFrame("verbatim string without format").into(),
                    );
                }
                Frame::Verbatim {
                    format: [blob[0], blob[1], blob[2]],
                    text: blob.slice(4..),
                }
            }
            b'*' | b'~' | b'>' => match self.length(max_items)? {
                None => Frame::Null,
                Some(len) => {
                    let items = self.frames(len, depth)?;
                    match sigil {
                        b'*' => Frame::Array(items),
                        b'~' => Frame::Set(items),
                        _ => Frame::Push(items),
                    }
                }
            },
            b'%' => {
                let Some(pairs) = self.length(max_items)? else {
                    return Err(ProtocolError::InvalidFrame("null map").into());
                };
                let mut items = self.frames(pairs.saturating_mul(2), depth)?.into_iter();
                let mut map = Vec::with_capacity(pairs);
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    map.push((key, value));
                }
                Frame::Map(map)
            }
            b'_' => {
                if !self.line()?.is_empty() {
                    return Err(ProtocolError::InvalidFrame("null with payload").into());
                }
                Frame::Null
            }
            b'#' => match self.line()? {
                b"t" => Frame::Boolean(true),
                b"f" => Frame::Boolean(false),
                _ => return Err(ProtocolError::InvalidFrame("invalid boolean").into()),
            },
            b',' => Frame::Double(parse_double(self.line()?)?),
            b'(' => {
                let digits = self.line()?;
                let body = digits.strip_prefix(b"-").unwrap_or(digits);
                if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
                    return Err(ProtocolError::InvalidFrame("invalid big number").into());
                }
                Frame::BigNumber(Bytes::copy_from_slice(digits))
            }
            _ => return Err(ProtocolError::InvalidFrame("unknown frame type").into()),
        })
    }
}

fn parse_double(text: &[u8]) -> Result<f64, ProtocolError> {
    let invalid = ProtocolError::InvalidFrame("invalid double");
    match text {
        b"inf" => Ok(f64::INFINITY),
        b"-inf" => Ok(f64::NEG_INFINITY),
        b"nan" => Ok(f64::NAN),
        _ => std::str::from_utf8(text)
            .ok()
            .filter(|text| !text.starts_with(['+', ' ']) && !text.is_empty())
            .and_then(|text| text.parse().ok())
            .ok_or(invalid),
    }
}
