//! End-to-end: SIGTERM to a real `ctrbid serve` process under a steady load loses no
//! request mid-flight. While it drains, every answer says `Connection: close`, so the
//! load generator opens a new connection for its next request instead of sending on
//! one the server is about to close; once the listener has closed, connections are
//! refused (never sent, safe to retry elsewhere) and counted apart from failures. The
//! log says when the signal came, when the drain began and ended, with the requests in
//! flight.

mod common;

use bytes::Bytes;

use ctrbid::loadgen::{generate, target, Plan};
use ctrbid::simulate::{simulate, SimConfig};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

const RATE: f64 = 300.0;
/// The load runs this long; SIGTERM comes [`SIGTERM_AFTER`] into it.
const LOAD: Duration = Duration::from_secs(5);
const SIGTERM_AFTER: Duration = Duration::from_millis(1500);
const DRAIN_DELAY_MS: u64 = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_request_mid_flight() {
    let dir = tempfile::tempdir().unwrap();
    simulate(&SimConfig { seed: 5, impressions: 100, ..SimConfig::default() }, dir.path()).unwrap();
    let text = std::fs::read(dir.path().join("requests.jsonl")).unwrap();
    let bodies: Vec<Bytes> = target::lines(Bytes::from(text)).into_iter().take(20).collect();
    let config = dir.path().join("ctrbid.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndrain_delay_ms = {DRAIN_DELAY_MS}\ngrace_period_ms = 5000\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[bidding]\nbudget_ms = 2000\n"
        ),
    )
    .unwrap();
    let (mut child, addr, _) = common::spawn_serve(&config, Stdio::piped());
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let plan = Plan {
        url: format!("http://{addr}/openrtb2/bid"),
        rate: RATE,
        duration: LOAD,
        warmup: Duration::ZERO,
        max_connections: 16,
        // Generous: a slow box answers late, not never.
        timeout: Duration::from_secs(10),
        ..Plan::default()
    };
    let load = tokio::spawn(async move { generate(&plan, bodies).await.unwrap() });
    tokio::time::sleep(SIGTERM_AFTER).await;
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let summary = load.await.unwrap();
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    eprintln!("{summary}\n{log}");

    assert!(status.success(), "a drained server exits 0: {status:?}");
    let c = &summary.counts;
    assert_eq!((c.errors, c.timeouts, c.server_error), (0, 0, 0), "nothing lost mid-flight: {:?}", summary.first_error);
    // Served before and during the drain (3 s of 5), refused after the listener closed.
    assert!(c.ok + c.no_content >= (RATE * 2.0) as u64, "{c:?}");
    assert!(c.refused >= (RATE * 1.0) as u64, "refused once the listener closed: {c:?}");
    assert_eq!(c.ok + c.no_content + c.refused + c.unsent, summary.requests, "{c:?}");
    for said in [
        "SIGTERM received",
        "draining: not ready, answering with Connection: close",
        "public listener closed",
        "drained",
    ] {
        assert!(log.contains(said), "the log says {said:?}:\n{log}");
    }
}
