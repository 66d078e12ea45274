//! Ids echoed byte for byte: a number id reads as the text the exchange sent.
//!
//! The response echoes `BidRequest.id` (in `BidResponse.id` and the no-bid body),
//! `Imp.id` (in `Bid.impid`) and `Deal.id` (in `Bid.dealid`), and the event log keeps
//! them; an exchange drops a response whose id does not match its request. OpenRTB 2.6
//! types every id as a string, but exchanges send some as numbers. A number id is kept
//! as its text exactly as sent (`3333333333333351169.3333333333333333333333`, `1.0`,
//! `-0`), borrowed from the body, and written back as a JSON **string** holding that
//! text: the response's ids are strings in the spec, and the string is the only form
//! that keeps every digit (a JSON number would be re-read by the exchange as a
//! float). Rounding it through `f64` (`3333333333333351400`) or reformatting it (`1`
//! for `1.0`) would break the match.
//!
//! The parsers' deserializers hand a number to the field as a `u64`, `i64` or `f64`,
//! never as text. Integers of up to 18 digits come back exactly, so the fast path keeps
//! them; a body where some `"id"` key holds any other number (`scan`'s `number_id`,
//! rare) is read by serde_json, and then [`restore_number_ids`] reads the ids a second
//! time, as raw JSON text, and puts each number's text in place.

use super::list::List;
use super::{lenient, BidRequest};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The echoed ids of a request, read with the same lenient readers as [`BidRequest`],
/// so `imp` and `deals` keep the same elements in the same order as there.
#[derive(Deserialize)]
struct RequestIds<'a> {
    #[serde(default, borrow, deserialize_with = "number_text")]
    id: Option<&'a str>,
    #[serde(default, borrow, deserialize_with = "lenient::obj_list")]
    imp: List<ImpIds<'a>, 1>,
}

#[derive(Deserialize)]
struct ImpIds<'a> {
    #[serde(default, borrow, deserialize_with = "number_text")]
    id: Option<&'a str>,
    #[serde(default, borrow, deserialize_with = "lenient::opt_obj")]
    pmp: Option<PmpIds<'a>>,
}

#[derive(Deserialize)]
struct PmpIds<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::obj_list")]
    deals: List<DealIds<'a>, 1>,
}

#[derive(Deserialize)]
struct DealIds<'a> {
    #[serde(default, borrow, deserialize_with = "number_text")]
    id: Option<&'a str>,
}

/// The text of a number value, as it stands in the body; `None` for any other value.
fn number_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    let raw = <&'de RawValue>::deserialize(d)?.get();
    Ok(raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()).then_some(raw))
}

/// Replaces every number id of `req` (read from `body` by serde_json) with the number's
/// text in `body`. String ids are left as they are.
pub(super) fn restore_number_ids<'a>(body: &'a [u8], req: &mut BidRequest<'a>) -> Result<(), serde_json::Error> {
    let ids: RequestIds<'a> = serde_json::from_slice(body)?;
    let put = |field: &mut Option<Cow<'a, str>>, text: Option<&'a str>| {
        if let Some(text) = text {
            *field = Some(Cow::Borrowed(text));
        }
    };
    put(&mut req.id, ids.id);
    for (imp, ids) in req.imp.iter_mut().zip(&ids.imp) {
        put(&mut imp.id, ids.id);
        if let (Some(pmp), Some(ids)) = (imp.pmp.as_mut(), ids.pmp.as_ref()) {
            for (deal, ids) in pmp.deals.iter_mut().zip(&ids.deals) {
                put(&mut deal.id, ids.id);
            }
        }
    }
    Ok(())
}
