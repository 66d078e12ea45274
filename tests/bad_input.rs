//! Bad input over real HTTP: every case gets the answer it should (a 4xx with its
//! reason, or the bid the rest of the request still earns), never a 5xx or a dropped
//! connection, and the server keeps serving a good request after each.

mod common;

use common::{config, raw_to, repo, HttpResponse, TestServer};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A Prebid app sample that bids: the "good request" after each case.
fn good() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap()
}

async fn still_serving(server: &TestServer, after: &str) {
    let r = server.post("/openrtb2/bid", &good()).await;
    assert_eq!(r.status, 200, "the server stopped bidding after {after}: {}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_json_is_400_at_every_cut() {
    let server = TestServer::start(config()).await;
    let body = good();
    let step = (body.len() / 60).max(1);
    for cut in (1..body.len()).step_by(step) {
        let r = server.post("/openrtb2/bid", &body[..cut]).await;
        assert_eq!(r.status, 400, "cut at {cut}: {}", r.text());
        assert!(r.text().contains("malformed JSON"), "cut at {cut}: {}", r.text());
    }
    still_serving(&server, "truncated bodies").await;
    server.stop().await;
}

/// Every value of the request, one at a time, replaced by each JSON type. A value of a
/// type the field cannot take reads as absent (README, "a quirky field costs the field,
/// not the request"), so the damage may refuse the request only where removing the field
/// refuses it too (a field the request cannot do without), and the reason names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_type_in_any_field_costs_the_field_not_the_request() {
    let server = TestServer::start(config()).await;
    let request: serde_json::Value = serde_json::from_slice(&good()).unwrap();
    let mut paths = Vec::new();
    collect_paths(&request, &mut Vec::new(), &mut paths);
    assert!(paths.len() > 30, "{} paths", paths.len());
    let replacements = [
        serde_json::json!("text"),
        serde_json::json!(-12345678901234567i64),
        serde_json::json!(1.5e300),
        serde_json::json!([1, "two", {"three": 3}]),
        serde_json::json!({"nested": {"deep": [null]}}),
        serde_json::Value::Null,
        serde_json::json!(true),
    ];
    let mut statuses = std::collections::BTreeMap::new();
    let mut refused_with_the_field = 0;
    for path in &paths {
        let mut without = request.clone();
        remove(&mut without, path);
        let without = server.post("/openrtb2/bid", &serde_json::to_vec(&without).unwrap()).await;
        assert!(matches!(without.status, 200 | 204 | 400), "{} removed: {}", path.join("/"), without.status);
        for value in &replacements {
            let mut mutated = request.clone();
            *pointer_mut(&mut mutated, path) = value.clone();
            let what = format!("{} = {value}", path.join("/"));
            let r = server.post("/openrtb2/bid", &serde_json::to_vec(&mutated).unwrap()).await;
            match r.status {
                200 => assert_eq!(r.json()["seatbid"][0]["bid"].as_array().map(Vec::len), Some(1), "{what}"),
                // An object where an object belongs is read as that object: a banner
                // with no size in it is valid and fits no creative.
                204 => {
                    assert!(value.is_object() && request.pointer(&pointer(path)).unwrap().is_object(), "{what}: no bid")
                }
                400 => {
                    assert_eq!(
                        without.status,
                        400,
                        "{what} refused the request ({}), yet it bids without the field",
                        r.text()
                    );
                    // An element of the wrong type drops out of its list: the reason names the list.
                    let field = path.iter().rev().find(|p| p.parse::<usize>().is_err()).unwrap();
                    assert!(
                        r.text().contains(field.as_str()),
                        "{what}: the reason does not name {field}: {}",
                        r.text()
                    );
                    refused_with_the_field += 1;
                }
                other => panic!("{what}: status {other} ({})", r.text()),
            }
            *statuses.entry(r.status).or_insert(0) += 1;
        }
    }
    println!(
        "{} mutations by status: {statuses:?}; {refused_with_the_field} refused, each where the field is required",
        paths.len() * replacements.len()
    );
    still_serving(&server, "wrong types").await;
    server.stop().await;
}

/// Removes the value at `path`: the key from its object, or the element from its array.
fn remove(v: &mut serde_json::Value, path: &[String]) {
    let (last, parent) = path.split_last().expect("a path below the root");
    match pointer_mut(v, parent) {
        serde_json::Value::Object(m) => {
            m.remove(last);
        }
        serde_json::Value::Array(a) => {
            a.remove(last.parse::<usize>().unwrap());
        }
        other => panic!("{other} has no children"),
    }
}

fn collect_paths(v: &serde_json::Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if !at.is_empty() {
        out.push(at.clone());
    }
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m {
                at.push(k.clone());
                collect_paths(child, at, out);
                at.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push(i.to_string());
                collect_paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn pointer(path: &[String]) -> String {
    path.iter().map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1"))).collect()
}

fn pointer_mut<'v>(v: &'v mut serde_json::Value, path: &[String]) -> &'v mut serde_json::Value {
    v.pointer_mut(&pointer(path)).expect("path exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_huge_arrays_and_invalid_utf8() {
    let server = TestServer::start(config()).await;
    let with_ext = |ext: &str| {
        let body = String::from_utf8(good()).unwrap();
        body.replacen('{', &format!("{{\"ext\":{ext},"), 1).into_bytes()
    };
    // 10,000 levels of nesting: refused before it reaches the (recursive) deserialiser.
    let deep = with_ext(&format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)));
    let r = server.post("/openrtb2/bid", &deep).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("nested deeper"), "{}", r.text());
    let deep_objects = with_ext(&format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)));
    assert_eq!(server.post("/openrtb2/bid", &deep_objects).await.status, 400);

    // 100,000-element arrays, each body under the 256 KiB limit so the lists themselves
    // are read: numbers where `bcat` takes category strings read as absent, and 100,000
    // blocked attributes none of the catalog's creatives has. Both still bid.
    let numbers = format!("[{}]", vec!["7"; 100_000].join(","));
    for field in ["/bcat", "/imp/0/banner/battr"] {
        let mut body: serde_json::Value = serde_json::from_slice(&good()).unwrap();
        let (parent, key) = field.rsplit_once('/').unwrap();
        body.pointer_mut(parent).unwrap()[key] = serde_json::from_str(&numbers).unwrap();
        let body = serde_json::to_vec(&body).unwrap();
        assert!(body.len() < 256 * 1024, "{field}: {} bytes", body.len());
        let r = server.post("/openrtb2/bid", &body).await;
        assert_eq!(r.status, 200, "{field} of 100,000 numbers: {}", r.text());
    }
    let imps = vec![r#"{"id":"1","banner":{"w":300,"h":250}}"#; 1000].join(",");
    let r = server.post("/openrtb2/bid", format!(r#"{{"id":"x","imp":[{imps}]}}"#).as_bytes()).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("more than 100 imps"), "{}", r.text());
    let tiny = vec!["0"; 100_000].join(",");
    let r = server.post("/openrtb2/bid", format!(r#"{{"id":"x","imp":[{tiny}]}}"#).as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // Invalid UTF-8 inside a string and as the whole body.
    let mut bad_utf8 = good();
    let at = bad_utf8.windows(4).position(|w| w == b"\"id\"").unwrap() + 6;
    bad_utf8[at] = 0xff;
    let r = server.post("/openrtb2/bid", &bad_utf8).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(server.post("/openrtb2/bid", &[0xc3, 0x28, 0xa0, 0xa1]).await.status, 400);
    // NUL bytes and control characters.
    assert_eq!(server.post("/openrtb2/bid", b"{\"id\":\"a\0b\"}").await.status, 400);
    still_serving(&server, "deep, huge and invalid bodies").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_encoding_and_content_type() {
    let server = TestServer::start(config()).await;
    // A 10 MB body: the 413 comes from the content-length, before the body is sent ...
    let head = format!("POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n", 10 << 20);
    assert_eq!(answer_to_partial(server.addr, head.as_bytes()).await, Some(413));
    // ... and, sent chunked (no length up front), once the first megabyte is over the limit.
    let mut chunked = b"POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(format!("{:x}\r\n", 1 << 20).as_bytes());
    chunked.extend_from_slice(&vec![b'{'; 1 << 20]);
    chunked.extend_from_slice(b"\r\n");
    assert_eq!(answer_to_partial(server.addr, &chunked).await, Some(413));
    // A gzip bomb: 8 MB of zeros in a few KB.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &vec![0u8; 8 << 20]).unwrap();
    let bomb = enc.finish().unwrap();
    let r = server.post_with("/openrtb2/bid", &[("content-encoding", "gzip")], &bomb).await;
    assert_eq!(r.status, 413);
    // Empty body.
    let r = server.post("/openrtb2/bid", b"").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("empty body"));
    // Wrong content types; JSON with parameters and Prebid's text/plain are fine.
    for (ct, expected) in [
        ("application/xml", 415),
        ("multipart/form-data; boundary=x", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/json; charset=utf-8", 200),
        ("text/plain;charset=UTF-8", 200),
    ] {
        let head = format!(
            "POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            good().len()
        );
        let mut raw = head.into_bytes();
        raw.extend_from_slice(&good());
        assert_eq!(server.raw(&raw).await.status, expected, "{ct}");
    }
    still_serving(&server, "oversized and mistyped bodies").await;
    server.stop().await;
}

/// Sends the start of a request that is never finished and returns the status the
/// server answers with anyway.
async fn answer_to_partial(addr: std::net::SocketAddr, start: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let _ = s.write_all(start).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.ok()?.ok()?;
    (n > 0).then(|| HttpResponse::parse(&buf[..n]).status)
}

/// A response, or `None` when the server closed the connection first (it may refuse a
/// body it will not read before the client has finished sending).
async fn raw_lenient(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<HttpResponse> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    (!buf.is_empty()).then(|| HttpResponse::parse(&buf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_and_pipelined_requests() {
    let server = TestServer::start(config()).await;
    let body = good();
    // HTTP/1.0: answered, then closed.
    let mut raw = format!(
        "POST /openrtb2/bid HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let r = raw_to(server.addr, &raw).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Three requests in one write on one connection: three answers, in order.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let one = |b: &[u8]| {
        let mut r =
            format!("POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n", b.len()).into_bytes();
        r.extend_from_slice(b);
        r
    };
    let mut pipelined = one(&body);
    pipelined.extend(one(b"{broken"));
    pipelined.extend(one(&body));
    s.write_all(&pipelined).await.unwrap();
    let mut buf = Vec::new();
    let mut statuses = Vec::new();
    while statuses.len() < 3 {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.expect("answers").unwrap();
        assert!(n > 0, "closed after {statuses:?}");
        buf.extend_from_slice(&chunk[..n]);
        statuses = split_responses(&buf);
    }
    assert_eq!(statuses, vec![200, 400, 200]);

    // Garbage instead of HTTP: the connection is refused with 400 or closed.
    let r = raw_lenient(server.addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n").await;
    assert!(r.is_none_or(|r| r.status == 400));
    still_serving(&server, "HTTP/1.0, pipelining and garbage").await;
    server.stop().await;
}

/// Status codes of the complete responses in `buf`.
fn split_responses(mut buf: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        if buf.len() < end + 4 + len {
            break;
        }
        out.push(head.split(' ').nth(1).unwrap().parse().unwrap());
        buf = &buf[end + 4 + len..];
    }
    out
}
