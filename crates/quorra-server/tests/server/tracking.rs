//! Client tracking (CLIENT TRACKING) with real connections: Redis's options, replies and
//! error texts on one node, the table's bound, and coherence across a three-node
//! cluster — clients on every node invalidated for writes through any node, with the
//! staleness measured, and a client whose node is killed losing its connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quorra_resp::Limits;
use quorra_resp::{Frame, parse_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;
use crate::failover::{Node, until_up};

/// A raw RESP connection that keeps the pushes it reads apart from the replies.
struct RawClient {
    stream: TcpStream,
    input: BytesMut,
    pushes: Vec<Frame>,
}

impl RawClient {
    async fn connect(addr: SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(addr).await.expect("connects"),
            input: BytesMut::new(),
            pushes: Vec::new(),
        }
    }

    /// A RESP3 connection (HELLO 3).
    async fn resp3(addr: SocketAddr) -> RawClient {
        let mut client = RawClient::connect(addr).await;
        assert!(matches!(client.call(&["HELLO", "3"]).await, Frame::Map(_)));
        client
    }

    async fn send(&mut self, commands: &[&[&str]]) {
        let mut out = BytesMut::new();
        for args in commands {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for arg in *args {
                out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
            }
        }
        self.stream.write_all(&out).await.expect("sends");
    }

    /// The next frame, within `wait`; `None` when the connection closed or nothing came.
    async fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some((frame, used)) = parse_frame(&self.input, &Limits::default()).unwrap() {
                let _ = self.input.split_to(used);
                return Some(frame);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.input));
            match read.await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// The reply to the next command sent, keeping the pushes that come before it.
    async fn reply(&mut self) -> Frame {
        loop {
            match self.next_frame(Duration::from_secs(10)).await {
                Some(Frame::Push(push)) => self.pushes.push(Frame::Push(push)),
                Some(reply) => return reply,
                None => panic!("no reply"),
            }
        }
    }

    async fn call(&mut self, args: &[&str]) -> Frame {
        self.send(&[args]).await;
        self.reply().await
    }

    /// The keys of the next invalidation (`None` for a flush of everything), within
    /// `wait`; panics if none comes.
    async fn invalidation(&mut self, wait: Duration) -> Option<Vec<String>> {
        let push = match self.pushes.is_empty() {
            false => self.pushes.remove(0),
            true => self
                .next_frame(wait)
                .await
                .unwrap_or_else(|| panic!("no invalidation within {wait:?}")),
        };
        invalidated_keys(push)
    }

    /// True if the connection closes within `wait` (whatever arrives before is dropped).
    async fn closes(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut scratch = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }

    /// True if nothing arrives within `wait`.
    async fn hears_nothing(&mut self, wait: Duration) -> bool {
        self.pushes.is_empty() && self.next_frame(wait).await.is_none()
    }
}

/// The keys of an `invalidate` push (RESP3) or `__redis__:invalidate` message (RESP2).
fn invalidated_keys(frame: Frame) -> Option<Vec<String>> {
    let items = match frame {
        Frame::Push(items) | Frame::Array(items) => items,
        other => panic!("an invalidation expected: {other:?}"),
    };
    let keys = match items.as_slice() {
        [Frame::Bulk(kind), keys] if &kind[..] == b"invalidate" => keys.clone(),
        [Frame::Bulk(kind), Frame::Bulk(channel), keys]
            if &kind[..] == b"message" && &channel[..] == b"__redis__:invalidate" =>
        {
            keys.clone()
        }
        other => panic!("an invalidation expected: {other:?}"),
    };
    match keys {
        Frame::Null => None,
        Frame::Array(keys) => Some(keys.into_iter().map(text).collect()),
        other => panic!("keys or null expected: {other:?}"),
    }
}

fn text(frame: Frame) -> String {
    match frame {
        Frame::Bulk(bytes) | Frame::Simple(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
        other => panic!("text expected: {other:?}"),
    }
}

fn error(frame: Frame) -> String {
    match frame {
        Frame::Error(text) => String::from_utf8(text.to_vec()).unwrap(),
        other => panic!("an error expected: {other:?}"),
    }
}

fn ok_frame() -> Frame {
    Frame::Simple(Bytes::from_static(b"OK"))
}

const SOON: Duration = Duration::from_secs(5);
const A_MOMENT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn a_tracking_client_is_told_of_writes_expiry_and_flushes_as_redis_tells_it() {
    let server = start().await;
    let addr = server.resp_addr;
    let mut reader = RawClient::resp3(addr).await;
    let mut writer = RawClient::connect(addr).await;
    writer.call(&["SET", "k", "1"]).await;
    assert_eq!(reader.call(&["CLIENT", "TRACKING", "ON"]).await, ok_frame());
    assert_eq!(reader.call(&["GET", "k"]).await, Frame::Bulk("1".into()));

    writer.call(&["SET", "k", "2"]).await;
    assert_eq!(reader.invalidation(SOON).await, Some(vec!["k".to_owned()]));
    // One-shot: not told again until it reads again.
    writer.call(&["SET", "k", "3"]).await;
    assert!(reader.hears_nothing(A_MOMENT).await);

    // Its own write is told too, unless NOLOOP.
    reader.call(&["GET", "k"]).await;
    reader.call(&["SET", "k", "4"]).await;
    assert_eq!(reader.invalidation(SOON).await, Some(vec!["k".to_owned()]));
    assert_eq!(
        reader.call(&["CLIENT", "TRACKING", "ON", "NOLOOP"]).await,
        ok_frame()
    );
    reader.call(&["GET", "k"]).await;
    reader.call(&["SET", "k", "5"]).await;
    assert!(reader.hears_nothing(A_MOMENT).await);

    // Expiry invalidates, as a write does.
    writer.call(&["SET", "short", "v", "PX", "50"]).await;
    reader.call(&["GET", "short"]).await;
    assert_eq!(
        reader.invalidation(SOON).await,
        Some(vec!["short".to_owned()])
    );

    // FLUSHALL: a null, for every key.
    reader.call(&["GET", "k"]).await;
    writer.call(&["FLUSHALL"]).await;
    assert_eq!(reader.invalidation(SOON).await, None);

    // OPTIN: only the read after CLIENT CACHING YES is tracked.
    reader.call(&["CLIENT", "TRACKING", "OFF"]).await;
    assert_eq!(
        reader.call(&["CLIENT", "TRACKING", "ON", "OPTIN"]).await,
        ok_frame()
    );
    reader.call(&["GET", "not-cached"]).await;
    reader.call(&["CLIENT", "CACHING", "YES"]).await;
    reader.call(&["GET", "cached"]).await;
    writer
        .call(&["MSET", "not-cached", "1", "cached", "1"])
        .await;
    assert_eq!(
        reader.invalidation(SOON).await,
        Some(vec!["cached".to_owned()])
    );
    assert!(reader.hears_nothing(A_MOMENT).await);
    let Frame::Map(info) = reader.call(&["CLIENT", "TRACKINGINFO"]).await else {
        panic!("a map");
    };
    assert_eq!(info[0].0, Frame::Bulk("flags".into()));
    assert_eq!(
        info[0].1,
        Frame::Set(vec![Frame::Bulk("on".into()), Frame::Bulk("optin".into())])
    );
    assert_eq!(
        reader.call(&["CLIENT", "GETREDIR"]).await,
        Frame::Integer(0)
    );

    // BCAST: every key under the prefixes, without reading them.
    reader.call(&["CLIENT", "TRACKING", "OFF"]).await;
    assert_eq!(
        reader.call(&["CLIENT", "GETREDIR"]).await,
        Frame::Integer(-1)
    );
    reader
        .call(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:"])
        .await;
    writer.call(&["SET", "user:1", "x"]).await;
    writer.call(&["SET", "order:1", "x"]).await;
    assert_eq!(
        reader.invalidation(SOON).await,
        Some(vec!["user:1".to_owned()])
    );
    assert!(reader.hears_nothing(A_MOMENT).await);
}

#[tokio::test]
async fn a_key_evicted_for_memory_is_invalidated_for_the_clients_that_cached_it() {
    let server = start_with(|config| config.maxmemory = 256 * 1024).await;
    let mut reader = RawClient::resp3(server.resp_addr).await;
    let mut writer = RawClient::connect(server.resp_addr).await;
    writer.call(&["SET", "victim", "v"]).await;
    reader.call(&["CLIENT", "TRACKING", "ON"]).await;
    assert_eq!(
        reader.call(&["GET", "victim"]).await,
        Frame::Bulk("v".into())
    );
    // Far more than fits: the least recently used key, the victim, is evicted.
    let value = "x".repeat(1024);
    for i in 0..1000 {
        writer.call(&["SET", &format!("filler:{i}"), &value]).await;
    }
    assert_eq!(writer.call(&["EXISTS", "victim"]).await, Frame::Integer(0));
    assert_eq!(
        reader.invalidation(SOON).await,
        Some(vec!["victim".to_owned()])
    );
}

#[tokio::test]
async fn a_resp2_client_redirects_invalidations_to_a_subscriber_of_redis_invalidate() {
    let server = start().await;
    let addr = server.resp_addr;
    let mut listener = RawClient::connect(addr).await;
    let Frame::Integer(listener_id) = listener.call(&["CLIENT", "ID"]).await else {
        panic!("an id");
    };
    listener.call(&["SUBSCRIBE", "__redis__:invalidate"]).await;
    let mut reader = RawClient::connect(addr).await;
    let id = listener_id.to_string();
    assert_eq!(
        reader
            .call(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id])
            .await,
        ok_frame()
    );
    assert_eq!(
        reader.call(&["CLIENT", "GETREDIR"]).await,
        Frame::Integer(listener_id)
    );
    reader.call(&["GET", "k"]).await;
    reader.call(&["SET", "k", "v"]).await;
    assert_eq!(
        listener.invalidation(SOON).await,
        Some(vec!["k".to_owned()])
    );
}

#[tokio::test]
async fn conflicting_tracking_options_get_redis_error_texts() {
    let server = start().await;
    let mut client = RawClient::resp3(server.resp_addr).await;
    let cases: &[(&[&str], &str)] = &[
        (
            &["CLIENT", "TRACKING", "ON", "REDIRECT", "999999"],
            "ERR The client ID you want redirect to does not exist",
        ),
        (
            &["CLIENT", "TRACKING", "ON", "PREFIX", "a"],
            "ERR PREFIX option requires BCAST mode to be enabled",
        ),
        (
            &["CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"],
            "ERR OPTIN and OPTOUT are not compatible with BCAST",
        ),
        (
            &["CLIENT", "TRACKING", "ON", "OPTIN", "OPTOUT"],
            "ERR You can't use both OPTIN and OPTOUT",
        ),
        (
            &[
                "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ab", "PREFIX", "a",
            ],
            "ERR Prefix 'a' overlaps with an existing prefix 'ab'. Prefixes for a single \
             client must not overlap.",
        ),
        (&["CLIENT", "TRACKING", "MAYBE"], "ERR syntax error"),
        (&["CLIENT", "TRACKING", "ON", "FAST"], "ERR syntax error"),
        (
            &["CLIENT", "CACHING", "YES"],
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with \
             OPTIN or OPTOUT mode enabled",
        ),
    ];
    for (command, expected) in cases {
        assert_eq!(error(client.call(command).await), *expected, "{command:?}");
    }
    client.call(&["CLIENT", "TRACKING", "ON", "OPTIN"]).await;
    for (command, expected) in [
        (
            &["CLIENT", "TRACKING", "ON", "OPTOUT"][..],
            "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, \
             and then re-enabling it with a different mode.",
        ),
        (
            &["CLIENT", "TRACKING", "ON", "BCAST"][..],
            "ERR You can't switch BCAST mode on/off before disabling tracking for this client, \
             and then re-enabling it with a different mode.",
        ),
        (
            &["CLIENT", "CACHING", "NO"][..],
            "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
        ),
    ] {
        assert_eq!(error(client.call(command).await), expected, "{command:?}");
    }
}

#[tokio::test]
async fn a_client_tracking_a_million_keys_stays_within_the_table_bound() {
    let server = start_with(|config| config.tracking_table_max_keys = 10_000).await;
    let mut reader = RawClient::resp3(server.resp_addr).await;
    reader.call(&["CLIENT", "TRACKING", "ON"]).await;
    let keys: Vec<String> = (0..1_000_000).map(|i| format!("key:{i}")).collect();
    for chunk in keys.chunks(10_000) {
        let commands: Vec<[&str; 2]> = chunk.iter().map(|key| ["GET", key.as_str()]).collect();
        let commands: Vec<&[&str]> = commands.iter().map(|command| &command[..]).collect();
        reader.send(&commands).await;
        for _ in chunk {
            assert_eq!(reader.reply().await, Frame::Null);
        }
    }
    let (Frame::Verbatim { text, .. } | Frame::Bulk(text)) = reader.call(&["INFO", "stats"]).await
    else {
        panic!("INFO answers text");
    };
    let text = String::from_utf8(text.to_vec()).unwrap();
    let figure = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} in INFO"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(figure("tracking_total_keys") <= 10_000);
    assert_eq!(figure("quorra_tracking_keys_pushed_out"), 990_000);
    // Every key pushed out was invalidated for the client, so it keeps nothing that no
    // one would invalidate.
    let mut told = reader.pushes.len();
    while told < 990_000 {
        let Some(Frame::Push(_)) = reader.next_frame(SOON).await else {
            panic!("only {told} of 990000 invalidations arrived");
        };
        told += 1;
    }
}

/// Three nodes keeping three copies.
async fn start_cluster(flags: &[&str]) -> Vec<Node> {
    let mut flags = flags.to_vec();
    flags.extend_from_slice(&["--replicas", "3"]);
    let first = Node::start_with("t1", None, &flags);
    let second = Node::start_with("t2", Some(first.cluster), &flags);
    let third = Node::start_with("t3", Some(first.cluster), &flags);
    let nodes = vec![first, second, third];
    for node in &nodes {
        until_up(node, 3).await;
    }
    nodes
}

#[tokio::test]
async fn clients_on_every_node_are_invalidated_for_writes_through_any_node_and_never_keep_a_stale_value()
 {
    let mut nodes = start_cluster(&[]).await;
    let mut writer = RawClient::connect(nodes[0].resp).await;
    let mut readers = Vec::new();
    for node in &nodes {
        let mut reader = RawClient::resp3(node.resp).await;
        reader.call(&["CLIENT", "TRACKING", "ON"]).await;
        readers.push(reader);
    }
    let keys: Vec<String> = (0..20).map(|i| format!("coherent:{i}")).collect();
    let mut staleness = Vec::new();
    for round in 0..10 {
        for key in &keys {
            // Every reader caches the key's current value...
            for reader in &mut readers {
                reader.call(&["GET", key]).await;
            }
            // ...a write through one node is acknowledged...
            let value = format!("{round}");
            assert_eq!(writer.call(&["SET", key, &value]).await, ok_frame());
            let acknowledged = Instant::now();
            // ...and each reader is told, then reads the acknowledged value again. (A
            // null — drop everything — is as good: a node of a starved machine may be
            // taken for down for a moment, and the view change flushes every client.)
            for reader in &mut readers {
                // (Keys told before a flush may still follow it: skipped.)
                while let Some(keys) = reader.invalidation(SOON).await {
                    if keys == [key.clone()] {
                        break;
                    }
                }
                staleness.push(acknowledged.elapsed());
                assert_eq!(
                    reader.call(&["GET", key]).await,
                    Frame::Bulk(value.clone().into())
                );
            }
        }
    }
    staleness.sort();
    println!(
        "coherence: {} invalidations, from write acknowledgement to arrival: median {:?}, \
         max {:?}",
        staleness.len(),
        staleness[staleness.len() / 2],
        staleness[staleness.len() - 1]
    );

    // BCAST on one node hears of a write under its prefix through another, and a
    // tracking client of a key that expires at its primary (another node) is told.
    let mut broadcast = RawClient::resp3(nodes[2].resp).await;
    assert_eq!(
        broadcast
            .call(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "bcast:"])
            .await,
        ok_frame()
    );
    writer.call(&["SET", "bcast:1", "x"]).await;
    writer.call(&["SET", "other:1", "x"]).await;
    assert_eq!(
        broadcast.invalidation(SOON).await,
        Some(vec!["bcast:1".to_owned()])
    );
    assert!(broadcast.hears_nothing(A_MOMENT).await);
    writer.call(&["SET", "expiring", "v", "PX", "200"]).await;
    readers[1].call(&["GET", "expiring"]).await;
    assert_eq!(
        readers[1].invalidation(SOON).await,
        Some(vec!["expiring".to_owned()])
    );

    // A client whose node is killed loses its connection (and so must drop its cache).
    nodes[2].kill();
    assert!(readers[2].closes(SOON).await, "the connection closes");
}
