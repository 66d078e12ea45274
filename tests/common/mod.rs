//! Shared end-to-end test support: a real server on `127.0.0.1:0` with the default
//! model and catalog, and a minimal HTTP/1.1 client over a plain `TcpStream` (so tests
//! can also send bytes no well-behaved client would).

#![allow(dead_code)]

pub mod redis;

use ctrbid::config::Config;
use ctrbid::server::Server;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped config with repository-absolute paths and a free port.
pub fn config() -> Config {
    let mut c = Config::load(&repo().join("deploy/ctrbid.toml")).expect("deploy/ctrbid.toml loads");
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    c.server.workers = 2;
    c.server.drain_delay_ms = 0;
    // Tests assert on bids, and the box runs several test binaries at once: a 10 ms
    // budget would turn CPU contention into 204s. Tests of the deadline set their own.
    c.bidding.budget_ms = 2000;
    // Tests that want the event log give it a directory of their own.
    c.events.dir = None;
    c.model.path = repo().join(&c.model.path);
    c.model.spec = repo().join(&c.model.spec);
    c.model.catalog = repo().join(&c.model.catalog);
    if c.model.onnxruntime_library.is_none() && std::env::var_os("ORT_DYLIB_PATH").is_none() {
        c.model.onnxruntime_library = Some(repo().join(".ort/libonnxruntime.so"));
    }
    c
}

/// The auction time of [`at_fixed_time`] servers: Tuesday 2026-06-02 14:30:00 UTC, in
/// Unix milliseconds.
pub const FIXED_TIME_MS: i64 = 1_780_410_600_000;

/// `cfg` with the simulation clock: a [`TestServer`] started with it stamps every request
/// it sends with [`FIXED_TIME_MS`], so rows (time-of-day features), prices and expiry do
/// not depend on when the test runs, and requests or servers compared with each other see
/// the same auction time however slowly the box answers.
pub fn at_fixed_time(mut cfg: Config) -> Config {
    cfg.server.clock = ctrbid::clock::ClockMode::Simulation;
    cfg
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// What the server shares with its connections: the bidder, its metrics.
    pub state: std::sync::Arc<ctrbid::server::AppState>,
    /// The admin port: health, readiness, metrics, control.
    pub admin: SocketAddr,
    /// The `x-ctrbid-time` header line every request carries: set with the simulation
    /// clock ([`at_fixed_time`]), empty otherwise.
    time_header: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start(cfg: Config) -> TestServer {
        let server = Server::bind(&cfg)
            .await
            .expect("server starts with the default model (run `make models` if it is missing)");
        let addr = server.local_addr();
        let admin = server.admin_addr();
        let state = std::sync::Arc::clone(server.state());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        let time_header = match cfg.server.clock {
            ctrbid::clock::ClockMode::Simulation => format!("{}: {FIXED_TIME_MS}\r\n", ctrbid::clock::TIME_HEADER),
            ctrbid::clock::ClockMode::System => String::new(),
        };
        TestServer { addr, admin, state, time_header, stop: Some(stop), task: Some(task) }
    }

    pub async fn post(&self, path: &str, body: &[u8]) -> HttpResponse {
        self.post_with(path, &[], body).await
    }

    /// POSTs with extra header lines (`("content-encoding", "gzip")`, ...).
    pub async fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{}",
            self.addr,
            body.len(),
            // A time the caller states itself goes instead of the fixed one.
            if headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(ctrbid::clock::TIME_HEADER)) {
                ""
            } else {
                &self.time_header
            }
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        self.raw(&raw).await
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        let head =
            format!("GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n{}\r\n", self.addr, self.time_header);
        self.raw(head.as_bytes()).await
    }

    /// GET stamped with its own event time (`x-ctrbid-time`, Unix ms) instead of the fixed one.
    pub async fn get_at(&self, path: &str, ts_ms: i64) -> HttpResponse {
        let head = format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n{}: {ts_ms}\r\n\r\n",
            self.addr,
            ctrbid::clock::TIME_HEADER
        );
        self.raw(head.as_bytes()).await
    }

    /// GET on the admin port.
    pub async fn admin_get(&self, path: &str) -> HttpResponse {
        let head = format!("GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n", self.admin);
        raw_to(self.admin, head.as_bytes()).await
    }

    /// POST on the admin port with an optional bearer token.
    pub async fn admin_post(&self, path: &str, token: Option<&str>) -> HttpResponse {
        let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n",
            self.admin
        );
        raw_to(self.admin, head.as_bytes()).await
    }

    /// Sends raw bytes on a new connection and reads one response until close.
    pub async fn raw(&self, bytes: &[u8]) -> HttpResponse {
        raw_to(self.addr, bytes).await
    }

    /// Signals shutdown without waiting for the drain to end.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

/// Polls `check` every 10 ms until it holds; panics naming `what` if it still does not
/// after `within`. For conditions that come true at some point after an action (a
/// listener closed, a metric counted): a generous `within` keeps a slow, shared box
/// from failing the test, where a fixed sleep would race it.
pub async fn wait_until<F, Fut>(what: &str, within: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Sends raw bytes to `addr` on a new connection and reads one response until close.
pub async fn raw_to(addr: SocketAddr, bytes: &[u8]) -> HttpResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    HttpResponse::parse(&buf)
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn parse(buf: &[u8]) -> HttpResponse {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("response has a head");
        let head = std::str::from_utf8(&buf[..end]).expect("ascii head");
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = buf[end + 4..].to_vec();
        if let Some(len) = headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse::<usize>().unwrap())
        {
            body.truncate(len);
        }
        HttpResponse { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// Checks a 200 answer against its request: ids echo, one bid per imp at most, every
/// impid names an imp of the request, every price reaches that imp's floor. Returns the
/// bids.
pub fn check_bid_response(request: &serde_json::Value, response: &serde_json::Value) -> Vec<serde_json::Value> {
    assert_eq!(response["id"].as_str(), lenient_str(&request["id"]).as_deref(), "response id echoes request id");
    assert_eq!(response["cur"], "USD");
    let mut bids = Vec::new();
    let mut imps_bid = std::collections::HashSet::new();
    for seat in response["seatbid"].as_array().expect("seatbid is an array") {
        for bid in seat["bid"].as_array().expect("bid is an array") {
            let impid = bid["impid"].as_str().expect("impid is a string");
            // One bid per imp (README: "respond  one bid per imp"), across seats too.
            assert!(imps_bid.insert(impid.to_string()), "a second bid for imp {impid}: {response}");
            let imp = request["imp"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| lenient_str(&i["id"]).as_deref() == Some(impid))
                .unwrap_or_else(|| panic!("impid {impid} names no imp of the request"));
            // A deal bid answers to the deal's floor (deal over imp), an open bid to the imp's.
            let imp_floor = lenient_f64(&imp["bidfloor"]).unwrap_or(0.0);
            let floor = match bid["dealid"].as_str() {
                Some(dealid) => {
                    let deals = imp["pmp"]["deals"].as_array().expect("a deal bid's imp has deals");
                    let deal = deals
                        .iter()
                        .find(|d| lenient_str(&d["id"]).as_deref() == Some(dealid))
                        .expect("dealid names a deal");
                    lenient_f64(&deal["bidfloor"]).unwrap_or(imp_floor)
                }
                None => imp_floor,
            };
            let price = bid["price"].as_f64().expect("price is a number");
            assert!(price > 0.0 && price >= floor, "price {price} below floor {floor}");
            assert!(bid["nurl"].as_str().unwrap().contains("${AUCTION_PRICE}"));
            assert!(bid["burl"].as_str().unwrap().contains("/bill?"));
            assert!(bid["lurl"].as_str().unwrap().contains("${AUCTION_LOSS}"));
            for key in ["id", "adm", "crid"] {
                assert!(bid[key].as_str().is_some_and(|s| !s.is_empty()), "bid.{key} present");
            }
            assert!(bid["adomain"][0].as_str().is_some());
            bids.push(bid.clone());
        }
    }
    assert!(!bids.is_empty(), "a 200 carries at least one bid");
    bids
}

pub fn lenient_str(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn lenient_f64(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `ctrbid serve --config <config>` as its own process (so a test can signal or kill
/// it), started in the repository; returns it with its public and admin addresses, read
/// from the start-up line. Its stderr goes where `stderr` says.
pub fn spawn_serve(config: &Path, stderr: std::process::Stdio) -> (std::process::Child, String, String) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ctrbid"))
        .args(["serve", "--config"])
        .arg(config)
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("ctrbid serve starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line).expect("start-up line");
    let address =
        |nth| line.split("http://").nth(nth).and_then(|s| s.split([' ', '(', ';']).next()).expect(&line).to_string();
    (child, address(1), address(2))
}

/// The impressions of an exchange ledger by (user, campaign id): what a frequency cap is
/// judged on (the user as the exchange sent it; "" for requests without one).
pub fn impressions_by_user_and_campaign(ledger: &Path) -> std::collections::HashMap<(String, String), u32> {
    use ctrbid::exchange::ledger::{self, Record};
    let records = ledger::read(ledger).unwrap();
    let user_of: std::collections::HashMap<u64, &str> = records
        .iter()
        .filter_map(|r| match r {
            Record::Request(q) => Some((q.seq, q.user.as_str())),
            _ => None,
        })
        .collect();
    let mut shown = std::collections::HashMap::new();
    for r in &records {
        if let Record::Impression(i) = r {
            let pair = (user_of[&i.bid.seq].to_string(), i.bid.cid.clone().unwrap_or_default());
            *shown.entry(pair).or_default() += 1;
        }
    }
    shown
}
