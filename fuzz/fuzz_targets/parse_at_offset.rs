//! A body behind a chosen amount of whitespace (the input's first byte), through both
//! request parsers.
//!
//! Proves: where a body sits in the buffer does not change what it reads as (simd-json
//! 0.14.3 read a long float differently 67 bytes in), and at that offset the two
//! parsers agree (see `ctrbid_fuzz::checks::parse_at_offset`). Seeded with every request
//! the project has, each behind a few offsets (`run_all.sh`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _outcome = ctrbid_fuzz::checks::parse_at_offset(data);
});
