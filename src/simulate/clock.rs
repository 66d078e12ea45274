//! Time: the diurnal activity curve, local clocks, and the mapping from "how far along
//! the run is" to a Unix timestamp.
//!
//! The run writes a fixed number of impressions but cannot know in advance how many
//! requests that takes, so time is driven by progress: the request made when a share
//! `p` of the impressions is written gets the time at which a share `p` of the span's
//! expected traffic has arrived. Traffic at UTC time `t` is the sum over time zones of
//! the zone's weight times the [`activity`] of its local hour, so nights are quiet
//! and the log spans exactly `days`. Invariant: [`Clock::at`] is monotone in progress
//! and stays inside `[start, start + span)`.

use super::world::Zone;

const SECONDS_PER_DAY: i64 = 86_400;
/// Width of the buckets the rate curve is integrated over.
const BUCKET: i64 = 300;

/// Relative activity at each local hour (linearly interpolated between hours).
const HOURLY: [f64; 24] = [
    0.35, 0.25, 0.18, 0.14, 0.13, 0.17, 0.30, 0.50, 0.65, 0.72, 0.76, 0.80, 0.85, 0.82, 0.80, 0.80, 0.83, 0.88, 0.95,
    1.00, 1.00, 0.92, 0.75, 0.52,
];
/// Extra activity on Saturdays and Sundays.
const WEEKEND: f64 = 1.08;

/// Local hour as a fraction (`0.0..24.0`) and weekday (Monday 0) of a Unix time.
pub fn local_time(ts: i64, utcoffset_min: i32) -> (f64, u8) {
    let local = ts + i64::from(utcoffset_min) * 60;
    let seconds = local.rem_euclid(SECONDS_PER_DAY);
    // 1970-01-01 was a Thursday.
    let weekday = (local.div_euclid(SECONDS_PER_DAY) + 3).rem_euclid(7) as u8;
    (seconds as f64 / 3600.0, weekday)
}

/// How busy people are at a local time.
pub fn activity(hour: f64, weekday: u8) -> f64 {
    let h = hour.floor() as usize % 24;
    let frac = hour - hour.floor();
    let a = HOURLY[h] * (1.0 - frac) + HOURLY[(h + 1) % 24] * frac;
    if weekday >= 5 {
        a * WEEKEND
    } else {
        a
    }
}

/// Zone `z`'s share weight at time `ts`: its users' mass times their activity.
pub fn zone_weight(zone: &Zone, ts: i64) -> f64 {
    let (hour, weekday) = local_time(ts, zone.utcoffset);
    zone.mass * activity(hour, weekday)
}

/// Progress-to-time mapping over a span.
#[derive(Debug, Clone)]
pub struct Clock {
    start: i64,
    span: i64,
    /// Cumulative traffic at each bucket boundary; `cum[0] == 0`, non-decreasing.
    cum: Vec<f64>,
    /// Bucket the last answer fell in (progress only grows).
    cursor: usize,
}

impl Clock {
    pub fn new(start: i64, days: u32, zones: &[Zone]) -> Clock {
        let span = i64::from(days) * SECONDS_PER_DAY;
        let buckets = (span / BUCKET) as usize;
        let mut cum = Vec::with_capacity(buckets + 1);
        cum.push(0.0);
        let mut total = 0.0;
        for b in 0..buckets {
            let mid = start + b as i64 * BUCKET + BUCKET / 2;
            total += zones.iter().map(|z| zone_weight(z, mid)).sum::<f64>();
            cum.push(total);
        }
        Clock { start, span, cum, cursor: 0 }
    }

    /// The time at which a share `progress` (in `[0, 1]`) of the traffic has arrived.
    /// Calls must come with non-decreasing `progress`.
    pub fn at(&mut self, progress: f64) -> i64 {
        let frac = self.locate(progress);
        let t = self.start + self.cursor as i64 * BUCKET + (frac * BUCKET as f64) as i64;
        t.min(self.start + self.span - 1)
    }

    /// [`Clock::at`] to the millisecond (Unix ms), same curve, same call rule; inside
    /// `[start, start + span)` in ms.
    pub fn at_ms(&mut self, progress: f64) -> i64 {
        let frac = self.locate(progress);
        let t = (self.start + self.cursor as i64 * BUCKET) * 1000 + (frac * (BUCKET * 1000) as f64) as i64;
        t.min((self.start + self.span) * 1000 - 1)
    }

    /// Moves the cursor to the bucket where a share `progress` of the traffic has
    /// arrived and returns how far into that bucket, in `[0, 1]`.
    fn locate(&mut self, progress: f64) -> f64 {
        let total = *self.cum.last().unwrap_or(&0.0);
        let target = progress.clamp(0.0, 1.0) * total;
        let last = self.cum.len() - 2;
        while self.cursor < last && self.cum[self.cursor + 1] <= target {
            self.cursor += 1;
        }
        let (lo, hi) = (self.cum[self.cursor], self.cum[self.cursor + 1]);
        if hi > lo {
            ((target - lo) / (hi - lo)).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_and_weekday() {
        // 2026-01-05T00:00Z is a Monday; at -300 minutes it is Sunday 19:00.
        assert_eq!(local_time(1_767_571_200, 0), (0.0, 0));
        assert_eq!(local_time(1_767_571_200, -300), (19.0, 6));
    }

    #[test]
    fn clock_is_monotone_and_inside_the_span() {
        let zones = [Zone { country: 0, utcoffset: -300, mass: 1.0 }, Zone { country: 6, utcoffset: 330, mass: 0.5 }];
        let mut clock = Clock::new(1_767_571_200, 2, &zones);
        let mut prev = i64::MIN;
        for i in 0..=1000 {
            let t = clock.at(i as f64 / 1000.0);
            assert!(t >= prev && (1_767_571_200..1_767_571_200 + 2 * 86_400).contains(&t));
            prev = t;
        }
    }

    /// `at_ms` is `at` to the millisecond: the same second, monotone, inside the span.
    #[test]
    fn at_ms_refines_at() {
        let zones = [Zone { country: 0, utcoffset: -300, mass: 1.0 }, Zone { country: 6, utcoffset: 330, mass: 0.5 }];
        let (mut a, mut b) = (Clock::new(1_767_571_200, 1, &zones), Clock::new(1_767_571_200, 1, &zones));
        let mut prev = i64::MIN;
        for i in 0..=5000 {
            let p = i as f64 / 5000.0;
            let (s, ms) = (a.at(p), b.at_ms(p));
            assert!(ms >= prev && ms < (1_767_571_200 + 86_400) * 1000, "{ms}");
            assert!((ms.div_euclid(1000) - s).abs() <= 1, "{s} s vs {ms} ms at {p}");
            prev = ms;
        }
    }
}
