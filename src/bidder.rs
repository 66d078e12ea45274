//! The bid path without the socket: body in, answer out.
//!
//! [`Bidder::bid`] runs the stages in order (parse, validate, select, features, score,
//! price, respond), times each one, and counts the outcome. The server calls it for
//! every `POST /openrtb2/bid`; benches and tests call it directly. Serving state
//! (spec, catalog index, model info) sits behind an `ArcSwap` and is replaced whole
//! (admin reloads).
//!
//! Pricing per imp: the candidate with the highest value (goal CPC x pCTR x 1000 for a
//! CPC campaign, goal CPA x pCTR x pCVR x 1000 for a CPA campaign, capped at `max_cpm`)
//! among those reaching their floor (a deal's floor for a deal candidate, else the
//! imp's) bids; second price (`at = 2`, the default) bids the
//! value, first price (`at = 1`, or a deal's own `at`) bids `first_price_shading` x
//! value but never under the floor, a fixed-price deal (`at = 3`) bids the deal floor.
//! One bid per imp at most.
//!
//! With `scoring.cache_entries > 0`, scoring goes through the score cache
//! ([`crate::scoring::cache`]): rows it holds for the serving model are not scored again.
//!
//! `server.mode = "ceiling"` stops after the policy checks with a fixed bid
//! ([`ceiling_response`]): the load test's measure of everything but bidding.
//!
//! **A CPA campaign needs a model with a conversion head.** While the serving model has
//! none, its creatives are dropped right after selection (before the per-imp candidate
//! cap, and unscored); a request left with no candidate by that alone ends as
//! [`NoBidReason::NoConversionHead`]. Start-up and every model or catalog reload log how
//! many CPA campaigns cannot bid for that reason.

use crate::aggregates::{self, AggEvent, AggregateStore, Audience, EntityKeys, Snapshot};
use crate::catalog::{Admit, Candidate, Catalog, ImpTerms, Limits, Selector};
use crate::clock::{unix_s, AuctionClock};
use crate::config::{Config, InlineScoring};
use crate::currency::{Rates, BASE};
use crate::economics::{self, Accounts, Economics};
use crate::events::{AggStamp, BidRecord, EventSink, ShadowRecord};
use crate::features::{Extractor, FeatureSpec, RequestContext};
use crate::fleet::{ledger::Claim, Fleet};
use crate::metrics::{Metrics, Outcome, Sample, Stage};
use crate::notice::{self, sign::Signer, ModelTag, NoticeSettings, Notices};
use crate::openrtb::list::List;
use crate::openrtb::response::{BidDebug, BidExt};
use crate::openrtb::{self, native, AuctionType, Bid, BidResponse, SeatBid};
use crate::pricing::{auction_price, bid_cpm, Auction, Prediction};
use crate::scoring::model::ModelSource;
use crate::scoring::{
    runtime, Batcher, BatcherConfig, CacheConfig, Model, ModelInfo, Rows, ScoreCache, ScoreError, Scores, ScoringPath,
    WorkerBusy,
};
use crate::variants::drift::{Drift, DriftConfig, Reference};
use crate::variants::judge::{self, Decision, JudgeConfig, Looks};
use crate::variants::{self, Variant, VariantBook, VariantSet};
use anyhow::Context as _;
use arc_swap::ArcSwap;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the catalog and model give the bid path; swapped whole.
#[derive(Debug)]
pub struct ServingState {
    pub extractor: Extractor,
    /// Shared, so a model reload keeps the catalog index (and its budget flags) as is.
    pub selector: Arc<Selector>,
    /// The catalog's campaigns' budgets and pacing, in catalog order (with the selector).
    pub accounts: Arc<Accounts>,
    /// The models serving, each with its share of the traffic ([`crate::variants`]).
    pub variants: Arc<VariantSet>,
}

impl ServingState {
    /// A state for building rows only (`ctrbid ort-alone`): one variant with `model`'s
    /// info and no sessions, so it cannot score.
    pub fn for_rows(extractor: Extractor, selector: Selector, model: ModelInfo) -> ServingState {
        let metrics = Metrics::start();
        let batcher = Batcher::start_inline(Vec::new(), metrics);
        let variant = Variant::incumbent(variants::DEFAULT_NAME, model, batcher, None, None, &VariantBook::default());
        ServingState {
            extractor,
            selector: Arc::new(selector),
            accounts: Arc::new(Accounts::default()),
            variants: Arc::new(VariantSet::of(variant)),
        }
    }

    /// The incumbent's model: what selection assumes of every variant (the same heads).
    pub fn model(&self) -> &ModelInfo {
        &self.variants.incumbent().model
    }

    /// CPA campaigns that cannot bid because the model has no conversion head (0 when it
    /// has one).
    pub fn unpriceable_cpa_campaigns(&self) -> usize {
        if self.model().has_pcvr() {
            return 0;
        }
        self.selector.catalog().campaigns.iter().filter(|c| c.goal().needs_pcvr()).count()
    }

    /// The candidates of every imp of `req` (`terms[i]` are imp `i`'s), grouped by imp in
    /// imp order, at most `max_per_imp` per imp (the highest-ranked: see
    /// [`Selector::select_imp`]). Without a conversion head, CPA creatives are not
    /// candidates (and take no place under the cap); `Err` when no candidate is left.
    pub fn select(
        &self,
        req: &openrtb::BidRequest<'_>,
        terms: &[ImpTerms],
        max_per_imp: usize,
        admit: &dyn Admit,
    ) -> Result<Vec<Candidate>, NoBidReason> {
        let mut candidates: Vec<Candidate> = Vec::with_capacity(64);
        // Without a conversion head, CPA campaigns cannot be valued: not candidates.
        let limits = Limits { per_imp: max_per_imp, pcvr: self.model().has_pcvr(), admit };
        let mut cpa_dropped = false;
        for (i, imp) in req.imp.iter().enumerate() {
            cpa_dropped |= self.selector.select_imp(req, i as u16, imp, &terms[i], limits, &mut candidates).cpa_dropped;
        }
        if candidates.is_empty() {
            return Err(if cpa_dropped { NoBidReason::NoConversionHead } else { NoBidReason::NoCandidates });
        }
        Ok(candidates)
    }

    /// The model's input rows for `candidates` (grouped by imp, as [`ServingState::select`]
    /// returns them): the request-level fields once, the imp-level once per imp. A spec
    /// with aggregate fields reads them as an empty store would have them (benches,
    /// `ctrbid ort-alone`); the bid path reads the bidder's ([`Self::scored_rows`]).
    pub fn feature_rows(&self, req: &openrtb::BidRequest<'_>, candidates: &[Candidate], now_unix: i64) -> Rows {
        let mut rows = self.empty_rows(candidates.len());
        self.append_rows(req, candidates, now_unix, None, &mut rows);
        rows
    }

    /// [`Self::feature_rows`] with the aggregate fields read from `store`, all rows at one
    /// point of its event sequence, and what they saw there (for the bids' records).
    pub fn scored_rows(
        &self,
        req: &openrtb::BidRequest<'_>,
        candidates: &[Candidate],
        now_unix: i64,
        store: &AggregateStore,
    ) -> (Rows, AggSeen) {
        let mut rows = self.empty_rows(candidates.len());
        if !self.extractor.reads_aggregates() {
            self.append_rows(req, candidates, now_unix, None, &mut rows);
            return (rows, AggSeen { applied: store.next_seq(), values: Vec::new() });
        }
        // The closure runs again when an event overlapped it: it starts from empty rows.
        let applied = store.read(|snap| {
            rows.cat.clear();
            rows.num.clear();
            self.append_rows(req, candidates, now_unix, Some(snap), &mut rows);
            snap.applied()
        });
        let d = self.extractor.num_width();
        let columns = self.extractor.aggregate_columns();
        let values = rows.num.chunks_exact(d).flat_map(|row| columns.iter().map(|&j| row[j])).collect();
        (rows, AggSeen { applied, values })
    }

    fn empty_rows(&self, n: usize) -> Rows {
        // Filled by appending: zeroing the buffers first cost more than the rest.
        Rows::with_capacity(n, self.extractor.cat_width(), self.extractor.num_width())
    }

    fn append_rows(
        &self,
        req: &openrtb::BidRequest<'_>,
        candidates: &[Candidate],
        now_unix: i64,
        agg: Option<&Snapshot<'_>>,
        rows: &mut Rows,
    ) {
        let ex = &self.extractor;
        let rc = ex.request(req, now_unix);
        for group in candidates.chunk_by(|a, b| a.imp == b.imp) {
            ex.append_imp_rows(
                &rc,
                &req.imp[usize::from(group[0].imp)],
                group.iter().map(|c| self.selector.keys(c.creative)),
                agg,
                &mut rows.cat,
                &mut rows.num,
            );
        }
        let (n, f, d) = (candidates.len(), ex.cat_width(), ex.num_width());
        debug_assert_eq!((rows.cat.len(), rows.num.len()), (n * f, n * d), "a row per candidate");
    }

    /// The valuation of one imp's candidates (`group`, scored from row `first` of
    /// `scores` on): the one with the highest value in USD CPM among those reaching
    /// their floor, with its prediction and value; `None` when none does.
    pub fn best_of_imp<'c>(
        &'c self,
        group: &'c [Candidate],
        scores: &'c Scores,
        first: usize,
        terms: &'c ImpTerms,
    ) -> Option<(&'c Candidate, Prediction, f64)> {
        self.valued(group, scores, first, terms).max_by(|a, b| a.2.total_cmp(&b.2))
    }

    /// The candidates of one imp that reach their floor, in candidate order, each with
    /// its prediction and value (USD CPM).
    pub fn valued<'c>(
        &'c self,
        group: &'c [Candidate],
        scores: &'c Scores,
        first: usize,
        terms: &'c ImpTerms,
    ) -> impl Iterator<Item = (&'c Candidate, Prediction, f64)> + 'c {
        // `scores` answers the model that scored the rows, which a reload may have
        // changed since selection: a CPA candidate without a pCVR simply has no value.
        group.iter().enumerate().filter_map(move |(k, c)| {
            let p = Prediction { pctr: scores.pctr(first + k), pcvr: scores.pcvr(first + k) };
            let campaign = self.selector.campaign_of(c.creative);
            bid_cpm(campaign.goal(), p, campaign.max_cpm, terms.floor_for(c.deal)).map(|value| (c, p, value))
        })
    }

    /// Logs how many CPA campaigns cannot bid, if any (start-up and reloads).
    fn warn_unpriceable(&self) {
        let n = self.unpriceable_cpa_campaigns();
        if n > 0 {
            eprintln!(
                "ctrbid: warning: {n} CPA campaigns (goal_cpa) cannot bid: model {} has no conversion head (pcvr output)",
                self.model().path.display()
            );
        }
    }
}

/// What a request's rows saw of the aggregates: where in their event sequence
/// ([`Snapshot::applied`]) and, when the spec reads them, the aggregate fields' values of
/// each row as scored (row-major, [`Extractor::aggregate_columns`] per row), so that a
/// bid's logged row is the scored one even when events arrived since.
#[derive(Debug, Clone, Default)]
pub struct AggSeen {
    pub applied: u64,
    pub values: Vec<f32>,
}

/// Why a valid request got no bid. Each is one metric label and one OpenRTB `nbr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBidReason {
    NoCandidates,
    BelowFloor,
    Currency,
    /// `wseat` leaves our seat out, or `bseat` names it.
    Seat,
    /// `bcat` is in a category taxonomy other than IAB 1.0, which the catalog uses.
    Taxonomy,
    /// `bidding.require_complete_schain` and no complete `source.schain`.
    SupplyChain,
    Deadline,
    QueueFull,
    /// The scoring backlog would not clear before the deadline: shed before any work.
    Backlog,
    ScoringFailed,
    /// Every candidate was a CPA campaign and the model has no conversion head to value it.
    NoConversionHead,
}

impl NoBidReason {
    pub const ALL: [NoBidReason; 11] = [
        NoBidReason::NoCandidates,
        NoBidReason::BelowFloor,
        NoBidReason::Currency,
        NoBidReason::Seat,
        NoBidReason::Taxonomy,
        NoBidReason::SupplyChain,
        NoBidReason::Deadline,
        NoBidReason::QueueFull,
        NoBidReason::Backlog,
        NoBidReason::ScoringFailed,
        NoBidReason::NoConversionHead,
    ];

    pub fn label(self) -> &'static str {
        match self {
            NoBidReason::NoCandidates => "no_candidates",
            NoBidReason::BelowFloor => "below_floor",
            NoBidReason::Currency => "currency",
            NoBidReason::Seat => "seat",
            NoBidReason::Taxonomy => "taxonomy",
            NoBidReason::SupplyChain => "supply_chain",
            NoBidReason::Deadline => "deadline",
            NoBidReason::QueueFull => "queue_full",
            NoBidReason::Backlog => "backlog",
            NoBidReason::ScoringFailed => "scoring_failed",
            NoBidReason::NoConversionHead => "no_conversion_head",
        }
    }

    /// The OpenRTB 2.6 no-bid reason code (list 5.24): 15 insufficient auction time,
    /// 1 technical error, else 0 (the list has no code for "nothing worth bidding").
    pub fn nbr(self) -> u16 {
        match self {
            NoBidReason::Deadline => 15,
            NoBidReason::QueueFull | NoBidReason::Backlog | NoBidReason::ScoringFailed => 1,
            _ => 0,
        }
    }
}

/// The answer to one bid request.
#[derive(Debug)]
pub enum Answer {
    /// 200 with this JSON body.
    Bid(Vec<u8>),
    /// 204, or 200 with `body` (`{"id", "nbr"}`) when `server.nbr_body` is on.
    NoBid { reason: NoBidReason, body: Option<Vec<u8>> },
    /// 400 with this reason as the body.
    BadRequest(String),
}

/// What one request's trip through [`Bidder::run`] leaves for its metrics sample.
#[derive(Debug, Default)]
struct Trace {
    /// Nanoseconds per stage; `total` is filled in by [`Bidder::bid`].
    ns: [u64; Stage::ALL.len()],
    /// The latest moment the exchange still takes an answer (`tmax` less the network
    /// allowance), once the request is read.
    deadline: Option<Instant>,
    /// Where the request's rows were scored, once they were.
    path: Option<ScoringPath>,
    /// The slot of the variant that scored them ([`crate::variants::VariantCounters::slot`]).
    variant: Option<u8>,
}

#[derive(Debug, Clone)]
struct Settings {
    budget: Duration,
    network_allowance: Duration,
    default_tmax: Duration,
    max_candidates_per_imp: usize,
    debug_ext: bool,
    seat: String,
    rates: Rates,
    first_price_shading: f64,
    /// `bidding.explore_share`: the share of bids that go to a random candidate.
    explore_share: f64,
    require_complete_schain: bool,
    nbr_body: bool,
    /// `server.mode = "ceiling"`: answer a fixed bid after validation (see
    /// [`ceiling_response`]).
    ceiling: bool,
}

pub struct Bidder {
    state: ArcSwap<ServingState>,
    /// How every variant's batcher is started (a candidate gets one of its own).
    scoring: ScoringSetup,
    /// Every variant's results, by name ([`crate::variants`]).
    book: VariantBook,
    /// Changes to the variants, newest last (the admin API's log).
    variant_log: std::sync::Mutex<std::collections::VecDeque<VariantChange>>,
    /// The judge's view of each candidate ([`Bidder::judge_candidates`]).
    watches: std::sync::Mutex<std::collections::HashMap<String, Watch>>,
    judge: JudgeSettings,
    /// The event log; `None` when `events.dir` is unset.
    /// Shared with the shadow variants' scoring tasks.
    events: Option<Arc<EventSink>>,
    metrics: Arc<Metrics>,
    notices: Notices,
    /// The fleet's shared state (`fleet.backend = "redis"`); `None` alone.
    fleet: Option<Fleet>,
    settings: Settings,
    /// Where models and catalogs load from, for reloads.
    model_source: ModelPaths,
    /// One reload at a time: two model reloads must not hand the inference threads a mix.
    reloading: std::sync::Mutex<()>,
    next_bid: AtomicU64,
    /// The time of day and date for everything but deadlines (`server.clock`).
    clock: AuctionClock,
    /// Budgets in flight, pacing (and their saved state, `pacing.state_file`).
    economics: Economics,
    /// What the bidder has seen of each user, ad and publisher ([`crate::aggregates`]),
    /// fed by its notices.
    aggregates: AggregateStore,
    state_file: Option<PathBuf>,
    /// Wall time of the last save of `state_file`, and how often to save.
    last_save: std::sync::Mutex<Instant>,
    save_interval: Duration,
}

/// How a variant's batcher, score cache and drift measure are made: as at start-up, for
/// every variant.
struct ScoringSetup {
    knobs: BatcherConfig,
    mode: InlineScoring,
    /// Auto inline scoring: the workers' busy share, one sampler for every variant.
    busy: Option<Arc<WorkerBusy>>,
    inference_threads: usize,
    inline_max_busy: f64,
    cache: Option<CacheConfig>,
    drift: DriftConfig,
}

impl ScoringSetup {
    /// A batcher over `models` (one per session: [`Config::scoring_sessions`]).
    fn batcher(&self, models: Vec<Model>, metrics: &Arc<Metrics>) -> Batcher {
        match self.mode {
            InlineScoring::Off => Batcher::start(models, self.knobs.clone(), Arc::clone(metrics)),
            InlineScoring::On => Batcher::start_inline(models, Arc::clone(metrics)),
            InlineScoring::Auto => {
                let mut threads = models;
                let inline = threads.split_off(self.inference_threads.min(threads.len()));
                let busy = self.busy.clone().unwrap_or_else(WorkerBusy::unsampled);
                Batcher::start_auto(
                    threads,
                    inline,
                    self.knobs.clone(),
                    busy,
                    self.inline_max_busy,
                    Arc::clone(metrics),
                )
            }
        }
    }

    fn cache(&self) -> Option<Arc<ScoreCache>> {
        self.cache.map(|c| Arc::new(ScoreCache::new(c)))
    }

    /// The drift measure of `model`'s traffic, from its reference
    /// ([`crate::variants::drift`]); `None`, and a line in the log, without one.
    fn drift(&self, model: &ModelInfo) -> Option<Arc<Drift>> {
        if self.drift.every == 0 {
            return None;
        }
        match Reference::for_model(model) {
            Ok(Some(r)) => Some(Arc::new(Drift::new(r, self.drift))),
            Ok(None) => {
                eprintln!(
                    "ctrbid: drift: model {} has no reference ({}): its traffic is not measured",
                    model.path.display(),
                    Reference::path_for(&model.path).display()
                );
                None
            }
            Err(e) => {
                eprintln!("ctrbid: drift: model {}: reference not used: {e}", model.path.display());
                None
            }
        }
    }
}

/// One change to the variants, for `/admin/status` and the log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VariantChange {
    /// Unix seconds, wall clock.
    pub at_unix: i64,
    pub action: &'static str,
    pub variant: String,
    pub detail: String,
}

/// The judge's settings (`[variants]`).
#[derive(Debug, Clone, Copy)]
struct JudgeSettings {
    acts: bool,
    cfg: JudgeConfig,
}

/// What the judge knows of one candidate: the counters of both sides when it began to
/// watch (the comparison is over the same time), and when it looks next.
#[derive(Debug, Clone)]
struct Watch {
    incumbent: String,
    incumbent_at_start: variants::Tally,
    candidate_at_start: variants::Tally,
    looks: Looks,
}

/// Changes the admin log keeps.
const VARIANT_LOG: usize = 64;

/// Paths and options needed to open a model again (admin reload).
#[derive(Debug, Clone)]
struct ModelPaths {
    spec: PathBuf,
    library: PathBuf,
    device: crate::scoring::Device,
    threads: usize,
}

impl std::fmt::Debug for Bidder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bidder").field("variants", &self.state.load().variants).finish_non_exhaustive()
    }
}

/// What a price is for: the candidate's floor in the bid's terms.
#[derive(Debug, Clone, Copy)]
struct Floor<'a> {
    usd: f64,
    /// The floor as the request states it, when in a currency: a bid in that currency
    /// must not fall a rounding error under it.
    native: (f64, &'a str),
}

/// A catalog the bidder can serve: it loads, and it has a campaign (one without any
/// would answer every request 204 while `/readyz` says ready). A missing file names the
/// command that makes the default one.
fn servable_catalog(path: &Path) -> anyhow::Result<Catalog> {
    let catalog = Catalog::load(path).map_err(|e| match e {
        crate::catalog::CatalogError::Read { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            anyhow::anyhow!(
                "catalog file {} not found: run `make models` to build the default model and its catalog, \
                 or set model.catalog (--catalog, CTRBID_CATALOG) to your own (deploy/README.md, \"Your own catalog\")",
                path.display()
            )
        }
        e => e.into(),
    })?;
    if catalog.campaigns.is_empty() {
        anyhow::bail!("catalog {} has no campaigns: the bidder would answer every request 204", path.display());
    }
    Ok(catalog)
}

/// Takes the notices of the event log in `dir` back into `notices` (ledger and spend,
/// see [`crate::events::restore`]) and stops the campaigns whose budget is spent today.
fn restore_notices(
    notices: &Notices,
    dir: &std::path::Path,
    clock: crate::clock::ClockMode,
    selector: &Selector,
) -> anyhow::Result<()> {
    let clock = crate::clock::AuctionClock::new(clock);
    let since = clock.now_ms().map(|_| std::time::SystemTime::now() - notices.restore_horizon());
    let restored = crate::events::restore::notices(dir, since, |r| {
        notices.restore(r);
    })?;
    match clock.now_unix() {
        // Drops what has expired since and rolls spend to today before the flags are set.
        Some(now) => notices.tick(now, selector),
        // The simulation clock has no time before its first event.
        None => notices.apply_spend(selector),
    }
    let stopped = selector.catalog().campaigns.iter().filter(|c| notices.spend_today(&c.id) >= c.daily_budget).count();
    eprintln!(
        "ctrbid: restored {} notices from the event log {} ({} records read in {:.2?}, {} old segments not read{}); \
         {} in the notice ledger, spend today {:.6} USD, {stopped} campaigns at their daily budget",
        restored.notices,
        dir.display(),
        restored.records,
        restored.elapsed,
        restored.segments_skipped,
        if restored.unreadable > 0 {
            format!(", {} of an unknown format skipped", restored.unreadable)
        } else {
            String::new()
        },
        notices.ledger_len(),
        notices.spend_total(),
    );
    Ok(())
}

/// Rebuilds the aggregates from the event log in `dir` ([`crate::events::restore::aggregates`]).
fn rebuild_aggregates(store: &AggregateStore, dir: &std::path::Path) -> anyhow::Result<()> {
    let r = crate::events::restore::aggregates(dir, store)?;
    let stats = store.stats();
    eprintln!(
        "ctrbid: rebuilt the aggregates from the event log {} in {:.2?}: {} events of {} records, {} entities \
         ({} evicted){}{}",
        dir.display(),
        r.elapsed,
        r.events,
        r.records,
        stats.entries,
        stats.evicted,
        if r.gaps > 0 { format!(", {} sequence numbers missing", r.gaps) } else { String::new() },
        if r.unreadable > 0 {
            format!(", {} records of an unknown format skipped", r.unreadable)
        } else {
            String::new()
        },
    );
    Ok(())
}

impl Bidder {
    /// Loads spec, catalog and model (one session per inference thread and, scoring
    /// inline, one per tokio worker: [`Config::scoring_sessions`]), warms every
    /// session with one batch, and starts the batcher. Errors name the file at fault.
    pub fn load(cfg: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Bidder> {
        let spec = FeatureSpec::load(&cfg.model.spec)?;
        let catalog = servable_catalog(&cfg.model.catalog)?;
        let extractor = Extractor::new(spec);
        let model_source = ModelPaths {
            spec: cfg.model.spec.clone(),
            library: runtime::library_path(cfg.model.onnxruntime_library.as_deref()),
            device: cfg.scoring.device,
            threads: cfg.scoring_sessions(),
        };
        let models = open_models(&model_source, &cfg.model.path, &extractor)?;
        let info = models[0].info.clone();
        let selector = Selector::new(catalog, &extractor);
        let knobs = BatcherConfig {
            max_batch_rows: cfg.scoring.max_batch_rows,
            max_wait: Duration::from_micros(cfg.scoring.max_wait_us),
            queue_capacity: cfg.scoring.queue_capacity,
            adaptive_wait: cfg.scoring.adaptive_wait,
            cpus: cfg.scoring.inference_cpus.clone(),
            realtime: cfg.scoring.realtime_inference.then_some(cfg.scoring.realtime_max_busy),
        };
        let mode = cfg.inline_scoring();
        let busy = match (mode, tokio::runtime::Handle::try_current()) {
            (InlineScoring::Auto, Ok(runtime)) => {
                Some(WorkerBusy::sampled(&runtime).context("starting the worker-busy sampler")?)
            }
            // Outside a runtime (a benchmark calling the handler) nobody is busy.
            _ => None,
        };
        let scoring = ScoringSetup {
            knobs,
            mode,
            busy,
            inference_threads: cfg.inference_threads(),
            inline_max_busy: cfg.scoring.inline_max_busy,
            cache: (cfg.scoring.cache_entries > 0).then(|| CacheConfig {
                max_entries: cfg.scoring.cache_entries,
                ttl: Duration::from_millis(cfg.scoring.cache_ttl_ms),
            }),
            drift: DriftConfig { every: cfg.variants.drift_sample_every, window_s: cfg.variants.drift_window_s },
        };
        let book = VariantBook::default();
        let batcher = scoring.batcher(models, &metrics);
        let drift = scoring.drift(&info);
        let incumbent = Variant::incumbent(&cfg.variants.name, info, batcher, scoring.cache(), drift, &book);
        let notice_base_url =
            cfg.server.notice_base_url.clone().unwrap_or_else(|| format!("http://{}", cfg.server.listen));
        let notices = Notices::new(NoticeSettings {
            base_url: notice_base_url.trim_end_matches('/').to_string(),
            signer: notice_signer(&cfg.notices),
            ttl_s: cfg.notices.ttl_s,
            min_ttl_s: cfg.notices.min_ttl_s,
            max_ttl_s: cfg.notices.max_ttl_s,
            click_ttl_s: cfg.notices.click_ttl_s,
            attribution_window_s: cfg.notices.attribution_window_s,
            max_entries: cfg.notices.max_entries,
        });
        let settings = Settings {
            budget: Duration::from_millis(cfg.bidding.budget_ms),
            network_allowance: Duration::from_millis(cfg.bidding.network_allowance_ms),
            default_tmax: Duration::from_millis(cfg.bidding.default_tmax_ms),
            max_candidates_per_imp: cfg.bidding.max_candidates_per_imp,
            debug_ext: cfg.server.debug_ext,
            seat: cfg.server.seat.clone(),
            rates: Rates::new(&cfg.bidding.exchange_rates).map_err(|e| anyhow::anyhow!("config: {e}"))?,
            first_price_shading: cfg.bidding.first_price_shading,
            explore_share: cfg.bidding.explore_share,
            require_complete_schain: cfg.bidding.require_complete_schain,
            nbr_body: cfg.server.nbr_body,
            ceiling: cfg.server.mode == crate::config::ServeMode::Ceiling,
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let events = EventSink::open(&cfg.events, cfg.server.clock)?.map(Arc::new);
        let fleet = Fleet::new(&cfg.fleet)?;
        // A spec that reads no aggregates (the spec is fixed for the process) keeps a
        // token store: notices still take sequence numbers, which the log keeps for a
        // later bidder to rebuild from, but no 64 B per entity is spent on counts no
        // row reads.
        let entries = if extractor.reads_aggregates() { cfg.aggregates.max_entries } else { 4 };
        let aggregates = AggregateStore::new(entries);
        if let Some(dir) = cfg.events.dir.as_deref().filter(|_| events.is_some()) {
            restore_notices(&notices, dir, cfg.server.clock, &selector)?;
            rebuild_aggregates(&aggregates, dir)?;
        }
        let clock = AuctionClock::new(cfg.server.clock);
        let economics = Economics::new(cfg);
        let accounts = economics.attach(selector.catalog(), |id| notices.spend_today(id), clock.now_unix());
        let state_file = cfg
            .pacing
            .state_file
            .clone()
            .or_else(|| cfg.events.dir.as_ref().filter(|_| events.is_some()).map(|d| d.join("economics.json")));
        if let Some(path) = &state_file {
            if let Some(saved) = economics::save::load(path)? {
                let r = economics.restore_state(saved);
                eprintln!(
                    "ctrbid: economics state {}: {} campaigns' pacing and {} bids in flight taken back",
                    path.display(),
                    r.campaigns,
                    r.bids
                );
            }
        }
        let state = ServingState {
            extractor,
            selector: Arc::new(selector),
            accounts: Arc::new(accounts),
            variants: Arc::new(VariantSet::of(incumbent)),
        };
        state.warn_unpriceable();
        // In a fleet a bid id names its maker, whose inbox its outcomes go to.
        let first_bid = match &fleet {
            Some(f) => crate::fleet::budget::first_bid(f.tag(), seed),
            None => seed << 16,
        };
        Ok(Bidder {
            state: ArcSwap::from_pointee(state),
            scoring,
            book,
            variant_log: Default::default(),
            watches: Default::default(),
            judge: JudgeSettings {
                acts: cfg.variants.judge,
                cfg: JudgeConfig { min_clicks: cfg.variants.judge_min_clicks, z: cfg.variants.judge_z },
            },
            events,
            metrics,
            notices,
            fleet,
            settings,
            model_source,
            reloading: std::sync::Mutex::new(()),
            next_bid: AtomicU64::new(first_bid),
            clock,
            economics,
            aggregates,
            state_file,
            last_save: std::sync::Mutex::new(Instant::now()),
            save_interval: Duration::from_secs(cfg.pacing.save_interval_s),
        })
    }

    pub fn state(&self) -> Arc<ServingState> {
        self.state.load_full()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn notices(&self) -> &Notices {
        &self.notices
    }

    /// The event log, when `events.dir` is set.
    pub fn events(&self) -> Option<&EventSink> {
        self.events.as_deref()
    }

    pub fn clock(&self) -> &AuctionClock {
        &self.clock
    }

    /// Loads a catalog and swaps it in whole; requests in flight finish on the old one.
    /// Campaigns whose budget is already spent today stay stopped.
    pub fn reload_catalog(&self, path: &Path) -> anyhow::Result<usize> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let catalog = servable_catalog(path)?;
        let n = catalog.campaigns.len();
        let selector = Arc::new(Selector::new(catalog, &self.state.load().extractor));
        self.notices.apply_spend(&selector);
        let accounts = Arc::new(self.economics.attach(
            selector.catalog(),
            |id| self.notices.spend_today(id),
            self.clock.now_unix(),
        ));
        self.state.rcu(|cur| ServingState {
            extractor: cur.extractor.clone(),
            selector: Arc::clone(&selector),
            accounts: Arc::clone(&accounts),
            variants: Arc::clone(&cur.variants),
        });
        self.state.load().warn_unpriceable();
        Ok(n)
    }

    /// Opens and warms a model (as many sessions as at start), then hands the sessions
    /// to the inference threads and the inline pool; a thread switches before its next
    /// batch (at once when idle), the pool for the next request. A model built for
    /// another feature spec is refused and the serving one stays.
    ///
    /// The model replaces the incumbent's; while candidates serve it must keep the
    /// incumbent's heads (every variant has the same: [`crate::variants`]).
    pub fn reload_model(&self, path: &Path) -> anyhow::Result<ModelInfo> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let models = open_models(&self.model_source, path, &self.state.load().extractor)?;
        let info = models[0].info.clone();
        let set = Arc::clone(&self.state.load().variants);
        if set.all().len() > 1 && info.heads != set.incumbent().model.heads {
            anyhow::bail!(
                "model {} has heads {} but the candidates serving beside the incumbent have {}: promote or roll \
                 them back first",
                path.display(),
                info.heads.label(),
                set.incumbent().model.heads.label()
            );
        }
        set.incumbent().batcher.replace_models(models).map_err(|e| anyhow::anyhow!("model reload: {e}"))?;
        let drift = self.scoring.drift(&info);
        self.replace_variants(|cur| Ok(cur.with_incumbent_model(info.clone(), drift)))?;
        self.state.load().warn_unpriceable();
        let name = set.incumbent().name.clone();
        self.log_variant_change("reload", &name, format!("model {} version {}", path.display(), info.version));
        Ok(info)
    }

    /// Swaps in the variant set `change` makes of the current one; the rest of the
    /// serving state stays. Callers hold `reloading`.
    fn replace_variants(
        &self,
        change: impl FnOnce(&VariantSet) -> Result<VariantSet, String>,
    ) -> anyhow::Result<Arc<VariantSet>> {
        let cur = self.state.load_full();
        let set = Arc::new(change(&cur.variants).map_err(anyhow::Error::msg)?);
        // Reloads are serialised, so nothing else swaps the state between load and store.
        self.state.store(Arc::new(ServingState {
            extractor: cur.extractor.clone(),
            selector: Arc::clone(&cur.selector),
            accounts: Arc::clone(&cur.accounts),
            variants: Arc::clone(&set),
        }));
        Ok(set)
    }

    fn log_variant_change(&self, action: &'static str, variant: &str, detail: String) {
        eprintln!("ctrbid: variants: {action} {variant}: {detail}");
        let at_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let mut log = self.variant_log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() == VARIANT_LOG {
            log.pop_front();
        }
        log.push_back(VariantChange { at_unix, action, variant: variant.to_string(), detail });
    }

    /// Opens `path` as a candidate named `name` taking `share` basis points of the
    /// traffic, with sessions, inference threads and a score cache of its own. Refused,
    /// changing nothing, when the model does not open, was built for another feature
    /// spec, has other heads than the incumbent, or the name or share is not free.
    pub fn add_candidate(&self, name: &str, path: &Path, share: u32) -> anyhow::Result<Arc<VariantSet>> {
        self.add_variant(name, path, share, variants::Role::Candidate)
    }

    /// [`Bidder::add_candidate`], or with [`variants::Role::Shadow`] a shadow scoring
    /// `share` basis points of the requests beside the variant that bids.
    pub fn add_variant(
        &self,
        name: &str,
        path: &Path,
        share: u32,
        role: variants::Role,
    ) -> anyhow::Result<Arc<VariantSet>> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        // The cheap checks first: a refused name or share opens no model.
        let current = Arc::clone(&self.state.load().variants);
        let shadow = role == variants::Role::Shadow;
        if shadow { current.check_shadow(name, share) } else { current.check_candidate(name, share) }
            .map_err(anyhow::Error::msg)?;
        let models = open_models(&self.model_source, path, &self.state.load().extractor)?;
        let counters = self.book.counters(name).ok_or_else(|| {
            anyhow::anyhow!("this process has served {} variant names, its most", crate::metrics::VARIANT_SLOTS)
        })?;
        let drift = self.scoring.drift(&models[0].info);
        let candidate = Variant {
            name: name.to_string(),
            role,
            share,
            model: models[0].info.clone(),
            batcher: Arc::new(self.scoring.batcher(models, &self.metrics)),
            cache: self.scoring.cache(),
            counters,
            since_unix: self.clock.now_unix().unwrap_or(0),
            drift,
        };
        let version = candidate.model.version.clone();
        let set =
            self.replace_variants(
                |cur| if shadow { cur.with_shadow(candidate) } else { cur.with_candidate(candidate) },
            )?;
        self.log_variant_change(
            "add",
            name,
            format!("{} model {} version {version}, share {}", role.label(), path.display(), f64::from(share) / 1e4),
        );
        Ok(set)
    }

    /// Sets candidate `name`'s share, basis points.
    pub fn set_share(&self, name: &str, share: u32) -> anyhow::Result<Arc<VariantSet>> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let set = self.replace_variants(|cur| cur.with_share(name, share))?;
        self.log_variant_change("share", name, format!("share {}", f64::from(share) / 1e4));
        Ok(set)
    }

    /// Makes candidate `name` the incumbent; the incumbent stops serving (its sessions
    /// close once the requests scoring on them finish). `why` goes in the log.
    pub fn promote(&self, name: &str, why: &str) -> anyhow::Result<Arc<VariantSet>> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.state.load().variants.incumbent().name.clone();
        let set = self.replace_variants(|cur| cur.promoted(name))?;
        self.log_variant_change("promote", name, format!("replaces {old}; {why}"));
        Ok(set)
    }

    /// Stops candidate `name`; its traffic goes back to the incumbent. `why` goes in the log.
    pub fn roll_back(&self, name: &str, why: &str) -> anyhow::Result<Arc<VariantSet>> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let set = self.replace_variants(|cur| cur.without(name))?;
        self.log_variant_change("rollback", name, why.to_string());
        Ok(set)
    }

    /// Every variant's results so far, by name (served now or before).
    pub fn variant_tallies(&self) -> Vec<(String, variants::Tally)> {
        self.book.all().iter().map(|c| (c.name.clone(), c.read())).collect()
    }

    /// The changes to the variants, oldest first.
    pub fn variant_changes(&self) -> Vec<VariantChange> {
        self.variant_log.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Checks and applies one notice (win, billing, loss, click, conversion) that
    /// arrived at `now_ms` (auction clock, Unix ms); counted by verdict. An accepted
    /// click answers where to send the user.
    pub async fn notice(&self, kind: notice::Kind, query: &str, now_ms: i64) -> (notice::Verdict, Option<String>) {
        let state = self.state.load();
        let refused = |verdict: notice::Verdict| {
            self.notices.count_verdict(kind, &verdict);
            let location = (kind == notice::Kind::Click && verdict == notice::Verdict::Duplicate)
                .then(|| self.notices.repeat_click_location(query, now_ms, &state.selector))
                .flatten();
            (verdict, location)
        };
        let mut checked = match self.notices.check(kind, query, now_ms) {
            Ok(c) => c,
            Err(verdict) => return refused(verdict),
        };
        let usd_per_unit = self.settings.rates.usd_per_unit(&checked.currency);
        let charged_usd = self.notices.charge_usd(&checked, &self.settings.rates);
        // Another instance's bid: its outcome goes to that instance (with the claim),
        // which holds the bid's budget reservation; this one applies the rest.
        let forward = self.fleet.as_ref().and_then(|f| {
            f.forward_of(|| economics::Outcome::of(&checked, charged_usd, usd_per_unit), kind, checked.bid)
        });
        let forwarded = forward.is_some();
        // The fleet's ledger has the last word: another instance may have taken this
        // notice, or its contradiction. Unreachable, the local verdict stands.
        if let Some(fleet) = &self.fleet {
            let ttl = checked.ledger_until - unix_s(now_ms);
            match fleet.claim(kind, checked.bid, ttl, checked.ledger_until, forward.clone()).await {
                // First only if neither this instance (a win it took while Redis was
                // away, not yet claimed) nor the fleet has the impression already.
                Claim::New { first_of_impression } => checked.first_of_impression &= first_of_impression,
                Claim::Unshared => {}
                Claim::Duplicate { .. } => {
                    self.notices.release(&checked);
                    return refused(notice::Verdict::Duplicate);
                }
                Claim::Contradicts(why) => {
                    self.notices.release(&checked);
                    return refused(notice::Verdict::Contradicts(why));
                }
            }
        }
        // The charge is what applying will add; it is known before, so the record is
        // durable before anything is applied. The aggregates are the exception: the
        // record carries the event's sequence number, which only applying gives. A
        // record that then fails to be written leaves a gap in the log's sequence (a
        // rebuild counts it), and the exchange's retry counts the event again.
        let stamp = self.count_in_aggregates(&checked, &state.selector, now_ms);
        if let Some(events) = &self.events {
            if let Err(e) = events.notice(checked.record(now_ms, charged_usd, stamp)).await {
                eprintln!("ctrbid: event log: {e}: {} notice for bid {:x} refused with 503", kind.label(), checked.bid);
                self.notices.release(&checked);
                if let Some(fleet) = &self.fleet {
                    fleet.unclaim(kind, checked.bid, forward).await;
                }
                self.notices.count_verdict(kind, &notice::Verdict::LogFailed);
                return (notice::Verdict::LogFailed, None);
            }
        }
        let applied = self.notices.apply(&checked, now_ms, &state.selector, &self.settings.rates);
        if let Some(tag) = checked.model.as_ref().filter(|_| !checked.test) {
            self.book.on_notice(kind, checked.first_of_impression, tag, applied.charged_usd);
        }
        if !forwarded {
            let outcome = economics::Outcome::of(&checked, applied.charged_usd, usd_per_unit);
            self.economics.on_notice(&state.accounts, &outcome, unix_s(now_ms));
        }
        self.notices.count_verdict(kind, &notice::Verdict::Accepted);
        (notice::Verdict::Accepted, applied.location)
    }

    /// Applies what a checked notice says to the aggregates: the first word of an
    /// impression (its win or its bill, whichever came first), its click, its
    /// conversion; nothing for a loss or a test auction. Returns the stamp for its record.
    fn count_in_aggregates(&self, c: &notice::Checked, selector: &Selector, now_ms: i64) -> Option<AggStamp> {
        let outcome = match c.kind {
            _ if c.test => return None,
            notice::Kind::Win | notice::Kind::Bill if c.first_of_impression => aggregates::Outcome::Impression,
            notice::Kind::Click => aggregates::Outcome::Click,
            notice::Kind::Conv => aggregates::Outcome::Conversion,
            _ => return None,
        };
        // The campaign's ad category as the catalog has it now; one a reload removed
        // counts under the empty category.
        let category =
            selector.campaign_index(&c.campaign).map_or("", |i| &selector.catalog().campaigns[i as usize].category);
        let category = aggregates::id_hash(category);
        let keys = EntityKeys::of(c.audience, &c.campaign, &c.creative, category);
        let seq = self.aggregates.apply(&AggEvent { ts_s: unix_s(now_ms), outcome, keys });
        if let Some(fleet) = &self.fleet {
            fleet.count(crate::fleet::counts::SharedCount {
                ts_ms: now_ms,
                outcome,
                campaign: c.campaign.clone(),
                creative: c.creative.clone(),
                user: c.audience.user.unwrap_or(0),
                publisher: c.audience.publisher.unwrap_or(0),
                category,
            });
        }
        Some(AggStamp { seq, user: c.audience.user, publisher: c.audience.publisher, category })
    }

    /// Applies to the aggregates an event another instance counted, and logs it.
    fn count_shared(&self, c: &crate::fleet::counts::SharedCount) {
        let key = |k: u64| (k != 0).then_some(k);
        let audience = aggregates::Audience { user: key(c.user), publisher: key(c.publisher) };
        let keys = EntityKeys::of(audience, &c.campaign, &c.creative, c.category);
        let seq = self.aggregates.apply(&AggEvent { ts_s: unix_s(c.ts_ms), outcome: c.outcome, keys });
        if let Some(events) = &self.events {
            events.counted(crate::events::CountedRecord {
                ts_ms: c.ts_ms,
                outcome: c.outcome,
                campaign: &c.campaign,
                creative: &c.creative,
                stamp: AggStamp { seq, user: audience.user, publisher: audience.publisher, category: c.category },
            });
        }
    }

    /// The fleet's shared state; `None` with the memory backend.
    pub fn fleet(&self) -> Option<&Fleet> {
        self.fleet.as_ref()
    }

    /// Every `fleet.lease_interval_ms`: this instance's share of the frequency caps
    /// (the fleet's live members), the budget leases of the serving catalog's
    /// campaigns are refreshed, the outcomes of this instance's bids that others
    /// received are applied, and notices accepted while Redis was away are claimed in
    /// the fleet's ledger. Before the auction clock has a time (no request yet) only a
    /// failing Redis is pinged, so readiness stops saying degraded once it is back.
    pub async fn fleet_tick(&self) {
        let Some(fleet) = &self.fleet else { return };
        let Some(now) = self.clock.now_unix() else {
            if fleet.failing() {
                fleet.ping().await;
            }
            return;
        };
        if let Some(share) = fleet.refresh_members().await {
            self.economics.set_cap_share(share);
        }
        fleet.share_counts(|c| self.count_shared(c)).await;
        let state = self.state.load();
        let paces = &state.accounts.paces;
        for p in paces {
            p.roll(now);
        }
        if !fleet.refresh_leases(paces, now.div_euclid(86_400)).await {
            return;
        }
        fleet.drain_inbox(|o| self.economics.on_notice(&state.accounts, o, now)).await;
        if fleet.unshared() > 0 {
            fleet.reconcile(now).await;
        }
    }

    /// The aggregates' store (its counters; tests).
    pub fn aggregates(&self) -> &AggregateStore {
        &self.aggregates
    }

    /// Prometheus text: request outcomes and stage latencies, no-bid reasons, notices.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write as _;
        let mut out = self.metrics.render();
        out.push_str("# HELP ctrbid_no_bids_total No-bid answers by reason.\n# TYPE ctrbid_no_bids_total counter\n");
        for r in NoBidReason::ALL {
            let _ = writeln!(
                out,
                "ctrbid_no_bids_total{{reason=\"{}\"}} {}",
                r.label(),
                self.metrics.no_bid_count(r as usize)
            );
        }
        self.notices.render(&mut out);
        self.economics.render(&self.state.load().accounts, &mut out);
        render_aggregates(&self.aggregates.stats(), &mut out);
        if let Some(fleet) = &self.fleet {
            fleet.render(&mut out);
        }
        if let Some(events) = &self.events {
            events.render(&mut out);
        }
        let variants = Arc::clone(&self.state.load().variants);
        variants.incumbent().batcher.render(&mut out);
        self.book.render(&variants, &mut out);
        variants::drift::render(&variants, &mut out);
        let slots: Vec<(u8, String)> = self.book.all().iter().map(|c| (c.slot, c.name.clone())).collect();
        self.metrics.render_variants(&mut out, slots.iter().map(|(s, n)| (*s, n.as_str())));
        // The incumbent's cache: the candidates' are small beside it, and short-lived.
        if let Some(cache) = &variants.incumbent().cache {
            cache.render(&mut out);
        }
        out
    }

    /// The incumbent's score cache's counters, when there is one.
    pub fn score_cache_stats(&self) -> Option<crate::scoring::cache::CacheStats> {
        self.state.load().variants.incumbent().cache.as_deref().map(ScoreCache::stats)
    }

    /// Housekeeping, once a second: expired notices, a new budget day (auction clock;
    /// nothing to do before a simulated clock has seen its first event).
    pub fn tick(&self) {
        if let Some(now) = self.clock.now_unix() {
            let state = self.state.load();
            self.notices.tick(now, &state.selector);
            // While Redis is away, and a little after, the outcomes of this instance's
            // bids that others accepted wait in their backlogs: the holds stay.
            let keep_holds = self.fleet.as_ref().is_some_and(Fleet::holds_frozen);
            self.economics.tick(&state.accounts, now, keep_holds);
            for drift in state.variants.all().iter().filter_map(|v| v.drift.as_deref()) {
                drift.roll(now);
            }
        }
        let due = self.last_save.lock().map(|last| last.elapsed() >= self.save_interval).unwrap_or(false);
        if due {
            self.save_economics();
        }
        self.judge_candidates();
    }

    /// The canary judge ([`crate::variants::judge`]): each candidate against the
    /// incumbent over the time since the judge began to watch it (when it joined, or when
    /// the incumbent last changed), at each look; promotes or rolls back with the
    /// evidence in the log (`variants.judge = false`: logs what it would do).
    pub fn judge_candidates(&self) {
        let set = Arc::clone(&self.state.load().variants);
        let incumbent = set.incumbent();
        let incumbent_now = incumbent.counters.read();
        let mut due = Vec::new();
        {
            let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            watches.retain(|name, _| set.get(name).is_some_and(|v| v.role == variants::Role::Candidate));
            for v in set.candidates() {
                let start = || Watch {
                    incumbent: incumbent.name.clone(),
                    incumbent_at_start: incumbent_now,
                    candidate_at_start: v.counters.read(),
                    looks: Looks::new(self.judge.cfg.min_clicks),
                };
                let w = watches.entry(v.name.clone()).or_insert_with(start);
                if w.incumbent != incumbent.name {
                    *w = start();
                }
                let candidate = v.counters.read().since(&w.candidate_at_start);
                if w.looks.due(candidate.clicks) {
                    let against = incumbent_now.since(&w.incumbent_at_start);
                    due.push((v.name.clone(), w.looks.taken, judge::judge(&candidate, &against, &self.judge.cfg)));
                }
            }
        }
        for (name, look, decision) in due {
            let (act, evidence, why) = match decision {
                Decision::Wait => {
                    self.log_variant_change("look", &name, format!("look {look}: no decision yet"));
                    continue;
                }
                Decision::RollBack { evidence, why } => ("rollback", evidence, why),
                Decision::Promote { evidence, why } => ("promote", evidence, why),
            };
            let reason = format!("judge, look {look}: {why}; {evidence}");
            if !self.judge.acts {
                self.log_variant_change("would", &name, format!("{act}: {reason}"));
                continue;
            }
            let done = if act == "promote" { self.promote(&name, &reason) } else { self.roll_back(&name, &reason) };
            if let Err(e) = done {
                eprintln!("ctrbid: variants: the judge's {act} of {name} failed: {e:#}");
            }
            // The set changed: the others are judged against it at the next tick.
            break;
        }
    }

    /// Writes the economics state file now (housekeeping does every
    /// `pacing.save_interval_s`, and the server once more after draining).
    pub fn save_economics(&self) {
        let Some(path) = &self.state_file else { return };
        if let Ok(mut last) = self.last_save.lock() {
            *last = Instant::now();
        }
        if let Err(e) = self.economics.save_to(path, self.clock.now_unix()) {
            eprintln!("ctrbid: saving the economics state: {e:#}");
        }
    }

    pub fn economics(&self) -> &Economics {
        &self.economics
    }

    /// Scores through the score cache when there is one: repeated rows skip inference.
    async fn score(variant: &Variant, rows: Rows, deadline: Instant) -> Result<Scores, ScoreError> {
        match &variant.cache {
            Some(cache) => cache.score(&variant.batcher, rows, deadline).await,
            None => variant.batcher.score(rows, deadline).await,
        }
    }

    /// Answers one bid request. `body` is parsed in place. `received` is when the
    /// request arrived (its deadline counts from there); `now_ms` the auction time in
    /// Unix ms (time-of-day features, notice expiry: [`Bidder::clock`]).
    pub async fn bid(&self, body: &mut [u8], received: Instant, now_ms: i64) -> Answer {
        let mut trace = Trace::default();
        let answer = self.run(body, received, now_ms, &mut trace).await;
        let done = Instant::now();
        let Trace { mut ns, deadline, path, variant } = trace;
        ns[Stage::Total as usize] = (done - received).as_nanos() as u64;
        if deadline.is_some_and(|d| done > d) {
            self.metrics.count_late();
        }
        self.metrics.sample(Sample::Request { ns, path, variant });
        match &answer {
            Answer::Bid(_) => self.metrics.count(Outcome::Bid),
            Answer::NoBid { reason, .. } => {
                let shed = matches!(reason, NoBidReason::Deadline | NoBidReason::QueueFull | NoBidReason::Backlog);
                self.metrics.count(if shed { Outcome::Shed } else { Outcome::NoBid });
                self.metrics.count_no_bid(*reason as usize);
            }
            Answer::BadRequest(_) => self.metrics.count(Outcome::Invalid),
        }
        answer
    }

    fn no_bid(&self, reason: NoBidReason, request_id: &str) -> Answer {
        let body = self.settings.nbr_body.then(|| {
            serde_json::to_vec(&NoBidResponse {
                id: request_id,
                nbr: reason.nbr(),
                ext: NoBidExt { reason: reason.label() },
            })
            .unwrap_or_default()
        });
        Answer::NoBid { reason, body }
    }

    /// The bid path; fills in `trace` as it goes.
    async fn run(&self, body: &mut [u8], received: Instant, now_ms: i64, trace: &mut Trace) -> Answer {
        let now_unix = unix_s(now_ms);
        let Trace { ns, deadline: deadline_out, path, variant: variant_out } = trace;
        let mut clock = Instant::now();
        let mut lap = |stage: Stage, ns: &mut [u64; Stage::ALL.len()]| {
            let now = Instant::now();
            ns[stage as usize] = (now - clock).as_nanos() as u64;
            clock = now;
        };
        // Overload: when the rows already queued cannot be scored within even the
        // longest deadline, shed before parsing (no id known, so never an nbr body).
        let state = self.state.load_full();
        // The incumbent's backlog: it scores all but the candidates' shares.
        let incumbent = &state.variants.incumbent().batcher;
        let backlog = incumbent.expected_wait();
        if backlog >= self.settings.budget {
            return Answer::NoBid { reason: NoBidReason::Backlog, body: None };
        }
        // On its way to scoring, for an adaptive batch wait, until dropped below.
        let announced = incumbent.announce();
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
        let deadline = received + allowed;
        // Late means past what the exchange waits for (tmax less the network's share),
        // not past our own, shorter budget: a request shed at its budget is on time.
        *deadline_out = Some(received + tmax.saturating_sub(s.network_allowance));
        if allowed.is_zero() || Instant::now() >= deadline {
            return self.no_bid(NoBidReason::Deadline, req.id());
        }
        if Instant::now() + backlog >= deadline {
            return self.no_bid(NoBidReason::Backlog, req.id());
        }
        if (!req.wseat.is_empty() && !req.wseat.iter().any(|w| w == s.seat.as_str()))
            || req.bseat.iter().any(|b| b == s.seat.as_str())
        {
            return self.no_bid(NoBidReason::Seat, req.id());
        }
        if req.category_taxonomy() != 1 && !req.bcat.is_empty() {
            return self.no_bid(NoBidReason::Taxonomy, req.id());
        }
        if s.require_complete_schain && req.schain_complete() != Some(true) {
            return self.no_bid(NoBidReason::SupplyChain, req.id());
        }
        let Some((currency, usd_per_unit)) = s.rates.bid_currency(&req.cur) else {
            return self.no_bid(NoBidReason::Currency, req.id());
        };

        if s.ceiling {
            return Answer::Bid(ceiling_response(&req, currency));
        }

        self.economics.control(&state.accounts, now_unix);
        let terms: List<ImpTerms, 1> = req.imp.iter().map(|imp| ImpTerms::of(imp, &s.seat, &s.rates)).collect();
        let gate = self.economics.gate(&state.accounts, &req, now_unix);
        let selected = state.select(&req, &terms, s.max_candidates_per_imp, &gate);
        let user = gate.user();
        drop(gate);
        let candidates = match selected {
            Ok(c) => c,
            Err(reason) => return self.no_bid(reason, req.id()),
        };
        lap(Stage::Select, ns);
        let (rows, seen) = state.scored_rows(&req, &candidates, now_unix, &self.aggregates);
        lap(Stage::Features, ns);
        // Work stops once the deadline has passed: a late request is not scored.
        if Instant::now() >= deadline {
            return self.no_bid(NoBidReason::Deadline, req.id());
        }

        drop(announced);
        let variant = state.variants.pick(req.personal_user_id(), req.id());
        variant.counters.requests.fetch_add(1, Ordering::Relaxed);
        *variant_out = Some(variant.counters.slot);
        let imp_rows = || candidates.chunk_by(|a, b| a.imp == b.imp).map(<[Candidate]>::len);
        let drift = variant.drift.as_deref().and_then(|d| Some((d, d.sampled()?)));
        if let Some((d, sample)) = drift {
            d.observe_rows(sample, &rows, imp_rows());
        }
        // The shadows of this request get a copy of its rows (scored once it is answered).
        let shadow_rows =
            (state.variants.has_shadows() && state.variants.shadows_of(req.id()).next().is_some()).then(|| rows.copy());
        let scores = match Self::score(variant, rows, deadline).await {
            Ok(p) => p,
            Err(ScoreError::Expired) => {
                variant.counters.late.fetch_add(1, Ordering::Relaxed);
                return self.no_bid(NoBidReason::Deadline, req.id());
            }
            Err(ScoreError::QueueFull) => {
                variant.counters.late.fetch_add(1, Ordering::Relaxed);
                return self.no_bid(NoBidReason::QueueFull, req.id());
            }
            Err(ScoreError::Closed | ScoreError::Inference) => {
                return self.no_bid(NoBidReason::ScoringFailed, req.id())
            }
        };
        *path = scores.path();
        if let Some((d, sample)) = drift {
            d.observe_pctr(sample, |r| scores.pctr(r), imp_rows());
        }
        clock = Instant::now();
        let bids = self.price(
            &state,
            variant,
            &req,
            &terms,
            &candidates,
            &scores,
            &seen,
            (currency, usd_per_unit),
            now_ms,
            user,
        );
        ns[Stage::Pricing as usize] = clock.elapsed().as_nanos() as u64;
        if let Some(rows) = shadow_rows {
            self.shadow(&state, &req, &candidates, &scores, &bids, rows, now_ms);
        }
        if bids.is_empty() {
            return self.no_bid(NoBidReason::BelowFloor, req.id());
        }
        variant.counters.bids.fetch_add(bids.len() as u64, Ordering::Relaxed);
        let response = BidResponse { id: req.id(), cur: currency, seatbid: &[SeatBid { bid: &bids, seat: &s.seat }] };
        Answer::Bid(response.to_json())
    }

    /// Hands the shadows of request `req` its rows to score off the request path
    /// ([`crate::variants`], Shadows): each gets the served pCTR of every row to set
    /// beside its own and, for each of `bids` the event log keeps, the bid's id and row
    /// for a shadow record.
    #[allow(clippy::too_many_arguments)]
    fn shadow(
        &self,
        state: &ServingState,
        req: &openrtb::ValidRequest<'_>,
        candidates: &[Candidate],
        scores: &Scores,
        bids: &[Bid<'_>],
        rows: Rows,
        now_ms: i64,
    ) {
        let served: Arc<[f32]> = (0..scores.rows()).map(|r| scores.pctr(r)).collect();
        let imp_rows: Arc<[usize]> = candidates.chunk_by(|a, b| a.imp == b.imp).map(<[Candidate]>::len).collect();
        let events = self.events.clone();
        let logged: Arc<[(u64, usize)]> = bids
            .iter()
            .filter(|b| events.as_ref().is_some_and(|e| e.sampled(b.id.0)))
            .filter_map(|b| {
                let imp = req.imp.iter().position(|i| i.id.as_deref() == Some(b.impid))?;
                let row = candidates.iter().position(|c| {
                    usize::from(c.imp) == imp && state.selector.creative(c.creative).id.as_str() == b.crid
                })?;
                Some((b.id.0, row))
            })
            .collect();
        let budget = self.settings.budget;
        let mut rows = Some(rows);
        let shadows: Vec<Arc<Variant>> = state.variants.shadows_of(req.id()).cloned().collect();
        let last = shadows.len().saturating_sub(1);
        for (k, shadow) in shadows.into_iter().enumerate() {
            let Some(mine) = (if k == last { rows.take() } else { rows.as_ref().map(Rows::copy) }) else { break };
            let (served, imp_rows, logged, events) =
                (Arc::clone(&served), Arc::clone(&imp_rows), Arc::clone(&logged), events.clone());
            tokio::spawn(async move {
                let counters = &shadow.counters;
                counters.requests.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let scores = match Self::score(&shadow, mine, started + budget).await {
                    Ok(s) => s,
                    Err(_) => {
                        counters.late.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                let ns = started.elapsed().as_nanos() as u64;
                let pctr: Vec<f32> = (0..scores.rows()).map(|r| scores.pctr(r)).collect();
                counters.shadow.count(&pctr, &served, &imp_rows, ns);
                let Some(events) = events else { return };
                for &(bid, row) in logged.iter() {
                    events.shadow(ShadowRecord {
                        ts_ms: now_ms,
                        bid,
                        variant: &shadow.name,
                        model: &shadow.model.version,
                        pctr: pctr[row],
                        pcvr: scores.pcvr(row).unwrap_or(f32::NAN),
                    });
                }
            });
        }
    }

    /// The pricing stage: per imp, the candidate with the highest value among those
    /// reaching their floor (`scores` row `k` is `candidates[k]`'s; candidates grouped
    /// by imp), priced for the auction and made a bid in `currency` (`usd_per_unit` USD
    /// per unit) at auction time `now_ms` (Unix ms). Imps without such a candidate get
    /// no bid. A bid the event log samples is logged with its feature row.
    #[allow(clippy::too_many_arguments)]
    pub fn price<'a>(
        &'a self,
        state: &'a ServingState,
        variant: &'a Variant,
        req: &'a openrtb::ValidRequest<'a>,
        terms: &[ImpTerms],
        candidates: &[Candidate],
        scores: &Scores,
        seen: &AggSeen,
        (currency, usd_per_unit): (&str, f64),
        now_ms: i64,
        user: Option<u64>,
    ) -> List<Bid<'a>, 1> {
        let now_unix = unix_s(now_ms);
        // The best candidate per imp by value; candidates are grouped by imp.
        let s = &self.settings;
        let mut bids = List::new();
        let mut start = 0;
        // The request's feature context, rebuilt only when a bid of it is logged.
        let mut logged_context: Option<RequestContext> = None;
        // Who sees the ads and where: what their notices count for in the aggregates.
        let audience = Audience::of(req);
        for group in candidates.chunk_by(|a, b| a.imp == b.imp) {
            let i = usize::from(group[0].imp);
            let (imp, terms) = (&req.imp[i], &terms[i]);
            let first = start;
            start += group.len();
            let Some(best) = state.best_of_imp(group, scores, first, terms) else { continue };
            let bid_id = self.next_bid.fetch_add(1, Ordering::Relaxed);
            // Exploration: now and then the bid goes to another candidate that reaches
            // its floor, drawn uniformly, so the event log sees what the model rates low.
            let ((c, p, value_usd), propensity) = match s.explore_share {
                share if share > 0.0 => {
                    let n = state.valued(group, scores, first, terms).count();
                    let greedy = 1.0 - share + share / n as f64;
                    match explore_pick(share, bid_id, n) {
                        Some(k) => {
                            let pick = state.valued(group, scores, first, terms).nth(k).unwrap_or(best);
                            let same = std::ptr::eq(pick.0, best.0);
                            (pick, if same { greedy } else { share / n as f64 })
                        }
                        None => (best, greedy),
                    }
                }
                _ => (best, 1.0),
            };
            let deal = c.deal.and_then(|k| imp.pmp.as_ref()?.deals.get(usize::from(k)));
            let floor = candidate_floor(imp, deal, terms.floor_for(c.deal));
            let auction = match deal.and_then(|d| d.at) {
                Some(1) => Auction::First,
                Some(3) => Auction::Fixed,
                Some(_) => Auction::Second,
                None if req.auction_type() == AuctionType::FirstPrice => Auction::First,
                None => Auction::Second,
            };
            // First price: shaded (`[shading]`); the bid remembers where, for the feedback.
            let (price_usd, shading) = match auction {
                Auction::First => {
                    let format = state.selector.creative(c.creative).format.kind();
                    let fp = self.economics.first_price(req.publisher_id(), format, value_usd, floor.usd);
                    (fp.price, Some(fp.context))
                }
                _ => (auction_price(value_usd, floor.usd, auction, s.first_price_shading), None),
            };
            // The price is held against the budget until the bid's outcome; no bid when
            // spend plus the bids in flight could not pay it.
            let campaign = state.selector.campaign_index_of(c.creative);
            let test = req.test == Some(true);
            let who = (c.creative, user);
            let Some(held) =
                self.economics.hold(&state.accounts, campaign, bid_id, price_usd, now_unix, test, shading, who)
            else {
                continue;
            };
            let mut price = price_usd / usd_per_unit;
            if floor.native.1.eq_ignore_ascii_case(currency) {
                price = price.max(floor.native.0);
            }
            if let Some(events) = self.events.as_ref().filter(|e| e.sampled(bid_id)) {
                let rc = logged_context.get_or_insert_with(|| state.extractor.request(req, now_unix));
                let logged = Logged { bid: bid_id, price, value_usd, floor_usd: floor.usd, auction, propensity };
                // Its row among the request's: candidates are one slice, `c` one of them.
                let row = first + group.iter().position(|g| std::ptr::eq(g, c)).unwrap_or(0);
                events.bid(bid_record(
                    state,
                    &variant.model,
                    req,
                    imp,
                    c,
                    p,
                    currency,
                    now_ms,
                    rc,
                    &logged,
                    (seen, row),
                ));
            }
            let model = ModelTag::of(&variant.name, p.pctr);
            let signed = Signed { bid: bid_id, price, currency, capped_user: held.capped_user, audience, model };
            bids.push(self.make_bid(state, req, imp, c, deal, p, &signed, now_unix, group.len()));
        }
        bids
    }

    #[allow(clippy::too_many_arguments)]
    fn make_bid<'a>(
        &'a self,
        state: &'a ServingState,
        req: &openrtb::BidRequest<'_>,
        imp: &'a openrtb::Imp<'a>,
        candidate: &Candidate,
        deal: Option<&'a openrtb::Deal<'a>>,
        prediction: Prediction,
        signed: &Signed<'_>,
        now_unix: i64,
        candidates: usize,
    ) -> Bid<'a> {
        let &Signed { bid: bid_id, price, currency, capped_user, audience, ref model } = signed;
        let cr = state.selector.creative(candidate.creative);
        let campaign = state.selector.campaign_of(candidate.creative);
        let impid = imp.id.as_deref().unwrap_or_default();
        let dealid = deal.and_then(|d| d.id.as_deref());
        let urls = self.notices.urls(&notice::Terms {
            bid: bid_id,
            imp: impid.into(),
            campaign: campaign.id.as_str().into(),
            creative: cr.id.as_str().into(),
            deal: dealid.unwrap_or_default().into(),
            currency: currency.into(),
            max_price_micros: (price * 1e6).ceil() as u64,
            expires: now_unix + i64::from(self.notices.ttl_s(imp.exp)),
            click_expires: now_unix + i64::from(self.notices.click_ttl_s()),
            test: req.test == Some(true),
            user: capped_user,
            audience,
            model: Some(model.clone()),
        });
        // A native creative answers with the assets the request asked for, under its ids.
        let native_request = imp.native.as_ref().and_then(|n| n.request.as_ref());
        let adm = match (&cr.native, native_request) {
            (Some(assets), Some(request)) => {
                native::response_adm(request, assets).map_or(Cow::Borrowed(cr.adm.as_str()), Cow::Owned)
            }
            _ => Cow::Borrowed(cr.adm.as_str()),
        };
        let adm = with_click_url(adm, urls.click());
        let size = cr.format.size();
        Bid {
            id: openrtb::response::HexId(bid_id),
            impid,
            price,
            adm,
            notices: urls,
            adomain: [&campaign.adomain],
            cid: &campaign.id,
            crid: &cr.id,
            cat: [&campaign.category],
            dealid,
            w: size.map(|s| s.0),
            h: size.map(|s| s.1),
            ext: self.settings.debug_ext.then_some(BidExt {
                ctrbid: BidDebug { pctr: prediction.pctr, pcvr: prediction.pcvr, ts: now_unix, candidates },
            }),
        }
    }
}

/// What a bid's notice URLs sign, besides its imp, campaign and creative.
struct Signed<'c> {
    bid: u64,
    /// The bid, CPM in `currency`: the highest price a notice may report.
    price: f64,
    currency: &'c str,
    /// The user's frequency-cap key when the bid is capped.
    capped_user: Option<u64>,
    audience: Audience,
    /// The variant that priced the bid, and its pCTR.
    model: ModelTag<'c>,
}

/// What pricing decided for a logged bid, besides the candidate and its prediction.
struct Logged {
    bid: u64,
    /// The bid, CPM in the bid's currency.
    price: f64,
    value_usd: f64,
    floor_usd: f64,
    auction: Auction,
    /// The probability that this candidate got the imp's bid (1 without exploration).
    propensity: f64,
}

/// The event log's record of a bid: the candidate's feature row rebuilt from the same
/// request context, imp and candidate keys the scored rows were built from (the row is a
/// pure function of them and of the aggregates: [`ServingState::scored_rows`]), its
/// aggregate fields the values row `row` of `seen` was scored with, so it is the row the
/// model scored.
#[allow(clippy::too_many_arguments)]
fn bid_record<'a>(
    state: &'a ServingState,
    model: &'a ModelInfo,
    req: &'a openrtb::ValidRequest<'a>,
    imp: &'a openrtb::Imp<'a>,
    candidate: &Candidate,
    p: Prediction,
    currency: &'a str,
    now_ms: i64,
    rc: &RequestContext,
    logged: &Logged,
    (seen, row): (&AggSeen, usize),
) -> BidRecord<'a> {
    let ex = &state.extractor;
    let (mut cat, mut num) = (Vec::with_capacity(ex.cat_width()), Vec::with_capacity(ex.num_width()));
    ex.append_imp_rows(rc, imp, std::iter::once(state.selector.keys(candidate.creative)), None, &mut cat, &mut num);
    let columns = ex.aggregate_columns();
    if let Some(values) = seen.values.get(row * columns.len()..(row + 1) * columns.len()) {
        for (&j, &v) in columns.iter().zip(values) {
            num[j] = v;
        }
    }
    let campaign = state.selector.campaign_of(candidate.creative);
    BidRecord {
        ts_ms: now_ms,
        bid: logged.bid,
        request_id: req.id(),
        imp_id: imp.id.as_deref().unwrap_or_default(),
        campaign: &campaign.id,
        creative: &state.selector.creative(candidate.creative).id,
        user: req.personal_user_id().unwrap_or_default(),
        publisher: req.publisher_id().unwrap_or_default(),
        model: &model.version,
        spec: crate::events::record::spec_tag(&model.spec_sha256),
        pctr: p.pctr,
        pcvr: p.pcvr.unwrap_or(f32::NAN),
        price: logged.price,
        currency,
        value_usd: logged.value_usd,
        floor_usd: logged.floor_usd,
        auction: match logged.auction {
            Auction::First => 1,
            Auction::Second => 2,
            Auction::Fixed => 3,
        },
        propensity: logged.propensity as f32,
        cat: Cow::Owned(cat),
        num: Cow::Owned(num),
        agg_applied: seen.applied,
    }
}

/// Prometheus text of the aggregates' store.
fn render_aggregates(s: &crate::aggregates::StoreStats, out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "# HELP ctrbid_aggregates_entities Entities (users, campaigns, creatives, publishers, pairs) the aggregates hold, and their room.\n\
         # TYPE ctrbid_aggregates_entities gauge\n\
         ctrbid_aggregates_entities{{state=\"held\"}} {}\n\
         ctrbid_aggregates_entities{{state=\"capacity\"}} {}\n\
         # HELP ctrbid_aggregates_events_total Impressions, clicks and conversions counted in the aggregates.\n\
         # TYPE ctrbid_aggregates_events_total counter\nctrbid_aggregates_events_total {}\n\
         # HELP ctrbid_aggregates_evicted_total Entities evicted to make room for others.\n\
         # TYPE ctrbid_aggregates_evicted_total counter\nctrbid_aggregates_evicted_total {}\n\
         # HELP ctrbid_aggregates_waited_reads_total Bid-path reads that waited for a writer instead of retrying.\n\
         # TYPE ctrbid_aggregates_waited_reads_total counter\nctrbid_aggregates_waited_reads_total {}",
        s.entries, s.capacity, s.applied, s.evicted, s.waited_reads
    );
}

/// Whether bid `bid_id` explores (with probability `share`, a pure function of the id),
/// and if so which of the `n` candidates that reach their floor it takes.
fn explore_pick(share: f64, bid_id: u64, n: usize) -> Option<usize> {
    use crate::events::sink::mix;
    let draw = mix(bid_id ^ 0x6578_706c_6f72_6521) as f64 / 2f64.powi(64);
    (n > 1 && draw < share).then(|| (mix(bid_id ^ 0x7069_636b_6f6e_6521) % n as u64) as usize)
}

/// The macro a creative's markup (banner `adm`, VAST, native `link.url`) puts where its
/// click URL goes; the bidder fills in the bid's signed `/click` URL.
pub const CLICK_URL_MACRO: &str = "${CTRBID_CLICK_URL}";

/// `adm` with [`CLICK_URL_MACRO`] replaced by `click`; markup without it is left as is
/// (its clicks are then not tracked by ctrbid).
fn with_click_url<'a>(adm: Cow<'a, str>, click: &str) -> Cow<'a, str> {
    let macros = adm.matches(CLICK_URL_MACRO).count();
    if macros == 0 {
        return adm;
    }
    // One allocation of the final size (`str::replace` grows its string as it goes).
    let mut out = String::with_capacity(adm.len() - macros * CLICK_URL_MACRO.len() + macros * click.len());
    let mut rest: &str = &adm;
    while let Some(at) = rest.find(CLICK_URL_MACRO) {
        out.push_str(&rest[..at]);
        out.push_str(click);
        rest = &rest[at + CLICK_URL_MACRO.len()..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The floor that applies to a candidate, in USD (already converted in `ImpTerms`) and
/// as the request states it.
fn candidate_floor<'a>(imp: &'a openrtb::Imp<'a>, deal: Option<&'a openrtb::Deal<'a>>, usd: f64) -> Floor<'a> {
    let imp_floor = (imp.bidfloor.unwrap_or(0.0), imp.bidfloorcur.as_deref().unwrap_or(BASE));
    let native = match deal {
        Some(d) => match d.bidfloor {
            Some(f) => (f, d.bidfloorcur.as_deref().unwrap_or(BASE)),
            None => imp_floor,
        },
        None => imp_floor,
    };
    Floor { usd, native }
}

/// Markup of the ceiling's bid: as long as a served bid's markup and three signed notice
/// URLs (about 1.3 KB), so the ceiling writes as many bytes per answer as the bidder.
const CEILING_MARKUP: &str = concat!(
    "<a href=\\\"https://ads.example.com/click?c=ceiling\\\"><img src=\\\"https://cdn.example.com/ceiling/300x250.png\\\"",
    " width=\\\"300\\\" height=\\\"250\\\"></a>"
);
const CEILING_PADDING: usize = 1100;

/// The answer of `server.mode = "ceiling"`: one fixed bid on the first imp, echoing the
/// request and imp ids. The load test's upper bound: the same server, HTTP, parse,
/// validation and policy checks, none of selection, features, scoring or pricing.
fn ceiling_response(req: &openrtb::ValidRequest<'_>, currency: &str) -> Vec<u8> {
    let impid = req.imp.first().and_then(|i| i.id.as_deref()).unwrap_or("1");
    let mut out = Vec::with_capacity(1600);
    out.extend_from_slice(b"{\"id\":");
    serde_json::to_writer(&mut out, req.id()).unwrap_or_default();
    out.extend_from_slice(b",\"cur\":");
    serde_json::to_writer(&mut out, currency).unwrap_or_default();
    out.extend_from_slice(b",\"seatbid\":[{\"seat\":\"ceiling\",\"bid\":[{\"id\":\"1\",\"impid\":");
    serde_json::to_writer(&mut out, impid).unwrap_or_default();
    out.extend_from_slice(b",\"price\":0.01,\"crid\":\"ceiling\",\"adm\":\"");
    out.extend_from_slice(CEILING_MARKUP.as_bytes());
    out.resize(out.len() + CEILING_PADDING, b' ');
    out.extend_from_slice(b"\"}]}]}");
    out
}

#[derive(serde::Serialize)]
struct NoBidResponse<'a> {
    id: &'a str,
    nbr: u16,
    ext: NoBidExt,
}

#[derive(serde::Serialize)]
struct NoBidExt {
    reason: &'static str,
}

/// One warmed session per inference thread.
fn open_models(paths: &ModelPaths, model: &Path, extractor: &Extractor) -> anyhow::Result<Vec<Model>> {
    let source = ModelSource {
        path: model,
        spec: extractor.spec(),
        spec_path: &paths.spec,
        library: &paths.library,
        device: paths.device,
    };
    let mut models = Vec::with_capacity(paths.threads);
    for _ in 0..paths.threads {
        let mut m = Model::open(&source)?;
        warm_up(&mut m).with_context(|| format!("warming up {}", model.display()))?;
        models.push(m);
    }
    Ok(models)
}

/// The notice signer from config, or with a random per-process key.
fn notice_signer(cfg: &crate::config::NoticesConfig) -> Signer {
    let key = match &cfg.hmac_key {
        Some(k) => k.as_bytes().to_vec(),
        None => {
            eprintln!(
                "ctrbid: notices.hmac_key is not set: signing notice URLs with a random key; \
                 they will not verify after a restart or on another instance"
            );
            use rand::RngCore as _;
            let mut k = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut k);
            k
        }
    };
    Signer::new(key, cfg.previous_hmac_key.as_ref().map(|k| k.as_bytes().to_vec()))
}

/// Runs one row through a fresh session so the first request does not pay for ORT's
/// lazy initialisation. All-zero indices are valid: index 0 is the first field's row 0.
fn warm_up(model: &mut Model) -> anyhow::Result<()> {
    let (f, d) = (model.info.cat_width, model.info.num_width);
    let (mut pctr, mut pcvr) = (Vec::new(), Vec::new());
    for rows in [1usize, 64] {
        pctr.clear();
        pcvr.clear();
        model.score_heads(&vec![0; rows * f], &vec![0.0; rows * d], rows, &mut pctr, &mut pcvr)?;
        for (head, out) in [("pctr", &pctr), ("pcvr", &pcvr)] {
            anyhow::ensure!(
                out.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p)),
                "warm-up gave {head} probabilities outside [0, 1]: {out:?}"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exploration_takes_its_share_of_bids_and_picks_uniformly() {
        let start = 0xfeed_u64 << 16;
        let (mut explored, mut picks) = (0, [0usize; 4]);
        for bid in start..start + 40_000 {
            if let Some(k) = explore_pick(0.2, bid, 4) {
                explored += 1;
                picks[k] += 1;
            }
        }
        assert!((explored as f64 / 40_000.0 - 0.2).abs() < 0.01, "{explored}");
        for n in picks {
            assert!((n as f64 / explored as f64 - 0.25).abs() < 0.02, "{picks:?}");
        }
        assert_eq!(explore_pick(0.5, start, 1), None, "one candidate: nothing to explore");
        assert!((start..start + 1000).all(|b| explore_pick(0.0, b, 5).is_none()));
    }

    #[test]
    fn the_click_macro_is_filled_and_markup_without_it_is_left_alone() {
        let adm = Cow::Borrowed(r#"<a href="${CTRBID_CLICK_URL}"><img></a>"#);
        assert_eq!(with_click_url(adm, "http://b/click?b=1&s=2"), r#"<a href="http://b/click?b=1&s=2"><img></a>"#);
        assert!(matches!(with_click_url(Cow::Borrowed("<img>"), "x"), Cow::Borrowed("<img>")));
    }
}
