//! Validate stage (`cargo bench --bench validate`): the OpenRTB rules every request
//! must meet ([`ctrbid::openrtb::check`]), on requests parsed once beforehand.
//!
//! The rules are a few comparisons per imp; the one choice in them is how repeated imp
//! ids are found. The served code scans the earlier imps (quadratic, no allocation) up
//! to 16 imps and uses a hash set above; the baseline in the same group, `hashed`,
//! always uses the hash set (linear, one allocation). Corpora: the 478 Prebid samples
//! (real requests, one to a few imps) and requests of 8, 16, 32 and 100 imps (the most
//! `validate` accepts). `parse` of the same Prebid requests is in the group for scale.
//! Throughput in requests/s.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ctrbid::openrtb::{BidRequest, ValidationError, MAX_IMPS};
use std::path::Path;

fn prebid() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openrtb/prebid");
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("fixtures").map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// `n` requests of `imps` imps each, every id distinct (each passes every rule).
fn wide(n: usize, imps: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|r| {
            let imps: Vec<String> =
                (0..imps).map(|i| format!(r#"{{"id":"{r}-{i}","banner":{{"w":300,"h":250}}}}"#)).collect();
            format!(r#"{{"id":"wide-{r}","imp":[{}],"site":{{"domain":"example.com"}}}}"#, imps.join(",")).into_bytes()
        })
        .collect()
}

/// The baseline: `check`'s rules, the imp ids always in a hash set.
fn check_hashed(req: &BidRequest<'_>) -> Result<(), ValidationError> {
    ctrbid::openrtb::check_scanning_up_to(req, 0)
}

fn validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate");
    let corpora = [
        ("prebid".to_string(), prebid()),
        ("imps_8".to_string(), wide(50, 8)),
        ("imps_16".to_string(), wide(50, 16)),
        ("imps_32".to_string(), wide(50, 32)),
        (format!("imps_{MAX_IMPS}"), wide(50, MAX_IMPS)),
    ];
    for (corpus, mut bodies) in corpora {
        let originals = bodies.clone();
        let requests: Vec<BidRequest<'_>> = bodies.iter_mut().filter_map(|b| ctrbid::openrtb::parse(b).ok()).collect();
        // Both ways give the same verdicts (the 11 Prebid samples that break a rule
        // break the same one).
        for r in &requests {
            assert_eq!(ctrbid::openrtb::check(r), check_hashed(r));
        }
        g.throughput(Throughput::Elements(requests.len() as u64));
        g.bench_with_input(BenchmarkId::new("served", &corpus), &requests, |b, reqs| {
            b.iter(|| reqs.iter().filter(|r| ctrbid::openrtb::check(r).is_ok()).count())
        });
        g.bench_with_input(BenchmarkId::new("hashed", &corpus), &requests, |b, reqs| {
            b.iter(|| reqs.iter().filter(|r| check_hashed(r).is_ok()).count())
        });
        if corpus == "prebid" {
            g.bench_function(BenchmarkId::new("parse", &corpus), |b| {
                b.iter_batched_ref(
                    || originals.clone(),
                    |bodies| {
                        for body in bodies.iter_mut() {
                            let _ = std::hint::black_box(ctrbid::openrtb::parse(body));
                        }
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
