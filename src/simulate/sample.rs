//! Sampling helpers: Walker alias tables for large fixed distributions, linear picks for
//! small tables, Zipf–Mandelbrot weights for long tails, and the continuous draws the
//! generators use.
//!
//! Every helper takes the generator explicitly, so a caller decides which seeded stream
//! a draw comes from and output stays a pure function of the seed.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// A discrete distribution sampled in O(1) (Walker's alias method).
///
/// Invariants: `prob.len() == alias.len() > 0`; every `prob` lies in `[0, 1]`; every
/// `alias` is a valid index.
#[derive(Debug, Clone)]
pub struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    /// Builds the table. Panics if `weights` is empty or sums to zero (a generator bug).
    pub fn new(weights: &[f64]) -> Alias {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        assert!(n > 0 && total > 0.0, "alias table needs positive weights");
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut prob = vec![1.0; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        Alias { prob, alias }
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> usize {
        let i = rng.gen_range(0..self.prob.len());
        if rng.gen::<f64>() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

/// Index drawn in proportion to `weights` by a linear scan: for tables of a few dozen.
pub fn pick<R: Rng>(rng: &mut R, weights: impl IntoIterator<Item = f64> + Clone) -> usize {
    let total: f64 = weights.clone().into_iter().sum();
    let mut x = rng.gen::<f64>() * total;
    let mut last = 0;
    for (i, w) in weights.into_iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
        last = i;
    }
    last
}

/// Zipf–Mandelbrot weights `1 / (rank + q)^s` for ranks `1..=n`.
pub fn zipf_weights(n: usize, s: f64, q: f64) -> Vec<f64> {
    (1..=n).map(|r| (r as f64 + q).powf(-s)).collect()
}

/// A standard normal draw times `sd`.
pub fn normal<R: Rng>(rng: &mut R, sd: f64) -> f64 {
    let z: f64 = StandardNormal.sample(rng);
    z * sd
}

/// Log-uniform on `[lo, hi]`.
pub fn log_uniform<R: Rng>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.gen::<f64>() * (hi.ln() - lo.ln())).exp()
}

/// Rounds to cents, the precision prices travel with.
pub fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A random permutation of `0..n`.
pub fn permutation<R: Rng>(rng: &mut R, n: usize) -> Vec<u32> {
    use rand::seq::SliceRandom;
    let mut v: Vec<u32> = (0..n as u32).collect();
    v.shuffle(rng);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn alias_follows_weights() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let table = Alias::new(&[1.0, 0.0, 3.0]);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[table.sample(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = counts[2] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{counts:?}");
    }
}
