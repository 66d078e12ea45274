//! What a feature spec reads from the aggregates: the `agg.<family>.<stat>[.<half-life>]`
//! numeric sources, and the number each gives for an entity's [`Counts`].
//!
//! - `impressions`, `clicks`, `conversions` (`.1h`, `.1d`, `.7d`): the decayed count (a
//!   spec usually takes its `log1p`).
//! - `ctr`: clicks over impressions smoothed toward a prior, (clicks + s m) /
//!   (impressions + s), with the prior's mean m and strength s (in impressions) from the
//!   spec's `prior`: an entity never seen reads m, one seen often its own rate. This is
//!   the empirical-Bayes estimate under a Beta(s m, s (1 - m)) prior.
//! - `cvr`: conversions over clicks, smoothed the same way (s in clicks).
//! - `since_click`: seconds from the entity's last click to the auction, at most
//!   [`SINCE_CLICK_CAP_S`] (also the value when it never clicked or is not held).
//!
//! Every value is a function of the counts and the auction's time only, so the served
//! row and the replayed row agree whenever the counts do.

use super::{Counts, Family, HALF_LIFE_NAMES};

/// The longest `since_click` reads, and what it reads without a click: 30 days.
pub const SINCE_CLICK_CAP_S: f64 = 30.0 * 86_400.0;

/// Which number of an entity's counts a feature is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Impressions,
    Clicks,
    Conversions,
    Ctr,
    Cvr,
    SinceClick,
}

impl Stat {
    fn parse(name: &str) -> Option<Stat> {
        Some(match name {
            "impressions" => Stat::Impressions,
            "clicks" => Stat::Clicks,
            "conversions" => Stat::Conversions,
            "ctr" => Stat::Ctr,
            "cvr" => Stat::Cvr,
            "since_click" => Stat::SinceClick,
            _ => return None,
        })
    }

    /// Rates need a prior; the others must not have one.
    pub fn is_rate(self) -> bool {
        matches!(self, Stat::Ctr | Stat::Cvr)
    }
}

/// A rate's prior: its mean and its weight in events (impressions for `ctr`, clicks for
/// `cvr`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub mean: f64,
    pub strength: f64,
}

impl Prior {
    /// Why a prior cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(self.mean > 0.0 && self.mean < 1.0) {
            return Err(format!("prior mean {} must be in (0, 1)", self.mean));
        }
        if !(self.strength.is_finite() && self.strength > 0.0) {
            return Err(format!("prior strength {} must be above 0", self.strength));
        }
        Ok(())
    }
}

/// One aggregate feature: a family's stat at a half-life (index into
/// [`super::HALF_LIVES_S`]; unused by `since_click`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggFeature {
    pub family: Family,
    pub stat: Stat,
    pub half_life: usize,
    /// Present exactly for the rates.
    pub prior: Option<Prior>,
}

impl AggFeature {
    /// Parses a source name (`agg.user.ctr.7d`, `agg.creative.since_click`) and checks the
    /// prior against it; the error is a reason, for the spec's message.
    pub fn parse(source: &str, prior: Option<Prior>) -> Result<AggFeature, String> {
        let rest = source.strip_prefix("agg.").ok_or_else(|| format!("{source:?} is not an agg. source"))?;
        let parts: Vec<&str> = rest.split('.').collect();
        let family = Family::parse(parts[0]).ok_or_else(|| {
            let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
            format!("unknown aggregate family {:?} (one of {})", parts[0], names.join(", "))
        })?;
        let stat = parts.get(1).and_then(|s| Stat::parse(s)).ok_or_else(|| {
            format!("{source:?}: the stat must be one of impressions, clicks, conversions, ctr, cvr, since_click")
        })?;
        let half_life = match (stat, parts.get(2)) {
            (Stat::SinceClick, None) => 0,
            (Stat::SinceClick, Some(_)) => return Err(format!("{source:?}: since_click takes no half-life")),
            (_, Some(h)) if parts.len() == 3 => HALF_LIFE_NAMES
                .iter()
                .position(|n| n == h)
                .ok_or_else(|| format!("{source:?}: half-life {h:?} is not one of {}", HALF_LIFE_NAMES.join(", ")))?,
            _ => return Err(format!("{source:?}: expected agg.<family>.<stat>.<half-life>")),
        };
        match (stat.is_rate(), prior) {
            (true, None) => return Err(format!("{source:?} is a rate and needs a prior {{\"mean\", \"strength\"}}")),
            (false, Some(_)) => return Err(format!("{source:?} is not a rate and takes no prior")),
            (true, Some(p)) => p.check().map_err(|e| format!("{source:?}: {e}"))?,
            (false, None) => {}
        }
        Ok(AggFeature { family, stat, half_life, prior })
    }

    /// The feature's value for an entity's counts at the auction time `ts_s` (`None`: the
    /// store does not hold the entity, or the request lacks its id).
    /// Only the feature's own half-life is decayed (one `exp2`; a ratio needs none).
    pub fn value(&self, counts: Option<&Counts>, ts_s: i64) -> f64 {
        let h = self.half_life;
        let c = counts.copied().unwrap_or_default();
        let decayed = |x: f32| f64::from(x) * c.decay_to(ts_s, h);
        let smoothed = |hits: f32, trials: f32| {
            let p = self.prior.expect("rates are parsed with a prior");
            (decayed(hits) + p.strength * p.mean) / (decayed(trials) + p.strength)
        };
        match self.stat {
            Stat::Impressions => decayed(c.impressions[h]),
            Stat::Clicks => decayed(c.clicks[h]),
            Stat::Conversions => decayed(c.conversions[h]),
            Stat::Ctr => smoothed(c.clicks[h], c.impressions[h]),
            Stat::Cvr => smoothed(c.conversions[h], c.clicks[h]),
            Stat::SinceClick if c.last_click_s == 0 => SINCE_CLICK_CAP_S,
            Stat::SinceClick => ((ts_s - i64::from(c.last_click_s)).max(0) as f64).min(SINCE_CLICK_CAP_S),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_767_571_200;
    const PRIOR: Prior = Prior { mean: 0.01, strength: 100.0 };

    fn counts(imps: f32, clicks: f32, convs: f32, last_click_s: u32) -> Counts {
        Counts {
            updated_s: T as u32,
            last_click_s,
            impressions: [imps; 3],
            clicks: [clicks; 3],
            conversions: [convs; 3],
        }
    }

    #[test]
    fn sources_parse_with_their_half_life_and_prior() {
        let f = AggFeature::parse("agg.user_ad_category.ctr.1d", Some(PRIOR)).unwrap();
        assert_eq!((f.family, f.stat, f.half_life), (Family::UserAdCategory, Stat::Ctr, 1));
        let f = AggFeature::parse("agg.creative.since_click", None).unwrap();
        assert_eq!((f.family, f.stat), (Family::Creative, Stat::SinceClick));
        for (source, prior, needle) in [
            ("agg.user.ctr.7d", None, "needs a prior"),
            ("agg.user.impressions.7d", Some(PRIOR), "takes no prior"),
            ("agg.users.ctr.7d", Some(PRIOR), "unknown aggregate family"),
            ("agg.user.ctr.2d", Some(PRIOR), "half-life \"2d\""),
            ("agg.user.ctr", Some(PRIOR), "expected agg.<family>.<stat>.<half-life>"),
            ("agg.user.since_click.1d", None, "takes no half-life"),
            ("agg.user.views.1d", None, "the stat must be"),
            ("agg.user.ctr.1d", Some(Prior { mean: 0.0, strength: 1.0 }), "prior mean"),
            ("agg.user.ctr.1d", Some(Prior { mean: 0.1, strength: 0.0 }), "prior strength"),
        ] {
            let err = AggFeature::parse(source, prior).unwrap_err();
            assert!(err.contains(needle), "{source}: {err} should mention {needle}");
        }
    }

    #[test]
    fn a_rate_moves_from_the_prior_to_the_entity_own_rate() {
        let ctr = AggFeature::parse("agg.user.ctr.7d", Some(PRIOR)).unwrap();
        assert_eq!(ctr.value(None, T), 0.01, "never seen: the prior");
        // 100 impressions, 5 clicks, prior worth 100 impressions at 1 %: (5 + 1) / 200.
        assert!((ctr.value(Some(&counts(100.0, 5.0, 0.0, 0)), T) - 0.03).abs() < 1e-12);
        // Seen a great deal: nearly its own 5 %.
        assert!((ctr.value(Some(&counts(1e6, 5e4, 0.0, 0)), T) - 0.05).abs() < 1e-4);
        let cvr = AggFeature::parse("agg.campaign.cvr.1d", Some(Prior { mean: 0.1, strength: 10.0 })).unwrap();
        assert!((cvr.value(Some(&counts(100.0, 10.0, 3.0, 0)), T) - 0.2).abs() < 1e-12);
        // (3 + 1) / 20
    }

    #[test]
    fn counts_read_decayed_to_the_auction() {
        let imps = AggFeature::parse("agg.publisher.impressions.1h", None).unwrap();
        let c = counts(8.0, 0.0, 0.0, 0);
        assert_eq!(imps.value(Some(&c), T), 8.0);
        assert_eq!(imps.value(Some(&c), T + 3 * 3_600), 1.0);
        assert_eq!(imps.value(None, T), 0.0);
    }

    #[test]
    fn since_click_is_capped_and_defaults_to_the_cap() {
        let since = AggFeature::parse("agg.user.since_click", None).unwrap();
        assert_eq!(since.value(None, T), SINCE_CLICK_CAP_S);
        assert_eq!(since.value(Some(&counts(3.0, 0.0, 0.0, 0)), T), SINCE_CLICK_CAP_S);
        assert_eq!(since.value(Some(&counts(3.0, 1.0, 0.0, (T - 90) as u32)), T), 90.0);
        assert_eq!(since.value(Some(&counts(3.0, 1.0, 0.0, (T - 90 * 86_400) as u32)), T), SINCE_CLICK_CAP_S);
    }
}
