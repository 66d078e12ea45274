//! The score cache (`cargo bench --bench cache`), one request of 70 candidate rows at a
//! time, and the bid path with and without it.
//!
//! `score_cache`: the cache's own cost per request, lookups that miss followed by
//! remembering the rows (what traffic without repeats pays), and lookups that all hit
//! (what a repeat costs instead of scoring), against `row_keys_only` (hashing the rows).
//! Throughput in rows/s.
//!
//! `bid_repeats`: `Bidder::bid` with the default config, model and catalog, the score
//! cache off (`scoring.cache_entries = 0`) and on, on two streams of simulator requests:
//! without repeats, and with 30 % of requests re-offering one of the last 50 (a new id,
//! every other byte the same). A stream cycles a 3,000-request corpus; cycle `k` raises
//! every floor by k / 1,000 (USD CPM), so no row repeats from one cycle to the next and
//! the repeats are only the stream's own. Throughput in requests/s.

#[path = "common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ctrbid::bidder::Bidder;
use ctrbid::config::ServeMode;
use ctrbid::metrics::Metrics;
use ctrbid::scoring::{CacheConfig, Heads, Rows, ScoreCache, Scores};
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

const ROWS: usize = 70;
const REPEAT_SHARE: f64 = 0.3;
const REPEAT_WINDOW: usize = 50;

fn score_cache(c: &mut Criterion) {
    let spec = common::spec();
    let (cat, num) = common::rows(&spec, ROWS, 7);
    let mut rows = Rows { cat, num, n: ROWS };
    let d = rows.num.len() / ROWS;
    let scores = Scores::new(Heads::PctrPcvr, &[0.01; ROWS], &[0.05; ROWS]);
    let cache = ScoreCache::new(CacheConfig {
        max_entries: ctrbid::config::SUGGESTED_SCORE_CACHE_ENTRIES,
        ttl: Duration::from_secs(3600),
    });

    let mut g = c.benchmark_group("score_cache");
    g.throughput(Throughput::Elements(ROWS as u64));
    let mut fresh = 0u32;
    g.bench_function("miss_and_remember", |b| {
        b.iter(|| {
            // A new value in every row: new keys, all over the table.
            fresh = fresh.wrapping_add(1);
            for r in 0..ROWS {
                rows.num[r * d] = f32::from_bits(fresh);
            }
            let hits = cache.hits(&rows, 0);
            cache.remember(&rows, &scores);
            std::hint::black_box(hits)
        })
    });
    cache.remember(&rows, &scores);
    g.bench_function("all_hit", |b| b.iter(|| std::hint::black_box(cache.hits(&rows, 0))));
    let cold = ScoreCache::new(CacheConfig { max_entries: 2, ttl: Duration::from_secs(1) });
    g.bench_function("row_keys_only", |b| b.iter(|| std::hint::black_box(cold.hits(&rows, 1))));
    g.finish();
}

/// Stream position -> corpus request: fresh requests in order, and with
/// `REPEAT_SHARE` one of the last `REPEAT_WINDOW` positions again.
fn plan(corpus_len: usize, repeat_share: f64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut plan: Vec<usize> = Vec::new();
    let mut next = 0;
    while next < corpus_len {
        if !plan.is_empty() && rng.gen_bool(repeat_share) {
            let back = rng.gen_range(1..=REPEAT_WINDOW.min(plan.len()));
            plan.push(plan[plan.len() - back]);
        } else {
            plan.push(next);
            next += 1;
        }
    }
    plan
}

/// `body` with `extra` added to every imp's floor (a floor of 0 too, so every row's
/// `floor_log` changes).
fn raised_floors(body: &[u8], extra: f64) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(body).expect("corpus JSON");
    for imp in v["imp"].as_array_mut().expect("imps") {
        let floor = imp.get("bidfloor").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        imp["bidfloor"] = serde_json::json!(floor + extra);
    }
    serde_json::to_vec(&v).expect("JSON")
}

fn bid_repeats(c: &mut Criterion) {
    let corpus = common::Corpus::default_traffic(3750);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().expect("runtime");
    let bidder = |entries: usize| {
        let mut cfg = common::bidder_config(ServeMode::Bid);
        cfg.scoring.cache_entries = entries;
        Bidder::load(&cfg, Metrics::start()).expect("the default bidder")
    };
    let now = common::NOW_MS;
    let mut g = c.benchmark_group("bid_repeats");
    g.throughput(Throughput::Elements(1));
    for (stream, share) in [("no_repeats", 0.0), ("repeats_30pct", REPEAT_SHARE)] {
        let plan = plan(corpus.requests.len(), share);
        for (setting, entries) in [("cache_off", 0), ("cache_on", ctrbid::config::SUGGESTED_SCORE_CACHE_ENTRIES)] {
            let b = bidder(entries);
            let mut i = 0usize;
            g.bench_function(format!("{stream}/{setting}"), |bench| {
                bench.iter_batched(
                    || {
                        let (cycle, at) = (i / plan.len(), i % plan.len());
                        i += 1;
                        let body = &corpus.requests[plan[at]];
                        if cycle == 0 {
                            body.clone()
                        } else {
                            raised_floors(body, cycle as f64 / 1_000.0)
                        }
                    },
                    |mut body| std::hint::black_box(rt.block_on(b.bid(&mut body, Instant::now(), now))),
                    BatchSize::SmallInput,
                )
            });
            if let Some(s) = b.score_cache_stats() {
                eprintln!(
                    "bid_repeats/{stream}/{setting}: row hit share {:.3}",
                    s.hits as f64 / (s.hits + s.misses).max(1) as f64
                );
            }
        }
    }
    g.finish();
}

criterion_group!(benches, score_cache, bid_repeats);
criterion_main!(benches);
