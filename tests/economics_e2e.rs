//! Campaign economics end to end, over real HTTP: bids in flight hold their price
//! against the budget until their outcome, frequency caps count wins and bids in flight,
//! first-price bids move toward the surplus-maximising price as win and loss notices
//! come back, and all of it survives a restart and holds over a small exchange run.

mod common;

use common::{at_fixed_time, config, repo, TestServer};
use ctrbid::config::Config;
use serde_json::{json, Value};

const KEY: &str = "test-notice-key-0123456789abcdef0123";

fn cfg() -> Config {
    let mut c = at_fixed_time(config());
    c.notices.hmac_key = Some(KEY.into());
    c.server.debug_ext = true;
    c
}

/// The Prebid fixture, with a publisher, a user, a floor and an auction type.
fn request(at: u8, user: &str) -> Vec<u8> {
    let text = std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap();
    let mut r: Value = serde_json::from_slice(&text).unwrap();
    r["at"] = json!(at);
    r["user"] = json!({ "id": user });
    r["imp"][0]["bidfloor"] = json!(0.5);
    let inventory = if r.get("app").is_some() { "app" } else { "site" };
    r[inventory]["publisher"] = json!({ "id": "pub-9" });
    serde_json::to_vec(&r).unwrap()
}

async fn bid(server: &TestServer, body: &[u8]) -> Option<Value> {
    let r = server.post("/openrtb2/bid", body).await;
    match r.status {
        200 => Some(r.json()["seatbid"][0]["bid"][0].clone()),
        204 => None,
        s => panic!("status {s}: {}", r.text()),
    }
}

/// The path and query of a notice URL with the exchange's macros filled in.
fn filled(url: &str, price: f64, loss: u16, min_to_win: f64) -> String {
    let at = ["/win", "/bill", "/loss"].iter().find_map(|p| url.find(p)).unwrap();
    url[at..]
        .replace("${AUCTION_PRICE}", &format!("{price:.6}"))
        .replace("${AUCTION_CURRENCY}", "USD")
        .replace("${AUCTION_ID}", "auction")
        .replace("${AUCTION_LOSS}", &loss.to_string())
        .replace("${AUCTION_MIN_TO_WIN}", &format!("{min_to_win:.6}"))
}

async fn notice(server: &TestServer, b: &Value, url: &str, price: f64, loss: u16, min_to_win: f64) {
    let r = server.get(&filled(b[url].as_str().unwrap(), price, loss, min_to_win)).await;
    assert_eq!(r.status, 200, "{url}: {}", r.text());
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("{line_start} not in /metrics"))
}

/// The default catalog with only `campaign`, given `budget` USD a day.
fn catalog_of(dir: &std::path::Path, campaign: &str, budget: f64) -> std::path::PathBuf {
    let mut catalog: Value =
        serde_json::from_slice(&std::fs::read(repo().join("models/default/catalog.json")).unwrap()).unwrap();
    catalog["campaigns"].as_array_mut().unwrap().retain(|c| c["id"] == campaign);
    catalog["campaigns"][0]["daily_budget"] = json!(budget);
    catalog["creatives"].as_array_mut().unwrap().retain(|c| c["campaign_id"] == campaign);
    let path = dir.join("catalog.json");
    std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    path
}

/// The campaign that wins [`request`] and its price, from a bidder on the default catalog.
async fn winner(at: u8) -> (String, f64) {
    let server = TestServer::start(cfg()).await;
    let b = bid(&server, &request(at, "u1")).await.expect("the default catalog bids");
    server.stop().await;
    (b["cid"].as_str().unwrap().to_string(), b["price"].as_f64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bids_in_flight_hold_the_budget_until_their_outcome() {
    let (cid, p) = winner(2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.pacing.enabled = false;
    // 2.7 bids' worth: two bids in flight fit, a third does not.
    c.model.catalog = catalog_of(dir.path(), &cid, 2.7 * p / 1000.0);
    let server = TestServer::start(c).await;
    let body = request(2, "u1");
    let b1 = bid(&server, &body).await.expect("first bid");
    assert_eq!(b1["price"].as_f64(), Some(p));
    let b2 = bid(&server, &body).await.expect("second bid");
    assert!(bid(&server, &body).await.is_none(), "a third bid in flight would pass the budget");
    let m = server.admin_get("/metrics").await.text();
    assert_eq!(metric(&m, &format!("ctrbid_campaign_budget_refused_total{{campaign=\"{cid}\"}}")), 1.0);
    let held = metric(&m, &format!("ctrbid_campaign_in_flight_usd{{campaign=\"{cid}\"}}"));
    assert!((held - 2.0 * p / 1000.0).abs() < 1e-5, "held {held}");

    // A loss gives its hold back: one more bid fits.
    notice(&server, &b1, "lurl", 0.0, 102, p * 1.2).await;
    let b3 = bid(&server, &body).await.expect("a bid after the loss");
    // A win at half the bid holds half until its bill, which turns it into spend.
    notice(&server, &b2, "nurl", p / 2.0, 0, 0.0).await;
    notice(&server, &b2, "burl", p / 2.0, 0, 0.0).await;
    // Spend 0.5 p + b3 in flight p: 1.2 p left, one bid.
    let b4 = bid(&server, &body).await.expect("a bid in what the cheap win left");
    assert!(bid(&server, &body).await.is_none());
    let pacing = server.admin_get("/admin/pacing").await.json();
    let row = &pacing["campaigns"][0];
    assert_eq!(row["campaign"], cid.as_str());
    let spend = row["spend_usd"].as_f64().unwrap();
    assert!((spend - p / 2000.0).abs() < 2e-6, "{row}");
    assert!((row["in_flight_usd"].as_f64().unwrap() - 2.0 * p / 1000.0).abs() < 1e-5, "{row}");
    // Whatever comes back, spend never passes the budget: bill both at their full price.
    for b in [&b3, &b4] {
        notice(&server, b, "nurl", p, 0, 0.0).await;
        notice(&server, b, "burl", p, 0, 0.0).await;
    }
    let pacing = server.admin_get("/admin/pacing").await.json();
    let row = &pacing["campaigns"][0];
    let (spend, budget) = (row["spend_usd"].as_f64().unwrap(), row["budget_usd"].as_f64().unwrap());
    assert!(spend <= budget && spend > 0.9 * budget, "spend {spend} of {budget}");
    assert_eq!(row["in_flight_usd"].as_f64(), Some(0.0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_price_bids_move_toward_the_surplus_maximising_price() {
    let mut c = cfg();
    c.pacing.enabled = false;
    c.shading.min_observations = 30;
    let server = TestServer::start(c).await;
    let body = request(1, "u1");
    let first = bid(&server, &body).await.expect("a first-price bid");
    let p0 = first["price"].as_f64().unwrap();
    // Cold start: the fixed factor.
    let value = p0 / 0.85;
    // The competition: ln(m / floor) normal around ln(0.4 v / floor), sd 0.3, drawn
    // from a fixed sequence; a bid above m wins and pays itself, one below is told m.
    let (floor, sigma) = (0.5_f64, 0.3_f64);
    let mu = (0.4 * value / floor).ln();
    let optimum = ctrbid::shading::optimal_bid(value, floor, floor, mu, sigma);
    assert!(optimum < 0.7 * value, "the market is cheap: {optimum} vs {value}");
    let mut rng_state = 12345u64;
    let mut normal = || {
        // Box-Muller over a 64-bit LCG: deterministic, good enough for a landscape.
        let mut u = || {
            rng_state = rng_state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((rng_state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    };
    let mut last = p0;
    for _ in 0..150 {
        let b = bid(&server, &body).await.expect("bids");
        let price = b["price"].as_f64().unwrap();
        let m = floor * (mu + sigma * normal()).exp();
        if price > m {
            notice(&server, &b, "nurl", price, 0, 0.0).await;
        } else {
            notice(&server, &b, "lurl", 0.0, 102, m).await;
        }
        last = price;
    }
    // Judged by what it earns: the expected surplus (v - b) P(win | b) under the true landscape.
    let surplus = |b: f64| (value - b) * ctrbid::shading::normal_cdf(((b / floor).ln() - mu) / sigma);
    let (learnt, fixed, best) = (surplus(last), surplus(p0), surplus(optimum));
    eprintln!(
        "bid {last:.3} (fixed {p0:.3}, optimum {optimum:.3}); expected surplus {learnt:.3} / {fixed:.3} / {best:.3}"
    );
    assert!(last < 0.8 * p0, "learnt bids are lower than the fixed factor's: {last} vs {p0}");
    assert!((last - optimum).abs() < 0.25 * (p0 - optimum).abs(), "{last} is not near the optimum {optimum}");
    assert!(learnt >= 0.97 * best && learnt > 1.2 * fixed, "surplus {learnt} vs optimum {best}, fixed {fixed}");
    let m = server.admin_get("/metrics").await.text();
    let observed = metric(&m, "ctrbid_shading_observations_total{kind=\"won\"}")
        + metric(&m, "ctrbid_shading_observations_total{kind=\"lost_exact\"}");
    assert_eq!(observed, 150.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frequency_cap_counts_wins_and_bids_in_flight_per_user() {
    let (cid, _) = winner(2).await;
    let dir = tempfile::tempdir().unwrap();
    let path = catalog_of(dir.path(), &cid, 1000.0);
    let mut catalog: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    catalog["campaigns"][0]["frequency_cap"] = json!({ "impressions": 2, "window_s": 3600 });
    std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    let mut c = cfg();
    c.pacing.enabled = false;
    c.model.catalog = path;
    let server = TestServer::start(c).await;
    let (u1, u2) = (request(2, "u1"), request(2, "u2"));
    let b1 = bid(&server, &u1).await.expect("first impression of u1");
    let b2 = bid(&server, &u1).await.expect("second");
    assert!(bid(&server, &u1).await.is_none(), "two bids in flight fill u1's cap of 2");
    // Each of the campaign's creatives that fit the imp is refused once.
    let per_request = metric(&server.admin_get("/metrics").await.text(), "ctrbid_freqcap_capped_total");
    assert!(per_request >= 1.0);
    assert!(bid(&server, &u2).await.is_some(), "another user is not capped");
    // A loss frees its place; wins fill them for the window.
    notice(&server, &b1, "lurl", 0.0, 102, 99.0).await;
    let b3 = bid(&server, &u1).await.expect("the lost bid's place");
    notice(&server, &b2, "nurl", 1.0, 0, 0.0).await;
    notice(&server, &b3, "nurl", 1.0, 0, 0.0).await;
    notice(&server, &b3, "burl", 1.0, 0, 0.0).await;
    assert!(bid(&server, &u1).await.is_none(), "two impressions within the hour");
    // Without a stable user id there is nothing to cap: it bids, and is counted.
    let mut anonymous: Value = serde_json::from_slice(&u1).unwrap();
    anonymous.as_object_mut().unwrap().remove("user");
    assert!(bid(&server, &serde_json::to_vec(&anonymous).unwrap()).await.is_some());
    let m = server.admin_get("/metrics").await.text();
    assert_eq!(metric(&m, "ctrbid_freqcap_capped_total"), 2.0 * per_request);
    assert_eq!(metric(&m, "ctrbid_freqcap_requests_without_user_total"), 1.0);
    assert_eq!(metric(&m, "ctrbid_freqcap_users"), 2.0);
    server.stop().await;
}

/// A win whose notice comes after its bid's hold lapsed (`pacing.in_flight_s`) still
/// counts under the cap, once with its bill: the notice URL carries the user's cap key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_win_after_its_hold_lapsed_still_counts_under_the_cap() {
    let (cid, _) = winner(2).await;
    let dir = tempfile::tempdir().unwrap();
    let path = catalog_of(dir.path(), &cid, 1000.0);
    let mut catalog: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    catalog["campaigns"][0]["frequency_cap"] = json!({ "impressions": 3, "window_s": 3600 });
    std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    let mut c = cfg();
    c.pacing.enabled = false;
    c.pacing.in_flight_s = 1;
    c.model.catalog = path;
    let server = TestServer::start(c).await;
    // Bids ten seconds after the server's fixed time.
    let later = (common::FIXED_TIME_MS + 10_000).to_string();
    let bid_later = |body: Vec<u8>| {
        let (server, later) = (&server, &later);
        async move {
            let r = server.post_with("/openrtb2/bid", &[(ctrbid::clock::TIME_HEADER, later)], &body).await;
            (r.status == 200).then(|| r.json()["seatbid"][0]["bid"][0].clone())
        }
    };
    let b1 = bid(&server, &request(2, "u1")).await.expect("u1's first bid");
    assert!(b1["nurl"].as_str().unwrap().contains("&u="), "a capped bid's URLs carry the user key: {}", b1["nurl"]);
    // A test auction (it holds nothing) moves the clock on; b1's hold lapses.
    let mut test_request: Value = serde_json::from_slice(&request(2, "u2")).unwrap();
    test_request["test"] = json!(1);
    bid_later(serde_json::to_vec(&test_request).unwrap()).await;
    common::wait_until("b1's hold lapses", std::time::Duration::from_secs(10), || async {
        metric(&server.admin_get("/metrics").await.text(), "ctrbid_bids_in_flight") == 0.0
    })
    .await;
    notice(&server, &b1, "nurl", 1.0, 0, 0.0).await;
    notice(&server, &b1, "burl", 1.0, 0, 0.0).await;
    assert_eq!(metric(&server.admin_get("/metrics").await.text(), "ctrbid_late_outcomes_total"), 1.0);
    // One impression (the win and its bill together): two more bids to u1 fit the cap
    // of 3, a third does not.
    assert!(bid_later(request(2, "u1")).await.is_some(), "the cap's second place");
    assert!(bid_later(request(2, "u1")).await.is_some(), "the cap's third place");
    assert!(bid_later(request(2, "u1")).await.is_none(), "the late impression and two bids in flight fill the cap");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_caps_and_pacing_survive_a_restart() {
    let (cid, p) = winner(2).await;
    let dir = tempfile::tempdir().unwrap();
    let path = catalog_of(dir.path(), &cid, 2.5 * p / 1000.0);
    let mut catalog: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    catalog["campaigns"][0]["frequency_cap"] = json!({ "impressions": 5, "window_s": 3600 });
    std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    let config = || {
        let mut c = cfg();
        c.pacing.enabled = false;
        c.model.catalog = path.clone();
        c.events.dir = Some(dir.path().join("events"));
        c
    };
    let server = TestServer::start(config()).await;
    let body = request(2, "u1");
    let b1 = bid(&server, &body).await.expect("first bid");
    let _b2 = bid(&server, &body).await.expect("second bid");
    notice(&server, &b1, "nurl", p, 0, 0.0).await;
    server.stop().await;
    assert!(dir.path().join("events/economics.json").exists(), "saved at shutdown");

    let server = TestServer::start(config()).await;
    let pacing = server.admin_get("/admin/pacing").await.json();
    let held = pacing["campaigns"][0]["in_flight_usd"].as_f64().unwrap();
    assert!((held - 2.0 * p / 1000.0).abs() < 1e-5, "both holds came back: {pacing}");
    assert!(bid(&server, &body).await.is_none(), "the holds still fill the budget");
    // The won bid's bill, after the restart: spend, and its hold released, once.
    notice(&server, &b1, "burl", p, 0, 0.0).await;
    let pacing = server.admin_get("/admin/pacing").await.json();
    let row = &pacing["campaigns"][0];
    assert!((row["spend_usd"].as_f64().unwrap() - p / 1000.0).abs() < 2e-6, "{row}");
    assert!((row["in_flight_usd"].as_f64().unwrap() - p / 1000.0).abs() < 1e-5, "{row}");
    let m = server.admin_get("/metrics").await.text();
    assert_eq!(metric(&m, "ctrbid_freqcap_users"), 1.0, "the cap store came back");
    server.stop().await;
}

/// A small exchange run with all three on: the ledger judges. First-price auctions for
/// half the publishers, few users (so caps bind), budgets of a few impressions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_exchange_run_keeps_every_budget_and_cap() {
    use ctrbid::exchange::ledger::{self, NoticeKind, Record};
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    let mut catalog =
        ctrbid::simulate::generate_catalog(&ctrbid::simulate::SimConfig { seed: 7, ..Default::default() }).unwrap();
    let cap = ctrbid::freqcap::FrequencyCap { impressions: 2, window_s: 86_400 };
    for c in &mut catalog.campaigns {
        c.daily_budget = 0.1;
        c.frequency_cap = Some(cap);
    }
    let path = dir.path().join("catalog.json");
    std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    let mut c = config();
    c.server.clock = ctrbid::clock::ClockMode::Simulation;
    c.notices.hmac_key = Some(KEY.into());
    c.model.catalog = path;
    let server = TestServer::start(c).await;
    let mut o = ctrbid::exchange::Options::new(vec![format!("http://{}", server.addr)], dir.path().join("x"));
    (o.seed, o.requests, o.days, o.rate, o.users, o.first_price_share) = (7, 1500, 1, 500.0, 150, 0.5);
    o.tmax_grace_ms = 5000;
    let outcome = ctrbid::exchange::exchange(&o).await.unwrap();
    let records = ledger::read(&outcome.ledger).unwrap();
    let mut spend = HashMap::<String, f64>::new();
    for r in &records {
        if let Record::Notice(n) = r {
            if n.kind == NoticeKind::Bill && n.status == Some(200) {
                *spend.entry(n.bid.cid.clone().unwrap()).or_default() += n.price.unwrap() / 1000.0;
            }
        }
    }
    let shown = common::impressions_by_user_and_campaign(&outcome.ledger);
    assert!(shown.len() > 20 && spend.len() > 5, "the run bought: {} pairs, {} campaigns", shown.len(), spend.len());
    let most = spend.values().cloned().fold(0.0, f64::max);
    assert!(most <= 0.1 + 1e-9, "a campaign spent {most} of 0.1");
    assert!(spend.values().any(|s| *s > 0.09), "some budgets were reached: {spend:?}");
    let over: Vec<_> = shown.iter().filter(|(_, n)| **n > 2).collect();
    assert!(over.is_empty(), "over the cap of 2: {over:?}");
    assert!(shown.values().any(|n| *n == 2), "some caps were reached");
    let m = server.admin_get("/metrics").await.text();
    assert!(metric(&m, "ctrbid_shading_observations_total{kind=\"won\"}") > 0.0);
    assert!(metric(&m, "ctrbid_freqcap_capped_total") > 0.0);
    server.stop().await;
}
