//! Open-loop load: the send schedule, and why latency is measured from it.
//!
//! In closed loop (no `--rate`) each connection keeps `--pipeline` requests in flight and
//! sends the next one when a reply frees a slot. That measures peak throughput, but its
//! latencies are optimistic: while the server stalls, a closed-loop client stops sending,
//! so the stall shows up in the few requests that were in flight and in no others — the
//! requests a real client population would have sent during the stall are simply never
//! issued ("coordinated omission", Gil Tene).
//!
//! In open loop (`--rate R`) the load is a fixed schedule instead. Request number `n`
//! (counted over all connections from 0) has the **intended send time**
//!
//! ```text
//! intended(n) = start + n / R            (exact: computed in integer nanoseconds)
//! ```
//!
//! and connection `c` of `C` sends requests `n = c, c + C, c + 2C, ...`, so the total rate
//! is exactly `R` and the connections interleave evenly (each one sends every `C / R`
//! seconds). A connection sends every request whose intended time has come, as long as it
//! has fewer than `--pipeline` requests in flight; if it falls behind (the server is slow,
//! or the pipeline is full), it sends the backlog as fast as it can. **Latency is measured
//! from the intended time, not from the actual send**, so a request that had to wait
//! behind a stall is charged for the wait, and a stall of `D` seconds shows up in all of
//! the `≈ D × R` requests scheduled during it — what the users of a real service would
//! have seen.
//!
//! The schedule is pure arithmetic, with no clock: [`Schedule::offset`] gives the intended
//! time of a connection's `k`-th request relative to the start. Releasing requests on
//! time is the [`Pacer`]'s job: one OS thread walks the global request numbers in order,
//! sleeps (`std::thread::sleep`, accurate to tens of microseconds on Linux) until each
//! one's intended time, and hands a token to the connection that owns it; a connection
//! sends one request per token. tokio's own timer has 1 ms slots, which would make every
//! request leave up to a millisecond late and add that to its latency; the pacer thread
//! cuts this client-side slack to the OS sleep's precision. Whatever lag remains (the
//! sleep's overshoot, a busy generator, a full pipeline) is still part of the measured
//! latency, and the report shows it separately as the *send lag*.
//!
//! Non-goals: Poisson (randomised) arrivals — the schedule is evenly spaced — and rates
//! that vary during a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Nanoseconds per second.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The intended send times of one connection's requests in open loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Total rate over all connections, in requests per second (`>= 1`).
    rate_per_sec: u64,
    /// Number of connections sharing the rate: this connection takes every `stride`-th
    /// global request.
    stride: u64,
    /// This connection's first global request number (its index, `< stride`).
    first: u64,
}

impl Schedule {
    /// Connection `index` of `connections`, sharing `rate_per_sec` requests per second.
    pub fn new(rate_per_sec: u64, connections: u64, index: u64) -> Self {
        assert!(rate_per_sec >= 1 && connections >= 1 && index < connections);
        Schedule {
            rate_per_sec,
            stride: connections,
            first: index,
        }
    }

    /// The global request number of this connection's `k`-th request (from 0).
    pub fn global_index(&self, k: u64) -> u64 {
        self.first + k * self.stride
    }

    /// Intended send time of global request `n`, relative to the start (rounded down to
    /// the nanosecond).
    pub fn offset_of_global(&self, n: u64) -> Duration {
        let nanos = u128::from(n) * NANOS_PER_SEC / u128::from(self.rate_per_sec);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Intended send time of this connection's `k`-th request, relative to the start.
    pub fn offset(&self, k: u64) -> Duration {
        self.offset_of_global(self.global_index(k))
    }

    /// The first global request number whose intended time is at or after `at`: the
    /// requests before it fall in a warm-up of length `at`.
    pub fn first_global_at_or_after(&self, at: Duration) -> u64 {
        // ceil(at × R), in integer nanoseconds.
        let scaled = at.as_nanos() * u128::from(self.rate_per_sec);
        u64::try_from(scaled.div_ceil(NANOS_PER_SEC)).unwrap_or(u64::MAX)
    }

    /// The first `k` of this connection whose global number is `>= global`.
    pub fn first_local_at_or_after(&self, global: u64) -> u64 {
        global.saturating_sub(self.first).div_ceil(self.stride)
    }
}

/// Releases open-loop requests at their intended times: one token per global request
/// number, to the connection that owns it (`n mod connections`), from a dedicated thread.
#[derive(Debug)]
pub struct Pacer {
    /// Per connection: tokens for requests whose intended time has come.
    tokens: Vec<Semaphore>,
    /// Set to stop the pacer thread early (the run ended or failed).
    stop: AtomicBool,
}

impl Pacer {
    /// Starts the pacer thread for global requests `0..end` at `rate_per_sec` over
    /// `connections`, from `start`. The thread ends after request `end - 1` or soon after
    /// [`Pacer::stop`].
    pub fn start(rate_per_sec: u64, connections: u32, start: Instant, end: u64) -> Arc<Pacer> {
        let pacer = Arc::new(Pacer {
            tokens: (0..connections).map(|_| Semaphore::new(0)).collect(),
            stop: AtomicBool::new(false),
        });
        let schedule = Schedule::new(rate_per_sec, 1, 0);
        let thread_pacer = Arc::clone(&pacer);
        std::thread::Builder::new()
            .name("quorra-bench-pacer".into())
            .spawn(move || thread_pacer.run(schedule, start, end))
            .expect("spawn the pacer thread");
        pacer
    }

    fn run(&self, schedule: Schedule, start: Instant, end: u64) {
        let connections = self.tokens.len() as u64;
        let mut n = 0;
        while n < end && !self.stop.load(Ordering::Relaxed) {
            let due = start + schedule.offset_of_global(n);
            let now = Instant::now();
            if due > now {
                // Never sleep long without checking the stop flag.
                std::thread::sleep((due - now).min(PACER_MAX_SLEEP));
                continue;
            }
            // Release every request that is due, in order.
            while n < end && start + schedule.offset_of_global(n) <= now {
                self.tokens[(n % connections) as usize].add_permits(1);
                n += 1;
            }
        }
    }

    /// Takes connection `index`'s next token if its request is due; `false` if not yet.
    pub fn try_take(&self, index: usize) -> bool {
        self.tokens[index]
            .try_acquire()
            .map(|token| token.forget())
            .is_ok()
    }

    /// Waits for connection `index`'s next token.
    pub async fn take(&self, index: usize) {
        self.tokens[index]
            .acquire()
            .await
            .expect("the token semaphore is never closed")
            .forget();
    }

    /// Stops the pacer thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Longest single sleep of the pacer thread, so that it notices [`Pacer::stop`] soon.
const PACER_MAX_SLEEP: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    fn all_offsets_before(rate: u64, connections: u64, window: Duration) -> Vec<Duration> {
        let mut offsets = Vec::new();
        for c in 0..connections {
            let schedule = Schedule::new(rate, connections, c);
            let mut k = 0;
            while schedule.offset(k) < window {
                offsets.push(schedule.offset(k));
                k += 1;
            }
        }
        offsets.sort();
        offsets
    }

    #[test]
    fn the_schedule_keeps_the_rate_exactly() {
        for (rate, connections) in [(1_000u64, 1u64), (10_000, 7), (333, 50), (1, 3)] {
            let window = Duration::from_secs(3);
            let offsets = all_offsets_before(rate, connections, window);
            // Exactly rate × window requests fall in the window...
            assert_eq!(
                offsets.len() as u64,
                rate * 3,
                "rate {rate} × {connections}"
            );
            // ...the n-th of them at n / rate...
            for (n, offset) in offsets.iter().enumerate() {
                let exact = n as u128 * 1_000_000_000 / u128::from(rate);
                assert_eq!(offset.as_nanos(), exact);
            }
            // ...and every 1/10 s sub-window holds its share, ±1 for rounding.
            for tenth in 0..30u32 {
                let lo = Duration::from_millis(100) * tenth;
                let hi = lo + Duration::from_millis(100);
                let inside = offsets.iter().filter(|o| **o >= lo && **o < hi).count() as f64;
                assert!((inside - rate as f64 / 10.0).abs() <= 1.0);
            }
        }
    }

    #[test]
    fn connections_interleave_evenly() {
        let schedule = Schedule::new(1_000, 4, 1);
        // Connection 1 of 4 at 1000/s: requests 1, 5, 9, ... at 1 ms, 5 ms, 9 ms, ...
        assert_eq!(schedule.offset(0), Duration::from_millis(1));
        assert_eq!(schedule.offset(1), Duration::from_millis(5));
        assert_eq!(schedule.offset(250), Duration::from_millis(1001));
        // Fractional intervals do not drift: 3 requests per second.
        let thirds = Schedule::new(3, 1, 0);
        assert_eq!(thirds.offset(3), Duration::from_secs(1));
        assert_eq!(thirds.offset(3_000_000), Duration::from_secs(1_000_000));
        assert_eq!(thirds.offset(1), Duration::from_nanos(333_333_333));
    }

    /// The real-time pacer: no token before its intended time, exactly one token per
    /// request, to the right connection. Lower bounds only: a slow box makes tokens late,
    /// never early.
    #[tokio::test]
    async fn the_pacer_releases_each_request_at_or_after_its_time() {
        let start = Instant::now() + Duration::from_millis(300);
        // 100 requests/s over 3 connections, requests 0..30: the last is due at 290 ms.
        let pacer = Pacer::start(100, 3, start, 30);
        assert!(!pacer.try_take(0), "a token before the start");
        let mut taken = [0u32; 3];
        for n in 0..30u64 {
            let connection = (n % 3) as usize;
            pacer.take(connection).await;
            let due = start + Schedule::new(100, 1, 0).offset_of_global(n);
            assert!(Instant::now() >= due, "request {n} released early");
            taken[connection] += 1;
        }
        assert_eq!(taken, [10, 10, 10]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!((0..3).all(|c| !pacer.try_take(c)), "a token past the end");
        pacer.stop();
    }

    #[test]
    fn warmup_boundaries() {
        let schedule = Schedule::new(1_000, 4, 2);
        // 1000/s: requests 0..500 fall in a 500 ms warm-up, 500 is the first measured.
        let first = schedule.first_global_at_or_after(Duration::from_millis(500));
        assert_eq!(first, 500);
        assert_eq!(
            schedule.first_global_at_or_after(Duration::from_micros(500_001)),
            501
        );
        // Connection 2 sends 2, 6, ..., 498, 502: its first measured is k = 125 (502).
        let k = schedule.first_local_at_or_after(first);
        assert_eq!(schedule.global_index(k), 502);
        assert_eq!(schedule.global_index(k - 1), 498);
        assert_eq!(schedule.first_local_at_or_after(0), 0);
        assert_eq!(schedule.first_local_at_or_after(2), 0);
        assert_eq!(schedule.first_local_at_or_after(3), 1);
    }
}
