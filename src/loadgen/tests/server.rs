//! A scripted HTTP/1.1 server on `127.0.0.1:0` for the load generator's tests. Each
//! body says how to answer it: `"answer":204` sets the status (200 without it),
//! `"sleep_ms":N` delays the answer. The server keeps every body it got, byte for byte,
//! and counts the connections it accepted.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct Scripted {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    connections: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Scripted {
    pub async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (b, c) = (Arc::clone(&bodies), Arc::clone(&connections));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                c.fetch_add(1, Ordering::Relaxed);
                let b = Arc::clone(&b);
                let service = service_fn(move |req| answer(req, Arc::clone(&b)));
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service));
            }
        });
        Scripted { addr, bodies, connections, accept }
    }

    pub fn url(&self) -> String {
        format!("http://{}/openrtb2/bid", self.addr)
    }

    /// Every body received, in arrival order.
    pub fn bodies(&self) -> Vec<Bytes> {
        self.bodies.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn answer(req: Request<Incoming>, bodies: Arc<Mutex<Vec<Bytes>>>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    bodies.lock().unwrap().push(body.clone());
    let script: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(ms) = script["sleep_ms"].as_u64() {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = script["answer"].as_u64().and_then(|s| StatusCode::from_u16(s as u16).ok()).unwrap_or(StatusCode::OK);
    let mut res =
        Response::new(Full::new(if status == StatusCode::OK { Bytes::from_static(b"{}") } else { Bytes::new() }));
    *res.status_mut() = status;
    Ok(res)
}
