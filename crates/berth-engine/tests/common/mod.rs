//! Shared fixtures for berth-engine integration tests: a daemon per test on temp roots, a
//! small HTTP client over the unix socket, the docker CLI, and a busybox image made in code.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use berth_engine::daemon::Daemon;
use berth_engine::Config;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// A daemon on its own temp roots; stops, unmounts and deletes everything on drop.
pub struct TestDaemon {
    pub daemon: Option<Daemon>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
}

impl TestDaemon {
    pub fn start() -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("berthtest")
            .tempdir()
            .expect("temp dir");
        let mut cfg = Config::with_roots(dir.path().join("data"), dir.path().join("exec"));
        let sock = dir.path().join("d.sock");
        cfg.hosts = vec![format!("unix://{}", sock.display())];
        cfg.pidfile = Some(dir.path().join("exec/berth.pid"));
        let daemon = Daemon::start(cfg).expect("daemon starts");
        TestDaemon {
            daemon: Some(daemon),
            dir,
            sock,
        }
    }

    pub fn engine(&self) -> &std::sync::Arc<berth_engine::Engine> {
        &self.daemon.as_ref().expect("running").engine
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    pub fn client(&self) -> Client {
        Client {
            sock: self.sock.clone(),
        }
    }

    /// Run the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .output()
            .expect("run docker")
    }

    /// Run docker and require success; returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed: {}\nstdout: {}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Import the busybox fixture as `name` through the image service.
    pub fn import_busybox(&self, name: &str) -> String {
        let tar = busybox_rootfs_tar();
        let opts = berth_image::ImportOptions {
            changes: vec!["CMD [\"sh\"]".into()],
            ..Default::default()
        };
        let r = self
            .engine()
            .images
            .import(&tar[..], Some(name), &opts)
            .expect("import busybox");
        r.id.to_string()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            let _ = d.stop();
        }
        unmount_under(self.dir.path());
    }
}

/// Detach every mount under `root` (deepest first).
pub fn unmount_under(root: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = root.to_string_lossy().to_string();
    let mut mps: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mps.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mps {
        let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
}

/// Whether the docker CLI is installed; prints why a test is skipped otherwise.
pub fn have_docker() -> bool {
    let ok = Command::new("docker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP: docker CLI not installed");
    }
    ok
}

/// A rootfs tar: /bin/busybox (static, from the host) and applet links.
pub fn busybox_rootfs_tar() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (install busybox-static)");
    let mut b = tar::Builder::new(Vec::new());
    let dir = |name: &str, b: &mut tar::Builder<Vec<u8>>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, &[][..]).expect("dir");
    };
    for d in ["bin/", "etc/", "tmp/", "proc/", "sys/", "dev/"] {
        dir(d, &mut b);
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(bb.len() as u64);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "bin/busybox", &bb[..])
        .expect("busybox");
    for applet in [
        "sh", "echo", "cat", "ls", "true", "false", "sleep", "id", "env",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .expect("link");
    }
    b.into_inner().expect("tar")
}

/// A response: status, headers, body.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }
}

/// HTTP/1.1 over the daemon's unix socket, one connection per request.
#[derive(Debug, Clone)]
pub struct Client {
    pub sock: PathBuf,
}

impl Client {
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Resp {
        let stream = tokio::net::UnixStream::connect(&self.sock)
            .await
            .expect("connect");
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let resp = tokio::time::timeout(Duration::from_secs(60), tx.send_request(req))
            .await
            .expect("response in time")
            .expect("response");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn req(&self, method: &str, path: &str, body: impl Into<Bytes>) -> Resp {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "api.moby.localhost")
            .body(Full::new(body.into()))
            .expect("request");
        self.send(req).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, v: serde_json::Value) -> Resp {
        let req = Request::builder()
            .method("POST")
            .uri(path)
            .header("Host", "api.moby.localhost")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .expect("request");
        self.send(req).await
    }
}

/// URL-encode a query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
