//! The dashboard in a real browser: a three-node cluster started here, and
//! `tests/browser/dashboard.mjs` driving headless Chromium (playwright-core) against one
//! node's HTTP port. The script checks what each page shows and fails on any error in
//! the browser console; this side seeds the keys, reads back with `redis-cli` what the
//! page wrote, crashes a node while the Nodes page is open, holds the page to the
//! failure detector's time, and checks that the page's Forget button removed the node
//! from the ring. The script's screenshots go to `docs/dashboard/`, which
//! `docs/dashboard.md` shows.
//!
//! `scripts/test` installs Debian's `chromium` and the script's npm packages
//! (`tests/browser/package-lock.json`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use quorra_cluster::membership::MemberState;
use quorra_server::RunningServer;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::cluster::{SECRET, cluster_addr, cluster_config, ring_ids, serving_ids, until};
use crate::common::*;
use crate::http::http;
use crate::namespaces::{items_catalog, items_database, start_cluster_with_catalog};

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard");
    std::fs::create_dir_all(&dir).expect("docs/dashboard can be created");
    dir
}

/// `dashboard.mjs` running: its stdout read as one JSON event per line, its stdin open
/// for the go-ahead it waits for. Killed when dropped, so a failed test leaves no
/// browser behind.
struct Script {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Script {
    fn start(args: &[&str]) -> Script {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing; ./scripts/test installs Debian's chromium"
        );
        assert!(
            browser_dir().join("node_modules/playwright-core").exists(),
            "playwright-core is missing; ./scripts/test runs npm ci in tests/browser"
        );
        let mut child = Command::new("node")
            .arg(browser_dir().join("dashboard.mjs"))
            .args(args)
            .env("CHROMIUM", CHROMIUM)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("node cannot run ({error}); ./scripts/test installs it")
            });
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (sender, events) = mpsc::unbounded_channel();
        // Blocking reads on threads of their own: the test's runtime keeps serving the
        // cluster the browser talks to.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event = serde_json::from_str(&line).unwrap_or_else(|_| {
                    panic!("dashboard.mjs printed a line that is not JSON: {line}")
                });
                if sender.send(event).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        Script {
            child,
            stdin,
            events,
            stderr: Some(stderr),
        }
    }

    /// The next event, which must be `name`; on the script's failure, its error.
    async fn expect(&mut self, name: &str) -> Value {
        let next = tokio::time::timeout(Duration::from_secs(180), self.events.recv()).await;
        match next {
            Ok(Some(event)) if event["event"] == name => event,
            Ok(Some(event)) => panic!("dashboard.mjs: expected {name}, got {event}"),
            Ok(None) => panic!("dashboard.mjs stopped before {name}:\n{}", self.failure()),
            Err(_) => panic!("dashboard.mjs: no {name} within 180 s"),
        }
    }

    /// Tells the waiting script to go on.
    fn go_on(&mut self) {
        self.stdin.write_all(b"go\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The script's exit status and standard error, once it has ended.
    fn failure(&mut self) -> String {
        let status = self.child.wait().unwrap();
        let stderr = self.stderr.take().map(|thread| thread.join().unwrap());
        format!("{status}\n{}", stderr.unwrap_or_default())
    }

    /// Waits for the script to end, which must be a success.
    async fn finish(mut self) {
        self.expect("done").await;
        let status = tokio::task::block_in_place(|| self.child.wait().unwrap());
        assert!(status.success(), "dashboard.mjs: {}", self.failure());
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url(node: &RunningServer) -> String {
    format!("http://{}/", node.http_addr)
}

/// `redis-cli -p PORT GET key`: what a client that is not the dashboard reads.
fn redis_cli_get(node: &RunningServer, key: &str) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &node.resp_addr.port().to_string(), "GET", key])
        .output()
        .unwrap_or_else(|error| {
            panic!("redis-cli cannot run ({error}); ./scripts/test installs it")
        });
    assert!(output.status.success(), "redis-cli failed: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

/// The dashboard's files are public and carry the security headers; the API is not.
async fn check_files_and_headers(node: &RunningServer, token: Option<&str>) {
    for (path, content_type) in [
        ("/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ] {
        let (status, head) = http_head(node, path).await;
        assert_eq!(status, 200, "{path}: {head}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-type: {content_type}")),
            "{path}: {head}"
        );
        for header in [
            "content-security-policy: default-src 'self'; script-src 'self';",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
        ] {
            assert!(head.contains(header), "{path} lacks {header:?}: {head}");
        }
        assert!(!head.contains("unsafe-inline"), "{path}: {head}");
    }
    let (status, _) = http(node.http_addr, "GET", "/dashboard/nope.js", &[], b"").await;
    assert_eq!(status, 404);
    if let Some(token) = token {
        let (status, _) = http(node.http_addr, "GET", "/v1/overview", &[], b"").await;
        assert_eq!(status, 401, "the API without the token");
        let header = format!("Authorization: Bearer {token}");
        let (status, _) = http(node.http_addr, "GET", "/v1/overview", &[&header], b"").await;
        assert_eq!(status, 200, "the API with the token");
    }
}

/// A GET's status and response head (its headers, as text).
async fn http_head(node: &RunningServer, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(node.http_addr)
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let head = text.split("\r\n\r\n").next().unwrap().to_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head)
}

/// A trickle of SETs and GETs (some of them misses) until `stop`, so that the charts
/// and the screenshots have figures to show.
fn background_load(node: &RunningServer, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let address = node.resp_addr;
    tokio::spawn(async move {
        let mut con = connect_url(&format!("redis://{address}/")).await;
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("load:{}", i % 200);
            // Errors are expected once a node is crashed mid-test; the load only feeds
            // the charts.
            let _ = run(&mut con, &["SET", &key, "x"]).await;
            let _ = run(&mut con, &["GET", &key]).await;
            let _ = run(&mut con, &["GET", &format!("missing:{i}")]).await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_cluster_edits_a_key_and_sees_a_node_go_down() {
    let started = SystemTime::now();
    // A namespace read through from SQLite, so that its page has a table to show.
    let dir = fresh_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let database = items_database(&dir, 100);
    let catalog = items_catalog(&format!("sqlite://{}", database.display()), |_, _| {});
    let mut nodes = start_cluster_with_catalog(3, 3, &catalog, |_| {}).await;
    check_files_and_headers(&nodes[0], None).await;

    let mut con = connect(&nodes[0]).await;
    let mut expected = BTreeSet::new();
    let mut seed = async |key: &[u8], value: &[u8]| {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut con)
            .await
            .unwrap();
        expected.insert(
            key.iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>(),
        );
    };
    seed(b"dash:edit", b"before").await;
    seed(
        b"dash:json",
        br#"{"name":"quorra","nodes":3,"tags":["cache","redis"]}"#,
    )
    .await;
    seed(b"dash:bin:\xff\x00", b"\xfe\xed\x00\x01").await;
    seed(b"dash:large", &[b'x'; 100_000]).await;
    // More keys than a page of 20, so the scan needs its "next page" button.
    for i in 0..30 {
        seed(format!("dash:page:{i}").as_bytes(), b"v").await;
    }
    // A key pinned hot, for the hot keys' table.
    assert_eq!(
        ok(&mut con, &["QUORRA", "HOT", "dash:json", "ON"]).await,
        redis::Value::Okay
    );
    // Loads from the origin: misses on `item:` keys, each loaded at its primary.
    for i in 1..=30 {
        assert_eq!(
            ok(&mut con, &["GET", &format!("item:k{i}")]).await,
            bulk(&format!("value-{i}"))
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = background_load(&nodes[0], stop.clone());

    let shots = screenshot_dir();
    let mut script = Script::start(&["cluster", &url(&nodes[0]), shots.to_str().unwrap(), "n2"]);
    for page in ["overview", "nodes", "ring"] {
        assert_eq!(script.expect("page").await["name"], page);
    }
    // Every key of the pattern, over as many pages as it took, each once.
    let scanned = script.expect("scanned").await;
    let seen: BTreeSet<String> = scanned["keys_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hex| hex.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, expected, "the keys the page listed");
    assert!(scanned["pages"].as_u64().unwrap() >= 2, "{scanned}");
    script.expect("binary").await;

    let edited = script.expect("edited").await;
    let value = edited["value"].as_str().unwrap().to_owned();
    // Read through another node than the page's: the edit is the cluster's.
    let read = tokio::task::block_in_place(|| redis_cli_get(&nodes[1], "dash:edit"));
    assert_eq!(read, value, "redis-cli reads the value the page saved");

    script.expect("truncated").await;
    assert_eq!(script.expect("page").await["name"], "namespaces");
    script.expect("console").await;
    let read = tokio::task::block_in_place(|| redis_cli_get(&nodes[2], "dash:console"));
    assert_eq!(read, "42", "the console's SET and INCR ran on the cluster");

    // Crash n2 with the Nodes page open on n0.
    script.expect("ready-for-crash").await;
    let crashed_at = Instant::now();
    nodes.pop().unwrap().crash().await;
    script.go_on();
    until(&nodes[0], "n0 marks n2 down", |view| {
        view.members
            .iter()
            .any(|member| member.id.as_str() == "n2" && member.state == MemberState::Down)
    })
    .await;
    let detected = crashed_at.elapsed();
    let down = script.expect("down").await;
    let shown = Duration::from_millis(down["ms"].as_u64().unwrap());
    // The page polls every second: it may see the node down one period after n0 does,
    // plus the time to fetch and draw (generous on a loaded machine).
    assert!(
        shown <= detected + Duration::from_millis(3000),
        "the page showed n2 down {shown:?} after the crash; n0 detected it after {detected:?}"
    );
    // The page's Forget button, confirmed: the node leaves every ring.
    script.expect("forgotten").await;
    for node in &nodes {
        until(node, "n2 forgotten", |view| {
            !ring_ids(view).iter().any(|id| id == "n2")
        })
        .await;
    }
    script.finish().await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    for page in [
        "overview",
        "nodes",
        "ring",
        "keys",
        "namespaces",
        "console",
        "nodes-down",
    ] {
        let path = shots.join(format!("{page}.png"));
        let png = std::fs::read(&path).unwrap_or_else(|_| panic!("no screenshot {path:?}"));
        assert!(png.starts_with(b"\x89PNG"), "{path:?} is a PNG");
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(written >= started, "{path:?} was written by this run");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three nodes whose API needs `token`.
async fn start_cluster_with_token(token: &str) -> Vec<RunningServer> {
    let mut nodes: Vec<RunningServer> = Vec::new();
    for i in 0..3 {
        let seed = nodes.first().map(cluster_addr);
        let cluster = cluster_config(&format!("n{i}"), seed, SECRET);
        nodes.push(
            start_with(|config| {
                config.cluster = Some(cluster);
                config.http_token = Some(token.to_owned());
            })
            .await,
        );
    }
    for node in &nodes {
        until(node, "every node serving", |view| {
            serving_ids(view) == ["n0", "n1", "n2"]
        })
        .await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_for_the_token_names_a_wrong_one_and_makes_a_node_leave() {
    let token = "dashboard test token";
    let nodes = start_cluster_with_token(token).await;
    check_files_and_headers(&nodes[1], Some(token)).await;
    let shots = screenshot_dir();
    let mut script = Script::start(&["token", &url(&nodes[1]), token, shots.to_str().unwrap()]);
    script.expect("prompt").await;
    let wrong = script.expect("wrong").await;
    assert!(
        wrong["message"]
            .as_str()
            .unwrap()
            .contains("missing or wrong bearer token"),
        "the node's own message is shown: {wrong}"
    );
    script.expect("authorized").await;
    // The page's Leave button asked n2 to leave; its process then stops, which
    // `quorra server`'s main does and an in-process node leaves to its owner.
    script.expect("leave-requested").await;
    let mut nodes = nodes;
    let leaving = nodes.pop().unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        leaving.shared.leave_requested.cancelled(),
    )
    .await
    .expect("n2 was asked to leave");
    leaving.shutdown().await;
    // The others drop it from their rings, and the page shows it gone.
    script.expect("left").await;
    for node in &nodes[..2] {
        until(node, "n2 left", |view| {
            !ring_ids(view).iter().any(|id| id == "n2")
        })
        .await;
    }
    script.finish().await;
}
