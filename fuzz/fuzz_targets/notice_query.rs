//! Notice URLs as an attacker sends them: arbitrary query strings into the win, billing,
//! loss, click and conversion handlers (the conversion's click id parser among them),
//! and arbitrary text through the URL encoder and decoder and the click id codec.
//!
//! Proves: no query makes the notice path panic; without the key no query is ever
//! accepted (every verdict is a refusal: an accepted notice or click would need a forged
//! HMAC); `percent_decode` inverts `push_query_value` for every string; and a click id
//! made from any campaign and creative text reads back exactly, while the same id with
//! any byte changed never reads as a valid one.

#![no_main]

use ctrbid::notice::click::ClickId;
use ctrbid::notice::{percent_decode, sign::Signer, Kind, NoticeSettings, Notices, Verdict};
use ctrbid::openrtb::response::push_query_value;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn signer() -> Signer {
    Signer::new(b"fuzz-key-fuzz-key-fuzz-key-fuzz-key".to_vec(), None)
}

fn notices() -> &'static Notices {
    static NOTICES: OnceLock<Notices> = OnceLock::new();
    NOTICES.get_or_init(|| {
        Notices::new(NoticeSettings {
            base_url: "http://bidder.example".into(),
            signer: signer(),
            ttl_s: 600,
            min_ttl_s: 60,
            max_ttl_s: 3600,
            click_ttl_s: 86_400,
            attribution_window_s: 604_800,
            max_entries: 1 << 16,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = ctrbid_fuzz::serving();
    for kind in Kind::ALL {
        let verdict = notices().handle(kind, &text, 1_800_000_000_000, &s.selector, &s.rates);
        assert!(!matches!(verdict, Verdict::Accepted | Verdict::Duplicate), "{kind:?} accepted {text:?}: {verdict:?}");
    }
    let mut encoded = String::new();
    push_query_value(&mut encoded, &text);
    assert_eq!(percent_decode(&encoded), text);

    // The click id codec: any campaign and creative text round-trips; a changed byte
    // never verifies (the tag covers every field).
    let (campaign, creative) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i));
    let id = ClickId {
        bid: data.len() as u64,
        click_ms: 1_800_000_000_000,
        campaign: campaign.into(),
        creative: creative.into(),
        audience: ctrbid::aggregates::Audience { user: Some(data.len() as u64 + 1), publisher: None },
        // Every other input with a variant part too.
        variant: data.len().is_multiple_of(2).then(|| "cand_1".into()),
    };
    let token = id.encode(&signer());
    assert_eq!(ClickId::decode(&token, &signer()).as_ref(), Ok(&id));
    if let Some(&b) = data.first() {
        let at = usize::from(b) % token.len();
        let mut changed = token.clone().into_bytes();
        changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
        if let Ok(changed) = String::from_utf8(changed) {
            assert!(ClickId::decode(&changed, &signer()).is_err(), "{token} changed at {at} still verifies");
        }
    }
});
