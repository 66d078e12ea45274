//! Click ids: what `/click` hands the landing page and `/conv` takes back.
//!
//! A click redirects the user to the creative's landing page with `ctrbid_click=<id>`
//! added to its query; the advertiser's site posts that id back to `/conv` when the
//! user converts (the usual postback). The id is signed, so a conversion can only be
//! attributed to a click this bidder recorded, and it carries the click's time, so the
//! attribution window is checked without any state: `{bid:x}.{click_ms:x}.{campaign
//! hex}.{creative hex}.{tag}`, the ids hex-encoded so that no separator or escape can
//! occur in them. A click with an audience (the user and publisher keys of the
//! aggregates, [`Audience`]) has one part more before the tag, `{user:x}-{publisher:x}`
//! (an absent key empty), so that its conversion counts for them too; a click of a bid
//! priced by a model variant ([`crate::variants`]) has the variant's name as one part
//! more again, before the tag (a name has no `-`, an audience always one), so that its
//! conversion counts for the variant. The tag is an
//! HMAC-SHA256 (truncated to 16 bytes, as the notice tags) under the notice key, over a
//! message of its own kind, so no notice tag can pass as a click id or the other way
//! round.

use super::sign::{Message, Signer};
use crate::aggregates::Audience;
use std::borrow::Cow;
use std::fmt::Write as _;

/// The query parameter the landing page receives the click id in.
pub const CLICK_PARAM: &str = "ctrbid_click";

/// What a click id says: which bid was clicked, when, for which campaign and creative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickId<'a> {
    pub bid: u64,
    /// Unix ms of the click.
    pub click_ms: i64,
    pub campaign: Cow<'a, str>,
    pub creative: Cow<'a, str>,
    /// Who clicked and where; empty for ids without one.
    pub audience: Audience,
    /// The model variant that priced the clicked bid, when the bid said.
    pub variant: Option<Cow<'a, str>>,
}

impl ClickId<'_> {
    fn message(&self) -> Message {
        let mut m = Message::with_capacity(96);
        m.field(b"ctrbid-click-v1")
            .field(&self.bid.to_le_bytes())
            .field(&self.click_ms.to_le_bytes())
            .field(self.campaign.as_bytes())
            .field(self.creative.as_bytes());
        if !self.audience.is_empty() {
            m.field(b"g").field(&self.audience.to_bytes());
        }
        if let Some(variant) = &self.variant {
            m.field(b"mv").field(variant.as_bytes());
        }
        m
    }

    /// The signed id.
    pub fn encode(&self, signer: &Signer) -> String {
        let mut out = String::with_capacity(48 + 2 * (self.campaign.len() + self.creative.len()));
        let _ = write!(out, "{:x}.{:x}.", self.bid, self.click_ms);
        push_hex(&mut out, self.campaign.as_bytes());
        out.push('.');
        push_hex(&mut out, self.creative.as_bytes());
        out.push('.');
        if !self.audience.is_empty() {
            out.push_str(&self.audience.to_param().replacen('.', "-", 1));
            out.push('.');
        }
        if let Some(variant) = &self.variant {
            out.push_str(variant);
            out.push('.');
        }
        signer.push_sign_hex(&self.message(), &mut out);
        out
    }

    /// Reads and verifies an id: `Err(None)` when it is not one (malformed), `Err(Some(id))`
    /// when it reads but its tag does not match (forged).
    pub fn decode(token: &str, signer: &Signer) -> Result<ClickId<'static>, Option<&'static str>> {
        let parts: Vec<&str> = token.split('.').collect();
        let (bid, click_ms, campaign, creative, extra, tag) = match parts[..] {
            [bid, click_ms, campaign, creative, tag] => (bid, click_ms, campaign, creative, &[][..], tag),
            [bid, click_ms, campaign, creative, ref extra @ .., tag] if extra.len() <= 2 => {
                (bid, click_ms, campaign, creative, extra, tag)
            }
            _ => {
                return Err(Some(
                    "click id must have five to seven parts: bid.time.campaign.creative[.audience][.variant].tag",
                ))
            }
        };
        // An audience has a `-`, a variant name none; each at most once, in that order.
        let (audience, variant) = match extra {
            [] => (None, None),
            [a] if a.contains('-') => (Some(*a), None),
            [v] => (None, Some(*v)),
            [a, v] if a.contains('-') && !v.contains('-') => (Some(*a), Some(*v)),
            _ => return Err(Some("click id: expected an audience <user hex>-<publisher hex>, then a variant name")),
        };
        if variant.is_some_and(|v| !crate::variants::valid_name(v)) {
            return Err(Some("click id: the variant part is not a variant name"));
        }
        let audience = match audience {
            None => Audience::default(),
            Some(a) => Audience::from_param(&a.replacen('-', ".", 1))
                .ok()
                .filter(|a| !a.is_empty())
                .ok_or(Some("click id: audience is not <user hex>-<publisher hex>"))?,
        };
        // The ids may be empty (their hex is then empty too); the rest may not.
        if bid.is_empty() || click_ms.is_empty() || tag.is_empty() {
            return Err(Some("click id: bid, time or tag is missing"));
        }
        let id = ClickId {
            bid: u64::from_str_radix(bid, 16).map_err(|_| Some("click id: bid is not hex"))?,
            click_ms: i64::from_str_radix(click_ms, 16).map_err(|_| Some("click id: time is not hex"))?,
            campaign: Cow::Owned(from_hex(campaign).ok_or(Some("click id: campaign is not hex text"))?),
            creative: Cow::Owned(from_hex(creative).ok_or(Some("click id: creative is not hex text"))?),
            audience,
            variant: variant.map(|v| Cow::Owned(v.to_string())),
        };
        if signer.verify_hex(&id.message(), tag) {
            Ok(id)
        } else {
            Err(None)
        }
    }
}

/// `landing` with the click id added to its query (before any `#fragment`).
pub fn landing_with_click(landing: &str, id: &str) -> String {
    let (base, fragment) = match landing.find('#') {
        Some(at) => landing.split_at(at),
        None => (landing, ""),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{CLICK_PARAM}={id}{fragment}")
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

fn from_hex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(b"0123456789abcdef0123456789abcdef".to_vec(), None)
    }

    fn id() -> ClickId<'static> {
        ClickId {
            bid: 0xabc,
            click_ms: 1_767_571_200_123,
            campaign: "cmp.1 é".into(),
            creative: "cr/1".into(),
            audience: Audience::default(),
            variant: None,
        }
    }

    #[test]
    fn a_variant_round_trips_with_or_without_an_audience_and_is_signed() {
        let audience = Audience { user: Some(0xab), publisher: Some(0xcd) };
        for (with, parts) in [
            (ClickId { variant: Some("cand_2".into()), ..id() }, 6),
            (ClickId { variant: Some("abc".into()), audience, ..id() }, 7),
        ] {
            let token = with.encode(&signer());
            assert_eq!(token.split('.').count(), parts, "{token}");
            assert_eq!(ClickId::decode(&token, &signer()), Ok(with.clone()));
            // Another variant's name, or none, breaks the tag.
            let other = token.replacen(&format!(".{}.", with.variant.as_deref().unwrap()), ".main.", 1);
            assert_eq!(ClickId::decode(&other, &signer()), Err(None), "{other}");
            let without = token.replacen(&format!(".{}.", with.variant.as_deref().unwrap()), ".", 1);
            assert_eq!(ClickId::decode(&without, &signer()), Err(None), "{without}");
        }
        // Out of order, twice, or not a name: malformed.
        for bad in ["1.2.00.00.main.ab-cd.00", "1.2.00.00.a-b.c-d.00", "1.2.00.00.Main.00", "1.2.00.00.a.b.00"] {
            assert!(matches!(ClickId::decode(bad, &signer()), Err(Some(_))), "{bad}");
        }
    }

    #[test]
    fn an_audience_round_trips_and_is_signed() {
        for audience in [
            Audience { user: Some(0x1234), publisher: Some(u64::MAX) },
            Audience { user: None, publisher: Some(7) },
            Audience { user: Some(7), publisher: None },
        ] {
            let with = ClickId { audience, ..id() };
            let token = with.encode(&signer());
            assert_eq!(token.split('.').count(), 6, "{token}");
            assert_eq!(ClickId::decode(&token, &signer()), Ok(with.clone()));
            // Dropping the audience, or changing it, breaks the tag.
            let parts: Vec<&str> = token.split('.').collect();
            let without = [&parts[..4], &parts[5..]].concat().join(".");
            assert_eq!(ClickId::decode(&without, &signer()), Err(None));
            let other = token.replacen(&format!(".{}.", parts[4]), ".9-9.", 1);
            assert_eq!(ClickId::decode(&other, &signer()), Err(None));
        }
        assert!(matches!(ClickId::decode("1.2.00.00.-.00", &signer()), Err(Some(_))), "an empty audience part");
        assert!(matches!(ClickId::decode("1.2.00.00.0-1.00", &signer()), Err(Some(_))), "a zero key");
    }

    #[test]
    fn round_trips_and_is_url_safe() {
        let token = id().encode(&signer());
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.'), "{token}");
        assert_eq!(ClickId::decode(&token, &signer()), Ok(id()));
    }

    #[test]
    fn any_change_is_a_forgery_and_garbage_is_malformed() {
        let token = id().encode(&signer());
        let parts: Vec<&str> = token.split('.').collect();
        // A later click time (to stretch the attribution window) breaks the tag.
        let later = format!("{}.{:x}.{}.{}.{}", parts[0], id().click_ms + 1, parts[2], parts[3], parts[4]);
        assert_eq!(ClickId::decode(&later, &signer()), Err(None));
        let other_key = Signer::new(b"another key of at least thirty-two bytes".to_vec(), None);
        assert_eq!(ClickId::decode(&token, &other_key), Err(None));
        for bad in [
            "",
            "abc",
            "1.2.3.4",
            "zz.1.00.00.00",
            "1.2.3.4.5.6.7",
            "1.2.0g.00.00",
            "1..6162.6162.00",
            "1.2.6162.6162.",
        ] {
            assert!(matches!(ClickId::decode(bad, &signer()), Err(Some(_))), "{bad}");
        }
    }

    #[test]
    fn empty_ids_round_trip() {
        // Found by the notice_query fuzz target: an empty campaign and creative.
        let id = ClickId {
            bid: 0,
            click_ms: 1_800_000_000_000,
            campaign: "".into(),
            creative: "".into(),
            audience: Audience::default(),
            variant: None,
        };
        assert_eq!(ClickId::decode(&id.encode(&signer()), &signer()), Ok(id));
    }

    #[test]
    fn the_id_joins_the_landing_query() {
        assert_eq!(landing_with_click("https://a.example/", "X"), "https://a.example/?ctrbid_click=X");
        assert_eq!(landing_with_click("https://a.example/p?q=1", "X"), "https://a.example/p?q=1&ctrbid_click=X");
        assert_eq!(landing_with_click("https://a.example/p#top", "X"), "https://a.example/p?ctrbid_click=X#top");
    }
}
