//! Hostile and malformed API requests: each must get a 4xx JSON error (or a harmless success),
//! never a 500, a hang or a dead daemon. One row per attack.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestDaemon;

/// (method, path, body, what it attacks)
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "GET",
        "/v999999999999.1/info",
        "",
        "version number overflow",
    ),
    ("GET", "/v1.44", "", "prefix without a route"),
    ("GET", "/v1./info", "", "half a version"),
    ("GET", "/v-1.2/info", "", "negative version"),
    (
        "GET",
        "/images/..%2F..%2Fetc%2Fpasswd/json",
        "",
        "traversal in image name",
    ),
    ("GET", "/images/%00/json", "", "NUL in image name"),
    ("GET", "/images//json", "", "empty image name"),
    ("GET", "/images/a/b/c/d/e/f/g/h/json", "", "deep name"),
    ("DELETE", "/images/..", "", "dot-dot image"),
    (
        "POST",
        "/images/x/tag?repo=..%2F..&tag=%00",
        "",
        "bad tag target",
    ),
    (
        "POST",
        "/images/x/tag?repo=UPPER&tag=1",
        "",
        "invalid repository name",
    ),
    (
        "GET",
        "/images/json?filters=%7B%22reference%22%3A%5B%22%5B%22%5D%7D",
        "",
        "unclosed glob class",
    ),
    (
        "GET",
        "/images/json?filters=%7B%22label%22%3A%7B%22a%22%3A%22x%22%7D%7D",
        "",
        "non-bool filter map value",
    ),
    (
        "GET",
        "/images/json?filters=%5B%5D",
        "",
        "filters not an object",
    ),
    (
        "GET",
        "/images/json?filters=%7B%22before%22%3A%5B%22nope%22%5D%7D",
        "",
        "before unknown image",
    ),
    ("GET", "/images/json?all=%FF%FE", "", "invalid UTF-8 bool"),
    ("GET", "/volumes/..", "", "dot-dot volume"),
    (
        "GET",
        "/volumes/%2E%2E%2Fdata",
        "",
        "encoded traversal volume",
    ),
    (
        "DELETE",
        "/volumes/..%2F..%2F..%2Ftmp",
        "",
        "delete traversal volume",
    ),
    (
        "POST",
        "/volumes/create",
        r#"{"Name":"../../escape"}"#,
        "traversal volume name",
    ),
    (
        "POST",
        "/volumes/create",
        r#"{"Name":"/abs"}"#,
        "absolute volume name",
    ),
    (
        "POST",
        "/volumes/create",
        r#"{"Name":"a\u0000b"}"#,
        "NUL volume name",
    ),
    (
        "POST",
        "/volumes/create",
        r#"{"Name":"ok1","Driver":"evil"}"#,
        "unknown driver",
    ),
    (
        "POST",
        "/volumes/create",
        r#"{"Name":"ok2","DriverOpts":{"type":"none","o":"bind","device":"relative"}}"#,
        "relative bind device",
    ),
    (
        "POST",
        "/volumes/create",
        r#"{"Name":"ok3","DriverOpts":{"type":"tmpfs","device":"tmpfs","o":"size=1m\u0000x"}}"#,
        "NUL in mount data (rejected at first mount)",
    ),
    (
        "POST",
        "/volumes/create",
        r#"{"Name":5}"#,
        "wrong JSON type",
    ),
    ("POST", "/volumes/create", "[", "truncated JSON"),
    ("POST", "/volumes/create", "null", "null body"),
    (
        "GET",
        "/events?since=99999999999999999999",
        "",
        "since overflow",
    ),
    (
        "GET",
        "/events?since=99999999999.99999999999999",
        "",
        "fraction overflow",
    ),
    ("GET", "/events?until=1&since=2", "", "until before since"),
    ("GET", "/events?since=-5&until=-1", "", "negative times"),
    (
        "GET",
        "/events?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
        "",
        "unknown events filter",
    ),
    ("POST", "/images/load", "\u{0}\u{0}\u{0}", "garbage archive"),
    (
        "POST",
        "/images/create?fromSrc=-&repo=x",
        "not a tar",
        "garbage import",
    ),
    (
        "POST",
        "/images/create?fromSrc=http://example.invalid/x.tar",
        "",
        "import from URL",
    ),
    ("POST", "/images/create", "", "create without source"),
    ("GET", "/images/get", "", "save without names"),
    ("GET", "/images/get?names=nope", "", "save unknown"),
    (
        "POST",
        "/volumes/prune?filters=%7B%22all%22%3A%5B%22maybe%22%5D%7D",
        "",
        "bad all value",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_client_errors() {
    let d = TestDaemon::start();
    let c = d.client();
    for (method, path, body, what) in CASES {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            c.req(method, path, Bytes::from(body.as_bytes().to_vec())),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: hung"));
        assert!(
            r.status.as_u16() < 500 || r.status.as_u16() == 501,
            "{what}: {method} {path} -> {} {}",
            r.status,
            r.text()
        );
        if !r.status.is_success() {
            let j = r.json();
            assert!(j["message"].is_string(), "{what}: {}", r.text());
        }
    }
    // nothing escaped the volume root
    for n in ["escape", "abs", "tmp"] {
        assert!(!d.dir.path().join(n).exists(), "{n}");
    }
    assert!(!std::path::Path::new("/escape").exists());
    // the NUL mount data volume fails at mount time with a clear error, no mount left behind
    let r = c.get("/volumes/ok3").await;
    if r.status == 200 {
        let e = d.engine().volumes.mount("ok3", "c1").unwrap_err();
        assert_eq!(e.http_status(), 400, "{e}");
    }
    // an `until` beyond what a deadline can hold streams without a deadline (no panic)
    let stream = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/events?since=1&until=9223372036")
        .header("Host", "x")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), tx.send_request(req))
        .await
        .expect("headers")
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    // still serving
    assert_eq!(c.get("/_ping").await.status, 200);
}
