//! Bid requests: drawing one from the world at a given time, and writing it as the
//! OpenRTB 2.6 JSON an exchange would POST.
//!
//! A [`Request`] is a compact, reusable description (indices into the world and the
//! vocabularies); [`Traffic::fill`] overwrites one in place and [`write_request`]
//! renders it into a caller-owned buffer, so the hot loop allocates nothing per line
//! but the request id. Each request comes from one user on their one device, in their
//! time zone, on a publisher that device can reach.

use super::clock::zone_weight;
use super::sample::{cents, normal, pick};
use super::vocab::{
    ALT_SIZE, BANNER_SIZES, BCAT_POOL, COUNTRIES, DEVICE_MODELS, DEVICE_TYPES, FULLSCREEN, IMP_SLOTS, NATIVE,
    NATIVE_REQUESTS, OS, POSITIONS, SEGMENTS, TIER1, TMAX, VIDEO, VIDEO_PLAYERS, VIDEO_WINDOWS,
};
use super::world::{mix64, Inventory, World};
use rand::Rng;
use std::io::Write;

/// Shares of requests with 1, 2 and 3 imps.
const IMP_COUNTS: [f64; 3] = [0.80, 0.15, 0.05];
/// Floors: share of imps without one, median of the rest (USD CPM) and log-sd.
const NO_FLOOR: f64 = 0.15;
const FLOOR_MEDIAN: f64 = 0.5;
const FLOOR_LOG_SD: f64 = 0.8;
/// Shares of requests carrying `bcat` and `badv`.
const WITH_BCAT: f64 = 0.2;
const WITH_BADV: f64 = 0.1;

/// What an imp offers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Media {
    /// `size` and `alt` index [`BANNER_SIZES`]; `alt` is a second accepted size.
    Banner {
        size: u8,
        alt: Option<u8>,
        pos: u8,
    },
    Video {
        w: u32,
        h: u32,
        min: u32,
        max: u32,
        plcmt: u8,
    },
    /// Index into [`NATIVE_REQUESTS`].
    Native {
        variant: u8,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Imp {
    pub media: Media,
    /// Floor in US cents CPM; the JSON carries `floor_cents / 100` with two decimals.
    pub floor_cents: u32,
}

impl Imp {
    /// The floor exactly as a reader parses it back from the JSON.
    pub fn floor(&self) -> f64 {
        f64::from(self.floor_cents) / 100.0
    }
}

#[derive(Debug, Clone, Default)]
pub struct Request {
    /// 0-based line number in `requests.jsonl`.
    pub seq: u64,
    pub ts: i64,
    pub id: String,
    pub user: u32,
    pub publisher: u32,
    pub zone: u16,
    pub imps: Vec<Imp>,
    pub tmax: u16,
    /// Indices into [`BCAT_POOL`], distinct.
    pub bcat: Vec<u8>,
    /// Advertiser indices whose domains are blocked, distinct.
    pub badv: Vec<u32>,
    /// Article number in the page URL.
    pub page: u32,
    /// The auction type the request states: `"at":1` (first price) when set, else
    /// `"at":2`. [`Traffic::fill`] leaves it alone; `ctrbid simulate` never sets it
    /// (`ctrbid exchange` does, per publisher).
    pub first_price: bool,
}

/// Draws requests from a [`World`] passed to each call. Holds the scratch the draws need.
#[derive(Debug)]
pub struct Traffic {
    advertisers: usize,
    id_salt: u64,
    zone_weights: Vec<f64>,
}

impl Traffic {
    pub fn new(world: &World, advertisers: usize, id_salt: u64) -> Traffic {
        Traffic { advertisers, id_salt, zone_weights: Vec::with_capacity(world.zones.len()) }
    }

    /// Overwrites `req` with request number `seq` at time `ts`, drawn from `world` (the
    /// one this was made for), all but [`Request::first_price`].
    pub fn fill<R: Rng>(&mut self, world: &World, rng: &mut R, seq: u64, ts: i64, req: &mut Request) {
        self.zone_weights.clear();
        self.zone_weights.extend(world.zones.iter().map(|z| zone_weight(z, ts)));
        let (zone, user) = loop {
            let z = pick(rng, self.zone_weights.iter().copied());
            if let Some(u) = world.user_in(rng, z) {
                break (z, u);
            }
        };
        let u = &world.users[user as usize];
        let class = u.class();
        req.seq = seq;
        req.ts = ts;
        req.id.clear();
        let (hi, lo) = (rng.gen::<u64>(), mix64(seq ^ self.id_salt));
        write_uuid(&mut req.id, hi, lo);
        req.user = user;
        req.zone = zone as u16;
        req.publisher = world.publisher_for(rng, class);
        let floor_mult = world.publishers[req.publisher as usize].floor_mult;
        req.imps.clear();
        for _ in 0..=pick(rng, IMP_COUNTS) {
            let slot = IMP_SLOTS[class as usize][pick(rng, IMP_SLOTS[class as usize].iter().map(|s| s.1))].0;
            let (media, slot_mult) = match slot {
                VIDEO => {
                    let players = VIDEO_PLAYERS[class as usize];
                    let (w, h, plcmt, _) = players[pick(rng, players.iter().map(|p| p.3))];
                    let (min, max, _) = VIDEO_WINDOWS[pick(rng, VIDEO_WINDOWS.iter().map(|v| v.2))];
                    (Media::Video { w, h, min, max, plcmt }, 3.0)
                }
                NATIVE => (Media::Native { variant: rng.gen_range(0..NATIVE_REQUESTS.len() as u8) }, 1.3),
                size => {
                    let alt = ALT_SIZE[size].filter(|_| rng.gen_bool(0.2)).map(|a| a as u8);
                    let pos = if BANNER_SIZES[size] == (320, 480) {
                        FULLSCREEN
                    } else {
                        POSITIONS[pick(rng, POSITIONS.iter().map(|p| p.1))].0
                    };
                    let mult = match BANNER_SIZES[size] {
                        (320, 50) => 0.6,
                        (320, 480) => 1.5,
                        _ => 1.0,
                    };
                    (Media::Banner { size: size as u8, alt, pos }, mult)
                }
            };
            let floor_cents = if rng.gen_bool(NO_FLOOR) {
                0
            } else {
                let usd = FLOOR_MEDIAN * normal(rng, FLOOR_LOG_SD).exp() * slot_mult * floor_mult;
                ((cents(usd) * 100.0).round() as u32).max(1)
            };
            req.imps.push(Imp { media, floor_cents });
        }
        req.tmax = TMAX[rng.gen_range(0..TMAX.len())];
        req.bcat.clear();
        if rng.gen_bool(WITH_BCAT) {
            for _ in 0..rng.gen_range(1..=3) {
                let b = rng.gen_range(0..BCAT_POOL.len()) as u8;
                if !req.bcat.contains(&b) {
                    req.bcat.push(b);
                }
            }
        }
        req.badv.clear();
        if self.advertisers > 0 && rng.gen_bool(WITH_BADV) {
            for _ in 0..rng.gen_range(1..=2) {
                let a = rng.gen_range(0..self.advertisers) as u32;
                if !req.badv.contains(&a) {
                    req.badv.push(a);
                }
            }
        }
        req.page = rng.gen_range(1..1_000_000);
    }
}

/// A UUID-shaped id whose low 64 bits are unique per request (see [`mix64`]).
fn write_uuid(out: &mut String, hi: u64, lo: u64) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xfff,
        (lo >> 48) & 0x3fff | 0x8000,
        lo & 0xffff_ffff_ffff
    );
}

/// Renders `req` as one line of JSON (no trailing newline) onto `out`.
/// `native_requests` holds [`NATIVE_REQUESTS`] already encoded as JSON strings.
/// Every other string is written unescaped: each comes from the vocabularies or from
/// generated ids, none holds a quote, a backslash or a control character (the tests
/// parse every line back).
pub fn write_request<S: AsRef<str>>(
    req: &Request,
    world: &World,
    adomains: &[S],
    native_requests: &[String],
    out: &mut Vec<u8>,
) {
    let user = &world.users[req.user as usize];
    let publ = &world.publishers[req.publisher as usize];
    let zone = &world.zones[req.zone as usize];
    let model = &DEVICE_MODELS[user.model as usize];
    // Writing into a Vec<u8> cannot fail.
    let _ = write!(out, r#"{{"id":"{}","imp":["#, req.id);
    for (i, imp) in req.imps.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(
            out,
            r#"{{"id":"{}","tagid":"{}-{}","bidfloor":{}.{:02},"bidfloorcur":"USD","secure":1,"#,
            i + 1,
            publ.id,
            i + 1,
            imp.floor_cents / 100,
            imp.floor_cents % 100
        );
        match imp.media {
            Media::Banner { size, alt, pos } => {
                let (w, h) = BANNER_SIZES[size as usize];
                let _ = write!(out, r#""banner":{{"w":{w},"h":{h},"format":[{{"w":{w},"h":{h}}}"#);
                if let Some(a) = alt {
                    let (aw, ah) = BANNER_SIZES[a as usize];
                    let _ = write!(out, r#",{{"w":{aw},"h":{ah}}}"#);
                }
                let _ = write!(out, r#"],"pos":{pos}}}}}"#);
            }
            Media::Video { w, h, min, max, plcmt } => {
                let _ = write!(
                    out,
                    r#""video":{{"mimes":["video/mp4"],"minduration":{min},"maxduration":{max},"protocols":[2,3,5,6,7,8],"w":{w},"h":{h},"plcmt":{plcmt}}}}}"#
                );
            }
            Media::Native { variant } => {
                let _ = write!(out, r#""native":{{"request":{},"ver":"1.2"}}}}"#, native_requests[variant as usize]);
            }
        }
    }
    out.extend_from_slice(b"],");
    match publ.kind {
        Inventory::Site => {
            let _ = write!(
                out,
                r#""site":{{"id":"{}","domain":"{}","page":"https://{}/article/{}","cat":"#,
                publ.inventory_id, publ.domain, publ.domain, req.page
            );
        }
        Inventory::App | Inventory::CtvApp => {
            let _ = write!(out, r#""app":{{"id":"{}","bundle":"{}","cat":"#, publ.inventory_id, publ.domain);
        }
    }
    let tier1 = TIER1[publ.content as usize];
    let _ = match publ.subcat {
        Some(m) => write!(out, r#"["{tier1}","{tier1}-{m}"]"#),
        None => write!(out, r#"["{tier1}"]"#),
    };
    let _ = write!(out, r#","publisher":{{"id":"{}"}}}},"#, publ.id);
    let [a, b, c] = user.ip;
    let _ = write!(
        out,
        r#""device":{{"ua":"{}","ip":"{a}.{b}.{c}.0","devicetype":{},"os":"{}","osv":"{}","geo":{{"country":"{}","utcoffset":{}}},"language":"{}"}},"#,
        model.ua,
        DEVICE_TYPES[model.class as usize].0,
        OS[model.os as usize],
        model.osv,
        COUNTRIES[zone.country as usize].code,
        zone.utcoffset,
        user.language
    );
    let _ = write!(out, r#""user":{{"id":"{}""#, user.id);
    if user.has_data {
        let [s1, s2] = user.interests;
        let _ = write!(
            out,
            r#","data":[{{"id":"ctrbid-sim","segment":[{{"id":"{}"}},{{"id":"{}"}}]}}]"#,
            SEGMENTS[s1 as usize], SEGMENTS[s2 as usize]
        );
    }
    let at = if req.first_price { 1 } else { 2 };
    let _ = write!(out, r#"}},"tmax":{},"cur":["USD"],"at":{at}"#, req.tmax);
    if !req.bcat.is_empty() {
        out.extend_from_slice(br#","bcat":["#);
        for (i, &b) in req.bcat.iter().enumerate() {
            let _ = write!(out, r#"{}"{}""#, if i > 0 { "," } else { "" }, BCAT_POOL[b as usize]);
        }
        out.push(b']');
    }
    if !req.badv.is_empty() {
        out.extend_from_slice(br#","badv":["#);
        for (i, &a) in req.badv.iter().enumerate() {
            let _ = write!(out, r#"{}"{}""#, if i > 0 { "," } else { "" }, adomains[a as usize].as_ref());
        }
        out.push(b']');
    }
    out.push(b'}');
}
