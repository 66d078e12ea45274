//! Which creatives may serve an imp: the candidate rules the bidder's selection also
//! implements, and an index that applies them quickly.
//!
//! A creative is eligible for an imp when all of these hold:
//! - **format**: a banner creative's `(w, h)` equals the imp banner's `(w, h)` or one of
//!   its `format[]` sizes; a video creative needs an imp `video` whose
//!   `[minduration, maxduration]` contains its duration; a native creative needs an imp
//!   `native`;
//! - **targeting**: `campaign.targeting.matches(device.geo.country, device.devicetype,
//!   device.os)`;
//! - **blocking**: the campaign category is not blocked by `bcat` (see
//!   [`category_blocked`]) and its `adomain` is not in `badv`;
//! - **floor**: `campaign.max_cpm >= imp.bidfloor`.
//!
//! The index groups creatives by slot and carries each campaign's [`Reach`] (targeting
//! evaluated once per (country, device model) with [`Targeting::matches`]), so an imp
//! costs one pass over the creatives of its sizes.
//!
//! [`Targeting::matches`]: crate::catalog::Targeting::matches

use super::ads::{reach_key, Ads, Reach};
use super::requests::{Imp, Media, Request};
use super::vocab::{AD_CATEGORIES, BCAT_POOL, NATIVE, VIDEO};
use super::world::World;

/// True when a `bcat` entry blocks a campaign category: equal, or `IABn` blocking its
/// child `IABn-m`.
pub fn category_blocked(category: &str, bcat: &str) -> bool {
    category == bcat || category.strip_prefix(bcat).is_some_and(|rest| rest.starts_with('-'))
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    creative: u32,
    advertiser: u32,
    category: u8,
    duration: u32,
    max_cpm: f64,
    reach: Reach,
}

/// Creatives by slot, with the facts the rules need.
#[derive(Debug, Clone)]
pub struct Index {
    /// `by_slot[s]` holds the creatives of slot `s` (banner sizes, then video, native).
    by_slot: Vec<Vec<Entry>>,
    /// `blocked[b][c]`: `BCAT_POOL[b]` blocks `AD_CATEGORIES[c]`.
    blocked: Vec<Vec<bool>>,
}

impl Index {
    pub fn new(ads: &Ads) -> Index {
        let mut by_slot = vec![Vec::new(); NATIVE + 1];
        for (i, cr) in ads.creatives.iter().enumerate() {
            let cmp = &ads.campaigns[cr.campaign as usize];
            by_slot[cr.slot as usize].push(Entry {
                creative: i as u32,
                advertiser: cmp.advertiser,
                category: cmp.category,
                duration: cr.duration,
                max_cpm: cmp.max_cpm,
                reach: cmp.reach,
            });
        }
        let blocked =
            BCAT_POOL.iter().map(|b| AD_CATEGORIES.iter().map(|(c, _)| category_blocked(c, b)).collect()).collect();
        Index { by_slot, blocked }
    }

    /// Replaces `out` with the indices of the creatives eligible for `imp` of `req`
    /// (each once: a creative has one size and an imp's two sizes differ).
    pub fn collect(&self, world: &World, req: &Request, imp: &Imp, out: &mut Vec<u32>) {
        out.clear();
        let user = &world.users[req.user as usize];
        let key = reach_key(world.zones[req.zone as usize].country as usize, user.model as usize);
        let floor = imp.floor();
        let ok = |e: &Entry| {
            e.reach.contains(key)
                && e.max_cpm >= floor
                && !req.bcat.iter().any(|&b| self.blocked[b as usize][e.category as usize])
                && !req.badv.contains(&e.advertiser)
        };
        match imp.media {
            Media::Banner { size, alt, .. } => {
                let main = self.by_slot[size as usize].iter();
                let second = alt.filter(|&a| a != size).map(|a| self.by_slot[a as usize].iter());
                out.extend(main.chain(second.into_iter().flatten()).filter(|e| ok(e)).map(|e| e.creative));
            }
            Media::Video { min, max, .. } => out.extend(
                self.by_slot[VIDEO].iter().filter(|e| (min..=max).contains(&e.duration) && ok(e)).map(|e| e.creative),
            ),
            Media::Native { .. } => out.extend(self.by_slot[NATIVE].iter().filter(|e| ok(e)).map(|e| e.creative)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::category_blocked;

    #[test]
    fn bcat_rules() {
        let check =
            |cat: &str, bcat: &str, expected: bool| assert_eq!(category_blocked(cat, bcat), expected, "{cat} {bcat}");
        check("IAB8", "IAB8", true);
        check("IAB8-5", "IAB8", true);
        check("IAB8-5", "IAB8-5", true);
        check("IAB8", "IAB8-5", false);
        check("IAB18", "IAB1", false);
        check("IAB1-5", "IAB1", true);
        check("IAB13-7", "IAB1", false);
    }
}
