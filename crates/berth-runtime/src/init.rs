//! What runs in the forked children: the namespace stage and the container init.
//!
//! ```text
//! runtime (P) --fork--> stage (S): dumpable=0, setns(paths), unshare(user) + maps from P,
//!                                  unshare(other namespaces), timens offsets
//!                       S --clone3(CLONE_PARENT)--> init (I), a child of P, pid 1 of a new pid ns
//!                       S exits
//! I: setsid, oom_score_adj, rlimits, [hooks in P], rootfs, console, hostname, finalize rootfs,
//!    caps/user/cwd, fd hygiene, Ready -> P, wait on exec.fifo, seccomp, execve
//! ```
//!
//! CVE-2019-5736: berth is never re-executed inside the container. The children are forks of
//! the runtime that only `execve` the container's program; they mark themselves non-dumpable
//! (`PR_SET_DUMPABLE 0`) before joining any namespace, so no container process can open
//! `/proc/<pid>/exe` (the berth binary) of a setup process: ptrace access checks against a
//! non-dumpable process require CAP_SYS_PTRACE in the initial user namespace. `execve` of the
//! container program makes it dumpable again. This costs nothing per start, unlike copying the
//! binary into a sealed memfd.
//!
//! CVE-2024-21626: before exec every fd >= 3 (beyond preserved ones) is marked close-on-exec
//! with `close_range`, and the cwd is checked to be inside the container's root.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_core::ErrorKind;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use rustix::process::DumpableBehavior;

use crate::process::{self as proc_setup, SetupError, SetupResult};
use crate::sync::{Channel, Msg};

/// Everything a child needs, prepared by the parent before fork.
pub(crate) struct ChildConfig<'a> {
    pub(crate) spec: &'a Spec,
    pub(crate) process: &'a Process,
    pub(crate) bundle: &'a Path,
    /// Namespaces to create (CLONE_NEW* flags).
    pub(crate) new_ns: i32,
    /// Namespaces to join: (flag, path), user first.
    pub(crate) join: Vec<(i32, PathBuf)>,
    /// Whether a new user namespace is created (the parent writes the maps).
    pub(crate) new_user: bool,
    /// Whether the process ends up in a user namespace other than the host's.
    pub(crate) in_user_ns: bool,
    /// Set up the root filesystem (create) or not (exec).
    pub(crate) setup_rootfs: bool,
    pub(crate) no_pivot: bool,
    /// Fifo (opened O_RDWR) to wait on before exec (create), or none (exec).
    pub(crate) exec_fifo: Option<&'a OwnedFd>,
    /// Connected console socket when `process.terminal` is set.
    pub(crate) console_socket: Option<&'a OwnedFd>,
    /// Fds 3..3+preserve stay open in the container.
    pub(crate) preserve_fds: u32,
    /// Extra environment (LISTEN_FDS...).
    pub(crate) extra_env: Vec<String>,
    /// Ask the parent to run prestart/createRuntime hooks.
    pub(crate) parent_hooks: bool,
    /// Make the process a session leader even without a terminal.
    pub(crate) setsid: bool,
    /// The seccomp filter, compiled by the parent before fork.
    pub(crate) seccomp: Option<&'a crate::seccomp::CompiledFilter>,
}

fn ns_flag(t: LinuxNamespaceType) -> i32 {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// Split the spec's namespaces into (flags to create, paths to join (user first)).
pub(crate) fn plan_namespaces(spec: &Spec) -> (i32, Vec<(i32, PathBuf)>) {
    let mut new = 0;
    let mut join = Vec::new();
    let nss = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in &nss {
        let f = ns_flag(ns.typ());
        match ns.path() {
            Some(p) => join.push((f, p.clone())),
            None => new |= f,
        }
    }
    // user first (so the rest are joined with its privileges), mount last (paths vanish).
    join.sort_by_key(|(f, _)| match *f {
        libc::CLONE_NEWUSER => 0,
        libc::CLONE_NEWNS => 2,
        _ => 1,
    });
    (new, join)
}

/// Body of the stage process S (forked from P). Never returns.
pub(crate) fn stage_main(cfg: &ChildConfig<'_>, chan: &Channel) -> ! {
    let code = match stage(cfg, chan) {
        Ok(Some(())) => 0,
        Ok(None) => {
            // we are the init: run it
            match init(cfg, chan) {
                Ok(never) => match never {},
                Err(e) => {
                    report(chan, &e);
                    1
                }
            }
        }
        Err(e) => {
            report(chan, &e);
            1
        }
    };
    berth_sys::process::exit_immediately(code)
}

fn report(chan: &Channel, e: &SetupError) {
    if chan.send(&Msg::error(&e.msg, e.kind)).is_err() {
        // The parent is gone (e.g. after `start`): stderr is all we have.
        eprintln!("berth: container process: {}", e.msg);
    }
}

fn expect(chan: &Channel, want: &Msg) -> SetupResult<Option<Msg>> {
    expect_noting(chan, want, &mut false)
}

/// Like [`expect`], but a `CgroupDone` arriving first is recorded in `cgroup_done`.
fn expect_noting(chan: &Channel, want: &Msg, cgroup_done: &mut bool) -> SetupResult<Option<Msg>> {
    if *want == Msg::CgroupDone && *cgroup_done {
        return Ok(Some(Msg::CgroupDone));
    }
    match chan.recv() {
        Ok(Some(Msg::CgroupDone)) if *want != Msg::CgroupDone => {
            *cgroup_done = true;
            expect_noting(chan, want, cgroup_done)
        }
        Ok(Some(m)) if std::mem::discriminant(&m) == std::mem::discriminant(want) => {
            if m == Msg::CgroupDone {
                *cgroup_done = true;
            }
            Ok(Some(m))
        }
        Ok(Some(m)) => Err(SetupError::new(
            format!("sync: expected {want:?}, got {m:?}"),
            ErrorKind::Internal,
        )),
        Ok(None) => Err(SetupError::new(
            "sync: runtime went away",
            ErrorKind::Internal,
        )),
        Err(e) => Err(SetupError::io("sync: receive", e)),
    }
}

/// Returns Ok(Some) in S after forking I (S should exit 0), Ok(None) in I.
fn stage(cfg: &ChildConfig<'_>, chan: &Channel) -> SetupResult<Option<()>> {
    rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| SetupError::io("prctl PR_SET_DUMPABLE", e))?;
    expect(chan, &Msg::Go)?;
    // open every namespace path before entering any (a mount ns join hides host paths)
    let mut fds = Vec::new();
    for (flag, path) in &cfg.join {
        let fd = rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| SetupError::io(format!("open namespace {}", path.display()), e))?;
        fds.push((*flag, path, fd));
    }
    for (flag, path, fd) in &fds {
        if *flag == libc::CLONE_NEWUSER && same_ns(fd, "user") {
            continue;
        }
        rustix::thread::move_into_link_name_space(fd.as_fd(), None)
            .map_err(|e| SetupError::io(format!("setns {}", path.display()), e))?;
        if *flag == libc::CLONE_NEWUSER {
            become_ns_root()?;
        }
    }
    drop(fds);
    let mut cgroup_done = false;
    if cfg.new_user {
        berth_sys::ns::unshare_namespaces(libc::CLONE_NEWUSER)
            .map_err(|e| SetupError::io("unshare user namespace", e))?;
        chan.send(&Msg::MapsPlease)
            .map_err(|e| SetupError::io("sync: send", e))?;
        expect_noting(chan, &Msg::MapsDone, &mut cgroup_done)?;
        become_ns_root()?;
    }
    // Everything but the cgroup namespace, while the parent moves us into the cgroup.
    let rest = cfg.new_ns & !libc::CLONE_NEWUSER & !libc::CLONE_NEWCGROUP;
    if rest != 0 {
        berth_sys::ns::unshare_namespaces(rest)
            .map_err(|e| SetupError::io("unshare namespaces", e))?;
    }
    expect_noting(chan, &Msg::CgroupDone, &mut cgroup_done)?;
    if cfg.new_ns & libc::CLONE_NEWCGROUP != 0 {
        berth_sys::ns::unshare_namespaces(libc::CLONE_NEWCGROUP)
            .map_err(|e| SetupError::io("unshare cgroup namespace", e))?;
    }
    if rest & libc::CLONE_NEWTIME != 0 {
        write_time_offsets(cfg.spec)?;
    }
    match berth_sys::process::fork_as_sibling().map_err(|e| SetupError::io("clone", e))? {
        berth_sys::process::Forked::Parent(pid) => {
            chan.send(&Msg::Pid(pid))
                .map_err(|e| SetupError::io("sync: send", e))?;
            Ok(Some(()))
        }
        berth_sys::process::Forked::Child => Ok(None),
    }
}

fn same_ns(fd: &OwnedFd, kind: &str) -> bool {
    let Ok(own) = rustix::fs::stat(format!("/proc/self/ns/{kind}")) else {
        return false;
    };
    let Ok(other) = rustix::fs::fstat(fd) else {
        return false;
    };
    own.st_ino == other.st_ino && own.st_dev == other.st_dev
}

fn become_ns_root() -> SetupResult {
    let z = rustix::process::Gid::ROOT;
    rustix::thread::set_thread_res_gid(z, z, z)
        .map_err(|e| SetupError::io("setresgid 0 in user namespace", e))?;
    let z = rustix::process::Uid::ROOT;
    rustix::thread::set_thread_res_uid(z, z, z)
        .map_err(|e| SetupError::io("setresuid 0 in user namespace", e))?;
    Ok(())
}

fn write_time_offsets(spec: &Spec) -> SetupResult {
    let Some(offs) = spec.linux().as_ref().and_then(|l| l.time_offsets().clone()) else {
        return Ok(());
    };
    let mut s = String::new();
    for (clock, o) in &offs {
        let clock = match clock.as_str() {
            "monotonic" | "boottime" => clock.as_str(),
            other => {
                return Err(SetupError::new(
                    format!("linux.timeOffsets: unknown clock {other:?}"),
                    ErrorKind::InvalidInput,
                ))
            }
        };
        s.push_str(&format!(
            "{clock} {} {}\n",
            o.secs().unwrap_or(0),
            o.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", s)
        .map_err(|e| SetupError::io("write /proc/self/timens_offsets", e))
}

enum Never {}

fn init(cfg: &ChildConfig<'_>, chan: &Channel) -> SetupResult<Never> {
    let p = cfg.process;
    if cfg.setsid || p.terminal().unwrap_or(false) {
        rustix::process::setsid().map_err(|e| SetupError::io("setsid", e))?;
    }
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| SetupError::io("write /proc/self/oom_score_adj", e))?;
    }
    if let Some(r) = p.rlimits() {
        proc_setup::apply_rlimits(r)?;
    }
    let mut state_json = String::new();
    if cfg.parent_hooks {
        chan.send(&Msg::HooksPlease)
            .map_err(|e| SetupError::io("sync: send", e))?;
        if let Some(Msg::HooksDone(s)) = expect(chan, &Msg::HooksDone(String::new()))? {
            state_json = s;
        }
    }
    let mut console = None;
    if cfg.setup_rootfs {
        if let Some(h) = cfg
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.create_container().clone())
        {
            crate::hooks::run_hooks(&h, state_json.as_bytes(), "createContainer")
                .map_err(|e| SetupError::new(e.to_string(), e.kind()))?;
        }
        let opts = crate::rootfs::RootfsOptions {
            no_pivot: cfg.no_pivot,
            console: None,
            in_user_ns: cfg.in_user_ns,
        };
        crate::rootfs_compat::prepare(cfg.spec, cfg.bundle, &opts)?;
        if p.terminal().unwrap_or(false) {
            let c = crate::rootfs_compat::console()?;
            console = Some(c);
        }
        let has_uts = cfg.new_ns & libc::CLONE_NEWUTS != 0;
        if let Some(h) = cfg.spec.hostname() {
            rustix::system::sethostname(h.as_bytes())
                .map_err(|e| SetupError::io(format!("sethostname {h}"), e))?;
        }
        if let Some(d) = cfg.spec.domainname() {
            if has_uts || !d.is_empty() {
                rustix::system::setdomainname(d.as_bytes())
                    .map_err(|e| SetupError::io(format!("setdomainname {d}"), e))?;
            }
        }
        crate::rootfs_compat::finalize(cfg.spec)?;
    } else if p.terminal().unwrap_or(false) {
        console = Some(open_pty()?);
    }
    if let Some((master, slave)) = console {
        let sock = cfg.console_socket.ok_or_else(|| {
            SetupError::new(
                "process.terminal is set but no console socket was given",
                ErrorKind::InvalidInput,
            )
        })?;
        crate::console::send_fd(sock, &master)
            .map_err(|e| SetupError::io("send pty master to console socket", e))?;
        drop(master);
        if let Some(sz) = p.console_size() {
            let ws = rustix::termios::Winsize {
                ws_row: sz.height() as u16,
                ws_col: sz.width() as u16,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let _ = rustix::termios::tcsetwinsize(&slave, ws);
        }
        crate::console::make_stdio(&slave).map_err(|e| SetupError::io("dup pty to stdio", e))?;
        rustix::process::ioctl_tiocsctty(&slave)
            .map_err(|e| SetupError::io("set controlling terminal", e))?;
    }
    if p.apparmor_profile().is_some() || p.selinux_label().is_some() {
        // No LSM support: labels are accepted and ignored (features reports them as disabled).
        tracing::debug!("apparmor profile / selinux label ignored: no LSM support in berth");
    }
    let filter = cfg.seccomp;
    let nnp = p.no_new_privileges().unwrap_or(false);
    let notify = filter.is_some_and(|f| f.listener().is_some());
    if let (Some(f), false) = (filter, nnp) {
        // Without no_new_privs loading needs CAP_SYS_ADMIN: load before dropping privileges.
        load_seccomp(f, chan)?;
    }
    proc_setup::drop_bounding(p)?;
    proc_setup::set_keep_caps(true)?;
    proc_setup::switch_user(p, setgroups_allowed())?;
    proc_setup::set_keep_caps(false)?;
    proc_setup::apply_caps(p)?;
    if let Some(mask) = p.user().umask() {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask & 0o777));
    }
    rustix::process::chdir(p.cwd())
        .map_err(|e| SetupError::io(format!("chdir to cwd ({})", p.cwd().display()), e))?;
    let cwd = rustix::process::getcwd(Vec::new()).map_err(|e| SetupError::io("getcwd", e))?;
    if !cwd.to_bytes().starts_with(b"/") {
        return Err(SetupError::new(
            format!(
                "process.cwd: {} is outside the container's root",
                p.cwd().display()
            ),
            ErrorKind::PermissionDenied,
        ));
    }
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    env.extend(cfg.extra_env.iter().cloned());
    if proc_setup::env_get(&env, "HOME").is_none() {
        env.push(format!("HOME={}", proc_setup::home_of(p.user().uid())));
    }
    let args = p.args().clone().unwrap_or_default();
    let path_var = proc_setup::env_get(&env, "PATH").unwrap_or(proc_setup::DEFAULT_PATH);
    let exe = proc_setup::lookup(args.first().map(String::as_str).unwrap_or(""), path_var)?;
    for fd in 3..3 + cfg.preserve_fds as i32 {
        if fd != chan.fd().as_raw_fd() {
            let _ = berth_sys::fd::clear_cloexec(fd);
        }
    }
    berth_sys::fd::cloexec_from(3 + cfg.preserve_fds)
        .map_err(|e| SetupError::io("close_range", e))?;
    if let (Some(f), true, true) = (filter, nnp, notify) {
        // The notify fd must reach the listener through the parent, which is only there until
        // Ready: load now (the rest of the setup runs under the filter, as with runc).
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| SetupError::io("prctl PR_SET_NO_NEW_PRIVS", e))?;
        load_seccomp(f, chan)?;
    }
    if let Some(fifo) = cfg.exec_fifo {
        chan.send(&Msg::Ready)
            .map_err(|e| SetupError::io("sync: send", e))?;
        let mut b = [0u8; 1];
        let mut f = std::fs::File::from(
            fifo.try_clone()
                .map_err(|e| SetupError::io("dup exec fifo", e))?,
        );
        match f.read(&mut b) {
            Ok(1) => {}
            _ => berth_sys::process::exit_immediately(1),
        }
        if let Some(h) = cfg
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.start_container().clone())
        {
            crate::hooks::run_hooks(&h, state_json.as_bytes(), "startContainer")
                .map_err(|e| SetupError::new(e.to_string(), e.kind()))?;
        }
    }
    if nnp && !notify {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| SetupError::io("prctl PR_SET_NO_NEW_PRIVS", e))?;
        if let Some(f) = filter {
            f.load()
                .map_err(|e| SetupError::new(e.to_string(), e.kind()))?;
        }
    }
    berth_sys::process::reset_signals().map_err(|e| SetupError::io("reset signals", e))?;
    Err(proc_setup::exec(&exe, &args, &env))
}

/// Load `f`; with a notify listener, send the user-notification fd to the parent.
fn load_seccomp(f: &crate::seccomp::CompiledFilter, chan: &Channel) -> SetupResult {
    let err = |e: crate::seccomp::SeccompError| SetupError::new(e.to_string(), e.kind());
    if f.listener().is_none() {
        return f.load().map_err(err);
    }
    if let Some(fd) = f.load_notify().map_err(err)? {
        chan.send_with_fd(&Msg::SeccompFd, fd.as_fd())
            .map_err(|e| SetupError::io("send seccomp notify fd", e))?;
    }
    Ok(())
}

/// Whether setgroups(2) is allowed (not denied through /proc/self/setgroups).
fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true)
}

fn open_pty() -> SetupResult<(OwnedFd, OwnedFd)> {
    crate::console::open_pty().map_err(|e| SetupError::io("open pty", e))
}
