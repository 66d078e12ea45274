use super::*;
use crate::catalog::{fixtures, Campaign, Catalog, Format};
use crate::features::{Extractor, FeatureSpec};
use std::path::Path;

const NOW: i64 = 4_000_000_000;

fn notices() -> Notices {
    Notices::new(NoticeSettings {
        base_url: "http://bidder.example".into(),
        signer: Signer::new(b"0123456789abcdef0123456789abcdef".to_vec(), None),
        ttl_s: 600,
        min_ttl_s: 60,
        max_ttl_s: 3600,
        click_ttl_s: 86_400,
        attribution_window_s: 7 * 86_400,
        max_entries: 1000,
    })
}

fn selector() -> Selector {
    let catalog = Catalog {
        version: 1,
        campaigns: vec![Campaign { daily_budget: 0.01, ..fixtures::campaign("cmp 1", "IAB2") }],
        creatives: vec![fixtures::creative("cr/1", "cmp 1", Format::Banner { w: 300, h: 250 })],
    };
    let spec = FeatureSpec::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/feature_spec.json"))).unwrap();
    Selector::new(catalog, &Extractor::new(spec))
}

fn terms() -> Terms<'static> {
    Terms {
        bid: 0xabc,
        imp: "imp&1".into(),
        campaign: "cmp 1".into(),
        creative: "cr/1".into(),
        deal: "".into(),
        currency: "USD".into(),
        max_price_micros: 2_500_000,
        expires: NOW + 600,
        click_expires: NOW + 86_400,
        test: false,
        user: None,
        audience: Audience::default(),
        model: None,
    }
}

/// What an exchange does: fill in the macros, then call the path and query.
fn fill(url: &str, price: &str) -> String {
    let url = url.replace("${AUCTION_PRICE}", price).replace("${AUCTION_CURRENCY}", "USD");
    url.strip_prefix("http://bidder.example").unwrap().to_string()
}

fn call(n: &Notices, s: &Selector, url: &str, now: i64) -> Verdict {
    let (path, query) = url.split_once('?').unwrap();
    n.handle(Kind::from_path(path).unwrap(), query, now * 1000, s, &Rates::new(&Default::default()).unwrap())
}

#[test]
fn urls_carry_terms_tag_and_the_exchange_macros() {
    let urls = notices().urls(&terms());
    assert!(urls
        .nurl()
        .starts_with("http://bidder.example/win?b=abc&i=imp%261&c=cmp%201&cr=cr%2F1&cur=USD&hi=2500000&x="));
    assert!(urls.nurl().ends_with("&a=${AUCTION_ID}&p=${AUCTION_PRICE}&pc=${AUCTION_CURRENCY}"), "{}", urls.nurl());
    assert!(urls.click().starts_with("http://bidder.example/click?b=abc&"));
    assert!(!urls.click().contains("${"), "nothing for the exchange to fill in a click URL: {}", urls.click());
    assert!(urls.burl().starts_with("http://bidder.example/bill?"));
    assert!(urls.lurl().contains("&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}"));
    // One tag per bid; the ledger, not the tag, keeps a win and a billing notice apart.
    let tag = |u: &str| u.split("&s=").nth(1).unwrap()[..32].to_string();
    assert_eq!(tag(&urls.nurl()), tag(&urls.burl()));
    assert_eq!(tag(&urls.nurl()), tag(&urls.lurl()));
    assert_eq!(tag(&urls.nurl()), tag(urls.click()));
}

#[test]
fn accepted_once_then_duplicate() {
    let (n, s) = (notices(), selector());
    let urls = n.urls(&terms());
    assert_eq!(call(&n, &s, &fill(&urls.nurl(), "1.20"), NOW), Verdict::Accepted);
    assert_eq!(call(&n, &s, &fill(&urls.nurl(), "1.20"), NOW), Verdict::Duplicate);
    assert_eq!(n.count(Kind::Win, &Verdict::Accepted), 1);
    assert_eq!(n.count(Kind::Win, &Verdict::Duplicate), 1);
}

#[test]
fn billing_is_applied_once_and_spends_the_budget() {
    let (n, s) = (notices(), selector());
    let urls = n.urls(&terms());
    for _ in 0..5 {
        let v = call(&n, &s, &fill(&urls.burl(), "2.0"), NOW);
        assert!(matches!(v, Verdict::Accepted | Verdict::Duplicate));
    }
    assert_eq!(n.count(Kind::Bill, &Verdict::Accepted), 1);
    assert_eq!(n.count(Kind::Bill, &Verdict::Duplicate), 4);
    // CPM 2.0 = 0.002 USD for one impression, once.
    assert!((n.spend_today("cmp 1") - 0.002).abs() < 1e-12, "{}", n.spend_today("cmp 1"));
    let mut text = String::new();
    n.render(&mut text);
    assert!(text.contains("ctrbid_billed_usd_total 0.002000"), "{text}");
}

#[test]
fn forged_expired_and_out_of_bounds_are_refused() {
    let (n, s) = (notices(), selector());
    let urls = n.urls(&terms());
    let win = fill(&urls.nurl(), "1.0");
    // Raising the price bound breaks the tag.
    assert_eq!(call(&n, &s, &win.replace("hi=2500000", "hi=9500000"), NOW), Verdict::Forged);
    assert_eq!(call(&n, &s, &win.replace("c=cmp%201", "c=cmp%202"), NOW), Verdict::Forged);
    let s_at = win.find("&s=").unwrap() + 3;
    let mut flipped = win.clone();
    flipped.replace_range(s_at..s_at + 1, if &win[s_at..s_at + 1] == "0" { "1" } else { "0" });
    assert_eq!(call(&n, &s, &flipped, NOW), Verdict::Forged);
    assert_eq!(call(&n, &s, &win, NOW + 601), Verdict::Expired);
    assert_eq!(call(&n, &s, &fill(&urls.nurl(), "2.51"), NOW), Verdict::PriceOutOfBounds);
    assert_eq!(call(&n, &s, &fill(&urls.nurl(), "-1"), NOW), Verdict::PriceOutOfBounds);
    assert!(matches!(call(&n, &s, &fill(&urls.nurl(), "abc"), NOW), Verdict::Malformed(_)));
    assert!(
        matches!(call(&n, &s, &urls.burl().replace("http://bidder.example", ""), NOW), Verdict::Malformed(m) if m.contains("AUCTION_PRICE"))
    );
    assert!(matches!(call(&n, &s, "/win?b=1", NOW), Verdict::Malformed(_)));
    assert!(matches!(call(&n, &s, &win.replace("pc=USD", "pc=EUR"), NOW), Verdict::Malformed(_)));
    // None of them was applied: the genuine notice still goes through, at the bound exactly.
    assert_eq!(call(&n, &s, &fill(&urls.nurl(), "2.5"), NOW), Verdict::Accepted);
    assert_eq!(n.count(Kind::Win, &Verdict::Forged), 3);
}

#[test]
fn a_spent_budget_stops_the_campaign_until_the_next_day() {
    let (n, s) = (notices(), selector());
    // Budget 0.01 USD = 5 impressions at CPM 2.
    for bid in 0..5u64 {
        let t = Terms { bid, ..terms() };
        assert_eq!(call(&n, &s, &fill(&n.urls(&t).burl(), "2.0"), NOW), Verdict::Accepted);
    }
    let ci = s.campaign_index("cmp 1").unwrap();
    let rates = Rates::new(&Default::default()).unwrap();
    let mut buf = br#"{"id":"r","imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#.to_vec();
    let req = crate::openrtb::parse(&mut buf).unwrap();
    let select = |out: &mut Vec<_>| {
        out.clear();
        s.select_imp(
            &req,
            0,
            &req.imp[0],
            &crate::catalog::ImpTerms::of(&req.imp[0], "ctrbid", &rates),
            crate::catalog::Limits::ALL,
            out,
        );
    };
    let mut out = Vec::new();
    select(&mut out);
    assert!(out.is_empty(), "budget spent: no candidate");
    n.tick(NOW + spend::SECONDS_PER_DAY, &s);
    select(&mut out);
    assert_eq!(out.len(), 1, "a new day: the campaign bids again");
    let _ = ci;
}

#[test]
fn test_auctions_are_never_charged() {
    let (n, s) = (notices(), selector());
    let t = Terms { test: true, ..terms() };
    assert_eq!(call(&n, &s, &fill(&n.urls(&t).burl(), "2.0"), NOW), Verdict::Accepted);
    assert_eq!(n.spend_today("cmp 1"), 0.0);
    // The test flag is signed: dropping it is a forgery.
    assert_eq!(call(&n, &s, &fill(&n.urls(&t).burl(), "2.0").replace("&t=1", ""), NOW), Verdict::Forged);
}

#[test]
fn a_capped_bids_user_key_is_signed_and_marks_the_first_word_of_its_impression() {
    let n = notices();
    let t = Terms { user: Some(0xfeed_beef), ..terms() };
    let urls = n.urls(&t);
    assert!(urls.click().contains("&u=feedbeef&s="), "{}", urls.click());
    let query = |url: &str| fill(url, "2.0").split_once('?').unwrap().1.to_string();
    // Dropping or changing the key is a forgery; so is adding one to an unkeyed URL.
    let bill = query(&urls.burl());
    assert_eq!(n.check(Kind::Bill, &bill.replace("&u=feedbeef", ""), NOW * 1000).unwrap_err(), Verdict::Forged);
    assert_eq!(
        n.check(Kind::Bill, &bill.replace("u=feedbeef", "u=feedbeee"), NOW * 1000).unwrap_err(),
        Verdict::Forged
    );
    let unkeyed = query(&n.urls(&terms()).burl()).replace("&s=", "&u=feedbeef&s=");
    assert_eq!(n.check(Kind::Bill, &unkeyed, NOW * 1000).unwrap_err(), Verdict::Forged);
    assert_eq!(
        n.check(Kind::Bill, &bill.replace("u=feedbeef", "u=zz"), NOW * 1000).unwrap_err(),
        Verdict::Malformed("u (user key) is not hex")
    );
    // The billing notice comes first: it is the impression's first word, the win after it is not.
    let billed = n.check(Kind::Bill, &bill, NOW * 1000).unwrap();
    assert_eq!((billed.user, billed.first_of_impression), (Some(0xfeed_beef), true));
    let won = n.check(Kind::Win, &query(&urls.nurl()), NOW * 1000).unwrap();
    assert_eq!((won.user, won.first_of_impression), (Some(0xfeed_beef), false));
    // Unkeyed URLs (every URL signed before keys were carried) verify as before.
    let plain = n.check(Kind::Win, &query(&n.urls(&Terms { bid: 0xabd, ..terms() }).nurl()), NOW * 1000).unwrap();
    assert_eq!((plain.user, plain.first_of_impression), (None, true));
}

#[test]
fn the_audience_is_signed_and_follows_the_bid_to_its_click_and_conversion() {
    let (n, s) = (notices(), selector());
    let audience = Audience { user: Some(0xabc), publisher: Some(0x123) };
    let urls = n.urls(&Terms { audience, ..terms() });
    assert!(urls.click().contains("&g=abc.123&s="), "{}", urls.click());
    let query = |url: &str| fill(url, "2.0").split_once('?').unwrap().1.to_string();
    let win = query(&urls.nurl());
    for forged in
        [win.replace("&g=abc.123", ""), win.replace("g=abc.123", "g=abc.124"), win.replace("g=abc.123", "g=.123")]
    {
        assert_eq!(n.check(Kind::Win, &forged, NOW * 1000).unwrap_err(), Verdict::Forged, "{forged}");
    }
    assert!(matches!(n.check(Kind::Win, &win.replace("g=abc.123", "g=abc"), NOW * 1000), Err(Verdict::Malformed(_))));
    assert_eq!(n.check(Kind::Win, &win, NOW * 1000).unwrap().audience, audience);
    // The click carries it into the click id, and the conversion reads it back.
    let (v, location) = click(&n, &s, urls.click(), (NOW + 60) * 1000);
    assert_eq!(v, Verdict::Accepted);
    let id = click_id(&location.unwrap());
    let conv = n.check(Kind::Conv, &format!("click={id}"), (NOW + 120) * 1000).unwrap();
    assert_eq!(conv.audience, audience);
}

#[test]
fn the_model_variant_and_its_pctr_are_signed_and_follow_the_bid_to_its_click_and_conversion() {
    let (n, s) = (notices(), selector());
    let audience = Audience { user: Some(0xabc), publisher: Some(0x123) };
    let model = ModelTag::of("cand_1", 0.0123456);
    assert_eq!(model.pctr_ppm, 12_346);
    let urls = n.urls(&Terms { audience, model: Some(model.clone()), ..terms() });
    assert!(urls.click().contains("&g=abc.123&mv=cand_1.12346&s="), "{}", urls.click());
    let query = |url: &str| fill(url, "2.0").split_once('?').unwrap().1.to_string();
    let win = query(&urls.nurl());
    // Another variant (to move results from one to another), another pCTR, or none.
    for forged in
        [win.replace("mv=cand_1.", "mv=main."), win.replace(".12346&", ".12345&"), win.replace("&mv=cand_1.12346", "")]
    {
        assert_eq!(n.check(Kind::Win, &forged, NOW * 1000).unwrap_err(), Verdict::Forged, "{forged}");
    }
    for malformed in [win.replace(".12346&", ".1000001&"), win.replace("mv=cand_1.", "mv=Cand.")] {
        assert!(matches!(n.check(Kind::Win, &malformed, NOW * 1000), Err(Verdict::Malformed(_))), "{malformed}");
    }
    assert_eq!(n.check(Kind::Win, &win, NOW * 1000).unwrap().model, Some(model.clone().into_owned()));
    // The click carries the variant into the click id (with the audience), and the
    // conversion reads both back; the conversion has no pCTR of its own.
    let (v, location) = click(&n, &s, urls.click(), (NOW + 60) * 1000);
    assert_eq!(v, Verdict::Accepted);
    let id = click_id(&location.unwrap());
    assert_eq!(id.split('.').count(), 7, "{id}");
    let conv = n.check(Kind::Conv, &format!("click={id}"), (NOW + 120) * 1000).unwrap();
    assert_eq!((conv.audience, conv.model), (audience, Some(ModelTag { variant: "cand_1".into(), pctr_ppm: 0 })));
}

/// A click: the user's request for the click URL, answered with where to go.
fn click(n: &Notices, s: &Selector, url: &str, now_ms: i64) -> (Verdict, Option<String>) {
    let query = url.split_once('?').unwrap().1;
    match n.check(Kind::Click, query, now_ms) {
        Ok(c) => (Verdict::Accepted, n.apply(&c, now_ms, s, &Rates::new(&Default::default()).unwrap()).location),
        Err(v) => (v, None),
    }
}

/// The click id the landing page received.
fn click_id(location: &str) -> String {
    location.split_once("ctrbid_click=").unwrap().1.to_string()
}

#[test]
fn a_click_lands_once_and_its_conversion_counts_once_within_the_window() {
    let (n, s) = (notices(), selector());
    let urls = n.urls(&terms());
    // Clicks come long after the notice URLs expired (600 s), within the click TTL.
    let at = (NOW + 3_600) * 1000;
    let (v, location) = click(&n, &s, urls.click(), at);
    assert_eq!(v, Verdict::Accepted);
    let location = location.unwrap();
    assert!(location.starts_with("https://cmp 1.example/?ctrbid_click="), "{location}");
    assert_eq!(click(&n, &s, urls.click(), at + 5).0, Verdict::Duplicate, "one click per bid");
    assert_eq!(click(&n, &s, urls.click(), (NOW + 86_401) * 1000).0, Verdict::Expired);
    let forged = urls.click().replace("c=cmp%201", "c=cmp%202");
    assert_eq!(click(&n, &s, &forged, at).0, Verdict::Forged);

    let id = click_id(&location);
    let conv =
        |query: &str, when_ms: i64| n.handle(Kind::Conv, query, when_ms, &s, &Rates::new(&Default::default()).unwrap());
    let window_ms = 7 * 86_400 * 1000;
    assert_eq!(
        conv(&format!("click={id}&v=12.5"), at - 1),
        Verdict::Malformed("the conversion is earlier than its click")
    );
    assert_eq!(conv(&format!("click={id}"), at + window_ms + 1), Verdict::Expired);
    assert!(matches!(conv(&format!("click={id}&v=-3"), at + 1), Verdict::Malformed(_)));
    assert!(matches!(conv("click=", at + 1), Verdict::Malformed(_)));
    assert!(matches!(conv("v=1", at + 1), Verdict::Malformed(_)));
    // The click's time is signed: moving it later to stretch the window is a forgery.
    let parts: Vec<&str> = id.split('.').collect();
    let stretched = format!("{}.{:x}.{}.{}.{}", parts[0], at + window_ms, parts[2], parts[3], parts[4]);
    assert_eq!(conv(&format!("click={stretched}"), at + window_ms + 10), Verdict::Forged);
    assert_eq!(conv(&format!("click={id}&v=12.5"), at + window_ms), Verdict::Accepted, "the window's last ms counts");
    assert_eq!(conv(&format!("click={id}&v=12.5"), at + window_ms), Verdict::Duplicate);
    assert_eq!(n.count(Kind::Conv, &Verdict::Accepted), 1);
    assert_eq!(n.count(Kind::Conv, &Verdict::Forged), 1);
}

#[test]
fn a_notice_released_after_a_failed_log_is_checked_again() {
    let n = notices();
    let burl = fill(&n.urls(&terms()).burl(), "2.0");
    let query = burl.split_once('?').unwrap().1;
    let checked = n.check(Kind::Bill, query, NOW * 1000).unwrap();
    assert_eq!(n.check(Kind::Bill, query, NOW * 1000), Err(Verdict::Duplicate));
    n.release(&checked);
    assert_eq!(n.check(Kind::Bill, query, NOW * 1000), Ok(checked));
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
    assert_eq!(percent_decode("100%"), "100%");
    assert_eq!(percent_decode("%zz%4"), "%zz%4");
    assert_eq!(percent_decode("%C3%A9"), "\u{e9}");
}

/// A billing record read back at start-up takes its ledger place and its spend once,
/// however often the log holds it; a test auction's billing charges nothing.
#[test]
fn restored_records_take_the_ledger_and_spend_once() {
    let n = notices();
    let record = |kind, bid, usd, test| NoticeRecord {
        kind,
        ts_ms: NOW * 1000,
        bid,
        campaign: "cmp 1",
        creative: "cr/1",
        imp_id: "imp&1",
        currency: "USD",
        auction_id: "",
        price: 2.0,
        usd,
        test,
        loss_reason: -1,
        min_to_win: f64::NAN,
        click_ms: 0,
        agg: None,
    };
    assert!(n.restore(&record(Kind::Bill, 7, 0.002, false)));
    assert!(!n.restore(&record(Kind::Bill, 7, 0.002, false)), "a repeated record is a duplicate");
    assert!(n.restore(&record(Kind::Bill, 8, 0.5, true)));
    assert!(n.restore(&record(Kind::Win, 7, 0.0, false)));
    assert_eq!(n.spend_today("cmp 1"), 0.002);
    assert_eq!(n.ledger_len(), 3);
    // The restored ledger answers as the live one did: the billing again is a duplicate,
    // a loss for the won bid contradicts it.
    let t = Terms { bid: 7, ..terms() };
    let urls = n.urls(&t);
    let query = |url: &str| fill(url, "2.0").split_once('?').unwrap().1.to_string();
    assert_eq!(n.check(Kind::Bill, &query(&urls.burl()), NOW * 1000).unwrap_err(), Verdict::Duplicate);
    let loss = urls.lurl().replace("${AUCTION_LOSS}", "102").replace("${AUCTION_MIN_TO_WIN}", "1");
    assert!(matches!(n.check(Kind::Loss, &query(&loss), NOW * 1000), Err(Verdict::Contradicts(_))));
    // Entries live until the latest their URL could: swept an hour (max_ttl_s) later.
    n.tick(NOW + 3600, &selector());
    assert_eq!(n.ledger_len(), 3);
    n.tick(NOW + 3601, &selector());
    assert_eq!(n.ledger_len(), 0);
}
