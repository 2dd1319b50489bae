//! Protected mode over a real network: a node and a client in two network namespaces
//! joined by a veth pair, so the client's address is not loopback.
//!
//! Needs root, iproute2 and redis-cli; `scripts/test` provides them and sets
//! `QUORRA_NETNS_TESTS=1`. Every address used lives inside the namespaces the test
//! creates, and the namespaces are deleted when it ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Runs `ip` with `args`, which must succeed.
pub(crate) fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("ip runs");
    assert!(status.success(), "ip {args} failed");
}

/// Two namespaces, `<tag>s` (server, 10.231.X.1) and `<tag>c` (client, 10.231.X.2),
/// deleted on drop.
struct Network {
    server: String,
    client: String,
    server_addr: String,
}

impl Network {
    fn new() -> Network {
        // Unique per network: tests of this file run at the same time.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() + serial) % 200;
        let tag = format!("qt{}n{serial}", std::process::id());
        let (server, client) = (format!("{tag}s"), format!("{tag}c"));
        let network = Network {
            server: server.clone(),
            client: client.clone(),
            server_addr: format!("10.231.{id}.1"),
        };
        ip(&format!("netns add {server}"));
        ip(&format!("netns add {client}"));
        ip(&format!("link add {tag}a type veth peer name {tag}b"));
        ip(&format!("link set {tag}a netns {server}"));
        ip(&format!("link set {tag}b netns {client}"));
        ip(&format!("-n {server} addr add 10.231.{id}.1/24 dev {tag}a"));
        ip(&format!("-n {client} addr add 10.231.{id}.2/24 dev {tag}b"));
        for (namespace, link) in [(&server, format!("{tag}a")), (&client, format!("{tag}b"))] {
            ip(&format!("-n {namespace} link set {link} up"));
            ip(&format!("-n {namespace} link set lo up"));
        }
        network
    }

    /// Starts `quorra server` inside the server namespace, listening on every address.
    fn start_quorra(&self, extra: &[&str]) -> Child {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                env!("CARGO_BIN_EXE_quorra"),
                "server",
                "--bind",
                "0.0.0.0",
            ])
            .args(["--port", "7379", "--http-port", "7380"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("quorra listening"), "{line}");
        child
    }

    /// Runs redis-cli in `namespace` against `host` and returns what it printed.
    fn redis_cli(&self, namespace: &str, host: &str, args: &[&str]) -> String {
        redis_cli_in(namespace, host, args)
    }
}

/// Runs redis-cli inside `namespace` against `host:7379` and returns what it printed
/// (standard output, then standard error).
pub(crate) fn redis_cli_in(namespace: &str, host: &str, args: &[&str]) -> String {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            namespace,
            "redis-cli",
            "-h",
            host,
            "-p",
            "7379",
        ])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// Whether this run may create network namespaces; says why not when it may not.
pub(crate) fn netns_tests_enabled() -> bool {
    let enabled = std::env::var_os("QUORRA_NETNS_TESTS").is_some();
    if !enabled {
        eprintln!(
            "skipped: needs root, iproute2 and redis-cli; scripts/test sets QUORRA_NETNS_TESTS=1"
        );
    }
    enabled
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.server])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.client])
            .status();
    }
}

#[test]
fn protected_mode_refuses_remote_clients_until_a_password_is_set() {
    if !netns_tests_enabled() {
        return;
    }
    let network = Network::new();
    let mut open = network.start_quorra(&[]);
    let remote = network.redis_cli(&network.client, &network.server_addr, &["PING"]);
    let local = network.redis_cli(&network.server, "127.0.0.1", &["PING"]);
    open.kill().unwrap();
    open.wait().unwrap();
    assert!(
        remote.contains("DENIED") && remote.contains("protected mode"),
        "remote client got: {remote}"
    );
    assert_eq!(local.trim(), "PONG", "loopback clients are served");

    let mut guarded = network.start_quorra(&["--requirepass", "pw"]);
    let without = network.redis_cli(&network.client, &network.server_addr, &["GET", "k"]);
    let with = network.redis_cli(
        &network.client,
        &network.server_addr,
        &["--no-auth-warning", "-a", "pw", "PING"],
    );
    guarded.kill().unwrap();
    guarded.wait().unwrap();
    assert!(without.contains("NOAUTH"), "{without}");
    assert_eq!(with.trim(), "PONG");
}

impl Network {
    /// An HTTP/1.0 request from the client namespace to the node's HTTP port, with bash's
    /// /dev/tcp; returns the status line and the body.
    fn http_from_client(&self, path: &str, headers: &str) -> (String, String) {
        let script = format!(
            "exec 3<>/dev/tcp/{}/7380; printf 'GET {path} HTTP/1.0\\r\\n{headers}\\r\\n' >&3; cat <&3",
            self.server_addr
        );
        let output = Command::new("ip")
            .args(["netns", "exec", &self.client, "bash", "-c", &script])
            .output()
            .expect("bash runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let status = text.lines().next().unwrap_or_default().to_owned();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    }
}

#[test]
fn the_http_api_is_closed_to_other_hosts_without_a_token_even_with_a_password() {
    if !netns_tests_enabled() {
        return;
    }
    let network = Network::new();
    let mut node = network.start_quorra(&["--requirepass", "x"]);
    let set = network.redis_cli(
        &network.server,
        "127.0.0.1",
        &["--no-auth-warning", "-a", "x", "SET", "k", "secret"],
    );
    assert_eq!(set.trim(), "OK");
    let (status, body) = network.http_from_client("/v1/keys/k", "");
    let (with_password, _) =
        network.http_from_client("/v1/keys/k", "Authorization: Bearer x\\r\\n");
    let (health, _) = network.http_from_client("/healthz", "");
    node.kill().unwrap();
    node.wait().unwrap();
    assert!(status.contains(" 403 "), "{status}");
    assert!(
        body.contains("http-token") && !body.contains("secret"),
        "{body}"
    );
    assert!(
        with_password.contains(" 403 "),
        "the password does not open it: {with_password}"
    );
    assert!(health.contains(" 200 "), "{health}");

    let mut node = network.start_quorra(&["--requirepass", "x", "--http-token", "t"]);
    let (status, body) = network.http_from_client("/v1/keys/k", "Authorization: Bearer t\\r\\n");
    let (without, _) = network.http_from_client("/v1/keys/k", "");
    node.kill().unwrap();
    node.wait().unwrap();
    // A fresh node: no such key, but the API answered.
    assert!(status.contains(" 404 "), "{status} {body}");
    assert!(without.contains(" 401 "), "{without}");
}
