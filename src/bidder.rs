//! The bid path without the socket: body in, answer out.
//!
//! [`Bidder::bid`] runs the stages in order (parse, validate, select, features, score,
//! price, respond), times each one, and counts the outcome. The server calls it for
//! every `POST /openrtb2/bid`; benches and tests call it directly. Serving state
//! (spec, catalog index, model info) sits behind an `ArcSwap` and is replaced whole.

use crate::catalog::{Candidate, Catalog, Selector};
use crate::config::Config;
use crate::currency::{Rates, BASE};
use crate::features::{Extractor, FeatureSpec};
use crate::metrics::{Metrics, Outcome, Sample, Stage};
use crate::openrtb::response::{push_query_value, BidDebug, BidExt};
use crate::openrtb::{self, Bid, BidResponse, SeatBid};
use crate::pricing::bid_cpm;
use crate::scoring::model::ModelSource;
use crate::scoring::{runtime, Batcher, BatcherConfig, Model, ModelInfo, Rows, ScoreError};
use anyhow::Context as _;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the catalog and model give the bid path; swapped whole.
#[derive(Debug)]
pub struct ServingState {
    pub extractor: Extractor,
    pub selector: Selector,
    pub model: ModelInfo,
}

/// Why a valid request got no bid. Each is one metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBidReason {
    NoCandidates,
    BelowFloor,
    Currency,
    Deadline,
    QueueFull,
    ScoringFailed,
}

impl NoBidReason {
    pub fn label(self) -> &'static str {
        match self {
            NoBidReason::NoCandidates => "no_candidates",
            NoBidReason::BelowFloor => "below_floor",
            NoBidReason::Currency => "currency",
            NoBidReason::Deadline => "deadline",
            NoBidReason::QueueFull => "queue_full",
            NoBidReason::ScoringFailed => "scoring_failed",
        }
    }
}

/// The answer to one bid request.
#[derive(Debug)]
pub enum Answer {
    /// 200 with this JSON body.
    Bid(Vec<u8>),
    /// 204.
    NoBid(NoBidReason),
    /// 400 with this reason as the body.
    BadRequest(String),
}

#[derive(Debug, Clone)]
struct Settings {
    budget: Duration,
    network_allowance: Duration,
    default_tmax: Duration,
    max_candidates_per_imp: usize,
    notice_base_url: String,
    debug_ext: bool,
    seat: String,
    rates: Rates,
}

pub struct Bidder {
    state: ArcSwap<ServingState>,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    settings: Settings,
    next_bid: AtomicU64,
}

impl std::fmt::Debug for Bidder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bidder").field("batcher", &self.batcher).finish_non_exhaustive()
    }
}

impl Bidder {
    /// Loads spec, catalog and model (one session per inference thread), warms every
    /// session with one batch, and starts the batcher. Errors name the file at fault.
    pub fn load(cfg: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Bidder> {
        let spec = FeatureSpec::load(&cfg.model.spec)?;
        let catalog = Catalog::load(&cfg.model.catalog)?;
        let extractor = Extractor::new(spec);
        let library = runtime::library_path(cfg.model.onnxruntime_library.as_deref());
        let source = ModelSource {
            path: &cfg.model.path,
            spec: extractor.spec(),
            spec_path: &cfg.model.spec,
            library: &library,
            device: cfg.scoring.device,
        };
        let mut models = Vec::with_capacity(cfg.scoring.threads);
        for _ in 0..cfg.scoring.threads {
            let mut model = Model::open(&source)?;
            warm_up(&mut model).with_context(|| format!("warming up {}", cfg.model.path.display()))?;
            models.push(model);
        }
        let info = models[0].info.clone();
        let selector = Selector::new(catalog, &extractor);
        let batcher = Batcher::start(
            models,
            BatcherConfig {
                max_batch_rows: cfg.scoring.max_batch_rows,
                max_wait: Duration::from_micros(cfg.scoring.max_wait_us),
                queue_capacity: cfg.scoring.queue_capacity,
            },
            Arc::clone(&metrics),
        );
        let notice_base_url =
            cfg.server.notice_base_url.clone().unwrap_or_else(|| format!("http://{}", cfg.server.listen));
        let settings = Settings {
            budget: Duration::from_millis(cfg.bidding.budget_ms),
            network_allowance: Duration::from_millis(cfg.bidding.network_allowance_ms),
            default_tmax: Duration::from_millis(cfg.bidding.default_tmax_ms),
            max_candidates_per_imp: cfg.bidding.max_candidates_per_imp,
            notice_base_url: notice_base_url.trim_end_matches('/').to_string(),
            debug_ext: cfg.server.debug_ext,
            seat: cfg.server.seat.clone(),
            rates: Rates::new(&cfg.bidding.exchange_rates).map_err(|e| anyhow::anyhow!("config: {e}"))?,
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Ok(Bidder {
            state: ArcSwap::from_pointee(ServingState { extractor, selector, model: info }),
            batcher,
            metrics,
            settings,
            next_bid: AtomicU64::new(seed << 16),
        })
    }

    pub fn state(&self) -> Arc<ServingState> {
        self.state.load_full()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Answers one bid request. `body` is parsed in place. `received` is when the
    /// request arrived (its deadline counts from there); `now_unix` the auction time
    /// in Unix seconds (time-of-day features).
    pub async fn bid(&self, body: &mut [u8], received: Instant, now_unix: i64) -> Answer {
        let mut ns = [0u64; Stage::ALL.len()];
        let answer = self.run(body, received, now_unix, &mut ns).await;
        ns[Stage::Total as usize] = received.elapsed().as_nanos() as u64;
        self.metrics.sample(Sample::Request { ns });
        self.metrics.count(match &answer {
            Answer::Bid(_) => Outcome::Bid,
            Answer::NoBid(NoBidReason::Deadline | NoBidReason::QueueFull) => Outcome::Shed,
            Answer::NoBid(_) => Outcome::NoBid,
            Answer::BadRequest(_) => Outcome::Invalid,
        });
        answer
    }

    async fn run(&self, body: &mut [u8], received: Instant, now_unix: i64, ns: &mut [u64; Stage::ALL.len()]) -> Answer {
        let mut clock = Instant::now();
        let mut lap = |stage: Stage, ns: &mut [u64; Stage::ALL.len()]| {
            let now = Instant::now();
            ns[stage as usize] = (now - clock).as_nanos() as u64;
            clock = now;
        };
        let req = match openrtb::parse(body) {
            Ok(r) => r,
            Err(e) => return Answer::BadRequest(e.to_string()),
        };
        lap(Stage::Parse, ns);
        let req = match openrtb::validate(req) {
            Ok(r) => r,
            Err(e) => return Answer::BadRequest(e.to_string()),
        };
        lap(Stage::Validate, ns);

        let s = &self.settings;
        let tmax = req.tmax.map(|ms| Duration::from_millis(u64::from(ms))).unwrap_or(s.default_tmax);
        let allowed = tmax.saturating_sub(s.network_allowance).min(s.budget);
        if allowed.is_zero() {
            return Answer::NoBid(NoBidReason::Deadline);
        }
        let deadline = received + allowed;
        let Some((currency, usd_per_unit)) = s.rates.bid_currency(&req.cur) else {
            return Answer::NoBid(NoBidReason::Currency);
        };

        let state = self.state.load_full();
        let mut candidates: Vec<Candidate> = Vec::with_capacity(64);
        // Floors in USD, by imp; `None` for a currency without a rate (no bid there).
        let floors_usd: Vec<Option<f64>> = req
            .imp
            .iter()
            .map(|imp| s.rates.floor_in_usd(imp.bidfloor.unwrap_or(0.0), imp.bidfloorcur.as_deref()))
            .collect();
        for (i, imp) in req.imp.iter().enumerate().take(usize::from(u16::MAX)) {
            let Some(floor_usd) = floors_usd[i] else {
                continue;
            };
            let before = candidates.len();
            state.selector.select_imp(&req, i as u16, imp, floor_usd, &mut candidates);
            candidates.truncate(before + s.max_candidates_per_imp);
        }
        lap(Stage::Select, ns);
        if candidates.is_empty() {
            return Answer::NoBid(NoBidReason::NoCandidates);
        }

        let ex = &state.extractor;
        let (f, d) = (ex.cat_width(), ex.num_width());
        let n = candidates.len();
        let mut rows = Rows { cat: vec![0; n * f], num: vec![0.0; n * d], n };
        let rc = ex.request(&req, now_unix);
        let mut start = 0;
        for group in candidates.chunk_by(|a, b| a.imp == b.imp) {
            let ic = ex.imp(&rc, &req.imp[usize::from(group[0].imp)]);
            for (k, c) in group.iter().enumerate() {
                let r = start + k;
                ex.write_row(
                    &ic,
                    state.selector.keys(c.creative),
                    &mut rows.cat[r * f..(r + 1) * f],
                    &mut rows.num[r * d..(r + 1) * d],
                );
            }
            start += group.len();
        }
        lap(Stage::Features, ns);

        let pctr = match self.batcher.score(rows, deadline).await {
            Ok(p) => p,
            Err(ScoreError::Expired) => return Answer::NoBid(NoBidReason::Deadline),
            Err(ScoreError::QueueFull) => return Answer::NoBid(NoBidReason::QueueFull),
            Err(ScoreError::Closed | ScoreError::Inference) => return Answer::NoBid(NoBidReason::ScoringFailed),
        };
        clock = Instant::now();

        // Best priced creative per imp; candidates are grouped by imp.
        let mut bids = Vec::new();
        let mut start = 0;
        for group in candidates.chunk_by(|a, b| a.imp == b.imp) {
            let imp = &req.imp[usize::from(group[0].imp)];
            let floor = imp.bidfloor.unwrap_or(0.0);
            // Selection skipped imps whose floor currency has no rate.
            let floor_usd = floors_usd[usize::from(group[0].imp)].unwrap_or(f64::INFINITY);
            let best = group
                .iter()
                .zip(&pctr[start..start + group.len()])
                .filter_map(|(c, &p)| {
                    let campaign = state.selector.campaign_of(c.creative);
                    bid_cpm(campaign.goal_cpc, p, campaign.max_cpm, floor_usd).map(|price| (c, p, price))
                })
                .max_by(|a, b| a.2.total_cmp(&b.2));
            if let Some((c, p, price_usd)) = best {
                let mut price = price_usd / usd_per_unit;
                if imp.bidfloorcur.as_deref().unwrap_or(BASE).eq_ignore_ascii_case(currency) {
                    // Converting back and forth must not leave the bid a rounding error
                    // under a floor in the bid's own currency.
                    price = price.max(floor);
                }
                bids.push(self.make_bid(&state, imp, c.creative, p, price, now_unix, group.len()));
            }
            start += group.len();
        }
        ns[Stage::Pricing as usize] = clock.elapsed().as_nanos() as u64;
        if bids.is_empty() {
            return Answer::NoBid(NoBidReason::BelowFloor);
        }
        let response = BidResponse { id: req.id(), cur: currency, seatbid: vec![SeatBid { bid: bids, seat: &s.seat }] };
        Answer::Bid(response.to_json())
    }

    #[allow(clippy::too_many_arguments)]
    fn make_bid<'a>(
        &'a self,
        state: &'a ServingState,
        imp: &'a openrtb::Imp<'a>,
        creative: u32,
        pctr: f32,
        price: f64,
        now_unix: i64,
        candidates: usize,
    ) -> Bid<'a> {
        let cr = state.selector.creative(creative);
        let campaign = state.selector.campaign_of(creative);
        let id = format!("{:x}", self.next_bid.fetch_add(1, Ordering::Relaxed));
        let impid = imp.id.as_deref().unwrap_or_default();
        let mut nurl = String::with_capacity(self.settings.notice_base_url.len() + 96);
        nurl.push_str(&self.settings.notice_base_url);
        nurl.push_str("/win?bid=");
        nurl.push_str(&id);
        nurl.push_str("&imp=");
        push_query_value(&mut nurl, impid);
        nurl.push_str("&crid=");
        push_query_value(&mut nurl, &cr.id);
        nurl.push_str("&price=${AUCTION_PRICE}");
        let size = cr.format.size();
        Bid {
            id,
            impid,
            price,
            adm: &cr.adm,
            nurl,
            adomain: [&campaign.adomain],
            cid: &campaign.id,
            crid: &cr.id,
            cat: [&campaign.category],
            w: size.map(|s| s.0),
            h: size.map(|s| s.1),
            ext: self.settings.debug_ext.then_some(BidExt { ctrbid: BidDebug { pctr, ts: now_unix, candidates } }),
        }
    }
}

/// Runs one row through a fresh session so the first request does not pay for ORT's
/// lazy initialisation. All-zero indices are valid: index 0 is the first field's row 0.
fn warm_up(model: &mut Model) -> anyhow::Result<()> {
    let (f, d) = (model.info.cat_width, model.info.num_width);
    let mut out = Vec::new();
    for rows in [1usize, 64] {
        out.clear();
        model.score(&vec![0; rows * f], &vec![0.0; rows * d], rows, &mut out)?;
        anyhow::ensure!(
            out.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p)),
            "warm-up gave probabilities outside [0, 1]: {out:?}"
        );
    }
    Ok(())
}
