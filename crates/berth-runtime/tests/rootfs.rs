//! Integration tests of `berth_runtime::rootfs`: real mounts in a private mount namespace.
//!
//! Each test builds a busybox bundle in a temp dir, then re-executes this test binary under
//! `unshare -m` (plus `-n` when the spec has a network namespace) running only
//! [`zz_child_entry`], which calls `prepare_rootfs`/`finalize_rootfs` and checks the result
//! from inside the new root. The mount namespace dies with the child; the temp dir is removed
//! by its guard.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime::oci_spec::runtime::Spec;
use berth_runtime::rootfs::{finalize_rootfs, prepare_rootfs, setup_console, RootfsOptions};
use serde_json::json;

const CHILD_ENV: &str = "BERTH_ROOTFS_CHILD";

struct Bundle {
    dir: tempfile::TempDir,
}

/// Leak check: everything was mounted in the child's namespace, so the host must not see a
/// single mount under the bundle.
impl Drop for Bundle {
    fn drop(&mut self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let leaked: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split(' ').nth(4).is_some_and(|mp| mp.starts_with(&dir)))
            .map(str::to_string)
            .collect();
        if !std::thread::panicking() {
            assert!(leaked.is_empty(), "mounts leaked to the host: {leaked:#?}");
        }
    }
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berthtest-rootfs-")
            .tempdir()
            .expect("temp dir");
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        assert!(
            Path::new("/bin/busybox").exists(),
            "these tests need /bin/busybox (apt-get install busybox-static)"
        );
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        fs::write(rootfs.join("etc/marker"), "in-rootfs").unwrap();
        Bundle { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn write_spec(&self, spec: &serde_json::Value) {
        fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(spec).unwrap(),
        )
        .unwrap();
    }

    /// Run `scenario` in a child under `unshare <unshare_args>`; returns (success, output).
    fn run(&self, scenario: &str, unshare_args: &[&str]) -> (bool, String) {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("unshare")
            .args(unshare_args)
            .arg(exe)
            .args([
                "--exact",
                "zz_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, scenario)
            .env("BERTH_ROOTFS_BUNDLE", self.path())
            .output()
            .expect("run unshare (util-linux)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

fn base_spec() -> serde_json::Value {
    json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "process": {"cwd": "/", "args": ["/bin/sh"], "user": {"uid": 0, "gid": 0}},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"}
        ],
        "linux": {"namespaces": [{"type": "mount"}]}
    })
}

// ---------------------------------------------------------------------------------------------
// child side

/// One line of /proc/self/mountinfo: (root, mount point, per-mount options, fstype, super opts).
fn mountinfo() -> Vec<(String, String, String, String, String)> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .map(|l| {
            let (pre, post) = l.split_once(" - ").unwrap();
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            (
                pre[3].to_string(),
                pre[4].to_string(),
                pre[5].to_string(),
                post[0].to_string(),
                post[2].to_string(),
            )
        })
        .collect()
}

/// The visible (last) mount at `mp`.
fn mount_at(mp: &str) -> (String, String, String, String, String) {
    mountinfo()
        .into_iter()
        .rev()
        .find(|m| m.1 == mp)
        .unwrap_or_else(|| panic!("no mount at {mp}:\n{:#?}", mountinfo()))
}

fn has_opt(opts: &str, o: &str) -> bool {
    opts.split(',').any(|x| x == o)
}

fn errno_of(r: std::io::Result<()>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn load_spec(bundle: &Path) -> Spec {
    serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

/// Entry point of the re-executed child; does nothing in a normal test run.
#[test]
fn zz_child_entry() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else {
        return;
    };
    let bundle = PathBuf::from(std::env::var("BERTH_ROOTFS_BUNDLE").unwrap());
    let spec = load_spec(&bundle);
    match scenario.as_str() {
        "full" => child_full(&spec, &bundle),
        "escape" => child_escape(&spec, &bundle),
        "nopivot" => child_nopivot(&spec, &bundle),
        "error" => child_error(&spec, &bundle),
        "userns" => child_userns(&spec, &bundle),
        "shared" => child_shared(&spec, &bundle),
        "badnull" => child_badnull(&spec, &bundle),
        "unbindable" => {
            prepare_rootfs(&spec, &bundle, &RootfsOptions::default()).expect("prepare_rootfs");
            for mp in ["/", "/proc", "/dev"] {
                let line = raw_mountinfo_line(mp);
                assert!(line.contains(" unbindable "), "{line}");
            }
        }
        "cgroup2" => child_cgroup2(&spec, &bundle, false),
        "cgroup2ns" => child_cgroup2(&spec, &bundle, true),
        other => panic!("unknown scenario {other}"),
    }
    println!("CHILD-OK");
}

fn child_full(spec: &Spec, bundle: &Path) {
    let opts = RootfsOptions::default();
    let started = std::time::Instant::now();
    prepare_rootfs(spec, bundle, &opts).expect("prepare_rootfs");
    let console = setup_console().expect("setup_console");
    finalize_rootfs(spec).expect("finalize_rootfs");
    println!(
        "TIMING rootfs setup (14 mounts, 8 devices): {:?}",
        started.elapsed()
    );

    // in the new root
    assert_eq!(std::env::current_dir().unwrap(), Path::new("/"));
    assert_eq!(fs::read_to_string("/etc/marker").unwrap(), "in-rootfs");
    assert!(!Path::new("/config.json").exists());

    // read-only root, writable tmpfs
    let root = mount_at("/");
    assert!(has_opt(&root.2, "ro"), "root {root:?}");
    assert_eq!(errno_of(fs::write("/newfile", "x")), Some(libc::EROFS));
    let tmp = mount_at("/tmp");
    assert_eq!(tmp.3, "tmpfs");
    assert!(
        has_opt(&tmp.2, "nosuid") && has_opt(&tmp.2, "nodev"),
        "{tmp:?}"
    );
    assert!(has_opt(&tmp.4, "size=1024k"), "{tmp:?}");
    assert!(has_opt(&tmp.4, "mode=750"), "{tmp:?}");
    fs::write("/tmp/ok", "x").expect("tmpfs is writable");

    // bind mounts: a read-only directory and a file on a file mount point
    let data = mount_at("/data");
    assert!(
        has_opt(&data.2, "ro") && has_opt(&data.2, "nosuid"),
        "{data:?}"
    );
    assert_eq!(fs::read_to_string("/data/hello").unwrap(), "from-host");
    assert_eq!(errno_of(fs::write("/data/new", "x")), Some(libc::EROFS));
    assert_eq!(fs::read_to_string("/etc/hostfile").unwrap(), "a file");
    assert!(fs::metadata("/etc/hostfile").unwrap().is_file());
    // rro: the submount of the recursive bind is read-only too
    let sub = mount_at("/rro/sub");
    assert!(has_opt(&sub.2, "ro"), "{sub:?}");

    // proc, sysfs (rw: the spec has a network namespace), mqueue
    assert_eq!(mount_at("/proc").3, "proc");
    let sys = mount_at("/sys");
    assert_eq!(sys.3, "sysfs");
    assert!(has_opt(&sys.2, "rw"), "{sys:?}");
    assert_eq!(mount_at("/dev/mqueue").3, "mqueue");

    // default /dev
    let dev = mount_at("/dev");
    assert_eq!(dev.3, "tmpfs");
    assert!(
        has_opt(&dev.2, "nosuid") && has_opt(&dev.4, "mode=755"),
        "{dev:?}"
    );
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let md = fs::symlink_metadata(format!("/dev/{name}")).unwrap();
        assert!(md.file_type().is_char_device(), "/dev/{name}");
        assert_eq!(md.rdev(), libc::makedev(major, minor), "/dev/{name}");
        assert_eq!(md.permissions().mode() & 0o777, 0o666, "/dev/{name}");
    }
    fs::write("/dev/null", "discarded").expect("write /dev/null");
    let custom = fs::symlink_metadata("/dev/berthtest-dev").unwrap();
    assert!(custom.file_type().is_char_device());
    assert_eq!(custom.rdev(), libc::makedev(1, 5));
    assert_eq!(custom.permissions().mode() & 0o777, 0o640);
    assert_eq!((custom.uid(), custom.gid()), (1000, 1001));
    let fifo = fs::symlink_metadata("/dev/sub/fifo").unwrap();
    assert!(fifo.file_type().is_fifo());
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        assert_eq!(
            fs::read_link(format!("/dev/{link}")).unwrap(),
            Path::new(target),
            "/dev/{link}"
        );
    }
    let pts = mount_at("/dev/pts");
    assert_eq!(pts.3, "devpts");
    assert!(
        has_opt(&pts.4, "ptmxmode=666") && has_opt(&pts.4, "mode=620") && has_opt(&pts.4, "gid=5"),
        "{pts:?}"
    );
    let shm = mount_at("/dev/shm");
    assert_eq!(shm.3, "tmpfs");
    assert!(
        has_opt(&shm.2, "noexec") && has_opt(&shm.4, "size=65536k"),
        "{shm:?}"
    );

    // console: a pty of the container's own devpts, bound on /dev/console
    let cons = mount_at("/dev/console");
    assert_eq!(cons.3, "devpts", "{cons:?}");
    let slave_md = fs::metadata("/dev/console").unwrap();
    let mut slave_path = PathBuf::from("/proc/self/fd");
    slave_path.push(std::os::fd::AsRawFd::as_raw_fd(&console.slave).to_string());
    assert_eq!(fs::metadata(&slave_path).unwrap().rdev(), slave_md.rdev());
    assert!(fs::read_link(&slave_path).unwrap().starts_with("/dev/pts/"));

    // cgroups: this machine's hierarchies, each the process's own cgroup, read-only
    let cg = mount_at("/sys/fs/cgroup");
    let host_cg = fs::read_to_string("/proc/self/cgroup").unwrap();
    if cg.3 == "tmpfs" {
        assert!(has_opt(&cg.2, "ro"), "{cg:?}");
        let mem_path = host_cg
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()));
        if let Some(p) = mem_path {
            let mem = mount_at("/sys/fs/cgroup/memory");
            assert_eq!(mem.3, "cgroup");
            assert_eq!(mem.0, p, "{mem:?}");
            assert!(has_opt(&mem.2, "ro"), "{mem:?}");
            assert!(Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists());
        }
    } else {
        assert_eq!(cg.3, "cgroup2");
        assert!(has_opt(&cg.2, "ro"), "{cg:?}");
    }

    // sysctl through /proc/sys (in the child's own network namespace)
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    // readonlyPaths
    assert!(has_opt(&mount_at("/proc/sys").2, "ro"));
    assert_eq!(
        errno_of(fs::write("/proc/sys/net/ipv4/ip_forward", "0")),
        Some(libc::EROFS)
    );
    // maskedPaths: a file masked by /dev/null, a directory by an empty read-only tmpfs
    assert_eq!(fs::read("/proc/timer_list").unwrap().len(), 0);
    let masked_file = fs::metadata("/proc/timer_list").unwrap();
    assert_eq!(masked_file.rdev(), libc::makedev(1, 3));
    let masked = mount_at("/proc/driver");
    assert_eq!(masked.3, "tmpfs");
    assert!(has_opt(&masked.2, "ro"), "{masked:?}");
    assert_eq!(fs::read_dir("/proc/driver").unwrap().count(), 0);
    assert!(!Path::new("/proc/berthtest-missing").exists());
}

fn child_escape(spec: &Spec, bundle: &Path) {
    prepare_rootfs(spec, bundle, &RootfsOptions::default()).expect("prepare_rootfs");
    // the mounts landed inside the rootfs, where the symlinks resolve when the rootfs is /
    let host_outside = std::env::var("BERTH_ROOTFS_OUTSIDE").unwrap();
    let t = mount_at(&format!("{host_outside}/x"));
    assert_eq!(t.3, "tmpfs");
    let b = mount_at(&host_outside);
    assert_eq!(b.3, "tmpfs");
    let d = mount_at("/outside2");
    assert_eq!(d.3, "tmpfs");
}

fn child_nopivot(spec: &Spec, bundle: &Path) {
    // a pty made by the caller (from the host's devpts), handed over as the console
    use rustix::pty::OpenptFlags;
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags).expect("openpt");
    rustix::pty::unlockpt(&master).expect("unlockpt");
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags).expect("pty peer");
    let slave_rdev = rustix::fs::fstat(&slave).unwrap().st_rdev;
    let opts = RootfsOptions {
        no_pivot: true,
        console: Some(slave),
        ..RootfsOptions::default()
    };
    prepare_rootfs(spec, bundle, &opts).expect("prepare_rootfs");
    assert_eq!(fs::metadata("/dev/console").unwrap().rdev(), slave_rdev);
    assert_eq!(mount_at("/dev/console").3, "devpts");
    finalize_rootfs(spec).expect("finalize_rootfs");
    assert_eq!(std::env::current_dir().unwrap(), Path::new("/"));
    assert_eq!(fs::read_to_string("/etc/marker").unwrap(), "in-rootfs");
    assert!(Path::new("/bin/busybox").exists());
    assert_eq!(mount_at("/proc").3, "proc");
    assert!(fs::symlink_metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // the mount at / is the rootfs bind, moved there
    let root = mount_at("/");
    assert!(root.0.ends_with("/rootfs"), "{root:?}");
    // tmpcopyup: the tmpfs on /etc starts with the image's /etc
    assert_eq!(mount_at("/etc").3, "tmpfs");
    let secret = fs::symlink_metadata("/etc/sub/secret").unwrap();
    assert_eq!(secret.permissions().mode() & 0o7777, 0o640);
    assert_eq!((secret.uid(), secret.gid()), (1000, 1001));
    assert_eq!(fs::read_link("/etc/link").unwrap(), Path::new("sub/secret"));
    assert_eq!(fs::read_to_string("/etc/link").unwrap(), "s");
    fs::write("/etc/written", "x").expect("the tmpfs is writable");
    // a read-only file (readonlyPaths)
    assert!(has_opt(&mount_at("/etc/marker").2, "ro"));
    assert_eq!(errno_of(fs::write("/etc/marker", "x")), Some(libc::EROFS));
}

fn child_userns(spec: &Spec, bundle: &Path) {
    let opts = RootfsOptions {
        in_user_ns: true,
        ..RootfsOptions::default()
    };
    prepare_rootfs(spec, bundle, &opts).expect("prepare_rootfs");
    finalize_rootfs(spec).expect("finalize_rootfs");
    assert_eq!(fs::read_to_string("/etc/marker").unwrap(), "in-rootfs");
    // devices are binds of the host's nodes (mknod is refused in a user namespace)
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let p = format!("/dev/{name}");
        let m = mount_at(&p);
        assert_eq!(m.3, "devtmpfs", "{p}: {m:?}");
        assert!(
            fs::metadata(&p).unwrap().file_type().is_char_device(),
            "{p}"
        );
    }
    fs::write("/dev/null", "x").expect("write /dev/null");
    // sysfs without a network namespace of our own: the host's, bound read-only
    let sys = mount_at("/sys");
    assert_eq!(sys.3, "sysfs");
    assert!(has_opt(&sys.2, "ro"), "{sys:?}");
    assert!(Path::new("/sys/kernel").is_dir());
    let data = mount_at("/data");
    assert!(has_opt(&data.2, "ro"), "{data:?}");
    let pts = mount_at("/dev/pts");
    assert!(!has_opt(&pts.4, "gid=5"), "{pts:?}");
    assert!(has_opt(&mount_at("/").2, "ro"));
    assert_eq!(fs::read("/proc/timer_list").unwrap().len(), 0);
    assert!(has_opt(&mount_at("/proc/sys").2, "ro"));
}

/// The raw mountinfo line of the visible mount at `mp` (with its propagation fields).
fn raw_mountinfo_line(mp: &str) -> String {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(mp))
        .unwrap_or_else(|| panic!("no mount at {mp}"))
        .to_string()
}

fn child_shared(spec: &Spec, bundle: &Path) {
    prepare_rootfs(spec, bundle, &RootfsOptions::default()).expect("prepare_rootfs");
    finalize_rootfs(spec).expect("finalize_rootfs");
    let root = raw_mountinfo_line("/");
    assert!(root.contains(" shared:"), "{root}");
    let private = raw_mountinfo_line("/private");
    assert!(!private.contains("shared:"), "{private}");
    let shared = raw_mountinfo_line("/shared");
    assert!(shared.contains(" shared:"), "{shared}");
    let slave = raw_mountinfo_line("/slave");
    assert!(!slave.contains("shared:"), "{slave}");
}

fn child_cgroup2(spec: &Spec, bundle: &Path, cgroupns: bool) {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 line")
        .to_string();
    prepare_rootfs(spec, bundle, &RootfsOptions::default()).expect("prepare_rootfs");
    let cg = mount_at("/sys/fs/cgroup");
    assert_eq!(cg.3, "cgroup2", "{cg:?}");
    assert!(has_opt(&cg.2, "nosuid"), "{cg:?}");
    if cgroupns {
        // a fresh cgroup2 instance rooted at the namespace's root, writable as asked
        assert_eq!(cg.0, "/", "{cg:?}");
        assert!(has_opt(&cg.2, "rw"), "{cg:?}");
    } else {
        // a read-only bind of this process's own cgroup directory
        assert_eq!(cg.0, own, "{cg:?}");
        assert!(has_opt(&cg.2, "ro"), "{cg:?}");
    }
    assert!(Path::new("/sys/fs/cgroup/cgroup.procs").exists());
}

fn child_badnull(spec: &Spec, bundle: &Path) {
    prepare_rootfs(spec, bundle, &RootfsOptions::default()).expect("prepare_rootfs");
    let err = finalize_rootfs(spec).unwrap_err();
    println!("ERROR: {err}");
    // nothing was bound over the masked file with what /dev/null points to
    assert!(
        !mountinfo().iter().any(|m| m.1 == "/proc/timer_list"),
        "{err}"
    );
    assert!(!fs::read("/proc/timer_list").unwrap().is_empty());
}

fn child_error(spec: &Spec, bundle: &Path) {
    let err = prepare_rootfs(spec, bundle, &RootfsOptions::default()).unwrap_err();
    println!("ERROR: {err}");
    println!("KIND: {:?}", err.kind());
}

// ---------------------------------------------------------------------------------------------
// parent side

fn expect_ok(ok: bool, out: &str) {
    assert!(ok && out.contains("CHILD-OK"), "child failed:\n{out}");
    for l in out.lines().filter(|l| l.contains("TIMING")) {
        println!("{l}");
    }
}

#[test]
fn full_spec_in_private_namespace() {
    let b = Bundle::new();
    let host_dir = b.path().join("hostdata");
    fs::create_dir(&host_dir).unwrap();
    fs::write(host_dir.join("hello"), "from-host").unwrap();
    fs::write(b.path().join("hostfile"), "a file").unwrap();
    // an rbind source with a submount, for rro
    let rro = b.path().join("rro");
    fs::create_dir_all(rro.join("sub")).unwrap();
    let mut spec = base_spec();
    spec["root"]["readonly"] = json!(true);
    spec["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=750", "size=1m"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/data", "type": "bind", "source": host_dir, "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/etc/hostfile", "type": "bind", "source": "hostfile", "options": ["bind"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]},
    ]);
    // a recursive read-only bind of a host dir that has a submount (mounted by the child)
    spec["mounts"].as_array_mut().unwrap().push(json!(
        {"destination": "/rro", "type": "bind", "source": rro, "options": ["rbind", "rro"]}
    ));
    spec["linux"] = json!({
        "namespaces": [{"type": "mount"}, {"type": "network"}],
        "devices": [
            {"path": "/dev/berthtest-dev", "type": "c", "major": 1, "minor": 5, "fileMode": 0o640, "uid": 1000, "gid": 1001},
            {"path": "/dev/sub/fifo", "type": "p", "major": 0, "minor": 0}
        ],
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "readonlyPaths": ["/proc/sys"],
        "maskedPaths": ["/proc/kcore", "/proc/timer_list", "/proc/driver", "/proc/berthtest-missing"]
    });
    b.write_spec(&spec);
    let (ok, out) = run_with_setup(
        &b,
        "full",
        &["-m", "-n"],
        "mount -t tmpfs berthtest \"$1\"",
        &rro.join("sub"),
    );
    expect_ok(ok, &out);
}

/// Run `scenario` under `unshare <unshare_args> sh -c '<setup> && exec <this test binary>'`:
/// `setup` prepares the child's own mount namespace (its `$1` is `arg`).
fn run_with_setup(
    b: &Bundle,
    scenario: &str,
    unshare_args: &[&str],
    setup: &str,
    arg: &Path,
) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(unshare_args)
        .args(["sh", "-c"])
        .arg(format!(
            "{setup} && exec \"$2\" --exact zz_child_entry --nocapture --test-threads=1"
        ))
        .arg("sh")
        .arg(arg)
        .arg(exe)
        .env(CHILD_ENV, scenario)
        .env("BERTH_ROOTFS_BUNDLE", b.path())
        .output()
        .expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Turn the child's view of the host into a pure cgroup v2 layout (whatever the host has).
const CGROUP2_ONLY: &str =
    "umount -R /sys/fs/cgroup 2>/dev/null; mount -t cgroup2 berthtest-cg2 /sys/fs/cgroup";

#[test]
fn cgroup2_host_binds_its_own_cgroup() {
    let b = Bundle::new();
    let mut spec = base_spec();
    spec["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid"]},
    ]);
    b.write_spec(&spec);
    let (ok, out) = run_with_setup(&b, "cgroup2", &["-m"], CGROUP2_ONLY, Path::new("/"));
    expect_ok(ok, &out);
}

#[test]
fn cgroup2_host_with_cgroup_namespace_mounts_cgroup2() {
    let b = Bundle::new();
    let mut spec = base_spec();
    spec["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["rw", "nosuid"]},
    ]);
    spec["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "cgroup"}]);
    b.write_spec(&spec);
    let (ok, out) = run_with_setup(&b, "cgroup2ns", &["-m", "-C"], CGROUP2_ONLY, Path::new("/"));
    expect_ok(ok, &out);
}

#[test]
fn symlinked_destinations_stay_inside_the_rootfs() {
    let b = Bundle::new();
    let outside = b.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let rootfs = b.rootfs();
    // absolute and relative symlinks that point at the host's `outside` dir
    std::os::unix::fs::symlink(&outside, rootfs.join("evil")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../..".to_string() + outside.to_str().unwrap(),
        rootfs.join("evil2"),
    )
    .unwrap();
    let mut spec = base_spec();
    spec["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/evil2", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/../../outside2", "type": "tmpfs", "source": "tmpfs"},
    ]);
    b.write_spec(&spec);
    let out = Command::new("unshare")
        .args(["-m"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "zz_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "escape")
        .env("BERTH_ROOTFS_BUNDLE", b.path())
        .env("BERTH_ROOTFS_OUTSIDE", &outside)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    expect_ok(out.status.success(), &text);
    // the host directory the symlinks point to is untouched
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "host dir was written"
    );
    assert!(!b.path().join("outside2").exists());
    // the directories were created inside the rootfs instead
    assert!(rootfs
        .join(outside.strip_prefix("/").unwrap())
        .join("x")
        .is_dir());
    assert!(rootfs.join("outside2").is_dir());
}

#[test]
fn user_namespace_binds_devices_and_sysfs() {
    let b = Bundle::new();
    let host_dir = b.path().join("hostdata");
    fs::create_dir(&host_dir).unwrap();
    let mut spec = base_spec();
    spec["root"]["readonly"] = json!(true);
    spec["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/data", "type": "bind", "source": host_dir, "options": ["rbind", "ro"]},
    ]);
    spec["linux"] = json!({
        "namespaces": [{"type": "user"}, {"type": "mount"}, {"type": "pid"}],
        "readonlyPaths": ["/proc/sys"],
        "maskedPaths": ["/proc/timer_list"]
    });
    b.write_spec(&spec);
    let (ok, out) = b.run("userns", &["-U", "-r", "-m", "-p", "-f"]);
    expect_ok(ok, &out);
}

#[test]
fn shared_rootfs_propagation_and_per_mount_propagation() {
    let b = Bundle::new();
    let host_dir = b.path().join("hostdata");
    fs::create_dir(&host_dir).unwrap();
    let mut spec = base_spec();
    spec["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/private", "type": "tmpfs", "source": "tmpfs", "options": ["rprivate"]},
        {"destination": "/shared", "type": "tmpfs", "source": "tmpfs", "options": ["private", "rshared"]},
        {"destination": "/slave", "type": "bind", "source": host_dir, "options": ["rbind", "rslave"]},
    ]);
    spec["linux"]["rootfsPropagation"] = json!("rshared");
    b.write_spec(&spec);
    let (ok, out) = b.run("shared", &["-m"]);
    expect_ok(ok, &out);
}

#[test]
fn masking_refuses_a_dev_null_that_is_not_the_null_device() {
    // runc CVE-2025-31133: /dev/null swapped for a symlink to a procfs file
    let b = Bundle::new();
    let devdir = b.path().join("hostdev");
    fs::create_dir(&devdir).unwrap();
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", devdir.join("null")).unwrap();
    let mut spec = base_spec();
    spec["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "bind", "source": devdir, "options": ["rbind"]},
    ]);
    spec["linux"]["maskedPaths"] = json!(["/proc/timer_list"]);
    b.write_spec(&spec);
    let (ok, out) = b.run("badnull", &["-m"]);
    expect_ok(ok, &out);
    let line = out
        .lines()
        .find_map(|l| l.split_once("ERROR: ").map(|x| x.1))
        .unwrap_or_else(|| panic!("no error line:\n{out}"));
    assert_eq!(
        line,
        "open /dev/null: /dev/null in the container is not the null device"
    );
}

#[test]
fn unbindable_rootfs_propagation() {
    let b = Bundle::new();
    let mut spec = base_spec();
    spec["linux"]["rootfsPropagation"] = json!("runbindable");
    b.write_spec(&spec);
    let (ok, out) = b.run("unbindable", &["-m"]);
    expect_ok(ok, &out);
}

#[test]
fn no_pivot_moves_the_rootfs_onto_slash() {
    let b = Bundle::new();
    let etc = b.rootfs().join("etc");
    fs::create_dir(etc.join("sub")).unwrap();
    fs::write(etc.join("sub/secret"), "s").unwrap();
    fs::set_permissions(etc.join("sub/secret"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(etc.join("sub/secret"), Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::symlink("sub/secret", etc.join("link")).unwrap();
    let mut spec = base_spec();
    spec["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "nosuid"]},
    ]);
    spec["linux"]["readonlyPaths"] = json!(["/etc/marker"]);
    b.write_spec(&spec);
    let (ok, out) = b.run("nopivot", &["-m"]);
    expect_ok(ok, &out);
    // writes went to the tmpfs, not the image
    assert!(!etc.join("written").exists());
}

#[test]
fn kernel_refusal_names_the_mount_and_option() {
    let b = Bundle::new();
    let mut spec = base_spec();
    spec["mounts"] = json!([
        {"destination": "/bad", "type": "tmpfs", "source": "tmpfs", "options": ["size=lots"]},
    ]);
    b.write_spec(&spec);
    let (ok, out) = b.run("error", &["-m"]);
    expect_ok(ok, &out);
    let line = out
        .lines()
        .find_map(|l| l.split_once("ERROR: ").map(|x| x.1))
        .unwrap_or_else(|| panic!("no error line:\n{out}"));
    assert!(line.contains("mount tmpfs on /bad"), "{line}");
    assert!(line.contains("size=lots"), "{line}");
    assert!(out.contains("KIND: InvalidInput"), "{out}");
}

#[test]
fn proc_refused_in_a_user_namespace_without_its_pid_namespace() {
    let b = Bundle::new();
    let mut spec = base_spec();
    // the spec does not say "user": the devpts gid=5 the user namespace refuses is dropped
    spec["mounts"] = json!([
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["newinstance", "gid=5"]},
        {"destination": "/proc", "type": "proc", "source": "proc"},
    ]);
    b.write_spec(&spec);
    let (ok, out) = b.run("error", &["-U", "-r", "-m"]);
    expect_ok(ok, &out);
    let line = out
        .lines()
        .find_map(|l| l.split_once("ERROR: ").map(|x| x.1))
        .unwrap_or_else(|| panic!("no error line:\n{out}"));
    assert_eq!(line, "mount proc on /proc: operation not permitted");
    assert!(out.contains("KIND: PermissionDenied"), "{out}");
}

#[test]
fn bad_specs_fail_before_mounting() {
    let mut spec: serde_json::Value = base_spec();
    spec["mounts"] = json!([{"destination": "/x", "type": "bind", "options": ["rbind"]}]);
    let spec: Spec = serde_json::from_value(spec).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("berthtest-rootfs-")
        .tempdir()
        .unwrap();
    // not in a private namespace: validation must fail before anything is mounted
    let err = prepare_rootfs(&spec, dir.path(), &RootfsOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid mounts[0].source: a bind mount needs a source"
    );

    let mut spec: serde_json::Value = base_spec();
    spec["linux"]["sysctl"] = json!({"../../etc/passwd": "x"});
    let spec: Spec = serde_json::from_value(spec).unwrap();
    let err = finalize_rootfs(&spec).unwrap_err();
    assert!(err.to_string().contains("must not contain '/'"), "{err}");
}
