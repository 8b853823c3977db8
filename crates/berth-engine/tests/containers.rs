//! Containers end to end: a real `berth daemon` process per test (temp data root, exec root and
//! socket), a busybox image made in code, driven by the real docker CLI 28.
//!
//! The daemon runs as the `berth` binary (its shims are `berth shim` processes, and the live
//! restore test kills it with SIGKILL). The binary is built with cargo when it is missing or
//! older than this test. The test process is a child subreaper, so shims orphaned by a killed
//! daemon are re-parented here and reaped on cleanup.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn berth_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/containers-xxxx -> target/debug/berth
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("berth");
    // Build once per test binary: a stamp records the test binary's mtime after a build
    // (cargo leaves an up-to-date binary's mtime alone).
    let exe_mtime = std::fs::metadata(&exe)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos().to_string())
        .unwrap_or_default();
    let stamp = dir.join(".berthtest-berth-built");
    let lock = std::fs::File::create(dir.join(".berthtest-build.lock")).expect("lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(exe_mtime.as_str()) || !bin.exists()
    {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "berth", "--bin", "berth"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .status()
            .expect("run cargo build -p berth");
        assert!(st.success(), "cargo build -p berth failed");
        std::fs::write(&stamp, &exe_mtime).expect("write stamp");
    }
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

fn have_docker() -> bool {
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

/// A rootfs tar: /bin/busybox with every applet linked, /etc/passwd and /etc/group.
fn busybox_tar() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (install busybox-static)");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    let mut b = tar::Builder::new(Vec::new());
    let mut entry =
        |name: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            match link {
                Some(l) => b.append_link(&mut h, name, l).expect("link"),
                None => b.append_data(&mut h, name, data).expect("entry"),
            }
        };
    for d in ["bin/", "etc/", "tmp/", "root/"] {
        entry(d, tar::EntryType::Directory, 0o755, &[], None);
    }
    entry("bin/busybox", tar::EntryType::Regular, 0o755, &bb, None);
    entry(
        "etc/passwd",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        None,
    );
    entry(
        "etc/group",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n",
        None,
    );
    entry(
        "etc/notexec",
        tar::EntryType::Regular,
        0o644,
        b"data\n",
        None,
    );
    for a in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if a != "busybox" {
            entry(
                &format!("bin/{a}"),
                tar::EntryType::Symlink,
                0o777,
                &[],
                Some("busybox"),
            );
        }
    }
    b.into_inner().expect("tar")
}

/// A `berth daemon` process on temp roots; everything it made is removed on drop.
struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    fn start() -> Daemon {
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
        // short paths: unix socket paths are limited to 108 bytes
        let dir = tempfile::Builder::new()
            .prefix("berthtest")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let mut d = Daemon { dir, child: None };
        d.spawn();
        d.docker_ok_stdin(&["import", "-", "busybox:latest"], &busybox_tar());
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("log");
        let child = Command::new(berth_bin())
            .arg("daemon")
            .arg("--data-root")
            .arg(self.dir.path().join("data"))
            .arg("--exec-root")
            .arg(self.dir.path().join("x"))
            .arg("-H")
            .arg(self.host())
            .arg("--log-level")
            .arg("debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn berth daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.sock()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not listen; log:\n{}", self.log());
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("d.sock")
    }

    fn host(&self) -> String {
        format!("unix://{}", self.sock().display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(self.host())
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null());
        c
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run docker")
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({:?}): {}\nstdout: {}\ndaemon log tail:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn docker_ok_stdin(&self, args: &[&str], input: &[u8]) -> String {
        use std::io::Write;
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut ch = c.spawn().expect("spawn docker");
        ch.stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        let o = ch.wait_with_output().expect("wait docker");
        assert!(
            o.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.docker_ok(&["inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
        v[0].clone()
    }

    fn daemon_pid(&self) -> i32 {
        self.child.as_ref().expect("daemon").id() as i32
    }

    /// SIGKILL the daemon (containers and shims keep running).
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Pids of the live shims of this daemon (from their pid files).
    fn shim_pids(&self) -> Vec<i32> {
        let mut v = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.dir.path().join("x/c")) else {
            return v;
        };
        for e in rd.flatten() {
            if let Some(pid) = std::fs::read_to_string(e.path().join("shim.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let zombie = stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
                if !zombie
                    && String::from_utf8_lossy(&cmdline).contains(&*e.path().to_string_lossy())
                {
                    v.push(pid);
                }
            }
        }
        v
    }
}

fn tail(s: &str, n: usize) -> String {
    let l: Vec<&str> = s.lines().collect();
    l[l.len().saturating_sub(n)..].join("\n")
}

fn reap_children() {
    while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            // remove every container (kills them, unmounts, removes snapshots)
            let ids = self.docker(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        // shims left over (a failed test, a killed daemon): kill their containers and them
        let ids: Vec<String> = std::fs::read_dir(self.dir.path().join("x/c"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for id in &ids {
            if let Ok(cg) = berth_cgroups::Manager::new(Some(&format!("/berth/{id}")), id) {
                let _ = cg.kill_and_destroy();
            }
        }
        for pid in self.shim_pids() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("pid"),
                rustix::process::Signal::KILL,
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(c.id() as i32).expect("pid"),
                rustix::process::Signal::TERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(Duration::from_millis(100));
        reap_children();
        unmount_under(self.dir.path());
        for id in &ids {
            if let Ok(cg) = berth_cgroups::Manager::new(Some(&format!("/berth/{id}")), id) {
                let _ = cg.kill_and_destroy();
            }
        }
    }
}

fn unmount_under(root: &Path) {
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

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0))
}

#[test]
fn run_rm_echo_hello() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    let o = d.docker(&["run", "--rm", "busybox", "echo", "hello"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(code(&o), 0);
    // --rm removed it
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
    // stderr goes to stderr
    let o = d.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // default network mode: a private network namespace with only loopback, up
    let o = d.docker_ok(&["run", "--rm", "busybox", "ip", "-o", "link"]);
    assert_eq!(o.lines().count(), 1, "{o}");
    assert!(o.contains("lo: <LOOPBACK,UP"), "{o}");
}

#[test]
fn run_exit_codes() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    assert_eq!(
        code(&d.docker(&["run", "--rm", "busybox", "sh", "-c", "exit 3"])),
        3
    );
    let o = d.docker(&["run", "--rm", "busybox", "berthtest-nonexistent"]);
    assert_eq!(code(&o), 127, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("executable file not found"));
    let o = d.docker(&["run", "--rm", "busybox", "/etc/notexec"]);
    assert_eq!(code(&o), 126, "{}", String::from_utf8_lossy(&o.stderr));
    // failed --rm containers are removed too
    wait_until("failed containers removed", Duration::from_secs(10), || {
        d.docker_ok(&["ps", "-aq"]).trim().is_empty()
    });
    // without --rm the exit code stays in inspect
    d.docker(&[
        "run",
        "--name",
        "berthtest-e",
        "busybox",
        "sh",
        "-c",
        "exit 42",
    ]);
    let v = d.inspect("berthtest-e");
    assert_eq!(v["State"]["ExitCode"], 42);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(d.docker_ok(&["wait", "berthtest-e"]).trim(), "42");
}

#[test]
fn detached_ps_logs_exec_stop_rm() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    let id = d.docker_ok(&[
        "run", "-d", "--name", "berthtest-web", "busybox", "sh", "-c",
        "trap 'echo bye; exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let ps = d.docker_ok(&["ps", "--format", "{{.ID}} {{.Names}} {{.Status}}"]);
    assert!(
        ps.contains(&format!("{} berthtest-web Up", &id[..12])),
        "{ps}"
    );
    wait_until("logs", Duration::from_secs(10), || {
        d.docker_ok(&["logs", "berthtest-web"]).contains("line 3\n")
    });
    let logs = d.docker_ok(&["logs", "--tail", "2", "berthtest-web"]);
    assert_eq!(logs.lines().count(), 2, "{logs}");
    let ts = d.docker_ok(&["logs", "-t", "--tail", "1", "berthtest-web"]);
    assert!(ts.starts_with("20") && ts.contains("Z line "), "{ts}");
    // exec with output and exit code
    let o = d.docker(&["exec", "berthtest-web", "sh", "-c", "echo in-exec; exit 5"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "in-exec\n");
    assert_eq!(code(&o), 5);
    let o = d.docker(&["exec", "berthtest-web", "berthtest-nonexistent"]);
    assert_eq!(code(&o), 127, "{:?}", o);
    // logs -f follows until the container stops
    let mut f = d.cmd(&["logs", "-f", "--tail", "0", "berthtest-web"]);
    f.stdout(Stdio::piped());
    let follower = f.spawn().expect("logs -f");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    d.docker_ok(&["stop", "berthtest-web"]);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "TERM handled, no 10 s wait"
    );
    let out = follower
        .wait_with_output()
        .expect("logs -f ends when the container stops");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("line ") && s.ends_with("bye\n"), "{s}");
    assert_eq!(d.docker_ok(&["wait", "berthtest-web"]).trim(), "0");
    let ps = d.docker_ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(ps.starts_with("Exited (0)"), "{ps}");
    // rm of a running container needs -f
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "berthtest-sl",
        "busybox",
        "sleep",
        "100",
    ]);
    let o = d.docker(&["rm", "berthtest-sl"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("stop the container before removing"));
    d.docker_ok(&["rm", "-f", "berthtest-sl"]);
    d.docker_ok(&["rm", "berthtest-web"]);
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
    // the rootfs snapshots are gone
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*d.dir.path().to_string_lossy()),
        "no mounts left"
    );
}

#[test]
fn run_interactive_stdin() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    let out = d.docker_ok_stdin(
        &["run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done"],
        b"piped line 1\npiped line 2\n",
    );
    assert_eq!(out, "piped line 1\npiped line 2\ndone\n");
    let out = d.docker_ok_stdin(
        &["run", "--rm", "-i", "busybox", "wc", "-c"],
        &vec![b'x'; 300_000],
    );
    assert_eq!(out.trim(), "300000");
}

#[test]
fn run_tty() {
    if !have_docker() {
        return;
    }
    if Command::new("script").arg("--version").output().is_err() {
        panic!("script(1) from util-linux is required for the tty test");
    }
    let d = Daemon::start();
    let cmd = format!(
        "stty rows 30 cols 100; DOCKER_CONFIG={} docker -H {} run --rm -t busybox sh -c 'tty; stty size; echo tty-ok'",
        d.dir.path().join("docker-config").display(),
        d.host()
    );
    let o = Command::new("script")
        .args(["-qc", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("/dev/pts/0"), "{s}");
    assert!(s.contains("30 100"), "console size from ConsoleSize: {s}");
    assert!(s.contains("tty-ok\r"), "tty output has \\r\\n: {s:?}");
}

#[test]
fn kill_pause_rename_inspect_top_stats() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "berthtest-k",
        "--label",
        "berthtest=1",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got hup' HUP; while true; do sleep 0.1; done",
    ]);
    d.docker_ok(&["kill", "-s", "HUP", "berthtest-k"]);
    wait_until("HUP handled", Duration::from_secs(10), || {
        d.docker_ok(&["logs", "berthtest-k"]).contains("got hup")
    });
    d.docker_ok(&["pause", "berthtest-k"]);
    let st = d.docker_ok(&[
        "ps",
        "--format",
        "{{.Status}}",
        "--filter",
        "name=berthtest-k",
    ]);
    assert!(st.contains("(Paused)"), "{st}");
    assert_eq!(d.inspect("berthtest-k")["State"]["Paused"], true);
    let o = d.docker(&["exec", "berthtest-k", "true"]);
    assert!(!o.status.success(), "no exec in a paused container");
    d.docker_ok(&["unpause", "berthtest-k"]);
    d.docker_ok(&["rename", "berthtest-k", "berthtest-k2"]);
    let v = d.inspect("berthtest-k2");
    assert_eq!(v["Name"], "/berthtest-k2");
    assert_eq!(v["State"]["Running"], true);
    assert!(v["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(v["Config"]["Labels"]["berthtest"], "1");
    assert!(v["Config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("FOO=bar")));
    assert_eq!(v["Config"]["WorkingDir"], "/tmp");
    assert_eq!(v["Path"], "sh");
    assert!(v["HostConfig"].get("Memory").is_some());
    assert!(v["LogPath"].as_str().unwrap().ends_with("-json.log"));
    // label and status filters
    let f = d.docker_ok(&[
        "ps",
        "-q",
        "--filter",
        "label=berthtest=1",
        "--filter",
        "status=running",
    ]);
    assert_eq!(f.trim().len(), 12);
    let env = d.docker_ok(&[
        "exec",
        "berthtest-k2",
        "sh",
        "-c",
        "echo $FOO $(pwd) $(hostname)",
    ]);
    assert_eq!(
        env.trim(),
        format!("bar /tmp {}", &v["Id"].as_str().unwrap()[..12])
    );
    let top = d.docker_ok(&["top", "berthtest-k2"]);
    assert!(top.contains("PID") && top.contains("sh -c trap"), "{top}");
    let stats = d.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}} {{.MemUsage}}",
        "berthtest-k2",
    ]);
    assert!(stats.starts_with("berthtest-k2 "), "{stats}");
    let pids: u32 = stats.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(pids >= 1, "{stats}");
    d.docker_ok(&["kill", "berthtest-k2"]);
    assert_eq!(d.docker_ok(&["wait", "berthtest-k2"]).trim(), "137");
}

#[test]
fn diff_and_export() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    d.docker_ok(&[
        "run",
        "--name",
        "berthtest-fs",
        "busybox",
        "sh",
        "-c",
        "echo new > /tmp/added; rm /etc/group; echo x >> /etc/passwd",
    ]);
    let diff = d.docker_ok(&["diff", "berthtest-fs"]);
    assert!(diff.contains("A /tmp/added"), "{diff}");
    assert!(diff.contains("D /etc/group"), "{diff}");
    assert!(diff.contains("C /etc/passwd"), "{diff}");
    let out = d.dir.path().join("export.tar");
    d.docker_ok(&["export", "-o", out.to_str().unwrap(), "berthtest-fs"]);
    let f = std::fs::File::open(&out).unwrap();
    let mut ar = tar::Archive::new(f);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("tmp/added")), "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with("bin/busybox")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with("etc/group")), "{names:?}");
}

#[test]
fn cp_in_and_out() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "berthtest-cp",
        "busybox",
        "sleep",
        "100",
    ]);
    let local = d.dir.path().join("local");
    std::fs::create_dir_all(local.join("sub")).unwrap();
    std::fs::write(local.join("sub/file.txt"), "from host\n").unwrap();
    // into a running container
    d.docker_ok(&[
        "cp",
        local.join("sub").to_str().unwrap(),
        "berthtest-cp:/tmp/",
    ]);
    assert_eq!(
        d.docker_ok(&["exec", "berthtest-cp", "cat", "/tmp/sub/file.txt"]),
        "from host\n"
    );
    // out of it
    let out = d.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    d.docker_ok(&["cp", "berthtest-cp:/etc/passwd", out.to_str().unwrap()]);
    assert!(std::fs::read_to_string(out.join("passwd"))
        .unwrap()
        .starts_with("root:x:0:0"));
    d.docker_ok(&["cp", "berthtest-cp:/tmp/sub", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out.join("sub/file.txt")).unwrap(),
        "from host\n"
    );
    // a symlink inside the container pointing at / does not reach the host
    d.docker_ok(&["exec", "berthtest-cp", "ln", "-s", "/", "/tmp/up"]);
    let o = d.docker(&[
        "cp",
        "berthtest-cp:/tmp/up/etc/passwd",
        out.join("p2").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(std::fs::read_to_string(out.join("p2"))
        .unwrap()
        .starts_with("root:x:0:0:root:/root:/bin/sh\nnobody"));
    let o = d.docker(&["cp", "berthtest-cp:/nonexistent", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Could not find the file /nonexistent"),
        "{o:?}"
    );
    // a stopped container
    d.docker_ok(&["stop", "-t", "0", "berthtest-cp"]);
    d.docker_ok(&[
        "cp",
        "berthtest-cp:/tmp/sub/file.txt",
        out.join("f3").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("f3")).unwrap(),
        "from host\n"
    );
}

#[test]
fn restart_policy_on_failure() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "berthtest-r",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    wait_until("two restarts then exited", Duration::from_secs(20), || {
        let v = d.inspect("berthtest-r");
        v["RestartCount"] == 2 && v["State"]["Status"] == "exited"
    });
    std::thread::sleep(Duration::from_millis(600));
    let v = d.inspect("berthtest-r");
    assert_eq!(v["RestartCount"], 2);
    assert_eq!(v["State"]["ExitCode"], 1);
    assert_eq!(d.docker_ok(&["logs", "berthtest-r"]), "run\nrun\nrun\n");
}

#[test]
fn live_restore_after_kill9() {
    if !have_docker() {
        return;
    }
    let mut d = Daemon::start();
    d.docker_ok(&[
        "run", "-d", "--name", "berthtest-lr", "busybox", "sh", "-c",
        "trap 'echo term; exit 7' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "berthtest-short",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 4",
    ]);
    let shims_before = d.shim_pids();
    assert_eq!(shims_before.len(), 2, "one shim per container");
    let old = d.daemon_pid();
    d.kill9();
    // the containers outlive the daemon; the short one exits while it is down
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        Path::new(&format!("/proc/{}", shims_before[0])).exists()
            || Path::new(&format!("/proc/{}", shims_before[1])).exists()
    );
    d.spawn();
    assert_ne!(d.daemon_pid(), old);
    let v = d.inspect("berthtest-lr");
    assert_eq!(v["State"]["Running"], true, "{v}");
    let v = d.inspect("berthtest-short");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(
        v["State"]["ExitCode"], 4,
        "exit while the daemon was down recorded"
    );
    assert_eq!(
        d.docker_ok(&["exec", "berthtest-lr", "echo", "exec-ok"]),
        "exec-ok\n"
    );
    let mut f = d.cmd(&["logs", "-f", "--tail", "1", "berthtest-lr"]);
    f.stdout(Stdio::piped());
    let follower = f.spawn().expect("logs -f");
    std::thread::sleep(Duration::from_millis(400));
    d.docker_ok(&["stop", "berthtest-lr"]);
    let out = follower.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("tick") && s.ends_with("term\n"), "{s}");
    assert_eq!(d.docker_ok(&["wait", "berthtest-lr"]).trim(), "7");
    wait_until("shims exit", Duration::from_secs(10), || {
        d.shim_pids().is_empty()
    });
}

#[test]
fn measure_run_time_and_shim_pss() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    d.docker_ok(&["run", "--rm", "busybox", "true"]);
    let mut times = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        d.docker_ok(&["run", "--rm", "busybox", "true"]);
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "docker run --rm busybox true against berth: median {:?} (min {:?}, max {:?})",
        times[5], times[0], times[9]
    );
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "berthtest-pss",
        "busybox",
        "sleep",
        "100",
    ]);
    let pids = d.shim_pids();
    assert_eq!(pids.len(), 1);
    let roll = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", pids[0])).unwrap();
    let pss: u64 = roll
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    eprintln!("shim PSS with a running container: {pss} kB");
    assert!(pss > 0 && pss < 64 * 1024, "{pss} kB");
    assert!(times[5] < Duration::from_secs(3));
}

#[test]
fn names_generated_unique_and_conflicts() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    for _ in 0..40 {
        d.docker_ok(&["create", "busybox", "true"]);
    }
    let names = d.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    let mut v: Vec<&str> = names.lines().collect();
    assert_eq!(v.len(), 40);
    v.sort();
    v.dedup();
    assert_eq!(v.len(), 40, "generated names are unique");
    d.docker_ok(&["create", "--name", "berthtest-n", "busybox", "true"]);
    let o = d.docker(&["create", "--name", "berthtest-n", "busybox", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is already in use"),
        "{o:?}"
    );
    let o = d.docker(&["create", "--name", "-bad", "busybox", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Invalid container name"),
        "{o:?}"
    );
    let o = d.docker(&["rename", "berthtest-n", v[0]]);
    assert!(!o.status.success());
    // a missing image is a 404 the CLI reports (it then tries to pull)
    let o = d.docker(&["create", "--pull", "never", "berthtest-noimage"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such image: berthtest-noimage:latest"),
        "{o:?}"
    );
    d.docker_ok(&["container", "prune", "-f"]);
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn host_config_limits_and_mounts() {
    if !have_docker() {
        return;
    }
    let d = Daemon::start();
    let src = d.dir.path().join("bindsrc");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "bound\n").unwrap();
    let bind = format!("{}:/b:ro", src.display());
    let out = d.docker_ok(&[
        "run", "--rm", "--memory", "64m", "--pids-limit", "20", "--cap-drop", "ALL", "--cap-add", "CHOWN",
        "--read-only", "--tmpfs", "/scratch:size=1m", "-v", &bind, "-v", "berthtest-vol:/v", "--user", "65534:65534",
        "--security-opt", "no-new-privileges", "busybox", "sh", "-c",
        "id; cat /b/f; touch /x 2>&1; echo t > /scratch/t && echo tmpfs-ok; echo v > /v/f 2>&1; \
         grep -E 'NoNewPrivs|Seccomp:' /proc/self/status; \
         cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    ]);
    assert!(
        out.contains("uid=65534(nobody) gid=65534(nogroup)"),
        "{out}"
    );
    assert!(out.contains("bound\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("tmpfs-ok"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(
        out.contains("Seccomp:\t2"),
        "Docker's default profile: {out}"
    );
    assert!(out.contains("67108864"), "{out}");
    assert!(out.contains("\n20\n"), "{out}");
    // the named volume was created and is usable by root
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "berthtest-vol:/v",
        "busybox",
        "sh",
        "-c",
        "echo kept > /v/k",
    ]);
    assert_eq!(
        d.docker_ok(&[
            "run",
            "--rm",
            "-v",
            "berthtest-vol:/v",
            "busybox",
            "cat",
            "/v/k"
        ]),
        "kept\n"
    );
    let o = d.docker_ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert!(o.contains("Seccomp:\t0"), "{o}");
    d.docker_ok(&["volume", "rm", "berthtest-vol"]);
    // a new volume gets the image's content at its mount point (binds do not)
    let o = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "berthtest-etc:/etc",
        "busybox",
        "ls",
        "/etc",
    ]);
    assert!(o.contains("passwd") && o.contains("group"), "{o}");
    let o = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "berthtest-etc:/x",
        "busybox",
        "cat",
        "/x/passwd",
    ]);
    assert!(o.starts_with("root:x:0:0"), "{o}");
    d.docker_ok(&["volume", "rm", "berthtest-etc"]);
    // --device and --group-add
    let o = d.docker_ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/zero:/dev/berthtest-zero",
        "--group-add",
        "1234",
        "busybox",
        "sh",
        "-c",
        "head -c 3 /dev/berthtest-zero | od -An -tx1; id -G",
    ]);
    assert!(o.contains("00 00 00"), "{o}");
    assert!(o.contains("1234"), "{o}");
}
