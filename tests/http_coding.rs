//! HTTP details exchanges rely on: gzip bodies both ways and `x-openrtb-version`.

mod common;

use common::{check_bid_response, config, repo, TestServer};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::{Read, Write};

fn sample() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// (crid, price) of every bid, in order.
fn bids(request: &serde_json::Value, response: &serde_json::Value) -> Vec<(String, f64)> {
    check_bid_response(request, response)
        .iter()
        .map(|b| (b["crid"].as_str().unwrap().to_string(), b["price"].as_f64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_requests_and_responses_give_the_same_bids_as_plain_ones() {
    let server = TestServer::start(config()).await;
    let body = sample();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();

    let plain = server.post("/openrtb2/bid", &body).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.header("content-encoding"), None);
    let expected = bids(&request, &plain.json());

    let gz_in = server.post_with("/openrtb2/bid", &[("content-encoding", "gzip")], &gzip(&body)).await;
    assert_eq!(gz_in.status, 200, "{}", gz_in.text());
    assert_eq!(bids(&request, &gz_in.json()), expected);

    let gz_out = server.post_with("/openrtb2/bid", &[("accept-encoding", "br, gzip")], &body).await;
    assert_eq!(gz_out.status, 200);
    assert_eq!(gz_out.header("content-encoding"), Some("gzip"));
    let mut inflated = Vec::new();
    GzDecoder::new(gz_out.body.as_slice()).read_to_end(&mut inflated).unwrap();
    assert_eq!(bids(&request, &serde_json::from_slice(&inflated).unwrap()), expected);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_codings_get_clear_4xx_answers() {
    let server = TestServer::start(config()).await;
    let r = server.post_with("/openrtb2/bid", &[("content-encoding", "br")], &sample()).await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.text().contains("br"), "{}", r.text());

    let r = server.post_with("/openrtb2/bid", &[("content-encoding", "gzip")], b"this is not gzip").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("gzip"), "{}", r.text());

    // 4 MB of spaces compress to a few KB: inflated, it is over the body limit.
    let bomb = gzip(&vec![b' '; 4 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let r = server.post_with("/openrtb2/bid", &[("content-encoding", "gzip")], &bomb).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(server.admin_get("/healthz").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openrtb_version_header_is_echoed() {
    let server = TestServer::start(config()).await;
    let r = server.post_with("/openrtb2/bid", &[("x-openrtb-version", "2.5")], &sample()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-openrtb-version"), Some("2.5"));
    let r = server.post("/openrtb2/bid", &sample()).await;
    assert_eq!(r.header("x-openrtb-version"), Some("2.6"));
    let r = server.post_with("/openrtb2/bid", &[("x-openrtb-version", "banana")], &sample()).await;
    assert_eq!(r.header("x-openrtb-version"), Some("2.6"));
    server.stop().await;
}
