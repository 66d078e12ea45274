//! The aggregates end to end: training/serving parity, over real HTTP.
//!
//! A harness plays a simulator log to the bidder (simulation clock, a model built for
//! a spec with an aggregate field of every family, `tests/fixtures/models/aggregates.onnx`)
//! as `ctrbid exchange` would: each auction at its time, a win notice for each bid right
//! after it, and the clicks and conversions it draws at the delays of
//! [`ctrbid::aggregates::replay`], in the order the replay defines. It writes the
//! impressions it bought as a simulator log. `ctrbid features --sim` then builds that
//! log's rows by replaying it through the aggregates, and every row must equal, bit for
//! bit, the row the bidder scored and logged for the same bid. Halfway, the bidder is
//! restarted: it rebuilds its aggregates from its event log and goes on as if it had
//! never stopped.

mod common;

use common::{config, repo, TestServer};
use ctrbid::aggregates::replay::{delay_s, Delay, Visibility};
use ctrbid::clock::ClockMode;
use ctrbid::config::Config;
use ctrbid::events::Event;
use ctrbid::simulate::{simulate, SimConfig};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

const KEY: &str = "test-notice-key-0123456789abcdef0123";
/// Impressions the simulator logs (auctions the harness plays).
const IMPRESSIONS: u64 = 900;
/// Entities the bidder's and the replay's aggregates hold: few, so that eviction
/// happens and must happen the same way on both sides.
const ENTRIES: usize = 256;

fn cfg(sim: &Path, events: &Path) -> Config {
    let mut c = config();
    c.server.clock = ClockMode::Simulation;
    c.notices.hmac_key = Some(KEY.into());
    c.model.spec = repo().join("tests/fixtures/models/aggregates_spec.json");
    c.model.path = repo().join("tests/fixtures/models/aggregates.onnx");
    c.model.catalog = sim.join("catalog.json");
    c.events.dir = Some(events.to_path_buf());
    c.events.bid_sample = Some(1.0);
    c.aggregates.max_entries = ENTRIES;
    c.bidding.explore_share = 0.0;
    c.pacing.enabled = false;
    c
}

/// One auction of the simulator's log: its request line, time and request text.
struct Auction {
    line: u64,
    ts: i64,
    body: String,
}

/// The auctions of the log in `sim` that had an eligible creative (the others carry no
/// time in the log), in order.
fn auctions(sim: &Path) -> Vec<Auction> {
    let requests: Vec<String> =
        std::fs::read_to_string(sim.join("requests.jsonl")).unwrap().lines().map(str::to_string).collect();
    let mut times = BTreeMap::new();
    for line in std::fs::read_to_string(sim.join("impressions.jsonl")).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        times.entry(v["line"].as_u64().unwrap()).or_insert(v["ts"].as_i64().unwrap());
    }
    times.into_iter().map(|(line, ts)| Auction { line, ts, body: requests[line as usize].clone() }).collect()
}

/// A click or conversion waiting for its time, as the replay orders them.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    due_s: i64,
    order: u64,
    /// A click URL's path and query, or the order of the click whose id a conversion needs.
    what: What,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    Click { path: String },
    Conv { click_order: u64 },
}

#[derive(Default)]
struct Harness {
    pending: BinaryHeap<Reverse<Pending>>,
    scheduled: u64,
    /// Click ids the landing pages received, by the click's order.
    click_ids: HashMap<u64, String>,
    impressions: String,
    /// Aggregate events (wins, clicks, conversions) sent before each bid, by (request id, imp id).
    seen_before: HashMap<(String, String), u64>,
    bids: usize,
    clicks: usize,
    conversions: usize,
}

/// Whether the user clicks (one in four) and then converts (one click in three): a
/// function of the ids, so the test is the same run after run.
fn outcome(request_id: &str, imp_id: &str) -> (bool, bool) {
    let h = ctrbid::aggregates::id_hash(&format!("{request_id}/{imp_id}"));
    let click = h.is_multiple_of(4);
    (click, click && (h >> 8).is_multiple_of(3))
}

/// The path and query of an absolute URL of `server`.
fn path_of(server: &TestServer, url: &str) -> String {
    url.strip_prefix(&format!("http://{}", server.addr)).unwrap_or_else(|| panic!("{url}")).to_string()
}

impl Harness {
    /// Sends what is due by `t_s`, in the replay's order.
    async fn advance_to(&mut self, server: &TestServer, t_s: i64) {
        while self.pending.peek().is_some_and(|Reverse(p)| p.due_s <= t_s) {
            let Reverse(p) = self.pending.pop().unwrap();
            match p.what {
                What::Click { path } => {
                    let r = server.get_at(&path, p.due_s * 1000).await;
                    assert_eq!(r.status, 302, "click: {}", r.text());
                    let id = r.header("location").unwrap().split_once("ctrbid_click=").unwrap().1.to_string();
                    self.click_ids.insert(p.order, id);
                    self.clicks += 1;
                }
                What::Conv { click_order } => {
                    let id = &self.click_ids[&click_order];
                    let r = server.get_at(&format!("/conv?click={id}"), p.due_s * 1000).await;
                    assert_eq!(r.status, 200, "conversion: {}", r.text());
                    self.conversions += 1;
                }
            }
        }
    }

    /// One auction: what is due first, the request, a win for every bid, its outcomes
    /// scheduled, and the impressions logged.
    async fn play(&mut self, server: &TestServer, a: &Auction) {
        self.advance_to(server, a.ts).await;
        let sent = (self.bids + self.clicks + self.conversions) as u64;
        let ts_ms = (a.ts * 1000).to_string();
        let r = server.post_with("/openrtb2/bid", &[(ctrbid::clock::TIME_HEADER, &ts_ms)], a.body.as_bytes()).await;
        if r.status == 204 {
            return;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        let response = r.json();
        let request_id = response["id"].as_str().unwrap().to_string();
        for bid in response["seatbid"][0]["bid"].as_array().unwrap() {
            let (imp_id, crid) = (bid["impid"].as_str().unwrap(), bid["crid"].as_str().unwrap());
            let price = bid["price"].as_f64().unwrap();
            let win = path_of(server, bid["nurl"].as_str().unwrap())
                .replace("${AUCTION_PRICE}", &format!("{price:.6}"))
                .replace("${AUCTION_CURRENCY}", "USD")
                .replace("${AUCTION_ID}", &request_id);
            let w = server.get_at(&win, a.ts * 1000).await;
            assert_eq!(w.status, 200, "win: {}", w.text());
            self.bids += 1;
            self.seen_before.insert((request_id.clone(), imp_id.to_string()), sent);
            let (click, conv) = outcome(&request_id, imp_id);
            let _ = writeln!(
                self.impressions,
                r#"{{"ts":{},"line":{},"request_id":"{request_id}","imp_id":"{imp_id}","crid":"{crid}","click":{},"conv":{},"pctr":0.0,"pcvr":0.0}}"#,
                a.ts,
                a.line,
                u8::from(click),
                u8::from(conv)
            );
            if click {
                let v = Visibility::default();
                let click_s = a.ts + delay_s(&request_id, imp_id, Delay::Click, v.click_delay_s);
                let adm = bid["adm"].as_str().unwrap();
                let base = format!("http://{}/click?", server.addr);
                let at = adm.find(&base).unwrap_or_else(|| panic!("no click URL in {adm}"));
                let end = adm[at..].find(['"', '<', ']', '\\']).map_or(adm.len(), |e| at + e);
                self.scheduled += 1;
                let click_order = self.scheduled;
                let path = path_of(server, &adm[at..end]);
                self.pending.push(Reverse(Pending { due_s: click_s, order: click_order, what: What::Click { path } }));
                if conv {
                    self.scheduled += 1;
                    let due_s = click_s + delay_s(&request_id, imp_id, Delay::Conversion, v.conv_delay_s);
                    self.pending.push(Reverse(Pending {
                        due_s,
                        order: self.scheduled,
                        what: What::Conv { click_order },
                    }));
                }
            }
        }
    }
}

/// A logged row: categorical, numeric, and the aggregate events it saw.
type Row = (Vec<i64>, Vec<f32>, u64);

/// The rows the bidder logged, by (request id, imp id): categorical, numeric, and the
/// aggregate events they saw.
fn logged_rows(events: &Path) -> HashMap<(String, String), Row> {
    let mut rows = HashMap::new();
    for record in ctrbid::eventlog::Reader::open(events).unwrap() {
        let record = record.unwrap();
        if let Ok(Event::Bid(b)) = Event::decode(&record.data) {
            let key = (b.request_id.to_string(), b.imp_id.to_string());
            rows.insert(key, (b.cat.to_vec(), b.num.to_vec(), b.agg_applied));
        }
    }
    rows
}

fn columns_count(spec: &ctrbid::features::FeatureSpec) -> usize {
    spec.num.iter().filter(|f| f.source.is_aggregate()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_rows_are_the_rows_features_replays_bit_for_bit_across_a_restart() {
    let sim = tempfile::tempdir().unwrap();
    // Few users and publishers, so that aggregates have something to say.
    let sc = SimConfig { seed: 11, impressions: IMPRESSIONS, users: 60, publishers: 12, ..SimConfig::default() };
    simulate(&sc, sim.path()).unwrap();
    let events = tempfile::tempdir().unwrap();
    let auctions = auctions(sim.path());
    let half = auctions.len() / 2;

    let mut h = Harness::default();
    let server = TestServer::start(cfg(sim.path(), events.path())).await;
    for a in &auctions[..half] {
        h.play(&server, a).await;
    }
    let before = server.state.bidder.aggregates().stats();
    server.stop().await;
    // The restart rebuilds the store from the log's stamped notices.
    let server = TestServer::start(cfg(sim.path(), events.path())).await;
    let after = server.state.bidder.aggregates().stats();
    assert_eq!((after.applied, after.entries, after.evicted), (before.applied, before.entries, before.evicted));
    for a in &auctions[half..] {
        h.play(&server, a).await;
    }
    let stats = server.state.bidder.aggregates().stats();
    server.stop().await;
    assert!(
        h.bids > 300 && h.clicks > 40 && h.conversions > 5,
        "{} bids, {} clicks, {} conversions",
        h.bids,
        h.clicks,
        h.conversions
    );
    assert!(stats.evicted > 0, "the store was full and evicted: {stats:?}");

    // The harness's purchases as a simulator log, and `ctrbid features --sim` on it.
    let bought = tempfile::tempdir().unwrap();
    for file in ["requests.jsonl", "catalog.json"] {
        std::fs::copy(sim.path().join(file), bought.path().join(file)).unwrap();
    }
    std::fs::write(bought.path().join("impressions.jsonl"), &h.impressions).unwrap();
    let out = tempfile::tempdir().unwrap();
    let spec = repo().join("tests/fixtures/models/aggregates_spec.json");
    let how = ctrbid::cli::features::SimReplay {
        visibility: Visibility::default(),
        max_entries: ENTRIES,
        shard: ctrbid::cli::features::Shard::WHOLE,
    };
    let n = ctrbid::cli::features::extract_with(bought.path(), &spec, out.path(), &how).unwrap();
    assert_eq!(n, h.bids);
    let meta: Value = serde_json::from_slice(&std::fs::read(out.path().join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["aggregates"]["max_entries"], ENTRIES, "the replay's settings are recorded with the rows");
    let (cat, cat_shape) = ctrbid::npy::read::<i64>(&out.path().join("cat.npy")).unwrap();
    let (num, num_shape) = ctrbid::npy::read::<f32>(&out.path().join("num.npy")).unwrap();
    let (f, d) = (cat_shape[1], num_shape[1]);

    let logged = logged_rows(events.path());
    let spec = ctrbid::features::FeatureSpec::load(&spec).unwrap();
    assert_eq!(columns_count(&spec), 7, "an aggregate field of every family");
    let columns: Vec<usize> = (0..d).filter(|&j| spec.num[j].source.is_aggregate()).collect();
    let mut moved = 0;
    for (i, line) in h.impressions.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let key = (v["request_id"].as_str().unwrap().to_string(), v["imp_id"].as_str().unwrap().to_string());
        let (lcat, lnum, applied) = logged.get(&key).unwrap_or_else(|| panic!("no bid record for {key:?}"));
        assert_eq!(*applied, h.seen_before[&key], "the events {key:?} saw");
        assert_eq!(&cat[i * f..(i + 1) * f], &lcat[..], "categorical row of {key:?}");
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&num[i * d..(i + 1) * d]), bits(lnum), "numeric row of {key:?} (fields {columns:?} aggregate)");
        moved += usize::from(i > 0 && columns.iter().any(|&j| num[i * d + j] != num[j]));
    }
    eprintln!(
        "{} bids, {} clicks, {} conversions; store {stats:?}; {moved} rows moved",
        h.bids, h.clicks, h.conversions
    );
    assert!(moved > h.bids / 2, "the aggregate fields moved from row to row in {moved} of {} rows", h.bids);
}
