//! Slow clients, connection limits, draining, and shedding when scoring cannot keep up,
//! on a real server on loopback.

mod common;

use common::{config, repo, TestServer};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

fn sample() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap()
}

fn head(len: usize) -> String {
    format!("POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n")
}

fn status_of(raw: &[u8]) -> Option<u16> {
    std::str::from_utf8(raw.get(..12)?).ok()?.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// Reads until the peer closes or `limit` passes; returns what arrived.
async fn read_until_close(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = timeout(limit, s.read_to_end(&mut buf)).await;
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_408() {
    let mut cfg = config();
    cfg.server.body_read_timeout_ms = 200;
    let server = TestServer::start(cfg).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(format!("{}{{\"id\":", head(100)).as_bytes()).await.unwrap();
    let started = Instant::now();
    let answer = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), Some(408), "{}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_never_completes_is_closed() {
    let mut cfg = config();
    cfg.server.header_read_timeout_ms = 200;
    let server = TestServer::start(cfg).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\n").await.unwrap();
    let started = Instant::now();
    let answer = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(2), "still open after {:?}", started.elapsed());
    assert!(answer.is_empty() || status_of(&answer) == Some(408), "{}", String::from_utf8_lossy(&answer));
    // The server still serves others.
    assert_eq!(server.admin_get("/healthz").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_clients_wait_for_a_free_slot() {
    let mut cfg = config();
    cfg.server.max_connections = 2;
    let server = TestServer::start(cfg).await;
    let keep_alive = b"GET /nope HTTP/1.1\r\nhost: t\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(keep_alive).await.unwrap();
        let mut buf = [0u8; 256];
        let n = timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("answered").unwrap();
        assert_eq!(status_of(&buf[..n]), Some(404));
        held.push(s);
    }
    // The kernel accepts the third connection, the server does not serve it yet.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(keep_alive).await.unwrap();
    let mut buf = [0u8; 256];
    assert!(timeout(Duration::from_millis(300), third.read(&mut buf)).await.is_err(), "served past the limit");
    drop(held.pop());
    let n = timeout(Duration::from_secs(2), third.read(&mut buf)).await.expect("served once a slot frees").unwrap();
    assert_eq!(status_of(&buf[..n]), Some(404));
    drop(third);
    drop(held);
    server.stop().await;
}

/// Shutdown refuses new connections but lets a request in flight finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() {
    // The deadline counts from the request head, so give this slow request time to bid.
    let mut cfg = config();
    cfg.bidding.budget_ms = 5000;
    cfg.bidding.default_tmax_ms = 5000;
    let mut server = TestServer::start(cfg).await;
    let body = sample();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(head(body.len()).as_bytes()).await.unwrap();
    s.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.begin_stop();
    let addr = server.addr;
    common::wait_until("new connections refused while draining", Duration::from_secs(10), || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    s.write_all(rest).await.unwrap();
    let answer = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), Some(200), "{}", String::from_utf8_lossy(&answer));
    server.stop().await;
}

/// A request that never completes does not hold shutdown past the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_after_the_grace_period() {
    let mut cfg = config();
    cfg.server.grace_period_ms = 300;
    cfg.server.body_read_timeout_ms = 60_000;
    let server = TestServer::start(cfg).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(format!("{}{{", head(1000)).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.stop().await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "shutdown took {took:?}");
    drop(s);
}

/// The sample with `imps` copies of its banner imp: rows enough to keep one inference
/// thread busy for milliseconds.
fn heavy(imps: usize) -> Vec<u8> {
    let mut r: serde_json::Value = serde_json::from_slice(&sample()).unwrap();
    let imp = r["imp"][0].clone();
    r["imp"] = (0..imps)
        .map(|i| {
            let mut imp = imp.clone();
            imp["id"] = format!("imp-{i}").into();
            imp
        })
        .collect();
    serde_json::to_vec(&r).unwrap()
}

/// What a burst of concurrent requests got, by kind of answer.
#[derive(Debug, Default)]
struct Burst {
    bids: usize,
    /// nbr 1 with `queue_full`: the job did not fit the scoring queue.
    queue_full: usize,
    /// nbr 1 with `backlog`: shed after parsing, the queued rows past the deadline.
    backlog_parsed: usize,
    /// Empty 204s: with `nbr_body` on, only a request shed before parsing gets one.
    shed_unread: usize,
    other: Vec<String>,
}

/// Whether `body` gets a bid (not a no-bid, which `nbr_body` answers with a 200 too).
async fn bids(server: &TestServer, body: &[u8]) -> bool {
    let r = server.post("/openrtb2/bid", body).await;
    r.status == 200 && r.json().get("nbr").is_none()
}

/// Sends `copies` of `body` at once, each on its own connection, and sorts the answers.
async fn burst(server: &TestServer, body: &[u8], copies: usize) -> Burst {
    let tasks: Vec<_> = (0..copies)
        .map(|_| {
            let mut raw = head(body.len()).replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n").into_bytes();
            raw.extend_from_slice(body);
            let addr = server.addr;
            tokio::spawn(async move { common::raw_to(addr, &raw).await })
        })
        .collect();
    let mut burst = Burst::default();
    for t in tasks {
        let r = t.await.unwrap();
        match (r.status, r.status == 200 && r.json().get("nbr").is_some()) {
            (200, false) => burst.bids += 1,
            (200, true) => match r.json()["ext"]["reason"].as_str() {
                Some("queue_full") => burst.queue_full += 1,
                Some("backlog") => burst.backlog_parsed += 1,
                _ => burst.other.push(r.text()),
            },
            (204, _) => burst.shed_unread += 1,
            _ => burst.other.push(format!("{} {}", r.status, r.text())),
        }
    }
    burst
}

fn batched(queue_capacity: usize, budget_ms: u64) -> ctrbid::config::Config {
    let mut cfg = config();
    cfg.scoring.inline = ctrbid::config::InlineScoring::Off;
    cfg.scoring.threads = 1;
    cfg.scoring.queue_capacity = queue_capacity;
    cfg.scoring.adaptive_wait = false;
    cfg.scoring.max_wait_us = 0;
    cfg.server.nbr_body = true;
    cfg.bidding.budget_ms = budget_ms;
    cfg
}

/// A full scoring queue sheds at once: with one inference thread and room for one waiting
/// job (and a budget no backlog reaches), a burst of heavy requests gets bids and nbr 1
/// `queue_full` answers with the request's id, nothing else, and `/metrics` counts every
/// one of those as shed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_scoring_queue_answers_nbr_1_at_once() {
    let server = TestServer::start(batched(1, 2000)).await;
    let body = heavy(100);
    let mut shed = 0;
    for round in 0..10 {
        let b = burst(&server, &body, 32).await;
        assert!(b.other.is_empty() && b.backlog_parsed + b.shed_unread == 0, "round {round}: {b:?}");
        assert_eq!(b.bids + b.queue_full, 32, "round {round}: {b:?}");
        shed += b.queue_full;
        if shed > 0 {
            break;
        }
    }
    assert!(shed > 0, "ten bursts of 32 into a one-job queue and none was shed");
    let metrics = server.admin_get("/metrics").await.text();
    assert!(metrics.contains(&format!("ctrbid_requests_total{{outcome=\"shed\"}} {shed}\n")), "{shed} shed: {metrics}");
    assert!(bids(&server, &sample()).await, "bids again once the burst is over");
    server.stop().await;
}

/// Once the queued rows would take longer than the budget, requests are shed before
/// they are read: an empty 204 even with `nbr_body` on (no id known), and a malformed
/// body sent then is shed unread rather than refused with 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoring_backlog_sheds_before_parsing() {
    let server = TestServer::start(batched(64, 10)).await;
    let (body, broken) = (heavy(100), b"{\"id\": broken".to_vec());
    // One scored request first, so the batcher knows what a row costs.
    common::wait_until("a heavy request bids", Duration::from_secs(10), || bids(&server, &body)).await;
    let mut broken_unread = 0;
    for round in 0..10 {
        let (heavy, broken) = tokio::join!(burst(&server, &body, 32), async {
            tokio::time::sleep(Duration::from_millis(2)).await;
            burst(&server, &broken, 8).await
        });
        assert!(
            heavy.queue_full == 0 && heavy.bids + heavy.backlog_parsed + heavy.shed_unread + heavy.other.len() == 32
        );
        assert!(heavy.other.iter().all(|o| o.contains("\"nbr\":15")), "round {round}: {heavy:?}");
        // A malformed body is either read and refused, or shed unread: never bid on.
        assert_eq!(broken.other.len() + broken.shed_unread, 8, "round {round}: {broken:?}");
        assert!(broken.other.iter().all(|o| o.starts_with("400 malformed JSON")), "round {round}: {broken:?}");
        broken_unread += broken.shed_unread;
        if broken_unread > 0 && heavy.shed_unread > 0 {
            break;
        }
    }
    assert!(broken_unread > 0, "ten bursts and every malformed body was read");
    let one = sample();
    common::wait_until("bids again once the backlog is gone", Duration::from_secs(10), || bids(&server, &one)).await;
    server.stop().await;
}
