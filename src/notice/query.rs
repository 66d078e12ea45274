//! The query of a notice, click or conversion URL: split, percent-decoded, read into
//! the signed terms. Nothing here checks a signature; [`super::Notices`] does.

use super::{ModelTag, Terms};
use crate::aggregates::Audience;
use std::borrow::Cow;

/// The query of a notice URL, decoded. Unknown keys are ignored; for a repeated key the
/// first value wins.
#[derive(Debug, Default)]
pub(super) struct Query<'q> {
    pub bid: Option<Cow<'q, str>>,
    pub imp: Option<Cow<'q, str>>,
    pub campaign: Option<Cow<'q, str>>,
    pub creative: Option<Cow<'q, str>>,
    pub deal: Option<Cow<'q, str>>,
    pub currency: Option<Cow<'q, str>>,
    pub max_price: Option<Cow<'q, str>>,
    pub expires: Option<Cow<'q, str>>,
    pub click_expires: Option<Cow<'q, str>>,
    pub test: Option<Cow<'q, str>>,
    /// The capped user's key, hex.
    pub user: Option<Cow<'q, str>>,
    /// The impression's audience (`Audience::to_param`).
    pub audience: Option<Cow<'q, str>>,
    /// The model variant and its pCTR (`ModelTag`).
    pub model: Option<Cow<'q, str>>,
    pub tag: Option<Cow<'q, str>>,
    /// `${AUCTION_PRICE}` (win, billing).
    pub price: Option<Cow<'q, str>>,
    /// `${AUCTION_CURRENCY}` (win, billing).
    pub price_currency: Option<Cow<'q, str>>,
    /// `${AUCTION_ID}`.
    pub auction: Option<Cow<'q, str>>,
    /// `${AUCTION_LOSS}` (loss).
    pub loss: Option<Cow<'q, str>>,
    /// `${AUCTION_MIN_TO_WIN}` (loss).
    pub min_to_win: Option<Cow<'q, str>>,
    /// The click id a conversion postback carries (`/conv?click=`).
    pub click: Option<Cow<'q, str>>,
    /// A conversion's value (`/conv?v=`), USD.
    pub value: Option<Cow<'q, str>>,
}

/// Splits and percent-decodes a query string.
pub(super) fn parse_query(query: &str) -> Query<'_> {
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
            "cx" => &mut q.click_expires,
            "t" => &mut q.test,
            "u" => &mut q.user,
            "g" => &mut q.audience,
            "mv" => &mut q.model,
            "s" => &mut q.tag,
            "p" => &mut q.price,
            "pc" => &mut q.price_currency,
            "a" => &mut q.auction,
            "r" => &mut q.loss,
            "m" => &mut q.min_to_win,
            "click" => &mut q.click,
            "v" => &mut q.value,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(percent_decode(value));
        }
    }
    q
}

impl<'q> Query<'q> {
    /// The signed terms of a win, billing, loss or click URL.
    pub fn terms(&self) -> Result<Terms<'q>, &'static str> {
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
        let click_expires = need(&self.click_expires, "cx (click expiry) is missing")?
            .parse::<i64>()
            .map_err(|_| "cx (click expiry) is not a number")?;
        let user = match self.user.as_deref() {
            None => None,
            Some(u) => Some(u64::from_str_radix(u, 16).map_err(|_| "u (user key) is not hex")?),
        };
        let audience = match self.audience.as_deref() {
            None => Audience::default(),
            Some(g) => Audience::from_param(g)?,
        };
        let model = match self.model.as_deref() {
            None => None,
            Some(m) => Some(ModelTag::parse(m)?.into_owned()),
        };
        Ok(Terms {
            bid,
            model,
            imp: need(&self.imp, "i (imp id) is missing")?,
            campaign: need(&self.campaign, "c (campaign) is missing")?,
            creative: need(&self.creative, "cr (creative) is missing")?,
            deal: self.deal.clone().unwrap_or_default(),
            currency: need(&self.currency, "cur (currency) is missing")?,
            max_price_micros,
            expires,
            click_expires,
            test: self.test.as_deref() == Some("1"),
            user,
            audience,
        })
    }
}

/// A macro value the exchange filled in; `None` when absent, empty, or still `${...}`.
pub(super) fn filled(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.is_empty() && !v.starts_with("${"))
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
