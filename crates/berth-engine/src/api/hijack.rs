//! Hijacked connections for attach and exec start.
//!
//! A client that sends `Connection: Upgrade` + `Upgrade: tcp` gets exactly
//! `HTTP/1.1 101 UPGRADED` with `Content-Type: application/vnd.docker.raw-stream` (or
//! multiplexed-stream), `Connection: Upgrade`, `Upgrade: tcp`, then the raw bidirectional
//! connection. A client that does not ask to upgrade gets `200` with the output as a streamed
//! body and no input (reads see EOF at once).
//!
//! Errors (no such container...) must be returned as normal JSON errors *before* calling
//! [`hijack`]. After the output ends, drop (or shut down) the stream: the CLI waits for EOF.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio_util::io::ReaderStream;

use crate::EngineError;

/// `application/vnd.docker.raw-stream` (TTY, or any stream below API 1.42).
pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
/// `application/vnd.docker.multiplexed-stream` (stdcopy frames, API >= 1.42 without TTY).
pub const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// The connection after the hijack: read the client's stdin, write the output.
pub struct Hijacked(Inner);

enum Inner {
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
    /// No upgrade: writes go to the 200 response body, reads are at EOF.
    Plain(DuplexStream),
}

impl std::fmt::Debug for Hijacked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Inner::Upgraded(_) => f.write_str("Hijacked(upgraded)"),
            Inner::Plain(_) => f.write_str("Hijacked(plain)"),
        }
    }
}

impl Hijacked {
    /// Whether the client upgraded (so stdin can flow).
    pub fn is_upgraded(&self) -> bool {
        matches!(self.0, Inner::Upgraded(_))
    }
}

impl AsyncRead for Hijacked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Upgraded(u) => Pin::new(u).poll_read(cx, buf),
            Inner::Plain(_) => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Hijacked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Upgraded(u) => Pin::new(u).poll_write(cx, b),
            Inner::Plain(d) => Pin::new(d).poll_write(cx, b),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Upgraded(u) => Pin::new(u).poll_flush(cx),
            Inner::Plain(d) => Pin::new(d).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Upgraded(u) => Pin::new(u).poll_shutdown(cx),
            Inner::Plain(d) => Pin::new(d).poll_shutdown(cx),
        }
    }
}

/// A pending hijack: await it (in a spawned task) after returning the response.
pub type PendingHijack =
    Pin<Box<dyn std::future::Future<Output = Result<Hijacked, EngineError>> + Send>>;

/// Whether the request asks for `Connection: Upgrade` + `Upgrade: tcp`.
pub fn wants_upgrade(req: &Request) -> bool {
    let conn_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    conn_upgrade && req.headers().contains_key(header::UPGRADE)
}

/// Answer `req` with a hijack. Return the response from the handler and await the pending
/// stream in a task:
///
/// ```ignore
/// let (resp, pending) = hijack(&mut req, RAW_STREAM);
/// tokio::spawn(async move { if let Ok(mut s) = pending.await { /* copy */ } });
/// return resp;
/// ```
pub fn hijack(req: &mut Request, content_type: &'static str) -> (Response, PendingHijack) {
    if wants_upgrade(req) {
        let on = hyper::upgrade::on(&mut *req);
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        resp.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"UPGRADED"));
        let fut = async move {
            let up = on
                .await
                .map_err(|e| EngineError::internal(format!("upgrade connection: {e}")))?;
            Ok(Hijacked(Inner::Upgraded(TokioIo::new(up))))
        };
        (resp, Box::pin(fut))
    } else {
        let (ours, body_side) = tokio::io::duplex(64 * 1024);
        let mut resp = Response::new(Body::from_stream(ReaderStream::new(body_side)));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        (
            resp,
            Box::pin(async move { Ok(Hijacked(Inner::Plain(ours))) }),
        )
    }
}
