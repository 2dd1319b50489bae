//! End-to-end runs of the load generator, as a library call, against an in-process fake
//! RESP server (tokio, port 0): counts and hit ratios add up, targets are spread
//! round-robin, AUTH works, and open-loop latency counts a server stall against every
//! request scheduled during it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quorra_bench::{BenchArgs, BenchError, Report, workload::OpKind};
use quorra_resp::{RequestParser, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake server misbehaves.
#[derive(Debug, Clone, Default)]
struct Behaviour {
    /// Pause this long before answering the command with this number (counted from 1
    /// over all connections), once.
    stall: Option<(u64, Duration)>,
    /// Require AUTH with this password.
    password: Option<String>,
    /// Answer every SET with an error.
    reject_sets: bool,
}

/// A tiny Redis: GET, MGET, SET [EX n], DEL, AUTH, PING over a shared map.
struct FakeServer {
    addr: SocketAddr,
    commands: Arc<AtomicU64>,
    data: Arc<Mutex<HashMap<Bytes, Bytes>>>,
}

impl FakeServer {
    async fn start(behaviour: Behaviour) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let commands = Arc::new(AtomicU64::new(0));
        let data = Arc::new(Mutex::new(HashMap::new()));
        let (c, d) = (Arc::clone(&commands), Arc::clone(&data));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(
                    stream,
                    behaviour.clone(),
                    Arc::clone(&c),
                    Arc::clone(&d),
                ));
            }
        });
        FakeServer {
            addr,
            commands,
            data,
        }
    }

    fn target(&self) -> String {
        self.addr.to_string()
    }

    fn commands(&self) -> u64 {
        self.commands.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    commands: Arc<AtomicU64>,
    data: Arc<Mutex<HashMap<Bytes, Bytes>>>,
) {
    let mut parser = RequestParser::default();
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    let mut authenticated = behaviour.password.is_none();
    loop {
        while let Ok(Some(request)) = parser.next_request(&mut input) {
            let n = commands.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some((at, pause)) = behaviour.stall
                && n == at
            {
                // Answer what is already computed, then stop reading and answering.
                if stream.write_all(&output).await.is_err() {
                    return;
                }
                output.clear();
                tokio::time::sleep(pause).await;
            }
            let name = request[0].to_ascii_uppercase();
            if name == b"AUTH" {
                if behaviour.password.as_deref().map(str::as_bytes) == Some(&request[1][..]) {
                    authenticated = true;
                    encode::simple(&mut output, "OK");
                } else {
                    encode::error(&mut output, "WRONGPASS invalid password");
                }
                continue;
            }
            if !authenticated {
                encode::error(&mut output, "NOAUTH Authentication required.");
                continue;
            }
            let mut map = data.lock().unwrap();
            match &name[..] {
                b"PING" => encode::simple(&mut output, "PONG"),
                b"GET" => match map.get(&request[1]) {
                    Some(value) => encode::bulk(&mut output, value),
                    None => encode::null(&mut output, encode::Protocol::Resp2),
                },
                b"MGET" => {
                    encode::array_header(&mut output, request.len() - 1);
                    for key in &request[1..] {
                        match map.get(key) {
                            Some(value) => encode::bulk(&mut output, value),
                            None => encode::null(&mut output, encode::Protocol::Resp2),
                        }
                    }
                }
                b"SET" if behaviour.reject_sets => {
                    encode::error(&mut output, "OOM command not allowed")
                }
                b"SET" => {
                    assert!(request.len() == 3 || (request.len() == 5 && request[3] == "EX"));
                    map.insert(request[1].clone(), request[2].clone());
                    encode::simple(&mut output, "OK");
                }
                b"DEL" => {
                    let removed = request[1..]
                        .iter()
                        .filter(|key| map.remove(*key).is_some())
                        .count();
                    encode::integer(&mut output, removed as i64);
                }
                _ => encode::error(&mut output, "ERR unknown command"),
            }
        }
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
        match stream.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn args(server: &FakeServer, flags: &[&str]) -> BenchArgs {
    let mut all = vec!["--target".to_owned(), server.target()];
    all.extend(flags.iter().map(|f| (*f).to_owned()));
    BenchArgs::try_parse_from(all).unwrap()
}

/// Latency samples at or above `ms` milliseconds, all kinds.
fn slow(report: &Report, ms: u64) -> u64 {
    OpKind::ALL
        .iter()
        .map(|&kind| {
            let histogram = &report.stats.op(kind).latency;
            histogram.count_between(ms * 1000, u64::MAX / 4)
        })
        .sum()
}

#[tokio::test]
async fn counts_and_hit_ratio_add_up() {
    let server = FakeServer::start(Behaviour::default()).await;
    let report = quorra_bench::run(&args(
        &server,
        &[
            "--preload",
            "--keys",
            "200",
            "--ratio",
            "3:1:0",
            "--requests",
            "3000",
            "-c",
            "4",
            "-P",
            "8",
            "--value-size",
            "10-50",
            "--ttl",
            "60",
        ],
    ))
    .await
    .unwrap();
    let get = report.stats.op(OpKind::Get);
    let set = report.stats.op(OpKind::Set);
    assert_eq!(report.ops, 3000);
    assert_eq!(get.count + set.count, 3000);
    assert_eq!(report.errors, 0);
    // Every key was preloaded and nothing deletes: every GET hits.
    assert_eq!(report.hits, get.count);
    assert_eq!(report.misses, 0);
    assert_eq!(report.hit_ratio, Some(1.0));
    // About a quarter are SETs (3:1), far from 0 or 1/2.
    assert!((500..1000).contains(&set.count), "{} sets", set.count);
    // The server saw the preload (one SET per key) and exactly the measured requests.
    assert_eq!(server.commands(), 200 + 3000);
    let data = server.data.lock().unwrap();
    assert_eq!(data.len(), 200);
    assert!(data.values().all(|v| (10..=50).contains(&v.len())));
    drop(data);
    // The figures the report prints agree with the counters.
    let all = report.per_op.last().unwrap();
    assert_eq!((all.op, all.count), ("all", 3000));
    assert!(report.ops_per_sec > 0.0);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["ops"], 3000);
    assert_eq!(json["hit_ratio"], 1.0);
}

#[tokio::test]
async fn mget_counts_every_element_and_misses() {
    let server = FakeServer::start(Behaviour::default()).await;
    let report = quorra_bench::run(&args(
        &server,
        &[
            "--keys",
            "1000",
            "--distribution",
            "zipf:0.99",
            "--ratio",
            "2:1:1",
            "--mget",
            "5",
            "--requests",
            "2000",
            "-c",
            "2",
            "-P",
            "4",
        ],
    ))
    .await
    .unwrap();
    let mget = report.stats.op(OpKind::Mget);
    let set = report.stats.op(OpKind::Set);
    let del = report.stats.op(OpKind::Del);
    assert_eq!(report.stats.op(OpKind::Get).count, 0);
    assert_eq!(mget.count + set.count + del.count, 2000);
    assert_eq!(mget.hits + mget.misses, 5 * mget.count);
    let ratio = report.hit_ratio.unwrap();
    assert!(ratio > 0.0 && ratio < 1.0, "hit ratio {ratio}");
    assert_eq!(server.commands(), 2000);
}

#[tokio::test]
async fn error_replies_are_counted_not_timed() {
    let server = FakeServer::start(Behaviour {
        reject_sets: true,
        ..Behaviour::default()
    })
    .await;
    let report = quorra_bench::run(&args(
        &server,
        &["--ratio", "1:1:0", "--requests", "1000", "-c", "2"],
    ))
    .await
    .unwrap();
    let set = report.stats.op(OpKind::Set);
    assert!(set.count > 0);
    assert_eq!(set.errors, set.count);
    assert_eq!(report.errors, set.count);
    assert!(set.latency.is_empty());
    assert_eq!(report.stats.op(OpKind::Get).errors, 0);
    assert_eq!(report.hit_ratio, Some(0.0));
}

#[tokio::test]
async fn connections_are_spread_over_targets() {
    let a = FakeServer::start(Behaviour::default()).await;
    let b = FakeServer::start(Behaviour::default()).await;
    let flags = [
        "--target",
        &a.target(),
        "--target",
        &b.target(),
        "-c",
        "4",
        "--rate",
        "2000",
        "--requests",
        "400",
    ];
    let report = quorra_bench::run(&BenchArgs::try_parse_from(flags).unwrap())
        .await
        .unwrap();
    assert_eq!(report.ops, 400);
    // Open loop: connections 0 and 2 (target a) and 1 and 3 (target b) send exactly
    // every other global request number.
    assert_eq!(a.commands(), 200);
    assert_eq!(b.commands(), 200);
}

#[tokio::test]
async fn auth_is_sent_and_a_wrong_password_is_a_clear_error() {
    let server = FakeServer::start(Behaviour {
        password: Some("sesame".into()),
        ..Behaviour::default()
    })
    .await;
    let ok = quorra_bench::run(&args(
        &server,
        &["--password", "sesame", "--requests", "100", "-c", "2"],
    ))
    .await
    .unwrap();
    assert_eq!((ok.ops, ok.errors), (100, 0));
    let wrong =
        quorra_bench::run(&args(&server, &["--password", "nope", "--requests", "10"])).await;
    match wrong {
        Err(BenchError::Auth { message, .. }) => assert!(message.contains("WRONGPASS")),
        other => panic!("expected an AUTH error, got {other:?}"),
    }
    let refused =
        quorra_bench::run(&BenchArgs::try_parse_from(["--target", "127.0.0.1:1"]).unwrap()).await;
    assert!(
        matches!(refused, Err(BenchError::Connect { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn warmup_is_excluded() {
    let server = FakeServer::start(Behaviour::default()).await;
    let report = quorra_bench::run(&args(
        &server,
        &["--duration", "300ms", "--warmup", "200ms", "-c", "2"],
    ))
    .await
    .unwrap();
    assert!(report.ops > 0);
    // The server also answered the warm-up requests, which the report counts apart.
    assert!(report.warmup_ops > 0);
    assert_eq!(server.commands(), report.ops + report.warmup_ops);
    assert!(report.elapsed_secs >= 0.29, "{}", report.elapsed_secs);
}

/// The server stops for 300 ms once. At 200 requests/s, about 60 requests are scheduled
/// during the stall; measured from their intended send times, they wait between 0 and
/// 300 ms. A closed-loop run against the same stall has one request in flight and
/// charges the stall to that one request only: the omission open loop avoids.
#[tokio::test]
async fn open_loop_charges_a_stall_to_every_request_scheduled_during_it() {
    let stall = Duration::from_millis(300);
    let open_server = FakeServer::start(Behaviour {
        stall: Some((100, stall)),
        ..Behaviour::default()
    })
    .await;
    let open = quorra_bench::run(&args(
        &open_server,
        &[
            "--rate",
            "200",
            "--duration",
            "1500ms",
            "-c",
            "1",
            "--ratio",
            "1:0:0",
        ],
    ))
    .await
    .unwrap();
    assert!(open_server.commands() >= 100, "the stall was reached");
    let latency = open.per_op.last().unwrap().latency.unwrap();
    assert!(latency.max_us >= 250_000, "max {} us", latency.max_us);
    // 40 requests were scheduled in the first 200 ms of the stall: each waited >= 100 ms.
    assert!(slow(&open, 100) >= 30, "{} slow requests", slow(&open, 100));
    // 300 requests in all: the top 1% (3) all waited most of the stall.
    assert!(latency.p99_us >= 200_000, "p99 {} us", latency.p99_us);
    // With one request in flight allowed, the requests behind the stall went out late,
    // and the report says so.
    let lag = open.send_lag.expect("open loop reports its send lag");
    assert_eq!(lag.requests, open.ops);
    assert!(lag.max_us >= 200_000, "send lag max {} us", lag.max_us);

    let closed_server = FakeServer::start(Behaviour {
        stall: Some((100, stall)),
        ..Behaviour::default()
    })
    .await;
    let closed = quorra_bench::run(&args(
        &closed_server,
        &["--requests", "300", "-c", "1", "--ratio", "1:0:0"],
    ))
    .await
    .unwrap();
    let latency = closed.per_op.last().unwrap().latency.unwrap();
    assert!(latency.max_us >= 250_000, "the stalled request itself");
    assert!(
        slow(&closed, 250) <= 2,
        "{} slow requests",
        slow(&closed, 250)
    );
}
