//! Chunked streaming responses: JSON messages (progress, events, stats) and raw bytes.
//!
//! Headers go out as soon as the handler returns the response (hyper flushes the head before
//! waiting on the body), which `POST /containers/{id}/wait` and `/events` rely on.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde::Serialize;
use tokio::sync::mpsc;

/// What follows each JSON message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// `\r\n` (pull/push/build/load progress).
    CrLf,
    /// `\n` (events, stats).
    Lf,
}

impl LineEnd {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnd::CrLf => b"\r\n",
            LineEnd::Lf => b"\n",
        }
    }
}

/// The sending half of a streamed response. Sends fail (return false) once the client is gone.
#[derive(Debug, Clone)]
pub struct StreamSender {
    tx: mpsc::Sender<Bytes>,
    end: LineEnd,
}

impl StreamSender {
    /// Send one JSON message.
    pub async fn json<T: Serialize + ?Sized>(&self, v: &T) -> bool {
        let mut b = match serde_json::to_vec(v) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("serialize stream message: {e}");
                return false;
            }
        };
        b.extend_from_slice(self.end.as_bytes());
        self.tx.send(Bytes::from(b)).await.is_ok()
    }

    /// Send an in-stream error (`{"errorDetail":{"message"},"error"}`), as Docker does once
    /// the 200 has gone out. The CLI prints the message and exits non-zero.
    pub async fn error(&self, message: &str) -> bool {
        self.json(&serde_json::json!({
            "errorDetail": { "message": message },
            "error": message,
        }))
        .await
    }

    /// Send raw bytes.
    pub async fn bytes(&self, b: impl Into<Bytes>) -> bool {
        self.tx.send(b.into()).await.is_ok()
    }

    /// Send from blocking code (inside `spawn_blocking`).
    pub fn blocking_json<T: Serialize + ?Sized>(&self, v: &T) -> bool {
        let Ok(mut b) = serde_json::to_vec(v) else {
            return false;
        };
        b.extend_from_slice(self.end.as_bytes());
        self.tx.blocking_send(Bytes::from(b)).is_ok()
    }

    /// Raw bytes from blocking code.
    pub fn blocking_bytes(&self, b: impl Into<Bytes>) -> bool {
        self.tx.blocking_send(b.into()).is_ok()
    }

    /// Resolves when the client has gone away (the response body was dropped).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// A 200 chunked response whose body is fed through the returned sender; `content_type`
/// `None` sends no Content-Type (as Docker's logs endpoint).
pub fn channel(content_type: Option<&str>, end: LineEnd) -> (StreamSender, Response) {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    if let Some(ct) = content_type {
        if let Ok(v) = ct.parse() {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
    }
    (StreamSender { tx, end }, resp)
}

/// A JSON message stream (`application/json`).
pub fn json_channel(end: LineEnd) -> (StreamSender, Response) {
    channel(Some("application/json"), end)
}
