//! The hidden truth: the click and conversion probabilities every impression is drawn
//! from.
//!
//! The click logit is a sum of effects, each a function of one field a model can see
//! (publisher, content category, device type, OS, country, local hour and weekday,
//! banner position, slot, user, user segments, campaign, creative, ad category), of
//! whether the ad's tier-1 category matches the user's interests or the page's category,
//! or of a pair of fields the default feature spec crosses (content category x ad
//! category, device type x slot, country x campaign, hour x ad category).
//! Nothing the requests hide moves it much: the only latent input is the interests of
//! the ~10 % of users whose segments the exchange does not send. So the oracle AUC that
//! these probabilities give is an upper bound a well-specified model can come close to
//! with about a million impressions. Entity-level noise (creative, campaign, user,
//! publisher) is kept small because a model sees each entity only a few hundred times,
//! and it is what keeps the default model about 0.01 AUC under the oracle; see the
//! constants for every effect's size.
//!
//! The conversion probability (given a click) depends on the campaign, the ad category,
//! the interest match and the device class.

use super::ads::Ads;
use super::sample::normal;
use super::vocab::{AD_CATEGORIES, CONTENT_CATS, COUNTRIES, INTERESTS, OS, SLOTS};
use super::world::{Inventory, World};
use rand::Rng;

/// Intercept of the click logit: with the effects below, mean CTR is about 1.3 %.
const BASE: f64 = -4.75;
/// Standard deviations of entity effects (logit units).
const CREATIVE_SD: f64 = 0.12;
const CAMPAIGN_SD: f64 = 0.15;
const USER_SD: f64 = 0.12;
const PUBLISHER_SD: f64 = 0.10;
/// Per content category of the publisher (tier-1).
const CONTENT_SD: f64 = 0.30;
/// Per advertiser category.
const AD_CATEGORY_SD: f64 = 0.30;
/// Per strongest user interest (users keen on games click more than those into news).
const TOP_INTEREST_SD: f64 = 0.15;
/// Apps draw more (partly accidental) clicks than sites.
const APP: f64 = 0.10;
/// Ad category's tier-1 equals the user's strongest / second interest.
const INTEREST_MATCH: [f64; 2] = [0.90, 0.50];
/// Ad category's tier-1 equals the publisher's content category, and the spread of the
/// other content x ad pairs.
const CONTEXT_MATCH: f64 = 0.35;
const AFFINITY_SD: f64 = 0.08;
/// Device type x slot interaction.
const DEVICE_SLOT_SD: f64 = 0.10;
/// Share of campaigns that do better or worse in some countries, and the spread.
const COUNTRY_CAMPAIGN_SHARE: f64 = 0.2;
const COUNTRY_CAMPAIGN_SD: f64 = 0.15;
/// Largest amplitude of an ad category's own daily cycle.
const HOUR_CATEGORY_MAX: f64 = 0.12;

/// By device class: PC, CTV, phone, tablet.
const DEVICE: [f64; 4] = [-0.35, -1.00, 0.0, 0.10];
/// By OS: ios, android, windows, macos, linux, roku, tvos, tizen.
const OS_EFFECT: [f64; OS.len()] = [0.10, 0.0, -0.05, 0.05, -0.20, 0.0, 0.10, -0.10];
/// By country: USA, GBR, DEU, FRA, CAN, BRA, IND, JPN, AUS, ESP.
const COUNTRY: [f64; COUNTRIES.len()] = [0.10, 0.0, -0.20, -0.15, 0.05, 0.35, 0.45, -0.45, 0.0, 0.05];
/// By slot: 300x250, 728x90, 320x50, 300x600, 160x600, 970x250, 336x280, 320x480, video, native.
const SLOT: [f64; SLOTS] = [0.0, -0.30, -0.50, 0.20, -0.40, 0.15, 0.05, 0.70, 0.40, 0.55];
/// By weekday, Monday first.
const WEEKDAY: [f64; 7] = [-0.03, 0.0, 0.0, 0.0, 0.02, 0.06, 0.06];

/// Banner position effect (`pos` codes; video and native imps have none).
fn position(pos: Option<u8>) -> f64 {
    match pos {
        Some(1) => 0.30,
        Some(3) => -0.40,
        Some(4) => 0.05,
        Some(5) => -0.10,
        Some(7) => 0.20,
        _ => 0.0,
    }
}

/// Smooth daily curve over the local hour: an evening peak and a small midday bump.
fn hour_curve(hour: f64) -> f64 {
    use std::f64::consts::TAU;
    0.20 * (TAU * (hour - 20.5) / 24.0).cos() + 0.05 * (2.0 * TAU * (hour - 12.5) / 24.0).cos()
}

/// Conversion logit (given a click): intercept, spreads, and fixed effects.
const CVR_BASE: f64 = -3.35;
const CVR_CAMPAIGN_SD: f64 = 0.40;
const CVR_CATEGORY_SD: f64 = 0.20;
const CVR_INTEREST_MATCH: [f64; 2] = [0.40, 0.20];
const CVR_DEVICE: [f64; 4] = [0.20, -0.50, -0.10, 0.0];

/// Everything about one imp the truth reads, besides the creative.
#[derive(Debug, Clone, Copy)]
pub struct Scene {
    pub user: u32,
    pub publisher: u32,
    /// Index into `COUNTRIES`.
    pub country: u8,
    /// Device class (index into `DEVICE_TYPES`).
    pub class: u8,
    /// Index into `OS`.
    pub os: u8,
    /// Local hour, `0.0..24.0`.
    pub hour: f64,
    /// Local weekday, Monday 0.
    pub weekday: u8,
    pub pos: Option<u8>,
}

/// The drawn effect tables. Invariant: every table is as long as what it is indexed by
/// (creatives, campaigns, users, publishers, categories).
#[derive(Debug, Clone)]
pub struct Truth {
    creative: Vec<f64>,
    campaign: Vec<f64>,
    user: Vec<f64>,
    /// Content category + individual + inventory kind.
    publisher: Vec<f64>,
    ad_category: Vec<f64>,
    top_interest: Vec<f64>,
    /// `affinity[content * INTERESTS + interest]`.
    affinity: Vec<f64>,
    device_slot: Vec<[f64; SLOTS]>,
    /// `country_campaign[campaign * COUNTRIES.len() + country]`.
    country_campaign: Vec<f64>,
    /// Per interest: amplitude and peak hour of its own daily cycle.
    hour_category: Vec<(f64, f64)>,
    campaign_cvr: Vec<f64>,
    category_cvr: Vec<f64>,
}

impl Truth {
    pub fn generate<R: Rng>(rng: &mut R, world: &World, ads: &Ads) -> Truth {
        let mut draw = |n: usize, sd: f64| -> Vec<f64> { (0..n).map(|_| normal(rng, sd)).collect() };
        let creative = draw(ads.creatives.len(), CREATIVE_SD);
        let campaign = draw(ads.campaigns.len(), CAMPAIGN_SD);
        let user = draw(world.users.len(), USER_SD);
        let content = draw(CONTENT_CATS, CONTENT_SD);
        let individual = draw(world.publishers.len(), PUBLISHER_SD);
        let ad_category = draw(AD_CATEGORIES.len(), AD_CATEGORY_SD);
        let top_interest = draw(INTERESTS, TOP_INTEREST_SD);
        let mut affinity = draw(CONTENT_CATS * INTERESTS, AFFINITY_SD);
        for k in 0..INTERESTS.min(CONTENT_CATS) {
            affinity[k * INTERESTS + k] += CONTEXT_MATCH;
        }
        let device_slot = (0..4).map(|_| std::array::from_fn(|_| normal(rng, DEVICE_SLOT_SD))).collect();
        let mut country_campaign = vec![0.0; ads.campaigns.len() * COUNTRIES.len()];
        for row in country_campaign.chunks_mut(COUNTRIES.len()) {
            if rng.gen_bool(COUNTRY_CAMPAIGN_SHARE) {
                row.iter_mut().for_each(|v| *v = normal(rng, COUNTRY_CAMPAIGN_SD));
            }
        }
        let hour_category =
            (0..INTERESTS).map(|_| (rng.gen_range(0.0..HOUR_CATEGORY_MAX), rng.gen_range(0.0..24.0))).collect();
        let publisher = world
            .publishers
            .iter()
            .zip(&individual)
            .map(|(p, ind)| content[p.content as usize] + ind + if p.kind == Inventory::App { APP } else { 0.0 })
            .collect();
        let mut draw = |n: usize, sd: f64| -> Vec<f64> { (0..n).map(|_| normal(rng, sd)).collect() };
        let campaign_cvr = draw(ads.campaigns.len(), CVR_CAMPAIGN_SD);
        let category_cvr = draw(ad_category.len(), CVR_CATEGORY_SD);
        Truth {
            creative,
            campaign,
            user,
            publisher,
            ad_category,
            top_interest,
            affinity,
            device_slot,
            country_campaign,
            hour_category,
            campaign_cvr,
            category_cvr,
        }
    }

    /// Interest-match indicator weights for the user and a campaign's interest.
    fn interest_match(world: &World, user: u32, interest: u8, weights: [f64; 2]) -> f64 {
        let [first, second] = world.users[user as usize].interests;
        if interest == first {
            weights[0]
        } else if interest == second {
            weights[1]
        } else {
            0.0
        }
    }

    /// True click probability of `creative` (index) shown in `scene`.
    pub fn pctr(&self, world: &World, ads: &Ads, scene: &Scene, creative: u32) -> f64 {
        use std::f64::consts::TAU;
        let cr = &ads.creatives[creative as usize];
        let c = cr.campaign as usize;
        let cmp = &ads.campaigns[c];
        let user = &world.users[scene.user as usize];
        let content = world.publishers[scene.publisher as usize].content as usize;
        let (amp, peak) = self.hour_category[cmp.interest as usize];
        let logit = BASE
            + self.creative[creative as usize]
            + self.campaign[c]
            + self.user[scene.user as usize]
            + self.publisher[scene.publisher as usize]
            + self.ad_category[cmp.category as usize]
            + self.top_interest[user.interests[0] as usize]
            + DEVICE[scene.class as usize]
            + OS_EFFECT[scene.os as usize]
            + COUNTRY[scene.country as usize]
            + SLOT[cr.slot as usize]
            + position(scene.pos)
            + hour_curve(scene.hour)
            + WEEKDAY[scene.weekday as usize]
            + Self::interest_match(world, scene.user, cmp.interest, INTEREST_MATCH)
            + self.affinity[content * INTERESTS + cmp.interest as usize]
            + self.device_slot[scene.class as usize][cr.slot as usize]
            + self.country_campaign[c * COUNTRIES.len() + scene.country as usize]
            + amp * (TAU * (scene.hour - peak) / 24.0).cos();
        sigmoid(logit)
    }

    /// True conversion probability given a click.
    pub fn pcvr(&self, world: &World, ads: &Ads, scene: &Scene, creative: u32) -> f64 {
        let c = ads.creatives[creative as usize].campaign as usize;
        let cmp = &ads.campaigns[c];
        let logit = CVR_BASE
            + self.campaign_cvr[c]
            + self.category_cvr[cmp.category as usize]
            + Self::interest_match(world, scene.user, cmp.interest, CVR_INTEREST_MATCH)
            + CVR_DEVICE[scene.class as usize];
        sigmoid(logit)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
