//! Real cgroups on the host (root required). Every test works below its own
//! `/berthtest-<pid>-<rand>` parent, removed by a drop guard even on failure.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_cgroups::devices;
use berth_cgroups::oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimitBuilder,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};
use berth_cgroups::{detect, CgroupError, FreezerState, Layout, Manager};

fn unique() -> String {
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").expect("read uuid");
    format!("berthtest-{}-{}", std::process::id(), &uuid[..8])
}

/// Removes a test's whole cgroup subtree (killing leftovers) on drop.
struct Parent {
    name: String,
    mgr: Manager,
}

impl Parent {
    fn new() -> Self {
        let name = unique();
        let mgr = Manager::new(Some(&format!("/{name}")), "parent").expect("parent manager");
        Parent { name, mgr }
    }
    fn child(&self, id: &str) -> Manager {
        Manager::new(Some(&format!("/{}/{id}", self.name)), id).expect("manager")
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        if let Err(e) = self.mgr.kill_and_destroy() {
            eprintln!("cleanup of {}: {e}", self.name);
        }
    }
}

/// A child process killed and reaped on drop. It waits for a line on stdin before running
/// `script`, so that it can be moved into a cgroup first.
struct Child(std::process::Child);

impl Child {
    fn spawn(script: &str) -> Self {
        let c = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read _go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn /bin/sh");
        Child(c)
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    fn go(&mut self) {
        let stdin = self.0.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("write go");
        stdin.flush().expect("flush");
    }
    /// Read one line of the child's stdout.
    fn line(&mut self) -> String {
        use std::io::Read;
        let out = self.0.stdout.as_mut().expect("stdout");
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while out.read(&mut b).expect("read child stdout") == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        String::from_utf8_lossy(&line).into_owned()
    }
    fn wait_output(mut self) -> (std::process::ExitStatus, String) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.0.try_wait().expect("try_wait") {
                let mut out = String::new();
                if let Some(mut o) = self.0.stdout.take() {
                    std::io::Read::read_to_string(&mut o, &mut out).ok();
                }
                if let Some(mut e) = self.0.stderr.take() {
                    std::io::Read::read_to_string(&mut e, &mut out).ok();
                }
                return (st, out);
            }
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn dir_of(m: &Manager, ctrl: &str) -> PathBuf {
    m.v1_dir(ctrl)
        .or_else(|| m.v2_dir())
        .unwrap_or_else(|| panic!("no hierarchy for {ctrl}"))
        .to_path_buf()
}

fn dev_rule(
    allow: bool,
    t: Option<LinuxDeviceType>,
    maj: Option<i64>,
    min: Option<i64>,
    acc: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow);
    d.set_typ(t);
    d.set_major(maj);
    d.set_minor(min);
    d.set_access(Some(acc.into()));
    d
}

const MIB: i64 = 1024 * 1024;

#[test]
fn lifecycle_limits_freeze_stats_destroy() {
    let parent = Parent::new();
    let m = parent.child("c1");
    assert!(!m.exists());
    m.create().expect("create");
    assert!(m.exists());
    for h in m.paths() {
        assert!(h.dir.is_dir(), "{} missing", h.dir.display());
    }
    // re-exec after the move, so that its memory is charged to the new cgroup
    let mut child = Child::spawn("exec /bin/busybox sh -c 'echo ready; exec sleep 30'");
    m.add_task(child.pid()).expect("add_task");
    child.go();
    assert_eq!(child.line(), "ready");

    let mut unified = HashMap::new();
    if detect().unwrap() != Layout::V1 {
        unified.insert("cgroup.max.descendants".to_string(), "7".to_string());
    }
    let r: LinuxResources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 * MIB)
                .reservation(32 * MIB)
                .swap(128 * MIB)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(50).build().unwrap())
        .unified(unified)
        .build()
        .unwrap();
    m.apply(&r).expect("apply");

    match m.v1_dir("memory") {
        Some(d) => {
            assert_eq!(
                read(&d.join("memory.limit_in_bytes")),
                (64 * MIB).to_string()
            );
            assert_eq!(
                read(&d.join("memory.soft_limit_in_bytes")),
                (32 * MIB).to_string()
            );
            if d.join("memory.memsw.limit_in_bytes").exists() {
                assert_eq!(
                    read(&d.join("memory.memsw.limit_in_bytes")),
                    (128 * MIB).to_string()
                );
            }
        }
        None => {
            let d = m.v2_dir().unwrap();
            assert_eq!(read(&d.join("memory.max")), (64 * MIB).to_string());
            assert_eq!(read(&d.join("memory.swap.max")), (64 * MIB).to_string());
        }
    }
    match m.v1_dir("cpu") {
        Some(d) => {
            assert_eq!(read(&d.join("cpu.shares")), "512");
            assert_eq!(read(&d.join("cpu.cfs_quota_us")), "50000");
            assert_eq!(read(&d.join("cpu.cfs_period_us")), "100000");
        }
        None => {
            let d = m.v2_dir().unwrap();
            assert_eq!(read(&d.join("cpu.weight")), "20");
            assert_eq!(read(&d.join("cpu.max")), "50000 100000");
        }
    }
    let cs = dir_of(&m, "cpuset");
    if m.v1_dir("cpuset").is_some() {
        // the new parent got its cpus/mems from the root, or the kernel would refuse tasks
        let parent_dir = cs.parent().unwrap();
        assert!(!read(&parent_dir.join("cpuset.cpus")).is_empty());
        assert!(!read(&parent_dir.join("cpuset.mems")).is_empty());
    }
    assert_eq!(read(&cs.join("cpuset.cpus")), "0");
    assert_eq!(read(&cs.join("cpuset.mems")), "0");
    assert_eq!(read(&dir_of(&m, "pids").join("pids.max")), "50");
    if let Some(d) = m.v2_dir() {
        assert_eq!(read(&d.join("cgroup.max.descendants")), "7");
    }

    // the kernel sees the process in every hierarchy
    let own = read(Path::new(&format!("/proc/{}/cgroup", child.pid())));
    for line in own.lines() {
        assert!(line.ends_with(&format!("/{}/c1", parent.name)), "{line}");
    }
    assert_eq!(m.pids().unwrap(), vec![child.pid()]);

    m.freeze().expect("freeze");
    assert_eq!(m.state(), FreezerState::Frozen);
    if let Some(d) = m.v1_dir("freezer") {
        assert_eq!(read(&d.join("freezer.state")), "FROZEN");
    }
    m.thaw().expect("thaw");
    assert_eq!(m.state(), FreezerState::Thawed);

    let st = m.stats().expect("stats");
    assert_eq!(st.pids.current, 1);
    assert_eq!(st.pids.limit, 50);
    assert_eq!(st.memory.usage.limit, 64 * MIB as u64);
    assert!(st.memory.usage.usage > 0, "{st:?}");
    assert!(!st.memory.raw.is_empty());
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["pids"]["current"], 1);

    // a later process rebuilds the same manager from (path, id) or from JSON
    let again = parent.child("c1");
    assert_eq!(again, m);
    let via_json: Manager = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(via_json, m);

    // destroy while the process lives: busy; kill_and_destroy clears it
    assert!(matches!(m.destroy(), Err(CgroupError::Busy { .. })));
    m.kill_and_destroy().expect("kill_and_destroy");
    let (st, _) = child.wait_output();
    assert!(!st.success());
    for h in m.paths() {
        assert!(!h.dir.exists(), "{} left behind", h.dir.display());
    }
    assert!(!m.exists());
    m.destroy().expect("destroy is idempotent");
}

#[test]
fn oom_kill_is_counted() {
    let parent = Parent::new();
    let m = parent.child("oom");
    m.create().unwrap();
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(16 * MIB)
                .swap(16 * MIB)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.apply(&r).unwrap();
    assert_eq!(m.oom_kill_count().unwrap(), 0);
    let mut watcher = m.oom_watcher().expect("oom watcher");
    assert_eq!(
        watcher.wait(Some(Duration::from_millis(20))).unwrap(),
        Some(0)
    );
    let mut child = Child::spawn("exec /bin/busybox tail /dev/zero");
    m.add_task(child.pid()).unwrap();
    child.go();
    let (st, _) = child.wait_output();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9), "{st:?}");
    assert!(m.oom_kill_count().unwrap() >= 1);
    let n = watcher.wait(Some(Duration::from_secs(5))).unwrap();
    assert!(n.is_some_and(|n| n >= 1), "{n:?}");
    m.destroy().unwrap();
    // v1 signals the eventfd on removal; v2 reports the cgroup gone
    let mut gone = None;
    for _ in 0..3 {
        gone = Some(watcher.wait(Some(Duration::from_millis(100))).unwrap());
        if gone == Some(None) {
            break;
        }
    }
    assert_eq!(gone, Some(None));
}

#[test]
fn devices_rules_are_enforced() {
    let parent = Parent::new();
    let m = parent.child("dev");
    m.create().unwrap();
    // deny all, allow /dev/null only
    let r = LinuxResourcesBuilder::default()
        .devices(vec![
            dev_rule(false, None, None, None, "rwm"),
            dev_rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rw"),
        ])
        .build()
        .unwrap();
    m.apply(&r).unwrap();
    if let Some(d) = m.v1_dir("devices") {
        assert_eq!(read(&d.join("devices.list")), "c 1:3 rw");
    }
    let mut child = Child::spawn(
        "echo x > /dev/null && echo null-ok; head -c1 /dev/zero >/dev/null 2>&1 && echo zero-ok; exit 0",
    );
    m.add_task(child.pid()).unwrap();
    child.go();
    let (_, out) = child.wait_output();
    assert!(out.contains("null-ok"), "{out}");
    assert!(!out.contains("zero-ok"), "{out}");
    m.destroy().unwrap();
}

/// The v2 device filter on the host's cgroup2 mount (the unified hierarchy of hybrid hosts
/// too): load the generated program into the kernel, attach it, check the effect, replace it.
#[test]
fn bpf_device_filter_on_cgroup2() {
    let parent = Parent::new();
    let m = parent.child("bpf");
    m.create().unwrap();
    let dir = m
        .v2_dir()
        .expect("this test needs a cgroup2 mount")
        .to_path_buf();
    let p = devices::policy(&[
        dev_rule(false, None, None, None, "rwm"),
        dev_rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rw"),
    ])
    .unwrap();
    devices::attach_v2(&dir, &p).expect("attach");
    let check = || {
        let mut child = Child::spawn(
            "echo x > /dev/null && echo null-ok; head -c1 /dev/zero >/dev/null 2>&1 && echo zero-ok; exit 0",
        );
        // only the unified hierarchy: the v1 devices controller (if any) stays allow-all
        fs::write(dir.join("cgroup.procs"), child.pid().to_string()).unwrap();
        child.go();
        child.wait_output().1
    };
    let out = check();
    assert!(out.contains("null-ok") && !out.contains("zero-ok"), "{out}");
    // replacing: allow /dev/zero too; the old program must be gone
    let p2 = devices::policy(&[
        dev_rule(false, None, None, None, "rwm"),
        dev_rule(true, Some(LinuxDeviceType::C), Some(1), None, "rw"),
    ])
    .unwrap();
    devices::attach_v2(&dir, &p2).expect("re-attach");
    let out = check();
    assert!(out.contains("null-ok") && out.contains("zero-ok"), "{out}");
    m.destroy().unwrap();
}

/// The cgroup2 code paths (freeze through cgroup.freeze, cgroup.kill, cpu.stat) on the host's
/// cgroup2 mount alone, whatever the layout.
#[test]
fn unified_only_freeze_kill_stats() {
    let parent = Parent::new();
    let m = parent.child("v2").restrict(|h| h.version == 2);
    assert_eq!(m.paths().len(), 1, "this test needs a cgroup2 mount");
    m.create().unwrap();
    let mut child =
        Child::spawn("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo ready; exec sleep 30");
    m.add_task(child.pid()).unwrap();
    child.go();
    assert_eq!(child.line(), "ready");
    assert_eq!(m.pids().unwrap(), vec![child.pid()]);
    m.freeze().unwrap();
    assert_eq!(m.state(), FreezerState::Frozen);
    let ev = read(&m.v2_dir().unwrap().join("cgroup.events"));
    assert!(ev.contains("frozen 1"), "{ev}");
    m.thaw().unwrap();
    assert_eq!(m.state(), FreezerState::Thawed);
    let st = m.stats().unwrap();
    assert!(st.cpu.usage.total > 0, "{st:?}");
    m.kill_all(9).unwrap();
    let (st, _) = child.wait_output();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9));
    m.destroy().unwrap();
    assert!(!m.paths()[0].dir.exists());
}

#[test]
fn errors_name_the_file() {
    let parent = Parent::new();
    let m = parent.child("err");
    m.create().unwrap();
    let r = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("4095").build().unwrap())
        .build()
        .unwrap();
    let e = m.apply(&r).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("write 4095 to /"), "{msg}");
    assert!(msg.contains("cpuset.cpus: "), "{msg}");
    assert!(!msg.contains("os error"), "{msg}");
    assert_eq!(e.kind(), berth_core::ErrorKind::InvalidInput);

    let mut u = HashMap::new();
    u.insert("../memory.max".to_string(), "1".to_string());
    let r = LinuxResourcesBuilder::default().unified(u).build().unwrap();
    assert!(matches!(m.apply(&r), Err(CgroupError::Invalid { .. })));
    m.destroy().unwrap();
}

#[test]
fn hugetlb_limits() {
    let sizes: Vec<String> = fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if !sizes.iter().any(|s| s == "hugepages-2048kB") {
        panic!("this test needs 2MB huge pages (/sys/kernel/mm/hugepages/hugepages-2048kB)");
    }
    let parent = Parent::new();
    let m = parent.child("huge");
    m.create().unwrap();
    let r = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4 * MIB)
            .build()
            .unwrap()])
        .build()
        .unwrap();
    m.apply(&r).expect("apply hugetlb");
    let (dir, file) = match m.v1_dir("hugetlb") {
        Some(d) => (d.to_path_buf(), "hugetlb.2MB.limit_in_bytes"),
        None => (m.v2_dir().unwrap().to_path_buf(), "hugetlb.2MB.max"),
    };
    assert_eq!(read(&dir.join(file)), (4 * MIB).to_string());
    assert!(m.stats().unwrap().hugetlb.contains_key("2MB"));
    m.destroy().unwrap();
}

#[test]
fn relative_path_is_below_own_cgroup() {
    // computes paths only: nothing is created below the caller's own cgroups
    let m = Manager::new(Some("berthtest-rel/x"), "x").unwrap();
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    for h in m.paths() {
        assert!(h.dir.ends_with("berthtest-rel/x"), "{}", h.dir.display());
        let line = own
            .lines()
            .find(|l| {
                let f: Vec<&str> = l.splitn(3, ':').collect();
                let mut c: Vec<&str> = f[1].split(',').filter(|s| !s.is_empty()).collect();
                c.sort();
                (h.version == 2 && f[0] == "0")
                    || (h.version == 1 && c.join(",") == h.controllers.join(","))
            })
            .unwrap();
        let cg = line.splitn(3, ':').nth(2).unwrap();
        let expect = h
            .mount_point
            .join(cg.trim_start_matches('/'))
            .join("berthtest-rel/x");
        assert_eq!(h.dir, expect);
    }
}

/// Leak check: no `berthtest-<pid>-...` cgroup whose test process is gone.
#[test]
fn zz_no_berthtest_cgroups_left() {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts = berth_cgroups::mountinfo::parse_mountinfo(&text).unwrap();
    let mut leaks = Vec::new();
    for mnt in mounts {
        for e in fs::read_dir(&mnt.mount_point).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = n.strip_prefix("berthtest-") else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or_default();
            if !Path::new(&format!("/proc/{pid}")).exists() {
                leaks.push(e.path());
            }
        }
    }
    assert!(leaks.is_empty(), "leaked cgroups: {leaks:?}");
}
