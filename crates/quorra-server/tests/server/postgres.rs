//! Namespaces over a real PostgreSQL server ([`crate::pg`]): loads are counted at
//! PostgreSQL itself, by a function the load query calls.

use std::time::Duration;

use redis::Value;

use redis::aio::MultiplexedConnection;

use crate::common::*;
use crate::failover::{Node, until_up};
use crate::namespaces::{
    assert_ready_with_origin_main_down, figure, items_catalog, stampede, start_cluster_with_catalog,
};
use crate::pg::PgServer;

/// `items` (`k<i>` → `value-<i>`), and `load_item(key, pause)`, which counts its calls
/// in `loads`, sleeps `pause` seconds and returns the key's row.
fn prepare(pg: &PgServer, rows: usize) {
    pg.psql(&format!(
        "CREATE TABLE items (k text PRIMARY KEY, v text NOT NULL, n int NOT NULL);
         INSERT INTO items SELECT 'k' || i, 'value-' || i, i FROM generate_series(1, {rows}) i;
         CREATE TABLE loads (calls bigint NOT NULL);
         INSERT INTO loads VALUES (0);
         CREATE FUNCTION load_item(key text, pause float8) RETURNS TABLE (v text)
         LANGUAGE plpgsql AS $$
         BEGIN
           UPDATE loads SET calls = calls + 1;
           PERFORM pg_sleep(pause);
           RETURN QUERY SELECT items.v FROM items WHERE items.k = key;
         END $$;"
    ));
}

fn loads_at_postgres(pg: &PgServer) -> u64 {
    pg.psql("SELECT calls FROM loads").parse().unwrap()
}

/// PostgreSQL with 10 items, and three nodes with three copies whose `items`
/// namespace loads in 300 ms (so that concurrent GETs arrive while a load runs), with a
/// 2 s TTL without jitter and the given stale window.
async fn slow_loads_on_three_nodes(
    stale_while_revalidate: Option<&str>,
) -> (PgServer, Vec<quorra_server::RunningServer>) {
    let pg = PgServer::start();
    prepare(&pg, 10);
    let catalog = items_catalog(&pg.url(), |namespace, _| {
        namespace.load = "SELECT v FROM load_item($1, 0.3)".into();
        namespace.ttl = Some("2s".into());
        namespace.ttl_jitter = Some(0.0);
        namespace.stale_while_revalidate = stale_while_revalidate.map(str::to_owned);
    });
    let nodes = start_cluster_with_catalog(3, 3, &catalog, |_| {}).await;
    (pg, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_on_three_nodes_is_one_query_at_postgres_also_when_the_ttl_runs_out() {
    let (pg, nodes) = slow_loads_on_three_nodes(None).await;
    let values = stampede(&nodes, "item:k7", 1000).await;
    // The value was stored before the last GET was answered: it expires before
    // `stored + 2 s`, and its reload (300 ms) lives until after `stored + 4 s`.
    let stored = tokio::time::Instant::now();
    assert_eq!(values.len(), 1000);
    assert!(
        values
            .iter()
            .all(|value| value.as_deref() == Some("value-7"))
    );
    assert_eq!(loads_at_postgres(&pg), 1);

    // A steady read load across the key's expiry (2 s after it was stored): every read
    // gets the value, and the expiry costs one more query.
    let mut readers = tokio::task::JoinSet::new();
    for (index, node) in nodes.iter().enumerate().cycle().take(30) {
        let mut con = connect(node).await;
        readers.spawn(async move {
            // Anchored to the store, not to when this reader connected: a slow start
            // must not stretch the window over a second expiry.
            let stop = stored + Duration::from_millis(3000);
            let mut reads = 0;
            while tokio::time::Instant::now() < stop {
                let value: Option<String> = redis::cmd("GET")
                    .arg("item:k7")
                    .query_async(&mut con)
                    .await
                    .unwrap();
                assert_eq!(value.as_deref(), Some("value-7"), "reader {index}");
                reads += 1;
            }
            reads
        });
    }
    let reads: usize = readers.join_all().await.into_iter().sum();
    println!("{reads} reads across the expiry");
    assert_eq!(loads_at_postgres(&pg), 2);
    let mut collapsed = 0;
    for node in &nodes {
        collapsed += figure(&mut connect(node).await, "singleflight_dedup").await;
    }
    assert!(collapsed > 0, "the GETs that waited are counted");
    for node in nodes {
        node.shutdown().await;
    }
}

/// The sum over `nodes` of INFO's `keyspace_misses`.
async fn keyspace_misses(nodes: &[quorra_server::RunningServer]) -> u64 {
    let mut misses = 0;
    for node in nodes {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut connect(node).await)
            .await
            .unwrap();
        misses += info
            .lines()
            .find_map(|line| line.strip_prefix("keyspace_misses:"))
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap();
    }
    misses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_value_is_served_while_one_refresh_reloads_it() {
    let (pg, nodes) = slow_loads_on_three_nodes(Some("10s")).await;
    let mut con = connect(&nodes[0]).await;
    assert_eq!(ok(&mut con, &["GET", "item:k7"]).await, bulk("value-7"));
    // Stored before the GET was answered: stale before `stored + 2 s`; its refresh
    // (300 ms) is fresh until after `stored + 4 s`.
    let stored = tokio::time::Instant::now();
    assert_eq!(loads_at_postgres(&pg), 1);
    pg.psql("UPDATE items SET v = 'value-7-new' WHERE k = 'k7'");
    let misses_before = keyspace_misses(&nodes).await;

    // Reads from every node, across the moment the value turns stale (2 s after it was
    // stored) and for a second after, anchored to the store; its stale window runs 10 s
    // more.
    let mut readers = tokio::task::JoinSet::new();
    for node in nodes.iter().cycle().take(30) {
        let mut con = connect(node).await;
        readers.spawn(async move {
            let stop = stored + Duration::from_millis(3300);
            let mut values = std::collections::BTreeSet::new();
            while tokio::time::Instant::now() < stop {
                let value: Option<String> = redis::cmd("GET")
                    .arg("item:k7")
                    .query_async(&mut con)
                    .await
                    .unwrap();
                values.insert(value.expect("no client sees a miss"));
            }
            values
        });
    }
    let seen: std::collections::BTreeSet<String> =
        readers.join_all().await.into_iter().flatten().collect();
    assert_eq!(
        keyspace_misses(&nodes).await,
        misses_before,
        "no read missed"
    );
    assert_eq!(loads_at_postgres(&pg), 2, "one refresh");
    assert!(
        seen.contains("value-7") && seen.contains("value-7-new"),
        "{seen:?}"
    );
    assert_eq!(ok(&mut con, &["GET", "item:k7"]).await, bulk("value-7-new"));
    let (mut stale_served, mut refreshes) = (0, 0);
    for node in &nodes {
        let mut con = connect(node).await;
        stale_served += figure(&mut con, "stale_served").await;
        refreshes += figure(&mut con, "refreshes").await;
    }
    assert!(stale_served > 0);
    assert_eq!(refreshes, 1);
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn postgres_failures_are_clear_errors_within_the_timeout() {
    let pg = PgServer::start();
    prepare(&pg, 3);
    let cases = [
        (
            "SELECT v FROM load_item($1, 30)",
            "item:k1",
            "ORIGIN items: origin main did not answer within 300ms",
        ),
        (
            "SELECT v FROM nosuch WHERE k = $1",
            "item:k1",
            "ORIGIN items: query failed: relation \"nosuch\" does not exist",
        ),
        (
            "SELECT v FROM items WHERE k <> $1",
            "item:k1",
            "ORIGIN items: load query returned 2 rows; it must return at most one",
        ),
        (
            "SELECT n FROM items WHERE k = $1",
            "item:k1",
            "ORIGIN items: load query returned a column of type int4; it must be text or blob (cast it in the query)",
        ),
        (
            "SELECT v FROM items WHERE n = $1",
            "item:one",
            "ORIGIN items: the key is not an integer but $1 has type int4",
        ),
    ];
    for (load, key, expected) in cases {
        let catalog = items_catalog(&pg.url(), |namespace, origin| {
            namespace.load = load.into();
            origin.timeout = Some("300ms".into());
            origin.pool = Some(1);
        });
        let node = start_with(|config| config.namespaces = catalog).await;
        let mut con = connect(&node).await;
        assert_eq!(err(&mut con, &["GET", key]).await, expected, "{load}");
        node.shutdown().await;
    }
    // After a timeout, the pool's one connection is free again at once: the slow
    // query was cancelled at PostgreSQL.
    let catalog = items_catalog(&pg.url(), |namespace, origin| {
        namespace.load =
            "SELECT v FROM load_item($1, CASE WHEN $1 = 'k1' THEN 30 ELSE 0 END)".into();
        origin.timeout = Some("300ms".into());
        origin.pool = Some(1);
    });
    let node = start_with(|config| config.namespaces = catalog).await;
    let mut con = connect(&node).await;
    assert!(
        err(&mut con, &["GET", "item:k1"])
            .await
            .contains("did not answer within 300ms")
    );
    assert_eq!(ok(&mut con, &["GET", "item:k2"]).await, bulk("value-2"));
    node.shutdown().await;
}

#[tokio::test]
async fn a_postgres_that_is_down_at_start_is_reported_by_name() {
    // Port 1: privileged, so no test (or PostgreSQL started by one) listens there. A
    // port freed by another bind could be handed to a parallel test's server.
    let catalog = items_catalog("postgres://postgres@127.0.0.1:1/postgres", |_, _| {});
    let node = start_with(|config| config.namespaces = catalog).await;
    let mut con = connect(&node).await;
    let error = err(&mut con, &["GET", "item:k1"]).await;
    assert!(
        error.starts_with("ORIGIN items: origin main is unreachable: "),
        "{error}"
    );
    assert_eq!(ok(&mut con, &["SET", "plain", "v"]).await, Value::Okay);
    assert_ready_with_origin_main_down(&node).await;
    node.shutdown().await;
}

#[tokio::test]
async fn write_through_reaches_postgres_first_and_a_stopped_origin_changes_nothing() {
    let pg = PgServer::start();
    prepare(&pg, 3);
    let catalog = items_catalog(&pg.url(), |namespace, _| {
        namespace.write = Some("through".into());
        namespace.store = Some(
            "INSERT INTO items (k, v, n) VALUES ($1, $2, 0) \
             ON CONFLICT (k) DO UPDATE SET v = excluded.v"
                .into(),
        );
        namespace.delete = Some("DELETE FROM items WHERE k = $1".into());
        namespace.ttl = Some("60s".into());
    });
    for copies in [1, 3] {
        pg.psql("DELETE FROM items WHERE k LIKE 'w%'");
        let nodes = start_cluster_with_catalog(3, copies, &catalog, |_| {}).await;
        let mut first = connect(&nodes[0]).await;
        let mut last = connect(&nodes[2]).await;
        // SET reaches PostgreSQL, then the cache, which keeps it for the namespace's TTL.
        ok(&mut first, &["SET", "item:w1", "one"]).await;
        assert_eq!(pg.psql("SELECT v FROM items WHERE k = 'w1'"), "one");
        assert_eq!(ok(&mut last, &["GET", "item:w1"]).await, bulk("one"));
        let Value::Int(ttl) = ok(&mut last, &["TTL", "item:w1"]).await else {
            panic!("TTL answers an integer");
        };
        assert!((50..=66).contains(&ttl), "{ttl}");
        ok(&mut last, &["SET", "item:w1", "two", "EX", "100"]).await;
        assert_eq!(pg.psql("SELECT v FROM items WHERE k = 'w1'"), "two");
        // DEL deletes the row too: the next GET finds nothing to load.
        ok(&mut first, &["SET", "item:w2", "x"]).await;
        assert_eq!(ok(&mut last, &["DEL", "item:w2"]).await, int(1));
        assert_eq!(pg.psql("SELECT count(*) FROM items WHERE k = 'w2'"), "0");
        assert_eq!(ok(&mut first, &["GET", "item:w2"]).await, Value::Nil);
        // Commands the origin could not follow are refused.
        for command in [
            &["SET", "item:w1", "v", "NX"][..],
            &["APPEND", "item:w1", "x"],
            &["INCR", "item:w1"],
        ] {
            let error = err(&mut first, command).await;
            assert!(
                error.starts_with("ERR namespace items writes through to its origin"),
                "{error}"
            );
        }
        assert_eq!(ok(&mut first, &["GET", "item:w1"]).await, bulk("two"));
        for node in nodes {
            node.shutdown().await;
        }
    }
    // With the origin stopped, SET and DEL answer an error and the cache keeps its value.
    let nodes = start_cluster_with_catalog(3, 3, &catalog, |_| {}).await;
    let mut con = connect(&nodes[1]).await;
    ok(&mut con, &["SET", "item:w3", "kept"]).await;
    pg.stop();
    let error = err(&mut con, &["SET", "item:w3", "lost"]).await;
    assert!(error.starts_with("ORIGIN items: "), "{error}");
    let error = err(&mut con, &["DEL", "item:w3"]).await;
    assert!(error.starts_with("ORIGIN items: "), "{error}");
    for node in &nodes {
        let mut con = connect(node).await;
        assert_eq!(ok(&mut con, &["GET", "item:w3"]).await, bulk("kept"));
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// Three `quorra server` processes with three copies, whose `items` namespace writes
/// behind to `pg`, flushing every `interval`; with a connection to each.
async fn processes_writing_behind(
    pg: &PgServer,
    interval: &str,
) -> (Vec<Node>, Vec<MultiplexedConnection>) {
    let config = fresh_data_dir();
    std::fs::create_dir_all(&config).unwrap();
    let config = config.join("quorra.toml");
    std::fs::write(
        &config,
        format!(
            r#"[origins.main]
url = "{}"

[[namespaces]]
name = "items"
prefix = "item:"
origin = "main"
load = "SELECT v FROM items WHERE k = $1"
write = "behind"
store = "INSERT INTO items (k, v, n) VALUES ($1, $2, 0) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
delete = "DELETE FROM items WHERE k = $1"
write-behind-interval = "{interval}"
"#,
            pg.url()
        ),
    )
    .unwrap();
    // A generous cluster timeout: under the whole suite's load, a debug build can take
    // over the default second to answer a batch, and this test is about durability.
    let flags = [
        "--config",
        config.to_str().unwrap(),
        "--replicas",
        "3",
        "--cluster-timeout-ms",
        "10000",
    ];
    let first = Node::start_with("w0", None, &flags);
    let mut nodes = vec![
        Node::start_with("w1", Some(first.cluster), &flags),
        Node::start_with("w2", Some(first.cluster), &flags),
    ];
    nodes.insert(0, first);
    for node in &nodes {
        until_up(node, 3).await;
    }
    let mut connections = Vec::new();
    for node in &nodes {
        connections.push(connect_url(&format!("redis://{}/", node.resp)).await);
    }
    (nodes, connections)
}

/// 10,000 acknowledged SETs spread over the nodes' `connections`: 2,000 keys `item:b<i>`, each
/// written five times by one client, the last value `final-<i>`.
async fn ten_thousand_sets(connections: &[MultiplexedConnection]) {
    const KEYS: usize = 2000;
    const CLIENTS: usize = 20;
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let mut con = connections[client % connections.len()].clone();
        clients.spawn(async move {
            for round in 0..5 {
                let mut pipe = redis::pipe();
                for key in (client..KEYS).step_by(CLIENTS) {
                    let value = match round {
                        4 => format!("final-{key}"),
                        _ => format!("v{round}-{key}"),
                    };
                    pipe.cmd("SET").arg(format!("item:b{key}")).arg(value);
                }
                let replies: Vec<String> = pipe.query_async(&mut con).await.unwrap();
                assert!(replies.iter().all(|reply| reply == "OK"));
            }
        });
    }
    clients.join_all().await;
}

/// How many of the 2,000 keys PostgreSQL holds with their last value.
fn rows_with_last_value(pg: &PgServer) -> u64 {
    pg.psql("SELECT count(*) FROM items WHERE k LIKE 'b%' AND v = 'final-' || substr(k, 2)")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_acknowledges_first_and_sigterm_flushes_everything() {
    let pg = PgServer::start();
    prepare(&pg, 3);
    // Flushes an hour apart: only the flush at shutdown writes the rows.
    let (mut nodes, mut connections) = processes_writing_behind(&pg, "1h").await;
    ten_thousand_sets(&connections).await;
    assert_eq!(
        rows_with_last_value(&pg),
        0,
        "acknowledged before the origin has it"
    );
    let mut pending = 0;
    for con in &mut connections {
        pending += figure(con, "write_behind_pending").await;
    }
    // Every key is marked on each of its three replicas.
    assert_eq!(pending, 3 * 2000);
    // SIGTERM to every node at once.
    let stopped = std::thread::scope(|scope| {
        let stops: Vec<_> = nodes
            .iter_mut()
            .map(|node| scope.spawn(move || node.terminate()))
            .collect();
        stops
            .into_iter()
            .map(|stop| stop.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(stopped, [true; 3], "every node exits cleanly");
    assert_eq!(rows_with_last_value(&pg), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_loses_no_acknowledged_write_when_a_node_is_killed() {
    let pg = PgServer::start();
    prepare(&pg, 3);
    // Three real processes; one is killed with SIGKILL before its first flush.
    let (mut nodes, mut connections) = processes_writing_behind(&pg, "2s").await;
    ten_thousand_sets(&connections).await;
    // Killed before its first flush: a third of the keys had it as their primary.
    nodes[0].kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rows_with_last_value(&pg) < 2000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rows_with_last_value(&pg), 2000);
    // DEL writes behind too.
    assert_eq!(ok(&mut connections[1], &["DEL", "item:b7"]).await, int(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while pg.psql("SELECT count(*) FROM items WHERE k = 'b7'") != "0"
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(pg.psql("SELECT count(*) FROM items WHERE k = 'b7'"), "0");
}
