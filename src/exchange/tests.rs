//! The report's arithmetic on a hand-made ledger, and the ledger's round trip.

use super::landscape::LandscapeParams;
use super::ledger::*;
use super::report::{self, Report};
use crate::catalog::Catalog;
use crate::simulate::market::MediaKind;
use crate::simulate::{generate_catalog, SimConfig};

const START: i64 = 1_767_571_200;
const HOUR_MS: i64 = 3_600_000;

/// A small catalog: campaign A (cmp-1) pays per conversion (goal 50), B (cmp-2) per
/// click (goal 1.2); `crids.0` is a creative of A, `crids.1` of B.
fn catalog() -> (Catalog, (String, String)) {
    let mut c = generate_catalog(&SimConfig { campaigns: 3, creatives: 6, ..SimConfig::default() }).unwrap();
    (c.campaigns[0].goal_cpc, c.campaigns[0].goal_cpa) = (0.0, 50.0);
    (c.campaigns[1].goal_cpc, c.campaigns[1].goal_cpa) = (1.2, 0.0);
    let of = |cmp: &str| c.creatives.iter().find(|cr| cr.campaign_id == cmp).unwrap().id.clone();
    let crids = (of("cmp-1"), of("cmp-2"));
    (c, crids)
}

fn bid_ref(bid_id: &str, seq: u64, cid: &str) -> BidRef {
    BidRef { bidder: 0, bid_id: bid_id.into(), seq, imp_id: "1".into(), cid: Some(cid.into()) }
}

fn entry(bid_id: &str, outcome: Outcome, price: f64, crid: &str, loss: Option<u16>) -> Entry {
    Entry {
        bidder: 0,
        outcome,
        bid_id: Some(bid_id.into()),
        price: Some(price),
        crid: Some(crid.into()),
        cid: None,
        loss,
        min_to_win: loss.map(|_| 9.0),
        error: None,
    }
}

fn auction(seq: u64, ts_ms: i64, entries: Vec<Entry>, winner: Option<&str>, clearing: Option<f64>) -> Record {
    Record::Auction(Auction {
        seq,
        request_id: format!("r{seq}"),
        imp_id: "1".into(),
        ts_ms,
        floor: 0.5,
        at: 2,
        kind: MediaKind::Banner,
        publisher: "pub-1".into(),
        entries,
        competing: Some(1.0),
        winner: winner.map(|w| WinnerLine { bidder: 0, bid_id: w.into() }),
        competing_won: false,
        clearing_price: clearing,
    })
}

fn notice(kind: NoticeKind, bid: BidRef, ts_ms: i64, price: Option<f64>, status: u16) -> Record {
    Record::Notice(Notice { kind, bid, ts_ms, price, loss: None, status: Some(status), attempts: 1, error: None })
}

fn request(seq: u64, ts_ms: i64, status: u16) -> Record {
    let answer =
        AnswerLine { bidder: 0, status: Some(status), latency_ms: 1.0, late: false, bids: 1, nbr: None, error: None };
    Record::Request(RequestLine {
        seq,
        request_id: format!("r{seq}"),
        ts_ms,
        publisher: "pub-1".into(),
        user: "u1".into(),
        at: 2,
        tmax_ms: 100,
        imps: 1,
        answers: vec![answer],
    })
}

fn ledger((a, b): &(String, String)) -> Vec<Record> {
    let t0 = START * 1000 + 10_000;
    let t5 = START * 1000 + 5 * HOUR_MS + 10_000;
    let a1 = bid_ref("a1", 0, "cmp-1");
    vec![
        Record::Run(Run {
            version: 1,
            bidders: vec!["http://b".into()],
            seed: 7,
            requests: 2,
            days: 1,
            start_ts: START,
            rate: 100.0,
            first_price_share: 0.0,
            landscape: LandscapeParams::default(),
            render_rate: 0.95,
            click_delay_s: 30.0,
            conv_delay_s: 7200.0,
            click_boost: 1.0,
            tmax_grace_ms: 0,
        }),
        request(0, t0, 200),
        auction(0, t0, vec![entry("a1", Outcome::Bid, 4.0, a, None)], Some("a1"), Some(2.5)),
        request(1, t5, 200),
        auction(
            1,
            t5,
            vec![entry("a2", Outcome::Bid, 1.0, b, Some(102)), entry("a3", Outcome::Late, 7.0, b, Some(2))],
            None,
            Some(3.01),
        ),
        notice(NoticeKind::Win, a1.clone(), t0 + 50, Some(2.5), 200),
        notice(NoticeKind::Loss, bid_ref("a2", 1, "cmp-2"), t5 + 50, None, 200),
        notice(NoticeKind::Loss, bid_ref("a3", 1, "cmp-2"), t5 + 50, None, 410),
        Record::Impression(Impression {
            bid: a1.clone(),
            crid: a.clone(),
            ts_ms: t0 + 1000,
            price: 2.5,
            pctr: 0.02,
            pcvr: 0.1,
            pctr_used: 0.02,
        }),
        notice(NoticeKind::Bill, a1.clone(), t0 + 1000, Some(2.5), 200),
        // A repeated billing answered 200 ("already applied") is charged once.
        notice(NoticeKind::Bill, a1.clone(), t0 + 1000, Some(2.5), 200),
        Record::Click(Click {
            bid: a1.clone(),
            ts_ms: t0 + 31_000,
            status: Some(302),
            click_id: Some("x".into()),
            error: None,
        }),
        Record::Conversion(Conversion {
            bid: a1,
            ts_ms: t0 + 7_200_000,
            value: Some(50.0),
            status: Some(200),
            error: None,
        }),
    ]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn report_arithmetic_on_a_hand_made_ledger() {
    let (catalog, crids) = catalog();
    let r: Report = report::build(ledger(&crids).into_iter().map(Ok), &catalog).unwrap();
    assert_eq!(r.requests, 2);
    let t = &r.totals;
    assert_eq!((t.bids, t.late, t.invalid, t.wins, t.impressions, t.clicks, t.conversions), (3, 1, 0, 1, 1, 1, 1));
    assert!(close(t.win_rate.unwrap(), 1.0 / 3.0));
    assert!(close(t.spend, 0.0025), "spend {}", t.spend);
    let b = &r.bidders[0];
    assert_eq!((b.requests, b.answered_200, b.answered_204, b.errors), (2, 2, 0, 0));
    let a = b.campaigns.iter().find(|c| c.campaign == "cmp-1").unwrap();
    assert_eq!((a.goal_cpc, a.goal_cpa), (None, Some(50.0)));
    assert_eq!((a.stats.bids, a.stats.wins, a.stats.impressions, a.stats.clicks), (1, 1, 1, 1));
    assert!(
        close(a.stats.ecpm.unwrap(), 2.5)
            && close(a.stats.ecpc.unwrap(), 0.0025)
            && close(a.stats.ecpa.unwrap(), 0.0025)
    );
    assert!(close(a.stats.expected_clicks, 0.02) && close(a.stats.expected_conversions, 0.002));
    // A CPA campaign's value: goal CPA x expected conversions.
    assert!(close(a.stats.value, 0.1) && close(a.stats.surplus, 0.0975), "{:?}", a.stats);
    let bb = b.campaigns.iter().find(|c| c.campaign == "cmp-2").unwrap();
    assert_eq!((bb.goal_cpc, bb.stats.bids, bb.stats.late, bb.stats.wins), (Some(1.2), 2, 1, 0));
    assert_eq!((bb.stats.win_rate, bb.stats.ecpm, bb.stats.spend), (Some(0.0), None, 0.0));
    assert_eq!(b.campaigns[0].campaign, "cmp-1", "by spend, highest first");
    assert!(close(t.value, 0.1) && close(t.surplus, 0.0975));
    // Calls by kind and status.
    let n = |k: &str, s: &str| r.notices.get(k).and_then(|m| m.get(s)).copied().unwrap_or(0);
    assert_eq!((n("win", "200"), n("bill", "200"), n("loss", "200"), n("loss", "410")), (1, 2, 1, 1));
    assert_eq!((n("click", "302"), n("conv", "200")), (1, 1));
    // Hours: 24 rows, each line in the hour of its own time.
    assert_eq!(r.hours.len(), 24);
    let h0 = &r.hours[0];
    assert_eq!((h0.requests, h0.bids, h0.wins, h0.clicks, h0.ts), (1, 1, 1, 1, START));
    assert!(close(h0.spend, 0.0025));
    let h5 = &r.hours[5];
    assert_eq!((h5.requests, h5.bids, h5.wins, h5.win_rate, h5.spend), (1, 2, 0, Some(0.0), 0.0));
    assert_eq!(r.hours.iter().map(|h| h.requests).sum::<u64>(), 2);
}

#[test]
fn the_ledger_reads_back_as_written() {
    let (catalog, crids) = catalog();
    let lines = ledger(&crids);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let w = Writer::create(&path).unwrap();
    lines.iter().for_each(|r| w.write(r).unwrap());
    w.flush().unwrap();
    let back = read(&path).unwrap();
    assert_eq!(back, lines);
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(first.starts_with(r#"{"type":"run","version":1,"#), "{}", &first[..60]);
    let streamed = report::build(records(&path).unwrap(), &catalog).unwrap();
    assert_eq!(streamed, report::build(back.into_iter().map(Ok), &catalog).unwrap());
}

#[test]
fn the_markdown_and_the_summary_show_the_figures() {
    let (catalog, crids) = catalog();
    let r = report::build(ledger(&crids).into_iter().map(Ok), &catalog).unwrap();
    let md = super::markdown::render(&r);
    assert!(md.contains("## By simulated hour") && md.contains("| 5 (day 1, 05:00) | 1 | 2 | 0 | 0.0 % |"), "{md}");
    assert!(md.contains("| cmp-1 (bidder 0) | 1 | 1 | 100.0 % |") && md.contains("CPA 50.00"), "{md}");
    let line = super::markdown::summary(&r);
    assert!(line.contains("3 bids (1 late, 0 invalid), 1 wins (33.3 %), spend 0.0025 USD"), "{line}");
    assert!(line.contains("bill 200 x2") && line.contains("loss 200 x1 410 x1"), "{line}");
}

#[test]
fn a_ledger_without_its_run_line_is_refused() {
    let (catalog, crids) = catalog();
    assert!(report::build(ledger(&crids).into_iter().skip(1).map(Ok), &catalog).is_err());
}

#[test]
fn replaying_bills_needs_a_fleet_and_every_instance_an_http_url() {
    let o = |bidders: &[&str], replay: f64| {
        let mut o = super::Options::new(bidders.iter().map(|b| b.to_string()).collect(), "out".into());
        o.replay_bills = replay;
        o.validate().map_err(|e| e.to_string())
    };
    assert!(o(&["http://a:1,http://b:2"], 0.5).is_ok());
    let e = o(&["http://a:1"], 0.5).unwrap_err();
    assert!(e.contains("--replay-bills needs a bidder with several instances"), "{e}");
    let e = o(&["http://a:1,https://b:2"], 0.0).unwrap_err();
    assert!(e.contains("\"https://b:2\" must be an http:// URL"), "{e}");
    assert!(o(&["http://a:1,http://b:2"], 1.5).unwrap_err().contains("--replay-bills must be between 0 and 1"));
}
