//! The bidder's one connection to Redis: multiplexed (every task's commands share one
//! socket, pipelined), opened on first use and again after an error (within
//! `fleet.connect_timeout_ms`: a handshake is several round trips, and a busy process
//! may take a while to run them), every call then bounded by `fleet.timeout_ms`, and
//! all of it gated by the [`Breaker`], so that while Redis is away only its probes wait.
//!
//! A call that fails or times out is [`Unavailable`]: the caller goes on without the
//! shared state (its degraded mode) rather than wait or fail the request. A call that
//! timed out may still have run on the server; the callers' scripts are written so that
//! running one twice is harmless, and say how they tell.

use super::breaker::{Breaker, Permit};
use redis::aio::MultiplexedConnection;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The breaker is open: nothing was sent.
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// Connecting failed, or Redis answered with an error.
    Error,
}

/// Calls by outcome, for `/metrics`.
#[derive(Debug, Default)]
pub struct Calls {
    pub ok: AtomicU64,
    pub error: AtomicU64,
    pub timeout: AtomicU64,
    pub refused: AtomicU64,
}

pub struct Redis {
    client: redis::Client,
    /// `None` until connected, and again after an error (the next call reconnects).
    conn: Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
    connect_timeout: Duration,
    pub breaker: Breaker,
    epoch: Instant,
    pub calls: Calls,
    /// The last error's text (`/admin/status`).
    last_error: Mutex<String>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("timeout", &self.timeout).field("breaker", &self.breaker).finish()
    }
}

impl Redis {
    /// A client for `url` (`redis://host:port[/db]`); nothing is connected yet.
    pub fn new(url: &str, timeout: Duration, connect_timeout: Duration, breaker: Breaker) -> anyhow::Result<Redis> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("fleet.redis_url {url:?}: {e}"))?;
        Ok(Redis {
            client,
            conn: Mutex::new(None),
            timeout,
            connect_timeout,
            breaker,
            epoch: Instant::now(),
            calls: Calls::default(),
            last_error: Mutex::new(String::new()),
        })
    }

    /// Milliseconds since this client was made (monotonic).
    pub fn monotonic_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    /// Runs `call` on the connection, within the timeout and the breaker's say.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, Unavailable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.run_within(self.timeout, call).await
    }

    /// [`Redis::run`] with a limit of its own (the background calls, which no request
    /// waits for).
    pub async fn run_within<T, F, Fut>(&self, timeout: Duration, call: F) -> Result<T, Unavailable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.breaker.permit(self.monotonic_ms()) == Permit::Refuse {
            self.calls.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Unavailable::Refused);
        }
        let conn = match tokio::time::timeout(self.connect_timeout, self.connection()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                self.failed(&format!("connecting: {e}"));
                self.calls.error.fetch_add(1, Ordering::Relaxed);
                return Err(Unavailable::Error);
            }
            Err(_) => {
                self.failed(&format!("no connection within {} ms", self.connect_timeout.as_millis()));
                self.calls.timeout.fetch_add(1, Ordering::Relaxed);
                return Err(Unavailable::Timeout);
            }
        };
        match tokio::time::timeout(timeout, call(conn)).await {
            Ok(Ok(value)) => {
                self.breaker.success();
                self.calls.ok.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                self.calls.error.fetch_add(1, Ordering::Relaxed);
                Err(Unavailable::Error)
            }
            Err(_) => {
                self.failed(&format!("no answer within {} ms", timeout.as_millis()));
                self.calls.timeout.fetch_add(1, Ordering::Relaxed);
                Err(Unavailable::Timeout)
            }
        }
    }

    fn failed(&self, why: &str) {
        self.breaker.failure(self.monotonic_ms());
        // The connection may be half-broken: the next call opens a new one.
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = why.to_string();
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(c.clone());
        }
        // Responses are timed by `run`, per call; the handshake by `connect_timeout`.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None);
        let c = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    pub fn last_error(&self) -> String {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
