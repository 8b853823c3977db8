//! Round trips through berth's own registry server (crates/berth-registry), in process on
//! 127.0.0.1: push (chunked), cross-repository mount on the second push, pull into a fresh data
//! root, by tag and by digest, file contents compared.

mod common;

use berth_core::{ErrorKind, Reference};
use berth_distribution::{pull, push, ProgressStatus};
use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn push_mount_pull_round_trip_with_berth_registry() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        berth_registry::Config::new(tmp.path().join("registry"), "127.0.0.1:0".parse().unwrap());
    let server = rt.block_on(berth_registry::Server::start(cfg)).unwrap();
    let host = format!("127.0.0.1:{}", server.addr().port());
    let sfx = suffix();

    let src = source_root(
        &tmp.path().join("src"),
        &format!("berthtest/src-{sfx}:v1"),
        7,
    );
    let client = client(1 << 20);
    let events = Events::default();
    let dest_a: Reference = format!("{host}/berthtest/a-{sfx}:v1").parse().unwrap();
    let r1 = push(
        &src,
        &client,
        rt.handle(),
        &format!("berthtest/src-{sfx}:v1"),
        &dest_a,
        &|p| events.push(p),
    )
    .unwrap();
    assert_eq!(r1.uploaded, 2, "config and layer uploaded: {r1:?}");
    assert_eq!(r1.mounted, 0);
    let ev = events.take();
    assert!(ev.iter().any(|e| matches!(e.status, ProgressStatus::Pushing { current, total } if current > 0 && current < total)),
        "chunked upload reports intermediate progress");
    assert!(ev.iter().any(|e| e.status == ProgressStatus::Pushed));
    let local = src.resolve(&format!("berthtest/src-{sfx}:v1")).unwrap();
    assert_eq!(
        r1.digest, local.target.digest,
        "the registry stored our manifest bytes"
    );

    // Second push to another repository of the same registry: blobs are mounted.
    let dest_b: Reference = format!("{host}/berthtest/b-{sfx}:v2").parse().unwrap();
    let r2 = push(
        &src,
        &client,
        rt.handle(),
        &format!("berthtest/src-{sfx}:v1"),
        &dest_b,
        &|p| events.push(p),
    )
    .unwrap();
    assert_eq!((r2.uploaded, r2.mounted), (0, 2), "{r2:?}");
    let ev = events.take();
    assert!(ev
        .iter()
        .any(|e| e.status == ProgressStatus::MountedFrom(format!("berthtest/a-{sfx}"))));
    // Pushing again to the same repository: the registry already has everything.
    let r3 = push(
        &src,
        &client,
        rt.handle(),
        &format!("berthtest/src-{sfx}:v1"),
        &dest_b,
        &|_| {},
    )
    .unwrap();
    assert_eq!((r3.uploaded, r3.mounted, r3.existing), (0, 0, 2));

    // Pull into a fresh data root, by tag.
    let dst = berth_image::ImageService::open(tmp.path().join("dst")).unwrap();
    let pulled = pull(&dst, &client, rt.handle(), &dest_b, &|p| events.push(p)).unwrap();
    assert_eq!(pulled.target, r1.digest);
    assert_eq!(pulled.downloaded, 1);
    let img = dst.resolve(&dest_b.to_string()).unwrap();
    assert_eq!(img.id, local.id);
    for (path, data) in fixture_files(7) {
        assert_eq!(
            read_image_file(&dst, &dest_b.to_string(), &path),
            data,
            "{path}"
        );
    }
    let ev = events.take();
    let statuses: Vec<_> = ev.iter().map(|e| e.status.clone()).collect();
    let pos = |f: &dyn Fn(&ProgressStatus) -> bool| statuses.iter().position(f).unwrap();
    let waiting = pos(&|s| *s == ProgressStatus::Waiting);
    let downloading = pos(&|s| matches!(s, ProgressStatus::Downloading { .. }));
    let verifying = pos(&|s| *s == ProgressStatus::Verifying);
    let extracting = pos(&|s| *s == ProgressStatus::Extracting);
    let complete = pos(&|s| *s == ProgressStatus::PullComplete);
    assert!(
        waiting < downloading
            && downloading < verifying
            && verifying < extracting
            && extracting < complete,
        "{statuses:?}"
    );
    let json = ev[downloading].to_json();
    assert_eq!(json["status"], "Downloading");
    assert_eq!(json["id"].as_str().unwrap().len(), 12);
    assert!(json["progressDetail"]["total"].as_u64().unwrap() > 0);

    // By digest, into another fresh root; then again: the layer already exists.
    let by_digest = dest_a.with_digest(r1.digest.clone());
    let dst2 = berth_image::ImageService::open(tmp.path().join("dst2")).unwrap();
    let p2 = pull(&dst2, &client, rt.handle(), &by_digest, &|_| {}).unwrap();
    assert_eq!(p2.target, r1.digest);
    assert_eq!(
        read_image_file(&dst2, &by_digest.to_string(), "etc/hostname"),
        b"berthtest-7\n"
    );
    let p3 = pull(&dst2, &client, rt.handle(), &dest_a, &|p| events.push(p)).unwrap();
    assert_eq!((p3.downloaded, p3.already), (0, 1));
    assert!(events
        .take()
        .iter()
        .any(|e| e.status == ProgressStatus::AlreadyExists));

    // Push by digest.
    let by_digest_c: Reference = format!("{host}/berthtest/c-{sfx}@{}", r1.digest)
        .parse()
        .unwrap();
    let r4 = push(
        &src,
        &client,
        rt.handle(),
        &format!("berthtest/src-{sfx}:v1"),
        &by_digest_c,
        &|_| {},
    )
    .unwrap();
    assert_eq!(r4.digest, r1.digest);

    // Unknown tag: NotFound with Docker's message.
    let missing: Reference = format!("{host}/berthtest/a-{sfx}:nope").parse().unwrap();
    let e = pull(&dst, &client, rt.handle(), &missing, &|_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(
        e.to_string(),
        format!("manifest for {host}/berthtest/a-{sfx}:nope not found: manifest unknown")
    );
    rt.block_on(server.shutdown());
}

#[test]
fn https_registry_trusted_through_certs_d_ca() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let mut cfg =
        berth_registry::Config::new(tmp.path().join("registry"), "127.0.0.1:0".parse().unwrap());
    cfg.tls = Some((cert, key));
    let server = rt.block_on(berth_registry::Server::start(cfg)).unwrap();
    let host = format!("127.0.0.1:{}", server.addr().port());
    let sfx = suffix();
    let local = format!("berthtest/tls-{sfx}:v1");
    let src = source_root(&tmp.path().join("src"), &local, 21);
    let dest: Reference = format!("{host}/berthtest/tls-{sfx}:v1").parse().unwrap();

    // Without the CA: HTTPS is not trusted and plain HTTP is refused by the server.
    let untrusted = client(1 << 20);
    assert!(push(&src, &untrusted, rt.handle(), &local, &dest, &|_| {}).is_err());

    // With <certs.d>/<host:port>/ca.crt: HTTPS works both ways.
    let certs = tmp.path().join("certs.d");
    std::fs::create_dir_all(certs.join(&host)).unwrap();
    std::fs::write(certs.join(&host).join("ca.crt"), ck.cert.pem()).unwrap();
    let trusted = berth_distribution::Client::new(berth_distribution::ClientConfig {
        docker_config: None,
        certs_dir: certs,
        ..Default::default()
    });
    let repo = rt.block_on(trusted.repository(&dest)).unwrap();
    assert_eq!(repo.base(), format!("https://{host}"));
    let r = push(&src, &trusted, rt.handle(), &local, &dest, &|_| {}).unwrap();
    let dst = berth_image::ImageService::open(tmp.path().join("dst")).unwrap();
    let p = pull(&dst, &trusted, rt.handle(), &dest, &|_| {}).unwrap();
    assert_eq!(p.target, r.digest);
    assert_eq!(
        read_image_file(&dst, &dest.to_string(), "etc/hostname"),
        b"berthtest-21\n"
    );
    rt.block_on(server.shutdown());
}

/// Throughput of push and pull of a ~200 MB image (half random, half text) through berth's
/// registry server on loopback. Not a test: `cargo nextest run -p berth-distribution
/// --run-ignored only bench` (BERTH_BENCH_MB sets the size).
#[test]
#[ignore]
fn bench_push_pull_throughput() {
    let mb: usize = std::env::var("BERTH_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        berth_registry::Config::new(tmp.path().join("registry"), "127.0.0.1:0".parse().unwrap());
    let server = rt.block_on(berth_registry::Server::start(cfg)).unwrap();
    let host = format!("127.0.0.1:{}", server.addr().port());
    // 4 layers: two random, two text.
    let svc = berth_image::ImageService::open(tmp.path().join("src")).unwrap();
    let quarter = (mb << 20) / 4;
    let text: Vec<u8> = "lorem ipsum dolor sit amet, consectetur adipiscing elit\n"
        .bytes()
        .cycle()
        .take(quarter)
        .collect();
    let files = vec![
        ("r1.bin".to_string(), noise(quarter, 1)),
        ("r2.bin".to_string(), noise(quarter, 2)),
        ("t1.txt".to_string(), text.clone()),
        ("t2.txt".to_string(), text),
    ];
    let t = std::time::Instant::now();
    svc.import(
        &rootfs_tar(&files)[..],
        Some("berthtest/bench:v1"),
        &berth_image::ImportOptions::default(),
    )
    .unwrap();
    let import_s = t.elapsed().as_secs_f64();
    let img = svc.resolve("berthtest/bench:v1").unwrap();
    let blob_bytes: u64 = img.manifest.layers.iter().map(|l| l.size).sum();
    let c = client(16 << 20);
    let dest: Reference = format!("{host}/berthtest/bench:v1").parse().unwrap();
    let t = std::time::Instant::now();
    push(&svc, &c, rt.handle(), "berthtest/bench:v1", &dest, &|_| {}).unwrap();
    let push_s = t.elapsed().as_secs_f64();
    let dst = berth_image::ImageService::open(tmp.path().join("dst")).unwrap();
    let t = std::time::Instant::now();
    pull(&dst, &c, rt.handle(), &dest, &|_| {}).unwrap();
    let pull_s = t.elapsed().as_secs_f64();
    println!(
        "image {mb} MiB uncompressed, {:.1} MiB of layer blobs; import {import_s:.2}s; push {push_s:.2}s = {:.1} MiB/s; pull+unpack {pull_s:.2}s = {:.1} MiB/s (uncompressed)",
        blob_bytes as f64 / 1048576.0,
        blob_bytes as f64 / 1048576.0 / push_s,
        mb as f64 / pull_s
    );
    rt.block_on(server.shutdown());
}

fn auth_registry(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    token: bool,
) -> berth_registry::Server {
    std::fs::create_dir_all(dir).unwrap();
    let htpasswd = dir.join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("carol:{}\n", bcrypt::hash("pa55", 5).unwrap()),
    )
    .unwrap();
    let mut cfg = berth_registry::Config::new(dir.join("data"), "127.0.0.1:0".parse().unwrap());
    cfg.htpasswd = Some(htpasswd);
    if token {
        cfg.token = Some(berth_registry::TokenConfig {
            key: b"berthtest-secret-key-0123456789".to_vec(),
            issuer: "berthtest".into(),
            realm: String::new(),
            service: "berthtest-registry".into(),
            ttl_secs: 300,
        });
    }
    rt.block_on(berth_registry::Server::start(cfg)).unwrap()
}

#[test]
fn basic_and_token_auth_with_berth_registry() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    for token in [false, true] {
        let server = auth_registry(&rt, &tmp.path().join(format!("reg-{token}")), token);
        let host = format!("127.0.0.1:{}", server.addr().port());
        let sfx = suffix();
        let local = format!("berthtest/auth-{sfx}:v1");
        let src = source_root(&tmp.path().join(format!("src-{token}")), &local, 31);
        let dest: Reference = format!("{host}/berthtest/auth-{sfx}:v1").parse().unwrap();

        let e = push(&src, &client(1 << 20), rt.handle(), &local, &dest, &|_| {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "token={token}: {e}");

        // login checks the credentials against /v2/ (answering the basic or bearer challenge).
        let config = tmp.path().join(format!("home-{token}/.docker/config.json"));
        let anon = client(1 << 20);
        let bad = berth_distribution::Credentials::new("carol", "wrong");
        let e = rt
            .block_on(berth_distribution::login(&anon, &host, &bad, &config))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "token={token}: {e}");
        let good = berth_distribution::Credentials::new("carol", "pa55");
        rt.block_on(berth_distribution::login(&anon, &host, &good, &config))
            .unwrap();
        let saved = berth_distribution::DockerConfig::load(&config).unwrap();
        assert_eq!(saved.credentials(&host).unwrap(), Some(good));

        let mut cfg = berth_distribution::ClientConfig {
            docker_config: None,
            chunk_size: 1 << 20,
            ..Default::default()
        };
        cfg.credentials.insert(
            host.clone(),
            berth_distribution::Credentials::new("carol", "pa55"),
        );
        let c = berth_distribution::Client::new(cfg);
        let r = push(&src, &c, rt.handle(), &local, &dest, &|_| {}).unwrap();
        // A second repository: with tokens, the mount asks for pull on the source too.
        let dest2: Reference = format!("{host}/berthtest/auth2-{sfx}:v1").parse().unwrap();
        let r2 = push(&src, &c, rt.handle(), &local, &dest2, &|_| {}).unwrap();
        assert_eq!(r2.mounted, 2, "token={token}: {r2:?}");
        let dst = berth_image::ImageService::open(tmp.path().join(format!("dst-{token}"))).unwrap();
        let p = pull(&dst, &c, rt.handle(), &dest2, &|_| {}).unwrap();
        assert_eq!(p.target, r.digest);
        assert_eq!(
            read_image_file(&dst, &dest2.to_string(), "etc/hostname"),
            b"berthtest-31\n"
        );
        rt.block_on(server.shutdown());
    }
}

#[test]
fn resumes_an_ingest_left_by_an_interrupted_pull() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        berth_registry::Config::new(tmp.path().join("registry"), "127.0.0.1:0".parse().unwrap());
    let server = rt.block_on(berth_registry::Server::start(cfg)).unwrap();
    let host = format!("127.0.0.1:{}", server.addr().port());
    let sfx = suffix();
    let local = format!("berthtest/resume-{sfx}:v1");
    let src = source_root(&tmp.path().join("src"), &local, 41);
    let dest: Reference = format!("{host}/berthtest/resume-{sfx}:v1").parse().unwrap();
    push(&src, &client(8 << 20), rt.handle(), &local, &dest, &|_| {}).unwrap();
    let layer = src.resolve(&local).unwrap().manifest.layers[0].clone();

    // A previous pull died half way through the layer: its ingest holds the first half.
    let dst = berth_image::ImageService::open(tmp.path().join("dst")).unwrap();
    {
        use berth_content::Store;
        use std::io::{Read, Write};
        let mut data = Vec::new();
        src.content()
            .reader(&layer.digest)
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        let mut w = dst
            .content()
            .writer(
                &format!("pull-{}", layer.digest),
                Some(berth_content::Expected::new(
                    layer.digest.clone(),
                    layer.size,
                )),
            )
            .unwrap();
        w.write_all(&data[..data.len() / 2]).unwrap();
    }
    let events = Events::default();
    pull(&dst, &client(8 << 20), rt.handle(), &dest, &|p| {
        events.push(p)
    })
    .unwrap();
    let first = events
        .take()
        .into_iter()
        .find_map(|e| match e.status {
            ProgressStatus::Downloading { current, .. } if e.id == layer.digest.short() => {
                Some(current)
            }
            _ => None,
        })
        .unwrap();
    assert!(
        first > layer.size / 2,
        "download continued after the ingest's {} bytes (first report {first})",
        layer.size / 2
    );
    for (path, data) in fixture_files(41) {
        assert_eq!(
            read_image_file(&dst, &dest.to_string(), &path),
            data,
            "{path}"
        );
    }
    rt.block_on(server.shutdown());
}

/// Writes `data` as a blob of an OCI layout; its descriptor JSON.
fn layout_blob(dir: &std::path::Path, mt: &str, data: &[u8]) -> serde_json::Value {
    let d = berth_core::Digest::sha256_of(data);
    let p = dir.join("blobs/sha256");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join(d.encoded()), data).unwrap();
    serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": data.len()})
}

#[test]
fn push_and_pull_a_multi_platform_index() {
    use serde_json::json;
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        berth_registry::Config::new(tmp.path().join("registry"), "127.0.0.1:0".parse().unwrap());
    let server = rt.block_on(berth_registry::Server::start(cfg)).unwrap();
    let host = format!("127.0.0.1:{}", server.addr().port());
    let sfx = suffix();

    // An OCI layout made in code: an index of two single-layer images (host and another arch).
    let layout = tmp.path().join("layout");
    let host_p = berth_core::Platform::host();
    let other_arch = if host_p.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let mut entries = Vec::new();
    for (i, arch) in [host_p.architecture.as_str(), other_arch]
        .iter()
        .enumerate()
    {
        let tar = rootfs_tar(&[
            ("arch".to_string(), format!("{arch}\n").into_bytes()),
            ("n".to_string(), noise(1000, i as u64 + 50)),
        ]);
        let layer = layout_blob(&layout, "application/vnd.oci.image.layer.v1.tar", &tar);
        let config = json!({"architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"].clone()]}, "config": {}});
        let config = layout_blob(
            &layout,
            "application/vnd.oci.image.config.v1+json",
            config.to_string().as_bytes(),
        );
        let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": [layer]});
        let mut d = layout_blob(
            &layout,
            "application/vnd.oci.image.manifest.v1+json",
            m.to_string().as_bytes(),
        );
        d["platform"] = json!({"os": "linux", "architecture": arch});
        entries.push(d);
    }
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let mut top = layout_blob(
        &layout,
        "application/vnd.oci.image.index.v1+json",
        index.to_string().as_bytes(),
    );
    let local = format!("berthtest/multi-{sfx}:v1");
    top["annotations"] = json!({"io.containerd.image.name": format!("docker.io/{local}")});
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [top.clone()]}).to_string(),
    )
    .unwrap();
    let src = berth_image::ImageService::open(tmp.path().join("src")).unwrap();
    src.load_oci_dir(&layout).unwrap();

    let dest: Reference = format!("{host}/berthtest/multi-{sfx}:v1").parse().unwrap();
    let r = push(&src, &client(1 << 20), rt.handle(), &local, &dest, &|_| {}).unwrap();
    assert_eq!(
        r.digest.to_string(),
        top["digest"].as_str().unwrap(),
        "the index itself was pushed"
    );
    assert_eq!(r.uploaded, 4, "both platforms' configs and layers: {r:?}");

    for (arch, root) in [
        (host_p.architecture.clone(), "dst-host"),
        (other_arch.to_string(), "dst-other"),
    ] {
        let mut dst = berth_image::ImageService::open(tmp.path().join(root)).unwrap();
        if arch != host_p.architecture {
            dst = dst.with_platform(berth_core::Platform::parse(&format!("linux/{arch}")).unwrap());
        }
        let p = pull(&dst, &client(1 << 20), rt.handle(), &dest, &|_| {}).unwrap();
        assert_eq!(p.target, r.digest);
        assert_eq!(
            read_image_file(&dst, &dest.to_string(), "arch"),
            format!("{arch}\n").into_bytes()
        );
    }
    rt.block_on(server.shutdown());
}
