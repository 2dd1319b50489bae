//! Namespaces read through from an SQLite origin: single nodes and a cluster started
//! in-process, driven with the redis crate.

use std::collections::BTreeMap;
use std::path::Path;

use quorra_cluster::replication::Consistency;
use quorra_node::config::Config;
use quorra_origin::{Catalog, NamespaceSpec, OriginSpec};
use quorra_server::RunningServer;
use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::cluster::{SECRET, cluster_addr, cluster_config, serving_ids, until};
use crate::common::*;
use crate::http::http;

/// An SQLite file with `rows` rows `k<i>` → `value-<i>` in table `items`.
pub(crate) fn items_database(dir: &Path, rows: usize) -> std::path::PathBuf {
    let path = dir.join("items.db");
    let mut connection = rusqlite::Connection::open(&path).unwrap();
    let transaction = connection.transaction().unwrap();
    transaction
        .execute_batch(
            "CREATE TABLE items (k TEXT PRIMARY KEY, v);
             CREATE TABLE twice (k TEXT, v TEXT);
             INSERT INTO twice VALUES ('k1', 'a'), ('k1', 'b');",
        )
        .unwrap();
    {
        let mut insert = transaction
            .prepare("INSERT INTO items VALUES (?1, ?2)")
            .unwrap();
        for i in 1..=rows {
            insert
                .execute((format!("k{i}"), format!("value-{i}")))
                .unwrap();
        }
    }
    transaction.commit().unwrap();
    path
}

/// The `items` namespace (`item:`) over the origin at `url`, with `adjust` applied.
pub(crate) fn items_catalog(
    url: &str,
    adjust: impl FnOnce(&mut NamespaceSpec, &mut OriginSpec),
) -> Catalog {
    let mut origin = OriginSpec {
        url: url.to_owned(),
        ..OriginSpec::default()
    };
    let mut namespace = NamespaceSpec {
        name: "items".into(),
        prefix: "item:".into(),
        origin: "main".into(),
        load: "SELECT v FROM items WHERE k = $1".into(),
        ..NamespaceSpec::default()
    };
    adjust(&mut namespace, &mut origin);
    quorra_origin::config::check(&BTreeMap::from([("main".to_owned(), origin)]), &[namespace])
        .expect("a valid namespace")
}

/// A single node with `catalog`.
async fn start_with_catalog(catalog: Catalog) -> RunningServer {
    start_with(|config| config.namespaces = catalog).await
}

/// `n` nodes with `copies` copies per key, every one with `catalog`.
pub(crate) async fn start_cluster_with_catalog(
    n: usize,
    copies: usize,
    catalog: &Catalog,
    adjust: impl Fn(&mut Config),
) -> Vec<RunningServer> {
    let adjust = &adjust;
    let configure = |id: &str, seed| {
        let mut cluster = cluster_config(id, seed, SECRET);
        cluster.consistency = Consistency {
            replicas: copies,
            ..Consistency::default()
        };
        move |config: &mut Config| {
            config.cluster = Some(cluster);
            config.namespaces = catalog.clone();
            adjust(config);
        }
    };
    let first = start_with(configure("n0", None)).await;
    let seed = cluster_addr(&first);
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(start_with(configure(&format!("n{i}"), Some(seed))).await);
    }
    let all: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    for node in &nodes {
        until(node, "every node serving", |view| serving_ids(view) == all).await;
    }
    nodes
}

/// One figure of the namespace's `QUORRA NAMESPACES` map on this node.
pub(crate) async fn figure(con: &mut MultiplexedConnection, field: &str) -> u64 {
    let Value::Array(namespaces) = ok(con, &["QUORRA", "NAMESPACES"]).await else {
        panic!("QUORRA NAMESPACES answers an array");
    };
    let Value::Array(pairs) = &namespaces[0] else {
        panic!("a namespace is a map (a flat array in RESP2)");
    };
    let text = |value: &Value| match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("{other:?}"),
    };
    let position = pairs
        .chunks(2)
        .position(|pair| text(&pair[0]) == field)
        .unwrap_or_else(|| panic!("no field {field}"));
    text(&pairs[position * 2 + 1]).parse().unwrap()
}

#[tokio::test]
async fn a_miss_is_read_through_once_then_served_from_the_cache() {
    let dir = tempfile_dir();
    let database = items_database(&dir, 10);
    let catalog = items_catalog(
        &format!("sqlite://{}", database.display()),
        |namespace, _| {
            namespace.ttl = Some("100s".into());
            namespace.ttl_jitter = Some(0.1);
        },
    );
    let node = start_with_catalog(catalog).await;
    let mut con = connect(&node).await;
    assert_eq!(ok(&mut con, &["GET", "item:k3"]).await, bulk("value-3"));
    assert_eq!(figure(&mut con, "loads").await, 1);
    // Cached now: no second load, and the TTL is the namespace's, jittered.
    assert_eq!(ok(&mut con, &["GET", "item:k3"]).await, bulk("value-3"));
    assert_eq!(figure(&mut con, "loads").await, 1);
    let Value::Int(ttl) = ok(&mut con, &["TTL", "item:k3"]).await else {
        panic!("TTL answers an integer");
    };
    assert!((89..=110).contains(&ttl), "ttl {ttl} outside 100s ± 10%");
    // MGET loads only the namespace keys it misses, and keeps its order.
    assert_eq!(
        ok(
            &mut con,
            &["MGET", "item:k1", "plain", "item:k3", "item:nosuch"]
        )
        .await,
        array(vec![
            bulk("value-1"),
            Value::Nil,
            bulk("value-3"),
            Value::Nil
        ])
    );
    assert_eq!(figure(&mut con, "loads").await, 3);
    assert_eq!(figure(&mut con, "origin_misses").await, 1);
    // The origin's "no such row" is remembered: no load for the next GET.
    assert_eq!(ok(&mut con, &["GET", "item:nosuch"]).await, Value::Nil);
    assert_eq!(figure(&mut con, "loads").await, 3);
    assert_eq!(figure(&mut con, "negative_hits").await, 1);
    // Keys outside every namespace behave as before.
    assert_eq!(ok(&mut con, &["GET", "plain"]).await, Value::Nil);
    // The HTTP API's GET reads through too.
    let (status, body) = http(node.http_addr, "GET", "/v1/keys/item:k5", &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, b"value-5".as_slice()));
    // INFO shows the namespace and its origin.
    let text = text_of(ok(&mut con, &["INFO", "namespaces"]).await);
    assert!(text.contains("origin_main:status=up"), "{text}");
    assert!(
        text.contains("namespace_items:prefix=item:,origin=main"),
        "{text}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn origin_errors_reach_the_client_and_are_not_cached() {
    let dir = tempfile_dir();
    let database = items_database(&dir, 3);
    let url = format!("sqlite://{}", database.display());
    let cases = [
        (
            "SELECT v FROM nosuch WHERE k = $1",
            "k1",
            "ORIGIN items: query failed: no such table: nosuch",
        ),
        (
            "SELECT v FROM twice WHERE k = $1",
            "k1",
            "ORIGIN items: load query returned 2 rows; it must return at most one",
        ),
        (
            "SELECT length(v) FROM items WHERE k = $1",
            "k1",
            "ORIGIN items: load query returned a column of type INTEGER; it must be text or blob (cast it in the query)",
        ),
        (
            "SELECT k, v FROM items WHERE k = $1",
            "k1",
            "ORIGIN items: load query returned 2 columns; it must return one text or blob column",
        ),
    ];
    for (load, key, expected) in cases {
        let catalog = items_catalog(&url, |namespace, _| namespace.load = load.into());
        let node = start_with_catalog(catalog).await;
        let mut con = connect(&node).await;
        let key = format!("item:{key}");
        assert_eq!(err(&mut con, &["GET", &key]).await, expected, "{load}");
        // Not cached: the next GET loads (and fails) again.
        assert_eq!(err(&mut con, &["GET", &key]).await, expected);
        assert_eq!(figure(&mut con, "loads").await, 2);
        assert_eq!(figure(&mut con, "load_errors").await, 2);
        assert_eq!(ok(&mut con, &["EXISTS", &key]).await, int(0));
        let (status, body) =
            http(node.http_addr, "GET", &format!("/v1/keys/{key}"), &[], b"").await;
        assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
        node.shutdown().await;
    }
}

#[tokio::test]
async fn an_origin_down_at_start_is_reported_and_cached_keys_still_serve() {
    let dir = tempfile_dir();
    let missing = dir.join("no-such-dir").join("items.db");
    let catalog = items_catalog(&format!("sqlite://{}", missing.display()), |_, _| {});
    let node = start_with_catalog(catalog).await;
    let mut con = connect(&node).await;
    let expected = format!(
        "ORIGIN items: origin main is unreachable: {}: unable to open database file",
        missing.display()
    );
    assert!(
        err(&mut con, &["GET", "item:k1"])
            .await
            .starts_with(&expected)
    );
    ok(&mut con, &["SET", "item:cached", "v"]).await;
    assert_eq!(ok(&mut con, &["GET", "item:cached"]).await, bulk("v"));
    // The node is ready (it serves what it has); /readyz and INFO name the origin.
    assert_ready_with_origin_main_down(&node).await;
    let text = text_of(ok(&mut con, &["INFO", "namespaces"]).await);
    assert!(
        text.contains("origin_main:status=down (origin main is unreachable"),
        "{text}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_row_larger_than_maxmemory_is_an_error_not_a_lost_answer() {
    let dir = tempfile_dir();
    let database = items_database(&dir, 1);
    let catalog = items_catalog(
        &format!("sqlite://{}", database.display()),
        |namespace, _| {
            namespace.load =
                "SELECT v || printf('%.*c', 3000000, 'x') FROM items WHERE k = $1".into();
        },
    );
    let node = start_with(|config| {
        config.namespaces = catalog;
        config.maxmemory = 2 << 20;
    })
    .await;
    let mut con = connect(&node).await;
    assert_eq!(
        err(&mut con, &["GET", "item:k1"]).await,
        "ORIGIN items: loaded 3000007 bytes but could not cache them: OOM command not allowed when used memory > 'maxmemory'."
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_stampede_on_three_nodes_loads_once() {
    let dir = tempfile_dir();
    let database = items_database(&dir, 5);
    // A load that takes a while, so that the GETs pile up while it runs.
    let catalog = items_catalog(
        &format!("sqlite://{}", database.display()),
        |namespace, _| {
            namespace.load =
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 300000) \
            SELECT v FROM items WHERE k = $1 AND (SELECT max(x) FROM c) > 0"
                    .into();
        },
    );
    for copies in [1, 3] {
        let nodes = start_cluster_with_catalog(3, copies, &catalog, |_| {}).await;
        let values = stampede(&nodes, "item:k2", 1000).await;
        assert!(
            values
                .iter()
                .all(|value| *value == Some("value-2".to_owned())),
            "{values:?}"
        );
        let mut loads = 0;
        for node in &nodes {
            loads += figure(&mut connect(node).await, "loads").await;
        }
        assert_eq!(loads, 1, "with {copies} copies");
        for node in nodes {
            node.shutdown().await;
        }
    }
}

/// `clients` concurrent GETs of `key`, spread over `nodes` (a few connections each).
pub(crate) async fn stampede(
    nodes: &[RunningServer],
    key: &str,
    clients: usize,
) -> Vec<Option<String>> {
    let mut connections = Vec::new();
    for node in nodes {
        for _ in 0..4 {
            connections.push(connect(node).await);
        }
    }
    let mut gets = tokio::task::JoinSet::new();
    for client in 0..clients {
        let mut con = connections[client % connections.len()].clone();
        let key = key.to_owned();
        gets.spawn(async move {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<String>>(&mut con)
                .await
                .unwrap_or_else(|error| panic!("GET {key}: {error}"))
        });
    }
    gets.join_all().await
}

#[tokio::test]
async fn ten_thousand_loaded_keys_expire_spread_over_the_jitter_window() {
    let dir = tempfile_dir();
    let database = items_database(&dir, 10_000);
    let catalog = items_catalog(
        &format!("sqlite://{}", database.display()),
        |namespace, _| {
            namespace.ttl = Some("1000s".into());
            namespace.ttl_jitter = Some(0.2);
        },
    );
    let node = start_with_catalog(catalog).await;
    let mut con = connect(&node).await;
    for batch in (1..=10_000).collect::<Vec<_>>().chunks(500) {
        let mut mget = redis::cmd("MGET");
        for i in batch {
            mget.arg(format!("item:k{i}"));
        }
        let values: Vec<Option<String>> = mget.query_async(&mut con).await.unwrap();
        assert!(values.iter().all(Option::is_some));
    }
    // Ten buckets over 800 s .. 1200 s; uniform jitter puts about 1,000 keys in each.
    let mut histogram = [0usize; 10];
    let mut pipe = redis::pipe();
    for i in 1..=10_000 {
        pipe.cmd("PTTL").arg(format!("item:k{i}"));
    }
    let ttls: Vec<i64> = pipe.query_async(&mut con).await.unwrap();
    for ttl in ttls {
        assert!(
            (790_000..=1_200_000).contains(&ttl),
            "ttl {ttl} ms outside the window"
        );
        let bucket = ((ttl - 800_000).max(0) / 40_000).min(9) as usize;
        histogram[bucket] += 1;
    }
    println!("expiry histogram (40 s buckets from 800 s): {histogram:?}");
    for count in histogram {
        assert!(
            (700..=1300).contains(&count),
            "not spread uniformly: {histogram:?}"
        );
    }
    node.shutdown().await;
}

/// `/readyz` answers 200 (the node serves what it has) and names origin `main` as down.
pub(crate) async fn assert_ready_with_origin_main_down(node: &RunningServer) {
    let (status, body) = http(node.http_addr, "GET", "/readyz", &[], b"").await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""main":{"error":"origin main is unreachable"#),
        "{body}"
    );
}

/// A text reply (INFO's) as a string.
fn text_of(value: Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
        Value::VerbatimString { text, .. } => text,
        other => panic!("not text: {other:?}"),
    }
}

/// A directory for one test's files.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = fresh_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_single_node_serves_a_stale_value_while_it_refreshes_it() {
    let dir = tempfile_dir();
    let database = items_database(&dir, 3);
    let catalog = items_catalog(
        &format!("sqlite://{}", database.display()),
        |namespace, _| {
            namespace.ttl = Some("300ms".into());
            namespace.ttl_jitter = Some(0.0);
            namespace.stale_while_revalidate = Some("60s".into());
        },
    );
    let node = start_with_catalog(catalog).await;
    let mut con = connect(&node).await;
    assert_eq!(ok(&mut con, &["GET", "item:k1"]).await, bulk("value-1"));
    rusqlite::Connection::open(&database)
        .unwrap()
        .execute("UPDATE items SET v = 'value-1-new' WHERE k = 'k1'", [])
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // Past its TTL: the old value is served at once, and one refresh starts.
    assert_eq!(ok(&mut con, &["GET", "item:k1"]).await, bulk("value-1"));
    let mut value = Value::Nil;
    for _ in 0..100 {
        value = ok(&mut con, &["GET", "item:k1"]).await;
        if value == bulk("value-1-new") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(value, bulk("value-1-new"));
    assert_eq!(figure(&mut con, "loads").await, 2);
    assert_eq!(figure(&mut con, "refreshes").await, 1);
    // The refreshed value is fresh again: it is stored for its TTL plus the window.
    let Value::Int(ttl_ms) = ok(&mut con, &["PTTL", "item:k1"]).await else {
        panic!("PTTL answers an integer");
    };
    assert!(ttl_ms > 60_000, "{ttl_ms}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_single_node_writes_through_to_sqlite() {
    let dir = tempfile_dir();
    let database = items_database(&dir, 1);
    let catalog = items_catalog(
        &format!("sqlite://{}", database.display()),
        |namespace, _| {
            namespace.write = Some("through".into());
            namespace.store = Some(
            "INSERT INTO items (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
                .into(),
        );
            namespace.delete = Some("DELETE FROM items WHERE k = $1".into());
        },
    );
    let node = start_with_catalog(catalog).await;
    let mut con = connect(&node).await;
    let row = |key: &str| -> Option<String> {
        rusqlite::Connection::open(&database)
            .unwrap()
            .query_row("SELECT v FROM items WHERE k = ?1", [key], |row| row.get(0))
            .ok()
    };
    ok(&mut con, &["SET", "item:k1", "written"]).await;
    assert_eq!(row("k1").as_deref(), Some("written"));
    // The HTTP API's writes take the same path.
    let (status, _) = http(node.http_addr, "PUT", "/v1/keys/item:k2", &[], b"put").await;
    assert_eq!(status, 204);
    assert_eq!(row("k2").as_deref(), Some("put"));
    assert_eq!(
        ok(&mut con, &["DEL", "item:k1", "item:k2", "plain"]).await,
        int(2)
    );
    assert_eq!((row("k1"), row("k2")), (None, None));
    assert_eq!(
        err(&mut con, &["GETDEL", "item:k3"]).await,
        "ERR namespace items writes through to its origin: only SET, DEL and UNLINK may change its keys, not GETDEL"
    );
    assert_eq!(figure(&mut con, "origin_writes").await, 4);
    node.shutdown().await;
}

#[tokio::test]
async fn an_http_origin_is_read_through_with_its_statuses() {
    use axum::extract::Path as UrlPath;
    use axum::http::StatusCode;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // A service that answers /items/<key>, counting its requests.
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let service = axum::Router::new().route(
        "/items/{key}",
        axum::routing::get(move |UrlPath(key): UrlPath<String>| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
                match key.as_str() {
                    "missing" => (StatusCode::NOT_FOUND, String::new()),
                    "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
                    "slow" => {
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        (StatusCode::OK, "late".into())
                    }
                    key => (StatusCode::OK, format!("value-{key}")),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, service).await });

    let catalog = items_catalog(
        &format!("http://{addr}/items/{{key}}"),
        |namespace, origin| {
            namespace.load = String::new();
            origin.timeout = Some("300ms".into());
        },
    );
    let node = start_with_catalog(catalog).await;
    let mut con = connect(&node).await;
    assert_eq!(ok(&mut con, &["GET", "item:k1"]).await, bulk("value-k1"));
    assert_eq!(ok(&mut con, &["GET", "item:k1"]).await, bulk("value-k1"));
    assert_eq!(
        requests.load(Ordering::Relaxed),
        1,
        "the second GET was a hit"
    );
    // The key is one path segment, percent-encoded.
    assert_eq!(
        ok(&mut con, &["GET", "item:a b/c?"]).await,
        bulk("value-a b/c?")
    );
    assert_eq!(ok(&mut con, &["GET", "item:missing"]).await, Value::Nil);
    assert_eq!(
        err(&mut con, &["GET", "item:broken"]).await,
        format!(
            "ORIGIN items: query failed: http://{addr}/items/broken answered HTTP 500 Internal Server Error"
        )
    );
    assert_eq!(
        err(&mut con, &["GET", "item:slow"]).await,
        "ORIGIN items: origin main did not answer within 300ms"
    );
    // HTTP origins are read-only.
    let refused = quorra_origin::config::check(
        &BTreeMap::from([(
            "main".to_owned(),
            OriginSpec {
                url: format!("http://{addr}/items/{{key}}"),
                ..OriginSpec::default()
            },
        )]),
        &[NamespaceSpec {
            name: "items".into(),
            prefix: "item:".into(),
            origin: "main".into(),
            write: Some("through".into()),
            store: Some("PUT".into()),
            ..NamespaceSpec::default()
        }],
    )
    .unwrap_err();
    assert_eq!(refused.field, "namespaces.items.write");
    node.shutdown().await;
}
