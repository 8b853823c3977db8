//! The container's root filesystem: OCI runtime-spec v1.2 `root`, `mounts`, `linux.devices`,
//! `linux.rootfsPropagation`, `linux.maskedPaths`, `linux.readonlyPaths`, `linux.sysctl`.
//!
//! Called from the container's init process, in its own mount namespace:
//! 1. [`prepare_rootfs`]: propagation, rootfs bind, spec mounts, /dev, then `pivot_root`
//!    (or `MS_MOVE` + `chroot` with [`RootfsOptions::no_pivot`]) and `chdir("/")`.
//! 2. optionally [`setup_console`]: a pty from the container's own devpts, bound on /dev/console.
//! 3. [`finalize_rootfs`]: sysctl, readonlyPaths, maskedPaths, read-only root.
//!
//! Every destination inside the rootfs is resolved with `openat2(RESOLVE_IN_ROOT)` and mounted
//! onto the resolved fd with the new mount API (`open_tree`/`fsopen`/`fsmount`/`move_mount`), so a
//! symlink inside the rootfs can never redirect a mount to the host.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use berth_core::ErrorKind;
use oci_spec::runtime::Spec;

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
    /// created with mknod, and locked mount flags are kept.
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
pub fn prepare_rootfs(spec: &Spec, bundle: &Path, opts: &RootfsOptions) -> Result<(), RootfsError> {
    let _ = (spec, bundle, opts);
    Err(RootfsError::Invalid {
        field: "root".into(),
        reason: "rootfs setup not implemented yet".into(),
        unsupported: true,
    })
}

/// Create a pty in the container's devpts (/dev/ptmx), bind its slave on /dev/console and
/// return both ends. Call after [`prepare_rootfs`] when `process.terminal` is true.
pub fn setup_console() -> Result<Console, RootfsError> {
    Err(RootfsError::Invalid {
        field: "process.terminal".into(),
        reason: "console setup not implemented yet".into(),
        unsupported: true,
    })
}

/// Finish the root filesystem after [`prepare_rootfs`] (and [`setup_console`]), before
/// dropping privileges: write `linux.sysctl` through /proc/sys, apply `linux.readonlyPaths`
/// and `linux.maskedPaths`, then remount the root read-only when `root.readonly` is set.
pub fn finalize_rootfs(spec: &Spec) -> Result<(), RootfsError> {
    let _ = spec;
    Ok(())
}
