//! Reading a bidder's answer: the bids of a BidResponse, and the click URL in a bid's
//! markup.
//!
//! Parsing is lenient the way an exchange is: an answer that is not a JSON object, or
//! whose `id` is not the request's, is an error for the whole answer; a bid missing a
//! field is kept with the field absent, and the auction rejects it for that
//! ([`super::auction::loss`]). A `cur` other than USD makes every bid invalid (the
//! requests say `"cur":["USD"]`).

use serde::Deserialize;

/// One bid as received.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ReceivedBid {
    /// The bidder's bid id (ctrbid: hex), recorded as given.
    pub id: String,
    pub impid: String,
    /// CPM in the answer's currency; NaN when missing.
    #[serde(deserialize_with = "price")]
    pub price: f64,
    pub adm: Option<String>,
    pub nurl: Option<String>,
    pub burl: Option<String>,
    pub lurl: Option<String>,
    pub cid: Option<String>,
    pub crid: Option<String>,
}

fn price<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl Default for ReceivedBid {
    /// Every field absent; the price NaN (no price).
    fn default() -> ReceivedBid {
        ReceivedBid {
            id: String::new(),
            impid: String::new(),
            price: f64::NAN,
            adm: None,
            nurl: None,
            burl: None,
            lurl: None,
            cid: None,
            crid: None,
        }
    }
}

#[derive(Deserialize)]
struct Response {
    id: Option<String>,
    cur: Option<String>,
    nbr: Option<u16>,
    #[serde(default)]
    seatbid: Vec<SeatBid>,
}

#[derive(Deserialize)]
struct SeatBid {
    #[serde(default)]
    bid: Vec<serde_json::Value>,
}

/// A 200 answer, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub bids: Vec<ReceivedBid>,
    /// False when `cur` names another currency than USD.
    pub usd: bool,
    /// The no-bid reason of an answer without bids that gives one.
    pub nbr: Option<u16>,
}

/// The bids of a 200 answer to request `request_id`.
pub fn parse(body: &[u8], request_id: &str) -> Result<Parsed, String> {
    let r: Response = serde_json::from_slice(body).map_err(|e| format!("the answer is not a BidResponse: {e}"))?;
    if r.id.as_deref() != Some(request_id) {
        return Err(format!("the answer's id {:?} is not the request's", r.id.unwrap_or_default()));
    }
    let usd = r.cur.as_deref().is_none_or(|c| c.eq_ignore_ascii_case("USD"));
    let bids =
        r.seatbid.into_iter().flat_map(|s| s.bid).map(|b| serde_json::from_value(b).unwrap_or_default()).collect();
    Ok(Parsed { bids, usd, nbr: r.nbr })
}

/// The click URL in `adm`: the first `{base}/click?` up to the first `"`, `'`, `<`, `]`,
/// whitespace or `\` (banner `<a href="...">`, VAST `<![CDATA[...]]>`, native
/// `"link":{"url":"..."}`).
pub fn click_url<'a>(adm: &'a str, base: &str) -> Option<&'a str> {
    let needle = format!("{}/click?", base.trim_end_matches('/'));
    let at = adm.find(&needle)?;
    let url = &adm[at..];
    let end = url.find(|c: char| matches!(c, '"' | '\'' | '<' | ']' | '\\') || c.is_whitespace()).unwrap_or(url.len());
    Some(&url[..end])
}

/// The scheme, host and port of an absolute URL (`http://h:p/path` -> `http://h:p`).
pub fn origin(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..url.len() - rest.len() + end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://127.0.0.1:8080";
    const CLICK: &str = "http://127.0.0.1:8080/click?b=1f&i=1&c=cmp-1&cr=cr-2&cur=USD&hi=5&x=9&cx=9&s=ab";

    #[test]
    fn finds_the_click_url_in_each_kind_of_markup() {
        let check = |adm: String, expected: Option<&str>| assert_eq!(click_url(&adm, BASE), expected, "{adm}");
        check(format!(r#"<a href="{CLICK}"><img src="https://cdn.example/1.png"></a>"#), Some(CLICK));
        check(format!("<a href='{CLICK}'>x</a>"), Some(CLICK));
        check(format!("<VideoClicks><ClickThrough><![CDATA[{CLICK}]]></ClickThrough></VideoClicks>"), Some(CLICK));
        check(format!(r#"{{"native":{{"link":{{"url":"{CLICK}"}},"assets":[]}}}}"#), Some(CLICK));
        // Escaped inside a JSON string, and followed by white space.
        check(format!(r#"{{\"link\":{{\"url\":\"{CLICK}\"}}}}"#), Some(CLICK));
        check(format!("see {CLICK}\nthen"), Some(CLICK));
        // Another host's click URL, or none at all.
        check(r#"<a href="http://other:1/click?b=1">x</a>"#.to_string(), None);
        check(r#"<a href="https://ads.ctrbid.example/click?cr=cr-1">x</a>"#.to_string(), None);
        assert_eq!(click_url(&format!(r#"<a href="{CLICK}">"#), "http://127.0.0.1:8080/"), Some(CLICK));
    }

    #[test]
    fn parses_bids_leniently() {
        let body = br#"{"id":"r1","cur":"USD","seatbid":[{"bid":[
            {"id":"a1","impid":"1","price":2.5,"crid":"cr-1","cid":"cmp-1","adm":"<a>","nurl":"n"},
            {"id":"a2","impid":"2"},
            "not a bid"]}]}"#;
        let Parsed { bids, usd, nbr } = parse(body, "r1").unwrap();
        assert!(usd && nbr.is_none());
        assert_eq!(bids.len(), 3);
        assert_eq!((bids[0].id.as_str(), bids[0].price, bids[0].crid.as_deref()), ("a1", 2.5, Some("cr-1")));
        assert!(bids[1].price.is_nan() && bids[1].crid.is_none());
        assert!(bids[2].price.is_nan() && bids[2].impid.is_empty());
        assert!(parse(body, "r2").is_err(), "another request's answer");
        assert!(parse(b"nope", "r1").is_err());
        let no_bid = parse(br#"{"id":"r1","nbr":15}"#, "r1").unwrap();
        assert_eq!((no_bid.bids.len(), no_bid.nbr), (0, Some(15)));
        assert!(!parse(br#"{"id":"r1","cur":"EUR","seatbid":[]}"#, "r1").unwrap().usd);
    }

    #[test]
    fn origin_of_a_url() {
        assert_eq!(origin("http://127.0.0.1:8080/win?b=1"), Some("http://127.0.0.1:8080"));
        assert_eq!(origin("http://h?x"), Some("http://h"));
        assert_eq!(origin("ftp://h/"), None);
    }
}
