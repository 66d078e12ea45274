//! `--tmax-ms`: every body's top-level `tmax` (OpenRTB: ms the exchange waits for an
//! answer) set to one value, once, when the corpus is loaded; sending stays a copy-free
//! slice of a buffer.
//!
//! The body is not re-serialized. serde_json reads it (borrowed) into a struct whose one
//! field is the top-level `tmax` as a [`RawValue`], a slice of the body; that slice
//! alone is replaced by the number, or, when the body has no `tmax`, `"tmax":N` is
//! inserted right after the opening brace. **Every other byte stays as it was**: key
//! order, spacing, the spelling of numbers and strings, a nested `tmax` (in `ext`) too.
//! The read checks that the whole body is JSON, so a line that is not is an error at
//! load, not a 400 at run time.

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// The body with its top-level `tmax` set to `tmax_ms`: the same buffer when it
/// already was, else a new one.
pub fn set(body: &Bytes, tmax_ms: u64) -> anyhow::Result<Bytes> {
    let open = body.iter().position(|b| !b.is_ascii_whitespace());
    anyhow::ensure!(open.is_some_and(|i| body[i] == b'{'), "not a JSON object");
    let top: Top<'_> = serde_json::from_slice(body)?;
    let value = tmax_ms.to_string();
    let (at, len, text) = match top.tmax {
        Some(raw) if raw.get() == value => return Ok(body.clone()),
        Some(raw) => (offset_in(body, raw.get().as_bytes()), raw.get().len(), value),
        None => insertion(body, open.unwrap_or(0) + 1, &value),
    };
    let mut out = Vec::with_capacity(body.len() + text.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&body[at + len..]);
    Ok(Bytes::from(out))
}

/// The top level of a body: only `tmax` is kept; the other members are checked and
/// skipped. A second `tmax` is an error (serde's "duplicate field").
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    tmax: Option<&'a RawValue>,
}

/// `Some` for any value, `null` included (a plain `Option` would read `null` as absent).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Where to insert `"tmax":N` in an object whose contents start at `inside`, and the
/// text: with a comma unless the object is empty.
fn insertion(body: &[u8], inside: usize, value: &str) -> (usize, usize, String) {
    let empty = body[inside..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let comma = if empty { "" } else { "," };
    (inside, 0, format!("\"tmax\":{value}{comma}"))
}

/// Where `part`, a slice borrowed from `whole`, starts in it.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    let at = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    assert!(at <= whole.len() && part.len() <= whole.len() - at, "the raw value is a slice of the body");
    at
}
