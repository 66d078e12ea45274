//! Structured bid requests (`arbitrary`, see `ctrbid_fuzz::request_model`) through the
//! bid path up to scoring: parse, validate, selection against the shipped catalog, and
//! feature extraction with the shipped spec.
//!
//! Proves: no panic; a body whose only oddities are scalars (wrong types, huge or
//! negative numbers, weird strings) always parses; every categorical index lies in its
//! field's range, below the spec's cardinality; every numeric feature is finite.

#![no_main]

use ctrbid_fuzz::request_model::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|req: Request| {
    let (mut body, wrong_shape) = req.to_json();
    let outcome = ctrbid_fuzz::checks::validate_and_extract(&mut body, req.now_unix(), ctrbid_fuzz::serving());
    if let Err(e) = outcome {
        assert!(wrong_shape, "lenient scalars failed the parse: {e}");
    }
});
