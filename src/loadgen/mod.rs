//! `ctrbid loadgen`: an open-loop, constant-rate HTTP load generator.
//!
//! A closed-loop tool (wrk) sends a connection's next request only once the last one
//! was answered, so a slow server slows the load and the queueing it causes never shows
//! (coordinated omission). Here request `i` is due at `start + i / rate` whatever came
//! before it ([`schedule`]); a scheduler thread starts each request as a task at its due
//! time, the request leases a keep-alive connection from a bounded [`pool`] (waiting
//! when every one is busy) and is sent and answered ([`exchange`]), and its latency
//! counts from the due time ([`collect`], [`summary`], printed by [`report`]). Bodies are
//! the lines of a corpus file, cycled in order ([`target`]), with `tmax` set at load
//! when asked ([`tmax`]).
//!
//! A run may hold several rates, one [`phase`] after the other in one schedule and on
//! one pool (`--phases`), and report each phase's figures and, per [`window`] of
//! intended send time (`--window-ms`), how its requests went.

mod collect;
mod exchange;
pub mod phase;
pub mod pool;
mod report;
pub mod schedule;
mod scheduler;
pub mod summary;
pub mod target;
pub mod tmax;
pub mod window;

#[cfg(test)]
mod tests;

use anyhow::Context as _;
use bytes::Bytes;
use collect::Collector;
use phase::Phase;
use schedule::Schedule;
use scheduler::Scheduler;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use summary::Summary;
use target::Target;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

const DEFAULT_URL: &str = "http://127.0.0.1:8080/openrtb2/bid";
const DEFAULT_DURATION_S: f64 = 30.0;
const DEFAULT_WARMUP_S: f64 = 2.0;
const DEFAULT_MAX_CONNECTIONS: usize = 512;
const DEFAULT_DEADLINE_MS: u64 = 100;
const DEFAULT_TIMEOUT_MS: u64 = 1000;

/// Options of `ctrbid loadgen`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Where to POST the bodies.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// Request bodies, one JSON per line, sent in order and cycled (`ctrbid simulate` writes requests.jsonl).
    #[arg(long)]
    corpus: PathBuf,
    /// Requests per second, on a fixed schedule.
    #[arg(long, required_unless_present = "phases")]
    rate: Option<f64>,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = DEFAULT_DURATION_S)]
    duration_s: f64,
    /// Instead of --rate and --duration-s: rates run back to back in one schedule on the same connections, RATE:SECONDS each (e.g. 8000:30,1000:5); the report gives each phase's figures too.
    #[arg(long, value_name = "RATE:SECONDS,..", value_delimiter = ',', conflicts_with_all = ["rate", "duration_s"])]
    phases: Vec<Phase>,
    /// Seconds sent at the (first phase's) rate first, not recorded.
    #[arg(long, default_value_t = DEFAULT_WARMUP_S)]
    warmup_s: f64,
    /// Also report each phase in windows of this many ms by intended send time, from the phase's start (JSON: phases[].windows).
    #[arg(long)]
    window_ms: Option<u64>,
    /// Set every body's top-level tmax to this many ms when the corpus is loaded (inserted where absent); every other byte is sent as read.
    #[arg(long)]
    tmax_ms: Option<u64>,
    /// Keep-alive connections open at most; a request finding all busy waits for one.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// An answer is on time when it is a 200 or 204 within this many ms of its due time.
    #[arg(long, default_value_t = DEFAULT_DEADLINE_MS)]
    deadline_ms: u64,
    /// The client gives up on a request still waiting for a connection this many ms after its due time, and on one sent this many ms after sending.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MS)]
    timeout_ms: u64,
    /// Write the summary as JSON to this file too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What to send, how fast and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub url: String,
    /// Requests per second of the first phase (and of the warm-up).
    pub rate: f64,
    /// The first phase's span, after the warm-up.
    pub duration: Duration,
    /// Phases after the first, each starting where the one before ends.
    pub then: Vec<Phase>,
    pub warmup: Duration,
    pub max_connections: usize,
    pub deadline: Duration,
    /// For a connection, from the due time; for the answer, from the send.
    pub timeout: Duration,
    /// Width of the per-window figures; none without it.
    pub window: Option<Duration>,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            url: DEFAULT_URL.to_string(),
            rate: 100.0,
            duration: Duration::from_secs_f64(DEFAULT_DURATION_S),
            then: Vec::new(),
            warmup: Duration::from_secs_f64(DEFAULT_WARMUP_S),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            deadline: Duration::from_millis(DEFAULT_DEADLINE_MS),
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            window: None,
        }
    }
}

impl Plan {
    /// Every phase, the first (`rate` for `duration`) included.
    pub fn phases(&self) -> Vec<Phase> {
        let first = Phase { rate: self.rate, duration: self.duration };
        std::iter::once(first).chain(self.then.iter().copied()).collect()
    }

    /// Each message names the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        let phases = self.phases();
        phases[0].validate("--rate and --duration-s (or the first of --phases)")?;
        for (k, p) in phases.iter().enumerate().skip(1) {
            p.validate(&format!("--phases, phase {}", k + 1))?;
        }
        anyhow::ensure!(self.max_connections >= 1, "--max-connections must be at least 1");
        anyhow::ensure!(!self.timeout.is_zero(), "--timeout-ms must be positive");
        if let Some(width) = self.window {
            anyhow::ensure!(!width.is_zero(), "--window-ms must be positive");
            let n: u64 = phases.iter().map(|p| window::count(width, p.duration)).sum();
            anyhow::ensure!(
                n <= window::MAX_WINDOWS,
                "--window-ms {} makes {n} windows; at most {} are kept",
                width.as_millis(),
                window::MAX_WINDOWS
            );
        }
        Ok(())
    }

    /// One line for the console.
    fn describe(&self, bodies: usize) -> String {
        let phases: Vec<String> =
            self.phases().iter().map(|p| format!("{} req/s for {} s", p.rate, p.duration.as_secs_f64())).collect();
        format!(
            "loadgen: {} after {} s of warm-up to {}, {} bodies, up to {} connections",
            phases.join(" then "),
            self.warmup.as_secs_f64(),
            self.url,
            bodies,
            self.max_connections
        )
    }
}

impl TryFrom<&Opts> for Plan {
    type Error = anyhow::Error;
    fn try_from(o: &Opts) -> anyhow::Result<Plan> {
        let secs = |s: f64, flag: &str| {
            Duration::try_from_secs_f64(s).with_context(|| format!("{flag} must be a number of seconds >= 0"))
        };
        let (first, then) = match o.phases.split_first() {
            Some((first, then)) => (*first, then.to_vec()),
            None => {
                let rate = o.rate.context("--rate or --phases is required")?;
                (Phase { rate, duration: secs(o.duration_s, "--duration-s")? }, Vec::new())
            }
        };
        Ok(Plan {
            url: o.url.clone(),
            rate: first.rate,
            duration: first.duration,
            then,
            warmup: secs(o.warmup_s, "--warmup-s")?,
            max_connections: o.max_connections,
            deadline: Duration::from_millis(o.deadline_ms),
            timeout: Duration::from_millis(o.timeout_ms),
            window: o.window_ms.map(Duration::from_millis),
        })
    }
}

pub fn run(opts: Opts) -> anyhow::Result<()> {
    let plan = Plan::try_from(&opts)?;
    plan.validate()?;
    anyhow::ensure!(opts.threads >= 1, "--threads must be at least 1");
    let bodies = target::load_corpus(&opts.corpus, opts.tmax_ms)?;
    eprintln!("{}", plan.describe(bodies.len()));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(opts.threads).enable_all().build()?;
    let summary = runtime.block_on(generate(&plan, bodies))?;
    print!("{summary}");
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Runs `plan` with `bodies` (cycled in order) and summarizes the recorded requests,
/// in all and per phase. Requests run as tasks on the current runtime, every phase on
/// one pool; the schedule is kept by a thread of its own. Returns once every recorded
/// request has ended; warm-up requests may still be in flight.
pub async fn generate(plan: &Plan, bodies: Vec<Bytes>) -> anyhow::Result<Summary> {
    plan.validate()?;
    let phases = plan.phases();
    let target = Arc::new(Target::resolve(&plan.url, bodies).await?);
    let pool = pool::Pool::new(target.addr, plan.max_connections);
    let schedule = Schedule::new(plan.warmup, &phases);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let mut collector = Collector::new(&schedule, &phases, start, plan.deadline, plan.window);
    let scheduler = Scheduler { schedule, start, timeout: plan.timeout, target, pool, runtime: Handle::current() };
    std::thread::Builder::new()
        .name("loadgen-schedule".into())
        .spawn(move || scheduler.run(tx))
        .context("starting the scheduler thread")?;
    while let Some(done) = rx.recv().await {
        collector.record(done);
    }
    Ok(collector.finish())
}
