//! The real `quorra` binary as a user runs it: flags, stdout, RSS under maxmemory,
//! SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorra_server::resp_client::UNCOUNTED_BUFFER_BYTES;
use redis::Value;

use crate::common::*;

/// A `quorra server` process on free ports; killed on drop if still running.
struct Process {
    child: Child,
    resp: String,
    http: String,
}

impl Process {
    fn start(extra: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quorra"))
            .args(["server", "--port", "0", "--http-port", "0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("quorra starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Process::from_listening_line(child, &line)
    }

    /// The process that printed `line`: "quorra listening: RESP <addr> HTTP http://<addr>".
    fn from_listening_line(child: Child, line: &str) -> Process {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(resp), Some(http)) = (words.get(3), words.get(5)) else {
            panic!("no addresses in {line:?}");
        };
        Process {
            child,
            resp: (*resp).to_owned(),
            http: http
                .split_once("://")
                .map_or(*http, |(_, addr)| addr)
                .to_owned(),
        }
    }

    fn rss_bytes(&self) -> u64 {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.child.id())).unwrap();
        statm
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 4096
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "quorra did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Documented bound (docs/operations.md): under a write flood, RSS stays below 1.5 ×
/// maxmemory plus `RSS_BASELINE` for the runtime, connection buffers and allocator.
const RSS_BASELINE: u64 = 16 * 1024 * 1024;

#[tokio::test]
async fn write_flood_keeps_memory_bounded_and_sigterm_stops_cleanly() {
    const MAXMEMORY: u64 = 32 * 1024 * 1024;
    let mut process = Process::start(&["--maxmemory", "32mb"]);
    let mut c = connect_url(&format!("redis://{}/", process.resp)).await;
    let value = "v".repeat(100);
    let mut written = 0u64;
    let mut batch = 0u64;
    while written < 3 * MAXMEMORY {
        let mut pipe = redis::pipe();
        for i in 0..2_000 {
            pipe.cmd("SET")
                .arg(format!("key:{batch:06}:{i:04}"))
                .arg(&value)
                .ignore();
            written += 116;
        }
        let () = pipe.query_async(&mut c).await.unwrap();
        batch += 1;
    }
    let Value::BulkString(info) = ok(&mut c, &["INFO", "memory"]).await else {
        panic!()
    };
    let info = String::from_utf8(info).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .parse()
        .unwrap();
    let rss = process.rss_bytes();
    eprintln!("maxmemory {MAXMEMORY}, used_memory {used}, rss {rss}");
    assert!(used <= MAXMEMORY);
    assert!(
        rss <= MAXMEMORY * 3 / 2 + RSS_BASELINE,
        "rss {rss} over the documented bound"
    );
    drop(c);
    assert!(process.terminate().success(), "SIGTERM is a clean shutdown");
}

#[test]
fn bad_flags_and_config_files_are_clear_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_quorra"))
        .args(["server", "--maxmemory", "lots"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("lots"));

    let dir = std::env::temp_dir().join(format!("quorra-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("quorra.toml");
    std::fs::write(&file, "prot = 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_quorra"))
        .args(["server", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown field `prot`"));
    // A namespace naming an origin that does not exist, and one writing behind without a
    // store statement: refused at start, the field named.
    let namespace = |extra: &str| {
        format!(
            "[origins.main]\nurl = \"sqlite:///tmp/x.db\"\n\n[[namespaces]]\nname = \"users\"\n\
             prefix = \"user:\"\nload = \"SELECT v FROM t WHERE k = $1\"\n{extra}"
        )
    };
    for (text, field) in [
        (
            namespace("origin = \"nosuch\"\n"),
            "namespaces.users.origin: no [origins.nosuch]",
        ),
        (
            namespace("origin = \"main\"\nwrite = \"behind\"\n"),
            "namespaces.users.store: write = \"behind\" needs a store statement",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_quorra"))
            .args(["server", "--config", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(field), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn settings_come_from_file_env_and_flags_in_that_order() {
    let dir = std::env::temp_dir().join(format!("quorra-layers-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("quorra.toml");
    std::fs::write(
        &file,
        "maxmemory = \"1mb\"\nmaxmemory-policy = \"noeviction\"\ntimeout = 7\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quorra"))
        .args([
            "server",
            "--port",
            "0",
            "--http-port",
            "0",
            "--config",
            file.to_str().unwrap(),
            "--timeout",
            "9",
        ])
        .env("QUORRA_MAXMEMORY", "2mb")
        .env("QUORRA_TIMEOUT", "8")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let resp = line.split_whitespace().nth(3).unwrap().to_owned();
    let mut c = connect_url(&format!("redis://{resp}/")).await;
    let config = ok(
        &mut c,
        &["CONFIG", "GET", "maxmemory", "maxmemory-policy", "timeout"],
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).unwrap();
    // The flag beats the environment, the environment beats the file, the file beats
    // the default.
    assert_eq!(
        config,
        array(vec![
            bulk("maxmemory"),
            bulk("2097152"),
            bulk("maxmemory-policy"),
            bulk("noeviction"),
            bulk("timeout"),
            bulk("9"),
        ])
    );
}

#[test]
fn a_low_open_files_limit_lowers_maxclients_and_the_clients_past_it_get_the_error() {
    // Started by a shell with soft and hard limits of 1024 open files.
    let mut child = Command::new("bash")
        .args([
            "-c",
            &format!(
                "ulimit -n 1024 && exec {} server --port 0 --http-port 0",
                env!("CARGO_BIN_EXE_quorra")
            ),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let process = Process::from_listening_line(child, &line);
    let ask = |stream: &mut std::net::TcpStream, request: &[u8]| -> String {
        use std::io::{Read, Write};
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut reply = vec![0u8; 4096];
        let n = stream.read(&mut reply).unwrap();
        String::from_utf8_lossy(&reply[..n]).into_owned()
    };
    let mut first = std::net::TcpStream::connect(&process.resp).unwrap();
    let info = ask(&mut first, b"INFO clients\r\n");
    // 1024 minus 256 admin HTTP connections minus 32 reserved.
    assert!(info.contains("maxclients:736\r\n"), "{info}");
    // 1,100 clients in all: the first 736 are served, every one after is refused with
    // Redis's text (client 1,025 too: descriptors remain to answer it).
    let mut held = vec![first];
    let mut refused = 0;
    for client in 2..=1_100 {
        let mut stream = std::net::TcpStream::connect(&process.resp).unwrap();
        let reply = if client <= 736 {
            ask(&mut stream, b"PING\r\n")
        } else {
            // A refused client is told before it sends anything.
            ask(&mut stream, b"")
        };
        if client <= 736 {
            assert_eq!(reply, "+PONG\r\n", "client {client}");
            held.push(stream);
        } else {
            assert_eq!(
                reply, "-ERR max number of clients reached\r\n",
                "client {client}"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 1_100 - 736);
}

/// Raises this test process's open-files limit to `wanted` if it can (as root it may
/// raise the hard limit too); returns the limit in force.
fn raise_own_open_files_limit(wanted: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limits = getrlimit(Resource::Nofile);
    if limits.current.is_some_and(|current| current >= wanted) {
        return wanted;
    }
    let raised = Rlimit {
        current: Some(wanted),
        maximum: Some(limits.maximum.map_or(wanted, |hard| hard.max(wanted))),
    };
    if setrlimit(Resource::Nofile, raised).is_err() {
        let capped = Rlimit {
            current: limits.maximum,
            maximum: limits.maximum,
        };
        let _ = setrlimit(Resource::Nofile, capped);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Sends PING on `stream` (blocking) and returns how long the answer took.
fn timed_ping(stream: &mut std::net::TcpStream) -> Duration {
    use std::io::{Read, Write};
    let started = Instant::now();
    stream.write_all(b"PING\r\n").unwrap();
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).expect("PING answered");
    assert_eq!(&reply, b"+PONG\r\n");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_half_open_http_connections_leave_the_resp_port_answering() {
    const CONNECTIONS: usize = 20_000;
    let limit = raise_own_open_files_limit(CONNECTIONS as u64 + 1_000);
    let attempts = CONNECTIONS.min(limit.saturating_sub(1_000) as usize);
    let process = Process::start(&[]);
    let http: std::net::SocketAddr = process.http.parse().unwrap();
    // The RESP client pings from a thread of its own, so what it measures is the node,
    // not this test's runtime busy with twenty thousand connections.
    let mut resp = std::net::TcpStream::connect(&process.resp).unwrap();
    resp.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pinger = {
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let mut pings = Vec::new();
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                pings.push(timed_ping(&mut resp));
                std::thread::sleep(Duration::from_millis(20));
            }
            for _ in 0..20 {
                pings.push(timed_ping(&mut resp));
            }
            pings
        })
    };
    // Every connection sends the start of a request and never the rest.
    let opened: Vec<_> = (0..attempts)
        .map(|_| {
            tokio::spawn(async move {
                let connect = tokio::net::TcpStream::connect(http);
                let mut stream = tokio::time::timeout(Duration::from_secs(3), connect)
                    .await
                    .ok()?
                    .ok()?;
                use tokio::io::AsyncWriteExt;
                stream
                    .write_all(b"GET /v1/stats HTTP/1.1\r\nHost:")
                    .await
                    .ok()?;
                Some(stream)
            })
        })
        .collect();
    let mut held = Vec::new();
    for attempt in opened {
        if let Some(stream) = attempt.await.unwrap() {
            held.push(stream);
        }
    }
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut pings = tokio::task::spawn_blocking(move || pinger.join().unwrap())
        .await
        .unwrap();
    pings.sort();
    eprintln!(
        "half-open HTTP flood: {} of {attempts} connections established and held; RESP PING median {:?}, max {:?} over {} pings",
        held.len(),
        pings[pings.len() / 2],
        pings[pings.len() - 1],
        pings.len()
    );
    // A fresh RESP client is accepted and served while they are held.
    let mut fresh = std::net::TcpStream::connect(&process.resp).unwrap();
    fresh
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    timed_ping(&mut fresh);
    drop(held);
}

/// Sends one SET of a `size`-byte value in 64 KB pieces, pausing between them so that
/// many such clients are mid-value at once. Ok(reply), or Err if the node closed the
/// connection first.
async fn slow_large_set(resp: String, key: String, size: usize) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&resp)
        .await
        .map_err(|e| e.to_string())?;
    let header = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${size}\r\n", key.len());
    stream
        .write_all(header.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let piece = vec![b'v'; 64 * 1024];
    let mut sent = 0;
    while sent < size {
        let n = piece.len().min(size - sent);
        stream
            .write_all(&piece[..n])
            .await
            .map_err(|e| e.to_string())?;
        sent += n;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stream.write_all(b"\r\n").await.map_err(|e| e.to_string())?;
    let mut reply = vec![0u8; 256];
    let n = stream.read(&mut reply).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("closed".into());
    }
    Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
}

/// `used_memory`-style field of INFO, over a fresh connection.
async fn info_field(resp: &str, section: &str, field: &str) -> u64 {
    let mut c = connect_url(&format!("redis://{resp}/")).await;
    let Value::BulkString(info) = ok(&mut c, &["INFO", section]).await else {
        panic!()
    };
    String::from_utf8(info)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_sending_large_values_keep_rss_within_the_documented_bound() {
    const MAXMEMORY: u64 = 50 << 20;
    const VALUE: usize = 3 << 20;
    let process = Process::start(&["--maxmemory", "50mb"]);
    let budget = info_field(&process.resp, "memory", "maxmemory_clients").await;
    assert_eq!(budget, MAXMEMORY / 4, "the default is 25% of maxmemory");
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pid = process.child.id();
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let statm =
                    std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
                let rss = statm
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 4096;
                peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut outcomes = (0, 0);
    for round in 0..3 {
        let clients: Vec<_> = (0..50)
            .map(|i| {
                tokio::spawn(slow_large_set(
                    process.resp.clone(),
                    format!("big:{round}:{i}"),
                    VALUE,
                ))
            })
            .collect();
        for client in clients {
            match client.await.unwrap() {
                Ok(reply) => {
                    assert_eq!(reply, "+OK\r\n");
                    outcomes.0 += 1;
                }
                Err(_) => outcomes.1 += 1,
            }
        }
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = process.rss_bytes();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let used = info_field(&process.resp, "memory", "used_memory").await;
    let evicted = info_field(&process.resp, "stats", "evicted_clients").await;
    let held = info_field(&process.resp, "memory", "mem_clients_normal").await;
    eprintln!(
        "50 clients x 3 MB x 3 rounds under maxmemory 50mb: {} stored, {} disconnected \
         (evicted_clients {evicted}); peak RSS {} MB, after {} MB; used_memory {} MB; \
         client buffers after {held} bytes",
        outcomes.0,
        outcomes.1,
        peak >> 20,
        after >> 20,
        used >> 20
    );
    assert!(used <= MAXMEMORY);
    assert!(outcomes.0 > 0, "some of the writes must get through");
    // The documented bound (docs/operations.md): the store's bound plus the clients'.
    assert!(
        peak <= MAXMEMORY * 3 / 2 + budget + 50 * UNCOUNTED_BUFFER_BYTES + RSS_BASELINE,
        "peak RSS {peak} over the documented bound"
    );
    // The buffers that grew for the values were given back.
    assert!(held < 1 << 20, "client buffers still hold {held} bytes");
}

#[tokio::test]
async fn a_stalled_subscriber_costs_at_most_its_output_limit_in_rss() {
    const PUBLISHED: usize = 256 << 20;
    const MESSAGE: usize = 64 << 10;
    let process = Process::start(&["--client-output-buffer-limit-pubsub", "8mb"]);
    let mut publisher = connect_url(&format!("redis://{}/", process.resp)).await;
    // Warm the node up, so that the baseline includes a connection's buffers.
    let message = "m".repeat(MESSAGE);
    ok(&mut publisher, &["PUBLISH", "nobody", &message]).await;
    let before = process.rss_bytes();
    let mut stalled = tokio::net::TcpStream::connect(&process.resp).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled, b"SUBSCRIBE flood\r\n")
        .await
        .unwrap();
    let mut peak = 0;
    for batch in 0..PUBLISHED / MESSAGE / 64 {
        let mut pipe = redis::pipe();
        for _ in 0..64 {
            pipe.cmd("PUBLISH").arg("flood").arg(&message).ignore();
        }
        let () = pipe.query_async(&mut publisher).await.unwrap();
        if batch % 8 == 0 {
            peak = peak.max(process.rss_bytes());
        }
    }
    peak = peak.max(process.rss_bytes());
    let info = match ok(&mut publisher, &["INFO", "stats"]).await {
        Value::BulkString(info) => String::from_utf8(info).unwrap(),
        other => panic!("{other:?}"),
    };
    eprintln!(
        "published {PUBLISHED} bytes to a stalled subscriber: rss {before} before, peak {peak} ({} MiB more)",
        peak.saturating_sub(before) >> 20
    );
    assert!(
        info.contains("quorra_pubsub_disconnected_subscribers:1"),
        "{info}"
    );
    // The limit, plus what the socket and the allocator hold: far below what was sent.
    assert!(
        peak < before + (48 << 20),
        "rss grew from {before} to {peak} for a subscriber limited to 8 MiB"
    );
    drop(stalled);
}
