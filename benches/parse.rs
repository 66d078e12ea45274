//! Parse stage: simd-json (served) against serde_json (baseline), same structs, over
//! the 478 Prebid sample requests. `cargo bench --bench parse`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::path::Path;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openrtb/prebid");
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("fixtures").map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn parse(c: &mut Criterion) {
    let bodies = corpus();
    let mut g = c.benchmark_group("openrtb::parse");
    g.throughput(Throughput::Elements(bodies.len() as u64));
    g.bench_function("simd_json", |b| {
        b.iter_batched_ref(
            || bodies.clone(),
            |bodies| {
                for body in bodies.iter_mut() {
                    let _ = std::hint::black_box(ctrbid::openrtb::parse(body));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("serde_json", |b| {
        b.iter(|| {
            for body in &bodies {
                let _ = std::hint::black_box(ctrbid::openrtb::parse_serde_json(body));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
