//! The real docker CLI (28) against a berth daemon: version, info, images, import, tag,
//! inspect, history, rmi, save, load, volumes, system df, events, error messages.

mod common;

use common::{have_docker, TestDaemon};

#[test]
fn docker_version_and_info() {
    if !have_docker() {
        return;
    }
    let d = TestDaemon::start();
    let v = d.docker_ok(&["version"]);
    assert!(v.contains("Server: berth"), "{v}");
    assert!(
        v.contains("API version:      1.44 (minimum version 1.24)"),
        "{v}"
    );
    assert!(
        v.contains("1.44 (downgraded from"),
        "client negotiated down: {v}"
    );
    let f = d.docker_ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(f.trim(), "1.44 linux");
    let i = d.docker_ok(&["info"]);
    for want in [
        "Containers: 0",
        "Images: 0",
        "Cgroup Driver: cgroupfs",
        "Live Restore Enabled: true",
        "Default Runtime: berth",
        "OSType: linux",
    ] {
        assert!(i.contains(want), "missing {want:?} in:\n{i}");
    }
    assert!(
        i.contains(&format!(
            "Docker Root Dir: {}",
            d.dir.path().join("data").display()
        )),
        "{i}"
    );
    let o = d.docker(&["info"]);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("WARNING: API is accessible"),
        "no warnings expected"
    );
    let j = d.docker_ok(&["info", "--format", "{{json .SecurityOptions}}"]);
    assert_eq!(j.trim(), r#"["name=seccomp,profile=builtin"]"#);
}

#[test]
fn docker_image_commands() {
    if !have_docker() {
        return;
    }
    let d = TestDaemon::start();
    let tarp = d.dir.path().join("rootfs.tar");
    std::fs::write(&tarp, common::busybox_rootfs_tar()).unwrap();
    let tar = tarp.to_str().unwrap();
    // import
    let id = d.docker_ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "ENV A=1",
        "-m",
        "from test",
        tar,
        "berthtest/bb:1",
    ]);
    let id = id.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    // images
    let out = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert_eq!(out.trim(), format!("berthtest/bb:1 {}", &id[7..19]));
    let q = d.docker_ok(&["images", "-q", "--no-trunc"]);
    assert_eq!(q.trim(), id);
    // tag, then reference filter
    d.docker_ok(&["tag", "berthtest/bb:1", "localhost:5000/team/app:v2"]);
    let out = d.docker_ok(&[
        "images",
        "--filter",
        "reference=localhost:5000/*/*",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    assert_eq!(out.trim(), "localhost:5000/team/app:v2");
    // inspect
    let env = d.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Env}} {{json .Config.Cmd}} {{.Comment}}",
        "localhost:5000/team/app:v2",
    ]);
    assert_eq!(env.trim(), r#"["A=1"] ["sh"] from test"#);
    let any = d.docker_ok(&["inspect", "-f", "{{.Id}}", "berthtest/bb:1"]);
    assert_eq!(
        any.trim(),
        id,
        "docker inspect falls through container 404 to the image"
    );
    // history
    let h = d.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Comment}}",
        "berthtest/bb:1",
    ]);
    assert_eq!(h.lines().next().unwrap(), format!("{id} from test"));
    // save -> rmi -> load
    let saved = d.dir.path().join("saved.tar");
    d.docker_ok(&["save", "-o", saved.to_str().unwrap(), "berthtest/bb:1"]);
    assert!(std::fs::metadata(&saved).unwrap().len() > 1_000_000);
    let out = d.docker_ok(&["rmi", "localhost:5000/team/app:v2"]);
    assert_eq!(out.trim(), "Untagged: localhost:5000/team/app:v2");
    let out = d.docker_ok(&["rmi", "berthtest/bb:1"]);
    assert!(out.contains("Untagged: berthtest/bb:1"), "{out}");
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(d.docker_ok(&["images", "-q"]).trim(), "");
    let out = d.docker_ok(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: berthtest/bb:1");
    assert_eq!(d.docker_ok(&["images", "-q", "--no-trunc"]).trim(), id);
    // load from stdin (chunked upload), quiet
    let o = std::process::Command::new("docker")
        .args(["-H", &d.host(), "load", "-q"])
        .stdin(std::fs::File::open(&saved).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "Loaded image: berthtest/bb:1"
    );
    // save to stdout
    let o = std::process::Command::new("docker")
        .args(["-H", &d.host(), "save", "berthtest/bb:1"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        o.stdout.len() as u64,
        std::fs::metadata(&saved).unwrap().len()
    );
    // rmi errors
    let o = d.docker(&["rmi", "nosuch:img"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Error response from daemon:") && err.contains("nosuch"),
        "{err}"
    );
    // a pull from an unreachable (loopback) registry fails with a message naming it
    let o = d.docker(&["pull", "127.0.0.1:1/berthtest/none"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn docker_inspect_nonexistent() {
    if !have_docker() {
        return;
    }
    let d = TestDaemon::start();
    let o = d.docker(&["inspect", "berthtest-nonexistent"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Error: No such object: berthtest-nonexistent"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
    let o = d.docker(&["image", "inspect", "berthtest-nonexistent"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No such image"), "{err}");
}

#[test]
fn docker_volume_commands() {
    if !have_docker() {
        return;
    }
    let d = TestDaemon::start();
    assert_eq!(
        d.docker_ok(&["volume", "create", "berthtest-a"]).trim(),
        "berthtest-a"
    );
    d.docker_ok(&[
        "volume",
        "create",
        "--label",
        "team=x",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=2m",
        "berthtest-b",
    ]);
    let anon = d.docker_ok(&["volume", "create"]);
    assert_eq!(anon.trim().len(), 64);
    let ls = d.docker_ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
    let mut lines: Vec<&str> = ls.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 3);
    assert!(lines.contains(&"local berthtest-a") && lines.contains(&"local berthtest-b"));
    let f = d.docker_ok(&["volume", "ls", "-q", "--filter", "label=team=x"]);
    assert_eq!(f.trim(), "berthtest-b");
    let f = d.docker_ok(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        "name=berthtest-a",
        "--filter",
        "dangling=true",
    ]);
    assert_eq!(f.trim(), "berthtest-a");
    let mp = d.docker_ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}} {{.Options.type}} {{.Labels.team}}",
        "berthtest-b",
    ]);
    assert_eq!(
        mp.trim(),
        format!(
            "{} tmpfs x",
            d.dir
                .path()
                .join("data/volumes/berthtest-b/_data")
                .display()
        )
    );
    let any = d.docker_ok(&["inspect", "-f", "{{.Name}}", "berthtest-a"]);
    assert_eq!(
        any.trim(),
        "berthtest-a",
        "docker inspect falls through to volumes"
    );
    // in use -> 409 message
    d.engine().volumes.mount("berthtest-a", "deadbeef").unwrap();
    let o = d.docker(&["volume", "rm", "berthtest-a"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("volume is in use - [deadbeef]"), "{err}");
    d.engine()
        .volumes
        .unmount("berthtest-a", "deadbeef")
        .unwrap();
    assert_eq!(
        d.docker_ok(&["volume", "rm", "berthtest-a"]).trim(),
        "berthtest-a"
    );
    let o = d.docker(&["volume", "rm", "berthtest-a"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no such volume"), "{err}");
    // prune -a removes the rest (nothing uses them)
    let out = d.docker_ok(&["volume", "prune", "-af"]);
    assert!(
        out.contains("berthtest-b") && out.contains(anon.trim()),
        "{out}"
    );
    assert_eq!(d.docker_ok(&["volume", "ls", "-q"]).trim(), "");
}

#[test]
fn docker_system_df() {
    if !have_docker() {
        return;
    }
    let d = TestDaemon::start();
    d.import_busybox("berthtest/df:1");
    d.docker_ok(&["volume", "create", "berthtest-dfv"]);
    std::fs::write(
        d.dir.path().join("data/volumes/berthtest-dfv/_data/f"),
        vec![7u8; 10_000],
    )
    .unwrap();
    let out = d.docker_ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Size}}",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Images 1 "), "{out}");
    assert!(lines[0].ends_with("MB"), "{out}");
    assert_eq!(lines[1], "Containers 0 0B", "{out}");
    assert_eq!(lines[2], "Local Volumes 1 10kB", "{out}");
    let v = d.docker_ok(&["system", "df", "-v"]);
    assert!(v.contains("berthtest/df"), "{v}");
    assert!(v.contains("berthtest-dfv"), "{v}");
}

#[test]
fn docker_events_since_until() {
    if !have_docker() {
        return;
    }
    let d = TestDaemon::start();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    d.docker_ok(&["volume", "create", "berthtest-e1"]);
    d.import_busybox("berthtest/ev:1");
    d.docker_ok(&["tag", "berthtest/ev:1", "berthtest/ev:2"]);
    d.docker_ok(&["volume", "rm", "berthtest-e1"]);
    let until = (t0 + 2).to_string();
    let since = (t0 - 1).to_string();
    let out = d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}}",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "volume create berthtest-e1", "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with("image tag sha256:")),
        "{out}"
    );
    assert_eq!(
        *lines.last().unwrap(),
        "volume destroy berthtest-e1",
        "{out}"
    );
    let out = d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=volume",
        "--filter",
        "event=destroy",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
    ]);
    assert_eq!(out.trim(), "destroy berthtest-e1");
}

/// `docker events` streams live: the CLI prints an event as it happens.
#[test]
fn docker_events_live() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    if !have_docker() {
        return;
    }
    let d = TestDaemon::start();
    let mut child = std::process::Command::new("docker")
        .args([
            "-H",
            &d.host(),
            "events",
            "--filter",
            "type=volume",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.ID}}",
        ])
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    // the CLI subscribes asynchronously: create volumes until one is reported
    let mut got = None;
    for i in 0..50 {
        d.docker_ok(&["volume", "create", &format!("berthtest-live{i}")]);
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            got = Some(l);
            break;
        }
    }
    let l = got.expect("docker events printed a live event");
    assert!(l.starts_with("volume create berthtest-live"), "{l}");
}
