//! The micro-batcher: many requests' rows, one ONNX Runtime call.
//!
//! A request sends its rows as one [`Job`] on a bounded crossbeam queue and awaits a
//! oneshot reply. Each inference thread owns one [`Model`] (ORT sessions are `&mut`
//! to run, so none is ever shared or locked). A thread blocks for a first job, then
//! gathers more until the batch holds `max_batch_rows` rows or `max_wait` has passed,
//! whichever comes first; a job is never split. With `adaptive_wait` it also closes the
//! batch as soon as the queue is empty and no request is on its way to scoring (see
//! [`Batcher::announce`]): waiting then would only delay the rows in hand. Jobs whose
//! deadline has passed are answered [`ScoreError::Expired`] without being scored. A
//! full queue answers [`ScoreError::QueueFull`] at once: the queue never grows.
//!
//! A job is answered [`Scores`]: one `Vec<f32>` per job, as many heads per row as the
//! model that scored it has (pCTR, and pCVR with a conversion head), interleaved by row.
//!
//! [`Batcher::replace_models`] hands every thread a new model (an admin model reload),
//! taken before its next batch, or at once by a thread waiting for jobs; the new model
//! may have other heads than the old one, and each answer says which heads it carries,
//! so a request scored across a reload reads what was actually computed. Dropping the [`Batcher`] closes the queue; threads
//! finish the batch in hand and exit.
//!
//! **Inline** ([`Batcher::start_inline`], `scoring.inline`): no queue and no inference
//! thread. The task that asks for scores takes a model from a pool (one per tokio
//! worker, so one is always free: a worker runs one request's scoring at a time), runs
//! it on its own thread and puts it back; a batch is one request's rows. What it saves
//! is the hand-off: a queue, a thread wake-up and a reply per request, and on a 2-core
//! box a third busy thread. A model taken before a reload is dropped, not put back.
//!
//! **Auto** ([`Batcher::start_auto`], `scoring.inline = "auto"`): both. A request is
//! scored inline while the tokio workers spent less than a set share of the last 20 ms
//! running tasks ([`WorkerBusy`]), and queued for the inference threads otherwise (or
//! when, exceptionally, no inline session is free). Inline wins at moderate load (no
//! hand-off); near capacity the batcher does (one call for many requests, and the
//! workers keep reading sockets instead of running ONNX Runtime). As load rises the
//! workers' busy share settles near the limit and the excess goes to the batcher.

use super::busy::WorkerBusy;
use super::model::Heads;
use super::realtime::{Change, Governor};
use super::{spare, Model};
use crate::metrics::{Metrics, Sample};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
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
    /// Close a batch early when nothing is queued and nothing announced is coming.
    pub adaptive_wait: bool,
    /// Inference thread `i` pins itself to CPU `cpus[i % cpus.len()]` ([`crate::cpus`]);
    /// empty: it runs wherever the scheduler puts it.
    pub cpus: Vec<usize>,
    /// `Some(max_busy)`: each inference thread puts itself under SCHED_FIFO
    /// ([`crate::cpus::realtime_current`]) while it is busy less than `max_busy` of the
    /// time ([`super::realtime`]).
    pub realtime: Option<f64>,
}

/// Feature rows of one request, row-major. Invariant: `cat.len() == n * F`,
/// `num.len() == n * D` for the model's widths. Dropped, they give their buffers to
/// [`spare`] for the next request's rows ([`Rows::with_capacity`]).
#[derive(Debug, Default)]
pub struct Rows {
    pub cat: Vec<i64>,
    pub num: Vec<f32>,
    pub n: usize,
}

impl Rows {
    /// No rows yet, room for `n` rows of `f` categorical and `d` numeric values, in
    /// spare buffers when there are any.
    pub fn with_capacity(n: usize, f: usize, d: usize) -> Rows {
        Rows { cat: spare::cat().take(n * f), num: spare::num().take(n * d), n }
    }

    /// The same rows in buffers of their own (a shadow variant scores them too).
    pub fn copy(&self) -> Rows {
        let mut rows = Rows::with_capacity(self.n, 0, 0);
        rows.cat.extend_from_slice(&self.cat);
        rows.num.extend_from_slice(&self.num);
        rows
    }
}

impl Drop for Rows {
    fn drop(&mut self) {
        spare::cat().give(std::mem::take(&mut self.cat));
        spare::num().give(std::mem::take(&mut self.num));
    }
}

/// The model's outputs for one job's rows.
///
/// Invariant: `values.len() == rows * heads.count()`, row-major: row `r`'s pCTR is
/// `values[r * k]` and, when `heads` has a conversion head, its pCVR `values[r * k + 1]`
/// (`k = heads.count()`). `heads` is that of the model that scored the rows.
#[derive(Debug, Clone)]
pub struct Scores {
    values: Vec<f32>,
    heads: Heads,
    /// Which model computed them: the batcher's model generation ([`Batcher::generation`]).
    generation: u32,
    /// Where the rows were scored; `None` when none were (every row from the score cache).
    path: Option<ScoringPath>,
}

/// Dropped, the values' buffer goes to [`spare`] for the next request's scores.
impl Drop for Scores {
    fn drop(&mut self) {
        spare::scores().give(std::mem::take(&mut self.values));
    }
}

/// Equal when the same model generation gave the same probabilities, wherever they
/// were computed (`path` is not compared).
impl PartialEq for Scores {
    fn eq(&self, other: &Scores) -> bool {
        (&self.values, self.heads, self.generation) == (&other.values, other.heads, other.generation)
    }
}

impl Scores {
    /// Interleaves per-row heads of a model with `heads`: `pcvr` is as long as `pctr`
    /// for [`Heads::PctrPcvr`] and ignored for [`Heads::Pctr`]. In a spare buffer when
    /// there is one, else one allocation.
    pub fn new(heads: Heads, pctr: &[f32], pcvr: &[f32]) -> Scores {
        let mut values = spare::scores().take(heads.count() * pctr.len());
        match heads {
            Heads::Pctr => {
                values.extend_from_slice(pctr);
                Scores { values, heads, generation: 0, path: None }
            }
            Heads::PctrPcvr => {
                assert_eq!(pctr.len(), pcvr.len(), "one pCVR per pCTR");
                for (&ctr, &cvr) in pctr.iter().zip(pcvr) {
                    values.extend_from_slice(&[ctr, cvr]);
                }
                Scores { values, heads, generation: 0, path: None }
            }
        }
    }

    /// Room for `rows` rows of a model with `heads`, filled by [`Scores::push`].
    pub fn with_capacity(heads: Heads, rows: usize, generation: u32) -> Scores {
        Scores { values: spare::scores().take(rows * heads.count()), heads, generation, path: None }
    }

    /// Appends one row; `pcvr` is ignored for [`Heads::Pctr`].
    pub fn push(&mut self, pctr: f32, pcvr: f32) {
        self.values.push(pctr);
        if self.heads == Heads::PctrPcvr {
            self.values.push(pcvr);
        }
    }

    /// Marks which model generation computed these scores.
    pub fn scored_by(mut self, generation: u32) -> Scores {
        self.generation = generation;
        self
    }

    /// The model generation that computed these scores (0 for the first model).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Marks where the rows were scored ([`Batcher::score`] does).
    pub fn scored_on(mut self, path: Option<ScoringPath>) -> Scores {
        self.path = path;
        self
    }

    /// Where the rows were scored: inline or batched, `None` when every row came from
    /// the score cache.
    pub fn path(&self) -> Option<ScoringPath> {
        self.path
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.values.len() / self.heads.count()
    }

    pub fn heads(&self) -> Heads {
        self.heads
    }

    /// Row `r`'s click probability. Panics when `r >= rows()`.
    pub fn pctr(&self, r: usize) -> f32 {
        self.values[r * self.heads.count()]
    }

    /// Row `r`'s conversion probability given a click; `None` for a model without a
    /// conversion head. Panics when `r >= rows()`.
    pub fn pcvr(&self, r: usize) -> Option<f32> {
        match self.heads {
            Heads::Pctr => {
                assert!(r < self.values.len(), "row {r} of {}", self.values.len());
                None
            }
            Heads::PctrPcvr => Some(self.values[2 * r + 1]),
        }
    }
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
    /// Requests announced ([`Batcher::announce`]) and not yet queued or given up.
    coming: AtomicUsize,
    /// Exponentially weighted mean of inference nanoseconds per row (weight 1/8).
    ns_per_row: AtomicU64,
    threads: usize,
    /// With `scoring.realtime_inference` only.
    realtime: Option<RealtimeCounts>,
}

/// The inference threads' scheduling policy ([`super::realtime`]), for the metrics.
#[derive(Debug, Default)]
struct RealtimeCounts {
    /// Threads under SCHED_FIFO now.
    now: AtomicUsize,
    /// Times a thread left SCHED_FIFO because it was too busy.
    left: AtomicU64,
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
    reply: oneshot::Sender<Result<Scores, ScoreError>>,
}

pub struct Batcher {
    tx: Option<Sender<Job>>,
    /// Inline scoring: the models not in use, each with its generation.
    inline: Option<Pool>,
    /// Auto: when a request is scored inline rather than queued (both sides exist).
    auto: Option<Auto>,
    /// Requests scored by each path ([`ScoringPath`]), for `/metrics`.
    scored: [AtomicU64; 2],
    backlog: Arc<Backlog>,
    /// One per inference thread: a replacement model and its generation, taken before
    /// its next batch or while it waits for one.
    swaps: Vec<Sender<(Model, u32)>>,
    /// The generation of the latest model handed to the threads: 0 at start, one more per
    /// [`Batcher::replace_models`]. Every [`Scores`] says which generation computed it.
    generation: AtomicU32,
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
        let backlog = Arc::new(Backlog {
            threads: models.len(),
            realtime: cfg.realtime.map(|_| RealtimeCounts::default()),
            ..Backlog::default()
        });
        let mut swaps = Vec::with_capacity(models.len());
        let threads = models
            .into_iter()
            .enumerate()
            .map(|(i, model)| {
                let (rx, cfg, metrics, backlog) = (rx.clone(), cfg.clone(), Arc::clone(&metrics), Arc::clone(&backlog));
                let (swap_tx, swap_rx) = bounded::<(Model, u32)>(1);
                swaps.push(swap_tx);
                let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[i % cfg.cpus.len()]);
                let realtime = cfg.realtime;
                std::thread::Builder::new()
                    .name(format!("ctrbid-infer-{i}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu {
                            // `serve` checked the placement at start-up; a failure here
                            // costs latency, not answers.
                            if let Err(e) = crate::cpus::pin_current(&[cpu]) {
                                eprintln!("ctrbid: inference thread {i} could not pin itself to CPU {cpu}: {e}");
                            }
                        }
                        // `serve` checked at start-up that this is allowed; as above.
                        let governor = realtime.and_then(|max_busy| match crate::cpus::realtime_current() {
                            Ok(()) => {
                                if let Some(counts) = &backlog.realtime {
                                    counts.now.fetch_add(1, Ordering::Relaxed);
                                }
                                Some(Governor::new(Instant::now(), max_busy))
                            }
                            Err(e) => {
                                eprintln!("ctrbid: inference thread {i} could not take SCHED_FIFO: {e}");
                                None
                            }
                        });
                        inference_loop(model, rx, swap_rx, cfg, metrics, backlog, governor)
                    })
                    .expect("spawning an inference thread")
            })
            .collect();
        Batcher {
            tx: Some(tx),
            backlog,
            swaps,
            generation: AtomicU32::new(0),
            threads,
            inline: None,
            auto: None,
            scored: Default::default(),
        }
    }

    /// Auto (module doc): `threads` models for inference threads as [`Batcher::start`]
    /// would start them, `inline` models for the pool (one per tokio worker); a request
    /// is scored inline while `busy` reads under `max_busy` (0 to 1).
    pub fn start_auto(
        threads: Vec<Model>,
        inline: Vec<Model>,
        cfg: BatcherConfig,
        busy: Arc<WorkerBusy>,
        max_busy: f64,
        metrics: Arc<Metrics>,
    ) -> Batcher {
        let mut batcher = Batcher::start(threads, cfg, Arc::clone(&metrics));
        batcher.inline = Some(Pool::new(inline, metrics));
        batcher.auto = Some(Auto { busy, max_busy_permille: (max_busy.clamp(0.0, 1.0) * 1000.0).round() as u32 });
        batcher
    }

    /// Inline scoring (module doc): `models` are the pool, one per tokio worker.
    pub fn start_inline(models: Vec<Model>, metrics: Arc<Metrics>) -> Batcher {
        let pool = Pool::new(models, metrics);
        Batcher {
            tx: None,
            backlog: Arc::new(Backlog { threads: pool.size, ..Backlog::default() }),
            swaps: Vec::new(),
            generation: AtomicU32::new(0),
            threads: Vec::new(),
            inline: Some(pool),
            auto: None,
            scored: Default::default(),
        }
    }

    /// With auto scoring, the workers' busy share that decides the path (0 to 1).
    pub fn worker_busy(&self) -> Option<f64> {
        self.auto.as_ref().map(|a| a.busy.share())
    }

    /// Requests whose rows went down `path` (scored or not: expired and shed included).
    pub fn scored_by(&self, path: ScoringPath) -> u64 {
        self.scored[path as usize].load(Ordering::Relaxed)
    }

    /// The path counters and, with auto scoring, the workers' busy share, as Prometheus
    /// text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str(
            "# HELP ctrbid_scoring_path_total Requests sent to scoring, by where they were scored.\n\
             # TYPE ctrbid_scoring_path_total counter\n",
        );
        for path in ScoringPath::ALL {
            let _ = writeln!(out, "ctrbid_scoring_path_total{{path=\"{}\"}} {}", path.label(), self.scored_by(path));
        }
        if let Some(counts) = &self.backlog.realtime {
            let _ = writeln!(
                out,
                "# HELP ctrbid_inference_realtime_threads Inference threads under SCHED_FIFO now (scoring.realtime_inference).\n\
                 # TYPE ctrbid_inference_realtime_threads gauge\nctrbid_inference_realtime_threads {}\n\
                 # HELP ctrbid_inference_realtime_left_total Times an inference thread left SCHED_FIFO, busy more than scoring.realtime_max_busy.\n\
                 # TYPE ctrbid_inference_realtime_left_total counter\nctrbid_inference_realtime_left_total {}",
                counts.now.load(Ordering::Relaxed),
                counts.left.load(Ordering::Relaxed),
            );
        }
        if let Some(busy) = self.worker_busy() {
            let _ = writeln!(
                out,
                "# HELP ctrbid_worker_busy_ratio Share of the last 20 ms the tokio workers ran tasks (auto inline scoring).\n\
                 # TYPE ctrbid_worker_busy_ratio gauge\nctrbid_worker_busy_ratio {busy:.3}"
            );
        }
    }

    /// The generation of the latest model handed to the inference threads. Threads take
    /// it up before their next batch, so for a moment after a reload a request may still
    /// be answered by the one before: [`Scores::generation`] says which.
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// How long the rows already queued will take to score, from the recent cost per
    /// row: a request that cannot be scored before its deadline is shed before its
    /// features are built.
    pub fn expected_wait(&self) -> Duration {
        let b = &self.backlog;
        let ns = b.rows.load(Ordering::Relaxed) as u64 * b.ns_per_row.load(Ordering::Relaxed);
        Duration::from_nanos(ns / b.threads.max(1) as u64)
    }

    /// Announces a request that may soon queue rows: until the guard is dropped, an
    /// adaptive batch waits (up to `max_wait`) for it rather than closing. Drop it just
    /// before scoring (or on giving up): a request whose rows are already queued or in
    /// hand must not hold the batch open for itself.
    ///
    /// With auto scoring a request that would be scored inline now is not counted: a
    /// batch must not wait for rows that will not come to it.
    pub fn announce(&self) -> Announced {
        if self.auto.as_ref().is_some_and(Auto::goes_inline) {
            return Announced(None);
        }
        self.backlog.coming.fetch_add(1, Ordering::AcqRel);
        Announced(Some(Arc::clone(&self.backlog)))
    }

    /// Hands each inference thread a new model (one per thread, same feature widths,
    /// any heads), then each inline session one: the threads' models first, in the
    /// order [`Batcher::start_auto`] takes them. A thread switches before its next batch,
    /// an inline session for the next request. Fails, changing nothing, when the count
    /// is wrong or a previous replacement has not been taken up by the threads yet.
    pub fn replace_models(&self, mut models: Vec<Model>) -> Result<(), String> {
        let (threads, pooled) = (self.swaps.len(), self.inline.as_ref().map_or(0, |p| p.size));
        if models.len() != threads + pooled {
            return Err(format!(
                "{} models for {threads} inference threads and {pooled} inline sessions",
                models.len()
            ));
        }
        // All or none: a thread must not be left on the old model while others switch.
        // (Callers serialise reloads, so nothing fills a slot between check and send.)
        if self.swaps.iter().any(Sender::is_full) {
            return Err("a previous model reload has not been taken up yet (no traffic since)".into());
        }
        let generation = self.generation.load(Ordering::Acquire).wrapping_add(1);
        // From here on an inline session taken before is not put back.
        self.generation.store(generation, Ordering::Release);
        let pool_models = models.split_off(threads);
        for (swap, model) in self.swaps.iter().zip(models) {
            swap.try_send((model, generation)).map_err(|_| "an inference thread has stopped".to_string())?;
        }
        if let Some(pool) = &self.inline {
            pool.replace(pool_models, generation)?;
        }
        Ok(())
    }

    /// Scores `rows`; answers `Expired` rather than scoring after `deadline`.
    pub async fn score(&self, rows: Rows, deadline: Instant) -> Result<Scores, ScoreError> {
        if let Some(pool) = &self.inline {
            if self.auto.as_ref().is_none_or(Auto::goes_inline) {
                match pool.score(&rows, deadline, &self.generation) {
                    // No free session, and inference threads to take it (auto).
                    Err(ScoreError::QueueFull) if self.tx.is_some() => {}
                    answer => {
                        self.scored[ScoringPath::Inline as usize].fetch_add(1, Ordering::Relaxed);
                        return answer.map(|s| s.scored_on(Some(ScoringPath::Inline)));
                    }
                }
            }
        }
        self.scored[ScoringPath::Batched as usize].fetch_add(1, Ordering::Relaxed);
        Ok(self.queue(rows, deadline).await?.scored_on(Some(ScoringPath::Batched)))
    }

    /// Scores `rows` on the inference threads.
    async fn queue(&self, rows: Rows, deadline: Instant) -> Result<Scores, ScoreError> {
        let tx = self.tx.as_ref().ok_or(ScoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let n = rows.n;
        let job = Job { rows, deadline, enqueued: Instant::now(), reply };
        // Counted before it is queued, so the inference thread's subtraction (when it
        // takes the job) always comes after this addition: counted after, a job taken at
        // once was subtracted from nothing, then added for good, and the backlog grew by
        // every such job until the admission check shed every request.
        self.backlog.rows.fetch_add(n, Ordering::Relaxed);
        match tx.try_send(job) {
            Ok(()) => {}
            Err(e) => {
                sub_saturating(&self.backlog.rows, n);
                return Err(match e {
                    TrySendError::Full(_) => ScoreError::QueueFull,
                    TrySendError::Disconnected(_) => ScoreError::Closed,
                });
            }
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

/// A request on its way to scoring ([`Batcher::announce`]); uncounted when dropped.
#[must_use = "a request is counted as coming only while the guard lives"]
pub struct Announced(Option<Arc<Backlog>>);

impl Drop for Announced {
    fn drop(&mut self) {
        if let Some(backlog) = &self.0 {
            sub_saturating(&backlog.coming, 1);
        }
    }
}

impl std::fmt::Debug for Announced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Announced")
    }
}

/// Where a request's rows were scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoringPath {
    /// On the worker that handles the request.
    Inline = 0,
    /// On an inference thread, micro-batched.
    Batched = 1,
}

impl ScoringPath {
    pub const ALL: [ScoringPath; 2] = [ScoringPath::Inline, ScoringPath::Batched];

    pub fn label(self) -> &'static str {
        match self {
            ScoringPath::Inline => "inline",
            ScoringPath::Batched => "batched",
        }
    }
}

/// When auto scoring goes inline: while the workers' busy share is under the limit.
struct Auto {
    busy: Arc<WorkerBusy>,
    max_busy_permille: u32,
}

impl Auto {
    fn goes_inline(&self) -> bool {
        self.busy.under(self.max_busy_permille)
    }
}

/// The models of inline scoring (see the module doc). Invariant: at most `size` models
/// exist at the current generation, each either in the channel or in one task's hands.
struct Pool {
    put: Sender<Session>,
    take: Receiver<Session>,
    size: usize,
    metrics: Arc<Metrics>,
}

/// One model of the pool, its generation, and its output buffers, kept between
/// requests so that scoring a request allocates only its [`Scores`].
struct Session {
    model: Model,
    generation: u32,
    pctr: Vec<f32>,
    pcvr: Vec<f32>,
}

impl Session {
    fn new(model: Model, generation: u32) -> Session {
        Session { model, generation, pctr: Vec::new(), pcvr: Vec::new() }
    }
}

impl Pool {
    fn new(models: Vec<Model>, metrics: Arc<Metrics>) -> Pool {
        let (put, take) = bounded::<Session>(models.len().max(1));
        let size = models.len();
        for model in models {
            put.try_send(Session::new(model, 0)).expect("the pool holds every model");
        }
        Pool { put, take, size, metrics }
    }

    fn score(&self, rows: &Rows, deadline: Instant, current: &AtomicU32) -> Result<Scores, ScoreError> {
        // Empty only when more tasks score at once than there are workers (a runtime
        // with more workers than sessions): shed, as a full queue would.
        let mut session = self.take.try_recv().map_err(|_| ScoreError::QueueFull)?;
        let start = Instant::now();
        let result = if start >= deadline {
            Err(ScoreError::Expired)
        } else {
            let Session { model, generation, pctr, pcvr } = &mut session;
            pctr.clear();
            pcvr.clear();
            match model.score_heads(&rows.cat, &rows.num, rows.n, pctr, pcvr) {
                Ok(()) => Ok(Scores::new(model.info.heads, pctr, pcvr).scored_by(*generation)),
                Err(e) => {
                    eprintln!("ctrbid: inference failed for {} rows: {e}", rows.n);
                    Err(ScoreError::Inference)
                }
            }
        };
        if result.is_ok() {
            self.metrics.sample(Sample::QueueWait { ns: 0 });
            self.metrics.sample(Sample::Batch { rows: rows.n as u32, inference_ns: start.elapsed().as_nanos() as u64 });
        }
        // A model of an older generation stays out: its replacement is in the pool.
        if session.generation == current.load(Ordering::Acquire) {
            let _ = self.put.try_send(session);
        }
        result
    }

    /// Swaps every model of the pool for one of `models` (as many as the pool holds) at
    /// `generation`, which the caller has already made current: models in use are then
    /// dropped when their task is done, not put back.
    fn replace(&self, models: Vec<Model>, generation: u32) -> Result<(), String> {
        while self.take.try_recv().is_ok() {}
        for model in models {
            self.put.try_send(Session::new(model, generation)).map_err(|_| "the inline pool is full".to_string())?;
        }
        Ok(())
    }
}

fn inference_loop(
    mut model: Model,
    rx: Receiver<Job>,
    swaps: Receiver<(Model, u32)>,
    cfg: BatcherConfig,
    metrics: Arc<Metrics>,
    backlog: Arc<Backlog>,
    mut governor: Option<Governor>,
) {
    let (f, d) = (model.info.cat_width, model.info.num_width);
    let mut generation = 0u32;
    let mut batch: Vec<Job> = Vec::with_capacity(64);
    let mut cat: Vec<i64> = Vec::with_capacity(cfg.max_batch_rows * f);
    let mut num: Vec<f32> = Vec::with_capacity(cfg.max_batch_rows * d);
    let mut pctr: Vec<f32> = Vec::with_capacity(cfg.max_batch_rows);
    // Sized whatever the model's heads: a reload may bring a conversion head.
    let mut pcvr: Vec<f32> = Vec::with_capacity(cfg.max_batch_rows);
    // Reloads keep the feature spec, so the widths (and buffers) stay valid; the heads
    // may change, and `pcvr` stays empty for a model without a conversion head. A
    // replacement is taken while the thread waits for a job, so a reload completes
    // without traffic (with auto inline scoring the queue may see none for long).
    let mut swaps = Some(swaps);
    loop {
        let first = match &swaps {
            Some(sw) => crossbeam_channel::select! {
                recv(rx) -> job => match job {
                    Ok(job) => job,
                    Err(_) => return,
                },
                recv(sw) -> new => {
                    match new {
                        Ok((new, new_generation)) => (model, generation) = (new, new_generation),
                        // The batcher is going away: wait for jobs only.
                        Err(_) => swaps = None,
                    }
                    continue;
                }
            },
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        // A replacement that came with the job goes first.
        if let Some(Ok((new, new_generation))) = swaps.as_ref().map(Receiver::try_recv) {
            (model, generation) = (new, new_generation);
        }
        let mut rows = first.rows.n;
        // Taken: no longer waiting (it was counted before it was queued).
        sub_saturating(&backlog.rows, first.rows.n);
        batch.push(first);
        let until = Instant::now() + cfg.max_wait;
        while rows < cfg.max_batch_rows {
            let Some(job) = next_job(&rx, &cfg, &backlog, until) else { break };
            rows += job.rows.n;
            sub_saturating(&backlog.rows, job.rows.n);
            batch.push(job);
        }
        let start = Instant::now();
        cat.clear();
        num.clear();
        pctr.clear();
        pcvr.clear();
        let mut live = 0usize;
        for job in &batch {
            metrics.sample(Sample::QueueWait { ns: (start - job.enqueued).as_nanos() as u64 });
            if job.deadline > start && !job.reply.is_closed() {
                cat.extend_from_slice(&job.rows.cat);
                num.extend_from_slice(&job.rows.num);
                live += job.rows.n;
            }
        }
        let result = model.score_heads(&cat, &num, live, &mut pctr, &mut pcvr);
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
                Ok(()) => {
                    let rows = offset..offset + job.rows.n;
                    // `score_heads` filled `pcvr` exactly when the model has the head.
                    Ok(Scores::new(model.info.heads, &pctr[rows.clone()], pcvr.get(rows).unwrap_or_default())
                        .scored_by(generation))
                }
                Err(_) => Err(ScoreError::Inference),
            };
            offset += job.rows.n;
            let _ = job.reply.send(answer);
        }
        if let (Some(governor), Some(counts)) = (&mut governor, &backlog.realtime) {
            govern(governor, start, counts);
        }
    }
}

/// A real-time inference thread's policy after a batch that began at `start`
/// ([`super::realtime`]). A failed change is reported and the governor goes on as if
/// it had been made; the gauge counts only what the kernel accepted. (Leaving SCHED_FIFO
/// needs no privilege, and `serve` checked at start-up that taking it is allowed.)
fn govern(governor: &mut Governor, start: Instant, counts: &RealtimeCounts) {
    let now = Instant::now();
    match governor.record(now - start, now) {
        Some(Change::Leave) => match crate::cpus::normal_current() {
            Ok(()) => {
                sub_saturating(&counts.now, 1);
                counts.left.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => eprintln!("ctrbid: an inference thread could not leave SCHED_FIFO: {e}"),
        },
        Some(Change::Return) => match crate::cpus::realtime_current() {
            Ok(()) => {
                counts.now.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => eprintln!("ctrbid: an inference thread could not take SCHED_FIFO again: {e}"),
        },
        None => {}
    }
}

/// The next job for the batch in hand, or `None` to close it: at `until`, and with
/// `adaptive_wait` as soon as the queue is empty while no announced request is coming.
/// An adaptive wait looks again every quarter of `max_wait`, so a request that gives up
/// before scoring (a no-bid) holds the batch open for at most that long.
fn next_job(rx: &Receiver<Job>, cfg: &BatcherConfig, backlog: &Backlog, until: Instant) -> Option<Job> {
    if !cfg.adaptive_wait {
        return rx.recv_deadline(until).ok();
    }
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        // A request uncounts itself just before it queues its job; one that does so
        // between the `try_recv` above and this load goes into the next batch.
        if backlog.coming.load(Ordering::Acquire) == 0 {
            return None;
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        match rx.recv_deadline((now + cfg.max_wait / 4).min(until)) {
            Ok(job) => return Some(job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

fn sub_saturating(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_interleave_heads_by_row() {
        let two = Scores::new(Heads::PctrPcvr, &[0.1, 0.2, 0.3], &[0.5, 0.6, 0.7]);
        assert_eq!((two.rows(), two.heads()), (3, Heads::PctrPcvr));
        assert_eq!((two.pctr(1), two.pcvr(1)), (0.2, Some(0.6)));
        assert_eq!(two.values, [0.1, 0.5, 0.2, 0.6, 0.3, 0.7]);
        let one = Scores::new(Heads::Pctr, &[0.1, 0.2], &[]);
        assert_eq!((one.rows(), one.heads()), (2, Heads::Pctr));
        assert_eq!((one.pctr(1), one.pcvr(1)), (0.2, None));
    }
}
