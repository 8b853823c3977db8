//! Namespaces: `unshare(2)` for the namespace flags (never CLONE_FILES/CLONE_FS, which are the
//! reason rustix marks unshare unsafe).

use std::io;

/// Namespace flags accepted by [`unshare_namespaces`] (a subset of the CLONE_NEW* flags).
pub const NAMESPACE_FLAGS: i32 = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWTIME;

/// `unshare(flags)` restricted to namespace flags; any other bit yields `EINVAL`.
pub fn unshare_namespaces(flags: i32) -> io::Result<()> {
    if flags & !NAMESPACE_FLAGS != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: only CLONE_NEW* namespace flags are passed (checked above); they do not unshare
    // the fd table or fs struct, so no other thread can observe invalidated fds.
    let r = unsafe { libc::unshare(flags) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
