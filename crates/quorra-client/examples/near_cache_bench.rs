//! Reads through quorra-client, three ways, to see what routing and the near cache save:
//!
//! - `through-node`: every request to the seed node, as a plain client sends it (the node
//!   forwards what it does not own), no near cache;
//! - `primary`: each key straight to its primary, no near cache;
//! - `near-cache`: straight to the primary, with the near cache (tracking on).
//!
//! Usage: `near_cache_bench SEED_ADDR MODE SECONDS TASKS KEYS`. Stores KEYS keys of 100
//! bytes, then TASKS tasks GET random ones (uniformly) for SECONDS and it prints one JSON
//! line: requests per second and the latency percentiles in microseconds.
//! `scripts/bench-cluster --sections client` runs it against clusters and compares.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use quorra_client::{Client, ClientConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, seed, mode, seconds, tasks, keys] = &args[..] else {
        return Err(
            "usage: near_cache_bench SEED_ADDR through-node|primary|near-cache SECONDS TASKS KEYS"
                .into(),
        );
    };
    let seed: SocketAddr = seed.parse()?;
    let (route_to_primary, near_cache_bytes) = match mode.as_str() {
        "through-node" => (false, 0),
        "primary" => (true, 0),
        "near-cache" => (true, 64 << 20),
        other => return Err(format!("unknown mode {other}").into()),
    };
    let duration = Duration::from_secs(seconds.parse()?);
    let tasks: usize = tasks.parse()?;
    let keys: u64 = keys.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = ClientConfig {
            route_to_primary,
            near_cache_bytes,
            ..ClientConfig::default()
        };
        let client = Client::connect(seed, config).await?;
        let value = vec![b'v'; 100];
        for key in 0..keys {
            client.set(format!("bench:{key}").as_bytes(), &value, None).await?;
        }
        // Each task watches the clock itself: a read the near cache answers never waits,
        // so a task that only reads from it would not let a timer task run.
        let end = Instant::now() + duration;
        let mut workers = Vec::new();
        for task in 0..tasks {
            let client = client.clone();
            workers.push(tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new(3).expect("three significant figures");
                // xorshift64: a different uniform sequence per task.
                let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (task as u64 + 1);
                let mut reads = 0u64;
                while Instant::now() < end {
                    reads += 1;
                    if reads % 64 == 0 {
                        // Let the other tasks have the thread now and then.
                        tokio::task::yield_now().await;
                    }
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let key = format!("bench:{}", state % keys);
                    let started = Instant::now();
                    client.get(key.as_bytes()).await?;
                    histogram.record(started.elapsed().as_nanos() as u64).ok();
                }
                Ok::<_, quorra_client::Error>(histogram)
            }));
        }
        let mut total = Histogram::<u64>::new(3).expect("three significant figures");
        for worker in workers {
            total.add(worker.await??)?;
        }
        let micros = |quantile: f64| total.value_at_quantile(quantile) as f64 / 1000.0;
        println!(
            "{{\"mode\":\"{mode}\",\"ops_per_sec\":{:.0},\"p50_us\":{:.2},\"p99_us\":{:.2},\"p999_us\":{:.2}}}",
            total.len() as f64 / duration.as_secs_f64(),
            micros(0.5),
            micros(0.99),
            micros(0.999),
        );
        Ok(())
    })
}
