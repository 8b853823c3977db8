//! Pull, push and login through the daemon against an in-process berth registry on loopback,
//! driven by the real docker CLI (28): push, rmi, pull (new and up to date), run, a missing
//! tag's error, pull/push events, `docker login` (POST /auth) and pushes with X-Registry-Auth.

mod common;

use common::{have_docker, TestDaemon};

/// A registry on 127.0.0.1:0 served by its own runtime (dropped after the server).
struct Registry {
    server: Option<berth_registry::Server>,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Registry {
    fn start(with: impl FnOnce(&mut berth_registry::Config, &std::path::Path)) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berthtest-reg-")
            .tempdir()
            .expect("temp dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut cfg = berth_registry::Config::new(
            dir.path().join("root"),
            "127.0.0.1:0".parse().expect("addr"),
        );
        with(&mut cfg, dir.path());
        let server = rt
            .block_on(berth_registry::Server::start(cfg))
            .expect("registry starts");
        Registry {
            server: Some(server),
            _dir: dir,
            rt,
        }
    }

    fn host(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.server.as_ref().expect("up").addr().port()
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let s = self.server.take();
        let _g = self.rt.enter();
        drop(s);
    }
}

fn import_busybox(d: &TestDaemon, name: &str) {
    let tarp = d.dir.path().join("rootfs.tar");
    std::fs::write(&tarp, common::busybox_rootfs_tar()).expect("write tar");
    d.docker_ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        tarp.to_str().expect("utf8"),
        name,
    ]);
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn docker_push_rmi_pull_run() {
    if !have_docker() {
        return;
    }
    let reg = Registry::start(|_, _| {});
    let d = TestDaemon::start();
    let name = format!("{}/x:1", reg.host());
    import_busybox(&d, "berthtest/bb:1");
    d.docker_ok(&["tag", "berthtest/bb:1", &name]);

    let push = d.docker_ok(&["push", &name]);
    assert!(
        push.contains(&format!("The push refers to repository [{}/x]", reg.host())),
        "{push}"
    );
    assert!(push.contains("Pushed"), "{push}");
    let line = push
        .lines()
        .find(|l| l.starts_with("1: digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest line in {push}"));
    let digest = line.split_whitespace().nth(2).expect("digest").to_string();
    assert!(line.contains(" size: "), "{line}");
    // a second push finds every layer on the registry
    let again = d.docker_ok(&["push", &name]);
    assert!(again.contains("Layer already exists"), "{again}");

    // --all-tags: every local tag of the repository
    let name2 = format!("{}/x:2", reg.host());
    d.docker_ok(&["tag", "berthtest/bb:1", &name2]);
    let all = d.docker_ok(&["push", "--all-tags", &format!("{}/x", reg.host())]);
    assert!(all.contains(&format!("1: digest: {digest}")), "{all}");
    assert!(all.contains(&format!("2: digest: {digest}")), "{all}");
    let o = d.docker(&["push", &format!("{}/x:nosuch", reg.host())]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("An image does not exist locally"),
        "{}",
        out(&o)
    );

    d.docker_ok(&["rmi", &name, &name2, "berthtest/bb:1"]);
    let o = d.docker(&["image", "inspect", &name]);
    assert!(!o.status.success(), "image still there");

    let pull = d.docker_ok(&["pull", &name]);
    assert!(pull.contains("1: Pulling from x"), "{pull}");
    assert!(pull.contains(": Pull complete"), "{pull}");
    assert!(pull.contains(&format!("Digest: {digest}")), "{pull}");
    assert!(
        pull.contains(&format!("Status: Downloaded newer image for {name}")),
        "{pull}"
    );
    let repo_digest = d.docker_ok(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", &name]);
    assert_eq!(repo_digest.trim(), format!("{}/x@{digest}", reg.host()));
    let pull2 = d.docker_ok(&["pull", &name]);
    assert!(
        pull2.contains(&format!("Status: Image is up to date for {name}")),
        "{pull2}"
    );

    let o = d.docker(&["run", "--rm", &name, "echo", "ok"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok");

    // a missing tag: docker's manifest-unknown error, non-zero exit
    let missing = format!("{}/x:nope", reg.host());
    let o = d.docker(&["pull", &missing]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("manifest unknown"), "{err}");
    assert!(
        err.contains(&format!("manifest for {missing} not found")),
        "{err}"
    );

    // pull and push events
    let ev = d.docker_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_secs()
                + 1
        ),
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert!(ev.contains(&format!("push {name}")), "{ev}");
    assert!(ev.contains(&format!("pull {name}")), "{ev}");
}

#[test]
fn docker_login_and_authenticated_push_pull() {
    if !have_docker() {
        return;
    }
    let reg = Registry::start(|c, dir| {
        let p = dir.join("htpasswd");
        let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
        std::fs::write(&p, format!("alice:{hash}\n")).expect("write htpasswd");
        c.htpasswd = Some(p);
    });
    let d = TestDaemon::start();
    let host = reg.host();
    let name = format!("{host}/private/y:2");
    import_busybox(&d, &name);

    // without credentials the push is refused inside the stream
    let o = d.docker(&["push", &name]);
    assert!(!o.status.success(), "{}", out(&o));

    let o = d.docker(&["pull", &format!("{host}/private/y:1")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pull access denied for"), "{err}");

    // a wrong password: POST /auth answers 401
    let o = d.docker(&["login", "-u", "alice", "-p", "wrong", &host]);
    assert!(!o.status.success(), "{}", out(&o));
    let c = d.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let body = format!(r#"{{"username":"alice","password":"wrong","serveraddress":"{host}"}}"#);
    let r = rt.block_on(c.req("POST", "/auth", bytes::Bytes::from(body)));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.json()["message"].as_str().is_some(), "{}", r.text());
    let body = format!(r#"{{"username":"alice","password":"s3cret","serveraddress":"{host}"}}"#);
    let r = rt.block_on(c.req("POST", "/auth", bytes::Bytes::from(body)));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""})
    );

    // the CLI logs in (its own config.json) and sends X-Registry-Auth on push and pull
    let o = d.docker(&["login", "-u", "alice", "-p", "s3cret", &host]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("Login Succeeded"), "{}", out(&o));
    let push = d.docker_ok(&["push", &name]);
    assert!(push.contains("2: digest: sha256:"), "{push}");
    d.docker_ok(&["rmi", &name]);
    let pull = d.docker_ok(&["pull", &name]);
    assert!(pull.contains("Downloaded newer image"), "{pull}");
    d.docker_ok(&["image", "inspect", &name]);
}

#[test]
fn insecure_registries_in_daemon_json() {
    let fc = berth_engine::config::FileConfig::parse(
        r#"{"insecure-registries":["reg.example:5000","10.0.0.1:80"]}"#,
    )
    .expect("parse");
    assert_eq!(
        fc.insecure_registries,
        Some(vec![
            "reg.example:5000".to_string(),
            "10.0.0.1:80".to_string()
        ])
    );
    let c = berth_engine::config::Config::with_roots("/d", "/e");
    assert!(c.insecure_registries.is_empty());
}
