//! Feeds arbitrary bytes to the RPC frame decoder (`rpc::frame::parse`) in arbitrary
//! chunks, as a connection's reader receives them. It must never panic, and:
//!
//! - every frame it yields fits the limit and re-encodes to exactly the bytes it was
//!   decoded from;
//! - "need more bytes" consumes nothing, and a refusal leaves the buffer untouched
//!   (nothing consumed, nothing reserved);
//! - the frames and the refusal do not depend on how the stream was split.
//!
//! The first byte picks the limit, the second the chunk sizes; the rest is the stream.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use quorra_cluster::rpc::fuzzing::{Frame, FrameError, parse};
use quorra_cluster::rpc::{DEFAULT_MAX_FRAME_BYTES, HANDSHAKE_MAX_FRAME_BYTES};

/// Bytes of the length prefix.
const LENGTH_BYTES: usize = 4;
/// Bytes counted by the length besides the payload: kind + request id.
const HEADER_BYTES: usize = 1 + 8;

/// What a stream decodes to: its frames, then the refusal that ended it (`None`: the
/// decoder is waiting for more bytes).
type Outcome = (Vec<Frame>, Option<FrameError>);

/// Decodes `stream`, handing it to the decoder in pieces of the sizes `chunk` gives.
fn decode(stream: &[u8], max: usize, mut chunk: impl FnMut() -> usize) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    // The buffer holds `stream[taken..fed]`: fed to the decoder, not yet taken as frames.
    let (mut taken, mut fed) = (0, 0);
    loop {
        loop {
            let (len, capacity) = (buf.len(), buf.capacity());
            match parse(&mut buf, max) {
                Ok(Some(frame)) => {
                    let consumed = len - buf.len();
                    assert_eq!(consumed, frame.wire_len());
                    assert!(
                        HEADER_BYTES + frame.payload.len() <= max,
                        "frame of {} bytes over the limit of {max}",
                        HEADER_BYTES + frame.payload.len()
                    );
                    let mut wire = BytesMut::new();
                    frame.encode(&mut wire);
                    assert_eq!(
                        &wire[..],
                        &stream[taken..taken + consumed],
                        "re-encoding differs"
                    );
                    taken += consumed;
                    frames.push(frame);
                }
                Ok(None) => {
                    assert_eq!(
                        &buf[..],
                        &stream[taken..fed],
                        "an incomplete frame consumed bytes"
                    );
                    // What an incomplete frame reserves is bounded by the limit (with
                    // the allocator's doubling and the buffer's remembered capacity).
                    let bound = (2 * capacity)
                        .max(2 * (LENGTH_BYTES + max.min(u32::MAX as usize)))
                        .max(128 * 1024);
                    assert!(
                        buf.capacity() <= bound,
                        "reserved {} bytes (limit {max}, had {capacity})",
                        buf.capacity()
                    );
                    break;
                }
                Err(e) => {
                    assert_eq!(
                        &buf[..],
                        &stream[taken..fed],
                        "a refused stream was consumed"
                    );
                    assert_eq!(buf.capacity(), capacity, "a refused frame reserved memory");
                    return (frames, Some(e));
                }
            }
        }
        if fed == stream.len() {
            return (frames, None);
        }
        let n = chunk().clamp(1, stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
    }
}

fuzz_target!(|data: &[u8]| {
    let [limit, split, stream @ ..] = data else {
        return;
    };
    let max = match limit {
        0 => DEFAULT_MAX_FRAME_BYTES,
        1 => HANDSHAKE_MAX_FRAME_BYTES,
        b => usize::from(*b) * 4,
    };
    // Chunk sizes in 1..=split from a xorshift seeded by `split` (0: one piece).
    let mut state = u32::from(*split) | 0x100;
    let chunked = decode(stream, max, || {
        if *split == 0 {
            return usize::MAX;
        }
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + (state as usize) % usize::from(*split)
    });
    let whole = decode(stream, max, || usize::MAX);
    assert_eq!(
        chunked, whole,
        "the outcome depends on how the stream was split"
    );
});
