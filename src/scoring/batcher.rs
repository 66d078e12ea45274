//! The micro-batcher: many requests' rows, one ONNX Runtime call.
//!
//! A request sends its rows as one [`Job`] on a bounded crossbeam queue and awaits a
//! oneshot reply. Each inference thread owns one [`Model`] (ORT sessions are `&mut`
//! to run, so none is ever shared or locked). A thread blocks for a first job, then
//! gathers more until the batch holds `max_batch_rows` rows or `max_wait` has passed,
//! whichever comes first; a job is never split. Jobs whose deadline has passed are
//! answered [`ScoreError::Expired`] without being scored. A full queue answers
//! [`ScoreError::QueueFull`] at once: the queue never grows.
//!
//! [`Batcher::replace_models`] hands every thread a new model, taken before its next
//! batch (an admin model reload). Dropping the [`Batcher`] closes the queue; threads
//! finish the batch in hand and exit.

use super::Model;
use crate::metrics::{Metrics, Sample};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Knobs of the batcher; see `config::ScoringConfig` for units and defaults.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    pub max_batch_rows: usize,
    pub max_wait: Duration,
    pub queue_capacity: usize,
}

/// Feature rows of one request, row-major. Invariant: `cat.len() == n * F`,
/// `num.len() == n * D` for the model's widths.
#[derive(Debug, Default)]
pub struct Rows {
    pub cat: Vec<i64>,
    pub num: Vec<f32>,
    pub n: usize,
}

/// Why a job was not scored. Each maps to a no-bid reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    #[error("scoring queue full")]
    QueueFull,
    #[error("deadline passed before scoring")]
    Expired,
    #[error("scoring stopped")]
    Closed,
    #[error("inference failed")]
    Inference,
}

/// How much scoring work is waiting, for admission control: rows queued and not yet
/// taken by an inference thread, and the recent inference cost per row.
#[derive(Debug, Default)]
struct Backlog {
    rows: AtomicUsize,
    /// Exponentially weighted mean of inference nanoseconds per row (weight 1/8).
    ns_per_row: AtomicU64,
    threads: usize,
}

impl Backlog {
    fn record_batch(&self, rows: usize, ns: u64) {
        if rows == 0 {
            return;
        }
        let sample = ns / rows as u64;
        let old = self.ns_per_row.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { old - old / 8 + sample / 8 };
        self.ns_per_row.store(new, Ordering::Relaxed);
    }
}

struct Job {
    rows: Rows,
    deadline: Instant,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Vec<f32>, ScoreError>>,
}

pub struct Batcher {
    tx: Option<Sender<Job>>,
    backlog: Arc<Backlog>,
    /// One per inference thread: a replacement model, taken before its next batch.
    swaps: Vec<Sender<Model>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("threads", &self.threads.len()).finish()
    }
}

impl Batcher {
    /// Starts one inference thread per model.
    pub fn start(models: Vec<Model>, cfg: BatcherConfig, metrics: Arc<Metrics>) -> Batcher {
        let (tx, rx) = bounded::<Job>(cfg.queue_capacity.max(1));
        let backlog = Arc::new(Backlog { threads: models.len(), ..Backlog::default() });
        let mut swaps = Vec::with_capacity(models.len());
        let threads = models
            .into_iter()
            .enumerate()
            .map(|(i, model)| {
                let (rx, cfg, metrics, backlog) = (rx.clone(), cfg.clone(), Arc::clone(&metrics), Arc::clone(&backlog));
                let (swap_tx, swap_rx) = bounded::<Model>(1);
                swaps.push(swap_tx);
                std::thread::Builder::new()
                    .name(format!("ctrbid-infer-{i}"))
                    .spawn(move || inference_loop(model, rx, swap_rx, cfg, metrics, backlog))
                    .expect("spawning an inference thread")
            })
            .collect();
        Batcher { tx: Some(tx), backlog, swaps, threads }
    }

    /// How long the rows already queued will take to score, from the recent cost per
    /// row: a request that cannot be scored before its deadline is shed before its
    /// features are built.
    pub fn expected_wait(&self) -> Duration {
        let b = &self.backlog;
        let ns = b.rows.load(Ordering::Relaxed) as u64 * b.ns_per_row.load(Ordering::Relaxed);
        Duration::from_nanos(ns / b.threads.max(1) as u64)
    }

    /// Hands each inference thread a new model (one per thread, same feature widths);
    /// each switches before its next batch. Fails when the count is wrong or a
    /// previous replacement has not been taken yet.
    pub fn replace_models(&self, models: Vec<Model>) -> Result<(), String> {
        if models.len() != self.swaps.len() {
            return Err(format!("{} models for {} inference threads", models.len(), self.swaps.len()));
        }
        // All or none: a thread must not be left on the old model while others switch.
        // (Callers serialise reloads, so nothing fills a slot between check and send.)
        if self.swaps.iter().any(Sender::is_full) {
            return Err("a previous model reload has not been taken up yet (no traffic since)".into());
        }
        for (swap, model) in self.swaps.iter().zip(models) {
            swap.try_send(model).map_err(|_| "an inference thread has stopped".to_string())?;
        }
        Ok(())
    }

    /// Scores `rows`; answers `Expired` rather than scoring after `deadline`.
    pub async fn score(&self, rows: Rows, deadline: Instant) -> Result<Vec<f32>, ScoreError> {
        let tx = self.tx.as_ref().ok_or(ScoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let n = rows.n;
        let job = Job { rows, deadline, enqueued: Instant::now(), reply };
        match tx.try_send(job) {
            Ok(()) => {
                self.backlog.rows.fetch_add(n, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => return Err(ScoreError::QueueFull),
            Err(TrySendError::Disconnected(_)) => return Err(ScoreError::Closed),
        }
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ScoreError::Closed),
            Err(_) => Err(ScoreError::Expired),
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn inference_loop(
    mut model: Model,
    rx: Receiver<Job>,
    swaps: Receiver<Model>,
    cfg: BatcherConfig,
    metrics: Arc<Metrics>,
    backlog: Arc<Backlog>,
) {
    let (f, d) = (model.info.cat_width, model.info.num_width);
    let mut batch: Vec<Job> = Vec::with_capacity(64);
    let mut cat: Vec<i64> = Vec::with_capacity(cfg.max_batch_rows * f);
    let mut num: Vec<f32> = Vec::with_capacity(cfg.max_batch_rows * d);
    let mut pctr: Vec<f32> = Vec::with_capacity(cfg.max_batch_rows);
    while let Ok(first) = rx.recv() {
        // Reloads keep the feature spec, so the widths (and buffers) stay valid.
        if let Ok(new) = swaps.try_recv() {
            model = new;
        }
        let mut rows = first.rows.n;
        // Taken: no longer waiting. (The counter may briefly lag the queue: the job is
        // counted just after it is queued, so this can run first; saturating keeps it sane.)
        sub_saturating(&backlog.rows, first.rows.n);
        batch.push(first);
        let until = Instant::now() + cfg.max_wait;
        while rows < cfg.max_batch_rows {
            match rx.recv_deadline(until) {
                Ok(job) => {
                    rows += job.rows.n;
                    sub_saturating(&backlog.rows, job.rows.n);
                    batch.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let start = Instant::now();
        cat.clear();
        num.clear();
        pctr.clear();
        let mut live = 0usize;
        for job in &batch {
            metrics.sample(Sample::QueueWait { ns: (start - job.enqueued).as_nanos() as u64 });
            if job.deadline > start && !job.reply.is_closed() {
                cat.extend_from_slice(&job.rows.cat);
                num.extend_from_slice(&job.rows.num);
                live += job.rows.n;
            }
        }
        let result = model.score(&cat, &num, live, &mut pctr);
        if let Err(e) = &result {
            eprintln!("ctrbid: inference failed for a batch of {live} rows: {e}");
        }
        let inference_ns = start.elapsed().as_nanos() as u64;
        backlog.record_batch(live, inference_ns);
        metrics.sample(Sample::Batch { rows: live as u32, inference_ns });
        let mut offset = 0;
        for job in batch.drain(..) {
            if job.deadline <= start || job.reply.is_closed() {
                let _ = job.reply.send(Err(ScoreError::Expired));
                continue;
            }
            let answer = match &result {
                Ok(()) => Ok(pctr[offset..offset + job.rows.n].to_vec()),
                Err(_) => Err(ScoreError::Inference),
            };
            offset += job.rows.n;
            let _ = job.reply.send(answer);
        }
    }
}

fn sub_saturating(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
}
