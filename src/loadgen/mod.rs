//! `ctrbid loadgen`: an open-loop, constant-rate HTTP load generator.
//!
//! A closed-loop tool (wrk) sends a connection's next request only once the last one
//! was answered, so a slow server slows the load and the queueing it causes never shows
//! (coordinated omission). Here request `i` is due at `start + i / rate` whatever came
//! before it ([`schedule`]); a scheduler thread starts each request as a task at its due
//! time, the request leases a keep-alive connection from a bounded [`pool`] (waiting
//! when every one is busy) and is sent and answered ([`exchange`]), and its latency
//! counts from the due time ([`summary`], printed by [`report`]). Bodies are the lines
//! of a corpus file, cycled in order ([`target`]).

mod exchange;
pub mod pool;
mod report;
pub mod schedule;
mod scheduler;
pub mod summary;
pub mod target;

#[cfg(test)]
mod tests;

use anyhow::Context as _;
use bytes::Bytes;
use schedule::Schedule;
use scheduler::{Ended, Scheduler};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use summary::{Recorder, Summary};
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
    #[arg(long)]
    rate: f64,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = DEFAULT_DURATION_S)]
    duration_s: f64,
    /// Seconds sent at the same rate first, not recorded.
    #[arg(long, default_value_t = DEFAULT_WARMUP_S)]
    warmup_s: f64,
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
    /// Requests per second.
    pub rate: f64,
    /// Measured span, after the warm-up.
    pub duration: Duration,
    pub warmup: Duration,
    pub max_connections: usize,
    pub deadline: Duration,
    /// For a connection, from the due time; for the answer, from the send.
    pub timeout: Duration,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            url: DEFAULT_URL.to_string(),
            rate: 100.0,
            duration: Duration::from_secs_f64(DEFAULT_DURATION_S),
            warmup: Duration::from_secs_f64(DEFAULT_WARMUP_S),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            deadline: Duration::from_millis(DEFAULT_DEADLINE_MS),
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
        }
    }
}

impl Plan {
    /// Each message names the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.rate.is_finite() && self.rate > 0.0, "--rate must be a positive number");
        anyhow::ensure!(!self.duration.is_zero(), "--duration-s must be positive");
        anyhow::ensure!(self.max_connections >= 1, "--max-connections must be at least 1");
        anyhow::ensure!(!self.timeout.is_zero(), "--timeout-ms must be positive");
        Ok(())
    }
}

impl TryFrom<&Opts> for Plan {
    type Error = anyhow::Error;
    fn try_from(o: &Opts) -> anyhow::Result<Plan> {
        let secs = |s: f64, flag: &str| {
            Duration::try_from_secs_f64(s).with_context(|| format!("{flag} must be a number of seconds >= 0"))
        };
        Ok(Plan {
            url: o.url.clone(),
            rate: o.rate,
            duration: secs(o.duration_s, "--duration-s")?,
            warmup: secs(o.warmup_s, "--warmup-s")?,
            max_connections: o.max_connections,
            deadline: Duration::from_millis(o.deadline_ms),
            timeout: Duration::from_millis(o.timeout_ms),
        })
    }
}

pub fn run(opts: Opts) -> anyhow::Result<()> {
    let plan = Plan::try_from(&opts)?;
    plan.validate()?;
    anyhow::ensure!(opts.threads >= 1, "--threads must be at least 1");
    let bodies = target::load_corpus(&opts.corpus)?;
    eprintln!(
        "loadgen: {} req/s for {} s after {} s of warm-up to {}, {} bodies, up to {} connections",
        plan.rate,
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.url,
        bodies.len(),
        plan.max_connections
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(opts.threads).enable_all().build()?;
    let summary = runtime.block_on(generate(&plan, bodies))?;
    print!("{summary}");
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Runs `plan` with `bodies` (cycled in order) and summarizes the recorded requests.
/// Requests run as tasks on the current runtime; the schedule is kept by a thread of its
/// own. Returns once every recorded request has ended; warm-up requests may still be in
/// flight.
pub async fn generate(plan: &Plan, bodies: Vec<Bytes>) -> anyhow::Result<Summary> {
    plan.validate()?;
    let target = Arc::new(Target::resolve(&plan.url, bodies).await?);
    let pool = pool::Pool::new(target.addr, plan.max_connections);
    let schedule = Schedule::new(plan.rate, plan.warmup, plan.duration);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let scheduler = Scheduler { schedule, start, timeout: plan.timeout, target, pool, runtime: Handle::current() };
    std::thread::Builder::new()
        .name("loadgen-schedule".into())
        .spawn(move || scheduler.run(tx))
        .context("starting the scheduler thread")?;

    let mut recorder = Recorder::new(plan.deadline);
    let measure_start = start + schedule.measure_start();
    let mut last_end = measure_start;
    let mut first_error = None;
    while let Some(done) = rx.recv().await {
        let Ended { due, start_lag, end, outcome, error } = done;
        recorder.record(outcome, end.saturating_duration_since(due), start_lag);
        last_end = last_end.max(end);
        first_error = first_error.or(error);
    }
    let mut summary = recorder.summarize(plan.rate, last_end.saturating_duration_since(measure_start));
    summary.first_error = first_error;
    Ok(summary)
}
