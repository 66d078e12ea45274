//! One request from its due time to its outcome: wait for a connection slot, take the
//! slot's connection or open one, send, read the whole answer.
//!
//! The client timeout applies twice. A request still waiting for a slot `timeout` after
//! its due time is never sent (`Unsent`): that bounds the generator's own queue. A request
//! that got its slot has `timeout` again from then to be answered, else it is abandoned
//! and its connection closed (`Timeout`). Counting the second from the due time too would
//! send, under overload, requests with almost no time left that are abandoned at once:
//! every slot would churn through new connections while the server still does the work,
//! and the run would measure that collapse instead of the server. Latency counts from
//! the due time either way.

use super::pool::{ConnectError, Lease, Pool};
use super::summary::Outcome;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout, timeout_at, Instant};

/// How the request ended, and the error's text for `Outcome::Error` and
/// `Outcome::Refused`.
pub async fn exchange(
    pool: &Arc<Pool>,
    req: Request<Full<Bytes>>,
    due: Instant,
    limit: Duration,
) -> (Outcome, Option<String>) {
    let Ok(mut lease) = timeout_at(due + limit, pool.lease()).await else {
        return (Outcome::Unsent, None);
    };
    match timeout(limit, send(&mut lease, req)).await {
        Ok(Ok(status)) => (Outcome::of_status(status), None),
        Ok(Err(err @ SendError::Connect(_))) => (Outcome::Refused, Some(err.to_string())),
        Ok(Err(err)) => (Outcome::Error, Some(err.to_string())),
        Err(_) => (Outcome::Timeout, None),
    }
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
}

/// The answer's status; the connection goes back to the slot only after the whole body
/// was read, so an abandoned exchange leaves the slot empty.
async fn send(lease: &mut Lease, req: Request<Full<Bytes>>) -> Result<u16, SendError> {
    let mut conn = lease.take().await?;
    let answer = conn.send_request(req).await?;
    let status = answer.status().as_u16();
    answer.into_body().collect().await?;
    lease.keep(conn);
    Ok(status)
}
