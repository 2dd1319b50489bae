//! `quorra up`: a local cluster of separate `quorra server` processes, for trying quorra
//! out and for process-level tests.
//!
//! Node `i` (from 0) is started with RESP port `base + i`, HTTP port `base + 1000 + i`
//! and cluster port `base + 2000 + i` on 127.0.0.1, id `node-i`, every node seeded with
//! node 0's cluster port, and a cluster secret generated for this run (passed in the
//! environment, not on the command line). With `--base-port 0` every port is picked
//! free by the nodes themselves; node 0 starts first so the others can be told its
//! cluster port. Each node's logs go to `<log-dir>/node-i.log`, and its data directory
//! (where it keeps the cluster's roster) is `<log-dir>/node-i`.
//!
//! Every node starts with the same config file, `--config`. Without one, `quorra up`
//! writes the demo into the log directory: `demo.db`, an SQLite database of 1,000
//! products, and `demo.toml`, whose `products` namespace reads keys `product:1` ..
//! `product:1000` through from it and writes SETs and DELs of `product:` keys behind
//! to it.
//!
//! Once every node serves, the table of nodes is printed. Ctrl-C (SIGINT, which the
//! terminal sends to the nodes as well) or SIGTERM stops every node gracefully. A node
//! that exits by itself (or is killed, to see the cluster route around it) is reported
//! and the others keep running; `quorra up` fails once none is left.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Most nodes `quorra up` starts.
pub const MAX_UP_NODES: usize = 64;

/// How long `quorra up` waits for all nodes to see each other in their rings.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of `quorra up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Nodes to start (1 to 64).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,

    /// RESP port of node 0; node i uses base+i for RESP, base+1000+i for HTTP and
    /// base+2000+i for the cluster port. 0 lets every node pick free ports.
    #[arg(long, default_value_t = quorra_node::config::DEFAULT_PORT)]
    pub base_port: u16,

    /// Memory limit of each node, e.g. `100mb` [default: unlimited].
    #[arg(long)]
    pub maxmemory: Option<String>,

    /// Directory for the nodes' log files [default: a new directory under the system's
    /// temporary directory].
    #[arg(long)]
    pub log_dir: Option<PathBuf>,

    /// TOML file every node starts with (`quorra server --config`) [default: the demo:
    /// a `products` namespace read through from, and written behind to, an SQLite file
    /// created in the log directory].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// A started node.
struct Node {
    id: String,
    child: Child,
    resp: SocketAddr,
    http: SocketAddr,
    cluster: SocketAddr,
}

/// Runs `quorra up` until Ctrl-C or SIGTERM.
pub fn main(args: UpArgs) -> ExitCode {
    if !(1..=MAX_UP_NODES).contains(&args.nodes) {
        eprintln!("quorra up: --nodes must be between 1 and {MAX_UP_NODES}");
        return ExitCode::from(2);
    }
    if args.base_port != 0 && usize::from(args.base_port) + 2000 + args.nodes > 65_535 {
        eprintln!(
            "quorra up: --base-port is too high for {} nodes",
            args.nodes
        );
        return ExitCode::from(2);
    }
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("quorra-up-{}", std::process::id())));
    if let Err(error) = std::fs::create_dir_all(&log_dir) {
        eprintln!("quorra up: cannot create {}: {error}", log_dir.display());
        return ExitCode::from(1);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config = match &args.config {
        Some(config) => config.clone(),
        None => match write_demo(&log_dir) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("quorra up: cannot write the demo database: {error}");
                return ExitCode::from(1);
            }
        },
    };
    let secret = generate_secret();
    let mut nodes: Vec<Node> = Vec::new();
    for index in 0..args.nodes {
        let seed = nodes.first().map(|node| node.cluster);
        match start_node(&args, index, seed, &secret, &log_dir, &config) {
            Ok(node) => nodes.push(node),
            Err(error) => {
                eprintln!("quorra up: node-{index} did not start: {error}");
                stop_all(&mut nodes);
                return ExitCode::from(1);
            }
        }
    }
    if let Err(error) = wait_until_converged(&nodes) {
        eprintln!("quorra up: {error}");
        stop_all(&mut nodes);
        return ExitCode::from(1);
    }
    print_table(&nodes, &log_dir, args.config.is_none());
    let outcome = runtime.block_on(wait_for_stop(&mut nodes));
    stop_all(&mut nodes);
    outcome
}

fn start_node(
    args: &UpArgs,
    index: usize,
    seed: Option<SocketAddr>,
    secret: &str,
    log_dir: &std::path::Path,
    config: &std::path::Path,
) -> Result<Node, String> {
    let id = format!("node-{index}");
    let port = |offset: usize| match args.base_port {
        0 => "0".to_owned(),
        base => (usize::from(base) + offset + index).to_string(),
    };
    let log_path = log_dir.join(format!("{id}.log"));
    let log =
        File::create(&log_path).map_err(|error| format!("{}: {error}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|error| error.to_string())?;
    let mut command = Command::new(exe);
    let data_dir = log_dir.join(&id);
    command
        .args(["server", "--node-id", &id])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--port", &port(0), "--http-port", &port(1000)])
        .args(["--cluster-port", &port(2000)])
        .arg("--config")
        .arg(config)
        .env("QUORRA_CLUSTER_SECRET", secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone().map_err(|error| error.to_string())?);
    if let Some(seed) = seed {
        command.args(["--seeds", &seed.to_string()]);
    }
    if let Some(maxmemory) = &args.maxmemory {
        command.args(["--maxmemory", maxmemory]);
    }
    let mut child = command.spawn().map_err(|error| error.to_string())?;
    // The node's one line on stdout: "quorra listening: RESP a HTTP http://b cluster c".
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    let read = stdout.read_line(&mut line);
    let addresses = parse_listening(&line);
    let Some((resp, http, cluster)) = addresses.filter(|_| read.is_ok()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("see {}", log_path.display()));
    };
    // Anything else the node prints goes to its log, so it never writes to a closed pipe.
    let mut log_copy = log;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stdout, &mut log_copy);
    });
    Ok(Node {
        id,
        child,
        resp,
        http,
        cluster,
    })
}

/// The addresses in the line `quorra server` prints once it listens.
pub fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr, SocketAddr)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [
            "quorra",
            "listening:",
            "RESP",
            resp,
            "HTTP",
            http,
            "cluster",
            cluster,
            ..,
        ] => Some((
            resp.parse().ok()?,
            http.split_once("://")?.1.parse().ok()?,
            cluster.parse().ok()?,
        )),
        _ => None,
    }
}

/// Waits until every node's ring has every node, asking with `INFO cluster`.
fn wait_until_converged(nodes: &[Node]) -> Result<(), String> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    for node in nodes {
        loop {
            let ring_nodes = info_field(node.resp, "quorra_ring_nodes");
            if ring_nodes == Some(nodes.len().to_string()) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} sees {} of {} nodes in its ring after {:?}",
                    node.id,
                    ring_nodes.unwrap_or_else(|| "none".to_owned()),
                    nodes.len(),
                    CONVERGE_TIMEOUT
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// One field of `INFO cluster`, read over a plain RESP connection.
fn info_field(addr: SocketAddr, field: &str) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$7\r\ncluster\r\n")
        .ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    // A bulk reply of a few hundred bytes; read until the field's line is in.
    while !String::from_utf8_lossy(&reply).contains("quorra_ring_version") {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|value| value.trim().to_owned())
}

/// Writes the demo's SQLite database and config file into `dir`; returns the config
/// file's path.
fn write_demo(dir: &std::path::Path) -> Result<PathBuf, String> {
    let database = dir.join("demo.db");
    quorra_origin::sqlite::write_demo_database(&database)
        .map_err(|error| format!("{}: {error}", database.display()))?;
    let config = dir.join("demo.toml");
    std::fs::write(&config, quorra_origin::sqlite::demo_config(&database))
        .map_err(|error| format!("{}: {error}", config.display()))?;
    Ok(config)
}

fn print_table(nodes: &[Node], log_dir: &std::path::Path, demo: bool) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "quorra up: {} nodes, one cluster\n", nodes.len());
    let _ = writeln!(
        out,
        "{:<8} {:<8} {:<22} {:<30} {:<22}",
        "node", "pid", "RESP", "HTTP", "cluster"
    );
    for node in nodes {
        let _ = writeln!(
            out,
            "{:<8} {:<8} {:<22} {:<30} {:<22}",
            node.id,
            node.child.id(),
            node.resp,
            format!("http://{}", node.http),
            node.cluster
        );
    }
    let first = &nodes[0];
    let _ = writeln!(out, "\nDashboard (any node):     http://{}/", first.http);
    let _ = writeln!(
        out,
        "Any node serves any key:  redis-cli -p {} set greeting hello",
        first.resp.port()
    );
    let _ = writeln!(
        out,
        "Cluster as JSON:          curl http://{}/v1/cluster",
        first.http
    );
    if demo {
        let _ = writeln!(
            out,
            "Read through from SQLite: redis-cli -p {} get product:42",
            first.resp.port()
        );
        let _ = writeln!(
            out,
            "Written behind to SQLite: redis-cli -p {} set product:1001 '{{\"id\":1001}}'",
            first.resp.port()
        );
        let _ = writeln!(
            out,
            "Namespace figures:        redis-cli -p {} quorra namespaces",
            first.resp.port()
        );
    }
    let _ = writeln!(out, "Logs:                     {}", log_dir.display());
    let _ = writeln!(out, "Ctrl-C stops every node.");
    let _ = out.flush();
}

/// Returns when Ctrl-C or SIGTERM arrives (success) or every node has exited (failure),
/// reporting each node that exits meanwhile.
async fn wait_for_stop(nodes: &mut [Node]) -> ExitCode {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    let mut exited = vec![false; nodes.len()];
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            _ = terminate.recv() => return ExitCode::SUCCESS,
            _ = poll.tick() => {}
        }
        for (node, exited) in nodes.iter_mut().zip(&mut exited) {
            if let (false, Ok(Some(status))) = (*exited, node.child.try_wait()) {
                *exited = true;
                eprintln!(
                    "quorra up: {} exited ({status}); the others keep serving",
                    node.id
                );
            }
        }
        if exited.iter().all(|&exited| exited) {
            eprintln!("quorra up: every node has exited");
            return ExitCode::from(1);
        }
    }
}

/// Sends SIGTERM to every node still running and waits for each to exit.
fn stop_all(nodes: &mut [Node]) {
    for node in nodes.iter_mut() {
        if let Ok(None) = node.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &node.child.id().to_string()])
                .status();
        }
    }
    for node in nodes.iter_mut() {
        let _ = node.child.wait();
    }
}

/// 32 random hex digits (rand's thread generator is a CSPRNG seeded by the OS).
fn generate_secret() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
