//! OpenRTB 2.6 behaviour over real HTTP: deals and private auctions, first and second
//! price, native responses, seat and taxonomy rules, `nbr` bodies, deadlines, and the
//! privacy rules (COPPA, GDPR, lmt, dnt).

mod common;

use common::{at_fixed_time, check_bid_response, config, repo, TestServer};
use serde_json::{json, Value};

fn request() -> Value {
    serde_json::from_slice(
        &std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap(),
    )
    .unwrap()
}

async fn post(server: &TestServer, body: &Value) -> common::HttpResponse {
    server.post("/openrtb2/bid", &serde_json::to_vec(body).unwrap()).await
}

async fn first_bid(server: &TestServer, body: &Value) -> Value {
    let r = post(server, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let response = r.json();
    check_bid_response(body, &response);
    response["seatbid"][0]["bid"][0].clone()
}

/// A catalog where campaign `cid` buys through deal `deal-7`.
fn catalog_with_deal(cid: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let mut catalog: Value =
        serde_json::from_slice(&std::fs::read(repo().join("models/default/catalog.json")).unwrap()).unwrap();
    for c in catalog["campaigns"].as_array_mut().unwrap() {
        if c["id"] == cid {
            c["deals"] = json!(["deal-7"]);
        }
    }
    let path = dir.join("catalog.json");
    std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_private_auctions_and_floor_precedence() {
    // One auction time for both servers, so the campaign that wins without the deal is
    // the one that wins with it.
    let open = TestServer::start(at_fixed_time(config())).await;
    let base = first_bid(&open, &request()).await;
    open.stop().await;
    let cid = base["cid"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = at_fixed_time(config());
    cfg.model.catalog = catalog_with_deal(cid, dir.path());
    let server = TestServer::start(cfg).await;

    // A private auction with our deal: the bid names it and reaches the deal floor,
    // which takes precedence over the (higher) imp floor.
    let mut req = request();
    req["imp"][0]["bidfloor"] = json!(50.0);
    req["imp"][0]["pmp"] = json!({"private_auction": 1, "deals": [{"id": "someone-elses"}, {"id": "deal-7", "bidfloor": 0.05, "bidfloorcur": "USD"}]});
    let b = first_bid(&server, &req).await;
    assert_eq!(b["dealid"], "deal-7");
    assert_eq!(b["cid"], cid);
    assert!(b["price"].as_f64().unwrap() >= 0.05);
    // The notice URLs carry the deal.
    assert!(b["burl"].as_str().unwrap().contains("&d=deal-7"));

    // A deal floor beyond what the campaign may pay: no bid in a private auction.
    req["imp"][0]["pmp"]["deals"][1]["bidfloor"] = json!(10_000.0);
    assert_eq!(post(&server, &req).await.status, 204);
    // A deal for other seats only.
    req["imp"][0]["pmp"]["deals"][1] = json!({"id": "deal-7", "wseat": ["another-dsp"]});
    assert_eq!(post(&server, &req).await.status, 204);
    // Open auction allowed (private_auction 0): the deal's campaign, the best one for
    // this imp, bids through its deal; other campaigns could bid in the open auction.
    let mut open_req = request();
    open_req["imp"][0]["pmp"] = json!({"private_auction": 0, "deals": [{"id": "deal-7", "bidfloor": 0.01}]});
    let b = first_bid(&server, &open_req).await;
    assert_eq!((&b["cid"], &b["dealid"]), (&json!(cid), &json!("deal-7")), "{b}");
    // Only other buyers' deals on offer: the same campaign bids in the open auction,
    // naming no deal, at the price it bids without any pmp.
    open_req["imp"][0]["pmp"] = json!({"private_auction": 0, "deals": [{"id": "someone-elses", "bidfloor": 0.01}]});
    let b = first_bid(&server, &open_req).await;
    assert_eq!(b["cid"], cid, "{b}");
    assert!(b.get("dealid").is_none(), "{b}");
    assert_eq!(b["price"], base["price"]);

    // A fixed-price deal (at = 3) bids exactly the deal floor.
    let mut fixed = request();
    fixed["imp"][0]["pmp"] = json!({"private_auction": "1", "deals": [{"id": "deal-7", "bidfloor": 0.07, "at": 3}]});
    let b = first_bid(&server, &fixed).await;
    assert_eq!(b["price"].as_f64().unwrap(), 0.07);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_price_bids_are_shaded_second_price_bids_are_the_value() {
    // A fixed auction time, so that both requests get the same rows and pCTR.
    let mut cfg = at_fixed_time(config());
    cfg.server.debug_ext = true;
    let server = TestServer::start(cfg).await;
    let mut second = request();
    second["at"] = json!(2);
    let mut first = request();
    first["at"] = json!(1);
    let b2 = first_bid(&server, &second).await;
    let b1 = first_bid(&server, &first).await;
    assert_eq!(b1["crid"], b2["crid"]);
    let (p1, p2) = (b1["price"].as_f64().unwrap(), b2["price"].as_f64().unwrap());
    // Same request, same pCTR: 0.85 x the second-price bid.
    assert_eq!(b1["ext"]["ctrbid"]["pctr"], b2["ext"]["ctrbid"]["pctr"]);
    assert!((p1 - 0.85 * p2).abs() < 1e-9, "first {p1}, second {p2}");
    // No `at`: second price, the default.
    let default = first_bid(&server, &request()).await;
    assert_eq!(default["crid"], b2["crid"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_bids_answer_the_requested_assets() {
    let server = TestServer::start(config()).await;
    let assets = json!({"ver": "1.2", "assets": [
        {"id": 11, "required": 1, "title": {"len": 90}},
        {"id": 12, "required": 1, "img": {"type": 3, "wmin": 600, "hmin": 314}},
        {"id": 13, "required": 1, "data": {"type": 1, "len": 25}},
        {"id": 14, "required": 0, "img": {"type": 1, "w": 80, "h": 80}}
    ]});
    let mut req = request();
    req["imp"][0] = json!({"id": "n1", "native": {"request": assets.to_string(), "ver": "1.2"}});
    let b = first_bid(&server, &req).await;
    let adm: Value = serde_json::from_str(b["adm"].as_str().unwrap()).unwrap();
    let ids: Vec<u64> = adm["assets"].as_array().unwrap().iter().map(|a| a["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![11, 12, 13], "the optional icon the creative lacks is left out: {adm}");
    assert!(adm["assets"][0]["title"]["text"].as_str().unwrap().chars().count() <= 90);
    assert!(adm["assets"][1]["img"]["w"].as_u64().unwrap() >= 600);
    // The link is the bid's signed click URL, which redirects to the landing page.
    let link = adm["link"]["url"].as_str().unwrap();
    assert!(link.starts_with(&format!("http://{}/click?b={}&", server.addr, b["id"].as_str().unwrap())), "{link}");
    // The same request as an object instead of a string is read too.
    req["imp"][0]["native"]["request"] = assets.clone();
    assert_eq!(post(&server, &req).await.status, 200);
    // A required asset no creative has (a call-to-action text of 2 characters): no bid.
    req["imp"][0]["native"]["request"] = json!({"assets": [{"id": 1, "required": 1, "data": {"type": 12, "len": 2}}]});
    assert_eq!(post(&server, &req).await.status, 204);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_taxonomies_supply_chains_and_nbr_bodies() {
    let mut cfg = config();
    cfg.server.nbr_body = true;
    cfg.bidding.require_complete_schain = true;
    let server = TestServer::start(cfg).await;
    let nbr = |r: &common::HttpResponse| {
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["id"], "test-request-id");
        assert!(v.get("seatbid").is_none());
        (v["nbr"].as_u64().unwrap(), v["ext"]["reason"].as_str().unwrap().to_string())
    };
    // The sample's schain (in 2.5's source.ext) is incomplete: no bid, reason supply_chain.
    let mut req = request();
    assert_eq!(nbr(&post(&server, &req).await), (0, "supply_chain".into()));
    req["source"] =
        json!({"schain": {"complete": 1, "ver": "1.0", "nodes": [{"asi": "exchange.example", "sid": "1", "hp": 1}]}});
    assert!(post(&server, &req).await.json().get("seatbid").is_some());

    let mut seat = req.clone();
    seat["wseat"] = json!(["another-dsp"]);
    assert_eq!(nbr(&post(&server, &seat).await).1, "seat");
    seat["wseat"] = json!(["ctrbid"]);
    seat["bseat"] = json!(["ctrbid"]);
    assert_eq!(nbr(&post(&server, &seat).await).1, "seat");

    let mut taxonomy = req.clone();
    taxonomy["cattax"] = json!(2);
    taxonomy["bcat"] = json!(["483"]);
    assert_eq!(nbr(&post(&server, &taxonomy).await).1, "taxonomy");

    // tmax shorter than the network allowance: the deadline has passed on arrival;
    // nbr 15 (insufficient auction time), and nothing was scored.
    let mut late = req.clone();
    late["tmax"] = json!(15);
    assert_eq!(nbr(&post(&server, &late).await), (15, "deadline".into()));
    let metrics = server.admin_get("/metrics").await.text();
    assert!(metrics.contains("ctrbid_no_bids_total{reason=\"deadline\"} 1"), "{metrics}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_deadline_passes_while_queued_is_not_scored() {
    // Batched (not inline), one inference thread, and a batch that waits 5 ms for company (a fixed wait: an
    // adaptive one would not wait for requests that are not coming): with a 1 ms budget
    // every request's deadline passes while it waits, so it is answered 204 and its
    // rows are dropped unscored.
    let mut cfg = config();
    cfg.scoring.inline = ctrbid::config::InlineScoring::Off;
    cfg.bidding.budget_ms = 1;
    cfg.scoring.max_wait_us = 5000;
    cfg.scoring.adaptive_wait = false;
    let server = TestServer::start(cfg).await;
    for _ in 0..5 {
        assert_eq!(post(&server, &request()).await.status, 204);
        // Let the batch window of this job close first: a request sent inside it would
        // join that batch late and could still be scored before its own deadline.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let metrics = server.admin_get("/metrics").await.text();
    assert!(metrics.contains("ctrbid_no_bids_total{reason=\"deadline\"} 5"), "{metrics}");
    assert!(metrics.contains("ctrbid_requests_total{outcome=\"shed\"} 5"), "{metrics}");
    // Nothing reached the model: every batch ran with zero live rows.
    assert!(
        metrics.contains("ctrbid_batch_rows{quantile=\"0.99\"} 1\n") || metrics.contains("ctrbid_batch_rows_count 0"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_echoed_byte_for_byte_whether_strings_or_numbers() {
    let server = TestServer::start(config()).await;
    let mut template = request();
    template["id"] = json!("@ID@");
    template["imp"][0]["id"] = json!("@IMP@");
    let template = serde_json::to_string(&template).unwrap();
    let long = "3333333333333351169.3333333333333333333333";
    // (request id as sent, imp id as sent, what the response must carry for each)
    let cases = [
        (long, "1.0", long, "1.0"),
        ("-0", "18446744073709551616", "-0", "18446744073709551616"),
        ("42", "7", "42", "7"),
        (r#""3333333333333351169.3333333333333333333333""#, r#""imp-1""#, long, "imp-1"),
        (r#""a\"b\\c""#, r#""\u00e9""#, r#"a\"b\\c"#, "\u{e9}"),
    ];
    for (id, imp_id, want_id, want_imp) in cases {
        let body = template.replace(r#""@ID@""#, id).replace(r#""@IMP@""#, imp_id);
        // The offsets where simd-json 0.14.3 misread the long number, and the start.
        for offset in [0, 67, 70] {
            let r = server.post("/openrtb2/bid", format!("{}{body}", " ".repeat(offset)).as_bytes()).await;
            assert_eq!(r.status, 200, "{id} at {offset}: {}", r.text());
            let text = r.text();
            assert!(text.starts_with(&format!(r#"{{"id":"{want_id}","#)), "{id} at {offset}: {text}");
            assert!(text.contains(&format!(r#""impid":"{want_imp}","#)), "{imp_id} at {offset}: {text}");
        }
    }
    server.stop().await;
}

/// `ctrbid_late_answers_total` counts answers that leave after `tmax` less the network
/// allowance, from the request head: a body that arrives after that is answered
/// (204, deadline) and counted late; a request in time is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_after_the_exchange_deadline_are_counted_late() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(config()).await;
    let late_total = |text: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix("ctrbid_late_answers_total ")).unwrap().trim().parse().unwrap()
    };
    assert_eq!(late_total(&server.admin_get("/metrics").await.text()), 0);
    // tmax 50 ms less the 20 ms allowance: 30 ms from the head; the body comes 300 ms later.
    let mut req = request();
    req["tmax"] = json!(50);
    let body = serde_json::to_vec(&req).unwrap();
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert_eq!(common::HttpResponse::parse(&answer).status, 204);
    assert_eq!(late_total(&server.admin_get("/metrics").await.text()), 1);
    // In time (tmax 5 s; tests give the bidder a 2 s budget): a bid, not late.
    req["tmax"] = json!(5000);
    assert_eq!(post(&server, &req).await.status, 200);
    let metrics = server.admin_get("/metrics").await.text();
    assert_eq!(late_total(&metrics), 1, "{metrics}");
    assert!(metrics.contains("ctrbid_no_bids_total{reason=\"deadline\"} 1"), "{metrics}");
    server.stop().await;
}

/// COPPA, GDPR without a consent string, `lmt` and `dnt` leave the user's id and segments
/// out of the features, through the whole bid path: each such request gets the bid, to
/// the pCTR (`server.debug_ext`), that the same request with an empty `user` gets, while
/// the user's data does change it when allowed (GDPR with consent, or no rule at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_rules_leave_the_user_out_of_the_prediction() {
    let mut cfg = at_fixed_time(config());
    cfg.server.debug_ext = true;
    let server = TestServer::start(cfg).await;
    let mut personal = request();
    personal["user"] = json!({"id": "u-8041", "data": [{"segment": [{"id": "seg-IAB20"}, {"id": "seg-IAB7"}]}]});
    personal["device"] = json!({"devicetype": 4, "os": "iOS", "geo": {"country": "USA"}});
    let bid_of = |b: Value| (b["crid"].clone(), b["price"].clone(), b["ext"]["ctrbid"]["pctr"].clone());
    let with_user = bid_of(first_bid(&server, &personal).await);
    let mut anonymous = personal.clone();
    anonymous["user"] = json!({});
    let anonymous = bid_of(first_bid(&server, &anonymous).await);
    assert_ne!(with_user, anonymous, "the user's id and segments do not change the bid: nothing to test");

    let with = |path: &str, value: Value| {
        let mut r = personal.clone();
        let (parent, key) = path.rsplit_once('/').unwrap();
        r.pointer_mut(parent).unwrap()[key] = value;
        r
    };
    for (rule, req) in [
        ("COPPA", with("/regs", json!({"coppa": 1}))),
        ("GDPR, no consent", with("/regs", json!({"gdpr": 1}))),
        ("GDPR in 2.5's ext", with("/regs", json!({"ext": {"gdpr": "1"}}))),
        ("lmt", with("/device/lmt", json!(1))),
        ("dnt", with("/device/dnt", json!(1))),
    ] {
        assert_eq!(bid_of(first_bid(&server, &req).await), anonymous, "{rule}");
    }
    let mut consented = with("/regs", json!({"gdpr": 1}));
    consented["user"]["consent"] = json!("CPXxRfAPXxRfA");
    for (rule, req) in [("GDPR with consent", consented), ("no rule", with("/regs", json!({"coppa": 0, "gdpr": 0})))] {
        assert_eq!(bid_of(first_bid(&server, &req).await), with_user, "{rule}");
    }
    server.stop().await;
}
