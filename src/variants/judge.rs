//! The canary judge: compares a candidate with the incumbent on what their bids brought
//! over the same time, and says promote, roll back or wait.
//!
//! Five tests, each on counts the notices and the bid path give ([`Tally`]), each a
//! conditional binomial test of two Poisson counts (given how many events both variants
//! had together, under "no difference" the candidate's share of them is its share of the
//! exposure), so that neither the traffic split nor a world whose clicks all run above or
//! below the models' predictions (as `ctrbid exchange --click-boost` makes them) can pass
//! for a difference:
//!
//! - **calibration**: clicks against expected clicks (the sum of pCTR over won
//!   impressions). A candidate that predicts 30 % too high gets 1/1.3 of the clicks its
//!   pCTR promises while the incumbent gets what its own promises: `z` far below 0, and
//!   it is rolled back (it pays for clicks that do not come). Above 0 is ambiguous: a
//!   candidate predicting too low, or an incumbent predicting too high on what it wins
//!   (the winner's curse: a noisier model wins most where its noise runs high), which a
//!   better candidate shows up. Neither is a reason alone: a cold candidate costs
//!   delivery, not money, and is rolled back when it brings fewer clicks per request.
//! - **clicks per dollar** (the inverse of cost per click): clicks against spend.
//! - **clicks per impression** (clicks per 1,000 impressions): clicks against wins.
//! - **clicks per request**: clicks against requests scored, what the variant delivers
//!   from the same users' traffic. A model that only wins cheap impressions can bring
//!   more clicks per dollar and fewer in all; this is what tells it apart.
//! - **late requests**: requests not scored in time against requests scored (latency as
//!   it costs bids: each variant's latency histogram is in `/metrics` for an analysis,
//!   [`crate::metrics`]). Judged from [`MIN_LATE`] late requests of the candidate.
//!
//! Fewer clicks per dollar, per impression or per request, or more late requests, roll
//! the candidate back. More clicks per dollar, with at least as many per request and
//! calibration not rejected, promote it. A decision needs `|z| >= z` (two-sided). The
//! judge looks only when the candidate's clicks reach `min_clicks`, then twice that,
//! four times, and so on ([`Looks`]): with `z = 3.5` (p = 0.00047 per test and look)
//! and five tests, ten looks (`min_clicks` x 512 clicks) keep the chance of any false
//! decision under 2.4 % (Bonferroni), where looking every second would spend it in
//! minutes.

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
    pub clicks_per_request: Test,
    /// `None` until the candidate has [`MIN_LATE`] late requests.
    pub late_requests: Option<Test>,
}

/// Late requests of the candidate before the late test counts: below this a single
/// timeout at a small share would read as a large z.
pub const MIN_LATE: u64 = 10;

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (c, i) = (&self.candidate, &self.incumbent);
        write!(
            f,
            "over the same time: candidate {} wins, {} clicks, {:.1} expected, {:.4} USD; incumbent {} wins, {} clicks, \
             {:.1} expected, {:.4} USD; observed/expected clicks {:.3} of the incumbent's (z {:.2}), clicks per USD \
             {:.3} of its (z {:.2}), clicks per impression {:.3} of its (z {:.2}), clicks per request {:.3} of its \
             (z {:.2}), late requests {} of {} against {} of {}",
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
            self.clicks_per_request.ratio,
            self.clicks_per_request.z,
            c.late,
            c.requests,
            i.late,
            i.requests,
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
    let clicks = |ec, ei| rate_test(candidate.clicks, incumbent.clicks, ec, ei);
    let (Some(calibration), Some(clicks_per_usd), Some(clicks_per_win), Some(clicks_per_request)) = (
        clicks(candidate.won_pctr, incumbent.won_pctr),
        clicks(candidate.spend_usd, incumbent.spend_usd),
        clicks(candidate.wins as f64, incumbent.wins as f64),
        clicks(candidate.requests as f64, incumbent.requests as f64),
    ) else {
        return Decision::Wait;
    };
    let late_requests = (candidate.late >= MIN_LATE)
        .then(|| rate_test(candidate.late, incumbent.late, candidate.requests as f64, incumbent.requests as f64))
        .flatten();
    let evidence = Evidence {
        candidate: *candidate,
        incumbent: *incumbent,
        calibration,
        clicks_per_usd,
        clicks_per_win,
        clicks_per_request,
        late_requests,
    };
    let z = cfg.z;
    let roll_back = |why| Decision::RollBack { evidence, why };
    if calibration.z <= -z {
        return roll_back("predicts more clicks than come, against the incumbent");
    }
    if clicks_per_usd.z <= -z {
        return roll_back("fewer clicks per dollar than the incumbent");
    }
    if clicks_per_win.z <= -z {
        return roll_back("fewer clicks per impression than the incumbent");
    }
    if clicks_per_request.z <= -z {
        return roll_back("fewer clicks per request than the incumbent");
    }
    if late_requests.is_some_and(|t| t.z >= z) {
        return roll_back("more requests not scored in time than the incumbent");
    }
    if clicks_per_usd.z >= z && clicks_per_request.ratio >= 1.0 {
        return Decision::Promote {
            evidence,
            why: "more clicks per dollar than the incumbent, and as many per request or more",
        };
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

    /// Ten requests scored for each win, none late.
    fn tally(wins: u64, clicks: u64, won_pctr: f64, spend_usd: f64) -> Tally {
        Tally { requests: 10 * wins, late: 0, bids: 0, wins, spend_usd, clicks, conversions: 0, won_pctr }
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
    fn a_better_candidate_is_promoted_though_the_incumbent_runs_hot_on_its_wins() {
        // The incumbent is noisier: it wins where its noise runs high, and gets 0.75 of
        // the clicks it expected there; the candidate gets what it expects, for less.
        let incumbent = Tally { requests: 900_000, ..tally(90_000, 1_800, 2_400.0, 180.0) };
        let better = Tally { requests: 100_000, ..tally(10_000, 260, 260.0, 19.0) };
        match judge(&better, &incumbent, &CFG) {
            Decision::Promote { evidence, .. } => {
                assert!(evidence.calibration.z > 3.5, "{evidence}");
                assert!(evidence.clicks_per_usd.z > 3.5 && evidence.clicks_per_request.ratio > 1.0, "{evidence}");
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_cold_candidate_is_rolled_back_though_its_clicks_come_cheap() {
        // It predicts 0.7 of its clicks, bids low, wins less, and pays less per click.
        let incumbent = Tally { requests: 900_000, ..tally(90_000, 1_800, 1_800.0, 180.0) };
        // 30 % fewer clicks per request: shown by that test alone.
        let cold = Tally { requests: 100_000, ..tally(6_000, 140, 98.0, 9.0) };
        match judge(&cold, &incumbent, &CFG) {
            Decision::RollBack { evidence, why } => {
                assert!(why.contains("per request"), "{why}");
                assert!(evidence.clicks_per_usd.z > 3.5, "cheaper clicks do not save it: {evidence}");
            }
            d => panic!("{d:?}"),
        }
        // 10 % fewer per request is not yet evidence (z -1.35), however far its clicks run
        // above its predictions (z 4.6) and however cheap they come (z 5.2): it waits, where a
        // better model beside a noisy incumbent would look the same.
        let cold = Tally { requests: 100_000, ..tally(8_000, 180, 126.0, 12.0) };
        assert_eq!(judge(&cold, &incumbent, &CFG), Decision::Wait);
    }

    #[test]
    fn a_candidate_late_more_often_is_rolled_back_from_ten_late_requests() {
        let incumbent = Tally { late: 36, ..tally(90_000, 1_800, 1_800.0, 180.0) };
        let slow = Tally { late: 40, ..tally(10_000, 200, 200.0, 20.0) };
        match judge(&slow, &incumbent, &CFG) {
            Decision::RollBack { evidence, why } => {
                assert!(why.contains("not scored in time"), "{why}");
                assert!(evidence.late_requests.unwrap().z > 3.5, "{evidence}");
            }
            d => panic!("{d:?}"),
        }
        // Nine late requests, however few the incumbent had: not judged yet.
        let few = Tally { late: 9, ..slow };
        assert_eq!(judge(&few, &Tally { late: 0, ..incumbent }, &CFG), Decision::Wait);
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
