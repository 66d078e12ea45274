//! The invariants the fuzz targets assert, as plain functions over bytes.
//!
//! Kept free of `libfuzzer-sys` and `arbitrary` so `tests/fuzz_regressions.rs` can
//! include this file (`#[path]`) and replay a saved crash input through exactly the code
//! the fuzzer ran. Every function panics when an invariant breaks; that is the report.

use ctrbid::catalog::{Catalog, Selector};
use ctrbid::config::DEFAULT_MAX_CANDIDATES_PER_IMP;
use ctrbid::currency::Rates;
use ctrbid::features::{Extractor, FeatureSpec};
use ctrbid::openrtb::{self, ValidationError};
use std::collections::HashMap;
use std::path::Path;

/// What the bid path holds while serving, minus the model: loaded once per process.
#[derive(Debug)]
pub struct Serving {
    pub extractor: Extractor,
    pub selector: Selector,
    pub rates: Rates,
}

impl Serving {
    /// The shipped spec (`models/feature_spec.json`) and catalog
    /// (`models/default/catalog.json`) under `repo_root`, and a small rate table so
    /// floors in EUR and GBP convert while other currencies get no bid.
    pub fn load(repo_root: &Path) -> Serving {
        let spec = FeatureSpec::load(&repo_root.join("models/feature_spec.json")).expect("feature spec loads");
        let catalog = Catalog::load(&repo_root.join("models/default/catalog.json")).expect("catalog loads");
        let extractor = Extractor::new(spec);
        let selector = Selector::new(catalog, &extractor);
        let table = HashMap::from([("EUR".to_string(), 1.08), ("GBP".to_string(), 1.27)]);
        let rates = Rates::new(&table).expect("rate table is valid");
        Serving { extractor, selector, rates }
    }
}

/// Parse outcome of one body under both parsers: `Err(())` for a parse error, else the
/// validation outcome.
pub type Outcome = Result<Result<(), ValidationError>, ()>;

/// `parse_request`: raw bytes through simd-json (in place) and serde_json, each
/// followed by `validate`. Neither may panic; when both parse, they must read the same
/// request (compared field by field through `Debug`: both read floats exactly, serde_json
/// with its `float_roundtrip` feature, on in the main crate and the fuzz crate) and
/// validate it the same way.
pub fn parse_request(data: &[u8]) -> (Outcome, Outcome) {
    let mut buf = data.to_vec();
    let simd = openrtb::parse(&mut buf);
    let serde = openrtb::parse_serde_json(data);
    if let (Ok(a), Ok(b)) = (&simd, &serde) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "simd-json and serde_json read different requests");
    }
    let simd = simd.map(|r| openrtb::validate(r).map(|_| ())).map_err(|_| ());
    let serde = serde.map(|r| openrtb::validate(r).map(|_| ())).map_err(|_| ());
    if let (Ok(a), Ok(b)) = (&simd, &serde) {
        assert_eq!(a, b, "simd-json and serde_json validate differently");
    }
    (simd, serde)
}

/// `parse_at_offset`: the first byte says how much whitespace goes in front of the rest
/// of the input, the body: its low 7 bits the count (0 to 127), its high bit the kind
/// (spaces, or `\n\t\r ` in turn). simd-json 0.14.3 read the same number differently at
/// different offsets; here the body must read the same (`Debug` equal) at offset 0 and
/// at the chosen one, or fail at both, and at the chosen offset the two parsers must
/// agree as in [`parse_request`]. Returns the outcome at the chosen offset.
pub fn parse_at_offset(data: &[u8]) -> Outcome {
    let Some((&first, body)) = data.split_first() else { return Err(()) };
    let count = usize::from(first & 0x7f);
    let mut shifted: Vec<u8> =
        if first & 0x80 == 0 { vec![b' '; count] } else { b"\n\t\r ".iter().copied().cycle().take(count).collect() };
    shifted.extend_from_slice(body);
    let outcome = parse_request(&shifted).0;
    let (mut at_zero, mut at_offset) = (body.to_vec(), shifted.clone());
    match (openrtb::parse(&mut at_zero), openrtb::parse(&mut at_offset)) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "read differently {count} bytes in"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("parsed at offset 0: {}, at offset {count}: {}", a.is_ok(), b.is_ok()),
    }
    outcome
}

/// `validate_and_extract`: the bid path up to scoring, as `Bidder::run` takes it
/// (parse, validate, floors to USD, selection capped per imp, request / imp / row
/// features). Every imp gets at least one row: with no candidate, the first creative's
/// keys stand in, so the row code runs on every imp the request carries.
///
/// Asserts: every categorical index lies in its field's range (so below the spec's
/// cardinality) and every numeric value is finite. Returns the validation outcome and
/// the number of rows written.
pub fn validate_and_extract(
    body: &mut [u8],
    now_unix: i64,
    s: &Serving,
) -> Result<Result<usize, ValidationError>, openrtb::ParseError> {
    let req = openrtb::parse(body)?;
    let req = match openrtb::validate(req) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let ex = &s.extractor;
    let spec = ex.spec();
    let mut cat = vec![0i64; ex.cat_width()];
    let mut num = vec![0f32; ex.num_width()];
    let mut candidates = Vec::new();
    let mut rows = 0;
    // The bidder stops here when no allowed currency has a rate; rows are still built
    // so extraction sees every request.
    let _ = s.rates.bid_currency(&req.cur);
    let rc = ex.request(&req, now_unix);
    for (i, imp) in req.imp.iter().enumerate().take(usize::from(u16::MAX)) {
        candidates.clear();
        let terms = ctrbid::catalog::ImpTerms::of(imp, "ctrbid", &s.rates);
        let limits = ctrbid::catalog::Limits {
            per_imp: DEFAULT_MAX_CANDIDATES_PER_IMP,
            pcvr: true,
            ..ctrbid::catalog::Limits::ALL
        };
        s.selector.select_imp(&req, i as u16, imp, &terms, limits, &mut candidates);
        assert!(candidates.len() <= DEFAULT_MAX_CANDIDATES_PER_IMP, "the cap per imp holds");
        for c in &candidates {
            // A deal candidate names a deal open to the seat; its floor is finite.
            assert!(terms.floor_for(c.deal).is_finite(), "candidate with no applicable floor");
        }
        assert!(candidates.iter().all(|c| usize::from(c.imp) == i), "candidate filed under the wrong imp");
        let ic = ex.imp(&rc, imp);
        let stand_in = candidates.is_empty().then_some(0);
        for creative in candidates.iter().map(|c| c.creative).chain(stand_in) {
            ex.write_row(&ic, s.selector.keys(creative), None, &mut cat, &mut num);
            for (v, f) in cat.iter().zip(&spec.cat) {
                let range = f.offset as i64..(f.offset + f.buckets) as i64;
                assert!(range.contains(v), "field {} index {v} outside {range:?}", f.name);
                assert!((0..spec.cardinality as i64).contains(v), "index {v} >= cardinality");
            }
            for (v, f) in num.iter().zip(&spec.num) {
                assert!(v.is_finite(), "numeric field {} is {v}", f.name);
            }
            rows += 1;
        }
    }
    Ok(Ok(rows))
}
