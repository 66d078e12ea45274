//! The event log's records: what a bid, and each notice about it, writes.
//!
//! One binary encoding, little-endian, with a record type and a format version up
//! front; strings are a `u16` length and UTF-8 bytes (longer ones are cut at a char
//! boundary, which only an absurd id reaches: every id the bidder logs comes from a
//! request body of at most `server.max_body_bytes` or from the catalog). A bid record
//! carries the feature row exactly as it was scored: categorical indices in 4 bytes
//! each when all fit (the served specs' index spaces are far below 2^32), else 8.
//! Readers borrow strings from the record's bytes.
//!
//! Invariant: `decode(encode(r)) == r` for every record (floats bit for bit, NaN
//! included); tested below.

use std::borrow::Cow;

/// Bumped when a record's layout changes; readers refuse versions they do not know.
/// Version 2 added [`BidRecord::agg_applied`] and [`NoticeRecord::agg`] at the end of
/// their records; version 1 records still read (as 0 and `None`). The shadow record
/// (type 3) came later as a new type, not a new layout: builds before it refuse a log
/// that holds one as an unknown type; so did the counted record (type 4).
pub const FORMAT_VERSION: u8 = 2;

const TYPE_BID: u8 = 1;
const TYPE_NOTICE: u8 = 2;
const TYPE_SHADOW: u8 = 3;
const TYPE_COUNTED: u8 = 4;

/// One record of the event log.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Bid(BidRecord<'a>),
    Notice(NoticeRecord<'a>),
    Shadow(ShadowRecord<'a>),
    Counted(CountedRecord<'a>),
}

/// An impression, click or conversion another instance of a fleet counted in its
/// aggregates, applied to this instance's store too ([`crate::fleet::counts`]): logged
/// with its place in this store's sequence, so that a restart rebuilds the store it had
/// (the notice itself is in the other instance's log).
#[derive(Debug, Clone, PartialEq)]
pub struct CountedRecord<'a> {
    /// The event's time, Unix ms.
    pub ts_ms: i64,
    pub outcome: crate::aggregates::Outcome,
    pub campaign: &'a str,
    pub creative: &'a str,
    pub stamp: AggStamp,
}

/// What a shadow variant ([`crate::variants`]) predicted for the row of a bid another
/// variant made: joined on `bid` with the bid's record and its notices, how the shadow
/// would have judged the impressions that were bought.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowRecord<'a> {
    /// Auction time of the bid, Unix ms.
    pub ts_ms: i64,
    pub bid: u64,
    /// The shadow variant's name and its model's `ctrbid.version`.
    pub variant: &'a str,
    pub model: &'a str,
    pub pctr: f32,
    /// NaN when the model has no conversion head.
    pub pcvr: f32,
}

/// A bid the bidder made: one per imp it bid on.
#[derive(Debug, Clone, PartialEq)]
pub struct BidRecord<'a> {
    /// Auction time, Unix ms.
    pub ts_ms: i64,
    pub bid: u64,
    pub request_id: &'a str,
    pub imp_id: &'a str,
    pub campaign: &'a str,
    pub creative: &'a str,
    /// `user.id` (else `buyeruid`) where the request allows personal data, else empty.
    pub user: &'a str,
    /// `site.publisher.id` or `app.publisher.id`, else empty.
    pub publisher: &'a str,
    /// The serving model's `ctrbid.version`.
    pub model: &'a str,
    /// The feature spec the row was built with: the first 8 bytes of its SHA-256
    /// ([`spec_tag`]), so a reader can refuse rows of another spec.
    pub spec: u64,
    pub pctr: f32,
    /// NaN when the model has no conversion head.
    pub pcvr: f32,
    /// The bid, CPM in `currency`.
    pub price: f64,
    pub currency: &'a str,
    /// What the bid was worth to the campaign, USD CPM (before auction rules).
    pub value_usd: f64,
    pub floor_usd: f64,
    /// 1 first price, 2 second price, 3 fixed price.
    pub auction: u8,
    /// The probability that the logging policy bid with this candidate on this imp
    /// (1 for a greedy choice).
    pub propensity: f32,
    /// The scored row: categorical indices `[F]` and numeric features `[D]`.
    pub cat: Cow<'a, [i64]>,
    pub num: Cow<'a, [f32]>,
    /// How many aggregate events the row's aggregate fields saw ([`AggStamp::seq`]
    /// below this): where in the notices' sequence the bid stands.
    pub agg_applied: u64,
}

/// What a notice added to the aggregates ([`crate::aggregates`]): its place in their
/// sequence and the keys that, with the record's campaign and creative, name the
/// entities it counted for. Replaying the stamped notices in `seq` order through
/// [`crate::aggregates::AggregateStore::apply`] rebuilds the bidder's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggStamp {
    pub seq: u64,
    pub user: Option<u64>,
    pub publisher: Option<u64>,
    /// The [`crate::aggregates::id_hash`] of the campaign's ad category when applied.
    pub category: u64,
}

/// What a notice reports; which fields mean something depends on `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    Win = 1,
    Bill = 2,
    Loss = 3,
    Click = 4,
    Conv = 5,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 5] =
        [NoticeKind::Win, NoticeKind::Bill, NoticeKind::Loss, NoticeKind::Click, NoticeKind::Conv];

    pub fn label(self) -> &'static str {
        match self {
            NoticeKind::Win => "win",
            NoticeKind::Bill => "bill",
            NoticeKind::Loss => "loss",
            NoticeKind::Click => "click",
            NoticeKind::Conv => "conv",
        }
    }

    fn from_u8(v: u8) -> Option<NoticeKind> {
        NoticeKind::ALL.into_iter().find(|k| *k as u8 == v)
    }
}

/// A win, billing, loss, click or conversion of one bid.
#[derive(Debug, Clone, PartialEq)]
pub struct NoticeRecord<'a> {
    pub kind: NoticeKind,
    /// When the notice arrived (auction clock), Unix ms.
    pub ts_ms: i64,
    pub bid: u64,
    pub campaign: &'a str,
    pub creative: &'a str,
    /// Empty for a conversion (its click id does not carry it).
    pub imp_id: &'a str,
    /// The bid's currency (win, billing, loss, click); empty for a conversion.
    pub currency: &'a str,
    /// `${AUCTION_ID}` when the exchange filled it in.
    pub auction_id: &'a str,
    /// Win, billing: the clearing price, CPM in `currency`; NaN when not reported.
    pub price: f64,
    /// Billing: what was charged, USD (0 for a test auction); conversion: its value,
    /// USD (NaN when not reported); else 0.
    pub usd: f64,
    pub test: bool,
    /// Loss: `${AUCTION_LOSS}`, -1 when not reported.
    pub loss_reason: i32,
    /// Loss: `${AUCTION_MIN_TO_WIN}`, CPM; NaN when not reported.
    pub min_to_win: f64,
    /// Conversion: the time of its click, Unix ms; else 0.
    pub click_ms: i64,
    /// Set when the notice counted in the aggregates (the first word of an impression,
    /// its click, its conversion; never a test auction's).
    pub agg: Option<AggStamp>,
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record ends early, at byte {0}")]
    Short(usize),
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("record format version {0} is not known to this build (it reads {FORMAT_VERSION})")]
    Version(u8),
    #[error("unknown notice kind {0}")]
    UnknownKind(u8),
    #[error("text at byte {0} is not UTF-8")]
    Utf8(usize),
    #[error("categorical width {0} (must be 4 or 8)")]
    Width(u8),
    #[error("{0} bytes left over after the record")]
    Trailing(usize),
}

impl Event<'_> {
    /// Appends the record's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut e = Enc(out);
        match self {
            Event::Bid(b) => {
                e.u8(TYPE_BID);
                e.u8(FORMAT_VERSION);
                e.i64(b.ts_ms);
                e.u64(b.bid);
                e.u64(b.spec);
                for s in [b.request_id, b.imp_id, b.campaign, b.creative, b.user, b.publisher, b.model, b.currency] {
                    e.str(s);
                }
                e.f32(b.pctr);
                e.f32(b.pcvr);
                e.f64(b.price);
                e.f64(b.value_usd);
                e.f64(b.floor_usd);
                e.u8(b.auction);
                e.f32(b.propensity);
                let narrow = b.cat.iter().all(|&c| u32::try_from(c).is_ok());
                e.u16(b.cat.len() as u16);
                e.u8(if narrow { 4 } else { 8 });
                for &c in b.cat.iter() {
                    if narrow {
                        e.0.extend_from_slice(&(c as u32).to_le_bytes());
                    } else {
                        e.i64(c);
                    }
                }
                e.u16(b.num.len() as u16);
                for &x in b.num.iter() {
                    e.f32(x);
                }
                e.u64(b.agg_applied);
            }
            Event::Notice(n) => {
                e.u8(TYPE_NOTICE);
                e.u8(FORMAT_VERSION);
                e.u8(n.kind as u8);
                e.i64(n.ts_ms);
                e.u64(n.bid);
                for s in [n.campaign, n.creative, n.imp_id, n.currency, n.auction_id] {
                    e.str(s);
                }
                e.f64(n.price);
                e.f64(n.usd);
                e.u8(u8::from(n.test));
                e.0.extend_from_slice(&n.loss_reason.to_le_bytes());
                e.f64(n.min_to_win);
                e.i64(n.click_ms);
                match n.agg {
                    None => e.u8(0),
                    Some(a) => {
                        e.u8(1);
                        for k in [a.seq, a.user.unwrap_or(0), a.publisher.unwrap_or(0), a.category] {
                            e.u64(k);
                        }
                    }
                }
            }
            Event::Counted(c) => {
                e.u8(TYPE_COUNTED);
                e.u8(FORMAT_VERSION);
                e.i64(c.ts_ms);
                e.u8(c.outcome as u8);
                e.str(c.campaign);
                e.str(c.creative);
                for k in [c.stamp.seq, c.stamp.user.unwrap_or(0), c.stamp.publisher.unwrap_or(0), c.stamp.category] {
                    e.u64(k);
                }
            }
            Event::Shadow(s) => {
                e.u8(TYPE_SHADOW);
                e.u8(FORMAT_VERSION);
                e.i64(s.ts_ms);
                e.u64(s.bid);
                e.str(s.variant);
                e.str(s.model);
                e.f32(s.pctr);
                e.f32(s.pcvr);
            }
        }
    }

    /// The record's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode(&mut out);
        out
    }

    /// Reads one record; strings borrow from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
        let mut d = Dec { buf: bytes, pos: 0 };
        let kind = d.u8()?;
        if ![TYPE_BID, TYPE_NOTICE, TYPE_SHADOW, TYPE_COUNTED].contains(&kind) {
            return Err(DecodeError::UnknownType(kind));
        }
        let version = d.u8()?;
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(DecodeError::Version(version));
        }
        let event = if kind == TYPE_COUNTED {
            let (ts_ms, raw) = (d.i64()?, d.u8()?);
            let outcome = crate::aggregates::Outcome::from_u8(raw).ok_or(DecodeError::UnknownKind(raw))?;
            let (campaign, creative) = (d.str()?, d.str()?);
            let (seq, user, publisher, category) = (d.u64()?, d.u64()?, d.u64()?, d.u64()?);
            let key = |k: u64| (k != 0).then_some(k);
            let stamp = AggStamp { seq, user: key(user), publisher: key(publisher), category };
            Event::Counted(CountedRecord { ts_ms, outcome, campaign, creative, stamp })
        } else if kind == TYPE_SHADOW {
            let (ts_ms, bid, variant, model) = (d.i64()?, d.u64()?, d.str()?, d.str()?);
            let (pctr, pcvr) = (d.f32()?, d.f32()?);
            Event::Shadow(ShadowRecord { ts_ms, bid, variant, model, pctr, pcvr })
        } else if kind == TYPE_BID {
            let (ts_ms, bid, spec) = (d.i64()?, d.u64()?, d.u64()?);
            let (request_id, imp_id, campaign, creative) = (d.str()?, d.str()?, d.str()?, d.str()?);
            let (user, publisher, model, currency) = (d.str()?, d.str()?, d.str()?, d.str()?);
            let (pctr, pcvr, price, value_usd, floor_usd) = (d.f32()?, d.f32()?, d.f64()?, d.f64()?, d.f64()?);
            let (auction, propensity) = (d.u8()?, d.f32()?);
            let f = usize::from(d.u16()?);
            let width = d.u8()?;
            let cat: Vec<i64> = match width {
                4 => (0..f).map(|_| d.take(4).map(|b| i64::from(u32::from_le_bytes(arr(b))))).collect::<Result<_, _>>(),
                8 => (0..f).map(|_| d.i64()).collect::<Result<_, _>>(),
                w => return Err(DecodeError::Width(w)),
            }?;
            let n = usize::from(d.u16()?);
            let num = (0..n).map(|_| d.f32()).collect::<Result<Vec<f32>, _>>()?;
            let agg_applied = if version >= 2 { d.u64()? } else { 0 };
            Event::Bid(BidRecord {
                ts_ms,
                bid,
                request_id,
                imp_id,
                campaign,
                creative,
                user,
                publisher,
                model,
                spec,
                pctr,
                pcvr,
                price,
                currency,
                value_usd,
                floor_usd,
                auction,
                propensity,
                cat: Cow::Owned(cat),
                num: Cow::Owned(num),
                agg_applied,
            })
        } else {
            let raw = d.u8()?;
            let kind = NoticeKind::from_u8(raw).ok_or(DecodeError::UnknownKind(raw))?;
            let (ts_ms, bid) = (d.i64()?, d.u64()?);
            let (campaign, creative, imp_id, currency, auction_id) = (d.str()?, d.str()?, d.str()?, d.str()?, d.str()?);
            let (price, usd, test) = (d.f64()?, d.f64()?, d.u8()? != 0);
            let loss_reason = i32::from_le_bytes(arr(d.take(4)?));
            let (min_to_win, click_ms) = (d.f64()?, d.i64()?);
            let agg = match if version >= 2 { d.u8()? } else { 0 } {
                0 => None,
                _ => {
                    let (seq, user, publisher, category) = (d.u64()?, d.u64()?, d.u64()?, d.u64()?);
                    let key = |k: u64| (k != 0).then_some(k);
                    Some(AggStamp { seq, user: key(user), publisher: key(publisher), category })
                }
            };
            Event::Notice(NoticeRecord {
                kind,
                ts_ms,
                bid,
                campaign,
                creative,
                imp_id,
                currency,
                auction_id,
                price,
                usd,
                test,
                loss_reason,
                min_to_win,
                click_ms,
                agg,
            })
        };
        match bytes.len() - d.pos {
            0 => Ok(event),
            left => Err(DecodeError::Trailing(left)),
        }
    }
}

/// The tag of a feature spec in bid records: the first 8 bytes of its SHA-256 (hex).
pub fn spec_tag(sha256_hex: &str) -> u64 {
    sha256_hex.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0)
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    b.try_into().expect("take(N) returns N bytes")
}

struct Enc<'o>(&'o mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    /// At most `u16::MAX` bytes, cut at a char boundary.
    fn str(&mut self, s: &str) {
        let mut end = s.len().min(usize::from(u16::MAX));
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.0.extend_from_slice(&s.as_bytes()[..end]);
    }
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(DecodeError::Short(self.pos))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(arr(self.take(2)?)))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(arr(self.take(8)?)))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(arr(self.take(8)?)))
    }
    fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_bits(u32::from_le_bytes(arr(self.take(4)?))))
    }
    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(u64::from_le_bytes(arr(self.take(8)?))))
    }
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u16()?);
        let at = self.pos;
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::Utf8(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn bid() -> BidRecord<'static> {
        BidRecord {
            ts_ms: 1_767_571_200_123,
            bid: 0xdead_beef_0001,
            request_id: "req-1",
            imp_id: "1",
            campaign: "cmp-7",
            creative: "cr-21",
            user: "u-é",
            publisher: "pub-3",
            model: "wide_deep-2026-12-03",
            spec: 0x0123_4567_89ab_cdef,
            pctr: 0.0123,
            pcvr: f32::NAN,
            price: 8.5,
            currency: "USD",
            value_usd: 10.0,
            floor_usd: 0.5,
            auction: 1,
            propensity: 1.0,
            cat: Cow::Owned(vec![0, 7, 134_207, 65_536]),
            num: Cow::Owned(vec![0.5, -1.25, f32::MIN_POSITIVE]),
            agg_applied: 1_234_567,
        }
    }

    fn notice(kind: NoticeKind) -> NoticeRecord<'static> {
        NoticeRecord {
            kind,
            ts_ms: 1_767_571_260_000,
            bid: 42,
            campaign: "cmp-7",
            creative: "cr-21",
            imp_id: "1",
            currency: "USD",
            auction_id: "req-1",
            price: 2.5,
            usd: 0.0025,
            test: kind == NoticeKind::Click,
            loss_reason: if kind == NoticeKind::Loss { 102 } else { -1 },
            min_to_win: f64::NAN,
            click_ms: 77,
            agg: (kind != NoticeKind::Loss).then_some(AggStamp {
                seq: 99,
                user: (kind != NoticeKind::Bill).then_some(0xfeed),
                publisher: Some(u64::MAX),
                category: 5,
            }),
        }
    }

    #[test]
    fn version_1_records_still_read() {
        // Version 1 had neither `agg_applied` (8 bytes at the end of a bid) nor the
        // stamp's flag (1 byte at the end of a notice).
        let mut b = Event::Bid(bid()).to_bytes();
        b.truncate(b.len() - 8);
        b[1] = 1;
        assert!(same(&Event::decode(&b).unwrap(), &Event::Bid(BidRecord { agg_applied: 0, ..bid() })));
        let loss = notice(NoticeKind::Loss);
        let mut n = Event::Notice(loss.clone()).to_bytes();
        n.truncate(n.len() - 1);
        n[1] = 1;
        assert!(same(&Event::decode(&n).unwrap(), &Event::Notice(loss)));
    }

    /// Equal bit for bit (NaN == NaN) through the Debug text of the floats' bits.
    fn same(a: &Event<'_>, b: &Event<'_>) -> bool {
        a.to_bytes() == b.to_bytes()
    }

    #[test]
    fn every_record_round_trips_bit_for_bit() {
        let wide = BidRecord { cat: Cow::Owned(vec![1, i64::from(u32::MAX) + 1, -3]), ..bid() };
        let mut cases = vec![Event::Bid(bid()), Event::Bid(wide)];
        cases.extend(NoticeKind::ALL.map(|k| Event::Notice(notice(k))));
        cases.push(Event::Shadow(ShadowRecord {
            ts_ms: 1_767_571_260_000,
            bid: u64::MAX,
            variant: "shadow_1",
            model: "fm-3",
            pctr: 0.031,
            pcvr: f32::NAN,
        }));
        let stamp = AggStamp { seq: 1 << 40, user: Some(u64::MAX), publisher: None, category: 9 };
        for outcome in [crate::aggregates::Outcome::Impression, crate::aggregates::Outcome::Conversion] {
            let counted =
                CountedRecord { ts_ms: 1_767_571_260_001, outcome, campaign: "cmp-1", creative: "cr-1", stamp };
            cases.push(Event::Counted(counted));
        }
        for e in cases {
            let bytes = e.to_bytes();
            let back = Event::decode(&bytes).unwrap();
            assert!(same(&e, &back), "{e:?} -> {back:?}");
            if let (Event::Bid(a), Event::Bid(b)) = (&e, &back) {
                assert_eq!((a.cat.as_ref(), a.pctr, a.pcvr.is_nan()), (b.cat.as_ref(), b.pctr, b.pcvr.is_nan()));
            }
        }
    }

    #[test]
    fn a_served_row_costs_four_bytes_per_categorical_field() {
        let narrow = Event::Bid(bid()).to_bytes().len();
        let wide = Event::Bid(BidRecord { cat: Cow::Owned(vec![1, 1 << 40, 3, 4]), ..bid() }).to_bytes().len();
        assert_eq!(wide - narrow, 4 * 4);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let bytes = Event::Bid(bid()).to_bytes();
        for cut in 0..bytes.len() {
            assert!(Event::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Event::decode(&longer), Err(DecodeError::Trailing(1)));
        let mut v = bytes.clone();
        v[1] = 9;
        assert_eq!(Event::decode(&v), Err(DecodeError::Version(9)));
        assert_eq!(Event::decode(&[7, 1]), Err(DecodeError::UnknownType(7)));
        let mut k = Event::Notice(notice(NoticeKind::Win)).to_bytes();
        k[2] = 0;
        assert_eq!(Event::decode(&k), Err(DecodeError::UnknownKind(0)));
        let stamp = AggStamp { seq: 1, user: None, publisher: None, category: 0 };
        let counted =
            CountedRecord { ts_ms: 0, outcome: crate::aggregates::Outcome::Click, campaign: "", creative: "", stamp };
        let mut c = Event::Counted(counted).to_bytes();
        c[10] = 4;
        assert_eq!(Event::decode(&c), Err(DecodeError::UnknownKind(4)));
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let long = "é".repeat(40_000);
        let b = BidRecord { user: &long, ..bid() };
        let bytes = Event::Bid(b).to_bytes();
        let Event::Bid(back) = Event::decode(&bytes).unwrap() else { panic!("a bid") };
        assert_eq!(back.user.len(), 65_534);
        assert!(long.starts_with(back.user));
    }
}
