//! End-to-end: CPA campaigns on the real server. With the two-head fixture model
//! (`tests/fixtures/models/two_heads.onnx`, closed-form pCTR and pCVR) a CPA campaign
//! bids `1000 x goal_cpa x pCTR x pCVR` for the request's feature row; with a one-head
//! model (`one_head.onnx`) it does not bid at all (a request only it could take ends as
//! `no_conversion_head`), and admin model reloads switch between the two.

mod common;

use common::{check_bid_response, config, repo, TestServer};
use ctrbid::catalog::{Catalog, Selector};
use ctrbid::config::Config;
use ctrbid::features::{Extractor, FeatureSpec};
use std::path::{Path, PathBuf};

const TOKEN: &str = "admin-token-0123456789";
/// The CPA campaign's goal, USD per conversion, and the CPC one's, USD per click: with
/// the fixture's pCTR near 3 % and pCVR near 4 %, CPA is worth about 10 USD CPM and CPC
/// 1.5 (CPA wins whenever pCVR > 0.5 %); both stay under `MAX_CPM` and over the floor.
const GOAL_CPA: f64 = 10.0;
const GOAL_CPC: f64 = 0.05;
const MAX_CPM: f64 = 100.0;
const FLOOR: f64 = 0.05;

fn two_heads() -> PathBuf {
    repo().join("tests/fixtures/models/two_heads.onnx")
}

/// The same closed form without its conversion head.
fn one_head() -> PathBuf {
    repo().join("tests/fixtures/models/one_head.onnx")
}

/// Campaign `cmp-cpa` (untargeted, goal_cpa) and `cmp-cpc` (USA only, goal_cpc), one
/// 300x250 banner creative each.
fn catalog_json() -> serde_json::Value {
    let campaign = |id: &str, goal: (&str, f64), countries: &[&str]| {
        serde_json::json!({
            "id": id, "advertiser": "adv-1", "adomain": format!("{id}.example"), "category": "IAB2",
            goal.0: goal.1, "max_cpm": MAX_CPM, "daily_budget": 1000.0,
            "targeting": {"countries": countries}
        })
    };
    let creative = |id: &str, campaign: &str| {
        serde_json::json!({
            "id": id, "campaign_id": campaign, "format": {"kind": "banner", "w": 300, "h": 250},
            "adm": format!("<a href=\"https://ads.example/{id}\">ad</a>")
        })
    };
    serde_json::json!({
        "version": 1,
        "campaigns": [campaign("cmp-cpa", ("goal_cpa", GOAL_CPA), &[]), campaign("cmp-cpc", ("goal_cpc", GOAL_CPC), &["USA"])],
        "creatives": [creative("cr-cpa", "cmp-cpa"), creative("cr-cpc", "cmp-cpc")]
    })
}

fn request(id: &str, country: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": FLOOR}],
        "site": {"id": "s1", "domain": "news.example", "page": "https://news.example/a", "cat": ["IAB12"]},
        "device": {"ua": "Mozilla/5.0", "devicetype": 2, "os": "Windows", "geo": {"country": country, "utcoffset": 60}},
        "user": {"id": "u-1"},
        "tmax": 500
    }))
    .unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    catalog: PathBuf,
    cfg: Config,
}

fn setup(model: &Path) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    std::fs::write(&catalog, serde_json::to_vec_pretty(&catalog_json()).unwrap()).unwrap();
    let mut cfg = config();
    cfg.model.path = model.to_path_buf();
    cfg.model.catalog = catalog.clone();
    cfg.server.debug_ext = true;
    cfg.admin.token = Some(TOKEN.into());
    Setup { _dir: dir, catalog, cfg }
}

/// The fixture's closed form, with the constants `make_two_heads.py` wrote.
fn closed_form(cat: &[i64], num: &[f32]) -> (f64, f64) {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/models/two_heads.json")).unwrap();
    let k: serde_json::Value = serde_json::from_str(&text).unwrap();
    let dot = |key: &str| {
        k[key].as_array().unwrap().iter().zip(num).map(|(w, &x)| w.as_f64().unwrap() * f64::from(x)).sum::<f64>()
    };
    let odd = cat.iter().filter(|&&x| x % 2 == 1).count() as f64;
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let (b, c, u, u_cvr) =
        (k["b"].as_f64().unwrap(), k["c"].as_f64().unwrap(), k["u"].as_f64().unwrap(), k["u_cvr"].as_f64().unwrap());
    (sigmoid(dot("w") + b + u * odd), sigmoid(dot("v") + c + u_cvr * odd))
}

/// The feature row the server built for `creative` on the request's first imp at auction
/// time `ts` (the bid's debug `ts`), with the library's own extractor.
fn row(cfg: &Config, catalog: &Path, body: &[u8], creative: &str, ts: i64) -> (Vec<i64>, Vec<f32>) {
    let extractor = Extractor::new(FeatureSpec::load(&cfg.model.spec).unwrap());
    let catalog = Catalog::load(catalog).unwrap();
    let index = catalog.creatives.iter().position(|c| c.id == creative).unwrap() as u32;
    let selector = Selector::new(catalog, &extractor);
    let mut body = body.to_vec();
    let req = ctrbid::openrtb::validate(ctrbid::openrtb::parse(&mut body).unwrap()).unwrap();
    let ic = extractor.imp(&extractor.request(&req, ts), &req.imp[0]);
    let (mut cat, mut num) = (vec![0; extractor.cat_width()], vec![0.0; extractor.num_width()]);
    extractor.write_row(&ic, selector.keys(index), None, &mut cat, &mut num);
    (cat, num)
}

/// The single bid of a 200 answer.
async fn bid(server: &TestServer, body: &[u8]) -> serde_json::Value {
    let r = server.post("/openrtb2/bid", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let request: serde_json::Value = serde_json::from_slice(body).unwrap();
    let bids = check_bid_response(&request, &r.json());
    assert_eq!(bids.len(), 1);
    bids[0].clone()
}

async fn no_bids(server: &TestServer, reason: &str) -> u64 {
    let metrics = server.admin_get("/metrics").await.text();
    let key = format!("ctrbid_no_bids_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in /metrics"))
        .parse()
        .unwrap()
}

/// Checks a CPA bid against the closed form of its row.
fn check_cpa_bid(s: &Setup, body: &[u8], bid: &serde_json::Value) {
    assert_eq!(bid["crid"], "cr-cpa", "{bid}");
    let debug = &bid["ext"]["ctrbid"];
    let (pctr, pcvr) = (debug["pctr"].as_f64().unwrap(), debug["pcvr"].as_f64().expect("a two-head bid reports pcvr"));
    let (cat, num) = row(&s.cfg, &s.catalog, body, "cr-cpa", debug["ts"].as_i64().unwrap());
    let (want_ctr, want_cvr) = closed_form(&cat, &num);
    assert!((pctr - want_ctr).abs() <= 1e-6, "pctr {pctr} vs closed form {want_ctr}");
    assert!((pcvr - want_cvr).abs() <= 1e-6, "pcvr {pcvr} vs closed form {want_cvr}");
    let expected = 1000.0 * GOAL_CPA * want_ctr * want_cvr;
    let price = bid["price"].as_f64().unwrap();
    assert!(
        (price - expected).abs() <= 1e-5 * expected,
        "price {price} vs 1000 x {GOAL_CPA} x {want_ctr} x {want_cvr}"
    );
    assert!(price > 1.0 && price < MAX_CPM, "the fixture lands between floor and cap: {price}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpa_campaign_bids_goal_cpa_x_pctr_x_pcvr_with_a_two_head_model() {
    let s = setup(&two_heads());
    let server = TestServer::start(s.cfg.clone()).await;
    let status = server.admin_get("/admin/status").await.json();
    assert_eq!(status["model"]["heads"], "pctr,pcvr");
    assert_eq!(status["catalog"]["cpa_campaigns_without_conversion_head"], 0);

    // Only the CPA campaign targets DEU; in the USA it competes with the CPC one and wins.
    for (id, country) in [("r-deu", "DEU"), ("r-usa", "USA")] {
        let body = request(id, country);
        check_cpa_bid(&s, &body, &bid(&server, &body).await);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_conversion_head_cpa_campaigns_do_not_bid_and_reloads_switch_heads() {
    let s = setup(&one_head());
    let server = TestServer::start(s.cfg.clone()).await;
    let status = server.admin_get("/admin/status").await.json();
    assert_eq!(status["model"]["heads"], "pctr");
    assert_eq!(status["catalog"]["cpa_campaigns_without_conversion_head"], 1);

    // USA: the CPC campaign still bids, on its own rule; the CPA one is not a candidate.
    let usa = request("r-usa", "USA");
    let b = bid(&server, &usa).await;
    assert_eq!(b["crid"], "cr-cpc");
    assert!(b["ext"]["ctrbid"].get("pcvr").is_none(), "{b}");
    let expected = (GOAL_CPC * b["ext"]["ctrbid"]["pctr"].as_f64().unwrap() * 1000.0).min(MAX_CPM);
    assert!((b["price"].as_f64().unwrap() - expected).abs() <= 1e-6 * expected);
    // DEU: only the CPA campaign could bid: 204, counted once under its own reason.
    let deu = request("r-deu", "DEU");
    let (head_before, none_before) =
        (no_bids(&server, "no_conversion_head").await, no_bids(&server, "no_candidates").await);
    assert_eq!(server.post("/openrtb2/bid", &deu).await.status, 204);
    assert_eq!(no_bids(&server, "no_conversion_head").await, head_before + 1);
    assert_eq!(no_bids(&server, "no_candidates").await, none_before);

    // One head -> two heads: the CPA campaign bids.
    let r = server.admin_post(&format!("/admin/reload/model?path={}", two_heads().display()), Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("heads pctr,pcvr") && !r.text().contains("cannot bid"), "{}", r.text());
    check_cpa_bid(&s, &deu, &bid(&server, &deu).await);
    check_cpa_bid(&s, &usa, &bid(&server, &usa).await);

    // Two heads -> one head: back to no CPA bids, and the answer says so.
    let r = server.admin_post("/admin/reload/model", Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("1 CPA campaigns cannot bid"), "{}", r.text());
    assert_eq!(bid(&server, &usa).await["crid"], "cr-cpc");
    assert_eq!(server.post("/openrtb2/bid", &deu).await.status, 204);
    assert_eq!(no_bids(&server, "no_conversion_head").await, head_before + 2);
    assert_eq!(server.admin_get("/admin/status").await.json()["catalog"]["cpa_campaigns_without_conversion_head"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_with_a_campaign_of_two_goals_is_refused_naming_it() {
    let s = setup(&two_heads());
    let mut catalog = catalog_json();
    catalog["campaigns"][0]["goal_cpc"] = 1.0.into();
    std::fs::write(&s.catalog, serde_json::to_vec(&catalog).unwrap()).unwrap();
    let err = ctrbid::server::Server::bind(&s.cfg).await.err().expect("a campaign with two goals stops start-up");
    let msg = format!("{err:#}");
    assert!(msg.contains("\"cmp-cpa\" has both goal_cpc and goal_cpa"), "{msg}");
}
