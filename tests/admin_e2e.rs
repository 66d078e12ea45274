//! The admin port: bearer-token control, catalog and model reloads (a bad file or a
//! model for another feature spec leaves the serving state as it was), and readiness
//! going false while the listener still accepts during a drain; the example catalog of
//! deploy/README.md.

mod common;

use common::{config, raw_to, repo, TestServer};
use serde_json::json;
use std::time::Duration;

const TOKEN: &str = "admin-token-0123456789";

fn request() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_is_off_without_a_token_and_needs_the_right_one() {
    let server = TestServer::start(config()).await;
    let r = server.admin_post("/admin/reload/catalog", Some(TOKEN)).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("admin.token"), "{}", r.text());
    server.stop().await;

    let mut cfg = config();
    cfg.admin.token = Some(TOKEN.into());
    let server = TestServer::start(cfg).await;
    assert_eq!(server.admin_post("/admin/reload/catalog", None).await.status, 401);
    let wrong = server.admin_post("/admin/reload/catalog", Some("admin-token-0123456780")).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert_eq!(server.admin_post("/admin/reload/catalog", Some(TOKEN)).await.status, 200);
    // Control is not reachable from the public port at all.
    assert_eq!(server.post("/admin/reload/catalog", b"").await.status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_and_model_reloads_swap_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.admin.token = Some(TOKEN.into());
    let server = TestServer::start(cfg).await;
    let before = server.admin_get("/admin/status").await.json();

    // A smaller catalog: the first 10 campaigns and their creatives.
    let mut catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("models/default/catalog.json")).unwrap()).unwrap();
    let keep: Vec<serde_json::Value> = catalog["campaigns"].as_array().unwrap()[..10].to_vec();
    let ids: Vec<&str> = keep.iter().map(|c| c["id"].as_str().unwrap()).collect();
    let creatives: Vec<serde_json::Value> = catalog["creatives"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| ids.contains(&c["campaign_id"].as_str().unwrap()))
        .cloned()
        .collect();
    catalog["campaigns"] = keep.clone().into();
    catalog["creatives"] = creatives.into();
    let small = dir.path().join("small.json");
    std::fs::write(&small, serde_json::to_vec(&catalog).unwrap()).unwrap();
    let r = server.admin_post(&format!("/admin/reload/catalog?path={}", small.display()), Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.admin_get("/admin/status").await.json()["catalog"]["campaigns"], 10);

    // A broken catalog: 422 with the reason, the small one keeps serving.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, b"{\"version\":1,\"campaigns\":[").unwrap();
    let r = server.admin_post(&format!("/admin/reload/catalog?path={}", broken.display()), Some(TOKEN)).await;
    assert_eq!(r.status, 422);
    assert!(r.text().contains("broken.json"), "{}", r.text());
    assert_eq!(server.admin_get("/admin/status").await.json()["catalog"]["campaigns"], 10);
    // A catalog without campaigns would answer every request 204 while ready: refused.
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, br#"{"version":1,"campaigns":[],"creatives":[]}"#).unwrap();
    let r = server.admin_post(&format!("/admin/reload/catalog?path={}", empty.display()), Some(TOKEN)).await;
    assert_eq!(r.status, 422);
    assert!(r.text().contains("no campaigns"), "{}", r.text());
    assert_eq!(server.admin_get("/admin/status").await.json()["catalog"]["campaigns"], 10);
    // Without a path: the configured catalog again.
    assert_eq!(server.admin_post("/admin/reload/catalog", Some(TOKEN)).await.status, 200);
    assert_eq!(server.admin_get("/admin/status").await.json()["catalog"], before["catalog"]);

    // The model: reloading the configured one works and bids go on.
    let r = server.admin_post("/admin/reload/model", Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.post("/openrtb2/bid", &request()).await.status, 200);
    // A model whose metadata names another feature spec is refused, naming the spec.
    let model = std::fs::read(repo().join("models/default/model.onnx")).unwrap();
    let sha = before["model"]["spec_sha256"].as_str().unwrap();
    let at = model.windows(sha.len()).position(|w| w == sha.as_bytes()).expect("the spec hash is in the model");
    let mut other = model.clone();
    other[at..at + sha.len()].copy_from_slice("0".repeat(sha.len()).as_bytes());
    let other_path = dir.path().join("other-spec.onnx");
    std::fs::write(&other_path, other).unwrap();
    let r = server.admin_post(&format!("/admin/reload/model?path={}", other_path.display()), Some(TOKEN)).await;
    assert_eq!(r.status, 422);
    assert!(r.text().to_lowercase().contains("spec"), "{}", r.text());
    let missing = server.admin_post("/admin/reload/model?path=/nonexistent/model.onnx", Some(TOKEN)).await;
    assert_eq!(missing.status, 422);
    assert!(missing.text().contains("/nonexistent/model.onnx"));
    // Still serving the original model.
    assert_eq!(server.admin_get("/admin/status").await.json()["model"], before["model"]);
    assert_eq!(server.post("/openrtb2/bid", &request()).await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_reports_not_ready_while_still_accepting() {
    // A delay long enough for a slow box to see each step inside it.
    const DRAIN_DELAY: Duration = Duration::from_secs(4);
    let mut cfg = config();
    cfg.server.drain_delay_ms = DRAIN_DELAY.as_millis() as u64;
    let mut server = TestServer::start(cfg).await;
    assert_eq!(server.admin_get("/readyz").await.status, 200);
    let stopped = std::time::Instant::now();
    server.begin_stop();
    common::wait_until("/readyz answers 503 once draining", Duration::from_secs(2), || async {
        server.admin_get("/readyz").await.status == 503
    })
    .await;
    // Not ready, but a request that arrives now (the load balancer has not noticed yet)
    // is still served.
    assert!(stopped.elapsed() < DRAIN_DELAY, "the checks above took the whole drain delay");
    let mut raw = format!(
        "POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        request().len()
    )
    .into_bytes();
    raw.extend_from_slice(&request());
    assert_eq!(raw_to(server.addr, &raw).await.status, 200);
    // A client that asks to keep the connection is told it ends with this answer (and
    // it does end: `raw_to` reads until the server closes).
    let mut keep_alive =
        format!("POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n", request().len()).into_bytes();
    keep_alive.extend_from_slice(&request());
    let answer = tokio::time::timeout(Duration::from_secs(5), raw_to(server.addr, &keep_alive))
        .await
        .expect("the server closes a keep-alive connection after its answer while draining");
    assert_eq!((answer.status, answer.header("connection")), (200, Some("close")));
    // After the delay, and not before, the listener is closed.
    let addr = server.addr;
    common::wait_until("the listener closes after the drain delay", DRAIN_DELAY + Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(stopped.elapsed() >= DRAIN_DELAY, "closed {:?} after the stop, before the drain delay", stopped.elapsed());
    server.stop().await;
}

/// The example catalog of `deploy/README.md` ("Your own catalog") loads with the reload
/// command shown there and bids with each of its formats: its campaigns' ids, domains
/// and markup, the click URL macro replaced by the bid's signed click URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_catalog_reloads_and_bids_in_every_format() {
    let mut cfg = config();
    cfg.admin.token = Some(TOKEN.into());
    let server = TestServer::start(cfg).await;
    let example = repo().join("deploy/catalog.example.json");
    let r = server.admin_post(&format!("/admin/reload/catalog?path={}", example.display()), Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.admin_get("/admin/status").await.json()["catalog"]["campaigns"], 3);

    let native = json!({"ver": "1.2", "assets": [
        {"id": 1, "required": 1, "title": {"len": 90}},
        {"id": 2, "required": 1, "img": {"type": 3, "wmin": 600, "hmin": 314}},
        {"id": 3, "required": 1, "data": {"type": 1, "len": 25}}
    ]});
    let cases = [
        (
            "a secure 300x250 on a desktop in Canada",
            json!({"id": "b1", "secure": 1, "banner": {"w": 300, "h": 250}}),
            json!({"devicetype": 2, "geo": {"country": "CAN"}}),
            "acme-300x250-a",
            "acmesports.example.com",
        ),
        (
            "native in an iPhone app in Germany",
            json!({"id": "n1", "native": {"request": native.to_string(), "ver": "1.2"}}),
            json!({"devicetype": 4, "os": "iOS", "geo": {"country": "DEU"}}),
            "northwind-native-1",
            "northwindgames.example.com",
        ),
        (
            "a 640x360 VAST 4 video in the USA",
            json!({"id": "v1", "video": {"w": 640, "h": 360, "mimes": ["video/mp4"], "protocols": [7], "maxduration": 30}}),
            json!({"devicetype": 2, "geo": {"country": "USA"}}),
            "contoso-30s-640x360",
            "contoso-motors.example.com",
        ),
    ];
    for (what, imp, device, crid, adomain) in cases {
        let req = json!({"id": "r1", "imp": [imp], "site": {"id": "s1", "domain": "news.example", "page": "https://news.example/a"}, "device": device});
        let r = server.post("/openrtb2/bid", &serde_json::to_vec(&req).unwrap()).await;
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let bid = &r.json()["seatbid"][0]["bid"][0];
        assert_eq!((bid["crid"].as_str(), bid["adomain"][0].as_str()), (Some(crid), Some(adomain)), "{what}: {bid}");
        let adm = bid["adm"].as_str().unwrap();
        assert!(!adm.contains("${CTRBID_CLICK_URL}") && adm.contains("/click?b="), "{what}: {adm}");
        // Nothing loads over plain HTTP; the only http: is the test server's click URL.
        let clicks = adm.matches(&format!("http://{}/click?", server.addr)).count();
        assert!(clicks == 1 && adm.matches("http:").count() == clicks, "{what}: {adm}");
    }
    server.stop().await;
}

/// Every metric family in `/metrics` has its `# HELP` and `# TYPE` lines, and every
/// sample belongs to a family so declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_described() {
    // With every optional part on: the event log and the score cache.
    let events = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.events.dir = Some(events.path().to_path_buf());
    cfg.scoring.cache_entries = 1000;
    let server = TestServer::start(cfg).await;
    assert_eq!(server.post("/openrtb2/bid", &request()).await.status, 200);
    let text = server.admin_get("/metrics").await.text();
    let declared = |prefix: &str| -> Vec<String> {
        text.lines().filter_map(|l| l.strip_prefix(prefix)).map(|l| l.split(' ').next().unwrap().to_string()).collect()
    };
    let (helped, typed) = (declared("# HELP "), declared("# TYPE "));
    assert!(typed.len() > 10, "{text}");
    for optional in ["ctrbid_events_bids_total", "ctrbid_eventlog_queue_depth", "ctrbid_score_cache_lookups_total"] {
        assert!(typed.iter().any(|t| t == optional), "{optional} is listed with its part on");
    }
    for name in &typed {
        assert!(helped.contains(name), "{name} has no # HELP line");
    }
    for sample in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name = sample.split(['{', ' ']).next().unwrap();
        let family = ["_sum", "_count", "_bucket"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(typed.iter().any(|t| t == name || t == family), "{sample}: no # TYPE for {name}");
    }
    server.stop().await;
}
