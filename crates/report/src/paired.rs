//! Paired, prompt-level statistics for two configurations scored on the same prompts: every
//! prompt's verdict under A beside its verdict under B, within each replicate (seed), pooled.
//!
//! Intervals over seeds alone use two or three numbers per configuration; the verdicts behind
//! each rate are hundreds, and pairing them removes the prompts' own difficulty from the
//! comparison. Two answers come out:
//! - an exact McNemar test: under "A and B do not differ", each prompt judged differently
//!   (discordant) is A's or B's with probability ½, independently, in every seed alike; so
//!   the number that are A's is Binomial(discordant, ½), and pooling seeds stratifies by them;
//! - a two-level bootstrap interval for the difference in rate: resample seeds, then prompts
//!   within each drawn seed (the same prompts for A and B), so the interval carries both the
//!   fine-tuning seed's variance and the prompt sample's.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The paired verdicts of one replicate: `(A's, B's)` per prompt, `true` where the prompt
/// counts towards the rate (unsafe, refused, correct, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stratum {
    /// The replicate's name, e.g. `seed=1`.
    pub label: String,
    /// One pair per prompt.
    pub pairs: Vec<(bool, bool)>,
}

/// The comparison of A with B on one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Prompts paired, all strata together.
    pub prompts: usize,
    /// A's rate over every pair.
    pub rate_a: f64,
    /// B's rate over every pair.
    pub rate_b: f64,
    /// `rate_a - rate_b`.
    pub difference: f64,
    /// The 2.5th and 97.5th percentiles of the difference over the bootstrap's resamples.
    pub ci95: (f64, f64),
    /// Prompts that count under A only.
    pub only_a: u64,
    /// Prompts that count under B only.
    pub only_b: u64,
    /// The exact McNemar test's two-sided p-value.
    pub p_value: f64,
    /// Bootstrap resamples drawn.
    pub resamples: usize,
}

/// Compares A with B over `strata` (each non-empty), with `resamples` bootstrap draws from a
/// fixed seed, so the same verdicts always give the same interval. `None` without pairs.
pub fn compare(strata: &[Stratum], resamples: usize) -> Option<Comparison> {
    let prompts: usize = strata.iter().map(|s| s.pairs.len()).sum();
    if prompts == 0 || strata.iter().any(|s| s.pairs.is_empty()) {
        return None;
    }
    let count = |pick: fn(&(bool, bool)) -> bool| -> u64 {
        strata
            .iter()
            .flat_map(|s| &s.pairs)
            .filter(|p| pick(p))
            .count() as u64
    };
    let (hits_a, hits_b) = (count(|p| p.0), count(|p| p.1));
    let (only_a, only_b) = (count(|p| p.0 && !p.1), count(|p| !p.0 && p.1));
    let rate_a = hits_a as f64 / prompts as f64;
    let rate_b = hits_b as f64 / prompts as f64;
    Some(Comparison {
        prompts,
        rate_a,
        rate_b,
        difference: rate_a - rate_b,
        ci95: bootstrap(strata, resamples),
        only_a,
        only_b,
        p_value: mcnemar_exact(only_a, only_b),
        resamples,
    })
}

/// The exact (binomial) McNemar test's two-sided p-value for `b` and `c` discordant pairs:
/// twice the smaller tail of Binomial(b + c, ½), at most 1; 1 without discordant pairs.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    (2.0 * binomial_half_cdf(b.min(c), n)).min(1.0)
}

/// P(X ≤ k) for X ~ Binomial(n, ½), summed in log space so that n in the tens of thousands
/// neither underflows nor overflows.
fn binomial_half_cdf(k: u64, n: u64) -> f64 {
    let mut log_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut log_sum = log_pmf;
    for i in 1..=k.min(n) {
        log_pmf += ((n - i + 1) as f64).ln() - (i as f64).ln();
        let (hi, lo) = if log_pmf > log_sum {
            (log_pmf, log_sum)
        } else {
            (log_sum, log_pmf)
        };
        log_sum = hi + (lo - hi).exp().ln_1p();
    }
    log_sum.exp().min(1.0)
}

/// The two-level bootstrap's 95 % percentile interval for A's rate minus B's.
fn bootstrap(strata: &[Stratum], resamples: usize) -> (f64, f64) {
    if resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut differences = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let (mut sum, mut n) = (0i64, 0usize);
        for _ in 0..strata.len() {
            let stratum = &strata[rng.random_range(0..strata.len())];
            let pairs = &stratum.pairs;
            for _ in 0..pairs.len() {
                let (a, b) = pairs[rng.random_range(0..pairs.len())];
                sum += i64::from(a) - i64::from(b);
            }
            n += pairs.len();
        }
        differences.push(sum as f64 / n as f64);
    }
    differences.sort_by(f64::total_cmp);
    (
        percentile(&differences, 0.025),
        percentile(&differences, 0.975),
    )
}

/// The `q` quantile of sorted `values`, interpolated linearly between ranks (numpy's default).
fn percentile(values: &[f64], q: f64) -> f64 {
    let at = q * (values.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (at - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binomial tail written out term by term with exact integer binomial coefficients,
    /// independent of the log-space sum above.
    fn exact_two_sided(b: u64, c: u64) -> f64 {
        let n = b + c;
        let choose = |n: u64, k: u64| -> f64 {
            let mut v = 1u128;
            for i in 0..k {
                v = v * u128::from(n - i) / u128::from(i + 1);
            }
            v as f64
        };
        let tail: f64 = (0..=b.min(c)).map(|k| choose(n, k)).sum::<f64>() / 2f64.powi(n as i32);
        (2.0 * tail).min(1.0)
    }

    #[test]
    fn mcnemar_matches_the_binomial_written_out() {
        // b = 1, c = 9: 2 * (1 + 10) / 1024.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-15);
        for (b, c) in [(0, 0), (0, 5), (3, 3), (7, 2), (12, 30), (40, 61), (0, 60)] {
            let (ours, theirs) = (mcnemar_exact(b, c), exact_two_sided(b, c));
            assert!(
                (ours - theirs).abs() <= 1e-12 * theirs.max(1e-300) + 1e-300,
                "b={b} c={c}: {ours} vs {theirs}"
            );
        }
        assert_eq!(mcnemar_exact(4, 4), 1.0);
        // Far past f64's factorials: finite, tiny, and symmetric.
        let p = mcnemar_exact(10_000, 12_000);
        assert!(p > 0.0 && p < 1e-30, "{p}");
        assert_eq!(p, mcnemar_exact(12_000, 10_000));
    }

    fn stratum(label: &str, pairs: &[(bool, bool)]) -> Stratum {
        Stratum {
            label: label.into(),
            pairs: pairs.to_vec(),
        }
    }

    #[test]
    fn rates_and_discordant_pairs_pool_the_seeds() {
        let strata = [
            stratum(
                "seed=0",
                &[(true, false), (true, true), (false, false), (false, true)],
            ),
            stratum(
                "seed=1",
                &[(true, false), (true, false), (false, false), (false, false)],
            ),
        ];
        let c = compare(&strata, 2000).unwrap();
        assert_eq!(c.prompts, 8);
        assert_eq!((c.rate_a, c.rate_b), (4.0 / 8.0, 2.0 / 8.0));
        assert_eq!((c.only_a, c.only_b), (3, 1));
        assert_eq!(c.p_value, mcnemar_exact(3, 1));
        assert!(
            c.ci95.0 <= c.difference && c.difference <= c.ci95.1,
            "{c:?}"
        );
        assert_eq!(compare(&strata, 2000), Some(c), "the same draws every time");
        assert_eq!(compare(&[], 10), None);
        assert_eq!(compare(&[stratum("s", &[])], 10), None);
    }

    #[test]
    fn the_interval_is_degenerate_when_every_pair_agrees_on_the_difference() {
        let all_a = stratum("seed=0", &[(true, false); 50]);
        let c = compare(&[all_a.clone(), all_a], 500).unwrap();
        assert_eq!(c.ci95, (1.0, 1.0));
        assert!(c.p_value < 1e-20);
    }

    /// Seeds that disagree widen the interval beyond what the prompts alone would give: the
    /// first level of the bootstrap at work.
    #[test]
    fn seed_to_seed_variation_widens_the_interval() {
        let mixed: Vec<(bool, bool)> = (0..100).map(|i| (i % 2 == 0, i % 4 == 0)).collect();
        let one = compare(&[stratum("s", &mixed), stratum("t", &mixed)], 4000).unwrap();
        let better: Vec<(bool, bool)> = (0..100).map(|i| (i % 10 != 0, i % 4 == 0)).collect();
        let worse: Vec<(bool, bool)> = (0..100).map(|i| (i % 10 == 0, i % 4 == 0)).collect();
        let two = compare(&[stratum("s", &better), stratum("t", &worse)], 4000).unwrap();
        let width = |c: &Comparison| c.ci95.1 - c.ci95.0;
        assert!(width(&two) > 2.0 * width(&one), "{one:?} {two:?}");
    }

    #[test]
    fn percentiles_interpolate_as_numpy_does() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.025), 0.1);
        assert_eq!(percentile(&v, 0.975), 3.9);
    }
}
