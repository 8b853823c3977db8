//! HTTPS with --tls-cert/--tls-key: a verified TLS client reaches the API; plain HTTP does not.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let tmp = tempfile::Builder::new()
        .prefix("berthtest-tls-")
        .tempdir()
        .expect("tmp");
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("certificate");
    let cert_pem = ck.cert.pem();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    let (c2, k2) = (cert.clone(), key.clone());
    let reg = start_with(move |c| c.tls = Some((c2, k2))).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("pem"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(reg.addr)
        .await
        .expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name").to_owned();
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("tls handshake verifies the certificate");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get("/v2/")
        .header("host", reg.addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("docker-distribution-api-version")
            .map(|v| v.as_bytes()),
        Some(&b"registry/2.0"[..])
    );
    let _ = resp.into_body().collect().await;
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let tcp = tokio::net::TcpStream::connect(reg.addr)
            .await
            .expect("connect");
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = hyper::Request::get("/v2/")
            .body(Full::new(Bytes::new()))
            .expect("request");
        s.send_request(req).await
    })
    .await
    .expect("plain request ends");
    assert!(plain.is_err(), "plain HTTP was answered on the TLS port");
    // A missing key file is a clear configuration error.
    let mut cfg =
        berth_registry::Config::new(tmp.path().join("r2"), "127.0.0.1:0".parse().expect("addr"));
    cfg.tls = Some((cert, tmp.path().join("absent.pem")));
    let err = berth_registry::Server::start(cfg)
        .await
        .expect_err("missing key refused");
    assert!(err.to_string().contains("absent.pem"), "{err}");
}
