//! Slow clients, connection limits and draining, on a real server on loopback.

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
