//! Metrics: request counts by outcome, per-stage latency histograms, and the whole
//! in-process latency of scored requests split by where their rows were scored, and of
//! the requests each model variant scored.
//!
//! Latencies are exported twice: as summaries (quantiles of this process, read by the
//! load tests and an operator's eye) and as Prometheus histograms
//! (`ctrbid_request_duration_seconds`, `ctrbid_stage_duration_seconds`,
//! `ctrbid_variant_request_duration_seconds`, buckets [`LATENCY_BUCKETS_S`]), which a
//! query can add up across pods, as a canary analysis must. The buckets are read from
//! the same HDR histograms (3 significant digits: a count at a bucket's edge may fall
//! on either side within 0.1 %); the sums are exact.
//!
//! The request path never takes a lock here: counters are relaxed atomics (monotonic,
//! wrapping after 2^64), and latency samples go through a bounded channel to a recorder
//! thread that owns the HDR histograms and drains the channel every few milliseconds.
//! When the channel is full a sample is dropped and counted
//! (`ctrbid_metrics_dropped_total`) rather than slowing a request. `/metrics` renders
//! Prometheus text from the recorder's histograms under a mutex only the recorder and
//! the scrape touch.

use crate::scoring::batcher::ScoringPath;
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Samples waiting for the recorder; beyond this they are dropped.
const SAMPLE_QUEUE: usize = 65_536;
/// Histograms track 1 ns .. 60 s with 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;

/// The upper bounds of the exported latency histograms, seconds: fine under the 10 ms
/// budget (where a canary's p99 is judged), coarse past it (+Inf is implied).
pub const LATENCY_BUCKETS_S: [f64; 10] = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1];

/// Model variants with a latency histogram of their own, by slot
/// ([`crate::variants::VariantBook`]); samples of higher slots are not kept.
pub const VARIANT_SLOTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Parse,
    Validate,
    Select,
    Features,
    QueueWait,
    Inference,
    Pricing,
    Total,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Parse,
        Stage::Validate,
        Stage::Select,
        Stage::Features,
        Stage::QueueWait,
        Stage::Inference,
        Stage::Pricing,
        Stage::Total,
    ];
    pub fn label(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::Validate => "validate",
            Stage::Select => "select",
            Stage::Features => "features",
            Stage::QueueWait => "queue_wait",
            Stage::Inference => "inference",
            Stage::Pricing => "pricing",
            Stage::Total => "total",
        }
    }
}

/// How a request ended. Each has one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Bid,
    /// Valid request, nothing worth bidding (no candidate, below floor, currency).
    NoBid,
    /// No bid because time ran out or the scoring queue was full.
    Shed,
    /// 400: malformed or breaking an OpenRTB rule.
    Invalid,
    /// 413: body over the limit.
    TooLarge,
    /// 5xx: a fault of ours. Should stay zero.
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 6] =
        [Outcome::Bid, Outcome::NoBid, Outcome::Shed, Outcome::Invalid, Outcome::TooLarge, Outcome::Error];
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Bid => "bid",
            Outcome::NoBid => "no_bid",
            Outcome::Shed => "shed",
            Outcome::Invalid => "invalid",
            Outcome::TooLarge => "too_large",
            Outcome::Error => "error",
        }
    }
}

/// One observation for the recorder.
#[derive(Debug, Clone, Copy)]
pub enum Sample {
    /// Nanoseconds per stage of one request; 0 for stages the request did not reach.
    /// `path`: where its rows were scored, `None` when none were.
    Request {
        ns: [u64; Stage::ALL.len()],
        path: Option<ScoringPath>,
        /// The slot of the model variant that scored its rows, when one did.
        variant: Option<u8>,
    },
    /// One inference batch: rows scored, and time waited by each of its jobs.
    Batch {
        rows: u32,
        inference_ns: u64,
    },
    QueueWait {
        ns: u64,
    },
}

struct Histograms {
    stages: Vec<Latency>,
    /// Stage `total` of the requests scored on each path, indexed by `ScoringPath as usize`.
    scored: [Latency; ScoringPath::ALL.len()],
    /// Stage `total` of the requests each variant scored, by slot; grown on first use.
    variants: Vec<Latency>,
    batch_rows: Histogram<u64>,
}

/// Nanoseconds: an HDR histogram for quantiles and buckets, and their exact sum.
struct Latency {
    hist: Histogram<u64>,
    sum_ns: u64,
}

impl Latency {
    fn new() -> Latency {
        Latency {
            hist: Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("static histogram bounds are valid"),
            sum_ns: 0,
        }
    }

    fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns);
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// One labelled series of a Prometheus histogram in seconds (`labels` is `k="v"`,
    /// or empty): cumulative buckets, sum, count.
    fn render_buckets(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for le in LATENCY_BUCKETS_S {
            let n = self.hist.count_between(0, (le * 1e9) as u64);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.hist.len());
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {:.9}", self.sum_ns as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{braces} {}", self.hist.len());
    }
}

/// Shared by the server, the bidder and the batcher.
pub struct Metrics {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    /// No-bid answers by reason, indexed by `bidder::NoBidReason as usize`.
    no_bids: [AtomicU64; 16],
    /// Answers given after `tmax` less the network allowance, from the request head.
    late: AtomicU64,
    dropped: AtomicU64,
    tx: Sender<Sample>,
    hist: Arc<Mutex<Histograms>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the metrics and starts the recorder thread (it ends when `Metrics` is dropped).
    pub fn start() -> Arc<Metrics> {
        let hist = Arc::new(Mutex::new(Histograms {
            stages: Stage::ALL.iter().map(|_| Latency::new()).collect(),
            scored: ScoringPath::ALL.map(|_| Latency::new()),
            variants: Vec::new(),
            batch_rows: Histogram::new_with_bounds(1, 1 << 20, 3).expect("static histogram bounds are valid"),
        }));
        let (tx, rx) = bounded(SAMPLE_QUEUE);
        let recorder = Arc::clone(&hist);
        std::thread::Builder::new()
            .name("ctrbid-metrics".into())
            .spawn(move || record_loop(rx, recorder))
            .expect("spawning the metrics thread");
        Arc::new(Metrics {
            outcomes: Default::default(),
            no_bids: Default::default(),
            late: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            tx,
            hist,
        })
    }

    pub fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a no-bid by reason index (`< 16`; others are ignored).
    pub fn count_no_bid(&self, reason: usize) {
        if let Some(c) = self.no_bids.get(reason) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an answer that left after its request's deadline.
    pub fn count_late(&self) {
        self.late.fetch_add(1, Ordering::Relaxed);
    }

    pub fn late_count(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    pub fn no_bid_count(&self, reason: usize) -> u64 {
        self.no_bids.get(reason).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn outcome_count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }

    pub fn sample(&self, s: Sample) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(s) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP ctrbid_requests_total Bid requests by outcome.\n# TYPE ctrbid_requests_total counter\n");
        for o in Outcome::ALL {
            let _ = writeln!(out, "ctrbid_requests_total{{outcome=\"{}\"}} {}", o.label(), self.outcome_count(o));
        }
        let _ = writeln!(
            out,
            "# HELP ctrbid_late_answers_total Bid requests answered after tmax less the network allowance (from the request head).\n\
             # TYPE ctrbid_late_answers_total counter\nctrbid_late_answers_total {}",
            self.late_count()
        );
        let _ = writeln!(
            out,
            "# HELP ctrbid_metrics_dropped_total Latency samples the recorder could not take (its queue was full).\n\
             # TYPE ctrbid_metrics_dropped_total counter\nctrbid_metrics_dropped_total {}",
            self.dropped.load(Ordering::Relaxed)
        );
        let hist = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str(
            "# HELP ctrbid_stage_seconds Latency of each stage of the bid path.\n# TYPE ctrbid_stage_seconds summary\n",
        );
        for (stage, h) in Stage::ALL.iter().zip(&hist.stages) {
            seconds_summary(&mut out, "ctrbid_stage_seconds", ("stage", stage.label()), &h.hist);
        }
        out.push_str(
            "# HELP ctrbid_request_duration_seconds In-process time of each bid request, first byte read to answer \
             (the stage total), every outcome.\n# TYPE ctrbid_request_duration_seconds histogram\n",
        );
        hist.stages[Stage::Total as usize].render_buckets(&mut out, "ctrbid_request_duration_seconds", "");
        out.push_str(
            "# HELP ctrbid_stage_duration_seconds Latency of each stage of the bid path.\n\
             # TYPE ctrbid_stage_duration_seconds histogram\n",
        );
        for (stage, h) in Stage::ALL.iter().zip(&hist.stages) {
            h.render_buckets(&mut out, "ctrbid_stage_duration_seconds", &format!("stage=\"{}\"", stage.label()));
        }
        out.push_str(
            "# HELP ctrbid_scored_request_seconds In-process latency (stage total) of the requests whose rows were \
             scored, by where: inline on the request's worker or batched on an inference thread.\n\
             # TYPE ctrbid_scored_request_seconds summary\n",
        );
        for (path, h) in ScoringPath::ALL.iter().zip(&hist.scored) {
            seconds_summary(&mut out, "ctrbid_scored_request_seconds", ("path", path.label()), &h.hist);
        }
        out.push_str("# HELP ctrbid_batch_rows Rows per inference batch.\n# TYPE ctrbid_batch_rows summary\n");
        for q in [0.5, 0.9, 0.99] {
            let _ = writeln!(out, "ctrbid_batch_rows{{quantile=\"{q}\"}} {}", hist.batch_rows.value_at_quantile(q));
        }
        let _ = writeln!(out, "ctrbid_batch_rows_count {}", hist.batch_rows.len());
        out
    }

    /// The latency histogram of the requests the variants scored, one series per
    /// `(slot, name)`, with its header; a slot that scored nothing yet has empty buckets.
    pub fn render_variants<'a>(&self, out: &mut String, variants: impl Iterator<Item = (u8, &'a str)>) {
        out.push_str(
            "# HELP ctrbid_variant_request_duration_seconds In-process time of the bid requests each model variant \
             scored.\n# TYPE ctrbid_variant_request_duration_seconds histogram\n",
        );
        let hist = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        let empty = Latency::new();
        for (slot, name) in variants {
            let h = hist.variants.get(usize::from(slot)).unwrap_or(&empty);
            h.render_buckets(out, "ctrbid_variant_request_duration_seconds", &format!("variant=\"{name}\""));
        }
    }
}

/// One labelled series of a Prometheus summary from a histogram of nanoseconds: its
/// quantiles in seconds, then its count.
fn seconds_summary(out: &mut String, name: &str, (key, value): (&str, &str), h: &Histogram<u64>) {
    for q in [0.5, 0.9, 0.99, 0.999] {
        let _ =
            writeln!(out, "{name}{{{key}=\"{value}\",quantile=\"{q}\"}} {:.9}", h.value_at_quantile(q) as f64 / 1e9);
    }
    let _ = writeln!(out, "{name}_count{{{key}=\"{value}\"}} {}", h.len());
}

/// How often the recorder drains the sample queue. It sleeps between drains rather than
/// blocking in `recv`: a blocked receiver made every sample a futex wake-up on the
/// request path and a context switch onto the recorder (at 3,338 requests/s on 2 cores
/// the recorder thread had 12 % of the server's CPU samples under `perf`, most of them
/// in the scheduler). At 5 ms a drain finds a few hundred samples at most, far below
/// `SAMPLE_QUEUE`, and `/metrics` is at most that much behind.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

fn record_loop(rx: Receiver<Sample>, hist: Arc<Mutex<Histograms>>) {
    loop {
        std::thread::sleep(DRAIN_EVERY);
        let mut h = hist.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match rx.try_recv() {
                Ok(s) => h.record(s),
                Err(TryRecvError::Empty) => break,
                // Every `Metrics` (the only sender) is gone.
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

impl Histograms {
    fn record(&mut self, s: Sample) {
        match s {
            Sample::Request { ns, path, variant } => {
                for (v, hist) in ns.iter().zip(self.stages.iter_mut()) {
                    if *v > 0 {
                        hist.record(*v);
                    }
                }
                let total = ns[Stage::Total as usize].max(1);
                if let Some(path) = path {
                    self.scored[path as usize].record(total);
                }
                if let Some(slot) = variant.map(usize::from).filter(|&s| s < VARIANT_SLOTS) {
                    if self.variants.len() <= slot {
                        self.variants.resize_with(slot + 1, Latency::new);
                    }
                    self.variants[slot].record(total);
                }
            }
            Sample::Batch { rows, inference_ns } => {
                self.batch_rows.saturating_record(u64::from(rows).max(1));
                self.stages[Stage::Inference as usize].record(inference_ns.max(1));
            }
            Sample::QueueWait { ns } => self.stages[Stage::QueueWait as usize].record(ns.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_quantiles() {
        let m = Metrics::start();
        m.count(Outcome::Bid);
        m.count(Outcome::Bid);
        m.count(Outcome::Invalid);
        let mut ns = [0u64; 8];
        ns[Stage::Parse as usize] = 2_000;
        ns[Stage::Total as usize] = 1_000_000;
        m.sample(Sample::Request { ns, path: None, variant: None });
        ns[Stage::Total as usize] = 3_000_000;
        m.sample(Sample::Request { ns, path: Some(ScoringPath::Batched), variant: Some(1) });
        // The recorder runs on its own thread: wait until it has taken the samples (it
        // drains every few ms; 10 s is for a box under heavy load, then it fails).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let text = loop {
            let t = m.render();
            if t.contains("ctrbid_stage_seconds_count{stage=\"total\"} 2") {
                break t;
            }
            assert!(std::time::Instant::now() < deadline, "the recorder took no samples in 10 s: {t}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert!(text.contains("ctrbid_requests_total{outcome=\"bid\"} 2"));
        assert!(text.contains("ctrbid_requests_total{outcome=\"invalid\"} 1"));
        assert!(text.contains("ctrbid_stage_seconds{stage=\"total\",quantile=\"0.5\"} 0.001000"), "{text}");
        assert!(text.contains("ctrbid_stage_seconds{stage=\"total\",quantile=\"0.99\"} 0.003000"), "{text}");
        assert!(text.contains("ctrbid_stage_seconds_count{stage=\"select\"} 0"));
        // Only the scored request is in its path's histogram, and none in the other's.
        assert!(text.contains("ctrbid_scored_request_seconds{path=\"batched\",quantile=\"0.5\"} 0.003000"), "{text}");
        assert!(text.contains("ctrbid_scored_request_seconds_count{path=\"batched\"} 1"), "{text}");
        assert!(text.contains("ctrbid_scored_request_seconds_count{path=\"inline\"} 0"), "{text}");
        // The same two as a Prometheus histogram: cumulative buckets, exact sum.
        for (le, n) in [("0.0005", 0), ("0.001", 1), ("0.002", 1), ("0.003", 2), ("0.1", 2), ("+Inf", 2)] {
            let line = format!("ctrbid_request_duration_seconds_bucket{{le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(text.contains("ctrbid_request_duration_seconds_sum 0.004000000\n"), "{text}");
        assert!(text.contains("ctrbid_request_duration_seconds_count 2\n"), "{text}");
        assert!(text.contains("ctrbid_stage_duration_seconds_bucket{stage=\"parse\",le=\"0.0005\"} 2\n"), "{text}");
        assert!(text.contains("ctrbid_stage_duration_seconds_count{stage=\"select\"} 0\n"), "{text}");
        // Only the second was scored by a variant (slot 1); slot 0 has scored nothing.
        let mut v = String::new();
        m.render_variants(&mut v, [(0, "main"), (1, "cand")].into_iter());
        assert!(v.contains("ctrbid_variant_request_duration_seconds_bucket{variant=\"cand\",le=\"0.002\"} 0\n"), "{v}");
        assert!(v.contains("ctrbid_variant_request_duration_seconds_bucket{variant=\"cand\",le=\"0.003\"} 1\n"), "{v}");
        assert!(v.contains("ctrbid_variant_request_duration_seconds_count{variant=\"main\"} 0\n"), "{v}");
    }
}
