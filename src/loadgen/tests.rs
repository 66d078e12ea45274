//! The load generator's parts: summary math, on-time counts, windows and phases, URL,
//! corpus and flag parsing, the tmax rewrite, the report; then whole runs of
//! [`generate`] against a scripted local HTTP server ([`server`]) for what only a run
//! shows: latency from the intended send time, windows by due time, phases on one
//! connection, the bodies as sent. (Scheduling arithmetic is tested in `schedule.rs`;
//! a run against the real bidder is in tests/loadgen_e2e.rs.)

mod server;

use super::collect::Collector;
use super::phase::Phase;
use super::schedule::Schedule;
use super::scheduler::Ended;
use super::summary::{rate, share, Outcome, Recorder, Summary};
use super::target::{lines, load_corpus, Url};
use super::{generate, tmax, Opts, Plan};
use bytes::Bytes;
use clap::Parser as _;
use server::Scripted;
use std::time::{Duration, Instant};

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v / 1000.0)
}

#[test]
fn statuses_map_to_outcomes() {
    let check = |status: u16, outcome: Outcome| assert_eq!(Outcome::of_status(status), outcome, "{status}");
    check(200, Outcome::Ok);
    check(204, Outcome::NoContent);
    check(201, Outcome::OtherStatus);
    check(302, Outcome::OtherStatus);
    check(400, Outcome::ClientError);
    check(413, Outcome::ClientError);
    check(500, Outcome::ServerError);
    check(503, Outcome::ServerError);
    assert!(Outcome::ALL
        .iter()
        .all(|o| o.is_answer() || matches!(o, Outcome::Error | Outcome::Refused | Outcome::Timeout | Outcome::Unsent)));
    assert_eq!(Outcome::ALL.iter().filter(|o| o.is_success()).count(), 2);
}

#[test]
fn counts_shares_and_rates_follow_the_records() {
    let mut r = Recorder::new(ms(30.0));
    // 6 x 200 at 1..6 ms, 2 x 204 at 40 and 150 ms, one 400, one 503, one timeout, one unsent.
    for i in 1..=6 {
        r.record(Outcome::Ok, ms(i as f64), Duration::ZERO);
    }
    r.record(Outcome::NoContent, ms(40.0), Duration::ZERO);
    r.record(Outcome::NoContent, ms(150.0), Duration::ZERO);
    r.record(Outcome::ClientError, ms(2.0), Duration::ZERO);
    r.record(Outcome::ServerError, ms(2.0), Duration::ZERO);
    r.record(Outcome::Timeout, ms(1000.0), ms(0.5));
    r.record(Outcome::Unsent, ms(1000.0), ms(0.5));
    r.record(Outcome::Refused, ms(0.2), Duration::ZERO);
    let s = r.summarize(100.0, Duration::from_secs(2));
    assert_eq!(s.requests, 13);
    assert_eq!(s.answered, 10);
    let c = &s.counts;
    assert_eq!(
        (c.ok, c.no_content, c.other_status, c.client_error, c.server_error, c.errors, c.refused, c.timeouts, c.unsent),
        (6, 2, 0, 1, 1, 0, 1, 1, 1)
    );
    assert_eq!(s.achieved_rate, 5.0);
    assert_eq!(s.offered_rate, 100.0);
    assert_eq!(s.deadline_ms, 30.0);
    assert_eq!((s.on_time.ok, s.on_time.no_content), (6, 0));
    assert_eq!(s.on_time_share, 6.0 / 13.0);
    let within: Vec<(f64, f64)> = s.within.iter().map(|w| (w.ms, w.share)).collect();
    assert_eq!(within, [(30.0, 6.0 / 13.0), (10.0, 6.0 / 13.0), (100.0, 7.0 / 13.0), (1000.0, 8.0 / 13.0)]);
    // Percentiles to the histogram's 3 significant digits.
    let close = |got: f64, want: f64| assert!((got - want).abs() <= want * 1e-3 + 1e-3, "{got} vs {want}");
    close(s.latency_ms.ok.p50, 3.0);
    close(s.latency_ms.ok.max, 6.0);
    assert_eq!(s.latency_ms.ok.count, 6);
    assert_eq!(s.latency_ms.all.count, 13);
    close(s.latency_ms.all.max, 1000.0);
    close(s.latency_ms.all.p50, 4.0);
    close(s.start_lag_ms.max, 0.5);
}

#[test]
fn the_deadline_is_not_listed_twice() {
    let s = Recorder::new(ms(100.0)).summarize(10.0, Duration::ZERO);
    assert_eq!(s.within.iter().map(|w| w.ms).collect::<Vec<_>>(), [100.0, 10.0, 1000.0]);
    // Nothing recorded: zeros, not NaN.
    assert_eq!((s.on_time_share, s.achieved_rate, s.latency_ms.all.p99, s.latency_ms.all.max), (0.0, 0.0, 0.0, 0.0));
}

#[test]
fn share_and_rate_handle_empty_spans() {
    assert_eq!(share(1, 4), 0.25);
    assert_eq!(share(0, 0), 0.0);
    assert_eq!(rate(300, Duration::from_millis(1500)), 200.0);
    assert_eq!(rate(5, Duration::ZERO), 0.0);
}

#[test]
fn summary_serializes_with_status_keys() {
    let mut r = Recorder::new(ms(30.0));
    r.record(Outcome::Ok, ms(1.0), Duration::ZERO);
    let json = serde_json::to_value(r.summarize(1.0, Duration::from_secs(1))).unwrap();
    assert_eq!(json["counts"]["200"], 1);
    assert_eq!(json["counts"]["5xx"], 0);
    assert_eq!((json["on_time"]["200"].as_u64(), json["on_time"]["204"].as_u64()), (Some(1), Some(0)));
    assert!(json.get("phases").is_none(), "a bare recorder's summary has no phases");
    assert_eq!(json["latency_ms"]["200"]["count"], 1);
    assert!(json["latency_ms"]["all"]["p99_9"].is_number());
    assert!(json["first_error"].is_null());
    let text = r.summarize(1.0, Duration::from_secs(1)).to_string();
    assert!(text.contains("status 200: 1, 204: 0"), "{text}");
    assert!(text.contains("within 30 ms: 100.00 % (200: 1, 204: 0)"), "{text}");
}

#[test]
fn urls_give_address_host_header_and_path() {
    let check = |url: &str, host: &str, port: u16, authority: &str, path: &str| {
        let u = Url::parse(url).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.authority.as_str(), u.path.to_string().as_str()),
            (host, port, authority, path)
        );
    };
    check("http://127.0.0.1:18181/openrtb2/bid", "127.0.0.1", 18181, "127.0.0.1:18181", "/openrtb2/bid");
    check("http://localhost/openrtb2/bid?x=1", "localhost", 80, "localhost", "/openrtb2/bid?x=1");
    check("http://[::1]:8080", "::1", 8080, "[::1]:8080", "/");
    for bad in ["https://127.0.0.1/", "127.0.0.1:8080/bid", "/openrtb2/bid", "not a url"] {
        assert!(Url::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn corpus_lines_skip_blanks_and_line_ends() {
    let check = |text: &str, expected: &[&str]| {
        let got = lines(Bytes::from(text.to_string()));
        assert_eq!(got.iter().map(|b| std::str::from_utf8(b).unwrap()).collect::<Vec<_>>(), expected, "{text:?}");
    };
    check("{\"id\":\"1\"}\n{\"id\":\"2\"}\n", &["{\"id\":\"1\"}", "{\"id\":\"2\"}"]);
    check("a\r\nb", &["a", "b"]);
    check("\n\n  \na\n\r\n", &["a"]);
    check("", &[]);
}

#[test]
fn on_time_answers_are_counted_per_status() {
    // (outcome, latency ms) recorded with a 100 ms deadline -> (on-time 200s, on-time 204s).
    let check = |records: &[(Outcome, f64)], expected: (u64, u64)| {
        let mut r = Recorder::new(ms(100.0));
        for &(o, l) in records {
            r.record(o, ms(l), Duration::ZERO);
        }
        let s = r.summarize(1.0, Duration::from_secs(1));
        assert_eq!((s.on_time.ok, s.on_time.no_content), expected, "{records:?}");
        assert_eq!(s.on_time_share, share(expected.0 + expected.1, s.requests), "{records:?}");
    };
    check(&[], (0, 0));
    check(&[(Outcome::Ok, 5.0), (Outcome::NoContent, 5.0)], (1, 1));
    check(&[(Outcome::Ok, 100.0), (Outcome::Ok, 100.5), (Outcome::NoContent, 99.0)], (1, 1));
    check(&[(Outcome::NoContent, 1.0), (Outcome::NoContent, 2.0), (Outcome::Ok, 250.0)], (0, 2));
    check(&[(Outcome::ServerError, 1.0), (Outcome::OtherStatus, 1.0), (Outcome::Timeout, 1.0)], (0, 0));
}

#[test]
fn phases_parse_as_rate_colon_seconds() {
    let check = |text: &str, expected: Option<(f64, u64)>| {
        let got = text.parse::<Phase>().ok().map(|p| (p.rate, p.duration.as_millis() as u64));
        assert_eq!(got, expected, "{text:?}");
    };
    check("8000:30", Some((8000.0, 30_000)));
    check("1018.5:0.25", Some((1018.5, 250)));
    check(" 10 : 2 ", Some((10.0, 2000)));
    for bad in ["8000", "8000:", ":30", "x:3", "0:3", "-5:3", "10:0", "10:-1", "10:abc", "inf:3", "10:30s"] {
        check(bad, None);
    }
}

/// The plan `ctrbid loadgen ARGS --corpus c` makes: (rate, seconds) per phase, or the error.
fn plan_of(args: &str) -> Result<Vec<(f64, f64)>, String> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        opts: Opts,
    }
    let argv = ["loadgen", "--corpus", "c"].into_iter().chain(args.split_whitespace());
    let cli = Cli::try_parse_from(argv).map_err(|e| e.kind().to_string())?;
    let plan = Plan::try_from(&cli.opts).map_err(|e| e.to_string())?;
    Ok(plan.phases().iter().map(|p| (p.rate, p.duration.as_secs_f64())).collect())
}

#[test]
fn phases_replace_rate_and_duration_on_the_command_line() {
    assert_eq!(plan_of("--rate 500"), Ok(vec![(500.0, 30.0)]));
    assert_eq!(plan_of("--rate 500 --duration-s 2"), Ok(vec![(500.0, 2.0)]));
    assert_eq!(plan_of("--phases 8000:30,1000:5"), Ok(vec![(8000.0, 30.0), (1000.0, 5.0)]));
    assert_eq!(plan_of("--phases 8000:30 --phases 1000:5"), Ok(vec![(8000.0, 30.0), (1000.0, 5.0)]));
    assert!(plan_of("--rate 500 --phases 8000:30").is_err());
    assert!(plan_of("--duration-s 3 --phases 8000:30").is_err());
    assert!(plan_of("").is_err());
    assert!(plan_of("--phases 8000:30,oops").is_err());
}

#[test]
fn windows_are_bounded_in_number() {
    let plan = |window_ms: u64| Plan { window: Some(Duration::from_millis(window_ms)), ..Plan::default() };
    assert!(plan(100).validate().is_ok()); // 30 s: 300 windows
    assert!(plan(0).validate().is_err());
    assert!(plan(1).validate().is_err()); // 30,000 windows
}

#[test]
fn tmax_is_set_at_the_top_level_and_nothing_else_changes() {
    let check = |body: &str, expected: &str| {
        let got = tmax::set(&Bytes::from(body.to_string()), 100).unwrap();
        assert_eq!(std::str::from_utf8(&got).unwrap(), expected, "{body}");
    };
    check(r#"{"id":"a","tmax":250,"imp":[]}"#, r#"{"id":"a","tmax":100,"imp":[]}"#);
    check(r#"{"tmax":300}"#, r#"{"tmax":100}"#);
    check(r#"{"id":"a","imp":[{"x":1.50}],"tmax" : 120 }"#, r#"{"id":"a","imp":[{"x":1.50}],"tmax" : 100 }"#);
    check(r#"{"tmax":null,"id":"a"}"#, r#"{"tmax":100,"id":"a"}"#);
    check(r#"{"t\u006dax":7,"id":"a"}"#, r#"{"t\u006dax":100,"id":"a"}"#);
    // Absent: inserted first; a nested tmax and the text "tmax" in a string stay.
    check(r#"{"id":"tmax","ext":{"tmax":5}}"#, r#"{"tmax":100,"id":"tmax","ext":{"tmax":5}}"#);
    check(r#"  { "id" : "a" }"#, r#"  {"tmax":100, "id" : "a" }"#);
    check("{}", r#"{"tmax":100}"#);
    check("{ }", r#"{"tmax":100 }"#);
    // Already right: the same bytes.
    check(r#"{"id":"a","tmax":100}"#, r#"{"id":"a","tmax":100}"#);
    for bad in [r#"[{"tmax":1}]"#, r#"{"tmax":1,"tmax":2}"#, r#"{"id":"a""#, r#"{"id":"a"} x"#, "", "7"] {
        assert!(tmax::set(&Bytes::from(bad), 100).is_err(), "{bad}");
    }
}

#[test]
fn a_body_already_right_is_not_copied() {
    let body = Bytes::from_static(br#"{"id":"a","tmax":100}"#);
    assert_eq!(tmax::set(&body, 100).unwrap().as_ptr(), body.as_ptr());
}

/// `Ended` for request `index` of a run started at `start`, due per `schedule`, ending
/// `latency_ms` after its due time.
fn ended(schedule: &Schedule, start: Instant, index: u64, outcome: Outcome, latency_ms: u64) -> Ended {
    let due = start + schedule.due(index);
    let end = due + Duration::from_millis(latency_ms);
    Ended { index, due, start_lag: Duration::ZERO, end, outcome, error: None }
}

#[test]
fn a_request_counts_in_the_phase_and_window_it_was_due_in() {
    // 0.2 s of warm-up (2 requests), 10/s for 1 s (due 0.2, 0.3 .. 1.1 s), 5/s for 1 s
    // (due 1.2 .. 2.0 s); windows of 250 ms.
    let phases = [Phase { rate: 10.0, duration: ms(1000.0) }, Phase { rate: 5.0, duration: ms(1000.0) }];
    let schedule = Schedule::new(ms(200.0), &phases);
    let start = Instant::now();
    let mut c = Collector::new(&schedule, &phases, start, ms(100.0), Some(ms(250.0)));
    for i in 0..schedule.total() {
        // Every third one answered late, a 204 after 900 ms: three windows after its own.
        let (outcome, latency) = if i % 3 == 0 { (Outcome::NoContent, 900) } else { (Outcome::Ok, 20) };
        c.record(ended(&schedule, start, i, outcome, latency));
    }
    let s = c.finish();
    assert_eq!((s.requests, s.phases[0].figures.requests, s.phases[1].figures.requests), (15, 10, 5));
    assert_eq!((s.phases[0].start_s, s.phases[1].start_s), (0.0, 1.0));
    let requests = |k: usize| s.phases[k].windows.iter().map(|w| w.requests).collect::<Vec<_>>();
    let on_time = |k: usize| s.phases[k].windows.iter().map(|w| w.on_time.ok).collect::<Vec<_>>();
    let late = |k: usize| s.phases[k].windows.iter().map(|w| w.counts.no_content).collect::<Vec<_>>();
    // Phase 0: requests 2..11 at offsets 0..900 ms by 100, so windows of 2-4, 5-6, 7-9,
    // 10-11; the 204s are 3, 6 and 9.
    assert_eq!((requests(0), on_time(0), late(0)), (vec![3, 2, 3, 2], vec![2, 1, 2, 2], vec![1, 1, 1, 0]));
    // Phase 1: requests 12..16 at offsets 0..800 ms by 200: windows of 12-13, 14, 15, 16;
    // the 204s are 12 and 15.
    assert_eq!((requests(1), on_time(1), late(1)), (vec![2, 1, 1, 1], vec![1, 1, 0, 1], vec![1, 0, 1, 0]));
    assert_eq!(s.phases[1].windows.iter().map(|w| w.start_s).collect::<Vec<_>>(), [0.0, 0.25, 0.5, 0.75]);
    let on_time_204: u64 = s.phases.iter().flat_map(|p| &p.windows).map(|w| w.on_time.no_content).sum();
    assert_eq!((s.on_time.ok, s.on_time.no_content, on_time_204), (10, 0, 0));
    // To the windows' 2 significant digits: within 1 %.
    let close = |got: f64, want: f64| assert!((got - want).abs() <= want * 0.01, "{got} vs {want}");
    close(s.phases[0].windows[3].latency_ms.p99, 20.0);
    close(s.phases[0].windows[0].latency_ms.p99, 900.0);
    close(s.phases[0].windows[0].latency_ms.p50, 20.0);
}

/// `generate` against `server` with `plan` (url and warm-up filled in).
async fn run(server: &Scripted, plan: Plan, bodies: &[&str]) -> Summary {
    let plan = Plan { url: server.url(), warmup: Duration::ZERO, ..plan };
    let bodies = bodies.iter().map(|b| Bytes::from(b.to_string())).collect();
    let summary = generate(&plan, bodies).await.unwrap();
    eprintln!("{summary}");
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_counts_from_the_intended_send_time() {
    // One connection; the first request takes 300 ms, so the three due 50, 100, 150 ms
    // later wait for the connection: answered at once by the server, but late.
    let server = Scripted::start().await;
    let plan = Plan { rate: 20.0, duration: ms(200.0), max_connections: 1, deadline: ms(100.0), ..Plan::default() };
    let s = run(&server, plan, &[r#"{"sleep_ms":300}"#, "{}", "{}", "{}"]).await;
    assert_eq!((s.counts.ok, s.on_time.ok), (4, 0), "none within 100 ms of its intended send time");
    assert!(s.latency_ms.ok.p50 >= 150.0, "{:?}", s.latency_ms.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_and_on_time_counts_follow_the_intended_send_time() {
    // 50/s for 0.4 s in windows of 100 ms: five requests a window, one of each body:
    // a 200 and a 204 answered after 400 ms (late), two 200s and a 204 at once.
    let server = Scripted::start().await;
    let plan = Plan {
        rate: 50.0,
        duration: ms(400.0),
        deadline: ms(250.0),
        timeout: ms(5000.0),
        window: Some(ms(100.0)),
        ..Plan::default()
    };
    let slow_200 = r#"{"sleep_ms":400}"#;
    let slow_204 = r#"{"sleep_ms":400,"answer":204}"#;
    let s = run(&server, plan, &[slow_200, "{}", r#"{"answer":204}"#, slow_204, "{}"]).await;
    assert_eq!((s.counts.ok, s.counts.no_content, s.on_time.ok, s.on_time.no_content), (12, 8, 8, 4));
    let w = &s.phases[0].windows;
    let got: Vec<_> = w.iter().map(|w| (w.requests, w.counts.ok, w.on_time.ok, w.on_time.no_content)).collect();
    assert_eq!(got, vec![(5, 3, 2, 1); 4], "every window holds what was due in it");
    assert!(w.iter().all(|w| w.on_time_share == 0.6 && w.latency_ms.p99 >= 400.0), "{w:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_run_back_to_back_on_the_same_connection() {
    // 100/s for 0.3 s, then 40/s for 0.5 s, on one connection, in windows of 100 ms.
    let server = Scripted::start().await;
    let plan = Plan {
        rate: 100.0,
        duration: ms(300.0),
        then: vec![Phase { rate: 40.0, duration: ms(500.0) }],
        max_connections: 1,
        deadline: ms(1000.0),
        timeout: ms(5000.0),
        window: Some(ms(100.0)),
        ..Plan::default()
    };
    let s = run(&server, plan, &["{}", r#"{"answer":204}"#]).await;
    assert_eq!(server.connections(), 1, "the second phase kept the first one's connection");
    assert_eq!((s.requests, s.counts.ok, s.counts.no_content), (50, 25, 25));
    let p: Vec<_> = s.phases.iter().map(|p| (p.start_s, p.figures.offered_rate, p.figures.requests)).collect();
    assert_eq!(p, [(0.0, 100.0, 30), (0.3, 40.0, 20)]);
    let windows = |k: usize| s.phases[k].windows.iter().map(|w| w.requests).collect::<Vec<_>>();
    assert_eq!((windows(0), windows(1)), (vec![10; 3], vec![4; 5]));
    assert!((s.offered_rate - 62.5).abs() < 1e-9, "the mean of the phases' rates by duration");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["phases"][1]["windows"][0]["counts"]["204"], 2);
    assert_eq!(json["phases"][1]["on_time"]["204"], 10);
    assert!(json["phases"][1].get("phases").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_go_out_with_tmax_set_and_every_other_byte_as_read() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("requests.jsonl");
    let lines = [r#"{"id":"1","tmax":250,"imp":[{"bidfloor":0.50}]}"#, r#"{ "id" : "2","ext":{"tmax":9} }"#];
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let bodies = load_corpus(&corpus, Some(100)).unwrap();
    let server = Scripted::start().await;
    let plan = Plan {
        url: server.url(),
        rate: 20.0,
        duration: ms(100.0),
        warmup: Duration::ZERO,
        max_connections: 1,
        ..Plan::default()
    };
    let s = generate(&plan, bodies).await.unwrap();
    assert_eq!(s.counts.ok, 2);
    let sent: Vec<String> = server.bodies().iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect();
    assert_eq!(
        sent,
        [r#"{"id":"1","tmax":100,"imp":[{"bidfloor":0.50}]}"#, r#"{"tmax":100, "id" : "2","ext":{"tmax":9} }"#]
    );
    std::fs::write(&corpus, "{\"id\":\"1\"}\n[1]\n").unwrap();
    let err = load_corpus(&corpus, Some(100)).unwrap_err();
    assert!(format!("{err:#}").contains("request 2 of"), "{err:#}");
}
