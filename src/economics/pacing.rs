//! Budget pacing: each campaign's daily budget spread over the day in proportion to the
//! traffic it can expect, by throttling the share of its opportunities it bids on.
//!
//! **Why throttling.** Pacing can lower the bid or skip the auction. Lowering the bid
//! breaks what the price means (second price: the value, the dominant strategy; first
//! price: the surplus-maximising shaded value, [`crate::shading`]) and teaches the
//! shading model a landscape of its own making; skipping a random share of the
//! opportunities keeps every bid that is made the right bid for its impression. This
//! is the probabilistic throttling of Lee, Jalali & Dasdan, "Real time bid optimization
//! with smooth budget delivery in online advertising" (ADKDD 2013) and of Xu et al.,
//! "Smart Pacing for effective online ad campaign optimization" (KDD 2015), whose
//! *pacing rate* is the probability of taking part.
//!
//! **The controller** runs every `step_s` seconds of the auction clock, for every
//! campaign at once ([`Controller::step`]). It knows the plan (budget × the share of
//! the day's traffic before each moment, [`super::plan`]), the spend so far (billing
//! notices) and the bids in flight (reserved, not yet won or lost), and it estimates
//! `u`, the spend per opportunity at a rate of 1, as the ratio of exponentially
//! averaged spend to exponentially averaged opportunities bid on (robust to a campaign
//! that wins a few times an hour). The rate for the next step is
//! `need / (u × expected opportunities)`, clamped to `[min_rate, 1]`, where `need` is
//! the next step's planned spend plus the gap to the plan, spread over `catch_up_s` (or
//! what is left of the day, so the day ends on its budget), and the expected
//! opportunities follow the profile's shape.
//!
//! **No overspend** is not the controller's job: every bid reserves its price against
//! the budget until its outcome ([`CampaignPace::reserve`]), and a bid that would take
//! spend plus reservations past the budget is not made. Spend can therefore pass the
//! budget only by a bid whose win notice came after its reservation lapsed
//! (`pacing.in_flight_s`), counted as `late_outcomes`.

use super::plan::{hour_of, Learning, Profile, HOURS};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

/// The rate as a `u32` share: `u32::MAX` is 1.
const RATE_ONE: u32 = u32::MAX;

/// The least density an hour of the profile is taken to have, so an hour the profile
/// says is empty does not divide by zero or promise nothing.
const MIN_DENSITY: f64 = 0.05;

/// A campaign's budget state shared by the bid path (lock-free reads and reservations),
/// the notice path (spend, released reservations) and the controller.
#[derive(Debug)]
pub struct CampaignPace {
    pub id: Box<str>,
    /// Today's budget, micro-USD (from the catalog; a reload updates it).
    budget: AtomicU64,
    /// Billed today, micro-USD: a copy of `notice::Spend`'s amount for this campaign,
    /// kept beside `reserved` so that the bid path's budget check reads two atomics of
    /// one struct instead of a map keyed by campaign id. Both are fed by the same billing
    /// notice and restored from the same event log, in the same micro-USD rounding.
    spent: AtomicU64,
    /// Bids in flight, micro-USD: their prices, until each is won, lost or lapses.
    reserved: AtomicU64,
    /// Probability of taking part in an opportunity, [`RATE_ONE`] = 1.
    rate: AtomicU32,
    /// Opportunities since the last step (sampled: see `super::gate`).
    opportunities: AtomicU64,
    pub throttled: AtomicU64,
    /// Bids not made because spend plus reservations would pass the budget.
    pub refused: AtomicU64,
    /// The controller's part; only the controller's one thread at a time touches it.
    pub(super) ctl: std::sync::Mutex<Controlled>,
    /// The UTC day `spent` belongs to.
    day: AtomicI64,
    /// Billed since start, micro-USD, every day together (the books a fleet's
    /// instances are checked against the exchange's ledger by).
    spent_total: AtomicU64,
    /// In a fleet, the share of the budget this instance holds (its lease, micro-USD,
    /// granted for the day by [`crate::fleet::budget`]); [`NO_LEASE`] alone. Bids
    /// reserve against the lesser of the budget and the lease.
    lease: AtomicU64,
    /// In a fleet: what the other instances had committed (spent and in flight) at the
    /// last lease refresh, and how many instances were live then (1 alone). The pacing
    /// controller plans the fleet's spend and takes its share of it.
    others_committed: AtomicU64,
    live: AtomicU32,
    /// Bids not made because the lease was used up while the budget was not: the
    /// instance waits for its next grant.
    pub lease_refused: AtomicU64,
    /// The largest amount a bid reserved (a lease is never sized below one bid).
    max_hold: AtomicU64,
    /// A fleet instance's bookkeeping of its lease: a bid found it used up since the
    /// last refresh; what was committed at the last grant; when that was (ms of the
    /// fleet client's clock).
    starved: AtomicBool,
    committed_at_grant: AtomicU64,
    granted_at_ms: AtomicI64,
}

/// [`CampaignPace::lease`] of an instance alone: no limit beside the budget.
pub const NO_LEASE: u64 = u64::MAX;

/// What the controller keeps per campaign between steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Controlled {
    pub profile: Profile,
    /// Opportunities seen today by hour (the next day's learning).
    pub opportunities_by_hour: [u64; HOURS],
    /// Spend today by hour, micro-USD (reports and `/admin/status`).
    pub spend_by_hour: [u64; HOURS],
    /// Exponential averages: spend, micro-USD, and opportunities weighted by the rate
    /// they were met at. Their ratio is `u`.
    pub avg_spend: f64,
    pub avg_taken: f64,
    /// Exponential average of opportunities per step, each step's count divided by
    /// the profile's density in its hour (24 x the hour's share: 1 when flat), so the
    /// next step's expectation follows the profile rather than lagging the day's curve.
    pub avg_opportunities: f64,
    /// `spent` at the last step.
    pub spent_at_step: u64,
    /// The UTC day the counts belong to; `None` before the first step.
    pub day: Option<i64>,
}

/// The controller's settings (`[pacing]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingSettings {
    pub enabled: bool,
    pub step_s: i64,
    pub catch_up_s: i64,
    /// Time constant of the averages behind `u`, seconds.
    pub smoothing_s: i64,
    pub min_rate: f64,
    pub learning: Learning,
}

impl CampaignPace {
    pub fn new(id: &str, budget_usd: f64) -> CampaignPace {
        CampaignPace {
            id: id.into(),
            budget: AtomicU64::new(micros(budget_usd)),
            spent: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            rate: AtomicU32::new(RATE_ONE),
            opportunities: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            ctl: std::sync::Mutex::new(Controlled::default()),
            day: AtomicI64::new(i64::MIN),
            spent_total: AtomicU64::new(0),
            lease: AtomicU64::new(NO_LEASE),
            others_committed: AtomicU64::new(0),
            live: AtomicU32::new(1),
            lease_refused: AtomicU64::new(0),
            max_hold: AtomicU64::new(0),
            starved: AtomicBool::new(false),
            committed_at_grant: AtomicU64::new(0),
            granted_at_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// A pace whose bids wait for a lease (a fleet instance): none is held until the
    /// first grant.
    pub fn leased(self) -> CampaignPace {
        self.lease.store(0, Ordering::Relaxed);
        self
    }

    /// The lease held, micro-USD; [`NO_LEASE`] alone.
    pub fn lease_micros(&self) -> u64 {
        self.lease.load(Ordering::Relaxed)
    }

    /// A grant from the fleet at `at_ms`: the lease is now `lease`; the others had
    /// committed `others` and `live` instances were live.
    pub fn set_grant(&self, lease: u64, others: u64, live: u32, at_ms: i64) {
        self.lease.store(lease, Ordering::Relaxed);
        self.others_committed.store(others, Ordering::Relaxed);
        self.live.store(live.max(1), Ordering::Relaxed);
        self.committed_at_grant.store(self.spent_micros() + self.reserved_micros(), Ordering::Relaxed);
        self.granted_at_ms.store(at_ms, Ordering::Relaxed);
    }

    /// Whether a fleet instance should ask for this campaign's lease again at `now_ms`:
    /// a bid found the lease used up, half of the last slice is committed, or something
    /// was committed since a grant older than `stale_ms` (what the fleet knows of this
    /// instance's spend, and it of the others', is that old). An idle campaign is not
    /// asked for: its grant lapses to what it committed once this instance stops
    /// refreshing it (`fleet.live_window_ms`), and its first bid asks again. Clears the
    /// used-up mark.
    pub fn lease_due(&self, now_ms: i64, stale_ms: i64) -> bool {
        if self.starved.swap(false, Ordering::Relaxed) {
            return true;
        }
        let lease = self.lease_micros();
        let at_grant = self.committed_at_grant.load(Ordering::Relaxed);
        let committed = self.spent_micros() + self.reserved_micros();
        // A grant of nothing beyond the commitments has no slice to use half of: a bid
        // that finds no room asks (`starved`).
        let half_used =
            lease != NO_LEASE && lease > at_grant && committed.saturating_sub(at_grant) * 2 >= lease - at_grant;
        let moved = committed != at_grant;
        half_used || (moved && now_ms.saturating_sub(self.granted_at_ms.load(Ordering::Relaxed)) >= stale_ms)
    }

    /// Marks the lease used up (a fleet instance's candidate met no room): the next
    /// refresh asks for more. Free when it is marked already.
    pub fn mark_starved(&self) {
        if self.lease_micros() != NO_LEASE && !self.starved.load(Ordering::Relaxed) {
            self.starved.store(true, Ordering::Relaxed);
        }
    }

    /// What the fleet had committed besides this instance, and its live instances, at
    /// the last grant (0 and 1 alone).
    pub fn fleet_view(&self) -> (u64, u32) {
        (self.others_committed.load(Ordering::Relaxed), self.live.load(Ordering::Relaxed))
    }

    /// The largest amount one bid of this campaign reserved, micro-USD.
    pub fn max_hold_micros(&self) -> u64 {
        self.max_hold.load(Ordering::Relaxed)
    }

    /// Takes the fleet's record of today's spend by this instance when it is higher
    /// than the one kept here (after a restart the event log holds the bills this
    /// instance received, not those of its own bids).
    pub fn adopt_spent(&self, amount: u64) {
        self.spent.fetch_max(amount, Ordering::AcqRel);
    }

    /// What bids may commit: the budget, or the lease when it is less.
    fn limit(&self) -> u64 {
        self.budget_micros().min(self.lease_micros())
    }

    pub fn set_budget(&self, usd: f64) {
        self.budget.store(micros(usd), Ordering::Relaxed);
    }

    pub fn budget_micros(&self) -> u64 {
        self.budget.load(Ordering::Relaxed)
    }

    pub fn spent_micros(&self) -> u64 {
        self.spent.load(Ordering::Relaxed)
    }

    pub fn reserved_micros(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Billed since the process started, every day together, micro-USD.
    pub fn spent_total_micros(&self) -> u64 {
        self.spent_total.load(Ordering::Relaxed)
    }

    /// The UTC day today's spend belongs to; [`i64::MIN`] before any.
    pub fn day(&self) -> i64 {
        self.day.load(Ordering::Relaxed)
    }

    /// Budget (or lease) left after spend and bids in flight, micro-USD.
    pub fn left_micros(&self) -> u64 {
        self.limit().saturating_sub(self.spent_micros() + self.reserved_micros())
    }

    /// The pacing rate, 0 to 1.
    pub fn rate(&self) -> f64 {
        f64::from(self.rate.load(Ordering::Relaxed)) / f64::from(RATE_ONE)
    }

    pub fn set_rate(&self, rate: f64) {
        self.rate.store((rate.clamp(0.0, 1.0) * f64::from(RATE_ONE)) as u32, Ordering::Relaxed);
    }

    /// True when an opportunity drawn `draw` (uniform `u32`) is taken at the current rate.
    pub fn takes(&self, draw: u32) -> bool {
        let rate = self.rate.load(Ordering::Relaxed);
        rate == RATE_ONE || draw < rate
    }

    pub fn count_opportunities(&self, n: u64) {
        self.opportunities.fetch_add(n, Ordering::Relaxed);
    }

    /// Reserves `amount` micro-USD for a bid in flight; false (nothing reserved) when
    /// spend plus reservations would pass the budget, or the lease. Invariant: after a
    /// `true`, `spent + reserved <= min(budget, lease)` held at the reservation.
    pub fn reserve(&self, amount: u64) -> bool {
        let lease = self.lease_micros();
        if lease != NO_LEASE && amount > self.max_hold.load(Ordering::Relaxed) {
            self.max_hold.fetch_max(amount, Ordering::Relaxed);
        }
        let budget = self.budget_micros();
        let limit = budget.min(lease);
        let mut reserved = self.reserved.load(Ordering::Relaxed);
        loop {
            let committed = self.spent_micros() + reserved + amount;
            if committed > limit {
                if committed > budget {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.lease_refused.fetch_add(1, Ordering::Relaxed);
                    self.mark_starved();
                }
                return false;
            }
            match self.reserved.compare_exchange_weak(reserved, reserved + amount, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => reserved = now,
            }
        }
    }

    /// Holds `amount` whatever the budget says: a bid already made (taken back from the
    /// state file at start).
    pub fn force_reserve(&self, amount: u64) {
        self.reserved.fetch_add(amount, Ordering::AcqRel);
    }

    /// Gives back `amount` of the reservations (an outcome arrived, or the bid lapsed).
    pub fn release(&self, amount: u64) {
        let _ = self.reserved.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |r| Some(r.saturating_sub(amount)));
    }

    /// A billing notice charged `amount` micro-USD at `now` (Unix s); the spend is
    /// added before the reservation is released, so the budget check never sees less
    /// than is committed.
    pub fn bill(&self, amount: u64, now: i64) {
        self.roll(now);
        self.spent.fetch_add(amount, Ordering::AcqRel);
        self.spent_total.fetch_add(amount, Ordering::Relaxed);
        if let Ok(mut c) = self.ctl.lock() {
            c.spend_by_hour[hour_of(now)] += amount;
        }
    }

    /// Sets today's spend (at start-up, restored from the event log).
    pub fn restore_spent(&self, amount: u64, now: Option<i64>) {
        if let Some(now) = now {
            self.day.store(now.div_euclid(86_400), Ordering::Relaxed);
        }
        self.spent.store(amount, Ordering::Relaxed);
    }

    /// At the first event of a new UTC day: today's spend starts at 0, and so does a
    /// fleet instance's lease (a day's grants are the day's). True when it rolled.
    pub fn roll(&self, now: i64) -> bool {
        let day = now.div_euclid(86_400);
        let current = self.day.load(Ordering::Relaxed);
        if day > current && self.day.compare_exchange(current, day, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.spent.store(0, Ordering::Relaxed);
            if current != i64::MIN {
                let _ = self.lease.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |l| (l != NO_LEASE).then_some(0));
            }
            return true;
        }
        false
    }
}

/// Runs the control steps of every campaign.
#[derive(Debug)]
pub struct Controller {
    pub settings: PacingSettings,
    /// The step the last run was for (auction seconds / `step_s`), [`i64::MIN`] before
    /// the first: the thread that moves it runs the step.
    last_step: AtomicI64,
}

impl Controller {
    pub fn new(settings: PacingSettings) -> Controller {
        Controller { settings, last_step: AtomicI64::new(i64::MIN) }
    }

    /// True for exactly one caller per new step at `now` (Unix s): that caller runs
    /// [`Controller::step`].
    pub fn due(&self, now: i64) -> bool {
        let step = now.div_euclid(self.settings.step_s);
        let last = self.last_step.load(Ordering::Relaxed);
        step > last && self.last_step.compare_exchange(last, step, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// One control step at `now` (Unix s) over every campaign. A new UTC day first
    /// folds yesterday's opportunities into each profile (shrunk toward the catalog's
    /// shape) and starts today's counts.
    pub fn step(&self, campaigns: &[std::sync::Arc<CampaignPace>], now: i64) {
        let s = &self.settings;
        let day = now.div_euclid(86_400);
        let second = now.rem_euclid(86_400);
        let mut guards: Vec<_> = campaigns.iter().map(|c| c.ctl.lock().unwrap_or_else(|p| p.into_inner())).collect();
        // A new day (for the campaigns that roll now): learn, then start afresh. The
        // first step of a campaign only starts its day.
        if guards.iter().any(|g| g.day.is_some_and(|d| d < day)) {
            let catalog = super::plan::catalog_shares(guards.iter().map(|g| &g.opportunities_by_hour));
            for (c, g) in campaigns.iter().zip(guards.iter_mut()) {
                if g.day.is_some_and(|d| d < day) {
                    let counts = g.opportunities_by_hour;
                    g.profile.learn(&counts, &catalog, s.learning);
                    g.opportunities_by_hour = [0; HOURS];
                    g.spend_by_hour = [0; HOURS];
                    c.roll(now);
                    g.spent_at_step = c.spent_micros();
                }
            }
        }
        for g in guards.iter_mut() {
            g.day = Some(day);
        }
        let hour = hour_of(now - 1);
        let fade = (-(s.step_s as f64) / s.smoothing_s as f64).exp();
        for (c, g) in campaigns.iter().zip(guards.iter_mut()) {
            let seen = c.opportunities.swap(0, Ordering::Relaxed);
            g.opportunities_by_hour[hour] += seen;
            let spent = c.spent_micros();
            let step_spend = spent.saturating_sub(g.spent_at_step);
            g.spent_at_step = spent;
            let rate = c.rate();
            g.avg_spend = fade * g.avg_spend + step_spend as f64;
            g.avg_taken = fade * g.avg_taken + rate * seen as f64;
            let shares = g.profile.shares;
            let density = |h: usize| (shares[h] * HOURS as f64).max(MIN_DENSITY);
            g.avg_opportunities = fade * g.avg_opportunities + (1.0 - fade) * seen as f64 / density(hour);
            if !s.enabled {
                continue;
            }
            let budget = c.budget_micros() as f64;
            let planned = |t: i64| budget * g.profile.cumulative(t);
            // In a fleet the plan is the fleet's, and this instance takes its share of
            // what it needs (each sees about as much of the traffic).
            let (others, live) = c.fleet_view();
            let committed = (spent + c.reserved_micros() + others) as f64;
            let gap = planned(second) - committed;
            // The gap closes over `catch_up_s`, or what is left of the day if less.
            let window = s.catch_up_s.min(86_400 - second).max(s.step_s);
            let need = ((planned(second + s.step_s) - planned(second)) + gap * (s.step_s as f64 / window as f64))
                / f64::from(live);
            let expected = g.avg_opportunities * density(hour_of(now));
            c.set_rate(next_rate(need, g.avg_spend, g.avg_taken, expected, s.min_rate));
        }
    }
}

/// The rate for the next step: `need` micro-USD to spend, at `u = avg_spend /
/// avg_taken` per opportunity taken and `avg_opportunities` expected. With nothing
/// learnt yet (no opportunity taken, or none of them spent) the campaign bids on every
/// opportunity: there is nothing to hold back.
pub fn next_rate(need: f64, avg_spend: f64, avg_taken: f64, avg_opportunities: f64, min_rate: f64) -> f64 {
    if need <= 0.0 {
        return min_rate;
    }
    if avg_taken <= 0.0 || avg_spend <= 0.0 || avg_opportunities <= 0.0 {
        return 1.0;
    }
    let at_full_rate = avg_spend / avg_taken * avg_opportunities;
    (need / at_full_rate).clamp(min_rate, 1.0)
}

pub fn micros(usd: f64) -> u64 {
    (usd.max(0.0) * 1e6).round() as u64
}

#[cfg(test)]
mod tests;
