//! `ctrbid ort-alone`: ONNX Runtime alone, on the rows the bidder would score.
//!
//! The second baseline of the load test (`loadtest/report.sh`): every request of a
//! corpus goes through parse, validation, selection and feature extraction once
//! (untimed), exactly as the bid path does them, and the rows that come out are then
//! scored in a loop for `--seconds`, whole requests per call up to `--batch-rows` rows
//! (a request with more is scored alone), on one ORT session with one intra-op thread.
//! Printed as JSON: rows and requests per second, and CPU seconds per 1,000 requests,
//! comparable with the bidder's own figure for the same corpus.

use crate::bidder::ServingState;
use crate::catalog::{Catalog, ImpTerms, Selector};
use crate::config::Config;
use crate::currency::Rates;
use crate::features::{Extractor, FeatureSpec};
use crate::openrtb;
use crate::scoring::model::ModelSource;
use crate::scoring::{runtime, Model, Rows};
use anyhow::Context as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// TOML config (model, spec, catalog, seat, exchange rates); defaults apply without one.
    #[arg(long, env = "CTRBID_CONFIG")]
    config: Option<PathBuf>,
    /// Bid requests, one JSON per line (`ctrbid simulate` writes requests.jsonl).
    #[arg(long)]
    corpus: PathBuf,
    /// Rows per call at most (whole requests; a call holds at least one). Default: the
    /// config's `scoring.max_batch_rows`. Give the bidder's measured median batch to
    /// compare like with like.
    #[arg(long)]
    batch_rows: Option<usize>,
    /// Seconds to score for.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Also write the result to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    corpus_requests: usize,
    /// Requests of the corpus with at least one candidate (the others are never scored).
    scored_requests: usize,
    rows_per_request: f64,
    batch_rows_limit: usize,
    /// Calls one pass over the corpus takes, and the rows of its largest call that
    /// holds more than one request (0 when none does).
    calls_per_pass: usize,
    largest_packed_call_rows: usize,
    mean_batch_rows: f64,
    calls: u64,
    rows: u64,
    wall_s: f64,
    cpu_s: f64,
    rows_per_s: f64,
    requests_per_s: f64,
    /// CPU seconds per 1,000 scored requests.
    cpu_s_per_1000_requests: f64,
}

pub fn run(opts: Opts) -> anyhow::Result<()> {
    let cfg = match &opts.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let spec = FeatureSpec::load(&cfg.model.spec)?;
    let library = runtime::library_path(cfg.model.onnxruntime_library.as_deref());
    let mut model = Model::open(&ModelSource {
        path: &cfg.model.path,
        spec: &spec,
        spec_path: &cfg.model.spec,
        library: &library,
        device: cfg.scoring.device,
    })?;
    let extractor = Extractor::new(spec);
    let selector = Selector::new(Catalog::load(&cfg.model.catalog)?, &extractor);
    let state = ServingState::for_rows(extractor, selector, model.info.clone());
    let rates = Rates::new(&cfg.bidding.exchange_rates).map_err(|e| anyhow::anyhow!("config: {e}"))?;

    let text = std::fs::read(&opts.corpus).with_context(|| format!("cannot read {}", opts.corpus.display()))?;
    let now_unix = crate::clock::AuctionClock::system().now_unix().unwrap_or(0);
    let mut requests: Vec<Rows> = Vec::new();
    let mut corpus_requests = 0;
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        corpus_requests += 1;
        let mut body = line.to_vec();
        let Ok(req) = openrtb::parse(&mut body) else { continue };
        let Ok(req) = openrtb::validate(req) else { continue };
        let terms: Vec<ImpTerms> = req.imp.iter().map(|imp| ImpTerms::of(imp, &cfg.server.seat, &rates)).collect();
        if let Ok(candidates) =
            state.select(&req, &terms, cfg.bidding.max_candidates_per_imp, &crate::catalog::AdmitAll)
        {
            requests.push(state.feature_rows(&req, &candidates, now_unix));
        }
    }
    anyhow::ensure!(!requests.is_empty(), "no request of {} has a candidate to score", opts.corpus.display());

    // Batches as the batcher packs them: whole requests, closed once at the limit.
    let limit = opts.batch_rows.unwrap_or(cfg.scoring.max_batch_rows).max(1);
    let mut batches: Vec<(Vec<i64>, Vec<f32>, usize, usize)> = Vec::new();
    let mut open: Option<(Vec<i64>, Vec<f32>, usize, usize)> = None;
    // A call closes before the request that would take it past `limit` rows, so a
    // request of `limit` rows or more is scored alone, as inline scoring scores every
    // request (packing up to *at least* `limit`, as this did until 2026-12-06, gave ORT
    // alone calls of 111 rows on average against the bidder's 62 to 70).
    for r in &requests {
        if open.as_ref().is_some_and(|b| b.2 > 0 && b.2 + r.n > limit) {
            batches.extend(open.take());
        }
        let b = open.get_or_insert_with(|| (Vec::new(), Vec::new(), 0, 0));
        b.0.extend_from_slice(&r.cat);
        b.1.extend_from_slice(&r.num);
        b.2 += r.n;
        b.3 += 1;
    }
    batches.extend(open.take());

    let (mut pctr, mut pcvr) = (Vec::with_capacity(limit * 2), Vec::with_capacity(limit * 2));
    let (mut calls, mut rows, mut scored) = (0u64, 0u64, 0u64);
    let budget = Duration::from_secs_f64(opts.seconds.max(0.1));
    let (cpu0, start) = (process_cpu_seconds(), Instant::now());
    'run: loop {
        for (cat, num, n, k) in &batches {
            pctr.clear();
            pcvr.clear();
            model.score_heads(cat, num, *n, &mut pctr, &mut pcvr)?;
            calls += 1;
            rows += *n as u64;
            scored += *k as u64;
            if start.elapsed() >= budget {
                break 'run;
            }
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    let cpu_s = process_cpu_seconds() - cpu0;
    let total_rows: usize = requests.iter().map(|r| r.n).sum();
    let report = Report {
        corpus_requests,
        scored_requests: requests.len(),
        rows_per_request: total_rows as f64 / requests.len() as f64,
        batch_rows_limit: limit,
        calls_per_pass: batches.len(),
        largest_packed_call_rows: batches.iter().filter(|b| b.3 > 1).map(|b| b.2).max().unwrap_or(0),
        mean_batch_rows: rows as f64 / calls as f64,
        calls,
        rows,
        wall_s,
        cpu_s,
        rows_per_s: rows as f64 / wall_s,
        requests_per_s: scored as f64 / wall_s,
        cpu_s_per_1000_requests: 1000.0 * cpu_s / scored as f64,
    };
    let json = serde_json::to_string_pretty(&report)?;
    println!("{json}");
    if let Some(path) = &opts.json {
        std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// User plus system CPU time of this process, from `/proc/self/stat` (clock ticks of
/// 1/100 s); 0 where there is no procfs.
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
