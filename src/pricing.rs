//! Pricing: from click (and conversion) probabilities to a CPM bid.
//!
//! The value of an impression to a CPC campaign is `goal_cpc x pCTR`, to a CPA campaign
//! `goal_cpa x pCTR x pCVR` (pCVR: probability of a conversion given a click, from the
//! model's conversion head); a CPM bid is that times 1000. A CPA campaign scored by a
//! model without a conversion head has no value, hence no bid ([`value_cpm`] is `None`).
//! The value is capped by the campaign's `max_cpm` and must reach the floor
//! that applies (the deal's, else the imp's), or there is no bid. Then the auction
//! decides the price: the value in a second-price auction (the winner pays about the
//! next bid, so bidding the value is the dominant strategy), a shaded value in a
//! first-price one (the winner pays its bid), the floor in a fixed-price deal.

use crate::catalog::Goal;

/// What the model predicted for one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Calibrated probability of a click.
    pub pctr: f32,
    /// Calibrated probability of a conversion given a click; `None` when the model has
    /// no conversion head.
    pub pcvr: Option<f32>,
}

/// The uncapped value of the impression in USD CPM, or `None` when it has none: a
/// probability that is not finite and positive (`f64::min` would turn a NaN value into
/// `max_cpm`), or a CPA goal without a pCVR.
pub fn value_cpm(goal: Goal, p: Prediction) -> Option<f64> {
    let prob = |x: f32| (x.is_finite() && x > 0.0).then_some(f64::from(x));
    let value = match goal {
        Goal::Cpc(cpc) => cpc * prob(p.pctr)?,
        Goal::Cpa(cpa) => cpa * prob(p.pctr)? * prob(p.pcvr?)?,
    };
    Some(value * 1000.0)
}

/// The CPM to bid, or `None` when there is no value or it does not reach the floor.
/// Invariant: a returned price is finite, positive and `>= floor`.
pub fn bid_cpm(goal: Goal, p: Prediction, max_cpm: f64, floor: f64) -> Option<f64> {
    let cpm = value_cpm(goal, p)?.min(max_cpm);
    (cpm.is_finite() && cpm > 0.0 && cpm >= floor).then_some(cpm)
}

/// How the winner pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auction {
    First,
    Second,
    /// A fixed-price deal (`deal.at = 3`): the price is the deal floor.
    Fixed,
}

/// The bid for a candidate worth `value` (USD CPM, already `>= floor`): the value in a
/// second-price auction, `shading x value` but not under the floor in a first-price
/// one, the floor in a fixed-price deal. Invariant: the result is `>= floor` and
/// `<= value`.
pub fn auction_price(value: f64, floor: f64, auction: Auction, shading: f64) -> f64 {
    match auction {
        Auction::Second => value,
        Auction::First => (value * shading).max(floor).min(value),
        Auction::Fixed => floor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auction_types() {
        assert_eq!(auction_price(10.0, 1.0, Auction::Second, 0.85), 10.0);
        assert_eq!(auction_price(10.0, 1.0, Auction::First, 0.85), 8.5);
        assert_eq!(auction_price(10.0, 9.0, Auction::First, 0.85), 9.0, "shading stops at the floor");
        assert_eq!(auction_price(10.0, 2.5, Auction::Fixed, 0.85), 2.5);
    }

    use Goal::{Cpa, Cpc};

    /// `(pctr, pcvr)`; `pcvr` `None` is a model without a conversion head.
    fn check(goal: Goal, (pctr, pcvr): (f32, Option<f32>), max_cpm: f64, floor: f64, expected: Option<f64>) {
        let got = bid_cpm(goal, Prediction { pctr, pcvr }, max_cpm, floor);
        match (got, expected) {
            (Some(g), Some(e)) => assert!((g - e).abs() < 1e-5, "{goal:?} {pctr} {pcvr:?}: {g} vs {e}"),
            _ => assert_eq!(got, expected, "{goal:?} pctr {pctr} pcvr {pcvr:?} max {max_cpm} floor {floor}"),
        }
    }

    #[test]
    fn cpc_pricing_rules() {
        check(Cpc(1.0), (0.01, None), 40.0, 0.5, Some(10.0)); // value
        check(Cpc(1.0), (0.01, Some(0.5)), 40.0, 0.5, Some(10.0)); // pCVR plays no part
        check(Cpc(2.0), (0.05, None), 40.0, 0.0, Some(40.0)); // capped by max_cpm
        check(Cpc(1.0), (0.25, None), 400.0, 250.0, Some(250.0)); // exactly the floor (0.25 is exact in f32)
        check(Cpc(1.0), (0.01, None), 40.0, 10.01, None); // below the floor
        check(Cpc(1.0), (0.0, None), 40.0, 0.0, None); // no value, no bid
        check(Cpc(1.0), (f32::NAN, None), 40.0, 0.0, None);
        check(Cpc(1.0), (f32::INFINITY, None), 40.0, 0.0, None);
        check(Cpc(1.0), (0.5, None), 5.0, 6.0, None); // cap below the floor
    }

    #[test]
    fn cpa_pricing_rules() {
        check(Cpa(40.0), (0.01, Some(0.05)), 40.0, 0.0, Some(20.0)); // 1000 x 40 x 0.01 x 0.05
        check(Cpa(30.0), (0.02, Some(0.04)), 40.0, 0.5, Some(24.0));
        check(Cpa(100.0), (0.05, Some(0.5)), 40.0, 0.0, Some(40.0)); // capped by max_cpm
        check(Cpa(100.0), (0.25, Some(0.5)), 400.0, 12_500.0, None); // value 12.5k, cap 400: below the floor
        check(Cpa(4.0), (0.25, Some(0.25)), 400.0, 250.0, Some(250.0)); // exactly the floor
        check(Cpa(40.0), (0.01, Some(0.05)), 40.0, 20.01, None); // below the floor
        check(Cpa(40.0), (0.01, None), 40.0, 0.0, None); // no conversion head: no value
        check(Cpa(40.0), (0.01, Some(0.0)), 40.0, 0.0, None);
        check(Cpa(40.0), (0.0, Some(0.5)), 40.0, 0.0, None);
        check(Cpa(40.0), (0.01, Some(f32::NAN)), 40.0, 0.0, None);
        check(Cpa(40.0), (f32::NAN, Some(0.5)), 40.0, 0.0, None);
        check(Cpa(40.0), (0.01, Some(-0.1)), 40.0, 0.0, None);
    }

    #[test]
    fn values() {
        let v = |goal, pctr, pcvr| value_cpm(goal, Prediction { pctr, pcvr });
        assert_eq!(v(Cpc(2.0), 0.5, None), Some(1000.0));
        assert_eq!(v(Cpa(8.0), 0.5, Some(0.25)), Some(1000.0));
        assert_eq!(v(Cpa(8.0), 0.5, None), None);
    }
}
