//! Bids in flight: what each bid sent and not yet settled holds, so that its outcome
//! (win, billing, loss) or its lapse gives it back.
//!
//! A bid holds its price against its campaign's budget ([`super::pacing::CampaignPace`])
//! and, where the campaign is capped, a place under the user's frequency cap
//! ([`crate::freqcap`]); a first-price bid also remembers where it was made, for the
//! shading model's feedback ([`crate::shading`]). One entry per bid, keyed by bid id,
//! in a `DashMap`: inserted on the bid path, removed by the outcome's notice or by the
//! sweep once `until` has passed.
//!
//! Invariant: an entry's `reserved` micro-USD are counted in its campaign's
//! reservations exactly as long as the entry is in the map.

use super::pacing::CampaignPace;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where a first-price bid was made and what it bid, for the shading feedback.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShadingContext {
    pub context: u64,
    pub parent: u64,
    /// The floor the landscape is measured from, USD CPM.
    pub floor_ref: f64,
    /// The bid, USD CPM.
    pub bid: f64,
}

/// A frequency-capped thing the bid holds a place under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapHold {
    pub user: u64,
    pub item: u32,
}

/// One bid in flight.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub pace: Arc<CampaignPace>,
    /// Held against the budget, micro-USD: the bid's price, then the win's clearing price.
    pub reserved: u64,
    /// Unix second (auction clock) after which the hold lapses.
    pub until: i64,
    /// At most a campaign cap and a creative cap.
    pub caps: arrayvec::ArrayVec<CapHold, 2>,
    pub shading: Option<ShadingContext>,
    /// A win notice came (the impression is counted under the caps).
    pub won: bool,
}

/// The bids in flight.
#[derive(Debug, Default)]
pub struct Bids {
    map: DashMap<u64, InFlight>,
}

/// An entry as the state snapshot stores it (campaign by id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedBid {
    pub bid: u64,
    pub campaign: String,
    pub reserved: u64,
    pub until: i64,
    #[serde(default)]
    pub caps: Vec<CapHold>,
    #[serde(default)]
    pub shading: Option<ShadingContext>,
    #[serde(default)]
    pub won: bool,
}

impl Bids {
    pub fn insert(&self, bid: u64, entry: InFlight) {
        if let Some(old) = self.map.insert(bid, entry) {
            // Bid ids are unique per process; a clash (after a restore) gives back the old hold.
            old.pace.release(old.reserved);
        }
    }

    /// Applies `f` to the bid's entry, if it is in flight.
    pub fn update<R>(&self, bid: u64, f: impl FnOnce(&mut InFlight) -> R) -> Option<R> {
        self.map.get_mut(&bid).map(|mut e| f(&mut e))
    }

    /// Takes the bid out and gives back its budget hold.
    pub fn settle(&self, bid: u64) -> Option<InFlight> {
        let (_, entry) = self.map.remove(&bid)?;
        entry.pace.release(entry.reserved);
        Some(entry)
    }

    /// Takes out every bid whose hold lapsed before `now` and gives back their budget
    /// holds; returns them (their cap places lapse by themselves).
    pub fn sweep(&self, now: i64) -> usize {
        let mut lapsed = 0;
        self.map.retain(|_, e| {
            let keep = e.until >= now;
            if !keep {
                e.pace.release(e.reserved);
                lapsed += 1;
            }
            keep
        });
        lapsed
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn save(&self) -> Vec<SavedBid> {
        let mut all: Vec<SavedBid> = self
            .map
            .iter()
            .map(|e| SavedBid {
                bid: *e.key(),
                campaign: e.pace.id.to_string(),
                reserved: e.reserved,
                until: e.until,
                caps: e.caps.to_vec(),
                shading: e.shading,
                won: e.won,
            })
            .collect();
        all.sort_by_key(|b| b.bid);
        all
    }

    /// Takes back saved bids whose campaign `pace_of` still knows, reserving their holds
    /// again (a campaign gone from the catalog holds nothing). Returns how many.
    pub fn restore(&self, saved: Vec<SavedBid>, pace_of: impl Fn(&str) -> Option<Arc<CampaignPace>>) -> usize {
        let mut n = 0;
        for s in saved {
            let Some(pace) = pace_of(&s.campaign) else { continue };
            pace.force_reserve(s.reserved);
            let caps = s.caps.into_iter().take(2).collect();
            self.insert(
                s.bid,
                InFlight { pace, reserved: s.reserved, until: s.until, caps, shading: s.shading, won: s.won },
            );
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pace: &Arc<CampaignPace>, reserved: u64, until: i64) -> InFlight {
        assert!(pace.reserve(reserved));
        InFlight { pace: Arc::clone(pace), reserved, until, caps: Default::default(), shading: None, won: false }
    }

    #[test]
    fn settling_and_lapsing_give_the_hold_back_once() {
        let pace = Arc::new(CampaignPace::new("c", 1.0));
        let bids = Bids::default();
        bids.insert(1, entry(&pace, 300_000, 100));
        bids.insert(2, entry(&pace, 300_000, 200));
        bids.insert(3, entry(&pace, 300_000, 300));
        assert_eq!(pace.reserved_micros(), 900_000);
        assert!(!pace.reserve(200_000), "100_000 left");
        assert!(bids.settle(1).is_some());
        assert!(bids.settle(1).is_none(), "a second outcome gives nothing back");
        assert_eq!(pace.reserved_micros(), 600_000);
        assert_eq!(bids.sweep(200), 0, "bid 2 lapses after second 200, not at it");
        assert_eq!(bids.sweep(201), 1);
        assert_eq!((pace.reserved_micros(), bids.len()), (300_000, 1));
    }

    #[test]
    fn saved_bids_hold_again_after_a_restore() {
        let pace = Arc::new(CampaignPace::new("c", 1.0));
        let bids = Bids::default();
        bids.insert(7, entry(&pace, 250_000, 100));
        let saved = bids.save();
        let fresh = Arc::new(CampaignPace::new("c", 1.0));
        let restored = Bids::default();
        assert_eq!(restored.restore(saved.clone(), |id| (id == "c").then(|| Arc::clone(&fresh))), 1);
        assert_eq!(fresh.reserved_micros(), 250_000);
        assert_eq!(restored.save(), saved);
        assert_eq!(Bids::default().restore(saved, |_| None), 0, "a campaign gone holds nothing");
    }
}
