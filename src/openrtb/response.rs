//! The OpenRTB 2.6 bid response ctrbid answers with.
//!
//! Built from borrowed parts of the request and the catalog, serialised once. The
//! notice URLs (`nurl`, `burl`, `lurl`, see [`crate::notice`]) keep the OpenRTB macros
//! for the exchange to fill in; so does `adm` when the creative's markup uses them.

use crate::notice::NoticeUrls;
use serde::Serialize;
use std::borrow::Cow;

#[derive(Debug, Serialize)]
pub struct BidResponse<'a> {
    /// Echoes `request.id` byte for byte; a number id as a string of its text (`openrtb::ids`).
    pub id: &'a str,
    pub seatbid: &'a [SeatBid<'a>],
    /// Currency of every price in this response.
    pub cur: &'a str,
}

#[derive(Debug, Serialize)]
pub struct SeatBid<'a> {
    pub bid: &'a [Bid<'a>],
    pub seat: &'a str,
}

/// A bid id: a `u64` written as lowercase hex (what the notice URLs carry as `b`),
/// serialised without a heap string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HexId(pub u64);

impl Serialize for HexId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 16];
        let digits = (16 - self.0.leading_zeros() as usize / 4).max(1);
        for (i, slot) in buf[..digits].iter_mut().enumerate() {
            *slot = HEX[((self.0 >> (4 * (digits - 1 - i))) & 15) as usize];
        }
        s.serialize_str(std::str::from_utf8(&buf[..digits]).expect("hex digits are ASCII"))
    }
}

#[derive(Debug, Serialize)]
pub struct Bid<'a> {
    pub id: HexId,
    /// Names an `imp.id` of the request, byte for byte as `id` above.
    pub impid: &'a str,
    /// CPM in `BidResponse::cur`; never below the floor that applies (the deal's, else the imp's).
    pub price: f64,
    pub adm: Cow<'a, str>,
    /// `nurl` (the win notice: the exchange fills in `${AUCTION_PRICE}` and the other
    /// macros), `burl` (billing, called when the impression is billable) and `lurl`
    /// (loss, with `${AUCTION_LOSS}` and `${AUCTION_MIN_TO_WIN}`), written out from
    /// the one string they share.
    #[serde(flatten)]
    pub notices: NoticeUrls,
    pub adomain: [&'a str; 1],
    pub cid: &'a str,
    pub crid: &'a str,
    pub cat: [&'a str; 1],
    /// The `pmp.deals[].id` the bid is made through, byte for byte as `id` above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dealid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub w: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<BidExt>,
}

/// Debug detail returned only when `server.debug_ext` is on.
#[derive(Debug, Serialize)]
pub struct BidExt {
    pub ctrbid: BidDebug,
}

#[derive(Debug, Serialize)]
pub struct BidDebug {
    /// The calibrated click probability the price was computed from.
    pub pctr: f32,
    /// The calibrated conversion probability (given a click) the model gave, when it has
    /// a conversion head; a CPA campaign's price was computed from it. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcvr: Option<f32>,
    /// Unix seconds the time features were computed for.
    pub ts: i64,
    /// How many candidates were scored for this imp.
    pub candidates: usize,
}

impl BidResponse<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_hint());
        // Serialising plain structs of strings and numbers into memory cannot fail.
        let _ = serde_json::to_writer(&mut out, self);
        out
    }

    /// About the length of the JSON, a little over: its long strings (markup, notice
    /// URLs, escapes aside) and room for the rest, so the buffer is allocated once
    /// rather than grown from serde_json's 128 bytes by doubling.
    fn size_hint(&self) -> usize {
        const PER_BID: usize = 384;
        // The three notice URLs are the click URL's length each, give or take their macros.
        const PER_NOTICES: usize = 3 * 64;
        let bids = self.seatbid.iter().flat_map(|s| s.bid);
        let strings: usize = bids.map(|b| PER_BID + PER_NOTICES + b.adm.len() + 3 * b.notices.click().len()).sum();
        64 + self.id.len() + strings
    }
}

/// Appends `s` to `out`, percent-encoding everything but RFC 3986 unreserved characters.
pub fn push_query_value(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        let mut s = String::new();
        push_query_value(&mut s, "a b&c=d/é~");
        assert_eq!(s, "a%20b%26c%3Dd%2F%C3%A9~");
    }

    #[test]
    fn bid_ids_are_lowercase_hex_as_format_writes_them() {
        for id in [0u64, 1, 0xf, 0x10, 0xabc, 0xdead_beef_0000, u64::MAX] {
            assert_eq!(serde_json::to_string(&HexId(id)).unwrap(), format!("\"{id:x}\""));
        }
    }

    #[test]
    fn response_serialises_the_fields_exchanges_read() {
        let r = BidResponse {
            id: "req-1",
            cur: "USD",
            seatbid: &[SeatBid {
                seat: "ctrbid",
                bid: &[Bid {
                    id: HexId(0xb1),
                    impid: "1",
                    price: 1.5,
                    adm: "<a></a>".into(),
                    notices: NoticeUrls::from_parts("http://x", "?b=b1&s=00"),
                    adomain: ["brand.example"],
                    cid: "cmp-1",
                    crid: "cr-1",
                    cat: ["IAB2"],
                    dealid: None,
                    w: Some(300),
                    h: Some(250),
                    ext: None,
                }],
            }],
        };
        let json = String::from_utf8(r.to_json()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["id"], "req-1");
        assert_eq!(v["seatbid"][0]["bid"][0]["id"], "b1");
        assert_eq!(v["seatbid"][0]["bid"][0]["price"], 1.5);
        let bid = &v["seatbid"][0]["bid"][0];
        assert_eq!(bid["nurl"], "http://x/win?b=b1&s=00&a=${AUCTION_ID}&p=${AUCTION_PRICE}&pc=${AUCTION_CURRENCY}");
        assert_eq!(bid["burl"], "http://x/bill?b=b1&s=00&a=${AUCTION_ID}&p=${AUCTION_PRICE}&pc=${AUCTION_CURRENCY}");
        assert_eq!(bid["lurl"], "http://x/loss?b=b1&s=00&a=${AUCTION_ID}&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}");
        // The bid's fields in their order, the notice URLs where they always stood.
        let keys = ["id", "impid", "price", "adm", "nurl", "burl", "lurl", "adomain", "cid", "crid", "cat", "w", "h"];
        let at: Vec<usize> = keys.iter().map(|k| json.rfind(&format!(r#""{k}":"#)).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert_eq!(v["seatbid"][0]["bid"][0]["adomain"][0], "brand.example");
        assert!(v["seatbid"][0]["bid"][0].get("ext").is_none());
    }

    #[test]
    fn debug_ext_carries_pcvr_only_when_the_model_has_one() {
        let ext = |pcvr| serde_json::to_value(BidExt { ctrbid: BidDebug { pctr: 0.5, pcvr, ts: 7, candidates: 3 } });
        let with = ext(Some(0.25)).unwrap();
        assert_eq!((with["ctrbid"]["pctr"].as_f64(), with["ctrbid"]["pcvr"].as_f64()), (Some(0.5), Some(0.25)));
        let without = ext(None).unwrap();
        assert!(without["ctrbid"].get("pcvr").is_none());
        assert_eq!(without["ctrbid"]["candidates"], 3);
    }
}
