//! The HTTP servers: hyper 1 on tokio, HTTP/1.1 with keep-alive, on two ports.
//!
//! The public port serves only what exchanges call: `POST /openrtb2/bid` (the bid
//! path, see [`crate::bidder`]) and the notices `GET|POST /win`, `/bill`, `/loss`, the click
//! redirect `GET /click` and the conversion postback `GET|POST /conv` (see
//! [`crate::notice`]). The admin port (`[admin] listen`, keep it private) serves
//! `GET /healthz` (the process is up), `GET /readyz` (200 only once the model is loaded
//! and warmed and the listeners are bound, 503 while draining), `GET /metrics`
//! (Prometheus text), `GET /admin/status`, and the control endpoints
//! `POST /admin/reload/catalog` and `POST /admin/reload/model`, which need
//! `Authorization: Bearer <admin.token>`. Bad input gets a 4xx with a reason; nothing a
//! client sends produces a 5xx.
//!
//! Slow or greedy clients cannot hold the server: at most `max_connections` are open
//! (the rest wait in the kernel's backlog), a request head must arrive within
//! `header_read_timeout_ms` (else the connection is closed; an idle keep-alive
//! connection is closed after as long) and its body within `body_read_timeout_ms`
//! (else 408). Shutdown drains: readiness goes false at once while the listener keeps
//! accepting for `drain_delay_ms` (so load balancers notice), then the listeners close,
//! requests in flight finish, idle connections are closed once those accepted just
//! before the close have had [`CLOSE_LINGER`] to send their request, and after
//! `grace_period_ms` whatever is left is dropped.
//! From the start of the drain every answer carries `Connection: close`, so a client
//! learns with its answer that the connection ends there, rather than by sending its
//! next request on a connection the server is closing (a request lost mid-flight, which
//! a client cannot safely retry). The drain's start, the listeners' close and its end
//! are logged with the requests in flight and the connections open.

mod admin;
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
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// What every connection shares.
pub struct AppState {
    pub bidder: Bidder,
    pub metrics: Arc<Metrics>,
    /// True once serving; false again while shutting down.
    pub ready: AtomicBool,
    /// True from the start of the drain: answers carry `Connection: close`.
    pub draining: AtomicBool,
    /// Requests being answered on either port (see [`InFlight`]).
    pub in_flight: AtomicUsize,
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
    /// Bearer token of the control endpoints; `None` disables them.
    pub admin_token: Option<String>,
    /// What a reload without a `path` loads.
    pub model_path: PathBuf,
    pub catalog_path: PathBuf,
}

/// Connection handling settings, from `[server]`.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_read_timeout: Duration,
    drain_delay: Duration,
    grace_period: Duration,
}

/// Which port a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Public,
    Admin,
}

/// After the listeners close, how long connections accepted just before get to deliver
/// their request before idle connections are closed (part of the grace period).
const CLOSE_LINGER: Duration = Duration::from_millis(100);

/// Connections the admin port keeps open at most.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Bound, loaded servers that have not started accepting yet.
pub struct Server {
    listener: TcpListener,
    admin: TcpListener,
    state: Arc<AppState>,
    limits: Limits,
}

impl Server {
    /// Binds both listeners, then loads spec, catalog and model. Port 0 picks a free
    /// port; the notice URL defaults to the bound public address.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Server> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
        let admin = TcpListener::bind(cfg.admin.listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin.listen)", cfg.admin.listen))?;
        let mut cfg = cfg.clone();
        cfg.server.listen = listener.local_addr()?;
        let metrics = Metrics::start();
        let loader_metrics = Arc::clone(&metrics);
        let limits = Limits {
            max_connections: cfg.server.max_connections,
            header_read_timeout: Duration::from_millis(cfg.server.header_read_timeout_ms),
            drain_delay: Duration::from_millis(cfg.server.drain_delay_ms),
            grace_period: Duration::from_millis(cfg.server.grace_period_ms),
        };
        let (max_body_bytes, body_read_timeout) =
            (cfg.server.max_body_bytes, Duration::from_millis(cfg.server.body_read_timeout_ms));
        let admin_token = cfg.admin.token.clone();
        let (model_path, catalog_path) = (cfg.model.path.clone(), cfg.model.catalog.clone());
        let bidder = tokio::task::spawn_blocking(move || Bidder::load(&cfg, loader_metrics)).await??;
        // A fleet instance starts whether Redis answers or not (degraded until it does):
        // say which, once.
        if let Some(fleet) = bidder.fleet() {
            match fleet.ping().await {
                true => {
                    eprintln!("ctrbid: fleet: instance {:?}, Redis answers", fleet.instance());
                    if let Some(other) = fleet.check_tag().await {
                        eprintln!(
                            "ctrbid: fleet: instance {:?} has the bid-id tag {:04x} of instance {other:?}: the outcomes of \
                             both instances' bids land in one inbox; rename one of them",
                            fleet.instance(),
                            fleet.tag()
                        );
                    }
                }
                false => eprintln!(
                    "ctrbid: fleet: instance {:?}: Redis does not answer; notices are checked by this instance alone until it does",
                    fleet.instance()
                ),
            }
        }
        let state = Arc::new(AppState {
            bidder,
            metrics,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            max_body_bytes,
            body_read_timeout,
            admin_token,
            model_path,
            catalog_path,
        });
        Ok(Server { listener, admin, state, limits })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains (see the module docs).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server { listener, admin, state, limits } = self;
        let (closing_tx, closing) = watch::channel(false);
        let housekeeping = tokio::spawn(housekeeping(Arc::clone(&state), closing.clone()));
        let fleet = tokio::spawn(fleet_ticks(Arc::clone(&state), closing.clone()));
        let admin_limits = Limits { max_connections: ADMIN_MAX_CONNECTIONS, ..limits };
        let admin_task =
            tokio::spawn(accept_loop(admin, Port::Admin, Arc::clone(&state), admin_limits, closing.clone()));
        let public = accept_loop(listener, Port::Public, Arc::clone(&state), limits, closing);
        state.ready.store(true, Ordering::Release);
        let drain = async {
            shutdown.await;
            // Not ready any more, but still accepting while load balancers catch up.
            state.ready.store(false, Ordering::Release);
            state.draining.store(true, Ordering::Release);
            eprintln!(
                "ctrbid: draining: not ready, answering with Connection: close, listeners open for another {:?}; {} requests in flight",
                limits.drain_delay,
                state.in_flight.load(Ordering::Acquire)
            );
            tokio::time::sleep(limits.drain_delay).await;
            let _ = closing_tx.send(true);
            std::time::Instant::now()
        };
        let (closed_at, ()) = tokio::join!(drain, public);
        let _ = admin_task.await;
        housekeeping.abort();
        fleet.abort();
        state.bidder.save_economics();
        eprintln!(
            "ctrbid: drained {:?} after the listeners closed; {} requests in flight",
            closed_at.elapsed(),
            state.in_flight.load(Ordering::Acquire)
        );
        Ok(())
    }
}

/// Once a second: the bidder's housekeeping (notice ledger, budget day).
async fn housekeeping(state: Arc<AppState>, mut closing: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = every.tick() => {
                // Sweeping a large notice ledger takes milliseconds: not on a worker.
                let blocking = Arc::clone(&state);
                let _ = tokio::task::spawn_blocking(move || blocking.bidder.tick()).await;
            }
            _ = closing.changed() => return,
        }
    }
}

/// Every `fleet.lease_interval_ms`, in a fleet: budget leases, the inbox, the backlog
/// of unshared notices ([`Bidder::fleet_tick`]).
async fn fleet_ticks(state: Arc<AppState>, mut closing: watch::Receiver<bool>) {
    let Some(interval) = state.bidder.fleet().map(|f| f.interval()) else { return };
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => state.bidder.fleet_tick().await,
            _ = closing.changed() => return,
        }
    }
}

/// Counts one request in [`AppState::in_flight`] for as long as it lives, so a request
/// whose connection is dropped mid-answer is uncounted too.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn route(
    state: Arc<AppState>,
    port: Port,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    let _counted = InFlight::enter(&state.in_flight);
    let mut response = match port {
        Port::Public => handler::handle(Arc::clone(&state), req).await,
        Port::Admin => admin::handle(Arc::clone(&state), req).await,
    };
    // Read after the answer is made: a request that was in flight when the drain began
    // is answered with `close` too.
    if state.draining.load(Ordering::Acquire) {
        if let Ok(r) = &mut response {
            r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        }
    }
    response
}

/// Accepts connections on one port until `closing` turns true, then closes the
/// listener and gives open connections the grace period to finish.
async fn accept_loop(
    listener: TcpListener,
    port: Port,
    state: Arc<AppState>,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.keep_alive(true).timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let closed = async move {
        while !*closing.borrow_and_update() {
            if closing.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::pin!(closed);
    let serve_connection = |stream: tokio::net::TcpStream, permit: Option<tokio::sync::OwnedSemaphorePermit>| {
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let service = service_fn(move |req| route(Arc::clone(&state), port, req));
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    };
    loop {
        // A permit per open connection: at the limit, stop accepting until one closes.
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut closed => break,
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
            () = &mut closed => break,
        };
        serve_connection(stream, Some(permit));
    }
    // Connections the kernel completed before the close wait in the backlog: answer them
    // (with `close`) rather than reset them by dropping the listener, which their client
    // would see as a request lost mid-flight. New ones can still land between this sweep
    // and the close; that window is a few system calls wide.
    let mut from_backlog = 0;
    if let Ok(std_listener) = listener.into_std() {
        while let Ok((stream, _peer)) = std_listener.accept() {
            let permit = Arc::clone(&connections).try_acquire_owned().ok();
            match stream.set_nonblocking(true).map(|()| tokio::net::TcpStream::from_std(stream)) {
                Ok(Ok(stream)) => {
                    serve_connection(stream, permit);
                    from_backlog += 1;
                }
                _ => continue,
            }
        }
    }
    let open = limits.max_connections - connections.available_permits();
    if port == Port::Public {
        eprintln!(
            "ctrbid: public listener closed ({from_backlog} connections taken from its backlog); {open} connections open, {} requests in flight, up to {:?} to finish",
            state.in_flight.load(Ordering::Acquire),
            limits.grace_period
        );
    }
    // A connection accepted just before the close has its request on the way; hyper's
    // shutdown would close it as idle and lose that request. Linger a moment so it is
    // read (and answered with `close`); then idle connections are closed.
    let linger = CLOSE_LINGER.min(limits.grace_period);
    tokio::time::sleep(linger).await;
    if tokio::time::timeout(limits.grace_period - linger, graceful.shutdown()).await.is_err() {
        eprintln!(
            "ctrbid: grace period of {:?} over on the {port:?} port, dropping {} connections still open",
            limits.grace_period,
            limits.max_connections - connections.available_permits()
        );
    }
}
