//! The container's root filesystem: OCI runtime-spec v1.2 `root`, `mounts`, `linux.devices`,
//! `linux.rootfsPropagation`, `linux.maskedPaths`, `linux.readonlyPaths`, `linux.sysctl`.
//!
//! Called from the container's init process, in its own mount namespace:
//! 1. [`prepare_rootfs`]: propagation, rootfs bind, spec mounts, /dev, then `pivot_root`
//!    (or `MS_MOVE` + `chroot` with [`RootfsOptions::no_pivot`]) and `chdir("/")`.
//! 2. optionally [`setup_console`]: a pty from the container's own devpts, bound on /dev/console.
//! 3. [`finalize_rootfs`]: sysctl, readonlyPaths, maskedPaths, read-only root.
//!
//! # Design
//! - Every destination inside the rootfs is created and resolved with
//!   `openat2(RESOLVE_IN_ROOT)`, one component at a time; a symlink (even a dangling one) is
//!   followed *inside* the rootfs. Mounts are made with the new mount API onto the resolved fd
//!   (`open_tree`/`fsopen`+`fsconfig`+`fsmount`, then `move_mount` with `T_EMPTY_PATH`), so a
//!   symlink swapped into the rootfs can never redirect a mount to the host (runc
//!   CVE-2021-30465), and no step depends on a `/proc` being mounted.
//! - Mount flags are `MOUNT_ATTR_*` set with `mount_setattr` on the detached mount before it
//!   is attached (`rro` and friends with `AT_RECURSIVE`); filesystem instances only get
//!   per-mount flags, never superblock ones, so `ro` on sysfs or proc cannot leak to the host's
//!   shared superblock. Propagation options are applied after attaching.
//! - Default propagation of `/` is `rslave` (runc's): host mounts still reach the container,
//!   nothing flows back. `rshared` makes the rootfs's parent mount private first, as runc does.
//! - Without a /dev mount in the spec, berth mounts a tmpfs on /dev plus devpts on /dev/pts and
//!   a 64 MiB tmpfs on /dev/shm (unless the spec has those). Devices and /dev symlinks are made
//!   unless /dev is a bind mount. In a user namespace devices are bind-mounted from the host.
//! - cgroup mounts: on cgroup v2 the container's own cgroup directory is bound (or, with a
//!   cgroup namespace, cgroup2 is mounted); on v1/hybrid a tmpfs holds one mount per hierarchy,
//!   each the container's own cgroup (bound, or mounted fresh in a cgroup namespace). The init
//!   process must already be in its cgroup.
//! - Masking checks that the container's /dev/null is really char 1:3 before binding it (runc
//!   CVE-2025-31133); sysctl keys are validated and written through a procfs-checked fd.
//! - Mounts on /proc sub-paths are refused except runc's lxcfs list.
//! - Pure parts (option parsing, the mount plan, device list, cgroup layout) live in
//!   [`options`] and [`plan`] and are unit-tested without root.

mod dev;
mod finalize;
mod fsops;
mod mounts;
pub mod options;
pub mod plan;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_core::ErrorKind;
use oci_spec::runtime::Spec;
use rustix::fs::OFlags;
use rustix::mount::{MountPropagationFlags, UnmountFlags};

use options::Propagation;

/// How [`prepare_rootfs`] sets up the root.
#[derive(Debug, Default)]
pub struct RootfsOptions {
    /// Do not `pivot_root`: move the rootfs onto `/` and `chroot` into it (runc's `--no-pivot`,
    /// needed when the current root is an initramfs).
    pub no_pivot: bool,
    /// A pty slave already opened by the caller, bind-mounted on /dev/console. Leave `None` and
    /// call [`setup_console`] after [`prepare_rootfs`] to create the pty inside the container's
    /// own devpts instead (what runc does).
    pub console: Option<OwnedFd>,
    /// The process is in a new user namespace: devices are bind-mounted from the host instead of
    /// created with mknod, and locked mount flags are kept. Also implied when the spec lists a
    /// user namespace.
    pub in_user_ns: bool,
}

/// A pty created inside the container by [`setup_console`].
#[derive(Debug)]
pub struct Console {
    /// The master side: send it to the console socket.
    pub master: OwnedFd,
    /// The slave side, also bind-mounted on /dev/console: make it the process's stdio.
    pub slave: OwnedFd,
}

/// Why setting up the root filesystem failed. The message names the operation and paths, e.g.
/// `mount proc on /proc: permission denied`.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A system call failed.
    #[error("{op}: {msg}")]
    Os {
        /// What was being done, with paths.
        op: String,
        /// The error text (lowercase, kernel detail appended when there is any).
        msg: String,
        /// The errno, when the failure came from the kernel.
        errno: Option<i32>,
    },
    /// A path from the spec resolved outside the rootfs.
    #[error("{what} {path} resolves outside the rootfs")]
    Escape {
        /// Which kind of path, e.g. `mount destination`.
        what: &'static str,
        /// The path as written in the spec.
        path: String,
    },
    /// The spec asks for something malformed or unsupported.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The spec field, e.g. `mounts[3].options`.
        field: String,
        /// What is wrong with it.
        reason: String,
        /// Whether the request is well-formed but unsupported here.
        unsupported: bool,
    },
}

impl RootfsError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RootfsError::Os { errno, .. } => match *errno {
                Some(libc::EPERM) | Some(libc::EACCES) => ErrorKind::PermissionDenied,
                Some(libc::ENOENT) => ErrorKind::NotFound,
                Some(libc::EINVAL) => ErrorKind::InvalidInput,
                Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) => {
                    ErrorKind::Unsupported
                }
                _ => ErrorKind::Internal,
            },
            RootfsError::Escape { .. } => ErrorKind::PermissionDenied,
            RootfsError::Invalid { unsupported, .. } => {
                if *unsupported {
                    ErrorKind::Unsupported
                } else {
                    ErrorKind::InvalidInput
                }
            }
        }
    }

    /// The errno behind this error, if it came from a system call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            RootfsError::Os { errno, .. } => *errno,
            _ => None,
        }
    }

    pub(crate) fn os(op: impl Into<String>, err: impl Into<io::Error>) -> Self {
        let err: io::Error = err.into();
        RootfsError::Os {
            op: op.into(),
            msg: errno_text(&err),
            errno: err.raw_os_error(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RootfsError::Invalid {
            field: field.into(),
            reason: reason.into(),
            unsupported: false,
        }
    }
}

/// "Permission denied (os error 13)" -> "permission denied".
fn errno_text(err: &io::Error) -> String {
    let s = err.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Build the container's root filesystem and switch into it.
///
/// Call in the init process, already in its new mount namespace (user-namespace mappings
/// already written when a user namespace is used, and already moved into its cgroup), before
/// the process's own user and capabilities are applied. `bundle` anchors a relative
/// `root.path` and relative bind sources. On return the process's root is the container's
/// rootfs and its cwd is `/`.
///
/// Steps:
/// 1. make `/` recursively `linux.rootfsPropagation` (default `rslave`, as runc: host mounts
///    still propagate in, nothing propagates out; always recursive; `unbindable` is applied to
///    the rootfs tree just before the switch);
/// 2. bind the rootfs onto itself;
/// 3. perform the mounts (a default tmpfs /dev, devpts /dev/pts and tmpfs /dev/shm first when
///    the spec has no /dev mount);
/// 4. create the devices and /dev symlinks unless /dev is a bind mount; bind the console;
/// 5. `pivot_root(".", ".")` and detach the old root (or move + chroot with `no_pivot`).
pub fn prepare_rootfs(spec: &Spec, bundle: &Path, opts: &RootfsOptions) -> Result<(), RootfsError> {
    let plan = plan::plan_mounts(spec)?;
    let devices = plan::plan_devices(spec)?;
    let userns = opts.in_user_ns || plan::uses_user_ns(spec);
    let cgroupns = plan::uses_cgroup_ns(spec);
    let rootfs = rootfs_path(spec, bundle)?;
    let rootfs_str = rootfs.display().to_string();

    let propagation = match spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        None | Some("") => (Propagation::Slave, true),
        Some(p) => Propagation::parse(p).ok_or_else(|| {
            RootfsError::invalid(
                "linux.rootfsPropagation",
                format!("{p:?} is not one of shared, slave, private, unbindable (r-prefixed too)"),
            )
        })?,
    };
    // An unbindable tree could not be bound: start private, make the rootfs unbindable last.
    let initial = match propagation.0 {
        Propagation::Unbindable => Propagation::Private,
        p => p,
    };
    mount_change(
        "/",
        initial,
        "make / ".to_string() + propagation_name(initial),
    )?;
    if propagation.0 == Propagation::Shared {
        // pivot_root refuses a shared parent, and the rootfs bind must not propagate to the
        // host: make the rootfs's parent mount private first (runc does the same)
        let parent = rootfs.parent().unwrap_or(Path::new("/"));
        let mp = mount_point_of(parent)?;
        mount_change_one(
            &mp,
            Propagation::Private,
            format!("make {} private", mp.display()),
        )?;
    }
    rustix::mount::mount_bind_recursive(&rootfs, &rootfs)
        .map_err(|e| RootfsError::os(format!("bind rootfs {rootfs_str} onto itself"), e))?;
    let root = rustix::fs::open(
        &rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| RootfsError::os(format!("open rootfs {rootfs_str}"), e))?;

    let ctx = mounts::Ctx {
        root: root.as_fd(),
        bundle,
        userns,
        cgroupns,
    };
    for m in &plan.mounts {
        mounts::perform(&ctx, m)?;
    }
    if plan.setup_dev {
        dev::create_devices(root.as_fd(), &devices, userns)?;
        let with_core = Path::new("/proc/kcore").exists();
        dev::create_symlinks(root.as_fd(), with_core)?;
    }
    if let Some(console) = &opts.console {
        dev::bind_console(root.as_fd(), console.as_fd())?;
    }

    rustix::process::fchdir(&root)
        .map_err(|e| RootfsError::os(format!("chdir to rootfs {rootfs_str}"), e))?;
    if propagation.0 == Propagation::Unbindable {
        rustix::mount::mount_change(
            ".",
            MountPropagationFlags::UNBINDABLE | MountPropagationFlags::REC,
        )
        .map_err(|e| RootfsError::os("make the rootfs runbindable", e))?;
    }
    if opts.no_pivot {
        rustix::mount::mount_move(".", "/")
            .map_err(|e| RootfsError::os(format!("move rootfs {rootfs_str} to /"), e))?;
        rustix::process::chroot(".")
            .map_err(|e| RootfsError::os(format!("chroot to {rootfs_str}"), e))?;
    } else {
        if propagation.0 == Propagation::Shared {
            mount_change_one(
                Path::new("."),
                Propagation::Private,
                "make rootfs private".into(),
            )?;
        }
        let old_root = rustix::fs::open(
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| RootfsError::os("open the old root", e))?;
        rustix::process::pivot_root(".", ".")
            .map_err(|e| RootfsError::os(format!("pivot_root to {rootfs_str}"), e))?;
        // The old root is now stacked on the new one. Step onto it by fd (what "." means right
        // after pivot_root is not a kernel promise), make it rslave so that its unmount does not
        // reach the host, and detach it.
        rustix::process::fchdir(&old_root)
            .map_err(|e| RootfsError::os("chdir to the old root", e))?;
        drop(old_root);
        rustix::mount::mount_change(
            ".",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )
        .map_err(|e| RootfsError::os("make the old root rslave", e))?;
        rustix::mount::unmount(".", UnmountFlags::DETACH)
            .map_err(|e| RootfsError::os("detach the old root", e))?;
        if propagation.0 == Propagation::Shared {
            mount_change_one(Path::new("/"), Propagation::Shared, "make / shared".into())?;
        }
    }
    rustix::process::chdir("/").map_err(|e| RootfsError::os("chdir to /", e))
}

fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf, RootfsError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| RootfsError::invalid("root", "missing"))?;
    let p = root.path();
    if p.as_os_str().is_empty() {
        return Err(RootfsError::invalid("root.path", "empty"));
    }
    let p = if p.is_absolute() {
        p.clone()
    } else {
        bundle.join(p)
    };
    let p = std::fs::canonicalize(&p)
        .map_err(|e| RootfsError::os(format!("rootfs {}", p.display()), e))?;
    if !p.is_dir() {
        return Err(RootfsError::invalid(
            "root.path",
            format!("{} is not a directory", p.display()),
        ));
    }
    Ok(p)
}

fn propagation_name(p: Propagation) -> &'static str {
    match p {
        Propagation::Shared => "rshared",
        Propagation::Slave => "rslave",
        Propagation::Private => "rprivate",
        Propagation::Unbindable => "runbindable",
    }
}

fn prop_flags(p: Propagation) -> MountPropagationFlags {
    match p {
        Propagation::Shared => MountPropagationFlags::SHARED,
        Propagation::Slave => MountPropagationFlags::DOWNSTREAM,
        Propagation::Private => MountPropagationFlags::PRIVATE,
        Propagation::Unbindable => MountPropagationFlags::UNBINDABLE,
    }
}

fn mount_change(path: &str, p: Propagation, op: String) -> Result<(), RootfsError> {
    rustix::mount::mount_change(path, prop_flags(p) | MountPropagationFlags::REC)
        .map_err(|e| RootfsError::os(op, e))
}

fn mount_change_one(path: &Path, p: Propagation, op: String) -> Result<(), RootfsError> {
    rustix::mount::mount_change(path, prop_flags(p)).map_err(|e| RootfsError::os(op, e))
}

/// The mount point holding `path` (the longest mount point that is a prefix of it).
fn mount_point_of(path: &Path) -> Result<PathBuf, RootfsError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| RootfsError::os("read /proc/self/mountinfo", e))?;
    let best = plan::parse_mountinfo(&text)
        .into_iter()
        .map(|m| PathBuf::from(m.mount_point))
        .filter(|mp| path.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"));
    Ok(best)
}

/// Create a pty in the container's devpts (/dev/ptmx), bind its slave on /dev/console and
/// return both ends. Call after [`prepare_rootfs`] when `process.terminal` is true.
pub fn setup_console() -> Result<Console, RootfsError> {
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| RootfsError::os("open /", e))?;
    let op = "open /dev/ptmx";
    let master = fsops::open_in_root(root.as_fd(), "/dev/ptmx", OFlags::RDWR | OFlags::NOCTTY)
        .map_err(|e| RootfsError::os(op, e))?;
    let st = rustix::fs::fstatfs(&master).map_err(|e| RootfsError::os(op, e))?;
    if st.f_type != DEVPTS_SUPER_MAGIC {
        return Err(RootfsError::os(
            op,
            io::Error::other("not on a devpts filesystem"),
        ));
    }
    rustix::pty::unlockpt(&master).map_err(|e| RootfsError::os("unlock the pty", e))?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC,
    )
    .map_err(|e| RootfsError::os("open the pty slave", e))?;
    dev::bind_console(root.as_fd(), slave.as_fd())?;
    Ok(Console { master, slave })
}

const DEVPTS_SUPER_MAGIC: rustix::fs::FsWord = 0x1cd1;

/// Finish the root filesystem after [`prepare_rootfs`] (and [`setup_console`]), before
/// dropping privileges: write `linux.sysctl` through /proc/sys, apply `linux.readonlyPaths`
/// (recursive read-only binds) and `linux.maskedPaths` (/dev/null over files, an empty
/// read-only tmpfs over directories; missing paths ignored), then make the root mount
/// read-only when `root.readonly` is set.
pub fn finalize_rootfs(spec: &Spec) -> Result<(), RootfsError> {
    // validate everything before changing anything
    let linux = spec.linux().as_ref();
    let mut sysctl: Vec<(&String, &String)> = linux
        .and_then(|l| l.sysctl().as_ref())
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    sysctl.sort();
    for (k, _) in &sysctl {
        plan::sysctl_path(k)?;
    }
    let paths = |field: &str, list: Option<&Vec<String>>| -> Result<Vec<String>, RootfsError> {
        list.map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                plan::clean_path(p).filter(|c| c != "/").ok_or_else(|| {
                    RootfsError::invalid(format!("linux.{field}[{i}]"), "empty or /")
                })
            })
            .collect()
    };
    let readonly = paths(
        "readonlyPaths",
        linux.and_then(|l| l.readonly_paths().as_ref()),
    )?;
    let masked = paths("maskedPaths", linux.and_then(|l| l.masked_paths().as_ref()))?;

    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| RootfsError::os("open /", e))?;
    for (k, v) in sysctl {
        finalize::write_sysctl(root.as_fd(), k, v)?;
    }
    for p in &readonly {
        finalize::readonly_path(root.as_fd(), p)?;
    }
    for p in &masked {
        finalize::mask_path(root.as_fd(), p)?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        finalize::readonly_root(root.as_fd())?;
    }
    Ok(())
}
