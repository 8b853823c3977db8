//! The structured access log: one JSON event per request with method, path, status, bytes,
//! duration and user.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::*;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn access_log_is_json_with_the_request_fields() {
    let sink = Sink::default();
    let s2 = sink.clone();
    tracing_subscriber::fmt()
        .json()
        .with_writer(move || s2.clone())
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "berth_registry::access=info",
        ))
        .init();
    let tmp = tempfile::Builder::new()
        .prefix("berthtest-log-")
        .tempdir()
        .expect("tmp");
    let hp = tmp.path().join("htpasswd");
    std::fs::write(
        &hp,
        format!("dora:{}\n", bcrypt::hash("pw", 4).expect("hash")),
    )
    .expect("htpasswd");
    let reg = start_with(|c| c.htpasswd = Some(hp)).await;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("dora:pw")
    );
    let data = b"logged blob".to_vec();
    let d = berth_core::Digest::sha256_of(&data);
    send(
        reg.addr,
        "POST",
        &format!("/v2/logs/blobs/uploads/?digest={d}"),
        &[("authorization", &auth)],
        data.clone(),
    )
    .await;
    send(
        reg.addr,
        "GET",
        &format!("/v2/logs/blobs/{d}"),
        &[("authorization", &auth)],
        Vec::new(),
    )
    .await;
    get(reg.addr, "/v2/").await;
    let text =
        String::from_utf8(sink.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).expect("utf8");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(events.len(), 3, "{text}");
    let f = |i: usize| events[i]["fields"].clone();
    assert_eq!(f(0)["method"], "POST");
    assert_eq!(f(0)["status"], 201);
    assert_eq!(f(0)["user"], "dora");
    assert_eq!(f(1)["method"], "GET");
    assert_eq!(f(1)["path"], format!("/v2/logs/blobs/{d}"));
    assert_eq!(f(1)["status"], 200);
    assert_eq!(f(1)["bytes"], data.len());
    assert!(f(1)["duration_ms"].as_f64().is_some());
    assert_eq!(f(2)["status"], 401);
    assert_eq!(f(2)["user"], "");
    assert_eq!(events[0]["target"], "berth_registry::access");
}
