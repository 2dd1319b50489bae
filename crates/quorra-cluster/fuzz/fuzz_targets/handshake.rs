//! Feeds arbitrary bytes to the connection handshake (`rpc::handshake`): to `Hello::decode`
//! as a Hello payload, and to both the server and the client side as the byte stream a
//! peer sends: raw, with part of it framed as the Hello, and after a well-formed Hello
//! (so that the server's `Reject` and `Accept` frames are parsed by the client and the
//! client's `Proof` by the server). Nothing may panic; every run must end in an error (the input cannot know the
//! cluster secret, nor the nonce drawn for the run); and a payload that decodes as a Hello
//! must be exactly the encoding of what it decoded to.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quorra_cluster::rpc::fuzzing::{Frame, FrameKind, Hello, client_over_bytes, server_over_bytes};
use quorra_cluster::rpc::{
    ClusterSecret, HANDSHAKE_MAX_FRAME_BYTES, MAX_NODE_ID_BYTES, PROTOCOL_VERSION, RpcConfig,
};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

fn config() -> &'static RpcConfig {
    static CONFIG: OnceLock<RpcConfig> = OnceLock::new();
    CONFIG.get_or_init(|| RpcConfig::new("fuzz-node", ClusterSecret::new("fuzz secret")))
}

/// Runs both sides of the handshake against a peer that sends `stream`.
fn both_sides_refuse(stream: &[u8]) {
    let rt = runtime();
    let server = rt.block_on(server_over_bytes(config(), stream));
    assert!(server.is_err(), "server accepted {:?}", server.unwrap());
    let client = rt.block_on(client_over_bytes(config(), stream));
    assert!(client.is_err(), "client accepted {:?}", client.unwrap());
    // The errors must format (they end up in logs).
    let _ = (
        server.unwrap_err().to_string(),
        client.unwrap_err().to_string(),
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = Hello::decode(data) {
        assert!(hello.node_id.as_str().len() <= MAX_NODE_ID_BYTES);
        let wire = hello.encode();
        assert_eq!(&wire[..], data, "a Hello is not its own encoding");
        let again = Hello::decode(&wire).expect("an encoded Hello decodes");
        assert_eq!(
            (again.version, again.nonce, again.node_id),
            (hello.version, hello.nonce, hello.node_id)
        );
    }

    // The input as the raw stream a peer sends.
    both_sides_refuse(data);

    // The input as a Hello payload, framed, possibly followed by more frames: the first
    // byte says how much of the rest goes into the Hello.
    if let [cut, rest @ ..] = data {
        let cut = usize::from(*cut).min(rest.len());
        let (payload, after) = rest.split_at(cut);
        let mut stream = bytes::BytesMut::new();
        Frame::new(FrameKind::Hello, 0, bytes::Bytes::copy_from_slice(payload)).encode(&mut stream);
        assert!(stream.len() <= 4 + HANDSHAKE_MAX_FRAME_BYTES);
        stream.extend_from_slice(after);
        both_sides_refuse(&stream);
    }

    // A well-formed Hello of our version, then the input: the server reads the input as
    // the client's Proof, the client as the server's Accept or Reject.
    let hello = Hello {
        version: PROTOCOL_VERSION,
        nonce: [7; 32],
        node_id: "peer".into(),
    };
    let mut stream = bytes::BytesMut::new();
    Frame::new(FrameKind::Hello, 0, hello.encode()).encode(&mut stream);
    stream.extend_from_slice(data);
    both_sides_refuse(&stream);
});
