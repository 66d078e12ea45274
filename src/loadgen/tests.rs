//! Pure parts of the load generator: summary math, URL and corpus parsing, the report.
//! (Scheduling arithmetic is tested in `schedule.rs`; a timed run is in tests/loadgen_e2e.rs.)

use super::summary::{rate, share, Outcome, Recorder};
use super::target::{lines, Url};
use bytes::Bytes;
use std::time::Duration;

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
    assert_eq!(json["latency_ms"]["200"]["count"], 1);
    assert!(json["latency_ms"]["all"]["p99_9"].is_number());
    assert!(json["first_error"].is_null());
    let text = r.summarize(1.0, Duration::from_secs(1)).to_string();
    assert!(text.contains("status 200: 1, 204: 0"), "{text}");
    assert!(text.contains("within 30 ms: 100.00 %"), "{text}");
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
