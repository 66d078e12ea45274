//! Feature stage (`cargo bench --bench features`): the model input rows of every
//! candidate of a request, on simulator requests for the default catalog (seed 7) with
//! the candidates the bid path selects for them (found once beforehand).
//!
//! `staged` is what the bid path runs ([`ServingState::feature_rows`]): the
//! request-level values hashed once per request, the imp-level part of the row once per
//! imp and copied, only the candidate's own fields per candidate (their hashes made at
//! catalog load). The baseline in the same group, `per_candidate`, builds each row from
//! scratch (request, imp and candidate fields for every candidate), as a row-at-a-time
//! extractor would: what the staging buys.
//!
//! The stage has no cache: the feature-store aggregates the issue names (historical
//! CTR per user and ad) are not built yet (models/README.md, Known gaps), so there is no "with
//! and without" to compare. Throughput in rows/s.

#[path = "common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ctrbid::bidder::{Bidder, ServingState};
use ctrbid::catalog::Candidate;
use ctrbid::config::ServeMode;
use ctrbid::currency::Rates;
use ctrbid::metrics::Metrics;
use ctrbid::openrtb::ValidRequest;

/// The rows of `candidates`, each built alone.
fn per_candidate(state: &ServingState, req: &ValidRequest<'_>, candidates: &[Candidate], now: i64) -> Vec<i64> {
    let ex = &state.extractor;
    let (f, d) = (ex.cat_width(), ex.num_width());
    let (mut cat, mut num) = (vec![0i64; candidates.len() * f], vec![0f32; candidates.len() * d]);
    for (k, c) in candidates.iter().enumerate() {
        let rc = ex.request(req, now);
        let ic = ex.imp(&rc, &req.imp[usize::from(c.imp)]);
        ex.write_row(
            &ic,
            state.selector.keys(c.creative),
            None,
            &mut cat[k * f..(k + 1) * f],
            &mut num[k * d..(k + 1) * d],
        );
    }
    cat
}

fn features(c: &mut Criterion) {
    let corpus = common::Corpus::default_traffic(3000);
    let cfg = common::bidder_config(ServeMode::Bid);
    let bidder = Bidder::load(&cfg, Metrics::start()).expect("the default bidder");
    let state = bidder.state();
    let rates = Rates::new(&cfg.bidding.exchange_rates).expect("the configured rates");
    let now = common::NOW_S;

    let mut bodies = corpus.requests.clone();
    let mut requests = Vec::new();
    for body in bodies.iter_mut() {
        if let Some((req, _, candidates)) = common::selected(&state, &cfg, &rates, body) {
            requests.push((req, candidates));
        }
    }
    let rows: usize = requests.iter().map(|(_, c)| c.len()).sum();
    // The two ways make the same rows.
    for (req, candidates) in &requests {
        assert_eq!(state.feature_rows(req, candidates, now).cat, per_candidate(&state, req, candidates, now));
    }
    eprintln!("features: {} requests, {:.1} candidate rows each", requests.len(), rows as f64 / requests.len() as f64);

    let mut g = c.benchmark_group("features");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(20);
    g.bench_function("staged", |b| {
        b.iter(|| {
            for (req, candidates) in &requests {
                std::hint::black_box(state.feature_rows(req, candidates, now));
            }
        })
    });
    g.bench_function("per_candidate", |b| {
        b.iter(|| {
            for (req, candidates) in &requests {
                std::hint::black_box(per_candidate(&state, req, candidates, now));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, features);
criterion_main!(benches);
