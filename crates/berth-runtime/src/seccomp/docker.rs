//! Docker's default seccomp profile (moby `profiles/seccomp/default.json`) as data, resolved for
//! the host architecture, kernel and a set of capabilities.
//!
//! Semantics: default `SCMP_ACT_ERRNO` with errno EPERM; an allow list; groups of syscalls that
//! are allowed only when the process holds a capability (e.g. `mount`, `unshare` with
//! `CAP_SYS_ADMIN`); `clone` without namespace flags for everyone else; `clone3` answered with
//! ENOSYS (so libc falls back to `clone`); `personality` only with harmless arguments; the host's
//! native architecture plus its compatible sub-architectures.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// A condition on a syscall argument: (index, value, op).
type Cond = (usize, u64, LinuxSeccompOperator);

/// One group of the profile.
struct Group {
    names: &'static [&'static str],
    action: LinuxSeccompAction,
    errno: Option<u32>,
    args: &'static [Cond],
    /// Included only if the process holds ALL of these capabilities.
    caps: &'static [&'static str],
    /// Included only on one of these architectures (Go names: amd64, arm64, ...), if non-empty.
    arches: &'static [&'static str],
    /// Excluded if the process holds any of these capabilities.
    not_caps: &'static [&'static str],
    /// Excluded on these architectures.
    not_arches: &'static [&'static str],
    /// Included only on kernels at least this version (major, minor).
    min_kernel: Option<(u32, u32)>,
}

const ALLOW: LinuxSeccompAction = LinuxSeccompAction::ScmpActAllow;

const fn allow(names: &'static [&'static str]) -> Group {
    Group {
        names,
        action: ALLOW,
        errno: None,
        args: &[],
        caps: &[],
        arches: &[],
        not_caps: &[],
        not_arches: &[],
        min_kernel: None,
    }
}

const fn with_cap(names: &'static [&'static str], caps: &'static [&'static str]) -> Group {
    Group {
        caps,
        ..allow(names)
    }
}

const fn on_arch(names: &'static [&'static str], arches: &'static [&'static str]) -> Group {
    Group {
        arches,
        ..allow(names)
    }
}

/// `clone` flags a process without CAP_SYS_ADMIN may not use: CLONE_NEWNS | CLONE_NEWCGROUP |
/// CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET (0x7E020000).
const CLONE_NS_FLAGS: u64 = 0x7E02_0000;

/// personality(2) values allowed to everyone: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and 0xffffffff (query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const BASE: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

const CAP_SYS_ADMIN: &str = "CAP_SYS_ADMIN";
const S390: &[&str] = &["s390", "s390x"];

const GROUPS: &[Group] = &[
    allow(BASE),
    Group {
        min_kernel: Some((4, 8)),
        ..allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
    },
    // socket(AF_VSOCK) is refused.
    Group {
        args: &[(0, 40, LinuxSeccompOperator::ScmpCmpNe)],
        ..allow(&["socket"])
    },
    on_arch(&["sync_file_range2", "swapcontext"], &["ppc64le"]),
    on_arch(
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        &["arm", "arm64"],
    ),
    on_arch(&["arch_prctl"], &["amd64", "x32"]),
    on_arch(&["modify_ldt"], &["amd64", "x32", "x86"]),
    on_arch(
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        S390,
    ),
    on_arch(&["riscv_flush_icache"], &["riscv64"]),
    with_cap(&["open_by_handle_at"], &["CAP_DAC_READ_SEARCH"]),
    with_cap(
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        &[CAP_SYS_ADMIN],
    ),
    Group {
        args: &[(0, CLONE_NS_FLAGS, LinuxSeccompOperator::ScmpCmpMaskedEq)],
        not_caps: &[CAP_SYS_ADMIN],
        not_arches: S390,
        ..allow(&["clone"])
    },
    // s390 passes clone's flags in the second argument.
    Group {
        args: &[(1, CLONE_NS_FLAGS, LinuxSeccompOperator::ScmpCmpMaskedEq)],
        arches: S390,
        not_caps: &[CAP_SYS_ADMIN],
        ..allow(&["clone"])
    },
    // clone3 cannot be filtered by flags (they are behind a pointer): ENOSYS makes libc fall back.
    Group {
        action: LinuxSeccompAction::ScmpActErrno,
        errno: Some(libc::ENOSYS as u32),
        not_caps: &[CAP_SYS_ADMIN],
        ..allow(&["clone3"])
    },
    with_cap(&["reboot"], &["CAP_SYS_BOOT"]),
    with_cap(&["chroot"], &["CAP_SYS_CHROOT"]),
    with_cap(
        &["delete_module", "init_module", "finit_module"],
        &["CAP_SYS_MODULE"],
    ),
    with_cap(&["acct"], &["CAP_SYS_PACCT"]),
    with_cap(
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        &["CAP_SYS_PTRACE"],
    ),
    with_cap(&["iopl", "ioperm"], &["CAP_SYS_RAWIO"]),
    with_cap(
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        &["CAP_SYS_TIME"],
    ),
    with_cap(&["vhangup"], &["CAP_SYS_TTY_CONFIG"]),
    with_cap(
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
        &["CAP_SYS_NICE"],
    ),
    with_cap(&["syslog"], &["CAP_SYSLOG"]),
    with_cap(&["bpf"], &["CAP_BPF"]),
    with_cap(&["perf_event_open"], &["CAP_PERFMON"]),
];

/// The host architecture in Go's naming (what Docker's profile conditions use).
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        other => other,
    }
}

/// The native seccomp arch and its compatible sub-architectures.
fn host_arches() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "powerpc64" if cfg!(target_endian = "little") => vec![Arch::ScmpArchPpc64le],
        "mips64" if cfg!(target_endian = "little") => {
            vec![
                Arch::ScmpArchMipsel64,
                Arch::ScmpArchMipsel,
                Arch::ScmpArchMipsel64n32,
            ]
        }
        "mips64" => vec![
            Arch::ScmpArchMips64,
            Arch::ScmpArchMips,
            Arch::ScmpArchMips64n32,
        ],
        _ => vec![Arch::ScmpArchNative],
    }
}

/// The running kernel's (major, minor), or `None` if `uname` cannot be parsed.
fn kernel_version() -> Option<(u32, u32)> {
    let uts = rustix::system::uname();
    let release = uts.release().to_str().ok()?;
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Docker's default seccomp profile for a process holding `caps` (names like `CAP_SYS_ADMIN`;
/// pass the bounding or effective set the container will have), resolved for the host's
/// architecture and kernel.
pub fn docker_default_profile(caps: &[String]) -> LinuxSeccomp {
    profile_for(caps, host_arch(), host_arches(), kernel_version())
}

fn profile_for(
    caps: &[String],
    arch: &str,
    arches: Vec<Arch>,
    kernel: Option<(u32, u32)>,
) -> LinuxSeccomp {
    let has = |c: &&str| caps.iter().any(|h| h.eq_ignore_ascii_case(c));
    let mut syscalls = Vec::new();
    for g in GROUPS {
        let included = g.caps.iter().all(&has)
            && (g.arches.is_empty() || g.arches.contains(&arch))
            && !g.not_caps.iter().any(&has)
            && !g.not_arches.contains(&arch)
            && match (g.min_kernel, kernel) {
                (Some(min), Some(k)) => k >= min,
                (Some(_), None) => false,
                (None, _) => true,
            };
        if !included {
            continue;
        }
        let mut call = LinuxSyscall::default();
        call.set_names(g.names.iter().map(|s| s.to_string()).collect());
        call.set_action(g.action);
        call.set_errno_ret(g.errno);
        if !g.args.is_empty() {
            call.set_args(Some(
                g.args.iter().map(|&(i, v, op)| arg(i, v, op)).collect(),
            ));
        }
        syscalls.push(call);
    }
    // One rule per allowed personality value (an OR, which one rule with several conditions on
    // the same argument could not express).
    for value in PERSONALITIES {
        let mut call = LinuxSyscall::default();
        call.set_names(vec!["personality".to_string()]);
        call.set_action(ALLOW);
        call.set_args(Some(vec![arg(0, value, LinuxSeccompOperator::ScmpCmpEq)]));
        syscalls.push(call);
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(libc::EPERM as u32));
    profile.set_architectures(Some(arches));
    profile.set_syscalls(Some(syscalls));
    profile
}

fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &LinuxSeccomp, name: &str) -> Vec<LinuxSyscall> {
        p.syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|c| c.names().iter().any(|n| n == name))
            .cloned()
            .collect()
    }

    #[test]
    fn sys_admin_decides_mount_unshare_and_clone() {
        let none = profile_for(&[], "amd64", host_arches(), Some((6, 1)));
        assert!(allowed(&none, "mount").is_empty());
        assert!(allowed(&none, "unshare").is_empty());
        let clone = allowed(&none, "clone");
        assert_eq!(clone.len(), 1);
        let a = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(
            (a.index(), a.value(), a.op()),
            (0, CLONE_NS_FLAGS, LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        let clone3 = allowed(&none, "clone3");
        assert_eq!(clone3[0].errno_ret(), Some(libc::ENOSYS as u32));

        let admin = profile_for(
            &["CAP_SYS_ADMIN".into()],
            "amd64",
            host_arches(),
            Some((6, 1)),
        );
        assert_eq!(allowed(&admin, "mount").len(), 1);
        let clone = allowed(&admin, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].args().is_none());
        assert!(allowed(&admin, "clone3")
            .iter()
            .all(|c| c.action() == ALLOW));
    }

    #[test]
    fn arch_and_kernel_conditions() {
        let p = profile_for(&[], "amd64", vec![Arch::ScmpArchX86_64], Some((4, 4)));
        assert_eq!(allowed(&p, "arch_prctl").len(), 1);
        assert!(allowed(&p, "set_tls").is_empty());
        assert!(
            allowed(&p, "ptrace").is_empty(),
            "ptrace needs kernel >= 4.8"
        );
        let s = profile_for(&[], "s390x", vec![Arch::ScmpArchS390x], Some((6, 1)));
        let clone = allowed(&s, "clone");
        assert_eq!(clone[0].args().as_ref().unwrap()[0].index(), 1);
        assert_eq!(allowed(&s, "personality").len(), PERSONALITIES.len());
        assert_eq!(s.default_errno_ret(), Some(1));
    }
}
