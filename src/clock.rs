//! The auction clock: what time it is for everything in the bidder that depends on the
//! date or the time of day.
//!
//! Budgets and their UTC day, notice and click expiry, conversion attribution windows
//! and time-of-day features read [`AuctionClock`]; nothing else in the bidder reads the
//! wall clock. Deadlines are the exception: they are durations inside the process and
//! use the monotonic `Instant`.
//!
//! Two modes (`server.clock`):
//! - **`system`** (the default): the wall clock. A time header a client sends is ignored.
//! - **`simulation`**: the time of every bid request and notice is the one its sender
//!   states in the [`TIME_HEADER`] header (Unix milliseconds), and the bidder's "now"
//!   for housekeeping (new budget days, expiring replay entries) is the latest such time
//!   seen. `ctrbid exchange` plays a simulated day in minutes this way, through the same
//!   code that serves real traffic. A request without the header is refused (400): a
//!   simulated bidder must never fall back to the wall clock, which is months away from
//!   the simulated one. The mode must be chosen in the configuration, so a production
//!   bidder cannot be told the time by whoever sends it requests.
//!
//! Invariant: in simulation mode [`AuctionClock::now_ms`] never goes back: it is the
//! maximum over the times of the events seen (an event stamped earlier than that is
//! still handled at its own time, for its own expiry and features).

use serde::Deserialize;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The header that carries an event's time in simulation mode: Unix milliseconds.
pub const TIME_HEADER: &str = "x-ctrbid-time";

/// `server.clock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// The wall clock.
    #[default]
    System,
    /// Each request's time from its `x-ctrbid-time` header (`ctrbid exchange`).
    Simulation,
}

/// Why an event's time could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("x-ctrbid-time header is missing (server.clock = \"simulation\" takes every event's time from it)")]
    Missing,
    #[error("x-ctrbid-time header is not a Unix time in milliseconds")]
    Unreadable,
}

/// Not yet set: no event seen in simulation mode.
const UNSET: i64 = i64::MIN;

#[derive(Debug)]
pub struct AuctionClock {
    mode: ClockMode,
    /// Simulation mode: the latest event time seen, Unix ms; [`UNSET`] before the first.
    latest_ms: AtomicI64,
}

impl AuctionClock {
    pub fn new(mode: ClockMode) -> AuctionClock {
        AuctionClock { mode, latest_ms: AtomicI64::new(UNSET) }
    }

    pub fn system() -> AuctionClock {
        AuctionClock::new(ClockMode::System)
    }

    pub fn mode(&self) -> ClockMode {
        self.mode
    }

    /// The time of an event whose time header (if any) is `header`, Unix ms: the wall
    /// clock in system mode, the header in simulation mode (which also moves "now" on).
    pub fn event_ms(&self, header: Option<&[u8]>) -> Result<i64, ClockError> {
        match self.mode {
            ClockMode::System => Ok(wall_ms()),
            ClockMode::Simulation => {
                let text =
                    std::str::from_utf8(header.ok_or(ClockError::Missing)?).map_err(|_| ClockError::Unreadable)?;
                let ms = text.trim().parse::<i64>().map_err(|_| ClockError::Unreadable)?;
                // Years 1970 to 9999: anything else is not a time a sender meant.
                if !(0..=253_402_300_799_999).contains(&ms) {
                    return Err(ClockError::Unreadable);
                }
                self.latest_ms.fetch_max(ms, Ordering::Relaxed);
                Ok(ms)
            }
        }
    }

    /// Now, Unix ms: the wall clock, or in simulation mode the latest event time seen
    /// (`None` before the first event).
    pub fn now_ms(&self) -> Option<i64> {
        match self.mode {
            ClockMode::System => Some(wall_ms()),
            ClockMode::Simulation => Some(self.latest_ms.load(Ordering::Relaxed)).filter(|&ms| ms != UNSET),
        }
    }

    /// Now in Unix seconds, for housekeeping; `None` as [`AuctionClock::now_ms`].
    pub fn now_unix(&self) -> Option<i64> {
        self.now_ms().map(|ms| ms.div_euclid(1000))
    }
}

/// The wall clock, Unix ms. The one place the bidder reads it (see the module docs).
fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Unix seconds of a Unix millisecond time.
pub fn unix_s(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_mode_ignores_the_header() {
        let c = AuctionClock::system();
        let before = wall_ms();
        let t = c.event_ms(Some(b"1000")).unwrap();
        assert!(t >= before && t - before < 60_000, "{t} vs {before}");
        assert!(c.now_ms().unwrap() >= t);
    }

    #[test]
    fn simulation_takes_each_event_time_and_now_is_the_latest() {
        let c = AuctionClock::new(ClockMode::Simulation);
        assert_eq!(c.now_ms(), None, "no time before the first event");
        assert_eq!(c.event_ms(Some(b"1767571200500")), Ok(1_767_571_200_500));
        assert_eq!(c.now_unix(), Some(1_767_571_200));
        // An earlier event keeps its own time; now does not go back.
        assert_eq!(c.event_ms(Some(b" 1767571100000 ")), Ok(1_767_571_100_000));
        assert_eq!(c.now_ms(), Some(1_767_571_200_500));
        assert_eq!(c.event_ms(Some(b"1767657600000")), Ok(1_767_657_600_000));
        assert_eq!(c.now_ms(), Some(1_767_657_600_000));
    }

    #[test]
    fn simulation_refuses_a_missing_or_unreadable_time() {
        let c = AuctionClock::new(ClockMode::Simulation);
        for (header, want) in [
            (None, ClockError::Missing),
            (Some(&b"soon"[..]), ClockError::Unreadable),
            (Some(&b"1.5e12"[..]), ClockError::Unreadable),
            (Some(&b"-1"[..]), ClockError::Unreadable),
            (Some(&b"253402300800000"[..]), ClockError::Unreadable),
            (Some(&b"\xff"[..]), ClockError::Unreadable),
        ] {
            assert_eq!(c.event_ms(header), Err(want), "{header:?}");
        }
        assert_eq!(c.now_ms(), None, "a refused time does not move the clock");
    }
}
