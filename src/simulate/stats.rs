//! Running totals of a simulation and the oracle metrics computed from the true
//! probabilities: the AUC and log loss no model trained on these logs can beat.

/// Counts gathered while the logs are written.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub site_requests: u64,
    pub imps: u64,
    pub eligible: u64,
    pub no_eligible: u64,
    pub clicks: u64,
    pub conversions: u64,
    pub pctr_sum: f64,
    /// `pcvr` summed over clicked impressions.
    pub pcvr_clicked_sum: f64,
    /// (true pctr, clicked) of every impression, in log order.
    pub outcomes: Vec<(f64, bool)>,
}

impl Tally {
    pub fn impressions(&self) -> u64 {
        self.outcomes.len() as u64
    }

    pub fn record(&mut self, pctr: f64, pcvr: f64, click: bool, conv: bool) {
        self.pctr_sum += pctr;
        if click {
            self.clicks += 1;
            self.pcvr_clicked_sum += pcvr;
        }
        self.conversions += u64::from(conv);
        self.outcomes.push((pctr, click));
    }
}

/// Area under the ROC curve of `scores` against labels, ties counted as half
/// (Mann–Whitney). 0.5 when one class is missing. Sorts `pairs`.
pub fn auc(pairs: &mut [(f64, bool)]) -> f64 {
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let positives = pairs.iter().filter(|p| p.1).count() as f64;
    let negatives = pairs.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let mean_rank = (i + j + 1) as f64 / 2.0;
        rank_sum += mean_rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Mean binary log loss of probabilities against labels (natural log).
pub fn logloss(pairs: &[(f64, bool)]) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    let total: f64 = pairs.iter().map(|&(p, y)| if y { -p.ln() } else { -(1.0 - p).ln() }).sum();
    total / pairs.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_cases() {
        let check = |pairs: &[(f64, bool)], expected: f64| {
            let mut v = pairs.to_vec();
            assert!((auc(&mut v) - expected).abs() < 1e-12, "{pairs:?}");
        };
        check(&[(0.1, false), (0.9, true)], 1.0);
        check(&[(0.9, false), (0.1, true)], 0.0);
        check(&[(0.5, false), (0.5, true)], 0.5);
        check(&[(0.1, false), (0.4, true), (0.35, false), (0.8, true)], 1.0);
        check(&[(0.1, true), (0.4, true), (0.35, false), (0.8, false)], 0.25);
        check(&[(0.3, true)], 0.5);
    }
}
