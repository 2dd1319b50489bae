//! Feeds a sequence of datagrams to the authenticated gossip transport's receive path
//! (`gossip_auth`): `Reassembly::take`, then `GossipKey::open`, then `ReplayGuard::admit`,
//! then chitchat's `ChitchatMessage::deserialize` on the message, as the socket does.
//! Nothing may panic. The datagrams are either arbitrary (forged) or arbitrary messages
//! sealed with the right key and fragmented as a sender does; for those, `seal` then
//! `open` must give back the header and message, any altered byte must make `open`
//! refuse the body, another key must refuse it, the fragments must fit a datagram and
//! reassemble to the body.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use chitchat::{ChitchatMessage, Deserializable};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use quorra_cluster::gossip_auth::{
    BODY_OVERHEAD, GossipKey, Header, Reassembly, Rejection, ReplayGuard, fragments,
};
use quorra_cluster::rpc::ClusterSecret;

/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// The receiving socket's origin.
const ORIGIN: u64 = 0x5eed;

fn keys() -> &'static (GossipKey, GossipKey) {
    static KEYS: OnceLock<(GossipKey, GossipKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            GossipKey::derive(&ClusterSecret::new("fuzz secret")),
            GossipKey::derive(&ClusterSecret::new("another secret")),
        )
    })
}

struct Receiver {
    reassembly: Reassembly,
    replay: ReplayGuard,
}

impl Receiver {
    /// What the socket does with one datagram.
    fn receive(&mut self, now_ms: u64, from: SocketAddr, datagram: &[u8]) {
        let Ok(Some(body)) = self.reassembly.take(from, datagram) else {
            return;
        };
        let Ok((header, message)) = keys().0.open(&body) else {
            return;
        };
        if self.replay.admit(now_ms, header).is_err() {
            return;
        }
        let mut bytes = message;
        let _ = ChitchatMessage::deserialize(&mut bytes);
    }
}

fn sender(u: &mut Unstructured<'_>) -> Result<SocketAddr> {
    let port: u16 = u.int_in_range(1..=4)?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let (key, other_key) = keys();
    let now_ms: u64 = u.arbitrary()?;
    let mut receiver = Receiver {
        reassembly: Reassembly::default(),
        replay: ReplayGuard::new(ORIGIN),
    };
    while !u.is_empty() {
        match u.int_in_range(0..=2u8)? {
            // A forged datagram.
            0 => {
                let from = sender(u)?;
                let len = u.arbitrary_len::<u8>()?;
                let datagram = u.bytes(len)?;
                receiver.receive(now_ms, from, datagram);
            }
            // An authentic message, as a sender seals and fragments it.
            1 => {
                let from = sender(u)?;
                let skew: i32 = u.arbitrary()?;
                let header = Header {
                    sent_at_ms: now_ms.wrapping_add_signed(i64::from(skew)),
                    nonce: u.arbitrary()?,
                    origin: u.arbitrary()?,
                };
                let message_id: u64 = u.arbitrary()?;
                let len = u.arbitrary_len::<u8>()?;
                let message = u.bytes(len)?;
                let body = key.seal(header, message);
                assert_eq!(body.len(), message.len() + BODY_OVERHEAD);
                assert_eq!(key.open(&body), Ok((header, message)));
                assert_eq!(other_key.open(&body), Err(Rejection::Forged));
                let datagrams = fragments(message_id, &body);
                let mut alone = Reassembly::default();
                for (i, datagram) in datagrams.iter().enumerate() {
                    assert!(datagram.len() <= MAX_DATAGRAM);
                    let whole = alone.take(from, datagram).expect("a fragment is accepted");
                    if i + 1 == datagrams.len() {
                        assert_eq!(whole.as_deref(), Some(&body[..]));
                    } else {
                        assert_eq!(whole, None);
                    }
                }
                for datagram in &datagrams {
                    receiver.receive(now_ms, from, datagram);
                }
            }
            // An authentic body with one byte altered.
            _ => {
                let len = u.arbitrary_len::<u8>()?;
                let message = u.bytes(len)?;
                let header = Header {
                    sent_at_ms: now_ms,
                    nonce: u.arbitrary()?,
                    origin: u.arbitrary()?,
                };
                let mut body = key.seal(header, message);
                let at = u.choose_index(body.len())?;
                body[at] ^= u.int_in_range(1..=255u8)?;
                assert_eq!(key.open(&body), Err(Rejection::Forged), "altered byte {at}");
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
