//! After pivot: sysctl, readonlyPaths, maskedPaths and the read-only root. Everything is
//! resolved from an fd of `/` with `RESOLVE_IN_ROOT`; /proc writes go through a checked procfs
//! fd.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, OFlags, ResolveFlags};

use super::dev::open_dev_null;
use super::fsops::{attach, clone_tree, new_fs, open_in_root, open_resolve, set_attrs};
use super::options::AttrChange;
use super::plan::{clean_path, sysctl_path};
use super::RootfsError;
use berth_sys::mount::{MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

fn check_procfs(fd: BorrowedFd<'_>, what: &str) -> Result<(), RootfsError> {
    let st = rustix::fs::fstatfs(fd).map_err(|e| RootfsError::os(what, e))?;
    if st.f_type != rustix::fs::PROC_SUPER_MAGIC {
        return Err(RootfsError::os(
            what,
            std::io::Error::other("not on a procfs"),
        ));
    }
    Ok(())
}

/// Write `value` to /proc/sys/<key> of the container.
pub fn write_sysctl(root: BorrowedFd<'_>, key: &str, value: &str) -> Result<(), RootfsError> {
    let rel = sysctl_path(key)?;
    let op = format!("set sysctl {key}");
    let proc = open_resolve(
        root,
        "proc",
        OFlags::PATH | OFlags::DIRECTORY,
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
    )
    .map_err(|e| RootfsError::os(format!("{op}: open /proc"), e))?;
    check_procfs(proc.as_fd(), &format!("{op}: /proc"))?;
    let file = open_resolve(
        proc.as_fd(),
        &format!("sys/{rel}"),
        OFlags::WRONLY | OFlags::TRUNC,
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| RootfsError::os(format!("{op}: open /proc/sys/{rel}"), e))?;
    check_procfs(file.as_fd(), &op)?;
    std::fs::File::from(file)
        .write_all(value.as_bytes())
        .map_err(|e| RootfsError::os(format!("{op}: write {value:?}"), e))
}

fn open_existing(
    root: BorrowedFd<'_>,
    path: &str,
    op: &str,
) -> Result<Option<OwnedFd>, RootfsError> {
    match open_in_root(root, path, OFlags::PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(RootfsError::os(op, e)),
    }
}

/// Make `path` (and everything mounted under it) read-only with a recursive read-only bind
/// of itself. Missing paths are ignored.
pub fn readonly_path(root: BorrowedFd<'_>, path: &str) -> Result<(), RootfsError> {
    let clean = clean_path(path)
        .ok_or_else(|| RootfsError::invalid("linux.readonlyPaths", "empty path"))?;
    let op = format!("make {clean} read-only");
    let Some(target) = open_existing(root, &clean, &op)? else {
        return Ok(());
    };
    let tree = clone_tree(target.as_fd(), "", true).map_err(|e| RootfsError::os(&op, e))?;
    set_attrs(
        tree.as_fd(),
        AttrChange {
            set: MOUNT_ATTR_RDONLY,
            clr: 0,
        },
        true,
    )
    .map_err(|e| RootfsError::os(&op, e))?;
    attach(tree.as_fd(), target.as_fd()).map_err(|e| RootfsError::os(&op, e))
}

/// Hide `path`: a read-only empty tmpfs over a directory, /dev/null over anything else.
/// Missing paths are ignored.
pub fn mask_path(root: BorrowedFd<'_>, path: &str) -> Result<(), RootfsError> {
    let clean =
        clean_path(path).ok_or_else(|| RootfsError::invalid("linux.maskedPaths", "empty path"))?;
    let op = format!("mask {clean}");
    let Some(target) = open_existing(root, &clean, &op)? else {
        return Ok(());
    };
    let st = rustix::fs::fstat(&target).map_err(|e| RootfsError::os(&op, e))?;
    let tree = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        new_fs(
            "tmpfs",
            Some("tmpfs"),
            &[],
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
        )
        .map_err(|(_, e)| RootfsError::os(&op, e))?
    } else {
        let null = open_dev_null(root)?;
        clone_tree(null.as_fd(), "", false).map_err(|e| RootfsError::os(&op, e))?
    };
    attach(tree.as_fd(), target.as_fd()).map_err(|e| RootfsError::os(&op, e))
}

/// Remount the root mount read-only (not its submounts).
pub fn readonly_root(root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    set_attrs(
        root,
        AttrChange {
            set: MOUNT_ATTR_RDONLY,
            clr: 0,
        },
        false,
    )
    .map_err(|e| RootfsError::os("remount / read-only", e))
}
