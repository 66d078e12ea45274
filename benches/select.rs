//! Candidate selection (`cargo bench --bench select`): every imp of a request against
//! a catalog of 1,000 campaigns (3,000 creatives: the default catalog) and of 100,000
//! campaigns (300,000 creatives), through the selector's size and format indexes
//! (`indexed`, what the bid path runs) against the baseline in the same group, a scan
//! of every creative (`linear`). The simulator's catalog generator with the default
//! catalog's seed makes both; the requests are the default catalog's traffic.
//! Throughput in requests/s; the candidates found are the same (a unit test holds the
//! two to that).

#[path = "common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ctrbid::catalog::{ImpTerms, Limits, Selector};
use ctrbid::currency::Rates;
use ctrbid::features::Extractor;
use ctrbid::simulate::{generate_catalog, SimConfig};

fn select(c: &mut Criterion) {
    let corpus = common::Corpus::default_traffic(2000);
    let rates = Rates::new(&Default::default()).expect("no rates");
    let extractor = Extractor::new(common::spec());
    let mut g = c.benchmark_group("select");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    for campaigns in [1_000usize, 100_000] {
        let cfg = SimConfig { seed: 7, campaigns, creatives: 3 * campaigns, ..SimConfig::default() };
        let selector = Selector::new(generate_catalog(&cfg).expect("catalog"), &extractor);
        // Parsed once: selection is what is timed.
        let mut bodies = corpus.requests.clone();
        let requests: Vec<_> = bodies
            .iter_mut()
            .filter_map(|b| ctrbid::openrtb::parse(b).ok())
            .map(|r| {
                let terms: Vec<ImpTerms> = r.imp.iter().map(|i| ImpTerms::of(i, "ctrbid", &rates)).collect();
                (r, terms)
            })
            .collect();
        let mut out = Vec::with_capacity(1024);
        // The bid path's: the default cap per imp, a model with a conversion head.
        let limits = Limits { per_imp: ctrbid::config::DEFAULT_MAX_CANDIDATES_PER_IMP, pcvr: true, ..Limits::ALL };
        for (name, linear) in [("indexed", false), ("linear", true)] {
            let mut next = 0;
            g.bench_with_input(BenchmarkId::new(name, campaigns), &campaigns, |b, _| {
                b.iter(|| {
                    let (req, terms) = &requests[next % requests.len()];
                    next += 1;
                    out.clear();
                    for (i, imp) in req.imp.iter().enumerate() {
                        if linear {
                            selector.select_imp_linear(req, i as u16, imp, &terms[i], limits, &mut out);
                        } else {
                            selector.select_imp(req, i as u16, imp, &terms[i], limits, &mut out);
                        }
                    }
                    std::hint::black_box(out.len())
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, select);
criterion_main!(benches);
