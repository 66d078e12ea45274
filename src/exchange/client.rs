//! HTTP/1.1 to the bidders: bid requests, notices, clicks and conversions, each carrying
//! the simulated time of its event in [`TIME_HEADER`].
//!
//! One keep-alive connection pool per host (the load generator's [`Pool`], at most
//! `--max-connections` open per host), made on the first call to it; notice and click
//! URLs may name another host than the bidder's (its `server.notice_base_url`).
//! Plain `http://` only. A call's limit covers waiting for a connection, sending and
//! reading the whole answer.

use crate::clock::TIME_HEADER;
use crate::loadgen::pool::Pool;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What came back.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: Bytes,
}

/// Why nothing came back (the text goes to the ledger).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Url(String),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(String),
}

/// Pools by `host:port`. The map's lock is held for a lookup or an insert, never across
/// an `.await`.
pub struct Client {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    max_connections: usize,
}

impl Client {
    pub fn new(max_connections: usize) -> Client {
        Client { pools: Mutex::default(), max_connections }
    }

    async fn pool(&self, host: &str, port: u16) -> Result<Arc<Pool>, CallError> {
        let key = format!("{host}:{port}");
        if let Some(p) = self.pools.lock().expect("pools").get(&key) {
            return Ok(Arc::clone(p));
        }
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| CallError::Io(format!("resolving {host}: {e}")))?
            .next()
            .ok_or_else(|| CallError::Io(format!("{host} resolves to no address")))?;
        let mut pools = self.pools.lock().expect("pools");
        Ok(Arc::clone(pools.entry(key).or_insert_with(|| Pool::new(addr, self.max_connections))))
    }

    /// `method url` with the event time `time_ms` (Unix ms; `None`: no time header) and
    /// `body` (JSON when not empty), answered within `limit`.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        time_ms: Option<i64>,
        body: Bytes,
        limit: Duration,
    ) -> Result<Answer, CallError> {
        let uri: Uri = url.parse().map_err(|e| CallError::Url(format!("{url:?} is not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(CallError::Url(format!("{url:?}: only http:// URLs can be called")));
        }
        let authority = uri.authority().ok_or_else(|| CallError::Url(format!("{url:?} has no host")))?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let path: Uri = uri.path_and_query().map_or("/", |p| p.as_str()).parse().expect("a path parses");
        let mut req = Request::new(Full::new(body.clone()));
        *req.method_mut() = method;
        *req.uri_mut() = path;
        let headers = req.headers_mut();
        headers.insert(HOST, HeaderValue::from_str(authority.as_str()).map_err(|e| CallError::Url(e.to_string()))?);
        if let Some(ms) = time_ms {
            headers.insert(TIME_HEADER, HeaderValue::from(ms));
        }
        if !body.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert("x-openrtb-version", HeaderValue::from_static("2.6"));
        }
        let work = async {
            let pool = self.pool(host, authority.port_u16().unwrap_or(80)).await?;
            send(&pool, req).await
        };
        tokio::time::timeout(limit, work).await.map_err(|_| CallError::Timeout)?
    }
}

/// One exchange on a leased connection; the connection goes back only after the whole
/// answer was read (an abandoned one leaves its slot empty).
async fn send(pool: &Arc<Pool>, req: Request<Full<Bytes>>) -> Result<Answer, CallError> {
    let mut lease = pool.lease().await;
    let mut conn = lease.take().await.map_err(|e| CallError::Io(e.to_string()))?;
    let answer = conn.send_request(req).await.map_err(|e| CallError::Io(format!("HTTP: {e}")))?;
    let status = answer.status().as_u16();
    let location = answer.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = answer.into_body().collect().await.map_err(|e| CallError::Io(format!("HTTP body: {e}")))?.to_bytes();
    lease.keep(conn);
    Ok(Answer { status, location, body })
}
