//! The public port: routing of bid requests and notices, and the HTTP side of each answer.

use super::encoding::{self, BodyCoding, DecodeError};
use super::AppState;
use crate::bidder::Answer;
use crate::clock::ClockError;
use crate::metrics::Outcome;
use crate::notice::{self, Verdict};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

const OPENRTB_VERSION: &str = "2.6";
const X_OPENRTB_VERSION: &str = "x-openrtb-version";

/// The `x-openrtb-version` to answer with: the request's when it names a 2.x version
/// (what the exchange speaks), else ours.
fn answer_version(headers: &http::HeaderMap) -> HeaderValue {
    headers
        .get(X_OPENRTB_VERSION)
        .filter(|v| v.to_str().is_ok_and(|v| v.starts_with("2.") && v.len() <= 8))
        .cloned()
        .unwrap_or(HeaderValue::from_static(OPENRTB_VERSION))
}

pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let received = Instant::now();
    let notice_kind = notice::Kind::from_path(req.uri().path());
    let response = match (req.method(), req.uri().path(), notice_kind) {
        (&Method::POST, "/openrtb2/bid", _) => bid(&state, req, received).await,
        (&Method::GET | &Method::POST, _, Some(kind)) => notice(&state, kind, &req).await,
        (_, "/openrtb2/bid", _) => method_not_allowed("POST"),
        (_, _, Some(_)) => method_not_allowed("GET, POST"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

/// The time of an event in the auction clock (simulation mode: its `x-ctrbid-time`
/// header); the error is answered 400 ([`clock_refused`]).
fn event_time(state: &AppState, headers: &http::HeaderMap) -> Result<i64, ClockError> {
    state.bidder.clock().event_ms(headers.get(crate::clock::TIME_HEADER).map(HeaderValue::as_bytes))
}

fn clock_refused(e: ClockError) -> Response<Full<Bytes>> {
    text(StatusCode::BAD_REQUEST, &format!("{e}\n"))
}

/// A win, billing, loss, click or conversion notice: the verdict as a status code and a
/// one-line reason; an accepted or repeated click redirects to the landing page.
async fn notice(state: &AppState, kind: notice::Kind, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let now_ms = match event_time(state, req.headers()) {
        Ok(t) => t,
        Err(e) => return clock_refused(e),
    };
    let query = req.uri().query().unwrap_or_default();
    let (verdict, location) = state.bidder.notice(kind, query, now_ms).await;
    if let Some(location) = location {
        return redirect(&location);
    }
    match verdict {
        Verdict::Accepted => text(StatusCode::OK, "ok\n"),
        // Billing and conversions are idempotent: a repeat is a success that changes nothing.
        Verdict::Duplicate if matches!(kind, notice::Kind::Bill | notice::Kind::Conv) => {
            text(StatusCode::OK, "already applied\n")
        }
        Verdict::Duplicate => text(StatusCode::CONFLICT, "notice already received\n"),
        Verdict::Forged => text(StatusCode::FORBIDDEN, "notice signature does not match\n"),
        Verdict::Expired => text(StatusCode::GONE, "notice URL expired\n"),
        Verdict::Malformed(why) => text(StatusCode::BAD_REQUEST, &format!("malformed notice: {why}\n")),
        Verdict::PriceOutOfBounds => text(StatusCode::BAD_REQUEST, "price is outside the signed bounds\n"),
        Verdict::LedgerFull => text(StatusCode::SERVICE_UNAVAILABLE, "too many notices in flight, retry later\n"),
        Verdict::LogFailed => {
            text(StatusCode::SERVICE_UNAVAILABLE, "the event log cannot record this now, retry later\n")
        }
        Verdict::Contradicts(why) => text(StatusCode::CONFLICT, &format!("notice contradicts an earlier one: {why}\n")),
    }
}

/// 302 to `location` (a click's landing page).
fn redirect(location: &str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::FOUND, "");
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(http::header::LOCATION, v);
            r
        }
        // A landing URL is checked at catalog load; one that still is no header value
        // is the catalog's fault, not the user's: say so rather than send a broken header.
        Err(_) => text(StatusCode::OK, "click recorded; the landing URL is not a valid header value\n"),
    }
}

/// Media types a bid request may be sent as: JSON, or `text/plain` (Prebid.js sends
/// that to avoid a CORS preflight). No content type at all is accepted too.
fn acceptable_content_type(headers: &http::HeaderMap) -> bool {
    let Some(v) = headers.get(CONTENT_TYPE) else { return true };
    let Ok(v) = v.to_str() else { return false };
    let media = v.split(';').next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/json") || media.eq_ignore_ascii_case("text/plain") || media.is_empty()
}

async fn bid(state: &AppState, req: Request<Incoming>, received: Instant) -> Response<Full<Bytes>> {
    let limit = state.max_body_bytes;
    let version = answer_version(req.headers());
    let now_ms = match event_time(state, req.headers()) {
        Ok(t) => t,
        Err(e) => {
            state.metrics.count(Outcome::Invalid);
            return clock_refused(e);
        }
    };
    let gzip_answer = encoding::accepts_gzip(req.headers());
    if !acceptable_content_type(req.headers()) {
        state.metrics.count(Outcome::Invalid);
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type must be application/json (or text/plain) for an OpenRTB bid request\n",
        );
    }
    let coding = match encoding::body_coding(req.headers()) {
        Ok(coding) => coding,
        Err(e) => {
            state.metrics.count(Outcome::Invalid);
            return decode_error(e, limit);
        }
    };
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        state.metrics.count(Outcome::TooLarge);
        return too_large(limit);
    }
    let read = tokio::time::timeout(state.body_read_timeout, Limited::new(req.into_body(), limit).collect());
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            state.metrics.count(Outcome::TooLarge);
            return too_large(limit);
        }
        Ok(Err(e)) => {
            state.metrics.count(Outcome::Invalid);
            return text(StatusCode::BAD_REQUEST, &format!("cannot read request body: {e}\n"));
        }
        Err(_elapsed) => {
            state.metrics.count(Outcome::Invalid);
            let mut r = text(
                StatusCode::REQUEST_TIMEOUT,
                &format!("request body not received within {:?}\n", state.body_read_timeout),
            );
            r.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let mut body = match coding {
        BodyCoding::Identity => Vec::from(body),
        BodyCoding::Gzip => match encoding::gunzip(&body, limit) {
            Ok(inflated) => inflated,
            Err(e) => {
                state.metrics.count(if e == DecodeError::TooLarge { Outcome::TooLarge } else { Outcome::Invalid });
                return decode_error(e, limit);
            }
        },
    };
    match state.bidder.bid(&mut body, received, now_ms).await {
        Answer::Bid(json) => {
            let mut r = if gzip_answer {
                let mut r = Response::new(Full::new(Bytes::from(encoding::gzip(&json))));
                r.headers_mut().insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            } else {
                Response::new(Full::new(Bytes::from(json)))
            };
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r.headers_mut().insert(http::header::VARY, HeaderValue::from_static("accept-encoding"));
            r.headers_mut().insert(X_OPENRTB_VERSION, version);
            r
        }
        Answer::NoBid { body: None, .. } => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut().insert(X_OPENRTB_VERSION, version);
            r
        }
        Answer::NoBid { body: Some(json), .. } => {
            let mut r = Response::new(Full::new(Bytes::from(json)));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r.headers_mut().insert(X_OPENRTB_VERSION, version);
            r
        }
        Answer::BadRequest(reason) => text(StatusCode::BAD_REQUEST, &format!("{reason}\n")),
    }
}

fn decode_error(e: DecodeError, limit: usize) -> Response<Full<Bytes>> {
    match e {
        DecodeError::Unsupported(coding) => text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("content-encoding {coding:?} is not supported: send gzip or identity\n"),
        ),
        DecodeError::TooLarge => too_large(limit),
        DecodeError::Corrupt(reason) => text(StatusCode::BAD_REQUEST, &format!("invalid gzip body: {reason}\n")),
    }
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    text(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body is larger than {limit} bytes\n"))
}

/// 405 with the `Allow` header that RFC 9110 (15.5.6) requires.
pub(super) fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, &format!("method not allowed: {allow} only\n"));
    r.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

pub(super) fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
