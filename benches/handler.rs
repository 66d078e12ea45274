//! The whole bid path without the socket (`cargo bench --bench handler`): body in,
//! answer out, through `Bidder::bid` with the default config, model and catalog, on
//! simulator requests for the default catalog (seed 7), one request at a time.
//!
//! Baselines in the same group: `ceiling` (the same bidder in `server.mode =
//! "ceiling"`: parse, validate and a fixed answer) and `parse_validate` alone. The
//! difference between `bid` and `ceiling` is what selection, features, scoring
//! (through the micro-batcher, one request per batch and no batch wait here) and
//! pricing cost. `bid_inline` is the bid path with `scoring.inline = true` (scored on
//! the calling thread), which is also what the default, auto, does while the workers
//! are not busy: the difference to `bid` is the hand-off to the inference thread.
//! Throughput in requests/s.

#[path = "common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ctrbid::bidder::{Answer, Bidder};
use ctrbid::config::ServeMode;
use ctrbid::metrics::Metrics;
use std::time::Instant;

fn handler(c: &mut Criterion) {
    let corpus = common::Corpus::default_traffic(3000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().expect("runtime");
    let bidder = Bidder::load(&common::bidder_config(ServeMode::Bid), Metrics::start()).expect("the default bidder");
    let ceiling =
        Bidder::load(&common::bidder_config(ServeMode::Ceiling), Metrics::start()).expect("the ceiling bidder");
    let mut inline_cfg = common::bidder_config(ServeMode::Bid);
    inline_cfg.scoring.inline = ctrbid::config::InlineScoring::On;
    let inline = Bidder::load(&inline_cfg, Metrics::start()).expect("the inline bidder");
    let now = common::NOW_MS;
    // The corpus must exercise the bid path: most requests bid.
    let bids = corpus
        .requests
        .iter()
        .filter(|r| matches!(rt.block_on(bidder.bid(&mut r.to_vec(), Instant::now(), now)), Answer::Bid(_)))
        .count();
    assert!(bids * 2 > corpus.requests.len(), "only {bids} of {} requests bid", corpus.requests.len());

    let mut g = c.benchmark_group("handler");
    g.throughput(Throughput::Elements(1));
    for (name, b) in [("bid", &bidder), ("bid_inline", &inline), ("ceiling", &ceiling)] {
        let mut next = 0;
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let mut body = corpus.requests[next % corpus.requests.len()].clone();
                next += 1;
                std::hint::black_box(rt.block_on(b.bid(&mut body, Instant::now(), now)))
            })
        });
    }
    let mut next = 0;
    g.bench_function("parse_validate", |bench| {
        bench.iter(|| {
            let mut body = corpus.requests[next % corpus.requests.len()].clone();
            next += 1;
            let req = ctrbid::openrtb::parse(&mut body).expect("parses");
            let valid = ctrbid::openrtb::validate(req).is_ok();
            std::hint::black_box(valid)
        })
    });
    g.finish();
}

criterion_group!(benches, handler);
criterion_main!(benches);
