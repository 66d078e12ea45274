//! The demand side of the synthetic exchange: advertisers, their campaigns (prices,
//! budgets, targeting) and creatives (format and markup), written out as a
//! [`Catalog`].
//!
//! Goals: [`generate`] gives every campaign a `goal_cpc`; [`assign_goals`] then turns
//! about [`CPA_SHARE`] of them into CPA campaigns, from a stream of their own, so that
//! adding CPA changed nothing else the simulator draws (the catalog differs only in the
//! goal fields, the request and impression logs not at all: nothing downstream reads a
//! goal).
//!
//! Next to the catalog the generator keeps compact per-entity facts ([`CampaignInfo`],
//! [`CreativeInfo`]) that the eligibility index and the truth model read by index.
//! Invariant: `campaigns[i]` describes `catalog.campaigns[i]` and `creatives[j]`
//! describes `catalog.creatives[j]`; every creative's campaign index is valid.

use super::sample::{cents, log_uniform, pick, zipf_weights, Alias};
use super::vocab::{
    AD_CATEGORIES, AD_CATEGORY_WEIGHTS, BANNER_SIZES, COUNTRIES, CREATIVE_SIZE_WEIGHTS, DEVICE_MODELS, DEVICE_TYPES,
    IMP_SLOTS, NATIVE, OS, REACH_KEYS, VIDEO, VIDEO_CREATIVE_SIZES, VIDEO_DURATIONS,
};
use crate::catalog::{Campaign, Catalog, Creative, Format, NativeAssets, NativeImage, Targeting};
use rand::Rng;

/// Advertisers per campaign.
const ADVERTISERS_PER_CAMPAIGN: f64 = 0.3;
/// Share of campaigns with no targeting at all.
const UNTARGETED: f64 = 0.02;
/// Share of (otherwise targeted) campaigns that name countries; most name one. Countries
/// are picked in proportion to the square root of their traffic, so small markets get
/// relatively more campaigns.
const COUNTRY_TARGETED: f64 = 0.97;
const TWO_COUNTRIES: f64 = 0.10;
/// Share of campaigns that name operating systems.
const OS_TARGETED: f64 = 0.4;
/// Share of campaigns that pay per conversion (`goal_cpa`) rather than per click.
pub const CPA_SHARE: f64 = 0.25;
/// Conversions per click the CPA goals are set for: about the mean true pCVR over
/// clicked impressions (`summary.json` `mean_pcvr_clicked`, 0.038 for seed 7 and the
/// default sizes; see `truth`). A CPA campaign's goal is the CPC goal it drew over this,
/// so its expected value per click stays comparable to a CPC campaign's.
pub const TYPICAL_CVR: f64 = 0.038;

/// One advertiser: ids, the domain reported as `adomain`, its usual category.
#[derive(Debug, Clone)]
pub struct Advertiser {
    pub id: String,
    pub domain: String,
    pub category: u8,
}

/// Turns about [`CPA_SHARE`] of the campaigns into CPA campaigns: `goal_cpa =
/// goal_cpc / TYPICAL_CVR` (to the cent), `goal_cpc` unset. One draw per campaign, in
/// order, from `rng` (its own stream: the other parts of the catalog do not move).
pub fn assign_goals<R: Rng>(rng: &mut R, catalog: &mut Catalog) {
    for c in &mut catalog.campaigns {
        if rng.gen_bool(CPA_SHARE) {
            c.goal_cpa = cents(c.goal_cpc / TYPICAL_CVR);
            c.goal_cpc = 0.0;
        }
    }
}

/// The (country, device model) pairs a campaign's targeting accepts, one bit per
/// [`reach_key`]. Computed with [`Targeting::matches`] itself, so it cannot drift from it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach([u64; REACH_KEYS.div_ceil(64)]);

impl Reach {
    fn of(t: &Targeting) -> Reach {
        let mut bits = [0u64; REACH_KEYS.div_ceil(64)];
        for (c, country) in COUNTRIES.iter().enumerate() {
            for (m, model) in DEVICE_MODELS.iter().enumerate() {
                let devicetype = DEVICE_TYPES[model.class as usize].0;
                if t.matches(Some(country.code), Some(devicetype), Some(OS[model.os as usize])) {
                    let k = reach_key(c, m);
                    bits[k / 64] |= 1 << (k % 64);
                }
            }
        }
        Reach(bits)
    }

    pub fn contains(&self, key: usize) -> bool {
        self.0[key / 64] >> (key % 64) & 1 == 1
    }
}

/// Index of a (country, device model) pair in a [`Reach`].
pub fn reach_key(country: usize, model: usize) -> usize {
    country * DEVICE_MODELS.len() + model
}

/// What the simulator needs to know about a campaign, by index.
#[derive(Debug, Clone)]
pub struct CampaignInfo {
    pub advertiser: u32,
    /// Index into [`AD_CATEGORIES`].
    pub category: u8,
    /// Tier-1 parent of the category, as an interest index.
    pub interest: u8,
    pub reach: Reach,
    pub max_cpm: f64,
}

/// What the simulator needs to know about a creative, by index.
#[derive(Debug, Clone, Copy)]
pub struct CreativeInfo {
    pub campaign: u32,
    /// Slot index: a banner size, `VIDEO` or `NATIVE`.
    pub slot: u8,
    /// Video duration in seconds; 0 for other formats.
    pub duration: u32,
}

#[derive(Debug, Clone)]
pub struct Ads {
    pub catalog: Catalog,
    pub advertisers: Vec<Advertiser>,
    pub campaigns: Vec<CampaignInfo>,
    pub creatives: Vec<CreativeInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Banner,
    Video,
    Native,
    Mixed,
}

/// Generates `campaigns` campaigns (at least one) and `creatives` creatives (at least
/// one per campaign).
pub fn generate<R: Rng>(rng: &mut R, campaigns: usize, creatives: usize) -> Ads {
    let n_adv = ((campaigns as f64 * ADVERTISERS_PER_CAMPAIGN).round() as usize).clamp(1, campaigns);
    let advertisers: Vec<Advertiser> = (1..=n_adv)
        .map(|n| Advertiser {
            id: format!("adv-{n}"),
            domain: format!("brand{n}.example"),
            category: pick(rng, AD_CATEGORY_WEIGHTS) as u8,
        })
        .collect();
    // Every advertiser runs one campaign; the rest go to advertisers on a long tail.
    let adv_tail = Alias::new(&zipf_weights(n_adv, 0.8, 2.0));
    let mut catalog = Catalog { version: 1, campaigns: Vec::with_capacity(campaigns), creatives: Vec::new() };
    let mut infos = Vec::with_capacity(campaigns);
    let mut kinds = Vec::with_capacity(campaigns);
    for i in 0..campaigns {
        let a = if i < n_adv { i } else { adv_tail.sample(rng) };
        let adv = &advertisers[a];
        let category = if rng.gen_bool(0.85) { adv.category } else { pick(rng, AD_CATEGORY_WEIGHTS) as u8 };
        let kind = [Kind::Banner, Kind::Video, Kind::Native, Kind::Mixed][pick(rng, [0.65, 0.15, 0.12, 0.08])];
        let targeting = targeting(rng, kind);
        let max_cpm = cents(rng.gen_range(5.0..40.0));
        infos.push(CampaignInfo {
            advertiser: a as u32,
            category,
            interest: AD_CATEGORIES[category as usize].1,
            reach: Reach::of(&targeting),
            max_cpm,
        });
        kinds.push(kind);
        catalog.campaigns.push(Campaign {
            id: format!("cmp-{}", i + 1),
            advertiser: adv.id.clone(),
            adomain: adv.domain.clone(),
            category: AD_CATEGORIES[category as usize].0.to_string(),
            goal_cpc: cents(log_uniform(rng, 0.3, 3.0)),
            goal_cpa: 0.0,
            max_cpm,
            daily_budget: log_uniform(rng, 200.0, 20_000.0).round(),
            targeting,
            deals: Vec::new(),
            bundle: None,
            landing_url: None,
            frequency_cap: None,
        });
    }
    // One creative each, the rest spread unevenly (some campaigns rotate many).
    let mut counts = vec![1usize; campaigns];
    let spread = Alias::new(&(0..campaigns).map(|_| rng.gen::<f64>().powi(2) + 0.05).collect::<Vec<_>>());
    for _ in campaigns..creatives {
        counts[spread.sample(rng)] += 1;
    }
    let mut creative_infos = Vec::with_capacity(creatives);
    for (c, &n) in counts.iter().enumerate() {
        let devices = &catalog.campaigns[c].targeting.device_types;
        for k in 0..n {
            let id = format!("cr-{}", catalog.creatives.len() + 1);
            let (format, slot) = creative_format(rng, kinds[c], k, devices);
            let duration = match format {
                Format::Video { duration, .. } => duration,
                _ => 0,
            };
            let adm = markup(&id, &format, &advertisers[infos[c].advertiser as usize]);
            creative_infos.push(CreativeInfo { campaign: c as u32, slot: slot as u8, duration });
            let adv = &advertisers[infos[c].advertiser as usize];
            let (mime, protocol) = match format {
                Format::Video { .. } => (Some("video/mp4".to_string()), Some(VAST_4_0)),
                _ => (None, None),
            };
            let native = matches!(format, Format::Native).then(|| native_assets(&id, adv));
            catalog.creatives.push(Creative {
                id,
                campaign_id: catalog.campaigns[c].id.clone(),
                format,
                adm,
                attr: Vec::new(),
                banner_type: None,
                mime,
                protocol,
                native,
                frequency_cap: None,
            });
        }
    }
    Ads { catalog, advertisers, campaigns: infos, creatives: creative_infos }
}

fn targeting<R: Rng>(rng: &mut R, kind: Kind) -> Targeting {
    let mut t = Targeting::default();
    if rng.gen_bool(UNTARGETED) {
        return t;
    }
    if rng.gen_bool(COUNTRY_TARGETED) {
        let n = if rng.gen_bool(TWO_COUNTRIES) { 2 } else { 1 };
        while t.countries.len() < n {
            let c = COUNTRIES[pick(rng, COUNTRIES.iter().map(|c| c.weight.sqrt()))].code.to_string();
            if !t.countries.contains(&c) {
                t.countries.push(c);
            }
        }
    }
    // Device sets by campaign kind: (devicetype codes, weight); empty is "any".
    let device_sets: &[(&[u8], f64)] = match kind {
        Kind::Video => &[(&[], 0.40), (&[3], 0.20), (&[2], 0.10), (&[4, 5], 0.30)],
        Kind::Native => &[(&[], 0.35), (&[4, 5], 0.40), (&[4], 0.25)],
        Kind::Banner | Kind::Mixed => &[(&[], 0.30), (&[4, 5], 0.30), (&[4], 0.15), (&[2], 0.25)],
    };
    t.device_types = device_sets[pick(rng, device_sets.iter().map(|d| d.1))].0.to_vec();
    if rng.gen_bool(OS_TARGETED) {
        let os: &[&str] = match t.device_types.as_slice() {
            [2] => [&["windows"][..], &["windows", "macos"]][rng.gen_range(0..2)],
            [3] => &["roku", "tvos", "tizen"],
            _ => [&["ios"][..], &["android"], &["ios", "android"]][rng.gen_range(0..3)],
        };
        t.os = os.iter().map(|s| s.to_string()).collect();
    }
    t
}

/// The k-th creative of a campaign of this kind, and its slot index.
fn creative_format<R: Rng>(rng: &mut R, kind: Kind, k: usize, devices: &[u8]) -> (Format, usize) {
    let banner = match kind {
        Kind::Banner => true,
        Kind::Mixed => k.is_multiple_of(2),
        Kind::Video | Kind::Native => false,
    };
    if banner {
        // Only sizes some targeted device class actually sells.
        let sellable = |s: usize| {
            DEVICE_TYPES.iter().enumerate().any(|(class, (code, _))| {
                (devices.is_empty() || devices.contains(code)) && IMP_SLOTS[class].iter().any(|&(slot, _)| slot == s)
            })
        };
        let s = pick(rng, (0..BANNER_SIZES.len()).map(|s| if sellable(s) { CREATIVE_SIZE_WEIGHTS[s] } else { 0.0 }));
        let (w, h) = BANNER_SIZES[s];
        (Format::Banner { w, h }, s)
    } else if kind == Kind::Video {
        let duration = VIDEO_DURATIONS[pick(rng, VIDEO_DURATIONS.iter().map(|d| d.1))].0;
        let (w, h) = VIDEO_CREATIVE_SIZES[rng.gen_range(0..VIDEO_CREATIVE_SIZES.len())];
        (Format::Video { w, h, duration }, VIDEO)
    } else {
        (Format::Native, NATIVE)
    }
}

/// OpenRTB protocol code of the VAST 4.0 markup [`markup`] writes.
const VAST_4_0: u16 = 7;

/// A native creative's assets: what [`markup`] puts in its native response.
fn native_assets(id: &str, adv: &Advertiser) -> NativeAssets {
    NativeAssets {
        title: format!("New from {}", adv.domain),
        image: NativeImage { url: format!("https://cdn.ctrbid.example/{id}.jpg"), w: 1200, h: 627 },
        icon: None,
        sponsored: adv.domain.clone(),
        description: Some(NATIVE_DESCRIPTION.to_string()),
        cta: None,
        click_url: crate::bidder::CLICK_URL_MACRO.to_string(),
    }
}

const NATIVE_DESCRIPTION: &str = "Limited-time offer. Tap to learn more.";

/// Small, realistic ad markup for `bid.adm`, its click URL the bidder's macro: the
/// banner's link, the VAST `ClickThrough` (the user follows it) and the native `link`.
fn markup(id: &str, format: &Format, adv: &Advertiser) -> String {
    // The bidder puts each bid's signed click URL (`/click`, which redirects to the
    // campaign's landing page) where the markup names the macro.
    let click = crate::bidder::CLICK_URL_MACRO;
    match *format {
        Format::Banner { w, h } => {
            format!(r#"<a href="{click}"><img src="https://cdn.ctrbid.example/{id}.png" width="{w}" height="{h}"></a>"#)
        }
        Format::Video { w, h, duration } => format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><VAST version="4.0"><Ad id="{id}"><InLine>"#,
                r#"<AdSystem>ctrbid</AdSystem><AdTitle>{adv}</AdTitle>"#,
                r#"<Impression><![CDATA[https://ads.ctrbid.example/imp?cr={id}]]></Impression>"#,
                r#"<Creatives><Creative id="{id}"><Linear><Duration>00:00:{d:02}</Duration><MediaFiles>"#,
                r#"<MediaFile delivery="progressive" type="video/mp4" width="{w}" height="{h}">"#,
                r#"<![CDATA[https://cdn.ctrbid.example/{id}.mp4]]></MediaFile></MediaFiles>"#,
                r#"<VideoClicks><ClickThrough><![CDATA[{click}]]></ClickThrough></VideoClicks>"#,
                r#"</Linear></Creative></Creatives></InLine></Ad></VAST>"#
            ),
            id = id,
            adv = adv.domain,
            d = duration,
            w = w,
            h = h,
            click = click
        ),
        Format::Native => serde_json::json!({
            "ver": "1.2",
            "assets": [
                {"id": 1, "title": {"text": format!("New from {}", adv.domain)}},
                {"id": 2, "img": {"url": format!("https://cdn.ctrbid.example/{id}.jpg"), "w": 1200, "h": 627}},
                {"id": 3, "data": {"value": NATIVE_DESCRIPTION}},
                {"id": 4, "data": {"value": adv.domain}}
            ],
            "link": {"url": click},
            "eventtrackers": [{"event": 1, "method": 1, "url": format!("https://ads.ctrbid.example/imp?cr={id}")}]
        })
        .to_string(),
    }
}
