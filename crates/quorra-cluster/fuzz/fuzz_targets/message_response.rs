//! Feeds arbitrary bytes to `message::Response::decode` (postcard). It must never panic,
//! and whatever decodes must re-encode to bytes that decode to an equal response and that
//! are their own canonical encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorra_cluster::message::Response;

fuzz_target!(|data: &[u8]| {
    let response = match Response::decode(data) {
        Ok(response) => response,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let wire = response.encode();
    let again = Response::decode(&wire).expect("an encoded response decodes");
    assert_eq!(again, response);
    assert_eq!(again.encode(), wire, "re-encoding is not stable");
});
