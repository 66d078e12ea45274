//! The event log end to end, over real HTTP: bids land with the rows the model scored,
//! each accepted notice once; billing records survive `kill -9` of the server; a writer
//! that stops answering costs bid records (counted), never a bid, and holds notices
//! until their records are durable.

mod common;

use common::{config, repo, TestServer};
use ctrbid::config::Config;
use ctrbid::eventlog::Reader;
use ctrbid::events::{Event, NoticeKind};
use std::collections::HashMap;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "test-notice-key-0123456789abcdef0123";

fn cfg(events: &Path) -> Config {
    let mut c = config();
    c.notices.hmac_key = Some(KEY.into());
    c.server.debug_ext = true;
    c.events.dir = Some(events.to_path_buf());
    c.events.bid_sample = Some(1.0);
    c
}

fn prebid() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap()
}

/// What an exchange does with a notice URL: fill in the macros, keep path and query.
fn filled(url: &str, price: f64) -> String {
    let path_at = url.find("://").map(|i| i + 3).and_then(|i| url[i..].find('/').map(|j| i + j)).unwrap();
    url[path_at..]
        .replace("${AUCTION_PRICE}", &format!("{price}"))
        .replace("${AUCTION_CURRENCY}", "USD")
        .replace("${AUCTION_ID}", "auction-1")
        .replace("${AUCTION_LOSS}", "102")
        .replace("${AUCTION_MIN_TO_WIN}", "1.5")
}

/// Every record of the log in `dir`, decoded.
fn read_log(dir: &Path) -> Vec<Event<'static>> {
    let mut out = Vec::new();
    for record in Reader::open(dir).expect("the log reads") {
        // Leaked: the records borrow their text, and a test may keep them to the end.
        let bytes: &'static [u8] = Box::leak(record.expect("no damage").data.into_boxed_slice());
        out.push(Event::decode(bytes).expect("a record of ours"));
    }
    out
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("{line_start} not in metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bids_land_with_the_rows_that_were_scored_and_each_notice_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(cfg(dir.path())).await;
    let sim = tempfile::tempdir().unwrap();
    ctrbid::simulate::simulate(
        &ctrbid::simulate::SimConfig { seed: 7, impressions: 300, ..Default::default() },
        sim.path(),
    )
    .unwrap();
    let mut bids = Vec::new();
    for line in common::read_lines(&sim.path().join("requests.jsonl")) {
        let r = server.post("/openrtb2/bid", line.as_bytes()).await;
        if r.status == 200 {
            bids.extend(r.json()["seatbid"][0]["bid"].as_array().unwrap().iter().cloned());
        }
    }
    assert!(bids.len() > 100, "{} bids", bids.len());
    // The first bid wins, is billed (three times: exchanges retry), clicked and converts.
    let b = &bids[0];
    let price = (b["price"].as_f64().unwrap() * 0.8 * 1e4).round() / 1e4;
    assert_eq!(server.get(&filled(b["nurl"].as_str().unwrap(), price)).await.status, 200);
    for _ in 0..3 {
        assert_eq!(server.get(&filled(b["burl"].as_str().unwrap(), price)).await.status, 200);
    }
    assert_eq!(server.get(&filled(bids[1]["lurl"].as_str().unwrap(), 0.0)).await.status, 200);
    let adm = b["adm"].as_str().unwrap();
    let click_at = adm.find("/click?").unwrap();
    let click = &adm[click_at..click_at + adm[click_at..].find(['"', '<', ']']).unwrap()];
    let r = server.get(click).await;
    assert_eq!(r.status, 302);
    let id = r.header("location").unwrap().split_once("ctrbid_click=").unwrap().1.to_string();
    assert_eq!(server.get(&format!("/conv?click={id}&v=40")).await.status, 200);
    // Refused notices are not logged.
    assert_eq!(server.get(&filled(b["nurl"].as_str().unwrap(), price)).await.status, 409);
    assert_eq!(server.get(&filled(b["burl"].as_str().unwrap(), price).replacen("&c=", "&c=X", 1)).await.status, 403);
    server.stop().await;

    let events = read_log(dir.path());
    let bid_records: HashMap<u64, _> = events
        .iter()
        .filter_map(|e| match e {
            Event::Bid(r) => Some((r.bid, r)),
            Event::Notice(_) => None,
            Event::Shadow(s) => panic!("no shadow serves here: {s:?}"),
            Event::Counted(c) => panic!("no fleet here: {c:?}"),
        })
        .collect();
    assert_eq!(bid_records.len(), bids.len(), "every bid once (sampling 100 %)");
    let model = open_model();
    for b in &bids {
        let id = u64::from_str_radix(b["id"].as_str().unwrap(), 16).unwrap();
        let r = bid_records[&id];
        assert_eq!((r.campaign, r.creative), (b["cid"].as_str().unwrap(), b["crid"].as_str().unwrap()));
        // serde_json's default float parser may read the answer's price one ulp off.
        assert!((r.price - b["price"].as_f64().unwrap()).abs() <= 1e-12 * r.price, "{} vs {}", r.price, b["price"]);
        assert_eq!(r.pctr, b["ext"]["ctrbid"]["pctr"].as_f64().unwrap() as f32, "the prediction as served");
        // The logged row is the one that was scored: the model gives the logged pCTR for it.
        let (mut pctr, mut pcvr) = (Vec::new(), Vec::new());
        let mut model = model.lock().unwrap();
        model.score_heads(&r.cat, &r.num, 1, &mut pctr, &mut pcvr).unwrap();
        assert!((pctr[0] - r.pctr).abs() <= 1e-6, "bid {id:x}: rescored {} vs logged {}", pctr[0], r.pctr);
        assert!((pcvr[0] - r.pcvr).abs() <= 1e-6 || r.pcvr.is_nan());
    }
    let first = u64::from_str_radix(bids[0]["id"].as_str().unwrap(), 16).unwrap();
    let notices: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Notice(n) => Some(n),
            Event::Bid(_) => None,
            Event::Shadow(s) => panic!("no shadow serves here: {s:?}"),
            Event::Counted(c) => panic!("no fleet here: {c:?}"),
        })
        .collect();
    let kinds: Vec<(NoticeKind, u64)> = notices.iter().map(|n| (n.kind, n.bid)).collect();
    let second = u64::from_str_radix(bids[1]["id"].as_str().unwrap(), 16).unwrap();
    assert_eq!(
        kinds,
        [
            (NoticeKind::Win, first),
            (NoticeKind::Bill, first),
            (NoticeKind::Loss, second),
            (NoticeKind::Click, first),
            (NoticeKind::Conv, first)
        ],
        "each accepted notice once, in order"
    );
    let bill = notices[1];
    assert_eq!((bill.price, bill.usd, bill.auction_id), (price, price / 1000.0, "auction-1"));
    assert_eq!((notices[2].loss_reason, notices[2].min_to_win), (102, 1.5));
    let (click, conv) = (notices[3], notices[4]);
    assert_eq!((conv.click_ms, conv.usd, conv.campaign), (click.ts_ms, 40.0, click.campaign));
}

/// The served model, opened as the server opens it.
fn open_model() -> std::sync::Mutex<ctrbid::scoring::Model> {
    let c = config();
    let spec = ctrbid::features::FeatureSpec::load(&c.model.spec).unwrap();
    let library = ctrbid::scoring::runtime::library_path(c.model.onnxruntime_library.as_deref());
    let source = ctrbid::scoring::model::ModelSource {
        path: &c.model.path,
        spec: &spec,
        spec_path: &c.model.spec,
        library: &library,
        device: ctrbid::scoring::Device::Cpu,
    };
    std::sync::Mutex::new(ctrbid::scoring::Model::open(&source).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_writer_drops_bid_records_never_bids_and_holds_notices_until_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.events.queue_capacity = 8;
    let server = TestServer::start(c).await;
    let stall = server.state.bidder.events().unwrap().log().stall_writer();
    let mut last = None;
    for _ in 0..50 {
        let r = tokio::time::timeout(Duration::from_secs(5), server.post("/openrtb2/bid", &prebid()))
            .await
            .expect("bidding does not wait for the log");
        assert_eq!(r.status, 200, "{}", r.text());
        last = Some(r.json()["seatbid"][0]["bid"][0].clone());
    }
    let m = server.admin_get("/metrics").await.text();
    // The queue holds 8 records; the other 42 were dropped at once.
    assert_eq!(metric(&m, "ctrbid_events_bids_total{outcome=\"written\"}"), 8.0);
    assert_eq!(metric(&m, "ctrbid_events_bids_total{outcome=\"dropped\"}"), 42.0);

    // A billing notice waits for its record to be durable.
    let b = last.unwrap();
    let bill = filled(b["burl"].as_str().unwrap(), 0.5);
    let addr = server.addr;
    let answer = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {bill} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        common::HttpResponse::parse(&buf).status
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!answer.is_finished(), "billing answered before its record was on disk");
    drop(stall);
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), answer).await.unwrap().unwrap(), 200);
    server.stop().await;
    let events = read_log(dir.path());
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Bid(_))).count(), 8);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Notice(n) if n.kind == NoticeKind::Bill)).count(), 1);
}

/// The bidder as its own process (so it can be killed), with the event log in `events`;
/// its public and admin addresses.
fn spawn_server(events: &Path, config_file: &Path) -> (std::process::Child, String, String) {
    std::fs::write(
        config_file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[bidding]\nbudget_ms = 2000\n\
             [notices]\nhmac_key = \"{KEY}\"\n[events]\ndir = \"{}\"\nbid_sample = 1.0\n",
            events.display()
        ),
    )
    .unwrap();
    common::spawn_serve(config_file, Stdio::null())
}

/// One request on a new connection; `None` when the server is gone.
async fn try_request(addr: &str, head: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut raw = head.as_bytes().to_vec();
    raw.extend_from_slice(body);
    s.write_all(&raw).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(&buf[..end]).ok()?.split(' ').nth(1)?.parse().ok()?;
    Some((status, buf[end + 4..].to_vec()))
}

/// Bids and bills in a loop until the server is gone; returns the bids whose billing
/// notice was answered 200.
async fn bid_and_bill(addr: String, acked: std::sync::Arc<std::sync::Mutex<Vec<u64>>>) {
    let body = prebid();
    let head = format!(
        "POST /openrtb2/bid HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    loop {
        let Some((200, answer)) = try_request(&addr, &head, &body).await else { return };
        let json: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        let bid = &json["seatbid"][0]["bid"][0];
        let bill = filled(bid["burl"].as_str().unwrap(), 0.25);
        let get = format!("GET {bill} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        match try_request(&addr, &get, b"").await {
            Some((200, _)) => acked.lock().unwrap().push(u64::from_str_radix(bid["id"].as_str().unwrap(), 16).unwrap()),
            Some((status, _)) => panic!("billing answered {status}"),
            None => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_billing_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    let config_file = dir.path().join("ctrbid.toml");
    let mut acked_total = Vec::new();
    // Killed twice during heavy writing; each restart recovers the log and carries on.
    for round in 0..2 {
        let (mut child, addr, _) = spawn_server(&events, &config_file);
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..4).map(|_| tokio::spawn(bid_and_bill(addr.clone(), acked.clone()))).collect();
        let wanted = 200 * (round + 1);
        while acked.lock().unwrap().len() < wanted {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        acked_total.extend(acked.lock().unwrap().iter().copied());
    }
    let mut billed: HashMap<u64, usize> = HashMap::new();
    let mut bids = 0;
    for e in read_log(&events) {
        match e {
            Event::Notice(n) if n.kind == NoticeKind::Bill => *billed.entry(n.bid).or_default() += 1,
            Event::Bid(_) => bids += 1,
            Event::Notice(_) => {}
            Event::Shadow(s) => panic!("no shadow serves here: {s:?}"),
            Event::Counted(c) => panic!("no fleet here: {c:?}"),
        }
    }
    for id in &acked_total {
        assert_eq!(billed.get(id), Some(&1), "acknowledged billing of bid {id:x} is in the log once");
    }
    assert!(bids >= acked_total.len() * 9 / 10, "most bid records too: {bids} for {} billed", acked_total.len());
}

/// What was applied before a `kill -9` stays applied after the restart, from the event
/// log: the billing notice replayed is a duplicate (200, nothing charged again), a loss
/// for the won bid contradicts its win, and the campaign's spend today is what it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_and_spend_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    let config_file = dir.path().join("ctrbid.toml");
    let get = |addr: &str, path: &str| {
        let (addr, head) = (addr.to_string(), format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"));
        async move { try_request(&addr, &head, b"").await.expect("the server answers") }
    };
    let (mut child, addr, _) = spawn_server(&events, &config_file);
    let body = prebid();
    let head = format!(
        "POST /openrtb2/bid HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let (status, answer) = try_request(&addr, &head, &body).await.unwrap();
    assert_eq!(status, 200);
    let bid = serde_json::from_slice::<serde_json::Value>(&answer).unwrap()["seatbid"][0]["bid"][0].clone();
    let price = bid["price"].as_f64().unwrap();
    let (campaign, bill, win, loss) = (
        bid["cid"].as_str().unwrap().to_string(),
        filled(bid["burl"].as_str().unwrap(), price),
        filled(bid["nurl"].as_str().unwrap(), price),
        filled(bid["lurl"].as_str().unwrap(), price),
    );
    assert_eq!(get(&addr, &win).await, (200, b"ok\n".to_vec()));
    assert_eq!(get(&addr, &bill).await, (200, b"ok\n".to_vec()));
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, addr, admin) = spawn_server(&events, &config_file);
    assert_eq!(get(&addr, &bill).await, (200, b"already applied\n".to_vec()), "billed once across the restart");
    assert_eq!(get(&addr, &win).await.0, 409, "the win was received before the restart");
    assert_eq!(get(&addr, &loss).await.0, 409, "a loss contradicts the win from before the restart");
    let (status, text) = get(&admin, "/admin/status").await;
    assert_eq!(status, 200);
    let status: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let listed = &status["spend"]["campaigns"][0];
    assert_eq!(listed["id"].as_str(), Some(campaign.as_str()), "{status}");
    let charged = listed["spend_today_usd"].as_f64().unwrap();
    assert!((charged - price / 1000.0).abs() <= 1e-6, "spend {charged} after the restart, billed {}", price / 1000.0);
    assert_eq!(status["spend"]["campaigns_with_spend"], 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let bills =
        read_log(&events).into_iter().filter(|e| matches!(e, Event::Notice(n) if n.kind == NoticeKind::Bill)).count();
    assert_eq!(bills, 1, "the replayed billing is not logged again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exploration_bids_carry_their_propensity() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.bidding.explore_share = 0.3;
    let server = TestServer::start(c).await;
    let sim = tempfile::tempdir().unwrap();
    ctrbid::simulate::simulate(
        &ctrbid::simulate::SimConfig { seed: 11, impressions: 600, ..Default::default() },
        sim.path(),
    )
    .unwrap();
    for line in common::read_lines(&sim.path().join("requests.jsonl")) {
        server.post("/openrtb2/bid", line.as_bytes()).await;
    }
    server.stop().await;
    let propensities: Vec<f32> = read_log(dir.path())
        .into_iter()
        .filter_map(|e| match e {
            Event::Bid(b) => Some(b.propensity),
            Event::Notice(_) => None,
            Event::Shadow(s) => panic!("no shadow serves here: {s:?}"),
            Event::Counted(c) => panic!("no fleet here: {c:?}"),
        })
        .collect();
    assert!(propensities.len() > 300, "{} bids", propensities.len());
    // The greedy choice has propensity 1 - 0.3 + 0.3 / n, an explored other candidate
    // 0.3 / n: about 0.3 x (n - 1) / n of the bids, n being dozens here. Bid ids (the
    // draws) start from the clock, so the bounds are three standard deviations.
    let n = propensities.len() as f64;
    let explored = propensities.iter().filter(|&&p| p < 0.5).count() as f64 / n;
    let sd = (0.3f64 * 0.7 / n).sqrt();
    assert!((explored - 0.29).abs() < 3.0 * sd + 0.01, "explored share {explored} of {n} bids");
    assert!(propensities.iter().all(|&p| p > 0.0 && p <= 1.0), "{propensities:?}");
    assert!(propensities.iter().any(|&p| p > 0.7 && p < 1.0), "greedy bids keep 1 - 0.3 + 0.3 / n");
}
