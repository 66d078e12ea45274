//! Campaign economics: budget pacing, frequency caps and first-price bid shading, and
//! the bids in flight that tie them to their outcomes.
//!
//! On the bid path, selection asks each campaign's [`Gate`] whether it may take part
//! (budget left after spend and bids in flight, the pacing rate's draw, the user's
//! frequency caps); pricing then holds the bid's price against the budget
//! ([`Economics::hold`]) and, for first price, asks the shading model for the price.
//! On the notice path ([`Economics::on_notice`]) a win, billing or loss settles what
//! the bid held and feeds the shading model. A tick sweeps lapsed bids; the pacing
//! controller steps on the auction clock from the bid path ([`Economics::control`]).
//!
//! State that must survive a restart (pacing profiles and controllers, bids in flight
//! and their holds, frequency-cap counts, the learnt landscapes) is saved to
//! `pacing.state_file` and read back at start ([`save`]); today's spend comes back from
//! the event log as before.

mod caps;
pub mod config;
mod inflight;
pub mod pacing;
pub mod plan;
pub mod save;
mod shade;

pub use config::PacingConfig;
pub use inflight::{Bids, InFlight, SavedBid};
pub use pacing::CampaignPace;
pub use save::SavedState;
pub use shade::{FirstPrice, Pricer};

use crate::catalog::{Admit, Catalog};
use crate::freqcap::{CapShare, CapStore, UserView};
use crate::notice::{Checked, Kind};
use caps::CapTable;
use dashmap::DashMap;
use inflight::CapHold;
use pacing::{micros, Controller, PacingSettings};
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One request in [`OPPORTUNITY_SAMPLE`] counts its opportunities, each as that many:
/// the counters are shared by every worker, and sampling keeps their cache lines quiet.
pub const OPPORTUNITY_SAMPLE: u64 = 8;

/// The economics of every campaign the bidder has served since start.
#[derive(Debug)]
pub struct Economics {
    config: PacingConfig,
    controller: Controller,
    /// Every campaign's pace by id; a catalog reload keeps the ones it still has.
    paces: DashMap<Box<str>, Arc<CampaignPace>>,
    bids: Bids,
    pricer: Pricer,
    caps: CapStore,
    caps_enabled: bool,
    /// Requests that met a capped campaign's creative but carried no stable user id.
    requests_without_user: std::sync::atomic::AtomicU64,
    /// Opportunities (imp, creative) a frequency cap refused.
    capped: std::sync::atomic::AtomicU64,
    /// Win and loss notices whose bid was no longer in flight (its hold had lapsed):
    /// the shading feedback they carried is lost; a win still counts under its caps
    /// from the user key in its URL.
    late_outcomes: std::sync::atomic::AtomicU64,
    /// A fleet instance: each campaign bids within the lease the fleet grants it
    /// ([`crate::fleet::budget`]), and today's spend comes from the fleet.
    leased: bool,
    /// This instance's share of every cap's places ([`CapShare`], packed): all of them
    /// alone, a fleet's division in a fleet ([`Economics::set_cap_share`]).
    cap_share: std::sync::atomic::AtomicU32,
}

/// The paces of one catalog's campaigns, in catalog order: built with the selector,
/// swapped with it.
#[derive(Debug, Default)]
pub struct Accounts {
    pub paces: Vec<Arc<CampaignPace>>,
    caps: CapTable,
}

/// What an accepted win, billing or loss notice tells the economics of the bid's
/// campaign: the part of [`Checked`] they read, with prices in USD. In a fleet it
/// travels (as JSON) from the instance that accepted the notice to the one that made
/// the bid, which holds its reservation ([`crate::fleet::budget`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    #[serde(with = "kind_label")]
    pub kind: Kind,
    pub bid: u64,
    pub campaign: String,
    pub creative: String,
    /// Win, billing: the clearing price, USD CPM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_usd: Option<f64>,
    /// Billing: what it added to the spend, micro-USD.
    #[serde(default)]
    pub charged_micros: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_reason: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_to_win_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u64>,
    #[serde(default)]
    pub first_of_impression: bool,
    #[serde(default)]
    pub test: bool,
}

impl Outcome {
    /// The outcome of a checked notice; `usd_per_unit` converts its prices (the bid's
    /// currency) to USD; `charged_usd` is what billing added to the spend.
    pub fn of(c: &Checked, charged_usd: f64, usd_per_unit: Option<f64>) -> Outcome {
        let usd = |p: Option<f64>| p.zip(usd_per_unit).map(|(p, r)| p * r);
        Outcome {
            kind: c.kind,
            bid: c.bid,
            campaign: c.campaign.clone(),
            creative: c.creative.clone(),
            price_usd: usd(c.price),
            charged_micros: micros(charged_usd),
            loss_reason: c.loss_reason,
            min_to_win_usd: usd(c.min_to_win),
            user: c.user,
            first_of_impression: c.first_of_impression,
            test: c.test,
        }
    }
}

mod kind_label {
    use crate::notice::Kind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(k: &Kind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(k.label())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        let label = <&str>::deserialize(d)?;
        Kind::ALL
            .into_iter()
            .find(|k| k.label() == label)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown notice kind {label:?}")))
    }
}

/// A bid [`Economics::hold`] let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The user's cap key when the bid holds places under frequency caps: its notice
    /// URLs carry it, so that a win arriving after the hold lapsed still counts.
    pub capped_user: Option<u64>,
}

/// One request's say over each campaign selection finds (see [`Admit`]).
///
/// It holds a copy of the user's frequency-cap entry (no lock), so a bid's hold
/// ([`Economics::hold`]) checks the cap again under the entry's lock.
pub struct Gate<'a> {
    paces: &'a [Arc<CampaignPace>],
    seed: u64,
    throttle: bool,
    count: bool,
    /// The request's user, when caps apply to it.
    user: Option<u64>,
    caps: Option<(&'a CapTable, UserView, &'a std::sync::atomic::AtomicU64)>,
    /// This instance's share of the caps' places, read once per request.
    share: CapShare,
    now: i64,
}

impl Gate<'_> {
    /// The request's user key, for [`Economics::hold`].
    pub fn user(&self) -> Option<u64> {
        self.user
    }
}

impl Admit for Gate<'_> {
    fn admits(&self, campaign: u32, creative: u32) -> bool {
        let Some(pace) = self.paces.get(campaign as usize) else { return true };
        if self.count {
            pace.count_opportunities(OPPORTUNITY_SAMPLE);
        }
        if pace.left_micros() == 0 {
            pace.mark_starved();
            return false;
        }
        if self.throttle && !pace.takes(draw(self.seed, campaign)) {
            pace.throttled.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if let (Some((table, view, capped)), Some(user)) = (&self.caps, self.user) {
            let allows = |(item, cap)| view.allows(item, self.share.cap(user, item, cap), self.now);
            if !table.of_candidate(campaign, creative).all(allows) {
                capped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        true
    }
}

impl Economics {
    pub fn new(cfg: &crate::config::Config) -> Economics {
        let config = &cfg.pacing;
        let settings = PacingSettings {
            enabled: config.enabled,
            step_s: config.step_s,
            catch_up_s: config.catch_up_s,
            smoothing_s: config.smoothing_s,
            min_rate: config.min_rate,
            learning: config.learning(),
        };
        Economics {
            config: config.clone(),
            controller: Controller::new(settings),
            paces: DashMap::new(),
            bids: Bids::default(),
            pricer: Pricer::new(&cfg.shading, cfg.bidding.first_price_shading),
            caps: CapStore::new(cfg.frequency_caps.max_users),
            caps_enabled: cfg.frequency_caps.enabled,
            requests_without_user: Default::default(),
            capped: Default::default(),
            late_outcomes: Default::default(),
            leased: cfg.fleet.backend == crate::fleet::Backend::Redis,
            cap_share: std::sync::atomic::AtomicU32::new(match cfg.fleet.backend {
                crate::fleet::Backend::Redis => CapShare::NONE.pack(),
                crate::fleet::Backend::Memory => CapShare::ALONE.pack(),
            }),
        }
    }

    /// The accounts of a (newly loaded) catalog: each campaign keeps its pace by id,
    /// with the catalog's budget; a new one starts from `spend_today` (USD), or in a
    /// fleet from nothing, with no lease, until the fleet's first grant says what this
    /// instance spent today (the event log holds the bills it received, which in a
    /// fleet are not those of its own bids).
    pub fn attach(&self, catalog: &Catalog, spend_today: impl Fn(&str) -> f64, now: Option<i64>) -> Accounts {
        let paces = catalog
            .campaigns
            .iter()
            .map(|c| {
                let pace = self
                    .paces
                    .entry(c.id.as_str().into())
                    .or_insert_with(|| {
                        if self.leased {
                            let pace = CampaignPace::new(&c.id, c.daily_budget).leased();
                            pace.restore_spent(0, now);
                            return Arc::new(pace);
                        }
                        let pace = CampaignPace::new(&c.id, c.daily_budget);
                        pace.restore_spent(micros(spend_today(&c.id)), now);
                        Arc::new(pace)
                    })
                    .clone();
                pace.set_budget(c.daily_budget);
                pace
            })
            .collect();
        Accounts { paces, caps: CapTable::of(catalog) }
    }

    /// The gate for one request at `now` (Unix s).
    pub fn gate<'a>(&'a self, accounts: &'a Accounts, req: &crate::openrtb::BidRequest<'_>, now: i64) -> Gate<'a> {
        let seed = next_seed();
        let mut gate = Gate {
            paces: &accounts.paces,
            seed,
            throttle: self.config.enabled,
            count: seed.is_multiple_of(OPPORTUNITY_SAMPLE),
            user: None,
            caps: None,
            share: CapShare::ALONE,
            now,
        };
        if self.caps_enabled && accounts.caps.any {
            let user = req.user.as_ref();
            gate.user = crate::freqcap::user_key(
                user.and_then(|u| u.id.as_deref()),
                user.and_then(|u| u.buyeruid.as_deref()),
                req.device.as_ref().and_then(|d| d.ifa.as_deref()),
            );
            match gate.user {
                Some(key) => {
                    gate.caps = Some((&accounts.caps, self.caps.user(key), &self.capped));
                    gate.share = self.cap_share();
                }
                None => {
                    self.requests_without_user.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        gate
    }

    /// Runs the pacing controller's step when the auction clock (`now`, Unix s) has
    /// entered a new one; once per step, by whichever request sees it first.
    pub fn control(&self, accounts: &Accounts, now: i64) {
        if self.controller.due(now) {
            self.controller.step(&accounts.paces, now);
        }
    }

    /// The first-price bid for a candidate worth `value` USD CPM (see [`Pricer`]).
    pub fn first_price(&self, publisher: Option<&str>, format: &str, value: f64, floor: f64) -> FirstPrice {
        self.pricer.first_price(publisher, format, value, floor)
    }

    pub fn pricer(&self) -> &Pricer {
        &self.pricer
    }

    /// Holds a bid of `price_usd` CPM for campaign `campaign` (catalog index) against
    /// its budget until its outcome, or `pacing.in_flight_s`; `None` (nothing held, no
    /// bid) when spend plus bids in flight could not pay it, or the user's last place
    /// under a cap went to another bid since selection. A first-price bid's `shading`
    /// context waits with it for the outcome. Test auctions hold nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn hold(
        &self,
        accounts: &Accounts,
        campaign: u32,
        bid: u64,
        price_usd: f64,
        now: i64,
        test: bool,
        shading: Option<inflight::ShadingContext>,
        (creative, user): (u32, Option<u64>),
    ) -> Option<Held> {
        let unheld = Held { capped_user: None };
        let Some(pace) = accounts.paces.get(campaign as usize) else { return Some(unheld) };
        if test {
            return Some(unheld);
        }
        let amount = per_impression_micros(price_usd);
        if !pace.reserve(amount) {
            return None;
        }
        let until = now + self.config.in_flight_s;
        // A place under each cap; none left (another bid to this user took the last
        // since selection) gives the money back: no bid.
        let mut caps = arrayvec::ArrayVec::<CapHold, 2>::new();
        if let (Some(user), true) = (user, self.caps_enabled) {
            let share = self.cap_share();
            for (item, cap) in accounts.caps.of_candidate(campaign, creative) {
                if !self.caps.reserve(user, item, share.cap(user, item, cap), bid, until, now) {
                    for h in &caps {
                        self.caps.lost(h.user, h.item, bid);
                    }
                    pace.release(amount);
                    self.capped.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                caps.push(CapHold { user, item });
            }
        }
        let held = Held { capped_user: caps.first().map(|h| h.user) };
        let entry = InFlight { pace: Arc::clone(pace), reserved: amount, until, caps, shading, won: false };
        self.bids.insert(bid, entry);
        Some(held)
    }

    /// An accepted notice at `now` (Unix s), read as an [`Outcome`] (here, or by the
    /// instance that made the bid when another accepted it: [`crate::fleet`]);
    /// `accounts` are the serving catalog's (what a late impression counts under).
    pub fn on_notice(&self, accounts: &Accounts, o: &Outcome, now: i64) {
        match o.kind {
            Kind::Bill => {
                if o.charged_micros > 0 {
                    if let Some(pace) = self.paces.get(o.campaign.as_str()) {
                        pace.bill(o.charged_micros, now);
                    }
                }
                // A bill without a win notice before it is the impression.
                match self.bids.settle(o.bid) {
                    Some(e) if !e.won => self.won(o.bid, &e, now),
                    Some(_) => {}
                    None => self.won_late(accounts, o, now),
                }
            }
            Kind::Win => {
                let keep = now + self.config.in_flight_s;
                let found = self.bids.update(o.bid, |e| {
                    // What the win will bill is known now: hold that, until the bill.
                    if let Some(price) = o.price_usd {
                        let cleared = per_impression_micros(price);
                        if cleared < e.reserved {
                            e.pace.release(e.reserved - cleared);
                            e.reserved = cleared;
                        }
                    }
                    if !e.won {
                        self.won(o.bid, e, now);
                    }
                    e.won = true;
                    e.until = e.until.max(keep);
                });
                if found.is_none() && o.first_of_impression && !o.test {
                    self.late_outcomes.fetch_add(1, Ordering::Relaxed);
                    self.won_late(accounts, o, now);
                }
            }
            Kind::Loss => {
                let settled = self.bids.settle(o.bid);
                if settled.is_none() && !o.test {
                    self.late_outcomes.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(e) = settled {
                    for h in &e.caps {
                        self.caps.lost(h.user, h.item, o.bid);
                    }
                    if let Some(shading) = &e.shading {
                        self.pricer.lost(shading, o.loss_reason, o.min_to_win_usd);
                    }
                }
            }
            Kind::Click | Kind::Conv => {}
        }
    }

    /// The bid won (a win notice, or a bill that came without one): the impression
    /// counts under its caps, and the shading model learns it was enough.
    fn won(&self, bid: u64, e: &InFlight, now: i64) {
        for h in &e.caps {
            self.caps.won(h.user, h.item, bid, now);
        }
        if let Some(s) = &e.shading {
            self.pricer.won(s);
        }
    }

    /// A win or bill for a bid no longer in flight (its hold lapsed first): when it is
    /// the impression's first word and its URL carries the user's cap key, the
    /// impression counts under the caps its campaign and creative have now. What the
    /// shading model would have learnt from it is lost.
    fn won_late(&self, accounts: &Accounts, o: &Outcome, now: i64) {
        let Some(user) = o.user.filter(|_| o.first_of_impression && !o.test) else { return };
        for item in accounts.caps.items_of_ids(&o.campaign, &o.creative) {
            self.caps.won(user, item, o.bid, now);
        }
    }

    /// Housekeeping at `now` (Unix s): bids whose hold lapsed give it back (their cap
    /// places lapse by themselves), unless `keep_holds` (a fleet instance while the
    /// outcomes of its bids may be waiting elsewhere), and cap counts no window can
    /// see are dropped.
    pub fn tick(&self, accounts: &Accounts, now: i64, keep_holds: bool) {
        if !keep_holds {
            self.bids.sweep(now);
        }
        self.caps.sweep(now, accounts.caps.max_window_s);
    }

    /// This instance's share of every cap's places.
    pub fn cap_share(&self) -> CapShare {
        CapShare::unpack(self.cap_share.load(Ordering::Relaxed))
    }

    /// Sets this instance's share of the caps' places (a fleet's members changed, or
    /// became known); bids held under the old share keep their places.
    pub fn set_cap_share(&self, share: CapShare) {
        self.cap_share.store(share.pack(), Ordering::Relaxed);
    }

    /// Whether campaigns bid within the fleet's leases.
    pub fn leased(&self) -> bool {
        self.leased
    }

    pub fn bids_in_flight(&self) -> usize {
        self.bids.len()
    }

    /// Prometheus text: per campaign of the serving catalog, its budget, spend today,
    /// bids in flight, pacing rate, and throttled and refused opportunities.
    pub fn render(&self, accounts: &Accounts, out: &mut String) {
        type Gauge = (&'static str, &'static str, &'static str, fn(&CampaignPace) -> f64);
        let gauges: [Gauge; 6] = [
            ("ctrbid_campaign_budget_usd", "gauge", "Daily budget, USD.", |p| p.budget_micros() as f64 / 1e6),
            ("ctrbid_campaign_spend_usd", "gauge", "Spend today (billed), USD.", |p| p.spent_micros() as f64 / 1e6),
            ("ctrbid_campaign_in_flight_usd", "gauge", "Held by bids in flight, USD.", |p| {
                p.reserved_micros() as f64 / 1e6
            }),
            ("ctrbid_campaign_pacing_rate", "gauge", "Share of opportunities taken (pacing).", CampaignPace::rate),
            (
                "ctrbid_campaign_throttled_total",
                "counter",
                "Opportunities (imp, creative) the pacing rate skipped.",
                |p| p.throttled.load(Ordering::Relaxed) as f64,
            ),
            (
                "ctrbid_campaign_budget_refused_total",
                "counter",
                "Bids not made: spend plus bids in flight could not pay them.",
                |p| p.refused.load(Ordering::Relaxed) as f64,
            ),
        ];
        let leases: [Gauge; 2] = [
            (
                "ctrbid_campaign_lease_usd",
                "gauge",
                "The share of the budget the fleet granted this instance today, USD.",
                |p| p.lease_micros() as f64 / 1e6,
            ),
            (
                "ctrbid_campaign_lease_refused_total",
                "counter",
                "Bids not made: the lease was used up while the budget was not.",
                |p| p.lease_refused.load(Ordering::Relaxed) as f64,
            ),
        ];
        let leased = if self.leased { &leases[..] } else { &[] };
        for (name, kind, help, value) in gauges.iter().chain(leased) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for p in &accounts.paces {
                let _ = writeln!(out, "{name}{{campaign=\"{}\"}} {}", p.id, value(p));
            }
        }
        let fc = self.caps.stats();
        let _ = writeln!(
            out,
            "# HELP ctrbid_freqcap_users Users tracked for frequency caps.\n\
             # TYPE ctrbid_freqcap_users gauge\nctrbid_freqcap_users {}\n\
             # HELP ctrbid_freqcap_reservations Places under caps held by bids in flight (as of the last sweep).\n\
             # TYPE ctrbid_freqcap_reservations gauge\nctrbid_freqcap_reservations {}\n\
             # HELP ctrbid_freqcap_bytes_per_user Memory per tracked user, estimated.\n\
             # TYPE ctrbid_freqcap_bytes_per_user gauge\nctrbid_freqcap_bytes_per_user {}\n\
             # HELP ctrbid_freqcap_capped_total Opportunities (imp, creative) a frequency cap refused.\n\
             # TYPE ctrbid_freqcap_capped_total counter\nctrbid_freqcap_capped_total {}\n\
             # HELP ctrbid_freqcap_refused_for_room_total Bids to users the cap store had no room to track.\n\
             # TYPE ctrbid_freqcap_refused_for_room_total counter\nctrbid_freqcap_refused_for_room_total {}\n\
             # HELP ctrbid_freqcap_requests_without_user_total Requests with capped candidates but no stable user id: not capped.\n\
             # TYPE ctrbid_freqcap_requests_without_user_total counter\nctrbid_freqcap_requests_without_user_total {}\n\
             # HELP ctrbid_freqcap_fleet_members Instances dividing every cap's places (1 alone; 0 while a fleet instance does not know the fleet yet).\n\
             # TYPE ctrbid_freqcap_fleet_members gauge\nctrbid_freqcap_fleet_members {}\n\
             # HELP ctrbid_freqcap_fleet_rank This instance's rank among them.\n\
             # TYPE ctrbid_freqcap_fleet_rank gauge\nctrbid_freqcap_fleet_rank {}",
            fc.users,
            fc.reservations,
            fc.bytes_per_user,
            self.capped.load(Ordering::Relaxed),
            fc.refused,
            self.requests_without_user.load(Ordering::Relaxed),
            self.cap_share().members,
            self.cap_share().rank,
        );
        let sh = self.pricer.shader().stats();
        let _ = writeln!(
            out,
            "# HELP ctrbid_shading_observations_total First-price outcomes the shading model learnt from, by kind.\n\
             # TYPE ctrbid_shading_observations_total counter\n\
             ctrbid_shading_observations_total{{kind=\"won\"}} {}\n\
             ctrbid_shading_observations_total{{kind=\"lost_exact\"}} {}\n\
             ctrbid_shading_observations_total{{kind=\"lost_censored\"}} {}\n\
             # HELP ctrbid_shading_contexts Publisher x format contexts tracked, and learnt.\n\
             # TYPE ctrbid_shading_contexts gauge\n\
             ctrbid_shading_contexts{{state=\"tracked\"}} {}\n\
             ctrbid_shading_contexts{{state=\"learnt\"}} {}",
            sh.won, sh.lost_exact, sh.lost_censored, sh.contexts, sh.learnt_contexts
        );
        let _ = writeln!(
            out,
            "# HELP ctrbid_late_outcomes_total Win and loss notices whose bid's hold had lapsed (pacing.in_flight_s).\n\
             # TYPE ctrbid_late_outcomes_total counter\nctrbid_late_outcomes_total {}",
            self.late_outcomes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ctrbid_bids_in_flight Bids sent and not yet won, lost or lapsed.\n\
             # TYPE ctrbid_bids_in_flight gauge\nctrbid_bids_in_flight {}",
            self.bids.len()
        );
    }

    /// Per campaign: budget, spend, in flight, rate, counters, and today's plan and
    /// spend by UTC hour (`/admin/status`).
    pub fn status(&self, accounts: &Accounts) -> Vec<serde_json::Value> {
        accounts
            .paces
            .iter()
            .map(|p| {
                let c = p.ctl.lock().map(|g| g.clone()).unwrap_or_default();
                let budget = p.budget_micros() as f64 / 1e6;
                let plan: Vec<f64> = c.profile.shares.iter().map(|s| round6(s * budget)).collect();
                let spend: Vec<f64> = c.spend_by_hour.iter().map(|m| *m as f64 / 1e6).collect();
                serde_json::json!({
                    "campaign": p.id,
                    "budget_usd": budget,
                    "spend_usd": p.spent_micros() as f64 / 1e6,
                    "spend_since_start_usd": p.spent_total_micros() as f64 / 1e6,
                    "in_flight_usd": p.reserved_micros() as f64 / 1e6,
                    "lease_usd": (p.lease_micros() != pacing::NO_LEASE).then(|| p.lease_micros() as f64 / 1e6),
                    "fleet_others_committed_usd": self.leased.then(|| p.fleet_view().0 as f64 / 1e6),
                    "fleet_live": self.leased.then(|| p.fleet_view().1),
                    "lease_refused": p.lease_refused.load(Ordering::Relaxed),
                    "pacing_rate": p.rate(),
                    "throttled": p.throttled.load(Ordering::Relaxed),
                    "refused": p.refused.load(Ordering::Relaxed),
                    "profile_days": c.profile.days,
                    "plan_by_hour_usd": plan,
                    "spend_by_hour_usd": spend,
                })
            })
            .collect()
    }
}

/// USD CPM to micro-USD per impression, rounded up (a hold never falls short).
fn per_impression_micros(cpm_usd: f64) -> u64 {
    (cpm_usd.max(0.0) * 1000.0).ceil() as u64
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Gives each thread its own stream of seeds.
static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    static SEED: Cell<u64> =
        Cell::new(mix(STREAMS.fetch_add(1, Ordering::Relaxed) ^ (u64::from(std::process::id()) << 32)));
}

/// A per-request seed from a per-thread sequence (splitmix64): no shared counter.
fn next_seed() -> u64 {
    SEED.with(|s| {
        let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(x);
        mix(x)
    })
}

/// A uniform `u32` per (request, campaign).
fn draw(seed: u64, campaign: u32) -> u32 {
    (mix(seed ^ u64::from(campaign).wrapping_mul(0xD6E8_FEB8_6659_FD93)) >> 32) as u32
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
