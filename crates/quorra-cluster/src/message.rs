//! The messages nodes exchange over [`rpc`](crate::rpc), encoded with postcard.
//!
//! A request is one [`Request`]; its answer one [`Response`]. The RPC layer carries them
//! as opaque payloads and its error frames carry a handler's refusal, so a peer that
//! cannot decode a request answers with an error text rather than a `Response`.
//!
//! Routing needs only [`Request::Execute`]: the coordinating node sends a client's
//! commands to the node that owns their keys, which runs them in order against its own
//! store exactly as it would for a local client (never routing them further, so two
//! nodes whose ring views briefly differ cannot bounce a command between them) and
//! returns each reply's bytes, already encoded in the client's RESP version. Sending a
//! pipeline's commands for one owner as one request keeps their order (the RPC runs
//! separate requests concurrently) and costs one round trip.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What one node asks another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Run commands (each name first), in order, on the receiver's own store and reply
    /// with their RESP bytes ([`Response::Replies`]), encoded for a client that speaks
    /// RESP3 if `resp3` is set, RESP2 otherwise.
    Execute {
        /// RESP version of the client the replies are for.
        resp3: bool,
        /// The commands, each with its arguments.
        commands: Vec<Vec<Bytes>>,
    },
    /// Count the receiver's live keys and keys with a TTL (for INFO keyspace).
    KeyspaceCounts,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The replies to [`Request::Execute`], one per command: exactly the bytes a client
    /// would have read.
    Replies(Vec<Bytes>),
    /// The answer to [`Request::KeyspaceCounts`].
    KeyspaceCounts {
        /// Live keys.
        keys: u64,
        /// Live keys with a TTL.
        expires: u64,
    },
}

/// A payload that does not decode as the message expected.
#[derive(Debug, thiserror::Error)]
#[error("undecodable cluster message: {0}")]
pub struct DecodeError(#[from] postcard::Error);

macro_rules! codec {
    ($type:ty) => {
        impl $type {
            /// Encodes for the wire.
            pub fn encode(&self) -> Bytes {
                Bytes::from(postcard::to_stdvec(self).expect("messages always serialize"))
            }

            /// Decodes from the wire.
            pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
                Ok(postcard::from_bytes(payload)?)
            }
        }
    };
}

codec!(Request);
codec!(Response);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let request = Request::Execute {
            resp3: true,
            commands: vec![
                vec![
                    Bytes::from_static(b"SET"),
                    Bytes::from(vec![0u8, 255, 13, 10]),
                ],
                vec![Bytes::from_static(b"GET")],
            ],
        };
        assert_eq!(Request::decode(&request.encode()).unwrap(), request);
        let replies = Response::Replies(vec![Bytes::from_static(b"+OK\r\n"), Bytes::new()]);
        assert_eq!(Response::decode(&replies.encode()).unwrap(), replies);
        let response = Response::KeyspaceCounts {
            keys: u64::MAX,
            expires: 3,
        };
        assert_eq!(Response::decode(&response.encode()).unwrap(), response);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Request::decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(Request::decode(&[]).is_err());
        // An Execute that announces more commands than the payload holds.
        assert!(Request::decode(&[0, 1, 0xff, 0xff, 0x03]).is_err());
    }
}
