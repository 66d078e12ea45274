//! The HTTP server: hyper 1 on tokio, HTTP/1.1 with keep-alive.
//!
//! Routes: `POST /openrtb2/bid` (the bid path, see [`crate::bidder`]), `GET /healthz`
//! (the process is up), `GET /readyz` (200 only once the model is loaded and warmed and
//! the listener is bound), `GET /metrics` (Prometheus text). Bad input gets a 4xx with
//! a reason; nothing a client sends produces a 5xx.
//!
//! Slow or greedy clients cannot hold the server: at most `max_connections` are open
//! (the rest wait in the kernel's backlog), a request head must arrive within
//! `header_read_timeout_ms` (else the connection is closed; an idle keep-alive
//! connection is closed after as long) and its body within
//! `body_read_timeout_ms` (else 408). Shutdown drains: readiness goes false, the
//! listener closes, requests in flight finish, and after `grace_period_ms` whatever is
//! left is dropped.

mod encoding;
mod handler;

use crate::bidder::Bidder;
use crate::config::Config;
use crate::metrics::Metrics;
use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What every connection shares.
pub struct AppState {
    pub bidder: Bidder,
    pub metrics: Arc<Metrics>,
    /// True once serving; false again while shutting down.
    pub ready: AtomicBool,
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
}

/// Connection handling settings, from `[server]`.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_read_timeout: Duration,
    grace_period: Duration,
}

/// A bound, loaded server that has not started accepting yet.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    limits: Limits,
}

impl Server {
    /// Binds the listener, then loads spec, catalog and model. Port 0 picks a free port;
    /// the notice URL defaults to the bound address.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Server> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
        let mut cfg = cfg.clone();
        cfg.server.listen = listener.local_addr()?;
        let metrics = Metrics::start();
        let loader_metrics = Arc::clone(&metrics);
        let max_body_bytes = cfg.server.max_body_bytes;
        let body_read_timeout = Duration::from_millis(cfg.server.body_read_timeout_ms);
        let limits = Limits {
            max_connections: cfg.server.max_connections,
            header_read_timeout: Duration::from_millis(cfg.server.header_read_timeout_ms),
            grace_period: Duration::from_millis(cfg.server.grace_period_ms),
        };
        let bidder = tokio::task::spawn_blocking(move || Bidder::load(&cfg, loader_metrics)).await??;
        let state =
            Arc::new(AppState { bidder, metrics, ready: AtomicBool::new(false), max_body_bytes, body_read_timeout });
        Ok(Server { listener, state, limits })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Accepts connections until `shutdown` completes, then drains: readiness goes
    /// false, the listener closes, and requests in flight get the grace period to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server { listener, state, limits } = self;
        let connections = Arc::new(Semaphore::new(limits.max_connections));
        let graceful = GracefulShutdown::new();
        let mut http = http1::Builder::new();
        http.keep_alive(true).timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        state.ready.store(true, Ordering::Release);
        tokio::pin!(shutdown);
        loop {
            // A permit per open connection: at the limit, stop accepting until one closes.
            let permit = tokio::select! {
                permit = Arc::clone(&connections).acquire_owned() => permit.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let (stream, _peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        eprintln!("ctrbid: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let state = Arc::clone(&state);
            let service = service_fn(move |req| handler::handle(Arc::clone(&state), req));
            let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                let _ = conn.await;
                drop(permit);
            });
        }
        state.ready.store(false, Ordering::Release);
        drop(listener);
        if tokio::time::timeout(limits.grace_period, graceful.shutdown()).await.is_err() {
            eprintln!("ctrbid: grace period of {:?} over, dropping the connections still open", limits.grace_period);
        }
        Ok(())
    }
}
