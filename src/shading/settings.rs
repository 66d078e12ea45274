//! The shader's settings: defaults in named constants, [`ShadingSettings::validate`]
//! names the field that is out of range.

use serde::{Deserialize, Serialize};

use super::optimize::DEFAULT_FIXED_FACTOR;

pub const DEFAULT_MIN_OBSERVATIONS: u32 = 50;
pub const DEFAULT_PRIOR_WEIGHT: f64 = 50.0;
pub const DEFAULT_RESERVOIR: usize = 256;
pub const DEFAULT_REFIT_EVERY: u32 = 16;
pub const DEFAULT_MAX_CONTEXTS: usize = 100_000;
/// `reservoir` at most (a fit is O(reservoir) per Newton step).
pub const MAX_RESERVOIR: usize = 4096;

/// How the [`Shader`](super::Shader) learns and when it trusts what it learnt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadingSettings {
    /// Share of the value bid before any level of the context is trusted (never under
    /// the floor, never over the value). Default 0.85.
    pub fixed_factor: f64,
    /// Observations (exact or censored) a level needs before it is trusted. Default 50.
    pub min_observations: u32,
    /// The weight, in observations, of the parent's estimate in a level's. Default 50.
    pub prior_weight: f64,
    /// Most recent observations kept per level: the window each fit uses. Default 256.
    pub reservoir: usize,
    /// A trusted level refits every this many new observations. Default 16.
    pub refit_every: u32,
    /// Contexts tracked at most, and parents at most. Default 100000; 0 learns only
    /// the global level.
    pub max_contexts: usize,
}

impl Default for ShadingSettings {
    fn default() -> Self {
        ShadingSettings {
            fixed_factor: DEFAULT_FIXED_FACTOR,
            min_observations: DEFAULT_MIN_OBSERVATIONS,
            prior_weight: DEFAULT_PRIOR_WEIGHT,
            reservoir: DEFAULT_RESERVOIR,
            refit_every: DEFAULT_REFIT_EVERY,
            max_contexts: DEFAULT_MAX_CONTEXTS,
        }
    }
}

/// A setting out of range; the message names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("shading.{field} {why}")]
pub struct SettingsError {
    pub field: &'static str,
    pub why: &'static str,
}

impl ShadingSettings {
    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let check = |ok: bool, field, why| if ok { Ok(()) } else { Err(SettingsError { field, why }) };
        check(self.fixed_factor > 0.0 && self.fixed_factor <= 1.0, "fixed_factor", "must be in (0, 1]")?;
        check(self.min_observations >= 1, "min_observations", "must be at least 1")?;
        let w = self.prior_weight;
        check(w.is_finite() && w >= 0.0, "prior_weight", "must be finite and at least 0")?;
        check((2..=MAX_RESERVOIR).contains(&self.reservoir), "reservoir", "must be between 2 and 4096")?;
        check(self.refit_every >= 1, "refit_every", "must be at least 1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(settings: ShadingSettings, expected: Result<(), &str>) {
        assert_eq!(settings.validate().map_err(|e| e.to_string()), expected.map_err(str::to_owned));
    }

    #[test]
    fn validation_names_the_field() {
        let d = ShadingSettings::default;
        check(d(), Ok(()));
        check(ShadingSettings { fixed_factor: 0.0, ..d() }, Err("shading.fixed_factor must be in (0, 1]"));
        check(ShadingSettings { fixed_factor: 1.0, max_contexts: 0, ..d() }, Ok(()));
        check(ShadingSettings { min_observations: 0, ..d() }, Err("shading.min_observations must be at least 1"));
        check(
            ShadingSettings { prior_weight: f64::NAN, ..d() },
            Err("shading.prior_weight must be finite and at least 0"),
        );
        check(ShadingSettings { reservoir: 1, ..d() }, Err("shading.reservoir must be between 2 and 4096"));
        check(ShadingSettings { refit_every: 0, ..d() }, Err("shading.refit_every must be at least 1"));
        let parsed: ShadingSettings = serde_json::from_str(r#"{"reservoir": 64}"#).unwrap();
        assert_eq!(parsed, ShadingSettings { reservoir: 64, ..d() });
        assert!(serde_json::from_str::<ShadingSettings>(r#"{"reservior": 64}"#).is_err(), "unknown fields fail");
    }
}
