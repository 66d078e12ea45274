//! Win, billing and loss notices end to end: the bidder signs the URLs of a real bid,
//! the test plays the exchange (fills in the macros, calls the URLs), and the bidder
//! applies each genuine notice once and refuses forged, expired and replayed ones.

mod common;

use common::{at_fixed_time, config, repo, TestServer, FIXED_TIME_MS};
use ctrbid::config::Config;

const KEY: &str = "test-notice-key-0123456789abcdef0123";

fn cfg() -> Config {
    let mut c = config();
    c.notices.hmac_key = Some(KEY.into());
    c
}

fn request() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap()
}

/// Bids and returns the first bid.
async fn bid(server: &TestServer, body: &[u8]) -> serde_json::Value {
    let r = server.post("/openrtb2/bid", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["seatbid"][0]["bid"][0].clone()
}

/// What an exchange does with a notice URL: fill in the macros, keep path and query.
fn exchange_fills(url: &str, price: &str) -> String {
    let path_at = url.find("/win").or_else(|| url.find("/bill")).or_else(|| url.find("/loss")).unwrap();
    url[path_at..]
        .replace("${AUCTION_PRICE}", price)
        .replace("${AUCTION_CURRENCY}", "USD")
        .replace("${AUCTION_ID}", "test-request-id")
        .replace("${AUCTION_LOSS}", "102")
        .replace("${AUCTION_MIN_TO_WIN}", "3.10")
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("{line_start} not in metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_notices_apply_once_and_the_rest_are_refused_and_counted() {
    let server = TestServer::start(cfg()).await;
    let b = bid(&server, &request()).await;
    let price = b["price"].as_f64().unwrap();
    let (nurl, burl, lurl) = (b["nurl"].as_str().unwrap(), b["burl"].as_str().unwrap(), b["lurl"].as_str().unwrap());
    assert!(nurl.starts_with(&format!("http://{}/win?", server.addr)), "{nurl}");
    let second_price = format!("{:.4}", price * 0.6);

    // Win: once; a replay is refused.
    let win = exchange_fills(nurl, &second_price);
    assert_eq!(server.get(&win).await.status, 200);
    assert_eq!(server.get(&win).await.status, 409);
    // Billing: applied once however often it comes; every repeat still answered 200.
    let bill = exchange_fills(burl, &second_price);
    for _ in 0..3 {
        assert_eq!(server.get(&bill).await.status, 200);
    }
    // A loss for the bid just won and billed contradicts them: 409, nothing applied.
    let r = server.get(&exchange_fills(lurl, "")).await;
    assert_eq!(r.status, 409);
    assert!(r.text().contains("win or billing notice was already accepted"), "{}", r.text());

    // Forgeries: a higher price bound, another campaign, a made-up signature.
    let forged_bound = exchange_fills(burl, "1.0").replacen("&hi=", "&hi=9", 1);
    assert_eq!(server.get(&forged_bound).await.status, 403);
    let c_at = bill.find("&c=").unwrap() + 3;
    let forged_campaign = format!("{}X{}", &bill[..c_at], &bill[c_at..]);
    assert_eq!(server.get(&forged_campaign).await.status, 403);
    let s_at = bill.find("&s=").unwrap() + 3;
    let forged_tag = format!("{}{}{}", &bill[..s_at], "0".repeat(32), &bill[s_at + 32..]);
    assert_eq!(server.get(&forged_tag).await.status, 403);
    // A price above our bid, and a price macro the exchange did not fill.
    let b2 = bid(&server, &request()).await;
    let too_high = exchange_fills(b2["burl"].as_str().unwrap(), &format!("{:.4}", b2["price"].as_f64().unwrap() + 1.0));
    assert_eq!(server.get(&too_high).await.status, 400);
    // Each URL fired as we sent it, its macros unfilled: 400 naming the macro the kind
    // needs, and nothing recorded (the filled win still counts below).
    for (url, needed) in [("nurl", "AUCTION_PRICE"), ("burl", "AUCTION_PRICE"), ("lurl", "AUCTION_LOSS")] {
        let unfilled = b2[url].as_str().unwrap().replace(&format!("http://{}", server.addr), "");
        let r = server.get(&unfilled).await;
        assert_eq!(r.status, 400, "{url}: {}", r.text());
        assert!(r.text().contains(needed), "{url}: {}", r.text());
    }
    // POST works as GET does.
    let win2 = exchange_fills(b2["nurl"].as_str().unwrap(), "0.5");
    assert_eq!(server.post(&win2, b"").await.status, 200);
    // A lost bid: its loss is accepted, and a win or billing after it contradicts it.
    let b3 = bid(&server, &request()).await;
    assert_eq!(server.get(&exchange_fills(b3["lurl"].as_str().unwrap(), "")).await.status, 200);
    for url in ["nurl", "burl"] {
        let r = server.get(&exchange_fills(b3[url].as_str().unwrap(), "0.5")).await;
        assert_eq!(r.status, 409, "{url} after the loss: {}", r.text());
        assert!(r.text().contains("a loss notice was already accepted"), "{}", r.text());
    }

    let m = server.admin_get("/metrics").await.text();
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"win\",verdict=\"accepted\"}"), 2.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"win\",verdict=\"duplicate\"}"), 1.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"bill\",verdict=\"accepted\"}"), 1.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"bill\",verdict=\"duplicate\"}"), 2.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"bill\",verdict=\"forged\"}"), 3.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"bill\",verdict=\"price_out_of_bounds\"}"), 1.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"bill\",verdict=\"malformed\"}"), 1.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"loss\",verdict=\"accepted\"}"), 1.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"win\",verdict=\"malformed\"}"), 1.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"loss\",verdict=\"malformed\"}"), 1.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"loss\",verdict=\"contradicts\"}"), 1.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"win\",verdict=\"contradicts\"}"), 1.0);
    assert_eq!(metric(&m, "ctrbid_notices_total{kind=\"bill\",verdict=\"contradicts\"}"), 1.0);
    // One impression billed at the second price: CPM / 1000 in USD.
    let billed = metric(&m, "ctrbid_billed_usd_total");
    let expected = second_price.parse::<f64>().unwrap() / 1000.0;
    assert!((billed - expected).abs() < 2e-6, "billed {billed}, expected {expected}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_verify_on_another_instance_with_the_same_key_and_expire() {
    let a = TestServer::start(cfg()).await;
    let b = bid(&a, &request()).await;
    a.stop().await;
    // Another instance (a restart, or a sibling behind the load balancer) with the same key.
    let same_key = TestServer::start(cfg()).await;
    let win = exchange_fills(b["nurl"].as_str().unwrap(), "0.10");
    assert_eq!(same_key.get(&win).await.status, 200);
    same_key.stop().await;
    let mut other = cfg();
    other.notices.hmac_key = Some("another-key-another-key-another-key".into());
    let other_key = TestServer::start(other).await;
    assert_eq!(other_key.get(&win).await.status, 403);
    other_key.stop().await;

    // A one-second URL lifetime: after it, the notice is refused as expired.
    let mut short = cfg();
    short.notices.ttl_s = 1;
    short.notices.min_ttl_s = 1;
    short.notices.max_ttl_s = 1;
    let server = TestServer::start(short).await;
    let b = bid(&server, &request()).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = server.get(&exchange_fills(b["burl"].as_str().unwrap(), "0.10")).await;
    assert_eq!(r.status, 410, "{}", r.text());
    server.stop().await;
}

/// The request with `test` set to `flag` (1: a test auction, 0: a real one).
fn with_test(flag: u8) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&request()).unwrap();
    v["test"] = serde_json::json!(flag);
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_budget_stops_the_campaign_and_test_auctions_spend_nothing() {
    // The campaign that wins this request, alone in the catalog, gets a budget of one
    // impression. One auction time for both servers, so that the second bids at the
    // price the budget is set to.
    let server = TestServer::start(at_fixed_time(cfg())).await;
    let b = bid(&server, &request()).await;
    let cid = b["cid"].as_str().unwrap().to_string();
    let price = b["price"].as_f64().unwrap();
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("models/default/catalog.json")).unwrap()).unwrap();
    catalog["campaigns"].as_array_mut().unwrap().retain(|c| c["id"] == cid.as_str());
    catalog["creatives"].as_array_mut().unwrap().retain(|c| c["campaign_id"] == cid.as_str());
    catalog["campaigns"][0]["daily_budget"] = serde_json::json!(price / 1000.0);
    let path = dir.path().join("catalog.json");
    std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    let mut c = at_fixed_time(cfg());
    c.model.catalog = path;
    let server = TestServer::start(c).await;
    let billed = |b: &serde_json::Value| exchange_fills(b["burl"].as_str().unwrap(), &format!("{}", b["price"]));
    // A test auction (`test = 1`) bids as a real one would, and its billing, accepted,
    // charges nothing: the campaign's one-impression budget is still there after it.
    for _ in 0..3 {
        let b = bid(&server, &with_test(1)).await;
        assert_eq!((b["cid"].as_str(), b["price"].as_f64()), (Some(cid.as_str()), Some(price)));
        assert_eq!(server.get(&billed(&b)).await.status, 200);
    }
    let b = bid(&server, &with_test(0)).await;
    assert_eq!(
        (b["cid"].as_str(), b["price"].as_f64()),
        (Some(cid.as_str()), Some(price)),
        "test billing spent the budget"
    );
    let status = server.admin_get("/admin/status").await.json();
    assert_eq!(status["spend"]["campaigns_at_budget"], 0, "{status}");
    assert_eq!(server.admin_get("/readyz").await.status, 200);
    assert_eq!(server.get(&billed(&b)).await.status, 200);
    // Spent: the campaign no longer bids, /admin/status says so with its spend, and
    // with no other campaign the bidder is not ready (it could only answer 204).
    assert_eq!(server.post("/openrtb2/bid", &request()).await.status, 204);
    let status = server.admin_get("/admin/status").await.json();
    let spend = &status["spend"];
    assert_eq!((spend["campaigns_at_budget"].as_u64(), spend["campaigns_with_spend"].as_u64()), (Some(1), Some(1)));
    let listed = &spend["campaigns"][0];
    assert_eq!((listed["id"].as_str(), listed["at_budget"].as_bool()), (Some(cid.as_str()), Some(true)), "{status}");
    let charged = listed["spend_today_usd"].as_f64().unwrap();
    assert!((charged - price / 1000.0).abs() <= 1e-6, "{charged} vs {}", price / 1000.0);
    assert_eq!(listed["daily_budget_usd"].as_f64(), Some(price / 1000.0));
    let ready = server.admin_get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("every campaign has spent its daily budget"), "{}", ready.text());
    assert_eq!(status["ready"], false);
    server.stop().await;
}

/// A notice URL lives `notices.ttl_s` from the bid, or the imp's `exp` clamped to
/// [`min_ttl_s`, `max_ttl_s`]: the signed expiry (`x`, Unix seconds) says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notice_expiry_follows_imp_exp_within_its_bounds() {
    let mut c = at_fixed_time(cfg());
    (c.notices.ttl_s, c.notices.min_ttl_s, c.notices.max_ttl_s) = (1800, 60, 7200);
    let server = TestServer::start(c).await;
    let now_s = FIXED_TIME_MS / 1000;
    for (exp, lives_s) in
        [(None, 1800), (Some(5), 60), (Some(60), 60), (Some(600), 600), (Some(7200), 7200), (Some(86_400), 7200)]
    {
        let mut v: serde_json::Value = serde_json::from_slice(&request()).unwrap();
        if let Some(exp) = exp {
            v["imp"][0]["exp"] = serde_json::json!(exp);
        }
        let b = bid(&server, &serde_json::to_vec(&v).unwrap()).await;
        for url in ["nurl", "burl", "lurl"] {
            let url = b[url].as_str().unwrap();
            let x: i64 = url.split(['?', '&']).find_map(|kv| kv.strip_prefix("x=")).unwrap().parse().unwrap();
            assert_eq!(x - now_s, lives_s, "exp {exp:?}: {url}");
        }
    }
    server.stop().await;
}
