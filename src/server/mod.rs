//! The HTTP server: hyper 1 on tokio, HTTP/1.1 with keep-alive.
//!
//! Routes: `POST /openrtb2/bid` (the bid path, see [`crate::bidder`]), `GET /healthz`
//! (the process is up), `GET /readyz` (200 only once the model is loaded and warmed and
//! the listener is bound), `GET /metrics` (Prometheus text). Bad input gets a 4xx with
//! a reason; nothing a client sends produces a 5xx.

mod handler;

use crate::bidder::Bidder;
use crate::config::Config;
use crate::metrics::Metrics;
use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// What every connection shares.
pub struct AppState {
    pub bidder: Bidder,
    pub metrics: Arc<Metrics>,
    /// True once serving; false again while shutting down.
    pub ready: AtomicBool,
    pub max_body_bytes: usize,
}

/// A bound, loaded server that has not started accepting yet.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
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
        let bidder = tokio::task::spawn_blocking(move || Bidder::load(&cfg, loader_metrics)).await??;
        let state = Arc::new(AppState { bidder, metrics, ready: AtomicBool::new(false), max_body_bytes });
        Ok(Server { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Accepts connections until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server { listener, state } = self;
        state.ready.store(true, Ordering::Release);
        tokio::pin!(shutdown);
        loop {
            let (stream, _peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        eprintln!("ctrbid: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = service_fn(move |req| handler::handle(Arc::clone(&state), req));
                let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
            });
        }
        state.ready.store(false, Ordering::Release);
        Ok(())
    }
}
