//! Hostile and malformed requests, one table row each naming what it attacks: every one gets
//! a spec error (or a plain refusal), never a 500.

mod common;

use berth_core::Digest;
use common::*;

/// (what it attacks, method, path, headers, body, expected status, expected code or "").
type Case = (
    &'static str,
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test]
async fn hostile_requests_get_clean_errors() {
    let reg = start().await;
    let a = reg.addr;
    let m = image(a, "ok", "x").await;
    put_manifest(a, "ok", "v1", OCI_MANIFEST, &m).await;
    let r = send(a, "POST", "/v2/ok/blobs/uploads/", &[], Vec::new()).await;
    let loc = r.header("location").expect("location");
    let some = Digest::sha256_of(b"x").to_string();

    // (what it attacks, method, path, headers, body, expected status, expected code or "")
    let cases: Vec<Case> = vec![
        ("dot-dot name", "GET", "/v2/../../etc/manifests/latest".into(), vec![], vec![], 400, "NAME_INVALID"),
        ("dot-dot component", "GET", "/v2/ok/../x/tags/list".into(), vec![], vec![], 400, "NAME_INVALID"),
        ("upper-case name", "GET", "/v2/OK/tags/list".into(), vec![], vec![], 400, "NAME_INVALID"),
        ("overlong name", "GET", format!("/v2/{}/tags/list", "a".repeat(300)), vec![], vec![], 400, "NAME_INVALID"),
        ("digest with traversal", "GET", "/v2/ok/blobs/sha256:..%2f..%2fetc".into(), vec![], vec![], 400, "DIGEST_INVALID"),
        ("unknown digest algorithm", "GET", format!("/v2/ok/blobs/md5:{}", "a".repeat(32)), vec![], vec![], 400, "DIGEST_INVALID"),
        ("short sha256", "GET", "/v2/ok/blobs/sha256:abcd".into(), vec![], vec![], 400, "DIGEST_INVALID"),
        ("upper-case hex", "GET", format!("/v2/ok/blobs/sha256:{}", "A".repeat(64)), vec![], vec![], 400, "DIGEST_INVALID"),
        ("upload id traversal", "GET", "/v2/ok/blobs/uploads/..%2f..%2fdata".into(), vec![], vec![], 404, "BLOB_UPLOAD_UNKNOWN"),
        ("guessed upload id", "PATCH", "/v2/ok/blobs/uploads/0000".into(), vec![], b"x".to_vec(), 404, "BLOB_UPLOAD_UNKNOWN"),
        ("garbage Content-Range", "PATCH", loc.clone(), vec![("content-range", "bytes=zz")], b"x".to_vec(), 416, "BLOB_UPLOAD_INVALID"),
        ("inverted Content-Range", "PATCH", loc.clone(), vec![("content-range", "9-0")], b"x".to_vec(), 416, "BLOB_UPLOAD_INVALID"),
        ("chunk longer than its range", "PATCH", loc.clone(), vec![("content-range", "0-1")], b"xyz".to_vec(), 416, "SIZE_INVALID"),
        ("PUT without digest", "PUT", loc.clone(), vec![], vec![], 400, "DIGEST_INVALID"),
        ("manifest: deep JSON", "PUT", "/v2/ok/manifests/deep".into(), vec![("content-type", OCI_MANIFEST)], "[".repeat(100_000).into_bytes(), 400, "MANIFEST_INVALID"),
        ("manifest: negative size", "PUT", "/v2/ok/manifests/neg".into(), vec![("content-type", OCI_MANIFEST)],
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"{some}","size":-1}},"layers":[]}}"#).into_bytes(), 400, "MANIFEST_INVALID"),
        ("manifest: bad tag", "PUT", "/v2/ok/manifests/-bad".into(), vec![("content-type", OCI_MANIFEST)], m.clone(), 400, "MANIFEST_INVALID"),
        ("manifest: bad ?tag=", "PUT", "/v2/ok/manifests/v2?tag=..".into(), vec![("content-type", OCI_MANIFEST)], m.clone(), 400, "MANIFEST_INVALID"),
        ("manifest: schema1", "PUT", "/v2/ok/manifests/s1".into(), vec![("content-type", "application/vnd.docker.distribution.manifest.v1+prettyjws")],
            br#"{"schemaVersion":1,"name":"ok","tag":"s1","fsLayers":[]}"#.to_vec(), 400, "MANIFEST_INVALID"),
        ("tags: non-numeric n", "GET", "/v2/ok/tags/list?n=lots".into(), vec![], vec![], 400, "UNSUPPORTED"),
        ("range: multipart", "GET", "/v2/ok/manifests/v1".into(), vec![("range", "bytes=0-1,4-5")], vec![], 200, ""),
        ("method not allowed", "POST", "/v2/ok/tags/list".into(), vec![], vec![], 405, "UNSUPPORTED"),
        ("not the API", "GET", "/etc/passwd".into(), vec![], vec![], 404, ""),
    ];
    for (what, method, path, headers, body, status, code) in cases {
        let r = send(a, method, &path, &headers, body).await;
        assert_eq!(
            r.status,
            status,
            "{what}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        if !code.is_empty() {
            assert_eq!(r.code(), code, "{what}");
        }
    }
    // The session survived the bad PATCHes that failed before writing.
    let r = get(a, &loc).await;
    assert_eq!(r.status, 204, "upload session lost");
    assert_eq!(get(a, "/v2/ok/manifests/v1").await.body, m);
}
