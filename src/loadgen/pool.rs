//! Keep-alive HTTP/1.1 connections to the target, at most `max` open at once.
//!
//! The pool has `max` slots; a slot holds an open connection or nothing. A request
//! leases a slot (waiting in arrival order while every slot is leased: tokio's semaphore
//! is fair), uses the slot's connection or opens one, and gives the slot back when the
//! lease drops: with the connection if the exchange finished cleanly ([`Lease::keep`]),
//! empty otherwise (a request abandoned mid-flight leaves its HTTP/1 connection unusable).
//! Open connections go to the front of the free list and empty slots to the back, so a
//! light load reuses a few connections instead of opening `max`.
//!
//! **Invariant: free slots == available permits**, so at most `max` connections are open.
//! The free list sits behind a `std::sync::Mutex` held for one push or pop, never across
//! an `.await`; this is the load generator, not the bidder's request path.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// The sending half of one HTTP/1.1 connection; its driver runs as its own task.
pub type Conn = SendRequest<Full<Bytes>>;

pub struct Pool {
    addr: SocketAddr,
    free: Mutex<VecDeque<Option<Conn>>>,
    permits: Semaphore,
}

impl Pool {
    pub fn new(addr: SocketAddr, max: usize) -> Arc<Pool> {
        let free = (0..max).map(|_| None).collect();
        Arc::new(Pool { addr, free: Mutex::new(free), permits: Semaphore::new(max) })
    }

    /// Waits for a free slot.
    pub async fn lease(self: &Arc<Self>) -> Lease {
        self.permits.acquire().await.expect("the pool's semaphore is never closed").forget();
        let conn = self.free.lock().expect("free list").pop_front().expect("a permit means a free slot");
        Lease { pool: Arc::clone(self), conn }
    }

    fn give_back(&self, conn: Option<Conn>) {
        {
            let mut free = self.free.lock().expect("free list");
            match conn {
                Some(c) => free.push_front(Some(c)),
                None => free.push_back(None),
            }
        }
        self.permits.add_permits(1);
    }
}

/// One leased slot; dropping it gives the slot back.
pub struct Lease {
    pool: Arc<Pool>,
    conn: Option<Conn>,
}

impl Lease {
    /// The slot's connection if it can take a request, else a new one (the slot is empty
    /// until [`Lease::keep`] puts a connection back).
    pub async fn take(&mut self) -> Result<Conn, ConnectError> {
        if let Some(mut conn) = self.conn.take() {
            if conn.ready().await.is_ok() {
                return Ok(conn);
            }
        }
        connect(self.pool.addr).await
    }

    /// Puts a connection that finished its exchange back in the slot.
    pub fn keep(&mut self, conn: Conn) {
        self.conn = Some(conn);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let conn = self.conn.take().filter(|c| !c.is_closed());
        self.pool.give_back(conn);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect: {0}")]
    Tcp(#[from] std::io::Error),
    #[error("HTTP/1.1 handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

async fn connect(addr: SocketAddr) -> Result<Conn, ConnectError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (conn, driver) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        // Ends when the server closes or every `Conn` handle is dropped; the exchange
        // that was using the connection reports the error.
        let _ = driver.await;
    });
    Ok(conn)
}
