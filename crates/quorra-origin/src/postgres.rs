//! The PostgreSQL origin: tokio-postgres connections in a deadpool pool, statements
//! prepared once per connection.
//!
//! The key is bound to `$1` by the type PostgreSQL infers for it: text types get the
//! key as text (it must be UTF-8), `bytea` as bytes, integer types as the number the
//! key spells. The value column must be text or `bytea`.

use std::str::FromStr;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};

use crate::origin::{Origin, OriginError, not_bytes, too_many_rows, wrong_column_count};

/// A PostgreSQL server behind a pool of connections.
pub struct Postgres {
    name: String,
    pool: Pool,
}

impl Postgres {
    /// The origin `name` at `url` (checked by [`crate::config::check`]), with at most
    /// `pool` connections; connects on first use.
    pub fn new(name: &str, url: &str, pool: usize) -> Postgres {
        let config =
            tokio_postgres::Config::from_str(url).expect("the configuration check read this URL");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Building fails only when a timeout is set without a runtime; none is set.
        let pool = Pool::builder(manager)
            .max_size(pool)
            .build()
            .expect("a pool without timeouts always builds");
        Postgres {
            name: name.to_owned(),
            pool,
        }
    }

    fn unreachable(&self, reason: impl ToString) -> OriginError {
        OriginError::Unreachable {
            origin: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    fn failed(&self, error: tokio_postgres::Error) -> OriginError {
        match error.as_db_error() {
            Some(db) => OriginError::Query(db.message().to_owned()),
            None if error.is_closed() => self.unreachable(error),
            None => OriginError::Query(error.to_string()),
        }
    }
}

/// A pooled connection with a query in progress. Dropped before [`finished`]
/// (the origin's timeout passed), it leaves the pool and the server is asked to cancel
/// the query: the connection is not handed to the next load while still busy, and the
/// cancel cannot reach that load's query.
///
/// [`finished`]: CancelOnDrop::finished
struct CancelOnDrop(Option<Object>);

impl CancelOnDrop {
    /// The query ended: the connection goes back to the pool.
    fn finished(mut self) {
        drop(self.0.take());
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else {
            return;
        };
        let cancel = client.cancel_token();
        let detached = Object::take(client);
        tokio::spawn(async move {
            let _ = cancel.cancel_query(NoTls).await;
            drop(detached);
        });
    }
}

/// The key as the value of a `$1` of type `kind`.
fn key_parameter(kind: &Type, key: &[u8]) -> Result<Box<dyn ToSql + Sync + Send>, OriginError> {
    let text = || {
        std::str::from_utf8(key).map_err(|_| {
            OriginError::Shape(format!(
                "the key is not UTF-8 but $1 has type {kind}; make it bytea ($1::bytea)"
            ))
        })
    };
    let integer = || {
        text()?.parse::<i64>().map_err(|_| {
            OriginError::Shape(format!("the key is not an integer but $1 has type {kind}"))
        })
    };
    Ok(match *kind {
        Type::BYTEA => Box::new(key.to_vec()),
        Type::INT8 => Box::new(integer()?),
        Type::INT4 => Box::new(i32::try_from(integer()?).map_err(|_| {
            OriginError::Shape("the key is out of range for $1's type int4".into())
        })?),
        Type::INT2 => Box::new(i16::try_from(integer()?).map_err(|_| {
            OriginError::Shape("the key is out of range for $1's type int2".into())
        })?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            Box::new(text()?.to_owned())
        }
        _ => {
            return Err(OriginError::Shape(format!(
                "$1 has type {kind}; cast it in the query ($1::text) or compare with a text, bytea or integer column"
            )));
        }
    })
}

fn value_of(row: &Row) -> Result<Bytes, OriginError> {
    if row.len() != 1 {
        return Err(wrong_column_count(row.len()));
    }
    let kind = row.columns()[0].type_().clone();
    let read = |error: tokio_postgres::Error| OriginError::Query(error.to_string());
    let value = match kind {
        Type::BYTEA => row
            .try_get::<_, Option<&[u8]>>(0)
            .map_err(read)?
            .map(Bytes::copy_from_slice),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<&str>>(0)
            .map_err(read)?
            .map(|text| Bytes::copy_from_slice(text.as_bytes())),
        other => return Err(not_bytes(other.name())),
    };
    value.ok_or_else(|| not_bytes("NULL"))
}

#[async_trait]
impl Origin for Postgres {
    async fn load(&self, query: &str, key: &[u8]) -> Result<Option<Bytes>, OriginError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|error| self.unreachable(error))?;
        let running = CancelOnDrop(Some(client));
        let client = running.0.as_ref().expect("set above");
        let statement = client
            .prepare_cached(query)
            .await
            .map_err(|error| self.failed(error))?;
        let Some(kind) = statement.params().first() else {
            return Err(OriginError::Shape(
                "the load query has no $1 parameter for the key".into(),
            ));
        };
        let key = key_parameter(kind, key)?;
        let rows = client
            .query(&statement, &[key.as_ref() as &(dyn ToSql + Sync)])
            .await;
        running.finished();
        let rows = rows.map_err(|error| self.failed(error))?;
        match rows.as_slice() {
            [] => Ok(None),
            [row] => value_of(row).map(Some),
            more => Err(too_many_rows(more.len())),
        }
    }

    async fn check(&self) -> Result<(), OriginError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|error| self.unreachable(error))?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|error| self.failed(error))?;
        Ok(())
    }
}
