//! Counting, latency histograms and the final report (table or JSON).
//!
//! Each connection keeps its own [`Stats`]: per operation kind, a count of replies, of
//! error replies, of keys read that hit and missed, and an HdrHistogram of latencies in
//! **microseconds** with [`SIGNIFICANT_DIGITS`] significant digits (a recorded 1234 µs is
//! reported within 1 µs; 1,234,567 µs within 1 ms). Histograms resize themselves to the
//! largest value seen, so a run whose latencies stay under a few milliseconds keeps each
//! one small. Connections merge their stats at the end; nothing is shared while running.
//!
//! What is counted: only requests in the measured window (sent, or in open loop
//! *scheduled*, at or after the end of the warm-up). Latency is recorded for every
//! non-error reply; error replies (`-ERR ...`) are counted separately and not timed. The
//! hit ratio is `hits / (hits + misses)` over keys read, each `MGET` element counting as
//! one read. Throughput is replies in the measured window divided by the measured time,
//! from the start of the window to the last reply.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workload::OpKind;

/// Significant decimal digits kept by the latency histograms.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies above this are recorded as this (one hour, in microseconds).
pub const MAX_RECORDED_LATENCY_MICROS: u64 = 3_600_000_000;

/// Records `duration` in microseconds, at least 1, at most
/// [`MAX_RECORDED_LATENCY_MICROS`].
fn record_micros(histogram: &mut Histogram<u64>, duration: Duration) {
    let micros = u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_RECORDED_LATENCY_MICROS);
    // Auto-resizing histograms grow to fit (`saturating_record` would not resize).
    if histogram.record(micros).is_err() {
        histogram.saturating_record(micros);
    }
}

/// Counters and latencies of one operation kind.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Replies received (errors included).
    pub count: u64,
    /// Error replies.
    pub errors: u64,
    /// Keys read that were found (GET and MGET only).
    pub hits: u64,
    /// Keys read that were absent (GET and MGET only).
    pub misses: u64,
    /// Latency of non-error replies, in microseconds.
    pub latency: Histogram<u64>,
}

impl OpStats {
    fn new() -> Self {
        OpStats {
            count: 0,
            errors: 0,
            hits: 0,
            misses: 0,
            latency: Histogram::new(SIGNIFICANT_DIGITS).expect("valid significant digits"),
        }
    }

    /// Records one non-error reply that took `latency`.
    pub fn record(&mut self, latency: Duration) {
        self.count += 1;
        record_micros(&mut self.latency, latency);
    }

    /// Records one error reply.
    pub fn record_error(&mut self) {
        self.count += 1;
        self.errors += 1;
    }

    fn merge(&mut self, other: &OpStats) {
        self.count += other.count;
        self.errors += other.errors;
        self.hits += other.hits;
        self.misses += other.misses;
        self.latency
            .add(&other.latency)
            .expect("auto-resizing histograms always merge");
    }
}

/// All counters of one connection (or, merged, of a run).
#[derive(Debug, Clone)]
pub struct Stats {
    ops: [OpStats; 4],
    /// Open loop: how late each measured request went out after its intended send time,
    /// in microseconds (timer granularity, a full pipeline, or a busy generator). Empty
    /// in closed loop.
    send_lag: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ops: std::array::from_fn(|_| OpStats::new()),
            send_lag: Histogram::new(SIGNIFICANT_DIGITS).expect("valid significant digits"),
        }
    }
}

impl Stats {
    /// The counters of `kind`.
    pub fn op(&self, kind: OpKind) -> &OpStats {
        &self.ops[kind.index()]
    }

    /// The counters of `kind`, for recording.
    pub fn op_mut(&mut self, kind: OpKind) -> &mut OpStats {
        &mut self.ops[kind.index()]
    }

    /// Adds `other`'s counts and latencies to these.
    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.merge(theirs);
        }
        self.send_lag
            .add(&other.send_lag)
            .expect("auto-resizing histograms always merge");
    }

    /// Records that a request went out `lag` after its intended send time.
    pub fn record_send_lag(&mut self, lag: Duration) {
        record_micros(&mut self.send_lag, lag);
    }

    /// Send lags recorded with [`Stats::record_send_lag`], in microseconds.
    pub fn send_lag(&self) -> &Histogram<u64> {
        &self.send_lag
    }

    /// Replies received, all kinds.
    pub fn total(&self) -> u64 {
        self.ops.iter().map(|op| op.count).sum()
    }
}

/// Latency percentiles of one operation kind, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Option<Latency> {
        if histogram.is_empty() {
            return None;
        }
        Some(Latency {
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        })
    }
}

/// How late open-loop requests went out, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SendLag {
    /// Requests measured.
    pub requests: u64,
    /// Median lag.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// The figures of one operation kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpSummary {
    /// `get`, `mget`, `set`, `del`, or `all`.
    pub op: &'static str,
    /// Replies in the measured window.
    pub count: u64,
    /// Replies per second.
    pub ops_per_sec: f64,
    /// Error replies.
    pub errors: u64,
    /// Latency of non-error replies (`None` if there were none).
    pub latency: Option<Latency>,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Open loop: the asked total rate, in requests per second.
    pub target_rate: Option<u64>,
    /// The targets, as given.
    pub targets: Vec<String>,
    /// Connections opened.
    pub connections: u32,
    /// Most requests in flight per connection.
    pub pipeline: u32,
    /// Key space size.
    pub keys: u64,
    /// Key popularity distribution, as given.
    pub distribution: String,
    /// GET:SET:DEL weights.
    pub ratio: String,
    /// Measured time (warm-up excluded), in seconds.
    pub elapsed_secs: f64,
    /// Replies to warm-up requests, left out of every other figure.
    pub warmup_ops: u64,
    /// Replies in the measured window, all kinds.
    pub ops: u64,
    /// Replies per second, all kinds.
    pub ops_per_sec: f64,
    /// Error replies, all kinds.
    pub errors: u64,
    /// Keys read that were found.
    pub hits: u64,
    /// Keys read that were absent.
    pub misses: u64,
    /// `hits / (hits + misses)`, or `None` if nothing was read.
    pub hit_ratio: Option<f64>,
    /// Per kind with at least one reply, then `all`.
    pub per_op: Vec<OpSummary>,
    /// Open loop: how late measured requests were sent after their intended time
    /// (`None` in closed loop). Latency includes this lag;
    /// a large lag means the generator or a full pipeline, not only the server, held
    /// requests back.
    pub send_lag: Option<SendLag>,
    /// The merged raw counters and histograms.
    #[serde(skip)]
    pub stats: Stats,
}

impl Report {
    /// Builds the report from merged `stats` over `elapsed`; `base` is a report with the
    /// descriptive fields filled in.
    pub(crate) fn finish(mut self, stats: Stats, elapsed: Duration) -> Report {
        let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let mut all = Histogram::<u64>::new(SIGNIFICANT_DIGITS).expect("valid digits");
        let mut per_op = Vec::new();
        for kind in OpKind::ALL {
            let op = stats.op(kind);
            if op.count == 0 {
                continue;
            }
            all.add(&op.latency)
                .expect("auto-resizing histograms merge");
            per_op.push(OpSummary {
                op: kind.name(),
                count: op.count,
                ops_per_sec: op.count as f64 / secs,
                errors: op.errors,
                latency: Latency::of(&op.latency),
            });
        }
        let ops = stats.total();
        let errors = OpKind::ALL.iter().map(|&k| stats.op(k).errors).sum();
        let hits = OpKind::ALL.iter().map(|&k| stats.op(k).hits).sum();
        let misses: u64 = OpKind::ALL.iter().map(|&k| stats.op(k).misses).sum();
        per_op.push(OpSummary {
            op: "all",
            count: ops,
            ops_per_sec: ops as f64 / secs,
            errors,
            latency: Latency::of(&all),
        });
        self.elapsed_secs = elapsed.as_secs_f64();
        self.ops = ops;
        self.ops_per_sec = ops as f64 / secs;
        self.errors = errors;
        self.hits = hits;
        self.misses = misses;
        self.hit_ratio = (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64);
        self.per_op = per_op;
        if self.target_rate.is_some() {
            let lag = stats.send_lag();
            self.send_lag = Some(SendLag {
                requests: lag.len(),
                p50_us: lag.value_at_quantile(0.5),
                p99_us: lag.value_at_quantile(0.99),
                max_us: lag.max(),
            });
        }
        self.stats = stats;
        self
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the report serialises")
    }

    /// The report as a human-readable table.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mode = match self.target_rate {
            Some(rate) => format!("open loop at {rate} ops/s"),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            out,
            "quorra bench: {mode}, {} connections x pipeline {}, {} target(s): {}",
            self.connections,
            self.pipeline,
            self.targets.len(),
            self.targets.join(", ")
        );
        let _ = writeln!(
            out,
            "workload: {} keys, {}, GET:SET:DEL {}",
            self.keys, self.distribution, self.ratio
        );
        let _ = writeln!(
            out,
            "measured: {:.2} s, {} ops, {:.0} ops/s, {} errors ({} warm-up ops not counted)",
            self.elapsed_secs, self.ops, self.ops_per_sec, self.errors, self.warmup_ops
        );
        match self.hit_ratio {
            Some(ratio) => {
                let _ = writeln!(
                    out,
                    "hit ratio: {:.2}% ({} hits / {} keys read)",
                    ratio * 100.0,
                    self.hits,
                    self.hits + self.misses
                );
            }
            None => {
                let _ = writeln!(out, "hit ratio: - (no reads)");
            }
        }
        let _ = writeln!(
            out,
            "\n{:<5} {:>11} {:>11} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op", "count", "ops/s", "errors", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us"
        );
        for op in &self.per_op {
            let cell = |f: fn(&Latency) -> u64| {
                op.latency
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |l| f(l).to_string())
            };
            let _ = writeln!(
                out,
                "{:<5} {:>11} {:>11.0} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
                op.op,
                op.count,
                op.ops_per_sec,
                op.errors,
                cell(|l| l.p50_us),
                cell(|l| l.p90_us),
                cell(|l| l.p99_us),
                cell(|l| l.p999_us),
                cell(|l| l.max_us),
            );
        }
        if let Some(lag) = self.send_lag {
            let _ = writeln!(
                out,
                "open loop: latency counts from each request's intended send time; \
                 send lag behind the schedule: p50 {} us, p99 {} us, max {} us",
                lag.p50_us, lag.p99_us, lag.max_us
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_summarise() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for ms in 1..=100 {
            a.op_mut(OpKind::Get).record(Duration::from_micros(ms * 10));
        }
        a.op_mut(OpKind::Get).hits = 60;
        a.op_mut(OpKind::Get).misses = 40;
        b.op_mut(OpKind::Set).record(Duration::from_secs(2));
        b.op_mut(OpKind::Set).record_error();
        a.merge(&b);
        let report = Report {
            mode: "closed",
            target_rate: None,
            targets: vec!["x:1".into()],
            connections: 2,
            pipeline: 1,
            keys: 10,
            distribution: "uniform".into(),
            ratio: "1:1:0".into(),
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
            stats: Stats::default(),
        }
        .finish(a, Duration::from_secs(2));
        assert_eq!(report.ops, 102);
        assert_eq!(report.errors, 1);
        assert_eq!(report.ops_per_sec, 51.0);
        assert_eq!(report.hit_ratio, Some(0.6));
        let get = &report.per_op[0];
        assert_eq!((get.op, get.count), ("get", 100));
        let latency = get.latency.unwrap();
        assert_eq!(latency.p50_us, 500);
        assert_eq!(latency.p99_us, 990);
        assert_eq!(latency.max_us, 1000);
        let set = &report.per_op[1];
        assert_eq!((set.op, set.count, set.errors), ("set", 2, 1));
        assert!(set.latency.unwrap().max_us >= 1_999_000);
        let all = report.per_op.last().unwrap();
        assert_eq!((all.op, all.count), ("all", 102));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["ops"], 102);
        assert_eq!(json["per_op"][0]["latency"]["p50_us"], 500);
        assert!(report.to_table().contains("hit ratio: 60.00%"));
    }
}
