//! The embedded origin: an SQLite file, through rusqlite (SQLite compiled in, so the
//! demo needs no database server).
//!
//! rusqlite is synchronous, so each query runs on tokio's blocking pool, on one of at
//! most `pool` connections. Connections are opened when first needed.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, InterruptHandle, OpenFlags};
use tokio::sync::Semaphore;

use crate::origin::{Origin, OriginError, not_bytes, too_many_rows, wrong_column_count};

/// An SQLite file with a pool of connections.
pub struct Sqlite {
    name: String,
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Semaphore,
}

impl Sqlite {
    /// The origin `name` on the file at `path`, with at most `pool` connections.
    pub fn new(name: &str, path: PathBuf, pool: usize) -> Sqlite {
        Sqlite {
            name: name.to_owned(),
            path,
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Semaphore::new(pool),
        }
    }

    /// Runs `work` on a pooled connection, on the blocking pool. If the caller stops
    /// waiting (the origin's timeout), the statement is interrupted and its connection
    /// closed, so that a slow query does not hold a connection after its answer stopped
    /// mattering.
    async fn with_connection<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, OriginError> + Send + 'static,
    ) -> Result<T, OriginError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let idle = self.idle.clone();
        let (name, path) = (self.name.clone(), self.path.clone());
        let running = Arc::new(Mutex::new(Running::default()));
        let guard = InterruptOnDrop(running.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let pooled = idle.lock().pop();
            let connection = match pooled {
                Some(connection) => connection,
                None => open(&name, &path)?,
            };
            running.lock().interrupt = Some(connection.get_interrupt_handle());
            let outcome = work(&connection);
            let mut running = running.lock();
            running.interrupt = None;
            if !running.abandoned {
                idle.lock().push(connection);
            }
            outcome
        })
        .await
        .map_err(|error| OriginError::Query(format!("the query's task failed: {error}")))?;
        // The statement has ended: dropping the guard interrupts nothing.
        drop(guard);
        outcome
    }
}

/// A statement in progress, as its caller and its blocking task both see it.
#[derive(Default)]
struct Running {
    /// Set while the statement runs.
    interrupt: Option<InterruptHandle>,
    /// The caller stopped waiting: the connection is closed, not pooled.
    abandoned: bool,
}

/// Interrupts the statement if the load is dropped before it ends. The handle is used
/// only under the lock, while the task still holds the connection, so it can never
/// interrupt a statement of a later load.
struct InterruptOnDrop(Arc<Mutex<Running>>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        let mut running = self.0.lock();
        running.abandoned = true;
        if let Some(handle) = &running.interrupt {
            handle.interrupt();
        }
    }
}

fn open(name: &str, path: &PathBuf) -> Result<Connection, OriginError> {
    // Read-write without create: a missing file is a configuration error, not a new
    // empty database.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection =
        Connection::open_with_flags(path, flags).map_err(|error| OriginError::Unreachable {
            origin: name.to_owned(),
            reason: format!("{}: {error}", path.display()),
        })?;
    // Another connection writing (the application, or a second node) makes SQLite
    // return SQLITE_BUSY at once; waiting a little is what callers expect.
    connection
        .busy_timeout(std::time::Duration::from_secs(1))
        .map_err(|error| OriginError::Query(error.to_string()))?;
    Ok(connection)
}

fn load_row(
    connection: &Connection,
    query: &str,
    key: &[u8],
) -> Result<Option<Bytes>, OriginError> {
    let query_error = |error: rusqlite::Error| OriginError::Query(error.to_string());
    let mut statement = connection.prepare_cached(query).map_err(query_error)?;
    if statement.column_count() != 1 {
        return Err(wrong_column_count(statement.column_count()));
    }
    let mut rows = statement.query([sqlite_value(key)]).map_err(query_error)?;
    let Some(row) = rows.next().map_err(query_error)? else {
        return Ok(None);
    };
    let value = match row.get_ref(0).map_err(query_error)? {
        ValueRef::Text(text) => Bytes::copy_from_slice(text),
        ValueRef::Blob(blob) => Bytes::copy_from_slice(blob),
        ValueRef::Null => return Err(not_bytes("NULL")),
        ValueRef::Integer(_) => return Err(not_bytes("INTEGER")),
        ValueRef::Real(_) => return Err(not_bytes("REAL")),
    };
    let mut extra = 0;
    while rows.next().map_err(query_error)?.is_some() {
        extra += 1;
    }
    if extra > 0 {
        return Err(too_many_rows(extra + 1));
    }
    Ok(Some(value))
}

/// A parameter as SQLite binds it: text when it is UTF-8 (so that it compares equal to
/// text columns), a blob otherwise.
fn sqlite_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::Text(text.to_owned()),
        Err(_) => Value::Blob(bytes.to_vec()),
    }
}

#[async_trait]
impl Origin for Sqlite {
    async fn execute(&self, statement: &str, parameters: &[&[u8]]) -> Result<u64, OriginError> {
        let statement = statement.to_owned();
        let values: Vec<Value> = parameters.iter().map(|bytes| sqlite_value(bytes)).collect();
        self.with_connection(move |connection| {
            let query_error = |error: rusqlite::Error| OriginError::Query(error.to_string());
            let mut prepared = connection.prepare_cached(&statement).map_err(query_error)?;
            let changed = prepared
                .execute(rusqlite::params_from_iter(values))
                .map_err(query_error)?;
            Ok(changed as u64)
        })
        .await
    }

    async fn load(&self, query: &str, key: &[u8]) -> Result<Option<Bytes>, OriginError> {
        let (query, key) = (query.to_owned(), key.to_vec());
        self.with_connection(move |connection| load_row(connection, &query, &key))
            .await
    }

    async fn check(&self) -> Result<(), OriginError> {
        self.with_connection(|connection| {
            connection
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|error| OriginError::Query(error.to_string()))
        })
        .await
    }
}

/// Rows of the demo database.
pub const DEMO_ROWS: usize = 1000;

/// The demo namespace of `quorra up`, as config-file text, for an SQLite file at
/// `path` written by [`write_demo_database`].
pub fn demo_config(path: &std::path::Path) -> String {
    format!(
        r#"# The demo namespace `quorra up` starts with: keys product:1 .. product:{DEMO_ROWS}
# are read through from the SQLite file below on a miss, and SET and DEL of product:
# keys are written behind to it, about a second later.
[origins.demo]
url = "sqlite://{path}"
pool = 4
timeout = "2s"

[[namespaces]]
name = "products"
prefix = "product:"
ttl = "60s"
ttl-jitter = 0.1
negative-ttl = "5s"
origin = "demo"
load = "SELECT doc FROM products WHERE id = $1"
write = "behind"
store = "INSERT INTO products (id, doc) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"
delete = "DELETE FROM products WHERE id = $1"
"#,
        path = path.display()
    )
}

/// Creates (or recreates) the demo database at `path`: a `products` table of
/// [`DEMO_ROWS`] rows, `id` `1`.. with a JSON document each.
pub fn write_demo_database(path: &std::path::Path) -> rusqlite::Result<()> {
    let mut connection = Connection::open(path)?;
    let transaction = connection.transaction()?;
    transaction.execute_batch(
        "DROP TABLE IF EXISTS products;
         CREATE TABLE products (id TEXT PRIMARY KEY, doc TEXT NOT NULL);",
    )?;
    {
        let mut insert = transaction.prepare("INSERT INTO products (id, doc) VALUES (?1, ?2)")?;
        for id in 1..=DEMO_ROWS {
            let doc = format!(
                r#"{{"id":{id},"name":"Product {id}","price_cents":{},"stock":{}}}"#,
                199 + (id * 37) % 5000,
                (id * 13) % 100
            );
            insert.execute((id.to_string(), doc))?;
        }
    }
    transaction.commit()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn demo() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE t (k TEXT PRIMARY KEY, v, n INTEGER);
                 INSERT INTO t VALUES ('a', 'alpha', 1), ('b', x'00ff', 2), ('c', NULL, 3);
                 CREATE TABLE dup (k TEXT, v TEXT);
                 INSERT INTO dup VALUES ('d', 'one'), ('d', 'two');",
            )
            .unwrap();
        (dir, Sqlite::new("main", path, 2))
    }

    #[tokio::test]
    async fn a_row_is_a_value_and_no_row_is_none() {
        let (_dir, origin) = demo();
        let load = "SELECT v FROM t WHERE k = $1";
        assert_eq!(
            origin.load(load, b"a").await.unwrap(),
            Some(Bytes::from("alpha"))
        );
        assert_eq!(
            origin.load(load, b"b").await.unwrap(),
            Some(Bytes::from_static(b"\x00\xff"))
        );
        assert_eq!(origin.load(load, b"zz").await.unwrap(), None);
        origin.check().await.unwrap();
    }

    #[tokio::test]
    async fn answers_of_the_wrong_shape_are_errors() {
        let (_dir, origin) = demo();
        let shape = |result: Result<Option<Bytes>, OriginError>| match result {
            Err(OriginError::Shape(text)) => text,
            other => panic!("expected a shape error, got {other:?}"),
        };
        let text = shape(origin.load("SELECT n FROM t WHERE k = $1", b"a").await);
        assert!(text.contains("INTEGER"), "{text}");
        let text = shape(origin.load("SELECT v FROM t WHERE k = $1", b"c").await);
        let store =
            "INSERT INTO t (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v";
        assert_eq!(origin.execute(store, &[b"a", b"new"]).await.unwrap(), 1);
        assert_eq!(
            origin
                .load("SELECT v FROM t WHERE k = $1", b"a")
                .await
                .unwrap(),
            Some(Bytes::from("new"))
        );
        assert!(text.contains("NULL"), "{text}");
        let text = shape(origin.load("SELECT v FROM dup WHERE k = $1", b"d").await);
        assert!(text.contains("2 rows"), "{text}");
        let text = shape(origin.load("SELECT k, v FROM t WHERE k = $1", b"a").await);
        assert!(text.contains("2 columns"), "{text}");
        assert!(matches!(
            origin.load("SELECT v FROM nosuch WHERE k = $1", b"a").await,
            Err(OriginError::Query(_))
        ));
    }

    #[tokio::test]
    async fn the_demo_database_answers_the_demo_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.db");
        write_demo_database(&path).unwrap();
        // Written twice (a second `quorra up` in the same directory): still one set.
        write_demo_database(&path).unwrap();
        let text = demo_config(&path);
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "kebab-case")]
        struct File {
            origins: std::collections::BTreeMap<String, crate::OriginSpec>,
            namespaces: Vec<crate::NamespaceSpec>,
        }
        let file: File = toml::from_str(&text).unwrap();
        let catalog = crate::config::check(&file.origins, &file.namespaces).unwrap();
        let namespace = &catalog.namespaces()[0];
        let origin = Sqlite::new("demo", path, 1);
        let value = origin
            .load(&namespace.load, namespace.origin_key(b"product:7"))
            .await
            .unwrap()
            .unwrap();
        assert!(value.starts_with(br#"{"id":7,"#), "{value:?}");
        let last = format!("product:{DEMO_ROWS}");
        let key = namespace.origin_key(last.as_bytes());
        assert!(origin.load(&namespace.load, key).await.unwrap().is_some());
        let past = format!("product:{}", DEMO_ROWS + 1);
        let key = namespace.origin_key(past.as_bytes());
        assert_eq!(origin.load(&namespace.load, key).await.unwrap(), None);
        // Writes behind: the store and delete statements work on the demo table.
        let store = namespace.store.as_deref().unwrap();
        assert_eq!(origin.execute(store, &[key, b"{}"]).await.unwrap(), 1);
        assert!(origin.load(&namespace.load, key).await.unwrap().is_some());
        let delete = namespace.delete.as_deref().unwrap();
        assert_eq!(origin.execute(delete, &[key]).await.unwrap(), 1);
    }

    /// A load query that runs for minutes.
    const SLOW_LOAD: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
         SELECT v FROM t WHERE k = $1 AND (SELECT max(x) FROM (SELECT x FROM c LIMIT 10000000000)) > 0";

    #[tokio::test]
    async fn a_load_abandoned_at_its_timeout_frees_its_connection() {
        let (dir, _) = demo();
        let origin = Sqlite::new("main", dir.path().join("t.db"), 1);
        let abandoned =
            tokio::time::timeout(Duration::from_millis(50), origin.load(SLOW_LOAD, b"a")).await;
        assert!(abandoned.is_err(), "the slow query cannot end in 50 ms");
        // One connection in the pool: without the interrupt, this load would wait for the
        // slow statement (minutes).
        let next = tokio::time::timeout(
            Duration::from_secs(30),
            origin.load("SELECT v FROM t WHERE k = $1", b"a"),
        )
        .await
        .expect("the slow statement was interrupted");
        assert_eq!(next.unwrap(), Some(Bytes::from("alpha")));
    }

    #[tokio::test]
    async fn a_missing_file_is_unreachable() {
        let origin = Sqlite::new("main", "/nonexistent/dir/x.db".into(), 1);
        assert!(matches!(
            origin.check().await,
            Err(OriginError::Unreachable { .. })
        ));
    }
}
