//! Mount syscalls that rustix does not wrap: `mount_setattr(2)`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `MOUNT_ATTR_RDONLY`: mount is read-only.
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_NOSUID`: ignore suid and sgid bits.
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
/// `MOUNT_ATTR_NODEV`: disallow access to device special files.
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
/// `MOUNT_ATTR_NOEXEC`: disallow program execution.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
/// `MOUNT_ATTR__ATIME`: mask of the atime bits below.
pub const MOUNT_ATTR__ATIME: u64 = 0x0000_0070;
/// `MOUNT_ATTR_RELATIME`: update atime relative to mtime/ctime.
pub const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
/// `MOUNT_ATTR_NOATIME`: do not update access times.
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
/// `MOUNT_ATTR_STRICTATIME`: always perform atime updates.
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
/// `MOUNT_ATTR_NODIRATIME`: do not update directory access times.
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
/// `MOUNT_ATTR_NOSYMFOLLOW`: do not follow symlinks.
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// `AT_EMPTY_PATH`: operate on the fd itself.
pub const AT_EMPTY_PATH: u32 = 0x1000;
/// `AT_RECURSIVE`: apply to the whole mount tree.
pub const AT_RECURSIVE: u32 = 0x8000;
/// `AT_SYMLINK_NOFOLLOW`: do not follow a trailing symlink.
pub const AT_SYMLINK_NOFOLLOW: u32 = 0x100;

/// The kernel's `struct mount_attr` (version 0, 32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttr {
    /// `MOUNT_ATTR_*` bits to set.
    pub attr_set: u64,
    /// `MOUNT_ATTR_*` bits to clear.
    pub attr_clr: u64,
    /// Propagation type: 0 (unchanged), `MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE` or `MS_UNBINDABLE`.
    pub propagation: u64,
    /// User namespace fd for `MOUNT_ATTR_IDMAP` (unused by berth so far).
    pub userns_fd: u64,
}

/// `mount_setattr(dirfd, "", AT_EMPTY_PATH | extra_flags, attr)`: change the attributes of the
/// mount that `fd` refers to (an `O_PATH` fd of a mount root, or a detached tree from
/// `open_tree`/`fsmount`). Pass [`AT_RECURSIVE`] in `extra_flags` to apply to all submounts.
pub fn mount_setattr_fd(fd: BorrowedFd<'_>, extra_flags: u32, attr: &MountAttr) -> io::Result<()> {
    let path = c"";
    // SAFETY: `path` is a valid NUL-terminated string, `attr` points to a live, properly laid
    // out `struct mount_attr` whose exact size we pass; the fd is borrowed for the whole call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            path.as_ptr(),
            (AT_EMPTY_PATH | extra_flags) as libc::c_uint,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_attr_is_version_zero_size() {
        assert_eq!(std::mem::size_of::<MountAttr>(), 32);
    }

    #[test]
    fn bad_fd_is_an_error() {
        // A file that is not the root of a mount: the kernel rejects it (EINVAL).
        use std::os::fd::AsFd;
        let dir = std::env::temp_dir().join(format!("berthtest-setattr-{}", std::process::id()));
        std::fs::write(&dir, b"x").expect("write temp file");
        let f = std::fs::File::open(&dir).expect("open");
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_NOSUID,
            ..MountAttr::default()
        };
        let err = mount_setattr_fd(f.as_fd(), 0, &attr);
        let _ = std::fs::remove_file(&dir);
        assert!(err.is_err());
    }
}
