//! Starting nodes and talking to them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use quorra_server::{Config, RunningServer};
use quorra_store::{Clock, SystemClock};
use redis::aio::MultiplexedConnection;
use redis::{RedisError, Value};

/// Starts a node on free ports with the default configuration changed by `adjust`.
pub(crate) async fn start_with(adjust: impl FnOnce(&mut Config)) -> RunningServer {
    start_on_clock(adjust, Arc::new(SystemClock)).await
}

/// [`start_with`], the node's keys expiring by `clock`.
pub(crate) async fn start_on_clock(
    adjust: impl FnOnce(&mut Config),
    clock: Arc<dyn Clock>,
) -> RunningServer {
    let mut config = Config {
        port: 0,
        http_port: 0,
        ..Config::default()
    };
    adjust(&mut config);
    quorra_server::start(config, clock)
        .await
        .expect("node starts")
}

/// Starts a node with the default configuration on free ports.
pub(crate) async fn start() -> RunningServer {
    start_with(|_| {}).await
}

/// A RESP2 connection through the redis crate.
pub(crate) async fn connect(server: &RunningServer) -> MultiplexedConnection {
    connect_url(&format!("redis://{}/", server.resp_addr)).await
}

pub(crate) async fn connect_url(url: &str) -> MultiplexedConnection {
    // The crate's default response timeout (500 ms) is shorter than a 20,000-command
    // pipeline can take on a loaded CI machine running debug builds in parallel.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(60)));
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("client connects")
}

/// Runs a command, expecting success.
pub(crate) async fn ok(con: &mut MultiplexedConnection, args: &[&str]) -> Value {
    run(con, args)
        .await
        .unwrap_or_else(|error| panic!("{args:?} failed: {error}"))
}

/// Runs a command.
pub(crate) async fn run(
    con: &mut MultiplexedConnection,
    args: &[&str],
) -> Result<Value, RedisError> {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(con).await
}

/// Runs a command expecting an error reply, and returns its full text (`ERR ...`).
pub(crate) async fn err(con: &mut MultiplexedConnection, args: &[&str]) -> String {
    match run(con, args).await {
        Ok(value) => panic!("{args:?} should fail, replied {value:?}"),
        Err(error) => format!(
            "{} {}",
            error.code().unwrap_or("?"),
            error.detail().unwrap_or("")
        )
        .trim_end()
        .to_owned(),
    }
}

pub(crate) fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

pub(crate) fn int(n: i64) -> Value {
    Value::Int(n)
}

pub(crate) fn array(items: Vec<Value>) -> Value {
    Value::Array(items)
}

/// A loopback port free now (for a program the test starts that needs its port given).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A data directory no other node of this test run uses: nodes remember their cluster's
/// roster there, and a node that found another test's roster would try to rejoin it.
pub(crate) fn fresh_data_dir() -> PathBuf {
    fresh_dir("test")
}

/// A path under the system's temporary directory that nothing else of this test run
/// uses (`quorra-<what>-<pid>-<n>`), not created; whatever a crashed earlier run left
/// there is removed.
pub(crate) fn fresh_dir(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "quorra-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
