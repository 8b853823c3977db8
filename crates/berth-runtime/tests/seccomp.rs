//! Real seccomp filters loaded in a child process (this test binary re-executed for one test).
//!
//! Each test that loads a filter runs its body in a child: the test re-executes itself with
//! `--exact <name>` and `BERTH_SECCOMP_CHILD` set, the child loads the filter and checks what the
//! kernel answers; the parent checks the child's exit status.

use std::io::IoSliceMut;
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use berth_runtime::seccomp::{
    build_filter, build_filter_cached, docker_default_profile, parse_seccomp, SeccompError,
};
use serde_json::json;

mod common;

const CHILD_ENV: &str = "BERTH_SECCOMP_CHILD";

/// True inside the re-executed child.
fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Re-run test `name` of this binary as a child process with `extra` env vars.
fn run_child(name: &str, extra: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn test child")
}

fn assert_child_ok(out: &Output) {
    assert!(
        out.status.success(),
        "child failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn load(profile: serde_json::Value) {
    let spec = parse_seccomp(&profile).expect("parse profile");
    let filter = build_filter(&spec).expect("build filter");
    filter.load().expect("load filter");
}

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn errno_rules_custom_errno_and_allowed_syscalls() {
    if !in_child() {
        return assert_child_ok(&run_child(
            "errno_rules_custom_errno_and_allowed_syscalls",
            &[],
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    let target = dir.path().join("d");
    load(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat", "no_such_syscall_berth"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["symlink", "symlinkat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOMSG},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"}
        ]
    }));
    assert_eq!(
        errno_of(std::fs::create_dir(&target)),
        Some(libc::EPERM),
        "mkdir"
    );
    assert!(!target.exists());
    let link = dir.path().join("l");
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("/", &link)),
        Some(libc::ENOMSG),
        "symlink"
    );
    assert!(rustix::process::getpid().as_raw_nonzero().get() > 0);
    std::fs::write(dir.path().join("f"), b"ok").expect("write still allowed");
}

#[test]
fn argument_conditions_and_same_index_or() {
    if !in_child() {
        return assert_child_ok(&run_child("argument_conditions_and_same_index_or", &[]));
    }
    // socket(AF_UNIX) or socket(AF_INET6) (two conditions on arg 0: ORed) are refused with
    // EADDRNOTAVAIL; socket(AF_INET) stays allowed.
    load(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EADDRNOTAVAIL,
             "args": [
                {"index": 0, "value": libc::AF_UNIX, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": libc::AF_INET6, "op": "SCMP_CMP_EQ"}
             ]},
            // MASKED_EQ: dup3 with O_CLOEXEC in flags is refused.
            {"names": ["dup3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EBADMSG,
             "args": [{"index": 2, "value": libc::O_CLOEXEC, "valueTwo": libc::O_CLOEXEC,
                       "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    }));
    assert_eq!(
        errno_of(std::os::unix::net::UnixDatagram::unbound()),
        Some(libc::EADDRNOTAVAIL)
    );
    assert_eq!(
        errno_of(std::net::UdpSocket::bind("[::1]:0")),
        Some(libc::EADDRNOTAVAIL)
    );
    std::net::UdpSocket::bind("127.0.0.1:0").expect("AF_INET allowed");

    let f = std::fs::File::open("/dev/null").unwrap();
    let mut g: std::os::fd::OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    assert_eq!(
        errno_of(
            rustix::io::dup3(&f, &mut g, rustix::io::DupFlags::CLOEXEC)
                .map_err(std::io::Error::from)
        ),
        Some(libc::EBADMSG)
    );
    rustix::io::dup3(&f, &mut g, rustix::io::DupFlags::empty()).expect("dup3 without CLOEXEC");
}

#[test]
fn kill_process_ends_with_sigsys() {
    if !in_child() {
        let out = run_child("kill_process_ends_with_sigsys", &[]);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "status {:?}",
            out.status
        );
        return;
    }
    load(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
    }));
    let _ = rustix::process::getppid();
    // Not reached: the whole process is killed. Exit 0 would make the parent fail.
    std::process::exit(0);
}

#[test]
fn errno_default_action_with_default_errno_ret() {
    if !in_child() {
        return assert_child_ok(&run_child(
            "errno_default_action_with_default_errno_ret",
            &[],
        ));
    }
    // Allow what the rest of this process needs; everything else returns ENOTSUP... but only
    // after checking the one syscall we care about, since libtest needs more afterwards.
    let spec = parse_seccomp(&json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::ETXTBSY,
        "syscalls": [{"names": docker_allow_names(), "action": "SCMP_ACT_ALLOW"}]
    }))
    .unwrap();
    build_filter(&spec).unwrap().load().unwrap();
    // flock is not in the allow list built below.
    let f = std::fs::File::open("/dev/null").unwrap();
    assert_eq!(
        errno_of(
            rustix::fs::flock(&f, rustix::fs::FlockOperation::LockShared)
                .map_err(std::io::Error::from)
        ),
        Some(libc::ETXTBSY)
    );
}

/// The allow list of Docker's profile minus flock.
fn docker_allow_names() -> Vec<String> {
    let p = docker_default_profile(&[]);
    p.syscalls().as_ref().unwrap()[0]
        .names()
        .iter()
        .filter(|n| *n != "flock")
        .cloned()
        .collect()
}

#[test]
fn docker_default_profile_blocks_namespaces_without_sys_admin() {
    if !in_child() {
        return assert_child_ok(&run_child(
            "docker_default_profile_blocks_namespaces_without_sys_admin",
            &[],
        ));
    }
    let caps: Vec<String> = [
        "CAP_CHOWN",
        "CAP_NET_BIND_SERVICE",
        "CAP_KILL",
        "CAP_SETUID",
        "CAP_SETGID",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let filter = build_filter(&docker_default_profile(&caps)).expect("docker profile compiles");
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    filter.load().expect("load docker profile");

    #[allow(deprecated)]
    let r = rustix::thread::unshare(rustix::thread::UnshareFlags::NEWUTS);
    assert_eq!(r, Err(rustix::io::Errno::PERM), "unshare must be refused");
    let r = rustix::mount::mount(
        "none",
        dir.path(),
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    );
    assert_eq!(r, Err(rustix::io::Errno::PERM), "mount must be refused");

    // Normal programs still work (fork/exec through clone3 -> ENOSYS -> clone fallback).
    let out = Command::new("/bin/busybox")
        .args(["ls", "/"])
        .output()
        .expect("busybox ls");
    assert!(out.status.success(), "busybox ls: {:?}", out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("proc"));
    let out = Command::new("/bin/busybox")
        .args(["unshare", "-u", "true"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "busybox unshare must fail under the profile"
    );
}

#[test]
fn docker_default_profile_with_sys_admin_allows_unshare() {
    if !in_child() {
        return assert_child_ok(&run_child(
            "docker_default_profile_with_sys_admin_allows_unshare",
            &[],
        ));
    }
    let filter = build_filter(&docker_default_profile(&["CAP_SYS_ADMIN".to_string()])).unwrap();
    filter.load().unwrap();
    let out = Command::new("/bin/busybox")
        .args(["unshare", "-u", "true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unshare with CAP_SYS_ADMIN: {:?}",
        out
    );
}

#[test]
fn notify_sends_fd_to_listener_and_agent_answers() {
    let name = "notify_sends_fd_to_listener_and_agent_answers";
    if in_child() {
        let path = std::env::var("BERTH_LISTENER").unwrap();
        let spec = parse_seccomp(&json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": path,
            "listenerMetadata": "berth-meta",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .unwrap();
        let filter = build_filter(&spec).unwrap();
        assert!(filter.load().is_err(), "plain load refuses a NOTIFY filter");
        let fd = filter.load_notify().unwrap().expect("notify fd");
        let state =
            br#"{"ociVersion":"1.2.0","id":"berthtest","status":"creating","pid":1,"bundle":"/"}"#;
        berth_runtime::seccomp::send_notify_fd(
            filter.listener().unwrap(),
            std::os::fd::AsFd::as_fd(&fd),
            77,
            state,
        )
        .unwrap();
        drop(fd);
        let dir = std::env::temp_dir().join("berthtest-notify-never-created");
        assert_eq!(
            errno_of(std::fs::create_dir(&dir)),
            Some(libc::EXDEV),
            "agent's answer"
        );
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("BERTH_LISTENER", &sock)
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 8192];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        &conn,
        &mut [IoSliceMut::new(&mut buf)],
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
    assert_eq!(fds.len(), 1, "one fd received");
    let v: serde_json::Value = serde_json::from_slice(&buf[..msg.bytes]).expect("state JSON");
    assert_eq!(v["fds"], json!(["seccompFd"]));
    assert_eq!(v["pid"], json!(77));
    assert_eq!(v["metadata"], json!("berth-meta"));
    assert_eq!(v["state"]["id"], json!("berthtest"));

    use std::os::fd::AsRawFd;
    let raw = fds[0].as_raw_fd();
    let req = libseccomp::ScmpNotifReq::receive(raw).expect("receive notification");
    let name = req.data.syscall.get_name().unwrap();
    assert!(name.starts_with("mkdir"), "{name}");
    libseccomp::ScmpNotifResp::new_error(
        req.id,
        -libc::EXDEV,
        libseccomp::ScmpNotifRespFlags::empty(),
    )
    .respond(raw)
    .expect("respond");
    let status = child.wait().unwrap();
    assert!(status.success(), "child: {status:?}");
}

#[test]
fn unknown_names_are_skipped_and_validation_names_fields() {
    let f = build_filter(
        &parse_seccomp(&json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["not_a_syscall_at_all", "read"], "action": "SCMP_ACT_ALLOW"}]
        }))
        .unwrap(),
    )
    .expect("unknown syscall names are skipped");
    assert!(!f.is_empty());

    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_NOPE"}),
            "linux.seccomp.defaultAction",
        ),
        (json!({}), "linux.seccomp.defaultAction"),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}),
            "linux.seccomp.architectures[0]",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}),
            "linux.seccomp.flags[0]",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["read"], "action": "SCMP_ACT_FOO"}]}),
            "linux.seccomp.syscalls[1].action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}),
            "linux.seccomp.syscalls[0].args[0].op",
        ),
    ];
    for (v, field) in cases {
        let e = parse_seccomp(&v).expect_err("must be rejected");
        assert!(matches!(e, SeccompError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains(field), "{e} should name {field}");
        assert_eq!(e.kind(), berth_core::ErrorKind::InvalidInput);
    }

    // Hundreds of conditions on one argument: many rules, no overflow.
    let many: Vec<_> = (0..300)
        .map(|i| json!({"index": 0, "value": i, "op": "SCMP_CMP_EQ"}))
        .collect();
    build_filter(
        &parse_seccomp(&json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": many}]}))
        .unwrap(),
    )
    .expect("300 ORed conditions");

    let built = [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[0].index",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.listenerPath",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
            "linux.seccomp.defaultAction",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": [], "action": "SCMP_ACT_ERRNO"}]}),
            "linux.seccomp.syscalls[0].names",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_KILL", "errnoRet": 3}]}),
            "linux.seccomp.syscalls[0].errnoRet",
        ),
    ];
    for (v, field) in built {
        let e = build_filter(&parse_seccomp(&v).unwrap()).expect_err("must be rejected");
        assert!(e.to_string().contains(field), "{e} should name {field}");
    }
}

#[test]
fn flags_are_passed_to_the_kernel() {
    if !in_child() {
        return assert_child_ok(&run_child("flags_are_passed_to_the_kernel", &[]));
    }
    let spec = parse_seccomp(&json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    }))
    .unwrap();
    let f = build_filter(&spec).unwrap();
    assert_eq!(f.flags(), 1 | 2 | 4);
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    let target = dir.path().join("x");
    // TSYNC: a thread that existed before the load is filtered too.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        go_rx.recv().unwrap();
        std::fs::create_dir(target)
    });
    f.load().unwrap();
    go_tx.send(()).unwrap();
    let r = t.join().unwrap();
    assert_eq!(errno_of(r), Some(libc::EPERM));
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(status.contains("Seccomp:\t2"), "{status}");
}

#[test]
fn trap_raises_sigsys() {
    if !in_child() {
        let out = run_child("trap_raises_sigsys", &[]);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "status {:?}",
            out.status
        );
        return;
    }
    load(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]
    }));
    let _ = rustix::process::getppid();
    std::process::exit(0);
}

#[test]
fn native_arch_is_always_added() {
    if !in_child() {
        return assert_child_ok(&run_child("native_arch_is_always_added", &[]));
    }
    // Only a foreign arch is listed; the native one is still there (else every syscall here
    // would hit the bad-arch action and kill the process).
    let foreign = if cfg!(target_arch = "x86_64") {
        "SCMP_ARCH_X86"
    } else {
        "SCMP_ARCH_X86_64"
    };
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    load(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [foreign],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOMSG}]
    }));
    assert_eq!(
        errno_of(std::fs::create_dir(dir.path().join("x"))),
        Some(libc::ENOMSG)
    );
}

#[test]
fn cached_build_reuses_the_compiled_program_and_still_validates() {
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    let cache = dir.path().join("cache");
    let profile = docker_default_profile(&[]);
    let t = std::time::Instant::now();
    let fresh = build_filter_cached(&profile, &cache).unwrap();
    let first = t.elapsed();
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one cached program, no temp files left");
    let t = std::time::Instant::now();
    let again = build_filter_cached(&profile, &cache).unwrap();
    let second = t.elapsed();
    assert_eq!(again, fresh);
    assert_eq!(build_filter(&profile).unwrap(), fresh);
    eprintln!("docker profile: compiled in {first:?}, from cache in {second:?}");
    assert!(
        second < first,
        "cache hit {second:?} not faster than compile {first:?}"
    );

    // A corrupt cache entry is recompiled, not trusted.
    std::fs::write(files[0].path(), b"garbage").unwrap();
    assert_eq!(build_filter_cached(&profile, &cache).unwrap(), fresh);

    // Validation still runs on a cache hit.
    let bad = parse_seccomp(&json!({"defaultAction": "SCMP_ACT_NOTIFY"})).unwrap();
    assert!(build_filter_cached(&bad, &cache).is_err());
}

#[cfg(target_arch = "x86_64")]
#[test]
fn syscalls_newer_than_the_profile_get_enosys() {
    if !in_child() {
        return assert_child_ok(&run_child(
            "syscalls_newer_than_the_profile_get_enosys",
            &[],
        ));
    }
    // Allow Docker's list up to x86_64 syscall 330 (all this process needs), except flock (73).
    let names: Vec<String> = docker_allow_names()
        .into_iter()
        .filter(|n| {
            libseccomp::ScmpSyscall::from_name(n)
                .map(|nr| (0..=330).contains(&i32::from(nr)))
                .unwrap_or(false)
        })
        .collect();
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    let f = std::fs::File::open("/dev/null").unwrap();
    load(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    }));
    // Known to the profile (below its newest syscall) but not allowed: the default, EPERM.
    assert_eq!(
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockShared),
        Err(rustix::io::Errno::PERM)
    );
    // statx (332) and pidfd_open (434) are newer than anything the profile names: ENOSYS.
    assert_eq!(
        rustix::fs::statx(
            &f,
            "",
            rustix::fs::AtFlags::EMPTY_PATH,
            rustix::fs::StatxFlags::BASIC_STATS
        )
        .map(|_| ()),
        Err(rustix::io::Errno::NOSYS)
    );
    assert_eq!(
        rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty()
        )
        .map(|_| ()),
        Err(rustix::io::Errno::NOSYS)
    );
    drop(dir);
}

#[test]
fn features_list_what_is_known_and_what_the_kernel_supports() {
    let f = berth_runtime::seccomp::features();
    let v = serde_json::to_value(&f).unwrap();
    assert_eq!(v["enabled"], json!(true));
    let has = |k: &str, x: &str| v[k].as_array().unwrap().iter().any(|e| e == x);
    assert!(has("actions", "SCMP_ACT_NOTIFY"));
    assert!(has("operators", "SCMP_CMP_MASKED_EQ"));
    assert!(has("archs", "SCMP_ARCH_X86_64"));
    assert!(has("knownFlags", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"));
    // This kernel (>= 4.17) supports these three; the probe must not have installed a filter.
    for flag in [
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ] {
        assert!(has("supportedFlags", flag), "{flag} in {v}");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        status.contains("Seccomp:\t0"),
        "probing installed a filter: {status}"
    );
}

/// Run `script` in a real container with `seccomp` as `linux.seccomp`; (exit code, /tmp/out).
fn run_container(
    f: &mut common::Fixture,
    name: &str,
    script: &str,
    seccomp: serde_json::Value,
    no_new_privs: bool,
) -> (i32, String) {
    let mut spec = f.sh(script);
    spec["linux"]["seccomp"] = seccomp;
    spec["process"]["noNewPrivileges"] = json!(no_new_privs);
    f.write_spec(&spec);
    let rt = berth_runtime::Runtime::new(f.root());
    let id = f.id(name);
    let opts = berth_runtime::CreateOptions {
        bundle: f.bundle(),
        ..Default::default()
    };
    let st = rt.create(&id, &opts).expect("create");
    f.pids.push(st.pid);
    rt.start(&id).expect("start");
    let code = common::wait_child(st.pid);
    let out = std::fs::read_to_string(f.rootfs().join("tmp/out")).unwrap_or_default();
    rt.delete(&id, false).expect("delete");
    (code, out)
}

#[test]
fn container_with_docker_profile_cannot_unshare_or_mount() {
    let mut f = common::Fixture::new();
    // The capabilities of runc's default spec: no CAP_SYS_ADMIN.
    let caps: Vec<String> = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let profile = serde_json::to_value(docker_default_profile(&caps)).unwrap();
    for nnp in [true, false] {
        let (code, out) = run_container(
            &mut f,
            &format!("docker{nnp}"),
            "grep Seccomp: /proc/self/status > /tmp/out; \
             unshare -u true 2>>/tmp/out; echo unshare=$? >> /tmp/out; \
             mount -t tmpfs none /mnt 2>>/tmp/out; echo mount=$? >> /tmp/out; \
             ls / > /dev/null; echo ls=$? >> /tmp/out",
            profile.clone(),
            nnp,
        );
        assert_eq!(code, 0, "noNewPrivileges={nnp}: {out}");
        assert!(out.contains("Seccomp:\t2"), "filter mode inside: {out}");
        assert!(out.contains("unshare=1"), "{out}");
        assert!(
            out.contains("mount=1") || out.contains("mount=255"),
            "{out}"
        );
        assert!(out.contains("Operation not permitted"), "{out}");
        assert!(out.contains("ls=0"), "{out}");
    }
}

#[test]
fn container_sees_custom_errno_and_bad_profiles_fail_create_with_the_reason() {
    let mut f = common::Fixture::new();
    let (code, out) = run_container(
        &mut f,
        "errno",
        "mkdir /tmp/x 2>/tmp/out; echo mkdir=$? >> /tmp/out",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": libc::ENOSPC}]
        }),
        true,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.contains("mkdir=1"), "{out}");

    // An invalid profile is refused at create, naming the field.
    let mut spec = f.sh("true");
    spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    });
    f.write_spec(&spec);
    let rt = berth_runtime::Runtime::new(f.root());
    let opts = berth_runtime::CreateOptions {
        bundle: f.bundle(),
        ..Default::default()
    };
    let err = rt
        .create(&f.id("badidx"), &opts)
        .expect_err("bad arg index");
    assert!(
        err.to_string()
            .contains("linux.seccomp.syscalls[0].args[0].index"),
        "{err}"
    );

    // NOTIFY with no agent listening: create fails and says which listener it could not reach.
    spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": f.dir().join("agent.sock"),
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    });
    f.write_spec(&spec);
    let err = rt
        .create(&f.id("notify"), &opts)
        .expect_err("notify without an agent")
        .to_string();
    assert!(err.contains("agent.sock"), "{err}");
}

/// The profile survives JSON (what the engine writes into config.json) unchanged and compiles;
/// with `BERTH_DUMP_DOCKER_PROFILE=<file>` the JSON is also written there (bench/runtime uses it
/// to give every runtime the same profile).
#[test]
fn docker_profile_round_trips_through_json() {
    let caps: Vec<String> = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let profile = docker_default_profile(&caps);
    let v = serde_json::to_value(&profile).unwrap();
    assert_eq!(v["defaultAction"], json!("SCMP_ACT_ERRNO"));
    assert_eq!(v["defaultErrnoRet"], json!(1));
    let back = parse_seccomp(&v).expect("re-parses");
    assert_eq!(back, profile);
    assert_eq!(
        build_filter(&back).unwrap(),
        build_filter(&profile).unwrap()
    );
    if let Some(path) = std::env::var_os("BERTH_DUMP_DOCKER_PROFILE") {
        std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }
}
