//! `ctrbid serve`: the bidder.

use crate::config::{Config, InlineScoring};
use crate::server::Server;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of `ctrbid serve`; each overrides the config file.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// TOML config file (see deploy/ctrbid.toml); defaults apply without one.
    #[arg(long, env = "CTRBID_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0: any free port).
    #[arg(long, env = "CTRBID_LISTEN")]
    listen: Option<SocketAddr>,
    /// Base of the notice and click URLs in bids, as exchanges and users reach this
    /// bidder, e.g. https://bid.example.com (default http://<listen>; required when
    /// listening on an unspecified address such as 0.0.0.0).
    #[arg(long, env = "CTRBID_NOTICE_BASE_URL")]
    notice_base_url: Option<String>,
    /// ONNX model file.
    #[arg(long, env = "CTRBID_MODEL")]
    model: Option<PathBuf>,
    /// Feature spec the model was built with.
    #[arg(long, env = "CTRBID_SPEC")]
    spec: Option<PathBuf>,
    /// Campaign catalog (JSON).
    #[arg(long, env = "CTRBID_CATALOG")]
    catalog: Option<PathBuf>,
    /// libonnxruntime.so to load.
    #[arg(long, env = "CTRBID_ONNXRUNTIME_LIBRARY")]
    onnxruntime_library: Option<PathBuf>,
    /// Tokio worker threads; 0: one per CPU less one per inference thread.
    #[arg(long, env = "CTRBID_WORKERS")]
    workers: Option<usize>,
    /// Inference threads (one ORT session each).
    #[arg(long, env = "CTRBID_INFERENCE_THREADS")]
    inference_threads: Option<usize>,
    /// Rows at which a micro-batch closes.
    #[arg(long, env = "CTRBID_MAX_BATCH_ROWS")]
    max_batch_rows: Option<usize>,
    /// Microseconds a micro-batch waits for more jobs.
    #[arg(long, env = "CTRBID_MAX_WAIT_US")]
    max_wait_us: Option<u64>,
    /// Close a micro-batch early when no request is on its way to scoring.
    #[arg(long, env = "CTRBID_ADAPTIVE_WAIT")]
    adaptive_wait: Option<bool>,
    /// `true`: score on the tokio workers (one ORT session each), not on inference
    /// threads; `auto`: inline while the workers are not busy, batched beyond; `false`.
    #[arg(long, env = "CTRBID_INLINE_SCORING")]
    inline_scoring: Option<InlineScoring>,
    /// With `--inline-scoring auto`: the workers' busy share (0 to 1) under which a
    /// request is still scored inline.
    #[arg(long, env = "CTRBID_INLINE_MAX_BUSY")]
    inline_max_busy: Option<f64>,
    /// A CPU of its own for each inference thread, the other CPUs for the rest (Linux).
    #[arg(long, env = "CTRBID_PIN_THREADS")]
    pin_threads: Option<bool>,
    /// Inference threads under SCHED_FIFO (Linux; needs CAP_SYS_NICE).
    #[arg(long, env = "CTRBID_REALTIME_INFERENCE")]
    realtime_inference: Option<bool>,
    /// With `--realtime-inference true`: the busy share (0 to 1) above which an
    /// inference thread leaves SCHED_FIFO until it is half as busy again; 1: never.
    #[arg(long, env = "CTRBID_REALTIME_MAX_BUSY")]
    realtime_max_busy: Option<f64>,
    /// Candidate rows whose scores are remembered; 0 turns the score cache off.
    #[arg(long, env = "CTRBID_SCORE_CACHE_ENTRIES")]
    score_cache_entries: Option<usize>,
    /// Add ext.ctrbid (pCTR, time, candidates) to bids.
    #[arg(long, env = "CTRBID_DEBUG_EXT")]
    debug_ext: Option<bool>,
    /// The name the served model's results go under (`variants.name`): give each
    /// release's pods their own, so a canary's clicks are told from stable's.
    #[arg(long, env = "CTRBID_VARIANT_NAME")]
    variant_name: Option<String>,
    /// `bid`, or `ceiling`: parse and validate, then answer a fixed bid (the load test's upper bound).
    #[arg(long, env = "CTRBID_MODE", value_enum)]
    mode: Option<crate::config::ServeMode>,
    /// Address of the admin port (health, readiness, metrics, control).
    #[arg(long, env = "CTRBID_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Bearer token for the admin control endpoints (prefer the variable to the flag).
    #[arg(long, env = "CTRBID_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// HMAC key of the notice URLs, at least 32 bytes (prefer the variable to the flag).
    #[arg(long, env = "CTRBID_NOTICE_KEY", hide_env_values = true)]
    notice_key: Option<String>,
    /// The auction clock: `system`, or `simulation` (every request states its time in
    /// the x-ctrbid-time header: `ctrbid exchange`).
    #[arg(long, env = "CTRBID_CLOCK", value_enum)]
    clock: Option<crate::clock::ClockMode>,
    /// Event log directory (bids and what came back of them); `none` turns the log off.
    #[arg(long, env = "CTRBID_EVENTS_DIR")]
    events_dir: Option<PathBuf>,
    /// Where state shared by a fleet lives (`fleet.backend`): `memory` (one instance)
    /// or `redis`.
    #[arg(long, env = "CTRBID_FLEET_BACKEND", value_enum)]
    fleet_backend: Option<crate::fleet::Backend>,
    /// The fleet's Redis (`fleet.redis_url`), `redis://host:port`.
    #[arg(long, env = "CTRBID_REDIS_URL")]
    redis_url: Option<String>,
    /// This instance's name in the shared state (`fleet.instance`; default `HOSTNAME`).
    #[arg(long, env = "CTRBID_FLEET_INSTANCE")]
    fleet_instance: Option<String>,
    /// Share of bid records written to the event log, 0 to 1.
    #[arg(long, env = "CTRBID_EVENTS_BID_SAMPLE")]
    events_bid_sample: Option<f64>,
    /// Share of bids that go to a random candidate reaching its floor (exploration), 0 to 0.5.
    #[arg(long, env = "CTRBID_EXPLORE_SHARE")]
    explore_share: Option<f64>,
    /// Budget pacing on or off (`pacing.enabled`).
    #[arg(long, env = "CTRBID_PACING")]
    pacing: Option<bool>,
    /// Apply the catalog's frequency caps (`frequency_caps.enabled`).
    #[arg(long, env = "CTRBID_FREQUENCY_CAPS")]
    frequency_caps: Option<bool>,
    /// Seconds of the auction clock a bid holds its price (and its cap slot) until its
    /// outcome (`pacing.in_flight_s`); on a compressed simulation clock, scale it up.
    #[arg(long, env = "CTRBID_IN_FLIGHT_S")]
    in_flight_s: Option<i64>,
    /// First-price pricing: fixed, learnt or oracle (`shading.mode`).
    #[arg(long, env = "CTRBID_SHADING", value_enum)]
    shading: Option<crate::economics::config::ShadingMode>,
    /// The fixed shading factor, 0 to 1 (`bidding.first_price_shading`; 1 bids the value).
    #[arg(long, env = "CTRBID_SHADING_FACTOR")]
    shading_factor: Option<f64>,
    /// Oracle shading: the `ctrbid exchange --seed` whose landscape to read (`shading.oracle_seed`).
    #[arg(long, env = "CTRBID_SHADING_ORACLE_SEED")]
    shading_oracle_seed: Option<u64>,
    /// The economics state file (`pacing.state_file`).
    #[arg(long, env = "CTRBID_STATE_FILE")]
    state_file: Option<PathBuf>,
}

impl Opts {
    /// The config file (if any) with these options applied on top.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            c.server.listen = v;
        }
        if let Some(v) = &self.notice_base_url {
            c.server.notice_base_url = Some(v.clone());
        }
        if let Some(v) = &self.model {
            c.model.path = v.clone();
        }
        if let Some(v) = &self.spec {
            c.model.spec = v.clone();
        }
        if let Some(v) = &self.catalog {
            c.model.catalog = v.clone();
        }
        if let Some(v) = &self.onnxruntime_library {
            c.model.onnxruntime_library = Some(v.clone());
        }
        if let Some(v) = self.workers {
            c.server.workers = v;
        }
        if let Some(v) = self.inference_threads {
            c.scoring.threads = v;
        }
        if let Some(v) = self.max_batch_rows {
            c.scoring.max_batch_rows = v;
        }
        if let Some(v) = self.max_wait_us {
            c.scoring.max_wait_us = v;
        }
        if let Some(v) = self.adaptive_wait {
            c.scoring.adaptive_wait = v;
        }
        if let Some(v) = self.pin_threads {
            c.scoring.pin_threads = v;
        }
        if let Some(v) = self.realtime_inference {
            c.scoring.realtime_inference = v;
        }
        if let Some(v) = self.realtime_max_busy {
            c.scoring.realtime_max_busy = v;
        }
        if let Some(v) = self.inline_scoring {
            c.scoring.inline = v;
        }
        if let Some(v) = self.inline_max_busy {
            c.scoring.inline_max_busy = v;
        }
        if let Some(v) = self.score_cache_entries {
            c.scoring.cache_entries = v;
        }
        if let Some(v) = self.debug_ext {
            c.server.debug_ext = v;
        }
        if let Some(v) = self.mode {
            c.server.mode = v;
        }
        if let Some(v) = &self.variant_name {
            c.variants.name = v.clone();
        }
        if let Some(v) = self.admin_listen {
            c.admin.listen = v;
        }
        if let Some(v) = &self.admin_token {
            c.admin.token = Some(v.clone());
        }
        if let Some(v) = &self.notice_key {
            c.notices.hmac_key = Some(v.clone());
        }
        if let Some(v) = self.clock {
            c.server.clock = v;
        }
        if let Some(v) = &self.events_dir {
            c.events.dir = (v.as_os_str() != "none").then(|| v.clone());
        }
        if let Some(v) = self.events_bid_sample {
            c.events.bid_sample = Some(v);
        }
        if let Some(v) = self.pacing {
            c.pacing.enabled = v;
        }
        if let Some(v) = self.frequency_caps {
            c.frequency_caps.enabled = v;
        }
        if let Some(v) = self.in_flight_s {
            c.pacing.in_flight_s = v;
        }
        if let Some(v) = self.shading {
            c.shading.mode = v;
        }
        if let Some(v) = self.shading_factor {
            c.bidding.first_price_shading = v;
        }
        if let Some(v) = self.shading_oracle_seed {
            c.shading.oracle_seed = Some(v);
        }
        if let Some(v) = &self.state_file {
            c.pacing.state_file = Some(v.clone());
        }
        if let Some(v) = self.explore_share {
            c.bidding.explore_share = v;
        }
        if let Some(v) = self.fleet_backend {
            c.fleet.backend = v;
        }
        if let Some(v) = &self.redis_url {
            c.fleet.redis_url = v.clone();
        }
        if let Some(v) = &self.fleet_instance {
            c.fleet.instance = v.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

pub fn run(opts: Opts) -> anyhow::Result<()> {
    let mut cfg = opts.config()?;
    let workers = cfg.tokio_workers();
    let placement = if cfg.scoring.pin_threads { Some(place_threads(&mut cfg)?) } else { None };
    if cfg.scoring.realtime_inference && cfg.inline_scoring() != InlineScoring::On {
        crate::cpus::check_realtime()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("ctrbid-worker")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = Server::bind(&cfg).await?;
        let serving = server.state().bidder.state();
        let info = serving.model();
        let mode =
            if cfg.server.mode == crate::config::ServeMode::Ceiling { " in ceiling mode (fixed answers)" } else { "" };
        let mut pinned = placement.as_ref().map_or(String::new(), |p| {
            format!(" inference_cpus={:?} other_cpus={:?}", p.inference, p.rest)
        });
        if cfg.scoring.realtime_inference {
            pinned.push_str(" inference_sched=fifo");
        }
        if cfg.server.clock == crate::clock::ClockMode::Simulation {
            pinned.push_str(" clock=simulation");
        }
        match &cfg.events.dir {
            Some(dir) => pinned.push_str(&format!(
                " events={} bid_sample={}",
                dir.display(),
                cfg.events.bid_sample(cfg.server.clock)
            )),
            None => pinned.push_str(" events=off"),
        }
        println!(
            "ctrbid listening on http://{}{mode} (admin http://{}; model {} kind={} trained_at={}; tokio_workers={} inference_threads={}{pinned})",
            server.local_addr(),
            server.admin_addr(),
            info.path.display(),
            info.kind,
            info.trained_at,
            workers,
            match cfg.inline_scoring() {
                InlineScoring::Off => cfg.scoring.threads.to_string(),
                InlineScoring::On => "0 (scoring inline)".to_string(),
                InlineScoring::Auto =>
                    format!("{} (scoring inline below {} busy)", cfg.scoring.threads, cfg.scoring.inline_max_busy),
            }
        );
        server.serve(shutdown_signal()).await
    })
}

/// Completes on Ctrl-C or SIGTERM, saying which in the log.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ctrbid: cannot watch for SIGTERM ({e}); Ctrl-C still stops the server");
                let _ = ctrl_c.await;
                eprintln!("ctrbid: Ctrl-C received, shutting down");
                return;
            }
        };
        let which = tokio::select! {
            _ = ctrl_c => "Ctrl-C (SIGINT)",
            _ = term.recv() => "SIGTERM",
        };
        eprintln!("ctrbid: {which} received, shutting down");
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        eprintln!("ctrbid: Ctrl-C received, shutting down");
    }
}

/// `scoring.pin_threads`: plans the placement ([`crate::cpus::plan`]), pins this thread
/// (and so every thread it starts: the runtime, the admin server, metrics) to the
/// other CPUs, and leaves the inference threads' CPUs in the config for the batcher.
fn place_threads(cfg: &mut Config) -> anyhow::Result<crate::cpus::Placement> {
    let allowed = crate::cpus::allowed().context("scoring.pin_threads: cannot read this process's CPUs")?;
    let placement = crate::cpus::plan(&allowed, cfg.scoring.threads)?;
    crate::cpus::pin_current(&placement.rest).context("scoring.pin_threads: cannot pin the server's threads")?;
    cfg.scoring.inference_cpus = placement.inference.clone();
    Ok(placement)
}
