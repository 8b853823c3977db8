//! Shared fixture for runtime tests: a busybox bundle in its own temp dir, a private runtime
//! root, unique container ids, and a leak check on drop (no mounts under the temp dir, no
//! cgroups named after the test's ids, no container process left).
//!
//! Used by crates/berth-runtime/tests/*.rs and, through `#[path]`, by
//! crates/berth/tests/runtime_cli.rs.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// A test bundle plus runtime root.
pub struct Fixture {
    dir: Option<tempfile::TempDir>,
    /// Unique suffix of this test's names.
    pub suffix: String,
    /// Pids of container processes the test started (checked to be gone on drop).
    pub pids: Vec<i32>,
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Build a busybox rootfs at `rootfs`: /bin/busybox, one symlink per applet, and the usual
/// empty directories.
pub fn build_rootfs(rootfs: &Path) {
    assert!(
        Path::new("/bin/busybox").exists(),
        "runtime tests need /bin/busybox (apt-get install busybox-static)"
    );
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root", "home"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    let out = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let link = rootfs.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

impl Fixture {
    /// A new bundle with a busybox rootfs and a spec running `sh -c true`.
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("berthtest-rt-")
            .tempdir()
            .expect("temp dir");
        build_rootfs(&dir.path().join("bundle/rootfs"));
        let f = Fixture {
            dir: Some(dir),
            suffix: random_suffix(),
            pids: Vec::new(),
        };
        f.write_spec(&f.spec(&["true"]));
        f
    }

    /// The temp dir of this test.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// The runtime root (`--root`).
    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    /// The bundle directory.
    pub fn bundle(&self) -> PathBuf {
        self.dir().join("bundle")
    }

    /// The rootfs directory.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }

    /// A unique container id.
    pub fn id(&self, name: &str) -> String {
        format!("berthtest-{}-{name}", self.suffix)
    }

    /// runc's default spec, adjusted for tests: no terminal, writable root, `args`.
    pub fn spec(&self, args: &[&str]) -> Value {
        let mut v = berth_runtime::features::default_spec(false, 0, 0);
        v["process"]["terminal"] = json!(false);
        v["process"]["args"] = json!(args);
        v["root"]["readonly"] = json!(false);
        v
    }

    /// A spec running `sh -c script`.
    pub fn sh(&self, script: &str) -> Value {
        self.spec(&["sh", "-c", script])
    }

    /// Write config.json.
    pub fn write_spec(&self, v: &Value) {
        fs::write(
            self.bundle().join("config.json"),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }

    /// Read a file the container wrote into its rootfs (e.g. `/out`).
    pub fn read_out(&self, path: &str) -> String {
        fs::read_to_string(self.rootfs().join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("container output {path}: {e}"))
    }

    /// Mount points under this test's dir.
    pub fn mounts_under_dir(&self) -> Vec<String> {
        let dir = self.dir().to_string_lossy().into_owned();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&dir))
            .collect()
    }

    /// Cgroup directories named after this test's ids.
    pub fn leftover_cgroups(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
        while let Some((d, depth)) = stack.pop() {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    continue;
                }
                let p = e.path();
                if e.file_name().to_string_lossy().contains(&self.suffix) {
                    out.push(p);
                } else if depth < 4 {
                    stack.push((p, depth + 1));
                }
            }
        }
        out
    }

    /// Pids from `self.pids` still alive (not zombies).
    pub fn live_pids(&self) -> Vec<i32> {
        self.pids
            .iter()
            .copied()
            .filter(|&p| {
                matches!(
                    berth_runtime::state::liveness(p),
                    berth_runtime::state::Liveness::Alive(_)
                )
            })
            .collect()
    }

    /// Force-delete every container under the root, then check for leaks.
    pub fn cleanup_and_check(&mut self) -> Vec<String> {
        let rt = berth_runtime::Runtime::new(self.root());
        if let Ok(list) = rt.list() {
            for s in list {
                let _ = rt.delete(&s.id, true);
            }
        }
        for &p in &self.pids {
            let _ = berth_sys::process::kill(p, libc::SIGKILL);
            if let Some(pid) = rustix::process::Pid::from_raw(p) {
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
            }
        }
        let mut leaks = Vec::new();
        for m in self.mounts_under_dir() {
            leaks.push(format!("mount {m}"));
        }
        for c in self.leftover_cgroups() {
            let _ = fs::remove_dir(&c);
            leaks.push(format!("cgroup {}", c.display()));
        }
        for p in self.live_pids() {
            leaks.push(format!("process {p}"));
        }
        self.pids.clear();
        leaks
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let leaks = self.cleanup_and_check();
        for m in self.mounts_under_dir() {
            let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
        if !leaks.is_empty() && !std::thread::panicking() {
            panic!("test left things behind: {leaks:?}");
        }
    }
}

/// Wait for a child pid and return its shell-style exit code.
pub fn wait_child(pid: i32) -> i32 {
    let p = rustix::process::Pid::from_raw(pid).expect("pid");
    loop {
        match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, st))) => return berth_runtime::exit_code(st),
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("waitpid {pid}: {e}"),
        }
    }
}
