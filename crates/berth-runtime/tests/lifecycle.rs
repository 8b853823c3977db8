//! Lifecycle and process-setup tests with real containers from a busybox rootfs; each property
//! is checked from inside the container (its output goes to a file in its rootfs).

mod common;

use std::os::fd::AsFd;

use berth_runtime::{CreateOptions, Error, ExecOptions, Runtime, Status};
use common::{wait_child, Fixture};
use serde_json::json;

fn opts(f: &Fixture) -> CreateOptions {
    CreateOptions {
        bundle: f.bundle(),
        ..Default::default()
    }
}

/// create + start + wait + delete; returns (exit code, contents of /out).
fn run_once(f: &mut Fixture, name: &str, spec: &serde_json::Value) -> (i32, String) {
    f.write_spec(spec);
    let rt = Runtime::new(f.root());
    let id = f.id(name);
    let st = rt.create(&id, &opts(f)).expect("create");
    f.pids.push(st.pid);
    rt.start(&id).expect("start");
    let code = wait_child(st.pid);
    let out = std::fs::read_to_string(f.rootfs().join("tmp/out")).unwrap_or_default();
    rt.delete(&id, false).expect("delete");
    (code, out)
}

#[test]
fn lifecycle_follows_the_oci_state_machine() {
    let mut f = Fixture::new();
    f.write_spec(&f.spec(&["sleep", "60"]));
    let rt = Runtime::new(f.root());
    let id = f.id("life");
    let pid_file = f.dir().join("pid");
    let st = rt
        .create(
            &id,
            &CreateOptions {
                pid_file: Some(pid_file.clone()),
                ..opts(&f)
            },
        )
        .unwrap();
    f.pids.push(st.pid);
    assert_eq!(st.status, Status::Created);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        st.pid.to_string()
    );
    let s = rt.state(&id).unwrap();
    assert_eq!(
        (s.status, s.pid, s.bundle.clone()),
        (Status::Created, st.pid, f.bundle())
    );
    assert_eq!(s.oci_version, "1.2.0");
    rt.start(&id).unwrap();
    assert_eq!(rt.state(&id).unwrap().status, Status::Running);
    let e = rt.start(&id).unwrap_err();
    assert_eq!(e.to_string(), "cannot start an already running container");
    let e = rt.delete(&id, false).unwrap_err();
    assert!(e.to_string().contains("not stopped: running"), "{e}");
    rt.kill(&id, libc::SIGKILL, false).unwrap();
    assert_eq!(wait_child(st.pid), 128 + libc::SIGKILL);
    let s = rt.state(&id).unwrap();
    assert_eq!((s.status, s.pid), (Status::Stopped, 0));
    let e = rt.kill(&id, libc::SIGTERM, false).unwrap_err();
    assert_eq!(e.to_string(), "container not running");
    let e = rt.start(&id).unwrap_err();
    assert_eq!(e.to_string(), "cannot start a container that has stopped");
    rt.delete(&id, false).unwrap();
    assert!(matches!(rt.state(&id), Err(Error::NotFound(_))));
    assert!(!f.root().join(&id).exists());
}

#[test]
fn process_settings_are_visible_inside() {
    let mut f = Fixture::new();
    let mut spec = f.sh(
        "exec > /tmp/out 2>&1; echo pid=$$; hostname; id; ulimit -n; umask; pwd; echo X=$X; \
         grep -E '^(CapEff|CapBnd|CapPrm|CapAmb|NoNewPrivs)' /proc/self/status; \
         cat /proc/sys/kernel/domainname",
    );
    spec["hostname"] = json!("berthhost");
    spec["domainname"] = json!("berth.example");
    spec["process"]["user"] =
        json!({"uid": 1000, "gid": 1001, "additionalGids": [5, 6], "umask": 18});
    spec["process"]["cwd"] = json!("/tmp");
    spec["process"]["env"] = json!(["PATH=/bin", "X=hello world"]);
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 333, "soft": 222}]);
    // ambient capabilities need the inheritable set too (runc behaves the same)
    spec["process"]["capabilities"]["inheritable"] =
        json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let (code, out) = run_once(&mut f, "proc", &spec);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "berthhost");
    assert!(lines[2].starts_with("uid=1000 gid=1001"), "{}", lines[2]);
    assert!(
        lines[2].contains("groups=5,6") || lines[2].contains("groups=5("),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "222");
    assert_eq!(lines[4], "0022");
    assert_eq!(lines[5], "/tmp");
    assert_eq!(lines[6], "X=hello world");
    // AUDIT_WRITE(29) KILL(5) NET_BIND_SERVICE(10) = 0x20000420; as a non-root user the
    // permitted and effective sets after exec come from the ambient set
    assert!(out.contains("CapEff:\t0000000020000420"), "{out}");
    assert!(out.contains("CapPrm:\t0000000020000420"), "{out}");
    assert!(out.contains("CapBnd:\t0000000020000420"), "{out}");
    assert!(out.contains("CapAmb:\t0000000020000420"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert_eq!(lines.last(), Some(&"berth.example"));
}

#[test]
fn hard_rlimit_above_ours_is_clamped_not_fatal() {
    let mut f = Fixture::new();
    let cur = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let cur_hard = cur.maximum.unwrap_or(u64::MAX);
    let mut spec = f.sh("ulimit -Hn > /tmp/out");
    let huge = cur_hard.saturating_add(1000).min(1 << 30);
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": huge, "soft": huge}]);
    let (code, out) = run_once(&mut f, "rlim", &spec);
    assert_eq!(code, 0);
    let got: u64 = out.trim().parse().unwrap();
    assert!(got == huge || got == cur_hard, "got {got}, ours {cur_hard}");
}

#[test]
fn exit_codes_reach_the_waiter() {
    let mut f = Fixture::new();
    let spec = f.sh("exit 42");
    assert_eq!(run_once(&mut f, "exit", &spec).0, 42);
    // a signal with a handler reaches pid 1; the handler's exit status is the container's
    let spec = f.sh("trap 'exit 9' USR1; kill -USR1 $$; sleep 5");
    assert_eq!(run_once(&mut f, "sig", &spec).0, 9);
}

#[test]
fn no_host_fds_leak_into_the_container() {
    let mut f = Fixture::new();
    // ls runs as a child of sh; it sees 0-2 plus its own directory fd, nothing else.
    f.write_spec(&f.sh("ls /proc/self/fd > /tmp/out; ls -l /proc/$$/fd >> /tmp/out"));
    let rt = Runtime::new(f.root());
    let id = f.id("fds");
    let st = rt.create(&id, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    rt.start(&id).unwrap();
    assert_eq!(wait_child(st.pid), 0);
    let out = f.read_out("/tmp/out");
    let first: Vec<&str> = out
        .lines()
        .take_while(|l| !l.starts_with("total"))
        .collect();
    assert!(first.len() <= 4, "unexpected fds in container: {out}");
    assert!(!out.contains("berth"), "{out}");
    rt.delete(&id, false).unwrap();
}

#[test]
fn namespaces_are_new_and_pid_is_one() {
    let mut f = Fixture::new();
    let spec = f.sh(
        "exec > /tmp/out; echo $$; for n in mnt net ipc uts pid; do readlink /proc/self/ns/$n; done",
    );
    let (code, out) = run_once(&mut f, "ns", &spec);
    assert_eq!(code, 0);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"));
    for (line, kind) in lines.zip(["mnt", "net", "ipc", "uts", "pid"]) {
        let host = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        assert_ne!(line, host.to_string_lossy(), "{kind} namespace not new");
    }
}

#[test]
fn user_namespace_maps_ids() {
    let mut f = Fixture::new();
    let mut spec = f.sh("cat /proc/self/uid_map /proc/self/gid_map > /tmp/out; id >> /tmp/out");
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // the rootfs must be usable by the mapped root
    std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(f.rootfs())
        .status()
        .unwrap();
    let (code, out) = run_once(&mut f, "userns", &spec);
    assert_eq!(code, 0, "{out}");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        &words[..6],
        &["0", "100000", "65536", "0", "100000", "65536"],
        "{out}"
    );
    assert!(out.contains("uid=0(root) gid=0(root)"), "{out}");
}

#[test]
fn errors_from_inside_carry_the_reason() {
    let f = Fixture::new();
    let rt = Runtime::new(f.root());
    f.write_spec(&f.spec(&["/bin/nonexistent"]));
    let e = rt.create(&f.id("noexe"), &opts(&f)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "exec /bin/nonexistent: no such file or directory"
    );
    f.write_spec(&f.spec(&["nonexistent-cmd"]));
    let e = rt.create(&f.id("nopath"), &opts(&f)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "exec: \"nonexistent-cmd\": executable file not found in $PATH"
    );
    let mut spec = f.spec(&["true"]);
    spec["process"]["cwd"] = json!("/does/not/exist");
    f.write_spec(&spec);
    let e = rt.create(&f.id("nocwd"), &opts(&f)).unwrap_err();
    assert!(
        e.to_string().contains("/does/not/exist") && e.to_string().contains("no such file"),
        "{e}"
    );
    // nothing left behind by failed creates
    assert!(rt.list().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(f.root()).unwrap().count(), 0);
}

#[test]
fn bad_input_is_rejected_before_anything_runs() {
    let f = Fixture::new();
    let rt = Runtime::new(f.root());
    let mut spec = f.spec(&["true"]);
    spec["process"]["user"]["uid"] = json!("root");
    f.write_spec(&spec);
    let e = rt.create(&f.id("badcfg"), &opts(&f)).unwrap_err();
    assert!(e.to_string().contains("process.user.uid"), "{e}");
    let mut spec = f.spec(&["true"]);
    spec["root"]["path"] = json!("missing-rootfs");
    f.write_spec(&spec);
    let e = rt.create(&f.id("norootfs"), &opts(&f)).unwrap_err();
    assert!(
        e.to_string().contains("root.path") && e.to_string().contains("does not exist"),
        "{e}"
    );
    f.write_spec(&f.spec(&["true"]));
    assert!(matches!(
        rt.create("bad/id", &opts(&f)),
        Err(Error::InvalidId(_))
    ));
    assert!(matches!(
        rt.state(&f.id("unknown")),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        rt.delete(&f.id("unknown"), false),
        Err(Error::NotFound(_))
    ));
    let e = rt.kill(&f.id("unknown"), 9, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("container {} does not exist", f.id("unknown"))
    );
}

#[test]
fn duplicate_id_is_refused() {
    let mut f = Fixture::new();
    let rt = Runtime::new(f.root());
    let id = f.id("dup");
    let st = rt.create(&id, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    let e = rt.create(&id, &opts(&f)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("container with id {id} already exists")
    );
    // the first one is intact
    assert_eq!(rt.state(&id).unwrap().status, Status::Created);
    rt.delete(&id, false).unwrap();
    assert_eq!(wait_child(st.pid), 128 + libc::SIGKILL);
}

#[test]
fn exec_joins_the_running_container() {
    let mut f = Fixture::new();
    let mut spec = f.spec(&["sleep", "60"]);
    spec["hostname"] = json!("exechost");
    f.write_spec(&spec);
    let rt = Runtime::new(f.root());
    let id = f.id("exec");
    let st = rt.create(&id, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    rt.start(&id).unwrap();
    let mut p = rt.spec(&id).unwrap().process().clone().unwrap();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "echo $$ $(hostname) $(id -u) $PWD > /tmp/execout; exit 3".into(),
    ]));
    let mut user = p.user().clone();
    user.set_uid(123);
    p.set_user(user);
    p.set_cwd("/tmp".into());
    let pid = rt
        .exec(
            &id,
            &ExecOptions {
                process: p,
                console_socket: None,
                pid_file: None,
                preserve_fds: 0,
            },
        )
        .unwrap();
    f.pids.push(pid);
    assert_eq!(wait_child(pid), 3);
    let out = f.read_out("/tmp/execout");
    let w: Vec<&str> = out.split_whitespace().collect();
    assert_ne!(w[0], "1");
    assert_eq!(&w[1..], &["exechost", "123", "/tmp"]);
    // exec into a stopped container fails
    rt.kill(&id, libc::SIGKILL, false).unwrap();
    wait_child(st.pid);
    let p = rt.spec(&id).unwrap().process().clone().unwrap();
    let e = rt
        .exec(
            &id,
            &ExecOptions {
                process: p,
                console_socket: None,
                pid_file: None,
                preserve_fds: 0,
            },
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "cannot exec in a stopped container");
    rt.delete(&id, false).unwrap();
}

#[test]
fn pause_and_resume_freeze_the_container() {
    let mut f = Fixture::new();
    f.write_spec(&f.sh("i=0; while true; do i=$((i+1)); echo $i > /tmp/tick; sleep 0.05; done"));
    let rt = Runtime::new(f.root());
    let id = f.id("pause");
    let st = rt.create(&id, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    let e = rt.pause(&id).unwrap_err();
    assert_eq!(e.to_string(), "container not running");
    rt.start(&id).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    rt.pause(&id).unwrap();
    assert_eq!(rt.state(&id).unwrap().status, Status::Paused);
    let a = f.read_out("/tmp/tick");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(a, f.read_out("/tmp/tick"), "container ran while paused");
    rt.resume(&id).unwrap();
    assert_eq!(rt.state(&id).unwrap().status, Status::Running);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_ne!(a, f.read_out("/tmp/tick"), "container did not resume");
    assert!(rt.pids(&id).unwrap().contains(&st.pid));
    rt.delete(&id, true).unwrap();
    assert_eq!(wait_child(st.pid), 128 + libc::SIGKILL);
}

#[test]
fn delete_force_kills_everything() {
    let mut f = Fixture::new();
    f.write_spec(&f.sh("sleep 100 & sleep 100 & sleep 100"));
    let rt = Runtime::new(f.root());
    let id = f.id("force");
    let st = rt.create(&id, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    rt.start(&id).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let pids = rt.pids(&id).unwrap();
    assert!(pids.len() >= 3, "{pids:?}");
    f.pids.extend(pids.iter().copied());
    rt.delete(&id, true).unwrap();
    wait_child(st.pid);
    for p in pids {
        assert!(
            !matches!(
                berth_runtime::state::liveness(p),
                berth_runtime::state::Liveness::Alive(_)
            ),
            "pid {p} survived delete --force"
        );
    }
    assert!(f.leftover_cgroups().is_empty());
}

#[test]
fn terminal_goes_through_the_console_socket() {
    let mut f = Fixture::new();
    let mut spec = f.sh("tty; echo hello-from-tty");
    spec["process"]["terminal"] = json!(true);
    f.write_spec(&spec);
    let sock_path = f.dir().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let rt = Runtime::new(f.root());
    let id = f.id("tty");
    let st = rt
        .create(
            &id,
            &CreateOptions {
                console_socket: Some(sock_path.clone()),
                ..opts(&f)
            },
        )
        .unwrap();
    f.pids.push(st.pid);
    let (conn, _) = listener.accept().unwrap();
    let master = berth_runtime::console::recv_fd(conn.as_fd()).unwrap();
    rt.start(&id).unwrap();
    let mut out = Vec::new();
    let mut file = std::fs::File::from(master);
    use std::io::Read;
    let mut buf = [0u8; 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once the slave side is closed
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if String::from_utf8_lossy(&out).contains("hello-from-tty") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("/dev/pts/0") || text.contains("/dev/console"),
        "{text}"
    );
    assert!(text.contains("hello-from-tty"), "{text}");
    assert_eq!(wait_child(st.pid), 0);
    rt.delete(&id, false).unwrap();
}

#[test]
fn terminal_without_console_socket_is_refused() {
    let f = Fixture::new();
    let mut spec = f.spec(&["true"]);
    spec["process"]["terminal"] = json!(true);
    f.write_spec(&spec);
    let rt = Runtime::new(f.root());
    let e = rt.create(&f.id("nosock"), &opts(&f)).unwrap_err();
    assert!(e.to_string().contains("console socket"), "{e}");
}

#[test]
fn namespaces_are_joined_by_path_and_time_offsets_apply() {
    let mut f = Fixture::new();
    f.write_spec(&f.spec(&["sleep", "60"]));
    let rt = Runtime::new(f.root());
    let first = f.id("first");
    let st = rt.create(&first, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    rt.start(&first).unwrap();
    let mut spec = f.sh(
        "exec > /tmp/out; readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname; \
         cut -d. -f1 /proc/uptime",
    );
    for ns in spec["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "network" || ns["type"] == "uts" {
            let kind = if ns["type"] == "network" {
                "net"
            } else {
                "uts"
            };
            ns["path"] = json!(format!("/proc/{}/ns/{kind}", st.pid));
        }
    }
    spec.as_object_mut().unwrap().remove("hostname");
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    spec["linux"]["timeOffsets"] = json!({"boottime": {"secs": 86400 * 365, "nanosecs": 0}});
    let (code, out) = run_once(&mut f, "second", &spec);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let net = std::fs::read_link(format!("/proc/{}/ns/net", st.pid)).unwrap();
    let uts = std::fs::read_link(format!("/proc/{}/ns/uts", st.pid)).unwrap();
    assert_eq!(lines[0], net.to_string_lossy());
    assert_eq!(lines[1], uts.to_string_lossy());
    assert_eq!(lines[2], "runc", "hostname of the joined uts namespace");
    let uptime: u64 = lines[3].parse().unwrap();
    assert!(
        uptime >= 86400 * 365,
        "boottime offset not applied: {uptime}"
    );
    rt.delete(&first, true).unwrap();
    wait_child(st.pid);
}

#[test]
fn oom_score_adj_is_set() {
    let mut f = Fixture::new();
    let mut spec = f.sh("cat /proc/self/oom_score_adj > /tmp/out");
    spec["process"]["oomScoreAdj"] = json!(500);
    let (code, out) = run_once(&mut f, "oom", &spec);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "500");
}

/// CVE-2024-21626: a cwd reaching a host directory through an inherited fd is refused.
#[test]
fn cwd_outside_the_root_is_refused() {
    let f = Fixture::new();
    // a host directory fd without O_CLOEXEC, as a buggy runtime might leak it
    let host_dir = rustix::fs::open(
        f.dir(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    use std::os::fd::AsRawFd;
    let mut spec = f.spec(&["true"]);
    spec["process"]["cwd"] = json!(format!("/proc/self/fd/{}", host_dir.as_raw_fd()));
    f.write_spec(&spec);
    let rt = Runtime::new(f.root());
    let e = rt.create(&f.id("cwd"), &opts(&f)).unwrap_err();
    assert!(
        e.to_string().contains("outside the container's root"),
        "{e}"
    );
    drop(host_dir);
}

/// CVE-2019-5736: the setup process (the berth binary) waiting in a created container cannot
/// be opened through /proc/<pid>/exe from inside the container.
#[test]
fn runtime_binary_is_not_reachable_from_the_container() {
    let mut f = Fixture::new();
    let rt = Runtime::new(f.root());
    let id = f.id("exe");
    let st = rt.create(&id, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    let mut p = rt.spec(&id).unwrap().process().clone().unwrap();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "exec > /tmp/out 2>&1; (echo x >> /proc/1/exe) && echo WRITABLE; \
         (cat /proc/1/exe > /dev/null) && echo READABLE; readlink /proc/1/exe || echo NOLINK"
            .into(),
    ]));
    let pid = rt
        .exec(
            &id,
            &ExecOptions {
                process: p,
                console_socket: None,
                pid_file: None,
                preserve_fds: 0,
            },
        )
        .unwrap();
    f.pids.push(pid);
    assert_eq!(wait_child(pid), 0);
    let out = f.read_out("/tmp/out");
    assert!(
        !out.contains("WRITABLE") && !out.contains("READABLE"),
        "{out}"
    );
    assert!(out.contains("NOLINK"), "{out}");
    rt.delete(&id, false).unwrap();
    wait_child(st.pid);
}

#[test]
fn hooks_run_at_each_phase_with_the_state() {
    let mut f = Fixture::new();
    let d = f.dir().display().to_string();
    let hook =
        |file: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {file}")]});
    let mut spec = f.spec(&["true"]);
    spec["hooks"] = json!({
        "prestart": [hook(&format!("{d}/prestart.json"))],
        "createRuntime": [hook(&format!("{d}/createRuntime.json"))],
        "createContainer": [hook(&format!("{d}/createContainer.json"))],
        "startContainer": [hook("/tmp/startContainer.json")],
        "poststart": [hook(&format!("{d}/poststart.json"))],
        "poststop": [hook(&format!("{d}/poststop.json"))],
    });
    f.write_spec(&spec);
    let rt = Runtime::new(f.root());
    let id = f.id("hooks");
    let st = rt.create(&id, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    let read = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    };
    for phase in ["prestart", "createRuntime", "createContainer"] {
        let v = read(f.dir().join(format!("{phase}.json")));
        assert_eq!(v["id"], json!(id), "{phase}");
        assert_eq!(v["pid"], json!(st.pid), "{phase}");
        assert_eq!(v["status"], "creating", "{phase}");
    }
    assert!(!f.dir().join("poststart.json").exists());
    rt.start(&id).unwrap();
    assert_eq!(wait_child(st.pid), 0);
    assert_eq!(read(f.dir().join("poststart.json"))["status"], "running");
    assert_eq!(
        read(f.rootfs().join("tmp/startContainer.json"))["id"],
        json!(id)
    );
    rt.delete(&id, false).unwrap();
    let v = read(f.dir().join("poststop.json"));
    assert_eq!(v["status"], "stopped");
}

#[test]
fn exec_with_a_terminal_sends_the_pty() {
    let mut f = Fixture::new();
    f.write_spec(&f.spec(&["sleep", "60"]));
    let rt = Runtime::new(f.root());
    let id = f.id("exectty");
    let st = rt.create(&id, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    rt.start(&id).unwrap();
    let sock_path = f.dir().join("exec-console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let mut p = rt.spec(&id).unwrap().process().clone().unwrap();
    p.set_terminal(Some(true));
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "tty; echo exec-tty-ok".into(),
    ]));
    let pid = rt
        .exec(
            &id,
            &ExecOptions {
                process: p,
                console_socket: Some(sock_path),
                pid_file: None,
                preserve_fds: 0,
            },
        )
        .unwrap();
    f.pids.push(pid);
    let (conn, _) = listener.accept().unwrap();
    let master = berth_runtime::console::recv_fd(conn.as_fd()).unwrap();
    let mut file = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    use std::io::Read;
    while !String::from_utf8_lossy(&out).contains("exec-tty-ok") {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("exec-tty-ok"), "{text}");
    assert_eq!(wait_child(pid), 0);
    rt.delete(&id, true).unwrap();
    wait_child(st.pid);
}

#[test]
fn failing_prestart_hook_fails_create_and_cleans_up() {
    let f = Fixture::new();
    let mut spec = f.spec(&["true"]);
    spec["hooks"] =
        json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}]});
    f.write_spec(&spec);
    let rt = Runtime::new(f.root());
    let e = rt.create(&f.id("badhook"), &opts(&f)).unwrap_err();
    assert!(e.to_string().contains("prestart"), "{e}");
    assert!(rt.list().unwrap().is_empty());
    assert!(f.leftover_cgroups().is_empty());
}

#[test]
fn no_pivot_runs_in_the_rootfs() {
    let mut f = Fixture::new();
    f.write_spec(&f.sh("ls / > /tmp/out; cat /proc/self/cgroup >> /tmp/out"));
    let rt = Runtime::new(f.root());
    let id = f.id("nopivot");
    let st = rt
        .create(
            &id,
            &CreateOptions {
                no_pivot: true,
                ..opts(&f)
            },
        )
        .unwrap();
    f.pids.push(st.pid);
    rt.start(&id).unwrap();
    assert_eq!(wait_child(st.pid), 0);
    let out = f.read_out("/tmp/out");
    assert!(
        out.lines().any(|l| l == "bin") && !out.contains("work\n"),
        "{out}"
    );
    rt.delete(&id, false).unwrap();
}

#[test]
fn kill_all_reaches_every_process_and_exec_joins_a_user_namespace() {
    let mut f = Fixture::new();
    let mut spec = f.sh("sleep 100 & sleep 100 & exec sleep 100");
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    std::process::Command::new("chown")
        .args(["-R", "200000:200000"])
        .arg(f.rootfs())
        .status()
        .unwrap();
    f.write_spec(&spec);
    let rt = Runtime::new(f.root());
    let id = f.id("killall");
    let st = rt.create(&id, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    rt.start(&id).unwrap();
    let mut p = rt.spec(&id).unwrap().process().clone().unwrap();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "cat /proc/self/uid_map > /tmp/exec-uidmap".into(),
    ]));
    let pid = rt
        .exec(
            &id,
            &ExecOptions {
                process: p,
                console_socket: None,
                pid_file: None,
                preserve_fds: 0,
            },
        )
        .unwrap();
    f.pids.push(pid);
    assert_eq!(wait_child(pid), 0);
    let map: Vec<String> = f
        .read_out("/tmp/exec-uidmap")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(map, ["0", "200000", "65536"]);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let pids = rt.pids(&id).unwrap();
    assert_eq!(pids.len(), 3, "{pids:?}");
    f.pids.extend(pids.iter().copied());
    rt.kill(&id, libc::SIGKILL, true).unwrap();
    assert_eq!(wait_child(st.pid), 128 + libc::SIGKILL);
    for _ in 0..100 {
        if rt.pids(&id).unwrap().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(rt.pids(&id).unwrap().is_empty());
    rt.delete(&id, false).unwrap();
}

#[test]
fn seccomp_filter_applies_to_the_process() {
    let mut f = Fixture::new();
    let mut spec = f.sh("mkdir /tmp/blocked 2> /tmp/out; echo rc=$? >> /tmp/out; grep Seccomp: /proc/self/status >> /tmp/out");
    spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let (code, out) = run_once(&mut f, "seccomp", &spec);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(!f.rootfs().join("tmp/blocked").exists());
    // the compiled program was cached under the root, which lists no container for it
    assert!(f.root().join(".seccomp-cache").is_dir());
    assert!(Runtime::new(f.root()).list().unwrap().is_empty());
}

/// SCMP_ACT_NOTIFY: the notify fd reaches the agent at listenerPath with the container's
/// state, and the agent's answer is what the container's syscall returns.
#[test]
fn seccomp_notify_fd_reaches_the_listener() {
    let mut f = Fixture::new();
    let sock = f.dir().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut spec = f.sh("mkdir /tmp/notified 2> /tmp/out; echo rc=$? >> /tmp/out");
    spec["process"]["noNewPrivileges"] = json!(true);
    spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "berth-agent",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    f.write_spec(&spec);
    let rt = Runtime::new(f.root());
    let id = f.id("notify");
    let st = rt.create(&id, &opts(&f)).unwrap();
    f.pids.push(st.pid);
    // create connected while we were not accepting; the message waits in the socket
    let (conn, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 16384];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        &conn,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut cmsg,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap();
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    assert_eq!(fds.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&buf[..msg.bytes]).unwrap();
    assert_eq!(v["pid"], json!(st.pid));
    assert_eq!(v["metadata"], "berth-agent");
    assert_eq!(v["state"]["id"], json!(id));
    rt.start(&id).unwrap();
    use std::os::fd::AsRawFd;
    let raw = fds[0].as_raw_fd();
    let req = libseccomp::ScmpNotifReq::receive(raw).unwrap();
    assert!(req.data.syscall.get_name().unwrap().starts_with("mkdir"));
    libseccomp::ScmpNotifResp::new_error(
        req.id,
        -libc::EXDEV,
        libseccomp::ScmpNotifRespFlags::empty(),
    )
    .respond(raw)
    .unwrap();
    assert_eq!(wait_child(st.pid), 0);
    let out = f.read_out("/tmp/out");
    assert!(out.contains("rc=1"), "{out}");
    assert!(out.to_lowercase().contains("cross-device"), "{out}");
    rt.delete(&id, false).unwrap();
}
