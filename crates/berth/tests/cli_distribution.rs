//! `berth image push|pull|login|logout --data-root` end to end against `berth registry serve`
//! on 127.0.0.1 (separate processes).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn berth(home: &Path, args: &[&str]) -> Output {
    Command::new(BERTH)
        .args(args)
        .env("HOME", home)
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn image_push_pull_login_logout_through_berth_registry_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let _server = Server(
        Command::new(BERTH)
            .args(["registry", "serve", "--addr", &host, "--root"])
            .arg(tmp.path().join("reg"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&host).is_err() {
        assert!(Instant::now() < deadline, "registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A rootfs tarball made in code.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let msg = b"hello from berthtest cli\n";
    h.set_size(msg.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "msg.txt", &msg[..]).unwrap();
    let tarball = tmp.path().join("rootfs.tar");
    std::fs::write(&tarball, b.into_inner().unwrap()).unwrap();

    let home = tmp.path().join("home");
    let name = format!("{host}/berthtest/cli:v1");
    let (a, broot) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, broot) = (a.to_str().unwrap(), broot.to_str().unwrap());
    ok(&berth(
        &home,
        &[
            "image",
            "--data-root",
            a,
            "import",
            tarball.to_str().unwrap(),
            &name,
        ],
    ));
    let out = ok(&berth(&home, &["image", "--data-root", a, "push", &name]));
    assert!(
        out.contains(&format!(
            "The push refers to repository [{host}/berthtest/cli]"
        )),
        "{out}"
    );
    assert!(out.contains(": Pushed"), "{out}");
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("v1: digest: "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();

    let out = ok(&berth(
        &home,
        &["image", "--data-root", broot, "pull", &name],
    ));
    assert!(out.contains(": Pull complete"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    let ls = ok(&berth(
        &home,
        &["image", "--data-root", broot, "ls", "--digests"],
    ));
    assert!(ls.contains(&digest), "{ls}");

    let o = berth(
        &home,
        &[
            "image",
            "--data-root",
            broot,
            "pull",
            &format!("{host}/berthtest/cli:nope"),
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "manifest for {host}/berthtest/cli:nope not found: manifest unknown"
        )),
        "{err}"
    );

    let out = ok(&berth(
        &home,
        &[
            "image",
            "--data-root",
            broot,
            "login",
            "-u",
            "u1",
            "-p",
            "p1",
            &host,
        ],
    ));
    assert!(out.contains("Login Succeeded"), "{out}");
    let cfg = std::fs::read_to_string(home.join(".docker/config.json")).unwrap();
    assert!(cfg.contains(&host) && cfg.contains("dTE6cDE="), "{cfg}"); // u1:p1
    let out = ok(&berth(
        &home,
        &["image", "--data-root", broot, "logout", &host],
    ));
    assert!(out.contains("Removing login credentials"), "{out}");
    let cfg = std::fs::read_to_string(home.join(".docker/config.json")).unwrap();
    assert!(!cfg.contains(&host), "{cfg}");
}
