//! Workload generation: which operation, which key, how big a value.
//!
//! A request is drawn in three steps, each from the connection's own seeded RNG (so a run
//! is reproducible for a given `--seed`, connection count and interleaving of replies):
//!
//! 1. **Operation** from the `--ratio GET:SET:DEL` weights ([`OpMix`]). With `--mget N` a
//!    read is one `MGET` of `N` keys instead of one `GET`.
//! 2. **Key rank** from the key-popularity distribution ([`KeySampler`]): rank 0 is the most
//!    popular key. Three laws are offered:
//!    - `uniform`: every key equally likely.
//!    - `zipf:S`: `P(rank k) ∝ 1 / k^S` for `k = 1..=keys`, sampled exactly by
//!      rejection-inversion (Hörmann & Derflinger 1996, the method of Apache Commons RNG's
//!      `RejectionInversionZipfSampler` and `rand_distr::Zipf`) in O(1) time and memory
//!      per sample, with no table over the key space. `S = 0.99` is the classic YCSB skew.
//!    - `hotspot:FRACTION:SHARE`: the first `ceil(FRACTION × keys)` ranks (the hot set)
//!      receive `SHARE` of the requests, uniformly among them; the rest receive the
//!      remainder, uniformly among them.
//! 3. **Key id** = a fixed pseudo-random permutation of the rank ([`KeyPermutation`]), so
//!    that the hottest keys are scattered ids (`key:48213`, `key:907`, ...) rather than
//!    `key:0`, `key:1`, ...; their positions on the hash ring are then as random as any
//!    other key's. The permutation is a 4-round Feistel network on the smallest
//!    even-width power of two covering the key space, restricted to `0..keys` by cycle
//!    walking (re-encrypt until the result falls inside); it is a bijection, so every key
//!    keeps its own popularity, and costs on average fewer than four network evaluations.
//!
//! Values are `--value-size` bytes (fixed or uniform in `MIN..=MAX`), sliced from one
//! shared random payload. Preloading (`--preload`) writes every id in `0..keys` once.
//!
//! Non-goals: value compressibility models, key-size distributions, read-modify-write
//! sequences, or time-varying popularity (hot keys that move during a run).

use rand::Rng;

/// The number of Feistel rounds of [`KeyPermutation`]. Four rounds of a good mixing
/// function give a permutation indistinguishable from random for this purpose.
const FEISTEL_ROUNDS: usize = 4;

/// How key popularity is distributed over the key space (`--distribution`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// Zipf's law with this exponent (`> 0`): `P(rank k) ∝ k^-exponent`.
    Zipf {
        /// The skew exponent `S`; larger is more skewed.
        exponent: f64,
    },
    /// `fraction` of the keys receive `share` of the requests.
    Hotspot {
        /// Share of the key space that is hot, in `(0, 1)`.
        fraction: f64,
        /// Share of the requests that go to the hot keys, in `[0, 1]`.
        share: f64,
    },
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Distribution::Uniform => write!(f, "uniform"),
            Distribution::Zipf { exponent } => write!(f, "zipf:{exponent}"),
            Distribution::Hotspot { fraction, share } => write!(f, "hotspot:{fraction}:{share}"),
        }
    }
}

/// Samples key ranks (`0` = most popular) over a key space of `keys` keys.
#[derive(Debug, Clone)]
pub enum KeySampler {
    /// Uniform over `0..keys`.
    Uniform {
        /// Key space size.
        keys: u64,
    },
    /// Zipf by rejection-inversion.
    Zipf(Zipf),
    /// Uniform within the hot set with probability `share`, else within the cold set.
    Hotspot {
        /// Key space size.
        keys: u64,
        /// Number of hot ranks, `1..=keys`; ranks `0..hot` are hot.
        hot: u64,
        /// Probability that a request goes to the hot set.
        share: f64,
    },
}

impl KeySampler {
    /// A sampler for `distribution` over `keys` keys (`keys >= 1`; the distribution's
    /// parameters are already validated by the argument parser).
    pub fn new(distribution: Distribution, keys: u64) -> Self {
        assert!(keys >= 1, "empty key space");
        match distribution {
            Distribution::Uniform => KeySampler::Uniform { keys },
            Distribution::Zipf { exponent } => KeySampler::Zipf(Zipf::new(keys, exponent)),
            Distribution::Hotspot { fraction, share } => {
                let hot = ((fraction * keys as f64).ceil() as u64).clamp(1, keys);
                KeySampler::Hotspot { keys, hot, share }
            }
        }
    }

    /// Draws one rank in `0..keys`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        match *self {
            KeySampler::Uniform { keys } => rng.random_range(0..keys),
            KeySampler::Zipf(ref zipf) => zipf.sample(rng) - 1,
            KeySampler::Hotspot { keys, hot, share } => {
                if hot == keys || rng.random::<f64>() < share {
                    rng.random_range(0..hot)
                } else {
                    rng.random_range(hot..keys)
                }
            }
        }
    }
}

/// The bounded Zipf distribution over `1..=n`, `P(k) = k^-s / H(n, s)`, sampled exactly by
/// rejection-inversion.
///
/// The method inverts the integral `H(x)` of the continuous hat function `h(x) = x^-s`
/// over `[1.5, n + 0.5]`: draw `u` uniform in that integral's range, `x = H⁻¹(u)`,
/// `k = round(x)`, and accept `k` if `x` lies close enough to `k` (the squeeze `k - x <=
/// threshold`) or `u >= H(k + 0.5) - h(k)`; otherwise draw again. The hat hugs the
/// distribution closely, so retries are rare and a sample costs a few `exp`/`ln` calls,
/// independent of `n`.
/// `helper1`/`helper2` are `ln(1+x)/x` and `(e^x-1)/x` with series near 0, which keep
/// the formulas accurate at and around `s = 1`.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: u64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    threshold: f64,
}

impl Zipf {
    /// Zipf over `1..=n` with exponent `s > 0`.
    pub fn new(n: u64, s: f64) -> Self {
        assert!(n >= 1 && s > 0.0 && s.is_finite(), "bad Zipf parameters");
        let mut zipf = Zipf {
            n,
            exponent: s,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            threshold: 0.0,
        };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_n = zipf.h_integral(n as f64 + 0.5);
        zipf.threshold = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        zipf
    }

    /// Draws one rank in `1..=n`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        loop {
            let v: f64 = rng.random();
            let u = self.h_integral_n + v * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = ((x + 0.5) as u64).clamp(1, self.n);
            let kf = k as f64;
            if kf - x <= self.threshold || u >= self.h_integral(kf + 0.5) - self.h(kf) {
                return k;
            }
        }
    }

    /// `H(x) = ((x^(1-s)) - 1) / (1 - s)`, the integral of `h`, written to stay exact at
    /// `s = 1` (where it is `ln x`).
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, continuous at 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, continuous at 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

/// A seeded bijection of `0..keys` onto itself (Feistel network + cycle walking).
#[derive(Debug, Clone)]
pub struct KeyPermutation {
    keys: u64,
    half_bits: u32,
    round_keys: [u64; FEISTEL_ROUNDS],
}

impl KeyPermutation {
    /// The permutation of `0..keys` selected by `seed`.
    pub fn new(keys: u64, seed: u64) -> Self {
        assert!(keys >= 1, "empty key space");
        // Bits needed for keys - 1, at least 2, rounded up to an even width.
        let bits = (64 - (keys - 1).leading_zeros()).max(2);
        let half_bits = bits.div_ceil(2);
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        let round_keys = std::array::from_fn(|_| {
            state = splitmix64(state);
            state
        });
        KeyPermutation {
            keys,
            half_bits,
            round_keys,
        }
    }

    /// The key id for `rank` (`rank < keys`).
    pub fn apply(&self, rank: u64) -> u64 {
        debug_assert!(rank < self.keys);
        let mut x = self.encrypt(rank);
        while x >= self.keys {
            x = self.encrypt(x);
        }
        x
    }

    fn encrypt(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for key in self.round_keys {
            let f = splitmix64(right ^ key) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half_bits) | right
    }
}

/// SplitMix64's output function: a fast, well-mixing 64-bit bijection.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The kind of a request, as counted in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// `GET key`.
    Get,
    /// `MGET key...` (with `--mget N`).
    Mget,
    /// `SET key value [EX ttl]`.
    Set,
    /// `DEL key`.
    Del,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 4] = [OpKind::Get, OpKind::Mget, OpKind::Set, OpKind::Del];

    /// Lower-case command name, as shown in the report.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::Mget => "mget",
            OpKind::Set => "set",
            OpKind::Del => "del",
        }
    }

    /// Position in [`OpKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The `--ratio GET:SET:DEL` weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    /// Weight of reads (GET or MGET).
    pub get: u32,
    /// Weight of SETs.
    pub set: u32,
    /// Weight of DELs.
    pub del: u32,
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.get, self.set, self.del)
    }
}

/// Draws operations by the ratio weights.
#[derive(Debug, Clone, Copy)]
pub struct OpMix {
    ratio: Ratio,
    total: u64,
    read: OpKind,
}

impl OpMix {
    /// The mix for `ratio` (at least one non-zero weight); reads are `MGET`s when
    /// `mget` is set.
    pub fn new(ratio: Ratio, mget: bool) -> Self {
        let total = u64::from(ratio.get) + u64::from(ratio.set) + u64::from(ratio.del);
        assert!(total > 0, "all ratio weights are zero");
        OpMix {
            ratio,
            total,
            read: if mget { OpKind::Mget } else { OpKind::Get },
        }
    }

    /// Draws one operation kind.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> OpKind {
        let u = rng.random_range(0..self.total);
        if u < u64::from(self.ratio.get) {
            self.read
        } else if u < u64::from(self.ratio.get) + u64::from(self.ratio.set) {
            OpKind::Set
        } else {
            OpKind::Del
        }
    }
}

/// `--value-size`: a fixed size or a uniform range, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSize {
    /// Smallest value, in bytes.
    pub min: usize,
    /// Largest value, in bytes (`>= min`).
    pub max: usize,
}

impl ValueSize {
    /// Draws one size.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        if self.min == self.max {
            self.min
        } else {
            rng.random_range(self.min..=self.max)
        }
    }
}

impl std::fmt::Display for ValueSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const SAMPLES: usize = 1_000_000;

    /// Pearson's chi-square statistic of `observed` counts against `expected` probabilities.
    fn chi_square(observed: &[u64], expected: &[f64], total: f64) -> f64 {
        observed
            .iter()
            .zip(expected)
            .map(|(&o, &p)| {
                let e = p * total;
                (o as f64 - e).powi(2) / e
            })
            .sum()
    }

    /// Upper critical value of chi-square with `df` degrees of freedom at about p = 0.001
    /// (Wilson–Hilferty approximation).
    fn chi_square_critical(df: f64) -> f64 {
        let z = 3.09;
        let a = 2.0 / (9.0 * df);
        df * (1.0 - a + z * a.sqrt()).powi(3)
    }

    fn zipf_law(n: u64, s: f64) -> Vec<f64> {
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let h: f64 = weights.iter().sum();
        weights.iter().map(|w| w / h).collect()
    }

    fn check_zipf(n: u64, s: f64, seed: u64) {
        let sampler = KeySampler::new(Distribution::Zipf { exponent: s }, n);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..SAMPLES {
            counts[sampler.sample(&mut rng) as usize] += 1;
        }
        let law = zipf_law(n, s);
        // The top ranks, where a biased sampler shows first: each within 4.5 standard
        // deviations of its expected count (about 1% relative error for rank 1).
        for rank in 0..10 {
            let expected = law[rank] * SAMPLES as f64;
            let error = (counts[rank] as f64 - expected).abs();
            assert!(
                error < 4.5 * expected.sqrt(),
                "zipf({s}) n={n} rank {}: observed {} expected {expected:.0}",
                rank + 1,
                counts[rank]
            );
        }
        let chi2 = chi_square(&counts, &law, SAMPLES as f64);
        let critical = chi_square_critical((n - 1) as f64);
        assert!(
            chi2 < critical,
            "zipf({s}) n={n}: chi-square {chi2:.0} >= {critical:.0}"
        );
    }

    #[test]
    fn zipf_follows_the_law() {
        check_zipf(1000, 0.99, 1);
        check_zipf(1000, 1.0, 2);
        check_zipf(100, 1.5, 3);
        check_zipf(500, 0.5, 4);
    }

    #[test]
    fn zipf_catches_a_wrong_exponent() {
        // The same check must fail when the law differs: samples at 0.9 against 0.99.
        let sampler = KeySampler::new(Distribution::Zipf { exponent: 0.9 }, 1000);
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u64; 1000];
        for _ in 0..SAMPLES {
            counts[sampler.sample(&mut rng) as usize] += 1;
        }
        let chi2 = chi_square(&counts, &zipf_law(1000, 0.99), SAMPLES as f64);
        assert!(chi2 > chi_square_critical(999.0) * 2.0, "chi-square {chi2}");
    }

    #[test]
    fn zipf_stays_in_range_for_large_key_spaces() {
        let zipf = Zipf::new(1 << 40, 0.99);
        let mut rng = StdRng::seed_from_u64(5);
        let mut top = 0u64;
        for _ in 0..100_000 {
            let k = zipf.sample(&mut rng);
            assert!((1..=1 << 40).contains(&k));
            top += u64::from(k == 1);
        }
        assert!(top > 0);
        let one = Zipf::new(1, 0.99);
        assert_eq!(one.sample(&mut rng), 1);
    }

    #[test]
    fn uniform_is_uniform() {
        let n = 200;
        let sampler = KeySampler::new(Distribution::Uniform, n);
        let mut rng = StdRng::seed_from_u64(11);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..SAMPLES {
            counts[sampler.sample(&mut rng) as usize] += 1;
        }
        let law = vec![1.0 / n as f64; n as usize];
        let chi2 = chi_square(&counts, &law, SAMPLES as f64);
        assert!(
            chi2 < chi_square_critical((n - 1) as f64),
            "chi-square {chi2}"
        );
    }

    #[test]
    fn hotspot_share_holds() {
        let keys = 10_000;
        for (fraction, share) in [(0.01, 0.9), (0.2, 0.8), (0.5, 0.1)] {
            let sampler = KeySampler::new(Distribution::Hotspot { fraction, share }, keys);
            let hot = (fraction * keys as f64).ceil() as u64;
            let mut rng = StdRng::seed_from_u64(13);
            let mut hot_hits = 0u64;
            let mut first_hot = 0u64;
            let mut first_cold = 0u64;
            for _ in 0..SAMPLES {
                let rank = sampler.sample(&mut rng);
                assert!(rank < keys);
                hot_hits += u64::from(rank < hot);
                first_hot += u64::from(rank == 0);
                first_cold += u64::from(rank == hot);
            }
            let observed = hot_hits as f64 / SAMPLES as f64;
            assert!(
                (observed - share).abs() < 0.005,
                "hotspot {fraction}:{share}: hot share {observed}"
            );
            // Within each set the keys are equally likely.
            let per_hot = share * SAMPLES as f64 / hot as f64;
            let per_cold = (1.0 - share) * SAMPLES as f64 / (keys - hot) as f64;
            assert!((first_hot as f64 - per_hot).abs() < 5.0 * per_hot.sqrt() + 1.0);
            assert!((first_cold as f64 - per_cold).abs() < 5.0 * per_cold.sqrt() + 1.0);
        }
    }

    #[test]
    fn permutation_is_a_bijection_that_scatters() {
        for keys in [1u64, 2, 3, 7, 1000, 4096, 10_007] {
            let perm = KeyPermutation::new(keys, 42);
            let mut seen = vec![false; keys as usize];
            for rank in 0..keys {
                let id = perm.apply(rank);
                assert!(id < keys);
                assert!(!seen[id as usize], "keys={keys}: {id} twice");
                seen[id as usize] = true;
            }
        }
        // The hottest ranks are not the first ids.
        let perm = KeyPermutation::new(1_000_000, 1);
        let top: Vec<u64> = (0..10).map(|r| perm.apply(r)).collect();
        assert!(top.iter().filter(|&&id| id < 1000).count() <= 1, "{top:?}");
        // Another seed, another permutation.
        let other = KeyPermutation::new(1_000_000, 2);
        assert_ne!(top, (0..10).map(|r| other.apply(r)).collect::<Vec<_>>());
    }

    #[test]
    fn op_mix_follows_the_ratio() {
        let mix = OpMix::new(
            Ratio {
                get: 7,
                set: 2,
                del: 1,
            },
            false,
        );
        let mut rng = StdRng::seed_from_u64(3);
        let mut counts = [0u64; 4];
        for _ in 0..SAMPLES {
            counts[mix.sample(&mut rng).index()] += 1;
        }
        let share = |kind: OpKind| counts[kind.index()] as f64 / SAMPLES as f64;
        assert!((share(OpKind::Get) - 0.7).abs() < 0.005);
        assert!((share(OpKind::Set) - 0.2).abs() < 0.005);
        assert!((share(OpKind::Del) - 0.1).abs() < 0.005);
        assert_eq!(counts[OpKind::Mget.index()], 0);
        let mget = OpMix::new(
            Ratio {
                get: 1,
                set: 0,
                del: 0,
            },
            true,
        );
        assert_eq!(mget.sample(&mut rng), OpKind::Mget);
    }
}
