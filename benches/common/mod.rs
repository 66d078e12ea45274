//! What the benches share: the repository's default model, spec and runtime, feature
//! rows, and request corpora from the simulator. Each bench file includes this module
//! (`#[path = "common/mod.rs"] mod common;`) and uses what it needs.
#![allow(dead_code)]

use ctrbid::features::FeatureSpec;
use ctrbid::scoring::model::ModelSource;
use ctrbid::scoring::{runtime, Device, Model};
use ctrbid::simulate::{simulate, SimConfig};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// The auction time every bench runs at, Unix ms (2026-01-05 12:00 UTC, a Monday): a
/// fixed time, so the rows and answers are the same on every run.
pub const NOW_MS: i64 = 1_767_614_400_000;
/// [`NOW_MS`] in Unix seconds.
pub const NOW_S: i64 = NOW_MS / 1000;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The served model, or `CTRBID_BENCH_MODEL` when set (to compare two models).
pub fn model_path() -> PathBuf {
    std::env::var_os("CTRBID_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(ctrbid::config::DEFAULT_MODEL))
}

pub fn spec_path() -> PathBuf {
    repo().join(ctrbid::config::DEFAULT_SPEC)
}

pub fn spec() -> FeatureSpec {
    FeatureSpec::load(&spec_path()).expect("the default feature spec")
}

/// Opens `path` as the server does (one intra-op thread, CPU).
pub fn open_model(path: &Path) -> Model {
    let spec_path = spec_path();
    let spec = spec();
    let library = runtime::library_path(None);
    let library = if library.is_relative() { repo().join(library) } else { library };
    Model::open(&ModelSource { path, spec: &spec, spec_path: &spec_path, library: &library, device: Device::Cpu })
        .unwrap_or_else(|e| panic!("{e} (run `make setup-ort` and `make models` first)"))
}

/// `n` feature rows with every index inside its field's bucket range (what the
/// extractor writes) and numeric values in [0, 1): row-major `cat` and `num`.
pub fn rows(spec: &FeatureSpec, n: usize, seed: u64) -> (Vec<i64>, Vec<f32>) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut cat = Vec::with_capacity(n * spec.cat.len());
    let mut num = Vec::with_capacity(n * spec.num.len());
    for _ in 0..n {
        for f in &spec.cat {
            cat.push((f.offset + rng.gen_range(0..f.buckets)) as i64);
        }
        for _ in &spec.num {
            num.push(rng.gen::<f32>());
        }
    }
    (cat, num)
}

/// `deploy/ctrbid.toml` with its paths made absolute, the bench model, and `mode`.
/// Benches send one request at a time, so a batch never gains a second job: the batch
/// wait is 0, or it would only add idle time to every iteration. No score cache.
pub fn bidder_config(mode: ctrbid::config::ServeMode) -> ctrbid::config::Config {
    let mut cfg = ctrbid::config::Config::load(&repo().join("deploy/ctrbid.toml")).expect("deploy/ctrbid.toml");
    for p in [&mut cfg.model.path, &mut cfg.model.spec, &mut cfg.model.catalog] {
        *p = repo().join(&*p);
    }
    cfg.model.path = model_path();
    cfg.server.mode = mode;
    cfg.scoring.max_wait_us = 0;
    // Through the micro-batcher, as the benches' figures were taken. (Auto, the
    // default, would score inline here: outside a server no worker is ever busy.)
    cfg.scoring.inline = ctrbid::config::InlineScoring::Off;
    // Benches cycle their corpora: with a score cache every request after the first
    // cycle would be answered from it (it is off by default; `benches/cache.rs` turns it on).
    cfg.scoring.cache_entries = 0;
    cfg
}

/// A simulator log in a temporary directory: `catalog.json` and `requests.jsonl` (one
/// bid request per line). Seed 7 is the default catalog's, so its requests are targeted.
pub struct Corpus {
    pub dir: tempfile::TempDir,
    pub requests: Vec<Vec<u8>>,
}

impl Corpus {
    pub fn simulate(cfg: SimConfig) -> Corpus {
        let dir = tempfile::tempdir().expect("a temporary directory");
        simulate(&cfg, dir.path()).expect("simulate");
        let text = std::fs::read(dir.path().join("requests.jsonl")).expect("requests.jsonl");
        let requests = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        Corpus { dir, requests }
    }

    /// The default catalog's traffic: seed 7, the default catalog size.
    pub fn default_traffic(impressions: u64) -> Corpus {
        Corpus::simulate(SimConfig { seed: 7, impressions, ..SimConfig::default() })
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.dir.path().join("catalog.json")
    }
}

/// `body` parsed and validated, its imps' terms, and the candidates the bid path
/// selects for it with `cfg`; `None` when it has none.
pub fn selected<'b>(
    state: &ctrbid::bidder::ServingState,
    cfg: &ctrbid::config::Config,
    rates: &ctrbid::currency::Rates,
    body: &'b mut [u8],
) -> Option<(ctrbid::openrtb::ValidRequest<'b>, Vec<ctrbid::catalog::ImpTerms>, Vec<ctrbid::catalog::Candidate>)> {
    let req = ctrbid::openrtb::validate(ctrbid::openrtb::parse(body).expect("parses")).expect("valid");
    let terms: Vec<_> = req.imp.iter().map(|i| ctrbid::catalog::ImpTerms::of(i, &cfg.server.seat, rates)).collect();
    let candidates = state.select(&req, &terms, cfg.bidding.max_candidates_per_imp, &ctrbid::catalog::AdmitAll).ok()?;
    Some((req, terms, candidates))
}
