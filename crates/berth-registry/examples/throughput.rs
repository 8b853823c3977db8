//! Loopback throughput of berth's registry server (not a test):
//! `cargo run --release -p berth-registry --example throughput [MB]`.
//! Pushes a blob (half pseudo-random, half text) monolithically and in 8 MiB chunks, pulls
//! it back once, then 32 concurrent pulls; prints MB/s. A second argument `HOST:PORT` measures
//! another registry (e.g. Debian's docker-registry) with the same client instead.

use std::net::SocketAddr;
use std::time::Instant;

use berth_core::Digest;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> (u16, hyper::HeaderMap, u64) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let resp = s
        .send_request(b.body(Full::new(body)).expect("req"))
        .await
        .expect("resp");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.expect("frame").into_data() {
            n += d.len() as u64;
        }
    }
    (status, headers, n)
}

fn data(mb: usize) -> Vec<u8> {
    let total = mb * 1024 * 1024;
    let mut v = Vec::with_capacity(total);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while v.len() < total / 2 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    let text = b"the quick brown fox jumps over the lazy dog; berth registry throughput text. ";
    while v.len() < total {
        v.extend_from_slice(text);
    }
    v.truncate(total);
    v
}

/// `loc` with `digest=` appended (distribution's locations already carry a query).
fn with_digest(loc: &str, d: &Digest) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest={d}")
}

fn location(h: &hyper::HeaderMap) -> String {
    h.get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string()
}

#[tokio::main]
async fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::Builder::new()
        .prefix("berthtest-bench-")
        .tempdir()
        .expect("tmp");
    let mut cfg = berth_registry::Config::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
    cfg.gc_interval = None;
    let external: Option<SocketAddr> = std::env::args()
        .nth(2)
        .map(|a| a.parse().expect("HOST:PORT"));
    let server = match external {
        Some(_) => None,
        None => Some(berth_registry::Server::start(cfg).await.expect("start")),
    };
    let addr = external.unwrap_or_else(|| server.as_ref().map(|s| s.addr()).expect("server"));
    let blob = Bytes::from(data(mb));
    let d = Digest::sha256_of(&blob);
    let secs = |t: Instant| t.elapsed().as_secs_f64();
    println!(
        "machine: {} cpus; blob {mb} MiB; registry {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        if external.is_some() {
            "external"
        } else {
            "berth"
        }
    );

    let t = Instant::now();
    let path = format!("/v2/bench/mono/blobs/uploads/?digest={d}");
    let (st, h, _) = request(addr, "POST", &path, &[], blob.clone()).await;
    if st == 202 {
        // The registry does not take single-POST uploads (the spec allows that): PUT the body.
        let (st, _, _) = request(
            addr,
            "PUT",
            &with_digest(&location(&h), &d),
            &[],
            blob.clone(),
        )
        .await;
        assert_eq!(st, 201);
    } else {
        assert_eq!(st, 201);
    }
    println!("push monolithic: {:.1} MB/s", mb as f64 / secs(t));

    let t = Instant::now();
    let (st, h, _) = request(
        addr,
        "POST",
        "/v2/bench/chunked/blobs/uploads/",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(st, 202);
    let mut loc = location(&h);
    let chunk = 8 * 1024 * 1024;
    let mut off = 0;
    while off < blob.len() {
        let end = (off + chunk).min(blob.len());
        let range = format!("{}-{}", off, end - 1);
        let (st, h, _) = request(
            addr,
            "PATCH",
            &loc,
            &[("content-range", range)],
            blob.slice(off..end),
        )
        .await;
        assert_eq!(st, 202);
        loc = location(&h);
        off = end;
    }
    let (st, _, _) = request(addr, "PUT", &with_digest(&loc, &d), &[], Bytes::new()).await;
    assert_eq!(st, 201);
    println!("push chunked (8 MiB): {:.1} MB/s", mb as f64 / secs(t));

    let t = Instant::now();
    let path = format!("/v2/bench/mono/blobs/{d}");
    let (st, _, n) = request(addr, "GET", &path, &[], Bytes::new()).await;
    assert_eq!((st, n), (200, blob.len() as u64));
    println!("pull: {:.1} MB/s", mb as f64 / secs(t));

    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            request(addr, "GET", &path, &[], Bytes::new()).await.2
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("join");
    }
    assert_eq!(total, 32 * blob.len() as u64);
    println!(
        "32 concurrent pulls: {:.1} MB/s aggregate ({:.2} s)",
        (32 * mb) as f64 / secs(t),
        secs(t)
    );
    if let Some(s) = server {
        s.shutdown().await;
    }
}
