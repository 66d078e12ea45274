//! Win, billing and loss notices: the URLs ctrbid signs into `nurl`, `burl` and `lurl`,
//! and what happens when an exchange calls them.
//!
//! Every notice URL carries its terms in the query (bid id, imp id, campaign, creative,
//! deal, currency, the highest price the exchange may report — our bid —, the Unix
//! second it expires, whether the auction was a test) and an HMAC-SHA256 tag over them
//! ([`sign`]), one tag per bid for its three URLs. The exchange fills in the OpenRTB macros we leave in the URL:
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
//! Applying a billing notice adds the clearing price (CPM / 1000, in USD) to the
//! campaign's spend for the day ([`spend`]); a campaign whose spend reaches its
//! `daily_budget` stops bidding until the next UTC day. Test auctions (`test = 1`) are
//! never charged.

pub mod ledger;
pub mod sign;
pub mod spend;

use crate::catalog::Selector;
use crate::currency::Rates;
use crate::openrtb::response::push_query_value;
use ledger::{Ledger, Recorded};
use sign::{Message, Signer};
use spend::Spend;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The notices an exchange sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Win = 0,
    Bill = 1,
    Loss = 2,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Win, Kind::Bill, Kind::Loss];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Win => "win",
            Kind::Bill => "bill",
            Kind::Loss => "loss",
        }
    }

    /// The path this notice is served on.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Win => "/win",
            Kind::Bill => "/bill",
            Kind::Loss => "/loss",
        }
    }

    pub fn from_path(path: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.path() == path)
    }
}

/// What a notice URL promises; every field is signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Terms<'a> {
    pub bid: u64,
    pub imp: Cow<'a, str>,
    pub campaign: Cow<'a, str>,
    pub creative: Cow<'a, str>,
    /// Empty when the bid is not on a deal.
    pub deal: Cow<'a, str>,
    pub currency: Cow<'a, str>,
    /// Our bid, CPM in `currency`, in millionths: the highest price a notice may report.
    pub max_price_micros: u64,
    /// Unix second after which the URL is refused.
    pub expires: i64,
    pub test: bool,
}

impl Terms<'_> {
    /// What the tag covers. The notice kind is not part of it: one tag serves the
    /// win, billing and loss URLs of a bid (whoever holds one holds all three), and
    /// the ledger keeps the kinds apart.
    fn message(&self) -> Message {
        let mut m = Message::with_capacity(160);
        m.field(b"ctrbid-notice-v1")
            .field(&self.bid.to_le_bytes())
            .field(self.imp.as_bytes())
            .field(self.campaign.as_bytes())
            .field(self.creative.as_bytes())
            .field(self.deal.as_bytes())
            .field(self.currency.as_bytes())
            .field(&self.max_price_micros.to_le_bytes())
            .field(&self.expires.to_le_bytes())
            .field(&[u8::from(self.test)]);
        m
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
    /// The URL's time is up.
    Expired,
    /// A field is missing or unreadable (including a macro the exchange left unfilled).
    Malformed(&'static str),
    /// The reported price is above our bid or negative.
    PriceOutOfBounds,
    /// Too many notices are being tracked to check this one for replay.
    LedgerFull,
}

impl Verdict {
    const LABELS: [&'static str; 7] =
        ["accepted", "duplicate", "forged", "expired", "malformed", "price_out_of_bounds", "ledger_full"];

    fn index(&self) -> usize {
        match self {
            Verdict::Accepted => 0,
            Verdict::Duplicate => 1,
            Verdict::Forged => 2,
            Verdict::Expired => 3,
            Verdict::Malformed(_) => 4,
            Verdict::PriceOutOfBounds => 5,
            Verdict::LedgerFull => 6,
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
    /// The UTC day the campaigns' "budget spent" flags belong to.
    flags_day: AtomicI64,
}

/// The three URLs of one bid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeUrls {
    pub nurl: String,
    pub burl: String,
    pub lurl: String,
}

/// The query of a notice URL, decoded.
#[derive(Debug, Default)]
struct Query<'q> {
    bid: Option<Cow<'q, str>>,
    imp: Option<Cow<'q, str>>,
    campaign: Option<Cow<'q, str>>,
    creative: Option<Cow<'q, str>>,
    deal: Option<Cow<'q, str>>,
    currency: Option<Cow<'q, str>>,
    max_price: Option<Cow<'q, str>>,
    expires: Option<Cow<'q, str>>,
    test: Option<Cow<'q, str>>,
    tag: Option<Cow<'q, str>>,
    price: Option<Cow<'q, str>>,
    price_currency: Option<Cow<'q, str>>,
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
            flags_day: AtomicI64::new(unix_now().div_euclid(spend::SECONDS_PER_DAY)),
        }
    }

    /// The URL lifetime for an imp with `exp` (seconds), clamped to the configured bounds.
    pub fn ttl_s(&self, exp: Option<u32>) -> u32 {
        exp.map_or(self.settings.ttl_s, |e| e.clamp(self.settings.min_ttl_s, self.settings.max_ttl_s))
    }

    /// Signed win, billing and loss URLs for one bid: one query and one tag, three paths.
    pub fn urls(&self, t: &Terms<'_>) -> NoticeUrls {
        let mut q = String::with_capacity(224);
        let _ = write!(q, "?b={:x}&i=", t.bid);
        push_query_value(&mut q, &t.imp);
        q.push_str("&c=");
        push_query_value(&mut q, &t.campaign);
        q.push_str("&cr=");
        push_query_value(&mut q, &t.creative);
        if !t.deal.is_empty() {
            q.push_str("&d=");
            push_query_value(&mut q, &t.deal);
        }
        q.push_str("&cur=");
        push_query_value(&mut q, &t.currency);
        let _ = write!(q, "&hi={}&x={}", t.max_price_micros, t.expires);
        if t.test {
            q.push_str("&t=1");
        }
        q.push_str("&s=");
        q.push_str(&self.settings.signer.sign_hex(&t.message()));
        q.push_str("&a=${AUCTION_ID}");
        let base = &self.settings.base_url;
        let url = |kind: Kind, macros: &str| {
            let mut u = String::with_capacity(base.len() + kind.path().len() + q.len() + macros.len());
            u.push_str(base);
            u.push_str(kind.path());
            u.push_str(&q);
            u.push_str(macros);
            u
        };
        const PRICE: &str = "&p=${AUCTION_PRICE}&pc=${AUCTION_CURRENCY}";
        NoticeUrls {
            nurl: url(Kind::Win, PRICE),
            burl: url(Kind::Bill, PRICE),
            lurl: url(Kind::Loss, "&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}"),
        }
    }

    /// Checks and applies one notice. `selector` and `rates` are the serving state's, for
    /// spend; `now` is Unix seconds.
    pub fn handle(&self, kind: Kind, query: &str, now: i64, selector: &Selector, rates: &Rates) -> Verdict {
        let verdict = self.check_and_apply(kind, query, now, selector, rates);
        self.counts[kind as usize][verdict.index()].fetch_add(1, Ordering::Relaxed);
        verdict
    }

    fn check_and_apply(&self, kind: Kind, query: &str, now: i64, selector: &Selector, rates: &Rates) -> Verdict {
        let q = parse_query(query);
        let terms = match q.terms() {
            Ok(t) => t,
            Err(what) => return Verdict::Malformed(what),
        };
        let Some(tag) = q.tag.as_deref() else { return Verdict::Malformed("s (signature) is missing") };
        if !self.settings.signer.verify_hex(&terms.message(), tag) {
            return Verdict::Forged;
        }
        if now > terms.expires {
            return Verdict::Expired;
        }
        // Price: required for billing, optional for a win, unused for a loss.
        let price = match (kind, filled(q.price.as_deref())) {
            (Kind::Loss, _) | (Kind::Win, None) => None,
            (_, Some(p)) => match p.trim().parse::<f64>() {
                Ok(p) if p.is_finite() => Some(p),
                _ => return Verdict::Malformed("p (price) is not a number"),
            },
            (Kind::Bill, None) => return Verdict::Malformed("p (price): ${AUCTION_PRICE} was not filled in"),
        };
        if let Some(p) = price {
            let max = terms.max_price_micros as f64 / 1e6;
            if p < 0.0 || p > max * (1.0 + 1e-9) + 1e-9 {
                return Verdict::PriceOutOfBounds;
            }
        }
        if let Some(cur) = filled(q.price_currency.as_deref()) {
            if !cur.eq_ignore_ascii_case(&terms.currency) {
                return Verdict::Malformed("pc (currency) differs from the bid's currency");
            }
        }
        match self.ledger.record(kind, terms.bid, terms.expires) {
            Recorded::New => {}
            Recorded::Duplicate => return Verdict::Duplicate,
            Recorded::Full => return Verdict::LedgerFull,
        }
        if let (Kind::Bill, Some(cpm), false) = (kind, price, terms.test) {
            let usd = cpm / 1000.0 * rates.usd_per_unit(&terms.currency).unwrap_or(0.0);
            self.billed_micro_usd.fetch_add((usd * 1e6).round() as u64, Ordering::Relaxed);
            let today = self.spend.add(&terms.campaign, usd, now);
            if let Some(ci) = selector.campaign_index(&terms.campaign) {
                let budget = selector.catalog().campaigns[ci as usize].daily_budget;
                if today >= budget {
                    selector.set_exhausted(ci, true);
                }
            }
        }
        Verdict::Accepted
    }

    /// Once a second: drops expired ledger entries; at a new UTC day, clears spend and
    /// lets every campaign bid again.
    pub fn tick(&self, now: i64, selector: &Selector) {
        self.ledger.sweep(now);
        self.spend.roll(now);
        let day = now.div_euclid(spend::SECONDS_PER_DAY);
        if self.flags_day.swap(day, Ordering::Relaxed) < day {
            selector.clear_exhausted();
        }
    }

    /// Marks the campaigns of a freshly loaded catalog whose budget is already spent today.
    pub fn apply_spend(&self, selector: &Selector) {
        for (ci, c) in selector.catalog().campaigns.iter().enumerate() {
            selector.set_exhausted(ci as u32, self.spend.today(&c.id) >= c.daily_budget);
        }
    }

    /// Today's spend of a campaign, USD.
    pub fn spend_today(&self, campaign: &str) -> f64 {
        self.spend.today(campaign)
    }

    pub fn count(&self, kind: Kind, verdict: &Verdict) -> u64 {
        self.counts[kind as usize][verdict.index()].load(Ordering::Relaxed)
    }

    /// Prometheus text for the notice counters.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP ctrbid_notices_total Win, billing and loss notices by verdict.\n");
        out.push_str("# TYPE ctrbid_notices_total counter\n");
        for kind in Kind::ALL {
            for (i, label) in Verdict::LABELS.iter().enumerate() {
                let n = self.counts[kind as usize][i].load(Ordering::Relaxed);
                let _ = writeln!(out, "ctrbid_notices_total{{kind=\"{}\",verdict=\"{label}\"}} {n}", kind.label());
            }
        }
        let _ = writeln!(
            out,
            "# TYPE ctrbid_billed_usd_total counter\nctrbid_billed_usd_total {:.6}",
            self.billed_micro_usd.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# TYPE ctrbid_notice_ledger_entries gauge\nctrbid_notice_ledger_entries {}",
            self.ledger.len()
        );
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A macro value the exchange filled in; `None` when absent, empty, or still `${...}`.
fn filled(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.is_empty() && !v.starts_with("${"))
}

impl<'q> Query<'q> {
    fn terms(&self) -> Result<Terms<'q>, &'static str> {
        fn need<'q>(v: &Option<Cow<'q, str>>, what: &'static str) -> Result<Cow<'q, str>, &'static str> {
            v.clone().ok_or(what)
        }
        let bid = need(&self.bid, "b (bid id) is missing")?;
        let bid = u64::from_str_radix(&bid, 16).map_err(|_| "b (bid id) is not hex")?;
        let max_price_micros = need(&self.max_price, "hi (price bound) is missing")?
            .parse::<u64>()
            .map_err(|_| "hi (price bound) is not a number")?;
        let expires =
            need(&self.expires, "x (expiry) is missing")?.parse::<i64>().map_err(|_| "x (expiry) is not a number")?;
        Ok(Terms {
            bid,
            imp: need(&self.imp, "i (imp id) is missing")?,
            campaign: need(&self.campaign, "c (campaign) is missing")?,
            creative: need(&self.creative, "cr (creative) is missing")?,
            deal: self.deal.clone().unwrap_or_default(),
            currency: need(&self.currency, "cur (currency) is missing")?,
            max_price_micros,
            expires,
            test: self.test.as_deref() == Some("1"),
        })
    }
}

/// Splits and percent-decodes a query string. Unknown keys are ignored; for a repeated
/// key the first value wins.
fn parse_query(query: &str) -> Query<'_> {
    let mut q = Query::default();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "b" => &mut q.bid,
            "i" => &mut q.imp,
            "c" => &mut q.campaign,
            "cr" => &mut q.creative,
            "d" => &mut q.deal,
            "cur" => &mut q.currency,
            "hi" => &mut q.max_price,
            "x" => &mut q.expires,
            "t" => &mut q.test,
            "s" => &mut q.tag,
            "p" => &mut q.price,
            "pc" => &mut q.price_currency,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(percent_decode(value));
        }
    }
    q
}

/// `%XX` escapes decoded; a malformed escape or invalid UTF-8 is kept as sent (lossy),
/// which then fails the signature.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests;
