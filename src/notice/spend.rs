//! Spend per campaign for the current UTC day, from applied billing notices.
//!
//! Amounts are micro-USD in atomics under a `DashMap` keyed by campaign id, so billing
//! notices for different campaigns never wait on each other. At the first tick of a
//! new UTC day the map is cleared; a billing notice that races with the clear may be
//! counted in either day.

use dashmap::DashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub const SECONDS_PER_DAY: i64 = 86_400;

#[derive(Debug, Default)]
pub struct Spend {
    /// The UTC day (Unix seconds / 86400) the amounts belong to.
    day: AtomicI64,
    micro_usd: DashMap<Box<str>, AtomicU64>,
}

impl Spend {
    /// Adds `usd` to the campaign's spend; returns its spend today, USD.
    pub fn add(&self, campaign: &str, usd: f64, now: i64) -> f64 {
        self.roll(now);
        let micros = (usd.max(0.0) * 1e6).round() as u64;
        let total = match self.micro_usd.get(campaign) {
            Some(v) => v.fetch_add(micros, Ordering::Relaxed) + micros,
            None => {
                let entry = self.micro_usd.entry(campaign.into()).or_insert_with(|| AtomicU64::new(0));
                entry.fetch_add(micros, Ordering::Relaxed) + micros
            }
        };
        total as f64 / 1e6
    }

    /// The campaign's spend today, USD.
    pub fn today(&self, campaign: &str) -> f64 {
        self.micro_usd.get(campaign).map_or(0.0, |v| v.load(Ordering::Relaxed) as f64 / 1e6)
    }

    /// Every campaign with spend today and its spend, USD, highest first.
    pub fn campaigns(&self) -> Vec<(String, f64)> {
        let mut all: Vec<(String, f64)> = self
            .micro_usd
            .iter()
            .map(|e| (e.key().to_string(), e.value().load(Ordering::Relaxed) as f64 / 1e6))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all
    }

    /// Every campaign's spend today, USD.
    pub fn total(&self) -> f64 {
        self.micro_usd.iter().map(|v| v.load(Ordering::Relaxed)).sum::<u64>() as f64 / 1e6
    }

    /// Starts a new day when `now` is past the current one; true when it did.
    pub fn roll(&self, now: i64) -> bool {
        let day = now.div_euclid(SECONDS_PER_DAY);
        let current = self.day.load(Ordering::Relaxed);
        if day > current && self.day.compare_exchange(current, day, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.micro_usd.clear();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_per_campaign_and_resets_each_utc_day() {
        let s = Spend::default();
        let day = 20_000 * SECONDS_PER_DAY;
        assert_eq!(s.add("a", 1.5, day + 10), 1.5);
        assert_eq!(s.add("a", 0.25, day + 20), 1.75);
        assert_eq!(s.add("b", 2.0, day + 30), 2.0);
        assert_eq!(s.today("a"), 1.75);
        assert!(!s.roll(day + 86_399));
        assert!(!s.roll(day - 5), "time going back does not reopen a day");
        assert!(s.roll(day + SECONDS_PER_DAY));
        assert_eq!(s.today("a"), 0.0);
        assert_eq!(s.add("a", 1.0, day + SECONDS_PER_DAY + 1), 1.0);
    }
}
