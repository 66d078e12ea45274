//! Scoring through a real two-head ONNX model (`tests/fixtures/models/two_heads.onnx`,
//! written by `make_two_heads.py`): [`Model`] and the [`Batcher`] give the closed-form
//! probabilities of every row, and a one-head model (`one_head.onnx`) has no pCVR.

use super::model::{Heads, ModelSource};
use super::{runtime, Batcher, BatcherConfig, Model};
use crate::features::FeatureSpec;
use crate::metrics::Metrics;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A batcher that never waits for company: every batch is what is queued.
fn unwaiting() -> BatcherConfig {
    BatcherConfig {
        max_batch_rows: 64,
        max_wait: Duration::ZERO,
        queue_capacity: 64,
        adaptive_wait: false,
        cpus: Vec::new(),
        realtime: None,
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The fixture's closed form, from the constants `make_two_heads.py` wrote next to it.
pub struct ClosedForm {
    w: Vec<f64>,
    v: Vec<f64>,
    b: f64,
    c: f64,
    u: f64,
    u_cvr: f64,
}

impl ClosedForm {
    fn load() -> ClosedForm {
        let text = std::fs::read_to_string(repo().join("tests/fixtures/models/two_heads.json")).unwrap();
        let k: serde_json::Value = serde_json::from_str(&text).unwrap();
        let vec = |key: &str| k[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let num = |key: &str| k[key].as_f64().unwrap();
        ClosedForm { w: vec("w"), v: vec("v"), b: num("b"), c: num("c"), u: num("u"), u_cvr: num("u_cvr") }
    }

    /// (pCTR, pCVR) of one row.
    fn probabilities(&self, cat: &[i64], num: &[f32]) -> (f64, f64) {
        let odd = cat.iter().filter(|&&x| x % 2 == 1).count() as f64;
        let dot = |w: &[f64]| w.iter().zip(num).map(|(w, &x)| w * f64::from(x)).sum::<f64>();
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        (sigmoid(dot(&self.w) + self.b + self.u * odd), sigmoid(dot(&self.v) + self.c + self.u_cvr * odd))
    }
}

fn open(path: &Path) -> Model {
    let spec_path = repo().join("models/feature_spec.json");
    let spec = FeatureSpec::load(&spec_path).unwrap();
    let library: PathBuf = runtime::library_path(None);
    let library = if library.is_relative() { repo().join(library) } else { library };
    Model::open(&ModelSource {
        path,
        spec: &spec,
        spec_path: &spec_path,
        library: &library,
        device: super::Device::Cpu,
    })
    .unwrap()
}

/// `n` rows of varied, valid inputs (indices >= 0, odd and even).
fn rows(n: usize, f: usize, d: usize) -> (Vec<i64>, Vec<f32>) {
    let cat = (0..n * f).map(|i| ((i * 7919) % 1000) as i64).collect();
    let num = (0..n * d).map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5).collect();
    (cat, num)
}

/// `rows` with `salt` added to every categorical value, so jobs differ.
fn salted_rows(n: usize, f: usize, d: usize, salt: i64) -> super::Rows {
    let (mut cat, num) = rows(n, f, d);
    cat.iter_mut().for_each(|x| *x += salt);
    super::Rows { cat, num, n }
}

#[test]
fn two_head_model_scores_the_closed_form() {
    let mut model = open(&repo().join("tests/fixtures/models/two_heads.onnx"));
    assert_eq!(model.info.heads, Heads::PctrPcvr);
    assert!(model.info.has_pcvr());
    assert_eq!(model.info.kind, "fixture");
    let (f, d) = (model.info.cat_width, model.info.num_width);
    let n = 17;
    let (cat, num) = rows(n, f, d);
    let (mut pctr, mut pcvr) = (vec![9.0], vec![9.0]); // appended to, not replaced
    model.score_heads(&cat, &num, n, &mut pctr, &mut pcvr).unwrap();
    assert_eq!((pctr.len(), pcvr.len()), (n + 1, n + 1));
    let closed = ClosedForm::load();
    for r in 0..n {
        let (ctr, cvr) = closed.probabilities(&cat[r * f..(r + 1) * f], &num[r * d..(r + 1) * d]);
        assert!((f64::from(pctr[r + 1]) - ctr).abs() <= 1e-6, "row {r}: pctr {} vs {ctr}", pctr[r + 1]);
        assert!((f64::from(pcvr[r + 1]) - cvr).abs() <= 1e-6, "row {r}: pcvr {} vs {cvr}", pcvr[r + 1]);
    }
    // `score` keeps giving pCTR alone.
    let mut only = Vec::new();
    model.score(&cat, &num, n, &mut only).unwrap();
    assert_eq!(only, pctr[1..]);
}

#[test]
fn one_head_model_has_no_pcvr() {
    let mut model = open(&repo().join("tests/fixtures/models/one_head.onnx"));
    assert_eq!(model.info.heads, Heads::Pctr);
    let (f, d) = (model.info.cat_width, model.info.num_width);
    let (cat, num) = rows(3, f, d);
    let (mut pctr, mut pcvr) = (Vec::new(), Vec::new());
    model.score_heads(&cat, &num, 3, &mut pctr, &mut pcvr).unwrap();
    assert_eq!((pctr.len(), pcvr.len()), (3, 0));
}

/// Jobs of different sizes batched together each get their own rows back, both heads
/// interleaved, equal to the closed form; after a reload to a one-head model the same
/// batcher answers pCTR alone, and back again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batcher_splits_both_heads_per_job_across_reloads() {
    let two = repo().join("tests/fixtures/models/two_heads.onnx");
    let sizes = [1usize, 5, 12, 3];
    // The batch closes once all four jobs are in (or after 200 ms): they share one ORT call.
    let cfg = BatcherConfig {
        max_batch_rows: sizes.iter().sum(),
        max_wait: Duration::from_millis(200),
        queue_capacity: 16,
        adaptive_wait: false,
        cpus: Vec::new(),
        realtime: None,
    };
    let batcher = std::sync::Arc::new(Batcher::start(vec![open(&two)], cfg, Metrics::start()));
    let closed = ClosedForm::load();
    let (f, d) = (open(&two).info.cat_width, open(&two).info.num_width);
    let deadline = || Instant::now() + Duration::from_secs(10);
    let job = |n: usize, salt: i64| salted_rows(n, f, d, salt);
    let jobs: Vec<_> = sizes.iter().enumerate().map(|(i, &n)| job(n, i as i64)).collect();
    let expected: Vec<Vec<(f64, f64)>> = jobs
        .iter()
        .map(|j| {
            (0..j.n).map(|r| closed.probabilities(&j.cat[r * f..(r + 1) * f], &j.num[r * d..(r + 1) * d])).collect()
        })
        .collect();
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|j| {
            let (batcher, deadline) = (std::sync::Arc::clone(&batcher), deadline());
            tokio::spawn(async move { batcher.score(j, deadline).await })
        })
        .collect();
    for ((task, want), n) in tasks.into_iter().zip(&expected).zip(sizes) {
        let scores = task.await.unwrap().unwrap();
        assert_eq!((scores.rows(), scores.heads()), (n, Heads::PctrPcvr));
        for (r, &(ctr, cvr)) in want.iter().enumerate() {
            assert!((f64::from(scores.pctr(r)) - ctr).abs() <= 1e-6, "pctr {} vs {ctr}", scores.pctr(r));
            assert!((f64::from(scores.pcvr(r).unwrap()) - cvr).abs() <= 1e-6, "pcvr vs {cvr}");
        }
    }

    batcher.replace_models(vec![open(&repo().join("tests/fixtures/models/one_head.onnx"))]).unwrap();
    let scores = batcher.score(job(4, 0), deadline()).await.unwrap();
    assert_eq!((scores.rows(), scores.heads(), scores.pcvr(3)), (4, Heads::Pctr, None));

    batcher.replace_models(vec![open(&two)]).unwrap();
    let scores = batcher.score(job(2, 0), deadline()).await.unwrap();
    assert_eq!((scores.rows(), scores.heads()), (2, Heads::PctrPcvr));
    assert!(scores.pcvr(1).is_some());
}

/// The admission check's backlog counts queued rows only: once every job is answered it
/// is empty again, however the scoring thread and the callers interleave. (It used to
/// count a job after queueing it; a job taken at once was then never uncounted, the
/// backlog only grew, and under load the bidder shed every request.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_empties_once_every_job_is_answered() {
    let two = repo().join("tests/fixtures/models/two_heads.onnx");
    let cfg = unwaiting();
    let batcher = std::sync::Arc::new(Batcher::start(vec![open(&two)], cfg, Metrics::start()));
    let (f, d) = (open(&two).info.cat_width, open(&two).info.num_width);
    for round in 0..300 {
        let tasks: Vec<_> = (0..1 + round % 4)
            .map(|_| {
                let batcher = std::sync::Arc::clone(&batcher);
                let (cat, num) = rows(3, f, d);
                tokio::spawn(async move {
                    batcher.score(super::Rows { cat, num, n: 3 }, Instant::now() + Duration::from_secs(10)).await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().rows(), 3);
        }
        assert_eq!(batcher.expected_wait(), Duration::ZERO, "round {round}: answered rows still counted as queued");
    }
}

/// An adaptive batch waits only for requests announced as coming: with none it scores
/// the job in hand at once (not after `max_wait`); with one it waits for that request's
/// job and scores both together; when the announced request gives up without queueing,
/// the batch closes within a quarter of `max_wait` of it giving up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptive_batch_waits_only_for_announced_requests() {
    let two = repo().join("tests/fixtures/models/two_heads.onnx");
    let (f, d) = (open(&two).info.cat_width, open(&two).info.num_width);
    let max_wait = Duration::from_secs(8);
    let cfg = BatcherConfig {
        max_batch_rows: 5,
        max_wait,
        queue_capacity: 16,
        adaptive_wait: true,
        cpus: Vec::new(),
        realtime: None,
    };
    let batcher = std::sync::Arc::new(Batcher::start(vec![open(&two)], cfg, Metrics::start()));
    let job = move |n: usize| {
        let (cat, num) = rows(n, f, d);
        super::Rows { cat, num, n }
    };
    let deadline = || Instant::now() + Duration::from_secs(60);
    // A two-row job scored in the background: its row count and how long it took.
    let timed_job = || {
        let (batcher, start) = (std::sync::Arc::clone(&batcher), Instant::now());
        tokio::spawn(async move { (batcher.score(job(2), deadline()).await.unwrap().rows(), start.elapsed()) })
    };

    let start = Instant::now();
    assert_eq!(batcher.score(job(2), deadline()).await.unwrap().rows(), 2);
    assert!(start.elapsed() < max_wait / 4, "nothing coming: scored at once, not after {max_wait:?}");

    // Announced, then queued 300 ms later: the first job waits for it (the two fill the
    // batch's five rows, so it closes as the second arrives).
    let announced = batcher.announce();
    let first = timed_job();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(announced);
    assert_eq!(batcher.score(job(3), deadline()).await.unwrap().rows(), 3);
    let (rows, waited) = first.await.unwrap();
    assert_eq!(rows, 2);
    assert!(waited >= Duration::from_millis(300) && waited < max_wait / 4, "waited {waited:?} for the announced job");

    // Announced, then given up (a no-bid before scoring): the batch closes at the next
    // look, a quarter of `max_wait` at most after that.
    let announced = batcher.announce();
    let alone = timed_job();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(announced);
    let (rows, waited) = alone.await.unwrap();
    assert_eq!(rows, 2);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(300) + max_wait / 4 + max_wait / 8,
        "waited {waited:?}"
    );
}

/// The score cache answers exactly what the batcher answered: repeated rows come from it
/// (scored even past the deadline: the batcher is not asked), new rows of the same
/// request go to the batcher, rows keep their order, and a model reload makes every
/// remembered score a miss (the new model has one head: so do the answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_score_cache_answers_what_the_model_answered() {
    use super::cache::{CacheConfig, ScoreCache};
    let two = repo().join("tests/fixtures/models/two_heads.onnx");
    let cfg = unwaiting();
    let batcher = Batcher::start(vec![open(&two)], cfg, Metrics::start());
    let cache = ScoreCache::new(CacheConfig { max_entries: 1_000, ttl: Duration::from_secs(60) });
    let (f, d) = (open(&two).info.cat_width, open(&two).info.num_width);
    let closed = ClosedForm::load();
    let later = || Instant::now() + Duration::from_secs(10);
    let past = Instant::now();
    let (cat, num) = rows(20, f, d);
    let first = |k: usize| super::Rows { cat: cat[..k * f].to_vec(), num: num[..k * d].to_vec(), n: k };

    let fresh = cache.score(&batcher, first(10), later()).await.unwrap();
    assert_eq!((cache.stats().hits, cache.stats().misses), (0, 10));
    let again = cache.score(&batcher, first(10), past).await.expect("every row remembered: no scoring, no deadline");
    assert_eq!(again, fresh);
    assert_eq!((fresh.path(), again.path()), (Some(super::ScoringPath::Batched), None), "none scored the second time");
    assert_eq!((cache.stats().hits, cache.stats().misses), (10, 10));

    // Rows 5..15: five remembered, five new, answered in row order.
    let mixed = super::Rows { cat: cat[5 * f..15 * f].to_vec(), num: num[5 * d..15 * d].to_vec(), n: 10 };
    let scores = cache.score(&batcher, mixed, later()).await.unwrap();
    assert_eq!((cache.stats().hits, cache.stats().misses), (15, 15));
    assert_eq!(scores.path(), Some(super::ScoringPath::Batched), "the new rows were scored");
    for r in 0..10 {
        let row = r + 5;
        let (ctr, cvr) = closed.probabilities(&cat[row * f..(row + 1) * f], &num[row * d..(row + 1) * d]);
        assert!((f64::from(scores.pctr(r)) - ctr).abs() <= 1e-6, "row {row}: pctr {} vs {ctr}", scores.pctr(r));
        assert!((f64::from(scores.pcvr(r).unwrap()) - cvr).abs() <= 1e-6, "row {row}: pcvr");
        if row < 10 {
            assert_eq!((scores.pctr(r), scores.pcvr(r)), (fresh.pctr(row), fresh.pcvr(row)), "row {row}: remembered");
        }
    }

    batcher.replace_models(vec![open(&repo().join("tests/fixtures/models/one_head.onnx"))]).unwrap();
    let after = cache.score(&batcher, first(10), later()).await.unwrap();
    assert_eq!((cache.stats().hits, cache.stats().misses), (15, 25), "another model: every row a miss");
    assert_eq!((after.heads(), after.generation()), (Heads::Pctr, 1));
    let remembered = cache.score(&batcher, first(10), past).await.unwrap();
    assert_eq!(remembered, after, "one head remembered as one head");
}

/// Inline scoring: each task scores its own rows on its own thread with a model from
/// the pool, the closed form's probabilities; concurrent tasks up to the pool's size all
/// get a model; a reload takes effect for the next request (generation and heads), and
/// a past deadline is not scored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_scoring_gives_the_closed_form_and_follows_reloads() {
    let two = repo().join("tests/fixtures/models/two_heads.onnx");
    let batcher = std::sync::Arc::new(Batcher::start_inline(vec![open(&two), open(&two)], Metrics::start()));
    let closed = ClosedForm::load();
    let (f, d) = (open(&two).info.cat_width, open(&two).info.num_width);
    let deadline = || Instant::now() + Duration::from_secs(10);
    let job = |n: usize, salt: i64| salted_rows(n, f, d, salt);
    // Rounds of two concurrent tasks: two sessions, so none is ever shed.
    for round in 0..50i64 {
        let tasks: Vec<_> = (0..2)
            .map(|i| {
                let (batcher, j) = (std::sync::Arc::clone(&batcher), job(3 + i as usize, round * 2 + i));
                let want: Vec<(f64, f64)> = (0..j.n)
                    .map(|r| closed.probabilities(&j.cat[r * f..(r + 1) * f], &j.num[r * d..(r + 1) * d]))
                    .collect();
                tokio::spawn(async move { (batcher.score(j, deadline()).await, want) })
            })
            .collect();
        for task in tasks {
            let (scores, want) = task.await.unwrap();
            let scores = scores.unwrap();
            assert_eq!((scores.rows(), scores.heads(), scores.generation()), (want.len(), Heads::PctrPcvr, 0));
            for (r, &(ctr, cvr)) in want.iter().enumerate() {
                assert!((f64::from(scores.pctr(r)) - ctr).abs() <= 1e-6);
                assert!((f64::from(scores.pcvr(r).unwrap()) - cvr).abs() <= 1e-6);
            }
        }
    }
    assert!(batcher.replace_models(vec![open(&two)]).unwrap_err().contains("2 inline sessions"));
    let one = repo().join("tests/fixtures/models/one_head.onnx");
    batcher.replace_models(vec![open(&one), open(&one)]).unwrap();
    for _ in 0..3 {
        let scores = batcher.score(job(4, 0), deadline()).await.unwrap();
        assert_eq!((scores.rows(), scores.heads(), scores.generation()), (4, Heads::Pctr, 1));
    }
    let past = Instant::now() - Duration::from_millis(1);
    assert_eq!(batcher.score(job(2, 0), past).await.unwrap_err(), super::ScoreError::Expired);
    // The expired request gave its model back: both sessions still answer.
    for _ in 0..2 {
        assert!(batcher.score(job(1, 0), deadline()).await.is_ok());
    }
    assert_eq!(batcher.expected_wait(), Duration::ZERO);
}

/// Auto scoring: inline while the workers' busy share is under the limit, queued for the
/// inference thread at or above it; both paths give the closed form's probabilities and
/// are counted; a reload needs a model for the thread and one per inline session, and
/// reaches both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_scoring_goes_inline_while_the_workers_are_idle_and_batched_when_busy() {
    use super::{ScoringPath, WorkerBusy};
    let two = repo().join("tests/fixtures/models/two_heads.onnx");
    let busy = WorkerBusy::unsampled();
    let batcher = Batcher::start_auto(
        vec![open(&two)],
        vec![open(&two), open(&two)],
        unwaiting(),
        std::sync::Arc::clone(&busy),
        0.5,
        Metrics::start(),
    );
    assert_eq!(batcher.worker_busy(), Some(0.0));
    let closed = ClosedForm::load();
    let (f, d) = (open(&two).info.cat_width, open(&two).info.num_width);
    let deadline = || Instant::now() + Duration::from_secs(10);
    let check = |scores: &super::Scores, j: &super::Rows| {
        assert_eq!((scores.rows(), scores.heads()), (j.n, Heads::PctrPcvr));
        for r in 0..j.n {
            let (ctr, cvr) = closed.probabilities(&j.cat[r * f..(r + 1) * f], &j.num[r * d..(r + 1) * d]);
            assert!((f64::from(scores.pctr(r)) - ctr).abs() <= 1e-6, "row {r}");
            assert!((f64::from(scores.pcvr(r).unwrap()) - cvr).abs() <= 1e-6, "row {r}");
        }
    };
    let counts = |b: &Batcher| (b.scored_by(ScoringPath::Inline), b.scored_by(ScoringPath::Batched));
    for (share, want) in [(0.0, (3, 0)), (0.499, (6, 0)), (0.5, (6, 3)), (0.95, (6, 6))] {
        busy.publish(share);
        let path = if share < 0.5 { ScoringPath::Inline } else { ScoringPath::Batched };
        for salt in 0..3 {
            let scores = batcher.score(salted_rows(5, f, d, salt), deadline()).await.unwrap();
            check(&scores, &salted_rows(5, f, d, salt));
            assert_eq!(scores.path(), Some(path), "busy share {share}");
        }
        assert_eq!(counts(&batcher), want, "busy share {share}");
    }
    let mut text = String::new();
    batcher.render(&mut text);
    assert!(text.contains("ctrbid_scoring_path_total{path=\"inline\"} 6"), "{text}");
    assert!(text.contains("ctrbid_scoring_path_total{path=\"batched\"} 6"), "{text}");
    assert!(text.contains("ctrbid_worker_busy_ratio 0.950"), "{text}");

    let one = repo().join("tests/fixtures/models/one_head.onnx");
    let e = batcher.replace_models(vec![open(&one), open(&one)]).unwrap_err();
    assert!(e.contains("2 models for 1 inference threads and 2 inline sessions"), "{e}");
    batcher.replace_models(vec![open(&one), open(&one), open(&one)]).unwrap();
    for share in [0.95, 0.0] {
        busy.publish(share);
        let scores = batcher.score(salted_rows(4, f, d, 9), deadline()).await.unwrap();
        assert_eq!((scores.rows(), scores.heads(), scores.generation()), (4, Heads::Pctr, 1), "busy share {share}");
    }
}

/// An idle inference thread takes a replacement model at once: reloads one after
/// another succeed without traffic between them (with auto inline scoring the queue may
/// see none for long), and the next job is scored by the latest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_inference_thread_takes_each_reload_at_once() {
    let two = repo().join("tests/fixtures/models/two_heads.onnx");
    let one = repo().join("tests/fixtures/models/one_head.onnx");
    let batcher = Batcher::start(vec![open(&two)], unwaiting(), Metrics::start());
    let (f, d) = (open(&two).info.cat_width, open(&two).info.num_width);
    for (i, path) in [&one, &two, &one].into_iter().enumerate() {
        // The thread takes the swap while it waits; until then the slot is full.
        let mut tries = 0;
        while let Err(e) = batcher.replace_models(vec![open(path)]) {
            assert!(e.contains("not been taken up"), "{e}");
            tries += 1;
            assert!(tries < 500, "reload {i} never taken up without traffic");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let scores = batcher.score(salted_rows(3, f, d, 1), Instant::now() + Duration::from_secs(10)).await.unwrap();
    assert_eq!((scores.heads(), scores.generation()), (Heads::Pctr, 3));
}
