//! Where a body sits in the buffer must not change what it reads as.
//!
//! simd-json 0.14.3 read a float of 19 digits or more wrongly when it started about 50
//! to 100 bytes into the body, and rightly elsewhere (`openrtb::parse` states the cause).
//! Here every Prebid sample (committed in `tests/fixtures/openrtb/prebid`) and bodies
//! with long numbers in every numeric field are parsed behind 0 to 128 bytes of
//! whitespace; each must read as the same request (`Debug` equal) at every offset, and
//! as serde_json reads it with exact floats (`openrtb::parse_serde_json`, whose
//! `float_roundtrip` the crate turns on).

use ctrbid::openrtb::{parse, parse_serde_json};
use std::path::Path;

/// Offsets tried: 0 to this many bytes of whitespace in front of the body.
const MAX_OFFSET: usize = 128;

/// Numbers that are hard to read: more than 19 significant digits, beyond 64 bits,
/// the float range's ends, and ones that round up.
const LONG_NUMBERS: &[&str] = &[
    "3333333333333351169.3333333333333333333333",
    "12345678901234567890.5",
    "9999999999999999999.9",
    "1.2345678901234567890123",
    "0.0000000000000000000012345678901234567890",
    "-98765432109876543210.123456789e-5",
    "7.0000000000000000000000000001",
    "0.772625221689444997077734",
    "1234567890123456789",
    "123456789012345678901234567890",
    "18446744073709551616",
    "-9223372036854775809",
    "2.2250738585072011e-308",
    "1.7976931348623157e308",
    "5e-324",
];

/// A request with `N` in every numeric field ctrbid reads and in `ext` objects; no `id`
/// holds a number, so simd-json itself reads every one of them (a number id goes to
/// serde_json: `openrtb::ids`).
const EVERY_NUMERIC_FIELD: &str = r#"{"id":"r1","tmax":N,"at":N,"cattax":N,"test":N,"allimps":N,
"imp":[{"id":"1","tagid":N,"bidfloor":N,"secure":N,"exp":N,"instl":N,"rwdd":N,
 "banner":{"w":N,"h":N,"pos":N,"btype":[N],"battr":[N,N],"api":[N],"format":[{"w":N,"h":N},{"w":N,"h":N}]},
 "video":{"w":N,"h":N,"minduration":N,"maxduration":N,"protocols":[N,N],"placement":N,"plcmt":N,
  "linearity":N,"skip":N,"startdelay":N,"battr":[N],"api":[N]},
 "audio":{"minduration":N,"maxduration":N,"protocols":[N],"battr":[N],"feed":N},
 "pmp":{"private_auction":N,"deals":[{"id":"d1","bidfloor":N,"at":N,"wseat":[N]}]},
 "ext":{"n":N,"a":[N,{"m":N,"s":"N"}]}}],
"site":{"id":"s1","cat":["IAB1"],"publisher":{"id":"p1"},"content":{"livestream":N},"ext":{"amp":N}},
"device":{"devicetype":N,"dnt":N,"lmt":N,"connectiontype":N,"w":N,"h":N,
 "geo":{"lat":N,"lon":N,"utcoffset":N,"type":N},"ext":{"atts":N}},
"user":{"yob":N,"eids":[{"source":"x","uids":[{"atype":N}]}],"data":[{"segment":[{"value":N}]}]},
"regs":{"coppa":N,"gdpr":N,"gpp_sid":[N,N],"ext":{"gdpr":N}},
"source":{"fd":N,"schain":{"complete":N,"ver":"1.0","nodes":[{"asi":"a","sid":"s","hp":N}]}},
"ext":{"prebid":{"n":N,"deep":{"a":[[N]]}}}}"#;

/// `body` behind `offset` bytes of whitespace (spaces, or newlines, tabs and carriage
/// returns in turn when `mixed`).
fn shifted(body: &[u8], offset: usize, mixed: bool) -> Vec<u8> {
    let pad = if mixed { b"\n\t\r " } else { b"    " };
    pad.iter().copied().cycle().take(offset).chain(body.iter().copied()).collect()
}

/// Parses `body` at every offset; returns how many offsets were tried.
fn check(name: &str, body: &[u8]) -> usize {
    let expect = match parse_serde_json(body) {
        Ok(req) => Some(format!("{req:?}")),
        Err(_) => None,
    };
    let mut tried = 0;
    for offset in 0..=MAX_OFFSET {
        for mixed in [false, true] {
            let mut buf = shifted(body, offset, mixed);
            let got = parse(&mut buf).ok().map(|req| format!("{req:?}"));
            assert!(
                got == expect,
                "{name} behind {offset} bytes of whitespace:\n  simd-json  {got:?}\n  serde_json {expect:?}"
            );
            tried += 1;
        }
    }
    tried
}

#[test]
fn every_prebid_sample_reads_the_same_at_every_offset() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openrtb/prebid");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("prebid fixtures").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(files.len() >= 400, "{} samples in {}", files.len(), dir.display());
    let mut parsed = 0;
    for path in &files {
        let body = std::fs::read(path).expect("sample reads");
        check(&path.display().to_string(), &body);
        parsed += usize::from(parse_serde_json(&body).is_ok());
    }
    assert!(parsed >= files.len() - 5, "only {parsed} of {} samples parse", files.len());
}

#[test]
fn long_numbers_in_every_numeric_field_read_the_same_at_every_offset() {
    for n in LONG_NUMBERS {
        let body = EVERY_NUMERIC_FIELD.replace('N', n);
        assert_eq!(check(n, body.as_bytes()), 2 * (MAX_OFFSET + 1));
        // Each number in a body of its own, reached at every offset from the body's
        // start: it lies 9 bytes in at offset 0.
        check(n, format!(r#"{{"tmax":1,"imp":[{{"bidfloor":{n}}}]}}"#).as_bytes());
        check(n, format!(r#"{{"ext":{n}}}"#).as_bytes());
    }
}

#[test]
fn number_ids_read_as_their_text_at_every_offset() {
    for n in LONG_NUMBERS {
        let body = EVERY_NUMERIC_FIELD.replace("\"r1\"", n).replace("\"1\"", n).replace("\"d1\"", n).replace('N', n);
        check(n, body.as_bytes());
        let mut buf = shifted(body.as_bytes(), 67, false);
        let req = parse(&mut buf).expect("parses");
        let deal = &req.imp[0].pmp.as_ref().expect("pmp").deals[0];
        assert_eq!((req.id.as_deref(), req.imp[0].id.as_deref(), deal.id.as_deref()), (Some(*n), Some(*n), Some(*n)));
    }
}
