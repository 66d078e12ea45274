//! Configuration: one TOML file (`deploy/ctrbid.toml`), every field optional with the
//! default named here, overridable by `ctrbid serve` flags and `CTRBID_*` variables.
//!
//! Loading always ends in [`Config::validate`]; a bad value stops start-up with a
//! message that names the field.

use crate::scoring::Device;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
pub const DEFAULT_MODEL: &str = "models/default/model.onnx";
pub const DEFAULT_SPEC: &str = "models/feature_spec.json";
pub const DEFAULT_CATALOG: &str = "models/default/catalog.json";
pub const DEFAULT_MAX_BATCH_ROWS: usize = 512;
pub const DEFAULT_MAX_WAIT_US: u64 = 200;
pub const DEFAULT_ADAPTIVE_WAIT: bool = true;
/// `scoring.inline_max_busy`: see [`InlineScoring::Auto`] (loadtest/README.md).
pub const DEFAULT_INLINE_MAX_BUSY: f64 = 0.8;
/// `scoring.realtime_max_busy`: see [`crate::scoring::realtime`].
pub const DEFAULT_REALTIME_MAX_BUSY: f64 = 0.5;
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
pub const DEFAULT_INFERENCE_THREADS: usize = 1;
pub const DEFAULT_SCORE_CACHE_ENTRIES: usize = 0;
/// A score cache size for traffic that repeats impressions: 8 MB, about 0.75 s of rows at
/// 5,000 requests/s of 70 candidates (`make loadtest-cache`).
pub const SUGGESTED_SCORE_CACHE_ENTRIES: usize = 1 << 18;
pub const DEFAULT_SCORE_CACHE_TTL_MS: u64 = 30_000;
pub const DEFAULT_BUDGET_MS: u64 = 10;
pub const DEFAULT_NETWORK_ALLOWANCE_MS: u64 = 20;
pub const DEFAULT_TMAX_MS: u64 = 120;
pub const DEFAULT_MAX_CANDIDATES_PER_IMP: usize = 256;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub model: ModelConfig,
    pub scoring: ScoringConfig,
    pub bidding: BiddingConfig,
    pub admin: AdminConfig,
    pub notices: NoticesConfig,
    pub events: EventsConfig,
    pub pacing: crate::economics::PacingConfig,
    pub frequency_caps: crate::economics::config::FrequencyCapsConfig,
    pub shading: crate::economics::config::ShadingConfig,
    pub aggregates: AggregatesConfig,
    pub variants: VariantsConfig,
    pub fleet: crate::fleet::FleetConfig,
}

/// Model variants (`crate::variants`) and their judge (`crate::variants::judge`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VariantsConfig {
    /// The incumbent's name at start (default `main`): what its bids' notices and
    /// metrics are labelled with. Pods of one release share it; a canary release gets
    /// its own, so that its clicks, wherever they land, count for it.
    pub name: String,
    /// Whether the judge promotes and rolls back candidates by itself (default true);
    /// off, it only logs what it would do.
    pub judge: bool,
    /// Clicks a candidate (and the incumbent, since the candidate joined) needs before
    /// the judge's first look; it looks again at each doubling. Default 100.
    pub judge_min_clicks: u64,
    /// The two-sided z a decision needs. Default 3.5.
    pub judge_z: f64,
    /// Drift (`crate::variants::drift`): one request in this many has its rows and
    /// predictions counted against the model's training distribution; 0 measures
    /// nothing. Default 8.
    pub drift_sample_every: u64,
    /// Seconds of the auction clock per drift window; the index covers the current and
    /// the previous one. Default 86,400 (a day, so the daily cycle is not drift).
    pub drift_window_s: i64,
}

impl Default for VariantsConfig {
    fn default() -> Self {
        VariantsConfig {
            name: crate::variants::DEFAULT_NAME.into(),
            judge: true,
            judge_min_clicks: 100,
            judge_z: 3.5,
            drift_sample_every: 8,
            drift_window_s: 86_400,
        }
    }
}

/// The aggregates (`crate::aggregates`): decayed impression, click and conversion
/// counts per user, campaign, creative, publisher, publisher x campaign and user x ad
/// category, which specs with `agg.*` fields read.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatesConfig {
    /// Entities held at most (rounded up to a power of two; 64 bytes each, allocated at
    /// start when the served spec reads `agg.*` fields, not otherwise): beyond it the
    /// least seen lately make room. Default 1,048,576 (64 MiB).
    pub max_entries: usize,
}

impl Default for AggregatesConfig {
    fn default() -> Self {
        AggregatesConfig { max_entries: 1 << 20 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to serve on; port 0 picks a free port. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Tokio worker threads; 0 (the default) is one per CPU when the workers score
    /// (`scoring.inline` true or `"auto"`, the default: on 2 CPUs, 2 workers beside
    /// `scoring.threads` inference threads that take the batched overflow), and one per
    /// CPU less one per inference thread, at least one, when every request is batched
    /// ([`Config::tokio_workers`]).
    pub workers: usize,
    /// Largest request body accepted; larger gets 413. Default 262144 bytes.
    pub max_body_bytes: usize,
    /// Base of the notice and click URLs in bids (`nurl`, `burl`, `lurl`, the click URL),
    /// as exchanges and users reach this bidder. Default `http://<listen>`; required when
    /// `listen` is an unspecified address (0.0.0.0, [::]).
    pub notice_base_url: Option<String>,
    /// Add `ext.ctrbid` (pCTR, time, candidates) to every bid. Default false.
    pub debug_ext: bool,
    /// Seat name in `seatbid.seat`. Default `ctrbid`.
    pub seat: String,
    /// Open connections at most; further clients wait in the listen backlog. Default 4096.
    pub max_connections: usize,
    /// A request head must arrive in full within this of the connection opening or of
    /// the previous response; it is also how long an idle keep-alive connection stays
    /// open. Default 10000 ms.
    pub header_read_timeout_ms: u64,
    /// ... and the whole body within this, else 408. Default 2000 ms.
    pub body_read_timeout_ms: u64,
    /// On SIGTERM / Ctrl-C: readiness goes false at once, and the listener keeps
    /// accepting for this long so load balancers see it and stop sending. Default 0 ms
    /// (deploy/ctrbid.toml sets 2000).
    pub drain_delay_ms: u64,
    /// ... then the listener closes and requests in flight get this long to finish
    /// before the process exits. Default 5000 ms.
    pub grace_period_ms: u64,
    /// Answer a no-bid with 200 and `{"id": ..., "nbr": code}` instead of an empty 204.
    /// Default false.
    pub nbr_body: bool,
    /// `bid` (default), or `ceiling`: the load test's upper bound (see [`ServeMode`]).
    pub mode: ServeMode,
    /// The auction clock ([`crate::clock`]): `system` (default), or `simulation`, where
    /// every request and notice states its time in the `x-ctrbid-time` header
    /// (`ctrbid exchange`). Never `simulation` in production.
    pub clock: crate::clock::ClockMode,
}

/// What `POST /openrtb2/bid` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServeMode {
    /// The bidder: select, score, price.
    #[default]
    Bid,
    /// Read, parse, validate and policy-check (seats, taxonomy, supply chain, currency)
    /// the request as the bidder does, then answer one fixed bid of the same size as a
    /// real one: no selection, features, scoring or pricing. What this server could do
    /// if bidding cost nothing (the ceiling of `loadtest/report.py`).
    Ceiling,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.parse().expect("constant address parses"),
            workers: 0,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            notice_base_url: None,
            debug_ext: false,
            seat: "ctrbid".into(),
            max_connections: 4096,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 2000,
            drain_delay_ms: 0,
            grace_period_ms: 5000,
            nbr_body: false,
            mode: ServeMode::Bid,
            clock: crate::clock::ClockMode::System,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// ONNX model. Default `models/default/model.onnx`.
    pub path: PathBuf,
    /// Feature spec the model was built with. Default `models/feature_spec.json`.
    pub spec: PathBuf,
    /// Campaign catalog. Default `models/default/catalog.json`.
    pub catalog: PathBuf,
    /// libonnxruntime.so. Default: `ORT_DYLIB_PATH`, else `.ort/libonnxruntime.so`.
    pub onnxruntime_library: Option<PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: DEFAULT_MODEL.into(),
            spec: DEFAULT_SPEC.into(),
            catalog: DEFAULT_CATALOG.into(),
            onnxruntime_library: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// A batch closes at this many rows. Default 512.
    pub max_batch_rows: usize,
    /// ... or after this many microseconds from its first job. Default 200.
    pub max_wait_us: u64,
    /// ... or as soon as nothing is queued and no request is on its way to scoring.
    /// Default true (lower latency for about 1-4 % more CPU: loadtest/README.md).
    pub adaptive_wait: bool,
    /// Jobs waiting for an inference thread; beyond it requests are shed. Default 1024.
    pub queue_capacity: usize,
    /// Inference threads, each with its own ORT session. Default 1.
    pub threads: usize,
    /// Where a request's rows are scored ([`InlineScoring`]): `false` on the inference
    /// threads (micro-batched), `true` on the tokio worker that handles the request
    /// (`scoring::batcher`, Inline), `"auto"` inline while the workers are less busy than
    /// `inline_max_busy`, batched beyond. Default "auto" (loadtest/README.md).
    pub inline: InlineScoring,
    /// With `inline = "auto"`: the share of the last 20 ms the tokio workers may have
    /// spent running tasks for a request still to be scored inline. Default 0.8.
    pub inline_max_busy: f64,
    /// `cpu` or `cuda`. Default `cpu`.
    pub device: Device,
    /// Candidate rows whose scores are remembered (`scoring::cache`), at most; 0 turns
    /// the score cache off. Default 0: it pays only where impressions repeat (262,144, 8
    /// MB, is a size for that: [`SUGGESTED_SCORE_CACHE_ENTRIES`]).
    pub cache_entries: usize,
    /// How long a remembered score answers, in ms. Default 30000.
    pub cache_ttl_ms: u64,
    /// A CPU of its own for each inference thread, the other CPUs for the rest of the
    /// server (`cpus`; Linux). Default false: measured only on a busy shared box so far.
    pub pin_threads: bool,
    /// Where `serve` put the inference threads when `pin_threads` is on: inference
    /// thread `i` runs on CPU `inference_cpus[i]`. Set at start-up, never read from a
    /// file; empty: not pinned.
    #[serde(skip)]
    pub inference_cpus: Vec<usize>,
    /// Inference threads run under SCHED_FIFO (priority 1): runnable, they preempt the
    /// tokio workers and everything else of normal priority (`cpus`; Linux, needs
    /// CAP_SYS_NICE, else a start-up error). Default false (loadtest/README.md).
    pub realtime_inference: bool,
    /// With `realtime_inference`: an inference thread busy more than this share of the
    /// time (0 to 1) leaves SCHED_FIFO until it is busy less than half of it again
    /// (`scoring::realtime`); 1 keeps it real-time however busy.
    pub realtime_max_busy: f64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            max_wait_us: DEFAULT_MAX_WAIT_US,
            adaptive_wait: DEFAULT_ADAPTIVE_WAIT,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            threads: DEFAULT_INFERENCE_THREADS,
            inline: InlineScoring::Auto,
            inline_max_busy: DEFAULT_INLINE_MAX_BUSY,
            device: Device::Cpu,
            cache_entries: DEFAULT_SCORE_CACHE_ENTRIES,
            cache_ttl_ms: DEFAULT_SCORE_CACHE_TTL_MS,
            pin_threads: false,
            inference_cpus: Vec::new(),
            realtime_inference: false,
            realtime_max_busy: DEFAULT_REALTIME_MAX_BUSY,
        }
    }
}

/// Where a request's rows are scored (`scoring.inline`; `serve --inline-scoring`).
///
/// Inline scoring saves the hand-off to an inference thread (a queue, a wake-up, a
/// reply, and on a small box a third busy thread), which is most of the in-process
/// tail at moderate load; but it runs ONNX Runtime on the I/O worker, which then reads
/// nothing else meanwhile, and its batches are one request's rows. Near capacity the
/// batcher is better: it amortises calls and keeps the workers reading. `Auto` takes
/// each side where it wins (loadtest/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InlineScoring {
    /// Micro-batched on the inference threads.
    Off,
    /// On the worker that handles the request; no inference threads.
    On,
    /// Inline while the workers' busy share is under `scoring.inline_max_busy`, else
    /// micro-batched; both kinds of session are open. Batched only on CUDA and with
    /// `pin_threads` ([`Config::inline_scoring`]).
    #[default]
    Auto,
}

impl InlineScoring {
    /// Whether the tokio workers hold ORT sessions of their own.
    pub fn on_workers(self) -> bool {
        self != InlineScoring::Off
    }

    /// Whether there are inference threads.
    pub fn has_threads(self) -> bool {
        self != InlineScoring::On
    }
}

impl std::str::FromStr for InlineScoring {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "false" | "off" => Ok(InlineScoring::Off),
            "true" | "on" => Ok(InlineScoring::On),
            "auto" => Ok(InlineScoring::Auto),
            other => Err(format!("{other:?}: expected true, false or auto")),
        }
    }
}

impl<'de> Deserialize<'de> for InlineScoring {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Flag(bool),
            Word(String),
        }
        match Written::deserialize(d)? {
            Written::Flag(true) => Ok(InlineScoring::On),
            Written::Flag(false) => Ok(InlineScoring::Off),
            Written::Word(w) => w.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BiddingConfig {
    /// Most time spent inside the process on one request, in ms. Default 10.
    pub budget_ms: u64,
    /// Subtracted from `tmax` for the network round trip, in ms. Default 20.
    pub network_allowance_ms: u64,
    /// `tmax` assumed when a request has none, in ms. Default 120.
    pub default_tmax_ms: u64,
    /// Candidates scored per imp at most. Default 256.
    pub max_candidates_per_imp: usize,
    /// USD per unit of each other currency ctrbid accepts floors in and bids in, e.g.
    /// `{ EUR = 1.08 }`. Default: none (USD only).
    pub exchange_rates: std::collections::HashMap<String, f64>,
    /// First-price auctions (`at = 1`): bid this share of the value (never below the
    /// floor). Second-price auctions bid the value. Default 0.85.
    pub first_price_shading: f64,
    /// No bid (nbr 16) on requests without a complete `source.schain`. Default false.
    pub require_complete_schain: bool,
    /// Exploration: the share of bids (0 to 0.5) that go to a candidate drawn uniformly
    /// among those reaching their floor instead of the most valuable one, so that the
    /// event log, and the models retrained on it, see impressions the model rates low.
    /// Each bid record carries the propensity of its choice. Default 0.
    pub explore_share: f64,
}

impl Default for BiddingConfig {
    fn default() -> Self {
        BiddingConfig {
            budget_ms: DEFAULT_BUDGET_MS,
            network_allowance_ms: DEFAULT_NETWORK_ALLOWANCE_MS,
            default_tmax_ms: DEFAULT_TMAX_MS,
            max_candidates_per_imp: DEFAULT_MAX_CANDIDATES_PER_IMP,
            exchange_rates: std::collections::HashMap::new(),
            first_price_shading: 0.85,
            require_complete_schain: false,
            explore_share: 0.0,
        }
    }
}

/// The admin port: health, readiness, metrics, and model and catalog control.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener; port 0 picks a free port. Default `127.0.0.1:9090`.
    pub listen: SocketAddr,
    /// Bearer token for the control endpoints (`POST /admin/...`); also read from
    /// `CTRBID_ADMIN_TOKEN`. Without one, control endpoints answer 403. At least 16
    /// characters.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: DEFAULT_ADMIN_LISTEN.parse().expect("constant address parses"), token: None }
    }
}

/// Win, billing and loss notice URLs and their signatures.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoticesConfig {
    /// Key of the HMAC-SHA256 over each notice URL's terms, at least 32 bytes; also read
    /// from `CTRBID_NOTICE_KEY`. Every instance behind one load balancer needs the
    /// same key. Default: a random key per process (URLs do not outlive a restart).
    pub hmac_key: Option<String>,
    /// The key before the last rotation, still accepted when verifying.
    pub previous_hmac_key: Option<String>,
    /// How long a notice URL stays valid when the imp has no `exp`, seconds. Default 1800.
    pub ttl_s: u32,
    /// Bounds applied to an imp's `exp`, seconds. Defaults 60 and 7200.
    pub min_ttl_s: u32,
    pub max_ttl_s: u32,
    /// How long a click URL (in the creative's markup) stays valid after the bid,
    /// seconds. Default 86400 (a day).
    pub click_ttl_s: u32,
    /// A conversion is attributed to a click within this many seconds of it. Default
    /// 604800 (seven days).
    pub attribution_window_s: u32,
    /// Applied notices remembered (for replay protection) at most. Default 2,000,000.
    pub max_entries: usize,
}

impl Default for NoticesConfig {
    fn default() -> Self {
        NoticesConfig {
            hmac_key: None,
            previous_hmac_key: None,
            ttl_s: 1800,
            min_ttl_s: 60,
            max_ttl_s: 7200,
            click_ttl_s: 86_400,
            attribution_window_s: 604_800,
            max_entries: 2_000_000,
        }
    }
}

/// The event log (`crate::events`): every bid (sampled) and every notice, in segment
/// files on local disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Directory of the log's segment files (created if missing). Default: unset, the
    /// event log is off.
    pub dir: Option<PathBuf>,
    /// Share of bid records written, 0 to 1 (notice records are always written). Default:
    /// 1 with `server.clock = "simulation"`, 0.1 with the system clock.
    pub bid_sample: Option<f64>,
    /// A segment file is closed (and compressed) at this size, MiB. Default 64.
    pub segment_mb: u64,
    /// ... or at this age, seconds. Default 3600.
    pub segment_max_age_s: u64,
    /// Closed segments beyond this total are deleted, oldest first, GiB. Default 2.
    pub retention_gb: f64,
    /// Notice records waiting to be made durable are written together, one fsync for
    /// all, at most this often, µs. Default 0: a commit starts as soon as the last one
    /// ended, and the records that arrived during an fsync share the next (benches/README.md:
    /// on this disk an fsync takes about 0.25 ms, and a fixed 2 ms wait made durable
    /// appends 4 to 8 times slower).
    pub commit_interval_us: u64,
    /// Records waiting for the writer thread; beyond it bid records are dropped
    /// (counted) and notice records wait. Default 65536.
    pub queue_capacity: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            dir: None,
            bid_sample: None,
            segment_mb: 64,
            segment_max_age_s: 3600,
            retention_gb: 2.0,
            commit_interval_us: 0,
            queue_capacity: 65_536,
        }
    }
}

impl EventsConfig {
    /// `bid_sample`, or its default for the clock mode.
    pub fn bid_sample(&self, clock: crate::clock::ClockMode) -> f64 {
        self.bid_sample.unwrap_or(match clock {
            crate::clock::ClockMode::Simulation => 1.0,
            crate::clock::ClockMode::System => crate::events::sink::PRODUCTION_BID_SAMPLE,
        })
    }
}

impl Config {
    /// Reads a TOML file; unknown keys are errors that name the key.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    /// The tokio worker threads to start: `server.workers`, or when that is 0 the CPUs
    /// less the inference threads (at least one). Inference threads run ONNX Runtime
    /// flat out while a batch lasts; a worker for every CPU as well would have them take
    /// turns on the same cores. On 2 cores one worker had the same highest sustainable
    /// rate as two and a lower p99 (loadtest/README.md).
    /// With inline scoring on or auto a worker per CPU: inline scoring runs on the
    /// workers, and in auto mode the inference threads work when the workers are busy.
    pub fn tokio_workers(&self) -> usize {
        if self.server.workers > 0 {
            return self.server.workers;
        }
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let inference = if self.inline_scoring().on_workers() { 0 } else { self.scoring.threads };
        cpus.saturating_sub(inference).max(1)
    }

    /// Where rows are scored: `scoring.inline`, except that auto means batched on CUDA
    /// (where batches across requests are what pays) and with `pin_threads` (which
    /// gives the inference threads CPUs of their own, the rest to the workers).
    pub fn inline_scoring(&self) -> InlineScoring {
        match self.scoring.inline {
            InlineScoring::Auto if self.scoring.device == Device::Cuda || self.scoring.pin_threads => {
                InlineScoring::Off
            }
            chosen => chosen,
        }
    }

    /// Inference threads to start: `scoring.threads`, none with inline scoring on.
    pub fn inference_threads(&self) -> usize {
        if self.inline_scoring().has_threads() {
            self.scoring.threads
        } else {
            0
        }
    }

    /// ORT sessions to open: the inference threads' first, then with inline scoring
    /// one per tokio worker (a worker scores one request at a time, so each always
    /// finds one free).
    pub fn scoring_sessions(&self) -> usize {
        let inline = if self.inline_scoring().on_workers() { self.tokio_workers() } else { 0 };
        self.inference_threads() + inline
    }

    /// Checks every field; the error names the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let check = |ok: bool, field: &str, why: &str| {
            if ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!("config: {field} {why}"))
            }
        };
        check(self.server.max_body_bytes >= 1024, "server.max_body_bytes", "must be at least 1024")?;
        self.pacing.validate()?;
        self.frequency_caps.validate()?;
        self.shading.validate()?;
        self.fleet.validate()?;
        check(
            self.fleet.backend == crate::fleet::Backend::Memory || self.notices.hmac_key.is_some(),
            "notices.hmac_key",
            "must be set with fleet.backend = \"redis\": every instance must verify the others' notice URLs",
        )?;
        check(!self.server.seat.is_empty(), "server.seat", "must not be empty")?;
        check(self.server.max_connections >= 1, "server.max_connections", "must be at least 1")?;
        check(self.server.header_read_timeout_ms >= 1, "server.header_read_timeout_ms", "must be at least 1")?;
        check(self.server.body_read_timeout_ms >= 1, "server.body_read_timeout_ms", "must be at least 1")?;
        check(self.scoring.max_batch_rows >= 1, "scoring.max_batch_rows", "must be at least 1")?;
        check(self.scoring.max_wait_us <= 10_000, "scoring.max_wait_us", "must be at most 10000 (10 ms)")?;
        check(self.scoring.queue_capacity >= 1, "scoring.queue_capacity", "must be at least 1")?;
        check((1..=64).contains(&self.scoring.threads), "scoring.threads", "must be between 1 and 64")?;
        check(
            !(self.scoring.inline == InlineScoring::On && self.scoring.pin_threads),
            "scoring.pin_threads",
            "places inference threads, and scoring.inline = true has none",
        )?;
        check(
            !(self.scoring.inline == InlineScoring::On && self.scoring.realtime_inference),
            "scoring.realtime_inference",
            "applies to inference threads, and scoring.inline = true has none",
        )?;
        check(
            self.scoring.realtime_max_busy > 0.0 && self.scoring.realtime_max_busy <= 1.0,
            "scoring.realtime_max_busy",
            "must be in (0, 1]",
        )?;
        check(
            self.scoring.inline_max_busy > 0.0 && self.scoring.inline_max_busy <= 1.0,
            "scoring.inline_max_busy",
            "must be in (0, 1]",
        )?;
        check(
            self.scoring.cache_entries != 1 && self.scoring.cache_entries <= 1 << 26,
            "scoring.cache_entries",
            "must be 0 (off), or between 2 and 67108864 (2 GB)",
        )?;
        check(
            (1..=3_600_000).contains(&self.scoring.cache_ttl_ms),
            "scoring.cache_ttl_ms",
            "must be between 1 and 3600000 (an hour)",
        )?;
        check(self.bidding.budget_ms >= 1, "bidding.budget_ms", "must be at least 1")?;
        check(self.bidding.default_tmax_ms >= 1, "bidding.default_tmax_ms", "must be at least 1")?;
        check(self.bidding.max_candidates_per_imp >= 1, "bidding.max_candidates_per_imp", "must be at least 1")?;
        crate::currency::Rates::new(&self.bidding.exchange_rates).map_err(|e| anyhow::anyhow!("config: {e}"))?;
        let shading = self.bidding.first_price_shading;
        check(shading > 0.0 && shading <= 1.0, "bidding.first_price_shading", "must be in (0, 1]")?;
        let explore = self.bidding.explore_share;
        check((0.0..=0.5).contains(&explore), "bidding.explore_share", "must be between 0 and 0.5")?;
        if let Some(token) = &self.admin.token {
            check(token.len() >= 16, "admin.token", "must be at least 16 characters")?;
        }
        for (field, key) in [
            ("notices.hmac_key", &self.notices.hmac_key),
            ("notices.previous_hmac_key", &self.notices.previous_hmac_key),
        ] {
            if let Some(key) = key {
                check(key.len() >= 32, field, "must be at least 32 bytes")?;
            }
        }
        let n = &self.notices;
        check(n.ttl_s >= 1, "notices.ttl_s", "must be at least 1")?;
        check(n.min_ttl_s <= n.max_ttl_s, "notices.min_ttl_s", "must not exceed notices.max_ttl_s")?;
        check(n.max_entries >= 1, "notices.max_entries", "must be at least 1")?;
        check(
            (4..=1 << 30).contains(&self.aggregates.max_entries),
            "aggregates.max_entries",
            "must be from 4 to 1073741824",
        )?;
        check(crate::variants::valid_name(&self.variants.name), "variants.name", "must be 1 to 24 of a-z, 0-9 and _")?;
        check(self.variants.judge_min_clicks >= 1, "variants.judge_min_clicks", "must be at least 1")?;
        check(self.variants.drift_window_s >= 1, "variants.drift_window_s", "must be at least 1")?;
        check(
            self.variants.judge_z.is_finite() && self.variants.judge_z >= 1.0,
            "variants.judge_z",
            "must be a number of at least 1",
        )?;
        check(n.click_ttl_s >= 1, "notices.click_ttl_s", "must be at least 1")?;
        check(n.attribution_window_s >= 1, "notices.attribution_window_s", "must be at least 1")?;
        let e = &self.events;
        if let Some(share) = e.bid_sample {
            check((0.0..=1.0).contains(&share), "events.bid_sample", "must be between 0 and 1")?;
        }
        check(e.segment_mb >= 1, "events.segment_mb", "must be at least 1")?;
        check(e.segment_max_age_s >= 1, "events.segment_max_age_s", "must be at least 1")?;
        check(e.retention_gb > 0.0 && e.retention_gb.is_finite(), "events.retention_gb", "must be positive")?;
        check(e.commit_interval_us <= 1_000_000, "events.commit_interval_us", "must be at most 1000000 (1 s)")?;
        check(e.queue_capacity >= 1, "events.queue_capacity", "must be at least 1")?;
        match &self.server.notice_base_url {
            Some(url) => check(
                url.starts_with("http://") || url.starts_with("https://"),
                "server.notice_base_url",
                "must start with http:// or https://",
            )?,
            // The default base is the listen address, and an unspecified one (0.0.0.0,
            // [::]) would sign every bid with notice URLs no exchange can call.
            None => check(
                !self.server.listen.ip().is_unspecified(),
                "server.notice_base_url",
                &format!(
                    "must be set when server.listen ({}) is an unspecified address: notice and click URLs \
                     would name http://{}, which no exchange can call; set it (or --notice-base-url, \
                     CTRBID_NOTICE_BASE_URL) to where exchanges reach this bidder, e.g. http://bidder.example:{}",
                    self.server.listen,
                    self.server.listen,
                    self.server.listen.port()
                ),
            )?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_loads_and_validates() {
        let c = Config::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ctrbid.toml"))).unwrap();
        c.validate().unwrap();
        assert_eq!(c.model.path, Path::new(DEFAULT_MODEL));
    }

    #[test]
    fn inline_scoring_has_a_session_per_worker_and_no_threads_to_pin() {
        let c: Config = toml::from_str("[server]\nworkers = 3\n[scoring]\ninline = true\nthreads = 5\n").unwrap();
        c.validate().unwrap();
        assert_eq!((c.tokio_workers(), c.scoring_sessions()), (3, 3));
        let c: Config = toml::from_str("[scoring]\ninline = true\n").unwrap();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        assert_eq!((c.tokio_workers(), c.scoring_sessions()), (cpus, cpus));
        let off: Config = toml::from_str("[scoring]\ninline = false\n").unwrap();
        assert_eq!(off.scoring_sessions(), off.scoring.threads);
        let c: Config = toml::from_str("[scoring]\ninline = true\npin_threads = true\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("scoring.pin_threads"));
        let c: Config = toml::from_str("[scoring]\ninline = true\nrealtime_inference = true\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("scoring.realtime_inference"));
        let c: Config = toml::from_str("[scoring]\nrealtime_inference = true\n").unwrap();
        assert!(c.validate().is_ok() && c.scoring.realtime_inference && !Config::default().scoring.realtime_inference);
        assert_eq!(c.scoring.realtime_max_busy, 0.5, "the documented default");
        for busy in ["0.0", "-1", "1.01"] {
            let c: Config = toml::from_str(&format!("[scoring]\nrealtime_max_busy = {busy}\n")).unwrap();
            assert!(c.validate().unwrap_err().to_string().contains("scoring.realtime_max_busy"), "{busy}");
        }
    }

    #[test]
    fn inline_auto_opens_the_threads_sessions_then_one_per_worker() {
        let c: Config = toml::from_str("[server]\nworkers = 2\n[scoring]\ninline = \"auto\"\nthreads = 1\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.scoring.inline, InlineScoring::Auto);
        assert_eq!((c.tokio_workers(), c.inference_threads(), c.scoring_sessions()), (2, 1, 3));
        assert_eq!(c.scoring.inline_max_busy, 0.8, "the documented default");
        let c: Config = toml::from_str("[scoring]\ninline = false\n").unwrap();
        assert_eq!((c.scoring.inline, c.inference_threads()), (InlineScoring::Off, 1));
        for (text, want) in [("on", InlineScoring::On), ("off", InlineScoring::Off), ("auto", InlineScoring::Auto)] {
            assert_eq!(text.parse::<InlineScoring>().unwrap(), want);
        }
        let e = toml::from_str::<Config>("[scoring]\ninline = \"sometimes\"\n").unwrap_err().to_string();
        assert!(e.contains("expected true, false or auto"), "{e}");
        for busy in ["0.0", "1.5"] {
            let c: Config = toml::from_str(&format!("[scoring]\ninline_max_busy = {busy}\n")).unwrap();
            assert!(c.validate().unwrap_err().to_string().contains("scoring.inline_max_busy"));
        }
        // Auto is batched where batching is the point: on CUDA, and with pinned inference threads.
        let c: Config = toml::from_str("[scoring]\ninline = \"auto\"\npin_threads = true\n").unwrap();
        c.validate().unwrap();
        assert_eq!((c.inline_scoring(), c.scoring_sessions()), (InlineScoring::Off, 1));
        let c: Config = toml::from_str("[scoring]\ndevice = \"cuda\"\n").unwrap();
        assert_eq!((c.scoring.inline, c.inline_scoring()), (InlineScoring::Auto, InlineScoring::Off));
    }

    /// The defaults an empty file gets are the values README.md and the comments of
    /// `deploy/ctrbid.toml` give: written here as literals, not as the constants they
    /// are built from, so changing a constant fails this test until the docs follow.
    #[test]
    fn defaults_are_the_documented_values() {
        let c: Config = toml::from_str("").unwrap();
        c.validate().unwrap();
        let s = &c.server;
        assert_eq!((s.listen.to_string().as_str(), s.workers, s.max_body_bytes), ("127.0.0.1:8080", 0, 262_144));
        assert_eq!((s.header_read_timeout_ms, s.body_read_timeout_ms, s.grace_period_ms), (10_000, 2000, 5000));
        assert_eq!((s.max_connections, s.seat.as_str(), s.clock), (4096, "ctrbid", crate::clock::ClockMode::System));
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9090");
        let m = &c.model;
        assert_eq!(m.path, Path::new("models/default/model.onnx"));
        assert_eq!(m.spec, Path::new("models/feature_spec.json"));
        assert_eq!(m.catalog, Path::new("models/default/catalog.json"));
        let k = &c.scoring;
        assert_eq!((k.max_batch_rows, k.max_wait_us, k.adaptive_wait), (512, 200, true));
        assert_eq!((k.queue_capacity, k.threads, k.inline), (1024, 1, InlineScoring::Auto));
        assert_eq!((k.inline_max_busy, k.realtime_max_busy), (0.8, 0.5));
        assert_eq!((k.cache_entries, k.cache_ttl_ms, k.pin_threads, k.realtime_inference), (0, 30_000, false, false));
        let b = &c.bidding;
        assert_eq!((b.budget_ms, b.network_allowance_ms, b.default_tmax_ms), (10, 20, 120));
        assert_eq!((b.max_candidates_per_imp, b.first_price_shading), (256, 0.85));
    }

    #[test]
    fn pin_threads_is_read_but_where_the_threads_went_is_not() {
        let c: Config = toml::from_str("[scoring]\npin_threads = true\n").unwrap();
        assert!(c.scoring.pin_threads && c.scoring.inference_cpus.is_empty());
        assert!(!Config::default().scoring.pin_threads);
        let err = toml::from_str::<Config>("[scoring]\ninference_cpus = [1]\n").unwrap_err().to_string();
        assert!(err.contains("inference_cpus"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        let err = toml::from_str::<Config>("[scoring]\nmax_batch_row = 3\n").unwrap_err().to_string();
        assert!(err.contains("max_batch_row"), "{err}");
        let c: Config = toml::from_str("[scoring]\nthreads = 0\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("scoring.threads"));
        for bad in ["cache_entries = 1", "cache_entries = 100000000000", "cache_ttl_ms = 0"] {
            let c: Config = toml::from_str(&format!("[scoring]\n{bad}\n")).unwrap();
            let field = bad.split(' ').next().unwrap();
            assert!(c.validate().unwrap_err().to_string().contains(&format!("scoring.{field}")), "{bad}");
        }
        let c: Config = toml::from_str("[scoring]\ncache_entries = 262144\ncache_ttl_ms = 500\n").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn tokio_workers_leave_the_inference_threads_their_cores() {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let c: Config = toml::from_str("[scoring]\ninline = false\nthreads = 1\n").unwrap();
        assert_eq!(c.tokio_workers(), (cpus - 1).max(1));
        let c: Config = toml::from_str("[scoring]\ninline = false\nthreads = 64\n").unwrap();
        assert_eq!(c.tokio_workers(), 1, "at least one");
        // Auto (the default) scores on the workers too: one per CPU.
        assert_eq!(Config::default().tokio_workers(), cpus);
        let c: Config = toml::from_str("[server]\nworkers = 3\n[scoring]\nthreads = 2\n").unwrap();
        assert_eq!(c.tokio_workers(), 3, "a set count is kept");
    }
}
