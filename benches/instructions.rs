//! Instructions per request, by stage, counted by valgrind's callgrind
//! (`cargo bench --bench instructions`; `make instructions`). Unlike wall-clock
//! benches, the count is the same run after run whatever else the machine is doing, so
//! small changes to the bid path's CPU can be seen and guarded.
//!
//! The bench runs itself under `valgrind --tool=callgrind` in replay mode: 100 warm-up
//! and then 600 measured requests of the default catalog's traffic (simulator seed 7),
//! each subject in its own never-inlined function of [`measured`]. A subject's cost per
//! request is callgrind's inclusive count for its function divided by 600 (stages that
//! a request does not reach count as 0 for it):
//!
//! - `bid`: the whole `Bidder::bid` with inline scoring (ONNX Runtime on the calling
//!   thread, so callgrind charges it to the request), the served model and catalog;
//! - `ceiling`: the ceiling mode's `Bidder::bid` (parse, validate, a fixed bid);
//! - `ort_alone`: ONNX Runtime scoring each request's rows in one call, as the bid path
//!   batches them, on a session opened as the server opens it;
//! - the stages of the bid path on the same requests: parse, validate, select, features,
//!   pricing (with the scores ORT alone gave), response.
//!
//! Not counted: the HTTP layer (hyper and the kernel), which the ceiling pays as well,
//! and time spent waiting. Under valgrind ONNX Runtime and simd-json run their AVX2
//! kernels (valgrind hides AVX-512), and SHA extensions are not used for the notice
//! signature, so the absolute counts differ from a native run's; the ratios and changes
//! are what the counts are for.
//!
//! **The guard.** `bid` is compared with `benches/instructions.budget`: more than
//! [`MARGIN`] over fails the bench (and `make test`, which runs it with `--test`);
//! well under prints a reminder to lower the budget. `CTRBID_UPDATE_BUDGET=1` writes
//! the measured figure as the new budget (`make instructions-budget`), on purpose.
//!
//! With `--test` only instructions are counted (about 2 minutes); without it callgrind
//! also simulates the caches (L1 and last-level misses and its estimate of cycles,
//! Ir + 10 x L1 misses + 100 x LL misses; about 5 minutes). The table goes to stdout
//! and `target/instructions/report.md`.

#[path = "common/mod.rs"]
mod common;

use ctrbid::bidder::{AggSeen, Answer, Bidder};
use ctrbid::config::{Config, InlineScoring, ServeMode};
use ctrbid::currency::Rates;
use ctrbid::metrics::Metrics;
use ctrbid::scoring::{Heads, Scores};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WARM_UP: usize = 100;
const MEASURED: usize = 600;
/// How far over the budget the bid path may go before the guard fails, in percent.
const MARGIN: f64 = 3.0;
const BUDGET_FILE: &str = "benches/instructions.budget";
/// Set in the child that valgrind runs.
const REPLAY_FLAG: &str = "--replay";

/// The subjects and stages, in report order: the name of the function in
/// [`measured`] and what the report calls it.
const SUBJECTS: [(&str, &str); 9] = [
    ("bid", "bid path, whole (`Bidder::bid`, inline scoring)"),
    ("ceiling", "ceiling (`Bidder::bid`, ceiling mode)"),
    ("ort_alone", "ONNX Runtime alone, same rows"),
    ("parse", "stage: parse"),
    ("validate", "stage: validate"),
    ("select", "stage: select"),
    ("features", "stage: features"),
    ("pricing", "stage: pricing"),
    ("response", "stage: response"),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == REPLAY_FLAG) {
        let requests = args.get(i + 1).expect("--replay FILE");
        replay(Path::new(requests));
        return;
    }
    let quick = args.iter().any(|a| a == "--test");
    if let Err(e) = measure(quick) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The parent: writes the corpus, runs the replay under callgrind, reads the counts,
/// reports and guards.
fn measure(quick: bool) -> Result<(), String> {
    let out = target_dir().join("instructions");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    // Impressions, not requests: a request may offer several.
    let corpus = common::Corpus::default_traffic(2 * (WARM_UP + MEASURED) as u64);
    if corpus.requests.len() < WARM_UP + MEASURED {
        return Err(format!("the simulator gave {} requests, not {}", corpus.requests.len(), WARM_UP + MEASURED));
    }
    let requests = out.join("requests.jsonl");
    let mut text = Vec::new();
    for r in &corpus.requests[..WARM_UP + MEASURED] {
        text.extend_from_slice(r);
        text.push(b'\n');
    }
    std::fs::write(&requests, text).map_err(|e| format!("{}: {e}", requests.display()))?;

    let profile = out.join("callgrind.out");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut valgrind = Command::new("valgrind");
    valgrind.args(["--tool=callgrind", "--quiet"]).arg(format!("--callgrind-out-file={}", profile.display()));
    if !quick {
        valgrind.arg("--cache-sim=yes");
    }
    valgrind.arg(&exe).arg(REPLAY_FLAG).arg(&requests);
    eprintln!(
        "running the replay under callgrind ({}; about {} min)",
        if quick { "instructions" } else { "instructions and caches" },
        if quick { 2 } else { 5 }
    );
    let status = valgrind.status().map_err(|e| {
        format!("cannot run valgrind ({e}): install it (`apt-get install valgrind`, or `make setup-tools`)")
    })?;
    if !status.success() {
        return Err(format!("the replay under callgrind failed: {status}"));
    }
    let profile_text = std::fs::read_to_string(&profile).map_err(|e| format!("{}: {e}", profile.display()))?;
    let counts = Counts::read(&profile_text)?;
    let report = counts.report(quick);
    print!("{report}");
    std::fs::write(out.join("report.md"), &report).map_err(|e| e.to_string())?;
    guard(counts.per_request("bid", Event::Ir))
}

/// The replay, under valgrind: every subject on every request, the measured ones
/// through [`measured`].
fn replay(requests: &Path) {
    let text = std::fs::read(requests).expect("the replay's requests");
    let corpus: Vec<Vec<u8>> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    assert_eq!(corpus.len(), WARM_UP + MEASURED, "requests in {}", requests.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _entered = rt.enter();
    let cfg = replay_config(ServeMode::Bid);
    let bidder = Bidder::load(&cfg, Metrics::start()).expect("the default bidder");
    let ceiling = Bidder::load(&replay_config(ServeMode::Ceiling), Metrics::start()).expect("the ceiling");
    let mut model = common::open_model(&common::model_path());
    let rates = Rates::new(&cfg.bidding.exchange_rates).expect("rates");
    let state = bidder.state();
    let heads = state.model().heads;
    let (mut pctr, mut pcvr) = (Vec::new(), Vec::new());
    let mut bids = [0usize; 2];

    for (k, request) in corpus.iter().enumerate() {
        let warm = k < WARM_UP;
        // The stages, one after another on one copy of the body.
        let mut body = request.clone();
        let parsed = if warm { ctrbid::openrtb::parse(&mut body) } else { measured::parse(&mut body) };
        let req = parsed.expect("the simulator's requests parse");
        let req = if warm { ctrbid::openrtb::validate(req) } else { measured::validate(req) };
        let req = req.expect("the simulator's requests are valid");
        let (currency, usd_per_unit) = rates.bid_currency(&req.cur).expect("a currency we bid in");
        let (terms, candidates) = if warm {
            measured::select_unmeasured(&state, &cfg, &rates, &req)
        } else {
            measured::select(&state, &cfg, &rates, &req)
        };
        if let Ok(candidates) = candidates {
            let rows = if warm {
                state.feature_rows(&req, &candidates, common::NOW_S)
            } else {
                measured::features(&state, &req, &candidates)
            };
            if warm {
                model.score_heads(&rows.cat, &rows.num, rows.n, &mut pctr, &mut pcvr).expect("inference");
            } else {
                measured::ort_alone(&mut model, &rows, &mut pctr, &mut pcvr);
            }
            let scores = Scores::new(heads, &pctr, &pcvr);
            let priced = if warm {
                bidder.price(
                    &state,
                    state.variants.incumbent(),
                    &req,
                    &terms,
                    &candidates,
                    &scores,
                    &AggSeen::default(),
                    (currency, usd_per_unit),
                    common::NOW_MS,
                    None,
                )
            } else {
                measured::pricing(&bidder, &state, &req, &terms, &candidates, &scores, (currency, usd_per_unit))
            };
            if !priced.is_empty() {
                let seat = &cfg.server.seat;
                let json = if warm {
                    measured::response_unmeasured(req.id(), currency, &priced, seat)
                } else {
                    measured::response(req.id(), currency, &priced, seat)
                };
                assert!(!json.is_empty());
            }
        }
        drop(req);

        // The whole bid path, then the ceiling, each on a fresh copy of the body.
        for (b, (bidder, count)) in [&bidder, &ceiling].into_iter().zip(bids.iter_mut()).enumerate() {
            let mut body = request.clone();
            let answer = if warm { measured::answer(bidder, &mut body) } else { measured::whole(b, bidder, &mut body) };
            match answer {
                Answer::Bid(_) => *count += usize::from(!warm),
                Answer::NoBid { reason, .. } => {
                    if !warm {
                        panic!("request {k} got no bid ({}): every request of the corpus must bid, or the counts are not comparable", reason.label())
                    }
                }
                Answer::BadRequest(e) => panic!("request {k} is refused: {e}"),
            }
        }
    }
    assert_eq!(bids, [MEASURED, MEASURED], "bids of the bidder and the ceiling");
    if heads == Heads::Pctr {
        eprintln!("note: the model has no conversion head");
    }
}

/// The bench configuration (`common::bidder_config`) with inline scoring, so ONNX
/// Runtime runs on the calling thread and callgrind charges it to the request.
fn replay_config(mode: ServeMode) -> Config {
    let mut cfg = common::bidder_config(mode);
    cfg.scoring.inline = InlineScoring::On;
    cfg
}

/// The functions callgrind's inclusive counts are read from. Each is never inlined, so
/// it has a symbol of its own, and only the measured requests go through it.
mod measured {
    use super::*;
    use ctrbid::catalog::{Candidate, ImpTerms};
    use ctrbid::config::Config;
    use ctrbid::openrtb::{BidRequest, ValidRequest};
    use ctrbid::scoring::{Model, Rows};
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// `which` is 0 for the bidder, 1 for the ceiling: each has a symbol of its own.
    pub fn whole(which: usize, bidder: &Bidder, body: &mut [u8]) -> Answer {
        if which == 0 {
            bid(bidder, body)
        } else {
            ceiling(bidder, body)
        }
    }

    // `bid` and `ceiling` would compile to the same code, which the compiler merges into
    // one symbol: the distinct constants keep them two.
    #[inline(never)]
    pub fn bid(bidder: &Bidder, body: &mut [u8]) -> Answer {
        std::hint::black_box(0u8);
        answer(bidder, body)
    }

    #[inline(never)]
    pub fn ceiling(bidder: &Bidder, body: &mut [u8]) -> Answer {
        std::hint::black_box(1u8);
        answer(bidder, body)
    }

    /// `Bidder::bid`, polled once: with inline scoring nothing in it waits, so it is
    /// ready at once, and no runtime's scheduling is counted. The request is received
    /// an hour from now, so however slowly valgrind runs it, its deadline never
    /// passes: every request takes the same path on every run.
    #[inline(always)]
    pub fn answer(bidder: &Bidder, body: &mut [u8]) -> Answer {
        let received = Instant::now() + Duration::from_secs(3600);
        let future = std::pin::pin!(bidder.bid(body, received, common::NOW_MS));
        match future.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(answer) => answer,
            Poll::Pending => panic!("the bid path waited: inline scoring must not"),
        }
    }

    #[inline(never)]
    pub fn parse(body: &mut [u8]) -> Result<BidRequest<'_>, ctrbid::openrtb::ParseError> {
        ctrbid::openrtb::parse(body)
    }

    #[inline(never)]
    pub fn validate(req: BidRequest<'_>) -> Result<ValidRequest<'_>, ctrbid::openrtb::ValidationError> {
        ctrbid::openrtb::validate(req)
    }

    type Selected = (Vec<ImpTerms>, Result<Vec<Candidate>, ctrbid::bidder::NoBidReason>);

    #[inline(never)]
    pub fn select(
        state: &ctrbid::bidder::ServingState,
        cfg: &Config,
        rates: &Rates,
        req: &ValidRequest<'_>,
    ) -> Selected {
        select_unmeasured(state, cfg, rates, req)
    }

    /// What the bid path does between validation and features.
    #[inline(always)]
    pub fn select_unmeasured(
        state: &ctrbid::bidder::ServingState,
        cfg: &Config,
        rates: &Rates,
        req: &ValidRequest<'_>,
    ) -> Selected {
        let terms: Vec<ImpTerms> = req.imp.iter().map(|i| ImpTerms::of(i, &cfg.server.seat, rates)).collect();
        let candidates = state.select(req, &terms, cfg.bidding.max_candidates_per_imp, &ctrbid::catalog::AdmitAll);
        (terms, candidates)
    }

    #[inline(never)]
    pub fn features(state: &ctrbid::bidder::ServingState, req: &ValidRequest<'_>, candidates: &[Candidate]) -> Rows {
        state.feature_rows(req, candidates, common::NOW_S)
    }

    #[inline(never)]
    pub fn ort_alone(model: &mut Model, rows: &Rows, pctr: &mut Vec<f32>, pcvr: &mut Vec<f32>) {
        model.score_heads(&rows.cat, &rows.num, rows.n, pctr, pcvr).expect("inference");
    }

    #[inline(never)]
    pub fn pricing<'a>(
        bidder: &'a Bidder,
        state: &'a ctrbid::bidder::ServingState,
        req: &'a ValidRequest<'a>,
        terms: &[ImpTerms],
        candidates: &[Candidate],
        scores: &Scores,
        currency: (&str, f64),
    ) -> ctrbid::openrtb::List<ctrbid::openrtb::Bid<'a>, 1> {
        bidder.price(
            state,
            state.variants.incumbent(),
            req,
            terms,
            candidates,
            scores,
            &AggSeen::default(),
            currency,
            common::NOW_MS,
            None,
        )
    }

    #[inline(never)]
    pub fn response(id: &str, currency: &str, bids: &[ctrbid::openrtb::Bid<'_>], seat: &str) -> Vec<u8> {
        response_unmeasured(id, currency, bids, seat)
    }

    #[inline(always)]
    pub fn response_unmeasured(id: &str, currency: &str, bids: &[ctrbid::openrtb::Bid<'_>], seat: &str) -> Vec<u8> {
        ctrbid::openrtb::BidResponse { id, cur: currency, seatbid: &[ctrbid::openrtb::SeatBid { bid: bids, seat }] }
            .to_json()
    }
}

/// The events callgrind counts (with the cache simulation, all of them).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Event {
    /// Instructions executed.
    Ir,
    /// First-level cache misses: instruction fetch, data read, data write.
    L1Misses,
    /// Last-level cache misses, the same three.
    LlMisses,
}

/// Inclusive counts per subject, read from callgrind's output file.
struct Counts {
    /// Per subject (in [`SUBJECTS`] order), the count of each event.
    columns: Vec<Vec<u64>>,
    /// The event names (`Ir`, `I1mr`, ...).
    names: Vec<String>,
}

impl Counts {
    /// A function's inclusive count is what its own lines cost plus the inclusive cost
    /// of every call it makes, which callgrind writes on the line after each `calls=`:
    /// the sum of every cost line in the function's blocks. (Summed here rather than
    /// read from `callgrind_annotate --inclusive=yes`, which lists a function once per
    /// source file its inlined code came from, with overlapping counts.)
    ///
    /// The format (valgrind's "Callgrind Format Specification"): `events:` names the
    /// columns, `positions:` how many position columns start a cost line; `fn=`
    /// starts a function's block, its name given once as `fn=(id) name` (or `cfn=`)
    /// and then as `fn=(id)`; a cost line starts with a digit, `+`, `-` or `*`.
    fn read(profile: &str) -> Result<Counts, String> {
        let mut names: Vec<String> = Vec::new();
        let mut positions = 1;
        let mut function_names: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        let mut totals: std::collections::HashMap<&str, Vec<u64>> = std::collections::HashMap::new();
        let mut current: Option<&str> = None;
        for line in profile.lines() {
            let first = line.bytes().next();
            if matches!(first, Some(b'0'..=b'9' | b'+' | b'-' | b'*')) {
                let Some(function) = current else { continue };
                let total = totals.entry(function).or_insert_with(|| vec![0; names.len()]);
                for (t, v) in total.iter_mut().zip(line.split_whitespace().skip(positions)) {
                    *t += v.parse::<u64>().map_err(|e| format!("callgrind output, {line:?}: {e}"))?;
                }
            } else if let Some(rest) = line.strip_prefix("events:") {
                names = rest.split_whitespace().map(str::to_string).collect();
            } else if let Some(rest) = line.strip_prefix("positions:") {
                positions = rest.split_whitespace().count();
            } else if let Some(rest) = line.strip_prefix("fn=") {
                current = Some(function_name(rest, &mut function_names));
            } else if let Some(rest) = line.strip_prefix("cfn=") {
                function_name(rest, &mut function_names);
            }
        }
        if names.first().map(String::as_str) != Some("Ir") {
            return Err("callgrind's output names no events".into());
        }
        let mut columns = Vec::new();
        for (subject, _) in SUBJECTS {
            let symbol = format!("measured::{subject}");
            let mut found = totals.iter().filter(|(name, _)| names_function(name, &symbol));
            match (found.next(), found.next()) {
                (Some((_, total)), None) => columns.push(total.clone()),
                (None, _) => return Err(format!("callgrind counted nothing in {symbol}")),
                (Some(_), Some(_)) => return Err(format!("more than one function is named {symbol}")),
            }
        }
        Ok(Counts { columns, names })
    }
    fn column(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    fn per_request(&self, subject: &str, event: Event) -> f64 {
        let s = SUBJECTS.iter().position(|(n, _)| *n == subject).expect("a subject");
        let sum =
            |names: &[&str]| -> u64 { names.iter().filter_map(|n| self.column(n)).map(|c| self.columns[s][c]).sum() };
        let total = match event {
            Event::Ir => sum(&["Ir"]),
            Event::L1Misses => sum(&["I1mr", "D1mr", "D1mw"]),
            Event::LlMisses => sum(&["ILmr", "DLmr", "DLmw"]),
        };
        total as f64 / MEASURED as f64
    }

    fn report(&self, quick: bool) -> String {
        let cache = !quick && self.column("D1mr").is_some();
        let mut out = format!(
            "Instructions per request, {MEASURED} requests of the default catalog's traffic (seed 7), callgrind\n\n"
        );
        if cache {
            out.push_str(
                "| subject | instructions | L1 misses | LL misses | est. cycles |\n|---|---:|---:|---:|---:|\n",
            );
        } else {
            out.push_str("| subject | instructions |\n|---|---:|\n");
        }
        for (name, label) in SUBJECTS {
            let ir = self.per_request(name, Event::Ir);
            if cache {
                let l1 = self.per_request(name, Event::L1Misses);
                let ll = self.per_request(name, Event::LlMisses);
                let cycles = ir + 10.0 * l1 + 100.0 * ll;
                out.push_str(&format!(
                    "| {label} | {} | {} | {} | {} |\n",
                    thousands(ir),
                    thousands(l1),
                    thousands(ll),
                    thousands(cycles)
                ));
            } else {
                out.push_str(&format!("| {label} | {} |\n", thousands(ir)));
            }
        }
        let ir = |s| self.per_request(s, Event::Ir);
        let stages: f64 =
            ["parse", "validate", "select", "features", "pricing", "response"].iter().map(|s| ir(s)).sum();
        out.push_str(&format!(
            "\nbid / (ceiling + ORT alone) = {:.3} by instructions; the stages and ORT alone add up to {:.1} % of the bid path\n",
            ir("bid") / (ir("ceiling") + ir("ort_alone")),
            100.0 * (stages + ir("ort_alone")) / ir("bid"),
        ));
        out
    }
}

/// The name in a `fn=` or `cfn=` line (`(id) name` defines it, `(id)` refers to it).
fn function_name<'a>(spec: &'a str, known: &mut std::collections::HashMap<&'a str, &'a str>) -> &'a str {
    match spec.strip_prefix('(').and_then(|r| r.split_once(')')) {
        Some((id, "")) => known.get(id).copied().unwrap_or(spec),
        Some((id, name)) => {
            let name = name.trim_start();
            known.insert(id, name);
            name
        }
        None => spec,
    }
}

/// Whether a demangled function name is `symbol` itself (`bench::measured::bid`,
/// perhaps with a `::h<hash>` suffix), not a closure inside it or a longer name.
fn names_function(name: &str, symbol: &str) -> bool {
    let name = match name.rfind("::h") {
        Some(at) if name.len() == at + 19 && name[at + 3..].bytes().all(|b| b.is_ascii_hexdigit()) => &name[..at],
        _ => name,
    };
    name.strip_suffix(symbol).is_some_and(|head| head.is_empty() || head.ends_with("::"))
}

/// Compares the bid path's count with the committed budget.
fn guard(bid: f64) -> Result<(), String> {
    let path = common::repo().join(BUDGET_FILE);
    let rustc = rustc_version();
    if std::env::var_os("CTRBID_UPDATE_BUDGET").is_some() {
        let text = format!(
            "# Instructions per request of the whole bid path (benches/instructions.rs), the\n\
             # figure `cargo bench --bench instructions` guards; more than {MARGIN} % over fails.\n\
             # Written by `make instructions-budget` on {}.\n\
             bid = {}\nrustc = \"{rustc}\"\n",
            today(),
            bid.round() as u64
        );
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("budget written: bid = {} instructions per request ({})", bid.round(), path.display());
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
    };
    let budget: f64 =
        value("bid").and_then(|v| v.parse().ok()).ok_or_else(|| format!("{}: no `bid = N` line", path.display()))?;
    let over = 100.0 * (bid / budget - 1.0);
    println!(
        "guard: bid path {} instructions per request, budget {} ({over:+.2} %)",
        thousands(bid),
        thousands(budget)
    );
    if value("rustc").as_deref() != Some(rustc.as_str()) {
        println!(
            "note: the budget was set with {:?}, this is {rustc:?}: a new compiler moves the count",
            value("rustc")
        );
    }
    if over > MARGIN {
        return Err(format!(
            "the bid path costs {over:.2} % more instructions than its budget ({} > {} + {MARGIN} %): find what \
             was added (target/instructions/callgrind.out, `callgrind_annotate --inclusive=yes`), or raise the \
             budget on purpose with `make instructions-budget`",
            thousands(bid),
            thousands(budget)
        ));
    }
    if over < -MARGIN {
        println!("the bid path is {:.2} % under its budget: lower it with `make instructions-budget`", -over);
    }
    Ok(())
}

fn rustc_version() -> String {
    Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// `target/`: the bench binary is `target/release/deps/instructions-<hash>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench's own path");
    exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| common::repo().join("target"))
}

fn thousands(v: f64) -> String {
    let digits = format!("{}", v.round() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
