//! Arbitrary bid responses through `BidResponse::to_json` and back through serde_json.
//!
//! Proves: serialising never panics and always gives JSON; every field reads back
//! exactly as it went in (strings byte for byte, finite prices and pCTRs bit for bit,
//! optional fields absent exactly when `None`), and no other field appears. A
//! non-finite price has no JSON form and reads back as `null`.
//!
//! When `Bid` gains a field, update [`make_bid`] and [`check_bid`] (and [`BidIn`]).

#![no_main]

use arbitrary::Arbitrary;
use ctrbid::notice::NoticeUrls;
use ctrbid::openrtb::response::{BidDebug, BidExt, HexId};
use ctrbid::openrtb::{Bid, BidResponse, SeatBid};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Input {
    id: String,
    cur: String,
    seats: Vec<(String, Vec<BidIn>)>,
}

#[derive(Arbitrary, Debug)]
struct BidIn {
    id: u64,
    impid: String,
    price: f64,
    adm: String,
    /// The notice URLs' base and their shared query: `nurl` is `{base}/win{query}` and
    /// its macros, and so on.
    notice_base: String,
    notice_query: String,
    adomain: String,
    cid: String,
    crid: String,
    cat: String,
    dealid: Option<String>,
    w: Option<u32>,
    h: Option<u32>,
    ext: Option<(f32, i64, usize)>,
}

fn make_bid(b: &BidIn) -> Bid<'_> {
    Bid {
        id: HexId(b.id),
        impid: &b.impid,
        price: b.price,
        adm: b.adm.as_str().into(),
        notices: NoticeUrls::from_parts(&b.notice_base, &b.notice_query),
        adomain: [&b.adomain],
        cid: &b.cid,
        crid: &b.crid,
        cat: [&b.cat],
        dealid: b.dealid.as_deref(),
        w: b.w,
        h: b.h,
        ext: b.ext.map(|(pctr, ts, candidates)| BidExt { ctrbid: BidDebug { pctr, pcvr: None, ts, candidates } }),
    }
}

fn check_bid(b: &BidIn, v: &Value) {
    let mut keys = vec!["id", "impid", "price", "adm", "nurl", "burl", "lurl", "adomain", "cid", "crid", "cat"];
    check_str(&v["id"], &format!("{:x}", b.id));
    check_str(&v["impid"], &b.impid);
    check_f64(&v["price"], b.price);
    check_str(&v["adm"], &b.adm);
    let (base, query) = (&b.notice_base, &b.notice_query);
    check_str(
        &v["nurl"],
        &format!("{base}/win{query}&a=${{AUCTION_ID}}&p=${{AUCTION_PRICE}}&pc=${{AUCTION_CURRENCY}}"),
    );
    check_str(
        &v["burl"],
        &format!("{base}/bill{query}&a=${{AUCTION_ID}}&p=${{AUCTION_PRICE}}&pc=${{AUCTION_CURRENCY}}"),
    );
    check_str(
        &v["lurl"],
        &format!("{base}/loss{query}&a=${{AUCTION_ID}}&r=${{AUCTION_LOSS}}&m=${{AUCTION_MIN_TO_WIN}}"),
    );
    if let Some(dealid) = &b.dealid {
        check_str(&v["dealid"], dealid);
        keys.push("dealid");
    }
    check_str_array(&v["adomain"], &b.adomain);
    check_str(&v["cid"], &b.cid);
    check_str(&v["crid"], &b.crid);
    check_str_array(&v["cat"], &b.cat);
    for (key, value) in [("w", b.w), ("h", b.h)] {
        if let Some(n) = value {
            assert_eq!(v[key].as_u64(), Some(u64::from(n)), "{key}");
            keys.push(key);
        }
    }
    if let Some((pctr, ts, candidates)) = b.ext {
        let d = &v["ext"]["ctrbid"];
        assert_eq!(keys_of(&v["ext"]), ["ctrbid"]);
        assert_eq!(keys_of(d), ["candidates", "pctr", "ts"]);
        assert_eq!(d["pctr"].as_f64().map(|p| p as f32).map(f32::to_bits), pctr.is_finite().then(|| pctr.to_bits()));
        assert_eq!(d["ts"].as_i64(), Some(ts));
        assert_eq!(d["candidates"].as_u64(), Some(candidates as u64));
        keys.push("ext");
    }
    keys.sort_unstable();
    assert_eq!(keys_of(v), keys, "bid fields");
}

fn check_str(v: &Value, expected: &str) {
    assert_eq!(v.as_str().map(str::as_bytes), Some(expected.as_bytes()));
}

fn check_str_array(v: &Value, expected: &str) {
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    check_str(&v[0], expected);
}

/// Finite: the same bits. Not finite: JSON has no such number and serde_json writes null.
fn check_f64(v: &Value, expected: f64) {
    if expected.is_finite() {
        assert_eq!(v.as_f64().map(f64::to_bits), Some(expected.to_bits()), "{v} != {expected:?}");
    } else {
        assert!(v.is_null(), "{v} for {expected}");
    }
}

/// Object keys, sorted (serde_json's map is a BTreeMap).
fn keys_of(v: &Value) -> Vec<&str> {
    v.as_object().expect("an object").keys().map(String::as_str).collect()
}

fuzz_target!(|input: Input| {
    let bids: Vec<Vec<Bid<'_>>> = input.seats.iter().map(|(_, bids)| bids.iter().map(make_bid).collect()).collect();
    let seatbid: Vec<SeatBid<'_>> =
        input.seats.iter().zip(&bids).map(|((seat, _), bids)| SeatBid { seat, bid: bids }).collect();
    let response = BidResponse { id: &input.id, cur: &input.cur, seatbid: &seatbid };
    let json = response.to_json();
    let v: Value = serde_json::from_slice(&json).expect("to_json writes JSON");
    assert_eq!(keys_of(&v), ["cur", "id", "seatbid"]);
    check_str(&v["id"], &input.id);
    check_str(&v["cur"], &input.cur);
    let seats = v["seatbid"].as_array().expect("seatbid is an array");
    assert_eq!(seats.len(), input.seats.len());
    for ((seat, bids), s) in input.seats.iter().zip(seats) {
        assert_eq!(keys_of(s), ["bid", "seat"]);
        check_str(&s["seat"], seat);
        let out = s["bid"].as_array().expect("bid is an array");
        assert_eq!(out.len(), bids.len());
        for (b, v) in bids.iter().zip(out) {
            check_bid(b, v);
        }
    }
});
