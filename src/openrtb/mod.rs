//! OpenRTB 2.6: the request as exchanges send it, the rules a request must meet, and
//! the response ctrbid answers with.
//!
//! Parsing borrows from the request body (`Cow<'a, str>` points into the buffer
//! whenever a string needs no unescaping), so a request costs no per-field allocation.
//! [`parse`] turns bytes into a [`BidRequest`]; [`validate`] proves the spec's rules and
//! returns a [`ValidRequest`]; [`response`] writes the [`BidResponse`].

mod lenient;
pub mod request;
pub mod response;
mod validate;

pub use request::*;
pub use response::{Bid, BidResponse, SeatBid};
pub use validate::{validate, ValidRequest, ValidationError};

/// Why a body could not be read as a bid request.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("empty body")]
    Empty,
    #[error("malformed JSON: {0}")]
    Json(String),
}

/// simd-json's scratch space (tape, string buffer, aligned input copy) is kept per
/// thread and reused: allocating it per call cost more than the parse itself.
const PARSE_BUFFER_BYTES: usize = 16 * 1024;

thread_local! {
    static PARSE_BUFFERS: std::cell::RefCell<simd_json::Buffers> =
        std::cell::RefCell::new(simd_json::Buffers::new(PARSE_BUFFER_BYTES));
}

/// Parses a bid request with simd-json, in place: `body` is rewritten (strings are
/// unescaped where they lie) and the request borrows from it.
pub fn parse(body: &mut [u8]) -> Result<BidRequest<'_>, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    PARSE_BUFFERS
        .with_borrow_mut(|buffers| simd_json::serde::from_slice_with_buffers(body, buffers))
        .map_err(|e| ParseError::Json(e.to_string()))
}

/// Parses with serde_json instead of simd-json: the same structs, the baseline the
/// parse benchmark compares against.
pub fn parse_serde_json(body: &[u8]) -> Result<BidRequest<'_>, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))
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
    fn rejects_malformed_json_with_a_reason() {
        for bad in ["{", "{\"id\":}", "[1,2", "nul", "{\"imp\":[{]}"] {
            let mut buf = bad.as_bytes().to_vec();
            let err = parse(&mut buf).unwrap_err();
            assert!(matches!(err, ParseError::Json(ref m) if !m.is_empty()), "{bad}: {err}");
        }
        assert!(matches!(parse(&mut b"  ".to_vec()), Err(ParseError::Empty)));
    }
}
