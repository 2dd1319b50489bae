//! Feeds arbitrary bytes to `message::Request::decode` (postcard). It must never panic,
//! and whatever decodes must re-encode to bytes that decode to an equal request and that
//! are their own canonical encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorra_cluster::message::Request;

fuzz_target!(|data: &[u8]| {
    let request = match Request::decode(data) {
        Ok(request) => request,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let wire = request.encode();
    let again = Request::decode(&wire).expect("an encoded request decodes");
    assert_eq!(again, request);
    assert_eq!(again.encode(), wire, "re-encoding is not stable");
});
