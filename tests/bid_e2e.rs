//! End-to-end: the real server on loopback with the default model and catalog.

mod common;

use common::{check_bid_response, config, repo, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prebid_sample_gets_200_204_or_400_and_every_bid_is_valid() {
    let server = TestServer::start(config()).await;
    let dir = repo().join("tests/fixtures/openrtb/prebid");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 478, "all Prebid samples are present");
    let (mut ok, mut no_bid, mut bad) = (0, 0, 0);
    for path in &files {
        let body = std::fs::read(path).unwrap();
        let r = server.post("/openrtb2/bid", &body).await;
        let name = path.file_name().unwrap().to_string_lossy();
        match r.status {
            200 => {
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                check_bid_response(&request, &r.json());
                assert_eq!(r.header("content-type"), Some("application/json"), "{name}");
                ok += 1;
            }
            204 => {
                assert!(r.body.is_empty(), "{name}: 204 has no body");
                no_bid += 1;
            }
            400 => {
                // Only for a broken OpenRTB rule, which the body names.
                assert!(r.text().contains("OpenRTB 2.6"), "{name}: 400 must name the rule: {}", r.text());
                bad += 1;
            }
            other => panic!("{name}: status {other}: {}", r.text()),
        }
    }
    eprintln!("prebid samples: {ok} x 200, {no_bid} x 204, {bad} x 400");
    assert!(ok > 100, "the default catalog bids on many real-world requests ({ok})");
    assert!(bad < 20, "few samples break a rule ({bad})");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_gets_400_with_a_reason() {
    let server = TestServer::start(config()).await;
    let cases: &[(&[u8], &str)] = &[
        (b"{", "malformed JSON"),
        (
            b"{\"id\":\"x\",\"imp\":[{\"id\":\"1\",\"banner\":{}}",
            "malformed JSON: the body ends at byte 39 with 2 objects or arrays still open: truncated?",
        ),
        // Cut short: reported where it ends, not where the parser gave up.
        (b"{\"id\": \"x\"", "malformed JSON: the body ends at byte 10 with 1 object or array still open: truncated?"),
        (b"{\"id\": tru}", "malformed JSON"),
        (b"not json at all", "must be a JSON object"),
        (b"[\"x\",[{\"id\":\"1\",\"banner\":{}}]]", "must be a JSON object"),
        (b"{\"id\":\"x\",\"imp\":{\"id\":\"1\"}}", "request.imp is missing"),
        (b"", "empty body"),
        (b"   \n", "empty body"),
        (b"{\"id\":\"x\"}", "request.imp is missing"),
        (b"{\"id\":\"x\",\"imp\":[{\"id\":\"1\"}]}", "request.imp[0] has none of banner"),
        (b"{\"imp\":[{\"id\":\"1\",\"banner\":{}}]}", "request.id is missing"),
    ];
    for (body, reason) in cases {
        let r = server.post("/openrtb2/bid", body).await;
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(body));
        assert!(r.text().contains(reason), "{:?}: {:?} should say {reason:?}", String::from_utf8_lossy(body), r.text());
    }
    let metrics = server.admin_get("/metrics").await.text();
    assert!(metrics.contains(&format!("ctrbid_requests_total{{outcome=\"invalid\"}} {}", cases.len())), "{metrics}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_and_the_server_keeps_serving() {
    let mut cfg = config();
    cfg.server.max_body_bytes = 4096;
    let server = TestServer::start(cfg).await;
    let big = vec![b' '; 10_000];
    assert_eq!(server.post("/openrtb2/bid", &big).await.status, 413);
    // Chunked, with no content-length to check up front.
    let mut raw = format!(
        "POST /openrtb2/bid HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n",
        big.len()
    )
    .into_bytes();
    raw.extend_from_slice(&big);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(server.raw(&raw).await.status, 413);
    assert_eq!(server.admin_get("/healthz").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_unknown_routes() {
    let server = TestServer::start(config()).await;
    assert_eq!(server.admin_get("/healthz").await.status, 200);
    assert_eq!(server.admin_get("/readyz").await.text(), "ready\n");
    assert_eq!(server.get("/nope").await.status, 404);
    // The public port serves bidding and notices only.
    for path in ["/healthz", "/readyz", "/metrics", "/admin/status"] {
        assert_eq!(server.get(path).await.status, 404, "{path} on the public port");
    }
    let status = server.admin_get("/admin/status").await.json();
    assert_eq!(status["ready"], true);
    // The kind the zoo exported (models/default/eval.json) is the one served.
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::repo().join("models/default/eval.json")).unwrap()).unwrap();
    assert_eq!(status["model"]["kind"], eval["model_kind"]);
    assert!(status["catalog"]["campaigns"].as_u64().unwrap() > 0);
    // 405 says what is allowed (RFC 9110 15.5.6), on both ports.
    let r = server.get("/openrtb2/bid").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = server.post("/win", b"").await;
    assert_eq!(r.status, 400, "a notice without its terms: {}", r.text());
    let r = server.raw(b"PUT /win HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, POST")));
    let r = server.admin_post("/metrics", None).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    let body = br#"{"id":"m1","imp":[{"id":"1","banner":{"w":300,"h":250}}],"device":{"devicetype":2,"os":"windows","geo":{"country":"USA"}}}"#;
    let r = server.post("/openrtb2/bid", body).await;
    assert_eq!(r.status, 200, "a desktop in the USA with a 300x250 slot: {}", r.text());
    let m = server.admin_get("/metrics").await;
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.text();
    for stage in ["parse", "validate", "select", "features", "total"] {
        assert!(
            text.contains(&format!("ctrbid_stage_seconds{{stage=\"{stage}\",quantile=\"0.99\"}}")),
            "{stage} in {text}"
        );
    }
    // A bid was scored, inline with the default auto scoring on idle workers: its whole
    // time is in that path's histogram (the recorder drains every few milliseconds).
    let want = "ctrbid_scored_request_seconds_count{path=\"inline\"} 1\n";
    common::wait_until("the inline path's histogram counts the bid", std::time::Duration::from_secs(10), || async {
        server.admin_get("/metrics").await.text().contains(want)
    })
    .await;
    let text = server.admin_get("/metrics").await.text();
    assert!(text.contains("ctrbid_scored_request_seconds_count{path=\"batched\"} 0\n"), "{text}");
    server.stop().await;
}

/// `server.mode = "ceiling"`: a valid request gets one fixed bid of about a real bid's
/// size, ids echoed, without selection (even one no creative fits, which the bidder
/// answers 204); bad input still gets its 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceiling_mode_answers_a_fixed_bid_after_validation() {
    let no_fit = br#"{"id":"req-\"7","imp":[{"id":"imp-9","banner":{"w":1,"h":1}}]}"#;
    let bidder = TestServer::start(config()).await;
    assert_eq!(bidder.post("/openrtb2/bid", no_fit).await.status, 204);
    bidder.stop().await;

    let mut cfg = config();
    cfg.server.mode = ctrbid::config::ServeMode::Ceiling;
    let server = TestServer::start(cfg).await;
    let r = server.post("/openrtb2/bid", no_fit).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!((v["id"].as_str(), v["seatbid"][0]["bid"][0]["impid"].as_str()), (Some("req-\"7"), Some("imp-9")));
    assert!((1200..1700).contains(&r.body.len()), "a real bid's size on the wire: {} bytes", r.body.len());
    let bad = server.post("/openrtb2/bid", b"{\"id\": tru}").await;
    assert_eq!((bad.status, bad.text().contains("malformed JSON")), (400, true));
    server.stop().await;
}

/// `ctrbid ort-alone` scores exactly the candidate rows the bid path builds for each
/// request of a corpus, in calls of whole requests of at most `--batch-rows` rows (a
/// request with more alone).
#[test]
fn ort_alone_scores_the_rows_the_bidder_would() {
    use ctrbid::catalog::ImpTerms;
    let dir = tempfile::tempdir().unwrap();
    let sim = ctrbid::simulate::SimConfig { seed: 7, impressions: 400, ..Default::default() };
    ctrbid::simulate::simulate(&sim, dir.path()).unwrap();
    let corpus = dir.path().join("requests.jsonl");
    let out = dir.path().join("ort.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_ctrbid"))
        .args(["ort-alone", "--config", "deploy/ctrbid.toml", "--batch-rows", "100", "--seconds", "0.3"])
        .arg("--corpus")
        .arg(&corpus)
        .arg("--json")
        .arg(&out)
        .current_dir(repo())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();

    // The same rows, counted through the library's bid path.
    let cfg = ctrbid::config::Config::load(&repo().join("deploy/ctrbid.toml")).unwrap();
    let mut cfg = cfg;
    for p in [&mut cfg.model.path, &mut cfg.model.spec, &mut cfg.model.catalog] {
        *p = repo().join(&*p);
    }
    let bidder = ctrbid::bidder::Bidder::load(&cfg, ctrbid::metrics::Metrics::start()).unwrap();
    let state = bidder.state();
    let rates = ctrbid::currency::Rates::new(&Default::default()).unwrap();
    let (mut requests, mut scored, mut rows) = (0u64, 0u64, 0u64);
    // Calls of whole requests, each closed before the request that would take it past
    // 100 rows.
    let (mut calls, mut open_rows) = (0usize, 0usize);
    for line in common::read_lines(&corpus) {
        requests += 1;
        let mut body = line.into_bytes();
        let req = ctrbid::openrtb::validate(ctrbid::openrtb::parse(&mut body).unwrap()).unwrap();
        let terms: Vec<ImpTerms> = req.imp.iter().map(|i| ImpTerms::of(i, "ctrbid", &rates)).collect();
        if let Ok(c) = state.select(&req, &terms, cfg.bidding.max_candidates_per_imp, &ctrbid::catalog::AdmitAll) {
            scored += 1;
            rows += c.len() as u64;
            if open_rows == 0 || open_rows + c.len() > 100 {
                calls += 1;
                open_rows = 0;
            }
            open_rows += c.len();
        }
    }
    assert_eq!(r["corpus_requests"].as_u64(), Some(requests));
    assert_eq!(r["scored_requests"].as_u64(), Some(scored));
    let per_request = r["rows_per_request"].as_f64().unwrap();
    assert!((per_request - rows as f64 / scored as f64).abs() < 1e-9, "{per_request} rows per request");
    assert_eq!(r["calls_per_pass"].as_u64(), Some(calls as u64), "{r}");
    let largest = r["largest_packed_call_rows"].as_u64().unwrap();
    assert!(largest > 0 && largest <= 100, "a call of several requests holds at most 100 rows: {r}");
    // It scored for its 0.3 s, on this process's CPU (ticks of 10 ms; 2 cores at most
    // here), and the per-request figure is that CPU over the requests scored.
    let (wall_s, cpu_s) = (r["wall_s"].as_f64().unwrap(), r["cpu_s"].as_f64().unwrap());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    assert!(r["rows"].as_u64().unwrap() > 0 && wall_s >= 0.3, "{r}");
    assert!(cpu_s > 0.0 && cpu_s <= wall_s * cores + 0.02, "{cpu_s} s of CPU in {wall_s} s: {r}");
    let scored_in_run = r["requests_per_s"].as_f64().unwrap() * wall_s;
    let per_1000 = r["cpu_s_per_1000_requests"].as_f64().unwrap();
    assert!((per_1000 - 1000.0 * cpu_s / scored_in_run).abs() <= 1e-6 * per_1000.max(1.0), "{r}");
}

/// The score cache end to end: an impression offered again (a new request id, every
/// other byte the same) is answered from the cache, with the very bids a server without
/// the cache gives; `/metrics` counts one hit per candidate row the first offer scored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_impression_is_answered_from_the_score_cache_with_the_same_bids() {
    let dir = tempfile::tempdir().unwrap();
    let sim = ctrbid::simulate::SimConfig { seed: 7, impressions: 40, ..ctrbid::simulate::SimConfig::default() };
    ctrbid::simulate::simulate(&sim, dir.path()).unwrap();
    let requests = common::read_lines(&dir.path().join("requests.jsonl"));
    let again = |body: &str| body.replacen("{\"id\":\"", "{\"id\":\"again-", 1);
    // (price, pCTR) of every bid, by request.
    async fn bids(server: &TestServer, body: &str) -> Vec<(f64, f64)> {
        let r = server.post("/openrtb2/bid", body.as_bytes()).await;
        assert!(r.status == 200 || r.status == 204, "{} {}", r.status, r.text());
        if r.status == 204 {
            return Vec::new();
        }
        let v = r.json();
        v["seatbid"][0]["bid"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["price"].as_f64().unwrap(), b["ext"]["ctrbid"]["pctr"].as_f64().unwrap()))
            .collect()
    }
    let counter = |text: &str, result: &str| -> u64 {
        let key = format!("ctrbid_score_cache_lookups_total{{result=\"{result}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&key)).unwrap_or_else(|| panic!("{key} in {text}")).parse().unwrap()
    };

    // Rows carry the time of day: one fixed auction time for both servers and every
    // request, so their rows are equal however long the test takes.
    let mut cfg = common::at_fixed_time(config());
    cfg.server.debug_ext = true;
    let plain = TestServer::start(cfg.clone()).await;
    let mut expected = Vec::new();
    for body in &requests {
        expected.push(bids(&plain, body).await);
    }
    assert!(!plain.admin_get("/metrics").await.text().contains("ctrbid_score_cache"), "off by default: no metrics");
    plain.stop().await;
    assert!(expected.iter().filter(|b| !b.is_empty()).count() * 2 > requests.len(), "most requests bid");

    // Room for every row (about 2,000 here, in sets of two: a third row in one set has
    // odds of about 1 in 10,000): an evicted row would be a miss on its second offer.
    cfg.scoring.cache_entries = 1 << 23;
    let server = TestServer::start(cfg).await;
    let mut first = Vec::new();
    for body in &requests {
        first.push(bids(&server, body).await);
    }
    let first_metrics = server.admin_get("/metrics").await.text();
    let mut second = Vec::new();
    for body in &requests {
        second.push(bids(&server, &again(body)).await);
    }
    let second_metrics = server.admin_get("/metrics").await.text();
    server.stop().await;

    assert_eq!(first, expected, "first offers: scored by the model, as without the cache");
    let (hits, scored) = (counter(&first_metrics, "hit"), counter(&first_metrics, "miss"));
    assert_eq!(hits, 0, "every row new");
    assert!(scored > 100);
    assert_eq!(second, expected, "offered again: the same bids");
    assert_eq!(
        (counter(&second_metrics, "hit"), counter(&second_metrics, "miss")),
        (scored, scored),
        "every row of the second offers a hit"
    );
}
