//! Aggregates: what the bidder has seen of each user, ad and publisher, as decayed counts
//! of impressions, clicks and conversions, for the model to read as features.
//!
//! An embedding learns a user's or a creative's own click rate slowly, from the few
//! dozen impressions it appears in; a count learns it at once. The store keeps, per
//! entity key ([`Family`]: user, campaign, creative, publisher, publisher x campaign,
//! user x ad category), three counters (impressions, clicks, conversions) at each of
//! [`HALF_LIVES_S`] and the time of the last click, updated by the bidder's own win,
//! click and conversion notices ([`Outcome`]) and read by the bid path as the numeric
//! features of [`feature`] (`agg.user.ctr.7d`, ...).
//!
//! **Parity by construction.** Training rows must see exactly what the bidder saw when it
//! bid. The store is a pure function of the sequence of [`AggEvent`]s applied to it
//! (and of its size): reads change nothing, events are applied one at a time in the
//! order of their sequence number ([`AggregateStore::apply`] hands it out), and a read
//! returns the number of events it saw ([`Snapshot::applied`]), for the bid's record to
//! keep. Replaying the logged events in sequence order through the same code, and
//! building a bid's row after its `applied` events, gives the bid's row bit for bit.
//! The bidder applies its notices as they are checked (`Bidder::count_in_aggregates`),
//! logs each with its sequence number ([`crate::events::AggStamp`]), logs each bid with
//! the number its row saw (`BidRecord::agg_applied`), and rebuilds the store from those
//! stamps at start-up ([`crate::events::restore::aggregates`]).
//!
//! - **Keys** are xxh3 hashes of the family and the entity's ids ([`EntityKeys`]); 0 is
//!   never a key (it marks an empty slot). Two entities whose 64-bit keys collide share
//!   counts: about n² / 2⁶⁵ pairs, none in practice.
//! - **Times** are Unix seconds of the auction clock, stored as `u32` (until 2106).
//! - **Decay**: a counter at half-life h, last updated at u, reads c x 2^-((t - u) / h)
//!   at t >= u. An event at t >= u decays the counters to t and adds to them; an event
//!   older than u (notices that raced) adds its decayed share without moving u.

mod feature;
pub mod replay;
mod table;

#[cfg(test)]
mod tests;

pub use feature::{AggFeature, Prior, Stat, SINCE_CLICK_CAP_S};
pub use table::{AggregateStore, Counts, Snapshot, StoreStats};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The counters' half-lives, shortest first: an hour (a session), a day, a week.
pub const HALF_LIVES_S: [u32; 3] = [3_600, 86_400, 7 * 86_400];

/// Their names in feature sources (`agg.user.ctr.1d`).
pub const HALF_LIFE_NAMES: [&str; 3] = ["1h", "1d", "7d"];

/// What an entity key is the key of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    User,
    Campaign,
    Creative,
    Publisher,
    PublisherCampaign,
    UserAdCategory,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::User,
        Family::Campaign,
        Family::Creative,
        Family::Publisher,
        Family::PublisherCampaign,
        Family::UserAdCategory,
    ];

    /// Its name in feature sources (`agg.publisher_campaign.ctr.7d`).
    pub fn name(self) -> &'static str {
        match self {
            Family::User => "user",
            Family::Campaign => "campaign",
            Family::Creative => "creative",
            Family::Publisher => "publisher",
            Family::PublisherCampaign => "publisher_campaign",
            Family::UserAdCategory => "user_ad_category",
        }
    }

    pub fn parse(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// What happened to an impression. The discriminants are its code in the event log's
/// counted records: never renumber them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Impression = 1,
    Click = 2,
    Conversion = 3,
}

impl Outcome {
    pub fn from_u8(v: u8) -> Option<Outcome> {
        [Outcome::Impression, Outcome::Click, Outcome::Conversion].into_iter().find(|o| *o as u8 == v)
    }
}

/// The xxh3 seed of entity keys: fixed, so that keys in the event log stay valid across
/// builds. Changing it orphans every logged key.
const KEY_SEED: u64 = 0x6167_6772_6567_6174; // "aggregat"

/// Hashes of the ids an impression is about; `None` where the request had none (no user
/// id, or no publisher id): those families are neither updated nor read for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EntityKeys {
    pub user: Option<u64>,
    pub publisher: Option<u64>,
    pub campaign: u64,
    pub creative: u64,
    pub ad_category: u64,
}

/// The hash of one id (a user id, a publisher id, a campaign id, ...): what
/// [`EntityKeys`] hold. Never 0.
pub fn id_hash(id: &str) -> u64 {
    nonzero(xxh3_64_with_seed(id.as_bytes(), KEY_SEED))
}

fn nonzero(h: u64) -> u64 {
    if h == 0 {
        1
    } else {
        h
    }
}

/// The key of `family`'s entity made of one or two id hashes. Never 0.
pub fn family_key(family: Family, a: u64, b: u64) -> u64 {
    let mut bytes = [0u8; 17];
    bytes[0] = family as u8;
    bytes[1..9].copy_from_slice(&a.to_le_bytes());
    bytes[9..].copy_from_slice(&b.to_le_bytes());
    nonzero(xxh3_64_with_seed(&bytes, KEY_SEED))
}

impl EntityKeys {
    /// The keys of an impression of `creative` of `campaign` (catalog ids) in the ad
    /// category whose [`id_hash`] is `category`, seen by `audience`. The bidder's
    /// notices, the rebuild from its log and `ctrbid features --sim` all make their keys
    /// here, so that they name the same entities.
    pub fn of(audience: Audience, campaign: &str, creative: &str, category: u64) -> EntityKeys {
        EntityKeys {
            user: audience.user,
            publisher: audience.publisher,
            campaign: id_hash(campaign),
            creative: id_hash(creative),
            ad_category: category,
        }
    }

    /// The key of `family` for this impression, `None` when its ids are missing.
    pub fn key(&self, family: Family) -> Option<u64> {
        Some(match family {
            Family::User => family_key(family, self.user?, 0),
            Family::Campaign => family_key(family, self.campaign, 0),
            Family::Creative => family_key(family, self.creative, 0),
            Family::Publisher => family_key(family, self.publisher?, 0),
            Family::PublisherCampaign => family_key(family, self.publisher?, self.campaign),
            Family::UserAdCategory => family_key(family, self.user?, self.ad_category),
        })
    }
}

/// Who saw an impression and where: the [`id_hash`]es of the request's personal user id
/// and of its publisher id, each `None` where the request had none. A bid's notice and
/// click URLs carry it (signed), so that its win, click and conversion count for the
/// same user and publisher whichever instance, and however much later, they reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Audience {
    pub user: Option<u64>,
    pub publisher: Option<u64>,
}

impl Audience {
    /// The audience of a request: its personal user id (`user.id`, else `buyeruid`, where
    /// it allows personal data) and its publisher id, hashed.
    pub fn of(req: &crate::openrtb::BidRequest<'_>) -> Audience {
        Audience { user: req.personal_user_id().map(id_hash), publisher: req.publisher_id().map(id_hash) }
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.publisher.is_none()
    }

    /// The URL form: `<user hex>.<publisher hex>`, an absent one empty (0 is never a
    /// key, so it needs no other mark).
    pub fn to_param(&self) -> String {
        let mut out = String::with_capacity(33);
        self.push_param(&mut out);
        out
    }

    /// Appends [`Audience::to_param`]'s form to `out` (the bid path: no allocation of its own).
    pub fn push_param(&self, out: &mut String) {
        use std::fmt::Write as _;
        if let Some(k) = self.user {
            let _ = write!(out, "{k:x}");
        }
        out.push('.');
        if let Some(k) = self.publisher {
            let _ = write!(out, "{k:x}");
        }
    }

    /// Reads [`Audience::to_param`]'s form.
    pub fn from_param(s: &str) -> Result<Audience, &'static str> {
        let (user, publisher) = s.split_once('.').ok_or("g (audience) must be <user hex>.<publisher hex>")?;
        let key = |k: &str| match k {
            "" => Ok(None),
            k => match u64::from_str_radix(k, 16) {
                Ok(0) | Err(_) => Err("g (audience): a key is not non-zero hex"),
                Ok(k) => Ok(Some(k)),
            },
        };
        Ok(Audience { user: key(user)?, publisher: key(publisher)? })
    }

    /// The two keys as a signature covers them (0 for none).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.user.unwrap_or(0).to_le_bytes());
        b[8..].copy_from_slice(&self.publisher.unwrap_or(0).to_le_bytes());
        b
    }
}

/// One outcome of one impression, at `ts_s` (Unix seconds, auction clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggEvent {
    pub ts_s: i64,
    pub outcome: Outcome,
    pub keys: EntityKeys,
}
