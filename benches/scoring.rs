//! Scoring stage, in rows per second (`cargo bench --bench scoring`).
//!
//! * `scoring::ort_alone`: one ONNX Runtime call on batches of 1, 8, 32, 64 and 256
//!   rows: the floor every design pays (the fixed cost per call is what micro-batching
//!   spreads).
//! * `scoring::batcher`: 1, 4 and 16 concurrent requests of 50 rows each (the bidder's
//!   typical candidate count) through the micro-batcher with the default knobs, with
//!   the fixed batch wait (`requests`) and the adaptive one (`requests_adaptive_wait`),
//!   against the baseline in the same group: the same rows in one direct ORT call
//!   (`ort_one_call`). The difference is what queueing, batching and the hand-off
//!   between threads cost.
//!
//! The served model (`models/default/model.onnx`) unless `CTRBID_BENCH_MODEL` names
//! another; rows are random indices inside each field's range.

#[path = "common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ctrbid::metrics::Metrics;
use ctrbid::scoring::{Batcher, BatcherConfig, Rows};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROWS_PER_REQUEST: usize = 50;

fn ort_alone(c: &mut Criterion) {
    let spec = common::spec();
    let mut model = common::open_model(&common::model_path());
    let mut g = c.benchmark_group("scoring::ort_alone");
    let (mut pctr, mut pcvr) = (Vec::with_capacity(256), Vec::with_capacity(256));
    for batch in [1usize, 8, 32, 64, 256] {
        let (cat, num) = common::rows(&spec, batch, batch as u64);
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &n| {
            b.iter(|| {
                pctr.clear();
                pcvr.clear();
                model.score_heads(&cat, &num, n, &mut pctr, &mut pcvr).expect("inference");
                std::hint::black_box(&pctr);
            })
        });
    }
    g.finish();
}

fn batcher(c: &mut Criterion) {
    let spec = common::spec();
    let path = common::model_path();
    let mut direct = common::open_model(&path);
    let defaults = ctrbid::config::ScoringConfig::default();
    let start = |adaptive_wait: bool| {
        let cfg = BatcherConfig {
            max_batch_rows: defaults.max_batch_rows,
            max_wait: Duration::from_micros(defaults.max_wait_us),
            queue_capacity: defaults.queue_capacity,
            adaptive_wait,
            cpus: Vec::new(),
            realtime: None,
        };
        Arc::new(Batcher::start(vec![common::open_model(&path)], cfg, Metrics::start()))
    };
    let batchers = [("requests", start(false)), ("requests_adaptive_wait", start(true))];
    // One tokio worker, as on a 2-core box where the other core runs inference.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().expect("runtime");
    let mut g = c.benchmark_group("scoring::batcher");
    let (mut pctr, mut pcvr) = (Vec::new(), Vec::new());
    for concurrent in [1usize, 4, 16] {
        let requests: Vec<(Vec<i64>, Vec<f32>)> =
            (0..concurrent).map(|i| common::rows(&spec, ROWS_PER_REQUEST, 1000 + i as u64)).collect();
        g.throughput(Throughput::Elements((concurrent * ROWS_PER_REQUEST) as u64));
        for (name, batcher) in &batchers {
            g.bench_with_input(BenchmarkId::new(*name, concurrent), &concurrent, |b, _| {
                b.iter(|| {
                    rt.block_on(async {
                        let mut tasks = tokio::task::JoinSet::new();
                        for (cat, num) in &requests {
                            let rows = Rows { cat: cat.clone(), num: num.clone(), n: ROWS_PER_REQUEST };
                            let deadline = Instant::now() + Duration::from_millis(100);
                            let batcher = Arc::clone(batcher);
                            // As the bidder does: on its way from arrival until it scores
                            // (the requests of one iteration arrive together).
                            let coming = batcher.announce();
                            tasks.spawn(async move {
                                drop(coming);
                                batcher.score(rows, deadline).await.map(|s| s.rows())
                            });
                        }
                        while let Some(done) = tasks.join_next().await {
                            assert_eq!(done.expect("task").expect("scored"), ROWS_PER_REQUEST);
                        }
                    })
                })
            });
        }
        let (cat, num): (Vec<i64>, Vec<f32>) = requests.iter().fold((Vec::new(), Vec::new()), |(mut c, mut n), r| {
            c.extend_from_slice(&r.0);
            n.extend_from_slice(&r.1);
            (c, n)
        });
        let rows = concurrent * ROWS_PER_REQUEST;
        g.bench_with_input(BenchmarkId::new("ort_one_call", concurrent), &rows, |b, &n| {
            b.iter(|| {
                pctr.clear();
                pcvr.clear();
                direct.score_heads(&cat, &num, n, &mut pctr, &mut pcvr).expect("inference");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, ort_alone, batcher);
criterion_main!(benches);
