//! End-to-end: `ctrbid loadgen`'s library function drives the real server on loopback
//! at a low fixed rate with simulator requests, and every request is answered.

mod common;

use bytes::Bytes;
use common::{config, TestServer};
use ctrbid::loadgen::{generate, target, Plan};
use ctrbid::simulate::{simulate, SimConfig};
use std::time::Duration;

/// Requests per second, and seconds measured: 400 requests, low enough for a shared box.
const RATE: f64 = 200.0;
const DURATION_S: f64 = 2.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_fixed_rate_gets_every_request_answered() {
    let dir = tempfile::tempdir().unwrap();
    simulate(&SimConfig { seed: 7, impressions: 100, ..SimConfig::default() }, dir.path()).unwrap();
    let text = std::fs::read(dir.path().join("requests.jsonl")).unwrap();
    let bodies: Vec<Bytes> = target::lines(Bytes::from(text)).into_iter().take(20).collect();
    assert_eq!(bodies.len(), 20, "the simulator wrote enough requests");

    let server = TestServer::start(config()).await;
    let plan = Plan {
        url: format!("http://{}/openrtb2/bid", server.addr),
        rate: RATE,
        duration: Duration::from_secs_f64(DURATION_S),
        warmup: Duration::from_millis(250),
        max_connections: 16,
        // Generous: this checks that every request is answered, not how fast.
        timeout: Duration::from_secs(10),
        ..Plan::default()
    };
    let summary = generate(&plan, bodies).await.unwrap();
    server.stop().await;

    eprintln!("{summary}");
    let c = &summary.counts;
    assert_eq!(summary.requests, (RATE * DURATION_S) as u64, "every scheduled request is recorded");
    assert_eq!(c.ok + c.no_content, summary.requests, "every request answered 200 or 204: {c:?}");
    assert!(c.ok > 0, "simulator requests get bids: {c:?}");
    assert_eq!(
        (c.server_error, c.errors, c.refused, c.timeouts, c.unsent),
        (0, 0, 0, 0, 0),
        "{:?}",
        summary.first_error
    );
    assert_eq!(summary.answered, summary.requests);
    assert!(summary.latency_ms.all.max > 0.0);
}
