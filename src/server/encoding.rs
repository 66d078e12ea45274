//! HTTP content coding of bid traffic: gzip request bodies in, gzip responses out.
//!
//! Exchanges compress large requests (`Content-Encoding: gzip`) and ask for compressed
//! answers (`Accept-Encoding: gzip`). A decompressed body is held to the same size limit
//! as a plain one, so a small compressed body cannot expand without bound.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::HeaderMap;
use std::io::{Read, Write};

/// How the request body is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCoding {
    Identity,
    Gzip,
}

/// Why a coded body cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A coding other than gzip or identity (answered 415).
    Unsupported(String),
    /// The decompressed body is larger than the limit (413).
    TooLarge,
    /// Not valid gzip (400).
    Corrupt(String),
}

/// The request's `Content-Encoding`.
pub fn body_coding(headers: &HeaderMap) -> Result<BodyCoding, DecodeError> {
    let Some(value) = headers.get(http::header::CONTENT_ENCODING) else {
        return Ok(BodyCoding::Identity);
    };
    match value.to_str().map(|v| v.trim().to_ascii_lowercase()) {
        Ok(v) if v.is_empty() || v == "identity" => Ok(BodyCoding::Identity),
        Ok(v) if v == "gzip" || v == "x-gzip" => Ok(BodyCoding::Gzip),
        Ok(v) => Err(DecodeError::Unsupported(v)),
        Err(_) => Err(DecodeError::Unsupported("(not ASCII)".into())),
    }
}

/// Decompresses a gzip body of at most `limit` bytes once inflated.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

/// True when `Accept-Encoding` accepts gzip (a `gzip` or `*` entry without `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default().to_ascii_lowercase();
            let refused = parts
                .any(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0));
            (coding == "gzip" || coding == "*") && !refused
        })
}

/// Compresses a response body (fast level: answers are small and latency counts).
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 2 + 64), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: http::header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn gzip_round_trips_byte_exact() {
        let body: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(gunzip(&gzip(&body), body.len()).unwrap(), body);
        assert_eq!(gunzip(&gzip(&body), body.len() - 1), Err(DecodeError::TooLarge));
        assert!(matches!(gunzip(b"not gzip", 100), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn codings_and_accept_encoding() {
        use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING};
        assert_eq!(body_coding(&HeaderMap::new()), Ok(BodyCoding::Identity));
        assert_eq!(body_coding(&headers(CONTENT_ENCODING, "GZIP")), Ok(BodyCoding::Gzip));
        assert_eq!(body_coding(&headers(CONTENT_ENCODING, "br")), Err(DecodeError::Unsupported("br".into())));
        assert!(accepts_gzip(&headers(ACCEPT_ENCODING, "deflate, gzip;q=0.8")));
        assert!(accepts_gzip(&headers(ACCEPT_ENCODING, "*")));
        assert!(!accepts_gzip(&headers(ACCEPT_ENCODING, "gzip;q=0, br")));
        assert!(!accepts_gzip(&headers(ACCEPT_ENCODING, "identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
