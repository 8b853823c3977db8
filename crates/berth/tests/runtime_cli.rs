//! `berth runtime` (runc's command line) end to end, with the same bundle driven through runc
//! where runc is installed to compare behaviour.

#[path = "../../berth-runtime/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{wait_child, Fixture};
use serde_json::{json, Value};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// Container inits orphaned by `create` come back to the test process, which reaps them.
fn subreaper() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
}

/// `berth runtime --root <root> args...` with stdio not captured (a created container keeps
/// its stdio open), returning (exit code, stderr).
fn berth_quiet(root: &Path, args: &[&str]) -> (i32, String) {
    let err = tempfile::NamedTempFile::new().unwrap();
    let st = Command::new(BERTH)
        .arg("runtime")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap())
        .status()
        .unwrap();
    (
        st.code().unwrap_or(-1),
        std::fs::read_to_string(err.path()).unwrap(),
    )
}

/// The same, capturing stdout (only for commands whose containers do not outlive them).
fn berth(root: &Path, args: &[&str]) -> Output {
    Command::new(BERTH)
        .arg("runtime")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn runc_available() -> bool {
    match Command::new("runc").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("runc not installed: skipping the comparison with runc");
            false
        }
    }
}

struct Trace {
    codes: Vec<i32>,
    state_created: Value,
    state_running: Value,
    state_stopped: Value,
    pid_file_matches: bool,
}

/// create/start/state/kill/delete through `cmd` (berth runtime or runc).
fn lifecycle(f: &mut Fixture, cmd: &[&str], root: &Path, id: &str) -> Trace {
    let run = |args: &[&str], capture: bool| -> (i32, String) {
        let mut c = Command::new(cmd[0]);
        c.args(&cmd[1..]).arg("--root").arg(root).args(args);
        c.stdin(Stdio::null()).stderr(Stdio::null());
        if capture {
            let o = c.output().unwrap();
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        } else {
            c.stdout(Stdio::null());
            (c.status().unwrap().code().unwrap_or(-1), String::new())
        }
    };
    let pid_file = f.dir().join(format!("{id}.pid"));
    let bundle = f.bundle();
    let mut codes = Vec::new();
    let (c, _) = run(
        &[
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            id,
        ],
        false,
    );
    codes.push(c);
    let (c, out) = run(&["state", id], true);
    codes.push(c);
    let state_created: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let pid = state_created["pid"].as_i64().unwrap_or(0) as i32;
    f.pids.push(pid);
    let pid_file_matches = std::fs::read_to_string(&pid_file).ok() == Some(pid.to_string());
    let (c, _) = run(&["start", id], false);
    codes.push(c);
    codes.push(run(&["start", id], false).0); // second start fails
    let (_, out) = run(&["state", id], true);
    let state_running: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    codes.push(run(&["delete", id], false).0); // running: refused
    codes.push(run(&["kill", id, "KILL"], false).0);
    if pid > 0 {
        wait_child(pid);
    }
    let (_, out) = run(&["state", id], true);
    let state_stopped: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    codes.push(run(&["kill", id, "SIGTERM"], false).0); // stopped: error
    codes.push(run(&["delete", id], false).0);
    codes.push(run(&["state", id], false).0); // gone: error
    Trace {
        codes,
        state_created,
        state_running,
        state_stopped,
        pid_file_matches,
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[test]
fn cli_lifecycle_matches_runc() {
    subreaper();
    let mut f = Fixture::new();
    let mut spec = f.spec(&["sleep", "60"]);
    // runc wants an absolute, symlink-free rootfs path when given one; relative is fine for both
    spec["root"]["path"] = json!("rootfs");
    f.write_spec(&spec);
    let root = f.root();
    let id = f.id("cli");
    let b = lifecycle(&mut f, &[BERTH, "runtime"], &root, &id);
    assert_eq!(b.codes, vec![0, 0, 0, 1, 1, 0, 1, 0, 1], "berth exit codes");
    assert!(b.pid_file_matches);
    assert_eq!(b.state_created["status"], "created");
    assert_eq!(b.state_running["status"], "running");
    assert_eq!(b.state_stopped["status"], "stopped");
    assert_eq!(b.state_stopped["pid"], 0);
    assert_eq!(b.state_created["id"], json!(id));
    assert_eq!(b.state_created["bundle"], json!(f.bundle()));
    if runc_available() {
        let runc_root = f.dir().join("runc-root");
        let rid = f.id("runc");
        let r = lifecycle(&mut f, &["runc"], &runc_root, &rid);
        assert_eq!(b.codes, r.codes, "exit codes berth vs runc");
        assert!(r.pid_file_matches);
        for (bs, rs) in [
            (&b.state_created, &r.state_created),
            (&b.state_running, &r.state_running),
            (&b.state_stopped, &r.state_stopped),
        ] {
            assert_eq!(keys(bs), keys(rs), "state JSON fields berth vs runc");
            assert_eq!(bs["status"], rs["status"]);
            assert_eq!(bs["bundle"], rs["bundle"]);
            assert_eq!(bs["pid"] == json!(0), rs["pid"] == json!(0));
        }
    }
}

#[test]
fn cli_run_foreground_returns_status_and_output() {
    subreaper();
    let f = Fixture::new();
    f.write_spec(&f.sh("echo out-line; echo err-line >&2; exit 3"));
    let o = berth(
        &f.root(),
        &["run", "-b", f.bundle().to_str().unwrap(), &f.id("fg")],
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out-line\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err-line\n");
    // not kept: state is gone
    assert_eq!(berth_quiet(&f.root(), &["state", &f.id("fg")]).0, 1);
    // the init killed by a signal: 128 + signal
    f.write_spec(&f.sh("echo ready; exec sleep 60"));
    let id = f.id("sig");
    let mut child = Command::new(BERTH)
        .arg("runtime")
        .arg("--root")
        .arg(f.root())
        .args(["run", "-b", f.bundle().to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    use std::io::Read;
    out.read_exact(&mut buf).unwrap();
    assert_eq!(berth_quiet(&f.root(), &["kill", &id, "SIGKILL"]).0, 0);
    assert_eq!(child.wait().unwrap().code(), Some(137));
}

#[test]
fn cli_run_forwards_signals() {
    subreaper();
    let f = Fixture::new();
    f.write_spec(
        &f.sh("trap 'echo got-term; exit 5' TERM; echo ready; while true; do sleep 0.05; done"),
    );
    let mut child = Command::new(BERTH)
        .arg("runtime")
        .arg("--root")
        .arg(f.root())
        .args(["run", "-b", f.bundle().to_str().unwrap(), &f.id("fwd")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    use std::io::Read;
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    berth_sys::process::kill(child.id() as i32, libc::SIGTERM).unwrap();
    let st = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(st.code(), Some(5));
}

#[test]
fn cli_errors_are_reported_with_exit_1_and_logged() {
    subreaper();
    let f = Fixture::new();
    let log = f.dir().join("log.json");
    let o = Command::new(BERTH)
        .args(["runtime", "--root"])
        .arg(f.root())
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "nonexistent-berthtest"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("container nonexistent-berthtest does not exist"));
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("does not exist"));
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    let o = berth(&f.root(), &["--systemd-cgroup", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("systemd cgroup driver is not supported"));
    // duplicate id
    f.write_spec(&f.spec(&["sleep", "60"]));
    let id = f.id("dup");
    let b = f.bundle();
    assert_eq!(
        berth_quiet(&f.root(), &["create", "-b", b.to_str().unwrap(), &id]).0,
        0
    );
    let (code, err) = berth_quiet(&f.root(), &["create", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("container with id {id} already exists")),
        "{err}"
    );
    assert_eq!(berth_quiet(&f.root(), &["kill", &id, "NOSUCHSIG"]).0, 1);
    assert_eq!(berth_quiet(&f.root(), &["delete", &id]).0, 0);
    // bad config names the field
    let mut spec = f.spec(&["true"]);
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": "many", "soft": 1}]);
    f.write_spec(&spec);
    let (code, err) = berth_quiet(
        &f.root(),
        &["create", "-b", b.to_str().unwrap(), &f.id("bad")],
    );
    assert_eq!(code, 1);
    assert!(err.contains("process.rlimits[0].hard"), "{err}");
}

#[test]
fn cli_exec_list_ps_pause() {
    subreaper();
    let mut f = Fixture::new();
    f.write_spec(&f.spec(&["sleep", "60"]));
    let root = f.root();
    let id = f.id("ex");
    let b = f.bundle();
    assert_eq!(
        berth_quiet(&root, &["run", "-d", "-b", b.to_str().unwrap(), &id]).0,
        0
    );
    let st: Value = serde_json::from_slice(&berth(&root, &["state", &id]).stdout).unwrap();
    f.pids.push(st["pid"].as_i64().unwrap() as i32);
    let o = berth(
        &root,
        &[
            "exec",
            "-e",
            "FOO=bar",
            "--cwd",
            "/tmp",
            "--user",
            "7:8",
            &id,
            "sh",
            "-c",
            "echo $FOO $PWD $(id -u):$(id -g); exit 4",
        ],
    );
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "bar /tmp 7:8\n");
    let o = berth(&root, &["list", "--format", "json"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["id"], json!(id));
    assert_eq!(list[0]["status"], "running");
    let o = berth(&root, &["list"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("ID "), "{text}");
    assert!(text.contains(&id) && text.contains("running"), "{text}");
    let o = berth(&root, &["ps", "--format", "json", &id]);
    let pids: Vec<i32> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(pids, vec![st["pid"].as_i64().unwrap() as i32]);
    let o = berth(&root, &["ps", &id]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("sleep 60"), "{text}");
    assert_eq!(berth_quiet(&root, &["pause", &id]).0, 0);
    let st2: Value = serde_json::from_slice(&berth(&root, &["state", &id]).stdout).unwrap();
    assert_eq!(st2["status"], "paused");
    assert_eq!(berth_quiet(&root, &["resume", &id]).0, 0);
    let o = berth(&root, &["events", "--stats", &id]);
    let ev: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ev["type"], "stats");
    assert!(
        ev["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{ev}"
    );
    assert_eq!(berth_quiet(&root, &["kill", &id, "9"]).0, 0);
    wait_child(st["pid"].as_i64().unwrap() as i32);
    assert_eq!(berth_quiet(&root, &["delete", &id]).0, 0);
}

#[test]
fn cli_features_spec_and_argv0() {
    let f = Fixture::new();
    let o = berth(&f.root(), &["features"]);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ociVersionMax"], "1.2.0");
    assert!(v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("time")));
    let dir = f.dir().join("specdir");
    std::fs::create_dir(&dir).unwrap();
    let o = berth(&f.root(), &["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(o.status.success());
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], json!(["sh"]));
    assert_eq!(spec["hostname"], "runc");
    let o = berth(&f.root(), &["spec", "--bundle", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let link = f.dir().join("berth-runc");
    std::os::unix::fs::symlink(BERTH, &link).unwrap();
    let o = Command::new(&link)
        .arg("--root")
        .arg(f.root())
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
}

#[test]
fn cli_preserve_fds_and_listen_fds_reach_the_container() {
    subreaper();
    let f = Fixture::new();
    std::fs::write(f.dir().join("three"), "fd-three").unwrap();
    std::fs::write(f.dir().join("four"), "fd-four").unwrap();
    f.write_spec(&f.sh("cat /proc/self/fd/3; echo; cat /proc/self/fd/4; echo; echo $LISTEN_FDS $LISTEN_PID; ls /proc/self/fd | wc -l"));
    // the shell opens fds 3 and 4 without close-on-exec, as systemd or a caller would
    let script = format!(
        "exec 3<{d}/three 4<{d}/four; LISTEN_FDS=1 LISTEN_PID=$$ exec {BERTH} runtime --root {r} run --preserve-fds 1 -b {b} {id}",
        d = f.dir().display(),
        r = f.root().display(),
        b = f.bundle().display(),
        id = f.id("fds"),
    );
    let o = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "fd-three");
    assert_eq!(lines[1], "fd-four");
    assert_eq!(lines[2], "1 1");
    // 0 1 2 3 4 and ls's own directory fd: nothing else leaked
    assert_eq!(lines[3].trim(), "6", "{out}");
}

#[test]
fn cli_run_with_terminal_proxies_the_pty() {
    subreaper();
    let f = Fixture::new();
    let mut spec = f.sh("tty; read x; echo got:$x; exit 6");
    spec["process"]["terminal"] = json!(true);
    f.write_spec(&spec);
    let mut child = Command::new(BERTH)
        .arg("runtime")
        .arg("--root")
        .arg(f.root())
        .args(["run", "-b", f.bundle().to_str().unwrap(), &f.id("tty")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/dev/pts/0\r\n"), "{out:?}");
    assert!(out.contains("got:hello\r\n"), "{out:?}");
    assert_eq!(o.status.code(), Some(6));
}

#[test]
fn cli_exec_process_file_detached_with_pid_file() {
    subreaper();
    let mut f = Fixture::new();
    f.write_spec(&f.spec(&["sleep", "60"]));
    let root = f.root();
    let id = f.id("pf");
    let b = f.bundle();
    let pid_file = f.dir().join("init.pid");
    assert_eq!(
        berth_quiet(
            &root,
            &[
                "run",
                "-d",
                "--pid-file",
                pid_file.to_str().unwrap(),
                "-b",
                b.to_str().unwrap(),
                &id
            ]
        )
        .0,
        0
    );
    let init: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    f.pids.push(init);
    let process = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo from-process-file > /tmp/pf; sleep 0.2"],
        "env": ["PATH=/bin"],
        "cwd": "/",
    });
    let pfile = f.dir().join("process.json");
    std::fs::write(&pfile, process.to_string()).unwrap();
    let exec_pid_file = f.dir().join("exec.pid");
    let (code, err) = berth_quiet(
        &root,
        &[
            "exec",
            "-d",
            "--pid-file",
            exec_pid_file.to_str().unwrap(),
            "--process",
            pfile.to_str().unwrap(),
            &id,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let epid: i32 = std::fs::read_to_string(&exec_pid_file)
        .unwrap()
        .parse()
        .unwrap();
    f.pids.push(epid);
    assert_eq!(wait_child(epid), 0);
    assert_eq!(f.read_out("/tmp/pf"), "from-process-file\n");
    assert_eq!(berth_quiet(&root, &["delete", "-f", &id]).0, 0);
    wait_child(init);
}
