//! Two bidders sharing one real `redis-server` (`fleet.backend = "redis"`), over real
//! HTTP: a notice one instance accepted is refused by the other, a loss contradicts a
//! win taken elsewhere, and the impression is counted once wherever its win and bill
//! land. With Redis killed, bids and notices go on (each instance checks notices alone,
//! says so in `/readyz`), and once it is back every notice accepted meanwhile is
//! claimed after the fact: the ones both instances applied are counted as such. One
//! training set comes from every instance's event log, a bid in one and its notices in
//! another. `ctrbid exchange`, playing the load balancer in front of two instances,
//! replays every applied bill to the other one: the fleet refuses them all, two
//! instances on their own charge them all again.

mod common;

use common::redis::RedisServer;
use common::{config, repo, TestServer};
use ctrbid::config::Config;
use ctrbid::fleet::Backend;
use std::time::Duration;

const KEY: &str = "test-notice-key-0123456789abcdef0123";

fn cfg(redis: &RedisServer, instance: &str) -> Config {
    let mut c = config();
    c.notices.hmac_key = Some(KEY.into());
    c.fleet.backend = Backend::Redis;
    c.fleet.redis_url = redis.url();
    c.fleet.instance = instance.into();
    // The tests run side by side on a busy box: a claim that waits on the scheduler past
    // the production 50 ms would go unshared and let a replay through. What is tested is
    // the ledger's rules; the outage test kills Redis, which fails calls at once.
    c.fleet.timeout_ms = 2000;
    c
}

fn request() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap()
}

async fn bid(server: &TestServer) -> serde_json::Value {
    let r = server.post("/openrtb2/bid", &request()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["seatbid"][0]["bid"][0].clone()
}

/// Path and query of a notice URL (whichever instance signed it), macros filled in.
fn filled(url: &str, price: &str) -> String {
    let at = ["/win", "/bill", "/loss"].iter().find_map(|p| url.find(p)).unwrap();
    url[at..]
        .replace("${AUCTION_PRICE}", price)
        .replace("${AUCTION_CURRENCY}", "USD")
        .replace("${AUCTION_ID}", "auction-1")
        .replace("${AUCTION_LOSS}", "102")
        .replace("${AUCTION_MIN_TO_WIN}", "")
}

fn url<'a>(b: &'a serde_json::Value, field: &str) -> &'a str {
    b[field].as_str().unwrap()
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("{line_start} not in metrics"))
}

async fn metrics(server: &TestServer) -> String {
    server.admin_get("/metrics").await.text()
}

/// Starts an instance and waits for its first budget lease: none is held before (a
/// fleet instance bids only within what the fleet granted it), and the first request
/// asks for those of its candidates (answered 204: no bid without one).
async fn start(cfg: Config) -> TestServer {
    let server = TestServer::start(cfg).await;
    let r = server.post("/openrtb2/bid", &request()).await;
    assert_eq!(r.status, 204, "{}", r.text());
    common::wait_until("the first lease", Duration::from_secs(10), || async {
        metric(&metrics(&server).await, "ctrbid_fleet_lease_refreshes_total ") >= 1.0
    })
    .await;
    server
}

fn bid_key(b: &serde_json::Value) -> String {
    let burl = url(b, "burl");
    let id = burl.split(['?', '&']).find_map(|kv| kv.strip_prefix("b=")).unwrap();
    format!("ctrbid:n:{:0>16}", id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_one_instance_took_is_refused_by_the_other() {
    let redis = RedisServer::start();
    let a = start(cfg(&redis, "a")).await;
    let b = start(cfg(&redis, "b")).await;
    let x = bid(&a).await;

    // The bill lands on b: applied there.
    let bill = filled(url(&x, "burl"), "1.50");
    let r = b.get(&bill).await;
    assert_eq!((r.status, r.text()), (200, "ok\n".to_string()));
    // Replayed to a, which signed it: refused as applied already (billing answers 200).
    let r = a.get(&bill).await;
    assert_eq!((r.status, r.text()), (200, "already applied\n".to_string()));
    let (ma, mb) = (metrics(&a).await, metrics(&b).await);
    assert_eq!(metric(&ma, "ctrbid_notices_total{kind=\"bill\",verdict=\"duplicate\"} "), 1.0);
    assert_eq!(metric(&ma, "ctrbid_billed_usd_total "), 0.0, "a charged nothing");
    assert_eq!(metric(&mb, "ctrbid_billed_usd_total "), 0.0015, "b charged the bill once: 1.50 CPM");
    assert_eq!(metric(&ma, "ctrbid_fleet_notice_claims_total{result=\"duplicate\"} "), 1.0);

    // The win comes to a after the bill went to b: accepted, but the bill was the
    // impression's first word, so a does not count it again in its aggregates. The
    // impression reaches a's aggregates from b's (they are shared), once.
    assert_eq!(a.get(&filled(url(&x, "nurl"), "1.50")).await.status, 200);
    let counted = |m: String| metric(&m, "ctrbid_aggregates_events_total ");
    common::wait_until("b's impression counted in a's aggregates", Duration::from_secs(10), || async {
        counted(metrics(&a).await) == 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let both = (counted(metrics(&a).await), counted(metrics(&b).await));
    assert_eq!(both, (1.0, 1.0), "one impression, counted once by each");
    // Replayed to b: a duplicate there.
    assert_eq!(b.get(&filled(url(&x, "nurl"), "1.50")).await.status, 409);

    // What the fleet's ledger holds: who took each kind.
    let mut conn = redis.connection();
    let held: std::collections::BTreeMap<String, String> =
        redis::cmd("HGETALL").arg(bid_key(&x)).query(&mut conn).unwrap();
    assert_eq!(held, [("bill".into(), "b".into()), ("win".into(), "a".into())].into());
    let ttl: i64 = redis::cmd("TTL").arg(bid_key(&x)).query(&mut conn).unwrap();
    assert!((1..=1800).contains(&ttl), "kept as long as the notice URLs live: {ttl}");

    // A loss contradicts a win another instance took.
    let y = bid(&a).await;
    assert_eq!(b.get(&filled(url(&y, "nurl"), "1.00")).await.status, 200);
    let r = a.get(&filled(url(&y, "lurl"), "")).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("by the fleet"), "{}", r.text());
    assert_eq!(metric(&metrics(&a).await, "ctrbid_notices_total{kind=\"loss\",verdict=\"contradicts\"} "), 1.0);
    // Refused, the loss gave its local place back: y's win, replayed to a, is refused by
    // the fleet (b has it), not by a loss a would otherwise still hold.
    let r = a.get(&filled(url(&y, "nurl"), "1.00")).await;
    assert_eq!((r.status, r.text()), (409, "notice already received\n".to_string()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_notices_are_checked_locally_and_claimed_when_it_returns() {
    let mut redis = RedisServer::start();
    let a = start(cfg(&redis, "a")).await;
    let b = start(cfg(&redis, "b")).await;
    let (x, y) = (bid(&a).await, bid(&a).await);
    assert_eq!(a.get(&filled(url(&x, "burl"), "2.00")).await.status, 200, "x billed before the outage");

    redis.kill();
    // Bidding goes on, on both.
    for server in [&a, &b] {
        let r = server.post("/openrtb2/bid", &request()).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Each instance checks notices alone: y's bill is accepted on both (the replay goes
    // through: the cost of the outage), and so is x's replay on b, which never saw it.
    for (server, n) in [(&a, &y), (&b, &y), (&b, &x)] {
        let r = server.get(&filled(url(n, "burl"), "2.00")).await;
        assert_eq!((r.status, r.text()), (200, "ok\n".to_string()));
    }
    // Wins: a's third failed call in a row opens its breaker.
    for n in [&x, &y] {
        assert_eq!(a.get(&filled(url(n, "nurl"), "2.00")).await.status, 200);
    }
    let ma = metrics(&a).await;
    assert_eq!(metric(&ma, "ctrbid_fleet_breaker_open "), 1.0);
    assert_eq!(metric(&ma, "ctrbid_fleet_unshared_notices "), 3.0);
    assert_eq!(metric(&metrics(&b).await, "ctrbid_fleet_unshared_notices "), 2.0);
    let ready = a.admin_get("/readyz").await;
    assert_eq!(ready.status, 200, "degraded is still ready");
    assert!(ready.text().starts_with("ready, degraded: Redis unreachable"), "{}", ready.text());
    assert!(ready.text().contains("3 to claim"), "{}", ready.text());

    redis.restart();
    for server in [&a, &b] {
        common::wait_until("the backlog claimed", Duration::from_secs(20), || async {
            metric(&metrics(server).await, "ctrbid_fleet_unshared_notices ") == 0.0
        })
        .await;
    }
    let (ma, mb) = (metrics(&a).await, metrics(&b).await);
    let sum = |name: &str| metric(&ma, name) + metric(&mb, name);
    // y's bill went through twice (whichever claimed second finds the other's), and x's
    // replay on b finds a's claim from before the outage, kept by Redis's append-only file.
    assert_eq!(sum("ctrbid_fleet_reconciled_total{result=\"double_applied\"} "), 2.0);
    // The other bill and the two wins are shared now: claimed, or found claimed by this
    // instance itself (`ours`: a claim that timed out on a busy box after it had run).
    let shared = sum("ctrbid_fleet_reconciled_total{result=\"shared\"} ");
    assert_eq!(shared + sum("ctrbid_fleet_reconciled_total{result=\"ours\"} "), 3.0, "the other bill and two wins");
    assert_eq!(a.admin_get("/readyz").await.text(), "ready\n");
    // Shared again: y's win, taken by a in the outage, is a duplicate on b.
    assert_eq!(b.get(&filled(url(&y, "nurl"), "2.00")).await.status, 409);
    a.stop().await;
    b.stop().await;
}

#[test]
fn a_fleet_needs_a_shared_notice_key_and_a_readable_redis_url() {
    let mut c = config();
    c.fleet.backend = Backend::Redis;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("notices.hmac_key") && e.contains("fleet.backend"), "{e}");
    c.notices.hmac_key = Some(KEY.into());
    c.fleet.redis_url = "http://not-redis".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("fleet.redis_url"), "{e}");
    c.fleet.redis_url = "redis://127.0.0.1:6379".into();
    c.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_training_set_joins_a_bid_logged_by_one_instance_with_notices_logged_by_another() {
    let redis = RedisServer::start();
    let logs = tempfile::tempdir().unwrap();
    let with_log = |name: &str| {
        let mut c = cfg(&redis, name);
        c.events.dir = Some(logs.path().join(name));
        c.events.bid_sample = Some(1.0);
        c
    };
    let (a, b) = (start(with_log("a")).await, start(with_log("b")).await);
    let x = bid(&a).await;
    // Its win and bill reach b, its click a.
    assert_eq!(b.get(&filled(url(&x, "nurl"), "1.20")).await.status, 200);
    assert_eq!(b.get(&filled(url(&x, "burl"), "1.20")).await.status, 200);
    let adm = url(&x, "adm");
    let at = adm.find("/click?").unwrap();
    let end = adm[at..].find(['"', '<', ']', '\\']).map_or(adm.len(), |e| at + e);
    assert_eq!(a.get(&adm[at..end].replace("&amp;", "&")).await.status, 302);
    a.stop().await;
    b.stop().await;

    let (dir_a, dir_b) = (logs.path().join("a"), logs.path().join("b"));
    let (rows, stats) = ctrbid::events::join::join(&[&dir_a, &dir_b], 0, 0).unwrap();
    assert_eq!(rows.len(), 1, "{stats:?}");
    assert!(rows[0].click, "the click a logged labels the bid a logged");
    assert_eq!(rows[0].price, 1.20, "the bill b logged prices it");
    assert_eq!(rows[0].bid, u64::from_str_radix(bid_key(&x).trim_start_matches("ctrbid:n:"), 16).unwrap());
    // Either log alone is short: a's has the bid and its click but not what it cost (the
    // click alone shows the impression); b's has the notices but no bid to label.
    let (alone, stats) = ctrbid::events::join::join(&[&dir_a], 0, 0).unwrap();
    assert!(alone.len() == 1 && alone[0].price.is_nan() && stats.shown_by_click_only == 1, "{alone:?}");
    let (alone, stats) = ctrbid::events::join::join(&[&dir_b], 0, 0).unwrap();
    assert!(alone.is_empty() && stats.notices_without_bid == 1, "{stats:?}");

    // The command line takes the logs as a list.
    let out = logs.path().join("features");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ctrbid"))
        .current_dir(repo())
        .args(["features", "--label-wait-s", "0", "--events"])
        .arg(format!("{},{}", dir_a.display(), dir_b.display()))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!((meta["rows"].as_u64(), meta["join"]["clicks"].as_u64()), (Some(1), Some(1)), "{meta}");
}

/// `ctrbid exchange` against instances `a` and `b` of one bidder, every applied bill
/// replayed to the other instance: what the replays met.
async fn replays_against(backend: Backend) -> ctrbid::exchange::report::Report {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let catalog = ctrbid::simulate::generate_catalog(&ctrbid::simulate::SimConfig { seed: 7, ..Default::default() });
    let catalog_path = dir.path().join("catalog.json");
    std::fs::write(&catalog_path, serde_json::to_vec(&catalog.unwrap()).unwrap()).unwrap();
    let instance = |name: &str| {
        let mut c = cfg(&redis, name);
        c.fleet.backend = backend;
        c.server.clock = ctrbid::clock::ClockMode::Simulation;
        c.model.catalog = catalog_path.clone();
        c
    };
    let (a, b) = (TestServer::start(instance("a")).await, TestServer::start(instance("b")).await);
    let fleet = format!("http://{},http://{}", a.addr, b.addr);
    let mut o = ctrbid::exchange::Options::new(vec![fleet], dir.path().join("exchange"));
    (o.seed, o.requests, o.rate, o.replay_bills, o.tmax_grace_ms) = (7, 400, 1000.0, 1.0, 5000);
    let played = ctrbid::exchange::exchange(&o).await.unwrap();
    // Both instances took requests and applied bills (the load balancer spread them).
    for server in [&a, &b] {
        let m = metrics(server).await;
        assert!(metric(&m, "ctrbid_notices_total{kind=\"bill\",verdict=\"accepted\"} ") >= 1.0, "{m}");
    }
    a.stop().await;
    b.stop().await;
    played.report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bills_replayed_to_another_instance_are_refused_by_the_fleet_and_charged_again_without_it() {
    let shared = replays_against(Backend::Redis).await;
    let bills = shared.notices["bill"]["200"];
    assert!(bills >= 10, "a few hundred requests bring some bills: {:?}", shared.notices);
    let r = &shared.replays;
    assert_eq!((r.sent, r.refused, r.applied, r.failed), (bills, bills, 0, 0), "{r:?}");

    // Each instance on its own ledger: every replay is charged a second time.
    let alone = replays_against(Backend::Memory).await;
    let r = &alone.replays;
    assert_eq!((r.sent, r.applied), (alone.notices["bill"]["200"], r.sent), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_starts_without_redis_and_is_no_longer_degraded_once_it_answers() {
    let mut redis = RedisServer::start();
    redis.kill();
    let a = TestServer::start(cfg(&redis, "a")).await;
    let r = a.admin_get("/readyz").await;
    assert_eq!(r.status, 200, "it starts without Redis");
    assert!(r.text().starts_with("ready, degraded: Redis unreachable"), "{}", r.text());
    // It holds no lease of any budget: it answers, and bids nothing.
    let r = a.post("/openrtb2/bid", &request()).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let m = metrics(&a).await;
    assert_eq!(metric(&m, "ctrbid_campaign_lease_usd{campaign=\"cmp-1\"} "), 0.0, "{m}");
    redis.restart();
    // No notice comes: the fleet's tick finds Redis back, and a lease.
    common::wait_until("readiness no longer degraded", Duration::from_secs(10), || async {
        a.admin_get("/readyz").await.text() == "ready\n"
    })
    .await;
    common::wait_until("a lease", Duration::from_secs(10), || async {
        metric(&metrics(&a).await, "ctrbid_fleet_lease_refreshes_total ") >= 1.0
    })
    .await;
    assert_eq!(a.post("/openrtb2/bid", &request()).await.status, 200);
    a.stop().await;
}

/// The simulator's catalog of 20 campaigns (seed 7, as the exchange runs below play),
/// each campaign changed by `edit`, written to `dir/catalog.json`.
fn exchange_catalog(dir: &std::path::Path, edit: impl Fn(&mut ctrbid::catalog::Campaign)) -> std::path::PathBuf {
    let sim = ctrbid::simulate::SimConfig { seed: 7, campaigns: 20, ..Default::default() };
    let mut catalog = ctrbid::simulate::generate_catalog(&sim).unwrap();
    catalog.campaigns.iter_mut().for_each(edit);
    let path = dir.join("catalog.json");
    std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    path
}

/// A fleet instance for an exchange run on the simulated clock, without pacing.
fn exchange_instance(redis: &RedisServer, name: &str, catalog: &std::path::Path) -> Config {
    let mut c = cfg(redis, name);
    c.server.clock = ctrbid::clock::ClockMode::Simulation;
    c.model.catalog = catalog.into();
    c.pacing.enabled = false;
    // An hour of the simulated day (an eighth of a second here): holds outlive their
    // outcomes' round trips, bids that hear nothing give theirs back.
    c.pacing.in_flight_s = 3600;
    // The day passes in three seconds: refresh as a production day's 200 ms would.
    c.fleet.lease_interval_ms = 10;
    c
}

/// Three instances of one bidder behind `ctrbid exchange` (the load balancer: requests
/// round robin, each notice to any instance), every budget small enough to bind and no
/// pacing: the fleet spends each budget once, not once per instance, and what each
/// instance's bids cost comes back to it from the instances their notices reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_spend_each_budget_once() {
    // About ten bids' worth: three instances alone would spend it three times over.
    const BUDGET: f64 = 0.15;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let catalog = exchange_catalog(dir.path(), |c| c.daily_budget = BUDGET);
    let instance = |name: &str| exchange_instance(&redis, name, &catalog);
    let servers = [
        TestServer::start(instance("a")).await,
        TestServer::start(instance("b")).await,
        TestServer::start(instance("c")).await,
    ];
    let fleet = servers.iter().map(|s| format!("http://{}", s.addr)).collect::<Vec<_>>().join(",");
    let mut o = ctrbid::exchange::Options::new(vec![fleet], dir.path().join("exchange"));
    (o.seed, o.campaigns, o.requests, o.rate, o.tmax_grace_ms) = (7, 20, 3000, 1000.0, 5000);
    let report = ctrbid::exchange::exchange(&o).await.unwrap().report;

    let spent = &report.bidders[0].campaigns;
    for c in spent {
        assert!(c.stats.spend <= BUDGET + 1e-9, "{} spent {} of {BUDGET}", c.campaign, c.stats.spend);
    }
    let near: Vec<&str> =
        spent.iter().filter(|c| c.stats.spend >= 0.85 * BUDGET).map(|c| c.campaign.as_str()).collect();
    assert!(
        near.len() >= 2,
        "the instances pool each budget: {:?}",
        spent.iter().map(|c| c.stats.spend).collect::<Vec<_>>()
    );
    // Each of them bought with more than one instance's bids (spend by bid maker).
    for id in &near {
        let mut by_instance = Vec::new();
        for s in &servers {
            let pacing = s.admin_get("/admin/pacing").await.json();
            let c = pacing["campaigns"].as_array().unwrap().iter().find(|c| c["campaign"] == *id).unwrap().clone();
            by_instance.push(c["spend_usd"].as_f64().unwrap());
        }
        assert!(by_instance.iter().filter(|&&s| s > 0.0).count() >= 2, "{id}: {by_instance:?}");
    }
    // Every outcome sent to another instance's inbox was applied there, and the fleet's
    // books (each instance's spend of its own bids) are the ledger's to the micro-dollar.
    common::wait_until("the inboxes drained", Duration::from_secs(10), || async {
        let (mut sent, mut applied) = (0.0, 0.0);
        for s in &servers {
            let m = metrics(s).await;
            sent += metric(&m, "ctrbid_fleet_outcomes_total{direction=\"forwarded\"} ");
            applied += metric(&m, "ctrbid_fleet_outcomes_total{direction=\"applied\"} ");
        }
        sent > 100.0 && sent == applied
    })
    .await;
    let mut books = std::collections::BTreeMap::<String, f64>::new();
    for s in &servers {
        for c in s.admin_get("/admin/pacing").await.json()["campaigns"].as_array().unwrap() {
            *books.entry(c["campaign"].as_str().unwrap().into()).or_default() +=
                c["spend_since_start_usd"].as_f64().unwrap();
        }
    }
    for c in spent {
        assert!(
            (books[&c.campaign] - c.stats.spend).abs() < 1e-6,
            "{}: books {} ledger {}",
            c.campaign,
            books[&c.campaign],
            c.stats.spend
        );
    }
    for s in servers {
        s.stop().await;
    }
}

/// Three instances behind `ctrbid exchange` (requests round robin), every campaign
/// capped at 2 a day per user, few users so that the caps bind: no (user, campaign) is
/// shown more than twice, though each instance alone would allow two of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_hold_each_user_to_one_cap() {
    const CAP: u32 = 2;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let catalog = exchange_catalog(dir.path(), |c| {
        c.daily_budget = 1000.0;
        c.frequency_cap = Some(ctrbid::freqcap::FrequencyCap { impressions: CAP, window_s: 86_400 });
    });
    let instance = |name: &str| exchange_instance(&redis, name, &catalog);
    let servers = [
        TestServer::start(instance("a")).await,
        TestServer::start(instance("b")).await,
        TestServer::start(instance("c")).await,
    ];
    // One request each at the simulated day's start sets the clocks (the fleet ticks
    // once there is a time), so the instances know each other before the day begins.
    let start_ms = (ctrbid::simulate::SimConfig::default().start_ts * 1000).to_string();
    for s in &servers {
        let r = s.post_with("/openrtb2/bid", &[(ctrbid::clock::TIME_HEADER, &start_ms)], &request()).await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    common::wait_until("every instance knows the fleet", Duration::from_secs(10), || async {
        let mut known = true;
        for s in &servers {
            known &= metric(&metrics(s).await, "ctrbid_freqcap_fleet_members ") == 3.0;
        }
        known
    })
    .await;
    let fleet = servers.iter().map(|s| format!("http://{}", s.addr)).collect::<Vec<_>>().join(",");
    let mut o = ctrbid::exchange::Options::new(vec![fleet], dir.path().join("exchange"));
    (o.seed, o.campaigns, o.requests, o.rate, o.users, o.tmax_grace_ms) = (7, 20, 3000, 1000.0, 100, 5000);
    let outcome = ctrbid::exchange::exchange(&o).await.unwrap();

    let shown = common::impressions_by_user_and_campaign(&outcome.ledger);
    let over: Vec<_> = shown.iter().filter(|(_, n)| **n > CAP).collect();
    assert!(over.is_empty(), "over the cap of {CAP}: {over:?}");
    let full = shown.values().filter(|n| **n == CAP).count();
    assert!(full >= 20, "the caps bound: {full} pairs of {} at the cap", shown.len());
    let mut ranks = std::collections::BTreeSet::new();
    for s in &servers {
        let m = metrics(s).await;
        assert_eq!(metric(&m, "ctrbid_freqcap_fleet_members "), 3.0);
        ranks.insert(metric(&m, "ctrbid_freqcap_fleet_rank ") as u64);
    }
    assert_eq!(ranks, [0, 1, 2].into(), "each instance its own rank");
    // One leaves: after fleet.live_window_ms (5 s) the two left divide the caps.
    let [a, b, c] = servers;
    c.stop().await;
    common::wait_until("the two left divide the caps", Duration::from_secs(15), || async {
        let (ma, mb) = (metrics(&a).await, metrics(&b).await);
        let members = [&ma, &mb].map(|m| metric(m, "ctrbid_freqcap_fleet_members "));
        let ranks = [&ma, &mb].map(|m| metric(m, "ctrbid_freqcap_fleet_rank "));
        members == [2.0, 2.0] && ranks == [0.0, 1.0]
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// Three instances behind `ctrbid exchange`, each notice to any of them: every
/// instance's aggregates count every impression, click and conversion the fleet
/// received, once; and one restarted on its event log has them all back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_count_every_notice_in_each_ones_aggregates() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let instance = |name: &str| {
        let mut c = cfg(&redis, name);
        c.server.clock = ctrbid::clock::ClockMode::Simulation;
        c.fleet.lease_interval_ms = 10;
        c.events.dir = Some(dir.path().join(name));
        c
    };
    let servers = [
        TestServer::start(instance("a")).await,
        TestServer::start(instance("b")).await,
        TestServer::start(instance("c")).await,
    ];
    let fleet = servers.iter().map(|s| format!("http://{}", s.addr)).collect::<Vec<_>>().join(",");
    let mut o = ctrbid::exchange::Options::new(vec![fleet], dir.path().join("exchange"));
    (o.seed, o.requests, o.rate, o.tmax_grace_ms, o.click_boost) = (7, 1500, 1000.0, 5000, 10.0);
    ctrbid::exchange::exchange(&o).await.unwrap();

    let counted = |m: &str| metric(m, "ctrbid_aggregates_events_total ");
    // Each instance's own events (those its notices counted) add up to the fleet's.
    let taken = |m: &str| metric(m, "ctrbid_fleet_aggregate_events_total{direction=\"taken\"} ");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let own = loop {
        let m = all_metrics(&servers).await;
        let own: f64 = m.iter().map(|m| counted(m) - taken(m)).sum();
        if own > 50.0 && m.iter().all(|m| counted(m) == own) {
            break own;
        }
        assert!(std::time::Instant::now() < deadline, "not every instance has the fleet's {own} events");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for m in all_metrics(&servers).await {
        let taken = taken(&m);
        assert!(taken > 0.0 && taken < own, "{taken} of {own} from the others");
        assert_eq!(metric(&m, "ctrbid_events_counted_total{outcome=\"written\"} "), taken, "each one logged");
    }
    // A restart rebuilds the store from the log: its own notices and what it took.
    let [a, b, c] = servers;
    a.stop().await;
    let a = TestServer::start(instance("a")).await;
    assert_eq!(counted(&metrics(&a).await), own, "a rebuilt every event it had");
    for s in [a, b, c] {
        s.stop().await;
    }
}

async fn all_metrics(servers: &[TestServer]) -> Vec<String> {
    let mut out = Vec::new();
    for s in servers {
        out.push(metrics(s).await);
    }
    out
}
