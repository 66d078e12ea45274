//! Model variants over real HTTP: a candidate added through the admin API takes its
//! share of the users (each user always the same variant), its bids' notice URLs name it
//! and carry the pCTR it bid with, and the wins, clicks and pCTR sums in `/metrics` and
//! `/admin/variants` are those of the notices sent for its bids. Candidates that cannot
//! serve are refused with the reason and change nothing; promote and roll back; the
//! judge on `ctrbid exchange` traffic; drift against the training rows.

mod common;

use common::{config, repo, TestServer};
use ctrbid::config::Config;
use std::collections::HashMap;

const TOKEN: &str = "admin-token-0123456789";

fn cfg() -> Config {
    let mut c = config();
    c.admin.token = Some(TOKEN.into());
    c.notices.hmac_key = Some("test-notice-key-0123456789abcdef0123".into());
    c.server.debug_ext = true;
    c
}

/// The fixture request as user `user`.
fn request(user: &str) -> Vec<u8> {
    let text = std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    v["user"] = serde_json::json!({ "id": user });
    serde_json::to_vec(&v).unwrap()
}

fn default_model() -> String {
    repo().join("models/default/model.onnx").display().to_string()
}

/// Path and query of a notice URL, its macros filled in as an exchange would.
fn filled(url: &str, price: &str) -> String {
    let at = url.find("/win").or_else(|| url.find("/click")).unwrap();
    url[at..].replace("${AUCTION_PRICE}", price).replace("${AUCTION_CURRENCY}", "USD")
}

/// `(variant, pctr ppm)` of the `mv=` term of a notice URL.
fn model_term(url: &str) -> (String, u64) {
    let mv = url.split(['?', '&']).find_map(|kv| kv.strip_prefix("mv=")).unwrap_or_else(|| panic!("no mv= in {url}"));
    let (name, ppm) = mv.split_once('.').unwrap();
    (name.to_string(), ppm.parse().unwrap())
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("{line_start} not in {text}"))
}

#[derive(Default, Debug)]
struct Sent {
    requests: u64,
    bids: u64,
    wins: u64,
    clicks: u64,
    won_pctr_ppm: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_takes_its_share_of_users_and_the_notices_of_its_bids() {
    let server = TestServer::start(cfg()).await;
    let add = format!("/admin/variants/add?name=cand&share=0.5&path={}", default_model());
    let r = server.admin_post(&add, Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("main (incumbent"), "{}", r.text());

    let mut sent: HashMap<String, Sent> = HashMap::new();
    let mut variant_of_user: HashMap<String, String> = HashMap::new();
    for u in 0..160 {
        let user = format!("user-{u}");
        // Each user twice: the second request must go to the same variant.
        for _ in 0..2 {
            let r = server.post("/openrtb2/bid", &request(&user)).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let bid = r.json()["seatbid"][0]["bid"][0].clone();
            let nurl = bid["nurl"].as_str().unwrap();
            let (variant, ppm) = model_term(nurl);
            // The term signs the pCTR the bid was priced with. The model's pCTR is an f32
            // and the response writes it in f32's shortest form: read it back as an f32
            // (exact) before widening, as the bidder does, or 0.0230155 rounds the other way.
            let pctr = bid["ext"]["ctrbid"]["pctr"].as_f64().unwrap() as f32;
            assert_eq!(ppm, (f64::from(pctr) * 1e6).round() as u64, "{nurl}");
            let first = variant_of_user.entry(user.clone()).or_insert_with(|| variant.clone());
            assert_eq!(*first, variant, "{user} saw two variants");
            let s = sent.entry(variant).or_default();
            s.requests += 1;
            s.bids += 1;
            // Every third bid wins, every other win is clicked.
            if s.bids.is_multiple_of(3) {
                let r = server.get(&filled(nurl, "1.25")).await;
                assert_eq!(r.status, 200, "{}", r.text());
                s.wins += 1;
                s.won_pctr_ppm += ppm;
                if s.wins.is_multiple_of(2) {
                    let adm = bid["adm"].as_str().unwrap();
                    let at = adm.find("/click?").unwrap();
                    let end = adm[at..].find(['"', '<', ']', '\\']).map_or(adm.len(), |e| at + e);
                    assert_eq!(model_term(&adm[at..end]).0, model_term(nurl).0);
                    assert_eq!(server.get(&filled(&adm[at..end], "")).await.status, 302);
                    s.clicks += 1;
                }
            }
        }
    }
    // Half the users each, give or take: 160 users, binomial sd 6.3; 50 ± 30 fails
    // one run in 10^6.
    let users_of = |v: &str| variant_of_user.values().filter(|x| *x == v).count();
    assert!((50..=110).contains(&users_of("cand")), "{} of 160 users on cand", users_of("cand"));
    assert_eq!(users_of("cand") + users_of("main"), 160);

    // Latencies reach the histograms through the recorder thread, a few ms behind.
    let all = "ctrbid_request_duration_seconds_count 320\n";
    common::wait_until("the recorder took every request", std::time::Duration::from_secs(10), || async {
        server.admin_get("/metrics").await.text().contains(all)
    })
    .await;
    let text = server.admin_get("/metrics").await.text();
    for (variant, s) in &sent {
        let m = |name: &str| metric(&text, &format!("{name}{{variant=\"{variant}\"}} "));
        assert_eq!(m("ctrbid_variant_requests_total"), s.requests as f64, "{variant}");
        assert_eq!(m("ctrbid_variant_bids_total"), s.bids as f64, "{variant}");
        assert_eq!(m("ctrbid_variant_wins_total"), s.wins as f64, "{variant}");
        assert_eq!(m("ctrbid_variant_clicks_total"), s.clicks as f64, "{variant}");
        let pctr_sum = m("ctrbid_variant_won_pctr_sum");
        assert!((pctr_sum - s.won_pctr_ppm as f64 / 1e6).abs() < 1e-6, "{variant}: {pctr_sum} vs {s:?}");
        assert_eq!(m("ctrbid_variant_request_duration_seconds_count"), s.requests as f64, "{variant}");
        assert_eq!(m("ctrbid_variant_share"), 0.5, "{variant}");
    }
    assert!(text.contains("ctrbid_variant_info{variant=\"cand\",model=\""), "{text}");
    // The whole-process histogram has every request.
    assert_eq!(metric(&text, "ctrbid_request_duration_seconds_bucket{le=\"+Inf\"} "), 320.0);

    let status = server.admin_get("/admin/variants").await.json();
    let serving = status["serving"].as_array().unwrap();
    assert_eq!(serving.len(), 2);
    assert_eq!((serving[1]["name"].as_str(), serving[1]["role"].as_str()), (Some("cand"), Some("candidate")));
    let cand = &sent["cand"];
    assert_eq!(serving[1]["results"]["wins"].as_u64(), Some(cand.wins));
    let calibration = serving[1]["calibration"].as_f64().unwrap();
    assert!((calibration - cand.won_pctr_ppm as f64 / 1e6 / cand.clicks as f64).abs() < 1e-6, "{status}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_that_cannot_serve_are_refused_and_promote_and_rollback_change_the_set() {
    let server = TestServer::start(cfg()).await;
    let post = |path: String| {
        let server = &server;
        async move { server.admin_post(&path, Some(TOKEN)).await }
    };
    let model = default_model();
    let missing = post("/admin/variants/add?name=a&share=0.1&path=/nonexistent/m.onnx".into()).await;
    assert_eq!(missing.status, 422, "{}", missing.text());
    assert!(missing.text().contains("/nonexistent/m.onnx"), "{}", missing.text());
    // A model built for another feature spec.
    let other_spec = repo().join("tests/fixtures/models/aggregates.onnx").display().to_string();
    let r = post(format!("/admin/variants/add?name=a&share=0.1&path={other_spec}")).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("feature spec"), "{}", r.text());
    let r = post(format!("/admin/variants/add?name=main&share=0.1&path={model}")).await;
    assert_eq!(r.status, 422);
    assert!(r.text().contains("already serving"), "{}", r.text());
    assert_eq!(post(format!("/admin/variants/add?name=a&share=1.5&path={model}")).await.status, 400);
    assert_eq!(post(format!("/admin/variants/add?name=a&path={model}")).await.status, 422);
    assert_eq!(
        server.admin_post(&format!("/admin/variants/add?name=a&share=0.1&path={model}"), None).await.status,
        401
    );
    let status = server.admin_get("/admin/variants").await.json();
    assert_eq!(status["serving"].as_array().unwrap().len(), 1, "nothing changed: {status}");
    assert_eq!(status["changes"].as_array().unwrap().len(), 0, "{status}");

    assert_eq!(post(format!("/admin/variants/add?name=a&share=0.3&path={model}")).await.status, 200);
    assert_eq!(post("/admin/variants/share?name=a&share=0.8".into()).await.status, 200);
    let r = post(format!("/admin/variants/add?name=b&share=0.3&path={model}")).await;
    assert_eq!(r.status, 422, "0.8 + 0.3 is more than all traffic");
    assert_eq!(post("/admin/variants/promote?name=a&why=better".into()).await.status, 200);
    let status = server.admin_get("/admin/variants").await.json();
    let serving = status["serving"].as_array().unwrap();
    assert_eq!(serving.len(), 1, "{status}");
    assert_eq!((serving[0]["name"].as_str(), serving[0]["role"].as_str()), (Some("a"), Some("incumbent")));
    assert_eq!(serving[0]["share"].as_f64(), Some(1.0));
    assert_eq!(status["retired"][0]["name"].as_str(), Some("main"), "{status}");
    let r = post("/admin/variants/rollback?name=a".into()).await;
    assert_eq!(r.status, 422, "the incumbent cannot be rolled back");
    // The new incumbent bids, and its bids name it.
    let r = server.post("/openrtb2/bid", &request("someone")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(model_term(r.json()["seatbid"][0]["bid"][0]["nurl"].as_str().unwrap()).0, "a");

    assert_eq!(post(format!("/admin/variants/add?name=b&share=0.2&path={model}")).await.status, 200);
    assert_eq!(post("/admin/variants/rollback?name=b&why=worse".into()).await.status, 200);
    let status = server.admin_get("/admin/variants").await.json();
    assert_eq!(status["serving"].as_array().unwrap().len(), 1);
    let actions: Vec<&str> =
        status["changes"].as_array().unwrap().iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["add", "share", "promote", "add", "rollback"]);
    assert_eq!(status["changes"][4]["detail"].as_str(), Some("worse"));
    // The status page shows the same.
    let full = server.admin_get("/admin/status").await.json();
    assert_eq!(full["variants"]["serving"][0]["name"].as_str(), Some("a"));
    server.stop().await;
}

/// The catalog of the exchange's world (seed 7, default sizes), as `exchange_e2e` writes it.
fn write_catalog(dir: &std::path::Path) -> std::path::PathBuf {
    let catalog =
        ctrbid::simulate::generate_catalog(&ctrbid::simulate::SimConfig { seed: 7, ..Default::default() }).unwrap();
    let path = dir.join("catalog.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&catalog).unwrap()).unwrap();
    path
}

/// `ctrbid exchange` plays against a bidder whose incumbent is the two-heads fixture,
/// beside two candidates on 30 % of the users each: the same model under another name,
/// and the same model predicting 1.3 times the click probability. Clicks are boosted
/// (both variants see about 40 times the clicks their pCTR promises), which the judge's
/// relative tests do not mind. The hot one is rolled back, for its calibration; the
/// equal one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_rolls_back_a_hot_candidate_and_leaves_an_equal_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.server.clock = ctrbid::clock::ClockMode::Simulation;
    c.model.catalog = write_catalog(dir.path());
    let fixture = |name: &str| repo().join("tests/fixtures/models").join(name).display().to_string();
    c.model.path = fixture("two_heads.onnx").into();
    c.variants.judge_min_clicks = 50;
    let server = TestServer::start(c).await;
    for (name, model) in [("hot", "two_heads_hot.onnx"), ("same", "two_heads.onnx")] {
        let r = server
            .admin_post(&format!("/admin/variants/add?name={name}&share=0.3&path={}", fixture(model)), Some(TOKEN))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut o = ctrbid::exchange::Options::new(vec![format!("http://{}", server.addr)], dir.path().join("run"));
    (o.seed, o.requests, o.days, o.rate) = (7, 9_000, 1, 1_500.0);
    o.click_boost = 40.0;
    o.tmax_grace_ms = 5000;
    let outcome = ctrbid::exchange::exchange(&o).await.unwrap();
    eprintln!("{}", ctrbid::exchange::markdown::summary(&outcome.report));
    // The judge runs once a second: give it two to take its last look.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let status = server.admin_get("/admin/variants").await.json();
    eprintln!("{}", serde_json::to_string_pretty(&status).unwrap());
    let changes = status["changes"].as_array().unwrap();
    let decisions: Vec<(&str, &str)> = changes
        .iter()
        .filter(|c| ["promote", "rollback"].contains(&c["action"].as_str().unwrap()))
        .map(|c| (c["action"].as_str().unwrap(), c["variant"].as_str().unwrap()))
        .collect();
    assert_eq!(decisions, [("rollback", "hot")], "{status}");
    let why = changes.iter().find(|c| c["action"] == "rollback").unwrap()["detail"].as_str().unwrap();
    assert!(why.starts_with("judge, look") && why.contains("more clicks than come"), "{why}");
    // The evidence as loadtest/canary.py reads it back (its EVIDENCE pattern).
    for part in [
        " wins, ",
        " clicks, ",
        " expected, ",
        " USD; incumbent ",
        "observed/expected clicks ",
        " of the incumbent's (z -",
    ] {
        assert!(why.contains(part), "{part:?} in {why}");
    }
    let serving: Vec<&str> =
        status["serving"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(serving, ["main", "same"]);
    server.stop().await;
}

/// The drift report of the incumbent in `/admin/variants`.
async fn drift_of(server: &TestServer) -> serde_json::Value {
    let status = server.admin_get("/admin/variants").await.json();
    status["serving"][0]["drift"].clone()
}

/// The index of `field` in a drift report.
fn psi_of(drift: &serde_json::Value, field: &str) -> f64 {
    let fields = drift["fields"].as_array().unwrap_or_else(|| panic!("no fields in {drift}"));
    let f = fields.iter().find(|f| f["field"] == field).unwrap_or_else(|| panic!("no {field} in {drift}"));
    f["psi"].as_f64().unwrap()
}

/// Drift against the default model's training rows (`models/default/model.drift.json`):
/// a day of its own simulated world, played by `ctrbid exchange`, is where it was
/// trained (every field and the predictions under 0.02, but the weekday: one day of
/// the week's seven); the real-world-shaped fixture requests are not (their publishers
/// and domains are none of the world's, and they are listed first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_near_zero_on_the_training_world_and_large_on_other_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.server.clock = ctrbid::clock::ClockMode::Simulation;
    c.model.catalog = write_catalog(dir.path());
    c.model.path = default_model().into();
    c.variants.drift_sample_every = 1;
    let server = TestServer::start(c).await;
    let mut o = ctrbid::exchange::Options::new(vec![format!("http://{}", server.addr)], dir.path().join("run"));
    (o.seed, o.requests, o.days, o.rate) = (7, 8_000, 1, 2_000.0);
    o.tmax_grace_ms = 5000;
    ctrbid::exchange::exchange(&o).await.unwrap();
    let drift = drift_of(&server).await;
    eprintln!("{drift}");
    assert!(drift["imps"].as_u64().unwrap() >= 5_000, "{drift}");
    assert!(drift["pctr"].as_f64().unwrap() < 0.02, "{drift}");
    for f in drift["fields"].as_array().unwrap() {
        let (field, psi) = (f["field"].as_str().unwrap(), f["psi"].as_f64().unwrap());
        if field == "weekday" {
            assert!(psi > 1.0, "one weekday of seven: {psi}");
        } else {
            assert!(psi < 0.02, "{field}: {psi} in {drift}");
        }
    }
    let metrics = server.admin_get("/metrics").await.text();
    let publisher = metric(&metrics, "ctrbid_drift_feature_psi{variant=\"main\",field=\"publisher\"} ");
    assert!((publisher - psi_of(&drift, "publisher")).abs() < 1e-3, "{publisher} against {drift}");
    assert!(metrics.contains("ctrbid_drift_prediction_psi{variant=\"main\"} "), "{metrics}");
    server.stop().await;

    let mut c = cfg();
    c.variants.drift_sample_every = 1;
    let server = TestServer::start(c).await;
    let fixtures = repo().join("tests/fixtures/openrtb/prebid");
    let mut files: Vec<_> = std::fs::read_dir(&fixtures).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in &files {
        let r = server.post("/openrtb2/bid", &std::fs::read(f).unwrap()).await;
        // Some fixtures are invalid OpenRTB (400, with the reason): none is a 5xx.
        assert!([200, 204, 400].contains(&r.status), "{}: {} {}", f.display(), r.status, r.text());
    }
    let drift = drift_of(&server).await;
    eprintln!("{drift}");
    assert!(drift["imps"].as_u64().unwrap() >= 200, "{drift}");
    for field in ["publisher", "domain"] {
        assert!(psi_of(&drift, field) > 1.0, "{field} in {drift}");
    }
    let most_moved = drift["fields"][0]["field"].as_str().unwrap();
    assert!(psi_of(&drift, most_moved) >= psi_of(&drift, "publisher"), "sorted: {drift}");
    server.stop().await;
}

/// A shadow scores every request it shadows beside the incumbent, bids nothing, and
/// says what it predicted: the two-heads fixture's 1.3-times copy as a shadow of the
/// fixture itself reads 1.3 times the served pCTR on the same rows and ranks every imp
/// the same, and the event log holds its pCTR for the row of every bid logged. It
/// cannot be promoted (it never bid); rolled back, it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_scores_beside_the_incumbent_bids_nothing_and_its_predictions_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    let fixture = |name: &str| repo().join("tests/fixtures/models").join(name).display().to_string();
    c.model.path = fixture("two_heads.onnx").into();
    c.events.dir = Some(dir.path().join("events"));
    c.events.bid_sample = Some(1.0);
    let server = TestServer::start(c).await;
    let add = format!("/admin/variants/add?name=shadow&share=1&role=shadow&path={}", fixture("two_heads_hot.onnx"));
    let r = server.admin_post(&add, Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.admin_post("/admin/variants/add?name=x&share=1&role=judge&path=m.onnx", Some(TOKEN)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    const N: u64 = 40;
    let mut bids = 0;
    for u in 0..N {
        let r = server.post("/openrtb2/bid", &request(&format!("user-{u}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        for b in r.json()["seatbid"][0]["bid"].as_array().unwrap() {
            bids += 1;
            assert_eq!(model_term(b["burl"].as_str().unwrap()).0, "main", "only the incumbent bids: {b}");
        }
    }
    let shadow = || async {
        let status = server.admin_get("/admin/variants").await.json();
        status["serving"].as_array().unwrap().iter().find(|v| v["name"] == "shadow").cloned().unwrap()
    };
    common::wait_until("the shadow scored every request", std::time::Duration::from_secs(10), || async {
        shadow().await["results"]["requests"] == N && shadow().await["shadow"]["rows"].as_u64() > Some(0)
    })
    .await;
    let s = shadow().await;
    assert_eq!(
        (s["role"].as_str(), s["results"]["bids"].as_u64(), s["results"]["late"].as_u64()),
        (Some("shadow"), Some(0), Some(0)),
        "{s}"
    );
    let ratio = s["shadow"]["pctr_ratio"].as_f64().unwrap();
    assert!((ratio - 1.3).abs() < 1e-3, "{s}");
    assert_eq!(s["shadow"]["other_top_share"].as_f64(), Some(0.0), "{s}");
    assert!(s["shadow"]["imps"].as_u64().unwrap() >= N, "{s}");
    let metrics = server.admin_get("/metrics").await.text();
    let rows = metric(&metrics, "ctrbid_variant_shadow_rows_total{variant=\"shadow\"} ");
    assert_eq!(rows as u64, s["shadow"]["rows"].as_u64().unwrap());
    assert_eq!(metric(&metrics, "ctrbid_events_shadows_total{outcome=\"written\"} ") as u64, bids);
    let r = server.admin_post("/admin/variants/promote?name=shadow", Some(TOKEN)).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("is a shadow"), "{}", r.text());
    let r = server.admin_post("/admin/variants/rollback?name=shadow", Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    server.stop().await;

    // Each logged bid has the shadow's prediction for its row: 1.3 times the served one.
    let mut served = HashMap::new();
    let mut shadowed = HashMap::new();
    for record in ctrbid::eventlog::Reader::open(dir.path().join("events")).unwrap() {
        let data = record.unwrap().data;
        match ctrbid::events::Event::decode(&data).unwrap() {
            ctrbid::events::Event::Bid(b) => {
                served.insert(b.bid, b.pctr);
            }
            ctrbid::events::Event::Shadow(s) => {
                assert_eq!((s.variant, s.model), ("shadow", "1-pctr-x1.3"));
                assert!(shadowed.insert(s.bid, s.pctr).is_none(), "one record per bid");
            }
            ctrbid::events::Event::Notice(_) => {}
            ctrbid::events::Event::Counted(c) => panic!("no fleet here: {c:?}"),
        }
    }
    assert_eq!(served.len() as u64, bids);
    assert_eq!(shadowed.len(), served.len(), "a shadow record for every bid record");
    for (bid, p) in &served {
        let s = shadowed[bid];
        assert!((s - (p * 1.3).min(1.0)).abs() <= 1e-6 * s.max(1e-3), "bid {bid:x}: served {p}, shadow {s}");
    }
}
