//! Interop with Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1: push (chunked),
//! cross-repository mount, pull into a fresh root; basic auth via htpasswd; login/logout.
//! Skips with a printed reason when `docker-registry` is not installed.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_core::{ErrorKind, Reference};
use berth_distribution::{login, logout, pull, push, Client, ClientConfig, Credentials};
use common::*;

const BIN: &str = "/usr/bin/docker-registry";

struct Registry {
    child: Child,
    host: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_registry(dir: &Path, htpasswd: Option<(&str, &str)>) -> Option<Registry> {
    if !Path::new(BIN).exists() {
        println!("skipping: {BIN} not installed (apt-get install docker-registry)");
        return None;
    }
    let port = free_port();
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let mut cfg = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        storage.display()
    );
    if let Some((u, p)) = htpasswd {
        let hash = bcrypt::hash(p, 5).unwrap();
        let file = dir.join("htpasswd");
        std::fs::write(&file, format!("{u}:{hash}\n")).unwrap();
        cfg.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: berthtest\n    path: {}\n",
            file.display()
        ));
    }
    let cfg_path = dir.join("config.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let child = Command::new(BIN)
        .arg("serve")
        .arg(&cfg_path)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let reg = Registry {
        child,
        host: format!("127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(&reg.host).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(reg)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn push_mount_pull_with_debian_docker_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(reg) = start_registry(&tmp.path().join("reg"), None) else {
        return;
    };
    let rt = runtime();
    let sfx = suffix();
    let local = format!("berthtest/src-{sfx}:v1");
    let src = source_root(&tmp.path().join("src"), &local, 11);
    let client = client(1 << 20);
    let a: Reference = format!("{}/berthtest/a-{sfx}:v1", reg.host)
        .parse()
        .unwrap();
    let r1 = push(&src, &client, rt.handle(), &local, &a, &|_| {}).unwrap();
    assert_eq!((r1.uploaded, r1.mounted), (2, 0));
    let b: Reference = format!("{}/berthtest/b-{sfx}:v1", reg.host)
        .parse()
        .unwrap();
    let r2 = push(&src, &client, rt.handle(), &local, &b, &|_| {}).unwrap();
    assert_eq!((r2.uploaded, r2.mounted), (0, 2), "second push mounts");
    assert_eq!(r1.digest, r2.digest);
    let log = std::fs::read_to_string(tmp.path().join("reg/registry.log")).unwrap();
    assert!(log.contains("mount="), "the registry saw a mount request");

    let dst = berth_image::ImageService::open(tmp.path().join("dst")).unwrap();
    let p = pull(&dst, &client, rt.handle(), &b, &|_| {}).unwrap();
    assert_eq!(p.target, r1.digest);
    for (path, data) in fixture_files(11) {
        assert_eq!(read_image_file(&dst, &b.to_string(), &path), data, "{path}");
    }
    let by_digest = a.with_digest(r1.digest.clone());
    let dst2 = berth_image::ImageService::open(tmp.path().join("dst2")).unwrap();
    pull(&dst2, &client, rt.handle(), &by_digest, &|_| {}).unwrap();
    assert_eq!(
        dst2.resolve(&by_digest.to_string()).unwrap().id,
        src.resolve(&local).unwrap().id
    );
    let missing: Reference = format!("{}/berthtest/a-{sfx}:nope", reg.host)
        .parse()
        .unwrap();
    let e = pull(&dst, &client, rt.handle(), &missing, &|_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        format!(
            "manifest for {}/berthtest/a-{sfx}:nope not found: manifest unknown",
            reg.host
        )
    );
}

#[test]
fn basic_auth_login_logout_with_debian_docker_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(reg) = start_registry(&tmp.path().join("reg"), Some(("bob", "hunter2"))) else {
        return;
    };
    let rt = runtime();
    let sfx = suffix();
    let local = format!("berthtest/src-{sfx}:v1");
    let src = source_root(&tmp.path().join("src"), &local, 12);
    let dest: Reference = format!("{}/berthtest/auth-{sfx}:v1", reg.host)
        .parse()
        .unwrap();

    // Anonymous: refused.
    let e = push(&src, &client(1 << 20), rt.handle(), &local, &dest, &|_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");

    // login: a wrong password is refused and nothing is written.
    let config = tmp.path().join("home/.docker/config.json");
    let anon = client(1 << 20);
    let e = rt
        .block_on(login(
            &anon,
            &reg.host,
            &Credentials::new("bob", "nope"),
            &config,
        ))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(!config.exists());
    rt.block_on(login(
        &anon,
        &reg.host,
        &Credentials::new("bob", "hunter2"),
        &config,
    ))
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(doc["auths"][&reg.host]["auth"], "Ym9iOmh1bnRlcjI="); // bob:hunter2

    // A client reading that config.json pushes and pulls.
    let authed = Client::new(ClientConfig {
        docker_config: Some(config.clone()),
        chunk_size: 1 << 20,
        ..Default::default()
    });
    push(&src, &authed, rt.handle(), &local, &dest, &|_| {}).unwrap();
    let dst = berth_image::ImageService::open(tmp.path().join("dst")).unwrap();
    pull(&dst, &authed, rt.handle(), &dest, &|_| {}).unwrap();
    assert_eq!(
        read_image_file(&dst, &dest.to_string(), "etc/hostname"),
        b"berthtest-12\n"
    );

    // logout removes the entry; a second logout has nothing to remove.
    assert!(logout(&reg.host, &config).unwrap());
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(doc["auths"].get(&reg.host).is_none());
    assert!(!logout(&reg.host, &config).unwrap());
}

/// Push/pull throughput of a ~200 MB image (half random, half text) between a berth data root
/// and Debian's docker-registry with berth's client. Not a test: `--run-ignored only bench`.
#[test]
#[ignore]
fn bench_push_pull_debian_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(reg) = start_registry(&tmp.path().join("reg"), None) else {
        return;
    };
    let mb: usize = std::env::var("BERTH_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = runtime();
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
    svc.import(
        &rootfs_tar(&files)[..],
        Some("berthtest/bench:v1"),
        &berth_image::ImportOptions::default(),
    )
    .unwrap();
    let c = client(16 << 20);
    let dest: Reference = format!("{}/berthtest/bench:v1", reg.host).parse().unwrap();
    let t = Instant::now();
    push(&svc, &c, rt.handle(), "berthtest/bench:v1", &dest, &|_| {}).unwrap();
    let push_s = t.elapsed().as_secs_f64();
    let dst = berth_image::ImageService::open(tmp.path().join("dst")).unwrap();
    let t = Instant::now();
    pull(&dst, &c, rt.handle(), &dest, &|_| {}).unwrap();
    let pull_s = t.elapsed().as_secs_f64();
    println!(
        "docker-registry: {mb} MiB image (uncompressed layers): push {push_s:.2}s = {:.1} MiB/s; pull+unpack {pull_s:.2}s = {:.1} MiB/s",
        mb as f64 / push_s,
        mb as f64 / pull_s
    );
}
