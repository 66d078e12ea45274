//! The daily plan of a campaign's spend: what share of the day's traffic it can expect
//! by each moment of the UTC day, learnt from the opportunities it saw on earlier days.
//!
//! An *opportunity* is a (request, imp, creative) the campaign's targeting, budget and
//! the request's blocks let it bid on: what selection would hand to scoring before
//! pacing throttles it. [`Profile`] holds, per UTC hour, the share of a day's
//! opportunities that fall in that hour; on each new day it folds in the counts of the
//! day before ([`Profile::learn`]), shrunk toward the whole catalog's shape where a
//! campaign saw few opportunities. Before any day has been learnt the plan is flat.
//!
//! Invariant: `shares` are finite, non-negative and sum to 1 (within rounding).

use serde::{Deserialize, Serialize};

pub const HOURS: usize = 24;
const SECONDS_PER_HOUR: i64 = 3600;

/// A campaign's hourly shares of a day's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub shares: [f64; HOURS],
    /// Days folded in so far (0: the flat prior).
    pub days: u32,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile { shares: [1.0 / HOURS as f64; HOURS], days: 0 }
    }
}

/// How a day's counts are folded in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learning {
    /// Weight of the newest day once several are known: an exponential average over
    /// about `1 / memory` days. The first days are averaged equally until then.
    pub memory: f64,
    /// Pseudo-opportunities of the catalog-wide shape added to a campaign's own counts,
    /// so a campaign that saw few opportunities follows the catalog's shape.
    pub prior_weight: f64,
}

impl Profile {
    /// Folds in one day's opportunity counts by hour (`counts`), shrunk toward the
    /// catalog-wide shares (`catalog`, summing to 1). A day with no opportunity at all
    /// teaches nothing about the shape and is skipped.
    pub fn learn(&mut self, counts: &[u64; HOURS], catalog: &[f64; HOURS], how: Learning) {
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return;
        }
        let total = n as f64 + how.prior_weight;
        let day: Vec<f64> = (0..HOURS).map(|h| (counts[h] as f64 + how.prior_weight * catalog[h]) / total).collect();
        let w = (1.0 / f64::from(self.days + 1)).max(how.memory);
        for (s, d) in self.shares.iter_mut().zip(&day) {
            *s = (1.0 - w) * *s + w * d;
        }
        self.days += 1;
        normalise(&mut self.shares);
    }

    /// The share of the day's traffic before `second_of_day` (0..86400): whole hours,
    /// plus the running hour's share in proportion to the time gone in it.
    pub fn cumulative(&self, second_of_day: i64) -> f64 {
        let s = second_of_day.clamp(0, HOURS as i64 * SECONDS_PER_HOUR);
        let hour = (s / SECONDS_PER_HOUR) as usize;
        let whole: f64 = self.shares[..hour.min(HOURS)].iter().sum();
        if hour >= HOURS {
            return whole.min(1.0);
        }
        let part = (s % SECONDS_PER_HOUR) as f64 / SECONDS_PER_HOUR as f64;
        (whole + part * self.shares[hour]).min(1.0)
    }
}

/// The catalog-wide shares from every campaign's counts of a day; flat when there were none.
pub fn catalog_shares<'a>(days: impl Iterator<Item = &'a [u64; HOURS]>) -> [f64; HOURS] {
    let mut sum = [0.0; HOURS];
    for counts in days {
        for (s, c) in sum.iter_mut().zip(counts) {
            *s += *c as f64;
        }
    }
    if sum.iter().sum::<f64>() <= 0.0 {
        return Profile::default().shares;
    }
    normalise(&mut sum);
    sum
}

/// The UTC hour of a Unix second.
pub fn hour_of(unix_s: i64) -> usize {
    (unix_s.rem_euclid(86_400) / SECONDS_PER_HOUR) as usize
}

fn normalise(shares: &mut [f64; HOURS]) {
    let sum: f64 = shares.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        shares.iter_mut().for_each(|s| *s /= sum);
    } else {
        *shares = Profile::default().shares;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOW: Learning = Learning { memory: 0.3, prior_weight: 0.0 };

    fn counts(f: impl Fn(usize) -> u64) -> [u64; HOURS] {
        std::array::from_fn(f)
    }

    #[test]
    fn the_prior_is_flat_and_cumulative_interpolates_within_the_hour() {
        let p = Profile::default();
        assert_eq!(p.cumulative(0), 0.0);
        assert!((p.cumulative(3600 * 6) - 0.25).abs() < 1e-12);
        assert!((p.cumulative(3600 * 6 + 1800) - (6.5 / 24.0)).abs() < 1e-12);
        assert!((p.cumulative(86_400) - 1.0).abs() < 1e-12);
        assert!((p.cumulative(90_000) - 1.0).abs() < 1e-12, "clamped to the day");
    }

    #[test]
    fn one_day_learnt_is_that_days_shape() {
        let mut p = Profile::default();
        // Twice the traffic in the second half of the day.
        p.learn(&counts(|h| if h < 12 { 100 } else { 200 }), &Profile::default().shares, HOW);
        assert_eq!(p.days, 1);
        assert!((p.cumulative(43_200) - 1.0 / 3.0).abs() < 1e-12, "{}", p.cumulative(43_200));
    }

    #[test]
    fn later_days_move_the_shape_by_the_memory_weight() {
        let mut p = Profile::default();
        let flat = Profile::default().shares;
        p.learn(&counts(|_| 10), &flat, HOW);
        p.learn(&counts(|_| 10), &flat, HOW);
        // Third day all in hour 0: the weight is max(1/3, 0.3) = 1/3.
        p.learn(&counts(|h| if h == 0 { 240 } else { 0 }), &flat, HOW);
        assert!((p.shares[0] - (2.0 / 3.0 / 24.0 + 1.0 / 3.0)).abs() < 1e-12, "{}", p.shares[0]);
        assert!((p.shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn few_opportunities_follow_the_catalogs_shape() {
        let catalog = catalog_shares([counts(|h| if h < 12 { 0 } else { 1000 })].iter());
        let mut p = Profile::default();
        // 2 opportunities, both at hour 0, against a prior weight of 198.
        p.learn(&counts(|h| u64::from(h == 0) * 2), &catalog, Learning { memory: 0.3, prior_weight: 198.0 });
        assert!((p.shares[0] - 0.01).abs() < 1e-12, "{}", p.shares[0]);
        assert!((p.cumulative(43_200) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn an_empty_day_teaches_nothing() {
        let mut p = Profile::default();
        p.learn(&[0; HOURS], &Profile::default().shares, HOW);
        assert_eq!(p, Profile::default());
        assert_eq!(catalog_shares(std::iter::empty()), Profile::default().shares);
    }

    #[test]
    fn hours_are_utc_hours_of_the_day() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(86_400 * 3 + 3600 * 5 + 59), 5);
        assert_eq!(hour_of(-1), 23);
    }
}
