//! Where requests go (`--url`, plain `http://` only) and what they carry (`--corpus`:
//! one JSON body per line, sent in order and cycled; with `--tmax-ms`, each body's
//! `tmax` set at load by [`super::tmax`]). Bodies are slices of the file read once (or
//! of their rewritten copies), so building a request copies no body.

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    host: HeaderValue,
    path: Uri,
    /// Never empty.
    bodies: Vec<Bytes>,
}

impl Target {
    /// Resolves the URL's host (the first address it resolves to is used throughout).
    pub async fn resolve(url: &str, bodies: Vec<Bytes>) -> anyhow::Result<Target> {
        anyhow::ensure!(!bodies.is_empty(), "the corpus has no request");
        let url = Url::parse(url)?;
        let addr = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .with_context(|| format!("resolving {}", url.host))?
            .next()
            .with_context(|| format!("{} resolves to no address", url.host))?;
        let host = HeaderValue::from_str(&url.authority).context("--url authority")?;
        Ok(Target { addr, host, path: url.path, bodies })
    }

    /// Request `i`: a POST of body `i mod corpus size` as application/json.
    pub fn request(&self, i: u64) -> Request<Full<Bytes>> {
        let body = self.bodies[(i % self.bodies.len() as u64) as usize].clone();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.path.clone();
        req.headers_mut().insert(HOST, self.host.clone());
        req.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        req
    }
}

/// The parts of an `http://host[:port][/path]` URL a client needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written: the Host header.
    pub authority: String,
    /// Origin form: `/path?query`.
    pub path: Uri,
}

impl Url {
    pub fn parse(url: &str) -> anyhow::Result<Url> {
        let uri: Uri = url.parse().with_context(|| format!("--url {url:?} is not a URL"))?;
        anyhow::ensure!(uri.scheme_str() == Some("http"), "--url {url:?} must start with http:// (no TLS)");
        let authority = uri.authority().with_context(|| format!("--url {url:?} has no host"))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).parse().expect("a path parses");
        Ok(Url { host, port: authority.port_u16().unwrap_or(80), authority: authority.to_string(), path })
    }
}

/// The corpus file's non-blank lines, each with its top-level `tmax` set to `tmax_ms`
/// when given.
pub fn load_corpus(path: &Path, tmax_ms: Option<u64>) -> anyhow::Result<Vec<Bytes>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bodies = lines(Bytes::from(text));
    anyhow::ensure!(!bodies.is_empty(), "{} has no request (one JSON body per line)", path.display());
    let Some(ms) = tmax_ms else { return Ok(bodies) };
    let set = |(i, body): (usize, &Bytes)| {
        super::tmax::set(body, ms).with_context(|| format!("--tmax-ms: request {} of {}", i + 1, path.display()))
    };
    bodies.iter().enumerate().map(set).collect()
}

/// Non-blank lines without their `\n` or `\r\n`, as slices of `text`.
pub fn lines(text: Bytes) -> Vec<Bytes> {
    text.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.trim_ascii().is_empty())
        .map(|line| text.slice_ref(line))
        .collect()
}
