//! The [`Origin`] trait every database driver implements, and its error.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// Why a load did not give an answer. The client sees `-ORIGIN <namespace>: <this>`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OriginError {
    /// The database could not be reached or refused the connection.
    #[error("origin {origin} is unreachable: {reason}")]
    Unreachable {
        /// The origin's name.
        origin: String,
        /// The driver's words.
        reason: String,
    },
    /// The load took longer than the origin's timeout.
    #[error("origin {origin} did not answer within {}ms", timeout.as_millis())]
    Timeout {
        /// The origin's name.
        origin: String,
        /// Its timeout.
        timeout: Duration,
    },
    /// The database refused the query.
    #[error("query failed: {0}")]
    Query(String),
    /// The query answered something other than no row or one row of one text or blob
    /// column.
    #[error("{0}")]
    Shape(String),
}

/// A database that namespaces load from. Drivers open connections lazily: a database
/// that is down when the node starts is reported by [`Origin::check`], not fatal.
#[async_trait]
pub trait Origin: Send + Sync {
    /// Runs `query` with `$1` bound to `key`: `Ok(None)` when it returns no row,
    /// `Ok(Some(value))` for one row of one text or blob column, an error otherwise.
    async fn load(&self, query: &str, key: &[u8]) -> Result<Option<Bytes>, OriginError>;

    /// Runs the write `statement` with `$1`, `$2`, ... bound to `parameters` (the key,
    /// and for a store the value); the rows it changed.
    async fn execute(&self, statement: &str, parameters: &[&[u8]]) -> Result<u64, OriginError>;

    /// Whether the database answers now.
    async fn check(&self) -> Result<(), OriginError>;
}

/// The error for a query that returned `rows` rows.
pub(crate) fn too_many_rows(rows: usize) -> OriginError {
    OriginError::Shape(format!(
        "load query returned {rows} rows; it must return at most one"
    ))
}

/// The error for a row with `columns` columns.
pub(crate) fn wrong_column_count(columns: usize) -> OriginError {
    OriginError::Shape(format!(
        "load query returned {columns} columns; it must return one text or blob column"
    ))
}

/// The error for a column of type `kind`.
pub(crate) fn not_bytes(kind: &str) -> OriginError {
    OriginError::Shape(format!(
        "load query returned a column of type {kind}; it must be text or blob (cast it in the query)"
    ))
}
