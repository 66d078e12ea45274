//! Notice URLs as an attacker sends them: arbitrary query strings into the win, billing
//! and loss handlers, and arbitrary text through the URL encoder and decoder.
//!
//! Proves: no query makes the notice path panic; without the key no query is ever
//! accepted (every verdict is a refusal: an accepted notice would need a forged HMAC);
//! and `percent_decode` inverts `push_query_value` for every string.

#![no_main]

use ctrbid::notice::{percent_decode, sign::Signer, Kind, NoticeSettings, Notices, Verdict};
use ctrbid::openrtb::response::push_query_value;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn notices() -> &'static Notices {
    static NOTICES: OnceLock<Notices> = OnceLock::new();
    NOTICES.get_or_init(|| {
        Notices::new(NoticeSettings {
            base_url: "http://bidder.example".into(),
            signer: Signer::new(b"fuzz-key-fuzz-key-fuzz-key-fuzz-key".to_vec(), None),
            ttl_s: 600,
            min_ttl_s: 60,
            max_ttl_s: 3600,
            max_entries: 1 << 16,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = ctrbid_fuzz::serving();
    for kind in Kind::ALL {
        let verdict = notices().handle(kind, &text, 1_800_000_000, &s.selector, &s.rates);
        assert!(!matches!(verdict, Verdict::Accepted | Verdict::Duplicate), "{kind:?} accepted {text:?}: {verdict:?}");
    }
    let mut encoded = String::new();
    push_query_value(&mut encoded, &text);
    assert_eq!(percent_decode(&encoded), text);
});
