//! The first-price decision rule: the bid that maximises expected surplus
//! `(value - b) x P(win | b)` over `b` in `[floor, value]`, given a log-normal
//! landscape for the minimum price to win, `m = floor_ref x exp(mu + sigma z)`.
//!
//! `P(win | b) = Φ((ln(b / floor_ref) - mu) / sigma)`. In `t = ln b` the logarithm of
//! the objective is `ln(value - e^t) + ln Φ((t - ln floor_ref - mu) / sigma)`: a sum of
//! two concave functions of `t` (`ln Φ` is concave, and so is `ln(value - e^t)`), so the
//! objective is unimodal and a golden-section search on `t` finds its maximum. A width
//! in `t` is a relative width in `b`; the search stops once it is under 1e-4 of the
//! share of the value left as surplus, `1 - b / value` (so that the surplus too is
//! within about 1e-4 where the best bid hugs the value), or after [`MAX_ITERATIONS`]
//! steps. It is deterministic.

use super::normal::ln_cdf;

/// The fixed shading factor [`optimal_bid`] falls back on when the landscape is not a
/// valid one (the bidder's `bidding.first_price_shading` default).
pub const DEFAULT_FIXED_FACTOR: f64 = 0.85;

/// The search stops once the bracket in `ln b` is this narrow times `1 - b / value`:
/// a relative error of about 1e-4 on the price and on the surplus.
const RELATIVE_TOLERANCE: f64 = 1e-4;

/// Golden-section steps at most. From the widest bracket (`[value / 1000, value]`,
/// 6.9 in `ln b`) 24 steps reach the tolerance when the best bid is half the value,
/// 40 when it is within 0.1 % of it.
const MAX_ITERATIONS: u32 = 40;

/// The lowest price searched, as a share of the value, when the floor is lower (or
/// zero). Below a thousandth of the value the surplus cannot grow by more than that
/// thousandth.
const MIN_SHARE_OF_VALUE: f64 = 1e-3;

/// `1 / φ` for the golden ratio `φ`: each step keeps this share of the bracket.
const INV_GOLDEN: f64 = 0.618_033_988_749_895;

/// The fixed-factor bid: `factor x value`, never under the floor, never over the value.
pub fn fixed_bid(value: f64, floor: f64, factor: f64) -> f64 {
    (value * factor).max(floor).min(value)
}

/// The bid in `[floor, value]` that maximises `(value - b) x Φ((ln(b / floor_ref) -
/// mu) / sigma)`, within a relative 1e-4 (all prices in the same unit, USD CPM here).
///
/// The caller guarantees `value >= floor`. Edge cases: `value <= floor` (or a NaN
/// value or floor) returns `floor`; a landscape that is not one (`mu`, `sigma` or `floor_ref`
/// not finite, `sigma <= 0`, `floor_ref <= 0`) or an infinite or non-positive value
/// returns [`fixed_bid`] with [`DEFAULT_FIXED_FACTOR`]. Invariant: for a finite floor
/// the result lies in `[floor, value]`.
pub fn optimal_bid(value: f64, floor: f64, floor_ref: f64, mu: f64, sigma: f64) -> f64 {
    if value.is_nan() || floor.is_nan() || value <= floor {
        return floor;
    }
    let landscape = mu.is_finite() && sigma.is_finite() && sigma > 0.0 && floor_ref.is_finite() && floor_ref > 0.0;
    if !(landscape && value.is_finite() && value > 0.0) {
        return fixed_bid(value, floor, DEFAULT_FIXED_FACTOR);
    }
    let lowest = floor.max(value * MIN_SHARE_OF_VALUE);
    let centre = floor_ref.ln() + mu;
    // ln of the expected surplus at price e^t; -inf at the value (and past it, where
    // e^t rounds over the value).
    let ln_surplus = |t: f64| (value - t.exp()).max(0.0).ln() + ln_cdf((t - centre) / sigma);

    let (mut lo, mut hi) = (lowest.ln(), value.ln());
    let mut x1 = hi - INV_GOLDEN * (hi - lo);
    let mut x2 = lo + INV_GOLDEN * (hi - lo);
    let (mut f1, mut f2) = (ln_surplus(x1), ln_surplus(x2));
    for _ in 0..MAX_ITERATIONS {
        if hi - lo <= RELATIVE_TOLERANCE * (1.0 - x1.exp() / value) {
            break;
        }
        if f1 < f2 {
            (lo, x1, f1) = (x1, x2, f2);
            x2 = lo + INV_GOLDEN * (hi - lo);
            f2 = ln_surplus(x2);
        } else {
            (hi, x2, f2) = (x2, x1, f1);
            x1 = hi - INV_GOLDEN * (hi - lo);
            f1 = ln_surplus(x1);
        }
    }
    let (best_t, best_f) = if f1 >= f2 { (x1, f1) } else { (x2, f2) };
    // The search only gets within the tolerance of a maximum at the lower bound: take
    // the bound itself when it is at least as good.
    if ln_surplus(lowest.ln()) >= best_f {
        lowest
    } else {
        best_t.exp().clamp(lowest, value)
    }
}

#[cfg(test)]
mod tests {
    use super::super::normal::cdf;
    use super::*;

    fn surplus(value: f64, floor_ref: f64, mu: f64, sigma: f64, b: f64) -> f64 {
        (value - b) * cdf(((b / floor_ref).ln() - mu) / sigma)
    }

    /// `optimal_bid` against the argmax of a 20,001-point grid in `ln b`: its surplus is
    /// at least the grid's (less 1e-7 relative: `Φ` has
    /// a relative error of 1e-7), its price within 2e-3 of the grid's, and
    /// it lies in `[floor, value]`.
    fn check(value: f64, floor: f64, floor_ref: f64, mu: f64, sigma: f64) {
        let got = optimal_bid(value, floor, floor_ref, mu, sigma);
        let case = format!("value {value} floor {floor} floor_ref {floor_ref} mu {mu} sigma {sigma}: got {got}");
        assert!(got >= floor && got <= value, "{case}: out of bounds");
        let (lo, hi) = (floor.max(value * MIN_SHARE_OF_VALUE).ln(), value.ln());
        let grid = (0..=20_000).map(|i| (lo + (hi - lo) * f64::from(i) / 20_000.0).exp().min(value));
        let s = |b| surplus(value, floor_ref, mu, sigma, b);
        let best = grid.max_by(|a, b| s(*a).total_cmp(&s(*b))).unwrap();
        assert!(s(got) >= s(best) * (1.0 - 1e-7), "{case}: surplus {} < grid's {} at {best}", s(got), s(best));
        assert!((got / best - 1.0).abs() < 2e-3, "{case}: grid argmax {best}");
    }

    #[test]
    fn optimal_bid_matches_a_grid_search() {
        check(10.0, 1.0, 1.0, 0.5, 0.5); // competing median 1.65 against a value of 10
        check(10.0, 1.0, 1.0, 2.0, 0.3); // competing median 7.4: bid close to it
        check(10.0, 1.0, 1.0, 4.0, 0.5); // competing median 55: bid near the value
        check(10.0, 1.0, 1.0, -3.0, 0.5); // competing prices far under the floor: the floor
        check(10.0, 0.0, 0.5, 0.0, 1.0); // no floor (floor_ref 0.5)
        check(2.0, 1.9, 1.9, 0.0, 0.05); // a narrow landscape at the floor
        check(1e-3, 0.0, 0.5, -7.0, 0.8); // tiny prices
        for value in [1.2, 3.0, 20.0, 150.0] {
            for floor in [0.0, 0.1, 1.0] {
                for mu in [-1.5, -0.5, 0.0, 0.7, 1.5, 3.0] {
                    for sigma in [0.05, 0.3, 1.0, 2.5] {
                        check(value, floor, floor.max(0.5), mu, sigma);
                    }
                }
            }
        }
    }

    #[test]
    fn optimal_bid_edge_cases() {
        let fixed = |v, f| fixed_bid(v, f, DEFAULT_FIXED_FACTOR);
        for (value, floor, floor_ref, mu, sigma, want) in [
            (1.0, 1.0, 1.0, 0.0, 0.5, 1.0),                    // value at the floor: the floor
            (0.5, 1.0, 1.0, 0.0, 0.5, 1.0),                    // value under the floor: the floor
            (f64::NAN, 1.0, 1.0, 0.0, 0.5, 1.0),               // no value: the floor
            (10.0, 1.0, 1.0, f64::NAN, 0.5, 8.5),              // no landscape: fixed factor
            (10.0, 1.0, 1.0, 0.0, 0.0, 8.5),                   // zero spread
            (10.0, 1.0, 1.0, 0.0, f64::INFINITY, 8.5),         // infinite spread
            (10.0, 1.0, 0.0, 0.0, 0.5, 8.5),                   // no reference price
            (10.0, 9.0, f64::NAN, 0.0, 0.5, fixed(10.0, 9.0)), // fixed, not under the floor
            (f64::INFINITY, 1.0, 1.0, 0.0, 0.5, f64::INFINITY),
        ] {
            assert_eq!(
                optimal_bid(value, floor, floor_ref, mu, sigma),
                want,
                "{value} {floor} {floor_ref} {mu} {sigma}"
            );
        }
        assert_eq!(fixed(10.0, 9.0), 9.0);
    }
}
