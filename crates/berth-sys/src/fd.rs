//! File descriptor hygiene: `close_range(2)` (CVE-2024-21626: nothing of the runtime may leak
//! into a container).

use std::io;

/// Mark every fd in `first..=u32::MAX` close-on-exec (`close_range` with `CLOSE_RANGE_CLOEXEC`);
/// falls back to walking /proc/self/fd on kernels without it.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on fds; it closes nothing,
    // so no owned fd in this process is invalidated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        {
            if fd >= first as i32 {
                fds.push(fd);
            }
        }
    }
    for fd in fds {
        // SAFETY: F_SETFD with FD_CLOEXEC only changes a flag; a stale fd (the dir fd used for
        // the listing) just fails with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Clear close-on-exec on `fd` (for fds intentionally passed to the container).
pub fn clear_cloexec(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl F_GETFD/F_SETFD only read/change the fd flag.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
