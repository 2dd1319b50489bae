//! `quorra bench`: a load generator for Redis-protocol caches.
//!
//! redis-benchmark measures one command at a time against uniformly chosen keys, as fast as
//! it can. A cache sees something else: a few keys far more popular than the rest, a mix
//! of reads and writes whose hit ratio matters as much as its speed, load arriving at a
//! rate set by users rather than by the server's speed, and several nodes at once. This
//! crate generates that traffic and measures it honestly. It speaks plain RESP (GET, MGET,
//! `SET [EX]`, DEL, AUTH), so it runs against quorra and Redis alike.
//!
//! # Components
//!
//! - [`args`]: [`BenchArgs`], the `quorra bench` flags, and their parsers.
//! - [`workload`]: the operation mix, the key-popularity samplers (uniform, Zipf by
//!   rejection-inversion, hotspot) and the rank → key permutation.
//! - [`schedule`]: the open-loop schedule of intended send times, why latency is
//!   measured from it (no coordinated omission), and the pacer thread that releases
//!   requests on time.
//! - `driver` (private): one tokio task per connection, a pipelined writer and a reply
//!   reader; preloading.
//! - [`report`]: per-operation counters and HdrHistograms, the table and the JSON.
//!
//! Entry points: [`run`] (a library call returning a [`Report`], used by the tests) and
//! [`main`] (what the `quorra bench` subcommand calls: builds a runtime, prints the report).
//!
//! # Modes
//!
//! Without `--rate` the load is **closed loop**: each connection keeps `--pipeline`
//! requests in flight, which measures the most the targets can do. With `--rate R` it is
//! **open loop**: `R` requests per second in total on a fixed schedule, with latency counted
//! from each request's intended send time, which measures what users at that load see.
//!
//! # Non-goals
//!
//! Cluster-aware routing (send to any node; quorra nodes forward), commands other than
//! strings, RESP3, TLS, and coordinating several load-generator machines. The generator
//! shares the machine with the server in local runs; on a small box it competes for the
//! same cores, which `--threads` (default 1) keeps bounded.

pub mod args;
mod driver;
pub mod report;
pub mod schedule;
pub mod workload;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use args::BenchArgs;
pub use report::Report;

use driver::{Plan, Shared, Stop};
use workload::{KeyPermutation, KeySampler, OpMix};

/// Delay between the last connection being opened and the start of the schedule, so that
/// every connection task is running before its first intended send time.
const START_DELAY: Duration = Duration::from_millis(20);
/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A target refused the connection or could not be resolved: check `--target`.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The target.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The target rejected `AUTH`: check `--password`.
    #[error("{addr} rejected AUTH: {message}")]
    Auth {
        /// The target.
        addr: String,
        /// The server's error text.
        message: String,
    },
    /// Reading or writing failed mid-run.
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// The target.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server closed a connection mid-run.
    #[error("{addr} closed the connection")]
    Closed {
        /// The target.
        addr: String,
    },
    /// The server sent something that is not RESP.
    #[error("malformed reply from {addr}: {source}")]
    Protocol {
        /// The target.
        addr: String,
        /// The parse error.
        source: quorra_resp::ProtocolError,
    },
    /// No reply for too long: the server is stuck or overloaded beyond measuring.
    #[error("no reply from {addr} for {after:?}")]
    Timeout {
        /// The target.
        addr: String,
        /// How long we waited.
        after: Duration,
    },
    /// Some preload SETs got error replies (e.g. out of memory).
    #[error("preload: {errors} SETs failed, the first with: {first}")]
    Preload {
        /// Number of error replies.
        errors: u64,
        /// The first error text.
        first: String,
    },
    /// A connection task panicked or was cancelled (a bug).
    #[error("load generator task failed: {0}")]
    Task(String),
}

/// Runs the benchmark described by `args` and returns its report. Draws no progress bar;
/// see [`run_with_progress`].
pub async fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    run_with_progress(args, false).await
}

/// Runs the benchmark; with `show_progress`, draws progress bars on stderr (preload and
/// run).
pub async fn run_with_progress(
    args: &BenchArgs,
    show_progress: bool,
) -> Result<Report, BenchError> {
    let plan = Arc::new(plan(args));
    if args.preload {
        preload(&plan, show_progress).await?;
    }

    let mut streams = Vec::with_capacity(plan.connections as usize);
    for index in 0..plan.connections {
        streams.push(driver::connect(plan.target(index), plan.password.as_deref()).await?);
    }
    let shared = Arc::new(Shared {
        tickets: AtomicU64::new(match plan.stop {
            Stop::Requests(n) => n,
            Stop::After(_) => 0,
        }),
        completed: AtomicU64::new(0),
    });
    let start = Instant::now() + START_DELAY;
    let pacer = plan.rate.map(|rate| {
        let schedule = schedule::Schedule::new(rate, 1, 0);
        PacerGuard(schedule::Pacer::start(
            rate,
            plan.connections,
            start.into_std(),
            plan.open_loop_end(schedule),
        ))
    });
    let mut tasks = JoinSet::new();
    for (index, stream) in (0..).zip(streams) {
        tasks.spawn(driver::run_connection(
            Arc::clone(&plan),
            Arc::clone(&shared),
            index,
            stream,
            start,
            pacer.as_ref().map(|guard| Arc::clone(&guard.0)),
        ));
    }
    let bar = show_progress.then(|| run_bar(&plan, Arc::clone(&shared), start));

    let mut stats = report::Stats::default();
    let mut last_reply: Option<Instant> = None;
    let mut warmup_ops = 0;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.map_err(|error| BenchError::Task(error.to_string()))??;
        stats.merge(&outcome.stats);
        last_reply = last_reply.max(outcome.last_reply);
        warmup_ops += outcome.warmup_replies;
    }
    if let Some((ticker, bar)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    let measure_start = start + plan.warmup;
    let elapsed = last_reply.map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(measure_start)
    });
    let mut report = empty_report(args);
    report.warmup_ops = warmup_ops;
    Ok(report.finish(stats, elapsed))
}

/// Stops the pacer thread when the run ends, however it ends.
struct PacerGuard(Arc<schedule::Pacer>);

impl Drop for PacerGuard {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The `quorra bench` subcommand: runs `args` on a fresh runtime and prints the report
/// (table, or JSON with `--json`) on stdout. Exit code 0 on success, 1 if the run failed.
pub fn main(args: BenchArgs) -> ExitCode {
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads as usize)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("quorra bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let show_progress = std::io::stderr().is_terminal();
    match runtime.block_on(run_with_progress(&args, show_progress)) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("quorra bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn plan(args: &BenchArgs) -> Plan {
    Plan {
        targets: args.targets.clone(),
        password: args.password.clone(),
        connections: args.connections,
        pipeline: args.pipeline,
        rate: args.rate,
        stop: match args.measured_duration() {
            Some(duration) => Stop::After(duration),
            None => Stop::Requests(args.requests.unwrap_or(0)),
        },
        warmup: args.warmup,
        keys: args.keys,
        sampler: KeySampler::new(args.distribution, args.keys),
        permutation: KeyPermutation::new(args.keys, args.seed),
        mix: OpMix::new(args.ratio, args.mget.is_some()),
        mget: args.mget.unwrap_or(1),
        transaction: args.transaction,
        value_size: args.value_size,
        ttl: args.ttl,
        payload: driver::payload(args.value_size.max, args.seed),
        key_prefix: args.key_prefix.as_bytes().to_vec(),
        seed: args.seed,
    }
}

fn empty_report(args: &BenchArgs) -> Report {
    Report {
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        target_rate: args.rate,
        targets: args.targets.clone(),
        connections: args.connections,
        pipeline: args.pipeline,
        keys: args.keys,
        distribution: args.distribution.to_string(),
        ratio: args.ratio.to_string(),
        elapsed_secs: 0.0,
        warmup_ops: 0,
        ops: 0,
        ops_per_sec: 0.0,
        errors: 0,
        hits: 0,
        misses: 0,
        hit_ratio: None,
        per_op: Vec::new(),
        send_lag: None,
        stats: report::Stats::default(),
    }
}

/// Writes every key once over `connections` fresh connections.
async fn preload(plan: &Arc<Plan>, show_progress: bool) -> Result<(), BenchError> {
    let written = Arc::new(AtomicU64::new(0));
    let bar = if show_progress {
        let bar = ProgressBar::new(plan.keys).with_style(
            ProgressStyle::with_template(
                "preload {bar:40} {human_pos}/{human_len} keys, eta {eta}",
            )
            .expect("valid template"),
        );
        let (bar2, written2) = (bar.clone(), Arc::clone(&written));
        let ticker = tokio::spawn(async move {
            loop {
                bar2.set_position(written2.load(Ordering::Relaxed));
                tokio::time::sleep(PROGRESS_INTERVAL).await;
            }
        });
        Some((bar, ticker))
    } else {
        None
    };
    let mut tasks = JoinSet::new();
    for index in 0..plan
        .connections
        .min(u32::try_from(plan.keys).unwrap_or(u32::MAX))
    {
        let stream = driver::connect(plan.target(index), plan.password.as_deref()).await?;
        let (plan, written) = (Arc::clone(plan), Arc::clone(&written));
        tasks.spawn(async move { driver::preload(&plan, index, stream, &written).await });
    }
    let mut errors = 0;
    let mut first = None;
    while let Some(joined) = tasks.join_next().await {
        let (n, error) = joined.map_err(|error| BenchError::Task(error.to_string()))??;
        errors += n;
        first = first.or(error);
    }
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.set_position(written.load(Ordering::Relaxed));
        bar.finish();
    }
    match first {
        Some(first) => Err(BenchError::Preload { errors, first }),
        None => Ok(()),
    }
}

/// Spawns the task that draws the run's progress bar until aborted.
fn run_bar(
    plan: &Plan,
    shared: Arc<Shared>,
    start: Instant,
) -> (tokio::task::JoinHandle<()>, ProgressBar) {
    let (bar, total) = match plan.stop {
        Stop::After(duration) => {
            let total = plan.warmup + duration;
            let bar = ProgressBar::new(total.as_millis() as u64).with_style(
                ProgressStyle::with_template(&format!(
                    "bench {{bar:40}} {{elapsed}} of {total:?}  {{msg}}"
                ))
                .expect("valid template"),
            );
            (bar, None)
        }
        Stop::Requests(n) => {
            let bar = ProgressBar::new(n).with_style(
                ProgressStyle::with_template("bench {bar:40} {human_pos}/{human_len}  {msg}")
                    .expect("valid template"),
            );
            (bar, Some(n))
        }
    };
    let handle = bar.clone();
    let ticker = tokio::spawn(async move {
        let mut previous = (Instant::now(), 0u64);
        let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
        loop {
            interval.tick().await;
            let now = Instant::now();
            let done = shared.completed.load(Ordering::Relaxed);
            let rate =
                (done - previous.1) as f64 / now.duration_since(previous.0).as_secs_f64().max(1e-3);
            previous = (now, done);
            match total {
                Some(_) => bar.set_position(done),
                None => bar.set_position(now.saturating_duration_since(start).as_millis() as u64),
            }
            bar.set_message(format!("{rate:.0} ops/s"));
        }
    });
    (ticker, handle)
}
