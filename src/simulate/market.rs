//! The simulator as the supply side of a live exchange (`ctrbid exchange`): the same
//! world, catalog and hidden truth as `ctrbid simulate`, but requests drawn one at a
//! time on a fixed schedule, and the truth asked about whatever creative a bidder chose.
//!
//! [`Market`] owns the traffic: [`Market::next`] draws request `seq` of `requests` at the
//! time the diurnal [`Clock`] gives progress `seq / requests` (to the millisecond) and
//! renders it with the simulator's own writer. [`Oracle`] (shared, read-only) owns the
//! world, the ads and the truth: [`Oracle::rates`] is the true click and conversion
//! probability of a creative on an imp, the very function `ctrbid simulate` draws its
//! outcomes from.
//!
//! **Same seed, same world**: every part comes from the seeded stream `ctrbid simulate`
//! uses for it (catalog, goals, world, truth, traffic), so `--seed 7` with the default
//! sizes is the world of the default catalog. The request stream itself differs from
//! `requests.jsonl` (time here advances per request, there per impression). Nothing
//! here changes what `ctrbid simulate` writes.

use super::clock::{local_time, Clock};
use super::requests::{write_request, Media, Request, Traffic};
use super::truth::{Scene, Truth};
use super::world::World;
use super::{ads, generate_ads, stream, vocab, SimConfig, STREAM_TRAFFIC, STREAM_TRUTH, STREAM_WORLD};
use crate::catalog::Catalog;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::Arc;

/// What an imp offers, in three kinds (the landscape prices them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Banner,
    Video,
    Native,
}

/// Everything about one imp the truth reads besides the creative; opaque, `Copy`, so it
/// can travel with the imp until a creative is shown on it.
#[derive(Debug, Clone, Copy)]
pub struct ImpScene(Scene);

/// One imp of an [`Offer`].
#[derive(Debug, Clone, Copy)]
pub struct OfferImp {
    /// `imp.bidfloor` as the JSON states it (USD CPM), 0 when the imp has none.
    pub floor: f64,
    pub kind: MediaKind,
    pub scene: ImpScene,
}

/// One request as sent: its JSON and the facts the exchange needs about it.
#[derive(Debug)]
pub struct Offer<'a> {
    pub seq: u64,
    /// Unix ms of the auction.
    pub ts_ms: i64,
    pub id: &'a str,
    /// The request's JSON (one line, no newline).
    pub json: &'a [u8],
    /// Publisher index (see [`Oracle::publisher_id`]).
    pub publisher: u32,
    /// User index (see [`Oracle::user_id`]).
    pub user: u32,
    pub tmax_ms: u16,
    /// `"at":1` in the JSON, else `"at":2`.
    pub first_price: bool,
    /// Imp `k` has id `k + 1` in the JSON.
    pub imps: Vec<OfferImp>,
}

/// True probabilities of one (imp, creative).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrueRates {
    pub pctr: f64,
    /// Conversion given a click.
    pub pcvr: f64,
}

/// The world, the ads and the hidden truth, read-only.
#[derive(Debug)]
pub struct Oracle {
    world: World,
    ads: ads::Ads,
    truth: Truth,
    creatives: HashMap<String, u32>,
}

impl Oracle {
    /// The catalog the bidders' catalog should be (`ctrbid simulate` writes it).
    pub fn catalog(&self) -> &Catalog {
        &self.ads.catalog
    }

    /// Index of a creative id in [`Oracle::catalog`]'s creatives.
    pub fn creative(&self, crid: &str) -> Option<u32> {
        self.creatives.get(crid).copied()
    }

    pub fn publishers(&self) -> usize {
        self.world.publishers.len()
    }

    pub fn publisher_id(&self, publisher: u32) -> &str {
        &self.world.publishers[publisher as usize].id
    }

    /// The `user.id` the requests of user `user` carry.
    pub fn user_id(&self, user: u32) -> &str {
        &self.world.users[user as usize].id
    }

    /// The true click and conversion probability of creative `creative` (an index from
    /// [`Oracle::creative`]) shown on the imp of `scene`.
    pub fn rates(&self, scene: &ImpScene, creative: u32) -> TrueRates {
        TrueRates {
            pctr: self.truth.pctr(&self.world, &self.ads, &scene.0, creative),
            pcvr: self.truth.pcvr(&self.world, &self.ads, &scene.0, creative),
        }
    }
}

/// Draws the requests of a run. See the module doc.
#[derive(Debug)]
pub struct Market {
    oracle: Arc<Oracle>,
    clock: Clock,
    rng: ChaCha8Rng,
    traffic: Traffic,
    requests: u64,
    native_requests: Vec<String>,
    adomains: Vec<String>,
    req: Request,
    json: Vec<u8>,
}

impl Market {
    /// The market of `cfg` (its `impressions` unused) for a run of `requests` requests over
    /// `cfg.days` days from `cfg.start_ts`.
    pub fn new(cfg: &SimConfig, requests: u64) -> anyhow::Result<Market> {
        cfg.validate()?;
        anyhow::ensure!(requests >= 1, "--requests must be at least 1");
        let ads = generate_ads(cfg);
        let world = World::generate(&mut stream(cfg.seed, STREAM_WORLD), cfg.publishers, cfg.users);
        let truth = Truth::generate(&mut stream(cfg.seed, STREAM_TRUTH), &world, &ads);
        let clock = Clock::new(cfg.start_ts, cfg.days, &world.zones);
        let mut rng = stream(cfg.seed, STREAM_TRAFFIC);
        let traffic = Traffic::new(&world, ads.advertisers.len(), rng.gen());
        let native_requests = vocab::NATIVE_REQUESTS.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
        let adomains = ads.advertisers.iter().map(|a| a.domain.clone()).collect();
        let creatives = ads.catalog.creatives.iter().enumerate().map(|(i, c)| (c.id.clone(), i as u32)).collect();
        Ok(Market {
            oracle: Arc::new(Oracle { world, ads, truth, creatives }),
            clock,
            rng,
            traffic,
            requests,
            native_requests,
            adomains,
            req: Request::default(),
            json: Vec::with_capacity(4096),
        })
    }

    pub fn oracle(&self) -> &Arc<Oracle> {
        &self.oracle
    }

    /// Request `seq` (calls must come with `seq` = 0, 1, 2, ...); `first_price` says for
    /// a publisher index whether its requests are first price.
    pub fn next(&mut self, seq: u64, first_price: impl FnOnce(u32) -> bool) -> Offer<'_> {
        let ts_ms = self.clock.at_ms(seq as f64 / self.requests as f64);
        let world = &self.oracle.world;
        self.traffic.fill(world, &mut self.rng, seq, ts_ms.div_euclid(1000), &mut self.req);
        self.req.first_price = first_price(self.req.publisher);
        self.json.clear();
        write_request(&self.req, world, &self.adomains, &self.native_requests, &mut self.json);
        let base = scene(world, &self.req);
        let imps = self
            .req
            .imps
            .iter()
            .map(|imp| {
                let (kind, pos) = match imp.media {
                    Media::Banner { pos, .. } => (MediaKind::Banner, Some(pos)),
                    Media::Video { .. } => (MediaKind::Video, None),
                    Media::Native { .. } => (MediaKind::Native, None),
                };
                OfferImp { floor: imp.floor(), kind, scene: ImpScene(Scene { pos, ..base }) }
            })
            .collect();
        Offer {
            seq,
            ts_ms,
            id: &self.req.id,
            json: &self.json,
            publisher: self.req.publisher,
            user: self.req.user,
            tmax_ms: self.req.tmax,
            first_price: self.req.first_price,
            imps,
        }
    }
}

/// What the truth reads about a request (the imp's position aside): its user, publisher,
/// place, device and local time.
pub(super) fn scene(world: &World, req: &Request) -> Scene {
    let user = &world.users[req.user as usize];
    let zone = &world.zones[req.zone as usize];
    let (hour, weekday) = local_time(req.ts, zone.utcoffset);
    let model = &vocab::DEVICE_MODELS[user.model as usize];
    Scene {
        user: req.user,
        publisher: req.publisher,
        country: zone.country,
        class: model.class,
        os: model.os,
        hour,
        weekday,
        pos: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SimConfig {
        SimConfig { seed: 3, publishers: 300, users: 3000, days: 1, ..SimConfig::default() }
    }

    /// The same seed draws the same requests; every one parses and validates with the
    /// bidder's own code, carries the `at` asked for, and times grow inside the day.
    #[test]
    fn requests_are_deterministic_valid_and_in_time_order() {
        let (mut a, mut b) = (Market::new(&cfg(), 200).unwrap(), Market::new(&cfg(), 200).unwrap());
        let mut prev = i64::MIN;
        for seq in 0..200 {
            let x = a.next(seq, |p| p % 2 == 0);
            let (json, ts, first, n) = (x.json.to_vec(), x.ts_ms, x.first_price, x.imps.len());
            let y = b.next(seq, |p| p % 2 == 0);
            assert_eq!((json.as_slice(), ts), (y.json, y.ts_ms));
            assert!(ts >= prev && (cfg().start_ts * 1000..(cfg().start_ts + 86_400) * 1000).contains(&ts));
            prev = ts;
            let mut body = json.clone();
            let req = crate::openrtb::validate(crate::openrtb::parse(&mut body).unwrap()).unwrap();
            assert_eq!(req.imp.len(), n);
            let at = if first { "\"at\":1" } else { "\"at\":2" };
            assert!(String::from_utf8(json).unwrap().contains(at));
        }
    }

    /// The oracle answers the truth's probabilities, each in (0, 1).
    #[test]
    fn rates_are_probabilities() {
        let mut m = Market::new(&cfg(), 10).unwrap();
        let oracle = Arc::clone(m.oracle());
        let imp = m.next(0, |_| false).imps[0];
        let cr = oracle.creative(&oracle.catalog().creatives[5].id).unwrap();
        let r = oracle.rates(&imp.scene, cr);
        assert!(r.pctr > 0.0 && r.pctr < 1.0 && r.pcvr > 0.0 && r.pcvr < 1.0, "{r:?}");
        assert_eq!(oracle.creative("no-such-creative"), None);
    }
}
