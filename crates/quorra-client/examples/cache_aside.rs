//! Cache-aside with quorra-client: a slow "database" behind the cluster, read through
//! `get_or_load`, with the near cache answering repeated reads.
//!
//! Start a cluster (`quorra up`, see the README), then:
//!
//!     cargo run -p quorra-client --example cache_aside -- 127.0.0.1:6379
//!
//! It prints what each step took: the first read loads from the database (once, however
//! many callers ask at the same time), the next comes from the cluster or the near cache,
//! and a write through any node replaces what the near cache holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quorra_client::{Client, ClientConfig};

/// The "database": 100 ms per query, counted.
async fn query_database(queries: &AtomicUsize, user: u32) -> Result<Bytes, String> {
    queries.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(Bytes::from(format!(
        "{{\"id\":{user},\"name\":\"user {user}\"}}"
    )))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6379".to_owned())
        .parse()?;
    let client = Client::connect(seed, ClientConfig::default()).await?;
    let queries = Arc::new(AtomicUsize::new(0));
    let key = b"example:user:42";
    client.del(key).await?;

    // Fifty callers miss at once: one query.
    let started = Instant::now();
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let (client, queries) = (client.clone(), queries.clone());
            tokio::spawn(async move {
                client
                    .get_or_load(key, Duration::from_secs(300), || async {
                        query_database(&queries, 42).await
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        caller.await??;
    }
    println!(
        "50 concurrent misses: {} database query, {:?}",
        queries.load(Ordering::Relaxed),
        started.elapsed()
    );

    let started = Instant::now();
    let value = client.get(key).await?;
    println!(
        "read again (near cache): {:?} in {:?}",
        value,
        started.elapsed()
    );

    // A write elsewhere reaches the near cache before it is acknowledged.
    client
        .set(key, b"{\"id\":42,\"name\":\"renamed\"}", None)
        .await?;
    println!("after a write: {:?}", client.get(key).await?);
    let (entries, bytes) = client.near_cache_size();
    println!("near cache: {entries} entries, {bytes} bytes");
    Ok(())
}
