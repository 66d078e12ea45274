//! The OpenRTB 2.6 bid request, as far as a DSP reads it.
//!
//! Every struct borrows from the body. Fields ctrbid does not read are skipped by
//! serde (unknown fields are ignored, spec §2.6). Scalars go through [`super::lenient`]
//! so `"bidfloor":"0.5"` or `"devicetype":"4"` read as numbers and a wrong-typed scalar
//! reads as absent. Required fields are `Option` here: [`super::validate`] decides.
//! Lists are [`List`]s holding their usual length inline (one imp, two formats, two
//! strings, eight codes), so a request allocates only for its longer lists.

use super::lenient;
use super::list::List;
use serde::Deserialize;
use simd_json::prelude::*;
use std::borrow::Cow;

/// A list of strings, two of them inline (currencies, categories, blocked domains, ...).
pub type StrList<'a> = List<Cow<'a, str>, 2>;

/// A list of small codes (protocols, APIs, blocked attributes), eight of them inline.
pub type Codes<T> = List<T, 8>;

/// How the exchange prices the winning bid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuctionType {
    /// `at = 1`: the winner pays its bid.
    FirstPrice,
    /// `at = 2`: the winner pays about the second bid (or the floor), never above its own.
    SecondPrice,
}

/// A 0/1 (or boolean, or "0"/"1") flag in an `ext` object.
fn ext_flag(ext: Option<&Ext<'_>>, key: &str) -> Option<bool> {
    let v = ext?.get(key)?;
    v.as_bool()
        .or_else(|| v.as_i64().and_then(|i| matches!(i, 0 | 1).then_some(i == 1)))
        .or_else(|| v.as_str().and_then(|s| matches!(s, "0" | "1").then_some(s == "1")))
}

/// The request's and its objects' `ext`: kept as parsed (strings borrow from the
/// body), so extensions travel with the request without a typed field for each.
pub type Ext<'a> = simd_json::BorrowedValue<'a>;

#[derive(Debug, Default, Deserialize)]
pub struct BidRequest<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::obj_list")]
    pub imp: List<Imp<'a>, 1>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub site: Option<Site<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub app: Option<App<'a>>,
    /// Digital out-of-home inventory (2.6); at most one of site, app, dooh.
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub dooh: Option<Dooh<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub device: Option<Device<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub user: Option<User<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub regs: Option<Regs<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub source: Option<Source<'a>>,
    /// Maximum time in milliseconds the exchange waits for the answer.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub tmax: Option<u32>,
    /// Auction type: 1 first price, 2 second price plus (the default).
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub at: Option<u8>,
    /// Currencies allowed for bids (ISO-4217); empty means the exchange's default (USD).
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub cur: StrList<'a>,
    /// Blocked advertiser categories, in the `cattax` taxonomy.
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub bcat: StrList<'a>,
    /// Taxonomy of `bcat` and of the categories in the request: 1 IAB Content 1.0 (the
    /// default), 2 IAB Content 2.0, ...
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub cattax: Option<u16>,
    /// Blocked advertiser domains.
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub badv: StrList<'a>,
    /// Blocked advertiser apps (bundles or store ids).
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub bapp: StrList<'a>,
    /// Buyer seats allowed to bid; empty means any.
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub wseat: StrList<'a>,
    /// Buyer seats blocked from bidding.
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub bseat: StrList<'a>,
    /// Allowed creative languages (ISO-639-1).
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub wlang: StrList<'a>,
    /// 1 when the auction is a test and no one is billed.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub test: Option<bool>,
    /// 1 when the exchange can show all imps of the request (roadblocking).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub allimps: Option<bool>,
    #[serde(default, borrow, deserialize_with = "lenient::ext")]
    pub ext: Option<Ext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Imp<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub banner: Option<Banner<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub video: Option<Video<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub audio: Option<Audio<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub native: Option<Native<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub pmp: Option<Pmp<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub tagid: Option<Cow<'a, str>>,
    /// Minimum bid, CPM in `bidfloorcur`.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub bidfloor: Option<f64>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub bidfloorcur: Option<Cow<'a, str>>,
    /// 1 when the creative and its assets must be served over HTTPS.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub secure: Option<bool>,
    /// Seconds that may pass between the auction and the impression.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub exp: Option<u32>,
    /// 1 for an interstitial or full-screen slot.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub instl: Option<bool>,
    /// 1 when the user is rewarded for viewing.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub rwdd: Option<bool>,
    #[serde(default, borrow, deserialize_with = "lenient::ext")]
    pub ext: Option<Ext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Banner<'a> {
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub w: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub h: Option<u32>,
    #[serde(default, deserialize_with = "lenient::obj_list")]
    pub format: List<FormatSize, 2>,
    /// Blocked banner types (1 XHTML text, 2 XHTML banner, 3 JavaScript, 4 iframe).
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub btype: Codes<u8>,
    /// Blocked creative attributes (OpenRTB / AdCOM creative attribute codes).
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub battr: Codes<u16>,
    /// Ad position on screen (0 unknown, 1 above the fold, 3 below, ...).
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub pos: Option<u8>,
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub mimes: StrList<'a>,
    /// Supported API frameworks (MRAID, OMID, ...).
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub api: Codes<u16>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FormatSize {
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub w: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub h: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Video<'a> {
    /// Content MIME types the player accepts; empty means unknown (any).
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub mimes: StrList<'a>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub w: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub h: Option<u32>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub minduration: Option<u32>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub maxduration: Option<u32>,
    /// Supported video protocols (2 VAST 2.0, 3 VAST 3.0, 7 VAST 4.0, ...); empty means unknown (any).
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub protocols: Codes<u16>,
    /// 2.5 placement type (1 in-stream, ...); superseded by `plcmt`.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub placement: Option<u8>,
    /// 2.6 placement subtype (1 instream, 2 accompanying content, 3 interstitial, 4 no-content standalone).
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub plcmt: Option<u8>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub linearity: Option<u8>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub skip: Option<bool>,
    /// Seconds after content start (0 pre-roll, -1 mid-roll, -2 post-roll).
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub startdelay: Option<i32>,
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub battr: Codes<u16>,
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub api: Codes<u16>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Audio<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub mimes: StrList<'a>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub minduration: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub maxduration: Option<u32>,
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub protocols: Codes<u16>,
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub battr: Codes<u16>,
    /// 1 music service, 2 FM/AM broadcast, 3 podcast.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub feed: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Native<'a> {
    /// The Native Ads request: a JSON string as the spec says, or an object as some
    /// exchanges send it. Read by [`super::native`].
    #[serde(default, deserialize_with = "super::native::request_field")]
    pub request: Option<super::native::NativeRequest>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub ver: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub battr: Codes<u16>,
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub api: Codes<u16>,
}

/// Private marketplace: the deals an imp may be bought through.
#[derive(Debug, Default, Deserialize)]
pub struct Pmp<'a> {
    /// 1 when only bids on the listed deals may win; 0 or absent when the open auction
    /// is allowed too.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub private_auction: Option<bool>,
    #[serde(default, borrow, deserialize_with = "lenient::obj_list")]
    pub deals: List<Deal<'a>, 1>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Deal<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    /// The deal's floor, CPM in `bidfloorcur`; it takes precedence over the imp's.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub bidfloor: Option<f64>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub bidfloorcur: Option<Cow<'a, str>>,
    /// Auction type of the deal: 1 first price, 2 second price, 3 fixed price (the floor).
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub at: Option<u8>,
    /// Seats allowed to bid on the deal; empty means any.
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub wseat: StrList<'a>,
    /// Advertiser domains allowed on the deal; empty means any.
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub wadomain: StrList<'a>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Publisher<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub cat: StrList<'a>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub domain: Option<Cow<'a, str>>,
}

/// What the user is looking at or listening to.
#[derive(Debug, Default, Deserialize)]
pub struct Content<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub title: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub cat: StrList<'a>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub language: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub livestream: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Site<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub domain: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub page: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str", rename = "ref")]
    pub referrer: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub cat: StrList<'a>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub publisher: Option<Publisher<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub content: Option<Content<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::ext")]
    pub ext: Option<Ext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct App<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub bundle: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub storeurl: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub ver: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub cat: StrList<'a>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub publisher: Option<Publisher<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub content: Option<Content<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::ext")]
    pub ext: Option<Ext<'a>>,
}

/// A digital out-of-home screen (OpenRTB 2.6 §3.2.23).
#[derive(Debug, Default, Deserialize)]
pub struct Dooh<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::str_list")]
    pub venuetype: StrList<'a>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub domain: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub publisher: Option<Publisher<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub content: Option<Content<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::ext")]
    pub ext: Option<Ext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Device<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub ua: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub ip: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub ipv6: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub devicetype: Option<u8>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub make: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub model: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub os: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub osv: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub language: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub connectiontype: Option<u8>,
    /// Advertising id (IDFA / AAID), when the user allows it.
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub ifa: Option<Cow<'a, str>>,
    /// 1 when the user has limited ad tracking.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub lmt: Option<bool>,
    /// 1 for "do not track".
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub dnt: Option<bool>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub geo: Option<Geo<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::ext")]
    pub ext: Option<Ext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Geo<'a> {
    /// ISO-3166-1 alpha-3.
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub country: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub region: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub city: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub zip: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub lat: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub lon: Option<f64>,
    /// Local time as +/- minutes from UTC.
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub utcoffset: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct User<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub buyeruid: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::obj_list")]
    pub data: List<Data<'a>, 1>,
    /// Extended identifiers (2.6; 2.5 carried them in `user.ext.eids`).
    #[serde(default, borrow, deserialize_with = "lenient::obj_list")]
    pub eids: List<Eid<'a>, 2>,
    /// The GDPR consent string (2.6; 2.5 carried it in `user.ext.consent`).
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub consent: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::ext")]
    pub ext: Option<Ext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Eid<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub source: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::obj_list")]
    pub uids: List<Uid<'a>, 1>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Uid<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub atype: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Data<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::obj_list")]
    pub segment: List<Segment<'a>, 2>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Segment<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub id: Option<Cow<'a, str>>,
}

/// Regulations that apply to the request.
#[derive(Debug, Default, Deserialize)]
pub struct Regs<'a> {
    /// 1 when the US COPPA applies: no personal data may be used.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub coppa: Option<bool>,
    /// 1 when the GDPR applies (2.6; 2.5 carried it in `regs.ext.gdpr`).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub gdpr: Option<bool>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub us_privacy: Option<Cow<'a, str>>,
    /// Global Privacy Platform string and the sections that apply.
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub gpp: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub gpp_sid: Codes<u16>,
    #[serde(default, borrow, deserialize_with = "lenient::ext")]
    pub ext: Option<Ext<'a>>,
}

/// Where the request came from: the transaction id and the supply chain.
#[derive(Debug, Default, Deserialize)]
pub struct Source<'a> {
    /// 1 when the exchange makes the final sale decision (upstream decisioning).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub fd: Option<bool>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub tid: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub pchain: Option<Cow<'a, str>>,
    /// The supply chain (2.6; 2.5 carried it in `source.ext.schain`).
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pub schain: Option<SupplyChain<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient::ext")]
    pub ext: Option<Ext<'a>>,
}

/// sellers.json supply chain: every party that resold the impression.
#[derive(Debug, Default, Deserialize)]
pub struct SupplyChain<'a> {
    /// 1 when the chain goes back to the owner of the inventory.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub complete: Option<bool>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub ver: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::obj_list")]
    pub nodes: List<SupplyChainNode<'a>, 2>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SupplyChainNode<'a> {
    /// The advertising system's domain.
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub asi: Option<Cow<'a, str>>,
    /// The seller's id in that system.
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub sid: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_str")]
    pub rid: Option<Cow<'a, str>>,
    /// 1 when this node handles the payment.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub hp: Option<bool>,
}

impl<'a> BidRequest<'a> {
    /// The publisher of the site, app or screen.
    fn publisher(&self) -> Option<&Publisher<'a>> {
        let from_site = self.site.as_ref().and_then(|s| s.publisher.as_ref());
        let from_app = self.app.as_ref().and_then(|a| a.publisher.as_ref());
        let from_dooh = self.dooh.as_ref().and_then(|d| d.publisher.as_ref());
        from_site.or(from_app).or(from_dooh)
    }

    /// Publisher id of the site, app or screen.
    pub fn publisher_id(&self) -> Option<&str> {
        self.publisher().and_then(|p| p.id.as_deref())
    }

    /// Site domain, app bundle, or screen domain.
    pub fn inventory_domain(&self) -> Option<&str> {
        match (&self.site, &self.app, &self.dooh) {
            (Some(site), _, _) => site.domain.as_deref(),
            (None, Some(app), _) => app.bundle.as_deref(),
            (None, None, Some(dooh)) => dooh.domain.as_deref(),
            (None, None, None) => None,
        }
    }

    /// Content categories of the site or app (for a screen, of its publisher).
    pub fn inventory_cats(&self) -> &[Cow<'a, str>] {
        match (&self.site, &self.app, &self.dooh) {
            (Some(site), _, _) => &site.cat,
            (None, Some(app), _) => &app.cat,
            (None, None, Some(dooh)) => dooh.publisher.as_ref().map(|p| p.cat.as_slice()).unwrap_or_default(),
            (None, None, None) => &[],
        }
    }

    /// The auction type: 1 first price, 2 second price (the default, and what any
    /// other code is read as, since paying at most our bid is safe under both).
    pub fn auction_type(&self) -> AuctionType {
        match self.at {
            Some(1) => AuctionType::FirstPrice,
            _ => AuctionType::SecondPrice,
        }
    }

    /// The category taxonomy of `bcat` and the request's categories: 1 (IAB Content
    /// Taxonomy 1.0) unless `cattax` says otherwise.
    pub fn category_taxonomy(&self) -> u16 {
        self.cattax.unwrap_or(1)
    }

    /// True when the GDPR applies: `regs.gdpr`, or 2.5's `regs.ext.gdpr`.
    pub fn gdpr_applies(&self) -> bool {
        let Some(regs) = &self.regs else { return false };
        regs.gdpr.or_else(|| ext_flag(regs.ext.as_ref(), "gdpr")).unwrap_or(false)
    }

    /// The TCF consent string: `user.consent`, or 2.5's `user.ext.consent`.
    pub fn consent(&self) -> Option<&str> {
        let user = self.user.as_ref()?;
        let from_ext = || user.ext.as_ref().and_then(|e| e.get("consent")).and_then(|v| v.as_str());
        user.consent.as_deref().or_else(from_ext).filter(|c| !c.is_empty())
    }

    /// Whether user-level data (user id, segments) may be used to bid. Not when COPPA
    /// applies, when the device limits ad tracking or sends do-not-track, or when the
    /// GDPR applies and no consent string came with the request. ctrbid does not decode
    /// TCF strings: a consent string present is taken as the exchange's assurance.
    pub fn may_personalise(&self) -> bool {
        let coppa = self.regs.as_ref().and_then(|r| r.coppa).unwrap_or(false);
        let device = self.device.as_ref();
        let limited = device.is_some_and(|d| d.lmt == Some(true) || d.dnt == Some(true));
        let gdpr_without_consent = self.gdpr_applies() && self.consent().is_none();
        !(coppa || limited || gdpr_without_consent)
    }

    /// `source.schain.complete`, or 2.5's `source.ext.schain.complete`; `None` when the
    /// request carries no supply chain.
    pub fn schain_complete(&self) -> Option<bool> {
        let source = self.source.as_ref()?;
        match &source.schain {
            Some(chain) => Some(chain.complete.unwrap_or(false)),
            None => {
                let chain = source.ext.as_ref()?.get("schain")?;
                Some(ext_flag(Some(chain), "complete").unwrap_or(false))
            }
        }
    }

    pub fn country(&self) -> Option<&str> {
        self.device.as_ref()?.geo.as_ref()?.country.as_deref()
    }

    pub fn device_type(&self) -> Option<u8> {
        self.device.as_ref()?.devicetype
    }

    pub fn os(&self) -> Option<&str> {
        self.device.as_ref()?.os.as_deref()
    }

    /// Minutes east of UTC of the user's clock; 0 when unknown.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.device.as_ref().and_then(|d| d.geo.as_ref()).and_then(|g| g.utcoffset).unwrap_or(0)
    }

    /// The user's segment ids in order of appearance across `user.data`.
    /// `user.id`, else `user.buyeruid`, where the request allows personal data
    /// ([`BidRequest::may_personalise`]); the user key of features and the event log.
    pub fn personal_user_id(&self) -> Option<&str> {
        let user = self.user.as_ref().filter(|_| self.may_personalise())?;
        user.id.as_deref().or(user.buyeruid.as_deref())
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.user.iter().flat_map(|u| u.data.iter()).flat_map(|d| d.segment.iter()).filter_map(|s| s.id.as_deref())
    }
}

impl Banner<'_> {
    /// Every size the slot accepts: `w`/`h` first, then `format[]`.
    pub fn sizes(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let main = self.w.zip(self.h);
        main.into_iter().chain(self.format.iter().filter_map(|f| f.w.zip(f.h)))
    }
}
