//! `ctrbid simulate`: a synthetic ad exchange with a known ground truth, the data the
//! default model is trained and judged on.
//!
//! One run writes four files into `--out`:
//! - `catalog.json`: the campaigns and creatives ctrbid bids with ([`Catalog`], version 1);
//! - `requests.jsonl`: one OpenRTB 2.6 bid request per line, in time order;
//! - `impressions.jsonl`: one line per impression, in time order, with the request's
//!   timestamp and line number, the creative shown, the click and conversion drawn, and
//!   the true probabilities (`pctr`, `pcvr`) they were drawn from;
//! - `summary.json`: counts, rates, eligibility and the oracle AUC / log loss.
//!
//! With `--compress gzip` the two logs are `requests.jsonl.gz` and `impressions.jsonl.gz`
//! ([`crate::jsonl`]), the same bytes once inflated; `ctrbid features` reads either form.
//!
//! The logging policy shows, for every imp, one creative drawn uniformly from those
//! eligible under the bidder's own candidate rules ([`eligible`]); imps with none get
//! no impression. Requests are drawn until `--impressions` impressions are written (the
//! last request may add one or two more).
//!
//! **Output is a pure function of the flags**: every draw comes from a ChaCha8 stream
//! seeded from `--seed` (one stream per part: catalog, campaign goals, world, truth,
//! traffic, outcomes, so for instance the catalog does not change with `--impressions`,
//! and which campaigns are CPA moves nothing but the goal fields), nothing
//! iterates a hash map, and the summary holds no wall-clock figure.
//!
//! Parts: [`vocab`] (fixed tables), [`ads`] (catalog), [`world`] (publishers, users),
//! [`clock`] (diurnal time), [`requests`] (drawing and writing requests), [`eligible`]
//! (candidate rules), [`truth`] (the hidden click model), [`stats`] (oracle metrics),
//! [`market`] (the same world as a live exchange's supply, for `ctrbid exchange`).

mod ads;
mod clock;
pub mod eligible;
pub mod market;
mod requests;
mod sample;
mod stats;
mod truth;
mod vocab;
mod world;

#[cfg(test)]
mod tests;

use crate::catalog::Catalog;
use crate::jsonl::{Compression, LogWriter};
use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use stats::{auc, logloss};

const DEFAULT_SEED: u64 = 42;
const DEFAULT_IMPRESSIONS: u64 = 1_000_000;
const DEFAULT_CAMPAIGNS: usize = 1000;
const DEFAULT_CREATIVES: usize = 3000;
const DEFAULT_PUBLISHERS: usize = 5000;
const DEFAULT_USERS: usize = 100_000;
/// 2026-01-05T00:00Z, a Monday.
const DEFAULT_START_TS: i64 = 1_767_571_200;
const DEFAULT_DAYS: u32 = 14;

/// Seeded streams, one per part of the simulation.
const STREAM_ADS: u64 = 1;
const STREAM_WORLD: u64 = 2;
const STREAM_TRUTH: u64 = 3;
const STREAM_TRAFFIC: u64 = 4;
const STREAM_OUTCOMES: u64 = 5;
/// Which campaigns pay per conversion (added after the others: drawing it from a stream
/// of its own left every other file as it was).
const STREAM_GOALS: u64 = 6;

/// Output buffer per file.
const WRITE_BUFFER: usize = 1 << 20;

/// Options of `ctrbid simulate`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Seed of every random draw: the same flags give byte-identical files.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Directory to write catalog.json, requests.jsonl, impressions.jsonl and summary.json into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of impressions to log (the last request may add one or two more).
    #[arg(long, default_value_t = DEFAULT_IMPRESSIONS)]
    pub impressions: u64,
    /// Number of campaigns in the catalog.
    #[arg(long, default_value_t = DEFAULT_CAMPAIGNS)]
    pub campaigns: usize,
    /// Number of creatives in the catalog (at least one per campaign).
    #[arg(long, default_value_t = DEFAULT_CREATIVES)]
    pub creatives: usize,
    /// Number of publishers (sites and apps), at least 3.
    #[arg(long, default_value_t = DEFAULT_PUBLISHERS)]
    pub publishers: usize,
    /// Number of distinct users.
    #[arg(long, default_value_t = DEFAULT_USERS)]
    pub users: usize,
    /// Start of the log, Unix seconds.
    #[arg(long, default_value_t = DEFAULT_START_TS)]
    pub start_ts: i64,
    /// Days the log spans.
    #[arg(long, default_value_t = DEFAULT_DAYS)]
    pub days: u32,
    /// Write the request and impression logs as they are, or gzip them (`.gz`, about a
    /// fifth of the size) on a thread of their own.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compress: Compression,
}

/// What a simulation is made of: [`Opts`] without the output directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    pub seed: u64,
    pub impressions: u64,
    pub campaigns: usize,
    pub creatives: usize,
    pub publishers: usize,
    pub users: usize,
    /// Unix seconds.
    pub start_ts: i64,
    pub days: u32,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: DEFAULT_SEED,
            impressions: DEFAULT_IMPRESSIONS,
            campaigns: DEFAULT_CAMPAIGNS,
            creatives: DEFAULT_CREATIVES,
            publishers: DEFAULT_PUBLISHERS,
            users: DEFAULT_USERS,
            start_ts: DEFAULT_START_TS,
            days: DEFAULT_DAYS,
        }
    }
}

impl From<&Opts> for SimConfig {
    fn from(o: &Opts) -> SimConfig {
        SimConfig {
            seed: o.seed,
            impressions: o.impressions,
            campaigns: o.campaigns,
            creatives: o.creatives,
            publishers: o.publishers,
            users: o.users,
            start_ts: o.start_ts,
            days: o.days,
        }
    }
}

impl SimConfig {
    /// Sizes the generators need; each message names the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.campaigns >= 1, "--campaigns must be at least 1");
        anyhow::ensure!(
            self.creatives >= self.campaigns,
            "--creatives must be at least --campaigns (one per campaign)"
        );
        anyhow::ensure!(self.publishers >= 3, "--publishers must be at least 3 (a site, an app and a CTV app)");
        anyhow::ensure!(self.users >= 1, "--users must be at least 1");
        anyhow::ensure!((1..=3650).contains(&self.days), "--days must be between 1 and 3650");
        anyhow::ensure!(
            self.campaigns <= u32::MAX as usize && self.users <= u32::MAX as usize,
            "sizes must fit in u32"
        );
        Ok(())
    }
}

/// One line of `impressions.jsonl`, as readers parse it (the simulator writes the line
/// directly, see [`simulate`]).
#[derive(Debug, Clone, Deserialize)]
pub struct ImpressionRecord {
    /// Unix seconds of the auction.
    pub ts: i64,
    /// Line of the request in `requests.jsonl`, from 0.
    pub line: u64,
    pub request_id: String,
    pub imp_id: String,
    pub crid: String,
    pub click: u8,
    pub conv: u8,
    /// The true click and conversion probabilities the outcomes were drawn from.
    pub pctr: f64,
    pub pcvr: f64,
}

/// What `summary.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub config: SimConfig,
    pub campaigns: usize,
    pub creatives: usize,
    pub advertisers: usize,
    pub requests: u64,
    /// Imps over all requests, with or without an impression.
    pub imps: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub conversions: u64,
    /// Mean true click probability over impressions.
    pub mean_pctr: f64,
    /// Observed clicks per impression.
    pub ctr: f64,
    /// Mean true conversion probability over clicked impressions.
    pub mean_pcvr_clicked: f64,
    /// Observed conversions per click.
    pub cvr: f64,
    /// Mean number of eligible creatives per imp (imps without any count as 0).
    pub mean_eligible_per_imp: f64,
    /// Share of imps with no eligible creative (they get no impression).
    pub no_eligible_share: f64,
    /// Share of requests from sites (the rest from apps).
    pub site_share: f64,
    /// AUC and log loss of the true pctr against the drawn clicks: the ceiling for models.
    pub oracle_auc: f64,
    pub oracle_logloss: f64,
    /// Timestamps of the first and last request (Unix seconds).
    pub first_ts: i64,
    pub last_ts: i64,
}

/// Runs `ctrbid simulate`: writes the files and prints the summary.
pub fn run(opts: Opts) -> anyhow::Result<()> {
    let cfg = SimConfig::from(&opts);
    let started = Instant::now();
    let summary = simulate_to(&cfg, &opts.out, opts.compress)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    eprintln!(
        "simulate: {} requests, {} impressions, CTR {:.4}, mean eligible creatives per imp {:.1}, oracle AUC {:.4}, in {:.1} s -> {}",
        summary.requests,
        summary.impressions,
        summary.ctr,
        summary.mean_eligible_per_imp,
        summary.oracle_auc,
        started.elapsed().as_secs_f64(),
        opts.out.display()
    );
    Ok(())
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The catalog a simulation with `cfg` writes (only `seed`, `campaigns` and `creatives`
/// matter).
pub fn generate_catalog(cfg: &SimConfig) -> anyhow::Result<Catalog> {
    cfg.validate()?;
    Ok(generate_ads(cfg).catalog)
}

/// Campaigns and creatives, then their goals (each from its own stream).
fn generate_ads(cfg: &SimConfig) -> ads::Ads {
    let mut ads = ads::generate(&mut stream(cfg.seed, STREAM_ADS), cfg.campaigns, cfg.creatives);
    ads::assign_goals(&mut stream(cfg.seed, STREAM_GOALS), &mut ads.catalog);
    ads
}

fn create(dir: &Path, name: &str) -> anyhow::Result<BufWriter<File>> {
    let path = dir.join(name);
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(BufWriter::with_capacity(WRITE_BUFFER, file))
}

/// Runs a simulation and writes its four files into `out_dir` (created if missing),
/// the logs plain.
pub fn simulate(cfg: &SimConfig, out_dir: &Path) -> anyhow::Result<Summary> {
    simulate_to(cfg, out_dir, Compression::None)
}

/// [`simulate`], the request and impression logs written with `compression`.
pub fn simulate_to(cfg: &SimConfig, out_dir: &Path, compression: Compression) -> anyhow::Result<Summary> {
    cfg.validate()?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let ads = generate_ads(cfg);
    let mut out = create(out_dir, "catalog.json")?;
    serde_json::to_writer_pretty(&mut out, &ads.catalog)?;
    out.write_all(b"\n")?;
    out.flush()?;

    let world = world::World::generate(&mut stream(cfg.seed, STREAM_WORLD), cfg.publishers, cfg.users);
    let truth = truth::Truth::generate(&mut stream(cfg.seed, STREAM_TRUTH), &world, &ads);
    let index = eligible::Index::new(&ads);
    let mut clock = clock::Clock::new(cfg.start_ts, cfg.days, &world.zones);
    let mut traffic_rng = stream(cfg.seed, STREAM_TRAFFIC);
    let mut traffic = requests::Traffic::new(&world, ads.advertisers.len(), traffic_rng.gen());
    let mut outcome_rng = stream(cfg.seed, STREAM_OUTCOMES);
    let native_requests: Vec<String> =
        vocab::NATIVE_REQUESTS.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
    let adomains: Vec<&str> = ads.advertisers.iter().map(|a| a.domain.as_str()).collect();

    let mut requests_out = LogWriter::create(&out_dir.join("requests.jsonl"), compression)?;
    let mut impressions_out = LogWriter::create(&out_dir.join("impressions.jsonl"), compression)?;
    let mut tally = stats::Tally { outcomes: Vec::with_capacity(cfg.impressions as usize + 2), ..Default::default() };
    let mut req = requests::Request::default();
    let mut line = Vec::with_capacity(4096);
    let mut eligible = Vec::new();
    let (mut first_ts, mut last_ts) = (None, cfg.start_ts);
    while tally.impressions() < cfg.impressions {
        anyhow::ensure!(
            tally.requests < 100_000 || tally.impressions() > 0,
            "no imp of the first 100000 requests had an eligible creative"
        );
        let ts = clock.at(tally.impressions() as f64 / cfg.impressions as f64);
        traffic.fill(&world, &mut traffic_rng, tally.requests, ts, &mut req);
        first_ts.get_or_insert(ts);
        last_ts = ts;
        line.clear();
        requests::write_request(&req, &world, &adomains, &native_requests, &mut line);
        line.push(b'\n');
        requests_out.write_all(&line)?;
        tally.requests += 1;
        let publisher = &world.publishers[req.publisher as usize];
        tally.site_requests += u64::from(publisher.kind == world::Inventory::Site);

        let mut scene = market::scene(&world, &req);
        for (i, imp) in req.imps.iter().enumerate() {
            index.collect(&world, &req, imp, &mut eligible);
            tally.imps += 1;
            tally.eligible += eligible.len() as u64;
            if eligible.is_empty() {
                tally.no_eligible += 1;
                continue;
            }
            let creative = eligible[outcome_rng.gen_range(0..eligible.len())];
            scene.pos = match imp.media {
                requests::Media::Banner { pos, .. } => Some(pos),
                _ => None,
            };
            let pctr = truth.pctr(&world, &ads, &scene, creative);
            let pcvr = truth.pcvr(&world, &ads, &scene, creative);
            let click = outcome_rng.gen::<f64>() < pctr;
            let conv = click && outcome_rng.gen::<f64>() < pcvr;
            line.clear();
            // Writing into a Vec<u8> cannot fail; `{}` on f64 prints the shortest
            // representation that reads back to the same value.
            let _ = writeln!(
                line,
                r#"{{"ts":{ts},"line":{},"request_id":"{}","imp_id":"{}","crid":"{}","click":{},"conv":{},"pctr":{pctr},"pcvr":{pcvr}}}"#,
                req.seq,
                req.id,
                i + 1,
                ads.catalog.creatives[creative as usize].id,
                u8::from(click),
                u8::from(conv),
            );
            impressions_out.write_all(&line)?;
            tally.record(pctr, pcvr, click, conv);
        }
    }
    requests_out.finish()?;
    impressions_out.finish()?;

    let summary = summarize(cfg, &ads, &mut tally, first_ts.unwrap_or(cfg.start_ts), last_ts);
    let mut out = create(out_dir, "summary.json")?;
    serde_json::to_writer_pretty(&mut out, &summary)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(summary)
}

fn summarize(cfg: &SimConfig, ads: &ads::Ads, tally: &mut stats::Tally, first_ts: i64, last_ts: i64) -> Summary {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let impressions = tally.impressions();
    Summary {
        config: cfg.clone(),
        campaigns: ads.catalog.campaigns.len(),
        creatives: ads.catalog.creatives.len(),
        advertisers: ads.advertisers.len(),
        requests: tally.requests,
        imps: tally.imps,
        impressions,
        clicks: tally.clicks,
        conversions: tally.conversions,
        mean_pctr: ratio(tally.pctr_sum, impressions as f64),
        ctr: ratio(tally.clicks as f64, impressions as f64),
        mean_pcvr_clicked: ratio(tally.pcvr_clicked_sum, tally.clicks as f64),
        cvr: ratio(tally.conversions as f64, tally.clicks as f64),
        mean_eligible_per_imp: ratio(tally.eligible as f64, tally.imps as f64),
        no_eligible_share: ratio(tally.no_eligible as f64, tally.imps as f64),
        site_share: ratio(tally.site_requests as f64, tally.requests as f64),
        oracle_logloss: stats::logloss(&tally.outcomes),
        oracle_auc: stats::auc(&mut tally.outcomes),
        first_ts,
        last_ts,
    }
}
