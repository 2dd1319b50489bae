//! Parses arbitrary bytes as a reply frame. It must never panic or overflow the stack,
//! and a frame it accepts must re-encode to bytes that parse to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use quorra_resp::{Limits, parse_frame};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bulk_len: 4096, max_args: 64, max_inline_len: 256, max_query_buffer: 8192 };
    if let Ok(Some((frame, used))) = parse_frame(data, &limits) {
        assert!(used <= data.len());
        let mut wire = BytesMut::new();
        frame.write_to(&mut wire);
        let (again, _) = parse_frame(&wire, &limits).unwrap().unwrap();
        // NaN doubles are not equal to themselves; compare their encodings instead.
        let mut rewire = BytesMut::new();
        again.write_to(&mut rewire);
        assert_eq!(wire, rewire, "{frame:?}");
    }
});
