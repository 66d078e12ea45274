//! Pricing stage (`cargo bench --bench pricing`): from the scores of a request's
//! candidates to its bids, on simulator requests for the default catalog (seed 7),
//! with the candidates the bid path selects and the served model's real pCTR and pCVR
//! for them (all computed once beforehand).
//!
//! `served` is the bid path's pricing stage ([`Bidder::price`]): per imp the candidate
//! with the highest value among those reaching their floor, the auction's price, and
//! the bid itself (ids, the three notice URLs under one HMAC, a native answer built for
//! the request's asset ids). The baseline in the same group, `value_only`, is the
//! valuation alone (goal x pCTR (x pCVR) capped and held to the floor, the best per
//! imp), no bid made: the difference is what making the bid costs. Throughput in
//! requests/s.

#[path = "common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ctrbid::bidder::{AggSeen, Bidder};
use ctrbid::catalog::{Candidate, ImpTerms};
use ctrbid::config::ServeMode;
use ctrbid::currency::Rates;
use ctrbid::metrics::Metrics;
use ctrbid::scoring::{Heads, Scores};

fn pricing(c: &mut Criterion) {
    let corpus = common::Corpus::default_traffic(3000);
    let cfg = common::bidder_config(ServeMode::Bid);
    let bidder = Bidder::load(&cfg, Metrics::start()).expect("the default bidder");
    let state = bidder.state();
    let mut model = common::open_model(&common::model_path());
    let rates = Rates::new(&cfg.bidding.exchange_rates).expect("the configured rates");
    let now = common::NOW_S;
    let now_ms = common::NOW_MS;

    let mut bodies = corpus.requests.clone();
    let mut requests = Vec::new();
    for body in bodies.iter_mut() {
        let Some((req, terms, candidates)) = common::selected(&state, &cfg, &rates, body) else { continue };
        let Some((cur, usd_per_unit)) = rates.bid_currency(&req.cur) else { continue };
        let rows = state.feature_rows(&req, &candidates, now);
        let (mut pctr, mut pcvr) = (Vec::new(), Vec::new());
        model.score_heads(&rows.cat, &rows.num, rows.n, &mut pctr, &mut pcvr).expect("inference");
        let scores = Scores::new(Heads::PctrPcvr, &pctr, &pcvr);
        requests.push((req, terms, candidates, scores, (cur.to_string(), usd_per_unit)));
    }
    let bids: usize = requests
        .iter()
        .map(|(req, terms, candidates, scores, (cur, rate))| {
            bidder
                .price(
                    &state,
                    state.variants.incumbent(),
                    req,
                    terms,
                    candidates,
                    scores,
                    &AggSeen::default(),
                    (cur, *rate),
                    now_ms,
                    None,
                )
                .len()
        })
        .sum();
    assert!(bids * 2 > requests.len(), "only {bids} bids for {} requests", requests.len());

    // The valuation of `price`, without making bids: the number of imps with a bid.
    let value_only = |terms: &[ImpTerms], candidates: &[Candidate], scores: &Scores| {
        let mut start = 0;
        let mut priced = 0usize;
        for group in candidates.chunk_by(|a, b| a.imp == b.imp) {
            let best = state.best_of_imp(group, scores, start, &terms[usize::from(group[0].imp)]);
            start += group.len();
            priced += usize::from(best.is_some());
        }
        priced
    };
    let valued: usize = requests.iter().map(|(_, t, c, s, _)| value_only(t, c, s)).sum();
    assert_eq!(valued, bids, "the baseline values the same imps as the served stage bids on");

    let mut g = c.benchmark_group("pricing");
    g.throughput(Throughput::Elements(requests.len() as u64));
    g.sample_size(20);
    g.bench_function("served", |b| {
        b.iter(|| {
            for (req, terms, candidates, scores, (cur, rate)) in &requests {
                std::hint::black_box(bidder.price(
                    &state,
                    state.variants.incumbent(),
                    req,
                    terms,
                    candidates,
                    scores,
                    &AggSeen::default(),
                    (cur, *rate),
                    now_ms,
                    None,
                ));
            }
        })
    });
    g.bench_function("value_only", |b| {
        b.iter(|| {
            for (_, terms, candidates, scores, _) in &requests {
                std::hint::black_box(value_only(terms, candidates, scores));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, pricing);
criterion_main!(benches);
