//! Currencies end to end: floors in another currency are converted with the configured
//! rate, bids go out in a currency the request allows, and unknown currencies get no bid.

mod common;

use common::{at_fixed_time, config, repo, TestServer};
use ctrbid::catalog::Catalog;
use serde_json::{json, Value};

/// USD per EUR in these tests.
const EUR: f64 = 1.25;

fn request(cur: &[&str], floor: f64, floorcur: &str) -> Vec<u8> {
    let path = repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json");
    let mut req: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    req["cur"] = json!(cur);
    req["imp"][0]["bidfloor"] = json!(floor);
    req["imp"][0]["bidfloorcur"] = json!(floorcur);
    serde_json::to_vec(&req).unwrap()
}

/// A server at a fixed auction time: the floor test compares prices across requests,
/// which the time-of-day features would change when the hour turns between them.
async fn server() -> TestServer {
    let mut cfg = at_fixed_time(config());
    cfg.bidding.exchange_rates.insert("EUR".into(), EUR);
    cfg.server.debug_ext = true;
    TestServer::start(cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bids_in_an_allowed_currency_at_the_converted_price() {
    let catalog = Catalog::load(&repo().join("models/default/catalog.json")).unwrap();
    let server = server().await;

    let r = server.post("/openrtb2/bid", &request(&["EUR"], 0.8, "EUR")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["cur"], "EUR");
    let bid = &body["seatbid"][0]["bid"][0];
    let price = bid["price"].as_f64().unwrap();
    let pctr = bid["ext"]["ctrbid"]["pctr"].as_f64().unwrap();
    let cr = catalog.creatives.iter().find(|c| c.id == bid["crid"].as_str().unwrap()).unwrap();
    let campaign = catalog.campaigns.iter().find(|c| c.id == cr.campaign_id).unwrap();
    let value = match campaign.goal() {
        ctrbid::catalog::Goal::Cpc(cpc) => cpc * pctr,
        ctrbid::catalog::Goal::Cpa(cpa) => cpa * pctr * bid["ext"]["ctrbid"]["pcvr"].as_f64().unwrap(),
    };
    let usd = (value * 1000.0).min(campaign.max_cpm);
    assert!((price * EUR - usd).abs() <= 1e-6 * usd, "EUR {price} x {EUR} is not the USD price {usd}");
    assert!(price >= 0.8);

    // USD allowed: USD wins.
    let r = server.post("/openrtb2/bid", &request(&["EUR", "USD"], 0.8, "EUR")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["cur"], "USD");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floors_are_compared_in_usd_and_unknown_currencies_get_no_bid() {
    let server = server().await;
    let r = server.post("/openrtb2/bid", &request(&["USD"], 0.0, "USD")).await;
    assert_eq!(r.status, 200);
    let best = r.json()["seatbid"][0]["bid"][0]["price"].as_f64().unwrap();

    // A floor under the best price in EUR units but over it in USD: no bid. (Read as
    // USD, it would have been met.)
    let floor = best / 1.1;
    let r = server.post("/openrtb2/bid", &request(&["USD"], floor, "EUR")).await;
    assert_eq!(r.status, 204, "a floor of {floor} EUR = {} USD is above the best price {best}", floor * EUR);
    let r = server.post("/openrtb2/bid", &request(&["USD"], floor, "USD")).await;
    assert_eq!(r.status, 200, "the same floor in USD is met");

    for (cur, floorcur) in [(["JPY"], "USD"), (["USD"], "JPY")] {
        let r = server.post("/openrtb2/bid", &request(&cur, 0.1, floorcur)).await;
        assert_eq!(r.status, 204, "cur {cur:?}, bidfloorcur {floorcur}: {}", r.text());
    }
    server.stop().await;
}
