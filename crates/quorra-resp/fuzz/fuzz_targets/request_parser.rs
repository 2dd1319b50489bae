//! Feeds arbitrary bytes to the request parser in arbitrary chunks. It must never panic,
//! and every command it yields must survive a round trip: encoded as a multibulk
//! request and parsed again in one piece, it comes back identical.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use quorra_resp::{Limits, RequestParser, encode};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so the fuzzer explores split points too.
    let Some((&chunk, input)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let limits = Limits { max_bulk_len: 4096, max_args: 64, max_inline_len: 256, max_query_buffer: 8192 };
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match parser.next_request(&mut buf) {
                Ok(Some(command)) => {
                    assert!(!command.is_empty());
                    let mut wire = BytesMut::new();
                    encode::command(&mut wire, &command);
                    let mut again = RequestParser::new(Limits::default());
                    assert_eq!(again.next_request(&mut wire).unwrap(), Some(command));
                    assert!(wire.is_empty());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
