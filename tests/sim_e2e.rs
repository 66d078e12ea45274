//! End-to-end with simulator traffic: the real server with the default model and
//! catalog answers requests drawn by `ctrbid simulate` with the seed the default model
//! was trained on, and the pCTR and pCVR it prices with are the Python pipeline's
//! predictions for the same feature row.

mod common;

use common::{check_bid_response, config, repo, TestServer};
use ctrbid::catalog::{Catalog, Goal};
use ctrbid::simulate::{simulate, SimConfig};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// The seed `make models` simulates with (Makefile `SIM_SEED`).
const DEFAULT_MODEL_SEED: u64 = 7;
/// Requests posted per test.
const REQUESTS: usize = 400;

/// A fresh simulator log whose catalog is the one the default model ships with.
fn simulator_log(dir: &Path) -> Vec<serde_json::Value> {
    let cfg = SimConfig { seed: DEFAULT_MODEL_SEED, impressions: REQUESTS as u64 * 2, ..SimConfig::default() };
    simulate(&cfg, dir).unwrap();
    let shipped = Catalog::load(&repo().join("models/default/catalog.json")).unwrap();
    let drawn = Catalog::load(&dir.join("catalog.json")).unwrap();
    assert!(
        serde_json::to_value(&shipped).unwrap() == serde_json::to_value(&drawn).unwrap(),
        "models/default/catalog.json is not the seed-{DEFAULT_MODEL_SEED} simulator catalog: run `make models`"
    );
    let text = std::fs::read_to_string(dir.join("requests.jsonl")).unwrap();
    text.lines().take(REQUESTS).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn with_debug_ext() -> ctrbid::config::Config {
    let mut cfg = config();
    cfg.server.debug_ext = true;
    cfg
}

/// Requests whose imps the catalog targets (the simulator's logging policy found an
/// eligible creative for every imp it logged) get a priced bid in at least 30 % of
/// cases, and each price follows the pricing rule from the pCTR the server reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_requests_get_priced_bids() {
    let dir = tempfile::tempdir().unwrap();
    let requests = simulator_log(dir.path());
    let catalog = Catalog::load(&repo().join("models/default/catalog.json")).unwrap();
    let campaign_of: HashMap<&str, &ctrbid::catalog::Campaign> = catalog
        .creatives
        .iter()
        .map(|cr| (cr.id.as_str(), catalog.campaigns.iter().find(|c| c.id == cr.campaign_id).unwrap()))
        .collect();

    let server = TestServer::start(with_debug_ext()).await;
    let (mut with_bid, mut no_bid, mut cpa_bids) = (0usize, 0usize, 0usize);
    for request in &requests {
        let r = server.post("/openrtb2/bid", request.to_string().as_bytes()).await;
        match r.status {
            200 => {
                for bid in check_bid_response(request, &r.json()) {
                    let campaign = campaign_of[bid["crid"].as_str().unwrap()];
                    let pctr = bid["ext"]["ctrbid"]["pctr"].as_f64().unwrap();
                    let pcvr = bid["ext"]["ctrbid"]["pcvr"].as_f64().expect("the default model has a pcvr head");
                    let price = bid["price"].as_f64().unwrap();
                    let value = match campaign.goal() {
                        Goal::Cpc(cpc) => cpc * pctr,
                        Goal::Cpa(cpa) => cpa * pctr * pcvr,
                    };
                    let expected = (value * 1000.0).min(campaign.max_cpm);
                    assert!(
                        (price - expected).abs() <= 1e-3 * expected.max(1.0),
                        "price {price} is not min({:?} x pctr {pctr} (x pcvr {pcvr}) x 1000, max_cpm {})",
                        campaign.goal(),
                        campaign.max_cpm
                    );
                    cpa_bids += usize::from(matches!(campaign.goal(), Goal::Cpa(_)));
                }
                with_bid += 1;
            }
            204 => no_bid += 1,
            other => panic!("status {other} for a simulator request: {}", r.text()),
        }
    }
    server.stop().await;
    let share = with_bid as f64 / requests.len() as f64;
    eprintln!(
        "simulator requests: {with_bid} with a bid, {no_bid} without ({:.1} %), {cpa_bids} CPA bids",
        share * 100.0
    );
    assert!(share >= 0.30, "only {:.1} % of targeted simulator requests got a bid", share * 100.0);
    assert!(cpa_bids > 0, "no CPA campaign bid: the conversion head is not used");
}

/// The pCTR and pCVR the server used for a creative equal `python -m ctrbid_train
/// predict` on the feature row `ctrbid features` builds for the same request, imp,
/// creative and auction time. Micro-batched on the inference thread (`scoring.inline =
/// false`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_predictions_equal_the_python_pipeline_predictions() {
    let mut cfg = with_debug_ext();
    cfg.scoring.inline = ctrbid::config::InlineScoring::Off;
    predictions_equal_python(cfg).await;
}

/// The same with `scoring.inline = true`: scored on the server's workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_scoring_predictions_equal_the_python_pipeline_predictions() {
    let mut cfg = with_debug_ext();
    cfg.scoring.inline = ctrbid::config::InlineScoring::On;
    predictions_equal_python(cfg).await;
}

async fn predictions_equal_python(cfg: ctrbid::config::Config) {
    let dir = tempfile::tempdir().unwrap();
    let requests = simulator_log(&dir.path().join("sim"));

    // Bid on the requests, and log every bid as an impression of a one-off simulator
    // log: the request line, the imp, the creative, and the time the server used.
    let server = TestServer::start(cfg).await;
    let (mut request_lines, mut impression_lines) = (String::new(), String::new());
    let (mut served_pctr, mut served_pcvr) = (Vec::new(), Vec::new());
    for request in &requests {
        let r = server.post("/openrtb2/bid", request.to_string().as_bytes()).await;
        if r.status != 200 {
            continue;
        }
        let line = request_lines.lines().count();
        writeln!(request_lines, "{request}").unwrap();
        for bid in check_bid_response(request, &r.json()) {
            let debug = &bid["ext"]["ctrbid"];
            writeln!(
                impression_lines,
                r#"{{"ts":{},"line":{line},"request_id":{},"imp_id":{},"crid":{},"click":0,"conv":0,"pctr":0.5,"pcvr":0.5}}"#,
                debug["ts"].as_i64().unwrap(),
                request["id"],
                bid["impid"],
                bid["crid"],
            )
            .unwrap();
            served_pctr.push(debug["pctr"].as_f64().unwrap());
            served_pcvr.push(debug["pcvr"].as_f64().unwrap());
        }
    }
    server.stop().await;
    assert!(served_pctr.len() >= 50, "too few bids to compare ({})", served_pctr.len());

    let log = dir.path().join("served");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(log.join("requests.jsonl"), request_lines).unwrap();
    std::fs::write(log.join("impressions.jsonl"), impression_lines).unwrap();
    std::fs::copy(repo().join("models/default/catalog.json"), log.join("catalog.json")).unwrap();
    let features = dir.path().join("features");
    let rows = ctrbid::cli::features::extract(&log, &repo().join("models/feature_spec.json"), &features).unwrap();
    assert_eq!(rows, served_pctr.len());
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(features.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["crosses"]["device_type_x_slot"], serde_json::json!(["device_type", "slot"]));
    assert_eq!(meta["crosses"].as_object().unwrap().len(), 4, "the default spec crosses four pairs");

    for (output, served) in [("pctr", &served_pctr), ("pcvr", &served_pcvr)] {
        let python = python_predict(&features, output, &dir.path().join(format!("{output}.npy")));
        assert_eq!(python.len(), served.len());
        let worst = served.iter().zip(&python).map(|(s, p)| (s - f64::from(*p)).abs()).fold(0.0, f64::max);
        eprintln!("{} bids: max |server {output} - python {output}| = {worst:e}", served.len());
        assert!(worst <= 1e-5, "server and Python disagree on {output} by up to {worst}");
    }
}

/// `python -m ctrbid_train predict --output OUTPUT` on a features directory.
fn python_predict(features: &Path, output: &str, preds: &Path) -> Vec<f32> {
    let python = std::env::var_os("CTRBID_PYTHON").map_or_else(|| repo().join(".venv/bin/python"), Into::into);
    let status = Command::new(&python)
        .args(["-m", "ctrbid_train", "predict", "--model"])
        .arg(repo().join("models/default"))
        .arg("--features")
        .arg(features)
        .arg("--out")
        .arg(preds)
        .args(["--output", output])
        .env("PYTHONPATH", repo().join("models"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): run `make setup-py` or set CTRBID_PYTHON", python.display()));
    assert!(status.success(), "ctrbid_train predict failed");
    let (preds, shape) = ctrbid::npy::read::<f32>(preds).unwrap();
    assert_eq!(shape.len(), 1);
    preds
}
