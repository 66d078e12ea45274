//! Bid requests through the bid path up to scoring: parse, validate, selection against
//! the shipped catalog, and feature extraction with the shipped spec. An input that
//! starts with `{` is taken as the body itself, so the corpus can be seeded with real
//! requests (see `run_all.sh`); any other input is a structured request (`arbitrary`,
//! see `ctrbid_fuzz::request_model`) written as JSON.
//!
//! Proves: no panic; a body whose only oddities are scalars (wrong types, huge or
//! negative numbers, weird strings) always parses; every categorical index lies in its
//! field's range, below the spec's cardinality; every numeric feature is finite.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ctrbid_fuzz::request_model::Request;
use libfuzzer_sys::fuzz_target;

/// Auction time for raw bodies: 2026-01-05 00:00 UTC.
const RAW_BODY_NOW_UNIX: i64 = 1_767_571_200;

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        let mut body = data.to_vec();
        let _ = ctrbid_fuzz::checks::validate_and_extract(&mut body, RAW_BODY_NOW_UNIX, ctrbid_fuzz::serving());
        return;
    }
    let Ok(req) = Request::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let (mut body, wrong_shape) = req.to_json();
    let outcome = ctrbid_fuzz::checks::validate_and_extract(&mut body, req.now_unix(), ctrbid_fuzz::serving());
    if let Err(e) = outcome {
        assert!(wrong_shape, "lenient scalars failed the parse: {e}");
    }
});
