//! Heap allocations per request, by stage (`cargo bench --bench alloc`): a counting
//! global allocator around each stage of the bid path on the default catalog's traffic.
//! Prints a table; not a timing bench.
//!
//! Stages run on this thread are counted alone (parse, validate, select, features); the
//! whole `Bidder::bid` is counted process-wide, so it includes the inference thread
//! (ONNX Runtime allocates its output tensors per call) and the response. The ceiling
//! mode is the floor any request pays.

#[path = "common/mod.rs"]
mod common;

use ctrbid::bidder::Bidder;
use ctrbid::catalog::ImpTerms;
use ctrbid::config::ServeMode;
use ctrbid::currency::Rates;
use ctrbid::metrics::Metrics;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::time::Instant;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[derive(Default)]
struct Tally {
    allocations: usize,
    bytes: usize,
}

impl Tally {
    fn add(&mut self, region: &Region<'_, System>) {
        let c = region.change();
        self.allocations += c.allocations + c.reallocations;
        self.bytes += c.bytes_allocated;
    }
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter): nothing to read.
    let corpus = common::Corpus::default_traffic(3000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().expect("runtime");
    let cfg = common::bidder_config(ServeMode::Bid);
    let bidder = Bidder::load(&cfg, Metrics::start()).expect("bidder");
    let ceiling = Bidder::load(&common::bidder_config(ServeMode::Ceiling), Metrics::start()).expect("ceiling");
    let mut cache_cfg = common::bidder_config(ServeMode::Bid);
    cache_cfg.scoring.cache_entries = ctrbid::config::SUGGESTED_SCORE_CACHE_ENTRIES;
    let cached = Bidder::load(&cache_cfg, Metrics::start()).expect("bidder with a score cache");
    let rates = Rates::new(&cfg.bidding.exchange_rates).expect("rates");
    let state = bidder.state();
    let now = common::NOW_MS;
    let names = [
        "parse",
        "validate",
        "select",
        "features",
        "bid (all threads)",
        "ceiling (all threads)",
        "bid with the score cache, rows new to it (all threads)",
    ];
    let mut tallies: Vec<Tally> = names.iter().map(|_| Tally::default()).collect();
    let mut candidates = 0usize;
    // Warm every path first (lazy statics, ORT's first batches, buffer growth).
    for request in corpus.requests.iter().take(200) {
        for b in [&bidder, &ceiling] {
            let _ = rt.block_on(b.bid(&mut request.clone(), Instant::now(), now));
        }
    }
    // The cached bidder warms on other requests, so the measured ones are new to it.
    let other =
        common::Corpus::simulate(ctrbid::simulate::SimConfig { seed: 8, impressions: 300, ..Default::default() });
    for request in &other.requests {
        let _ = rt.block_on(cached.bid(&mut request.clone(), Instant::now(), now));
    }
    let warm_hits = cached.score_cache_stats().map_or(0, |s| s.hits);
    let mut requests = 0usize;
    for request in &corpus.requests {
        let mut body = request.clone();
        let r = Region::new(GLOBAL);
        let Ok(req) = ctrbid::openrtb::parse(&mut body) else { continue };
        tallies[0].add(&r);
        let r = Region::new(GLOBAL);
        let Ok(req) = ctrbid::openrtb::validate(req) else { continue };
        tallies[1].add(&r);
        requests += 1;
        let terms: Vec<ImpTerms> = req.imp.iter().map(|i| ImpTerms::of(i, &cfg.server.seat, &rates)).collect();
        let r = Region::new(GLOBAL);
        let selected = state.select(&req, &terms, cfg.bidding.max_candidates_per_imp, &ctrbid::catalog::AdmitAll);
        tallies[2].add(&r);
        if let Ok(c) = &selected {
            candidates += c.len();
            let r = Region::new(GLOBAL);
            let rows = state.feature_rows(&req, c, common::NOW_S);
            tallies[3].add(&r);
            drop(rows);
        }
        drop(req);
        for (k, b) in [(4, &bidder), (5, &ceiling), (6, &cached)] {
            let mut body = request.clone();
            let r = Region::new(GLOBAL);
            let answer = rt.block_on(b.bid(&mut body, Instant::now(), now));
            tallies[k].add(&r);
            drop(answer);
        }
    }
    let n = requests.max(1);
    println!(
        "Heap allocations per request ({n} valid requests, {:.1} candidates each on average)",
        candidates as f64 / n as f64
    );
    println!("| stage | allocations | bytes |");
    println!("|---|---|---|");
    for (name, t) in names.iter().zip(&tallies) {
        println!("| {name} | {:.1} | {:.0} |", t.allocations as f64 / n as f64, t.bytes as f64 / n as f64);
    }
    let s = cached.score_cache_stats().expect("a score cache");
    println!("(score cache: {} of {} row lookups hit)", s.hits - warm_hits, s.hits + s.misses);
}
