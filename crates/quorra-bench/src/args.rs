//! Command-line arguments of `quorra bench`, with parsers that reject bad values with a
//! clear message (clap shows it as `error: invalid value ... for '--flag': message`).

use std::time::Duration;

use clap::Args;

use crate::workload::{Distribution, Ratio, ValueSize};

/// Most connections one run may open.
pub const MAX_CONNECTIONS: u32 = 10_000;
/// Most requests in flight per connection.
pub const MAX_PIPELINE: u32 = 10_000;
/// Largest key space, in keys (2^40).
pub const MAX_KEYS: u64 = 1 << 40;
/// Most requests one `--requests` run may send (10^12).
pub const MAX_REQUESTS: u64 = 1_000_000_000_000;
/// Highest open-loop rate, in requests per second.
pub const MAX_RATE: u64 = 100_000_000;
/// Longest `--duration` or `--warmup`: one week, in seconds.
pub const MAX_DURATION_SECS: u64 = 7 * 24 * 3600;
/// Largest value, in bytes (64 MiB).
pub const MAX_VALUE_SIZE: usize = 64 << 20;
/// Most keys in one `MGET`.
pub const MAX_MGET: u32 = 10_000;
/// Longest `--ttl`: ten years, in seconds.
pub const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;
/// Most runtime worker threads.
pub const MAX_THREADS: u32 = 256;
/// Run length when neither `--duration` nor `--requests` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// `quorra bench`: load a Redis-protocol server (quorra or Redis) with a cache-like
/// workload and report throughput, hit ratio and latency percentiles.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Server to load, as HOST:PORT. Repeat for several nodes; connections are spread over
    /// the targets round-robin.
    #[arg(
        long = "target",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:7379",
        value_parser = parse_target
    )]
    pub targets: Vec<String>,

    /// Password sent with AUTH on every connection.
    #[arg(long, env = "QUORRA_BENCH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Number of connections (one tokio task each).
    #[arg(short = 'c', long, default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNECTIONS)))]
    pub connections: u32,

    /// Most requests in flight per connection (closed loop: always this many).
    #[arg(short = 'P', long, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PIPELINE)))]
    pub pipeline: u32,

    /// Measured run length, e.g. 30s, 500ms, 2m (default 10s unless --requests is given).
    #[arg(long, value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,

    /// Measured number of requests (instead of --duration).
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..=MAX_REQUESTS))]
    pub requests: Option<u64>,

    /// Load to run before measuring, excluded from the figures, e.g. 5s.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,

    /// Key space size: keys are PREFIX0 .. PREFIX{keys-1}.
    #[arg(long, default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_KEYS))]
    pub keys: u64,

    /// Key popularity: uniform, zipf:S (e.g. zipf:0.99), or hotspot:FRACTION:SHARE
    /// (FRACTION of the keys receive SHARE of the requests, e.g. hotspot:0.01:0.9).
    #[arg(long, default_value = "uniform", value_parser = parse_distribution)]
    pub distribution: Distribution,

    /// Operation mix as GET:SET:DEL weights, e.g. 9:1:0.
    #[arg(long, default_value = "9:1:0", value_parser = parse_ratio)]
    pub ratio: Ratio,

    /// Value size in bytes for SET: fixed (100) or a uniform range (MIN-MAX).
    #[arg(long, default_value = "100", value_parser = parse_value_size)]
    pub value_size: ValueSize,

    /// Expiry in seconds on every write (SET ... EX ttl).
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TTL_SECS))]
    pub ttl: Option<u64>,

    /// Batch reads as MGET of N keys (N keys drawn from the distribution).
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_MGET)))]
    pub mget: Option<u32>,

    /// Write every key once before the run (with a progress bar on a terminal).
    #[arg(long)]
    pub preload: bool,

    /// Send each request inside its own MULTI ... EXEC, and count the transaction as
    /// the request (its latency is the three replies').
    #[arg(long)]
    pub transaction: bool,

    /// Open loop: send this many requests per second in total, on a fixed schedule, and
    /// measure latency from each request's intended send time.
    #[arg(long, value_name = "OPS_PER_SEC",
          value_parser = clap::value_parser!(u64).range(1..=MAX_RATE))]
    pub rate: Option<u64>,

    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Seed of the workload's random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Worker threads of the load generator (1 = a single-threaded runtime, like
    /// redis-benchmark's default).
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_THREADS)))]
    pub threads: u32,

    /// Key name prefix.
    #[arg(long, default_value = "key:")]
    pub key_prefix: String,
}

impl BenchArgs {
    /// The defaults, as if `quorra bench` were run with no flags.
    pub fn new() -> Self {
        Self::try_parse_from(std::iter::empty::<String>()).expect("the defaults parse")
    }

    /// Parses `args` (without the program name) as `quorra bench` would.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{FromArgMatches, Parser};
        #[derive(Parser)]
        #[command(name = "quorra bench")]
        struct Wrapper {
            #[command(flatten)]
            args: BenchArgs,
        }
        let matches = <Wrapper as clap::CommandFactory>::command()
            .no_binary_name(true)
            .try_get_matches_from(args)?;
        Ok(Wrapper::from_arg_matches(&matches)?.args)
    }

    /// The measured run length in duration mode (`None` in `--requests` mode).
    pub fn measured_duration(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (_, Some(_)) => None,
            (Some(duration), None) => Some(duration),
            (None, None) => Some(DEFAULT_DURATION),
        }
    }
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self::new()
    }
}

/// Parses `HOST:PORT` (a name or an IP; IPv6 as `[::1]:7379`).
fn parse_target(text: &str) -> Result<String, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("expected HOST:PORT, got {text:?}"))?;
    if host.is_empty() {
        return Err(format!("missing host in {text:?}"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("bad port {port:?} (expected 1..=65535)")),
        Ok(_) => Ok(text.to_owned()),
    }
}

/// Parses a duration: a non-negative number with a unit `ms`, `s`, `m` or `h` (a bare
/// number means seconds), e.g. `500ms`, `30s`, `1.5s`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 30s, 500ms or 2m, got {text:?}"))?;
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit {unit:?} (use ms, s, m or h)")),
    };
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || seconds > MAX_DURATION_SECS as f64 {
        return Err(format!("{text:?} is longer than {MAX_DURATION_SECS} s"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_f64(text: &str, what: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("{what} {text:?} is not a number")),
    }
}

/// Parses `uniform`, `zipf:S` or `hotspot:FRACTION:SHARE`.
pub fn parse_distribution(text: &str) -> Result<Distribution, String> {
    let mut parts = text.split(':');
    let distribution = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("uniform"), None, None, None) => Distribution::Uniform,
        (Some("zipf"), Some(s), None, None) => {
            let exponent = parse_f64(s, "zipf exponent")?;
            if !(exponent > 0.0 && exponent <= 10.0) {
                return Err(format!(
                    "zipf exponent must be in (0, 10], got {exponent} (use uniform for 0)"
                ));
            }
            Distribution::Zipf { exponent }
        }
        (Some("hotspot"), Some(fraction), Some(share), None) => {
            let fraction = parse_f64(fraction, "hotspot fraction")?;
            let share = parse_f64(share, "hotspot share")?;
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(format!(
                    "hotspot FRACTION must be in (0, 1), got {fraction}"
                ));
            }
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("hotspot SHARE must be in [0, 1], got {share}"));
            }
            Distribution::Hotspot { fraction, share }
        }
        _ => {
            return Err(format!(
                "expected uniform, zipf:S or hotspot:FRACTION:SHARE, got {text:?}"
            ));
        }
    };
    Ok(distribution)
}

/// Parses `GET:SET:DEL` weights, e.g. `9:1:0`.
pub fn parse_ratio(text: &str) -> Result<Ratio, String> {
    const MAX_WEIGHT: u32 = 1_000_000;
    let weights: Vec<&str> = text.split(':').collect();
    let [get, set, del] = weights[..] else {
        return Err(format!(
            "expected GET:SET:DEL weights like 9:1:0, got {text:?}"
        ));
    };
    let weight = |w: &str| match w.parse::<u32>() {
        Ok(n) if n <= MAX_WEIGHT => Ok(n),
        _ => Err(format!(
            "weight {w:?} is not a whole number in 0..={MAX_WEIGHT}"
        )),
    };
    let ratio = Ratio {
        get: weight(get)?,
        set: weight(set)?,
        del: weight(del)?,
    };
    if ratio.get == 0 && ratio.set == 0 && ratio.del == 0 {
        return Err("at least one weight must be non-zero".into());
    }
    Ok(ratio)
}

/// Parses a value size: `N` or `MIN-MAX`, in bytes.
pub fn parse_value_size(text: &str) -> Result<ValueSize, String> {
    let size = |s: &str| match s.trim().parse::<usize>() {
        Ok(n) if n <= MAX_VALUE_SIZE => Ok(n),
        _ => Err(format!(
            "value size {s:?} is not a whole number of bytes in 0..={MAX_VALUE_SIZE}"
        )),
    };
    let (min, max) = match text.split_once('-') {
        Some((min, max)) => (size(min)?, size(max)?),
        None => {
            let n = size(text)?;
            (n, n)
        }
    };
    if min > max {
        return Err(format!("value size range {min}-{max} is empty"));
    }
    Ok(ValueSize { min, max })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "s",
            "-1s",
            "10x",
            "1e400s",
            "99999999h",
            "nan",
            "1.2.3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn distributions() {
        assert_eq!(parse_distribution("uniform"), Ok(Distribution::Uniform));
        assert_eq!(
            parse_distribution("zipf:0.99"),
            Ok(Distribution::Zipf { exponent: 0.99 })
        );
        assert_eq!(
            parse_distribution("hotspot:0.01:0.9"),
            Ok(Distribution::Hotspot {
                fraction: 0.01,
                share: 0.9
            })
        );
        for bad in [
            "zipf",
            "zipf:0",
            "zipf:-1",
            "zipf:nan",
            "zipf:inf",
            "zipf:1:2",
            "hotspot:0.1",
            "hotspot:0:0.5",
            "hotspot:1:0.5",
            "hotspot:0.1:1.5",
            "normal",
            "",
        ] {
            assert!(parse_distribution(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ratios_and_sizes() {
        assert_eq!(
            parse_ratio("9:1:0"),
            Ok(Ratio {
                get: 9,
                set: 1,
                del: 0
            })
        );
        for bad in [
            "9:1",
            "0:0:0",
            "a:1:1",
            "-1:1:1",
            "1:1:1:1",
            "9999999999:1:0",
        ] {
            assert!(parse_ratio(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_value_size("100"),
            Ok(ValueSize { min: 100, max: 100 })
        );
        assert_eq!(
            parse_value_size("10-1000"),
            Ok(ValueSize { min: 10, max: 1000 })
        );
        for bad in ["", "10-", "100-10", "1-99999999999", "x"] {
            assert!(parse_value_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn command_line() {
        let args = BenchArgs::try_parse_from([
            "--target",
            "10.0.0.1:7379",
            "--target",
            "[::1]:6379",
            "-c",
            "8",
            "--rate",
            "1000",
            "--mget",
            "10",
            "--requests",
            "500",
        ])
        .unwrap();
        assert_eq!(args.targets, ["10.0.0.1:7379", "[::1]:6379"]);
        assert_eq!(args.connections, 8);
        assert_eq!(args.measured_duration(), None);
        let defaults = BenchArgs::new();
        assert_eq!(defaults.targets, ["127.0.0.1:7379"]);
        assert_eq!(defaults.measured_duration(), Some(DEFAULT_DURATION));
        for bad in [
            &["--connections", "0"][..],
            &["--connections", "1000000"],
            &["--pipeline", "0"],
            &["--duration", "1s", "--requests", "5"],
            &["--target", "localhost"],
            &["--target", "localhost:0"],
            &["--keys", "0"],
            &["--rate", "0"],
            &["--mget", "0"],
            &["--ttl", "0"],
            &["--distribution", "zipf:x"],
        ] {
            assert!(BenchArgs::try_parse_from(bad).is_err(), "{bad:?} accepted");
        }
    }
}
