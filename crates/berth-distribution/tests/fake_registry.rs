//! Fine-grained client behaviour against an in-process fake registry (axum on 127.0.0.1):
//! token auth with scope caching and refresh on 401, Range resume after a dropped connection,
//! lying registries (digest mismatch), index platform selection, bounded concurrency.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use berth_content::Store;
use berth_core::{Digest, ErrorKind, Platform, Reference};
use berth_distribution::{pull, Client, ClientConfig, Credentials, ProgressStatus};
use berth_image::ImageService;
use bytes::Bytes;
use common::*;
use serde_json::json;

const LAYER_MT: &str = "application/vnd.oci.image.layer.v1.tar";
const MANIFEST_MT: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MT: &str = "application/vnd.oci.image.index.v1+json";

#[derive(Default)]
struct Fake {
    blobs: Mutex<HashMap<String, Bytes>>,
    /// What is served instead of the stored bytes (a lying registry).
    lies: Mutex<HashMap<String, Bytes>>,
    manifests: Mutex<HashMap<String, (String, Bytes)>>,
    /// Bearer auth on: tokens must be current (`epoch`) and carry the repository's scope.
    token_auth: bool,
    /// Basic credentials the token endpoint requires (None: anonymous tokens).
    token_user: Option<(String, String)>,
    epoch: AtomicUsize,
    token_requests: AtomicUsize,
    /// Drop the connection after this many bytes of a blob GET that starts at 0.
    drop_after: Mutex<Option<usize>>,
    range_starts: Mutex<Vec<u64>>,
    /// Pause between 32 KiB chunks of blob bodies.
    slow: Mutex<Option<Duration>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    requested: Mutex<Vec<String>>,
    served_once: AtomicBool,
    /// With `drop_after`: stall (send nothing more) instead of dropping the connection.
    stall: AtomicBool,
    /// Answer this many of the next requests with 503.
    fail_next: AtomicUsize,
}

struct FlightGuard(Arc<Fake>);
impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn err(status: StatusCode, code: &str, msg: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"errors":[{"code":code,"message":msg}]}).to_string(),
        ))
        .unwrap()
}

async fn handle(State(st): State<Arc<Fake>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    st.requested
        .lock()
        .unwrap()
        .push(format!("{} {path}", req.method()));
    if st
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return err(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "try later");
    }
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    if path == "/token" {
        st.token_requests.fetch_add(1, Ordering::SeqCst);
        if let Some((u, p)) = &st.token_user {
            let want = Credentials::new(u.clone(), p.clone()).basic_header();
            if req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                != Some(&want)
            {
                return err(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "bad credentials");
            }
        }
        let scopes: Vec<String> = query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("scope="))
            .map(|s| s.replace("%3A", ":").replace("%2C", ","))
            .collect();
        let tok = format!("e{}|{}", st.epoch.load(Ordering::SeqCst), scopes.join(" "));
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(json!({"token": tok}).to_string()))
            .unwrap();
    }
    if st.token_auth {
        let repo = path
            .strip_prefix("/v2/")
            .and_then(|p| p.split("/manifests/").next())
            .and_then(|p| p.split("/blobs/").next())
            .unwrap_or("");
        let scope = format!("repository:{repo}:pull");
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| {
                let (e, s) = t.split_once('|').unwrap_or(("", ""));
                e == format!("e{}", st.epoch.load(Ordering::SeqCst))
                    && (path == "/v2/" || s.split(' ').any(|x| x == scope))
            });
        if !ok {
            let mut r = err(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
            r.headers_mut().insert(
                "www-authenticate",
                format!(r#"Bearer realm="http://{host}/token",service="fake",scope="{scope}""#)
                    .parse()
                    .unwrap(),
            );
            return r;
        }
    }
    if path == "/v2/" {
        return Response::new(Body::from("{}"));
    }
    if let Some((_, reference)) = path.split_once("/manifests/") {
        let m = st.manifests.lock().unwrap().get(reference).cloned();
        let Some((mt, body)) = m else {
            return err(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            );
        };
        let digest = Digest::sha256_of(&body);
        let r = Response::builder()
            .header("content-type", mt)
            .header("docker-content-digest", digest.to_string())
            .header("content-length", body.len());
        return if req.method() == Method::HEAD {
            r.body(Body::empty()).unwrap()
        } else {
            r.body(Body::from(body)).unwrap()
        };
    }
    if let Some((_, digest)) = path.split_once("/blobs/") {
        let stored = st.blobs.lock().unwrap().get(digest).cloned();
        let Some(stored) = stored else {
            return err(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown");
        };
        let data = st
            .lies
            .lock()
            .unwrap()
            .get(digest)
            .cloned()
            .unwrap_or(stored);
        let start = range_start(req.headers());
        if let Some(s) = start {
            st.range_starts.lock().unwrap().push(s);
        }
        let start = start.unwrap_or(0) as usize;
        let mut body = data.slice(start.min(data.len())..);
        let mut fail_after = None;
        if start == 0 {
            let drop_after = *st.drop_after.lock().unwrap();
            if let Some(n) = drop_after.filter(|n| *n < body.len()) {
                if !st.served_once.swap(true, Ordering::SeqCst) {
                    fail_after = Some(n);
                    body = body.slice(..n);
                }
            }
        }
        let n = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_in_flight.fetch_max(n, Ordering::SeqCst);
        let guard = FlightGuard(st.clone());
        let slow = *st.slow.lock().unwrap();
        let stall = st.stall.load(Ordering::SeqCst);
        let chunks: Vec<Bytes> = (0..body.len())
            .step_by(32 << 10)
            .map(|i| body.slice(i..(i + (32 << 10)).min(body.len())))
            .collect();
        let stream = futures_util::stream::unfold(
            (chunks.into_iter(), fail_after, guard),
            move |(mut it, fail, guard)| async move {
                if let Some(d) = slow {
                    tokio::time::sleep(d).await;
                }
                match it.next() {
                    Some(c) => Some((Ok::<Bytes, std::io::Error>(c), (it, fail, guard))),
                    None if fail.is_some() && stall => {
                        std::future::pending::<()>().await;
                        None
                    }
                    None if fail.is_some() => {
                        fail.map(|_| (Err(std::io::Error::other("dropped")), (it, None, guard)))
                    }
                    None => None,
                }
            },
        );
        let mut r = Response::builder().header("content-length", data.len() - start);
        if start > 0 {
            r = r.status(StatusCode::PARTIAL_CONTENT).header(
                "content-range",
                format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
            );
        }
        return r.body(Body::from_stream(stream)).unwrap();
    }
    err(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "not found")
}

fn range_start(h: &HeaderMap) -> Option<u64> {
    h.get("range")?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

struct Running {
    rt: tokio::runtime::Runtime,
    fake: Arc<Fake>,
    host: String,
}

fn start(fake: Fake) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = Arc::new(fake);
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(fake.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    rt.spawn(async move { axum::serve(listener, app).await });
    Running { rt, fake, host }
}

/// An image made in code: layers (uncompressed tars), config, manifest; all stored in `fake`.
struct Image {
    manifest: Bytes,
    layers: Vec<(Digest, Bytes)>,
    config: Digest,
}

fn make_image(fake: &Fake, platform: &Platform, layer_files: &[Vec<(String, Vec<u8>)>]) -> Image {
    let mut layers = Vec::new();
    for files in layer_files {
        let tar = Bytes::from(rootfs_tar(files));
        let d = Digest::sha256_of(&tar);
        fake.blobs
            .lock()
            .unwrap()
            .insert(d.to_string(), tar.clone());
        layers.push((d, tar));
    }
    let mut cfg = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>()},
        "config": {},
    });
    if let Some(v) = &platform.variant {
        cfg["variant"] = json!(v);
    }
    let cfg = Bytes::from(cfg.to_string());
    let config = Digest::sha256_of(&cfg);
    fake.blobs
        .lock()
        .unwrap()
        .insert(config.to_string(), cfg.clone());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MT,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": cfg.len()},
        "layers": layers.iter().map(|(d, b)| json!({"mediaType": LAYER_MT, "digest": d.to_string(), "size": b.len()})).collect::<Vec<_>>(),
    });
    let manifest = Bytes::from(manifest.to_string());
    let md = Digest::sha256_of(&manifest);
    fake.manifests
        .lock()
        .unwrap()
        .insert(md.to_string(), (MANIFEST_MT.into(), manifest.clone()));
    Image {
        manifest,
        layers,
        config,
    }
}

fn tag(fake: &Fake, tag: &str, mt: &str, body: &Bytes) {
    let mut m = fake.manifests.lock().unwrap();
    m.insert(tag.to_string(), (mt.to_string(), body.clone()));
    m.entry(Digest::sha256_of(body).to_string())
        .or_insert((mt.to_string(), body.clone()));
}

fn one_layer(seed: u64, size: usize) -> Vec<Vec<(String, Vec<u8>)>> {
    vec![vec![
        ("etc/id".to_string(), format!("{seed}\n").into_bytes()),
        ("blob.bin".to_string(), noise(size, seed)),
    ]]
}

fn reference(r: &Running, repo_tag: &str) -> Reference {
    format!("{}/{repo_tag}", r.host).parse().unwrap()
}

#[test]
fn token_auth_caches_per_scope_and_refreshes_on_401() {
    let r = start(Fake {
        token_auth: true,
        token_user: Some(("alice".into(), "s3cret".into())),
        ..Default::default()
    });
    let img = make_image(&r.fake, &Platform::host(), &one_layer(1, 100_000));
    tag(&r.fake, "v1", MANIFEST_MT, &img.manifest);
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = ClientConfig {
        docker_config: None,
        ..Default::default()
    };
    cfg.credentials
        .insert(r.host.clone(), Credentials::new("alice", "s3cret"));
    let client = Client::new(cfg);
    let svc = ImageService::open(tmp.path().join("a")).unwrap();
    let rf = reference(&r, "berthtest/img:v1");
    pull(&svc, &client, r.rt.handle(), &rf, &|_| {}).unwrap();
    // One token for repository:berthtest/img:pull, reused by every later request.
    assert_eq!(r.fake.token_requests.load(Ordering::SeqCst), 1);
    let svc2 = ImageService::open(tmp.path().join("b")).unwrap();
    pull(&svc2, &client, r.rt.handle(), &rf, &|_| {}).unwrap();
    assert_eq!(
        r.fake.token_requests.load(Ordering::SeqCst),
        1,
        "token cached"
    );
    // Another repository is another scope: a new token.
    let rf2 = reference(&r, "berthtest/other:nope");
    let e = pull(&svc2, &client, r.rt.handle(), &rf2, &|_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(r.fake.token_requests.load(Ordering::SeqCst), 2);
    // The registry rotates its tokens: a 401 with the cached token fetches a fresh one.
    r.fake.epoch.fetch_add(1, Ordering::SeqCst);
    let svc3 = ImageService::open(tmp.path().join("c")).unwrap();
    pull(&svc3, &client, r.rt.handle(), &rf, &|_| {}).unwrap();
    assert_eq!(r.fake.token_requests.load(Ordering::SeqCst), 3);
    // Wrong credentials: Unauthorized.
    let mut bad = ClientConfig {
        docker_config: None,
        ..Default::default()
    };
    bad.credentials
        .insert(r.host.clone(), Credentials::new("alice", "wrong"));
    let e = pull(&svc3, &Client::new(bad), r.rt.handle(), &rf, &|_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    // Anonymous against a registry that wants credentials: Unauthorized too.
    let e = pull(&svc3, &client_for_anon(), r.rt.handle(), &rf, &|_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
}

fn client_for_anon() -> Client {
    Client::new(ClientConfig {
        docker_config: None,
        ..Default::default()
    })
}

#[test]
fn resumes_a_blob_with_range_after_a_dropped_connection() {
    let r = start(Fake::default());
    let img = make_image(&r.fake, &Platform::host(), &one_layer(2, 2 << 20));
    tag(&r.fake, "v1", MANIFEST_MT, &img.manifest);
    *r.fake.drop_after.lock().unwrap() = Some(700 << 10);
    let tmp = tempfile::tempdir().unwrap();
    let svc = ImageService::open(tmp.path()).unwrap();
    let rf = reference(&r, "berthtest/img:v1");
    let res = pull(&svc, &client(1 << 20), r.rt.handle(), &rf, &|_| {}).unwrap();
    assert_eq!(res.downloaded, 1);
    let starts = r.fake.range_starts.lock().unwrap().clone();
    // One resumed request, from what had arrived (at most what was sent before the drop).
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert!(starts[0] > 0 && starts[0] <= 700 << 10, "{starts:?}");
    assert_eq!(
        read_image_file(&svc, &rf.to_string(), "blob.bin"),
        noise(2 << 20, 2)
    );
    assert!(svc.content().exists(&img.layers[0].0).unwrap());
}

#[test]
fn a_lying_registry_is_refused_and_nothing_is_committed() {
    let r = start(Fake::default());
    let img = make_image(&r.fake, &Platform::host(), &one_layer(3, 300_000));
    tag(&r.fake, "v1", MANIFEST_MT, &img.manifest);
    let (ld, lb) = img.layers[0].clone();
    let mut wrong = lb.to_vec();
    let n = wrong.len();
    wrong[n - 2000] ^= 0xff;
    r.fake
        .lies
        .lock()
        .unwrap()
        .insert(ld.to_string(), Bytes::from(wrong));
    let tmp = tempfile::tempdir().unwrap();
    let svc = ImageService::open(tmp.path()).unwrap();
    let rf = reference(&r, "berthtest/img:v1");
    let e = pull(&svc, &client(1 << 20), r.rt.handle(), &rf, &|_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(
        !svc.content().exists(&ld).unwrap(),
        "bad layer not committed"
    );
    assert_eq!(
        svc.resolve(&rf.to_string()).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let ingests = svc.content().ingests().unwrap();
    assert!(ingests.is_empty(), "bad ingest dropped: {ingests:?}");

    // A truncated blob (the registry ends the body early, every time).
    let mut short = lb.to_vec();
    short.truncate(n / 2);
    r.fake
        .lies
        .lock()
        .unwrap()
        .insert(ld.to_string(), Bytes::from(short));
    let e = pull(&svc, &client(1 << 20), r.rt.handle(), &rf, &|_| {}).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Internal),
        "{e}"
    );
    assert!(!svc.content().exists(&ld).unwrap());

    // A manifest whose Docker-Content-Digest does not match the body we asked for by digest.
    r.fake.lies.lock().unwrap().clear();
    let other = make_image(&r.fake, &Platform::host(), &one_layer(4, 1000));
    let md = Digest::sha256_of(&img.manifest);
    r.fake
        .manifests
        .lock()
        .unwrap()
        .insert(md.to_string(), (MANIFEST_MT.into(), other.manifest.clone()));
    let by_digest = rf.with_digest(md);
    let e = pull(&svc, &client(1 << 20), r.rt.handle(), &by_digest, &|_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}

#[test]
fn index_selects_the_platform_and_fetches_nothing_else() {
    let r = start(Fake::default());
    let host = Platform::host();
    let arm = Platform::parse("linux/arm64/v8").unwrap();
    let riscv = Platform::parse("linux/riscv64").unwrap();
    let mut entries = Vec::new();
    let mut images = Vec::new();
    for (i, p) in [riscv, arm, host.clone()].iter().enumerate() {
        if i < 2 && p.architecture == host.architecture {
            continue;
        }
        let img = make_image(&r.fake, p, &one_layer(10 + i as u64, 5000));
        let mut plat = json!({"os": p.os, "architecture": p.architecture});
        if let Some(v) = &p.variant {
            plat["variant"] = json!(v);
        }
        entries.push(json!({
            "mediaType": MANIFEST_MT,
            "digest": Digest::sha256_of(&img.manifest).to_string(),
            "size": img.manifest.len(),
            "platform": plat,
        }));
        images.push((p.clone(), img));
    }
    let index = Bytes::from(
        json!({"schemaVersion": 2, "mediaType": INDEX_MT, "manifests": entries}).to_string(),
    );
    tag(&r.fake, "multi", INDEX_MT, &index);
    let tmp = tempfile::tempdir().unwrap();
    let svc = ImageService::open(tmp.path().join("h")).unwrap();
    let rf = reference(&r, "berthtest/multi:multi");
    let res = pull(&svc, &client(1 << 20), r.rt.handle(), &rf, &|_| {}).unwrap_or_else(|e| {
        panic!(
            "{e}: {:?} {:?}",
            r.fake.requested.lock().unwrap(),
            r.fake.blobs.lock().unwrap().keys().collect::<Vec<_>>()
        )
    });
    assert_eq!(
        res.target,
        Digest::sha256_of(&index),
        "the name points at the index"
    );
    let (_, mine) = images.iter().find(|(p, _)| *p == host).unwrap();
    assert_eq!(svc.resolve(&rf.to_string()).unwrap().id, mine.config);
    let requested = r.fake.requested.lock().unwrap().clone();
    for (p, img) in &images {
        if *p != host {
            let d = Digest::sha256_of(&img.manifest).to_string();
            assert!(
                !requested.iter().any(|q| q.contains(&d)),
                "fetched {p}'s manifest"
            );
            assert!(!requested
                .iter()
                .any(|q| q.contains(&img.layers[0].0.to_string())));
        }
    }
    // Another platform chosen explicitly.
    if host.architecture != "arm64" {
        let svc2 = ImageService::open(tmp.path().join("a"))
            .unwrap()
            .with_platform(Platform::parse("linux/arm64").unwrap());
        pull(&svc2, &client(1 << 20), r.rt.handle(), &rf, &|_| {}).unwrap();
        let (_, arm_img) = images
            .iter()
            .find(|(p, _)| p.architecture == "arm64")
            .unwrap();
        assert_eq!(svc2.resolve(&rf.to_string()).unwrap().id, arm_img.config);
    }
}

#[test]
fn downloads_at_most_n_layers_at_once() {
    let r = start(Fake::default());
    let layers: Vec<Vec<(String, Vec<u8>)>> = (0..7)
        .map(|i| vec![(format!("l{i}/data"), noise(256 << 10, 100 + i))])
        .collect();
    let img = make_image(&r.fake, &Platform::host(), &layers);
    tag(&r.fake, "v1", MANIFEST_MT, &img.manifest);
    *r.fake.slow.lock().unwrap() = Some(Duration::from_millis(15));
    let tmp = tempfile::tempdir().unwrap();
    let svc = ImageService::open(tmp.path()).unwrap();
    let rf = reference(&r, "berthtest/many:v1");
    let events = Events::default();
    let leased = AtomicUsize::new(usize::MAX);
    let res = pull(&svc, &client(1 << 20), r.rt.handle(), &rf, &|p| {
        if matches!(p.status, ProgressStatus::Downloading { .. }) {
            // While blobs stream in, the pull's lease protects them from GC.
            let n = svc.db().list_leases().unwrap().len();
            leased.fetch_min(n, Ordering::SeqCst);
        }
        events.push(p)
    })
    .unwrap();
    assert_eq!(res.downloaded, 7);
    assert_eq!(
        leased.load(Ordering::SeqCst),
        1,
        "one lease held throughout the download"
    );
    assert!(
        svc.db().list_leases().unwrap().is_empty(),
        "lease dropped at the end"
    );
    let max = r.fake.max_in_flight.load(Ordering::SeqCst);
    assert_eq!(max, 3, "default concurrency is 3 (saw {max})");
    // Every layer: Waiting first, PullComplete last.
    let ev = events.take();
    for (d, _) in &img.layers {
        let mine: Vec<_> = ev
            .iter()
            .filter(|e| e.id == d.short())
            .map(|e| e.status.clone())
            .collect();
        assert_eq!(mine.first(), Some(&ProgressStatus::Waiting), "{mine:?}");
        assert_eq!(mine.last(), Some(&ProgressStatus::PullComplete), "{mine:?}");
        assert!(mine.contains(&ProgressStatus::Verifying));
    }
    for (i, (_, data)) in layers.iter().map(|l| &l[0]).enumerate() {
        assert_eq!(
            &read_image_file(&svc, &rf.to_string(), &format!("l{i}/data")),
            data
        );
    }
}

#[test]
fn retries_5xx_with_backoff_then_gives_up() {
    let r = start(Fake::default());
    let img = make_image(&r.fake, &Platform::host(), &one_layer(5, 10_000));
    tag(&r.fake, "v1", MANIFEST_MT, &img.manifest);
    let tmp = tempfile::tempdir().unwrap();
    let svc = ImageService::open(tmp.path()).unwrap();
    let rf = reference(&r, "berthtest/img:v1");
    // Two failures: within the default 3 retries.
    r.fake.fail_next.store(2, Ordering::SeqCst);
    pull(&svc, &client(1 << 20), r.rt.handle(), &rf, &|_| {}).unwrap();
    // More failures than retries: the registry's 503 is reported.
    r.fake.fail_next.store(100, Ordering::SeqCst);
    let before = r.fake.requested.lock().unwrap().len();
    let svc2 = ImageService::open(tmp.path().join("x")).unwrap();
    let e = pull(&svc2, &client(1 << 20), r.rt.handle(), &rf, &|_| {})
        .map(|_| r.fake.requested.lock().unwrap()[before..].to_vec())
        .unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
    let sent = r.fake.requested.lock().unwrap().len() - before;
    // HEAD (1 + 3 retries) then GET (1 + 3 retries): bounded.
    assert_eq!(sent, 8, "{sent} requests");
}

#[test]
fn credentials_come_from_a_docker_credential_helper() {
    let r = start(Fake {
        token_auth: true,
        token_user: Some(("helper-user".into(), "helper-secret".into())),
        ..Default::default()
    });
    let img = make_image(&r.fake, &Platform::host(), &one_layer(6, 10_000));
    tag(&r.fake, "v1", MANIFEST_MT, &img.manifest);
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = tmp.path().join("helper.log");
    let script = bin.join("docker-credential-berthtest");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> {}\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"helper-user\",\"Secret\":\"helper-secret\"}}'\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // nextest runs each test in its own process: changing PATH here affects only this test.
    std::env::set_var("PATH", path);
    let config = tmp.path().join("config.json");
    std::fs::write(
        &config,
        json!({"credHelpers": {r.host.clone(): "berthtest"}}).to_string(),
    )
    .unwrap();
    let c = Client::new(ClientConfig {
        docker_config: Some(config),
        ..Default::default()
    });
    let svc = ImageService::open(tmp.path().join("root")).unwrap();
    pull(
        &svc,
        &c,
        r.rt.handle(),
        &reference(&r, "berthtest/img:v1"),
        &|_| {},
    )
    .unwrap();
    let called = std::fs::read_to_string(&log).unwrap();
    assert_eq!(called.trim(), format!("get {}", r.host));
}

#[test]
fn docker_io_pulls_go_to_the_first_working_mirror() {
    let r = start(Fake::default());
    let img = make_image(&r.fake, &Platform::host(), &one_layer(7, 10_000));
    tag(&r.fake, "v1", MANIFEST_MT, &img.manifest);
    // A dead mirror first (a port nobody listens on), then the fake.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let c = Client::new(ClientConfig {
        docker_config: None,
        mirrors: vec![format!("http://{dead_addr}"), format!("http://{}", r.host)],
        retries: 1,
        backoff: Duration::from_millis(10),
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let svc = ImageService::open(tmp.path()).unwrap();
    // `berthtest/img:v1` is docker.io/berthtest/img:v1.
    let rf: Reference = "berthtest/img:v1".parse().unwrap();
    assert_eq!(rf.domain(), "docker.io");
    let res = pull(&svc, &c, r.rt.handle(), &rf, &|_| {}).unwrap();
    assert_eq!(res.target, Digest::sha256_of(&img.manifest));
    assert_eq!(svc.resolve("berthtest/img:v1").unwrap().id, img.config);
    assert!(r
        .fake
        .requested
        .lock()
        .unwrap()
        .iter()
        .any(|q| q == "HEAD /v2/berthtest/img/manifests/v1"));
}

#[test]
fn two_pulls_of_the_same_image_into_one_root_both_succeed() {
    let r = start(Fake::default());
    let img = make_image(&r.fake, &Platform::host(), &one_layer(8, 2 << 20));
    tag(&r.fake, "v1", MANIFEST_MT, &img.manifest);
    *r.fake.slow.lock().unwrap() = Some(Duration::from_millis(5));
    let tmp = tempfile::tempdir().unwrap();
    let rf = reference(&r, "berthtest/img:v1");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (rf, root, h) = (&rf, tmp.path(), r.rt.handle().clone());
                s.spawn(move || {
                    let svc = ImageService::open(root).unwrap();
                    pull(&svc, &client(1 << 20), &h, rf, &|_| {}).map(|p| p.target)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for res in results {
        assert_eq!(res.unwrap(), Digest::sha256_of(&img.manifest));
    }
    let svc = ImageService::open(tmp.path()).unwrap();
    assert_eq!(
        read_image_file(&svc, &rf.to_string(), "blob.bin"),
        noise(2 << 20, 8)
    );
}

#[test]
fn gzip_layers_are_verified_against_diff_ids_and_unpacked() {
    use std::io::Write;
    let r = start(Fake::default());
    let files = vec![
        ("gz/random.bin".to_string(), noise(3 << 20, 9)),
        ("gz/hello.txt".to_string(), b"hello gzip\n".to_vec()),
    ];
    let tar = rootfs_tar(&files);
    let diff_id = Digest::sha256_of(&tar);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&tar).unwrap();
    let gz = Bytes::from(enc.finish().unwrap());
    let gz_digest = Digest::sha256_of(&gz);
    r.fake
        .blobs
        .lock()
        .unwrap()
        .insert(gz_digest.to_string(), gz.clone());
    let p = Platform::host();
    let cfg = Bytes::from(
        json!({"architecture": p.architecture, "os": p.os,
               "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}, "config": {}})
        .to_string(),
    );
    let cfg_digest = Digest::sha256_of(&cfg);
    r.fake
        .blobs
        .lock()
        .unwrap()
        .insert(cfg_digest.to_string(), cfg.clone());
    let manifest = Bytes::from(
        json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
               "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg_digest.to_string(), "size": cfg.len()},
               "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": gz_digest.to_string(), "size": gz.len()}]})
        .to_string(),
    );
    tag(
        &r.fake,
        "gz",
        "application/vnd.docker.distribution.manifest.v2+json",
        &manifest,
    );
    let tmp = tempfile::tempdir().unwrap();
    let svc = ImageService::open(tmp.path()).unwrap();
    let rf = reference(&r, "berthtest/gz:gz");
    pull(&svc, &client(1 << 20), r.rt.handle(), &rf, &|_| {}).unwrap();
    let img = svc.resolve(&rf.to_string()).unwrap();
    assert_eq!(img.config.rootfs.diff_ids, vec![diff_id]);
    for (path, data) in &files {
        assert_eq!(&read_image_file(&svc, &rf.to_string(), path), data);
    }

    // The same layer under a config claiming another diff id: refused, nothing registered.
    let bad_cfg = Bytes::from(
        json!({"architecture": p.architecture, "os": p.os,
               "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(b"other").to_string()]}, "config": {}})
        .to_string(),
    );
    let bad_cfg_digest = Digest::sha256_of(&bad_cfg);
    r.fake
        .blobs
        .lock()
        .unwrap()
        .insert(bad_cfg_digest.to_string(), bad_cfg.clone());
    let bad = String::from_utf8(manifest.to_vec())
        .unwrap()
        .replace(&cfg_digest.to_string(), &bad_cfg_digest.to_string())
        .replace(
            &format!("\"size\":{}", cfg.len()),
            &format!("\"size\":{}", bad_cfg.len()),
        );
    tag(
        &r.fake,
        "bad",
        "application/vnd.docker.distribution.manifest.v2+json",
        &Bytes::from(bad),
    );
    let svc2 = ImageService::open(tmp.path().join("fresh")).unwrap();
    let bad_ref = reference(&r, "berthtest/gz:bad");
    let e = pull(&svc2, &client(1 << 20), r.rt.handle(), &bad_ref, &|_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert_eq!(
        svc2.resolve(&bad_ref.to_string()).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn pull_runs_from_spawn_blocking_inside_the_runtime() {
    // The engine's way: an async handler hands the blocking pull to spawn_blocking.
    let r = start(Fake::default());
    let img = make_image(&r.fake, &Platform::host(), &one_layer(12, 50_000));
    tag(&r.fake, "v1", MANIFEST_MT, &img.manifest);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let rf = reference(&r, "berthtest/img:v1");
    let got = r.rt.block_on(async move {
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let svc = ImageService::open(&root).unwrap();
            pull(&svc, &client(1 << 20), &handle, &rf, &|_| {}).map(|p| p.target)
        })
        .await
        .unwrap()
    });
    assert_eq!(got.unwrap(), Digest::sha256_of(&img.manifest));
}

#[test]
fn a_stalled_download_times_out_and_resumes() {
    let r = start(Fake::default());
    let img = make_image(&r.fake, &Platform::host(), &one_layer(13, 2 << 20));
    tag(&r.fake, "v1", MANIFEST_MT, &img.manifest);
    *r.fake.drop_after.lock().unwrap() = Some(600 << 10);
    r.fake.stall.store(true, Ordering::SeqCst);
    let c = Client::new(ClientConfig {
        docker_config: None,
        io_timeout: Duration::from_millis(500),
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let svc = ImageService::open(tmp.path()).unwrap();
    let rf = reference(&r, "berthtest/img:v1");
    let t = std::time::Instant::now();
    pull(&svc, &c, r.rt.handle(), &rf, &|_| {}).unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    let starts = r.fake.range_starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert!(starts[0] > 0 && starts[0] <= 600 << 10, "{starts:?}");
    assert_eq!(
        read_image_file(&svc, &rf.to_string(), "blob.bin"),
        noise(2 << 20, 13)
    );
}
