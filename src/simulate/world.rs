//! The supply side: publishers (sites, mobile apps, CTV apps) and users (a device, a
//! place, latent interests), with the long-tailed traffic shares that make a few of each
//! carry much of the volume.
//!
//! Invariants: every user's `zone` indexes `zones`; every zone with users has a sampler;
//! each inventory kind has at least one publisher (the generator forces the first three
//! publishers to be one of each), so a request can always find a publisher.

use super::sample::{normal, permutation, pick, zipf_weights, Alias};
use super::vocab::{
    CONTENT_CATS, CONTENT_WEIGHTS, CONTENT_WORDS, COUNTRIES, CTV, DEVICE_MODELS, DEVICE_TYPES, INTERESTS,
    INTEREST_WEIGHTS, PC, PHONE, TABLET,
};
use rand::Rng;

/// Zipf–Mandelbrot exponent and offset of user activity: the busiest of 100k users sees
/// a few thousand requests in a default run, the median a handful.
const USER_ZIPF: (f64, f64) = (1.0, 20.0);
/// Publisher traffic: the top ten of 5000 carry about a third of it.
const PUBLISHER_ZIPF: (f64, f64) = (1.1, 1.0);
/// Share of publishers that are mobile apps and CTV apps (the rest are sites).
const APP_SHARE: f64 = 0.30;
const CTV_APP_SHARE: f64 = 0.05;
/// Chance a phone or tablet request comes from an app rather than a site.
const PHONE_APP: f64 = 0.4;
const TABLET_APP: f64 = 0.3;
/// Share of users the exchange has no segment data for.
const NO_DATA: f64 = 0.10;

/// A time zone of a country, with the summed activity weight of its users.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Index into [`COUNTRIES`].
    pub country: u8,
    /// Minutes east of UTC.
    pub utcoffset: i32,
    pub mass: f64,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub zone: u16,
    /// Index into [`DEVICE_MODELS`]; the user's one device.
    pub model: u8,
    /// First three IPv4 octets; the exchange truncates the last to 0.
    pub ip: [u8; 3],
    pub language: &'static str,
    /// Latent strongest and second-strongest interest (interest indices, distinct).
    pub interests: [u8; 2],
    /// Whether requests reveal `interests` as segments.
    pub has_data: bool,
}

impl User {
    /// Device class (index into [`DEVICE_TYPES`]).
    pub fn class(&self) -> u8 {
        DEVICE_MODELS[self.model as usize].class
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inventory {
    Site = 0,
    App = 1,
    CtvApp = 2,
}

#[derive(Debug, Clone)]
pub struct Publisher {
    pub id: String,
    /// `site.id` or `app.id`.
    pub inventory_id: String,
    /// Site domain or app bundle.
    pub domain: String,
    pub kind: Inventory,
    /// Content category (index into `TIER1`, below `CONTENT_CATS`): the first `cat`.
    pub content: u8,
    /// Optional tier-2 child sent as the second `cat` entry (`IABn-m`, this is `m`).
    pub subcat: Option<u8>,
    /// Multiplier on this publisher's floors.
    pub floor_mult: f64,
}

/// Indices of one group of entities and an alias table over their traffic weights.
#[derive(Debug, Clone)]
struct Group {
    members: Vec<u32>,
    table: Alias,
}

impl Group {
    fn new(members: Vec<u32>, weights: &[f64]) -> Option<Group> {
        if members.is_empty() {
            return None;
        }
        let w: Vec<f64> = members.iter().map(|&m| weights[m as usize]).collect();
        Some(Group { table: Alias::new(&w), members })
    }

    fn sample<R: Rng>(&self, rng: &mut R) -> u32 {
        self.members[self.table.sample(rng)]
    }
}

#[derive(Debug, Clone)]
pub struct World {
    pub zones: Vec<Zone>,
    pub users: Vec<User>,
    pub publishers: Vec<Publisher>,
    zone_users: Vec<Option<Group>>,
    /// Per [`Inventory`] kind.
    inventories: Vec<Group>,
}

impl World {
    /// `publishers >= 3` and `users >= 1` (checked by the config).
    pub fn generate<R: Rng>(rng: &mut R, publishers: usize, users: usize) -> World {
        let mut zones = Vec::new();
        for (c, country) in COUNTRIES.iter().enumerate() {
            for &(utcoffset, share) in country.zones {
                zones.push((Zone { country: c as u8, utcoffset, mass: 0.0 }, country.weight * share));
            }
        }
        let salt = rng.gen::<u64>();
        let ranks = permutation(rng, users);
        let user_weights: Vec<f64> = {
            let zipf = zipf_weights(users, USER_ZIPF.0, USER_ZIPF.1);
            ranks.iter().map(|&r| zipf[r as usize]).collect()
        };
        let mut user_list = Vec::with_capacity(users);
        for (i, &weight) in user_weights.iter().enumerate() {
            let z = pick(rng, zones.iter().map(|z| z.1));
            zones[z].0.mass += weight;
            let country = &COUNTRIES[zones[z].0.country as usize];
            let class = pick(rng, DEVICE_TYPES.iter().map(|d| d.1));
            let model = pick(rng, DEVICE_MODELS.iter().map(|m| if m.class as usize == class { m.weight } else { 0.0 }));
            let first = pick(rng, INTEREST_WEIGHTS);
            let second = pick(rng, (0..INTERESTS).map(|k| if k == first { 0.0 } else { INTEREST_WEIGHTS[k] }));
            user_list.push(User {
                id: format!("{:016x}", mix64(i as u64 ^ salt)),
                zone: z as u16,
                model: model as u8,
                ip: [country.ip_octets[rng.gen_range(0..country.ip_octets.len())], rng.gen(), rng.gen()],
                language: country.languages[pick(rng, country.languages.iter().map(|l| l.1))].0,
                interests: [first as u8, second as u8],
                has_data: !rng.gen_bool(NO_DATA),
            });
        }
        let zones: Vec<Zone> = zones.into_iter().map(|z| z.0).collect();
        let zone_users = (0..zones.len())
            .map(|z| {
                let members = (0..users as u32).filter(|&u| user_list[u as usize].zone as usize == z).collect();
                Group::new(members, &user_weights)
            })
            .collect();

        let mut pubs = Vec::with_capacity(publishers);
        for i in 0..publishers {
            let kind = match i {
                0 => Inventory::Site,
                1 => Inventory::App,
                2 => Inventory::CtvApp,
                _ => [Inventory::Site, Inventory::App, Inventory::CtvApp]
                    [pick(rng, [1.0 - APP_SHARE - CTV_APP_SHARE, APP_SHARE, CTV_APP_SHARE])],
            };
            let content = pick(rng, CONTENT_WEIGHTS) as u8;
            // IAB24 (uncategorised) has no children; others sometimes name one.
            let subcat = (content as usize != CONTENT_CATS - 1 && rng.gen_bool(0.5)).then(|| rng.gen_range(1..=5u8));
            let n = i + 1;
            let word = CONTENT_WORDS[content as usize];
            let (inventory_id, domain) = match kind {
                Inventory::Site => (format!("site-{n}"), format!("{word}{n}.example")),
                Inventory::App => (format!("app-{n}"), format!("com.{word}{n}.app")),
                Inventory::CtvApp => (format!("app-{n}"), format!("tv.{word}{n}.ctv")),
            };
            pubs.push(Publisher {
                id: format!("pub-{n}"),
                inventory_id,
                domain,
                kind,
                content,
                subcat,
                floor_mult: normal(rng, 0.3).exp(),
            });
        }
        let pub_weights = zipf_weights(publishers, PUBLISHER_ZIPF.0, PUBLISHER_ZIPF.1);
        let inventories = [Inventory::Site, Inventory::App, Inventory::CtvApp]
            .iter()
            .map(|&k| {
                let members = (0..publishers as u32).filter(|&p| pubs[p as usize].kind == k).collect();
                Group::new(members, &pub_weights).expect("the first three publishers cover every kind")
            })
            .collect();
        World { zones, users: user_list, publishers: pubs, zone_users, inventories }
    }

    /// A user of zone `z`, by activity. `None` only for zones without users.
    pub fn user_in<R: Rng>(&self, rng: &mut R, z: usize) -> Option<u32> {
        self.zone_users[z].as_ref().map(|g| g.sample(rng))
    }

    /// A publisher a request from this device class can come from: PCs browse sites,
    /// CTVs run CTV apps, phones and tablets do both.
    pub fn publisher_for<R: Rng>(&self, rng: &mut R, class: u8) -> u32 {
        let kind = match class {
            PC => Inventory::Site,
            CTV => Inventory::CtvApp,
            PHONE if rng.gen_bool(PHONE_APP) => Inventory::App,
            TABLET if rng.gen_bool(TABLET_APP) => Inventory::App,
            _ => Inventory::Site,
        };
        self.inventories[kind as usize].sample(rng)
    }
}

/// SplitMix64's finaliser: a bijection on `u64`, so distinct inputs give distinct ids.
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
