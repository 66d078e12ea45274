//! Pricing: from a click probability to a CPM bid.
//!
//! The value of an impression to a CPC campaign is `goal_cpc x pCTR`; a CPM bid is that
//! times 1000. The value is capped by the campaign's `max_cpm` and must reach the floor
//! that applies (the deal's, else the imp's), or there is no bid. Then the auction
//! decides the price: the value in a second-price auction (the winner pays about the
//! next bid, so bidding the value is the dominant strategy), a shaded value in a
//! first-price one (the winner pays its bid), the floor in a fixed-price deal.

/// The CPM to bid, or `None` when the value does not reach the floor.
/// Invariant: a returned price is finite, positive and `>= floor`.
pub fn bid_cpm(goal_cpc: f64, pctr: f32, max_cpm: f64, floor: f64) -> Option<f64> {
    if !(pctr.is_finite() && pctr > 0.0) {
        return None; // `f64::min` would turn a NaN value into `max_cpm`.
    }
    let value = goal_cpc * f64::from(pctr) * 1000.0;
    let cpm = value.min(max_cpm);
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

    fn check(goal_cpc: f64, pctr: f32, max_cpm: f64, floor: f64, expected: Option<f64>) {
        let got = bid_cpm(goal_cpc, pctr, max_cpm, floor);
        match (got, expected) {
            (Some(g), Some(e)) => assert!((g - e).abs() < 1e-5, "{g} vs {e}"),
            _ => assert_eq!(got, expected, "cpc {goal_cpc} pctr {pctr} max {max_cpm} floor {floor}"),
        }
    }

    #[test]
    fn pricing_rules() {
        check(1.0, 0.01, 40.0, 0.5, Some(10.0)); // value
        check(2.0, 0.05, 40.0, 0.0, Some(40.0)); // capped by max_cpm
        check(1.0, 0.25, 400.0, 250.0, Some(250.0)); // exactly the floor (0.25 is exact in f32)
        check(1.0, 0.01, 40.0, 10.01, None); // below the floor
        check(1.0, 0.0, 40.0, 0.0, None); // no value, no bid
        check(1.0, f32::NAN, 40.0, 0.0, None);
        check(1.0, 0.5, 5.0, 6.0, None); // cap below the floor
    }
}
