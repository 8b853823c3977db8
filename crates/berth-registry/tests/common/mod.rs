//! Shared fixtures: an in-process registry on 127.0.0.1:0 and a small hyper client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use berth_core::Digest;
use berth_registry::{Config, Server};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;

pub struct Reg {
    pub server: Server,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// A registry with `tweak` applied to its default config (GC off unless set).
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Reg {
    let dir = tempfile::Builder::new()
        .prefix("berthtest-registry-")
        .tempdir()
        .expect("tempdir");
    let mut cfg = Config::new(
        dir.path().join("root"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    cfg.gc_interval = None;
    tweak(&mut cfg);
    let server = Server::start(cfg).await.expect("start registry");
    let addr = server.addr();
    Reg { server, addr, dir }
}

pub async fn start() -> Reg {
    start_with(|_| {}).await
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_string())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    /// The first error code of a spec error body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// One request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let body: Bytes = body.into();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(60), sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    send(addr, "GET", path, &[], Bytes::new()).await
}

/// Push a blob monolithically (POST ?digest=); returns its digest.
pub async fn push_blob(addr: SocketAddr, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let r = send(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[("content-type", "application/octet-stream")],
        data.to_vec(),
    )
    .await;
    assert_eq!(
        r.status,
        201,
        "push blob: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    d
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

pub fn desc(media_type: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::sha256_of(data).to_string(),
        "size": data.len(),
    })
}

/// A small image: pushes config and layer blobs and returns the manifest bytes (not pushed).
pub async fn image(addr: SocketAddr, repo: &str, seed: &str) -> Vec<u8> {
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}, "config": {"Env": [seed]}
    })
    .to_string()
    .into_bytes();
    let layer = format!("layer bytes of {seed}").into_bytes();
    push_blob(addr, repo, &config).await;
    push_blob(addr, repo, &layer).await;
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &config),
        "layers": [desc(OCI_LAYER, &layer)],
    }))
    .expect("json")
}

pub async fn put_manifest(
    addr: SocketAddr,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Resp {
    send(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("content-type", media_type)],
        body.to_vec(),
    )
    .await
}
