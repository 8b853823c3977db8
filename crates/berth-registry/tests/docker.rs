//! Interop with Docker: a private dockerd (its own roots and socket) pushes to and pulls from
//! berth's registry, anonymously and with `docker login` against token auth. Skips with a
//! reason when dockerd or the docker CLI is absent.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_core::Digest;
use common::*;

struct Dockerd {
    child: Child,
    sock: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dockerd {
    fn start() -> Result<Dockerd, String> {
        for bin in ["dockerd", "docker"] {
            let ok = Command::new(bin)
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !ok {
                return Err(format!("{bin} is not installed"));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("berthtest-dockerd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        let sock = d.join("d.sock");
        let config = d.join("config");
        std::fs::create_dir_all(&config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(d.join("log")).map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--pidfile")
            .arg(d.join("d.pid"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn dockerd: {e}"))?;
        let mut me = Dockerd {
            child,
            sock,
            config,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if me.sock.exists() && me.docker(&["version"]).is_ok() {
                return Ok(me);
            }
            if let Ok(Some(st)) = me.child.try_wait() {
                let log = std::fs::read_to_string(me._dir.path().join("log")).unwrap_or_default();
                return Err(format!("dockerd exited ({st}): {log}"));
            }
            if Instant::now() > deadline {
                panic!("dockerd did not come up in 60s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn docker_in(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut cmd = Command::new("docker");
        cmd.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .env("DOCKER_CONFIG", &self.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
            std::io::Write::write_all(&mut w, input.as_bytes()).map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "docker {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn docker(&self, args: &[&str]) -> Result<String, String> {
        self.docker_in(args, None)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rootfs_tar(path: &Path) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("hello.txt", &b"hello from berth's registry\n"[..]),
        ("etc/hostname", b"berthtest\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, body).expect("tar entry");
    }
    std::fs::write(path, b.into_inner().expect("tar")).expect("write tar");
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

/// Push, remove, pull back and compare the registry's digest with Docker's RepoDigests.
fn roundtrip(d: &Dockerd, image: &str, tar: &Path) -> String {
    d.docker(&["import", &tar.display().to_string(), image])
        .expect("docker import");
    d.docker(&["push", image]).expect("docker push");
    d.docker(&["rmi", image]).expect("docker rmi");
    d.docker(&["pull", image]).expect("docker pull");
    let repo_digest = d
        .docker(&[
            "image",
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            image,
        ])
        .expect("inspect");
    repo_digest
        .rsplit_once('@')
        .map(|(_, dg)| dg.to_string())
        .expect("repo digest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_cli_push_and_pull() {
    let dockerd = match blocking(Dockerd::start).await {
        Ok(d) => std::sync::Arc::new(d),
        Err(why) => {
            println!("skipping: {why}");
            return;
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix("berthtest-docker-")
        .tempdir()
        .expect("tmp");
    let tar = tmp.path().join("rootfs.tar");
    rootfs_tar(&tar);

    // Anonymous registry (loopback registries are insecure-by-default for Docker).
    let reg = start().await;
    let image = format!("{}/berth/docker:v1", reg.addr);
    let (dd, img, t) = (dockerd.clone(), image.clone(), tar.clone());
    let digest = blocking(move || roundtrip(&dd, &img, &t)).await;
    let r = get(reg.addr, "/v2/berth/docker/manifests/v1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(digest.clone()));
    assert_eq!(Digest::sha256_of(&r.body).to_string(), digest);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );

    // A manifest list made by `docker manifest` (children mounted/pushed by digest, then the
    // list): served as a list, or as its linux/amd64 image to clients that take no lists.
    let list = format!("{}/berth/list:v1", reg.addr);
    let (dd, l, img) = (dockerd.clone(), list.clone(), image.clone());
    blocking(move || {
        dd.docker(&["manifest", "create", "--insecure", &l, &img])
            .expect("docker manifest create");
        dd.docker(&["manifest", "push", "--insecure", &l])
            .expect("docker manifest push");
    })
    .await;
    let list_mt = "application/vnd.docker.distribution.manifest.list.v2+json";
    let r = send(
        reg.addr,
        "GET",
        "/v2/berth/list/manifests/v1",
        &[("accept", list_mt)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some(list_mt));
    assert_eq!(r.json()["manifests"][0]["digest"], digest.as_str());
    let v2 = "application/vnd.docker.distribution.manifest.v2+json";
    let r = send(
        reg.addr,
        "GET",
        "/v2/berth/list/manifests/v1",
        &[("accept", v2)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.header("docker-content-digest"), Some(digest.clone()));

    // Token auth with htpasswd users: docker login, push, pull.
    let hp = tmp.path().join("htpasswd");
    std::fs::write(
        &hp,
        format!("carol:{}\n", bcrypt::hash("pw-carol", 4).expect("hash")),
    )
    .expect("htpasswd");
    let reg2 = start_with(|c| {
        c.htpasswd = Some(hp);
        c.token = Some(berth_registry::TokenConfig {
            key: b"docker-secret".to_vec(),
            issuer: "berth-test".into(),
            realm: String::new(),
            service: "berth-test".into(),
            ttl_secs: 300,
        });
    })
    .await;
    let host = reg2.addr.to_string();
    let image2 = format!("{host}/team/secure:v2");
    let (dd, img, t, h) = (dockerd.clone(), image2.clone(), tar.clone(), host.clone());
    let (refused, digest2) = blocking(move || {
        dd.docker(&["import", &t.display().to_string(), &img])
            .expect("import");
        let refused = dd.docker(&["push", &img]).is_err();
        dd.docker_in(
            &["login", "-u", "carol", "--password-stdin", &h],
            Some("pw-carol\n"),
        )
        .expect("docker login");
        dd.docker(&["rmi", &img]).expect("rmi");
        (refused, roundtrip(&dd, &img, &t))
    })
    .await;
    assert!(refused, "push without login succeeded");
    let r = get(reg2.addr, "/v2/team/secure/manifests/v2").await;
    assert_eq!(r.status, 401);
    let (dd, h) = (dockerd.clone(), host.clone());
    let bad_login = blocking(move || {
        dd.docker_in(
            &["login", "-u", "carol", "--password-stdin", &h],
            Some("wrong\n"),
        )
    })
    .await;
    assert!(bad_login.is_err(), "login with a wrong password succeeded");
    assert!(digest2.starts_with("sha256:"));
    drop(dockerd);
}
