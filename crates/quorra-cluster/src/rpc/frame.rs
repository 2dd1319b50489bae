//! Frames: the unit of the wire protocol, their encoding and an incremental reader.
//!
//! ```text
//!  0                   4        5                                13
//! +-------------------+--------+---------------------------------+----------------------+
//! | length: u32 (BE)  | kind:u8| request id: u64 (BE)            | payload (length - 9) |
//! +-------------------+--------+---------------------------------+----------------------+
//!  `length` counts every byte after itself: kind + request id + payload.
//! ```
//!
//! [`parse`] follows mini-redis's `Frame::check`: it first looks at the four length bytes
//! and refuses a length above the configured limit *before* anything is reserved, so a
//! peer announcing a 4 GiB frame costs us four bytes of buffer, not 4 GiB. "Not all of
//! the frame is buffered yet" is `Ok(None)` (read more), never an error.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Bytes of the length prefix.
pub(crate) const LENGTH_BYTES: usize = 4;
/// Bytes counted by the length that are not payload: kind (1) + request id (8).
pub(crate) const HEADER_BYTES: usize = 1 + 8;
/// Initial capacity of a connection's read buffer, in bytes. It grows only as far as the
/// largest frame actually received (bounded by the configured maximum).
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// A connection's writer coalesces queued frames into one `write` until this many bytes
/// are buffered, so many small concurrent calls cost few syscalls.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// What a frame is. The numeric values are part of the wire format.
///
/// Public (re-exported by the hidden `rpc::fuzzing`) only for the fuzz targets and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A call; the payload is the caller's request.
    Request = 0,
    /// A successful answer to the request with the same id.
    Response = 1,
    /// The handler failed; the payload is its UTF-8 error message.
    Error = 2,
    /// Handshake: version, node id and nonce (see `handshake`).
    Hello = 16,
    /// Handshake: an HMAC proof of knowledge of the cluster secret.
    Proof = 17,
    /// Handshake: the server accepted the client.
    Accept = 18,
    /// Handshake: the server refused the client; the payload says why.
    Reject = 19,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            0 => FrameKind::Request,
            1 => FrameKind::Response,
            2 => FrameKind::Error,
            16 => FrameKind::Hello,
            17 => FrameKind::Proof,
            18 => FrameKind::Accept,
            19 => FrameKind::Reject,
            _ => return None,
        })
    }
}

/// One decoded frame. The payload is a zero-copy slice of the read buffer.
///
/// Public (re-exported by the hidden `rpc::fuzzing`) only for the fuzz targets and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is.
    pub kind: FrameKind,
    /// The request id (0 for handshake frames).
    pub id: u64,
    /// The payload, opaque to this module.
    pub payload: Bytes,
}

impl Frame {
    /// A frame of `kind` for request `id` carrying `payload`.
    pub fn new(kind: FrameKind, id: u64, payload: Bytes) -> Frame {
        Frame { kind, id, payload }
    }

    /// Bytes this frame takes on the wire, length prefix included.
    pub fn wire_len(&self) -> usize {
        LENGTH_BYTES + HEADER_BYTES + self.payload.len()
    }

    /// Appends the encoded frame to `dst`. The caller has checked the payload size against
    /// the limit (see [`check_payload_len`]).
    pub fn encode(&self, dst: &mut BytesMut) {
        let len = (HEADER_BYTES + self.payload.len()) as u32;
        dst.reserve(self.wire_len());
        dst.put_u32(len);
        dst.put_u8(self.kind as u8);
        dst.put_u64(self.id);
        dst.extend_from_slice(&self.payload);
    }
}

/// Why a byte stream is not a valid sequence of frames. Terminal for the connection.
///
/// Public (re-exported by the hidden `rpc::fuzzing`) only for the fuzz targets and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than the limit (`len` counts kind, id, payload).
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The length is smaller than the fixed header.
    TooShort {
        /// The announced length.
        len: usize,
    },
    /// Unknown kind byte.
    UnknownKind(u8),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            FrameError::TooShort { len } => write!(f, "frame length {len} is below the header"),
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
        }
    }
}

/// Largest payload that fits a frame of at most `max_frame_bytes` (length-counted bytes).
pub(crate) fn max_payload(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_sub(HEADER_BYTES)
}

/// Decodes one frame from the front of `buf` if all of it is there.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some(frame))` after consuming one
/// frame, and an error (without reserving anything) when the length is outside
/// `HEADER_BYTES..=max_frame_bytes` or the kind is unknown.
///
/// Public (re-exported by the hidden `rpc::fuzzing`) only for the fuzz targets and tests.
pub fn parse(buf: &mut BytesMut, max_frame_bytes: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < LENGTH_BYTES {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    if len < HEADER_BYTES {
        return Err(FrameError::TooShort { len });
    }
    if buf.len() < LENGTH_BYTES + len {
        // Reserve what this (bounded) frame still needs so the next read can fill it.
        buf.reserve(LENGTH_BYTES + len - buf.len());
        return Ok(None);
    }
    let kind_byte = buf[LENGTH_BYTES];
    let kind = FrameKind::from_u8(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
    buf.advance(LENGTH_BYTES + 1);
    let id = buf.get_u64();
    let payload = buf.split_to(len - HEADER_BYTES).freeze();
    Ok(Some(Frame { kind, id, payload }))
}

/// What ended a frame stream.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection (cleanly between frames, or mid-frame).
    Eof,
    /// Reading failed.
    Io(std::io::Error),
    /// The bytes are not frames.
    Frame(FrameError),
}

/// Reads frames from one half of a connection, with a per-reader size limit.
pub(crate) struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    max_frame_bytes: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(rd: R, max_frame_bytes: usize) -> Self {
        FrameReader {
            rd,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
            max_frame_bytes,
        }
    }

    /// Changes the limit (the handshake uses a small one, then the configured one).
    pub(crate) fn set_max_frame_bytes(&mut self, max: usize) {
        self.max_frame_bytes = max;
    }

    /// Returns the next frame. Cancel-safe: bytes already read stay in the buffer.
    pub(crate) async fn next(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) =
                parse(&mut self.buf, self.max_frame_bytes).map_err(ReadError::Frame)?
            {
                return Ok(frame);
            }
            if self.buf.capacity() == self.buf.len() {
                self.buf.reserve(READ_BUFFER_BYTES);
            }
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) => return Err(ReadError::Eof),
                Ok(_) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// Writes the frames queued on `rx` until the queue is closed and drained, `stop` is
/// cancelled, or a write fails. Frames queued together go out in one write.
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            f = rx.recv() => match f {
                Some(f) => f,
                None => break,
            },
        };
        first.encode(&mut buf);
        while buf.len() < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(f) => f.encode(&mut buf),
                Err(_) => break,
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = wr.write_all(&buf) => r?,
        }
        buf.clear();
    }
    wr.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: &Frame) -> BytesMut {
        let mut b = BytesMut::new();
        frame.encode(&mut b);
        b
    }

    #[test]
    fn round_trip_and_layout() {
        let f = Frame::new(
            FrameKind::Response,
            0x0102_0304_0506_0708,
            Bytes::from_static(b"hi"),
        );
        let mut b = encoded(&f);
        assert_eq!(
            &b[..],
            &[0, 0, 0, 11, 1, 1, 2, 3, 4, 5, 6, 7, 8, b'h', b'i'][..]
        );
        assert_eq!(b.len(), f.wire_len());
        assert_eq!(parse(&mut b, 1024).unwrap(), Some(f));
        assert!(b.is_empty());
    }

    #[test]
    fn partial_frames_ask_for_more() {
        let f = Frame::new(FrameKind::Request, 7, Bytes::from(vec![9u8; 100]));
        let full = encoded(&f);
        for cut in 0..full.len() {
            let mut b = BytesMut::from(&full[..cut]);
            assert_eq!(parse(&mut b, 1024).unwrap(), None, "cut at {cut}");
            assert_eq!(b.len(), cut, "nothing consumed");
        }
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0][..]);
        let cap_before = b.capacity();
        assert_eq!(
            parse(&mut b, 1 << 20),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 1 << 20
            })
        );
        assert_eq!(b.capacity(), cap_before);
    }

    #[test]
    fn short_length_and_unknown_kind_are_errors() {
        let mut b = BytesMut::from(&[0, 0, 0, 3, 0, 0, 0][..]);
        assert_eq!(parse(&mut b, 1024), Err(FrameError::TooShort { len: 3 }));
        let mut b = BytesMut::from(&[0, 0, 0, 9, 99, 0, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(parse(&mut b, 1024), Err(FrameError::UnknownKind(99)));
    }

    #[tokio::test]
    async fn reader_yields_frames_split_across_reads() {
        let mut wire = BytesMut::new();
        for i in 0..50u64 {
            Frame::new(
                FrameKind::Request,
                i,
                Bytes::from(vec![i as u8; i as usize]),
            )
            .encode(&mut wire);
        }
        // A duplex pipe with a tiny buffer forces many partial reads.
        let (mut tx, rx) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(&wire).await.unwrap();
        });
        let mut reader = FrameReader::new(rx, 1024);
        for i in 0..50u64 {
            let f = reader.next().await.unwrap();
            assert_eq!(f.id, i);
            assert_eq!(f.payload.len(), i as usize);
        }
        writer.await.unwrap();
        assert!(matches!(reader.next().await, Err(ReadError::Eof)));
    }
}
