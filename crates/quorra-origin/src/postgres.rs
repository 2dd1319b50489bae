//! The PostgreSQL origin: tokio-postgres connections in a deadpool pool, statements
//! prepared once per connection.
//!
//! The key is bound to `$1` (and a stored value to `$2`) by the type PostgreSQL infers
//! for it: text types get it as text (it must be UTF-8), `bytea` as bytes, integer
//! types as the number it spells. The loaded value column must be text or `bytea`.

use std::str::FromStr;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row, Statement};

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

    /// A pooled connection, and `statement` prepared on it (once per connection).
    async fn prepare(&self, statement: &str) -> Result<(CancelOnDrop, Statement), OriginError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|error| self.unreachable(error))?;
        let running = CancelOnDrop(Some(client));
        let prepared = running
            .client()
            .prepare_cached(statement)
            .await
            .map_err(|error| self.failed(error))?;
        Ok((running, prepared))
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
    fn client(&self) -> &Object {
        self.0.as_ref().expect("held until finished or dropped")
    }

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

/// `bytes` (the key, or a value) as the value of a parameter `$n` of type `kind`.
fn parameter(
    n: usize,
    kind: &Type,
    bytes: &[u8],
) -> Result<Box<dyn ToSql + Sync + Send>, OriginError> {
    let what = if n == 1 { "the key" } else { "the value" };
    let text = || {
        std::str::from_utf8(bytes).map_err(|_| {
            OriginError::Shape(format!(
                "{what} is not UTF-8 but ${n} has type {kind}; make it bytea (${n}::bytea)"
            ))
        })
    };
    let integer = || {
        text()?.parse::<i64>().map_err(|_| {
            OriginError::Shape(format!("{what} is not an integer but ${n} has type {kind}"))
        })
    };
    let out_of_range =
        || OriginError::Shape(format!("{what} is out of range for ${n}'s type {kind}"));
    Ok(match *kind {
        Type::BYTEA => Box::new(bytes.to_vec()),
        Type::INT8 => Box::new(integer()?),
        Type::INT4 => Box::new(i32::try_from(integer()?).map_err(|_| out_of_range())?),
        Type::INT2 => Box::new(i16::try_from(integer()?).map_err(|_| out_of_range())?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            Box::new(text()?.to_owned())
        }
        _ => {
            return Err(OriginError::Shape(format!(
                "${n} has type {kind}; cast it in the statement (${n}::text) or compare with a text, bytea or integer column"
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
        let (running, statement) = self.prepare(query).await?;
        let client = running.client();
        let Some(kind) = statement.params().first() else {
            return Err(OriginError::Shape(
                "the load query has no $1 parameter for the key".into(),
            ));
        };
        let key = parameter(1, kind, key)?;
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

    async fn execute(&self, statement: &str, parameters: &[&[u8]]) -> Result<u64, OriginError> {
        let (running, prepared) = self.prepare(statement).await?;
        let client = running.client();
        if prepared.params().len() != parameters.len() {
            return Err(OriginError::Shape(format!(
                "the statement takes {} parameters; it must take {} ($1 the key{})",
                prepared.params().len(),
                parameters.len(),
                if parameters.len() > 1 {
                    ", $2 the value"
                } else {
                    ""
                }
            )));
        }
        let values = prepared
            .params()
            .iter()
            .zip(parameters)
            .enumerate()
            .map(|(index, (kind, bytes))| parameter(index + 1, kind, bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let references: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|value| value.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let changed = client.execute(&prepared, &references).await;
        running.finished();
        changed.map_err(|error| self.failed(error))
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
