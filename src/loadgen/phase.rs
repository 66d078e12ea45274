//! A phase: one rate held for one span. `--rate R --duration-s S` is a run of one phase;
//! `--phases R:S,R:S,..` is a run of several, back to back in one schedule and on one
//! connection pool, so the second phase's first request is due exactly when the first
//! phase's span ends and finds the connections the first phase left open.
//!
//! The syntax is `RATE:SECONDS`, the units of `--rate` (requests per second) and
//! `--duration-s` (seconds, fractions allowed), e.g. `--phases 8000:30,1000:5`.

use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// Requests per second, finite and > 0 (checked by [`Phase::validate`]).
    pub rate: f64,
    /// Span of the phase, > 0.
    pub duration: Duration,
}

impl Phase {
    /// `what` names the flag (or the element of `--phases`) in the message.
    pub fn validate(&self, what: &str) -> anyhow::Result<()> {
        anyhow::ensure!(self.rate.is_finite() && self.rate > 0.0, "{what}: the rate must be a positive number");
        anyhow::ensure!(!self.duration.is_zero(), "{what}: the duration must be positive");
        Ok(())
    }
}

/// One element of `--phases`: `RATE:SECONDS`.
impl FromStr for Phase {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Phase> {
        let bad = || anyhow::anyhow!("{s:?} is not RATE:SECONDS (requests per second : seconds, e.g. 8000:30)");
        let (rate, secs) = s.split_once(':').ok_or_else(bad)?;
        let rate: f64 = rate.trim().parse().map_err(|_| bad())?;
        let secs: f64 = secs.trim().parse().map_err(|_| bad())?;
        let duration = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
        let phase = Phase { rate, duration };
        phase.validate(s)?;
        Ok(phase)
    }
}
