//! Raw bytes into both request parsers (simd-json in place, serde_json) and `validate`.
//!
//! Proves: no body makes parsing or validation panic, and whenever both parsers accept a
//! body they read the same request and validate it the same way (see
//! `ctrbid_fuzz::checks::parse_request`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _outcomes = ctrbid_fuzz::checks::parse_request(data);
});
