//! Clicks and conversions end to end, over real HTTP: the click URL the bidder signs
//! into each creative's markup redirects the user to the landing page with a click id,
//! the advertiser posts that id back as a conversion, and forged, expired and replayed
//! ones are refused and counted. Time travel uses the simulation clock
//! (`server.clock = "simulation"`), as `ctrbid exchange` does.

mod common;

use common::{config, repo, TestServer};
use ctrbid::clock::ClockMode;
use ctrbid::config::Config;

const KEY: &str = "test-notice-key-0123456789abcdef0123";
/// 2026-01-05 12:00 UTC, in Unix ms.
const T0: i64 = 1_767_614_400_000;
const DAY_MS: i64 = 86_400_000;

fn cfg(clock: ClockMode) -> Config {
    let mut c = config();
    c.notices.hmac_key = Some(KEY.into());
    c.server.clock = clock;
    c
}

fn request() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap()
}

/// The click URL in a bid's markup, as path and query (what a browser would request).
fn click_path(server: &TestServer, adm: &str) -> String {
    let base = format!("http://{}", server.addr);
    let at = adm.find(&format!("{base}/click?")).unwrap_or_else(|| panic!("no click URL in {adm}"));
    let url = &adm[at..];
    let end = url.find(['"', '<', ']', '\\']).unwrap_or(url.len());
    url[base.len()..end].to_string()
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("{line_start} not in metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_redirects_once_recorded_and_its_conversion_is_attributed() {
    let server = TestServer::start(cfg(ClockMode::System)).await;
    let r = server.post("/openrtb2/bid", &request()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let bid = r.json()["seatbid"][0]["bid"][0].clone();
    let adm = bid["adm"].as_str().unwrap();
    assert!(!adm.contains("${CTRBID_CLICK_URL}"), "the macro is filled: {adm}");
    let click = click_path(&server, adm);

    // The user clicks: redirected to the campaign's landing page with a click id.
    let r = server.get(&click).await;
    assert_eq!(r.status, 302, "{}", r.text());
    let location = r.header("location").unwrap().to_string();
    let adomain = bid["adomain"][0].as_str().unwrap();
    assert!(location.starts_with(&format!("https://{adomain}/?ctrbid_click=")), "{location}");
    // A second click still lands (the user wants the page) but is not recorded again.
    let again = server.get(&click).await;
    assert_eq!(again.status, 302);
    // A forged click: another campaign under the same tag.
    let forged = click.replacen("&c=", "&c=X", 1);
    assert_eq!(server.get(&forged).await.status, 403);

    // The advertiser posts the click id back.
    let id = location.split_once("ctrbid_click=").unwrap().1.to_string();
    let conv = format!("/conv?click={id}&v=25.5");
    let r = server.post(&conv, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.get(&conv).await;
    assert_eq!((r.status, r.text().as_str()), (200, "already applied\n"), "a retried postback changes nothing");
    let tag_at = id.rfind('.').unwrap() + 1;
    let flipped = format!("{}{}", &id[..tag_at], if &id[tag_at..tag_at + 1] == "0" { "1" } else { "0" });
    let forged_conv = format!("/conv?click={flipped}{}", &id[tag_at + 1..]);
    assert_eq!(server.get(&forged_conv).await.status, 403);
    assert_eq!(server.get("/conv?click=not-a-click-id").await.status, 400);
    assert_eq!(server.get("/conv").await.status, 400);

    let m = server.admin_get("/metrics").await.text();
    for (kind, verdict, n) in [
        ("click", "accepted", 1.0),
        ("click", "duplicate", 1.0),
        ("click", "forged", 1.0),
        ("conv", "accepted", 1.0),
        ("conv", "duplicate", 1.0),
        ("conv", "forged", 1.0),
        ("conv", "malformed", 2.0),
    ] {
        assert_eq!(
            metric(&m, &format!("ctrbid_notices_total{{kind=\"{kind}\",verdict=\"{verdict}\"}}")),
            n,
            "{kind} {verdict}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulation_clock_expires_clicks_and_closes_the_attribution_window() {
    let server = TestServer::start(cfg(ClockMode::Simulation)).await;
    // Without the time header a simulated bidder refuses to guess. (Sent raw: the test
    // server's own requests carry a fixed time in simulation mode.)
    let body = request();
    let mut raw = format!(
        "POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let r = server.raw(&raw).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("x-ctrbid-time"), "{}", r.text());

    let at = |ms: i64| ms.to_string();
    let r = server.post_with("/openrtb2/bid", &[("x-ctrbid-time", &at(T0))], &request()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json()["seatbid"][0]["bid"][0].clone();
    let r = server.post_with("/openrtb2/bid", &[("x-ctrbid-time", &at(T0))], &request()).await;
    let second = r.json()["seatbid"][0]["bid"][0].clone();

    // Clicks are valid for a day after the bid (notices.click_ttl_s), in auction time.
    let late = server.get_at(&click_path(&server, first["adm"].as_str().unwrap()), T0 + DAY_MS + 1000).await;
    assert_eq!(late.status, 410, "{}", late.text());
    let r = server.get_at(&click_path(&server, second["adm"].as_str().unwrap()), T0 + 60_000).await;
    assert_eq!(r.status, 302);
    let id = r.header("location").unwrap().split_once("ctrbid_click=").unwrap().1.to_string();

    // A conversion counts within seven days of its click (notices.attribution_window_s).
    let conv = format!("/conv?click={id}");
    assert_eq!(server.get_at(&conv, T0 + 60_000 + 7 * DAY_MS + 1).await.status, 410);
    assert_eq!(server.get_at(&conv, T0 + 59_000).await.status, 400, "before its click");
    assert_eq!(server.get_at(&conv, T0 + 60_000 + 7 * DAY_MS).await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_simulator_creative_carries_a_working_click_url() {
    let server = TestServer::start(cfg(ClockMode::System)).await;
    let dir = tempfile::tempdir().unwrap();
    let sim = ctrbid::simulate::SimConfig { seed: 7, impressions: 400, ..Default::default() };
    ctrbid::simulate::simulate(&sim, dir.path()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in common::read_lines(&dir.path().join("requests.jsonl")) {
        let r = server.post("/openrtb2/bid", line.as_bytes()).await;
        if r.status != 200 {
            continue;
        }
        let request: serde_json::Value = serde_json::from_str(&line).unwrap();
        for bid in r.json()["seatbid"][0]["bid"].as_array().unwrap() {
            let imp = request["imp"].as_array().unwrap().iter().find(|i| i["id"] == bid["impid"]).unwrap();
            let format = ["banner", "video", "native"].into_iter().find(|f| imp.get(*f).is_some()).unwrap();
            let adm = bid["adm"].as_str().unwrap();
            assert!(!adm.contains("${CTRBID_CLICK_URL}"), "{adm}");
            if seen.insert(format) {
                let r = server.get(&click_path(&server, adm)).await;
                assert_eq!(r.status, 302, "{format}: {}", r.text());
            }
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["banner", "native", "video"], "each format clicked once");
    server.stop().await;
}
