//! Frequency caps as the bid path applies them: which of a catalog's campaigns and
//! creatives are capped, and the per-request view of the user's counts
//! ([`crate::freqcap`] keeps the counts).
//!
//! A campaign's cap (`frequency_cap` in the catalog) counts the impressions of all its
//! creatives; a creative's own cap counts its impressions alone; a candidate must pass
//! both. A request without a stable user id (`user.id`, `user.buyeruid`, `device.ifa`)
//! is not capped: it is counted (`ctrbid_freqcap_requests_without_user_total`) and bids
//! as if the user were new.

use crate::catalog::Catalog;
use crate::freqcap::{self, FrequencyCap};

/// Per catalog: the capped item and cap of each campaign and creative, in catalog order.
#[derive(Debug, Default)]
pub struct CapTable {
    pub campaigns: Vec<Option<(u32, FrequencyCap)>>,
    pub creatives: Vec<Option<(u32, FrequencyCap)>>,
    /// Any cap at all: without one the bid path never looks at the store.
    pub any: bool,
    /// The longest window of any cap, seconds (how long the store keeps impressions).
    pub max_window_s: u32,
    /// Every capped item, sorted: what a notice's campaign and creative ids count under.
    capped_items: Vec<u32>,
}

impl CapTable {
    pub fn of(catalog: &Catalog) -> CapTable {
        let campaigns: Vec<_> =
            catalog.campaigns.iter().map(|c| c.frequency_cap.map(|cap| (freqcap::campaign_item(&c.id), cap))).collect();
        let creatives: Vec<_> =
            catalog.creatives.iter().map(|c| c.frequency_cap.map(|cap| (freqcap::creative_item(&c.id), cap))).collect();
        let windows = campaigns.iter().chain(&creatives).flatten().map(|(_, cap)| cap.window_s);
        let max_window_s = windows.max().unwrap_or(0);
        let mut capped_items: Vec<u32> = campaigns.iter().chain(&creatives).flatten().map(|(item, _)| *item).collect();
        capped_items.sort_unstable();
        capped_items.dedup();
        CapTable { any: max_window_s > 0, campaigns, creatives, max_window_s, capped_items }
    }

    /// The capped items an impression of (campaign id, creative id) counts under: a
    /// notice names its bid by ids, not by this catalog's indices.
    pub fn items_of_ids(&self, campaign: &str, creative: &str) -> impl Iterator<Item = u32> + '_ {
        [freqcap::campaign_item(campaign), freqcap::creative_item(creative)]
            .into_iter()
            .filter(|item| self.capped_items.binary_search(item).is_ok())
    }

    /// The caps a candidate (campaign index, creative index) is held to: at most two.
    pub fn of_candidate(&self, campaign: u32, creative: u32) -> impl Iterator<Item = (u32, FrequencyCap)> + '_ {
        let campaign = self.campaigns.get(campaign as usize).copied().flatten();
        let creative = self.creatives.get(creative as usize).copied().flatten();
        campaign.into_iter().chain(creative)
    }
}
