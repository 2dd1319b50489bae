//! Network tests of the rpc module: real sockets on 127.0.0.1 port 0.
//!
//! Durations here are only failure bounds (a test that would hang fails instead); nothing
//! asserts that something was fast.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use quorra_ring::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::frame::{FrameKind, FrameReader};
use super::*;

/// Generous bound for anything that should happen "at once".
const BOUND: Duration = Duration::from_secs(20);
const SECRET: &str = "s3cr3t-cluster-key-that-must-never-hit-the-wire";

fn config(id: &str, secret: &str) -> RpcConfig {
    let mut c = RpcConfig::new(id, ClusterSecret::new(secret));
    c.call_timeout = BOUND;
    c.connect_timeout = BOUND;
    c
}

/// Echo handler: answers `re:` + payload; `hang` never answers; `fail` is an error.
fn echo() -> impl Handler {
    |_from: NodeId, p: Bytes| async move {
        match &p[..] {
            b"hang" => std::future::pending().await,
            b"fail" => Err("handler says no".to_string()),
            _ => {
                let mut out = BytesMut::from(&b"re:"[..]);
                out.extend_from_slice(&p);
                Ok(out.freeze())
            }
        }
    }
}

async fn echo_server() -> RpcServer {
    RpcServer::bind("127.0.0.1:0", config("server", SECRET), echo())
        .await
        .unwrap()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test step exceeded its failure bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_over_a_pool_get_their_own_answers() {
    // Requests divisible by 3 sleep, so answers come back out of order.
    let server = RpcServer::bind(
        "127.0.0.1:0",
        config("server", SECRET),
        |_from: NodeId, p: Bytes| async move {
            let n = u32::from_be_bytes(p[..4].try_into().unwrap());
            if n % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, String>(Bytes::from((n * 2).to_be_bytes().to_vec()))
        },
    )
    .await
    .unwrap();
    let client = RpcClient::new(config("client", SECRET));
    let addr = server.local_addr();
    let calls: Vec<_> = (0..500u32)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                let r = client
                    .call(addr, Bytes::from(n.to_be_bytes().to_vec()))
                    .await;
                (n, r)
            })
        })
        .collect();
    for call in calls {
        let (n, r) = within(call).await.unwrap();
        let r = r.unwrap();
        assert_eq!(u32::from_be_bytes(r[..].try_into().unwrap()), n * 2);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_later_call_can_finish_first_on_the_same_connection() {
    // The first request waits until the test releases it, which happens only after the
    // second request's answer arrived: completion order is forced, not timed.
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = Arc::new(Mutex::new(Some(release_rx)));
    let server = RpcServer::bind(
        "127.0.0.1:0",
        config("server", SECRET),
        move |_from: NodeId, p: Bytes| {
            let gate = if &p[..] == b"slow" {
                release_rx.lock().take()
            } else {
                None
            };
            async move {
                if let Some(gate) = gate {
                    gate.await.map_err(|_| "gate dropped".to_string())?;
                }
                Ok(p)
            }
        },
    )
    .await
    .unwrap();
    let mut c = config("client", SECRET);
    c.connections_per_peer = 1;
    let client = RpcClient::new(c);
    let addr = server.local_addr();

    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.call(addr, Bytes::from_static(b"slow")).await }
    });
    let fast = within(client.call(addr, Bytes::from_static(b"fast"))).await;
    assert_eq!(fast.unwrap(), "fast");
    assert!(!slow.is_finished());
    release_tx.send(()).unwrap();
    assert_eq!(within(slow).await.unwrap().unwrap(), "slow");
}

#[tokio::test]
async fn handler_errors_reach_the_caller_as_remote() {
    let server = echo_server().await;
    let client = RpcClient::new(config("client", SECRET));
    let e = client
        .call(server.local_addr(), Bytes::from_static(b"fail"))
        .await
        .unwrap_err();
    match e {
        RpcError::Remote { peer, message } => {
            assert_eq!(peer, server.local_addr());
            assert_eq!(message, "handler says no");
        }
        e => panic!("expected Remote, got {e:?}"),
    }
}

#[tokio::test]
async fn wrong_secret_is_refused_and_good_clients_keep_working() {
    let server = echo_server().await;
    let addr = server.local_addr();
    let good = RpcClient::new(config("good", SECRET));
    assert_eq!(
        good.call(addr, Bytes::from_static(b"a")).await.unwrap(),
        "re:a"
    );

    let bad = RpcClient::new(config("intruder", "not-the-secret"));
    let e = bad.call(addr, Bytes::from_static(b"x")).await.unwrap_err();
    assert!(
        matches!(e, RpcError::AuthFailed { peer } if peer == addr),
        "{e:?}"
    );
    assert!(!e.is_transient());
    // During its backoff the bad client keeps getting the typed error, not a timeout.
    let e = bad.call(addr, Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(e, RpcError::AuthFailed { .. }), "{e:?}");

    assert_eq!(
        good.call(addr, Bytes::from_static(b"b")).await.unwrap(),
        "re:b"
    );
    let fresh = RpcClient::new(config("good-2", SECRET));
    assert_eq!(
        fresh.call(addr, Bytes::from_static(b"c")).await.unwrap(),
        "re:c"
    );
}

#[tokio::test]
async fn version_mismatch_is_reported_with_both_versions() {
    let server = echo_server().await;
    let mut c = config("future", SECRET);
    c.protocol_version = PROTOCOL_VERSION + 1;
    let client = RpcClient::new(c);
    let e = client
        .call(server.local_addr(), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    match e {
        RpcError::VersionMismatch { peer, ours, theirs } => {
            assert_eq!(peer, server.local_addr());
            assert_eq!((ours, theirs), (PROTOCOL_VERSION + 1, PROTOCOL_VERSION));
        }
        e => panic!("expected VersionMismatch, got {e:?}"),
    }
}

#[tokio::test]
async fn the_server_stops_reading_a_connection_at_its_in_flight_cap() {
    let mut sc = config("server", SECRET);
    sc.max_in_flight_per_conn = 2;
    // `hang` reports that it started, then never answers.
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let server = RpcServer::bind("127.0.0.1:0", sc, move |_from: NodeId, p: Bytes| {
        let started = started_tx.clone();
        async move {
            if &p[..] == b"hang" {
                let _ = started.send(());
                std::future::pending::<()>().await;
            }
            Ok::<_, String>(p)
        }
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let mut c = config("client", SECRET);
    c.connections_per_peer = 1;
    let client = RpcClient::new(c);
    assert_eq!(
        client.call(addr, Bytes::from_static(b"1")).await.unwrap(),
        "1"
    );
    let _hung: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call(addr, Bytes::from_static(b"hang")).await })
        })
        .collect();
    for _ in 0..2 {
        within(started_rx.recv()).await.unwrap();
    }
    // Both permits are held by handlers that never finish, so this request is never read:
    // it can only time out, whatever the machine's speed.
    let e = client
        .call_timeout(addr, Bytes::from_static(b"2"), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Timeout { .. }), "{e:?}");
    // Another connection is not affected.
    let other = RpcClient::new(config("other", SECRET));
    assert_eq!(
        other.call(addr, Bytes::from_static(b"3")).await.unwrap(),
        "3"
    );
}

/// A TCP proxy that records every byte it forwards, in both directions.
async fn recording_proxy(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (inbound, _) = listener.accept().await.unwrap();
            let outbound = TcpStream::connect(target).await.unwrap();
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            for (mut from, mut to) in [
                (
                    Box::new(ir) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                    Box::new(ow) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                ),
                (Box::new(or) as _, Box::new(iw) as _),
            ] {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match from.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                log.lock().extend_from_slice(&buf[..n]);
                                if to.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to.shutdown().await;
                });
            }
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn the_secret_never_appears_on_the_wire() {
    let server = echo_server().await;
    let (proxy, seen) = recording_proxy(server.local_addr()).await;
    let client = RpcClient::new(config("client", SECRET));
    assert_eq!(
        client
            .call(proxy, Bytes::from_static(b"hello"))
            .await
            .unwrap(),
        "re:hello"
    );
    // A client with a wrong secret makes the server refuse: that exchange is clean too.
    let bad = RpcClient::new(config("bad", "another-secret-also-never-sent"));
    assert!(bad.call(proxy, Bytes::from_static(b"x")).await.is_err());

    let wire = seen.lock().clone();
    let contains = |needle: &[u8]| wire.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(b"QRPC") && contains(b"re:hello"),
        "the proxy saw the traffic"
    );
    assert!(!contains(SECRET.as_bytes()));
    assert!(!contains(b"another-secret-also-never-sent"));
}

#[tokio::test]
async fn a_hung_handler_times_out_and_the_next_call_still_works() {
    let server = echo_server().await;
    let addr = server.local_addr();
    let mut c = config("client", SECRET);
    c.connections_per_peer = 1;
    let client = RpcClient::new(c);
    assert_eq!(
        client.call(addr, Bytes::from_static(b"1")).await.unwrap(),
        "re:1"
    );

    let timeout = Duration::from_millis(200);
    let e = within(client.call_timeout(addr, Bytes::from_static(b"hang"), timeout))
        .await
        .unwrap_err();
    match e {
        RpcError::Timeout { peer, after } => {
            assert_eq!(peer, addr);
            assert_eq!(after, timeout);
        }
        e => panic!("expected Timeout, got {e:?}"),
    }
    assert!(e.is_transient());
    // The connection was silent for the whole timeout, so it was dropped; the next call
    // dials a new one.
    assert_eq!(
        client.call(addr, Bytes::from_static(b"2")).await.unwrap(),
        "re:2"
    );
}

/// A server in its own runtime on its own thread, so the test can kill it like a process:
/// dropping the runtime drops every task and socket at once, without a goodbye.
struct ServerProcess {
    addr: SocketAddr,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerProcess {
    fn start(addr: SocketAddr) -> ServerProcess {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let server = rt.block_on(RpcServer::bind(addr, config("server", SECRET), echo()));
            addr_tx
                .send(
                    server
                        .as_ref()
                        .map(|s| s.local_addr())
                        .map_err(|e| e.to_string()),
                )
                .unwrap();
            rt.block_on(async {
                loop {
                    if kill_rx.try_recv().is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            // No graceful shutdown: dropping the runtime drops every task and socket.
            rt.shutdown_background();
            drop(server);
        });
        let addr = addr_rx.recv().unwrap().expect("server bound");
        ServerProcess {
            addr,
            kill: Some(kill_tx),
            thread: Some(thread),
        }
    }

    fn kill(mut self) {
        self.kill.take().unwrap().send(()).unwrap();
        self.thread.take().unwrap().join().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_death_fails_in_flight_calls_and_restart_recovers() {
    let server = ServerProcess::start("127.0.0.1:0".parse().unwrap());
    let addr = server.addr;
    let mut c = config("client", SECRET);
    c.backoff_base = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    let client = RpcClient::new(c);
    assert_eq!(
        client.call(addr, Bytes::from_static(b"up")).await.unwrap(),
        "re:up"
    );

    // Calls that will never be answered, with a timeout far beyond the failure bound.
    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call_timeout(addr, Bytes::from_static(b"hang"), Duration::from_secs(3600))
                    .await
            })
        })
        .collect();
    // Give the requests time to be written (not an assertion: if they were not sent yet
    // they fail at dial time with Unreachable, which the check below also accepts).
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::task::spawn_blocking(move || server.kill())
        .await
        .unwrap();

    for call in in_flight {
        let e = within(call).await.unwrap().unwrap_err();
        assert!(
            matches!(e, RpcError::Closed { .. } | RpcError::Unreachable { .. }),
            "{e:?}"
        );
        assert_eq!(e.peer(), addr);
    }
    // Dead peer: fails fast and typed (connection refused, or the backoff's copy of it).
    let e = within(client.call(addr, Bytes::from_static(b"x")))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RpcError::Unreachable { peer, .. } if peer == addr),
        "{e:?}"
    );

    let restarted = ServerProcess::start(addr);
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match client.call(addr, Bytes::from_static(b"again")).await {
            Ok(r) => {
                assert_eq!(r, "re:again");
                break;
            }
            Err(e) => {
                assert!(
                    matches!(e, RpcError::Unreachable { .. } | RpcError::Closed { .. }),
                    "{e:?}"
                );
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never recovered: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    restarted.kill();
}

/// Sends a frame header announcing `len` bytes, and nothing else.
async fn send_huge_header(stream: &mut (impl AsyncWriteExt + Unpin), len: u32) {
    let mut b = BytesMut::new();
    b.put_u32(len);
    b.put_u8(FrameKind::Response as u8);
    b.put_u64(1);
    stream.write_all(&b).await.unwrap();
}

#[tokio::test]
async fn server_drops_a_peer_that_sends_an_oversized_frame() {
    let server = echo_server().await;
    let addr = server.local_addr();
    // An authenticated raw peer (it knows the secret) that then misbehaves.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut reader = FrameReader::new(rd, 1024);
    super::handshake::client(&mut reader, &mut wr, &config("raw", SECRET), addr)
        .await
        .unwrap();
    send_huge_header(&mut wr, u32::MAX).await;
    // The server hangs up without answering.
    let r = within(reader.next()).await;
    assert!(r.is_err(), "expected the server to close, got {r:?}");

    let client = RpcClient::new(config("client", SECRET));
    assert_eq!(
        client.call(addr, Bytes::from_static(b"ok")).await.unwrap(),
        "re:ok"
    );
}

#[tokio::test]
async fn client_drops_a_server_that_sends_an_oversized_frame() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        let (rd, mut wr) = stream.into_split();
        let mut reader = FrameReader::new(rd, 1024);
        super::handshake::server(&mut reader, &mut wr, &config("evil", SECRET), peer)
            .await
            .unwrap();
        let _request = reader.next().await.unwrap();
        send_huge_header(&mut wr, u32::MAX - 1).await;
        // Keep the socket open: the client must act on the header alone.
        std::future::pending::<()>().await;
    });
    let mut c = config("client", SECRET);
    c.max_frame_bytes = 1 << 20;
    let client = RpcClient::new(c);
    let e = within(client.call(addr, Bytes::from_static(b"q")))
        .await
        .unwrap_err();
    match e {
        RpcError::FrameTooLarge { peer, len, max } => {
            assert_eq!(peer, addr);
            assert_eq!((len, max), ((u32::MAX - 1) as usize, 1 << 20));
        }
        e => panic!("expected FrameTooLarge, got {e:?}"),
    }
}

#[tokio::test]
async fn oversized_frame_during_the_handshake_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        send_huge_header(&mut stream, 1 << 30).await;
        std::future::pending::<()>().await;
    });
    let client = RpcClient::new(config("client", SECRET));
    let e = within(client.call(addr, Bytes::from_static(b"q")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RpcError::FrameTooLarge {
                max: HANDSHAKE_MAX_FRAME_BYTES,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_payload_over_the_limit_is_refused_locally() {
    let mut c = config("client", SECRET);
    c.max_frame_bytes = 1024;
    let client = RpcClient::new(c);
    // Nothing listens there: the error must come before any network use.
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let e = client
        .call(addr, Bytes::from(vec![0u8; 2000]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RpcError::FrameTooLarge { max: 1024, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_running_calls_finish() {
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let server = RpcServer::bind(
        "127.0.0.1:0",
        config("server", SECRET),
        move |_from: NodeId, p: Bytes| {
            let started = started_tx.lock().take();
            async move {
                if let Some(s) = started {
                    let _ = s.send(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, String>(p)
            }
        },
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let client = RpcClient::new(config("client", SECRET));
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call(addr, Bytes::from_static(b"last")).await }
    });
    within(started_rx).await.unwrap();
    within(server.shutdown()).await;
    assert_eq!(within(call).await.unwrap().unwrap(), "last");
    // Nothing listens any more.
    assert!(client.call(addr, Bytes::from_static(b"x")).await.is_err());
}

/// Node TLS material issued by `ca`, with mutual TLS between nodes.
fn cluster_tls(ca: &crate::tls::test_pki::TestCa, node: &str) -> Arc<crate::tls::TlsMaterial> {
    // The certificate names something else than 127.0.0.1: nodes check the chain, not
    // the name (see crate::tls).
    let files = ca.issue(node, &[&format!("{node}.example")]);
    let material =
        crate::tls::TlsMaterial::load(files, crate::tls::ClientCertificates::Required, true)
            .expect("test certificates load");
    Arc::new(material)
}

#[tokio::test]
async fn mutual_tls_between_nodes_admits_only_certificates_of_the_cluster_ca() {
    let dir = std::env::temp_dir().join(format!("quorra-rpc-tls-{}", std::process::id()));
    let ca = crate::tls::test_pki::TestCa::new(&dir, "cluster");
    let stranger_ca = crate::tls::test_pki::TestCa::new(&dir, "stranger");
    let mut server_config = config("server", SECRET);
    server_config.tls = Some(cluster_tls(&ca, "server"));
    let server = RpcServer::bind("127.0.0.1:0", server_config, echo())
        .await
        .unwrap();
    let addr = server.local_addr();

    let mut member = config("member", SECRET);
    member.tls = Some(cluster_tls(&ca, "member"));
    let reply = within(RpcClient::new(member).call(addr, Bytes::from_static(b"hi")))
        .await
        .unwrap();
    assert_eq!(&reply[..], b"re:hi");

    // The secret alone does not get in: no certificate, or one of another CA.
    let plain =
        within(RpcClient::new(config("plain", SECRET)).call(addr, Bytes::from_static(b"hi"))).await;
    assert!(plain.is_err(), "a plain connection was served");
    let mut stranger = config("stranger", SECRET);
    stranger.tls = Some(cluster_tls(&stranger_ca, "stranger"));
    let refused = within(RpcClient::new(stranger).call(addr, Bytes::from_static(b"hi"))).await;
    assert!(refused.is_err(), "a certificate of another CA was accepted");
    server.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
