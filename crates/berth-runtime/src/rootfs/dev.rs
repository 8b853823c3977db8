//! /dev: device nodes, the standard symlinks and /dev/console.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{makedev, AtFlags, FileType, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use super::fsops::{attach, clone_host_tree, clone_tree, mkdir_all_in_root, open_in_root, Leaf};
use super::plan::{DeviceKind, DeviceNode};
use super::RootfsError;

/// Create `devices` inside the rootfs: `mknod` with owner and mode, or, in a user namespace
/// (where mknod is refused), an empty file with the host's device bind-mounted on it.
pub fn create_devices(
    root: BorrowedFd<'_>,
    devices: &[DeviceNode],
    userns: bool,
) -> Result<(), RootfsError> {
    for d in devices {
        if userns {
            bind_host_device(root, d)?;
        } else {
            mknod_device(root, d)?;
        }
    }
    Ok(())
}

fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => ("/", path),
    }
}

fn mknod_device(root: BorrowedFd<'_>, d: &DeviceNode) -> Result<(), RootfsError> {
    let op = format!("mknod {}", d.path);
    let (dir, name) = split(&d.path);
    let parent = mkdir_all_in_root(root, dir, Leaf::Dir, "device directory")?;
    let ft = match d.kind {
        DeviceKind::Char => FileType::CharacterDevice,
        DeviceKind::Block => FileType::BlockDevice,
        DeviceKind::Fifo => FileType::Fifo,
    };
    let mode = Mode::from_raw_mode(d.mode);
    let dev = makedev(d.major, d.minor);
    match rustix::fs::mknodat(&parent, name, ft, mode, dev) {
        Err(Errno::EXIST) => {
            rustix::fs::unlinkat(&parent, name, AtFlags::empty())
                .map_err(|e| RootfsError::os(&op, e))?;
            rustix::fs::mknodat(&parent, name, ft, mode, dev)
        }
        r => r,
    }
    .map_err(|e| RootfsError::os(&op, e))?;
    rustix::fs::chownat(
        &parent,
        name,
        Some(Uid::from_raw(d.uid)),
        Some(Gid::from_raw(d.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| RootfsError::os(format!("chown {}", d.path), e))?;
    // mknod's mode went through the umask
    rustix::fs::chmodat(&parent, name, mode, AtFlags::empty())
        .map_err(|e| RootfsError::os(format!("chmod {}", d.path), e))
}

fn bind_host_device(root: BorrowedFd<'_>, d: &DeviceNode) -> Result<(), RootfsError> {
    let op = format!("bind {} on {}", d.path, d.path);
    let tree = clone_host_tree(&d.path, false).map_err(|e| RootfsError::os(&op, e))?;
    let target = mkdir_all_in_root(root, &d.path, Leaf::File, "device")?;
    attach(tree.as_fd(), target.as_fd()).map_err(|e| RootfsError::os(&op, e))
}

/// The standard /dev symlinks: fd, stdin, stdout, stderr, core (when the host has
/// /proc/kcore) and ptmx -> pts/ptmx (replacing any /dev/ptmx).
pub fn create_symlinks(root: BorrowedFd<'_>, with_core: bool) -> Result<(), RootfsError> {
    let dev = mkdir_all_in_root(root, "/dev", Leaf::Dir, "directory")?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if with_core {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match rustix::fs::symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(RootfsError::os(format!("symlink /dev/{name}"), e)),
        }
    }
    match rustix::fs::unlinkat(&dev, "ptmx", AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(RootfsError::os("remove /dev/ptmx", e)),
    }
    rustix::fs::symlinkat("pts/ptmx", &dev, "ptmx")
        .map_err(|e| RootfsError::os("symlink /dev/ptmx", e))
}

/// Bind the pty slave `slave` on /dev/console inside `root`.
pub fn bind_console(root: BorrowedFd<'_>, slave: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let op = "bind the console pty on /dev/console";
    let tree = clone_tree(slave, "", false).map_err(|e| RootfsError::os(op, e))?;
    let target = mkdir_all_in_root(root, "/dev/console", Leaf::File, "console")?;
    attach(tree.as_fd(), target.as_fd()).map_err(|e| RootfsError::os(op, e))
}

/// Open the container's /dev/null as `O_PATH`, checking it is the null device (char 1:3):
/// a hostile image could make it a symlink or another file (runc CVE-2025-31133).
pub fn open_dev_null(root: BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd, RootfsError> {
    let op = "open /dev/null";
    let fd = open_in_root(root, "/dev/null", OFlags::PATH).map_err(|e| RootfsError::os(op, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| RootfsError::os(op, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::CharacterDevice
        || st.st_rdev != makedev(1, 3)
    {
        return Err(RootfsError::os(
            op,
            std::io::Error::other("/dev/null in the container is not the null device"),
        ));
    }
    Ok(fd)
}
