//! First-price pricing as the bid path applies it: the fixed factor, the learnt
//! landscape ([`crate::shading`]) or the simulator's own (the oracle benchmark), and the
//! feedback each bid's outcome gives the learnt one.
//!
//! A context is the publisher (its `publisher.id`) and the creative's format; its
//! parent is the format alone. Landscapes are measured from the floor that applies to
//! the bid (0.5 USD CPM without one, as the simulator's exchange does), so a context
//! learns how far above the floor the competition bids, which carries across floors.
//!
//! Every mode teaches the learnt model (a bidder switched from fixed to learnt starts
//! warm), and only outbid losses are observations: a loss below the floor or too late
//! says nothing about the competition.

use super::config::{ShadingConfig, ShadingMode};
use super::inflight::ShadingContext;
use crate::exchange::landscape::{Landscape, LandscapeParams, NO_FLOOR_REF};
use crate::shading::{self, Feedback, Observation, Shader};
use crate::simulate::market::MediaKind;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// OpenRTB 2.6 loss reason 102: lost to a higher bid.
pub const LOST_TO_HIGHER_BID: i32 = 102;

/// How first-price bids are priced, and what they learn from.
pub struct Pricer {
    mode: ShadingMode,
    factor: f64,
    shader: Shader,
    oracle: Option<Landscape>,
}

impl std::fmt::Debug for Pricer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pricer").field("mode", &self.mode).field("factor", &self.factor).finish_non_exhaustive()
    }
}

/// A first-price bid: its price and where it was made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstPrice {
    pub price: f64,
    pub context: ShadingContext,
    /// The price came from a learnt (or the oracle's) landscape, not the fixed factor.
    pub shaded: bool,
}

impl Pricer {
    pub fn new(cfg: &ShadingConfig, fixed_factor: f64) -> Pricer {
        let settings = cfg.learning(fixed_factor);
        let oracle = match (cfg.mode, cfg.oracle_seed) {
            (ShadingMode::Oracle, Some(seed)) => {
                let params = LandscapeParams {
                    median: cfg.oracle_median,
                    sigma: cfg.oracle_sigma,
                    ..LandscapeParams::default()
                };
                Some(Landscape::new(seed, params, cfg.oracle_publishers))
            }
            _ => None,
        };
        Pricer { mode: cfg.mode, factor: fixed_factor, shader: Shader::new(settings), oracle }
    }

    /// The bid for a candidate worth `value` USD CPM (`>= floor`, the floor that
    /// applies) of `format` (`Format::kind`) on `publisher`'s inventory. Invariant: the
    /// price is in `[floor, value]`.
    pub fn first_price(&self, publisher: Option<&str>, format: &str, value: f64, floor: f64) -> FirstPrice {
        let floor_ref = if floor > 0.0 { floor } else { NO_FLOOR_REF };
        let parent = xxh3_64_with_seed(format.as_bytes(), 0x7368_6164);
        let context = match publisher {
            Some(p) => xxh3_64_with_seed(p.as_bytes(), parent),
            None => parent,
        };
        let fixed = || shading::fixed_bid(value, floor, self.factor);
        let (price, shaded) = match self.mode {
            ShadingMode::Fixed => (fixed(), false),
            ShadingMode::Learnt => {
                let s = self.shader.bid(context, parent, value, floor, floor_ref);
                (s.price, s.source == shading::Source::Learnt)
            }
            ShadingMode::Oracle => match self.oracle_landscape(publisher, format) {
                Some((mu, sigma)) => (shading::optimal_bid(value, floor, floor_ref, mu, sigma), true),
                None => (fixed(), false),
            },
        };
        FirstPrice { price, context: ShadingContext { context, parent, floor_ref, bid: price }, shaded }
    }

    /// What the simulator's exchange draws against a bid on this publisher and format.
    fn oracle_landscape(&self, publisher: Option<&str>, format: &str) -> Option<(f64, f64)> {
        let landscape = self.oracle.as_ref()?;
        // The simulator's publisher ids are `pub-N`, N from 1: index N - 1.
        let index: u32 = publisher?.strip_prefix("pub-")?.parse::<u32>().ok()?.checked_sub(1)?;
        let kind = match format {
            "video" => MediaKind::Video,
            "native" => MediaKind::Native,
            _ => MediaKind::Banner,
        };
        landscape.log_ratio(index, kind)
    }

    /// A first-price bid was won (the price paid is the bid).
    pub fn won(&self, c: &ShadingContext) {
        self.observe(c, Feedback::Won);
    }

    /// A first-price bid was lost for `reason`, with the minimum to win (USD CPM) when
    /// the exchange said.
    pub fn lost(&self, c: &ShadingContext, reason: Option<i32>, min_to_win_usd: Option<f64>) {
        if reason == Some(LOST_TO_HIGHER_BID) {
            self.observe(c, Feedback::Lost { min_to_win: min_to_win_usd.filter(|m| *m > 0.0) });
        }
    }

    fn observe(&self, c: &ShadingContext, feedback: Feedback) {
        self.shader.observe(&Observation {
            context: c.context,
            parent: c.parent,
            floor_ref: c.floor_ref,
            bid: c.bid,
            feedback,
        });
    }

    pub fn shader(&self) -> &Shader {
        &self.shader
    }

    pub fn mode(&self) -> ShadingMode {
        self.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pricer(mode: ShadingMode) -> Pricer {
        let cfg = ShadingConfig { mode, oracle_seed: Some(7), min_observations: 5, ..ShadingConfig::default() };
        Pricer::new(&cfg, 0.85)
    }

    #[test]
    fn fixed_mode_bids_the_factor_within_floor_and_value() {
        let p = pricer(ShadingMode::Fixed);
        assert_eq!(p.first_price(Some("pub-1"), "banner", 10.0, 1.0).price, 8.5);
        assert_eq!(p.first_price(Some("pub-1"), "banner", 10.0, 9.0).price, 9.0);
        assert!(!p.first_price(Some("pub-1"), "banner", 10.0, 1.0).shaded);
    }

    #[test]
    fn the_oracle_bids_the_optimum_of_the_exchanges_landscape() {
        let p = pricer(ShadingMode::Oracle);
        let landscape = Landscape::new(7, LandscapeParams::default(), 5000);
        let (mu, sigma) = landscape.log_ratio(41, MediaKind::Video).unwrap();
        let got = p.first_price(Some("pub-42"), "video", 30.0, 0.2);
        assert!(got.shaded);
        assert_eq!(got.price, shading::optimal_bid(30.0, 0.2, 0.2, mu, sigma));
        assert!(got.price < 30.0 * 0.85, "the landscape's median is 120 x 0.2 = 24: {}", got.price);
        // Not a simulator publisher: the fixed factor.
        assert_eq!(p.first_price(Some("example.com"), "video", 30.0, 0.2).price, 25.5);
        assert_eq!(p.first_price(None, "video", 30.0, 0.0).context.floor_ref, NO_FLOOR_REF);
    }

    #[test]
    fn learnt_mode_learns_from_outbid_losses_and_wins_only() {
        let p = pricer(ShadingMode::Learnt);
        let bid = p.first_price(Some("pub-3"), "banner", 10.0, 0.1);
        assert_eq!(bid.price, 8.5, "cold start: the fixed factor");
        for k in 0..40 {
            // Below-floor and late losses teach nothing.
            p.lost(&bid.context, Some(100), Some(1.0));
            p.lost(&bid.context, Some(2), None);
            // The competition bids about 2 (20 x the floor): losses name it, wins below it.
            if k % 2 == 0 {
                p.lost(&bid.context, Some(LOST_TO_HIGHER_BID), Some(9.0 + f64::from(k % 5) * 0.1));
            } else {
                p.won(&ShadingContext { bid: 9.6, ..bid.context });
            }
        }
        let s = p.shader().stats();
        assert_eq!(s.won + s.lost_exact, 40, "{s:?}");
        let learnt = p.first_price(Some("pub-3"), "banner", 10.0, 0.1);
        assert!(learnt.shaded && learnt.price > 8.5 && learnt.price <= 10.0, "{learnt:?}");
    }
}
