//! Node health: what the process costs — CPU time and resident memory, read from
//! `/proc` — and whether the node is *degraded*: using more than the configured share of
//! its `maxmemory` or of the machine's CPUs (`degraded-memory-percent`,
//! `degraded-cpu-percent`, 90 by default). A degraded node keeps serving; the flag tells
//! operators and the dashboard where the cluster is short of room. Each node measures
//! itself every stats period and gossips the figures with its health
//! ([`crate::cluster_tasks::measure`]); `QUORRA NODES`, `/v1/cluster`, the
//! dashboard and the metrics show them. A node that falls back below both thresholds is
//! healthy again at the next period.

use std::time::Instant;

use quorra_cluster::membership::Degraded;

use crate::metrics::latency_quantile;

/// Resident set size of this process, bytes, from /proc (0 where there is no /proc).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The thresholds above which a node is degraded, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Share of `maxmemory` (ignored when it is unlimited).
    pub memory_percent: u8,
    /// Share of the machine's CPUs.
    pub cpu_percent: u8,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            memory_percent: 90,
            cpu_percent: 90,
        }
    }
}

/// The [`Degraded`] bits for a node using `used_memory` of `maxmemory` bytes and
/// `cpu_permille` thousandths of the machine's CPUs.
pub fn degraded(thresholds: Thresholds, used_memory: u64, maxmemory: u64, cpu_permille: u64) -> u8 {
    let mut bits = 0;
    if maxmemory > 0
        && u128::from(used_memory) * 100
            > u128::from(maxmemory) * u128::from(thresholds.memory_percent)
    {
        bits |= Degraded::MEMORY;
    }
    if cpu_permille > u64::from(thresholds.cpu_percent) * 10 {
        bits |= Degraded::CPU;
    }
    bits
}

/// The node's cumulative counters at one instant; two readings make a [`Sample`].
#[derive(Debug, Clone)]
pub struct Reading {
    /// When it was taken.
    pub at: Instant,
    /// CPU seconds used by the process so far (user and system).
    pub cpu_seconds: f64,
    /// Commands processed so far.
    pub commands: u64,
    /// Keyspace hits so far.
    pub hits: u64,
    /// Keyspace misses so far.
    pub misses: u64,
    /// Keys evicted so far.
    pub evictions: u64,
    /// Keys expired so far.
    pub expirations: u64,
    /// The latency histogram so far ([`crate::metrics::Metrics::latency_buckets`]).
    pub latency: Vec<(f64, u64)>,
}

/// The node's health and rates between two readings: what it gossips and the dashboard
/// and metrics show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// CPU used, in thousandths of the machine's CPUs.
    pub cpu_permille: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Commands per second.
    pub ops_per_sec: u64,
    /// Keyspace hits per second.
    pub hits_per_sec: u64,
    /// Keyspace misses per second.
    pub misses_per_sec: u64,
    /// Evictions per second.
    pub evictions_per_sec: u64,
    /// Expirations per second.
    pub expirations_per_sec: u64,
    /// Median command latency, µs (0: none ran).
    pub latency_p50_us: u64,
    /// 99th percentile command latency, µs (0: none ran).
    pub latency_p99_us: u64,
    /// [`Degraded`] bits.
    pub degraded: u8,
}

/// What happened between `before` and `after`, for a node holding `used_memory` of
/// `maxmemory` bytes on a machine with `cpus` CPUs.
pub fn sample(
    before: &Reading,
    after: &Reading,
    used_memory: u64,
    maxmemory: u64,
    cpus: usize,
    thresholds: Thresholds,
) -> Sample {
    let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let rate = |from: u64, to: u64| (to.saturating_sub(from) as f64 / seconds).round() as u64;
    // A share above the whole machine is a measuring artefact (a cgroup quota smaller
    // than the CPUs counted, or the tick the kernel charges late); capped, a threshold of
    // 100% means "never degraded for CPU".
    let cpu_share =
        ((after.cpu_seconds - before.cpu_seconds).max(0.0) / seconds / cpus.max(1) as f64).min(1.0);
    let cpu_permille = (cpu_share * 1000.0).round() as u64;
    let micros = |quantile| {
        latency_quantile(&before.latency, &after.latency, quantile)
            .map_or(0, |seconds| (seconds * 1e6).round() as u64)
    };
    Sample {
        cpu_permille,
        rss_bytes: rss_bytes(),
        ops_per_sec: rate(before.commands, after.commands),
        hits_per_sec: rate(before.hits, after.hits),
        misses_per_sec: rate(before.misses, after.misses),
        evictions_per_sec: rate(before.evictions, after.evictions),
        expirations_per_sec: rate(before.expirations, after.expirations),
        latency_p50_us: micros(0.5),
        latency_p99_us: micros(0.99),
        degraded: degraded(thresholds, used_memory, maxmemory, cpu_permille),
    }
}

/// The CPU time this process has used, in seconds, as INFO cpu reports it: from
/// `/proc/self/stat` (Linux); zeros where that cannot be read.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessCpu {
    /// User time.
    pub user: f64,
    /// System time.
    pub system: f64,
    /// User time of waited-for children.
    pub children_user: f64,
    /// System time of waited-for children.
    pub children_system: f64,
}

impl ProcessCpu {
    /// The process's CPU time so far.
    pub fn now() -> ProcessCpu {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| ProcessCpu::parse(&stat, rustix::param::clock_ticks_per_second()))
            .unwrap_or_default()
    }

    /// Parses `/proc/<pid>/stat`: utime, stime, cutime and cstime are the 14th to 17th
    /// fields, in clock ticks. The command name (2nd) may hold spaces and parentheses,
    /// so fields are counted after its last `)`.
    fn parse(stat: &str, ticks_per_second: u64) -> Option<ProcessCpu> {
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let seconds = |index: usize| -> Option<f64> {
            Some(fields.get(index)?.parse::<u64>().ok()? as f64 / ticks_per_second.max(1) as f64)
        };
        Some(ProcessCpu {
            user: seconds(11)?,
            system: seconds(12)?,
            children_user: seconds(13)?,
            children_system: seconds(14)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn proc_stat_fields_are_read_after_the_command_name() {
        let stat = "4242 (quorra (x) y) S 1 2 3 4 5 6 7 8 9 10 250 130 7 3 20 0 4 0";
        let cpu = ProcessCpu::parse(stat, 100).unwrap();
        assert_eq!(
            cpu,
            ProcessCpu {
                user: 2.5,
                system: 1.3,
                children_user: 0.07,
                children_system: 0.03,
            }
        );
        assert_eq!(ProcessCpu::parse("garbage", 100), None);
        assert!(ProcessCpu::now().user >= 0.0);
    }

    #[test]
    fn a_node_is_degraded_above_either_threshold_and_healthy_below_both() {
        let limits = Thresholds::default();
        assert_eq!(degraded(limits, 90, 100, 900), 0);
        assert_eq!(degraded(limits, 91, 100, 900), Degraded::MEMORY);
        assert_eq!(
            degraded(limits, 91, 0, 0),
            0,
            "no maxmemory, no memory pressure"
        );
        assert_eq!(degraded(limits, 0, 100, 901), Degraded::CPU);
        assert_eq!(
            degraded(limits, u64::MAX, u64::MAX - 1, 1000),
            Degraded::MEMORY | Degraded::CPU
        );
    }

    #[test]
    fn cpu_above_the_whole_machine_is_capped_so_a_threshold_of_100_never_trips() {
        let at = Instant::now();
        let reading = |seconds: u64, cpu_seconds: f64| Reading {
            at: at + Duration::from_secs(seconds),
            cpu_seconds,
            commands: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
            expirations: 0,
            latency: Vec::new(),
        };
        let never = Thresholds {
            memory_percent: 100,
            cpu_percent: 100,
        };
        // 3.5 CPU seconds in one second on two CPUs: what a cgroup quota can report.
        let busy = sample(&reading(0, 0.0), &reading(1, 3.5), 0, 0, 2, never);
        assert_eq!(busy.cpu_permille, 1000);
        assert_eq!(busy.degraded, 0);
        let half = sample(&reading(0, 0.0), &reading(1, 1.0), 0, 0, 2, never);
        assert_eq!(half.cpu_permille, 500);
    }
}
