//! The event log (`cargo bench --bench eventlog`), 200-byte records, in records/s.
//!
//! * `eventlog::lossy`: `append` as the bid path calls it. `written` is end to end:
//!   the records appended (retried while the queue is full) and then a `sync`, so
//!   the figure is what the writer thread sustains, framing, writing and rotating
//!   (64 MiB segments, gzip of closed ones on its own thread). `append_call` is the
//!   baseline: the calls alone, 1,000 at a time into a queue with room, the writer
//!   catching up outside the timing: what a bid pays.
//! * `eventlog::durable`: `append_durable` from 1 and 16 concurrent tokio tasks (two
//!   worker threads), each awaiting its record before the next, with group commit at
//!   the default 2 ms and the baseline without it (`commit_interval` 0: a commit per
//!   batch the writer takes). Each record's latency, from the call until it resolves,
//!   goes into a histogram printed after the group (p50, p99, max).
//!
//! Segments go to a temporary directory under `CTRBID_BENCH_DIR`, or the system's
//! (mind that a tmpfs fsyncs for free).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ctrbid::eventlog::{EventLog, EventLogConfig};
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RECORD_BYTES: usize = 200;
/// `append_call` times this many calls, then lets the writer catch up untimed.
const CALLS_PER_ROUND: u64 = 1000;

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("CTRBID_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory")
}

fn record(i: u64) -> Vec<u8> {
    let mut r = vec![(i % 251) as u8; RECORD_BYTES];
    r[..8].copy_from_slice(&i.to_le_bytes());
    r
}

fn lossy(c: &mut Criterion) {
    let dir = temp_dir();
    let log = EventLog::open(EventLogConfig::new(dir.path())).expect("open");
    let mut g = c.benchmark_group("eventlog::lossy");
    g.throughput(Throughput::Elements(1));
    g.bench_function("written", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                let r = record(i);
                while !log.append(r.clone()) {
                    std::thread::yield_now();
                }
            }
            log.sync_blocking().expect("sync");
            start.elapsed()
        })
    });
    g.bench_function("append_call", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CALLS_PER_ROUND);
                let records: Vec<Vec<u8>> = (0..n).map(record).collect();
                let start = Instant::now();
                for r in records {
                    assert!(log.append(r), "the queue was full");
                }
                timed += start.elapsed();
                log.sync_blocking().expect("sync");
                left -= n;
            }
            timed
        })
    });
    g.finish();
    let stats = log.stats();
    eprintln!(
        "eventlog::lossy: {} records, {} segments rotated, {} compressed, {} dropped (retried)",
        stats.records_appended, stats.segments_rotated, stats.segments_compressed, stats.dropped
    );
    log.close().expect("close");
}

fn durable(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut g = c.benchmark_group("eventlog::durable");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    let mut summaries = Vec::new();
    for (name, interval) in [("interval_2ms", Duration::from_millis(2)), ("interval_0", Duration::ZERO)] {
        for tasks in [1u64, 16] {
            let dir = temp_dir();
            let cfg = EventLogConfig { commit_interval: interval, ..EventLogConfig::new(dir.path()) };
            let log = EventLog::open(cfg).expect("open");
            let latency = Arc::new(Mutex::new(latency_histogram()));
            let id = BenchmarkId::new(name, format!("{tasks}_tasks"));
            g.bench_function(id, |b| {
                b.iter_custom(|iters| rt.block_on(run_tasks(&log, tasks, iters, &latency)));
            });
            let h = latency.lock().unwrap();
            let commits = log.stats().durable_commits;
            summaries.push(format!(
                "eventlog::durable/{name}/{tasks}_tasks: latency p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; \
                 {} records in {commits} commits ({:.1} a commit)",
                h.value_at_quantile(0.5) as f64 / 1e3,
                h.value_at_quantile(0.99) as f64 / 1e3,
                h.max() as f64 / 1e3,
                h.len(),
                h.len() as f64 / commits.max(1) as f64,
            ));
            drop(h);
            log.close().expect("close");
        }
    }
    g.finish();
    for s in summaries {
        eprintln!("{s}");
    }
}

/// Nanoseconds, 1 µs to 60 s, three significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid bounds")
}

/// `iters` durable appends shared by `tasks` tasks; the time until all resolved.
async fn run_tasks(log: &EventLog, tasks: u64, iters: u64, latency: &Arc<Mutex<Histogram<u64>>>) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (log, latency) = (log.clone(), latency.clone());
            let n = iters / tasks + u64::from(t < iters % tasks);
            tokio::spawn(async move {
                let mut mine = latency_histogram();
                for i in 0..n {
                    let sent = Instant::now();
                    log.append_durable(record(t << 32 | i)).await.expect("durable append");
                    mine.saturating_record(sent.elapsed().as_nanos() as u64);
                }
                latency.lock().unwrap().add(&mine).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

criterion_group!(benches, lossy, durable);
criterion_main!(benches);
