//! The command line of `ctrbid exchange`, its library entry point ([`exchange`]) and
//! the start-up check that every bidder runs on the simulation clock.

use super::client::Client;
use super::engine::{self, Ctx, Settings};
use super::landscape::{Landscape, LandscapeParams, DEFAULT_MEDIAN, DEFAULT_SIGMA};
use super::ledger::{self, Record};
use super::queue::Queue;
use super::{markdown, report};
use crate::simulate::market::Market;
use crate::simulate::SimConfig;
use anyhow::Context as _;
use bytes::Bytes;
use http::Method;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_REQUESTS: u64 = 100_000;
const DEFAULT_RATE: f64 = 1000.0;
const DEFAULT_RENDER_RATE: f64 = 0.95;
const DEFAULT_CLICK_DELAY_S: f64 = 30.0;
const DEFAULT_CONV_DELAY_S: f64 = 7200.0;
const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// How long the start-up check waits for each bidder.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// Options of `ctrbid exchange`.
#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// A bidder's base URL (http://host:port), running with server.clock = "simulation"; repeat for several.
    /// A comma-separated list is one bidder's instances behind a load balancer: requests
    /// go round robin, each notice, click and conversion to an instance drawn at random.
    #[arg(long = "bidder", required = true)]
    pub bidders: Vec<String>,
    /// Share of the billing notices a fleet applied that the exchange sends again, to
    /// another instance than the first: each should be refused (`replays` in the report).
    #[arg(long, default_value_t = 0.0)]
    pub replay_bills: f64,
    /// Directory for ledger.jsonl, report.json, report.md and timeseries.json (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the world (as `ctrbid simulate --seed`) and of every draw of the exchange.
    #[arg(long, default_value_t = SimConfig::default().seed)]
    pub seed: u64,
    /// Bid requests to send.
    #[arg(long, default_value_t = DEFAULT_REQUESTS)]
    pub requests: u64,
    /// Simulated days the requests span (diurnal traffic).
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    /// Requests per second of wall time (open loop).
    #[arg(long, default_value_t = DEFAULT_RATE)]
    pub rate: f64,
    /// Start of the simulated period, Unix seconds.
    #[arg(long, default_value_t = SimConfig::default().start_ts)]
    pub start_ts: i64,
    /// Campaigns, creatives, publishers and users of the world (as `ctrbid simulate`).
    #[arg(long, default_value_t = SimConfig::default().campaigns)]
    pub campaigns: usize,
    #[arg(long, default_value_t = SimConfig::default().creatives)]
    pub creatives: usize,
    #[arg(long, default_value_t = SimConfig::default().publishers)]
    pub publishers: usize,
    #[arg(long, default_value_t = SimConfig::default().users)]
    pub users: usize,
    /// Share of publishers (by a seeded hash) whose requests are first price ("at":1).
    #[arg(long, default_value_t = 0.0)]
    pub first_price_share: f64,
    /// Median competing bid as a multiple of the imp's floor (0.5 USD CPM without one).
    #[arg(long, default_value_t = DEFAULT_MEDIAN)]
    pub landscape_median: f64,
    /// Log-sd of the competing bid from imp to imp.
    #[arg(long, default_value_t = DEFAULT_SIGMA)]
    pub landscape_sigma: f64,
    /// No competing demand: the bidders only compete with each other and the floor.
    #[arg(long)]
    pub no_competition: bool,
    /// Share of won impressions that render (and are billed).
    #[arg(long, default_value_t = DEFAULT_RENDER_RATE)]
    pub render_rate: f64,
    /// Mean delay from render to click, simulated seconds (exponential).
    #[arg(long, default_value_t = DEFAULT_CLICK_DELAY_S)]
    pub click_delay_s: f64,
    /// Mean delay from click to conversion, simulated seconds (log-normal).
    #[arg(long, default_value_t = DEFAULT_CONV_DELAY_S)]
    pub conv_delay_s: f64,
    /// Multiplies the true pCTR (capped at 1) so a small test run sees clicks; 1 for real runs.
    #[arg(long, default_value_t = 1.0)]
    pub click_boost: f64,
    /// Keep-alive connections per bidder host, and events in flight, at most.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// An answer is late after tmax plus this many ms of wall time (for slow test machines).
    #[arg(long, default_value_t = 0)]
    pub tmax_grace_ms: u64,
    /// Tokio worker threads of the exchange.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// The options as a library caller gives them ([`Opts`] is the same struct).
pub type Options = Opts;

impl Opts {
    /// Options with the defaults, for `bidders` and `out`.
    pub fn new(bidders: Vec<String>, out: PathBuf) -> Opts {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            opts: Opts,
        }
        let mut o = Wrap::parse_from(["exchange", "--bidder", "x", "--out", "x"]).opts;
        (o.bidders, o.out) = (bidders, out);
        o
    }

    fn sim_config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            impressions: 0,
            campaigns: self.campaigns,
            creatives: self.creatives,
            publishers: self.publishers,
            users: self.users,
            start_ts: self.start_ts,
            days: self.days,
        }
    }

    /// Each message names the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        anyhow::ensure!(!self.bidders.is_empty(), "--bidder is required");
        anyhow::ensure!(self.requests >= 1, "--requests must be at least 1");
        anyhow::ensure!(self.days >= 1, "--days must be at least 1");
        anyhow::ensure!(self.rate.is_finite() && self.rate > 0.0, "--rate must be a positive number");
        anyhow::ensure!(unit(self.first_price_share), "--first-price-share must be between 0 and 1");
        anyhow::ensure!(self.landscape_median > 0.0, "--landscape-median must be positive");
        anyhow::ensure!(self.landscape_sigma >= 0.0, "--landscape-sigma must be at least 0");
        anyhow::ensure!(unit(self.render_rate), "--render-rate must be between 0 and 1");
        anyhow::ensure!(self.click_delay_s > 0.0, "--click-delay-s must be positive");
        anyhow::ensure!(self.conv_delay_s > 0.0, "--conv-delay-s must be positive");
        anyhow::ensure!(self.click_boost >= 1.0, "--click-boost must be at least 1");
        anyhow::ensure!(self.max_connections >= 1, "--max-connections must be at least 1");
        anyhow::ensure!(self.threads >= 1, "--threads must be at least 1");
        for b in self.bidders.iter().flat_map(|b| b.split(',')) {
            anyhow::ensure!(b.starts_with("http://"), "--bidder {b:?} must be an http:// URL (no TLS)");
        }
        anyhow::ensure!(unit(self.replay_bills), "--replay-bills must be between 0 and 1");
        anyhow::ensure!(
            self.replay_bills == 0.0 || self.bidders.iter().any(|b| b.contains(',')),
            "--replay-bills needs a bidder with several instances (--bidder http://a,http://b)"
        );
        self.sim_config().validate()
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Played {
    pub report: report::Report,
    pub ledger: PathBuf,
}

/// Runs `ctrbid exchange`: the report goes to `--out`, the summary line to stderr.
pub fn run(opts: Opts) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(opts.threads).enable_all().build()?;
    let outcome = runtime.block_on(exchange(&opts))?;
    eprintln!("{}", markdown::summary(&outcome.report));
    eprintln!("exchange: ledger, report.json, report.md and timeseries.json in {}", opts.out.display());
    Ok(())
}

/// The library entry point: plays the exchange on the current tokio runtime and writes
/// the ledger and the report files.
pub async fn exchange(opts: &Options) -> anyhow::Result<Played> {
    opts.validate()?;
    std::fs::create_dir_all(&opts.out).with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut market = Market::new(&opts.sim_config(), opts.requests)?;
    let oracle = Arc::clone(market.oracle());
    let params = LandscapeParams {
        enabled: !opts.no_competition,
        median: opts.landscape_median,
        sigma: opts.landscape_sigma,
        ..LandscapeParams::default()
    };
    let instances: Vec<Vec<String>> = opts
        .bidders
        .iter()
        .map(|b| b.split(',').map(|i| i.trim().trim_end_matches('/').to_string()).collect())
        .collect();
    let bidders: Vec<String> = opts.bidders.iter().map(|b| b.trim_end_matches('/').to_string()).collect();
    let client = Client::new(opts.max_connections);
    for i in instances.iter().flatten() {
        probe(&client, i, opts.start_ts * 1000).await?;
    }
    let path = opts.out.join("ledger.jsonl");
    let ctx = Arc::new(Ctx {
        client,
        ledger: ledger::Writer::create(&path)?,
        queue: Queue::default(),
        landscape: Landscape::new(opts.seed, params.clone(), oracle.publishers()),
        oracle: Arc::clone(&oracle),
        bidders: instances.iter().map(|i| i[0].clone()).collect(),
        instances,
        settings: Settings {
            seed: opts.seed,
            render_rate: opts.render_rate,
            click_delay_s: opts.click_delay_s,
            conv_delay_s: opts.conv_delay_s,
            click_boost: opts.click_boost,
            tmax_grace_ms: opts.tmax_grace_ms,
            first_price_share: opts.first_price_share,
            replay_bills: opts.replay_bills,
        },
    });
    ctx.ledger.write(&Record::Run(ledger::Run {
        version: 1,
        bidders,
        seed: opts.seed,
        requests: opts.requests,
        days: opts.days,
        start_ts: opts.start_ts,
        rate: opts.rate,
        first_price_share: opts.first_price_share,
        landscape: params,
        render_rate: opts.render_rate,
        click_delay_s: opts.click_delay_s,
        conv_delay_s: opts.conv_delay_s,
        click_boost: opts.click_boost,
        tmax_grace_ms: opts.tmax_grace_ms,
    }))?;
    let timing = engine::play(Arc::clone(&ctx), &mut market, opts.requests, opts.rate, opts.max_connections).await?;
    ctx.ledger.flush().with_context(|| format!("writing {}", path.display()))?;
    let mut report = report::build(ledger::records(&path)?, oracle.catalog())?;
    report.timing = Some(timing_of(&timing));
    write_reports(&opts.out, &report)?;
    Ok(Played { report, ledger: path })
}

fn timing_of(t: &engine::Timing) -> report::Timing {
    let mut lags = t.lags_us.clone();
    lags.sort_unstable();
    let at = |q: f64| lags.get(((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1))).copied();
    let ms = |v: Option<u64>| v.unwrap_or(0) as f64 / 1e3;
    let (wall_s, send_s) = (t.wall.as_secs_f64(), t.sending.as_secs_f64());
    // n requests are sent over n - 1 intervals.
    let intervals = lags.len().saturating_sub(1) as f64;
    report::Timing {
        wall_s,
        send_s,
        requests_per_s: if send_s > 0.0 { intervals / send_s } else { 0.0 },
        lag_p50_ms: ms(at(0.5)),
        lag_p99_ms: ms(at(0.99)),
        lag_max_ms: ms(lags.last().copied()),
    }
}

fn write_reports(dir: &Path, report: &report::Report) -> anyhow::Result<()> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("report.json", serde_json::to_string_pretty(report)? + "\n")?;
    write("report.md", markdown::render(report))?;
    let series = serde_json::json!({ "start_ts": report.run.start_ts, "days": report.run.days, "hours": report.hours });
    write("timeseries.json", serde_json::to_string_pretty(&series)? + "\n")
}

/// Checks that `base` answers and takes its time from `x-ctrbid-time`: a bid request
/// without the header must be refused naming it, and one with it (the run's start time)
/// must not be. Both carry `{}`, which the bidder refuses as invalid without bidding.
async fn probe(client: &Client, base: &str, start_ms: i64) -> anyhow::Result<()> {
    const NEEDS: &str = "it must run with server.clock = \"simulation\" ([server] clock in its config)";
    let url = format!("{base}/openrtb2/bid");
    let body = Bytes::from_static(b"{}");
    let without = client
        .call(Method::POST, &url, None, body.clone(), PROBE_LIMIT)
        .await
        .map_err(|e| anyhow::anyhow!("bidder {base} does not answer ({e}): start it first; {NEEDS}"))?;
    let names_header = |b: &[u8]| String::from_utf8_lossy(b).contains(crate::clock::TIME_HEADER);
    anyhow::ensure!(
        without.status == 400 && names_header(&without.body),
        "bidder {base} answered a bid request without {} with HTTP {}, as a bidder on the system clock does: {NEEDS}",
        crate::clock::TIME_HEADER,
        without.status
    );
    let with = client.call(Method::POST, &url, Some(start_ms), body, PROBE_LIMIT).await?;
    anyhow::ensure!(
        !(with.status == 400 && names_header(&with.body)),
        "bidder {base} refuses the exchange's {} header: {}",
        crate::clock::TIME_HEADER,
        String::from_utf8_lossy(&with.body).trim()
    );
    Ok(())
}
