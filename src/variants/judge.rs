//! The canary judge: compares a candidate with the incumbent on what their bids brought
//! over the same time, and says promote, roll back or wait.
//!
//! Three tests, each on counts the notices give ([`Tally`]), each a conditional
//! binomial test of two Poisson counts (given how many clicks both variants got
//! together, under "no difference" the candidate's share of them is its share of the
//! exposure), so that neither the traffic split nor a world whose clicks all run above
//! or below the models' predictions (as `ctrbid exchange --click-boost` makes them) can
//! pass for a difference:
//!
//! - **calibration**: exposure = expected clicks (the sum of pCTR over won impressions).
//!   A candidate that predicts 30 % too high gets 1/1.3 of the clicks its pCTR promises
//!   while the incumbent gets what its own promises: `z` far below 0. Too low is as
//!   wrong as too high: either rolls it back.
//! - **clicks per dollar** (the inverse of cost per click): exposure = spend. Fewer
//!   clicks for the money rolls the candidate back; more, with its calibration not
//!   rejected, promotes it.
//! - **clicks per impression** (clicks per 1,000 impressions): exposure = wins. Fewer
//!   rolls it back; more alone does not promote (a model that wins only cheap, clicky
//!   impressions is not better for that).
//!
//! A decision needs `|z| >= z` (two-sided). The judge looks only when the candidate's
//! clicks reach `min_clicks`, then twice that, four times, and so on
//! ([`Looks`]): with `z = 3.5` (p = 0.00047 per test and look) and three tests, ten looks
//! (`min_clicks` x 512 clicks) keep the chance of any false decision under 1.4 %
//! (Bonferroni), where looking every second would spend it in minutes. Latency is not
//! judged here: each variant's latency histogram is in `/metrics` for an analysis
//! ([`crate::metrics`]), and a slow candidate costs only its own requests.

use super::Tally;

/// The judge's settings (`[variants]` in the config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgeConfig {
    /// Clicks the candidate needs before the first look (and the incumbent, over the
    /// same time).
    pub min_clicks: u64,
    /// The two-sided z a decision needs.
    pub z: f64,
}

/// One comparison: the candidate's count, its expected share of both counts, and z.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Test {
    /// The candidate's rate over the incumbent's (1 = no difference).
    pub ratio: f64,
    pub z: f64,
}

/// What the judge read, for the log.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Evidence {
    pub candidate: Tally,
    pub incumbent: Tally,
    /// Observed over expected clicks, candidate's over incumbent's.
    pub calibration: Test,
    pub clicks_per_usd: Test,
    pub clicks_per_win: Test,
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (c, i) = (&self.candidate, &self.incumbent);
        write!(
            f,
            "over the same time: candidate {} wins, {} clicks, {:.1} expected, {:.4} USD; incumbent {} wins, {} clicks, \
             {:.1} expected, {:.4} USD; observed/expected clicks {:.3} of the incumbent's (z {:.2}), clicks per USD \
             {:.3} of its (z {:.2}), clicks per impression {:.3} of its (z {:.2})",
            c.wins,
            c.clicks,
            c.won_pctr,
            c.spend_usd,
            i.wins,
            i.clicks,
            i.won_pctr,
            i.spend_usd,
            self.calibration.ratio,
            self.calibration.z,
            self.clicks_per_usd.ratio,
            self.clicks_per_usd.z,
            self.clicks_per_win.ratio,
            self.clicks_per_win.z,
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not enough clicks yet, or no difference shown.
    Wait,
    Promote {
        evidence: Evidence,
        why: &'static str,
    },
    RollBack {
        evidence: Evidence,
        why: &'static str,
    },
}

/// Clicks `c` of the candidate and `i` of the incumbent, against exposures `ec`, `ei`:
/// the rate ratio and the z of the candidate's share of the clicks (normal
/// approximation to the binomial; `None` without clicks or exposure on both sides).
pub fn rate_test(c: u64, i: u64, ec: f64, ei: f64) -> Option<Test> {
    let n = (c + i) as f64;
    if n == 0.0 || ec <= 0.0 || ei <= 0.0 || !(ec + ei).is_finite() {
        return None;
    }
    let p = ec / (ec + ei);
    let z = (c as f64 - n * p) / (n * p * (1.0 - p)).sqrt();
    let ratio = if i == 0 { f64::INFINITY } else { (c as f64 / ec) / (i as f64 / ei) };
    Some(Test { ratio, z })
}

/// The decision on `candidate` against `incumbent`, both counted over the same time.
pub fn judge(candidate: &Tally, incumbent: &Tally, cfg: &JudgeConfig) -> Decision {
    if candidate.clicks < cfg.min_clicks || incumbent.clicks < cfg.min_clicks {
        return Decision::Wait;
    }
    let test = |c, i, ec, ei| rate_test(c, i, ec, ei);
    let (Some(calibration), Some(clicks_per_usd), Some(clicks_per_win)) = (
        test(candidate.clicks, incumbent.clicks, candidate.won_pctr, incumbent.won_pctr),
        test(candidate.clicks, incumbent.clicks, candidate.spend_usd, incumbent.spend_usd),
        test(candidate.clicks, incumbent.clicks, candidate.wins as f64, incumbent.wins as f64),
    ) else {
        return Decision::Wait;
    };
    let evidence =
        Evidence { candidate: *candidate, incumbent: *incumbent, calibration, clicks_per_usd, clicks_per_win };
    let z = cfg.z;
    if calibration.z <= -z {
        return Decision::RollBack { evidence, why: "predicts more clicks than come, against the incumbent" };
    }
    if calibration.z >= z {
        return Decision::RollBack { evidence, why: "predicts fewer clicks than come, against the incumbent" };
    }
    if clicks_per_usd.z <= -z {
        return Decision::RollBack { evidence, why: "fewer clicks per dollar than the incumbent" };
    }
    if clicks_per_win.z <= -z {
        return Decision::RollBack { evidence, why: "fewer clicks per impression than the incumbent" };
    }
    if clicks_per_usd.z >= z {
        return Decision::Promote { evidence, why: "more clicks per dollar than the incumbent, as calibrated" };
    }
    Decision::Wait
}

/// When the judge looks at a candidate: at `min_clicks` of its clicks, then at each
/// doubling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Looks {
    next: u64,
    pub taken: u32,
}

impl Looks {
    pub fn new(min_clicks: u64) -> Looks {
        Looks { next: min_clicks.max(1), taken: 0 }
    }

    /// Whether `clicks` reached the next look; if so, the one after is set.
    pub fn due(&mut self, clicks: u64) -> bool {
        if clicks < self.next {
            return false;
        }
        while self.next <= clicks {
            self.next = self.next.saturating_mul(2);
        }
        self.taken += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(wins: u64, clicks: u64, won_pctr: f64, spend_usd: f64) -> Tally {
        Tally { requests: 0, bids: 0, wins, spend_usd, clicks, conversions: 0, won_pctr }
    }

    const CFG: JudgeConfig = JudgeConfig { min_clicks: 50, z: 3.5 };

    #[test]
    fn a_candidate_30_percent_too_hot_is_rolled_back_once_the_clicks_show_it() {
        // Clicks run at 0.8 of what the incumbent predicts (a world the models miss
        // alike); the candidate predicts 1.3 times its own pCTR.
        let incumbent = tally(180_000, 2_880, 3_600.0, 360.0);
        let hot = tally(20_000, 320, 1.3 * 400.0, 42.0);
        match judge(&hot, &incumbent, &CFG) {
            Decision::RollBack { evidence, why } => {
                assert!(why.contains("more clicks than come"), "{why}");
                assert!((evidence.calibration.ratio - 1.0 / 1.3).abs() < 1e-9, "{evidence}");
                assert!(evidence.calibration.z < -3.5, "{evidence}");
            }
            d => panic!("{d:?}"),
        }
        // With half those counts the same rates are not yet evidence (z = -3.16).
        assert_eq!(
            judge(&tally(10_000, 160, 260.0, 21.0), &tally(90_000, 1_440, 1_800.0, 180.0), &CFG),
            Decision::Wait
        );
    }

    #[test]
    fn an_equal_candidate_waits_and_a_better_one_is_promoted() {
        let incumbent = tally(90_000, 1_800, 1_800.0, 180.0);
        assert_eq!(judge(&tally(10_000, 200, 200.0, 20.0), &incumbent, &CFG), Decision::Wait);
        // 40 % more clicks for the same money, and its pCTR said so: promoted.
        match judge(&tally(10_000, 280, 280.0, 20.0), &incumbent, &CFG) {
            Decision::Promote { evidence, .. } => assert!(evidence.clicks_per_usd.z > 3.5, "{evidence}"),
            d => panic!("{d:?}"),
        }
        // The same clicks, but it paid 40 % more for them: rolled back.
        match judge(&tally(10_000, 200, 200.0, 28.0), &incumbent, &CFG) {
            Decision::RollBack { why, .. } => assert!(why.contains("per dollar"), "{why}"),
            d => panic!("{d:?}"),
        }
        // Too few clicks on either side: no look at all.
        assert_eq!(judge(&tally(100, 49, 10.0, 1.0), &incumbent, &CFG), Decision::Wait);
    }

    #[test]
    fn the_rate_test_is_the_binomial_z() {
        // 60 of 100 clicks where exposure says 50: z = 10 / 5 = 2.
        let t = rate_test(60, 40, 1.0, 1.0).unwrap();
        assert!((t.z - 2.0).abs() < 1e-12 && (t.ratio - 1.5).abs() < 1e-12, "{t:?}");
        assert_eq!(rate_test(0, 0, 1.0, 1.0), None);
        assert_eq!(rate_test(3, 4, 0.0, 1.0), None);
    }

    #[test]
    fn looks_come_at_each_doubling() {
        let mut looks = Looks::new(50);
        let due: Vec<u64> = (0..=420).filter(|&c| looks.due(c)).collect();
        assert_eq!(due, [50, 100, 200, 400]);
        let mut jump = Looks::new(50);
        assert!(jump.due(1_000));
        assert!(!jump.due(1_023));
        assert!(jump.due(1_600));
        assert_eq!(jump.taken, 2);
    }
}
