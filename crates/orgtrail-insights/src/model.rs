//! orgtrail's rate model: a per-key baseline of calls per minute and the upper bound a minute
//! must reach to be unusual.
//!
//! # Baseline
//! Each closed minute's count `c` updates a mean `mu` and a variance `var` with weight `1/n`,
//! where `n = min(history, W)`, `history` the minutes seen so far and `W` the baseline window
//! in minutes:
//!
//! ```text
//! d = c - mu;  mu += d / n;  var = (1 - 1/n) * (var + d*d / n)
//! ```
//!
//! Until `W` minutes of history exist this is the exact mean (and population variance) of
//! every minute seen; after that it is an exponentially weighted average whose time constant
//! is the window (7 days by default). It takes 20 bytes per key, whatever the window.
//!
//! # Bound
//! A minute's count is modelled as Poisson with mean `mu`, widened when the key's traffic is
//! burstier than Poisson (quasi-Poisson: variance `phi * mu` with `phi = max(1, var / mu)`).
//! The bound is the smallest count `k` whose upper-tail probability is at most the configured
//! sensitivity `p`:
//!
//! ```text
//! k_poisson = min { k : P(X >= k) <= p },  X ~ Poisson(mu)
//! bound     = max(min_count, ceil(mu + (k_poisson - mu) * sqrt(phi)))
//! ```
//!
//! `P(X >= k)` is summed exactly for `mu <= 100`; above, the Cornish-Fisher approximation
//! `mu + z*sqrt(mu) + (z*z - 1)/6` is used, `z` the standard normal quantile of `p`. A minute
//! whose count reaches `bound` is unusual. With the defaults (`p = 1e-6`, `min_count = 5`) a
//! key with a baseline of 0.01 calls/minute needs 5 calls in a minute, one of 10/minute needs
//! 28, one of 1,000/minute about 1,160.

/// At or below this mean the Poisson tail is summed exactly.
const EXACT_MAX_MEAN: f64 = 100.0;

/// After this many minutes of a quiet stretch are folded one by one, the rest are folded in
/// closed form (mean and variance decay by `(1 - 1/W)` per minute).
const ZERO_STEPS: u64 = 2048;

/// The baseline of one key.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Baseline {
    /// Mean calls per minute.
    pub(crate) mean: f64,
    /// Variance of calls per minute.
    pub(crate) var: f64,
    /// Minutes of history folded in (saturating).
    pub(crate) history: u32,
}

impl Baseline {
    /// Folds one closed minute of `count` calls in; returns the factor by which older weight
    /// decayed (`1 - 1/n`), for the attribution sketches that track shares of the mean.
    pub(crate) fn fold(&mut self, count: u32, window: u32) -> f64 {
        self.history = self.history.saturating_add(1);
        let n = f64::from(self.history.min(window).max(1));
        let d = f64::from(count) - self.mean;
        self.mean += d / n;
        let keep = 1.0 - 1.0 / n;
        self.var = keep * (self.var + d * d / n);
        keep
    }

    /// Folds `minutes` minutes without calls in; returns the product of the decay factors.
    pub(crate) fn fold_zeros(&mut self, minutes: u64, window: u32) -> f64 {
        let mut factor = 1.0;
        let steps = minutes.min(ZERO_STEPS);
        for _ in 0..steps {
            factor *= self.fold(0, window);
        }
        let rest = minutes - steps;
        if rest > 0 {
            let keep = (1.0 - 1.0 / f64::from(window.max(1))).powf(rest as f64);
            self.mean *= keep;
            self.var *= keep;
            self.history = self
                .history
                .saturating_add(u32::try_from(rest).unwrap_or(u32::MAX));
            factor *= keep;
        }
        factor
    }

    /// The count one (quasi-Poisson) standard deviation above the mean, rounded up: what an
    /// unusual minute is folded in as.
    pub(crate) fn one_sd_above(&self) -> u32 {
        let mu = self.mean.max(0.0);
        let sd = self.var.max(mu).sqrt();
        let v = (mu + sd).ceil();
        if v.is_finite() && v < f64::from(u32::MAX) {
            v as u32
        } else {
            u32::MAX
        }
    }

    /// Minutes of history the baseline stands for (at most the window).
    pub(crate) fn duration(&self, window: u32) -> u32 {
        self.history.min(window)
    }

    /// The count a minute must reach to be unusual (see the module doc).
    pub(crate) fn bound(&self, p: f64, z: f64, min_count: u32) -> u32 {
        let mu = self.mean.max(0.0);
        let k = poisson_upper_bound(mu, p, z);
        let phi = if mu > 0.0 {
            (self.var / mu).max(1.0)
        } else {
            1.0
        };
        let widened = (mu + (k - mu) * phi.sqrt()).ceil();
        let widened = if widened.is_finite() && widened < f64::from(u32::MAX) {
            widened as u32
        } else {
            u32::MAX
        };
        widened.max(min_count)
    }
}

/// The smallest `k` with `P(X >= k) <= p` for `X ~ Poisson(mu)`, as a float.
pub(crate) fn poisson_upper_bound(mu: f64, p: f64, z: f64) -> f64 {
    if mu <= 0.0 {
        return 1.0;
    }
    if mu > EXACT_MAX_MEAN {
        return (mu + z * mu.sqrt() + (z * z - 1.0) / 6.0).ceil();
    }
    // P(X >= k) = 1 - P(X <= k - 1): walk the CDF up until the tail left is at most p.
    let mut pmf = (-mu).exp();
    let mut cdf = pmf;
    let mut k = 0.0;
    while 1.0 - cdf > p {
        k += 1.0;
        pmf *= mu / k;
        cdf += pmf;
        if pmf == 0.0 && k > mu {
            break;
        }
    }
    k + 1.0
}

/// The standard normal quantile of the upper-tail probability `p`: `z` with `Q(z) = p`.
pub(crate) fn upper_tail_z(p: f64) -> f64 {
    if !(p > 0.0 && p < 0.5) {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if normal_upper_tail(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// `Q(z) = P(Z >= z)` for a standard normal `Z`, via `erfc` (Numerical Recipes' `erfcc`,
/// fractional error below 1.2e-7 everywhere).
fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(mu: f64, k: u32) -> f64 {
        // P(X >= k), summed directly.
        let mut pmf = (-mu).exp();
        let mut cdf = 0.0;
        for j in 0..k {
            if j > 0 {
                pmf *= mu / f64::from(j);
            }
            cdf += pmf;
        }
        1.0 - cdf
    }

    #[test]
    fn the_exact_bound_is_the_smallest_count_past_the_tail() {
        let p = 1e-6;
        let z = upper_tail_z(p);
        for mu in [0.01, 0.5, 1.0, 3.0, 10.0, 42.0, 99.0] {
            let k = poisson_upper_bound(mu, p, z) as u32;
            assert!(tail(mu, k) <= p, "mu {mu}: P(X>={k}) = {}", tail(mu, k));
            assert!(tail(mu, k - 1) > p, "mu {mu}: {k} is not the smallest");
        }
    }

    #[test]
    fn the_approximate_bound_meets_the_exact_one() {
        let p = 1e-6;
        let z = upper_tail_z(p);
        // Just past the exact range the approximation stays within 2 calls of the exact bound.
        let pmf_bound = |mu: f64| {
            let mut pmf = (-mu).exp();
            let mut cdf = pmf;
            let mut k = 0.0;
            while 1.0 - cdf > p {
                k += 1.0;
                pmf *= mu / k;
                cdf += pmf;
            }
            k + 1.0
        };
        for mu in [101.0, 150.0, 300.0] {
            let exact = pmf_bound(mu);
            let approx = poisson_upper_bound(mu, p, z);
            assert!(
                (exact - approx).abs() <= 2.0,
                "mu {mu}: {exact} vs {approx}"
            );
        }
    }

    #[test]
    fn z_inverts_the_normal_tail() {
        assert!((upper_tail_z(0.5 - 1e-12)).abs() < 1e-3);
        assert!((upper_tail_z(0.022_750_13) - 2.0).abs() < 1e-3);
        assert!((upper_tail_z(2.866_515_7e-7) - 5.0).abs() < 1e-2);
    }

    #[test]
    fn the_baseline_is_the_mean_until_the_window_then_weighted() {
        let mut b = Baseline::default();
        for c in [2, 4, 6] {
            b.fold(c, 10);
        }
        assert!((b.mean - 4.0).abs() < 1e-12);
        assert!((b.var - 8.0 / 3.0).abs() < 1e-12);
        b.fold_zeros(3, 10);
        assert!((b.mean - 2.0).abs() < 1e-12, "{}", b.mean);
        assert_eq!(b.history, 6);
        // Saturated: each quiet minute keeps (1 - 1/W) of the mean.
        let before = b.mean;
        b.fold_zeros(5000, 10);
        assert!(b.mean < before * 1e-6);
        assert_eq!(b.duration(10), 10);
    }

    /// The table in docs/insights.md.
    #[test]
    fn the_documented_bounds_hold() {
        let (p, z) = (1e-7, upper_tail_z(1e-7));
        let poisson = |mu: f64| Baseline {
            mean: mu,
            var: mu,
            history: 10_080,
        };
        let got: Vec<u32> = [0.0, 0.01, 1.0, 10.0, 100.0]
            .iter()
            .map(|&mu| poisson(mu).bound(p, z, 5))
            .collect();
        assert_eq!(got, [5, 5, 11, 31, 157]);
    }

    #[test]
    fn zero_to_two_calls_is_not_unusual() {
        let mut b = Baseline::default();
        b.fold_zeros(60, 10_080);
        assert_eq!(b.bound(1e-6, upper_tail_z(1e-6), 5), 5);
    }

    #[test]
    fn bursty_traffic_widens_the_bound() {
        let (p, z) = (1e-6, upper_tail_z(1e-6));
        let mut steady = Baseline::default();
        let mut bursty = Baseline::default();
        for i in 0..600u32 {
            steady.fold(10, 10_080);
            bursty.fold(if i % 2 == 0 { 0 } else { 20 }, 10_080);
        }
        assert!(bursty.bound(p, z, 5) > steady.bound(p, z, 5) + 10);
    }
}
