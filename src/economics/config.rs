//! `[pacing]`, `[frequency_caps]` and `[shading]`: the campaign economics' settings.

use super::plan::Learning;
use crate::shading::ShadingSettings;
use serde::Deserialize;
use std::path::PathBuf;

/// Budget pacing (`[pacing]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PacingConfig {
    /// Spread each campaign's daily budget over the day by throttling; false spends
    /// as fast as the auctions allow until the budget is gone. Either way no bid is
    /// made that spend plus bids in flight could not pay. Default true.
    pub enabled: bool,
    /// Seconds of the auction clock between control steps. Default 60.
    pub step_s: i64,
    /// A gap to the plan is closed over this many seconds. Default 1800.
    pub catch_up_s: i64,
    /// Time constant of the spend-per-opportunity estimate, seconds. Default 1800.
    pub smoothing_s: i64,
    /// The lowest pacing rate a campaign with budget left is throttled to. Default 0.001.
    pub min_rate: f64,
    /// Weight of the newest day in the hourly traffic profile, once a few days are
    /// known. Default 0.3.
    pub profile_memory: f64,
    /// Opportunities of the catalog-wide traffic shape added to each campaign's own
    /// counts of a day. Default 2000.
    pub profile_prior_weight: f64,
    /// A bid holds its price against the budget until its outcome comes, or this many
    /// seconds of the auction clock. Default 120 (the notice URLs live longer: a win
    /// notice later than this may take spend past the budget by that bid).
    pub in_flight_s: i64,
    /// Where the pacing, frequency-cap and shading state is saved (every
    /// `save_interval_s` and at shutdown) and read back at start. Default:
    /// `economics.json` in `events.dir`; without an event log, not saved.
    pub state_file: Option<PathBuf>,
    /// Seconds of wall time between saves. Default 10.
    pub save_interval_s: u64,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            enabled: true,
            step_s: 60,
            catch_up_s: 1800,
            smoothing_s: 1800,
            min_rate: 0.001,
            profile_memory: 0.3,
            profile_prior_weight: 2000.0,
            in_flight_s: 120,
            state_file: None,
            save_interval_s: 10,
        }
    }
}

impl PacingConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        let check = |ok: bool, field: &str, why: &str| -> anyhow::Result<()> {
            anyhow::ensure!(ok, "config: pacing.{field} {why}");
            Ok(())
        };
        check((1..=3600).contains(&self.step_s), "step_s", "must be between 1 and 3600")?;
        check(self.catch_up_s >= self.step_s, "catch_up_s", "must be at least step_s")?;
        check(self.smoothing_s >= self.step_s, "smoothing_s", "must be at least step_s")?;
        check(self.min_rate > 0.0 && self.min_rate <= 1.0, "min_rate", "must be in (0, 1]")?;
        check(self.profile_memory > 0.0 && self.profile_memory <= 1.0, "profile_memory", "must be in (0, 1]")?;
        check(self.profile_prior_weight >= 0.0, "profile_prior_weight", "must be at least 0")?;
        check(self.in_flight_s >= 1, "in_flight_s", "must be at least 1")?;
        check(self.save_interval_s >= 1, "save_interval_s", "must be at least 1")?;
        Ok(())
    }

    pub fn learning(&self) -> Learning {
        Learning { memory: self.profile_memory, prior_weight: self.profile_prior_weight }
    }
}

/// Frequency caps (`[frequency_caps]`); the caps themselves are the catalog's
/// (`frequency_cap` on a campaign or a creative).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrequencyCapsConfig {
    /// Apply the catalog's caps. Default true.
    pub enabled: bool,
    /// Users tracked at most; beyond it a new user of a capped campaign gets no bid
    /// from it (counted) until housekeeping frees room. Default 1,000,000.
    pub max_users: usize,
}

impl Default for FrequencyCapsConfig {
    fn default() -> Self {
        FrequencyCapsConfig { enabled: true, max_users: 1_000_000 }
    }
}

impl FrequencyCapsConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_users >= 1, "config: frequency_caps.max_users must be at least 1");
        Ok(())
    }
}

/// How first-price bids are priced (`[shading]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ShadingMode {
    /// `bidding.first_price_shading` x the value (1 bids the value: truthful).
    Fixed,
    /// The surplus-maximising bid under the landscape learnt from win and loss
    /// notices, per publisher and format; the fixed factor until a context has enough.
    #[default]
    Learnt,
    /// The surplus-maximising bid under the landscape `ctrbid exchange` really draws
    /// from (`oracle_seed`): a benchmark for the simulator only, it reads the truth.
    Oracle,
}

/// First-price bid shading (`[shading]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadingConfig {
    /// Default `"learnt"`.
    pub mode: ShadingMode,
    /// Observations a context (or its format, or the whole exchange) needs before its
    /// estimate is used. Default 50.
    pub min_observations: u32,
    /// A context's estimate is shrunk toward its format's as if the format's were this
    /// many observations. Default 50.
    pub prior_weight: f64,
    /// Observations kept per context for refits. Default 256.
    pub reservoir: usize,
    /// A context refits every this many new observations. Default 16.
    pub refit_every: u32,
    /// Contexts tracked at most. Default 100,000; 0 learns only the global level.
    ///
    /// (These five are [`ShadingSettings`]' fields, with its defaults and checks.)
    pub max_contexts: usize,
    /// Oracle mode: the `ctrbid exchange --seed` whose landscape to read, with its
    /// `--publishers`, `--landscape-median` and `--landscape-sigma` (defaults: the exchange's).
    pub oracle_seed: Option<u64>,
    pub oracle_publishers: usize,
    pub oracle_median: f64,
    pub oracle_sigma: f64,
}

impl Default for ShadingConfig {
    fn default() -> Self {
        let learning = ShadingSettings::default();
        ShadingConfig {
            mode: ShadingMode::Learnt,
            min_observations: learning.min_observations,
            prior_weight: learning.prior_weight,
            reservoir: learning.reservoir,
            refit_every: learning.refit_every,
            max_contexts: learning.max_contexts,
            oracle_seed: None,
            oracle_publishers: crate::simulate::SimConfig::default().publishers,
            oracle_median: crate::exchange::landscape::DEFAULT_MEDIAN,
            oracle_sigma: crate::exchange::landscape::DEFAULT_SIGMA,
        }
    }
}

impl ShadingConfig {
    /// The shader's settings: these, with `bidding.first_price_shading` as the factor
    /// bid before a context is trusted.
    pub fn learning(&self, fixed_factor: f64) -> ShadingSettings {
        ShadingSettings {
            fixed_factor,
            min_observations: self.min_observations,
            prior_weight: self.prior_weight,
            reservoir: self.reservoir,
            refit_every: self.refit_every,
            max_contexts: self.max_contexts,
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let check = |ok: bool, field: &str, why: &str| -> anyhow::Result<()> {
            anyhow::ensure!(ok, "config: shading.{field} {why}");
            Ok(())
        };
        // The factor is `bidding.first_price_shading`'s, checked there.
        self.learning(1.0).validate().map_err(|e| anyhow::anyhow!("config: {e}"))?;
        check(
            self.mode != ShadingMode::Oracle || self.oracle_seed.is_some(),
            "oracle_seed",
            "is required with mode = \"oracle\" (the exchange's --seed)",
        )?;
        check(self.oracle_publishers >= 1, "oracle_publishers", "must be at least 1")?;
        check(
            self.oracle_median > 0.0 && self.oracle_sigma >= 0.0,
            "oracle_median",
            "and oracle_sigma must be positive",
        )?;
        Ok(())
    }
}
