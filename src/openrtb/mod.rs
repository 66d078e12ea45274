//! OpenRTB 2.6: the request as exchanges send it, the rules a request must meet, and
//! the response ctrbid answers with.
//!
//! Parsing borrows from the request body (`Cow<'a, str>` points into the buffer
//! whenever a string needs no unescaping), so a request costs no per-field allocation.
//! [`parse`] turns bytes into a [`BidRequest`] after one pass over them (`scan`: nesting
//! depth, number ids); [`validate`] proves the spec's rules and returns a
//! [`ValidRequest`]; [`response`] writes the [`BidResponse`]. **Every id the response
//! echoes reads as the exchange sent it, byte for byte**, a number id as its text (`ids`).

mod ids;
mod lenient;
pub mod list;
pub mod native;
pub mod request;
pub mod response;
mod scan;
mod validate;

pub use list::List;
pub use request::*;
pub use response::{Bid, BidResponse, SeatBid};
pub use validate::{check, check_scanning_up_to, validate, ValidRequest, ValidationError, MAX_IMPS};

/// Why a body could not be read as a bid request.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("empty body")]
    Empty,
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("not a bid request: the body must be a JSON object")]
    NotAnObject,
}

/// A request body must be an object: serde would read a top-level array positionally
/// into the request's fields.
fn check_object(body: &[u8]) -> Result<(), ParseError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(ParseError::Empty),
        Some(b'{') => Ok(()),
        Some(_) => Err(ParseError::NotAnObject),
    }
}

/// Deepest nesting of arrays and objects accepted. OpenRTB requests nest about 6
/// levels (ext objects a few more); the deserialiser recurses per level, so a body of
/// thousands of `[` would otherwise exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// simd-json's scratch space (tape, string buffer, aligned input copy) is kept per
/// thread and reused: allocating it per call cost more than the parse itself.
const PARSE_BUFFER_BYTES: usize = 16 * 1024;

thread_local! {
    static PARSE_BUFFERS: std::cell::RefCell<simd_json::Buffers> =
        std::cell::RefCell::new(simd_json::Buffers::new(PARSE_BUFFER_BYTES));
}

/// The checks both parsers make before parsing: an object, not nested too deep.
fn pre_parse(body: &[u8]) -> Result<scan::Scan, ParseError> {
    check_object(body)?;
    let scan = scan::scan(body, MAX_DEPTH);
    if scan.too_deep {
        return Err(ParseError::TooDeep);
    }
    Ok(scan)
}

/// Parses a bid request with simd-json, in place: `body` is rewritten (strings are
/// unescaped where they lie) and the request borrows from it. A body with an id that
/// is a number other than a short integer goes to [`parse_serde_json`] instead, which
/// keeps the number's text (module `ids`).
///
/// **simd-json must not go back to 0.14** (`Cargo.toml` has 0.19.0, checked). 0.14.3
/// misread floats of 20 significant digits or more, silently, depending on where they
/// sat in the body. Its long-float check (`numberparse/correct.rs`) counts the number's
/// `d` digits and, to discount leading zeros, meant to remember the index of the first
/// digit but kept that digit's *byte* `c` (48 to 57; `b'3'` = 51). The count became
/// `d - (s - c)` for a number whose first digit lies `s` bytes into the body, so for
/// `c + d - 19 < s <= c + d` it fell below 19 and the number took the fast path with a
/// mantissa that had overflowed `u64`; everywhere else (wrapping past 0 included) it
/// took the exact slow path. `{"id": 3333333333333351169.3333333333333333333333}` (c 51,
/// d 41) read as 0.000114788883521 behind 67 to 85 spaces, correctly behind 0 to 66 and
/// 86 or more. Integer fields hid it (both values read as absent); floors and `ext`
/// numbers did not. 0.19.0 keeps the index. `tests/parse_offsets.rs` parses every sample
/// and long numbers in every numeric field at each offset from 0 to 128 against
/// serde_json; `tests/fixtures/fuzz-regressions/parse_request-float-*` are the
/// fuzzer's input and the same number as a floor.
pub fn parse(body: &mut [u8]) -> Result<BidRequest<'_>, ParseError> {
    let scan = pre_parse(body)?;
    if scan.number_id {
        return parse_serde_json(body);
    }
    let len = body.len();
    PARSE_BUFFERS
        .with_borrow_mut(|buffers| simd_json::serde::from_slice_with_buffers(body, buffers))
        .map_err(|e| json_error(&scan, len, e))
}

/// The parser's error, or where the body ends when it ends with something still open
/// (the parser's own position for a cut body is wherever it gave up).
fn json_error(scan: &scan::Scan, len: usize, parser: impl std::fmt::Display) -> ParseError {
    match scan.unclosed() {
        Some(open) => ParseError::Json(format!("the body ends at byte {len} {open}: truncated? ({parser})")),
        None => ParseError::Json(parser.to_string()),
    }
}

/// Parses with serde_json instead of simd-json: the same structs, with floats read
/// exactly (`float_roundtrip`) and number ids kept as their text. The fallback of
/// [`parse`], and the baseline the parse benchmark compares against.
pub fn parse_serde_json(body: &[u8]) -> Result<BidRequest<'_>, ParseError> {
    let scan = pre_parse(body)?;
    let json = |e: serde_json::Error| ParseError::Json(e.to_string());
    let mut req = serde_json::from_slice(body).map_err(|e| json_error(&scan, body.len(), e))?;
    if scan.number_id {
        ids::restore_number_ids(body, &mut req).map_err(json)?;
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(input: &str, expect: impl Fn(&BidRequest<'_>)) {
        let mut a = input.as_bytes().to_vec();
        let simd = parse(&mut a).expect("simd-json parses");
        expect(&simd);
        let serde = parse_serde_json(input.as_bytes()).expect("serde_json parses");
        expect(&serde);
    }

    #[test]
    fn parses_minimal_banner_request() {
        check_parse(r#"{"id":"r1","imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":0.5}]}"#, |r| {
            assert_eq!(r.id.as_deref(), Some("r1"));
            let imp = &r.imp[0];
            assert_eq!(imp.id.as_deref(), Some("1"));
            assert_eq!(imp.bidfloor, Some(0.5));
            let b = imp.banner.as_ref().unwrap();
            assert_eq!((b.w, b.h), (Some(300), Some(250)));
        });
    }

    #[test]
    fn unescapes_strings() {
        check_parse(
            r#"{"id":"a\"b\\c\u00e9\n","imp":[],"site":{"domain":"ex\/ample.com","cat":["IAB\u0031"]}}"#,
            |r| {
                assert_eq!(r.id.as_deref(), Some("a\"b\\c\u{e9}\n"));
                let site = r.site.as_ref().unwrap();
                assert_eq!(site.domain.as_deref(), Some("ex/ample.com"));
                assert_eq!(site.cat[0], "IAB1");
            },
        );
    }

    #[test]
    fn accepts_numbers_as_strings_and_strings_as_numbers() {
        check_parse(
            r#"{"id":123,"tmax":"150","imp":[{"id":1,"bidfloor":"0.25","banner":{"w":"320","h":50.0}}],
                "device":{"devicetype":"4","geo":{"utcoffset":"-300"}}}"#,
            |r| {
                assert_eq!(r.id.as_deref(), Some("123"));
                assert_eq!(r.tmax, Some(150));
                assert_eq!(r.imp[0].id.as_deref(), Some("1"));
                assert_eq!(r.imp[0].bidfloor, Some(0.25));
                let b = r.imp[0].banner.as_ref().unwrap();
                assert_eq!((b.w, b.h), (Some(320), Some(50)));
                let d = r.device.as_ref().unwrap();
                assert_eq!(d.devicetype, Some(4));
                assert_eq!(d.geo.as_ref().unwrap().utcoffset, Some(-300));
            },
        );
    }

    /// The ids a response echoes (request, first imp, its first deal), read by both parsers.
    fn check_ids(body: &str, id: &str, imp_id: &str, deal_id: &str) {
        fn read<'r>(r: &'r BidRequest<'_>) -> (Option<&'r str>, Option<&'r str>, Option<&'r str>) {
            let imp = &r.imp[0];
            let deal = &imp.pmp.as_ref().expect("pmp").deals[0];
            (r.id.as_deref(), imp.id.as_deref(), deal.id.as_deref())
        }
        let want = (Some(id), Some(imp_id), Some(deal_id));
        assert_eq!(
            read(&parse(&mut body.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{body}: {e}"))),
            want,
            "simd-json: {body}"
        );
        assert_eq!(read(&parse_serde_json(body.as_bytes()).expect("parses")), want, "serde_json: {body}");
    }

    #[test]
    fn ids_read_byte_for_byte_whether_strings_or_numbers() {
        let body = |id: &str, imp: &str, deal: &str| {
            format!(r#"{{"id":{id},"imp":[{{"id":{imp},"pmp":{{"deals":[{{"bidfloor":1.5,"id":{deal}}}]}}}}]}}"#)
        };
        let long = "3333333333333351169.3333333333333333333333";
        // Numbers: their text, never rounded through f64 nor reformatted.
        check_ids(&body(long, long, long), long, long, long);
        check_ids(&body("1.0", "-0", "1e3"), "1.0", "-0", "1e3");
        check_ids(&body("1.50", "2E+2", "-0.0"), "1.50", "2E+2", "-0.0");
        check_ids(
            &body("18446744073709551616", "9223372036854775808", "123456789012345678901234567890"),
            "18446744073709551616",
            "9223372036854775808",
            "123456789012345678901234567890",
        );
        check_ids(&body("123", "1", "999999999999999999"), "123", "1", "999999999999999999");
        check_ids(&body("-42", "0", "7"), "-42", "0", "7");
        // Strings, with a number id beside them; escapes read as what they stand for.
        check_ids(
            &body(r#""3333333333333351169.3333""#, "2.5", r#""d\"1""#),
            "3333333333333351169.3333",
            "2.5",
            "d\"1",
        );
        check_ids(&body(r#""abc""#, r#""0001""#, r#""\u00e9""#), "abc", "0001", "\u{e9}");
        // Whitespace around the number is not part of it; the key may be escaped.
        check_ids(
            "{\"i\\u0064\" : \t1.25 ,\"imp\":[{\"id\" :\n 2.0,\"pmp\":{\"deals\":[{\"id\":3.0 }]}}]}",
            "1.25",
            "2.0",
            "3.0",
        );
        // Elements that are not objects are dropped by both reads alike, so ids land on
        // the right imp and deal.
        check_ids(
            r#"{"id":1.5,"imp":[7,{"id":2.5,"pmp":{"deals":["x",{"id":3.5},{"id":4.5}]}},{"id":5.5}]}"#,
            "1.5",
            "2.5",
            "3.5",
        );
    }

    #[test]
    fn ignores_unknown_fields_and_wrong_typed_scalars() {
        check_parse(
            r#"{"id":"x","imp":[{"id":"1","native":{"request":"{}"},"ext":{"deep":[1,{"a":null}]},"bidfloor":"cheap"}],
                "unknown":{"x":[1,2,3]},"device":{"devicetype":"phone","os":7}}"#,
            |r| {
                assert_eq!(r.imp[0].bidfloor, None);
                assert!(r.imp[0].native.is_some());
                let d = r.device.as_ref().unwrap();
                assert_eq!(d.devicetype, None);
                assert_eq!(d.os.as_deref(), Some("7"));
            },
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_it_reaches_the_stack() {
        for depth in [MAX_DEPTH + 1, 10_000, 200_000] {
            for open in ["[", "{\"a\":"] {
                let close = if open == "[" { "]" } else { "}" };
                let body = format!(r#"{{"id":"1","ext":{}1{}}}"#, open.repeat(depth), close.repeat(depth));
                let mut buf = body.clone().into_bytes();
                assert!(matches!(parse(&mut buf), Err(ParseError::TooDeep)), "depth {depth}");
                assert!(matches!(parse_serde_json(body.as_bytes()), Err(ParseError::TooDeep)));
            }
        }
        // Brackets inside strings do not count; escaped quotes do not end a string.
        let inside = format!(r#"{{"id":"[{}\"{{","imp":[]}}"#, "[".repeat(10_000));
        assert!(parse(&mut inside.clone().into_bytes()).is_ok());
        let ok = format!(r#"{{"id":"1","ext":{}1{}}}"#, "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(parse(&mut ok.into_bytes()).is_ok());
    }

    #[test]
    fn rejects_malformed_json_with_a_reason() {
        for bad in ["{", "{\"id\":}", "{\"a\":[1,2", "{\"id\":nul}", "{\"imp\":[{]}"] {
            let mut buf = bad.as_bytes().to_vec();
            let err = parse(&mut buf).unwrap_err();
            assert!(matches!(err, ParseError::Json(ref m) if !m.is_empty()), "{bad}: {err}");
        }
        assert!(matches!(parse(&mut b"  ".to_vec()), Err(ParseError::Empty)));
        // Found by fuzzing: a top-level array was read positionally into the fields.
        for not_object in ["[-0]", " [\"id\",[]]", "\"x\"", "1", "null"] {
            assert!(matches!(parse(&mut not_object.as_bytes().to_vec()), Err(ParseError::NotAnObject)), "{not_object}");
            assert!(matches!(parse_serde_json(not_object.as_bytes()), Err(ParseError::NotAnObject)));
        }
    }
}
