//! The statistics behind experiment results, as pure functions: summaries, confidence
//! intervals, Welch's t-test for means, the two-proportion z-test with Wilson intervals for
//! rates, chi-square tests (goodness of fit for sample-ratio mismatch, independence for
//! categories) and percentiles. Distribution functions come from `statrs`.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

/// Two-sided 95 %: the normal quantile.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Count, mean and sample variance of a set of numbers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub n: u64,
    pub mean: f64,
    /// Sample variance (n − 1 in the denominator); 0 for fewer than two values.
    pub variance: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        if n == 0 {
            return Self::default();
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let variance = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Self {
            n: n as u64,
            mean,
            variance,
        }
    }
}

/// A two-sided test's statistic and p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    pub statistic: f64,
    /// Degrees of freedom where the test has them.
    pub df: Option<f64>,
    pub p_value: f64,
}

fn normal_two_sided(z: f64) -> f64 {
    match Normal::new(0.0, 1.0) {
        Ok(n) => (2.0 * (1.0 - n.cdf(z.abs()))).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

/// The 95 % confidence interval of a mean (Student's t with n − 1 degrees of freedom).
pub fn mean_ci(s: &Summary) -> Option<(f64, f64)> {
    if s.n < 2 {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, (s.n - 1) as f64)
        .ok()?
        .inverse_cdf(0.975);
    let half = t * (s.variance / s.n as f64).sqrt();
    Some((s.mean - half, s.mean + half))
}

/// Welch's t-test of `b`'s mean against `a`'s (unequal variances), two-sided. `None` when a
/// side has fewer than two values or both have no variance.
pub fn welch(a: &Summary, b: &Summary) -> Option<Test> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let va = a.variance / a.n as f64;
    let vb = b.variance / b.n as f64;
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let t = (b.mean - a.mean) / se2.sqrt();
    let df = se2.powi(2) / (va.powi(2) / (a.n - 1) as f64 + vb.powi(2) / (b.n - 1) as f64);
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p = (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0);
    Some(Test {
        statistic: t,
        df: Some(df),
        p_value: p,
    })
}

/// The Wilson score interval (95 %) of `successes` out of `n`.
pub fn wilson(successes: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = Z_95 * Z_95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z_95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// The pooled two-proportion z-test of `b`'s rate against `a`'s, two-sided.
pub fn two_proportions(a_successes: u64, a_n: u64, b_successes: u64, b_n: u64) -> Option<Test> {
    if a_n == 0 || b_n == 0 {
        return None;
    }
    let (na, nb) = (a_n as f64, b_n as f64);
    let pooled = (a_successes + b_successes) as f64 / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    if se <= 0.0 {
        return None;
    }
    let z = (b_successes as f64 / nb - a_successes as f64 / na) / se;
    Some(Test {
        statistic: z,
        df: None,
        p_value: normal_two_sided(z),
    })
}

fn chi_square_p(statistic: f64, df: f64) -> Option<f64> {
    let dist = ChiSquared::new(df).ok()?;
    Some((1.0 - dist.cdf(statistic)).clamp(0.0, 1.0))
}

/// Chi-square goodness of fit of observed counts against expected proportions (which sum to 1).
pub fn goodness_of_fit(observed: &[u64], expected_share: &[f64]) -> Option<Test> {
    let total: u64 = observed.iter().sum();
    if observed.len() < 2 || observed.len() != expected_share.len() || total == 0 {
        return None;
    }
    let mut x = 0.0;
    for (o, share) in observed.iter().zip(expected_share) {
        let e = share * total as f64;
        if e <= 0.0 {
            return None;
        }
        x += (*o as f64 - e).powi(2) / e;
    }
    let df = (observed.len() - 1) as f64;
    Some(Test {
        statistic: x,
        df: Some(df),
        p_value: chi_square_p(x, df)?,
    })
}

/// Chi-square test of independence of a 2 × k table of counts (two variants × categories).
pub fn independence(a: &[u64], b: &[u64]) -> Option<Test> {
    let columns: Vec<(u64, u64)> = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x, *y))
        .filter(|(x, y)| x + y > 0)
        .collect();
    let (ta, tb): (u64, u64) = columns
        .iter()
        .fold((0, 0), |(sa, sb), (x, y)| (sa + x, sb + y));
    if columns.len() < 2 || ta == 0 || tb == 0 {
        return None;
    }
    let total = (ta + tb) as f64;
    let mut x = 0.0;
    for (ca, cb) in &columns {
        let col = (ca + cb) as f64;
        for (observed, row) in [(*ca, ta), (*cb, tb)] {
            let e = row as f64 * col / total;
            x += (observed as f64 - e).powi(2) / e;
        }
    }
    let df = (columns.len() - 1) as f64;
    Some(Test {
        statistic: x,
        df: Some(df),
        p_value: chi_square_p(x, df)?,
    })
}

/// The `q` quantile (0–1) by linear interpolation between closest ranks; `values` is sorted
/// in place.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(values[lo] + (values[hi] - values[lo]) * frac)
}

/// `p = 0.012`, or `p < 0.001`.
pub fn format_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_owned()
    } else {
        format!("p = {p:.3}")
    }
}
