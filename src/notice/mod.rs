//! Notices: the win, billing and loss URLs ctrbid signs into `nurl`, `burl` and `lurl`,
//! the click URL it puts in the creative's markup, the conversion postback, and what
//! happens when each is called.
//!
//! Every notice URL carries its terms in the query (bid id, imp id, campaign, creative,
//! deal, currency, the highest price the exchange may report — our bid —, the Unix
//! second the notice URLs expire and the one the click URL expires, whether the auction
//! was a test, and for a frequency-capped bid the user's cap key) and an HMAC-SHA256 tag over them ([`sign`]), one tag per bid for its four
//! URLs. The exchange fills in the OpenRTB macros we leave in the URL:
//! `${AUCTION_PRICE}` and `${AUCTION_CURRENCY}` in win and billing notices,
//! `${AUCTION_LOSS}` and `${AUCTION_MIN_TO_WIN}` in loss notices, `${AUCTION_ID}` in all.
//!
//! A notice is applied only when its tag verifies (else `forged`), it has not expired
//! (`expired`), its price is a number within `[0, our bid]` in the signed currency
//! (`price_out_of_bounds` / `malformed`), and the same (kind, bid) was not applied
//! before ([`ledger`]; else `duplicate`). Billing is therefore applied once however often
//! it arrives: a repeat is answered 200 (exchanges retry billing until they see success)
//! but changes nothing. Every outcome is counted by kind (`ctrbid_notices_total`).
//!
//! **Clicks and conversions.** `GET /click` (the URL in the markup, valid until the
//! signed click expiry, `notices.click_ttl_s` after the bid) records the click once per
//! bid and redirects the user to the campaign's landing page with a signed click id
//! ([`click`]); a repeated click still redirects. `GET|POST /conv?click=<id>[&v=<USD>]`
//! records one conversion per click within `notices.attribution_window_s` of it
//! (later: `expired`; a repeat is answered 200 and changes nothing, as billing).
//!
//! Checking and applying are two steps ([`Notices::check`], [`Notices::apply`]) so that
//! the bidder can write the notice to the event log in between: a notice is applied,
//! and answered as accepted, only once its record is durable; when the log fails the
//! ledger place is given back ([`Notices::release`]) and the sender's retry is
//! checked afresh.
//!
//! Applying a billing notice adds the clearing price (CPM / 1000, in USD) to the
//! campaign's spend for the day ([`spend`]); a campaign whose spend reaches its
//! `daily_budget` stops bidding until the next UTC day of the auction clock. Test
//! auctions (`test = 1`) are never charged.

pub mod click;
pub mod ledger;
mod query;
pub mod sign;
pub mod spend;

use crate::aggregates::Audience;
use crate::catalog::Selector;
use crate::currency::Rates;
use crate::events::{AggStamp, NoticeKind, NoticeRecord};
use crate::openrtb::response::push_query_value;
use click::ClickId;
use ledger::{Ledger, Recorded};
pub use query::percent_decode;
use query::{filled, parse_query};
use serde::Serialize;
use sign::{Message, Signer};
use spend::Spend;
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What comes back about a bid: the notice kinds of the event log, each on its own path.
pub type Kind = NoticeKind;

impl NoticeKind {
    /// The path this notice is served on.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Win => "/win",
            Kind::Bill => "/bill",
            Kind::Loss => "/loss",
            Kind::Click => "/click",
            Kind::Conv => "/conv",
        }
    }

    pub fn from_path(path: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.path() == path)
    }

    fn index(self) -> usize {
        self as usize - 1
    }
}

/// What a notice URL promises; every field is signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Terms<'a> {
    pub bid: u64,
    /// The model variant that priced the bid and its pCTR ([`ModelTag`]); `None` in
    /// URLs signed before variants were carried.
    pub model: Option<ModelTag<'a>>,
    pub imp: Cow<'a, str>,
    pub campaign: Cow<'a, str>,
    pub creative: Cow<'a, str>,
    /// Empty when the bid is not on a deal.
    pub deal: Cow<'a, str>,
    pub currency: Cow<'a, str>,
    /// Our bid, CPM in `currency`, in millionths: the highest price a notice may report.
    pub max_price_micros: u64,
    /// Unix second after which the win, billing and loss URLs are refused.
    pub expires: i64,
    /// Unix second after which the click URL is refused.
    pub click_expires: i64,
    pub test: bool,
    /// The frequency-cap key of the bid's user ([`crate::freqcap::user_key`], a hash,
    /// never the id itself) when the bid is capped: a win that comes after the bid's
    /// hold lapsed still counts under its caps.
    pub user: Option<u64>,
    /// Who saw the impression and where ([`Audience`]): what the bid's win, click and
    /// conversion count for in the aggregates. Empty when the request named neither.
    pub audience: Audience,
}

impl Terms<'_> {
    /// What the tag covers. The notice kind is not part of it: one tag serves the
    /// win, billing, loss and click URLs of a bid (whoever holds one holds all four),
    /// and the ledger keeps the kinds apart.
    fn message(&self) -> Message {
        let mut m = Message::with_capacity(176);
        m.field(b"ctrbid-notice-v2")
            .field(&self.bid.to_le_bytes())
            .field(self.imp.as_bytes())
            .field(self.campaign.as_bytes())
            .field(self.creative.as_bytes())
            .field(self.deal.as_bytes())
            .field(self.currency.as_bytes())
            .field(&self.max_price_micros.to_le_bytes())
            .field(&self.expires.to_le_bytes())
            .field(&self.click_expires.to_le_bytes())
            .field(&[u8::from(self.test)]);
        // Only URLs with a user key sign one more field, so URLs signed before keys
        // were carried still verify; adding or removing `u` breaks the tag either way.
        if let Some(user) = self.user {
            m.field(&user.to_le_bytes());
        }
        // The same for the audience, under a label of its own (a user key is 8 bytes,
        // the label 1 and the audience 16: no field of one reads as the other's).
        if !self.audience.is_empty() {
            m.field(b"g").field(&self.audience.to_bytes());
        }
        // And the model, labelled: a variant name is at most 24 bytes, never 1 or 8.
        if let Some(model) = &self.model {
            m.field(b"mv").field(model.variant.as_bytes()).field(&model.pctr_ppm.to_le_bytes());
        }
        m
    }
}

/// Which model variant priced a bid ([`crate::variants`]) and the click probability it
/// predicted for the bid's creative, in millionths: what the bid's win adds to the
/// variant's expected clicks. URL form `<variant>.<pctr_ppm>` (a variant name has no
/// `.`); a click id carries the variant alone, its conversion needs no pCTR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelTag<'a> {
    pub variant: Cow<'a, str>,
    pub pctr_ppm: u32,
}

impl ModelTag<'_> {
    /// The tag of a bid priced at `pctr` (clamped to 0..=1).
    pub fn of(variant: &str, pctr: f32) -> ModelTag<'_> {
        ModelTag { variant: Cow::Borrowed(variant), pctr_ppm: (f64::from(pctr).clamp(0.0, 1.0) * 1e6).round() as u32 }
    }

    pub fn into_owned(self) -> ModelTag<'static> {
        ModelTag { variant: Cow::Owned(self.variant.into_owned()), pctr_ppm: self.pctr_ppm }
    }

    fn parse(param: &str) -> Result<ModelTag<'_>, &'static str> {
        let (variant, ppm) = param.split_once('.').ok_or("mv (model) is not <variant>.<pctr ppm>")?;
        let pctr_ppm =
            ppm.parse::<u32>().ok().filter(|&p| p <= 1_000_000).ok_or("mv (model): pctr is not 0 to 1000000")?;
        if !crate::variants::valid_name(variant) {
            return Err("mv (model): not a variant name");
        }
        Ok(ModelTag { variant: Cow::Borrowed(variant), pctr_ppm })
    }
}

/// How a notice was answered. Each is one metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Applied now.
    Accepted,
    /// Applied before; not applied again.
    Duplicate,
    /// The tag does not match the terms.
    Forged,
    /// The URL's time is up (for a conversion: its click is older than the attribution
    /// window).
    Expired,
    /// A field is missing or unreadable (including a macro the exchange left unfilled).
    Malformed(&'static str),
    /// The reported price is above our bid or negative.
    PriceOutOfBounds,
    /// Too many notices are being tracked to check this one for replay.
    LedgerFull,
    /// The event log could not make the record durable; nothing was applied.
    LogFailed,
    /// The bid's outcome was already reported the other way: a loss after its win or
    /// billing, or a win or billing after its loss. Nothing is applied.
    Contradicts(&'static str),
}

impl Verdict {
    const LABELS: [&'static str; 9] = [
        "accepted",
        "duplicate",
        "forged",
        "expired",
        "malformed",
        "price_out_of_bounds",
        "ledger_full",
        "log_failed",
        "contradicts",
    ];

    fn index(&self) -> usize {
        match self {
            Verdict::Accepted => 0,
            Verdict::Duplicate => 1,
            Verdict::Forged => 2,
            Verdict::Expired => 3,
            Verdict::Malformed(_) => 4,
            Verdict::PriceOutOfBounds => 5,
            Verdict::LedgerFull => 6,
            Verdict::LogFailed => 7,
            Verdict::Contradicts(_) => 8,
        }
    }

    pub fn label(&self) -> &'static str {
        Verdict::LABELS[self.index()]
    }
}

/// Settings of the notice path, from `[notices]`.
#[derive(Debug, Clone)]
pub struct NoticeSettings {
    /// Scheme, host and port the URLs point at, without a trailing `/`.
    pub base_url: String,
    pub signer: Signer,
    /// Lifetime of a URL when the imp gives no `exp`, in seconds.
    pub ttl_s: u32,
    /// Bounds for an imp's `exp`.
    pub min_ttl_s: u32,
    pub max_ttl_s: u32,
    /// Lifetime of a click URL, from the bid, in seconds.
    pub click_ttl_s: u32,
    /// A conversion counts within this many seconds of its click.
    pub attribution_window_s: u32,
    pub max_entries: usize,
}

/// Signs notice URLs and checks and applies the notices that come back.
#[derive(Debug)]
pub struct Notices {
    settings: NoticeSettings,
    ledger: Ledger,
    spend: Spend,
    counts: [[AtomicU64; Verdict::LABELS.len()]; Kind::ALL.len()],
    /// Billed clearing prices, in micro-USD (CPM / 1000 per impression).
    billed_micro_usd: AtomicU64,
    /// The UTC day the campaigns' "budget spent" flags belong to; `i64::MIN` before the
    /// first tick.
    flags_day: AtomicI64,
}

/// The notice URLs of one bid, held as one string: the click URL. The win, billing and
/// loss URLs share its signed query and differ in path and macros, so they are written
/// out from it where they are needed (serialised into the response as `nurl`, `burl`
/// and `lurl`, see [`NoticeUrls::url`]): one allocation for four URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeUrls {
    /// `{base}/click?{query}`: where the creative's click goes (`${CTRBID_CLICK_URL}`
    /// in its markup).
    click: String,
    /// Where the base URL ends in `click`.
    base_end: usize,
    /// Where the query (its `?`) starts in `click`.
    query_at: usize,
}

/// The win, billing and loss URLs' macros, after the shared query.
const PRICE_MACROS: &str = "&a=${AUCTION_ID}&p=${AUCTION_PRICE}&pc=${AUCTION_CURRENCY}";
const LOSS_MACROS: &str = "&a=${AUCTION_ID}&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}";

impl NoticeUrls {
    /// The URLs for a `base` and a `query` (from its `?`) written elsewhere: for tests
    /// and the fuzz targets; [`Notices::urls`] signs and writes the query in place.
    pub fn from_parts(base: &str, query: &str) -> NoticeUrls {
        let click = format!("{base}{}{query}", Kind::Click.path());
        NoticeUrls { click, base_end: base.len(), query_at: base.len() + Kind::Click.path().len() }
    }

    /// Where the creative's click goes.
    pub fn click(&self) -> &str {
        &self.click
    }

    /// The notice URL of `kind` (win, billing or loss), written out when displayed.
    pub fn url(&self, kind: Kind) -> NoticeUrl<'_> {
        let macros = match kind {
            Kind::Loss => LOSS_MACROS,
            Kind::Click | Kind::Conv => "",
            Kind::Win | Kind::Bill => PRICE_MACROS,
        };
        NoticeUrl { base: &self.click[..self.base_end], path: kind.path(), query: &self.click[self.query_at..], macros }
    }

    /// The win notice URL (`nurl`), as a string.
    pub fn nurl(&self) -> String {
        self.url(Kind::Win).to_string()
    }

    /// The billing notice URL (`burl`), as a string.
    pub fn burl(&self) -> String {
        self.url(Kind::Bill).to_string()
    }

    /// The loss notice URL (`lurl`), as a string.
    pub fn lurl(&self) -> String {
        self.url(Kind::Loss).to_string()
    }
}

/// One notice URL in its parts: `{base}{path}{query}{macros}`.
#[derive(Debug, Clone, Copy)]
pub struct NoticeUrl<'u> {
    base: &'u str,
    path: &'static str,
    query: &'u str,
    macros: &'static str,
}

impl fmt::Display for NoticeUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base)?;
        f.write_str(self.path)?;
        f.write_str(self.query)?;
        f.write_str(self.macros)
    }
}

impl Serialize for NoticeUrl<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `nurl`, `burl` and `lurl`, as a bid's fields (flattened into it).
impl Serialize for NoticeUrls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("NoticeUrls", 3)?;
        st.serialize_field("nurl", &self.url(Kind::Win))?;
        st.serialize_field("burl", &self.url(Kind::Bill))?;
        st.serialize_field("lurl", &self.url(Kind::Loss))?;
        st.end()
    }
}

/// A notice that passed every check and holds its (kind, bid) place in the ledger: it
/// is [`Notices::apply`]ed, or [`Notices::release`]d when it cannot be logged.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub kind: Kind,
    pub bid: u64,
    pub campaign: String,
    pub creative: String,
    /// Empty for a conversion.
    pub imp: String,
    /// Empty for a conversion.
    pub currency: String,
    pub auction_id: String,
    /// Win, billing: the clearing price, CPM in `currency`.
    pub price: Option<f64>,
    pub test: bool,
    /// Loss: `${AUCTION_LOSS}` and `${AUCTION_MIN_TO_WIN}` when filled in.
    pub loss_reason: Option<i32>,
    pub min_to_win: Option<f64>,
    /// Conversion: its click's time (Unix ms) and its value (USD) when given.
    pub click_ms: Option<i64>,
    pub value: Option<f64>,
    /// Win, billing, loss, click: the capped user's key the URL carries.
    pub user: Option<u64>,
    /// Who saw the impression and where: from the URL's terms, or a conversion's click id.
    pub audience: Audience,
    /// The variant that made the bid, and its pCTR (0 for a conversion: its click id
    /// carries the variant alone).
    pub model: Option<ModelTag<'static>>,
    /// Win, billing: no notice of the other kind was accepted for the bid before this
    /// one, so this is the first word of its impression (a win and its bill are one
    /// impression; they may arrive in either order, or alone).
    pub first_of_impression: bool,
    /// Until when the ledger keeps the entry, Unix seconds.
    pub ledger_until: i64,
}

impl Checked {
    /// What the event log records of this notice, received at `ts_ms`; `usd` is what
    /// billing charged (see [`Applied::charged_usd`]); `agg` what it added to the
    /// aggregates.
    pub fn record(&self, ts_ms: i64, charged_usd: f64, agg: Option<AggStamp>) -> NoticeRecord<'_> {
        NoticeRecord {
            kind: self.kind,
            ts_ms,
            bid: self.bid,
            campaign: &self.campaign,
            creative: &self.creative,
            imp_id: &self.imp,
            currency: &self.currency,
            auction_id: &self.auction_id,
            price: self.price.unwrap_or(f64::NAN),
            usd: match self.kind {
                Kind::Bill => charged_usd,
                Kind::Conv => self.value.unwrap_or(f64::NAN),
                _ => 0.0,
            },
            test: self.test,
            loss_reason: self.loss_reason.unwrap_or(-1),
            min_to_win: self.min_to_win.unwrap_or(f64::NAN),
            click_ms: self.click_ms.unwrap_or(0),
            agg,
        }
    }
}

/// What applying a notice did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Billing: added to the campaign's spend, USD (0 for a test auction).
    pub charged_usd: f64,
    /// Click: where to send the user (the landing page with the click id).
    pub location: Option<String>,
}

impl Notices {
    pub fn new(settings: NoticeSettings) -> Notices {
        let ledger = Ledger::new(settings.max_entries);
        Notices {
            settings,
            ledger,
            spend: Spend::default(),
            counts: Default::default(),
            billed_micro_usd: AtomicU64::new(0),
            flags_day: AtomicI64::new(i64::MIN),
        }
    }

    /// The URL lifetime for an imp with `exp` (seconds), clamped to the configured bounds.
    pub fn ttl_s(&self, exp: Option<u32>) -> u32 {
        exp.map_or(self.settings.ttl_s, |e| e.clamp(self.settings.min_ttl_s, self.settings.max_ttl_s))
    }

    /// The click URL lifetime, seconds.
    pub fn click_ttl_s(&self) -> u32 {
        self.settings.click_ttl_s
    }

    /// Signed win, billing, loss and click URLs for one bid: one query and one tag, four
    /// paths, in one string.
    pub fn urls(&self, t: &Terms<'_>) -> NoticeUrls {
        let base = &self.settings.base_url;
        let mut click = String::with_capacity(base.len() + Kind::Click.path().len() + 280);
        click.push_str(base);
        click.push_str(Kind::Click.path());
        let query_at = click.len();
        let _ = write!(click, "?b={:x}&i=", t.bid);
        push_query_value(&mut click, &t.imp);
        click.push_str("&c=");
        push_query_value(&mut click, &t.campaign);
        click.push_str("&cr=");
        push_query_value(&mut click, &t.creative);
        if !t.deal.is_empty() {
            click.push_str("&d=");
            push_query_value(&mut click, &t.deal);
        }
        click.push_str("&cur=");
        push_query_value(&mut click, &t.currency);
        let _ = write!(click, "&hi={}&x={}&cx={}", t.max_price_micros, t.expires, t.click_expires);
        if t.test {
            click.push_str("&t=1");
        }
        if let Some(user) = t.user {
            let _ = write!(click, "&u={user:x}");
        }
        if !t.audience.is_empty() {
            click.push_str("&g=");
            t.audience.push_param(&mut click);
        }
        if let Some(model) = &t.model {
            let _ = write!(click, "&mv={}.{}", model.variant, model.pctr_ppm);
        }
        click.push_str("&s=");
        self.settings.signer.push_sign_hex(&t.message(), &mut click);
        NoticeUrls { click, base_end: base.len(), query_at }
    }

    /// Checks and applies one notice at `now_ms` (Unix ms), without an event log:
    /// [`Notices::check`] then [`Notices::apply`], counted.
    pub fn handle(&self, kind: Kind, query: &str, now_ms: i64, selector: &Selector, rates: &Rates) -> Verdict {
        match self.check(kind, query, now_ms) {
            Ok(checked) => {
                self.apply(&checked, now_ms, selector, rates);
                self.count_verdict(kind, &Verdict::Accepted);
                Verdict::Accepted
            }
            Err(verdict) => {
                self.count_verdict(kind, &verdict);
                verdict
            }
        }
    }

    /// Counts how a notice was answered.
    pub fn count_verdict(&self, kind: Kind, verdict: &Verdict) {
        self.counts[kind.index()][verdict.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Every check of a notice at `now_ms`; on success its ledger place is taken (and
    /// must be applied or released). Not counted: the caller counts the final verdict.
    pub fn check(&self, kind: Kind, query: &str, now_ms: i64) -> Result<Checked, Verdict> {
        let now = crate::clock::unix_s(now_ms);
        let q = parse_query(query);
        let checked =
            if kind == Kind::Conv { self.check_conversion(&q, now_ms)? } else { self.check_bid_notice(kind, &q, now)? };
        // A bid is won or lost, not both. (Two contradicting notices racing each other
        // may both pass this look; an exchange does not send both at once.)
        let contradiction = match kind {
            Kind::Loss
                if self.ledger.contains(Kind::Win, checked.bid) || self.ledger.contains(Kind::Bill, checked.bid) =>
            {
                Some("a win or billing notice was already accepted for this bid")
            }
            Kind::Win | Kind::Bill if self.ledger.contains(Kind::Loss, checked.bid) => {
                Some("a loss notice was already accepted for this bid")
            }
            _ => None,
        };
        if let Some(why) = contradiction {
            return Err(Verdict::Contradicts(why));
        }
        let mut checked = checked;
        checked.first_of_impression = match kind {
            Kind::Win => !self.ledger.contains(Kind::Bill, checked.bid),
            Kind::Bill => !self.ledger.contains(Kind::Win, checked.bid),
            _ => false,
        };
        match self.ledger.record(kind, checked.bid, checked.ledger_until) {
            Recorded::New => Ok(checked),
            Recorded::Duplicate => Err(Verdict::Duplicate),
            Recorded::Full => Err(Verdict::LedgerFull),
        }
    }

    /// Win, billing, loss and click: the signed terms and the exchange's macros.
    fn check_bid_notice(&self, kind: Kind, q: &query::Query<'_>, now: i64) -> Result<Checked, Verdict> {
        let terms = q.terms().map_err(Verdict::Malformed)?;
        let Some(tag) = q.tag.as_deref() else { return Err(Verdict::Malformed("s (signature) is missing")) };
        if !self.settings.signer.verify_hex(&terms.message(), tag) {
            return Err(Verdict::Forged);
        }
        let until = if kind == Kind::Click { terms.click_expires } else { terms.expires };
        if now > until {
            return Err(Verdict::Expired);
        }
        // The macros each kind needs filled: the clearing price for a win and a billing
        // notice, the loss reason for a loss. An exchange that fires the URL as we sent
        // it (`${...}` still in it) has told us nothing, so nothing is recorded.
        let price = match (kind, filled(q.price.as_deref())) {
            (Kind::Win | Kind::Bill, Some(p)) => match p.trim().parse::<f64>() {
                Ok(p) if p.is_finite() => Some(p),
                _ => return Err(Verdict::Malformed("p (price) is not a number")),
            },
            (Kind::Win | Kind::Bill, None) => {
                return Err(Verdict::Malformed("p (price): ${AUCTION_PRICE} was not filled in"))
            }
            _ => None,
        };
        if kind == Kind::Loss && filled(q.loss.as_deref()).is_none() {
            return Err(Verdict::Malformed("r (loss reason): ${AUCTION_LOSS} was not filled in"));
        }
        if let Some(p) = price {
            let max = terms.max_price_micros as f64 / 1e6;
            if p < 0.0 || p > max * (1.0 + 1e-9) + 1e-9 {
                return Err(Verdict::PriceOutOfBounds);
            }
        }
        if let Some(cur) = filled(q.price_currency.as_deref()) {
            if !cur.eq_ignore_ascii_case(&terms.currency) {
                return Err(Verdict::Malformed("pc (currency) differs from the bid's currency"));
            }
        }
        let (loss_reason, min_to_win) = if kind == Kind::Loss {
            (
                filled(q.loss.as_deref()).and_then(|r| r.trim().parse::<i32>().ok()),
                filled(q.min_to_win.as_deref()).and_then(|m| m.trim().parse::<f64>().ok()).filter(|m| m.is_finite()),
            )
        } else {
            (None, None)
        };
        Ok(Checked {
            kind,
            bid: terms.bid,
            campaign: terms.campaign.into_owned(),
            creative: terms.creative.into_owned(),
            imp: terms.imp.into_owned(),
            currency: terms.currency.into_owned(),
            auction_id: filled(q.auction.as_deref()).unwrap_or_default().to_string(),
            price,
            test: terms.test,
            loss_reason,
            min_to_win,
            click_ms: None,
            value: None,
            user: terms.user,
            audience: terms.audience,
            model: terms.model.map(ModelTag::into_owned),
            first_of_impression: false,
            ledger_until: until,
        })
    }

    /// A conversion postback: a click id this bidder signed, inside the attribution window.
    fn check_conversion(&self, q: &query::Query<'_>, now_ms: i64) -> Result<Checked, Verdict> {
        let Some(token) = q.click.as_deref().filter(|t| !t.is_empty()) else {
            return Err(Verdict::Malformed("click (the click id) is missing"));
        };
        let id = match ClickId::decode(token, &self.settings.signer) {
            Ok(id) => id,
            Err(Some(why)) => return Err(Verdict::Malformed(why)),
            Err(None) => return Err(Verdict::Forged),
        };
        let window_ms = i64::from(self.settings.attribution_window_s) * 1000;
        if now_ms > id.click_ms.saturating_add(window_ms) {
            return Err(Verdict::Expired);
        }
        if now_ms < id.click_ms {
            return Err(Verdict::Malformed("the conversion is earlier than its click"));
        }
        let value = match filled(q.value.as_deref()) {
            None => None,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
                _ => return Err(Verdict::Malformed("v (value) is not a number of USD at least 0")),
            },
        };
        Ok(Checked {
            kind: Kind::Conv,
            bid: id.bid,
            campaign: id.campaign.into_owned(),
            creative: id.creative.into_owned(),
            imp: String::new(),
            currency: String::new(),
            auction_id: String::new(),
            price: None,
            test: false,
            loss_reason: None,
            min_to_win: None,
            click_ms: Some(id.click_ms),
            value,
            user: None,
            audience: id.audience,
            model: id.variant.map(|v| ModelTag { variant: Cow::Owned(v.into_owned()), pctr_ppm: 0 }),
            first_of_impression: false,
            ledger_until: crate::clock::unix_s(id.click_ms.saturating_add(window_ms)),
        })
    }

    /// What applying a checked notice charges the campaign, USD: the clearing price of
    /// one impression (CPM / 1000) for a billing notice of a real auction, else 0.
    pub fn charge_usd(&self, c: &Checked, rates: &Rates) -> f64 {
        match (c.kind, c.price) {
            (Kind::Bill, Some(cpm)) if !c.test => cpm / 1000.0 * rates.usd_per_unit(&c.currency).unwrap_or(0.0),
            _ => 0.0,
        }
    }

    /// Applies a checked notice at `now_ms`: billing adds to the campaign's spend (and
    /// stops it at its daily budget), a click is given its landing page.
    pub fn apply(&self, c: &Checked, now_ms: i64, selector: &Selector, rates: &Rates) -> Applied {
        let mut applied = Applied { charged_usd: 0.0, location: None };
        match c.kind {
            Kind::Bill if !c.test => {
                let usd = self.charge_usd(c, rates);
                applied.charged_usd = usd;
                self.billed_micro_usd.fetch_add((usd * 1e6).round() as u64, Ordering::Relaxed);
                let today = self.spend.add(&c.campaign, usd, crate::clock::unix_s(now_ms));
                if let Some(ci) = selector.campaign_index(&c.campaign) {
                    let budget = selector.catalog().campaigns[ci as usize].daily_budget;
                    if today >= budget && !selector.set_exhausted(ci, true) {
                        eprintln!(
                            "ctrbid: campaign {} reached its daily budget ({today:.6} of {budget} USD spent): it stops \
                             bidding until the next UTC day",
                            c.campaign
                        );
                    }
                }
            }
            Kind::Click => {
                let id = ClickId {
                    bid: c.bid,
                    click_ms: now_ms,
                    campaign: Cow::Borrowed(&c.campaign),
                    creative: Cow::Borrowed(&c.creative),
                    audience: c.audience,
                    variant: c.model.as_ref().map(|m| Cow::Borrowed(&*m.variant)),
                };
                let landing = self.landing(selector, &c.campaign);
                applied.location = Some(click::landing_with_click(&landing, &id.encode(&self.settings.signer)));
            }
            _ => {}
        }
        applied
    }

    /// Where a repeated click goes: the user still wants the page, and gets it with a
    /// click id of this moment; the click is not recorded again (and one conversion per
    /// bid is all the ledger lets through, whichever click id it comes with). Only for
    /// a query [`Notices::check`] found a duplicate, so its signature has been verified.
    pub fn repeat_click_location(&self, query: &str, now_ms: i64, selector: &Selector) -> Option<String> {
        let terms = parse_query(query).terms().ok()?;
        let id = ClickId {
            bid: terms.bid,
            click_ms: now_ms,
            campaign: terms.campaign,
            creative: terms.creative,
            audience: terms.audience,
            variant: terms.model.map(|m| m.variant),
        };
        let landing = self.landing(selector, &id.campaign);
        Some(click::landing_with_click(&landing, &id.encode(&self.settings.signer)))
    }

    /// How far back the notices that still matter go: the longest a notice URL, a click
    /// URL or a conversion's attribution window lives, or a day of spend, whichever is
    /// longest (a minute more for clocks that disagree).
    pub fn restore_horizon(&self) -> std::time::Duration {
        let s = &self.settings;
        let longest = [s.max_ttl_s, s.click_ttl_s, s.attribution_window_s].into_iter().max().unwrap_or(0);
        std::time::Duration::from_secs(u64::from(longest).max(spend::SECONDS_PER_DAY as u64) + 60)
    }

    /// Takes back one notice record from the event log at start-up (see
    /// [`crate::events::restore`]): its ledger place and, for billing, the spend. The
    /// record does not carry its URL's expiry; it is taken as the latest it can be (the
    /// URL was signed at most `max_ttl_s`, a click URL `click_ttl_s`, before it was
    /// used), so the entry outlives the URL, never the other way round. A record the
    /// ledger already holds (a logged notice whose answer failed, then retried) adds
    /// nothing. Returns whether it was taken.
    pub fn restore(&self, r: &NoticeRecord<'_>) -> bool {
        let received = crate::clock::unix_s(r.ts_ms);
        let until = match r.kind {
            Kind::Conv => {
                crate::clock::unix_s(r.click_ms.saturating_add(i64::from(self.settings.attribution_window_s) * 1000))
            }
            Kind::Click => received.saturating_add(i64::from(self.settings.click_ttl_s)),
            Kind::Win | Kind::Bill | Kind::Loss => received.saturating_add(i64::from(self.settings.max_ttl_s)),
        };
        if self.ledger.record(r.kind, r.bid, until) == Recorded::Duplicate {
            return false;
        }
        if r.kind == Kind::Bill && !r.test && r.usd.is_finite() && r.usd > 0.0 {
            self.spend.add(r.campaign, r.usd, received);
        }
        true
    }

    /// Gives back the ledger place of a notice that was checked but could not be
    /// applied, so that the sender's retry is checked afresh.
    pub fn release(&self, c: &Checked) {
        self.ledger.forget(c.kind, c.bid);
    }

    /// Where a click on a campaign's ad goes: its `landing_url`, else its advertiser's
    /// domain; a campaign no longer in the catalog lands on the bidder's own base URL.
    fn landing(&self, selector: &Selector, campaign: &str) -> String {
        match selector.campaign_index(campaign).map(|ci| &selector.catalog().campaigns[ci as usize]) {
            Some(c) => c.landing(),
            None => format!("{}/", self.settings.base_url),
        }
    }

    /// Once a second: drops expired ledger entries; at a new UTC day, clears spend and
    /// lets every campaign bid again.
    pub fn tick(&self, now: i64, selector: &Selector) {
        self.ledger.sweep(now);
        self.spend.roll(now);
        let day = now.div_euclid(spend::SECONDS_PER_DAY);
        if self.flags_day.swap(day, Ordering::Relaxed) < day {
            selector.clear_exhausted();
            self.apply_spend(selector);
        }
    }

    /// Marks the campaigns of a freshly loaded catalog whose budget is already spent today.
    pub fn apply_spend(&self, selector: &Selector) {
        for (ci, c) in selector.catalog().campaigns.iter().enumerate() {
            selector.set_exhausted(ci as u32, self.spend.today(&c.id) >= c.daily_budget);
        }
    }

    /// Every campaign with spend today: (campaign, USD), highest first.
    pub fn spenders(&self) -> Vec<(String, f64)> {
        self.spend.campaigns()
    }

    /// Today's spend of a campaign, USD.
    pub fn spend_today(&self, campaign: &str) -> f64 {
        self.spend.today(campaign)
    }

    /// Today's spend of every campaign, USD.
    pub fn spend_total(&self) -> f64 {
        self.spend.total()
    }

    /// Notices held for replay protection.
    pub fn ledger_len(&self) -> usize {
        self.ledger.len()
    }

    pub fn count(&self, kind: Kind, verdict: &Verdict) -> u64 {
        self.counts[kind.index()][verdict.index()].load(Ordering::Relaxed)
    }

    /// Prometheus text for the notice counters.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP ctrbid_notices_total Win, billing, loss, click and conversion notices by verdict.\n");
        out.push_str("# TYPE ctrbid_notices_total counter\n");
        for kind in Kind::ALL {
            for (i, label) in Verdict::LABELS.iter().enumerate() {
                let n = self.counts[kind.index()][i].load(Ordering::Relaxed);
                let _ = writeln!(out, "ctrbid_notices_total{{kind=\"{}\",verdict=\"{label}\"}} {n}", kind.label());
            }
        }
        let _ = writeln!(
            out,
            "# HELP ctrbid_billed_usd_total Clearing prices of the billing notices this process applied, USD.\n\
             # TYPE ctrbid_billed_usd_total counter\nctrbid_billed_usd_total {:.6}",
            self.billed_micro_usd.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP ctrbid_spend_today_usd Spend of every campaign for the current UTC day, USD (restored from the event log at start-up).\n\
             # TYPE ctrbid_spend_today_usd gauge\nctrbid_spend_today_usd {:.6}",
            self.spend.total()
        );
        let _ = writeln!(
            out,
            "# HELP ctrbid_notice_ledger_entries Notices remembered for replay protection.\n\
             # TYPE ctrbid_notice_ledger_entries gauge\nctrbid_notice_ledger_entries {}",
            self.ledger.len()
        );
    }
}

#[cfg(test)]
mod tests;
