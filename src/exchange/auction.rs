//! The auction of one imp: the bidders' bids against the competing demand, under the
//! imp's floor and auction type. A pure function, so its rules are tested as data.
//!
//! Rules:
//! - A bid already **rejected** (late, for another imp, without a creative id, or a
//!   creative the exchange does not know) does not take part and loses with its reason.
//!   A bid whose price is not a positive number loses with 3; a bid under the floor
//!   loses with 100 (both are invalid, and take no part either).
//! - The **competing demand** takes part when its draw reaches the floor.
//! - The highest price wins; **ties** are broken by the caller's seeded draw among the
//!   tied entrants (bids in the order given, then the competing demand).
//! - **Second price** (`at = 2`): the winner pays max(the highest other valid price,
//!   the floor) + 0.01, never above its own bid; **first price** (`at = 1`): its bid.
//!   Prices are rounded to 1e-6 CPM.
//! - Every losing bid is told the **minimum to win** (`${AUCTION_MIN_TO_WIN}`): the
//!   highest price among the other entrants + 0.01, at least the floor (the floor when
//!   there is no other entrant). Under first price this is the clearing price + 0.01.
//!
//! Loss reasons are OpenRTB 2.6 list 5.25 codes ([`loss`]).

use super::landscape::round6;

/// OpenRTB 2.6 loss reason codes (list 5.25) the exchange sends.
pub mod loss {
    /// Impression Opportunity Expired: the answer came after `tmax` (the list has no
    /// "timed out"; this is the nearest: the opportunity was gone when the bid came).
    pub const EXPIRED: u16 = 2;
    /// Invalid Bid Response: a bid for an imp the request does not have, or a price that
    /// is not a positive number.
    pub const INVALID_RESPONSE: u16 = 3;
    /// Missing Creative ID.
    pub const MISSING_CREATIVE_ID: u16 = 8;
    /// Bid was Below Auction Floor.
    pub const BELOW_FLOOR: u16 = 100;
    /// Lost to Higher Bid (including the competing demand's).
    pub const LOST_TO_HIGHER: u16 = 102;
    /// Creative Filtered – Disapproved by Exchange: `crid` is not in the exchange's
    /// catalog, i.e. not a creative it approved (and has no truth for).
    pub const DISAPPROVED: u16 = 202;
}

/// The bid increment over the second price, USD CPM.
pub const INCREMENT: f64 = 0.01;

/// What the imp is sold under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Terms {
    /// USD CPM; 0 when the imp has none.
    pub floor: f64,
    pub first_price: bool,
    /// The competing demand's bid, USD CPM; `None` without competition.
    pub competing: Option<f64>,
}

/// One bid in the auction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contender {
    /// USD CPM.
    pub price: f64,
    /// A loss reason decided before pricing (see the module doc).
    pub rejected: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Winner {
    /// The contender at this index.
    Bid(usize),
    Competing,
}

/// How one contender fared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fate {
    Won,
    Lost { reason: u16, min_to_win: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub winner: Option<Winner>,
    /// What the winner pays, USD CPM (also when the competing demand wins).
    pub clearing_price: Option<f64>,
    /// One per contender, in order.
    pub fates: Vec<Fate>,
}

/// Runs the auction; `tie(n)` picks one of `n > 1` entrants tied for the highest price
/// (an index below `n`).
pub fn run(terms: &Terms, bids: &[Contender], tie: impl FnOnce(usize) -> usize) -> Outcome {
    let reason = |c: &Contender| match c.rejected {
        Some(r) => Some(r),
        None if !(c.price.is_finite() && c.price > 0.0) => Some(loss::INVALID_RESPONSE),
        None if c.price < terms.floor => Some(loss::BELOW_FLOOR),
        None => None,
    };
    let reasons: Vec<Option<u16>> = bids.iter().map(reason).collect();
    // Entrants: valid bids in order, then the competing demand; (who, price).
    let mut entrants: Vec<(Winner, f64)> = bids
        .iter()
        .enumerate()
        .filter(|(i, _)| reasons[*i].is_none())
        .map(|(i, c)| (Winner::Bid(i), c.price))
        .collect();
    if let Some(c) = terms.competing.filter(|&c| c.is_finite() && c > 0.0 && c >= terms.floor) {
        entrants.push((Winner::Competing, c));
    }
    let best = entrants.iter().map(|e| e.1).fold(f64::NEG_INFINITY, f64::max);
    let tied: Vec<usize> = (0..entrants.len()).filter(|&k| entrants[k].1 == best).collect();
    let won = match tied.len() {
        0 => None,
        1 => Some(tied[0]),
        n => Some(tied[tie(n).min(n - 1)]),
    };
    let winner = won.map(|k| entrants[k].0);
    let clearing_price = won.map(|k| {
        let price = entrants[k].1;
        if terms.first_price {
            return price;
        }
        let second = entrants.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, e)| e.1).fold(0.0, f64::max);
        round6(second.max(terms.floor) + INCREMENT).min(price)
    });
    let fates = (0..bids.len())
        .map(|i| {
            if winner == Some(Winner::Bid(i)) {
                return Fate::Won;
            }
            let other =
                entrants.iter().filter(|e| e.0 != Winner::Bid(i)).map(|e| e.1).fold(f64::NEG_INFINITY, f64::max);
            let min_to_win = if other.is_finite() { round6(other + INCREMENT).max(terms.floor) } else { terms.floor };
            Fate::Lost { reason: reasons[i].unwrap_or(loss::LOST_TO_HIGHER), min_to_win }
        })
        .collect();
    Outcome { winner, clearing_price, fates }
}

#[cfg(test)]
mod tests {
    use super::loss::*;
    use super::*;

    fn bid(price: f64) -> Contender {
        Contender { price, rejected: None }
    }

    fn rejected(price: f64, reason: u16) -> Contender {
        Contender { price, rejected: Some(reason) }
    }

    fn lost(reason: u16, min_to_win: f64) -> Fate {
        Fate::Lost { reason, min_to_win }
    }

    /// One case: terms (floor, first price, competing), bids, the tie pick, and the
    /// expected winner, clearing price and fates.
    #[allow(clippy::type_complexity)]
    fn check(
        (floor, first_price, competing): (f64, bool, Option<f64>),
        bids: &[Contender],
        pick: usize,
        expected: (Option<Winner>, Option<f64>, &[Fate]),
    ) {
        let out = run(&Terms { floor, first_price, competing }, bids, |n| {
            assert!(n > 1, "tie() called without a tie");
            pick
        });
        let clearing = out.clearing_price.map(round6);
        assert_eq!(
            (out.winner, clearing, out.fates.as_slice()),
            expected,
            "floor {floor} fp {first_price} c {competing:?} {bids:?}"
        );
    }

    #[test]
    fn second_price() {
        use Winner::*;
        // Pays the second price + 0.01.
        check((0.5, false, None), &[bid(3.0), bid(2.0)], 0, (Some(Bid(0)), Some(2.01), &[Fate::Won, lost(102, 3.01)]));
        // Alone: the floor + 0.01.
        check((0.5, false, None), &[bid(3.0)], 0, (Some(Bid(0)), Some(0.51), &[Fate::Won]));
        // Never above its own bid.
        check(
            (0.5, false, None),
            &[bid(2.005), bid(2.0)],
            0,
            (Some(Bid(0)), Some(2.005), &[Fate::Won, lost(102, 2.015)]),
        );
        check((1.0, false, None), &[bid(1.0)], 0, (Some(Bid(0)), Some(1.0), &[Fate::Won]));
        // No floor, no competition: the increment.
        check((0.0, false, None), &[bid(4.0)], 0, (Some(Bid(0)), Some(0.01), &[Fate::Won]));
        // The competing demand sets the price ...
        check(
            (0.5, false, Some(2.5)),
            &[bid(3.0), bid(2.0)],
            0,
            (Some(Bid(0)), Some(2.51), &[Fate::Won, lost(102, 3.01)]),
        );
        // ... or wins.
        check((0.5, false, Some(5.0)), &[bid(3.0)], 0, (Some(Competing), Some(3.01), &[lost(102, 5.01)]));
    }

    #[test]
    fn first_price() {
        use Winner::*;
        check((0.5, true, None), &[bid(3.0), bid(2.0)], 0, (Some(Bid(0)), Some(3.0), &[Fate::Won, lost(102, 3.01)]));
        check((0.5, true, Some(2.9)), &[bid(3.0)], 0, (Some(Bid(0)), Some(3.0), &[Fate::Won]));
        check((0.5, true, Some(3.2)), &[bid(3.0)], 0, (Some(Competing), Some(3.2), &[lost(102, 3.21)]));
    }

    #[test]
    fn floor() {
        use Winner::*;
        // Under the floor: invalid, told the floor; the other bid pays the floor + 0.01.
        check((1.5, false, None), &[bid(1.0), bid(2.0)], 0, (Some(Bid(1)), Some(1.51), &[lost(100, 2.01), Fate::Won]));
        check((1.5, false, None), &[bid(1.0)], 0, (None, None, &[lost(100, 1.5)]));
        // A competing draw under the floor is no bid.
        check((1.5, false, Some(1.4)), &[bid(2.0)], 0, (Some(Bid(0)), Some(1.51), &[Fate::Won]));
        check((1.5, false, Some(1.4)), &[], 0, (None, None, &[]));
        // Exactly the floor is valid.
        check((1.5, true, None), &[bid(1.5)], 0, (Some(Bid(0)), Some(1.5), &[Fate::Won]));
    }

    #[test]
    fn ties() {
        use Winner::*;
        // Two bids tied: the draw picks; the loser was outbid by the same price.
        check((0.0, false, None), &[bid(2.0), bid(2.0)], 1, (Some(Bid(1)), Some(2.0), &[lost(102, 2.01), Fate::Won]));
        check((0.0, false, None), &[bid(2.0), bid(2.0)], 0, (Some(Bid(0)), Some(2.0), &[Fate::Won, lost(102, 2.01)]));
        // Tied with the competing demand (last among the entrants).
        check((0.0, true, Some(2.0)), &[bid(2.0)], 1, (Some(Competing), Some(2.0), &[lost(102, 2.01)]));
    }

    #[test]
    fn late_and_invalid_bids_take_no_part() {
        use Winner::*;
        // Late: the highest bid, yet the lower one wins at the floor + 0.01.
        check(
            (0.5, false, None),
            &[rejected(9.0, EXPIRED), bid(2.0)],
            0,
            (Some(Bid(1)), Some(0.51), &[lost(2, 2.01), Fate::Won]),
        );
        // Unknown creative, missing creative, bad prices.
        check((0.5, false, None), &[rejected(9.0, DISAPPROVED)], 0, (None, None, &[lost(202, 0.5)]));
        check(
            (0.5, false, None),
            &[rejected(9.0, MISSING_CREATIVE_ID), bid(1.0)],
            0,
            (Some(Bid(1)), Some(0.51), &[lost(8, 1.01), Fate::Won]),
        );
        check(
            (0.0, false, None),
            &[bid(f64::NAN), bid(-1.0), bid(0.0)],
            0,
            (None, None, &[lost(3, 0.0), lost(3, 0.0), lost(3, 0.0)]),
        );
    }

    #[test]
    fn competing_demand_off_and_on() {
        use Winner::*;
        let bids = [bid(4.0)];
        check((1.0, false, None), &bids, 0, (Some(Bid(0)), Some(1.01), &[Fate::Won]));
        check((1.0, false, Some(3.0)), &bids, 0, (Some(Bid(0)), Some(3.01), &[Fate::Won]));
        check((1.0, false, Some(6.0)), &bids, 0, (Some(Competing), Some(4.01), &[lost(102, 6.01)]));
        // Nobody bids: the competing demand wins at the floor + 0.01.
        check((1.0, false, Some(6.0)), &[], 0, (Some(Competing), Some(1.01), &[]));
    }
}
